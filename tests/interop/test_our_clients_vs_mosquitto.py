"""Our clients against someone else's broker: build/secpub and build/secsub
against Debian's mosquitto (/usr/sbin/mosquitto, started here on free
127.0.0.1 ports with a temporary config, stopped by PID): plain and TLS
(server verified, and mutual TLS), QoS 1, plus QoS 2 on plain TCP.

secsub runs with -d; its "Subscribed (mid: N): Q" line (mosquitto_sub's
format) tells us it holds its subscription before secpub publishes.
Timeouts are upper bounds only.
"""
from interoplib import InteropCase, certs, feature, mosquitto_version, tls_block
from mqttlib import (MOSQUITTO, SECPUB, SECSUB, is_debug_line, log_tail, need, run, spawn,
                     start_broker, uid)


class TestOurClientsVsMosquitto(InteropCase):
    """One mosquitto with a plain, a TLS and a mutual-TLS listener."""

    @classmethod
    def peer(cls):
        return "mosquitto (broker) %s" % mosquitto_version()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for exe in (SECPUB, SECSUB, MOSQUITTO):
            need(exe)
        cls.broker = start_broker(cls, binary=MOSQUITTO, listeners=[
            tls_block(),
            tls_block(cafile=True, require=True)])
        cls.plain, cls.tls, cls.mutual = cls.broker.ports

    def conn(self, port, tls=None):
        args = ["-h", "127.0.0.1", "-p", str(port)]
        if tls:
            args += ["--cafile", certs()["ca.crt"]]
        if tls == "mutual":
            args += ["--cert", certs()["client.crt"], "--key", certs()["client.key"]]
        return args

    def roundtrip(self, conn, qos):
        topic = uid("ours/q%d" % qos)
        payload = "secpub qos%d %s" % (qos, uid("m"))
        sub = spawn(self, [SECSUB] + conn + ["-t", topic, "-q", str(qos), "-C", "1", "-W", "30",
                                             "-d", "-i", uid("secsub")], name="secsub")
        line = sub.wait_line(lambda l: l.startswith(b"Subscribed (mid"), "SUBACK")
        self.assertTrue(line.endswith(b": %d" % qos), "granted QoS: %r" % line)
        argv = [SECPUB] + conn + ["-t", topic, "-q", str(qos), "-m", payload, "-d", "-i",
                                  uid("secpub")]
        rc, out, err = run(argv, text=True)
        self.assertEqual(rc, 0, "secpub exit status\n  command: %s\n  stdout: %s\n  stderr: %s\n"
                         "  %s" % (" ".join(argv), out, err, log_tail(self.broker)))
        rc = sub.wait()
        self.assertEqual(rc, 0, "secsub exit status: %s\n  %s" % (sub.describe(),
                                                                  log_tail(self.broker)))
        lines = sub.stdout_lines()
        self.assertEqual([l for l in lines if not is_debug_line(l)], [payload.encode()],
                         "secsub output: %r" % lines)
        return out, [l for l in lines if is_debug_line(l)]

    @feature("plain QoS 1")
    def test_plain_qos1(self):
        """secpub -> mosquitto -> secsub over plain TCP at QoS 1 (PUBACK both ways)."""
        out, debug = self.roundtrip(self.conn(self.plain), 1)
        self.assertIn("received PUBACK", out, "secpub -d output")
        self.assertTrue(any(b"sending PUBACK" in l for l in debug), debug)

    @feature("plain QoS 2")
    def test_plain_qos2(self):
        """secpub -> mosquitto -> secsub over plain TCP at QoS 2 (PUBREC, PUBREL,
        PUBCOMP on both legs)."""
        out, debug = self.roundtrip(self.conn(self.plain), 2)
        for step in ("received PUBREC", "sending PUBREL", "received PUBCOMP"):
            self.assertIn(step, out, "secpub -d output lacks %r" % step)
        text = b"\n".join(debug)
        for step in (b"sending PUBREC", b"received PUBREL", b"sending PUBCOMP"):
            self.assertIn(step, text, "secsub -d output lacks %r" % step)

    @feature("TLS (server verified) QoS 1")
    def test_tls_qos1(self):
        """secpub/secsub --cafile ca.crt against mosquitto's TLS listener, QoS 1."""
        self.roundtrip(self.conn(self.tls, tls="server"), 1)

    @feature("mutual TLS QoS 1")
    def test_mutual_tls_qos1(self):
        """secpub/secsub --cafile --cert client.crt --key client.key against a
        mosquitto listener with require_certificate true, QoS 1."""
        self.roundtrip(self.conn(self.mutual, tls="mutual"), 1)
