"""Helpers for test_auth: password files (Debian's mosquitto_passwd, $6$ lines
computed here, build/secpasswd), a broker per test or per class, a raw client
that can connect from a chosen loopback source address and keeps packets it
was not waiting for, QoS handshakes, and "nothing else was delivered" checks
with marker messages.

Failed logins slow down later CONNECTs from the same address (0.5 s, 1, 2, 4,
8 s), so tests that fail a login connect from their own 127.0.0.x address
(fresh_addr()); a test that does not care uses 127.0.0.1, which no test fails
logins from.

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import base64
import collections
import hashlib
import itertools
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid

from brokerlib import (BUILD, SECBROKER, Broker, RawClient, ack_packet, connect_packet,
                       parse_publish, publish_packet, subscribe_packet)

SECPASSWD = os.path.join(BUILD, "secpasswd")
MOSQ_PASSWD = shutil.which("mosquitto_passwd")

WAIT = 10.0  # generous upper bound for anything that should happen "now"
HELD_WAIT = 30.0  # upper bound for a CONNECT held by the failed-login slow-down (max 8 s)

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK = 2, 3, 4, 5, 6, 7, 9

Msg = collections.namedtuple("Msg", "topic payload qos retain dup pid")

_addr_counter = itertools.count(10)


def fresh_addr():
    """A loopback source address no earlier test has used (127.0.x.y, y >= 10)."""
    n = next(_addr_counter)
    return "127.0.%d.%d" % (n // 240, 10 + n % 240)


def uid(prefix="c"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# ---- password files ---------------------------------------------------------

def mosq_passwd(path, user, password, create=False):
    """Add (or create the file with) user via Debian's mosquitto_passwd -b."""
    args = [MOSQ_PASSWD] + (["-c"] if create else []) + ["-b", path, user, password]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("mosquitto_passwd %r failed: %s%s" % (args, r.stdout, r.stderr))


