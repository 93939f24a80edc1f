"""Debian's mosquitto_pub and mosquitto_sub (mosquitto-clients 2.0) against
build/secbroker: plain, TLS, mutual TLS, username/password from a file made by
mosquitto_passwd, QoS 0/1/2 (each handshake step as the clients' -d output
shows it), retained messages and a will published for a SIGKILLed
mosquitto_sub.

mosquitto_sub runs with -d under `stdbuf -oL`; its "Subscribed (mid: N): Q"
line tells us it holds its subscription before anything is published, so
nothing here sleeps. Timeouts are upper bounds only.
"""
import os
import signal
import subprocess
import tempfile
import shutil

from interoplib import InteropCase, certs, feature, mosquitto_clients_version, tls_block
from mqttlib import WAIT, log_tail, run, spawn, start_broker, uid, wait_log
from tlslib import BROKER_MAX_TLS

PUB, SUB, PASSWD = "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd"


def is_debug(line):
    return line.startswith(b"Client ") or line.startswith(b"Subscribed (mid")


class MosquittoClientsCase(InteropCase):

    @classmethod
    def peer(cls):
        return "mosquitto_pub/mosquitto_sub %s" % mosquitto_clients_version()

    def conn(self, port, tls=None, user=None):
        """Connection flags: tls None/"server"/"mutual"/"nocert"."""
        args = ["-h", "127.0.0.1", "-p", str(port)]
        if tls:
            args += ["--cafile", certs()["ca.crt"]]
        if tls == "mutual":
            args += ["--cert", certs()["client.crt"], "--key", certs()["client.key"]]
        if user:
            args += ["-u", user[0], "-P", user[1]]
        return args

    def sub(self, conn, topic, qos=0, count=1, extra=(), client_id=None):
        """A mosquitto_sub that has its SUBACK (checked: granted QoS == qos)."""
        argv = [SUB] + conn + ["-t", topic, "-q", str(qos), "-d", "-W", str(int(WAIT)),
                               "-i", client_id or uid("msub")]
        if count:
            argv += ["-C", str(count)]
        p = spawn(self, argv + list(extra), line_buffered=True)
        line = p.wait_line(lambda l: l.startswith(b"Subscribed (mid"), "SUBACK")
        self.assertTrue(line.endswith(b": %d" % qos), "granted QoS: %r (asked %d)" % (line, qos))
        return p

    def pub(self, conn, topic, msg, qos=0, extra=(), expect_rc=0):
        argv = [PUB] + conn + ["-t", topic, "-q", str(qos), "-d", "-i", uid("mpub")]
        argv += (["-m", msg] if msg is not None else ["-n"]) + list(extra)
        rc, out, err = run(argv, text=True)
        if expect_rc is not None:
            self.assertEqual(rc, expect_rc, "mosquitto_pub exit status\n  command: %s\n  "
                             "stdout: %s\n  stderr: %s\n  %s" % (" ".join(argv), out, err,
                                                                  log_tail(self.broker)))
        return rc, out, err

    def finish(self, p):
        """Wait for mosquitto_sub -C to exit 0; return (message lines, debug lines)."""
        rc = p.wait()
        lines = p.stdout_lines()
        self.assertEqual(rc, 0, "mosquitto_sub exit status; %s\n  %s" % (p.describe(),
                                                                         log_tail(self.broker)))
        return [l for l in lines if not is_debug(l)], [l for l in lines if is_debug(l)]

    def roundtrip(self, conn, qos, payload=None):
        topic = uid("mosq/q%d" % qos)
        payload = payload or "qos%d via secbroker %s" % (qos, uid("m"))
        s = self.sub(conn, topic, qos=qos)
        rc, out, err = self.pub(conn, topic, payload, qos=qos)
        msgs, debug = self.finish(s)
        self.assertEqual(msgs, [payload.encode()], "message delivered to mosquitto_sub")
        return out, debug


