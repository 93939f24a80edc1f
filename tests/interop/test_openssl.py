"""`openssl s_client` (OpenSSL 3.0) against secbroker's TLS listeners: the
handshake verifies the lab certificate, the protocol version and cipher suite
are the ones the listener is configured for (`ciphers`, `tls_version`), an
MQTT CONNECT through s_client gets CONNACK 0, and on a require_certificate
listener an untrusted client certificate (and no certificate) is refused
while the lab client certificate passes.

s_client runs through tlslib.s_client (stdin EOF: it closes right after the
handshake). Timeouts are upper bounds only.
"""
import re
import subprocess

from interoplib import InteropCase, certs, feature, openssl_version, tls_block
from mqttlib import WAIT, connect_packet, log_tail, start_broker, uid, wait_log
from tlslib import BROKER_TLS13, s_client

AES128 = "ECDHE-ECDSA-AES128-GCM-SHA256"
CHACHA = "ECDHE-ECDSA-CHACHA20-POLY1305"
# README: the default is ECDHE with AES-GCM or ChaCha20-Poly1305 only
DEFAULT_SUITES = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")


def session(out):
    """(protocol, cipher) from s_client's "New, TLSv1.2, Cipher is X" and its
    SSL-Session block; asserts they agree."""
    m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    p = re.search(r"^\s+Protocol\s*:\s*(\S+)", out, re.M)
    c = re.search(r"^\s+Cipher\s*:\s*(\S+)", out, re.M)
    if not (m and p and c):
        raise AssertionError("s_client printed no session:\n%s" % out)
    if (m.group(1), m.group(2)) != (p.group(1), c.group(1)):
        raise AssertionError("s_client session lines disagree:\n%s" % out)
    return m.group(1), m.group(2)


