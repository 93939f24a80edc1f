"""Shared fixtures for integration tests: start build/secbroker (or Debian's
mosquitto) on a free loopback port, stop it by PID, read its log; raw MQTT
packet helpers for the malformed-input tests; a stub broker for the clients.

Everything listens on 127.0.0.1 only. Timeouts here are generous upper bounds
for waiting, never pass/fail timing.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
# SECBROKER_BIN runs the suites against another build, e.g. build-asan/secbroker
SECBROKER = os.environ.get("SECBROKER_BIN") or os.path.join(BUILD, "secbroker")
WAIT = 30.0  # generous upper bound for anything that should happen "now" (every suite's)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A secbroker process with its own temp dir, config and log file.

    conf: extra config text appended after the generated listener lines.
    listeners: list of extra listener blocks (strings) whose {port} is filled
    from free ports; self.ports lists them in order (ports[0] is the plain one).
    """

    def __init__(self, conf="", listeners=None, plain=True, binary=SECBROKER, files=None):
        self.dir = tempfile.mkdtemp(prefix="secbroker-test-")
        self.log_path = os.path.join(self.dir, "broker.log")
        self.conf_path = os.path.join(self.dir, "broker.conf")
        self.ports = []
        self.binary = binary
        for name, text in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        lines = ["log_dest file %s" % self.log_path, "log_type all"]
        body = conf.replace("{dir}", self.dir)
        if "allow_anonymous" not in body:
            lines.append("allow_anonymous true")
        lines.append(body)
        if plain:
            p = free_port()
            self.ports.append(p)
            lines.append("listener %d 127.0.0.1" % p)
        for block in listeners or []:
            p = free_port()
            self.ports.append(p)
            lines.append(block.replace("{port}", str(p)).replace("{dir}", self.dir))
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    @property
    def port(self):
        return self.ports[0]

    def start(self, expect_fail=False, timeout=10.0):
        self.stdout = open(os.path.join(self.dir, "stdout.txt"), "w")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path], stdout=self.stdout,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        if expect_fail:
            rc = self.proc.wait(timeout=timeout)
            self.stdout.close()
            return rc
        for p in self.ports:
            if not wait_port(p, timeout=timeout):
                self.stop()
                raise RuntimeError("broker did not listen on %d:\n%s" % (p, self.output()))
        return None

    def output(self):
        out = ""
        for name in ("stdout.txt", "broker.log"):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out += f.read()
        return out

    def log(self):
        if os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                return f.read()
        return ""

    def wait_log(self, needle, timeout=10.0):
        """Wait until the log contains needle; return the log (or fail)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError("log never contained %r; log:\n%s" % (needle, self.log()[-4000:]))

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        elif self.proc is not None:
            rc = self.proc.returncode
        if getattr(self, "stdout", None):
            self.stdout.close()
        return rc

    def cleanup(self):
        self.stop()
        if os.environ.get("KEEP_TEST_DIRS"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---- raw MQTT -------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def mstr(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id="raw", clean=True, keepalive=60, username=None, password=None,
                   will=None, proto=b"MQTT", level=4, flags=None):
    f = 0
    payload = mstr(client_id)
    if clean:
        f |= 0x02
    if will:
        topic, msg, qos, retain = will
        f |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += mstr(topic) + mstr(msg)
    if username is not None:
        f |= 0x80
        payload += mstr(username)
    if password is not None:
        f |= 0x40
        payload += mstr(password)
    if flags is not None:
        f = flags
    body = mstr(proto) + bytes([level, f]) + struct.pack("!H", keepalive) + payload
    return packet(0x10, body)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=1):
    if isinstance(payload, str):
        payload = payload.encode()
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = mstr(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return packet(first, body)


def subscribe_packet(filters, pid=1):
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return packet(0x82, body)


def unsubscribe_packet(filters, pid=1):
    body = struct.pack("!H", pid)
    for f in filters:
        body += mstr(f)
    return packet(0xA2, body)


def ack_packet(kind, pid):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    return bytes([first, 2]) + struct.pack("!H", pid)


class RawClient:
    """A blocking socket speaking raw MQTT, with a packet reader."""

    def __init__(self, port, host="127.0.0.1", timeout=WAIT, sock=None):
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by broker")
        self.buf += chunk

    def read_packet(self):
        """Return (first_byte, body) or raise EOFError / socket.timeout."""
        while True:
            if len(self.buf) >= 2:
                mult, n, i = 1, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        if len(self.buf) >= i + n:
                            first, body = self.buf[0], self.buf[i:i + n]
                            self.buf = self.buf[i + n:]
                            return first, body
                        break
            self._fill()

    def expect(self, ptype):
        first, body = self.read_packet()
        if first >> 4 != ptype:
            raise AssertionError("expected packet type %d, got 0x%02x %r" % (ptype, first, body))
        return first, body

    def connect(self, **kw):
        self.send(connect_packet(**kw))
        first, body = self.expect(2)
        return body[0] & 1, body[1]  # session present, return code

    def closed(self, timeout=WAIT):
        """True if the broker closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_publish(first, body):
    """(topic, payload, qos, retain, dup, pid) of a PUBLISH packet."""
    qos = (first >> 1) & 3
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen].decode()
    off = 2 + tlen
    pid = None
    if qos:
        pid = struct.unpack("!H", body[off:off + 2])[0]
        off += 2
    return topic, body[off:], qos, bool(first & 1), bool(first & 8), pid



class StubBroker:
    """A one-thread fake broker for what a real one will not do on demand:
    listen on ::1, or answer every CONNECT with CONNACK return code rc.
    Records the raw CONNECT bodies it saw in self.connects and the types of
    the packets after it in self.packets; acknowledges QoS 1 PUBLISHes."""

    def __init__(self, rc=0, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.rc = rc
        self.connects = []
        self.packets = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            raw = RawClient(0, sock=conn, timeout=10)
            try:
                first, body = raw.read_packet()
                self.connects.append(body)
                raw.send(bytes([0x20, 2, 0, self.rc]))
                while True:
                    first, body = raw.read_packet()
                    self.packets.append(first >> 4)
                    if first >> 4 == 3 and (first >> 1) & 3 == 1:
                        raw.send(bytes([0x40, 2]) + body[2 + (body[0] << 8 | body[1]):][:2])
                    if first >> 4 == 14:
                        break
            except (EOFError, OSError):
                pass
            raw.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
