"""Helpers for the core integration tests (test_core, test_malformed,
test_thirdparty, test_config): start a broker per test or per class with
automatic cleanup, a raw client that keeps packets it was not waiting for,
complete QoS 1/2 handshakes, deterministic "nothing else arrived" checks with
marker messages, and log-line waits.

SECBROKER_TEST_BINARY=/usr/sbin/mosquitto runs the protocol tests against
Debian's Mosquitto (reference mode) to check the tests themselves; then the
secbroker-specific log-line assertions are skipped.

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import collections
import os
import socket
import struct
import time
import uuid

# re-exported for the test modules: from corelib import ... covers brokerlib too
from brokerlib import (SECBROKER, Broker, RawClient, ack_packet, connect_packet, mstr, packet,
                       parse_publish, publish_packet, subscribe_packet, unsubscribe_packet, varint)

BINARY = os.environ.get("SECBROKER_TEST_BINARY", SECBROKER)
REFERENCE = os.path.basename(BINARY) != "secbroker"

WAIT = 10.0  # generous upper bound for anything that should happen "now"

# packet types
CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP = 9, 11, 13

Msg = collections.namedtuple("Msg", "topic payload qos retain dup pid")


def uid(prefix="c"):
    """A short unique client id / topic component."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def make_broker(conf="", **kw):
    if REFERENCE:
        # Mosquitto drops root privileges unless told otherwise; the temp dir is root's.
        conf = "user root\n" + conf
    return Broker(conf=conf, binary=BINARY, **kw)


def start_broker(tc, conf="", stack_kb=None, **kw):
    """Start a broker for one test; it is stopped and removed at cleanup.
    stack_kb: run it under `ulimit -s stack_kb` (through an exec wrapper, so the
    PID is still the broker's)."""
    b = make_broker(conf, **kw)
    tc.addCleanup(b.cleanup)
    if stack_kb:
        wrapper = os.path.join(b.dir, "secbroker")  # same basename: not reference mode
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nulimit -s %d || exit 99\nexec "%s" "$@"\n' % (stack_kb, BINARY))
        os.chmod(wrapper, 0o755)
        b.binary = wrapper
    b.start()
    return b


def start_class_broker(cls, conf="", **kw):
    """Start a broker shared by a test class (call from setUpClass)."""
    b = make_broker(conf, **kw)
    cls.addClassCleanup(b.cleanup)
    b.start()
    return b


class Client(RawClient):
    """RawClient that remembers packets read while waiting for another type."""

    def __init__(self, port, timeout=WAIT, client_id=None):
        super().__init__(port, timeout=timeout)
        self.pending = collections.deque()
        self.client_id = client_id
        self.next_pid = 1

    def pid(self):
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def next_packet(self, timeout=WAIT):
        if self.pending:
            return self.pending.popleft()
        self.sock.settimeout(timeout)
        return self.read_packet()

    def wait_for(self, ptype, timeout=WAIT, pid=None):
        """Read until a packet of ptype (and pid) arrives; keep the others."""
        deadline = time.time() + timeout
        kept = []
        try:
            for i, (first, body) in enumerate(list(self.pending)):
                if first >> 4 == ptype and (pid is None or struct.unpack("!H", body[:2])[0] == pid):
                    del self.pending[i]
                    return first, body
            while True:
                left = deadline - time.time()
                if left <= 0:
                    raise socket.timeout("no packet of type %d within %.0fs" % (ptype, timeout))
                self.sock.settimeout(left)
                first, body = self.read_packet()
                if first >> 4 == ptype and (pid is None or struct.unpack("!H", body[:2])[0] == pid):
                    return first, body
                kept.append((first, body))
        finally:
            self.pending.extend(kept)

    def read_all_until_closed(self, timeout=WAIT):
        """Return (closed, bytes received) reading until EOF or timeout."""
        data = b"".join(bytes([f]) + body for f, body in self.pending) + self.buf
        self.pending.clear()
        self.buf = b""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.time()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True, data
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        except socket.timeout:
            pass
        return False, data


