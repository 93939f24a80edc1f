"""MQTT.js (the npm `mqtt` package pinned in package.json / package-lock.json,
installed into ./node_modules by `npm ci` from `make test`) against
build/secbroker over mutual TLS: connect with a client certificate,
subscribe, publish and receive at QoS 1 and 2, an untrusted certificate
refused, and a message crossing from mosquitto_pub on the plain listener.

The MQTT.js side is tests/interop/js/{sub,pub}.js, run as `node SCRIPT --name
value ...`; each prints one JSON object per line (connect, suback, message,
published, packet in/out, error, end) that the tests wait for.
Timeouts are upper bounds only.
"""
import os
import shutil

from tlslib import BROKER_MAX_TLS
from interoplib import (JS_DIR, NODE_MODULES, InteropCase, certs, feature, locked_mqttjs_version,
                        mqttjs_version, node_version, tls_block)
from mqttlib import run, spawn, start_broker, uid, wait_log

NODE = shutil.which("node") or shutil.which("nodejs")


class TestMQTTjs(InteropCase):
    """One secbroker with a plain listener and a mutual-TLS listener
    (require_certificate, cafile = the lab CA)."""

    @classmethod
    def peer(cls):
        return "MQTT.js %s (node %s)" % (mqttjs_version(), node_version())

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # make test installs both (scripts/deps.sh: nodejs npm; npm ci from the lock file)
        if not NODE:
            raise AssertionError("MQTT.js: node is not installed (make test installs nodejs)")
        if not os.path.exists(os.path.join(NODE_MODULES, "mqtt", "package.json")):
            raise AssertionError("MQTT.js: node_modules/mqtt missing; run `npm ci` at the "
                                 "repository root (make test does)")
        cls.broker = start_broker(cls,
                                  listeners=[tls_block(cafile=True, require=True)])
        cls.plain, cls.mutual = cls.broker.ports

    def js(self, script, *args, cert="client", port=None):
        """Start node tests/interop/js/SCRIPT against the mutual-TLS listener."""
        argv = [NODE, os.path.join(JS_DIR, script), "--port", str(port or self.mutual)]
        if port is None or port == self.mutual:
            argv += ["--ca", certs()["ca.crt"]]
            if cert:
                argv += ["--cert", certs()[cert + ".crt"], "--key", certs()[cert + ".key"]]
        argv += [str(a) for a in args]
        return spawn(self, argv, name="MQTT.js %s" % script)

    def subscriber(self, topic, qos, count=1):
        s = self.js("sub.js", "--topic", topic, "--qos", qos, "--count", count,
                    "--id", uid("js-sub"))
        ev = s.wait_event("connect")
        self.assertEqual(ev["returnCode"], 0, "CONNACK return code")
        ev = s.wait_event("suback")
        self.assertEqual(ev["granted"], [qos], "granted QoS")
        return s

    def publisher(self, topic, qos, *messages):
        args = ["--topic", topic, "--qos", qos, "--id", uid("js-pub")]
        for m in messages:
            args += ["--message", m]
        p = self.js("pub.js", *args)
        self.assertEqual(p.wait(), 0, "MQTT.js pub.js exit status: %s" % p.describe())
        published = [e for e in p.events() if e["event"] == "published"]
        self.assertEqual(len(published), len(messages), "publish callbacks: %s" % p.describe())
        return p

    def packets(self, proc, direction):
        return [e["cmd"] for e in proc.events()
                if e["event"] == "packet" and e["dir"] == direction]

    def roundtrip(self, qos):
        topic = uid("js/q%d" % qos)
        payload = "MQTT.js qos%d %s" % (qos, uid("m"))
        s = self.subscriber(topic, qos)
        p = self.publisher(topic, qos, payload)
        self.assertEqual(s.wait(), 0, "MQTT.js sub.js exit status: %s" % s.describe())
        msgs = [e for e in s.events() if e["event"] == "message"]
        self.assertEqual([(m["topic"], m["payload"], m["qos"], m["retain"]) for m in msgs],
                         [(topic, payload, qos, False)], "messages received by MQTT.js")
        return p, s

    @feature("mutual TLS connect (client certificate)")
    def test_connect_with_client_certificate(self):
        """MQTT.js connects with ca/cert/key over TLS: CONNACK 0; the broker's log
        names TLS 1.2 and the client certificate CN=labclient."""
        off = len(self.broker.log())
        self.subscriber(uid("js/connect"), 0, count=1).close()
        wait_log(self.broker, "TLS handshake with", BROKER_MAX_TLS, "CN=labclient", offset=off)

    @feature("QoS 1 over mutual TLS")
    def test_qos1(self):
        """MQTT.js publishes QoS 1 (PUBACK) and another MQTT.js receives it at QoS 1
        and acknowledges."""
        p, s = self.roundtrip(1)
        self.assertIn("puback", self.packets(p, "in"), "publisher got no PUBACK")
        self.assertIn("puback", self.packets(s, "out"), "subscriber sent no PUBACK")

    @feature("QoS 2 over mutual TLS")
    def test_qos2(self):
        """MQTT.js publishes QoS 2 and another MQTT.js receives it at QoS 2:
        PUBREC/PUBREL/PUBCOMP on both legs."""
        p, s = self.roundtrip(2)
        pin, pout = self.packets(p, "in"), self.packets(p, "out")
        sin, sout = self.packets(s, "in"), self.packets(s, "out")
        for cmd, seen in (("pubrec", pin), ("pubrel", pout), ("pubcomp", pin),
                          ("pubrec", sout), ("pubrel", sin), ("pubcomp", sout)):
            self.assertIn(cmd, seen, "QoS 2 step %s missing" % cmd)

    @feature("untrusted client certificate refused")
    def test_untrusted_certificate_refused(self):
        """A client certificate from a CA the listener does not trust: MQTT.js
        reports a TLS error and exits non-zero; the broker log says why."""
        off = len(self.broker.log())
        p = self.js("pub.js", "--topic", "js/never", "--message", "x", "--timeout", "20",
                    cert="untrusted-client")
        rc = p.wait()
        self.assertNotEqual(rc, 0, "MQTT.js with an untrusted certificate: %s" % p.describe())
        self.assertFalse([e for e in p.events() if e["event"] == "connect"], p.describe())
        self.assertTrue([e for e in p.events() if e["event"] == "error"], p.describe())
        wait_log(self.broker, "TLS handshake failed", "not signed by a trusted CA", offset=off)

    @feature("receive from another peer (mosquitto_pub, plain listener)")
    def test_receive_from_mosquitto_pub(self):
        """mosquitto_pub on the plain listener publishes QoS 1; MQTT.js on the
        mutual-TLS listener receives it."""
        topic = uid("js/cross")
        s = self.subscriber(topic, 1)
        rc, out, err = run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.plain), "-t",
                            topic, "-q", "1", "-m", "plain to MQTT.js"], text=True)
        self.assertEqual(rc, 0, "mosquitto_pub: %s" % err)
        self.assertEqual(s.wait(), 0, s.describe())
        ev = s.wait_event("message")
        self.assertEqual((ev["topic"], ev["payload"], ev["qos"]), (topic, "plain to MQTT.js", 1))

    def test_installed_version_is_the_locked_one(self):
        """node_modules/mqtt is the version package-lock.json pins (npm ci)."""
        self.assertEqual(mqttjs_version(), locked_mqttjs_version())
