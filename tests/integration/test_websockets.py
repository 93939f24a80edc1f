"""MQTT over WebSockets (protocol websockets, issue 15): paho over ws and wss,
messages crossing TCP, TLS, ws and wss listeners, listeners bound only to their
address (ss), every refused request with its status or close code and one log
line in words, the Origin allow-list, http_dir (types, traversal attempts),
control frames, output coalescing, handshake_timeout on the Upgrade, config
errors, and the dashboard's $SYS JSON with the ACL deciding who reads it.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import json
import os
import shutil
import socket
import ssl
import struct
import tempfile
import unittest

from brokerlib import (WAIT, Broker, connect_packet, free_port, publish_packet, subscribe_packet,
                       wait_port)
from tlslib import BROKER_MAX_TLS, make_certs, tls_block
from mqttlib import make_password_file, mosq_passwd
from mqtt5lib import Client5, opts
from wslib import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, PahoClient, RawWS, frame,
                   listening, upgrade_request)

CERTS = None
TMP = None


def setUpModule():
    global CERTS, TMP
    TMP = tempfile.mkdtemp(prefix="secbroker-ws-")
    CERTS = make_certs(os.path.join(TMP, "certs"))


def tearDownModule():
    if TMP and not os.environ.get("KEEP_TEST_DIRS"):
        shutil.rmtree(TMP, ignore_errors=True)


def ws_block(extra=(), address="127.0.0.1"):
    return "\n".join(["listener {port} %s" % address, "protocol websockets"] + list(extra))


def wss_block(extra=()):
    return tls_block(CERTS, cafile=True, request=True, extra=["protocol websockets"] + list(extra))


def client_ctx():
    ctx = ssl.create_default_context(cafile=CERTS["ca.crt"])
    return ctx


def mqtt_frames(ws, n_packets):
    """Read server frames until n_packets MQTT packets arrived; returns
    (packets as (type, body), number of binary frames)."""
    data, frames, packets = b"", 0, []
    while len(packets) < n_packets:
        fin, op, payload = ws.read_frame()
        if op != OP_BINARY:
            continue
        frames += 1
        data += payload
        while len(data) >= 2:
            mult, n, i = 1, 0, 1
            while True:
                if i >= len(data):
                    break
                b = data[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(data) < i + n:
                break
            packets.append((data[0] >> 4, data[i:i + n]))
            data = data[i + n:]
    return packets, frames


class WSCase(unittest.TestCase):
    def broker(self, listeners, conf="", plain=True):
        b = Broker(conf=conf, listeners=listeners, plain=plain)
        self.addCleanup(b.cleanup)
        b.start()
        return b

    def ws(self, port, ctx=None):
        w = RawWS(port, ctx)
        self.addCleanup(w.close)
        return w

    def open_mqtt(self, port, client_id, ctx=None):
        """A raw WebSocket with CONNECT done."""
        w = self.ws(port, ctx)
        status, headers, _ = w.upgrade()
        self.assertEqual(status, 101)
        self.assertEqual(headers.get("sec-websocket-protocol"), "mqtt")
        w.send(frame(OP_BINARY, connect_packet(client_id)))
        packets, _ = mqtt_frames(w, 1)
        self.assertEqual(packets[0], (2, b"\x00\x00"))
        return w


class TestPahoAndCrossing(WSCase):
    def test_paho_over_ws_and_wss_and_crossing_all_transports(self):
        b = self.broker([tls_block(CERTS, cafile=True), ws_block(), wss_block()])
        tcp, tls, ws, wss = b.ports
        ca = CERTS["ca.crt"]
        ends = {
            "tcp": dict(port=tcp),
            "tls": dict(port=tls, ca=ca),
            "ws": dict(port=ws, transport="websockets"),
            "wss": dict(port=wss, transport="websockets", ca=ca),
        }
        subs = {}
        for name, kw in ends.items():
            subs[name] = PahoClient(self, client_id="sub-" + name, **kw)
            self.assertEqual(subs[name].subscribe("x/#", 1), [1])
        pubs = {name: PahoClient(self, client_id="pub-" + name, **kw) for name, kw in ends.items()}
        big = os.urandom(200000)  # spans many frames and reads
        for name, p in pubs.items():
            p.publish("x/" + name, name.encode(), qos=1)
            p.publish("x/big/" + name, big, qos=1)
        for name, s in subs.items():
            s.wait(lambda s=s: len(s.messages) >= 8, "8 messages at sub-" + name)
            got = dict(s.messages)
            for src in ends:
                self.assertEqual(got["x/" + src], src.encode(), "%s -> %s" % (src, name))
                self.assertEqual(got["x/big/" + src], big, "%s -> %s (200 kB)" % (src, name))
        log = b.log()
        self.assertIn("Opened WebSocket (ws) listener on 127.0.0.1 port %d" % ws, log)
        self.assertIn("Opened WebSocket (wss) listener on 127.0.0.1 port %d" % wss, log)

    def test_mqttv31_subprotocol_and_straddling_packets(self):
        b = self.broker([ws_block()], plain=False)
        w = self.ws(b.port)
        status, headers, _ = w.upgrade(protocol="mqttv3.1")
        self.assertEqual(status, 101)
        self.assertEqual(headers["sec-websocket-protocol"], "mqttv3.1")
        # CONNECT split over three frames of one fragmented message, then a
        # SUBSCRIBE and a PUBLISH in one frame: the MQTT framing reassembles.
        c = connect_packet("straddle")
        w.send(frame(OP_BINARY, c[:3], fin=False) + frame(0, c[3:7], fin=False) +
               frame(0, c[7:]))
        w.send(frame(OP_BINARY, subscribe_packet([("s/t", 0)]) + publish_packet("s/t", b"hi")))
        packets, _ = mqtt_frames(w, 3)
        self.assertEqual([p[0] for p in packets], [2, 9, 3])
        self.assertTrue(packets[2][1].endswith(b"hi"))
        # a frame of two PUBLISHes sent a byte per write: packets straddle reads
        data = frame(OP_BINARY, publish_packet("s/t", b"one" * 50) + publish_packet("s/t", b"two"))
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            w.send(data[i:i + 1])
        packets, _ = mqtt_frames(w, 2)
        self.assertTrue(packets[0][1].endswith(b"one" * 50))
        self.assertTrue(packets[1][1].endswith(b"two"))


class TestBinding(WSCase):
    def test_websockets_only_listener_binds_its_address(self):
        b = self.broker([ws_block()], plain=False)
        self.assertEqual(listening(b.port), ["127.0.0.1"])

    def test_beside_other_listeners_and_on_ipv6_loopback(self):
        if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
            self.skipTest("no IPv6 on this machine")
        v6 = free_port()
        # (conf, not listeners=: the harness waits for those on 127.0.0.1)
        b = self.broker([tls_block(CERTS), ws_block()],
                        conf="listener %d ::1\nprotocol websockets\n" % v6)
        self.assertEqual(listening(b.ports[0]), ["127.0.0.1"])
        self.assertEqual(listening(b.ports[2]), ["127.0.0.1"])
        self.assertTrue(wait_port(v6, host="::1"))
        self.assertEqual(listening(v6), ["[::1]"])
        w = RawWS.__new__(RawWS)
        w.sock = socket.create_connection(("::1", v6), timeout=WAIT)
        w.buf = b""
        self.addCleanup(w.close)
        self.assertEqual(w.upgrade(host="[::1]")[0], 101)


class TestBadRequests(WSCase):
    """Each refusal: its status (or close code), one log line, the broker goes on."""

    @classmethod
    def setUpClass(cls):
        cls.b = Broker(listeners=[ws_block(["websockets_headers_size 1024"])],
                       conf="max_packet_size 1000")
        cls.b.start()

    @classmethod
    def tearDownClass(cls):
        cls.b.cleanup()

    def refused(self, request, status, words):
        w = self.ws(self.b.ports[1])
        w.send(request)
        got, headers, body = w.http_response()
        self.assertEqual(got, status, body)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertIn(words, body.decode())
        self.assertTrue(w.closed())
        self.b.wait_log("WebSocket upgrade refused (%d" % status)
        self.b.wait_log(words)
        self.still_serving()
        return headers

    def still_serving(self):
        c = PahoClient(self, self.b.ports[1], "alive", transport="websockets")
        c.stop()

    def test_no_key(self):
        self.refused(upgrade_request(key=""), 400, "no Sec-WebSocket-Key")

    def test_bad_key(self):
        self.refused(upgrade_request(key="c2hvcnQ="), 400, "not base64 of 16 bytes")

    def test_wrong_version(self):
        h = self.refused(upgrade_request(version="8"), 426, "only 13 is spoken")
        self.assertEqual(h.get("sec-websocket-version"), "13")

    def test_huge_headers(self):
        self.refused(upgrade_request(extra=["Cookie: " + "a" * 2000]), 431, "")

    def test_post(self):
        h = self.refused(upgrade_request(method="POST"), 405, "only GET")
        self.assertEqual(h.get("allow"), "GET")

    def test_plain_get_without_http_dir(self):
        self.refused(upgrade_request(upgrade=None), 426, "not a WebSocket upgrade")

    def test_no_mqtt_subprotocol(self):
        self.refused(upgrade_request(protocol="chat"), 400, "neither mqtt nor mqttv3.1")

    def frame_refused(self, data, code, words):
        w = self.open_mqtt(self.b.ports[1], "bad-frame")
        w.send(data)
        self.assertEqual(w.read_close(), code)
        self.assertTrue(w.closed())
        line = [ln for ln in self.b.wait_log("WebSocket protocol error: " + words).splitlines()
                if "WebSocket protocol error: " + words in ln][-1]
        self.assertIn("(sent close code %d)" % code, line)
        self.still_serving()

    def test_unmasked_frame(self):
        self.frame_refused(frame(OP_BINARY, b"\xc0\x00", mask=False), 1002, "unmasked frame")

    def test_text_frame(self):
        self.frame_refused(frame(OP_TEXT, b"\xc0\x00"), 1003, "text frame")

    def test_oversize_frame(self):
        # the header alone announces 10 MB: refused before the payload comes
        hdr = struct.pack("!BBQ", 0x82, 0x80 | 127, 10 * 1000 * 1000) + b"\x01\x02\x03\x04"
        self.frame_refused(hdr, 1009, "message larger than the limit")

    def test_reserved_bits(self):
        self.frame_refused(frame(OP_BINARY, b"\xc0\x00", rsv=4), 1002, "reserved bits")


class TestFramesAndClose(WSCase):
    def test_ping_pong_and_client_close(self):
        b = self.broker([ws_block()], plain=False)
        w = self.open_mqtt(b.port, "pinger")
        w.send(frame(OP_PING, b"lab"))
        fin, op, payload = w.read_frame()
        self.assertEqual((fin, op, payload), (True, OP_PONG, b"lab"))
        w.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
        self.assertEqual(w.read_close(), 1000)
        self.assertTrue(w.closed())
        b.wait_log("WebSocket closed by the client (close code 1000)")

    def test_server_close_sends_close_frame(self):
        b = self.broker([ws_block()], plain=False)
        w = self.open_mqtt(b.port, "rude")
        w.send(frame(OP_BINARY, b"\xf0\x00"))  # reserved MQTT packet type 15
        self.assertEqual(w.read_close(), 1000)
        self.assertTrue(w.closed())
        b.wait_log("protocol error")

    def test_disconnect_then_close_handshake_without_reset(self):
        # MQTT.js over ws ends with DISCONNECT, then its Close frame: the broker
        # answers with its Close and waits for the client's before closing TCP,
        # so the client's last bytes never meet a closed socket (a reset)
        b = self.broker([ws_block()], plain=False)
        for _ in range(3):
            w = self.open_mqtt(b.port, "polite")
            w.send(frame(OP_BINARY, b"\xe0\x00"))  # DISCONNECT
            self.assertEqual(w.read_close(), 1000)
            w.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.assertTrue(w.eof(), "connection reset instead of closed")
        b.wait_log("disconnected: client sent DISCONNECT")

    def test_output_is_coalesced_into_few_frames(self):
        b = self.broker([ws_block()])
        w = self.open_mqtt(b.ports[1], "coalesce")
        w.send(frame(OP_BINARY, subscribe_packet([("c/#", 0)])))
        self.assertEqual(mqtt_frames(w, 1)[0][0][0], 9)
        pub = socket.create_connection(("127.0.0.1", b.ports[0]), timeout=WAIT)
        self.addCleanup(pub.close)
        # 50 PUBLISHes in one write: the broker reads them in one go and sends
        # its output once per loop iteration, wrapped in as few frames as it can
        pub.sendall(connect_packet("burst") +
                    b"".join(publish_packet("c/%d" % i, b"x" * 20) for i in range(50)))
        packets, frames = mqtt_frames(w, 50)
        self.assertEqual(len(packets), 50)
        self.assertLess(frames, 50, "each message in its own frame: output not coalesced")

    def test_handshake_timeout_covers_the_upgrade(self):
        b = self.broker([ws_block()], conf="handshake_timeout 1", plain=False)
        w = self.ws(b.port)
        w.send(upgrade_request()[:30])  # never finished
        self.assertTrue(w.closed())
        b.wait_log("WebSocket upgrade not finished within handshake_timeout 1 s")


class TestOrigin(WSCase):
    def test_allow_list(self):
        b = self.broker([ws_block(["websockets_origin https://lab.example",
                                   "websockets_origin http://127.0.0.1:8080"])], plain=False)
        for origin in ("https://lab.example", "http://127.0.0.1:8080", "HTTPS://LAB.EXAMPLE"):
            w = self.ws(b.port)
            self.assertEqual(w.upgrade(origin=origin)[0], 101, origin)
        w = self.ws(b.port)
        self.assertEqual(w.upgrade()[0], 101, "no Origin: not a browser, allowed")
        w = self.ws(b.port)
        status, _, body = w.upgrade(origin="https://evil.example")
        self.assertEqual(status, 403)
        self.assertIn(b"https://evil.example is not in websockets_origin", body)
        b.wait_log("WebSocket upgrade refused (403 Forbidden): Origin https://evil.example")


class TestHttpDir(WSCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tempfile.mkdtemp(prefix="secbroker-www-")
        www = os.path.join(cls.d, "www")
        os.makedirs(os.path.join(www, "sub"))
        os.makedirs(os.path.join(www, "empty"))
        files = {"index.html": "<h1>lab</h1>", "app.js": "1;", "style.css": "b{}",
                 "data.json": "{}", ".hidden.html": "secret", "sub/index.html": "sub",
                 "notes.xyz": "?"}
        for name, text in files.items():
            with open(os.path.join(www, name), "w") as f:
                f.write(text)
        with open(os.path.join(cls.d, "outside.html"), "w") as f:
            f.write("OUTSIDE")
        os.symlink(os.path.join(cls.d, "outside.html"), os.path.join(www, "link.html"))
        cls.b = Broker(listeners=[ws_block(["http_dir %s" % www])], plain=False)
        cls.b.start()

    @classmethod
    def tearDownClass(cls):
        cls.b.cleanup()
        shutil.rmtree(cls.d, ignore_errors=True)

    def get(self, path, method="GET"):
        w = self.ws(self.b.port)
        w.send(("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, path)).encode())
        status, headers, body = w.http_response()
        self.assertTrue(w.closed())
        return status, headers, body

    def test_files_and_types(self):
        for path, mime, body in (("/", "text/html", b"<h1>lab</h1>"),
                                 ("/app.js", "javascript", b"1;"),
                                 ("/style.css", "text/css", b"b{}"),
                                 ("/data.json", "application/json", b"{}"),
                                 ("/sub/", "text/html", b"sub"),
                                 ("/index.html?x=1", "text/html", b"<h1>lab</h1>")):
            status, headers, got = self.get(path)
            self.assertEqual(status, 200, path)
            self.assertIn(mime, headers["content-type"], path)
            self.assertEqual(got, body, path)
        self.b.wait_log("HTTP GET /app.js: 200")

    def test_traversal_and_other_refusals(self):
        for path in ("/../outside.html", "/sub/../../outside.html", "/%2e%2e/outside.html",
                     "/%2E%2E%2Foutside.html", "/..%2foutside.html", "/sub/%2e%2e/%2e%2e/outside.html",
                     "/link.html", "/.hidden.html", "/empty/", "/notes.xyz", "/nothere.html",
                     "/%00.html", "/sub\\..\\..\\outside.html", "//etc/passwd"):
            status, _, body = self.get(path)
            self.assertIn(status, (400, 403, 404), path)
            self.assertNotIn(b"OUTSIDE", body, path)
            self.assertNotIn(b"root:", body, path)
            self.b.wait_log("HTTP GET %s refused (%d" % (path[:200], status))
        status, headers, _ = self.get("/index.html", method="POST")
        self.assertEqual(status, 405)

    def test_websocket_on_the_same_listener(self):
        c = PahoClient(self, self.b.port, "same-port", transport="websockets")
        self.assertEqual(c.subscribe("a", 0), [0])


class TestConfig(unittest.TestCase):
    def start_fail(self, text, words):
        b = Broker(conf=text, plain=False)
        self.addCleanup(b.cleanup)
        self.assertNotEqual(b.start(expect_fail=True), 0)
        out = b.output()
        self.assertRegex(out, r"broker\.conf:\d+: ")
        self.assertIn(words, out)

    def test_errors_with_file_and_line(self):
        self.start_fail("listener 1 127.0.0.1\nprotocol carrier-pigeon\n", "expected mqtt or websockets")
        self.start_fail("listener 1 127.0.0.1\nhttp_dir /nonexistent-dir\n", "http_dir")
        self.start_fail("listener 1 127.0.0.1\nwebsockets_origin http://a\n",
                        "need 'protocol websockets'")
        self.start_fail("listener 1 127.0.0.1\nprotocol websockets\nwebsockets_headers_size 10\n",
                        "websockets_headers_size")
        self.start_fail("protocol websockets\n", "before any 'listener' line")


class TestSys(WSCase):
    def sys_json(self, port, topic, pred, **kw):
        """The retained JSON on topic once pred(doc) holds (re-subscribing)."""
        c = PahoClient(self, port, "reader-%d" % id(pred), **kw)
        c.subscribe(topic, 0)
        c.wait(lambda: any(t == topic and pred(json.loads(p)) for t, p in c.messages),
               "%s to satisfy the test; got %r" % (topic, c.messages[-1:]))
        return [json.loads(p) for t, p in c.messages if t == topic and pred(json.loads(p))][-1]

    def test_clients_subscriptions_failures(self):
        b = self.broker([tls_block(CERTS, cafile=True, request=True), ws_block(), wss_block()],
                        conf="sys_interval 1")
        tcp, tls, ws, wss = b.ports
        PahoClient(self, tls, "with-cert", ca=CERTS["ca.crt"], cert=CERTS["client.crt"],
                   key=CERTS["client.key"])
        s = PahoClient(self, wss, "over-wss", transport="websockets", ca=CERTS["ca.crt"])
        s.subscribe("lab/+/temp", 1)
        PahoClient(self, ws, "over-ws", transport="websockets")
        v5 = Client5(tcp, "v5-opts")
        self.addCleanup(v5.close)
        v5.connect()
        # MQTT 5 subscription options are kept beside the QoS: not shown as QoS
        self.assertEqual(v5.subscribe([("v5/nl", opts(qos=1, no_local=True, rap=True))]), [1])
        ids = {"with-cert", "over-wss", "over-ws", "v5-opts"}
        doc = self.sys_json(tcp, "$SYS/broker/clients/list",
                            lambda d: ids <= {c["id"] for c in d["clients"]})
        by = {c["id"]: c for c in doc["clients"]}
        self.assertEqual(by["with-cert"]["transport"], "tls")
        self.assertEqual(by["with-cert"]["tls"]["version"], BROKER_MAX_TLS)
        self.assertEqual(by["with-cert"]["tls"]["handshake"], "full")
        self.assertIn("CN=", by["with-cert"]["tls"]["cert_subject"])
        self.assertTrue(by["with-cert"]["tls"]["cipher"])
        self.assertEqual(by["over-wss"]["transport"], "wss")
        self.assertIsNone(by["over-wss"]["tls"]["cert_subject"])
        self.assertEqual(by["over-ws"]["transport"], "ws")
        self.assertIsNone(by["over-ws"]["tls"])
        self.assertEqual(by["over-ws"]["protocol"], "MQTT 3.1.1")
        self.assertEqual(by["v5-opts"]["protocol"], "MQTT 5")
        self.assertLessEqual(doc["shown"], doc["max"])
        doc = self.sys_json(tcp, "$SYS/broker/subscriptions/list",
                            lambda d: {"lab/+/temp", "v5/nl"} <= {x["filter"]
                                                                  for x in d["subscriptions"]})
        self.assertIn({"client": "over-wss", "filter": "lab/+/temp", "qos": 1},
                      doc["subscriptions"])
        self.assertIn({"client": "v5-opts", "filter": "v5/nl", "qos": 1}, doc["subscriptions"])
        # a refused TLS handshake (a certificate from another CA) and a
        # refused WebSocket upgrade
        ctx = ssl.create_default_context(cafile=CERTS["ca.crt"])
        ctx.load_cert_chain(CERTS["untrusted-client.crt"], CERTS["untrusted-client.key"])
        try:
            w = RawWS(wss, ctx)
            w.upgrade()
            w.close()
        except (ssl.SSLError, OSError, EOFError):
            pass
        w = self.ws(ws)
        self.assertEqual(w.upgrade(version="7")[0], 426)
        # (the harness' port probes are there too: "closed ... before sending anything")
        doc = self.sys_json(tcp, "$SYS/broker/handshakes/failed",
                            lambda d: any("rejected" in f["reason"] for f in d["failures"]) and
                            any(f["stage"] == "websocket" for f in d["failures"]))
        tls_f = [f for f in doc["failures"] if "rejected" in f["reason"]][0]
        self.assertEqual(tls_f["transport"], "wss")
        self.assertIn("rejected", tls_f["reason"])
        self.assertNotEqual(tls_f["alert"], "none")
        ws_f = [f for f in doc["failures"] if f["stage"] == "websocket"][0]
        self.assertEqual(ws_f["http_status"], 426)
        self.assertIn("only 13 is spoken", ws_f["reason"])
        rates = self.sys_json(tcp, "$SYS/broker/rates", lambda d: d["clients"] >= 3)
        self.assertIn("messages_received_per_s", rates)

    def test_acl_decides_who_reads_sys(self):
        acl = "user admin\ntopic read $SYS/#\n\nuser bob\ntopic readwrite lab/#\n"
        pw = os.path.join(TMP, "pw")
        make_password_file(pw, "admin", "adminpw")
        mosq_passwd(pw, "bob", "bobpw")
        b = Broker(listeners=[ws_block()], files={"acl": acl},
                   conf="allow_anonymous false\nsys_interval 1\nacl_file {dir}/acl\n"
                   "password_file %s\n" % pw)
        self.addCleanup(b.cleanup)
        b.start()
        bob = PahoClient(self, b.ports[1], "bob", transport="websockets", username="bob",
                         password="bobpw")
        self.assertEqual(bob.subscribe("$SYS/broker/clients/list", 0), [128])
        doc = self.sys_json(b.ports[1], "$SYS/broker/clients/list",
                            lambda d: "bob" in {c["id"] for c in d["clients"]},
                            transport="websockets", username="admin", password="adminpw")
        self.assertEqual({c["id"]: c["username"] for c in doc["clients"]}["bob"], "bob")


if __name__ == "__main__":
    unittest.main()