class TestOpenSSL(InteropCase):
    """One secbroker, four TLS listeners: default settings, `ciphers` AES128-GCM,
    `ciphers` ChaCha20 (all three server-verified only) and a mutual-TLS one."""

    @classmethod
    def peer(cls):
        return "openssl s_client %s" % openssl_version()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = start_broker(cls, plain=False, listeners=[
            tls_block(),
            tls_block(extra=["ciphers %s" % AES128]),
            tls_block(extra=["ciphers %s" % CHACHA, "tls_version tlsv1.2"]),
            tls_block(cafile=True, require=True)])
        cls.default, cls.aes128, cls.chacha, cls.mutual = cls.broker.ports

    def verified(self, port, *args):
        """s_client verifying the server as localhost against the lab CA; TLS 1.2
        unless args name a version (these cases are about TLS 1.2's suites)."""
        argv = ["-CAfile", certs()["ca.crt"], "-servername", "localhost", "-verify_hostname",
                "localhost", "-verify_return_error"] + list(args)
        if not any(a in ("-tls1_1", "-tls1_2", "-tls1_3") for a in args):
            argv.append("-tls1_2")
        rc, out = s_client(port, *argv)
        return rc, out

    def ok(self, port, *args):
        rc, out = self.verified(port, *args)
        self.assertEqual(rc, 0, "s_client %s failed:\n%s\n%s" % (" ".join(args), out,
                                                                 log_tail(self.broker)))
        self.assertIn("Verify return code: 0 (ok)", out)
        return session(out)

    @feature("handshake, server certificate verified (defaults)")
    def test_default_listener(self):
        """Default listener: the lab certificate verifies for localhost, TLS 1.2, an
        ECDHE AEAD suite; the broker logs the same version and suite."""
        off = len(self.broker.log())
        proto, cipher = self.ok(self.default)
        self.assertEqual(proto, "TLSv1.2")
        self.assertRegex(cipher, DEFAULT_SUITES)
        wait_log(self.broker, "TLS handshake with", "TLS 1.2", cipher, offset=off)

    @feature("ciphers ECDHE-ECDSA-AES128-GCM-SHA256")
    def test_configured_cipher_aes128(self):
        """`ciphers ECDHE-ECDSA-AES128-GCM-SHA256`: s_client (offering its whole
        default list) reports exactly that suite and TLSv1.2."""
        self.assertEqual(self.ok(self.aes128), ("TLSv1.2", AES128))

    @feature("ciphers ECDHE-ECDSA-CHACHA20-POLY1305")
    def test_configured_cipher_chacha(self):
        """`ciphers ECDHE-ECDSA-CHACHA20-POLY1305` + `tls_version tlsv1.2`: s_client
        reports that suite and TLSv1.2."""
        self.assertEqual(self.ok(self.chacha), ("TLSv1.2", CHACHA))

    @feature("ciphers: a suite outside the list refused")
    def test_cipher_outside_list_refused(self):
        """s_client offering only ECDHE-ECDSA-AES256-GCM-SHA384 to the AES128-only
        listener: alert handshake failure."""
        rc, out = self.verified(self.aes128, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("alert handshake failure", out)

    @feature("TLS 1.3 handshake (s_client -tls1_3)")
    def test_tls13_handshake(self):
        """s_client -tls1_3 against the default listener on a TLS 1.3 build: a full
        TLS 1.3 handshake with a TLS 1.3 suite, the server verified; the broker logs
        TLS 1.3. (On mbedTLS 2.28 the next case checks the refusal instead.)"""
        if not BROKER_TLS13:
            self.skipTest("this build has no TLS 1.3 (make MBEDTLS=system)")
        off = len(self.broker.log())
        rc, out = self.verified(self.default, "-tls1_3")
        self.assertEqual(rc, 0, out)
        self.assertIn("Verify return code: 0 (ok)", out)
        m = re.search(r"^New, TLSv1\.3, Cipher is (TLS_AES_(128|256)_GCM_SHA(256|384)|"
                      r"TLS_CHACHA20_POLY1305_SHA256)$", out, re.M)
        self.assertTrue(m, out)
        wait_log(self.broker, "TLS handshake with", "TLS 1.3", m.group(1), offset=off)

    @feature("TLS 1.3 client, mutual TLS without certificate: certificate_required")
    def test_tls13_mutual_no_certificate(self):
        """s_client -tls1_3 without -cert on the require_certificate listener: alert
        certificate_required (116); the broker says a certificate is required."""
        if not BROKER_TLS13:
            self.skipTest("this build has no TLS 1.3 (make MBEDTLS=system)")
        off = len(self.broker.log())
        # the alert follows the client's Finished: keep reading until the broker closes
        rc, out = self.verified(self.mutual, "-tls1_3", "-ign_eof")
        self.assertIn("alert certificate required", out, "s_client output")
        wait_log(self.broker, "TLS handshake failed", "client sent no certificate",
                 "(sent alert certificate_required)", offset=off)

    @feature("TLS 1.3-only client refused (mbedTLS 2.28 server: TLS 1.2)")
    def test_tls13_only_refused(self):
        """s_client -tls1_3 offers only TLS 1.3 suites, which a TLS 1.2 server cannot
        pick: alert handshake failure, and the log says TLS 1.3 only; -tls1_2 works."""
        if BROKER_TLS13:
            self.skipTest("this build speaks TLS 1.3 (test_tls13_handshake)")
        off = len(self.broker.log())
        rc, out = self.verified(self.default, "-tls1_3")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("alert handshake failure", out)
        wait_log(self.broker, "TLS handshake failed", "client offered only TLS 1.3", offset=off)
        self.assertEqual(self.ok(self.default, "-tls1_2")[0], "TLSv1.2")

    @feature("MQTT CONNECT through s_client")
    def test_mqtt_connect_through_s_client(self):
        """CONNECT then DISCONNECT written through s_client -quiet: the broker answers
        CONNACK 0 (20 02 00 00) and closes."""
        cid = uid("s_client")
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.default, "-quiet",
                "-CAfile", certs()["ca.crt"], "-verify_return_error"]
        p = subprocess.run(argv, input=connect_packet(client_id=cid) + b"\xe0\x00",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=WAIT)
        self.assertTrue(p.stdout.startswith(b"\x20\x02\x00\x00"),
                        "no CONNACK 0 through s_client: stdout %r stderr %r\n%s" % (
                            p.stdout, p.stderr[-1500:], log_tail(self.broker)))
        wait_log(self.broker, "New client connected from", cid)

    @feature("mutual TLS: trusted client certificate accepted")
    def test_mutual_trusted_certificate(self):
        """-cert client.crt -key client.key on the require_certificate listener:
        handshake completes; the broker logs CN=labclient."""
        off = len(self.broker.log())
        self.assertEqual(self.ok(self.mutual, "-cert", certs()["client.crt"], "-key",
                                 certs()["client.key"])[0], "TLSv1.2")
        wait_log(self.broker, "TLS handshake with", "CN=labclient", offset=off)

    @feature("mutual TLS: untrusted client certificate refused")
    def test_mutual_untrusted_certificate_refused(self):
        """-cert untrusted-client.crt (signed by a CA the listener does not trust):
        s_client gets alert unknown ca; the broker logs why, naming the issuer."""
        off = len(self.broker.log())
        rc, out = self.verified(self.mutual, "-cert", certs()["untrusted-client.crt"], "-key",
                                certs()["untrusted-client.key"])
        self.assertNotEqual(rc, 0, "s_client exit status")
        self.assertIn("alert unknown ca", out, "s_client output")
        wait_log(self.broker, "TLS handshake failed", "not signed by a trusted CA",
                 "untrusted lab CA", offset=off)

    @feature("mutual TLS: no client certificate refused")
    def test_mutual_no_certificate_refused(self):
        """No -cert on the require_certificate listener: alert handshake failure."""
        off = len(self.broker.log())
        rc, out = self.verified(self.mutual)
        self.assertNotEqual(rc, 0, "s_client exit status")
        self.assertIn("alert handshake failure", out, "s_client output")
        wait_log(self.broker, "TLS handshake failed", "client sent no certificate", offset=off)
