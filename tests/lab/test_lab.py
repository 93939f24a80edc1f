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
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from tlslib import BROKER_TLS13, TSHARK, make_certs, tshark_mqtt  # noqa: E402

LAB_SH = os.path.join(ROOT, "scripts", "lab.sh")
SCENARIOS = ["plain", "tls", "mutual", "resume", "bad-version", "no-shared-cipher",
             "bad-client-cert", "no-client-cert", "plain-on-tls"]

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
    if not shutil.which("tshark"):
        raise unittest.SkipTest("tshark not installed (make test installs it)")
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
        cls.rc, cls.out = run_lab(cls.scenario)
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