def connect(tc, broker, client_id=None, expect_rc=0, expect_sp=None, port=None, **kw):
    """Open a raw connection, send CONNECT, check the CONNACK; closed at cleanup.
    The CONNACK must be the first packet from the server [MQTT-3.2.0-1]; a refusal
    has session present 0 [MQTT-3.2.2-4]."""
    if client_id is None:
        client_id = uid()
    c = Client(port or broker.port, client_id=client_id)
    tc.addCleanup(c.close)
    c.send(connect_packet(client_id=client_id, **kw))
    first, body = c.next_packet()
    tc.assertEqual(first, 0x20, "first packet from the server is not CONNACK: 0x%02x %r"
                   % (first, body[:40]))
    if expect_rc:
        tc.assertEqual(body[0], 0, "session present set in a refusing CONNACK")
    tc.assertEqual(len(body), 2, "CONNACK remaining length")
    tc.assertEqual(body[1], expect_rc, "CONNACK return code for %s" % client_id)
    if expect_sp is not None:
        tc.assertEqual(body[0] & 1, expect_sp, "CONNACK session present for %s" % client_id)
    c.session_present = body[0] & 1
    return c


def subscribe(c, filters, pid=None):
    """SUBSCRIBE [(filter, qos), ...] or a single filter string; returns granted list."""
    if isinstance(filters, str):
        filters = [(filters, 0)]
    pid = pid or c.pid()
    c.send(subscribe_packet(filters, pid=pid))
    first, body = c.wait_for(SUBACK, pid=pid)
    assert first == 0x90, "SUBACK fixed header 0x%02x" % first
    assert struct.unpack("!H", body[:2])[0] == pid
    return list(body[2:])


def unsubscribe(c, filters, pid=None):
    pid = pid or c.pid()
    c.send(unsubscribe_packet(filters, pid=pid))
    first, body = c.wait_for(UNSUBACK, pid=pid)
    assert first == 0xB0 and body == struct.pack("!H", pid), (first, body)


def publish(c, topic, payload=b"", qos=0, retain=False, pid=None):
    """Publish and complete the QoS handshake as the sender."""
    if qos:
        pid = pid or c.pid()
    c.send(publish_packet(topic, payload, qos=qos, retain=retain, pid=pid or 1))
    if qos == 1:
        first, body = c.wait_for(PUBACK, pid=pid)
        assert first == 0x40 and body == struct.pack("!H", pid), (first, body)
    elif qos == 2:
        first, body = c.wait_for(PUBREC, pid=pid)
        assert first == 0x50 and body == struct.pack("!H", pid), (first, body)
        c.send(ack_packet("pubrel", pid))
        first, body = c.wait_for(PUBCOMP, pid=pid)
        assert first == 0x70 and body == struct.pack("!H", pid), (first, body)
    return pid


def recv_publish(c, timeout=WAIT, ack=True):
    """Next PUBLISH for c (other packets are kept); acknowledges it unless ack=False."""
    first, body = c.wait_for(PUBLISH, timeout=timeout)
    m = Msg(*parse_publish(first, body))
    if ack and m.qos == 1:
        c.send(ack_packet("puback", m.pid))
    elif ack and m.qos == 2:
        c.send(ack_packet("pubrec", m.pid))
        f, b = c.wait_for(PUBREL, timeout=timeout, pid=m.pid)
        assert f == 0x62, "PUBREL fixed header 0x%02x" % f
        c.send(ack_packet("pubcomp", m.pid))
    return m


def marker_sync(tc, sub, pub, topic, qos=1):
    """Publish a unique marker on topic from pub and check that the next PUBLISH
    sub receives is that marker: proves nothing else was delivered before it
    (the broker handles one connection's packets in order)."""
    mark = ("marker-" + uuid.uuid4().hex).encode()
    publish(pub, topic, mark, qos=qos)
    m = recv_publish(sub)
    tc.assertEqual(m.payload, mark, "unexpected delivery before the marker: %r" % (m,))
    return m


def assert_closed(tc, c, timeout=WAIT, msg=""):
    closed, data = c.read_all_until_closed(timeout)
    tc.assertTrue(closed, "broker did not close the connection within %.0fs %s (received %r)"
                  % (timeout, msg, data[:64]))
    return data


def log_offset(broker):
    return len(broker.log())


def wait_log_line(tc, broker, *needles, offset=0, timeout=WAIT):
    """Wait for one log line (after offset) containing every needle; return it. A
    needle may be a tuple of alternatives. No-op in reference mode (Mosquitto's
    wording differs)."""
    if REFERENCE:
        return ""
    deadline = time.time() + timeout
    while True:
        text = broker.log()[offset:]
        for line in text.splitlines():
            if all(any(a in line for a in n) if isinstance(n, tuple) else n in line
                   for n in needles):
                return line
        if time.time() > deadline:
            tc.fail("no log line containing %r; log tail:\n%s" % (needles, text[-3000:]))
        time.sleep(0.05)


def raw(port, timeout=WAIT):
    return Client(port, timeout=timeout)

