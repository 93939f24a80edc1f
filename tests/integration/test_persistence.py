"""Durable state (persistence true): what was acknowledged survives kill -9
and a restart; damaged databases are moved aside; a disk that refuses writes
holds acknowledgements back until writing works again.

An acknowledgement is a promise: with persistence_sync strict (the default),
PUBACK/PUBREC of a PUBLISH that changed durable state, SUBACK of a durable
session and the CONNACK that creates one leave only after the commit.
"""
import glob
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from mqtt5lib import (CONTENT_TYPE, MESSAGE_EXPIRY, SESSION_EXPIRY, SUBSCRIPTION_ID, USER, Client5,
                      opts, prop, props)
from mqttlib import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, WAIT, Client, ack_packet,
                     connect, connect_packet, make_broker, marker, need, publish,
                     publish_packet, recv_publish, subscribe)

PERSIST = "persistence true\npersistence_location {dir}\n"


def db_path(broker):
    return os.path.join(broker.dir, "secbroker.db")


def kill9(broker):
    broker.proc.kill()
    broker.proc.wait()


def restart(broker):
    if broker.alive():
        kill9(broker)
    broker.start()


def start(tc, conf=PERSIST, **kw):
    b = make_broker(conf, **kw)
    tc.addCleanup(b.cleanup)
    b.start()
    return b


def sub_connect(tc, broker, cid, expect_sp=None):
    return connect(tc, broker, client_id=cid, clean=False, keepalive=0, expect_sp=expect_sp)


class TestRestart(unittest.TestCase):
    def test_session_subscriptions_queue_and_retained_survive_kill9(self):
        b = start(self)
        s = sub_connect(self, b, "keeper", expect_sp=0)
        self.assertEqual(subscribe(s, [("p/#", 1), ("q/+", 2)]), [1, 2])
        s.close()
        p = connect(self, b, keepalive=0)
        publish(p, "p/retained", b"kept", qos=1, retain=True)
        for i in range(5):
            publish(p, "p/queued", b"m%d" % i, qos=1)
        publish(p, "q/two", b"exactly", qos=2)
        kill9(b)  # no shutdown commit: only what was acknowledged is there
        b.start()
        self.assertIn("persistence: loaded 1 retained messages, 1 sessions (2 subscriptions, 7 "
                      "queued or in-flight messages", b.wait_log("persistence: loaded"))
        s = sub_connect(self, b, "keeper", expect_sp=1)
        got = [recv_publish(s) for _ in range(7)]
        self.assertEqual([(m.topic, m.payload) for m in got],
                         [("p/retained", b"kept")] + [("p/queued", b"m%d" % i) for i in range(5)]
                         + [("q/two", b"exactly")])
        # the subscriptions came back too: a new message is routed without SUBSCRIBE
        p = connect(self, b, keepalive=0)
        marker(self, s, p, "q/after")
        # and the retained message is served to a new subscriber
        n = connect(self, b)
        subscribe(n, [("p/#", 0)])
        m = recv_publish(n)
        self.assertEqual((m.topic, m.payload, m.retain), ("p/retained", b"kept", True))

    def test_clean_session_and_qos0_never_stored(self):
        b = start(self)
        c = connect(self, b, client_id="cleanone", keepalive=0)
        subscribe(c, [("c/#", 1)])
        publish(c, "c/x", b"q0", qos=0)
        c.close()
        restart(b)
        out = subprocess.run(["sqlite3", db_path(b), "SELECT count(*) FROM sessions; "
                              "SELECT count(*) FROM messages"], capture_output=True, text=True)
        self.assertEqual(out.stdout.split(), ["0", "0"], out.stderr)

    def test_clean_reconnect_removes_durable_session(self):
        b = start(self)
        s = sub_connect(self, b, "gone")
        subscribe(s, [("g/#", 1)])
        s.close()
        connect(self, b, client_id="gone", keepalive=0).close()  # clean session 1
        restart(b)
        sub_connect(self, b, "gone", expect_sp=0)

    def test_unsubscribe_is_durable(self):
        b = start(self)
        s = sub_connect(self, b, "unsub")
        subscribe(s, [("u/a", 1), ("u/b", 1)])
        s.send(b"\xa2\x07\x00\x09" + struct.pack("!H", 3) + b"u/a")
        s.wait_for(11, pid=9)
        s.close()
        restart(b)
        s = sub_connect(self, b, "unsub", expect_sp=1)
        p = connect(self, b, keepalive=0)
        publish(p, "u/a", b"no", qos=1)
        marker(self, s, p, "u/b")

    def test_student_can_read_the_database(self):
        """The documented command shows retained messages."""
        b = start(self)
        p = connect(self, b, keepalive=0)
        publish(p, "lab/temp", b"21.5", qos=1, retain=True)
        need("sqlite3")
        out = subprocess.run(["sqlite3", db_path(b), "SELECT r.topic, m.payload FROM retained r "
                              "JOIN messages m ON m.id = r.msg_id"], capture_output=True,
                             text=True)
        self.assertEqual(out.stdout.strip(), "lab/temp|21.5", out.stderr)


