"""MQTT 5.0 packets for the raw-packet tests (test_mqtt5.py): builders and
parsers of properties and of the packets whose v5 form differs from 3.1.1,
on top of mqttlib's Client (which frames any packet). Written from the
spec's tables (MQTT 5.0 section 2.2.2.2 and chapter 3)."""
import collections
import struct

from mqttlib import (WAIT, Client, mstr, packet, varint)

# property ids (spec 2.2.2.2) and their types
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
RESPONSE_TOPIC, CORRELATION_DATA, SUBSCRIPTION_ID = 0x08, 0x09, 0x0B
SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x11, 0x12, 0x13
AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM_INFO, WILL_DELAY = 0x15, 0x16, 0x17, 0x18
REQUEST_RESPONSE_INFO, RESPONSE_INFO, SERVER_REFERENCE, REASON_STRING = 0x19, 0x1A, 0x1C, 0x1F
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x21, 0x22, 0x23, 0x24
RETAIN_AVAILABLE, USER, MAXIMUM_PACKET_SIZE = 0x25, 0x26, 0x27
WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE = 0x28, 0x29, 0x2A

_BYTE = {PAYLOAD_FORMAT, REQUEST_PROBLEM_INFO, REQUEST_RESPONSE_INFO, MAXIMUM_QOS,
         RETAIN_AVAILABLE, WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE}
_U16 = {SERVER_KEEP_ALIVE, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS}
_U32 = {MESSAGE_EXPIRY, SESSION_EXPIRY, WILL_DELAY, MAXIMUM_PACKET_SIZE}
_STR = {CONTENT_TYPE, RESPONSE_TOPIC, ASSIGNED_CLIENT_ID, AUTH_METHOD, RESPONSE_INFO,
        SERVER_REFERENCE, REASON_STRING}
_BIN = {CORRELATION_DATA, AUTH_DATA}

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH = 8, 9, 10, 11, 14, 15


def props(*items):
    """A property block with its length: items are (id, value); USER takes
    (name, value), SUBSCRIPTION_ID an int."""
    out = b""
    for pid, val in items:
        out += varint(pid)
        if pid in _BYTE:
            out += bytes([val])
        elif pid in _U16:
            out += struct.pack("!H", val)
        elif pid in _U32:
            out += struct.pack("!I", val)
        elif pid == SUBSCRIPTION_ID:
            out += varint(val)
        elif pid == USER:
            out += mstr(val[0]) + mstr(val[1])
        else:
            out += mstr(val)
    return varint(len(out)) + out


def read_varint(buf, off):
    n, mult = 0, 1
    while True:
        b = buf[off]
        off += 1
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return n, off


def parse_props(buf, off=0):
    """(list of (id, value), offset after the block); strings stay bytes."""
    n, off = read_varint(buf, off)
    end = off + n
    out = []
    while off < end:
        pid, off = read_varint(buf, off)
        if pid in _BYTE:
            val, off = buf[off], off + 1
        elif pid in _U16:
            val, off = struct.unpack("!H", buf[off:off + 2])[0], off + 2
        elif pid in _U32:
            val, off = struct.unpack("!I", buf[off:off + 4])[0], off + 4
        elif pid == SUBSCRIPTION_ID:
            val, off = read_varint(buf, off)
        elif pid == USER:
            ln = struct.unpack("!H", buf[off:off + 2])[0]
            name = buf[off + 2:off + 2 + ln]
            off += 2 + ln
            ln = struct.unpack("!H", buf[off:off + 2])[0]
            val = (name, buf[off + 2:off + 2 + ln])
            off += 2 + ln
        else:
            ln = struct.unpack("!H", buf[off:off + 2])[0]
            val, off = buf[off + 2:off + 2 + ln], off + 2 + ln
        out.append((pid, val))
    assert off == end, "property block length mismatch"
    return out, end


def prop(plist, pid, default=None):
    for k, v in plist:
        if k == pid:
            return v
    return default


def connect5(client_id="raw5", clean=True, keepalive=60, properties=b"\x00", will=None,
             username=None, password=None):
    """will = (topic, payload, qos, retain, will_properties_block)."""
    f = 0x02 if clean else 0
    payload = mstr(client_id)
    if will:
        topic, msg, qos, retain, wprops = will
        f |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += wprops + mstr(topic) + mstr(msg)
    if username is not None:
        f |= 0x80
        payload += mstr(username)
    if password is not None:
        f |= 0x40
        payload += mstr(password)
    body = mstr("MQTT") + bytes([5, f]) + struct.pack("!H", keepalive) + properties + payload
    return packet(0x10, body)


def publish5(topic, payload=b"", qos=0, retain=False, pid=1, properties=b"\x00", dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    body = mstr(topic) + (struct.pack("!H", pid) if qos else b"") + properties + payload
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body)


