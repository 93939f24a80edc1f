"""MQTT 5.0 against third-party peers: mosquitto_pub/mosquitto_sub -V 5 (-D
properties round trip, -F with property fields), paho-mqtt 1.6 with
protocol=MQTTv5 (session expiry, no local, retain handling, topic alias from
the client, flow control, subscription identifiers, request/response, shared
subscriptions), MQTT.js with protocolVersion 5, and tshark decoding the v5
properties of a plain capture.

Every wait is on a peer's output or callback; timeouts are upper bounds.
"""
import os
import queue
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from interoplib import (JS_DIR, InteropCase, feature, mosquitto_clients_version, mqttjs_version,
                        node_version, paho_version, tshark_version)
from mqttlib import WAIT, Sub, need, run, spawn, start_broker, uid
from tlslib import Capture

NODE = shutil.which("node") or shutil.which("nodejs")


class Paho5:
    """A paho MQTTv5 client with its loop thread; callbacks feed queues."""

    def __init__(self, tc, port, client_id=None, clean=True, expiry=None, recv_max=None):
        self.c = mqtt.Client(client_id=client_id or uid("p5"), protocol=mqtt.MQTTv5)
        self.connacks, self.msgs, self.subacks = queue.Queue(), queue.Queue(), queue.Queue()
        self.pubs = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        self.c.on_publish = lambda c, u, mid: self.pubs.put(mid)
        props = Properties(PacketTypes.CONNECT)
        if expiry is not None:
            props.SessionExpiryInterval = expiry
        if recv_max is not None:
            props.ReceiveMaximum = recv_max
        self.c.connect("127.0.0.1", port, clean_start=clean, properties=props)
        self.c.loop_start()
        tc.addCleanup(self.stop)
        self.flags, self.rc, self.props = self.connacks.get(timeout=WAIT)
        tc.assertEqual(self.rc, 0, "paho CONNACK reason")

    def sub(self, topic, qos=1, sub_id=None, **opts):
        props = None
        if sub_id:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        self.c.subscribe((topic, SubscribeOptions(qos=qos, **opts)), properties=props)
        return self.subacks.get(timeout=WAIT)

    def pub(self, topic, payload, qos=1, retain=False, **props):
        p = Properties(PacketTypes.PUBLISH)
        for k, v in props.items():
            setattr(p, k, v)
        info = self.c.publish(topic, payload, qos=qos, retain=retain,
                              properties=p if props else None)
        if qos:
            info.wait_for_publish(WAIT)

    def msg(self, timeout=WAIT):
        return self.msgs.get(timeout=timeout)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


