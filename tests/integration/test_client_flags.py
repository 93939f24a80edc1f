"""The mosquitto_pub / mosquitto_sub flags of issue 16 in secpub / secsub,
secsub across a broker restart, the next address of a name, and secpasswd
-U / -H.

The flag tests run against Debian's mosquitto and build/secbroker (one class
each at the bottom); where mosquitto_sub has the same flag, its output is
compared with secsub's byte for byte. Timeouts are upper bounds for waiting,
never pass/fail timing.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import unittest

import mqttlib
from brokerlib import SECBROKER, free_port
from mqttlib import MOSQUITTO, SECPUB, SECSUB, StubBroker, Sub, TempDir, run
from mqttlib import need as tool
from tlslib import make_certs as _make_certs
from tlslib import tls_block


def have_secbroker():
    return os.path.exists(SECBROKER)


def make_broker(kind, conf="", listeners=None, plain=True, files=None):
    """Debian's mosquitto ("mosquitto") or build/secbroker ("secbroker") with
    the same Mosquitto-syntax config (mqttlib.make_broker)."""
    return mqttlib.make_broker(conf, binary=MOSQUITTO if kind == "mosquitto" else SECBROKER,
                               files=files, listeners=listeners, plain=plain)


def make_certs(d):
    return _make_certs(d, other=True)


def tls_listener(certs, server="server", cafile=True, require=False):
    extra = ("require_certificate true",) if require else ()
    return tls_block(certs, cafile=cafile, extra=extra, server=server)

SECPASSWD = os.path.join(os.path.dirname(SECPUB), "secpasswd")
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
PKI = {}

# one payload that exercises the JSON printer: nesting, empty containers,
# escapes, a surrogate pair, numbers cJSON prints differently from the text
JSON_PAYLOAD = (b'{"e":{},"a":[],"n":[{"z":1e3,"w":0.1, "t":true,"f":false,'
                b'"s":"\\u00e9\\n\\ud83d\\ude00"}], "big": 12345678901234567890, '
                b'"neg":-0.5, "i": -7}  ')


def setUpModule():
    PKI["dir"] = TempDir("secflags-pki-")
    PKI["certs"] = make_certs(os.path.join(PKI["dir"].path, "pki"))


def tearDownModule():
    if "dir" in PKI:
        PKI["dir"].cleanup()


def no_tst(data):
    """JSON output without the time stamps (they differ between two runs)."""
    return re.sub(rb'"tst":\s*"[^"]*"', b'"tst":T', data)


class FlagTests:
    """Subclasses choose the broker with BROKER."""
    BROKER = None

    @classmethod
    def setUpClass(cls):
        if not (os.path.exists(SECPUB) and os.path.exists(SECSUB)):
            raise unittest.SkipTest("build/secpub and build/secsub are not built")
        cls.certs = PKI["certs"]
        cls.broker = make_broker(cls.BROKER, listeners=[tls_listener(cls.certs)])
        cls.broker.start()
        cls.port, cls.tls_port = cls.broker.ports

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()

    def setUp(self):
        self.topic = "flags/%s/%s" % (self.BROKER, self._testMethodName)

    def plain(self):
        return ["-h", "127.0.0.1", "-p", str(self.port)]

    def pub(self, args, stdin=None):
        return run([SECPUB] + self.plain() + list(args), stdin=stdin)

    def pub_ok(self, args, stdin=None):
        rc, out, err = self.pub(args, stdin)
        self.assertEqual(rc, 0, "secpub %r failed: %s" % (args, err))
        return out

    def sub(self, args, exe=SECSUB, debug=True):
        argv = [exe] + self.plain() + list(args)
        if exe != SECSUB:
            stdbuf = tool("stdbuf")
            if stdbuf is None:
                self.skipTest("stdbuf (coreutils) is needed to read mosquitto_sub -d")
            argv = [stdbuf, "-oL"] + argv
        s = Sub(argv, debug=debug)
        self.addCleanup(s.kill)
        return s

    def clear_retained(self, *topics):
        for t in topics:
            self.pub(["-t", t, "-r", "-n"])

    # ---- -F -------------------------------------------------------------------
    def compare_format(self, fmt, payload, extra=()):
        """secsub and mosquitto_sub print one message with -F fmt: same bytes."""
        args = ["-t", self.topic, "-q", "1", "-C", "1", "-F", fmt] + list(extra)
        ours = self.sub(args)
        theirs = self.sub(args, exe=MOSQUITTO_SUB)
        ours.wait_subscribed()
        theirs.wait_subscribed()
        self.pub_ok(["-t", self.topic, "-q", "1", "-s"], stdin=payload)
        rc1, m1, e1 = ours.wait()
        rc2, m2, e2 = theirs.wait()
        self.assertEqual((rc1, rc2), (0, 0), (e1, e2))
        self.assertTrue(m1, e1)
        self.assertEqual(no_tst(b"\n".join(m1)), no_tst(b"\n".join(m2)), (fmt, extra))
        return m1

    def test_format_fields_like_mosquitto_sub(self):
        out = self.compare_format(r"[%t|%p|%q|%r|%m|%l|%x|%X|%%|@@|\t|%A%C%E|%5t|%-5t|%.2t|"
                                  r"%05l|%-5l|%5m|%05m|%10q]", b"h\xc3\xa9llo")
        self.assertIn(b"|68c3a96c6c6f|68C3A96C6C6F|", out[0])

    def test_format_json_like_mosquitto_sub(self):
        for fmt in ("%j", "%J"):
            for extra in ((), ("--pretty",)):
                self.compare_format(fmt, JSON_PAYLOAD, extra)
        self.compare_format("%j", b'quote " backslash \\ tab \t ctl \x01 end')

    def test_format_times(self):
        s = self.sub(["-t", self.topic, "-C", "1", "-F", "%I|%U|@Y-@m-@dT@H:@M:@S.@N|%l"])
        s.wait_subscribed()
        self.pub_ok(["-t", self.topic, "-m", "abc"])
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertRegex(msgs[0], rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}\|\d{10}\.\d{9}\|"
                                  rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\|3$")

    def test_format_json_payload_not_json(self):
        s = self.sub(["-t", self.topic, "-C", "2", "-F", "%J"])
        s.wait_subscribed()
        self.pub_ok(["-t", self.topic, "-m", "not json"])
        self.pub_ok(["-t", self.topic, "-m", "[1]"])
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertIn("not valid JSON on topic %s" % self.topic, err)
        self.assertEqual(len(msgs), 2)
        self.assertTrue(msgs[1].endswith(b'"payload":[1]}'), msgs)

    # ---- -T, -U, -E -------------------------------------------------------------
    def test_filter_out(self):
        s = self.sub(["-t", self.topic + "/#", "-T", self.topic + "/skip/#", "-v", "-C", "1"])
        s.wait_subscribed()
        self.pub_ok(["-t", self.topic + "/skip/x", "-m", "no"])
        self.pub_ok(["-t", self.topic + "/keep", "-m", "yes"])
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [(self.topic + "/keep yes").encode()]), err)

    def test_exit_after_subscribe(self):
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-E", "-d"])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"Subscribed (mid", out)

    def test_unsubscribe_persistent_session(self):
        cid = "flags-%s-%d" % (self.BROKER[:4], os.getpid())
        a, b = self.topic + "/a", self.topic + "/b"
        base = self.plain() + ["-c", "-i", cid, "-q", "1"]
        rc, out, err = run([SECSUB] + base + ["-t", a, "-E"])
        self.assertEqual(rc, 0, err)
        rc, out, err = run([SECSUB] + base + ["-t", b, "-U", a, "-E", "-d"])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"UNSUBSCRIBE", out)
        self.assertIn(b"UNSUBACK", out)
        self.pub_ok(["-t", a, "-q", "1", "-m", "to a"])
        self.pub_ok(["-t", b, "-q", "1", "-m", "to b"])
        rc, out, err = run([SECSUB] + base + ["-t", b, "-v", "-C", "1", "-W", "20"])
        self.assertEqual((rc, out), (0, ("%s to b\n" % b).encode()), err)
        run([SECSUB] + self.plain() + ["-i", cid, "-t", b, "-E"])  # clean session: drop it

    def test_unsubscribe_needs_topic(self):
        rc, out, err = run([SECSUB] + self.plain() + ["-U", self.topic, "-E"])
        self.assertEqual(rc, 64, err)

    # ---- retained -----------------------------------------------------------------
    def test_retained_only(self):
        t1, t2 = self.topic + "/1", self.topic + "/2"
        self.addCleanup(self.clear_retained, t1, t2)
        self.pub_ok(["-t", t1, "-r", "-q", "1", "-m", "one"])
        self.pub_ok(["-t", t2, "-r", "-q", "1", "-m", "two"])
        s = self.sub(["-t", self.topic + "/#", "-v", "--retained-only"])
        s.wait_subscribed()
        s.wait_line(lambda l: l.startswith(t2.encode()) or l.startswith(t1.encode()))
        self.pub_ok(["-t", self.topic + "/live", "-m", "fresh"])
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(msgs), [(t1 + " one").encode(), (t2 + " two").encode()])

    def test_remove_retained(self):
        t1, t2, t3 = self.topic + "/1", self.topic + "/2", self.topic + "/3"
        self.addCleanup(self.clear_retained, t1, t2, t3)
        self.pub_ok(["-t", t1, "-r", "-q", "1", "-m", "one"])
        self.pub_ok(["-t", t2, "-r", "-q", "1", "-m", "two"])
        # -R hides them, --remove-retained still clears them (mosquitto_sub(1))
        s = self.sub(["-t", self.topic + "/#", "-v", "--remove-retained", "-R", "-C", "1"])
        s.wait_subscribed()
        self.pub_ok(["-t", self.topic + "/live", "-m", "end"])
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.pub_ok(["-t", t3, "-r", "-q", "1", "-m", "three"])
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic + "/#", "-v", "-C", "1"])
        self.assertEqual((rc, out), (0, ("%s three\n" % t3).encode()), err)

    # ---- -L, -x, -M, -A, --quiet, --nodelay, --version ------------------------------
    def test_url(self):
        url = "mqtt://127.0.0.1:%d/%s" % (self.port, self.topic)
        s = Sub([SECSUB, "-L", url, "-v", "-C", "1"])
        self.addCleanup(s.kill)
        s.wait_subscribed()
        rc, out, err = run([SECPUB, "-L", url, "-m", "via url", "-q", "1"])
        self.assertEqual(rc, 0, err)
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [("%s via url" % self.topic).encode()]), err)

    def test_url_mqtts(self):
        url = "mqtts://localhost:%d/%s" % (self.tls_port, self.topic)
        rc, out, err = run([SECPUB, "-L", url, "--cafile", self.certs["ca.crt"], "-m", "x", "-d"])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"TLS handshake", out)

    def test_session_expiry_accepted_with_311(self):
        self.pub_ok(["-t", self.topic, "-m", "x", "-x", "60"])
        rc, out, err = run([SECSUB] + self.plain() + ["-t", self.topic, "-x", "-1", "-E"])
        self.assertEqual(rc, 0, err)

    def test_max_inflight(self):
        s = self.sub(["-t", self.topic, "-q", "1", "-C", "30"])
        s.wait_subscribed()
        data = "".join("m%d\n" % i for i in range(30)).encode()
        out = self.pub_ok(["-t", self.topic, "-q", "1", "-l", "-M", "1", "-d"], stdin=data)
        # with a window of one, every PUBLISH after the first waits for a PUBACK
        kinds = [l.split()[3] for l in out.decode().splitlines()
                 if l.split()[2:3] in (["sending"], ["received"]) and
                 l.split()[3] in ("PUBLISH", "PUBACK")]
        self.assertEqual(kinds, ["PUBLISH", "PUBACK"] * 30)
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [("m%d" % i).encode() for i in range(30)]), err)

    def test_nodelay_and_bind_address(self):
        s = self.sub(["-t", self.topic, "-C", "1", "-A", "127.0.0.1", "--nodelay"])
        s.wait_subscribed()
        self.pub_ok(["-t", self.topic, "-m", "bound", "-A", "127.0.0.1", "--nodelay"])
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"bound"]), err)


class TestClientFlagsMosquitto(FlagTests, unittest.TestCase):
    BROKER = "mosquitto"

    @classmethod
    def setUpClass(cls):
        assert os.path.exists(MOSQUITTO), "Debian's mosquitto is not installed"
        super().setUpClass()


class TestClientFlagsSecbroker(FlagTests, unittest.TestCase):
    BROKER = "secbroker"

    @classmethod
    def setUpClass(cls):
        assert have_secbroker(), "build/secbroker does not exist (run make)"
        super().setUpClass()


class TestClientFlagsStandalone(unittest.TestCase):
    """Usage errors, -L parsing, -A, --quiet and --version: no real broker."""

    def setUp(self):
        self.topic = "flags/standalone/%s" % self._testMethodName

    def test_format_errors(self):
        for fmt, words in (("%i", "invalid format specifier '%i'"), ("x%", "incomplete"),
                           ("@", "incomplete"), ("\\q", "invalid escape"), ("a\\", "incomplete")):
            rc, out, err = run([SECSUB, "-p", str(free_port()), "-t", "a", "-F", fmt])
            self.assertEqual(rc, 64, (fmt, err))
            self.assertIn(words, err, fmt)

    def test_usage_errors_of_new_flags(self):
        for exe, args in ((SECSUB, ["-t", "a", "-T", "a/#/b"]), (SECSUB, ["-t", "a", "-U", "+x"]),
                          (SECSUB, ["-t", "a", "-R", "--retained-only"]),
                          (SECPUB, ["-t", "a", "-m", "x", "-M", "0"]),
                          (SECPUB, ["-t", "a", "-m", "x", "-x", "x"]),
                          (SECPUB, ["-L", "http://h/t", "-m", "x"]),
                          (SECPUB, ["-L", "mqtt://h", "-m", "x"]),
                          (SECPUB, ["-L", "mqtt://h:99999/t", "-m", "x"]),
                          (SECPUB, ["-L", "mqtt:///t", "-m", "x"])):
            rc, out, err = run([exe] + args)
            self.assertEqual(rc, 64, (args, err))
            self.assertEqual(len(err.strip().splitlines()), 1, (args, err))

    def test_url_user_password_port(self):
        stub = StubBroker()
        try:
            rc, out, err = run([SECPUB, "-L", "mqtt://us:p:w@127.0.0.1:%d/url/topic" % stub.port,
                                "-i", "cid", "-m", "x"])
            self.assertEqual(rc, 0, err)
            self.assertTrue(stub.connects[0].endswith(b"\x00\x03cid\x00\x02us\x00\x03p:w"),
                            stub.connects[0])
        finally:
            stub.stop()

    def test_url_ipv6(self):
        try:
            stub = StubBroker(host="::1")
        except OSError:
            self.skipTest("no IPv6 loopback")
        try:
            rc, out, err = run([SECPUB, "-L", "mqtt://[::1]:%d/t" % stub.port, "-m", "x"])
            self.assertEqual(rc, 0, err)
        finally:
            stub.stop()

    def test_bind_address_is_used(self):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(30)
        peers = []

        def accept():
            try:
                c, addr = srv.accept()
                peers.append(addr[0])
                c.close()
            except OSError:
                pass
        t = threading.Thread(target=accept, daemon=True)
        t.start()
        rc, out, err = run([SECPUB, "-h", "127.0.0.1", "-p", str(srv.getsockname()[1]), "-A",
                            "127.0.0.2", "-t", "a", "-m", "x"])
        t.join(30)
        srv.close()
        self.assertEqual(peers, ["127.0.0.2"], err)
        rc, out, err = run([SECPUB, "-h", "127.0.0.1", "-p", str(free_port()), "-A",
                            "192.0.2.1", "-t", "a", "-m", "x"])
        self.assertEqual(rc, 69, err)
        self.assertIn("cannot bind to -A 192.0.2.1", err)

    def test_quiet(self):
        port = str(free_port())
        rc, out, err = run([SECPUB, "-p", port, "-t", "a", "-m", "x"])
        self.assertEqual(rc, 69)
        self.assertIn("connection refused", err)
        for exe, args in ((SECPUB, ["-t", "a", "-m", "x"]), (SECSUB, ["-t", "a"])):
            rc, out, err = run([exe, "-p", port, "--quiet"] + args)
            self.assertEqual((rc, err), (69, ""))
        rc, out, err = run([SECPUB, "--quiet", "-t", "a"])  # usage errors still speak
        self.assertEqual(rc, 64)
        self.assertTrue(err)

    def test_version(self):
        rc, out, err = run([SECBROKER, "--version"])
        want = re.search(rb"(\d+\.\d+\.\d+)", out + err.encode()).group(1)
        for exe, name in ((SECPUB, b"secpub"), (SECSUB, b"secsub")):
            rc, out, err = run([exe, "--version"])
            self.assertEqual(rc, 0, err)
            self.assertTrue(out.startswith(name + b" version " + want + b" "), out)
            self.assertIn(b"MQTT 5.0, 3.1.1 and 3.1", out)

    def test_help_lists_new_flags(self):
        for exe in (SECPUB, SECSUB):
            rc, out, err = run([exe, "--help"])
            for flag in ("-L", "-A", "-x", "--nodelay", "--quiet", "--version"):
                self.assertRegex(out, rb"\s" + re.escape(flag.encode()) + rb"[ ,\n]", (exe, flag))
        rc, out, err = run([SECPUB, "--help"])
        self.assertRegex(out, rb"\s-M ")
        rc, out, err = run([SECSUB, "--help"])
        for flag in ("-F", "-T", "-U", "-E", "--pretty", "--retained-only", "--remove-retained"):
            self.assertRegex(out, rb"\s" + re.escape(flag.encode()) + rb"[ ,\n]", flag)


class TestSecsubReconnect(unittest.TestCase):
    """secsub keeps printing across a broker restart on the same port."""

    def test_broker_restart(self):
        assert have_secbroker(), "build/secbroker does not exist (run make)"
        b = make_broker("secbroker")
        b.start()
        self.addCleanup(b.cleanup)
        topic = "flags/reconnect"
        conn = ["-h", "127.0.0.1", "-p", str(b.port)]
        s = Sub([SECSUB] + conn + ["-t", topic, "-q", "1", "-v", "-C", "2", "-k", "5"])
        self.addCleanup(s.kill)
        s.wait_subscribed()
        rc, out, err = run([SECPUB] + conn + ["-t", topic, "-q", "1", "-m", "before"])
        self.assertEqual(rc, 0, err)
        s.wait_line(lambda l: l == b"flags/reconnect before")
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        b.stop()
        b.start()  # same config, same port
        # a second SUBACK says secsub is back
        s.wait_line(lambda l: len([x for x in s.lines if x.startswith(b"Subscribed")]) >= 2)
        rc, out, err = run([SECPUB] + conn + ["-t", topic, "-q", "1", "-m", "after"])
        self.assertEqual(rc, 0, err)
        rc, msgs, err = s.wait()
        self.assertEqual(rc, 0, err)
        self.assertEqual(msgs, [b"flags/reconnect before", b"flags/reconnect after"])
        self.assertIn("connecting again", err)


class TestNextAddress(unittest.TestCase):
    """A name with ::1 and 127.0.0.1, the broker only on 127.0.0.1: both
    clients pass over the refusing ::1 (a private /etc/hosts in a mount
    namespace gives the name both addresses)."""

    def setUp(self):
        self.tmp = TempDir("secflags-hosts-")
        self.addCleanup(self.tmp.cleanup)
        self.hosts = os.path.join(self.tmp.path, "hosts")
        with open(self.hosts, "w") as f:
            f.write("::1 dualhost\n127.0.0.1 dualhost\n")
        unshare = tool("unshare")
        probe = None
        if unshare is not None:
            probe = subprocess.run([unshare, "-rm", "sh", "-c",
                                    'mount --bind "$1" /etc/hosts && getent ahosts dualhost',
                                    "sh", self.hosts], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        if probe is None or probe.returncode != 0 or b"::1" not in probe.stdout:
            self.skipTest("cannot give a name two addresses here (needs unshare -rm: user and "
                          "mount namespaces)")
        self.unshare = unshare

    def in_ns(self, argv):
        return [self.unshare, "-rm", "sh", "-c", 'mount --bind "$1" /etc/hosts && shift && '
                'exec "$@"', "sh", self.hosts] + argv

    def test_next_address_after_refusal(self):
        assert have_secbroker(), "build/secbroker does not exist (run make)"
        b = make_broker("secbroker")
        b.start()
        self.addCleanup(b.cleanup)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s6.connect(("::1", b.port))
            self.skipTest("something listens on [::1]:%d" % b.port)
        except OSError:
            pass
        finally:
            s6.close()
        conn = ["-h", "dualhost", "-p", str(b.port)]
        s = Sub(self.in_ns([SECSUB] + conn + ["-t", "flags/dual", "-C", "1"]))
        self.addCleanup(s.kill)
        s.wait_subscribed()
        rc, out, err = run(self.in_ns([SECPUB] + conn + ["-t", "flags/dual", "-m", "x", "-d"]))
        self.assertEqual(rc, 0, err)
        self.assertIn(b"::1 port %d: Connection refused" % b.port, out)
        rc, msgs, err = s.wait()
        self.assertEqual((rc, msgs), (0, [b"x"]), err)
        b.stop()
        rc, out, err = run(self.in_ns([SECPUB] + conn + ["-t", "flags/dual", "-m", "x"]))
        self.assertEqual(rc, 69)
        self.assertIn("(tried ::1, 127.0.0.1)", err)


class TestSecpasswdHashes(unittest.TestCase):
    """secpasswd -U and -H: the files work with secbroker and mosquitto."""

    def setUp(self):
        if not os.path.exists(SECPASSWD):
            self.skipTest("build/secpasswd is not built")
        self.tmp = TempDir("secflags-pw-")
        self.addCleanup(self.tmp.cleanup)
        self.path = os.path.join(self.tmp.path, "passwd")

    def login_works(self, kind, users):
        b = make_broker(kind, conf="allow_anonymous false\npassword_file %s\n" % self.path)
        b.start()
        self.addCleanup(b.cleanup)
        for user, pw, ok in users:
            rc, out, err = run([SECPUB, "-h", "127.0.0.1", "-p", str(b.port), "-t", "pw/t",
                                "-m", "x", "-u", user, "-P", pw])
            self.assertEqual(rc == 0, ok, (kind, user, pw, err))
        b.cleanup()

    def test_upgrade_clear_text_file(self):
        with open(self.path, "w") as f:
            f.write("# the users\nalice:secret one\n\nbob:pa:ss\r\n")
        os.chmod(self.path, 0o640)
        rc = subprocess.run([SECPASSWD, "-U", self.path], stderr=subprocess.PIPE)
        self.assertEqual(rc.returncode, 0, rc.stderr)
        text = open(self.path).read()
        self.assertNotIn("secret", text)
        self.assertTrue(text.startswith("# the users\nalice:$7$101$"), text)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)
        users = [("alice", "secret one", True), ("bob", "pa:ss", True), ("bob", "pa", False)]
        for kind in ("secbroker", "mosquitto"):
            self.login_works(kind, users)
        # a second -U keeps the hashes (and says so) instead of hashing them again
        rc = subprocess.run([SECPASSWD, "-U", self.path], stderr=subprocess.PIPE)
        self.assertEqual(rc.returncode, 0)
        self.assertIn(b"already hashed", rc.stderr)
        self.assertEqual(open(self.path).read(), text)

    def test_hash_choice(self):
        subprocess.run([SECPASSWD, "-c", "-b", "-H", "sha512", self.path, "old", "pw6"],
                       check=True)
        subprocess.run([SECPASSWD, "-b", "-H", "sha512-pbkdf2", self.path, "new", "pw7"],
                       check=True)
        lines = open(self.path).read().splitlines()
        self.assertRegex(lines[0], r"^old:\$6\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{88}$")
        self.assertRegex(lines[1], r"^new:\$7\$101\$")
        users = [("old", "pw6", True), ("new", "pw7", True), ("old", "pw7", False)]
        for kind in ("secbroker", "mosquitto"):
            self.login_works(kind, users)
        rc = subprocess.run([SECPASSWD, "-b", "-H", "md5", self.path, "x", "y"],
                            stderr=subprocess.PIPE)
        self.assertEqual(rc.returncode, 1)
        self.assertIn(b"-H wants sha512-pbkdf2 or sha512", rc.stderr)


if __name__ == "__main__":
    unittest.main()
