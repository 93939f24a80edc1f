"""The lab kit (docs/lab.md): scripts/lab.sh SCENARIO run end to end, exactly as
students run it (`make lab-SCENARIO`), into a temporary lab directory with
certificates from scripts/mkcerts.sh. Each capture is then read with tshark and
checked against what the scenario is meant to show, and the broker's log
against the capture: the handshake trace (log_type tls) must list the same
handshake messages, in the same order, as tshark, and every refused handshake
must have its alert on the wire and its plain-words line in the log.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from brokerlib import RawClient, connect_packet  # noqa: E402
from mqttlib import need, sha6_line  # noqa: E402
from tlslib import BROKER_TLS13, TSHARK, make_certs, tshark_mqtt  # noqa: E402

LAB_SH = os.path.join(ROOT, "scripts", "lab.sh")
LAB_CONF = os.path.join(ROOT, "etc", "lab.conf")
BROKER_CONF = os.path.join(ROOT, "etc", "broker.conf")
BUILD = os.path.join(ROOT, "build")
SCENARIOS = ["plain", "tls", "mutual", "resume", "bad-version", "no-shared-cipher",
             "bad-client-cert", "no-client-cert", "plain-on-tls", "expired-client-cert", "revoked-client-cert"]

# handshake message names in the trace -> TLS handshake type numbers (tshark's
# tls.handshake.type)
HS_TYPES = {"ClientHello": 1, "ServerHello": 2, "NewSessionTicket": 4, "Certificate": 11,
            "ServerKeyExchange": 12, "CertificateRequest": 13, "ServerHelloDone": 14,
            "CertificateVerify": 15, "ClientKeyExchange": 16, "Finished": 20}
TRACE_RE = re.compile(r" tls: (127\.0\.0\.1:\d+): (<-|->) (\w+)")

CERTS = None
TMP = None


def setUpModule():
    global CERTS, TMP
    need("tshark")
    TMP = tempfile.mkdtemp(prefix="secbroker-lab-")
    CERTS = make_certs(os.path.join(TMP, "certs"))


def tearDownModule():
    if TMP and not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(TMP, ignore_errors=True)


def run_lab(*args, lab_dir=None):
    env = dict(os.environ, CERTS=CERTS["dir"], LAB_DIR=lab_dir or os.path.join(TMP, "lab"))
    p = subprocess.run(["sh", LAB_SH] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, cwd=ROOT, timeout=150)
    return p.returncode, p.stdout.decode(errors="replace")


_RUNS = {}


def run_scenario(name):
    """run_lab(name), once per module: (exit status, output)."""
    if name not in _RUNS:
        _RUNS[name] = run_lab(name)
    return _RUNS[name]


def tshark(pcap, *args):
    argv = [shutil.which("tshark") or TSHARK, "-r", pcap] + list(args)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(argv), p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class Scenario(unittest.TestCase):
    """Runs scripts/lab.sh SCENARIO once for the class; the tests read its output."""

    scenario = None

    @classmethod
    def setUpClass(cls):
        if cls.scenario is None:
            raise unittest.SkipTest("base class")
        cls.rc, cls.out = run_scenario(cls.scenario)
        cls.dir = os.path.join(TMP, "lab", cls.scenario)
        cls.pcap = os.path.join(cls.dir, "capture.pcapng")
        cls.keylog = os.path.join(cls.dir, "keylog.txt")
        with open(os.path.join(cls.dir, "broker.conf")) as f:
            cls.port = int(re.search(r"^listener (\d+)", f.read(), re.M).group(1))
        with open(os.path.join(cls.dir, "broker.log")) as f:
            cls.log = f.read()

    def setUp(self):
        self.assertEqual(self.rc, 0, "lab.sh %s failed:\n%s" % (self.scenario, self.out))

    # ---- helpers ----------------------------------------------------------------

    def decode_args(self, keys=True):
        a = ["-d", "tcp.port==%d,tls" % self.port, "-d", "tls.port==%d,mqtt" % self.port]
        if keys:
            a = ["-o", "tls.keylog_file:%s" % self.keylog] + a
        return a

    def fields(self, display_filter, *fields, keys=True):
        """[[field values]] per matching frame ("a,b" for repeated fields)."""
        args = self.decode_args(keys) + ["-Y", display_filter, "-T", "fields", "-E", "occurrence=a",
                                         "-E", "aggregator=,"]
        for f in fields:
            args += ["-e", f]
        return [l.split("\t") for l in tshark(self.pcap, *args).splitlines() if l.strip()]

    def streams(self):
        """{tcp.stream: [handshake types in wire order]} for the TLS streams,
        ordered by the client port (= the order the connections were made)."""
        by = {}
        for stream, sport, types in self.fields("tls.handshake.type", "tcp.stream", "tcp.srcport",
                                                "tls.handshake.type"):
            by.setdefault(int(stream), []).extend(int(t) for t in types.split(",") if t)
        return by

    def alerts_from_broker(self):
        rows = self.fields("tls.alert_message && tcp.srcport==%d" % self.port,
                           "tls.alert_message.level", "tls.alert_message.desc", keys=False)
        return [(int(l), int(d)) for l, d in rows]

    def trace(self):
        """{peer: [(arrow, message)]} from the broker's handshake trace."""
        by = {}
        for m in TRACE_RE.finditer(self.log):
            by.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
        return by

    def trace_lines(self, word):
        return [l for l in self.log.splitlines() if " tls: " in l and word in l]

    def assert_log(self, *words):
        for line in self.log.splitlines():
            if all(w in line for w in words):
                return line
        self.fail("no broker log line with %r in:\n%s" % (words, self.log))

    def assert_trace_matches_capture(self):
        """The trace of each connection lists the handshake messages tshark sees
        (with the key log, so that Finished is decrypted), in the same order."""
        peers = sorted(self.trace(), key=lambda p: int(p.rsplit(":", 1)[1]))
        wire = self.fields("tls.handshake.type", "tcp.srcport", "tcp.dstport", "tls.handshake.type")
        per_port = {}
        for sport, dport, types in wire:
            cport = int(dport) if int(sport) == self.port else int(sport)
            per_port.setdefault(cport, []).extend(int(t) for t in types.split(",") if t)
        self.assertTrue(peers, "no handshake trace in the broker log:\n%s" % self.log)
        for peer in peers:
            cport = int(peer.rsplit(":", 1)[1])
            traced = [HS_TYPES[m] for _, m in self.trace()[peer] if m in HS_TYPES]
            self.assertEqual(traced, per_port.get(cport), "trace of %s vs tshark" % peer)
        # the ServerHello line names the suite tshark shows (never "0x0000 (?)")
        shown = re.findall(r"Cipher Suite: (TLS_\w+) \(0x", tshark(self.pcap, "-V", "-Y", "tls.handshake.type==2",
                                                                   *self.decode_args()))
        self.assertTrue(shown)
        for line in self.trace_lines("-> ServerHello:"):
            self.assertNotIn("0x0000", line)
            self.assertNotIn("(?)", line)
            self.assertTrue(any("(%s)" % s in line for s in shown), "%s vs tshark %s" % (line, shown))

    def assert_mqtt_only_with_keys(self, topic, payload):
        rows = tshark_mqtt(self.pcap, self.port, keylog=self.keylog)
        self.assertIn(1, [r[0] for r in rows], "no MQTT CONNECT decoded: %r" % rows)
        self.assertIn((3, topic, payload), rows, "no MQTT PUBLISH decoded: %r" % rows)
        self.assertEqual(tshark_mqtt(self.pcap, self.port), [], "MQTT visible without the key log")
        with open(self.pcap, "rb") as f:
            self.assertNotIn(payload, f.read(), "the payload is in the capture in clear text")