class TestPaho5(InteropCase):
    @classmethod
    def peer(cls):
        return "paho-mqtt %s (MQTTv5)" % paho_version()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = start_broker(cls, "max_inflight_messages 20\n")

    def p5(self, **kw):
        return Paho5(self, self.broker.port, **kw)

    @feature("session expiry")
    def test_session_expiry(self):
        cid, t = uid("p5se"), uid("p5se/t")
        a = self.p5(client_id=cid, clean=True, expiry=300)
        a.sub(t, 1)
        a.stop()
        self.p5().pub(t, b"queued")
        b = self.p5(client_id=cid, clean=False, expiry=300)
        self.assertEqual(b.flags["session present"], 1)
        self.assertEqual(b.msg().payload, b"queued")

    @feature("no local")
    def test_no_local(self):
        t = uid("p5nl")
        a = self.p5()
        a.sub(t, 1, noLocal=True)
        a.pub(t, b"mine")
        self.p5().pub(t, b"theirs")
        self.assertEqual(a.msg().payload, b"theirs")

    @feature("retain handling")
    def test_retain_handling(self):
        t = uid("p5rh")
        self.p5().pub(t, b"kept", retain=True)
        a, b = self.p5(), self.p5()
        a.sub(t, 1, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)
        b.sub(t, 1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        self.assertEqual(a.msg().payload, b"kept")
        self.p5().pub(t, b"live")
        self.assertEqual(b.msg().payload, b"live")

    @feature("topic alias from the client")
    def test_topic_alias(self):
        t = uid("p5ta")
        s = self.p5()
        s.sub(t, 1)
        p = self.p5()
        p.pub(t, b"bound", TopicAlias=4)
        self.assertEqual(s.msg().payload, b"bound")
        p.pub("", b"by alias", TopicAlias=4)
        m = s.msg()
        self.assertEqual((m.topic, m.payload), (t, b"by alias"))

    @feature("flow control (receive maximum)")
    def test_flow_control(self):
        t = uid("p5fc")
        s = self.p5(recv_max=2)
        self.assertEqual(s.props.ReceiveMaximum, 20)
        s.sub(t, 1)
        p = self.p5()
        for i in range(30):
            p.pub(t, b"%d" % i)
        self.assertEqual([s.msg().payload for _ in range(30)], [b"%d" % i for i in range(30)])

    @feature("subscription identifiers")
    def test_subscription_ids(self):
        t = uid("p5sid")
        s = self.p5()
        s.sub(t + "/#", 1, sub_id=42)
        self.p5().pub(t + "/x", b"m")
        self.assertEqual(s.msg().properties.SubscriptionIdentifier, [42])

    @feature("request/response")
    def test_request_response(self):
        req, resp = uid("p5req"), uid("p5resp")
        server, client = self.p5(), self.p5()
        server.sub(req, 1)
        client.sub(resp, 1)
        client.pub(req, b"question", ResponseTopic=resp, CorrelationData=b"id-7")
        m = server.msg()
        self.assertEqual(m.properties.ResponseTopic, resp)
        server.pub(m.properties.ResponseTopic, b"answer",
                   CorrelationData=m.properties.CorrelationData)
        r = client.msg()
        self.assertEqual((r.payload, r.properties.CorrelationData), (b"answer", b"id-7"))

    @feature("shared subscriptions")
    def test_shared(self):
        t, g = uid("p5sh"), uid("g")
        a, b = self.p5(), self.p5()
        a.sub("$share/%s/%s" % (g, t), 1)
        b.sub("$share/%s/%s" % (g, t), 1)
        p = self.p5()
        for i in range(10):
            p.pub(t, b"%d" % i)
        got = []
        while len(got) < 10:
            for c in (a, b):
                try:
                    got.append((c, c.msg(timeout=0.5).payload))
                except queue.Empty:
                    pass
        self.assertEqual(sorted(x for _, x in got), sorted(b"%d" % i for i in range(10)))
        self.assertEqual(sum(1 for c, _ in got if c is a), 5)


class TestMosquittoClients5(InteropCase):
    @classmethod
    def peer(cls):
        return "mosquitto_pub/mosquitto_sub %s (-V 5)" % mosquitto_clients_version()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = start_broker(cls)

    @feature("properties round trip (-D, -F)")
    def test_properties_round_trip(self):
        t = uid("mq5")
        sub = Sub([need("stdbuf"), "-oL", "mosquitto_sub", "-V", "5", "-p", str(self.broker.port), "-t", t, "-C", "1",
                   "-q", "1", "-F", "%t|%p|%C|%R|%D|%P|%E|%F|%S", "-D", "subscribe",
                   "subscription-identifier", "9"])
        self.addCleanup(sub.close)
        sub.wait_subscribed()
        rc, out, err = run(["mosquitto_pub", "-V", "5", "-p", str(self.broker.port), "-t", t,
                            "-m", "hello", "-q", "1", "-D", "publish", "content-type", "text/plain",
                            "-D", "publish", "response-topic", "r/t", "-D", "publish",
                            "correlation-data", "abc", "-D", "publish", "user-property", "k", "v",
                            "-D", "publish", "message-expiry-interval", "60", "-D", "publish",
                            "payload-format-indicator", "1"])
        self.assertEqual(rc, 0, err)
        rc, lines, err = sub.wait()
        self.assertEqual(rc, 0, err)
        f = lines[0].decode().split("|")
        self.assertEqual(f[:6], [t, "hello", "text/plain", "r/t", "abc", "k:v"])
        self.assertTrue(0 < int(f[6]) <= 60, f)
        self.assertEqual(f[7:], ["1", "9"])

    @feature("v5 and 3.1.1 subscribers side by side")
    def test_v5_and_v311(self):
        t = uid("mq5b")
        subs = [Sub([need("stdbuf"), "-oL", "mosquitto_sub", "-V", v, "-p", str(self.broker.port), "-t", t, "-C", "1"])
                for v in ("5", "311", "31")]
        for s in subs:
            self.addCleanup(s.close)
            s.wait_subscribed()
        rc, _, err = run(["mosquitto_pub", "-V", "5", "-p", str(self.broker.port), "-t", t, "-m",
                          "all", "-D", "publish", "user-property", "a", "b"])
        self.assertEqual(rc, 0, err)
        for s in subs:
            self.assertEqual(s.wait()[1], [b"all"])


class TestMQTTjs5(InteropCase):
    @classmethod
    def peer(cls):
        return "MQTT.js %s (node %s, protocolVersion 5)" % (mqttjs_version(), node_version())

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not NODE:
            raise AssertionError("MQTT.js: node is not installed (make test installs nodejs)")
        cls.broker = start_broker(cls)

    @feature("publish/subscribe with user properties")
    def test_user_properties(self):
        t = uid("js5")
        port = str(self.broker.port)
        sub = spawn(self, [NODE, os.path.join(JS_DIR, "sub.js"), "--port", port, "--version", "5",
                           "--topic", t, "--qos", "1", "--count", "1"])
        con = sub.wait_event("connect")
        self.assertEqual(con["properties"]["topicAliasMaximum"], 10)
        sub.wait_event("suback")
        pub = spawn(self, [NODE, os.path.join(JS_DIR, "pub.js"), "--port", port, "--version", "5",
                           "--topic", t, "--qos", "1", "--message", "hi", "--user", "k=v"])
        pub.wait_event("published")
        m = sub.wait_event("message")
        self.assertEqual(m["payload"], "hi")
        self.assertEqual(m["properties"]["userProperties"], {"k": "v"})
        self.assertEqual(sub.wait_exit(), 0)


class TestTshark5(InteropCase):
    @classmethod
    def peer(cls):
        return "tshark %s" % tshark_version()

    @feature("v5 properties in a capture")
    def test_properties_decoded(self):
        self.assertTrue(shutil.which("tshark"), "tshark not installed (make test installs it)")
        b = start_broker(self)
        pcap = os.path.join(b.dir, "v5.pcapng")
        cap = Capture(b.port, pcap)
        self.addCleanup(cap.stop)
        cap.wait_ready()
        t = uid("ts5")
        rc, _, err = run(["mosquitto_pub", "-V", "5", "-p", str(b.port), "-t", t, "-m", "x",
                          "-q", "1", "-D", "publish", "user-property", "lab", "wireshark",
                          "-D", "connect", "session-expiry-interval", "30"])
        self.assertEqual(rc, 0, err)
        # the broker's PUBACK (first byte 0x40; wait_ready's probe connections
        # carry no payload, their FINs would match a FIN filter at once): the
        # CONNECT, CONNACK and PUBLISH before it are on disk
        cap.wait_frames("tcp.srcport == %d && tcp.len > 0 && tcp.payload[0] == 0x40" % b.port)
        cap.stop()
        p = subprocess.run(["tshark", "-r", pcap, "-d", "tcp.port==%d,mqtt" % b.port, "-Y",
                            "mqtt", "-T", "fields", "-e", "mqtt.msgtype", "-e", "mqtt.ver",
                            "-e", "mqtt.property_id", "-e", "mqtt.prop_key", "-e",
                            "mqtt.prop_value"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        out = p.stdout.decode()
        self.assertIn("lab", out, out + p.stderr.decode())
        self.assertIn("wireshark", out)
        rows = [line.split("\t") for line in out.splitlines()]
        self.assertIn("5", [r[1] for r in rows if r[0] == "1"], "CONNECT protocol version 5")
        connack = [r for r in rows if r[0] == "2"]
        self.assertTrue(connack and connack[0][2], "CONNACK properties decoded: %r" % rows)
