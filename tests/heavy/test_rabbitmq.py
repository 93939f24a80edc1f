"""A bridge into RabbitMQ's MQTT plugin (issue 17): the clustered engine users
grow into. Debian's rabbitmq-server (3.10.8) is started and stopped by the
test on loopback ports, in a folder owned by the rabbitmq user (Debian's
wrapper drops to it); one node start takes about 15 s, so this suite runs
from `make test-interop-heavy`, not `make test`.

What is checked: the bridge falls back from try_private (RabbitMQ closes the
connection on protocol level 0x84 instead of answering CONNACK 1), QoS 1 both
ways with prefixes, messages queued at the bridge while RabbitMQ is down, and
messages RabbitMQ holds for a persistent subscriber surviving its restart.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from mqttlib import (WAIT, connect, free_port, log_offset, need, publish, recv_publish,  # noqa: E402
                     start_broker, subscribe, uid, wait_log_line, wait_port)

START_WAIT = 120  # upper bound for a node start on a loaded machine


class RabbitNode:
    """One RabbitMQ node with the MQTT plugin on free loopback ports."""

    def __init__(self):
        need("rabbitmq-server")
        need("rabbitmqctl")
        self.dir = tempfile.mkdtemp(prefix="secbroker-rabbit-")
        self.mqtt_port, amqp, dist, self.epmd_port = (free_port() for _ in range(4))
        self.node = "sbtest%d@localhost" % self.mqtt_port
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "mqtt.listeners.tcp.default = 127.0.0.1:%d\n"
                    "mqtt.allow_anonymous = true\n" % (amqp, self.mqtt_port))
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        u = pwd.getpwnam("rabbitmq")
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files + ["."]:
                os.chown(os.path.join(root, n), u.pw_uid, u.pw_gid)
        os.chmod(self.dir, 0o755)
        self.env = dict(os.environ, RABBITMQ_NODENAME=self.node,
                        RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq.conf"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
                        RABBITMQ_DIST_PORT=str(dist), ERL_EPMD_PORT=str(self.epmd_port))
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.dir, "out.txt"), "a")
        self.proc = subprocess.Popen(["rabbitmq-server"], env=self.env, cwd=self.dir,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if not wait_port(self.mqtt_port, timeout=START_WAIT):
            raise AssertionError("RabbitMQ did not open its MQTT port:\n" + self.output())

    def output(self):
        text = ""
        for name in ["out.txt"] + ["log/" + n for n in os.listdir(os.path.join(self.dir, "log"))]:
            path = os.path.join(self.dir, name)
            if os.path.isfile(path):
                with open(path, errors="replace") as f:
                    text += f.read()[-3000:]
        return text

    def stop(self):
        if self.proc is None:
            return
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, cwd=self.dir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.out.close()

    def epmd_pids(self):
        """The epmd this node started (found by its ERL_EPMD_PORT, by PID)."""
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/environ" % p, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if b"epmd" in cmd.split(b"\0")[0] and b"ERL_EPMD_PORT=%d" % self.epmd_port in env:
                pids.append(int(p))
        return pids

    def cleanup(self):
        self.stop()
        for pid in self.epmd_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def sys_value(tc, client, name):
    """The next value of a $SYS counter the client subscribed to."""
    m = recv_publish(client)
    tc.assertTrue(m.topic.endswith(name), m)
    return int(m.payload)


class TestBridgeRabbitMQ(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rabbit = RabbitNode()
        cls.addClassCleanup(cls.rabbit.cleanup)
        t0 = time.time()
        cls.rabbit.start()
        cls.start_seconds = time.time() - t0

    def remote(self):
        """An object with .port for mqttlib.connect."""
        return type("R", (), {"port": self.rabbit.mqtt_port})()

    def wait_in_path(self, local_sub):
        """Publish probes on RabbitMQ until one arrives locally: the bridge's
        SUBSCRIBE there is done (RabbitMQ does not log it)."""
        rp = connect(self, self.remote())
        deadline = time.time() + WAIT
        while time.time() < deadline:
            publish(rp, "site1/down/probe", b"probe", qos=1)
            try:
                m = recv_publish(local_sub, timeout=1)
            except Exception:  # noqa: BLE001 -- socket.timeout: not there yet
                continue
            self.assertEqual(m.topic, "down/probe")
            return
        self.fail("the bridge's subscription on RabbitMQ never delivered")

    def drain_probes(self, c, expect_topic):
        m = recv_publish(c)
        while m.topic == "down/probe":
            m = recv_publish(c)
        self.assertEqual(m.topic, expect_topic)
        return m

    def test_qos1_both_ways_and_restarts(self):
        sub_id = uid("rsub")
        local = start_broker(self, "sys_interval 1\n"
                             "connection rabbit\naddress 127.0.0.1:%d\nremote_clientid %s\n"
                             "restart_timeout 1\ntopic up/# out 1 \"\" site1/\n"
                             "topic down/# in 1 \"\" site1/\n" % (self.rabbit.mqtt_port,
                                                                   uid("sb")))
        wait_log_line(self, local, "Bridge rabbit: the remote closed the connection instead of "
                      "answering the bridge CONNECT (try_private); retrying without it")
        wait_log_line(self, local, "Bridge rabbit connected")
        ls = connect(self, local)
        subscribe(ls, [("down/#", 1)])
        self.wait_in_path(ls)
        rs = connect(self, self.remote(), client_id=sub_id, clean=False)
        self.assertEqual(subscribe(rs, [("site1/up/#", 2)]), [1], "RabbitMQ grants QoS 1 for 2")
        lp, rp = connect(self, local), connect(self, self.remote())
        publish(lp, "up/a", b"out", qos=1)
        m = recv_publish(rs)
        self.assertEqual((m.topic, m.payload, m.qos), ("site1/up/a", b"out", 1))
        publish(rp, "site1/down/b", b"in", qos=1)
        m = self.drain_probes(ls, "down/b")
        self.assertEqual((m.payload, m.qos), (b"in", 1))
        # RabbitMQ holds messages for the offline persistent subscriber ...
        rs.send(bytes([0xE0, 0]))
        rs.close()
        counters = connect(self, local)
        subscribe(counters, [("$SYS/broker/bridge/rabbit/messages/sent", 0)])
        sent0 = sys_value(self, counters, "sent")
        for i in range(3):
            publish(lp, "up/held%d" % i, b"h%d" % i, qos=1)
        deadline = time.time() + WAIT
        while sys_value(self, counters, "sent") < sent0 + 3 and time.time() < deadline:
            pass
        # ... across its restart; and the bridge queues while RabbitMQ is down
        self.rabbit.stop()
        wait_log_line(self, local, "Bridge rabbit disconnected from")
        for i in range(3):
            publish(lp, "up/queued%d" % i, b"q%d" % i, qos=1)
        off = log_offset(local)
        self.rabbit.start()
        wait_log_line(self, local, "Bridge rabbit connected", offset=off)
        rs = connect(self, self.remote(), client_id=sub_id, clean=False)
        got = [recv_publish(rs).payload for _ in range(6)]
        self.assertEqual(got, [b"h0", b"h1", b"h2", b"q0", b"q1", b"q2"])
        print("\n  RabbitMQ node start took %.1f s" % self.start_seconds, file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
