"""Third-party clients from Debian against secbroker: mosquitto_pub/mosquitto_sub
(mosquitto-clients) and python3-paho-mqtt 1.6 (API: mqtt.Client(client_id=...,
clean_session=...)). QoS 0/1/2 end to end, retained, will, persistent session
across reconnect, unsubscribe, MQTT 3.1 and 3.1.1.

mosquitto_sub runs under `stdbuf -oL` with -d so that its "received SUBACK" line
tells us when it is subscribed (no sleeps).
"""
import os
import queue
import signal
import subprocess
import tempfile
import threading
import unittest

from mqttlib import (WAIT, connect, marker, need, need_module, recv_publish, start_class_broker,
                     subscribe, uid)

try:
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover
    mqtt = None


def need_mosquitto_clients():
    """mosquitto_pub and mosquitto_sub (AssertionError naming the missing one)."""
    return need("mosquitto_pub"), need("mosquitto_sub")


class Sub:
    """A running mosquitto_sub, ready (subscribed) when constructed."""

    def __init__(self, tc, port, topic, qos=0, extra=(), count=1):
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                "-q", str(qos), "-d", "-W", "20"] + (["-C", str(count)] if count else []) + list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tc.addCleanup(self.kill)
        self.lines = []
        t = threading.Timer(WAIT, self.kill)  # never hang on a broker that does not answer
        t.start()
        try:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if "received SUBACK" in line:
                    break
        finally:
            t.cancel()
        tc.assertTrue(any("received SUBACK" in l for l in self.lines),
                      "mosquitto_sub never got SUBACK:\n" + "\n".join(self.lines))

    def finish(self, timeout=WAIT):
        """Wait for exit; (rc, all output lines). Reads through the same buffered pipe
        object as __init__ (communicate() with a timeout would bypass its buffer)."""
        t = threading.Timer(timeout, self.kill)
        t.start()
        try:
            out = self.proc.stdout.read()
            self.proc.wait()
        finally:
            t.cancel()
        self.lines += out.splitlines()
        return self.proc.returncode, self.lines

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def mosq_pub(port, *args, input=None):
    p = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port)] + list(args),
                       capture_output=True, input=input, timeout=WAIT)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


class TestMosquittoClients(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need_mosquitto_clients()
        cls.broker = start_class_broker(cls)

    def test_pub_sub_each_qos(self):
        """mosquitto_pub -> mosquitto_sub at QoS 0, 1 and 2 (MQTT 3.1.1), delivered at
        the requested QoS."""
        for q in (0, 1, 2):
            with self.subTest(qos=q):
                t = uid("mq")
                s = Sub(self, self.broker.port, t, qos=q, extra=["-V", "mqttv311"])
                rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "hello %d" % q, "-q", str(q),
                                   "-V", "mqttv311")
                self.assertEqual(rc, 0, out)
                rc, lines = s.finish()
                self.assertEqual(rc, 0, "\n".join(lines))
                self.assertIn("hello %d" % q, lines)
                self.assertTrue(any("received PUBLISH (d0, q%d, r0" % q in l for l in lines), lines)

    def test_pub_sub_mqtt31(self):
        """mosquitto clients speaking MQTT 3.1 (MQIsdp, -V mqttv31)."""
        t = uid("mq31")
        s = Sub(self, self.broker.port, t, qos=1, extra=["-V", "mqttv31"])
        rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "old", "-q", "1", "-V", "mqttv31")
        self.assertEqual(rc, 0, out)
        rc, lines = s.finish()
        self.assertEqual(rc, 0)
        self.assertIn("old", lines)

    def test_retained_and_clear(self):
        """mosquitto_pub -r stores a retained message a later mosquitto_sub gets with
        r1; -r -n clears it."""
        t = uid("ret")
        rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "kept", "-r", "-q", "1")
        self.assertEqual(rc, 0, out)
        s = Sub(self, self.broker.port, t, qos=1)
        rc, lines = s.finish()
        self.assertEqual(rc, 0)
        self.assertIn("kept", lines)
        self.assertTrue(any("received PUBLISH (d0, q1, r1" in l for l in lines), lines)
        rc, out = mosq_pub(self.broker.port, "-t", t, "-n", "-r", "-q", "1")
        self.assertEqual(rc, 0, out)
        raw = connect(self, self.broker)
        subscribe(raw, [(t, 1)])
        marker(self, raw, connect(self, self.broker), t)

    def test_will_on_kill(self):
        """mosquitto_sub with --will-* killed with SIGKILL: the will is published."""
        wt = uid("will")
        raw = connect(self, self.broker)
        subscribe(raw, [(wt, 1)])
        s = Sub(self, self.broker.port, uid("t"), count=0,
                extra=["--will-topic", wt, "--will-payload", "killed", "--will-qos", "1"])
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        m = recv_publish(raw)
        self.assertEqual((m.topic, m.payload, m.qos), (wt, b"killed", 1))

    def test_persistent_session(self):
        """mosquitto_sub -c -i ID: subscribe and leave (-E), a QoS 1 message published
        meanwhile arrives when it comes back."""
        cid, t = uid("mqp"), uid("t")
        p = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-c",
                            "-i", cid, "-t", t, "-q", "1", "-E"], capture_output=True, timeout=WAIT)
        self.assertEqual(p.returncode, 0, p.stderr)
        rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "while away", "-q", "1")
        self.assertEqual(rc, 0, out)
        p = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-c",
                            "-i", cid, "-t", t, "-q", "1", "-C", "1", "-W", "10"],
                           capture_output=True, text=True, timeout=WAIT + 5)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.strip(), "while away")

    def test_big_file_and_lines(self):
        """mosquitto_pub -f with a 256 KiB file arrives intact; -l sends one message per
        line."""
        t = uid("big")
        raw = connect(self, self.broker)
        subscribe(raw, [(t, 1)])
        data = os.urandom(256 * 1024)
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            rc, out = mosq_pub(self.broker.port, "-t", t, "-f", f.name, "-q", "1")
        self.assertEqual(rc, 0, out)
        self.assertTrue(recv_publish(raw).payload == data, "256 KiB payload corrupted")
        rc, out = mosq_pub(self.broker.port, "-t", t, "-l", "-q", "1", input=b"one\ntwo\nthree\n")
        self.assertEqual(rc, 0, out)
        self.assertEqual([recv_publish(raw).payload for _ in range(3)], [b"one", b"two", b"three"])


