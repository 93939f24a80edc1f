"""The one helper library for the Python tests (integration, interop, lab):
brokers per test or per class (secbroker, or Debian's mosquitto with the same
config), a raw MQTT client that keeps the packets it was not waiting for,
complete QoS 1/2 handshakes, "nothing else arrived" checks with marker
messages, log-line waits, peer processes whose output lines can be waited for,
password files, and the peer tools a test needs.

One set of defaults for every suite:
- WAIT (30 s) is the upper bound for anything that should happen "now"; tests
  that expect nothing to happen pass their own short timeout.
- subscribe(c, "filter") subscribes at QoS 0 (as mosquitto_sub); pass
  [(filter, qos)] for anything else.
- publish() publishes at QoS 0 unless told; recv_publish() acknowledges.
- A missing peer tool fails the test with the tool's name (need()): `make
  test` never turns a missing peer into a skip.

SECBROKER_TEST_BINARY=/usr/sbin/mosquitto runs the protocol tests against
Debian's Mosquitto (reference mode) to check the tests themselves; then
secbroker-specific log-line assertions are no-ops (wait_log_line).

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import base64
import collections
import hashlib
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid

# re-exported so that a test imports its helpers from one place
from brokerlib import (BUILD, ROOT, SECBROKER, WAIT, Broker, RawClient, StubBroker,  # noqa: F401
                       ack_packet, connect_packet, free_port, mstr, packet, parse_publish, publish_packet,
                       subscribe_packet, unsubscribe_packet, varint, wait_port)

BINARY = os.environ.get("SECBROKER_TEST_BINARY", SECBROKER)
REFERENCE = os.path.basename(BINARY) != "secbroker"
MOSQUITTO = "/usr/sbin/mosquitto"
# SECCLIENTS_DIR=build-asan runs the tests with another build of the clients
CLIENTS_DIR = os.path.join(ROOT, os.environ.get("SECCLIENTS_DIR", BUILD))
SECPUB = os.path.join(CLIENTS_DIR, "secpub")
SECSUB = os.path.join(CLIENTS_DIR, "secsub")
SECPASSWD = os.path.join(BUILD, "secpasswd")

HELD_WAIT = 30.0  # upper bound for a CONNECT held by the failed-login slow-down (max 8 s)

# packet types
CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP = 9, 11, 13

Msg = collections.namedtuple("Msg", "topic payload qos retain dup pid")

_addr_counter = itertools.count(10)


def uid(prefix="c"):
    """A short unique client id / topic component."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def fresh_addr():
    """A loopback source address no earlier test has used (127.0.x.y, y >= 10).
    Failed logins slow down later CONNECTs from the same address, so a test
    that fails logins connects from its own address."""
    n = next(_addr_counter)
    return "127.0.%d.%d" % (n // 240, 10 + n % 240)


# ---- peer tools -------------------------------------------------------------

def need(name):
    """Path of a peer tool (a name on PATH or an absolute path) a test needs.
    A missing one raises AssertionError naming it: a failure, never a skip."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("required tool %s is not installed (scripts/deps.sh installs the "
                             "test peers, make builds ours)" % name)
    return path


def need_module(name):
    """Import a Python module a test needs (AssertionError naming it if missing)."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise AssertionError("required Python module %s is not installed: %s" % (name, e))


# ---- brokers ------------------------------------------------------------------

def make_broker(conf="", binary=BINARY, files=None, **kw):
    """A brokerlib.Broker (not started) running binary with conf (which may use
    {dir}). files: name -> text written into the broker's dir, or a callable
    called with the path (to make a password file with a tool)."""
    if os.path.basename(binary) == "mosquitto" and os.geteuid() == 0:
        # as root mosquitto would switch to user "mosquitto", who cannot read the
        # 0700 temp dir holding the config, certificates and log
        conf = "user root\n" + conf
    files = files or {}
    b = Broker(conf=conf, binary=binary, files={k: v for k, v in files.items() if not callable(v)},
               **kw)
    for name, v in files.items():
        if callable(v):
            v(os.path.join(b.dir, name))
    return b


def start_broker(owner, conf="", stack_kb=None, nofile=None, **kw):
    """Start a broker (make_broker's arguments), stopped and removed at cleanup
    of owner: a TestCase, or a test class (from setUpClass) for a broker the
    class shares. stack_kb: run it under `ulimit -s stack_kb`; nofile: under
    `ulimit -n nofile` (soft and hard open-files limit), or (soft, hard); all
    through an exec wrapper, so the PID is still the broker's."""
    b = make_broker(conf, **kw)
    if isinstance(owner, type):
        owner.addClassCleanup(b.cleanup)
    else:
        owner.addCleanup(b.cleanup)
    if stack_kb or nofile:
        wrapper = os.path.join(b.dir, os.path.basename(b.binary))  # same basename
        soft, hard = nofile if isinstance(nofile, tuple) else (nofile, nofile)
        limits = "".join("ulimit %s %d || exit 99\n" % (opt, n)
                         for opt, n in (("-s", stack_kb), ("-Sn", soft), ("-Hn", hard)) if n)
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\n%sexec "%s" "$@"\n' % (limits, b.binary))
        os.chmod(wrapper, 0o755)
        b.binary = wrapper
    b.start()
    return b


def start_class_broker(cls, conf="", **kw):
    """start_broker for a broker shared by a test class (call from setUpClass)."""
    return start_broker(cls, conf, **kw)


def log_offset(broker):
    return len(broker.log())


def log_lines(broker, offset=0):
    return broker.log()[offset:].splitlines()


def log_tail(broker, n=25):
    lines = broker.output().splitlines()
    return "\n  ".join(["%s log (last %d lines):" % (os.path.basename(broker.binary), n)]
                       + lines[-n:])


def wait_log_line(tc, broker, *needles, offset=0, timeout=WAIT):
    """Wait for one log line (after byte offset) containing every needle; return
    it. A needle may be a tuple of alternatives. No-op for a broker that is not
    secbroker (reference mode: Mosquitto's wording differs). Fails with
    AssertionError (tc may be None)."""
    if os.path.basename(broker.binary) != "secbroker":
        return ""
    deadline = time.time() + timeout
    while True:
        text = broker.log()[offset:]
        for line in text.splitlines():
            if all(any(a in line for a in n) if isinstance(n, tuple) else n in line
                   for n in needles):
                return line
        if time.time() > deadline:
            raise AssertionError("no log line containing %r\n  %s" % (needles, log_tail(broker)))
        time.sleep(0.05)


def wait_log(broker, *needles, offset=0, timeout=WAIT):
    """wait_log_line without a test case."""
    return wait_log_line(None, broker, *needles, offset=offset, timeout=timeout)


def client_port(broker, client_id, offset=0):
    """The client's local port, from secbroker's "New client connected from
    127.0.0.1:PORT as ID" line."""
    line = wait_log(broker, "New client connected from", " as %s " % client_id, offset=offset)
    return int(line.split("from 127.0.0.1:", 1)[1].split(" ", 1)[0])


# ---- a raw MQTT client ---------------------------------------------------------

class Client(RawClient):
    """RawClient (from an optional loopback source address, or over a given
    socket) that remembers packets read while waiting for another type."""

    def __init__(self, port, timeout=WAIT, client_id=None, source=None, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if source:
                sock.bind((source, 0))
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        super().__init__(port, timeout=timeout, sock=sock)
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
        """Read until a packet of ptype (and pid) arrives; keep the others.
        Raises socket.timeout when none arrives within timeout."""
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
                raise socket.timeout("no packet of type %d within %.0fs" % (ptype, timeout))
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


def raw(port, timeout=WAIT):
    return Client(port, timeout=timeout)


def open_connect(tc, broker, client_id=None, source=None, port=None, timeout=WAIT, **kw):
    """Open a connection, send CONNECT; return (client, CONNACK return code).
    The CONNACK must be the first packet from the server [MQTT-3.2.0-1]. The
    client is closed at cleanup."""
    if client_id is None:
        client_id = uid()
    c = Client(port or broker.port, client_id=client_id, source=source)
    tc.addCleanup(c.close)
    c.send(connect_packet(client_id=client_id, **kw))
    first, body = c.next_packet(timeout)
    tc.assertEqual(first, 0x20, "first packet from the server is not CONNACK: 0x%02x %r"
                   % (first, body[:40]))
    tc.assertEqual(len(body), 2, "CONNACK remaining length")
    c.session_present = body[0] & 1
    return c, body[1]


def connect(tc, broker, client_id=None, expect_rc=0, expect_sp=None, **kw):
    """open_connect and check the CONNACK: return code expect_rc, session present
    expect_sp (when given); a refusal has session present 0 [MQTT-3.2.2-4]."""
    c, rc = open_connect(tc, broker, client_id=client_id, **kw)
    tc.assertEqual(rc, expect_rc, "CONNACK return code for client %r (user %r)"
                   % (c.client_id, kw.get("username")))
    if expect_rc:
        tc.assertEqual(c.session_present, 0, "session present set in a refusing CONNACK")
    if expect_sp is not None:
        tc.assertEqual(c.session_present, expect_sp, "CONNACK session present for %s"
                       % c.client_id)
    return c


def subscribe(c, filters, pid=None):
    """SUBSCRIBE [(filter, qos), ...] or a single filter string (QoS 0); returns
    the SUBACK return codes."""
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
    """Publish and complete the QoS handshake as the sender; returns the packet id."""
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


def marker(tc, subs, pub, topic, qos=1):
    """Publish a unique marker on topic from pub; the next PUBLISH each of subs
    (one client or a list) receives must be that marker. Proves nothing was
    delivered to them before it (one connection's packets are handled in
    order, and each subscriber's queue keeps that order). Returns the last
    marker message received."""
    mark = ("marker-" + uuid.uuid4().hex).encode()
    publish(pub, topic, mark, qos=qos)
    m = None
    for s in subs if isinstance(subs, (list, tuple)) else [subs]:
        m = recv_publish(s)
        tc.assertEqual(m.payload, mark, "delivered before the marker (client %s): %r"
                       % (s.client_id, m))
    return m


def assert_closed(tc, c, timeout=WAIT, msg=""):
    closed, data = c.read_all_until_closed(timeout)
    tc.assertTrue(closed, "broker did not close the connection within %.0fs %s (received %r)"
                  % (timeout, msg, data[:64]))
    return data


# ---- password files --------------------------------------------------------------

def mosq_passwd(path, user, password, create=False):
    """Add (or create the file with) user via Debian's mosquitto_passwd -b."""
    args = [need("mosquitto_passwd")] + (["-c"] if create else []) + ["-b", path, user, password]
    r = subprocess.run(args, capture_output=True, text=True, timeout=WAIT)
    if r.returncode != 0:
        raise RuntimeError("mosquitto_passwd %r failed: %s%s" % (args, r.stdout, r.stderr))


def make_password_file(path, user, password):
    """A new password file holding user, written by mosquitto_passwd; returns path."""
    if os.path.exists(path):
        os.unlink(path)
    mosq_passwd(path, user, password, create=True)
    return path


def sha6_line(user, password, salt=None):
    """Mosquitto's $6$ line: user:$6$base64(salt)$base64(sha512(password || salt))."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "%s:$6$%s$%s\n" % (user, base64.b64encode(salt).decode(),
                               base64.b64encode(digest).decode())


def secpasswd(*args):
    return subprocess.run([SECPASSWD] + list(args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=WAIT)


def write(path, text):
    """Replace path with text atomically (a reload never sees half a file)."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TempDir:
    def __init__(self, prefix="secbroker-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def cleanup(self):
        if not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.path, ignore_errors=True)


# ---- peer processes ---------------------------------------------------------------

def run(argv, stdin=None, timeout=WAIT, env=None, text=False):
    """Run a process to completion: (returncode, stdout, stderr text); stdout is
    bytes unless text=True."""
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    out = p.stdout.decode(errors="replace") if text else p.stdout
    return p.returncode, out, p.stderr.decode(errors="replace")


def stop_process(p, timeout=WAIT):
    """SIGTERM a Popen still running, wait; SIGKILL if it has not exited by
    timeout (an addCleanup for processes the test started itself)."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def is_debug_line(line):
    """-d lines of secsub and mosquitto_sub (payloads in tests never look so)."""
    return line.startswith(b"Client ") or line.startswith(b"Subscribed (mid")


class Proc:
    """A peer process whose stdout lines a thread collects into self.lines
    (under self.cond, notified per line) and whose stderr ends up in self.err,
    so a test can wait for a line (a SUBACK, a message, a JSON event) without
    sleeping. line_buffered runs it under stdbuf -oL (mosquitto_sub
    block-buffers its output into a pipe)."""

    def __init__(self, argv, name=None, env=None, cwd=None, line_buffered=False):
        if line_buffered:
            argv = [need("stdbuf"), "-oL"] + list(argv)
        self.argv = list(argv)
        self.name = name or os.path.basename(self.argv[0])
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cwd)
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.err = b""
        self.t_out = threading.Thread(target=self._read_out, daemon=True)
        self.t_err = threading.Thread(target=self._read_err, daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read_out(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip(b"\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_err(self):
        self.err = self.proc.stderr.read()

    @property
    def pid(self):
        return self.proc.pid

    def describe(self):
        with self.cond:
            lines = list(self.lines[-30:])
        return "%s (rc %s)\n  command: %s\n  stdout: %r\n  stderr: %r" % (
            self.name, self.proc.poll(), " ".join(self.argv), lines,
            self.err.decode(errors="replace")[-2000:])

    def wait_line(self, pred, what="matching line", timeout=WAIT):
        """Wait for a stdout line (bytes) matching pred; return it."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.time()
                if self.eof or left <= 0:
                    break
                self.cond.wait(min(left, 1.0))
        self.t_err.join(2)
        raise AssertionError("%s: no %s within %.0fs; %s" % (self.name, what, timeout,
                                                             self.describe()))

    def events(self):
        """stdout lines parsed as JSON objects (other lines are left out)."""
        import json
        out = []
        for line in self.stdout_lines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def wait_event(self, name, timeout=WAIT, **match):
        """Wait for a JSON line {"event": name, ...match}; return it as a dict."""
        import json

        def pred(line):
            try:
                ev = json.loads(line)
            except ValueError:
                return False
            return (isinstance(ev, dict) and ev.get("event") == name
                    and all(ev.get(k) == v for k, v in match.items()))
        return json.loads(self.wait_line(pred, "JSON event %r %r" % (name, match), timeout))

    def wait_exit(self, timeout=WAIT):
        """Wait for exit; return the exit status (AssertionError if it hangs)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.0fs; %s" % (self.name, timeout,
                                                                      self.describe()))
        self.t_out.join(timeout)
        self.t_err.join(timeout)
        return rc

    wait = wait_exit

    def stdout_lines(self):
        with self.cond:
            return list(self.lines)

    def kill(self, sig=signal.SIGKILL):
        """Signal our own process by PID (no-op once it has exited)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.proc.wait()

    def close(self):
        self.kill()
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass


def spawn(tc, argv, **kw):
    """Proc killed (by PID) at test cleanup."""
    p = Proc(argv, **kw)
    tc.addCleanup(p.close)
    return p


class Sub(Proc):
    """A subscriber process (secsub or mosquitto_sub) run with -d, so that
    wait_subscribed() can wait for its SUBACK before anything is published;
    wait() returns (returncode, message lines, stderr text)."""

    def __init__(self, argv, debug=True, env=None):
        super().__init__(list(argv) + ["-d"] if debug else argv, env=env)

    def wait_subscribed(self, timeout=WAIT):
        return self.wait_line(lambda l: l.startswith(b"Subscribed (mid"), "SUBACK", timeout)

    def messages(self):
        return [l for l in self.stdout_lines() if not is_debug_line(l)]

    def wait(self, timeout=WAIT):
        rc = self.wait_exit(timeout)
        return rc, self.messages(), self.err.decode(errors="replace")