def subscribe5(filters, pid=1, properties=b"\x00"):
    """filters: [(filter, options byte)]."""
    body = struct.pack("!H", pid) + properties
    for f, opts in filters:
        body += mstr(f) + bytes([opts])
    return packet(0x82, body)


def unsubscribe5(filters, pid=1, properties=b"\x00"):
    return packet(0xA2, struct.pack("!H", pid) + properties + b"".join(mstr(f) for f in filters))


def ack5(ptype, pid, reason=0, properties=None):
    first = ptype << 4 | (2 if ptype == PUBREL else 0)
    body = struct.pack("!H", pid)
    if reason or properties:
        body += bytes([reason]) + (properties or b"")
    return packet(first, body)


def disconnect5(reason=0, properties=None):
    if not reason and not properties:
        return b"\xe0\x00"
    return packet(0xE0, bytes([reason]) + (properties or b"\x00"))


def opts(qos=0, no_local=False, rap=False, rh=0):
    return qos | (4 if no_local else 0) | (8 if rap else 0) | (rh << 4)


Connack = collections.namedtuple("Connack", "sp reason props")
Pub = collections.namedtuple("Pub", "topic payload qos retain dup pid props")
Ack = collections.namedtuple("Ack", "type pid reason props")


def parse_connack(body):
    p, _ = parse_props(body, 2)
    return Connack(body[0] & 1, body[1], p)


def parse_publish5(first, body):
    qos = (first >> 1) & 3
    tlen = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tlen].decode()
    off = 2 + tlen
    pid = None
    if qos:
        pid = struct.unpack("!H", body[off:off + 2])[0]
        off += 2
    p, off = parse_props(body, off)
    return Pub(topic, body[off:], qos, bool(first & 1), bool(first & 8), pid, p)


def parse_ack(first, body):
    """PUBACK..PUBCOMP (packet id first), DISCONNECT/AUTH (no id)."""
    t = first >> 4
    off = 0
    pid = None
    if t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        pid = struct.unpack("!H", body[:2])[0]
        off = 2
    reason = body[off] if len(body) > off else 0
    p = parse_props(body, off + 1)[0] if len(body) > off + 1 else []
    return Ack(t, pid, reason, p)


def parse_suback(body):
    """(pid, props, codes) of a SUBACK or UNSUBACK."""
    pid = struct.unpack("!H", body[:2])[0]
    p, off = parse_props(body, 2)
    return pid, p, list(body[off:])


class Client5(Client):
    """A raw v5 client: connect() returns the parsed CONNACK."""

    def __init__(self, port, client_id, **kw):
        super().__init__(port, client_id=client_id, **kw)
        self.aliases = {}  # the broker's topic aliases towards us

    def connect(self, **kw):
        self.send(connect5(client_id=self.client_id, **kw))
        first, body = self.next_packet()
        assert first == 0x20, "first packet is not CONNACK: 0x%02x" % first
        return parse_connack(body)

    def subscribe(self, filters, properties=b"\x00"):
        """[(filter, options)] -> SUBACK reason codes."""
        pid = self.pid()
        self.send(subscribe5(filters, pid=pid, properties=properties))
        first, body = self.wait_for(SUBACK, pid=pid)
        return parse_suback(body)[2]

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=b"\x00"):
        """Publish and complete the handshake; returns the ack's reason code."""
        pid = self.pid() if qos else 1
        self.send(publish5(topic, payload, qos=qos, retain=retain, pid=pid, properties=properties))
        if qos == 0:
            return None
        first, body = self.wait_for(PUBACK if qos == 1 else PUBREC, pid=pid)
        a = parse_ack(first, body)
        if qos == 2 and a.reason < 0x80:
            self.send(ack5(PUBREL, pid))
            self.wait_for(PUBCOMP, pid=pid)
        return a.reason

    def recv(self, timeout=WAIT, ack=True):
        """Next PUBLISH, topic aliases resolved; acknowledged unless ack=False."""
        first, body = self.wait_for(PUBLISH, timeout=timeout)
        m = parse_publish5(first, body)
        alias = prop(m.props, TOPIC_ALIAS)
        if alias is not None:
            if m.topic:
                self.aliases[alias] = m.topic
            else:
                m = m._replace(topic=self.aliases[alias])
        if ack and m.qos == 1:
            self.send(ack5(PUBACK, m.pid))
        elif ack and m.qos == 2:
            self.send(ack5(PUBREC, m.pid))
            self.wait_for(PUBREL, timeout=timeout, pid=m.pid)
            self.send(ack5(PUBCOMP, m.pid))
        return m

    def wait_disconnect(self, timeout=WAIT):
        """The server's DISCONNECT (parsed), then EOF."""
        first, body = self.wait_for(DISCONNECT, timeout=timeout)
        return parse_ack(first, body)