def sql(broker, query):
    out = subprocess.run([need("sqlite3"), db_path(broker), query], capture_output=True, text=True)
    return out.stdout.split()


class TestMqtt5State(unittest.TestCase):
    """Issue 14: persistence stores the session expiry interval and the
    messages' properties and expiry; expired entries are dropped at load."""

    def v5(self, b, cid, expiry=None, clean=False, expect_sp=None):
        c = Client5(b.port, cid)
        self.addCleanup(c.close)
        p = props((SESSION_EXPIRY, expiry)) if expiry is not None else b"\x00"
        ack = c.connect(clean=clean, properties=p, keepalive=0)
        self.assertEqual(ack.reason, 0)
        if expect_sp is not None:
            self.assertEqual(ack.sp, expect_sp)
        return c

    def test_expiry_properties_survive_and_expired_dropped(self):
        b = start(self)
        s = self.v5(b, "v5keep", expiry=3600)
        self.assertEqual(s.subscribe([("v5/#", opts(qos=1, no_local=True))],
                                     properties=props((SUBSCRIPTION_ID, 9))), [1])
        s.close()
        self.assertEqual(sql(b, "SELECT expiry FROM sessions WHERE client_id='v5keep'"), ["3600"])
        # the QoS byte keeps the option bits (no local: 0x04); the identifier its own column
        self.assertEqual(sql(b, "SELECT qos, sub_id FROM subscriptions"), ["5|9"])
        p = self.v5(b, "v5pub", clean=True)
        p.publish("v5/a", b"kept", qos=1, properties=props(
            (CONTENT_TYPE, "text/x"), (USER, ("k", "v")), (MESSAGE_EXPIRY, 3600)))
        p.publish("v5/gone", b"old", qos=1, properties=props((MESSAGE_EXPIRY, 1)))
        p.publish("v5/r", b"old retained", qos=1, retain=True,
                  properties=props((MESSAGE_EXPIRY, 1)))
        time.sleep(2.5)  # wall-clock seconds: the 1 s expiries have passed
        kill9(b)
        b.start()
        # the queued v5/gone and v5/r copies and the retained v5/r
        # (the log file still holds the first start's "persistence: loaded" line)
        b.wait_log("3 expired messages dropped")
        s = self.v5(b, "v5keep", expiry=3600, expect_sp=1)
        m = s.recv()
        self.assertEqual((m.topic, m.payload), ("v5/a", b"kept"))
        self.assertEqual(prop(m.props, CONTENT_TYPE), b"text/x")
        self.assertEqual(prop(m.props, USER), (b"k", b"v"))
        self.assertTrue(0 < prop(m.props, MESSAGE_EXPIRY) <= 3600, m.props)
        self.assertEqual(prop(m.props, SUBSCRIPTION_ID), 9)
        p = self.v5(b, "v5pub2", clean=True)
        p.publish("v5/after", b"marker", qos=1)
        m = s.recv()
        self.assertEqual(m.topic, "v5/after")  # nothing expired came back
        self.assertEqual(prop(m.props, SUBSCRIPTION_ID), 9)  # the subscription, as restored
        s.publish("v5/own", b"not to me", qos=1)  # no local came back too
        p.publish("v5/after2", b"marker", qos=1)
        self.assertEqual(s.recv().topic, "v5/after2")
        self.assertEqual(sql(b, "SELECT count(*) FROM retained"), ["0"])

    def test_session_expiry_zero_is_not_durable(self):
        b = start(self)
        self.v5(b, "v5zero", clean=False).close()  # no Session Expiry: 0
        self.v5(b, "v5drop", expiry=600).close()
        self.assertEqual(sql(b, "SELECT client_id FROM sessions"), ["v5drop"])
        # resumed with expiry 0: it ends with this connection, and leaves the file now
        c = self.v5(b, "v5drop", expect_sp=1)
        self.assertEqual(sql(b, "SELECT count(*) FROM sessions"), ["0"])
        c.close()
        restart(b)
        self.v5(b, "v5drop", expect_sp=0)


