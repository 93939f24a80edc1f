"""Bad input: every malformed or forbidden packet closes only the offending
connection and writes a log line containing "protocol error"; a healthy
subscriber connected before the bad client still receives messages afterwards.

One broker (max_packet_size 1000) serves the whole class; each check uses its
own connection, client id and log offset. Docstrings cite the MQTT 3.1.1 rule;
[MQTT-4.8.0-1] is the general "close the connection on a protocol violation".
"""
import struct
import unittest

from mqttlib import (WAIT, Client, assert_closed, connect,
                     connect_packet, log_offset, marker, mstr, packet, publish, publish_packet,
                     recv_publish, start_class_broker, subscribe, subscribe_packet, uid,
                     unsubscribe_packet, varint, wait_log_line)

MAX_PACKET = 1000


def connect_raw(client_id, flags, payload_tail=b"", proto=b"MQTT", level=4, keepalive=60):
    """CONNECT with explicit flag byte; payload = client id + payload_tail."""
    body = mstr(proto) + bytes([level, flags]) + struct.pack("!H", keepalive) + mstr(client_id) + payload_tail
    return packet(0x10, body)


class TestMalformed(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.broker = start_class_broker(cls, "max_packet_size %d\n" % MAX_PACKET)

    def setUp(self):
        self.topic = uid("healthy")
        self.healthy = connect(self, self.broker, uid("healthy"))
        subscribe(self.healthy, [(self.topic, 1)])

    # ---- helpers ------------------------------------------------------------------

    def bad_client(self, connected=True, **kw):
        """A connection that will misbehave; returns (client, client_id)."""
        cid = uid("bad")
        if connected:
            return connect(self, self.broker, cid, **kw), cid
        c = Client(self.broker.port, client_id=cid)
        self.addCleanup(c.close)
        return c, cid

    def send_quietly(self, c, data):
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def expect_protocol_error(self, c, offset, cid=None, forbid_connack_ok=False):
        """c is closed, the log says "protocol error" (with the client id when known),
        and the healthy subscriber still gets a message from a new publisher."""
        data = assert_closed(self, c, timeout=5)
        if forbid_connack_ok:
            self.assertNotIn(b"\x20\x02\x00\x00", data, "CONNACK 0 sent for an invalid CONNECT")
        needles = ("protocol error", cid) if cid else ("protocol error",)
        wait_log_line(self, self.broker, *needles, offset=offset)
        pub = connect(self, self.broker)
        publish(pub, self.topic, b"still alive", qos=1)
        self.assertEqual(recv_publish(self.healthy).payload, b"still alive")

    def check_connected(self, data, **kw):
        """Connect, send data, expect a protocol-error close."""
        off = log_offset(self.broker)
        c, cid = self.bad_client(**kw)
        self.send_quietly(c, data)
        self.expect_protocol_error(c, off, cid)

    def check_connect(self, data):
        """Send an invalid CONNECT as the first packet: no CONNACK 0, closed, logged."""
        off = log_offset(self.broker)
        c, _ = self.bad_client(connected=False)
        self.send_quietly(c, data)
        self.expect_protocol_error(c, off, forbid_connack_ok=True)

    # ---- fixed header ---------------------------------------------------------------

    def test_subscribe_reserved_flags_zero(self):
        """SUBSCRIBE with fixed-header flags 0000 (first byte 0x80): flags must be 0010
        [MQTT-3.8.1-1]; invalid flags close the connection [MQTT-2.2.2-2]."""
        self.check_connected(packet(0x80, struct.pack("!H", 1) + mstr(uid("t")) + b"\x00"))

    def test_unsubscribe_reserved_flags_zero(self):
        """UNSUBSCRIBE with flags 0000 (0xA0): must be 0010 [MQTT-3.10.1-1] [MQTT-2.2.2-2]."""
        self.check_connected(packet(0xA0, struct.pack("!H", 1) + mstr(uid("t"))))

    def test_pubrel_reserved_flags_zero(self):
        """PUBREL with flags 0000 (0x60) for a pending QoS 2 id: must be 0010 [MQTT-3.6.1-1]
        [MQTT-2.2.2-2]."""
        off = log_offset(self.broker)
        c, cid = self.bad_client()
        c.send(publish_packet(uid("t"), b"held", qos=2, pid=5))
        c.wait_for(5, pid=5)
        self.send_quietly(c, b"\x60\x02\x00\x05")
        self.expect_protocol_error(c, off, cid)

    def test_other_reserved_flags(self):
        """Reserved flag bits set in PUBACK, PUBREC, PUBCOMP, PINGREQ, DISCONNECT (must be
        0000) [MQTT-2.2.2-1] [MQTT-2.2.2-2]."""
        for data in (b"\x41\x02\x00\x01", b"\x51\x02\x00\x01", b"\x71\x02\x00\x01",
                     b"\xc1\x00", b"\xe1\x00", b"\x48\x02\x00\x01", b"\xc8\x00"):
            with self.subTest(first=hex(data[0])):
                self.check_connected(data)

    def test_connect_reserved_fixed_header_flags(self):
        """CONNECT with fixed-header flags 0001 (0x11) [MQTT-2.2.2-2]."""
        data = connect_packet(client_id=uid("f"))
        self.check_connect(bytes([0x11]) + data[1:])

    def test_reserved_and_server_only_packet_types(self):
        """Packet types 0 and 15 are reserved (§2.2.1) and CONNACK, SUBACK, UNSUBACK,
        PINGRESP only flow server to client (§2.2.1): a protocol violation
        [MQTT-4.8.0-1]."""
        for data in (b"\x00\x00", b"\xf0\x00", b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x00",
                     b"\xb0\x02\x00\x01", b"\xd0\x00"):
            with self.subTest(first=hex(data[0])):
                self.check_connected(data)

    def test_publish_qos3(self):
        """PUBLISH with both QoS bits set (0x36): a malformed packet; the server MUST close
        the connection [MQTT-3.3.1-4]."""
        self.check_connected(b"\x36" + varint(2 + 5 + 2 + 1) + mstr(uid("t")[:5]) + b"\x00\x01x")

    def test_publish_qos0_with_dup(self):
        """DUP must be 0 for QoS 0 messages [MQTT-3.3.1-2] (0x38)."""
        self.check_connected(b"\x38" + varint(2 + 5 + 1) + mstr("abcde") + b"x")

    def test_remaining_length_five_bytes(self):
        """A Remaining Length of more than four bytes (ff ff ff ff 7f) is malformed (§2.2.3)
        [MQTT-4.8.0-1]."""
        self.check_connected(b"\x30\xff\xff\xff\xff\x7f")

    def test_remaining_length_five_bytes_before_connect(self):
        """The same malformed length as the very first bytes on the connection (§2.2.3)
        [MQTT-4.8.0-1]."""
        off = log_offset(self.broker)
        c, _ = self.bad_client(connected=False)
        self.send_quietly(c, b"\x10\xff\xff\xff\xff\x7f")
        self.expect_protocol_error(c, off)

    # ---- size limit -----------------------------------------------------------------

    def test_packet_over_max_packet_size(self):
        """max_packet_size 1000: a ~1100-byte PUBLISH closes the connection (broker limit;
        3.1.1 has no size rule, §4.8 closes on violation); a ~900-byte one is fine."""
        c = connect(self, self.broker)
        publish(c, self.topic, b"y" * 850, qos=1)
        self.assertEqual(len(recv_publish(self.healthy).payload), 850)
        self.check_connected(publish_packet(self.topic, b"z" * 1100, qos=1))

    def test_max_packet_size_counts_whole_packet(self):
        """max_packet_size is the size of the whole packet, fixed header included
        (mosquitto.conf(5)): exactly 1000 bytes pass, 1001 bytes close the connection."""
        def sized(total):
            base = 1 + 2 + 2 + len(self.topic) + 2  # remaining length takes 2 bytes here
            pkt = publish_packet(self.topic, b"e" * (total - base), qos=1, pid=1)
            self.assertEqual(len(pkt), total)
            return pkt, total - base
        c = connect(self, self.broker)
        pkt, plen = sized(MAX_PACKET)
        c.send(pkt)
        c.wait_for(4, pid=1)
        self.assertEqual(len(recv_publish(self.healthy).payload), plen)
        self.check_connected(sized(MAX_PACKET + 1)[0])

    def test_declared_length_over_max_closes_without_body(self):
        """A fixed header announcing 100000 bytes over a limit of 1000 is refused without
        waiting for the body (no buffering of oversized packets)."""
        self.check_connected(b"\x30" + varint(100000) + mstr("t") + b"partial")

    def test_oversized_connect(self):
        """An oversized CONNECT (client id of 2000 bytes) is refused before CONNACK."""
        self.check_connect(connect_packet(client_id="i" * 2000))

    # ---- CONNECT --------------------------------------------------------------------

    def test_first_packet_not_connect(self):
        """The first packet from the client must be CONNECT [MQTT-3.1.0-1]."""
        for data in (publish_packet(uid("t"), b"x"), b"\xc0\x00",
                     subscribe_packet([(uid("t"), 0)]), b"\xe0\x00"):
            with self.subTest(first=hex(data[0])):
                self.check_connect(data)

    def test_second_connect(self):
        """A second CONNECT on the same connection is a protocol violation [MQTT-3.1.0-2]."""
        self.check_connected(connect_packet(client_id=uid("again")))

    def test_wrong_protocol_name(self):
        """A protocol name other than "MQTT" (level 4) / "MQIsdp" (level 3): the server
        disconnects [MQTT-3.1.2-1]; no CONNACK 0."""
        for proto in (b"MQTX", b"mqtt", b"", b"MQTT\x00", b"MQIsdpX"):
            with self.subTest(proto=proto):
                self.check_connect(connect_packet(client_id=uid("p"), proto=proto))

    def test_connect_reserved_flag_bit0(self):
        """CONNECT flags bit 0 is reserved and must be 0 [MQTT-3.1.2-3]."""
        self.check_connect(connect_raw(uid("r"), 0x03))

    def test_will_qos_without_will_flag(self):
        """Will Flag 0 requires Will QoS 0 [MQTT-3.1.2-13]."""
        self.check_connect(connect_raw(uid("w"), 0x02 | 0x08))

    def test_will_retain_without_will_flag(self):
        """Will Flag 0 requires Will Retain 0 [MQTT-3.1.2-15]."""
        self.check_connect(connect_raw(uid("w"), 0x02 | 0x20))

    def test_will_qos_3(self):
        """Will QoS must not be 3 [MQTT-3.1.2-14]."""
        self.check_connect(connect_raw(uid("w"), 0x02 | 0x04 | 0x18, mstr("wt") + mstr("wm")))

    def test_password_without_username(self):
        """Password Flag 1 requires User Name Flag 1 [MQTT-3.1.2-22]."""
        self.check_connect(connect_raw(uid("pw"), 0x02 | 0x40, mstr("secret")))

    def test_connect_payload_truncated(self):
        """Flags announce a will / user name that the payload does not contain
        (§3.1.3: fields must be present) [MQTT-3.1.2-9] [MQTT-3.1.2-19]."""
        for flags in (0x02 | 0x04, 0x02 | 0x80):
            with self.subTest(flags=hex(flags)):
                self.check_connect(connect_raw(uid("tr"), flags))

    def test_client_id_invalid_utf8(self):
        """The ClientId must be a well-formed UTF-8 string [MQTT-3.1.3-4] [MQTT-1.5.3-1]."""
        self.check_connect(connect_packet(client_id=b"id-\xed\xa0\x80"))

    def test_will_topic_invalid(self):
        """The Will Topic must be valid UTF-8 without U+0000 [MQTT-3.1.3-10]
        [MQTT-1.5.3-2]."""
        self.check_connect(connect_packet(client_id=uid("wt"), will=(b"w/\x00", b"m", 0, False)))

    # ---- strings and topics ---------------------------------------------------------

    def test_publish_topic_invalid_utf8(self):
        """Ill-formed UTF-8 in a PUBLISH topic closes the connection: a surrogate
        (ED A0 80) and an overlong encoding (C0 80) [MQTT-1.5.3-1], U+0000
        [MQTT-1.5.3-2]."""
        for topic in (b"a/\xed\xa0\x80", b"a/\xc0\x80", b"a/\x00b", b"\xff", b"a/\xe2\x82"):
            with self.subTest(topic=topic):
                self.check_connected(publish_packet(topic, b"x"))

    def test_subscribe_filter_invalid_utf8(self):
        """Ill-formed UTF-8 or U+0000 in a SUBSCRIBE filter [MQTT-1.5.3-1]
        [MQTT-1.5.3-2]."""
        for topic in (b"a/\xed\xa0\x80", b"a/\xc0\x80", b"a/\x00"):
            with self.subTest(topic=topic):
                self.check_connected(subscribe_packet([(topic, 0)]))

    def test_unsubscribe_filter_invalid_utf8(self):
        """Ill-formed UTF-8 in an UNSUBSCRIBE filter [MQTT-1.5.3-1]."""
        self.check_connected(unsubscribe_packet([b"a/\xed\xa0\x80"]))

    def test_wildcard_in_publish_topic(self):
        """The Topic Name in a PUBLISH must not contain wildcards [MQTT-3.3.2-2]."""
        for topic in ("a/+", "a/#", "+", "#", "a/+/b"):
            with self.subTest(topic=topic):
                self.check_connected(publish_packet(topic, b"x"))

    def test_empty_publish_topic(self):
        """Topic names must be at least one character long [MQTT-4.7.3-1]."""
        self.check_connected(publish_packet("", b"x"))

    def test_string_length_past_end_of_packet(self):
        """A topic length pointing beyond the packet end is malformed (§1.5.3)
        [MQTT-4.8.0-1]."""
        self.check_connected(b"\x30\x05\x00\xffabc")

    def test_invalid_subscribe_filter(self):
        """'#' must be last and alone in its level, '+' alone in its level [MQTT-4.7.1-2]
        [MQTT-4.7.1-3]: closed with "protocol error", or refused with SUBACK 0x80
        (§3.9.3); never granted."""
        for f in ("a/#/b", "a#", "a/b+", "+a/b", "##"):
            with self.subTest(filter=f):
                off = log_offset(self.broker)
                c, cid = self.bad_client()
                c.send(subscribe_packet([(f, 0)], pid=3))
                closed, data = c.read_all_until_closed(timeout=2)
                if closed:
                    self.assertNotIn(b"\x90\x03\x00\x03\x00", data, "filter %r granted" % f)
                    wait_log_line(self, self.broker, "protocol error", cid, offset=off)
                else:
                    self.assertEqual(data, b"\x90\x03\x00\x03\x80", "filter %r not refused" % f)

    # ---- SUBSCRIBE / UNSUBSCRIBE payloads --------------------------------------------

    def test_empty_subscribe(self):
        """A SUBSCRIBE without any filter is a protocol violation [MQTT-3.8.3-3]."""
        self.check_connected(packet(0x82, b"\x00\x01"))

    def test_empty_unsubscribe(self):
        """An UNSUBSCRIBE without any filter is a protocol violation [MQTT-3.10.3-2]."""
        self.check_connected(packet(0xA2, b"\x00\x01"))

    def test_subscribe_requested_qos_3(self):
        """Requested QoS 3, or reserved bits set in the options byte, make the SUBSCRIBE
        malformed [MQTT-3-8.3-4]."""
        for opt in (0x03, 0x04, 0x81):
            with self.subTest(options=hex(opt)):
                self.check_connected(packet(0x82, b"\x00\x01" + mstr(uid("t")) + bytes([opt])))

    def test_subscribe_missing_qos_byte(self):
        """Each filter is followed by a requested-QoS byte (§3.8.3) [MQTT-4.8.0-1]."""
        self.check_connected(packet(0x82, b"\x00\x01" + mstr(uid("t"))))

    # ---- packet identifiers -------------------------------------------------------------

    def test_packet_id_zero(self):
        """SUBSCRIBE, UNSUBSCRIBE and PUBLISH with QoS > 0 need a non-zero packet id
        [MQTT-2.3.1-1]."""
        for name, data in (("publish qos1", publish_packet(uid("t"), b"x", qos=1, pid=0)),
                           ("publish qos2", publish_packet(uid("t"), b"x", qos=2, pid=0)),
                           ("subscribe", subscribe_packet([(uid("t"), 0)], pid=0)),
                           ("unsubscribe", unsubscribe_packet([uid("t")], pid=0))):
            with self.subTest(packet=name):
                self.check_connected(data)

    # ---- lengths of fixed-size packets -----------------------------------------------

    def test_wrong_remaining_length_for_fixed_size_packets(self):
        """PUBACK/PUBREC/PUBREL/PUBCOMP have remaining length 2 (§3.4-3.7), PINGREQ and
        DISCONNECT 0 (§3.12, §3.14) [MQTT-4.8.0-1]."""
        for data in (b"\x40\x00", b"\x40\x03\x00\x01\x00", b"\x50\x01\x00", b"\x62\x00",
                     b"\x70\x03\x00\x01\x00", b"\xc0\x01\x00", b"\xe0\x01\x00"):
            with self.subTest(data=data.hex()):
                self.check_connected(data)

    # ---- robustness -------------------------------------------------------------------

    def test_mutated_packets_do_not_hurt_the_broker(self):
        """300 seeded mutations (bit flips, truncations, insertions) of valid packets, each
        on its own connection after CONNECT: the broker survives, answers or closes each
        connection, and the healthy client keeps working (§4.8)."""
        import random
        rnd = random.Random(20240611)
        seeds = [publish_packet("a/b", b"payload", qos=1, pid=3), publish_packet("x", b"", qos=2, pid=9),
                 subscribe_packet([("a/+", 1), ("#", 2)], pid=4), unsubscribe_packet(["a/#"], pid=5),
                 b"\x62\x02\x00\x07", b"\xc0\x00", connect_packet(client_id="again"),
                 publish_packet("r", b"x" * 300, retain=True)]
        conns = []
        for i in range(300):
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 4)):
                op = rnd.randrange(3)
                pos = rnd.randrange(len(data))
                if op == 0:
                    data[pos] ^= 1 << rnd.randrange(8)
                elif op == 1:
                    del data[pos:]
                    if not data:
                        data = bytearray(b"\x30")
                else:
                    data[pos:pos] = bytes([rnd.randrange(256)])
            c = Client(self.broker.port, timeout=WAIT)
            self.addCleanup(c.close)
            c.send(connect_packet(client_id="mut-%d" % i) + bytes(data))
            conns.append(c)
            if len(conns) >= 50:
                for c in conns:
                    c.close()
                conns = []
        self.assertTrue(self.broker.alive(), "broker died: " + self.broker.output()[-2000:])
        pub = connect(self, self.broker)
        publish(pub, self.topic, b"survived", qos=1)
        m = recv_publish(self.healthy)
        while m.payload != b"survived":  # a mutated packet may have hit our topic
            m = recv_publish(self.healthy)

    # ---- consequences ----------------------------------------------------------------

    def test_protocol_error_publishes_will(self):
        """Closing a connection for a protocol error publishes its will [MQTT-3.1.2-8]."""
        wt = uid("will")
        subscribe(self.healthy, [(wt, 1)])
        off = log_offset(self.broker)
        c, cid = self.bad_client(will=(wt, b"died of protocol error", 1, False))
        self.send_quietly(c, b"\x36\x00")
        assert_closed(self, c)
        wait_log_line(self, self.broker, "protocol error", cid, offset=off)
        m = recv_publish(self.healthy)
        self.assertEqual((m.topic, m.payload), (wt, b"died of protocol error"))

    def test_bad_client_messages_before_error_still_delivered(self):
        """Valid packets before the bad one are processed; nothing after it is (§4.8:
        the connection is closed at the violation)."""
        off = log_offset(self.broker)
        c, cid = self.bad_client()
        self.send_quietly(c, publish_packet(self.topic, b"before", qos=0) + b"\x36\x00"
                          + publish_packet(self.topic, b"after", qos=0))
        assert_closed(self, c)
        wait_log_line(self, self.broker, "protocol error", cid, offset=off)
        self.assertEqual(recv_publish(self.healthy).payload, b"before")
        marker(self, self.healthy, connect(self, self.broker), self.topic)


if __name__ == "__main__":
    unittest.main()
