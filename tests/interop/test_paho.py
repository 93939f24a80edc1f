"""python3-paho-mqtt (Debian 12: paho 1.6, the mqtt.Client(client_id=...,
clean_session=...) API) against build/secbroker: QoS 0/1/2 flows (paho's own
packet log shows each handshake step), retained messages, a will published when
a paho process is SIGKILLed, a persistent session across reconnect,
unsubscribe, 50 clients at once, and mutual TLS.

Every wait is on a paho callback (no sleeps); timeouts are upper bounds only.
"""
import os
import signal
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

from interoplib import InteropCase, certs, feature, paho_version, tls_block
from mqttlib import WAIT, log_tail, spawn, start_broker, uid, wait_log


class Paho:
    """A paho client with its network loop thread; callbacks become waitable state."""

    def __init__(self, tc, port, client_id=None, clean=True, tls_cert=None, connect=True,
                 will=None):
        self.tc = tc
        self.port = port
        self.client_id = client_id or uid("paho")
        self.c = mqtt.Client(client_id=self.client_id, clean_session=clean,
                             protocol=mqtt.MQTTv311)
        if tls_cert is not None:
            kw = {}
            if tls_cert:
                kw = {"certfile": certs()[tls_cert + ".crt"], "keyfile": certs()[tls_cert + ".key"]}
            self.c.tls_set(ca_certs=certs()["ca.crt"], tls_version=ssl.PROTOCOL_TLS_CLIENT, **kw)
        if will:
            self.c.will_set(*will)
        self.cond = threading.Condition()
        self.connacks = []  # (flags, rc)
        self.subacks = {}
        self.unsubacks = set()
        self.published = set()
        self.messages = []
        self.log = []
        self.disconnected = 0
        self.c.on_connect = self._cb(lambda f, rc: self.connacks.append((dict(f), rc)))
        self.c.on_subscribe = self._cb(lambda mid, g: self.subacks.__setitem__(mid, list(g)))
        self.c.on_unsubscribe = self._cb(lambda mid: self.unsubacks.add(mid))
        self.c.on_publish = self._cb(lambda mid: self.published.add(mid))
        self.c.on_message = self._cb(lambda m: self.messages.append(
            (m.topic, m.payload, m.qos, bool(m.retain))))
        self.c.on_log = self._cb(lambda level, buf: self.log.append(buf))
        self.c.on_disconnect = self._cb(lambda rc: setattr(self, "disconnected",
                                                           self.disconnected + 1))
        tc.addCleanup(self.stop)
        self.running = False
        if connect:
            self.connect()

    def _cb(self, fn):
        def cb(client, userdata, *args):
            with self.cond:
                fn(*args)
                self.cond.notify_all()
        return cb

    def wait(self, pred, what, timeout=WAIT):
        deadline = time.time() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.time()
                if left <= 0:
                    self.tc.fail("paho client %s: no %s within %.0fs; paho log tail %r\n  %s" % (
                        self.client_id, what, timeout, self.log[-15:], log_tail(self.tc.broker)))
                self.cond.wait(left)

    def connect(self, expect_rc=0):
        """Connect (asynchronously, loop thread running) and wait for the CONNACK;
        returns the CONNACK flags dict."""
        n = len(self.connacks)
        if not self.running:
            self.c.connect_async("127.0.0.1", self.port, keepalive=60)
            self.c.loop_start()
            self.running = True
        self.wait(lambda: len(self.connacks) > n, "CONNACK")
        flags, rc = self.connacks[-1]
        self.tc.assertEqual(rc, expect_rc, "CONNACK return code for paho %s" % self.client_id)
        return flags

    def subscribe(self, topics, qos=0):
        if isinstance(topics, str):
            topics = [(topics, qos)]
        rc, mid = self.c.subscribe(topics)
        self.tc.assertEqual(rc, mqtt.MQTT_ERR_SUCCESS)
        self.wait(lambda: mid in self.subacks, "SUBACK")
        return self.subacks[mid]

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        self.tc.assertEqual(rc, mqtt.MQTT_ERR_SUCCESS)
        self.wait(lambda: mid in self.unsubacks, "UNSUBACK")

    def publish(self, topic, payload, qos=0, retain=False, wait=True):
        """Publish; for QoS 1/2 wait until paho's on_publish (PUBACK / PUBCOMP)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        self.tc.assertEqual(info.rc, mqtt.MQTT_ERR_SUCCESS)
        if wait:
            self.wait(lambda: info.mid in self.published,
                      "on_publish for mid %d (QoS %d)" % (info.mid, qos))
        return info.mid

    def wait_messages(self, n, what="message"):
        self.wait(lambda: len(self.messages) >= n, "%s (%d wanted, have %r)" % (
            what, n, self.messages))
        return list(self.messages)

    def disconnect(self):
        n = self.disconnected
        self.c.disconnect()
        self.wait(lambda: self.disconnected > n, "on_disconnect")
        self.c.loop_stop()
        self.running = False

    def stop(self):
        if self.running:
            try:
                self.c.disconnect()
            finally:
                self.c.loop_stop()
                self.running = False


WILL_SCRIPT = r"""
import sys
import paho.mqtt.client as mqtt
port, cid, topic, payload = sys.argv[1:5]
c = mqtt.Client(client_id=cid, clean_session=True, protocol=mqtt.MQTTv311)
c.will_set(topic, payload, qos=1, retain=False)
c.on_connect = lambda client, userdata, flags, rc: print("connack", rc, flush=True)
c.connect("127.0.0.1", int(port), keepalive=60)
c.loop_forever()
"""


class TestPaho(InteropCase):
    """One secbroker with a plain and a mutual-TLS listener, shared by the tests."""

    @classmethod
    def peer(cls):
        return "paho-mqtt %s (python %d.%d)" % (paho_version(), *sys.version_info[:2])

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.broker = start_broker(cls,
                                  listeners=[tls_block(cafile=True, require=True)])
        cls.plain, cls.mutual = cls.broker.ports

    def flow(self, qos, port=None, tls_cert=None):
        port = port or self.plain
        topic = uid("paho/q%d" % qos)
        sub = Paho(self, port, tls_cert=tls_cert)
        self.assertEqual(sub.subscribe(topic, qos), [qos], "granted QoS")
        pub = Paho(self, port, tls_cert=tls_cert)
        payload = ("paho qos%d " % qos).encode() + os.urandom(8).hex().encode()
        pub.publish(topic, payload, qos=qos)
        msgs = sub.wait_messages(1)
        self.assertEqual(msgs, [(topic, payload, qos, False)], "message delivered to paho")
        return pub, sub

    @feature("QoS 0")
    def test_qos0(self):
        """paho -> secbroker -> paho at QoS 0."""
        self.flow(0)

    @feature("QoS 1")
    def test_qos1(self):
        """paho -> secbroker -> paho at QoS 1: PUBACK to the publisher, the subscriber
        receives q1 and acknowledges."""
        pub, sub = self.flow(1)
        self.assertTrue(any(l.startswith("Received PUBACK") for l in pub.log), pub.log)
        self.assertTrue(any(l.startswith("Received PUBLISH (d0, q1, r0") for l in sub.log),
                        sub.log)
        sub.wait(lambda: any(l.startswith("Sending PUBACK") for l in sub.log), "PUBACK sent")

    @feature("QoS 2")
    def test_qos2(self):
        """paho -> secbroker -> paho at QoS 2: PUBREC/PUBREL/PUBCOMP on both legs."""
        pub, sub = self.flow(2)
        for step in ("Received PUBREC", "Sending PUBREL", "Received PUBCOMP"):
            self.assertTrue(any(l.startswith(step) for l in pub.log),
                            "publisher log lacks %r: %r" % (step, pub.log))
        # on_message fires on PUBREL; PUBCOMP is sent right after it
        sub.wait(lambda: any(l.startswith("Sending PUBCOMP") for l in sub.log), "PUBCOMP sent")
        for step in ("Received PUBLISH (d0, q2, r0", "Sending PUBREC", "Received PUBREL"):
            self.assertTrue(any(l.startswith(step) for l in sub.log),
                            "subscriber log lacks %r: %r" % (step, sub.log))

    @feature("mutual TLS QoS 1")
    def test_mutual_tls_qos1(self):
        """paho with tls_set(ca, client.crt, client.key) on a require_certificate
        listener, QoS 1."""
        off = len(self.broker.log())
        self.flow(1, port=self.mutual, tls_cert="client")
        wait_log(self.broker, "TLS handshake with", "CN=labclient", offset=off)

    @feature("retained")
    def test_retained(self):
        """A retained QoS 1 message reaches a later paho subscriber with retain set;
        an empty retained publish clears it."""
        topic = uid("paho/retained")
        pub = Paho(self, self.plain)
        pub.publish(topic, b"kept", qos=1, retain=True)
        sub = Paho(self, self.plain)
        sub.subscribe(topic, 1)
        self.assertEqual(sub.wait_messages(1), [(topic, b"kept", 1, True)])
        pub.publish(topic, b"", qos=1, retain=True)  # clear
        self.assertEqual(sub.wait_messages(2)[1], (topic, b"", 1, False),
                         "a subscribed client gets the clearing publish with retain 0")
        late = Paho(self, self.plain)
        late.subscribe(topic, 1)
        pub.publish(topic, b"marker", qos=1)
        self.assertEqual(late.wait_messages(1), [(topic, b"marker", 1, False)],
                         "retained message not cleared")

    @feature("will on abrupt close")
    def test_will_on_sigkill(self):
        """A paho client with will_set(qos=1) in another process is SIGKILLed (no
        DISCONNECT): the broker publishes the will to a paho subscriber."""
        topic = uid("paho/will")
        watcher = Paho(self, self.plain)
        watcher.subscribe(topic, 1)
        cid = uid("paho-doomed")
        p = spawn(self, [sys.executable, "-c", WILL_SCRIPT, str(self.plain), cid, topic,
                         "paho died"], name="paho will client")
        p.wait_line(lambda l: l == b"connack 0", "CONNACK 0")
        p.kill(signal.SIGKILL)
        self.assertEqual(watcher.wait_messages(1, "will"), [(topic, b"paho died", 1, False)])
        wait_log(self.broker, "Client %s" % cid, "disconnected")

    @feature("persistent session")
    def test_persistent_session(self):
        """clean_session=False: subscribe at QoS 1, disconnect, two QoS 1 messages are
        published meanwhile; the reconnect gets session present = 1 and both
        messages in order without subscribing again."""
        topic = uid("paho/persist")
        cid = uid("paho-persist")
        c = Paho(self, self.plain, client_id=cid, clean=False)
        self.assertEqual(c.connacks[-1][0].get("session present"), 0)
        c.subscribe(topic, 1)
        c.disconnect()
        wait_log(self.broker, "Client %s" % cid, "disconnected")
        pub = Paho(self, self.plain)
        pub.publish(topic, b"while away 1", qos=1)
        pub.publish(topic, b"while away 2", qos=1)
        flags = c.connect()
        self.assertEqual(flags.get("session present"), 1, "session present on reconnect")
        self.assertEqual(c.wait_messages(2), [(topic, b"while away 1", 1, False),
                                              (topic, b"while away 2", 1, False)])

    @feature("unsubscribe")
    def test_unsubscribe(self):
        """After UNSUBACK nothing more arrives on the topic: a publish to it followed
        by a marker on a still-subscribed topic delivers only the marker."""
        topic, marker = uid("paho/unsub"), uid("paho/marker")
        sub = Paho(self, self.plain)
        self.assertEqual(sub.subscribe([(topic, 1), (marker, 1)]), [1, 1])
        pub = Paho(self, self.plain)
        pub.publish(topic, b"before", qos=1)
        sub.wait_messages(1)
        sub.unsubscribe(topic)
        pub.publish(topic, b"after unsubscribe", qos=1)
        pub.publish(marker, b"marker", qos=1)
        msgs = sub.wait_messages(2)
        self.assertEqual(msgs, [(topic, b"before", 1, False), (marker, b"marker", 1, False)],
                         "delivery after UNSUBACK")

    @feature("50 clients at once")
    def test_many_clients(self):
        """50 paho clients connected at once: each subscribes to a shared topic and
        its own; one QoS 1 message on the shared topic reaches all 50, then each
        publishes QoS 1 to its neighbour's topic and each receives exactly one."""
        n = 50
        base = uid("paho/many")
        clients = [Paho(self, self.plain, client_id="%s-%d" % (base.replace("/", "-"), i),
                        connect=False) for i in range(n)]
        for c in clients:
            c.c.connect_async("127.0.0.1", self.plain, keepalive=60)
            c.c.loop_start()
            c.running = True
        for c in clients:
            c.wait(lambda c=c: c.connacks, "CONNACK")
            self.assertEqual(c.connacks[0][1], 0, "CONNACK for %s" % c.client_id)
        mids = [c.c.subscribe([(base + "/all", 1), ("%s/%d" % (base, i), 1)])[1]
                for i, c in enumerate(clients)]
        for c, mid in zip(clients, mids):
            c.wait(lambda c=c, mid=mid: mid in c.subacks, "SUBACK")
            self.assertEqual(c.subacks[mid], [1, 1])
        clients[0].publish(base + "/all", b"to everyone", qos=1)
        for c in clients:
            c.wait_messages(1)
        infos = [(c, c.publish("%s/%d" % (base, (i + 1) % n), b"from %d" % i, qos=1, wait=False))
                 for i, c in enumerate(clients)]
        for c, mid in infos:
            c.wait(lambda c=c, mid=mid: mid in c.published, "PUBACK")
        for i, c in enumerate(clients):
            msgs = c.wait_messages(2)
            self.assertEqual(msgs, [(base + "/all", b"to everyone", 1, False),
                                    ("%s/%d" % (base, i), b"from %d" % ((i - 1) % n), 1, False)],
                             "client %d of %d" % (i, n))