class Paho:
    """A paho-mqtt 1.6 client running its network loop in a thread."""

    def __init__(self, tc, port, client_id="", clean_session=True, protocol=None, will=None):
        kw = {"client_id": client_id, "clean_session": clean_session}
        if protocol is not None:
            kw["protocol"] = protocol
        self.c = mqtt.Client(**kw)
        self.port = port
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.flags = None
        self.rc = None
        self.acks = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, granted: self._ack(mid, granted)
        self.c.on_unsubscribe = lambda c, u, mid: self._ack(mid, None)
        if will:
            self.c.will_set(*will)
        self.tc = tc
        tc.addCleanup(self.stop)

    def _on_connect(self, c, u, flags, rc):
        self.flags, self.rc = flags, rc
        self.connected.set()

    def _ack(self, mid, value):
        self.acks[mid] = value
        ev = self.acks.get(("ev", mid))
        if ev:
            ev.set()

    def start(self):
        self.connected.clear()
        self.c.connect("127.0.0.1", self.port, keepalive=60)
        self.c.loop_start()
        self.tc.assertTrue(self.connected.wait(WAIT), "paho never got CONNACK")
        self.tc.assertEqual(self.rc, 0)
        return self

    def _wait_ack(self, call):
        ev = threading.Event()
        with_lock = call()
        rc, mid = with_lock
        self.tc.assertEqual(rc, mqtt.MQTT_ERR_SUCCESS)
        self.acks[("ev", mid)] = ev
        if mid not in self.acks:
            self.tc.assertTrue(ev.wait(WAIT), "no SUBACK/UNSUBACK for mid %d" % mid)
        return self.acks[mid]

    def subscribe(self, topic, qos):
        return self._wait_ack(lambda: self.c.subscribe(topic, qos))

    def unsubscribe(self, topic):
        return self._wait_ack(lambda: self.c.unsubscribe(topic))

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=WAIT)
        self.tc.assertTrue(info.is_published(), "paho publish not completed")

    def message(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            self.tc.fail("paho client received nothing within %.0fs" % timeout)

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def stop(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


class TestPaho(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need_module("paho.mqtt.client")
        cls.broker = start_class_broker(cls)

    def paho(self, **kw):
        return Paho(self, self.broker.port, **kw).start()

    def test_qos_0_1_2(self):
        """paho publisher and subscriber at QoS 0, 1, 2; subscriber QoS 2 gets each at the
        publish QoS."""
        sub = self.paho()
        t = uid("paho")
        self.assertEqual(tuple(sub.subscribe(t, 2)), (2,))
        pub = self.paho()
        for q in (0, 1, 2):
            pub.publish(t, b"q%d" % q, qos=q)
            m = sub.message()
            self.assertEqual((m.topic, m.payload, m.qos, m.retain), (t, b"q%d" % q, q, False))

    def test_mqttv31(self):
        """paho with protocol MQTTv31 (MQIsdp)."""
        sub = self.paho(protocol=mqtt.MQTTv31, client_id=uid("p31"))
        t = uid("paho")
        sub.subscribe(t, 1)
        self.paho(protocol=mqtt.MQTTv31, client_id=uid("p31")).publish(t, b"v31", qos=1)
        self.assertEqual(sub.message().payload, b"v31")

    def test_retained(self):
        """Retained message from paho delivered to a later paho subscriber with retain=1."""
        t = uid("ret")
        self.paho().publish(t, b"kept", qos=1, retain=True)
        sub = self.paho()
        sub.subscribe(t, 1)
        m = sub.message()
        self.assertEqual((m.payload, m.retain), (b"kept", True))

    def test_will(self):
        """paho client with a will whose socket is closed without DISCONNECT: the will
        (retained) reaches a subscriber and later subscribers."""
        wt = uid("will")
        sub = self.paho()
        sub.subscribe(wt, 1)
        w = Paho(self, self.broker.port, will=(wt, b"paho gone", 1, True)).start()
        w.c.loop_stop()
        w.c.socket().close()
        m = sub.message()
        self.assertEqual((m.topic, m.payload, m.qos), (wt, b"paho gone", 1))
        late = self.paho()
        late.subscribe(wt, 1)
        self.assertEqual(late.message().payload, b"paho gone")

    def test_persistent_session_across_reconnect(self):
        """clean_session=False: after a disconnect the QoS 1 message published meanwhile
        arrives on reconnect and CONNACK says session present."""
        cid, t = uid("pp"), uid("t")
        c = Paho(self, self.broker.port, client_id=cid, clean_session=False).start()
        self.assertEqual(c.flags.get("session present"), 0)
        c.subscribe(t, 1)
        c.disconnect()
        self.paho().publish(t, b"queued for you", qos=1)
        c2 = Paho(self, self.broker.port, client_id=cid, clean_session=False).start()
        self.assertEqual(c2.flags.get("session present"), 1)
        self.assertEqual(c2.message().payload, b"queued for you")

    def test_persistent_qos2_queue_in_order(self):
        """paho clean_session=False at QoS 2: three QoS 2 messages from mosquitto_pub
        while offline arrive once each, in order, after reconnect."""
        need_mosquitto_clients()
        cid, t = uid("pq2"), uid("t")
        c = Paho(self, self.broker.port, client_id=cid, clean_session=False).start()
        c.subscribe(t, 2)
        c.disconnect()
        for i in range(3):
            rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "m%d" % i, "-q", "2")
            self.assertEqual(rc, 0, out)
        c2 = Paho(self, self.broker.port, client_id=cid, clean_session=False).start()
        got = [c2.message() for _ in range(3)]
        self.assertEqual([(m.payload, m.qos) for m in got], [(b"m0", 2), (b"m1", 2), (b"m2", 2)])
        c2.publish(t, b"marker", qos=2)
        self.assertEqual(c2.message().payload, b"marker")

    def test_unsubscribe(self):
        """paho unsubscribe: no further messages on that topic (proved with a marker on a
        topic still subscribed)."""
        t, keep = uid("t"), uid("keep")
        sub = self.paho()
        sub.subscribe(t, 1)
        sub.subscribe(keep, 1)
        pub = self.paho()
        pub.publish(t, b"before", qos=1)
        self.assertEqual(sub.message().payload, b"before")
        sub.unsubscribe(t)
        pub.publish(t, b"after", qos=1)
        pub.publish(keep, b"marker", qos=1)
        self.assertEqual(sub.message().payload, b"marker")

    def test_mosquitto_pub_to_paho_and_paho_to_raw(self):
        """Mixed clients: mosquitto_pub -> paho, paho -> raw socket subscriber."""
        need_mosquitto_clients()
        t = uid("mix")
        sub = self.paho()
        sub.subscribe(t, 2)
        rc, out = mosq_pub(self.broker.port, "-t", t, "-m", "from mosquitto_pub", "-q", "2")
        self.assertEqual(rc, 0, out)
        self.assertEqual(sub.message().payload, b"from mosquitto_pub")
        raw = connect(self, self.broker)
        subscribe(raw, [(t, 2)])
        sub.publish(t, b"from paho", qos=2)
        self.assertEqual(recv_publish(raw).payload, b"from paho")


if __name__ == "__main__":
    unittest.main()