class TestMosquittoClients(MosquittoClientsCase):
    """One secbroker with a plain listener, a TLS listener (server verified, client
    certificates optional) and a mutual-TLS listener (require_certificate)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = start_broker(cls, listeners=[
            tls_block(cafile=True),
            tls_block(cafile=True, require=True)])
        cls.plain, cls.tls, cls.mutual = cls.broker.ports

    @feature("plain QoS 0")
    def test_plain_qos0(self):
        """mosquitto_pub -> secbroker -> mosquitto_sub, plain TCP, QoS 0."""
        out, debug = self.roundtrip(self.conn(self.plain), 0)
        self.assertTrue(any(b"received PUBLISH (d0, q0, r0, m0," in l for l in debug), debug)

    @feature("plain QoS 1")
    def test_plain_qos1(self):
        """mosquitto_pub -> secbroker -> mosquitto_sub, plain TCP, QoS 1: the
        publisher gets PUBACK, the subscriber receives q1 and sends PUBACK."""
        out, debug = self.roundtrip(self.conn(self.plain), 1)
        self.assertIn("received PUBACK", out, "mosquitto_pub -d output")
        self.assertTrue(any(b"received PUBLISH (d0, q1, r0," in l for l in debug), debug)
        self.assertTrue(any(b"sending PUBACK" in l for l in debug), debug)

    @feature("plain QoS 2")
    def test_plain_qos2(self):
        """mosquitto_pub -> secbroker -> mosquitto_sub, plain TCP, QoS 2: PUBREC,
        PUBREL, PUBCOMP on both sides."""
        out, debug = self.roundtrip(self.conn(self.plain), 2)
        for step in ("received PUBREC", "sending PUBREL", "received PUBCOMP"):
            self.assertIn(step, out, "mosquitto_pub -d output lacks %r" % step)
        text = b"\n".join(debug)
        for step in (b"received PUBLISH (d0, q2, r0,", b"sending PUBREC", b"received PUBREL",
                     b"sending PUBCOMP"):
            self.assertIn(step, text, "mosquitto_sub -d output lacks %r" % step)

    @feature("TLS (server verified) QoS 1")
    def test_tls_qos1(self):
        """mosquitto_pub/sub --cafile ca.crt over TLS (server certificate verified,
        no client certificate), QoS 1."""
        off = len(self.broker.log())
        self.roundtrip(self.conn(self.tls, tls="server"), 1)
        wait_log(self.broker, "TLS handshake with", BROKER_MAX_TLS, "no client certificate",
                 offset=off)

    @feature("mutual TLS QoS 2")
    def test_mutual_tls_qos2(self):
        """--cafile --cert client.crt --key client.key on a require_certificate
        listener, QoS 2; the broker log names the certificate CN=labclient."""
        off = len(self.broker.log())
        self.roundtrip(self.conn(self.mutual, tls="mutual"), 2)
        wait_log(self.broker, "TLS handshake with", "CN=labclient", offset=off)

    @feature("mutual TLS: no certificate refused")
    def test_mutual_tls_without_certificate_refused(self):
        """mosquitto_pub without --cert on a require_certificate listener fails
        (non-zero exit) and the broker logs why."""
        off = len(self.broker.log())
        rc, out, err = self.pub(self.conn(self.mutual, tls="server"), uid("t"), "x",
                                expect_rc=None)
        self.assertNotEqual(rc, 0, "mosquitto_pub without a certificate succeeded: %s" % out)
        wait_log(self.broker, "TLS handshake failed", "client sent no certificate", offset=off)

    @feature("retained")
    def test_retained(self):
        """mosquitto_pub -r: a later mosquitto_sub gets the message with the retain
        flag (r1); mosquitto_pub -r -n clears it, so the next subscriber's first
        message is a fresh (r0) marker."""
        conn = self.conn(self.plain)
        topic = uid("mosq/retained")
        self.pub(conn, topic, "kept", qos=1, extra=["-r"])
        msgs, debug = self.finish(self.sub(conn, topic, qos=1))
        self.assertEqual(msgs, [b"kept"])
        self.assertTrue(any(b"received PUBLISH (d0, q1, r1," in l for l in debug),
                        "retain flag not set: %r" % debug)
        self.pub(conn, topic, None, qos=1, extra=["-r"])  # -n -r: clear
        s = self.sub(conn, topic, qos=1)
        self.pub(conn, topic, "marker", qos=1)
        msgs, debug = self.finish(s)
        self.assertEqual(msgs, [b"marker"], "retained message not cleared by -r -n")
        self.assertTrue(any(b"received PUBLISH (d0, q1, r0," in l for l in debug), debug)

    @feature("will")
    def test_will_on_kill(self):
        """mosquitto_sub --will-topic/--will-payload/--will-qos 1 is SIGKILLed: the
        broker publishes its will to a watching mosquitto_sub."""
        conn = self.conn(self.plain)
        will_topic = uid("mosq/will")
        watcher = self.sub(conn, will_topic, qos=1)
        doomed = self.sub(conn, uid("mosq/idle"), qos=0, count=0, client_id=uid("doomed"),
                          extra=["--will-topic", will_topic, "--will-payload", "doomed is gone",
                                 "--will-qos", "1"])
        doomed.kill(signal.SIGKILL)
        msgs, debug = self.finish(watcher)
        self.assertEqual(msgs, [b"doomed is gone"], "will not delivered")
        self.assertTrue(any(b"received PUBLISH (d0, q1, r0," in l for l in debug), debug)


class TestMosquittoClientsPassword(MosquittoClientsCase):
    """allow_anonymous false with a password file made by mosquitto_passwd (both its
    default $7$ PBKDF2-SHA512 and -H sha512 $6$ lines)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tmp = tempfile.mkdtemp(prefix="secbroker-interop-pw-")
        cls.addClassCleanup(shutil.rmtree, tmp, True)
        pw = os.path.join(tmp, "passwd")
        for argv in ([PASSWD, "-c", "-b", pw, "alice", "alice pw 1"],
                     [PASSWD, "-H", "sha512", "-b", pw, "bob", "b0b:pw"]):
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=WAIT)
            if p.returncode != 0:
                raise AssertionError("%s failed: %s" % (" ".join(argv), p.stdout))
        with open(pw) as f:
            text = f.read()
        cls.passwd_text = text
        cls.broker = start_broker(cls,
                                  conf="allow_anonymous false\npassword_file {dir}/passwd\n",
                                  files={"passwd": text})

    def test_password_file_format(self):
        """mosquitto_passwd wrote one $7$ line (alice) and one $6$ line (bob)."""
        self.assertRegex(self.passwd_text, r"(?m)^alice:\$7\$\d+\$")
        self.assertRegex(self.passwd_text, r"(?m)^bob:\$6\$")

    @feature("username/password ($7$ PBKDF2) QoS 1")
    def test_password_pbkdf2(self):
        """-u alice -P ... ($7$ line from mosquitto_passwd): CONNACK 0, QoS 1 round trip."""
        conn = self.conn(self.broker.port, user=("alice", "alice pw 1"))
        self.roundtrip(conn, 1)
        wait_log(self.broker, "New client connected", "username 'alice'")

    @feature("username/password ($6$ SHA-512) QoS 0")
    def test_password_sha512(self):
        """-u bob ($6$ line from mosquitto_passwd -H sha512): QoS 0 round trip."""
        self.roundtrip(self.conn(self.broker.port, user=("bob", "b0b:pw")), 0)

    @feature("wrong password refused")
    def test_wrong_password_refused(self):
        """A wrong password gets CONNACK 4: mosquitto_pub fails and says so."""
        rc, out, err = self.pub(self.conn(self.broker.port, user=("alice", "wrong")), uid("t"),
                                "x", expect_rc=None)
        self.assertNotEqual(rc, 0, "mosquitto_pub with a wrong password succeeded")
        self.assertIn("received CONNACK (4)", out + err, "CONNACK code seen by mosquitto_pub")

    @feature("anonymous refused")
    def test_anonymous_refused(self):
        """No username where allow_anonymous is false: CONNACK 5."""
        rc, out, err = self.pub(self.conn(self.broker.port), uid("t"), "x", expect_rc=None)
        self.assertNotEqual(rc, 0, "anonymous mosquitto_pub succeeded")
        self.assertIn("received CONNACK (5)", out + err, "CONNACK code seen by mosquitto_pub")
