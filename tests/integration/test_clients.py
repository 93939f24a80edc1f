"""secpub / secsub against Debian's mosquitto and against build/secbroker.

Every test runs twice: once per broker class at the bottom. Subscribers run
with -d so the test can wait for their SUBACK ("Subscribed (mid: ...)")
before publishing; timeouts are upper bounds only, never pass/fail timing.
"""
import os
import re
import signal
import unittest

from mqttlib import (MOSQUITTO, SECBROKER, SECPUB, SECSUB, StubBroker, Sub, TempDir, make_broker,
                     make_password_file, need, run)
from tlslib import make_certs, tls_block

BROKER_BINARY = {"mosquitto": MOSQUITTO, "secbroker": SECBROKER}

PKI = {}


def setUpModule():
    PKI["dir"] = TempDir("secclients-pki-")
    PKI["certs"] = make_certs(os.path.join(PKI["dir"].path, "pki"), other=True)


def tearDownModule():
    if "dir" in PKI:
        PKI["dir"].cleanup()


def one_line(text):
    return len([l for l in text.strip().splitlines() if l.strip()]) == 1


class ClientTests:
    """The tests; subclasses choose the broker with BROKER."""
    BROKER = None

    @classmethod
    def setUpClass(cls):
        need(SECPUB)
        need(SECSUB)
        cls.certs = PKI["certs"]
        cls.broker = make_broker(binary=BROKER_BINARY[cls.BROKER], listeners=[
            tls_block(cls.certs, cafile=True),                  # ports[1]: TLS
            tls_block(cls.certs, cafile=True, require=True),    # ports[2]: mutual TLS
            tls_block(cls.certs, cafile=True, server="other"),  # ports[3]: cert for otherhost.example
        ])
        cls.broker.start()
        cls.port, cls.tls_port, cls.mtls_port, cls.other_port = cls.broker.ports

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def setUp(self):
        self.topic = "clients/%s/%s" % (self.BROKER, self._testMethodName)

    # ---- helpers -----------------------------------------------------------
    def plain(self):
        return ["-h", "127.0.0.1", "-p", str(self.port)]

    def tls(self, port=None, host="localhost"):
        return ["-h", host, "-p", str(port or self.tls_port), "--cafile", self.certs["ca.crt"]]

    def mtls(self):
        return self.tls(self.mtls_port) + ["--cert", self.certs["client.crt"], "--key",
                                           self.certs["client.key"]]

    def pub(self, args, stdin=None, env=None, conn=None):
        return run([SECPUB] + (conn if conn is not None else self.plain()) + list(args),
                   stdin=stdin, env=env)

    def sub(self, args, conn=None, exe=SECSUB, debug=True, env=None):
        argv = [exe] + (conn if conn is not None else self.plain()) + list(args)
        if exe != SECSUB:
            # mosquitto_sub does not flush its -d lines into a pipe
            argv = [need("stdbuf"), "-oL"] + argv
        s = Sub(argv, debug=debug, env=env)
        self.addCleanup(s.kill)
        return s

    def assertPubOk(self, res):
        rc, out, err = res
        self.assertEqual(rc, 0, "secpub failed: %s" % err)

    def assertFails(self, res, words, rc_expected=None):
        """Non-zero exit, exactly one stderr line containing one of words."""
        rc, out, err = res
        self.assertNotEqual(rc, 0, "should have failed; stderr %r" % err)
        if rc_expected is not None:
            self.assertEqual(rc, rc_expected, err)
        self.assertTrue(one_line(err), "want one stderr line, got %r" % err)
        self.assertTrue(any(w in err.lower() for w in words), "%r lacks any of %r" % (err, words))
        return err

    def roundtrip(self, qos, pub_conn=None, sub_conn=None):
        s = self.sub(["-t", self.topic, "-q", str(qos), "-v", "-C", "1"], conn=sub_conn)
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", str(qos), "-m", "hello q%d" % qos],
                                  conn=pub_conn))
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [("%s hello q%d" % (self.topic, qos)).encode()])
        return s

    # ---- publish / subscribe -------------------------------------------------
    def test_qos0(self):
        self.roundtrip(0)

    def test_qos1(self):
        s = self.roundtrip(1)
        self.assertTrue(any(l.startswith(b"Client ") and b"sending PUBACK" in l for l in s.lines))

    def test_qos2(self):
        s = self.roundtrip(2)
        text = b"\n".join(s.lines)
        self.assertIn(b"sending PUBREC", text)
        self.assertIn(b"received PUBREL", text)
        self.assertIn(b"sending PUBCOMP", text)

    def test_qos2_publisher_waits_for_pubcomp(self):
        rc, out, err = self.pub(["-t", self.topic, "-q", "2", "-m", "x", "-d"])
        self.assertEqual(rc, 0, err)
        lines = out.decode().splitlines()
        order = [l.split(" ", 3)[2] + " " + l.split(" ", 4)[3] for l in lines
                 if l.startswith("Client ")]
        self.assertEqual(order, ["sending CONNECT", "received CONNACK", "sending PUBLISH",
                                 "received PUBREC", "sending PUBREL", "received PUBCOMP",
                                 "sending DISCONNECT"])

    def test_debug_output_format(self):
        rc, out, err = self.pub(["-t", self.topic, "-q", "1", "-m", "hello", "-d", "-i", "dbg1"])
        self.assertEqual(rc, 0, err)
        text = out.decode()
        self.assertIn("Client dbg1 sending CONNECT\n", text)
        self.assertIn("Client dbg1 received CONNACK (0)\n", text)
        self.assertIn("Client dbg1 sending PUBLISH (d0, q1, r0, m1, '%s', ... (5 bytes))\n"
                      % self.topic, text)
        self.assertIn("Client dbg1 received PUBACK (Mid: 1)\n", text)
        self.assertIn("Client dbg1 sending DISCONNECT\n", text)

    def test_multiple_topics(self):
        s = self.sub(["-t", self.topic + "/a", "-t", self.topic + "/b", "-v", "-C", "2"])
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic + "/a", "-m", "1"]))
        self.assertPubOk(self.pub(["-t", self.topic + "/b", "-m", "2"]))
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(msgs), [(self.topic + "/a 1").encode(),
                                        (self.topic + "/b 2").encode()])

    def test_retained_and_skip_retained(self):
        self.assertPubOk(self.pub(["-t", self.topic, "-r", "-q", "1", "-m", "stale"]))
        try:
            rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-C", "1"])
            self.assertEqual((rc, out), (0, b"stale\n"), err)
            s = self.sub(["-t", self.topic, "-R", "-C", "1"])
            s.wait_subscribed()
            self.assertPubOk(self.pub(["-t", self.topic, "-m", "live"]))
            rc, msgs, err = s.wait()
            self.assertEqual(rc, 0, err)
            self.assertEqual(msgs, [b"live"])
        finally:
            self.pub(["-t", self.topic, "-r", "-n"])

    def lines_test(self, qos, n=500):
        s = self.sub(["-t", self.topic, "-q", str(qos), "-C", str(n)])
        s.wait_subscribed()
        data = "".join("line %d\n" % i for i in range(n)).encode()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", str(qos), "-l"], stdin=data))
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [("line %d" % i).encode() for i in range(n)])

    def test_lines_500_qos1(self):
        self.lines_test(1)

    def test_lines_500_qos0(self):
        self.lines_test(0)

    def test_lines_500_qos2(self):
        self.lines_test(2)

    def test_lines_skip_blank_and_last_without_newline(self):
        s = self.sub(["-t", self.topic, "-C", "3"])
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-l"], stdin=b"a\n\nb\nc"))
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"a", b"b", b"c"]), err)

    def test_stdin_file_and_null_message(self):
        s = self.sub(["-t", self.topic, "-C", "2"])
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-s"], stdin=b"all of stdin"))
        self.assertPubOk(self.pub(["-t", self.topic, "-n"]))
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"all of stdin", b""]), err)

    def test_file_binary_no_newline(self):
        payload = bytes(range(256)) * 40
        path = os.path.join(self.broker.dir, "payload.bin")
        with open(path, "wb") as f:
            f.write(payload)
        self.assertPubOk(self.pub(["-t", self.topic, "-r", "-f", path]))
        try:
            rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-C", "1", "-N"])
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, payload)
        finally:
            self.pub(["-t", self.topic, "-r", "-n"])

    def test_repeat(self):
        s = self.sub(["-t", self.topic, "-C", "3"])
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", "1", "-m", "again", "--repeat", "3",
                                   "--repeat-delay", "0.1"]))
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"again"] * 3), err)

    def test_protocol_31(self):
        for v in ("31", "mqttv31"):
            s = self.sub(["-t", self.topic, "-C", "1", "-V", v, "-q", "1"])
            s.wait_subscribed()
            self.assertPubOk(self.pub(["-t", self.topic, "-V", v, "-q", "1", "-m", v]))
            rc, msgs, err = s.wait()
            self.assertEqual((rc, msgs), (0, [v.encode()]), err)

    def test_count_exit_zero(self):
        s = self.sub(["-t", self.topic, "-C", "2"])
        s.wait_subscribed()
        for i in range(3):
            self.pub(["-t", self.topic, "-m", str(i)])
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [b"0", b"1"])

    def test_timeout_exit_27(self):
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-W", "1"])
        self.assertEqual(rc, 27, err)
        self.assertIn("timed out", err)

    def test_keepalive_pingreq(self):
        s = self.sub(["-t", self.topic, "-k", "1", "-C", "1"])
        s.wait_line(lambda l: l.endswith(b"received PINGRESP"))
        self.assertIn(b"sending PINGREQ", b"\n".join(s.lines))
        self.pub(["-t", self.topic, "-m", "bye"])
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"bye"]), err)

    def test_sigint_disconnects_cleanly(self):
        s = self.sub(["-t", self.topic])
        s.wait_subscribed()
        s.proc.send_signal(signal.SIGINT)
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertTrue(s.lines[-1].endswith(b"sending DISCONNECT"), s.lines[-3:])

    def test_persistent_session(self):
        cid = "persist-%s" % self.BROKER
        s = self.sub(["-t", self.topic, "-q", "1", "-c", "-i", cid, "-C", "1"])
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", "1", "-m", "online"]))
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"online"]), err)
        # offline now: the broker queues this one for the session
        self.assertPubOk(self.pub(["-t", self.topic, "-q", "1", "-m", "while offline"]))
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-q", "1", "-c", "-i",
                                                     cid, "-C", "1"])
        self.assertEqual((rc, out), (0, b"while offline\n"), err)
        # clean the session up
        run([SECSUB] + self.plain() + ["-t", self.topic, "-i", cid, "-W", "1"])

    def test_will(self):
        s = self.sub(["-t", self.topic, "-C", "1", "-v"])
        s.wait_subscribed()
        doomed = self.sub(["-t", self.topic + "/x", "--will-topic", self.topic, "--will-payload",
                           "gone", "--will-qos", "1"])
        doomed.wait_subscribed()
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait()
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [("%s gone" % self.topic).encode()]), err)

    # ---- failures ----------------------------------------------------------------
    def test_wrong_password(self):
        tmp = TempDir()
        self.addCleanup(tmp.cleanup)
        pw = make_password_file(os.path.join(tmp.path, "passwd"), "alice", "secret")
        b = make_broker("allow_anonymous false\npassword_file %s\n" % pw,
                        binary=BROKER_BINARY[self.BROKER])
        b.start()
        self.addCleanup(b.cleanup)
        conn = ["-h", "127.0.0.1", "-p", str(b.port)]
        rc, out, err = run([SECPUB] + conn + ["-t", self.topic, "-m", "x", "-u", "alice", "-P",
                                              "wrong"])
        self.assertIn(rc, (4, 5), err)
        self.assertTrue(one_line(err), err)
        self.assertIn("refused", err)
        rc, out, err = run([SECSUB] + conn + ["-t", self.topic, "-u", "alice", "-P", "nope"])
        self.assertIn(rc, (4, 5), err)
        rc, out, err = run([SECPUB] + conn + ["-t", self.topic, "-m", "x"])
        self.assertIn(rc, (4, 5), err)
        rc, out, err = run([SECPUB] + conn + ["-t", self.topic, "-m", "x", "-u", "alice", "-P",
                                              "secret"])
        self.assertEqual(rc, 0, err)

    # ---- TLS -------------------------------------------------------------------------
    def test_tls_roundtrip(self):
        self.roundtrip(1, pub_conn=self.tls(), sub_conn=self.tls())

    def test_tls_ip_san(self):
        self.roundtrip(0, pub_conn=self.tls(host="127.0.0.1"), sub_conn=self.tls())

    def test_tls_default_port_is_8883(self):
        rc, out, err = run([SECPUB, "-h", "127.0.0.1", "--cafile", self.certs["ca.crt"], "-t",
                            self.topic, "-m", "x", "-d"])
        # nothing listens on 8883 here (or something unrelated): either way the
        # attempt must have gone to 8883
        if rc != 0:
            self.assertIn("8883", err)

    def test_mutual_tls(self):
        self.roundtrip(2, pub_conn=self.mtls(), sub_conn=self.mtls())

    def test_mutual_tls_without_client_cert(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=self.tls(self.mtls_port))
        self.assertFails(res, ["certificate", "alert", "handshake", "closed"], 69)

    def test_mutual_tls_untrusted_client_cert(self):
        conn = self.tls(self.mtls_port) + ["--cert", self.certs["untrusted-client.crt"], "--key",
                                           self.certs["untrusted-client.key"]]
        res = self.pub(["-t", self.topic, "-m", "x"], conn=conn)
        self.assertFails(res, ["certificate", "alert", "handshake", "closed"], 69)

    def test_wrong_ca(self):
        conn = ["-h", "localhost", "-p", str(self.tls_port), "--cafile",
                self.certs["untrusted-ca.crt"]]
        res = self.pub(["-t", self.topic, "-m", "x"], conn=conn)
        self.assertFails(res, ["verif", "trust", "certificate"], 69)

    def test_hostname_mismatch(self):
        conn = self.tls(self.other_port, host="localhost")
        res = self.pub(["-t", self.topic, "-m", "x"], conn=conn)
        err = self.assertFails(res, ["name", "host", "certificate"], 69)
        self.assertIn("localhost", err)
        # --insecure skips only the name check: the chain is still verified
        self.assertPubOk(self.pub(["-t", self.topic, "-m", "x", "--insecure"], conn=conn))
        bad_ca = ["-h", "localhost", "-p", str(self.other_port), "--cafile",
                  self.certs["untrusted-ca.crt"], "--insecure"]
        self.assertFails(self.pub(["-t", self.topic, "-m", "x"], conn=bad_ca),
                         ["verif", "trust", "certificate"], 69)

    def test_hostname_mismatch_ip(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=self.tls(self.other_port,
                                                                    host="127.0.0.1"))
        self.assertFails(res, ["name", "host", "certificate", "127.0.0.1"], 69)

    def test_keylog(self):
        path = os.path.join(self.broker.dir, "keys-%s.log" % self._testMethodName)
        self.assertPubOk(self.pub(["-t", self.topic, "-m", "x", "--keylog", path],
                                  conn=self.tls()))
        with open(path) as f:
            text = f.read()
        self.assertIn("CLIENT_RANDOM ", text)

    def test_sslkeylogfile_env(self):
        path = os.path.join(self.broker.dir, "env-keys.log")
        env = dict(os.environ, SSLKEYLOGFILE=path)
        self.assertPubOk(self.pub(["-t", self.topic, "-m", "x"], conn=self.tls(), env=env))
        with open(path) as f:
            self.assertIn("CLIENT_RANDOM ", f.read())

    def test_plain_client_on_tls_port(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=["-h", "127.0.0.1", "-p",
                                                           str(self.tls_port)])
        self.assertFails(res, ["tls", "closed"], 69)

    def test_tls_client_on_plain_port(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=self.tls(self.port))
        self.assertFails(res, ["tls", "handshake", "closed", "record"], 69)

    # ---- interoperability with mosquitto's clients ------------------------------------
    def test_secsub_fed_by_mosquitto_pub(self):
        mp = need("mosquitto_pub")
        s = self.sub(["-t", self.topic, "-q", "2", "-v", "-C", "3"])
        s.wait_subscribed()
        for q in range(3):
            rc, out, err = run([mp] + self.plain() + ["-t", self.topic, "-q", str(q), "-m",
                                                      "from mosquitto_pub %d" % q])
            self.assertEqual(rc, 0, err)
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [("%s from mosquitto_pub %d" % (self.topic, q)).encode()
                                for q in range(3)])

    def test_mosquitto_sub_fed_by_secpub(self):
        ms = need("mosquitto_sub")
        s = self.sub(["-t", self.topic, "-q", "2", "-C", "100"], exe=ms)
        s.wait_subscribed()
        data = "".join("secpub %d\n" % i for i in range(100)).encode()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", "2", "-l"], stdin=data))
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [("secpub %d" % i).encode() for i in range(100)])

    def test_mosquitto_sub_fed_by_secpub_mutual_tls(self):
        ms = need("mosquitto_sub")
        s = self.sub(["-t", self.topic, "-q", "1", "-C", "1"], exe=ms, conn=self.mtls())
        s.wait_subscribed()
        self.assertPubOk(self.pub(["-t", self.topic, "-q", "1", "-m", "over mTLS"],
                                  conn=self.mtls()))
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"over mTLS"]), err)