class TestSharedSubscription(unittest.TestCase):
    def test_membership_survives_restart_and_unsubscribe_is_durable(self):
        b = start(self)
        s = sub_connect(self, b, "sharer", expect_sp=0)
        self.assertEqual(subscribe(s, [("$share/g/sh/#", 1)]), [1])
        s.close()
        self.assertEqual(sql(b, "SELECT filter, qos FROM subscriptions"), ["$share/g/sh/#|1"])
        p = connect(self, b, keepalive=0)
        publish(p, "sh/away", b"queued", qos=1)  # the only member, offline: queued for it
        kill9(b)
        b.start()
        s = sub_connect(self, b, "sharer", expect_sp=1)
        m = recv_publish(s)
        self.assertEqual((m.topic, m.payload), ("sh/away", b"queued"))
        p = connect(self, b, keepalive=0)
        marker(self, s, p, "sh/after")  # still a member of the group after the restart
        s.send(b"\xa2\x11\x00\x07" + struct.pack("!H", 13) + b"$share/g/sh/#")
        s.wait_for(11, pid=7)
        self.assertEqual(sql(b, "SELECT count(*) FROM subscriptions"), ["0"])


class TestExactlyOnce(unittest.TestCase):
    def test_qos2_interrupted_after_pubrec(self):
        """PUBREC promised the message: after kill -9, a resent PUBLISH (DUP) is
        not delivered again and PUBREL gets PUBCOMP [MQTT-4.3.3]."""
        b = start(self)
        s = sub_connect(self, b, "q2sub")
        subscribe(s, [("x/#", 2)])
        s.close()
        p = connect(self, b, client_id="q2pub", clean=False, keepalive=0)
        p.send(publish_packet("x/once", b"one", qos=2, pid=7))
        p.wait_for(PUBREC, pid=7)
        kill9(b)
        b.start()
        p = connect(self, b, client_id="q2pub", clean=False, keepalive=0, expect_sp=1)
        p.send(publish_packet("x/once", b"one", qos=2, pid=7, dup=True))
        p.wait_for(PUBREC, pid=7)
        p.send(ack_packet("pubrel", 7))
        p.wait_for(PUBCOMP, pid=7)
        s = sub_connect(self, b, "q2sub", expect_sp=1)
        m = recv_publish(s)
        self.assertEqual((m.topic, m.payload), ("x/once", b"one"))
        marker(self, s, p, "x/marker")  # nothing else (no second copy) came before it

    def test_outgoing_qos2_resumes_with_pubrel(self):
        """A subscriber that sent PUBREC before the crash gets PUBREL, not the
        message again, after the restart."""
        b = start(self)
        s = sub_connect(self, b, "rel")
        subscribe(s, [("r/#", 2)])
        p = connect(self, b, keepalive=0)
        publish(p, "r/1", b"once", qos=2)
        first, body = s.wait_for(PUBLISH)
        pid = struct.unpack("!H", body[2 + 3:2 + 3 + 2])[0]
        s.send(ack_packet("pubrec", pid))
        s.wait_for(PUBREL, pid=pid)  # PUBREL leaves only once its state is durable
        kill9(b)
        b.start()
        s = sub_connect(self, b, "rel", expect_sp=1)
        first, body = s.next_packet()
        self.assertEqual(first, 0x62, "expected PUBREL first after the restart")
        self.assertEqual(struct.unpack("!H", body)[0], pid)
        s.send(ack_packet("pubcomp", pid))
        marker(self, s, connect(self, b, keepalive=0), "r/marker")


