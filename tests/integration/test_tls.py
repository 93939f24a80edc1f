"""TLS listeners of build/secbroker (tls/, mbedTLS 2.28) against real peers:
Python's ssl and paho-mqtt, openssl s_client, Debian's mosquitto_pub/_sub
and tshark.

The lab PKI comes from scripts/mkcerts.sh (once per module). Every refused
handshake is checked twice: the TLS alert the peer received on the wire
(RFC 5246 section 7.2) and the broker's one-line reason in plain words
(tls_conn_error(), logged at notice level by broker/conn.c).

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import time
import unittest

from mqttlib import (CONNACK, SECPUB, SECSUB, WAIT, Client, Sub, connect, connect_packet, log_lines,
                     log_offset, make_broker, publish, recv_publish, run, subscribe, uid,
                     wait_log_line)
from tlslib import (BROKER_MAX_TLS, BROKER_TLS13, KEYLOG_LINE, TLS13_LABELS, Capture, PahoWaiter,
                    TLSClient, client_context, handshake_failure,
                    make_certs, paho_client, s_client, tls_block, tshark_mqtt)

CERTS = None
CERT_DIR = None


def setUpModule():
    global CERTS, CERT_DIR
    CERT_DIR = tempfile.mkdtemp(prefix="secbroker-tls-certs-")
    CERTS = make_certs(CERT_DIR)


def tearDownModule():
    if CERT_DIR and not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(CERT_DIR, ignore_errors=True)


def start(cls_or_tc, conf="", listeners=(), plain=True, files=None, per_class=False):
    b = make_broker(conf, listeners=list(listeners), plain=plain, files=files)
    if per_class:
        cls_or_tc.addClassCleanup(b.cleanup)
    else:
        cls_or_tc.addCleanup(b.cleanup)
    b.start()
    return b


def tls_connect(tc, port, cert=None, client_id=None, expect_rc=0, **kw):
    """TLS handshake (server verified against ca.crt; cert="client" shows
    client.crt), then CONNECT; checks the CONNACK return code."""
    client_id = client_id or uid("tls")
    c = TLSClient(port, client_context(CERTS, cert), client_id=client_id)
    tc.addCleanup(c.close)
    c.send(connect_packet(client_id=client_id, **kw))
    first, body = c.wait_for(CONNACK)
    tc.assertEqual(first, 0x20, "CONNACK fixed header")
    tc.assertEqual(body[1], expect_rc, "CONNACK return code for %s" % client_id)
    return c


def paho_start(tc, port, client_id, cert=None):
    """A connected paho-mqtt client over TLS (server verified) with its loop running."""
    c = paho_client(CERTS, client_id, cert=cert)
    w = PahoWaiter(c)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()

    def stop():
        c.disconnect()
        c.loop_stop()
    tc.addCleanup(stop)
    w.wait(lambda: w.connack is not None, "CONNACK")
    tc.assertEqual(w.connack, 0, "paho CONNACK")
    return c, w


def alert_of(err):
    """The alert as OpenSSL names it in the error, e.g. 'TLSV1_ALERT_UNKNOWN_CA'."""
    return "%s %s" % (getattr(err, "reason", ""), err)


def assert_still_serving(tc, port, cert=None):
    """The broker keeps serving: a fresh TLS client gets CONNACK 0 and a
    PINGRESP."""
    c = tls_connect(tc, port, cert=cert)
    c.send(b"\xc0\x00")
    first, body = c.wait_for(13)
    tc.assertEqual((first, body), (0xD0, b""))


class TestServerTLS(unittest.TestCase):
    """Server-verified TLS on a listener that also asks for (optional) client
    certificates, next to a plain listener."""

    @classmethod
    def setUpClass(cls):
        cls.broker = start(cls, listeners=[tls_block(CERTS, cafile=True, request=True),
                                           tls_block(CERTS)],
                           per_class=True)
        cls.plain, cls.tls, cls.tls_nocert = cls.broker.ports
        cls.tmp = tempfile.mkdtemp(prefix="secbroker-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)

    def test_paho_round_trip(self):
        """paho-mqtt over TLS, the server verified against ca.crt (no client
        certificate): subscribe and publish QoS 1, the message arrives; the log
        names the newest TLS version of this build, a full handshake and no client
        certificate."""
        off = log_offset(self.broker)
        topic = uid("paho/t")
        sub, ws = paho_start(self, self.tls, uid("psub"))
        rc, mid = sub.subscribe(topic, qos=1)
        self.assertEqual(rc, 0)
        ws.wait(lambda: mid in ws.subacks, "SUBACK")
        self.assertEqual(ws.subacks[mid], [1])
        pub, wp = paho_start(self, self.tls, uid("ppub"))
        info = pub.publish(topic, b"over TLS", qos=1)
        wp.wait(lambda: info.mid in wp.published, "PUBACK")
        ws.wait(lambda: ws.messages, "message")
        self.assertEqual(ws.messages, [(topic, b"over TLS")])
        line = wait_log_line(self, self.broker, "TLS handshake with 127.0.0.1:", BROKER_MAX_TLS,
                             "full handshake", "no client certificate", offset=off)
        self.assertRegex(line, r"TLS handshake with 127\.0\.0\.1:\d+: %s, \S+" %
                         re.escape(BROKER_MAX_TLS))

    def test_optional_client_certificate_shown(self):
        """With cafile but without require_certificate, a client that shows a good
        certificate is accepted and the log names its subject."""
        off = log_offset(self.broker)
        c = tls_connect(self, self.tls, cert="client")
        wait_log_line(self, self.broker, "TLS handshake with %s:" % c.peer, "full handshake",
                      "client certificate", "CN=labclient", offset=off)

    def test_optional_client_certificate_untrusted_refused(self):
        """A certificate the listener cannot verify is refused even where it is
        optional (like OpenSSL's SSL_VERIFY_PEER): alert unknown_ca."""
        err, peer = handshake_failure(self.tls, client_context(CERTS, "untrusted-client"))
        self.assertIsNotNone(err, "handshake with an untrusted client certificate succeeded")
        self.assertIn("ALERT_UNKNOWN_CA", alert_of(err))
        wait_log_line(self, self.broker, peer, "TLS handshake failed",
                      "not signed by a trusted CA", "untrusted lab CA",
                      "(sent alert unknown_ca)")

    def test_plain_and_tls_listeners_cross(self):
        """Messages cross between the plain and the TLS listener both ways."""
        t1, t2 = uid("x/tls-sub"), uid("x/plain-sub")
        tsub = tls_connect(self, self.tls)
        psub = connect(self, self.broker, port=self.plain)
        self.assertEqual(subscribe(tsub, [(t1, 1)]), [1])
        self.assertEqual(subscribe(psub, [(t2, 1)]), [1])
        ppub = connect(self, self.broker, port=self.plain)
        tpub = tls_connect(self, self.tls)
        publish(ppub, t1, b"plain to tls", qos=1)
        publish(tpub, t2, b"tls to plain", qos=1)
        m = recv_publish(tsub)
        self.assertEqual((m.topic, m.payload), (t1, b"plain to tls"))
        m = recv_publish(psub)
        self.assertEqual((m.topic, m.payload), (t2, b"tls to plain"))
        wait_log_line(self, self.broker, "New client connected from %s" % tsub.peer,
                      tsub.client_id, "TLS)")
        wait_log_line(self, self.broker, "New client connected from", psub.client_id, "plain)")

    def test_mosquitto_clients(self):
        """Debian's mosquitto_sub and mosquitto_pub over TLS (--cafile, --cert,
        --key) against secbroker."""
        exe_sub, exe_pub = shutil.which("mosquitto_sub"), shutil.which("mosquitto_pub")
        self.assertTrue(exe_sub and exe_pub, "mosquitto-clients not installed (make test "
                        "installs it)")
        tls_args = ["-h", "localhost", "-p", str(self.tls), "--cafile", CERTS["ca.crt"],
                    "--cert", CERTS["client.crt"], "--key", CERTS["client.key"]]
        topic = uid("mosq/t")
        off = log_offset(self.broker)
        # stdbuf -oL: mosquitto_sub does not flush its -d lines into a pipe
        sub = Sub([shutil.which("stdbuf"), "-oL", exe_sub] + tls_args + ["-t", topic, "-q", "1", "-C", "1", "-W", "30",
                                          "-i", uid("msub")])
        self.addCleanup(sub.kill)
        sub.wait_subscribed()
        rc, out, err = run([exe_pub] + tls_args + ["-t", topic, "-m", "from mosquitto_pub",
                                                   "-q", "1", "-i", uid("mpub")])
        self.assertEqual(rc, 0, "mosquitto_pub: %s" % err)
        rc, msgs, err = sub.wait()
        self.assertEqual(rc, 0, "mosquitto_sub: %s" % err)
        self.assertEqual(msgs, [b"from mosquitto_pub"])
        wait_log_line(self, self.broker, "TLS handshake with", "CN=labclient", offset=off)

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_our_clients_tls13_keylog(self):
        """secsub and secpub --tls-version tlsv1.3 --keylog: the message arrives over
        TLS 1.3 (both the clients' -d line and the broker's log say so) and each key
        log holds the TLS 1.3 secrets and EXPORTER_SECRET, never CLIENT_RANDOM."""
        topic = uid("s13/t")
        keylog = os.path.join(self.tmp, uid("keys13"))
        args = ["-h", "localhost", "-p", str(self.tls), "--cafile", CERTS["ca.crt"],
                "--tls-version", "tlsv1.3", "--keylog", keylog]
        off = log_offset(self.broker)
        sub = Sub([SECSUB] + args + ["-t", topic, "-q", "1", "-C", "1", "-i", uid("s13sub")])
        self.addCleanup(sub.kill)
        sub.wait_subscribed()
        rc, out, err = run([SECPUB] + args + ["-d", "-t", topic, "-m", "over 1.3", "-q", "1"])
        self.assertEqual(rc, 0, err)
        said = out.decode(errors="replace") + err
        self.assertIn("TLS handshake with", said)
        self.assertIn("TLS 1.3, TLS_AES_", said)
        rc, msgs, err = sub.wait()
        self.assertEqual(msgs, [b"over 1.3"])
        wait_log_line(self, self.broker, "TLS handshake with", "TLS 1.3", offset=off)
        with open(keylog) as f:
            labels = [l.split()[0] for l in f if l.strip()]
        for label in TLS13_LABELS + ["EXPORTER_SECRET"]:
            self.assertEqual(labels.count(label), 2, "%s in %r" % (label, labels))
        self.assertNotIn("CLIENT_RANDOM", labels)

    def test_plain_mqtt_on_tls_port(self):
        """A plain MQTT CONNECT on the TLS port: the connection is closed without a
        CONNACK, the log says plain MQTT on a TLS port, and the broker keeps
        serving TLS clients."""
        c = Client(self.tls)
        self.addCleanup(c.close)
        peer = "127.0.0.1:%d" % c.sock.getsockname()[1]
        c.send(connect_packet(client_id=uid("plain-on-tls")))
        closed, data = c.read_all_until_closed(WAIT)
        self.assertTrue(closed, "broker did not close the connection")
        self.assertFalse(data.startswith(b"\x20"), "got a CONNACK over a TLS port: %r" % data)
        wait_log_line(self, self.broker, peer, "TLS handshake failed", "plain MQTT",
                      "CONNECT", "TLS port")
        assert_still_serving(self, self.tls)

    def test_garbage_on_tls_port(self):
        """Non-TLS bytes (an HTTP request) on the TLS port: closed, the log says the
        client did not start a TLS handshake, and the broker keeps serving."""
        c = Client(self.tls)
        self.addCleanup(c.close)
        peer = "127.0.0.1:%d" % c.sock.getsockname()[1]
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        closed, data = c.read_all_until_closed(WAIT)
        self.assertTrue(closed, "broker did not close the connection")
        wait_log_line(self, self.broker, peer, "TLS handshake failed",
                      "did not start a TLS handshake", "first bytes 47 45 54 20")
        assert_still_serving(self, self.tls)

    def test_tls11_refused(self):
        """A TLS 1.1-only client gets a protocol_version alert; the log says TLS 1.1
        against the minimum TLS 1.2."""
        off = log_offset(self.broker)
        rc, out = s_client(self.tls, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("alert protocol version", out)
        wait_log_line(self, self.broker, "TLS handshake failed",
                      "client offered only TLS 1.1 while the minimum is TLS 1.2",
                      "(sent alert protocol_version)", offset=off)

    def test_cipher_mismatch_refused(self):
        """A client offering only suites the listener does not accept gets a
        handshake_failure alert; the log says no cipher suite in common and names
        what the client offered."""
        for suite in ("AES128-SHA", "DHE-RSA-AES128-SHA256"):
            with self.subTest(suite=suite):
                off = log_offset(self.broker)
                rc, out = s_client(self.tls, "-tls1_2", "-cipher", suite)
                self.assertNotEqual(rc, 0, out)
                self.assertIn("alert handshake failure", out)
                line = wait_log_line(self, self.broker, "TLS handshake failed",
                                     "no cipher suite in common", "(sent alert handshake_failure)",
                                     offset=off)
                self.assertIn("client offered %s;" % suite, line)
                self.assertIn("this listener accepts ECDHE-", line)

    def _resume(self, *extra, port=None):
        port = port or self.tls
        sess = os.path.join(self.tmp, uid("sess"))
        version = "TLSv1.3" if "-tls1_3" in extra else "TLSv1.2"
        base = ["-CAfile", CERTS["ca.crt"]] + list(extra)
        kw = {}
        if version == "TLSv1.2":
            base.append("-tls1_2")
        else:
            # the TLS 1.3 ticket follows the handshake: keep s_client reading
            # until the broker closes after CONNECT, DISCONNECT
            base.append("-ign_eof")
            kw["stdin"] = connect_packet(client_id=uid("s13")) + b"\xe0\x00"
        rc, out = s_client(port, "-sess_out", sess, *base, **kw)
        self.assertIn("New, " + version, out)
        self.assertTrue(os.path.exists(sess), "s_client wrote no session: %s" % out)
        off = log_offset(self.broker)
        rc, out = s_client(port, "-sess_in", sess, *base, **kw)
        self.assertIn("Reused, " + version, out)
        return off

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_handshake_and_resumption(self):
        """openssl s_client -tls1_3 on a listener without client certificates: a
        full TLS 1.3 handshake (X25519), then the NewSessionTicket resumes the next
        connection (PSK): "Reused, TLSv1.3", and the log says resumed. (Where client
        certificates are asked for, the tickets carry the verified identity:
        TestIdentityAsUsername.test_tls13_resumed_session_keeps_the_cn.)"""
        off = self._resume("-tls1_3", port=self.tls_nocert)
        wait_log_line(self, self.broker, "TLS handshake with", "TLS 1.3",
                      "resumed session (ticket)", offset=off)

    def test_resumption_ticket(self):
        """A session ticket (RFC 5077) from one connection resumes the next: s_client
        reports "Reused" and the log says resumed (ticket)."""
        off = self._resume()
        wait_log_line(self, self.broker, "TLS handshake with", "resumed session (ticket)",
                      offset=off)

    def test_resumption_session_id(self):
        """Without tickets (-no_ticket) the session-id cache resumes: "Reused" and
        the log says resumed (session id)."""
        off = self._resume("-no_ticket")
        wait_log_line(self, self.broker, "TLS handshake with", "resumed session (session id)",
                      offset=off)


class TestMutualTLS(unittest.TestCase):
    """require_certificate true + cafile; the second listener also has crlfile
    (mkcerts' ca.crl lists revoked-client.crt)."""

    @classmethod
    def setUpClass(cls):
        cls.broker = start(cls, plain=False, per_class=True, listeners=[
            tls_block(CERTS, cafile=True, require=True),
            tls_block(CERTS, cafile=True, require=True, extra=["crlfile %s" % CERTS["ca.crl"]])])
        cls.mutual, cls.crl = cls.broker.ports

    def refused(self, port, cert, alert, *log_words, version="1.2"):
        err, peer = handshake_failure(port, client_context(CERTS, cert, version=version))
        self.assertIsNotNone(err, "handshake with %s succeeded" % (cert or "no certificate"))
        self.assertIn(alert, alert_of(err))
        return wait_log_line(self, self.broker, peer, "TLS handshake failed", *log_words)

    def test_no_certificate_refused(self):
        """No client certificate: alert handshake_failure; the log says a certificate
        is required."""
        self.refused(self.mutual, None, "ALERT_HANDSHAKE_FAILURE",
                     "client sent no certificate, but this listener requires one",
                     "(sent alert handshake_failure)")

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_no_certificate_certificate_required(self):
        """TLS 1.3 without a client certificate: alert certificate_required (116, RFC
        8446), not mbedTLS 3.6's own SSL 3.0 no_certificate; the log says why."""
        self.refused(self.mutual, None, "CERTIFICATE_REQUIRED",
                     "client sent no certificate, but this listener requires one",
                     "(sent alert certificate_required)", version="1.3")

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_untrusted_ca_refused(self):
        """TLS 1.3 with a certificate from an unknown CA: the client reads alert
        unknown_ca (encrypted with the keys it expects), the log names the issuer."""
        self.refused(self.mutual, "untrusted-client", "ALERT_UNKNOWN_CA",
                     "not signed by a trusted CA", "untrusted lab CA",
                     "(sent alert unknown_ca)", version="1.3")

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_good_certificate_accepted(self):
        """TLS 1.3 mutual authentication with the lab client certificate: CONNACK 0,
        the log names TLS 1.3 and the certificate."""
        off = log_offset(self.broker)
        cid = uid("m13")
        c = TLSClient(self.mutual, client_context(CERTS, "client", version="1.3"), client_id=cid)
        self.addCleanup(c.close)
        c.send(connect_packet(client_id=cid))
        first, body = c.wait_for(CONNACK)
        self.assertEqual((first, body[1]), (0x20, 0), "CONNACK 0")
        wait_log_line(self, self.broker, "TLS handshake with", "TLS 1.3", "full handshake",
                      "client certificate CN=labclient", offset=off)

    def test_untrusted_ca_refused(self):
        """A certificate from a CA the listener does not trust: alert unknown_ca; the
        log names the issuer."""
        self.refused(self.mutual, "untrusted-client", "ALERT_UNKNOWN_CA",
                     "client certificate", "CN=labclient", "not signed by a trusted CA",
                     "issuer", "untrusted lab CA", "(sent alert unknown_ca)")

    def test_expired_refused(self):
        """An expired client certificate: alert certificate_expired; the log says
        expired and when."""
        self.refused(self.mutual, "expired-client", "ALERT_CERTIFICATE_EXPIRED",
                     "CN=expiredclient", "expired on 2020-02-01", "(sent alert certificate_expired)")

    def test_good_certificate_accepted(self):
        """client.crt from the lab CA: handshake, CONNACK 0, a publish comes back;
        the log names the client certificate."""
        c = tls_connect(self, self.mutual, cert="client")
        t = uid("mutual/t")
        self.assertEqual(subscribe(c, [(t, 1)]), [1])
        publish(c, t, b"mutual", qos=1)
        self.assertEqual(recv_publish(c).payload, b"mutual")
        wait_log_line(self, self.broker, "TLS handshake with %s:" % c.peer, "full handshake",
                      "client certificate", "CN=labclient")

    def test_revoked_refused_with_crl(self):
        """With crlfile, a revoked client certificate gets alert certificate_revoked
        and the log says revoked; a good certificate still passes."""
        self.refused(self.crl, "revoked-client", "ALERT_CERTIFICATE_REVOKED",
                     "CN=revokedclient", "revoked", "(sent alert certificate_revoked)")
        tls_connect(self, self.crl, cert="client")

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_revoked_and_expired_refused(self):
        """TLS 1.3: the CRL and the validity dates are checked the same way; the
        client reads certificate_revoked / certificate_expired (encrypted with the
        keys it expects) and the log says why."""
        self.refused(self.crl, "revoked-client", "ALERT_CERTIFICATE_REVOKED",
                     "CN=revokedclient", "revoked", "(sent alert certificate_revoked)",
                     version="1.3")
        self.refused(self.mutual, "expired-client", "ALERT_CERTIFICATE_EXPIRED",
                     "CN=expiredclient", "expired on 2020-02-01",
                     "(sent alert certificate_expired)", version="1.3")

    def test_revoked_accepted_without_crl(self):
        """The same revoked certificate passes where no crlfile is set: the CRL is
        what refuses it."""
        c = tls_connect(self, self.mutual, cert="revoked-client")
        wait_log_line(self, self.broker, "TLS handshake with %s:" % c.peer, "CN=revokedclient")


ACL = "user labclient\ntopic readwrite lab/#\n"


class TestIdentityAsUsername(unittest.TestCase):
    """use_identity_as_username true (require_certificate false): the certificate's
    CN is the username the ACL sees."""

    @classmethod
    def setUpClass(cls):
        cls.broker = start(cls, conf="acl_file {dir}/acl\n", files={"acl": ACL}, plain=False,
                           per_class=True,
                           listeners=[tls_block(CERTS, cafile=True, identity=True)])
        cls.port = cls.broker.port

    def test_cn_is_the_username(self):
        """CN=labclient gets labclient's ACL (lab/# readwrite) whatever username the
        CONNECT carries: lab/x round trip works, other/x is refused with SUBACK 0x80
        and a publish there is dropped."""
        c = tls_connect(self, self.port, cert="client", username="mallory", password="x")
        wait_log_line(self, self.broker, "New client connected from %s" % c.peer,
                      "username 'labclient'")
        t = "lab/" + uid("x")
        self.assertEqual(subscribe(c, [(t, 1), ("other/x", 1)]), [1, 0x80])
        publish(c, "other/x", b"denied", qos=1)
        wait_log_line(self, self.broker, "Denied PUBLISH from", "user labclient", "other/x")
        publish(c, t, b"allowed", qos=1)
        m = recv_publish(c)
        self.assertEqual((m.topic, m.payload), (t, b"allowed"))

    @unittest.skipUnless(BROKER_TLS13, "this build has no TLS 1.3 (make MBEDTLS=system)")
    def test_tls13_resumed_session_keeps_the_cn(self):
        """TLS 1.3 with a client certificate, then a resumed connection with the
        session ticket: no certificate is sent again, yet the username is still
        labclient (the ticket carries the verified identity, tls/tls_ticket.c),
        with labclient's ACL, and the log says resumed session (ticket)."""
        ctx = client_context(CERTS, "client", version="1.3")
        cid = uid("r13")
        first = TLSClient(self.port, ctx, client_id=cid)
        self.addCleanup(first.close)
        first.send(connect_packet(client_id=cid, username="mallory", password="x"))
        first.wait_for(CONNACK)  # the NewSessionTicket came before it
        session = first.sock.session
        self.assertTrue(session is not None and session.has_ticket, "no TLS 1.3 ticket")
        off = log_offset(self.broker)
        cid2 = uid("r13")
        c = TLSClient(self.port, ctx, client_id=cid2, session=session)
        self.addCleanup(c.close)
        self.assertTrue(c.sock.session_reused, "the ticket did not resume the session")
        c.send(connect_packet(client_id=cid2, username="mallory", password="x"))
        first_byte, body = c.wait_for(CONNACK)
        self.assertEqual(body[1], 0, "CONNACK return code")
        wait_log_line(self, self.broker, "TLS handshake with %s" % c.peer, "TLS 1.3",
                      "resumed session (ticket)", offset=off)
        wait_log_line(self, self.broker, "New client connected from %s" % c.peer,
                      "username 'labclient'", offset=off)
        self.assertEqual(subscribe(c, [("lab/" + uid("x"), 1), ("other/x", 1)]), [1, 0x80])

    def test_no_certificate_connack_5(self):
        """No certificate: the handshake succeeds (certificates are optional here) but
        CONNECT gets CONNACK 5 and the log says why."""
        c = tls_connect(self, self.port, cert=None, expect_rc=5, username="labclient")
        wait_log_line(self, self.broker, c.peer, "CONNECT refused (CONNACK 5",
                      "use_identity_as_username is on and the client sent no certificate")


class TestKeylogAndTshark(unittest.TestCase):
    """tls_keylog_file: NSS key-log lines that let tshark decrypt the MQTT inside."""

    def setUp(self):
        self.broker = start(self, plain=False, listeners=[
            tls_block(CERTS, extra=["tls_keylog_file {dir}/keylog.txt"])])
        self.keylog = os.path.join(self.broker.dir, "keylog.txt")

    def keylog_lines(self):
        if not os.path.exists(self.keylog):
            return []
        with open(self.keylog) as f:
            return [l.rstrip("\n") for l in f if l.strip()]

    def test_keylog_lines(self):
        """paho over TLS publishes a message; the key log holds CLIENT_RANDOM <64 hex>
        <96 hex> lines with TLS 1.2, the four TLS 1.3 traffic secrets with TLS 1.3 (and only
        such lines); the broker warned about the file."""
        pub, w = paho_start(self, self.broker.port, uid("klog"))
        info = pub.publish("keylog/t", b"secret", qos=1)
        w.wait(lambda: info.mid in w.published, "PUBACK")
        lines = self.keylog_lines()
        self.assertTrue(lines, "key log is empty")
        for line in lines:
            self.assertRegex(line, KEYLOG_LINE)
        if BROKER_TLS13:  # paho offers TLS 1.3: the four traffic secrets
            for label in TLS13_LABELS:
                self.assertTrue(any(x.startswith(label + " ") for x in lines), label)
        wait_log_line(self, self.broker, "tls_keylog_file", "anyone who can read this file can "
                      "decrypt the TLS traffic")

    def test_tshark_decrypts_with_keylog_only(self):
        """tshark on lo captures one TLS session; with the key log it shows the MQTT
        CONNECT (1) and the PUBLISH (3) with topic and payload, without it no MQTT."""
        self.assertTrue(shutil.which("tshark"), "tshark not installed (make test installs it)")
        port = self.broker.port
        pcap = os.path.join(self.broker.dir, "cap.pcapng")
        cap = Capture(port, pcap)
        self.addCleanup(cap.stop)
        cap.wait_ready()
        topic, payload = uid("wire/t"), b"payload-" + uid("p").encode()
        c = tls_connect(self, port, client_id=uid("wire"))
        publish(c, topic, payload, qos=1)
        c.send(b"\xe0\x00")  # DISCONNECT
        closed, _ = c.read_all_until_closed(WAIT)
        self.assertTrue(closed)
        c.close()
        wait_log_line(self, self.broker, c.peer, "disconnected")
        # both FINs on disk: everything before them is too
        cport = int(c.peer.rsplit(":", 1)[1])
        cap.wait_frames("tcp.port==%d && tcp.flags.fin==1 && tcp.srcport==%d" % (cport, port))
        cap.wait_frames("tcp.port==%d && tcp.flags.fin==1 && tcp.srcport==%d" % (cport, cport))
        cap.stop()
        with open(pcap, "rb") as f:
            raw = f.read()
        self.assertNotIn(payload, raw, "the payload is in the capture in clear text")
        rows = tshark_mqtt(pcap, port, keylog=self.keylog)
        types = [r[0] for r in rows]
        self.assertIn(1, types, "no MQTT CONNECT decoded: %r" % rows)
        self.assertIn((3, topic, payload), rows, "no MQTT PUBLISH decoded: %r" % rows)
        self.assertEqual(tshark_mqtt(pcap, port), [], "MQTT visible without the key log")


class TestHandshakeTimeout(unittest.TestCase):

    def test_silent_client_closed(self):
        """handshake_timeout 1: a TCP connection that sends nothing is closed (10 s
        upper bound) and the log says the handshake did not finish in time."""
        b = start(self, conf="handshake_timeout 1\n", plain=False,
                  listeners=[tls_block(CERTS)])
        c = Client(b.port)
        self.addCleanup(c.close)
        peer = "127.0.0.1:%d" % c.sock.getsockname()[1]
        closed, data = c.read_all_until_closed(10.0)
        self.assertTrue(closed, "still open after 10 s with handshake_timeout 1")
        self.assertEqual(data, b"")
        wait_log_line(self, b, peer, "TLS handshake not finished within handshake_timeout 1 s")
        assert_still_serving(self, b.port)


def client_hello():
    """The bytes of one TLS ClientHello, as Python's ssl would send them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python's socket module lacks the name
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def first_arrival_ns(sock, timeout=WAIT):
    """The kernel's receive time (SO_TIMESTAMPNS, CLOCK_REALTIME ns) of the
    first bytes the peer sent on sock, or None if nothing came."""
    sock.settimeout(timeout)
    try:
        data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
    except (socket.timeout, ConnectionResetError):
        return None
    for level, kind, raw_ts in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", raw_ts[:16])
            return sec * 1000000000 + nsec
    return None if not data else 0


class TestHandshakeFairness(unittest.TestCase):
    N = 200                # ClientHellos sent at once
    STEPS_PER_TURN = 8     # broker/main.c HANDSHAKE_STEPS_PER_TURN

    def test_established_client_served_during_handshake_storm(self):
        """200 ClientHellos arrive at once, then a PINGREQ from an established
        client: its PINGRESP comes back while most handshakes still wait,
        because the broker runs at most 8 handshake steps per loop turn and
        flushes established connections every turn. Counted, not timed: the
        kernel's receive timestamps order the 200 server flights against the
        PINGRESP; at most 3 turns' worth may land between PINGREQ and PINGRESP
        (unbounded, all the waiting ones would)."""
        b = start(self, listeners=[tls_block(CERTS)])
        tls_port = b.ports[1]
        pinger = Client(b.port)
        self.addCleanup(pinger.close)
        pinger.connect(client_id=uid("ping"))
        pinger.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        socks = []
        for _ in range(self.N):
            s = socket.create_connection(("127.0.0.1", tls_port), timeout=WAIT)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.addCleanup(s.close)
            socks.append(s)
        # every connection accepted before the storm starts
        needle = "on port %d" % tls_port
        deadline = time.time() + WAIT
        while sum(needle in line for line in log_lines(b)) < self.N and time.time() < deadline:
            time.sleep(0.05)
        hello = client_hello()
        for s in socks:
            s.sendall(hello)
        t_ping = time.time_ns()
        pinger.send(b"\xc0\x00")
        t_pong = first_arrival_ns(pinger.sock)
        self.assertIsNotNone(t_pong, "no PINGRESP")
        arrivals = [first_arrival_ns(s) for s in socks]
        self.assertNotIn(None, arrivals, "a handshake got no answer")
        waiting = sum(t > t_ping for t in arrivals)
        between = sum(t_ping < t < t_pong for t in arrivals)
        self.assertGreaterEqual(waiting, self.N // 2,
                                "only %d handshakes still waiting when the PINGREQ went out: "
                                "the test needs a backlog" % waiting)
        self.assertLessEqual(between, 3 * self.STEPS_PER_TURN,
                             "%d of %d waiting handshakes were answered before the PINGRESP"
                             % (between, waiting))


if __name__ == "__main__":
    unittest.main()