class NonRootUser:
    """A throwaway user (useradd, userdel afterwards) with its own copy of the
    lab script, the binaries and the certificates in a directory it owns, so
    that the repository's own permissions do not matter."""

    def __init__(self, groups=()):
        self.name = "seclab%d%s" % (os.getpid(), "g" if groups else "")
        argv = ["useradd", "-M", "-s", "/bin/sh"]
        if groups:
            argv += ["-G", ",".join(groups)]
        p = subprocess.run(argv + [self.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise unittest.SkipTest("cannot create a user here (%s): %s" % (
                " ".join(argv + [self.name]), p.stdout.decode(errors="replace").strip()))
        self.home = tempfile.mkdtemp(prefix="secbroker-lab-user-")
        os.makedirs(os.path.join(self.home, "scripts"))
        shutil.copy(LAB_SH, os.path.join(self.home, "scripts"))
        os.makedirs(os.path.join(self.home, "build"))
        for b in ("secbroker", "secpub", "secsub"):
            shutil.copy(os.path.join(ROOT, "build", b), os.path.join(self.home, "build"))
        shutil.copytree(CERTS["dir"], os.path.join(self.home, "certs"))
        subprocess.run(["chown", "-R", self.name, self.home], check=True)

    def run_lab(self, scenario):
        env = dict(PATH=os.environ.get("PATH", "/usr/bin:/bin"), LANG="C")
        p = subprocess.run(["runuser", "-u", self.name, "--", "env"] + ["%s=%s" % kv for kv in env.items()]
                           + ["sh", os.path.join(self.home, "scripts", "lab.sh"), "-d",
                              os.path.join(self.home, "lab"), scenario],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.home, timeout=150)
        return p.returncode, p.stdout.decode(errors="replace")

    def remove(self):
        subprocess.run(["userdel", self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.home, ignore_errors=True)


def wireshark_group_exists():
    return subprocess.run(["getent", "group", "wireshark"], stdout=subprocess.DEVNULL).returncode == 0


class TestNonRootStudent(unittest.TestCase):
    """make lab-SCENARIO as a student who is not root (issue 16): a member of
    the wireshark group gets a capture; anybody else is told at once, before
    a broker starts, why not and what to do."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("not root: cannot create a throwaway user to run the lab as (CI runs tests as root)")
        if not shutil.which("useradd") or not shutil.which("runuser"):
            self.skipTest("useradd or runuser missing: cannot run the lab as another user")

    def assert_clear_refusal(self, user, rc, out):
        self.assertEqual(rc, 1, out)
        self.assertIn("lab.sh: you (%s) may not capture packets on the loopback interface lo: " % user.name, out)
        self.assertRegex(out, r"sudo usermod -aG wireshark %s, (then )?(and )?log out and in again" % user.name)
        # refused before anything started: no broker, no log, no capture
        self.assertFalse(os.path.exists(os.path.join(user.home, "lab", "tls", "broker.log")), out)

    def test_member_of_wireshark_group_captures(self):
        """deps.sh (make test) set dumpcap up for the wireshark group: a member
        runs the tls scenario and gets the capture, the key log and the log."""
        groups = ("wireshark",) if wireshark_group_exists() else ()
        user = NonRootUser(groups)
        self.addCleanup(user.remove)
        rc, out = user.run_lab("tls")
        if not groups:
            self.assert_clear_refusal(user, rc, out)
            self.assertIn("sudo sh scripts/deps.sh lab", out)
            return
        self.assertEqual(rc, 0, out)
        d = os.path.join(user.home, "lab", "tls")
        for f in ("capture.pcapng", "keylog.txt", "broker.log", "README.txt"):
            self.assertEqual(os.stat(os.path.join(d, f)).st_uid, int(subprocess.check_output(
                ["id", "-u", user.name])), f)
        with open(os.path.join(d, "broker.conf")) as f:
            port = int(re.search(r"^listener (\d+)", f.read(), re.M).group(1))
        rows = tshark_mqtt(os.path.join(d, "capture.pcapng"), port, keylog=os.path.join(d, "keylog.txt"))
        self.assertIn((3, "lab/tls", b"hello from the tls lab"), rows)

    def test_not_in_group_is_told_at_once(self):
        """A user outside the wireshark group: the script stops before starting
        the broker, with tshark's reason and the command that fixes it."""
        user = NonRootUser()
        self.addCleanup(user.remove)
        probe = subprocess.run(["runuser", "-u", user.name, "--", "dumpcap", "-L", "-i", "lo"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=user.home)
        if probe.returncode == 0:
            self.skipTest("dumpcap lets every user capture on this machine (not Debian's group setup)")
        rc, out = user.run_lab("tls")
        self.assert_clear_refusal(user, rc, out)


def free_port_both():
    """A port free on 127.0.0.1 and on ::1 right now."""
    while True:
        s6 = socket.socket(socket.AF_INET6)
        s6.bind(("::1", 0))
        port = s6.getsockname()[1]
        s4 = socket.socket()
        try:
            s4.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s4.close()
            s6.close()


class LabConfBroker:
    """build/secbroker -c (a copy of etc/lab.conf) in a directory laid out like
    the repository after `make certs` (certs/, lab/), each of the file's ports
    replaced by a free one (self.ports: {port in the file: port used})."""

    def __init__(self, conf_text):
        self.dir = tempfile.mkdtemp(prefix="secbroker-labconf-")
        os.symlink(CERTS["dir"], os.path.join(self.dir, "certs"))
        os.symlink(os.path.join(ROOT, "web"), os.path.join(self.dir, "web"))  # the dashboard's http_dir
        os.makedirs(os.path.join(self.dir, "lab"))
        self.ports = {}
        for p in re.findall(r"^listener (\d+)", conf_text, re.M):
            self.ports.setdefault(int(p), free_port_both())
        text = re.sub(r"^listener (\d+)", lambda m: "listener %d" % self.ports[int(m.group(1))], conf_text,
                      flags=re.M)
        with open(os.path.join(self.dir, "lab.conf"), "w") as f:
            f.write(text)
        self.out_path = os.path.join(self.dir, "stdout.txt")
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen([os.path.join(BUILD, "secbroker"), "-c", "lab.conf"], cwd=self.dir,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        self.wait_log(" running ")

    def log(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def wait_log(self, needle, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.log():
                return self.log()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no %r in the broker's output:\n%s" % (needle, self.log()))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def secpub(*args):
    p = subprocess.run([os.path.join(BUILD, "secpub")] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


class TestLabConf(unittest.TestCase):
    """etc/lab.conf, what `make run` starts: every port on 127.0.0.1 and ::1;
    8883 server-authenticated only, 8884 mutual with the CA's CRL."""

    @classmethod
    def setUpClass(cls):
        with open(LAB_CONF) as f:
            cls.b = LabConfBroker(f.read())
        cls.plain, cls.tls, cls.mutual = (cls.b.ports[p] for p in (1883, 8883, 8884))

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()

    def pub(self, host, port, *opts):
        return secpub("-h", host, "-p", str(port), *opts, "-t", "lab/x", "-m", "hello")

    def test_every_port_on_ipv6_and_ipv4(self):
        """A client that tries ::1 first (Node 18+ resolving localhost) gets
        the same service as one on 127.0.0.1; the server certificate names ::1."""
        ca = ("--cafile", CERTS["ca.crt"])
        client = ca + ("--cert", CERTS["client.crt"], "--key", CERTS["client.key"])
        for host in ("::1", "127.0.0.1"):
            for port, opts in ((self.plain, ()), (self.tls, ca), (self.mutual, client)):
                rc, out = self.pub(host, port, *opts)
                self.assertEqual(rc, 0, "%s port %d: %s" % (host, port, out))
        log = self.b.log()
        for port in (self.plain, self.tls, self.mutual):
            self.assertIn("listener on ::1 port %d" % port, log)
            self.assertIn("listener on 127.0.0.1 port %d" % port, log)
        self.assertIn("New client connected from [::1]:", log)

    def test_server_auth_port_sends_no_certificate_request(self):
        """8883 has no cafile: no CertificateRequest (openssl s_client would
        list "Acceptable client certificate CA names"); 8884 asks for one."""
        def s_client(port):
            # TLS 1.2: mbedTLS 3.6's TLS 1.3 CertificateRequest names no CAs
            p = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect", "127.0.0.1:%d" % port, "-servername",
                                "localhost", "-CAfile", CERTS["ca.crt"]], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            return p.stdout.decode(errors="replace")
        self.assertIn("No client certificate CA names sent", s_client(self.tls))
        out = s_client(self.mutual)
        self.assertIn("Acceptable client certificate CA names\nO = secbroker lab, CN = secbroker lab CA", out)

    def test_mutual_port_refuses_expired_and_revoked(self):
        """crlfile in lab.conf: the revoked certificate is refused like the
        expired one, each with its alert and its reason in the log."""
        for name, alert, reason in (
                ("expired-client", "certificate_expired (45)", "rejected: expired on 2020-02-01"),
                ("revoked-client", "certificate_revoked (44)", "rejected: revoked by its CA (listed in the CRL)"),
                ("untrusted-client", "unknown_ca (48)", "rejected: not signed by a trusted CA")):
            rc, out = self.pub("localhost", self.mutual, "--cafile", CERTS["ca.crt"], "--cert",
                               CERTS[name + ".crt"], "--key", CERTS[name + ".key"])
            self.assertNotEqual(rc, 0, out)
            self.assertIn("server sent alert %s" % alert, out)
            self.b.wait_log(reason)


class TestExampleConfigLogLevels(unittest.TestCase):
    """The failed-login slow-down and a refused protocol level are logged at
    levels etc/lab.conf and etc/broker.conf log (their log_type lines)."""

    def check(self, conf_path):
        with open(conf_path) as f:
            types = re.findall(r"^log_type \S+", f.read(), re.M)
        self.assertTrue(types, conf_path)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "passwd"), "w") as f:
                f.write(sha6_line("alice", "right"))
            conf = "\n".join(["allow_anonymous false", "password_file passwd", "log_dest stdout"] + types +
                              ["connection_messages true", "listener 1883 127.0.0.1", ""])
            b = LabConfBroker(conf.replace("password_file passwd", "password_file %s/passwd" % d))
            try:
                port = b.ports[1883]
                for attempt in range(2):
                    c = RawClient(port, timeout=60)
                    c.send(connect_packet("lab-bad%d" % attempt, username="alice", password="wrong"))
                    self.assertEqual(c.expect(2)[1][1], 4, "CONNACK: bad user name or password")
                    c.sock.close()
                b.wait_log("recent failed logins as 'alice' from this address, CONNECT held for")
                c = RawClient(port, timeout=60)
                c.send(connect_packet("lab-v7", username="alice", password="right", level=7))
                self.assertEqual(c.expect(2)[1][1], 1, "CONNACK: unacceptable protocol version")
                c.sock.close()
                b.wait_log("unsupported protocol level 7")
            finally:
                b.stop()

    def test_lab_conf(self):
        self.check(LAB_CONF)

    def test_broker_conf(self):
        self.check(BROKER_CONF)


GUIDE = os.path.join(ROOT, "docs", "lab.md")


def guide_commands():
    """[(line number, command)] of every ```sh block in docs/lab.md, a
    backslash-continued command joined into one."""
    cmds, block, pending = [], False, None
    with open(GUIDE) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("```"):
                block = line == "```sh"
                continue
            if not block:
                continue
            if pending:
                pending = (pending[0], pending[1] + " " + line.strip())
            elif line.strip() and not line.lstrip().startswith("#"):
                pending = (n, line.strip())
            else:
                continue
            if pending[1].endswith("\\"):
                pending = (pending[0], pending[1][:-1].rstrip())
            else:
                cmds.append(pending)
                pending = None
    return cmds


class TestGuide(unittest.TestCase):
    """Every command of docs/lab.md, in order, as a student pastes it, in a
    directory laid out like the repository (build/ and scripts/ linked, etc/
    with a copy of lab.conf): the guide's ports 1883, 8883 and 8884 become
    free ones, `make run` starts what it prints (build/secbroker -c
    etc/lab.conf), `make certs` runs scripts/mkcerts.sh, `make lab-X` must
    name a scenario tested above, a capture (`tshark -i lo ... -w FILE`) runs
    in the background until a later command reads FILE. "# exit status N"
    after a command is its expected exit status (0 otherwise). sudo lines:
    deps.sh lab is run when root; usermod is TestNonRootStudent's."""

    # expected text in what some commands print (command substring -> text)
    EXPECT = {
        "openssl x509 -in certs/server.crt": "IP Address:0:0:0:0:0:0:0:1",
        "tshark -r lab/plain.pcapng -Y mqtt -O mqtt": "Message: %s" % b"hello in clear text".hex(),
        "-o tls.keylog_file:lab/keylog.txt -Y mqtt -O mqtt": "Topic: lab/tls",
        "-e tls.handshake.extensions_server_name": "localhost",
        "rdnSequence: |dNSName: ": "rdnSequence: 2 items (id-at-commonName=localhost,id-at-organizationName=secbroker lab)",
        "-Y \"tls.handshake.type==13\" -O tls": "Distinguished Name: (id-at-commonName=secbroker lab CA",
        # streams 0 and 2 for a student; here the probe connections that
        # showed the capture was live come first (one, or more on a loaded
        # machine): the first and third s_client follow them
        "tshark -r lab/resume.pcapng": lambda t: "%d\n%d\n" % (t.probes["lab/resume.pcapng"],
                                                               t.probes["lab/resume.pcapng"] + 2),
        "-sess_in lab/sess.pem": "Reused, TLSv1.2",
        "-sess_in lab/sess-id.pem": "Reused, TLSv1.2",
        "-Y tls.alert_message": "\t70\n",
        "openssl verify -CAfile": "certificate revoked",
        "-cert certs/revoked-client.crt -key certs/revoked-client.key < /dev/null": "SSL alert number 44",
    }

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="secbroker-guide-")
        for d in ("build", "scripts", "web"):  # web: the dashboard listeners' http_dir
            os.symlink(os.path.join(ROOT, d), os.path.join(self.dir, d))
        os.makedirs(os.path.join(self.dir, "etc"))
        os.makedirs(os.path.join(self.dir, "lab"))
        self.ports = {p: free_port_both() for p in (1883, 8883, 8884, 8080, 8081)}
        with open(LAB_CONF) as f:
            conf = f.read()
        # log_type subscribe: the test waits for a background subscriber's
        # SUBSCRIBE in the log before the next command publishes
        self.assertIn("\n#log_type subscribe\n", conf)
        with open(os.path.join(self.dir, "etc", "lab.conf"), "w") as f:
            f.write(self.ported(conf).replace("\n#log_type subscribe\n", "\nlog_type subscribe\n"))
        self.procs = []       # (what, Popen) of background commands
        self.captures = {}    # file -> (Popen, port)
        self.probes = {}      # file -> probe connections captured before the guide's commands
        self.broker = None

    def tearDown(self):
        for _, p in self.procs + [(None, c[0]) for c in self.captures.values()]:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.broker:
            self.broker.terminate()
            self.broker.wait(timeout=30)
        if not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def ported(self, text):
        return re.sub(r"\b(1883|8883|8884|8080|8081)\b", lambda m: str(self.ports[int(m.group(1))]),
                      text)

    def sh(self, cmd, background=False):
        kw = dict(cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if background:
            return subprocess.Popen(["sh", "-c", cmd], start_new_session=True, **kw)
        p = subprocess.run(["sh", "-c", cmd], timeout=120, **kw)
        return p.returncode, p.stdout.decode(errors="replace")

    def start_capture(self, cmd):
        path = re.search(r" -w (\S+)", cmd).group(1)
        port = int(re.search(r"tcp port (\d+)", cmd).group(1))
        p = self.sh(cmd, background=True)
        self.captures[path] = (p, port)
        self.wait_syns(path, port)

    def syns(self, path, port):
        p = subprocess.run([shutil.which("tshark") or TSHARK, "-r", os.path.join(self.dir, path), "-Y",
                            "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==%d" % port, "-T", "fields",
                            "-e", "frame.number"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return len(p.stdout.split()) if p.returncode == 0 else -1

    def wait_syns(self, path, port):
        """A bare TCP connection to port; wait until its SYN is in the file
        (then the capture is live, and everything before it is on disk)."""
        before = max(self.syns(path, port), 0)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except OSError:
                pass
            time.sleep(0.3)
            if self.syns(path, port) > before:
                self.probes.setdefault(path, self.syns(path, port) - before)
                return
        self.fail("the capture %s never showed a connection to %d" % (path, port))

    def stop_capture(self, path):
        p, port = self.captures.pop(path)
        self.wait_background()
        self.wait_syns(path, port)
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=60)

    def wait_background(self):
        for what, p in self.procs:
            out = p.communicate(timeout=120)[0].decode(errors="replace")
            p.stdout.close()
            self.assertEqual(p.returncode, 0, "%s:\n%s" % (what, out))
        self.procs = []

    def start_broker(self):
        self.broker_out = os.path.join(self.dir, "broker.out")
        with open(self.broker_out, "w") as out:
            self.broker = subprocess.Popen([os.path.join(BUILD, "secbroker"), "-c", "etc/lab.conf"],
                                           cwd=self.dir, stdout=out, stderr=subprocess.STDOUT)
        with open(os.path.join(self.dir, "etc", "lab.conf")) as f:
            listeners = re.findall(r"^listener (\d+) (\S+)", f.read(), re.M)
        for port, host in ((int(p), h) for p, h in listeners):  # each address lab.conf names
            deadline = time.time() + 30
            while True:
                try:
                    socket.create_connection((host, port), timeout=5).close()
                    break
                except OSError:
                    self.assertLess(time.time(), deadline, "make run: nothing on %s port %d" % (host, port))
                    time.sleep(0.1)

    def subscriptions(self):
        if not self.broker:
            return 0
        with open(self.broker_out, errors="replace") as f:
            return f.read().count(" subscribed to ")

    def test_every_command_of_the_guide(self):
        cmds = guide_commands()
        self.assertGreater(len(cmds), 30)
        seen = set()
        for n, raw in cmds:
            where = "docs/lab.md:%d: %s" % (n, raw)
            m = re.search(r"\s+#\s*(.*)$", raw)
            cmd = raw[:m.start()] if m else raw
            want = int(re.search(r"exit status (\d+)", m.group(1)).group(1)) \
                if m and "exit status" in m.group(1) else 0
            cmd = self.ported(cmd.strip())
            if cmd.startswith("sudo usermod"):
                continue
            if cmd == "sudo sh scripts/deps.sh lab":
                if os.geteuid() == 0:
                    rc, out = self.sh("sh scripts/deps.sh lab")
                    self.assertEqual(rc, 0, "%s\n%s" % (where, out))
                continue
            self.assertFalse(cmd.startswith("sudo"), where)
            if cmd == "make run":
                self.start_broker()
                continue
            mk = re.fullmatch(r"make certs( KEY=rsa)?", cmd)
            if mk:
                rc, out = self.sh("sh scripts/mkcerts.sh %s" % ("certs-rsa rsa" if mk.group(1) else "certs"))
                self.assertEqual(rc, 0, "%s\n%s" % (where, out))
                continue
            mk = re.fullmatch(r"make lab-(\S+)", cmd)
            if mk:
                if mk.group(1) != "list":
                    self.assertIn(mk.group(1), SCENARIOS, where)
                    self.assertTrue([c for c in globals().values() if isinstance(c, type)
                                     and getattr(c, "scenario", None) == mk.group(1)], where)
                continue
            if cmd.startswith("tshark -i lo"):
                self.start_capture(cmd)
                continue
            for path in list(self.captures):
                if " %s" % path in cmd:
                    self.stop_capture(path)
            if cmd.startswith("tshark -r "):
                # what Wireshark knows of 1883 and 8883 (tshark -G decodes),
                # for the free ports standing in for them here
                known = "-d tcp.port==%d,mqtt -d tcp.port==%d,tls -d tls.port==%d,mqtt" % (
                    self.ports[1883], self.ports[8883], self.ports[8883])
                cmd = re.sub(r"^(tshark -r \S+)", lambda m: m.group(1) + " " + known, cmd)
            if cmd.endswith("&"):
                subscribed = self.subscriptions()
                self.procs.append((where, self.sh(cmd[:-1], background=True)))
                if "secsub" in cmd:
                    deadline = time.time() + 60
                    while self.subscriptions() == subscribed:
                        self.assertLess(time.time(), deadline, "%s: no SUBSCRIBE in the broker log" % where)
                        time.sleep(0.1)
                continue
            rc, out = self.sh(cmd)
            self.assertEqual(rc, want, "%s\nexit status %d:\n%s" % (where, rc, out))
            for key, text in self.EXPECT.items():
                if re.search(key if "|" in key else re.escape(key), raw):
                    if callable(text):
                        text = text(self)
                    self.assertIn(text, out, "%s\n%s" % (where, out[-3000:]))
                    seen.add(key)
        self.assertEqual(set(self.EXPECT) - seen, set(), "expected commands missing from the guide")


class TestGuideExcerpts(unittest.TestCase):
    """Each broker log line and client line docs/lab.md quotes (tls:, notice:,
    info:, secpub: lines in its output blocks) is what a scenario really
    prints, up to the port numbers."""

    PREFIXES = ("tls: ", "notice: ", "info: ", "secpub: ")

    @staticmethod
    def norm(line):
        return re.sub(r"(127\.0\.0\.1|\[::1\]):\d+", "ADDR", line.strip())

    def test_quoted_lines_are_real(self):
        quoted, block = [], None
        with open(GUIDE) as f:
            for n, line in enumerate(f, 1):
                if line.startswith("```"):
                    block = None if block is not None else line.strip()
                    continue
                if block == "```" and line.startswith(self.PREFIXES):
                    quoted.append((n, line))
        self.assertGreater(len(quoted), 20)
        real = ""
        for name in SCENARIOS:
            rc, out = run_scenario(name)
            self.assertEqual(rc, 0, out)
            for f in ("broker.log", "clients.txt"):
                with open(os.path.join(TMP, "lab", name, f), errors="replace") as fh:
                    real += "\n".join(self.norm(l) for l in fh.read().splitlines()) + "\n"
        wrong = ["docs/lab.md:%d: %s" % (n, l.strip()) for n, l in quoted if self.norm(l) not in real]
        self.assertEqual(wrong, [], "lines no scenario prints")


class TestListing(unittest.TestCase):

    def test_no_arguments_lists_the_scenarios(self):
        """sh scripts/lab.sh (what `make lab-list` runs with "list") names every scenario."""
        for args in ((), ("list",)):
            rc, out = run_lab(*args)
            self.assertEqual(rc, 0, out)
            for s in SCENARIOS:
                self.assertRegex(out, r"(?m)^  %s " % re.escape(s))

    def test_unknown_scenario(self):
        rc, out = run_lab("nonsense")
        self.assertEqual(rc, 2, out)
        self.assertIn("no scenario 'nonsense'", out)


class TestPlain(Scenario):
    scenario = "plain"

    def test_mqtt_in_clear_text(self):
        """Plain MQTT: tshark decodes CONNECT, SUBSCRIBE and both PUBLISH packets
        (publisher -> broker -> subscriber), topic and payload readable."""
        out = tshark(self.pcap, "-d", "tcp.port==%d,mqtt" % self.port, "-Y", "mqtt", "-T", "fields",
                     "-E", "occurrence=a", "-E", "aggregator=|", "-e", "mqtt.msgtype", "-e", "mqtt.topic")
        types = [int(t) for line in out.splitlines() for t in line.split("\t")[0].split("|") if t]
        self.assertEqual(types.count(3), 2, out)
        for t in (1, 2, 8, 9, 4, 14):
            self.assertIn(t, types, out)
        with open(self.pcap, "rb") as f:
            self.assertIn(b"hello from the plain lab", f.read())
        self.assertFalse(os.path.exists(self.keylog))
        self.assertIn("tcp.port==%d,mqtt" % self.port, self.out)


class TestTLS(Scenario):
    scenario = "tls"

    def test_mqtt_decrypted_with_keylog_only(self):
        self.assert_mqtt_only_with_keys("lab/tls", b"hello from the tls lab")

    def test_full_handshake_trace_matches_capture(self):
        """Two full handshakes (subscriber, publisher): ClientHello, ServerHello,
        Certificate, ServerKeyExchange, ServerHelloDone, ClientKeyExchange,
        Finished, NewSessionTicket, Finished on the wire and in the trace."""
        for types in self.streams().values():
            self.assertEqual(types, [1, 2, 11, 12, 14, 16, 20, 4, 20])
        self.assert_trace_matches_capture()
        curve = re.search(r"Named Curve: (\w+) \(0x", tshark(self.pcap, "-V", *self.decode_args())).group(1)
        for line in self.trace_lines("-> ServerKeyExchange"):
            self.assertIn("ECDHE on %s" % curve, line)
        self.assert_log("TLS handshake with", "full handshake", "no client certificate")

    def test_sniffer_without_keys_sees_sni_and_certificate(self):
        """Without keys: the SNI and the server certificate are readable."""
        sni = self.fields("tls.handshake.extensions_server_name", "tls.handshake.extensions_server_name",
                          keys=False)
        self.assertIn(["localhost"], sni)
        self.assertIn("SNI localhost", self.trace_lines("<- ClientHello")[0])

    def test_readme_says_what_to_open(self):
        for words in ("capture.pcapng", "keylog.txt", "broker.log",
                      "-o tls.keylog_file:", "-d tcp.port==%d,tls -d tls.port==%d,mqtt" % (self.port, self.port)):
            self.assertIn(words, self.out)


class TestMutual(Scenario):
    scenario = "mutual"

    def test_client_certificate_on_the_wire_and_in_the_trace(self):
        """CertificateRequest, the client's Certificate and CertificateVerify; the
        client certificate's CN is readable without keys; MQTT only with them."""
        for types in self.streams().values():
            self.assertEqual(types, [1, 2, 11, 12, 13, 14, 11, 16, 15, 20, 4, 20])
        self.assert_trace_matches_capture()
        self.assertTrue(self.trace_lines("<- Certificate: CN=labclient"))
        self.assertTrue(self.trace_lines("<- CertificateVerify: signed with"))
        self.assertTrue(self.trace_lines("-> CertificateRequest (client certificate required)"))
        with open(self.pcap, "rb") as f:
            self.assertIn(b"labclient", f.read())
        self.assert_mqtt_only_with_keys("lab/mutual", b"hello from the mutual lab")
        self.assert_log("TLS handshake with", "client certificate CN=labclient")


class TestResume(Scenario):
    scenario = "resume"

    def test_second_connection_has_no_certificate(self):
        """Connections 1 and 3 are full handshakes; 2 (ticket) and 4 (session id)
        are abbreviated: no Certificate (type 11), no key exchange."""
        streams = [t for _, t in sorted(self.streams().items())]
        self.assertEqual(len(streams), 4, streams)
        self.assertIn(11, streams[0])
        self.assertIn(11, streams[2])
        for i in (1, 3):
            self.assertNotIn(11, streams[i], "connection %d: %r" % (i + 1, streams[i]))
            self.assertNotIn(12, streams[i])
            self.assertEqual(streams[i], [1, 2, 20, 20])
        self.assertNotIn(4, streams[2], "a NewSessionTicket although the client said -no_ticket")
        self.assert_trace_matches_capture()
        self.assert_log("TLS handshake with", "resumed session (ticket)")
        self.assert_log("TLS handshake with", "resumed session (session id)")
        self.assertTrue(self.trace_lines("resuming the session (ticket accepted)"))
        self.assertTrue(self.trace_lines("resuming the session (session id found in the cache)"))
        # CONNECT, PUBLISH and DISCONNECT share one record here: ask for the
        # PUBLISH fields only
        rows = self.fields("mqtt.msgtype==3", "mqtt.topic", "mqtt.msg")
        self.assertEqual(rows, [["lab/resume", b"hello again".hex()]] * 4)


NEEDS_TLS13 = unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")


@NEEDS_TLS13
class TestTLS13(Scenario):
    scenario = "tls13"

    def test_mqtt_decrypted_with_keylog_only(self):
        self.assert_mqtt_only_with_keys("lab/tls13", b"hello from the tls13 lab")

    def test_certificate_encrypted_without_keys(self):
        """Without keys a sniffer sees ClientHello and ServerHello only; with the key
        log the rest of the flight appears: EncryptedExtensions (8), Certificate
        (11), CertificateVerify (15), Finished (20), NewSessionTicket (4)."""
        plain = self.fields("tls.handshake.type", "tls.handshake.type", keys=False)
        self.assertEqual(sorted({int(t) for r in plain for t in r[0].split(",") if t}), [1, 2])
        for types in self.streams().values():
            for t in (1, 2, 8, 11, 15, 20, 4):
                self.assertIn(t, types, types)
        with open(self.keylog) as f:
            labels = {l.split()[0] for l in f if l.strip()}
        self.assertEqual(labels, {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                  "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0",
                                  "EXPORTER_SECRET"})
        self.assert_log("TLS handshake with", "TLS 1.3", "full handshake")


@NEEDS_TLS13
class TestTLS13Resume(Scenario):
    scenario = "tls13-resume"

    def test_second_connection_resumed_without_certificate(self):
        """Two s_client -tls1_3 connections: the first full (Certificate in the
        decrypted handshake), the second resumed with the ticket: no Certificate."""
        streams = [t for _, t in sorted(self.streams().items())]
        self.assertEqual(len(streams), 2, streams)
        self.assertIn(11, streams[0])
        self.assertNotIn(11, streams[1])
        self.assert_log("TLS handshake with", "TLS 1.3", "resumed session (ticket)")
        self.assertIn("Reused, TLSv1.3", open(os.path.join(self.dir, "clients.txt")).read())


@NEEDS_TLS13
class TestTLS13Mutual(Scenario):
    scenario = "tls13-mutual"

    def test_client_certificate_only_with_keys(self):
        """The client's Certificate (CN=labclient) is readable with the key log and
        hidden without it; the broker logs the certificate."""
        subjects = self.fields("tls.handshake.type==11", "x509sat.uTF8String")
        self.assertTrue(any("labclient" in r[0] for r in subjects), subjects)
        self.assertEqual(self.fields("tls.handshake.type==11", "tls.handshake.type", keys=False), [])
        self.assert_log("TLS handshake with", "TLS 1.3", "client certificate CN=labclient")


class Refused(Scenario):
    """A refused handshake: the alert on the wire, the broker's line in the log."""

    def assert_alert(self, *descs):
        alerts = self.alerts_from_broker()
        self.assertEqual(len(alerts), 1, alerts)
        level, desc = alerts[0]
        self.assertEqual(level, 2, "not a fatal alert")
        self.assertIn(desc, descs)
        self.assertTrue(self.trace_lines("-> Alert: fatal, "), self.log)
        return desc


class TestBadVersion(Refused):
    scenario = "bad-version"

    def test_protocol_version_alert(self):
        """A client below the minimum gets alert protocol_version (70): a TLS 1.1
        ClientHello with mbedTLS 2.28; with TLS 1.3 (mbedTLS 3.6) a TLS 1.2-only
        client against a tlsv1.3 listener."""
        old, new = ("1.2", "1.3") if BROKER_TLS13 else ("1.1", "1.2")
        self.assertEqual(self.fields("tls.handshake.type==1", "tls.handshake.version", keys=False),
                         [["0x0303" if BROKER_TLS13 else "0x0302"]])
        self.assert_alert(70)
        self.assert_log("TLS handshake failed: client offered only TLS %s while the minimum is "
                        "TLS %s" % (old, new), "(sent alert protocol_version)")
        self.assertTrue(self.trace_lines("<- ClientHello: TLS %s" % old))
        self.assertIn("Broker said:", self.out)


class TestNoSharedCipher(Refused):
    scenario = "no-shared-cipher"

    def test_handshake_failure_alert(self):
        """A client offering only DHE-RSA-AES128-SHA256 (0x0067): handshake_failure (40)."""
        suites = self.fields("tls.handshake.type==1", "tls.handshake.ciphersuite", keys=False)
        self.assertEqual(len(suites), 1)
        self.assertIn("0x0067", suites[0][0].split(","))
        self.assert_alert(40)
        line = self.assert_log("TLS handshake failed: no cipher suite in common",
                               "(sent alert handshake_failure)")
        self.assertIn("client offered DHE-RSA-AES128-SHA256;", line)


class TestBadClientCert(Refused):
    scenario = "bad-client-cert"

    def test_unknown_ca_alert(self):
        """A client certificate from the untrusted CA: unknown_ca (48) or
        bad_certificate (42), after the client's Certificate message."""
        desc = self.assert_alert(48, 42)
        types = self.streams()[0]
        self.assertEqual(types.count(11), 2, "server and client Certificate: %r" % types)
        self.assertNotIn(20, types, "a Finished went by: %r" % types)
        self.assertTrue(self.trace_lines("<- Certificate: CN=labclient"))
        self.assert_log("TLS handshake failed: client certificate", "CN=labclient",
                        "not signed by a trusted CA", "untrusted lab CA",
                        "(sent alert %s)" % {48: "unknown_ca", 42: "bad_certificate"}[desc])


class TestNoClientCert(Refused):
    scenario = "no-client-cert"

    def test_alert_when_certificate_required(self):
        """No client certificate where one is required: an empty Certificate
        message, then a fatal alert (handshake_failure)."""
        self.assert_alert(40, 42, 116)
        lengths = self.fields("tls.handshake.type==11 && tcp.dstport==%d" % self.port,
                              "tls.handshake.certificates_length", keys=False)
        self.assertEqual(lengths, [["0"]])
        self.assert_log("TLS handshake failed: client sent no certificate, but this listener requires one")
        self.assertTrue(self.trace_lines("<- Certificate: empty"))


class TestExpiredClientCert(Refused):
    scenario = "expired-client-cert"

    def test_certificate_expired_alert(self):
        """The expired certificate (mkcerts.sh: 2020-01-01 to 2020-02-01) goes by
        in clear text; the broker answers certificate_expired (45)."""
        self.assert_alert(45)
        self.assertEqual(self.fields("tls.handshake.type==11 && tcp.dstport==%d" % self.port,
                                     "x509sat.uTF8String", keys=False), [["secbroker lab,secbroker lab CA,"
                                                                          "secbroker lab,expiredclient"]])
        self.assertTrue(self.trace_lines("<- Certificate: CN=expiredclient"))
        self.assert_log("TLS handshake failed: client certificate CN=expiredclient",
                        "expired on 2020-02-01 00:00:00 UTC", "(sent alert certificate_expired)")
        with open(os.path.join(self.dir, "clients.txt")) as f:
            self.assertIn("server sent alert certificate_expired (45)", f.read())


class TestRevokedClientCert(Refused):
    scenario = "revoked-client-cert"

    def test_certificate_revoked_alert_and_what_s_client_says(self):
        """crlfile lists the certificate: certificate_revoked (44). openssl
        s_client reports the alert in an error line, yet still prints "New,
        TLSv1.2" and "Verification: OK" (about the server's certificate), and
        exits 1."""
        self.assert_alert(44)
        self.assertTrue(self.trace_lines("<- Certificate: CN=revokedclient"))
        self.assert_log("TLS handshake failed: client certificate CN=revokedclient",
                        "revoked by its CA (listed in the CRL)", "(sent alert certificate_revoked)")
        with open(os.path.join(self.dir, "clients.txt")) as f:
            out = f.read()
        with open(os.path.join(self.dir, "broker.conf")) as f:
            self.assertIn("crlfile %s" % CERTS["ca.crl"], f.read())
        self.assertRegex(out, r"alert certificate revoked:.*SSL alert number 44")
        self.assertIn("Verification: OK", out)
        self.assertIn("New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256", out)
        self.assertIn("(exit status 1)", out)
        # the command line in clients.txt can be pasted: its stdin file exists
        cmd = re.search(r"^\$ (openssl s_client .*)$", out, re.M).group(1)
        self.assertTrue(os.path.exists(cmd.rsplit("< ", 1)[1]), cmd)


class TestPlainOnTLS(Scenario):
    scenario = "plain-on-tls"

    def test_plain_connect_on_tls_port(self):
        """Plain MQTT on the TLS port: a CONNECT on the wire, no TLS record, no
        alert, the broker closes; the log says plain MQTT on a TLS port."""
        out = tshark(self.pcap, "-d", "tcp.port==%d,mqtt" % self.port, "-Y", "mqtt", "-T", "fields",
                     "-e", "mqtt.msgtype")
        self.assertEqual(out.split(), ["1"])
        self.assertEqual(self.fields("tls.record.content_type", "frame.number"), [])
        fins = self.fields("tcp.flags.fin==1 && tcp.srcport==%d" % self.port, "frame.number", keys=False)
        self.assertTrue(fins, "the broker did not close the connection")
        self.assert_log("TLS handshake failed: client sent plain MQTT (CONNECT) on a TLS port")


if __name__ == "__main__":
    unittest.main(verbosity=2)
