"""MQTT.js (node_modules/mqtt, pinned by package-lock.json) over WebSockets:
ws:// and wss:// (server verified against the lab CA, and a client
certificate) against build/secbroker, at QoS 1 and 2, with a message crossing
to a plain-TCP mosquitto_sub and from a MQTT.js publisher on the other
WebSocket transport. The scripts are tests/interop/js/{sub,pub}.js with --ws 1.

Timeouts are upper bounds only.
"""
import os
import shutil

from interoplib import (JS_DIR, NODE_MODULES, InteropCase, certs, feature, mqttjs_version,
                        node_version, tls_block)
from mqttlib import need, spawn, start_broker, uid

NODE = shutil.which("node") or shutil.which("nodejs")


class TestMQTTjsWebSockets(InteropCase):
    @classmethod
    def peer(cls):
        return "MQTT.js %s over WebSockets (node %s)" % (mqttjs_version(), node_version())

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not NODE:
            raise AssertionError("MQTT.js: node is not installed (make test installs nodejs)")
        if not os.path.exists(os.path.join(NODE_MODULES, "mqtt", "package.json")):
            raise AssertionError("MQTT.js: node_modules/mqtt missing; run `npm ci`")
        cls.broker = start_broker(cls, listeners=[
            "listener {port} 127.0.0.1\nprotocol websockets",
            tls_block(cafile=True, extra=["protocol websockets"])])
        cls.plain, cls.ws, cls.wss = cls.broker.ports

    def js(self, script, secure, *args, cert=None):
        argv = [NODE, os.path.join(JS_DIR, script), "--ws", "1",
                "--port", str(self.wss if secure else self.ws)]
        if secure:
            argv += ["--ca", certs()["ca.crt"], "--host", "localhost"]
            if cert:
                argv += ["--cert", certs()[cert + ".crt"], "--key", certs()[cert + ".key"]]
        return spawn(self, argv + [str(a) for a in args], name="MQTT.js %s" % script)

    def roundtrip(self, sub_secure, pub_secure, qos, cert=None):
        topic = uid("jsws/q%d" % qos)
        payload = "over ws %s" % uid("m")
        s = self.js("sub.js", sub_secure, "--topic", topic, "--qos", qos, "--id", uid("js-sub"),
                    cert=cert)
        self.assertEqual(s.wait_event("connect")["returnCode"], 0)
        self.assertEqual(s.wait_event("suback")["granted"], [qos])
        tcp = spawn(self, [need("mosquitto_sub"), "-d", "-p", str(self.plain), "-t", topic,
                           "-C", "1", "-q", "1"], line_buffered=True)
        tcp.wait_line(lambda ln: ln.startswith(b"Subscribed (mid"), "SUBACK")
        p = self.js("pub.js", pub_secure, "--topic", topic, "--qos", qos, "--message", payload,
                    "--id", uid("js-pub"), cert=cert)
        self.assertEqual(p.wait_exit(), 0, p.describe())
        ev = s.wait_event("message")
        self.assertEqual((ev["topic"], ev["payload"], ev["qos"]), (topic, payload, qos))
        self.assertEqual(s.wait_exit(), 0, s.describe())
        tcp.wait_line(lambda ln: ln == payload.encode(), "the message at the TCP subscriber")

    @feature("ws: subscribe and publish at QoS 1")
    def test_ws_qos1(self):
        self.roundtrip(False, False, 1)

    @feature("wss with a client certificate: QoS 2, published over ws")
    def test_wss_qos2_from_ws(self):
        self.roundtrip(True, False, 2, cert="client")

    @feature("ws subscriber, wss publisher (server certificate verified)")
    def test_ws_from_wss(self):
        self.roundtrip(False, True, 1)
