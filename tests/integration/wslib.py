"""Helpers for the WebSocket tests: a raw RFC 6455 client (masked frames by
default, any malformed variant on request), a paho client over ws/wss whose
callbacks become waitable state, and `ss -ltn` listing.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt

from brokerlib import WAIT

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def upgrade_request(path="/mqtt", host="127.0.0.1", key=None, version="13", protocol="mqtt",
                    origin=None, extra=(), method="GET", upgrade="websocket"):
    """The bytes of an HTTP Upgrade request; None drops a header."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    if upgrade is not None:
        lines += ["Upgrade: %s" % upgrade, "Connection: Upgrade"]
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode()
    if key:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    if protocol is not None:
        lines.append("Sec-WebSocket-Protocol: %s" % protocol)
    if origin is not None:
        lines.append("Origin: %s" % origin)
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    """One client frame (masked unless mask=False)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class RawWS:
    """A WebSocket client on a plain or TLS socket, byte by byte."""

    def __init__(self, port, ctx=None, timeout=WAIT):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def http_response(self):
        """(status, headers dict lower-case, body) of one HTTP response; the
        body is read to the end (every response says Connection: close)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.buf = rest
        if status == 101:
            return status, headers, b""
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def upgrade(self, **kw):
        key = base64.b64encode(os.urandom(16)).decode()
        self.send(upgrade_request(key=key, **kw))
        status, headers, body = self.http_response()
        if status == 101 and headers.get("sec-websocket-accept") != accept_key(key):
            raise AssertionError("bad Sec-WebSocket-Accept: %r" % headers)
        return status, headers, body

    def read_frame(self):
        """(fin, opcode, payload) of one server frame; server frames are never masked."""
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        n, off = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < off + n:
            self._fill()
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read_close(self):
        """The close code of the server's Close frame (data frames before it skipped)."""
        while True:
            fin, op, payload = self.read_frame()
            if op == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def closed(self, timeout=WAIT):
        """True once the server closed the TCP connection (pending bytes dropped)."""
        deadline = time.time() + timeout
        self.sock.settimeout(1.0)
        while time.time() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                return True
        return False

    def eof(self, timeout=WAIT):
        """True when the server ends the connection with a FIN (recv gives b""),
        False on a reset (its socket closed with our bytes unread)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except (ConnectionResetError, ssl.SSLError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class PahoClient:
    """paho 1.6 over tcp or websockets, with or without TLS; callbacks become
    waitable state (messages, suback)."""

    def __init__(self, tc, port, client_id, transport="tcp", ca=None, cert=None, key=None,
                 username=None, password=None):
        self.c = mqtt.Client(client_id=client_id, transport=transport, protocol=mqtt.MQTTv311)
        if ca:
            self.c.tls_set(ca_certs=ca, certfile=cert, keyfile=key,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username:
            self.c.username_pw_set(username, password)
        self.cond = threading.Condition()
        self.messages = []
        self.subacks = []
        self.rc = None
        self.c.on_connect = self._cb(lambda c, u, f, rc: setattr(self, "rc", rc))
        self.c.on_message = self._cb(lambda c, u, m: self.messages.append((m.topic, m.payload)))
        self.c.on_subscribe = self._cb(lambda c, u, mid, g: self.subacks.append(list(g)))
        self.c.connect("localhost" if ca else "127.0.0.1", port, keepalive=60)
        self.c.loop_start()
        tc.addCleanup(self.stop)
        self.wait(lambda: self.rc is not None, "CONNACK")
        if self.rc != 0:
            raise AssertionError("%s: connection refused rc=%s" % (client_id, self.rc))

    def _cb(self, fn):
        def cb(*args):
            with self.cond:
                fn(*args)
                self.cond.notify_all()
        return cb

    def wait(self, pred, what, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError("timed out waiting for %s" % what)

    def subscribe(self, topic, qos=0):
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        self.wait(lambda: len(self.subacks) > n, "SUBACK for " + topic)
        return self.subacks[-1]

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos)
        info.wait_for_publish()

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def listening(port):
    """The local addresses `ss -ltnH` shows listening on port."""
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], stdout=subprocess.PIPE,
                         check=True, timeout=30).stdout.decode()
    return sorted(line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip())