class TestClientsStandalone(unittest.TestCase):
    """What needs no real broker: usage, help, resolver and connect errors,
    IPv6, and the exit status for every CONNACK refusal code (a stub broker)."""

    @classmethod
    def setUpClass(cls):
        need(SECPUB)
        need(SECSUB)

    def setUp(self):
        self.topic = "clients/standalone/%s" % self._testMethodName

    def plain(self):
        from mqttlib import free_port
        return ["-h", "127.0.0.1", "-p", str(free_port())]

    pub = ClientTests.pub
    assertFails = ClientTests.assertFails

    def test_connection_refused(self):
        from mqttlib import free_port
        res = self.pub(["-t", self.topic, "-m", "x"], conn=["-h", "127.0.0.1", "-p",
                                                           str(free_port())])
        self.assertFails(res, ["connection refused"], 69)

    def test_dns_failure(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=["-h", "no-such-host.invalid"])
        self.assertFails(res, ["resolve"], 69)

    def test_usage_errors(self):
        for args in (["-m", "x"], ["-t", "a/#", "-m", "x"], ["-t", "a", "-m", "x", "-q", "3"],
                     ["-t", "a", "-m", "x", "-n"], ["-t", "a", "--bogus"], ["-t", "a", "-m", "x",
                     "--cert", "c.pem"], ["-t", "a", "-m", "x", "-V", "6"], ["-t", "a", "-m"]):
            rc, out, err = self.pub(args)
            self.assertEqual(rc, 64, (args, err))
            self.assertTrue(one_line(err), (args, err))

    def test_help_lists_flags(self):
        for exe in (SECPUB, SECSUB):
            rc, out, err = run([exe, "--help"])
            self.assertEqual(rc, 0)
            for flag in ("-h", "-p", "-i", "-u", "-P", "-k", "-q", "-d", "-V", "--cafile",
                         "--capath", "--cert", "--key", "--insecure", "--tls-version",
                         "--ciphers", "--keylog", "--will-topic", "--will-payload", "--will-qos",
                         "--will-retain", "-t"):
                self.assertRegex(out, rb"\s" + re.escape(flag.encode()) + rb"[ ,\n]", (exe, flag))
        rc, out, err = run([SECPUB, "--help"])
        for flag in ("-m", "-f", "-l", "-s", "-n", "-r", "--repeat", "--repeat-delay"):
            self.assertRegex(out, rb"\s" + re.escape(flag.encode()) + rb"[ ,\n]", flag)
        rc, out, err = run([SECSUB, "--help"])
        for flag in ("-v", "-C", "-W", "-c", "-R", "-N"):
            self.assertRegex(out, rb"\s" + re.escape(flag.encode()) + rb"[ ,\n]", flag)

    def test_persistent_needs_id(self):
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-c"])
        self.assertEqual(rc, 64)
        self.assertTrue(one_line(err))


    def test_connack_refusal_exit_codes(self):
        for rc in (1, 2, 3, 4, 5):
            stub = StubBroker(rc=rc)
            try:
                res = run([SECPUB, "-h", "127.0.0.1", "-p", str(stub.port), "-t", self.topic,
                           "-m", "x"])
                self.assertFails(res, ["refused"], rc)
                res = run([SECSUB, "-h", "127.0.0.1", "-p", str(stub.port), "-t", self.topic])
                self.assertFails(res, ["refused"], rc)
            finally:
                stub.stop()

    def test_ipv6(self):
        try:
            stub = StubBroker(host="::1")
        except OSError:
            self.skipTest("no IPv6 loopback")
        try:
            rc, out, err = run([SECPUB, "-h", "::1", "-p", str(stub.port), "-t", self.topic,
                                "-q", "1", "-m", "over IPv6"])
            self.assertEqual(rc, 0, err)
            self.assertEqual(stub.packets, [3, 14])  # PUBLISH, DISCONNECT
        finally:
            stub.stop()

    def test_connect_packet_fields(self):
        stub = StubBroker()
        try:
            rc, out, err = run([SECPUB, "-h", "127.0.0.1", "-p", str(stub.port), "-t", self.topic,
                                "-m", "x", "-i", "cid", "-k", "33", "-u", "us", "-P", "pw",
                                "--will-topic", "w/t", "--will-payload", "bye", "--will-qos",
                                "2", "--will-retain", "-V", "mqttv31"])
            self.assertEqual(rc, 0, err)
            body = stub.connects[0]
            self.assertEqual(body[:8], b"\x00\x06MQIsdp")
            self.assertEqual(body[8], 3)                 # protocol level 3
            self.assertEqual(body[9], 0x80 | 0x40 | 0x20 | 0x10 | 0x04 | 0x02)
            self.assertEqual(body[10:12], b"\x00\x21")  # keepalive 33
            self.assertEqual(body[12:], b"\x00\x03cid\x00\x03w/t\x00\x03bye\x00\x02us\x00\x02pw")
            # generated client ids: secpub-PID..., at most 23 bytes
            rc, out, err = run([SECPUB, "-h", "127.0.0.1", "-p", str(stub.port), "-t", self.topic,
                                "-m", "x"])
            self.assertEqual(rc, 0, err)
            body = stub.connects[1]
            n = body[10] << 8 | body[11]
            self.assertTrue(body[12:12 + n].startswith(b"secpub-"), body)
            self.assertLessEqual(n, 23)
        finally:
            stub.stop()