def sha6_line(user, password, salt=None):
    """Mosquitto's $6$ line: user:$6$base64(salt)$base64(sha512(password || salt))."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "%s:$6$%s$%s\n" % (user, base64.b64encode(salt).decode(),
                               base64.b64encode(digest).decode())


def secpasswd(*args):
    return subprocess.run([SECPASSWD] + list(args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


# ---- brokers ----------------------------------------------------------------

def make_broker(conf, files=None):
    return Broker(conf=conf, files=files)


def start_broker(tc, conf, files=None):
    """A broker for one test, stopped and removed at cleanup. conf may use
    {dir}; files are written into the broker's dir before start. A callable
    value is called with the dir (to make password files with tools)."""
    b = make_broker(conf, {k: v for k, v in (files or {}).items() if not callable(v)})
    for name, v in (files or {}).items():
        if callable(v):
            v(os.path.join(b.dir, name))
    tc.addCleanup(b.cleanup)
    b.start()
    return b


def start_class_broker(cls, conf, files=None):
    """Like start_broker, for a test class (call from setUpClass)."""
    b = make_broker(conf, {k: v for k, v in (files or {}).items() if not callable(v)})
    for name, v in (files or {}).items():
        if callable(v):
            v(os.path.join(b.dir, name))
    cls.addClassCleanup(b.cleanup)
    b.start()
    return b


def write(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---- clients ----------------------------------------------------------------

class Client(RawClient):
    """RawClient from an optional source address; remembers packets read while
    waiting for another type."""

    def __init__(self, port, source=None, timeout=WAIT):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        super().__init__(port, timeout=timeout, sock=sock)
        self.pending = collections.deque()
        self.next_pid = 1
        self.client_id = None

    def pid(self):
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def wait_for(self, ptype, timeout=WAIT, pid=None):
        """Read until a packet of ptype (and pid) arrives; keep the others."""
        def want(first, body):
            return first >> 4 == ptype and (pid is None or struct.unpack("!H", body[:2])[0] == pid)
        for i, (first, body) in enumerate(list(self.pending)):
            if want(first, body):
                del self.pending[i]
                return first, body
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise socket.timeout("no packet of type %d within %.0f s" % (ptype, timeout))
            self.sock.settimeout(left)
            first, body = self.read_packet()
            if want(first, body):
                return first, body
            self.pending.append((first, body))

    def has_data(self):
        """Whether anything (a packet or EOF) is readable right now, without waiting."""
        if self.pending or self.buf:
            return True
        self.sock.settimeout(0)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # data, or b"" at EOF
            return True
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(WAIT)

    def closed(self, timeout=WAIT):
        return super().closed(timeout)  # RawClient's, with this module's longer default


def open_connect(tc, broker, client_id=None, source=None, timeout=WAIT, **kw):
    """Send CONNECT; return (client, return code). The client is closed at cleanup."""
    client_id = client_id if client_id is not None else uid()
    c = Client(broker.port, source=source)
    tc.addCleanup(c.close)
    c.client_id = client_id
    c.send(connect_packet(client_id=client_id, **kw))
    first, body = c.wait_for(CONNACK, timeout=timeout)
    tc.assertEqual(first, 0x20, "CONNACK fixed header")
    tc.assertEqual(len(body), 2, "CONNACK remaining length")
    return c, body[1]


def connect(tc, broker, expect_rc=0, **kw):
    c, rc = open_connect(tc, broker, **kw)
    tc.assertEqual(rc, expect_rc, "CONNACK return code for client %r (user %r)"
                   % (c.client_id, kw.get("username")))
    if rc != 0:
        tc.assertTrue(c.closed(), "broker did not close the connection after CONNACK %d" % rc)
    return c


def subscribe(c, filters, pid=None):
    """SUBSCRIBE [(filter, qos), ...] or one filter; returns the SUBACK return codes."""
    if isinstance(filters, str):
        filters = [(filters, 1)]
    pid = pid or c.pid()
    c.send(subscribe_packet(filters, pid=pid))
    first, body = c.wait_for(SUBACK, pid=pid)
    assert first == 0x90, "SUBACK fixed header 0x%02x" % first
    return list(body[2:])


def publish(c, topic, payload=b"", qos=0, retain=False):
    """Publish and complete the sender's side of the QoS 1/2 handshake."""
    pid = c.pid() if qos else 1
    c.send(publish_packet(topic, payload, qos=qos, retain=retain, pid=pid))
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


def recv_publish(c, timeout=WAIT):
    """The next PUBLISH to c, acknowledged (QoS 1 and 2)."""
    first, body = c.wait_for(PUBLISH, timeout=timeout)
    m = Msg(*parse_publish(first, body))
    if m.qos == 1:
        c.send(ack_packet("puback", m.pid))
    elif m.qos == 2:
        c.send(ack_packet("pubrec", m.pid))
        c.wait_for(PUBREL, timeout=timeout, pid=m.pid)
        c.send(ack_packet("pubcomp", m.pid))
    return m


def marker(tc, subs, pub, topic, qos=1):
    """Publish a unique marker on topic from pub; the next PUBLISH each of subs
    receives must be that marker. Proves nothing was delivered to them before
    it (one connection's packets are handled in order, and each subscriber's
    queue keeps that order)."""
    mark = ("marker-" + uuid.uuid4().hex).encode()
    publish(pub, topic, mark, qos=qos)
    for s in subs:
        m = recv_publish(s)
        tc.assertEqual(m.payload, mark, "delivered before the marker (client %s): %r"
                       % (s.client_id, m))


def log_lines(broker, offset=0):
    return broker.log()[offset:].splitlines()


def wait_log_line(tc, broker, *needles, offset=0, timeout=WAIT):
    """Wait for one log line (after byte offset) containing every needle; return it."""
    deadline = time.time() + timeout
    while True:
        text = broker.log()[offset:]
        for line in text.splitlines():
            if all(n in line for n in needles):
                return line
        if time.time() > deadline:
            tc.fail("no log line containing %r; log tail:\n%s" % (needles, text[-3000:]))
        time.sleep(0.05)