class DurableSub:
    """A persistent-session subscriber that keeps its client-side QoS 2 state
    (ids answered with PUBREC, awaiting PUBREL) across connections, as a
    real client keeps its session: a message counts as received when it is
    first delivered to the application."""

    def __init__(self, cid, filt):
        self.cid, self.filt = cid, filt
        self.received = []
        self.awaiting_rel = set()
        self.lock = threading.Lock()
        self.sock = None

    def connect(self, port, subscribe_first=False):
        c = Client(port, client_id=self.cid)
        c.send(connect_packet(client_id=self.cid, clean=False, keepalive=0))
        first, body = c.next_packet()
        assert first == 0x20 and body[1] == 0, (first, body)
        if subscribe_first:
            subscribe(c, [(self.filt, 2)])
        self.sock = c
        return c

    def handle(self, first, body):
        c = self.sock
        ptype = first >> 4
        if ptype == 3:
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", body[:2])[0]
            pid = struct.unpack("!H", body[2 + tlen:4 + tlen])[0]
            payload = body[4 + tlen:]
            if qos == 1:
                with self.lock:
                    self.received.append((payload, 1))
                c.send(ack_packet("puback", pid))
            elif qos == 2:
                with self.lock:
                    if pid not in self.awaiting_rel:
                        self.awaiting_rel.add(pid)
                        self.received.append((payload, 2))
                c.send(ack_packet("pubrec", pid))
        elif ptype == 6:
            pid = struct.unpack("!H", body)[0]
            with self.lock:
                self.awaiting_rel.discard(pid)
            c.send(ack_packet("pubcomp", pid))

    def run(self):
        """Receive until the connection breaks (the broker was killed)."""
        try:
            while True:
                first, body = self.sock.next_packet(timeout=60)
                self.handle(first, body)
        except (EOFError, OSError, socket.timeout):
            pass

    def drain_until(self, payload, timeout=WAIT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if any(p == payload for p, _ in self.received):
                    return
            first, body = self.sock.next_packet(timeout=deadline - time.time())
            self.handle(first, body)
        raise AssertionError("marker %r never arrived" % payload)


class Publisher:
    """Stop-and-wait publisher with a persistent session that finishes its
    in-flight message after a reconnect, as a real client does: a PUBLISH
    not acknowledged is resent with DUP and the same id; a QoS 2 message
    that got PUBREC gets its PUBREL again. acked: payloads the broker
    acknowledged (PUBACK, or PUBREC for QoS 2)."""

    def __init__(self, cid, topic, qos):
        self.cid, self.topic, self.qos = cid, topic, qos
        self.n = 0
        self.pid = 0
        self.pending = None  # (pid, payload, stage) stage: "publish" | "pubrel"
        self.acked = []

    def run(self, port, stop):
        try:
            c = Client(port, client_id=self.cid)
            c.send(connect_packet(client_id=self.cid, clean=False, keepalive=0))
            first, body = c.next_packet()
            if first != 0x20 or body[1] != 0:
                return
            while not stop.is_set():
                if self.pending is None:
                    self.n += 1
                    self.pid = self.pid % 65535 + 1
                    self.pending = (self.pid, b"%s:%d" % (self.cid.encode(), self.n), "publish")
                    dup = False
                else:
                    dup = True
                pid, payload, stage = self.pending
                if stage == "publish":
                    c.send(publish_packet(self.topic, payload, qos=self.qos, pid=pid, dup=dup))
                    c.wait_for(PUBACK if self.qos == 1 else PUBREC, pid=pid, timeout=60)
                    self.acked.append(payload)
                    if self.qos == 1:
                        self.pending = None
                        continue
                    self.pending = (pid, payload, "pubrel")
                c.send(ack_packet("pubrel", pid))
                c.wait_for(PUBCOMP, pid=pid, timeout=60)
                self.pending = None
        except (EOFError, OSError, socket.timeout):
            pass


class TestKillNine(unittest.TestCase):
    CYCLES = 30

    def test_acknowledged_messages_survive_random_kill9(self):
        """kill -9 at random moments of a QoS 1 and a QoS 2 load to a persistent
        subscriber, CYCLES times: every acknowledged message is delivered (QoS 1
        at least once, QoS 2 exactly once), in order per publisher."""
        rnd = random.Random(int(os.environ.get("SEED", "12345")))
        b = start(self)
        sub = DurableSub("k9sub", "k9/#")
        sub.connect(b.port, subscribe_first=True)
        sub.sock.close()
        pubs = [Publisher("k9p1", "k9/one", 1), Publisher("k9p2", "k9/two", 2)]
        for cycle in range(self.CYCLES):
            if cycle:
                b.start()
            sub.connect(b.port)
            stop = threading.Event()
            threads = [threading.Thread(target=sub.run)]
            threads += [threading.Thread(target=p.run, args=(b.port, stop)) for p in pubs]
            for t in threads:
                t.start()
            time.sleep(rnd.uniform(0.05, 0.4))
            kill9(b)
            stop.set()
            for t in threads:
                t.join(timeout=WAIT)
                self.assertFalse(t.is_alive(), "a client thread hung after kill -9")
        b.start()
        sub.connect(b.port)
        m = connect(self, b, keepalive=0)
        publish(m, "k9/marker", b"the end", qos=1)
        sub.drain_until(b"the end")
        got = [p for p, _ in sub.received]
        for p in pubs:
            self.assertGreater(len(p.acked), 0, "publisher %s never got an ack" % p.cid)
            mine = [x for x in got if x.startswith(p.cid.encode() + b":")]
            missing = [a for a in p.acked if a not in mine]
            self.assertEqual(missing, [], "%s: acknowledged but never delivered" % p.cid)
            if p.qos == 2:
                dups = sorted({x for x in mine if mine.count(x) > 1})
                self.assertEqual(dups, [], "QoS 2 delivered more than once")
            firsts = []
            for x in mine:
                if x not in firsts:
                    firsts.append(x)
            nums = [int(x.split(b":")[1]) for x in firsts]
            self.assertEqual(nums, sorted(nums), "%s: out of order" % p.cid)
        # say what the run covered (not an assertion on speed)
        print("\n  %d cycles: QoS 1 acked %d, QoS 2 acked %d, delivered %d" % (
            self.CYCLES, len(pubs[0].acked), len(pubs[1].acked), len(got)))


class TestDamagedDatabase(unittest.TestCase):
    def check_quarantine(self, b):
        b.start()
        log = b.wait_log("moved it to")
        self.assertIn("could not be read", log)
        moved = glob.glob(db_path(b) + ".corrupt-*")
        self.assertEqual(len([m for m in moved if not m.endswith(("-wal", "-shm"))]), 1, moved)
        # and it serves, durably, from an empty database
        s = sub_connect(self, b, "after", expect_sp=0)
        subscribe(s, [("a/#", 1)])

    def test_zero_filled(self):
        b = make_broker(PERSIST)
        self.addCleanup(b.cleanup)
        with open(db_path(b), "wb") as f:
            f.write(b"\0" * 65536)
        self.check_quarantine(b)

    def test_garbage(self):
        b = make_broker(PERSIST)
        self.addCleanup(b.cleanup)
        with open(db_path(b), "wb") as f:
            f.write(b"this is not a database\n" * 1000)
        self.check_quarantine(b)

    def test_truncated(self):
        b = start(self)
        p = connect(self, b, keepalive=0)
        for i in range(200):
            publish(p, "t/%d" % i, b"x" * 2000, qos=1, retain=True)
        b.stop()  # SIGTERM: commits and checkpoints
        size = os.path.getsize(db_path(b))
        with open(db_path(b), "r+b") as f:
            f.truncate(size // 2)
        self.check_quarantine(b)

    def test_unopenable_database_is_a_startup_error(self):
        b = make_broker(PERSIST)
        self.addCleanup(b.cleanup)
        os.mkdir(db_path(b))  # a directory where the file should be
        self.assertNotEqual(b.start(expect_fail=True), 0)
        self.assertIn("persistence: cannot open %s" % db_path(b), b.output())


class TestDiskFull(unittest.TestCase):
    def test_full_disk_holds_acks_and_recovers(self):
        """RLIMIT_FSIZE (SIGXFSZ ignored) makes writes fail as on a full disk:
        the broker keeps serving, does not acknowledge what it cannot make
        durable, logs once, and releases the acknowledgements by itself when
        writing works again (the limit is lifted with prlimit)."""
        prlimit = need("prlimit")
        b = make_broker(PERSIST)
        self.addCleanup(b.cleanup)
        wrapper = os.path.join(b.dir, "secbroker")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec %s --fsize=300000:unlimited "%s" "$@"\n'
                    % (prlimit, b.binary))
        os.chmod(wrapper, 0o755)
        unlimited = b.binary
        b.binary = wrapper
        b.start()
        p = connect(self, b, keepalive=0)
        big = b"z" * 60000
        acked = []
        held_pid = None
        for i in range(40):
            pid = i + 1
            p.send(publish_packet("big/%d" % i, big, qos=1, retain=True, pid=pid))
            try:
                p.wait_for(PUBACK, pid=pid, timeout=5)
                acked.append(i)
            except socket.timeout:
                held_pid = pid
                break
        self.assertIsNotNone(held_pid, "the file size limit never made a commit fail")
        log = b.wait_log("persistence: cannot write")
        self.assertEqual(log.count("persistence: cannot write"), 1, "logged once per episode")
        # still serving: a clean client gets its CONNACK and QoS 0 flows
        c = connect(self, b, keepalive=0)
        subscribe(c, [("free/#", 0)])
        publish(c, "free/x", b"qos0", qos=0)
        self.assertEqual(recv_publish(c).payload, b"qos0")
        # writing works again: the held PUBACK arrives by itself
        subprocess.run([prlimit, "--pid", str(b.proc.pid), "--fsize=unlimited"], check=True)
        p.wait_for(PUBACK, pid=held_pid, timeout=WAIT)
        acked.append(held_pid - 1)
        b.wait_log("works again")
        kill9(b)
        b.binary = unlimited
        b.start()
        n = connect(self, b)
        subscribe(n, [("big/#", 0)])
        got = set()
        for _ in acked:
            got.add(recv_publish(n).topic)
        self.assertEqual(got, {"big/%d" % i for i in acked})


class TestIntervalMode(unittest.TestCase):
    CONF = ("persistence true\npersistence_location {dir}\npersistence_sync interval\n"
            "autosave_interval 3600\n")

    def test_window_sigusr1_and_sigterm(self):
        b = start(self, self.CONF)
        p = connect(self, b, keepalive=0)
        publish(p, "i/lost", b"in the window", qos=1, retain=True)
        restart(b)  # kill -9 inside the autosave window: lost, as documented
        n = connect(self, b)
        subscribe(n, [("i/#", 0)])
        p = connect(self, b, keepalive=0)
        marker(self, n, p, "i/m1", qos=0)
        publish(p, "i/saved", b"by SIGUSR1", qos=1, retain=True)
        off = len(b.log())
        b.signal(signal.SIGUSR1)
        deadline = time.time() + WAIT
        while "SIGUSR1" not in b.log()[off:] and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the commit follows in the same iteration
        restart(b)
        n = connect(self, b)
        subscribe(n, [("i/#", 0)])
        self.assertEqual(recv_publish(n).payload, b"by SIGUSR1")
        p = connect(self, b, keepalive=0)
        publish(p, "i/term", b"by SIGTERM", qos=1, retain=True)
        b.stop()
        b.start()
        n = connect(self, b)
        subscribe(n, [("i/term", 0)])
        self.assertEqual(recv_publish(n).payload, b"by SIGTERM")


class TestConfig(unittest.TestCase):
    def refused(self, conf, words):
        b = make_broker(conf)
        self.addCleanup(b.cleanup)
        self.assertNotEqual(b.start(expect_fail=True), 0)
        out = b.output()
        self.assertIn("broker.conf:", out)
        for w in words:
            self.assertIn(w, out)

    def test_bad_values_name_file_and_line(self):
        self.refused("persistence maybe\n", ["persistence: expected true or false"])
        self.refused("persistence_sync sometimes\n", ["persistence_sync: expected strict"])
        self.refused("persistence_location /nonexistent/dir\n", ["not a directory"])
        self.refused("persistence_file a/b.db\n", ["must be a file name"])
        self.refused("autosave_interval 0\n", ["autosave_interval"])

    def test_persistence_file_name(self):
        b = start(self, PERSIST + "persistence_file my.db\n")
        p = connect(self, b, keepalive=0)
        publish(p, "f/x", b"1", qos=1, retain=True)
        self.assertTrue(os.path.exists(os.path.join(b.dir, "my.db")))


class TestThirdPartyClients(unittest.TestCase):
    def test_paho_offline_queue_across_restart(self):
        import paho.mqtt.client as mqtt
        b = start(self)
        got, ready = [], threading.Event()

        def on_message(client, userdata, msg):
            got.append(msg.payload)
            if len(got) == 5:
                ready.set()

        c = mqtt.Client(client_id="paho-durable", clean_session=False)
        c.on_message = on_message
        c.connect("127.0.0.1", b.port, keepalive=60)
        c.subscribe("paho/#", qos=1)
        c.loop_start()
        time.sleep(0.5)
        c.disconnect()
        c.loop_stop()
        p = connect(self, b, keepalive=0)
        for i in range(5):
            publish(p, "paho/x", b"p%d" % i, qos=1)
        restart(b)
        c = mqtt.Client(client_id="paho-durable", clean_session=False)
        c.on_message = on_message
        c.connect("127.0.0.1", b.port, keepalive=60)
        c.loop_start()
        self.addCleanup(c.loop_stop)
        self.assertTrue(ready.wait(WAIT), "paho got %r" % got)
        self.assertEqual(got, [b"p%d" % i for i in range(5)])
        c.disconnect()

    def test_mosquitto_sub_c_across_restart(self):
        sub = need("mosquitto_sub")
        b = start(self)
        subprocess.run([sub, "-p", str(b.port), "-c", "-i", "mosq-durable", "-q", "1", "-t",
                        "ms/#", "-W", "1"], capture_output=True)
        p = connect(self, b, keepalive=0)
        for i in range(3):
            publish(p, "ms/x", b"s%d" % i, qos=1)
        restart(b)
        out = subprocess.run([sub, "-p", str(b.port), "-c", "-i", "mosq-durable", "-q", "1",
                              "-t", "ms/#", "-C", "3", "-W", "20"], capture_output=True, text=True)
        self.assertEqual(out.stdout.split(), ["s0", "s1", "s2"], out.stderr)


if __name__ == "__main__":
    unittest.main()