class TestClientsMosquitto(ClientTests, unittest.TestCase):
    BROKER = "mosquitto"

    @classmethod
    def setUpClass(cls):
        # make test installs mosquitto: its absence is a failure, not a skip
        assert os.path.exists(MOSQUITTO), "Debian's mosquitto is not installed"
        super().setUpClass()


class TestClientsSecbroker(ClientTests, unittest.TestCase):
    BROKER = "secbroker"

    @classmethod
    def setUpClass(cls):
        need(SECBROKER)
        super().setUpClass()

    # secbroker's alerts are known exactly: the client must name them, even
    # when the broker hung up while the client was still sending.
    def test_untrusted_client_cert_names_the_alert(self):
        conn = self.tls(self.mtls_port) + ["--cert", self.certs["untrusted-client.crt"], "--key",
                                           self.certs["untrusted-client.key"]]
        res = self.pub(["-t", self.topic, "-m", "x"], conn=conn)
        self.assertFails(res, ["alert unknown_ca (48)"], 69)

    def test_missing_client_cert_names_the_alert(self):
        res = self.pub(["-t", self.topic, "-m", "x"], conn=self.tls(self.mtls_port))
        self.assertFails(res, ["alert handshake_failure (40)"], 69)


if __name__ == "__main__":
    unittest.main()
