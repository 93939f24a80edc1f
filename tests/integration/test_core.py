"""Core MQTT 3.1.1 behaviour of build/secbroker over raw sockets: CONNECT,
keepalive, takeover, sessions, SUBSCRIBE/UNSUBSCRIBE, PUBLISH QoS 0/1/2,
exactly-once, redelivery, inflight limit, retained messages, will, log lines,
scale (200 subscribers, 256 KiB payload).

Each docstring cites the MQTT 3.1.1 (OASIS) conformance statement it checks.
"Nothing else arrived" is proven with a marker message published after the
event (marker), not with sleeps.
"""
import socket
import struct
import threading
import time
import unittest

from mqttlib import (CONNACK, PINGRESP, PUBLISH, PUBREL, REFERENCE, WAIT, Client, Msg, ack_packet,
                     assert_closed, connect, connect_packet, log_offset, marker, parse_publish,
                     publish, publish_packet, recv_publish, start_broker, start_class_broker,
                     subscribe, subscribe_packet, uid, unsubscribe, wait_log_line)


class SharedBroker(unittest.TestCase):
    """One broker for the whole class; tests use unique client ids and topics."""
    conf = ""

    @classmethod
    def setUpClass(cls):
        cls.broker = start_class_broker(cls, cls.conf)

    def client(self, client_id=None, **kw):
        return connect(self, self.broker, client_id, **kw)


class TestConnect(SharedBroker):

    def test_connect_v311_and_log_line(self):
        """CONNECT "MQTT" level 4 is accepted with CONNACK 0, session present 0 for a
        clean session [MQTT-3.2.2-1]; the log names the peer and the client id."""
        off = log_offset(self.broker)
        cid = uid("v311")
        c = self.client(cid, expect_sp=0)
        port = c.sock.getsockname()[1]
        wait_log_line(self, self.broker, "connected from 127.0.0.1:%d" % port, cid, offset=off)
        c.send(b"\xc0\x00")
        self.assertEqual(c.wait_for(PINGRESP), (0xD0, b""))

    def test_connect_v31_mqisdp(self):
        """CONNECT "MQIsdp" level 3 (MQTT 3.1) is accepted (contract; 3.1.1 §3.1.2.1 names
        "MQTT", the broker also speaks 3.1)."""
        c = self.client(uid("v31"), proto=b"MQIsdp", level=3)
        self.assertEqual(subscribe(c, [(uid("t"), 1)]), [1])

    def test_unacceptable_protocol_level(self):
        """An unsupported protocol level gets CONNACK 0x01 and the connection is closed
        [MQTT-3.1.2-2]."""
        cases = [(b"MQTT", lvl) for lvl in ((2, 0, 255) if REFERENCE else (6, 2, 0, 255))]
        cases += [(b"MQTT", 3), (b"MQIsdp", 4)]  # name and level that do not belong together
        for proto, level in cases:
            with self.subTest(proto=proto, level=level):
                c = Client(self.broker.port)
                self.addCleanup(c.close)
                c.send(connect_packet(client_id=uid("lvl"), level=level, proto=proto))
                first, body = c.wait_for(CONNACK)
                self.assertEqual((first, body[1]), (0x20, 1))
                assert_closed(self, c)

    def test_empty_client_id_clean_session(self):
        """A zero-byte ClientId with CleanSession 1 is accepted [MQTT-3.1.3-6] and the
        client works."""
        c = self.client("", clean=True, expect_sp=0)
        t = uid("t")
        subscribe(c, [(t, 1)])
        publish(c, t, b"self", qos=1)
        self.assertEqual(recv_publish(c).payload, b"self")

    def test_empty_client_id_persistent_refused(self):
        """A zero-byte ClientId with CleanSession 0 gets CONNACK 0x02 (identifier
        rejected) and the connection is closed [MQTT-3.1.3-8]."""
        c = self.client("", clean=False, expect_rc=2)
        assert_closed(self, c)

    def test_two_empty_client_ids_coexist(self):
        """Each zero-byte ClientId gets its own unique identity [MQTT-3.1.3-6]: a second
        anonymous client does not take over the first."""
        c1 = self.client("")
        c2 = self.client("")
        t = uid("t")
        subscribe(c1, [(t, 0)])
        subscribe(c2, [(t, 0)])
        publish(c1, t, b"both", qos=1)
        self.assertEqual(recv_publish(c1).payload, b"both")
        self.assertEqual(recv_publish(c2).payload, b"both")

    def test_pingreq_pingresp(self):
        """PINGREQ is answered with PINGRESP [MQTT-3.12.4-1]."""
        c = self.client()
        for _ in range(3):
            c.send(b"\xc0\x00")
            self.assertEqual(c.wait_for(PINGRESP), (0xD0, b""))

    def test_takeover_closes_first_connection(self):
        """A second CONNECT with the same ClientId disconnects the existing client
        [MQTT-3.1.4-2]; the new one keeps the persistent session (session present 1
        [MQTT-3.2.2-2]); the log says "taken over"."""
        off = log_offset(self.broker)
        cid = uid("take")
        t = uid("t")
        first = self.client(cid, clean=False)
        subscribe(first, [(t, 1)])
        second = self.client(cid, clean=False, expect_sp=1)
        assert_closed(self, first)
        wait_log_line(self, self.broker, cid, "taken over", offset=off)
        pub = self.client()
        publish(pub, t, b"after takeover", qos=1)
        self.assertEqual(recv_publish(second).payload, b"after takeover")

    def test_takeover_clean_session(self):
        """Takeover also applies to clean sessions [MQTT-3.1.4-2]; the new client gets
        session present 0 [MQTT-3.2.2-1]."""
        cid = uid("take")
        first = self.client(cid)
        second = self.client(cid, expect_sp=0)
        assert_closed(self, first)
        second.send(b"\xc0\x00")
        self.assertEqual(second.wait_for(PINGRESP), (0xD0, b""))

    def test_disconnect_discards_will(self):
        """After DISCONNECT the broker closes the connection and discards the will without
        publishing it [MQTT-3.14.4-1] [MQTT-3.14.4-3] [MQTT-3.1.2-10]; log says
        "client sent DISCONNECT"."""
        off = log_offset(self.broker)
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 1)])
        cid = uid("dis")
        c = self.client(cid, will=(wt, b"should not", 1, False))
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        wait_log_line(self, self.broker, cid, "client sent DISCONNECT", offset=off)
        marker(self, sub, self.client(), wt)

    def test_pipelined_packets_in_one_write(self):
        """A client may send packets right after CONNECT without waiting for CONNACK
        (§3.1.4, non-normative); CONNECT+SUBSCRIBE+PUBLISH in one segment are all
        handled in order [MQTT-4.6.0-6]."""
        c = Client(self.broker.port)
        self.addCleanup(c.close)
        t = uid("t")
        c.send(connect_packet(client_id=uid("pipe")) + subscribe_packet([(t, 1)], pid=5)
               + publish_packet(t, b"one", qos=1, pid=6) + publish_packet(t, b"two", qos=0))
        self.assertEqual(c.next_packet(), (0x20, b"\x00\x00"))
        self.assertEqual(c.next_packet(), (0x90, b"\x00\x05\x01"))
        got = []
        while len(got) < 2:
            m = recv_publish(c)
            got.append(m.payload)
        self.assertEqual(got, [b"one", b"two"])

    def test_packet_split_into_single_bytes(self):
        """Packets arriving one byte per write are reassembled (TCP is a stream, §4.2)."""
        c = Client(self.broker.port)
        self.addCleanup(c.close)
        t = uid("t")
        data = connect_packet(client_id=uid("split")) + subscribe_packet([(t, 0)], pid=9) \
            + publish_packet(t, b"x" * 200, qos=0)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            c.send(data[i:i + 1])
            if i % 50 == 0:
                time.sleep(0.001)
        self.assertEqual(c.next_packet(), (0x20, b"\x00\x00"))
        self.assertEqual(c.next_packet(), (0x90, b"\x00\x09\x00"))
        self.assertEqual(recv_publish(c).payload, b"x" * 200)

    def test_remaining_length_boundaries(self):
        """Remaining Length encodings of 1, 2 and 3 bytes at their boundaries 127/128,
        16383/16384 round-trip intact (§2.2.3)."""
        c = self.client()
        t = "rl"  # topic of 2 bytes: remaining length = 2 + 2 + payload
        subscribe(c, [(t, 0)])
        for rl in (127, 128, 16383, 16384):
            with self.subTest(rl=rl):
                payload = bytes((i * 7) & 0xFF for i in range(rl - 4))
                pkt = publish_packet(t, payload)
                c.send(pkt)
                m = recv_publish(c)
                self.assertEqual(m.payload, payload)


class TestKeepalive(SharedBroker):

    def test_keepalive_expiry_closes_and_publishes_will(self):
        """No packet within 1.5 x keepalive: the server disconnects [MQTT-3.1.2-24] and
        publishes the will [MQTT-3.1.2-8]; log says "keepalive timeout". Not closed
        before ~1.4 s with keepalive 1; closed within 10 s (upper bound only)."""
        off = log_offset(self.broker)
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 1)])
        cid = uid("ka")
        c = Client(self.broker.port, client_id=cid)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(connect_packet(client_id=cid, keepalive=1, will=(wt, b"gone", 1, False)))
        self.assertEqual(c.wait_for(CONNACK), (0x20, b"\x00\x00"))
        closed, _ = c.read_all_until_closed(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "not closed within 10 s with keepalive 1")
        self.assertGreaterEqual(elapsed, 1.4, "closed %.2fs after CONNECT with keepalive 1" % elapsed)
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload, m.qos), (wt, b"gone", 1))
        wait_log_line(self, self.broker, cid, "keepalive timeout", offset=off)

    def test_pingreq_keeps_connection_alive(self):
        """Packets sent within the keepalive keep the connection open [MQTT-3.1.2-23]:
        PINGREQ every 0.3 s for 3 s with keepalive 1 (the broker allows 1.5 s)."""
        c = self.client(keepalive=1)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            c.send(b"\xc0\x00")
            self.assertEqual(c.wait_for(PINGRESP), (0xD0, b""))
            time.sleep(0.3)

    def test_max_keepalive_refuses_longer_keepalive(self):
        """max_keepalive 30: a 3.1.1 client cannot be told a server keepalive, so keepalive
        31 or 0 gets CONNACK 0x02 and is closed; 30 and less are accepted. (secbroker's
        choice, as newer Mosquitto documents it; Debian's Mosquitto 2.0.11 accepts them.
        The contract only names the key.)"""
        b = start_broker(self, "max_keepalive 30\n")
        for ka, rc in ((30, 0), (5, 0), (31, 2), (0, 2), (65535, 2)):
            with self.subTest(keepalive=ka):
                c = connect(self, b, keepalive=ka, expect_rc=rc)
                if rc:
                    assert_closed(self, c)

    def test_any_packet_resets_keepalive(self):
        """Any control packet counts for keepalive, not only PINGREQ [MQTT-3.1.2-23]:
        QoS 1 PUBLISH every 0.3 s for 3 s with keepalive 1 keeps the connection."""
        c = self.client(keepalive=1)
        end = time.monotonic() + 3.0
        t = uid("t")
        while time.monotonic() < end:
            publish(c, t, b"alive", qos=1)
            time.sleep(0.3)

    def test_keepalive_zero_means_no_timeout(self):
        """Keepalive 0 turns the mechanism off (§3.1.2.10): still connected after 2.5 s
        of silence (only a smoke check)."""
        c = self.client(keepalive=0)
        self.assertFalse(c.closed(timeout=2.5))
        c.send(b"\xc0\x00")
        self.assertEqual(c.wait_for(PINGRESP), (0xD0, b""))


class TestSubscribe(SharedBroker):

    def test_suback_grants_requested_qos(self):
        """SUBACK carries the packet id [MQTT-3.8.4-2] and one return code per filter in
        order [MQTT-3.8.4-5]: the granted QoS min(requested, 2) [MQTT-3.8.4-6]."""
        c = self.client()
        p = uid("s")
        self.assertEqual(subscribe(c, [(p + "/a", 0), (p + "/b", 1), (p + "/c", 2)], pid=4242),
                         [0, 1, 2])

    def test_wildcard_matching(self):
        """'+' matches exactly one level (also an empty one), '#' matches the parent and
        any number of levels (§4.7.1.2, §4.7.1.3); delivered topic is the published
        name [MQTT-3.3.2-3]."""
        p = uid("w")
        sub = self.client()
        subscribe(sub, [(p + "/+/c", 0), (p + "/x/#", 0), (p + "/e/+", 0)])
        pub = self.client()
        cases = [
            (p + "/b/c", True), (p + "/b/d", False), (p + "/b/c/d", False),
            (p + "/x", True), (p + "/x/y", True), (p + "/x/y/z", True),
            (p + "/e/", True), (p + "/e", False), (p + "//c", True), (p + "/xx", False),
        ]
        for topic, _ in cases:
            publish(pub, topic, topic.encode(), qos=1)
        want = [topic for topic, match in cases if match]
        got = [recv_publish(sub).topic for _ in want]
        self.assertEqual(sorted(got), sorted(want))
        marker(self, sub, pub, p + "/x")

    def test_dollar_topics_not_matched_by_leading_wildcard(self):
        """Filters starting with a wildcard do not match topic names starting with '$'
        [MQTT-4.7.2-1]."""
        b = start_broker(self)
        sub = connect(self, b)
        u = uid("d")
        pub = connect(self, b)
        publish(pub, "$bar/" + u, b"retained dollar", qos=1, retain=True)
        subscribe(sub, [("#", 0), ("+/" + u, 0)])
        publish(pub, "$foo/" + u, b"dollar", qos=1)
        marker(self, sub, pub, "m/" + u)

    def test_overlapping_subscriptions_respect_max_qos(self):
        """Overlapping filters: one copy or one per subscription is allowed, but the
        message is delivered respecting the maximum QoS of the matching subscriptions
        [MQTT-3.3.5-1]."""
        p = uid("o")
        sub = self.client()
        subscribe(sub, [(p + "/#", 0), (p + "/b", 2), (p + "/+", 1)])
        pub = self.client()
        publish(pub, p + "/b", b"overlap", qos=2)
        mark = b"end-of-overlap"
        publish(pub, p + "/b", mark, qos=2)
        copies = []
        while True:
            m = recv_publish(sub)
            if m.payload == mark:
                break
            copies.append(m)
        self.assertIn(len(copies), (1, 3), "copies: %r" % (copies,))
        self.assertEqual(max(m.qos for m in copies), 2)
        self.assertTrue(all(m.payload == b"overlap" for m in copies))

    def test_long_topic(self):
        """A topic name of 65535 bytes (the UTF-8 string maximum, §1.5.3) is routed."""
        t = "L" * 65000 + uid("/x")
        t = t + "y" * (65535 - len(t))
        sub = self.client()
        subscribe(sub, [(t, 1)])
        publish(self.client(), t, b"long", qos=1)
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload), (t, b"long"))

    def test_resubscribe_replaces_qos(self):
        """A SUBSCRIBE with a filter equal to an existing one replaces it (new QoS)
        [MQTT-3.8.4-3]; one copy of the message is delivered."""
        t = uid("t")
        sub = self.client()
        self.assertEqual(subscribe(sub, [(t, 2)]), [2])
        self.assertEqual(subscribe(sub, [(t, 0)]), [0])
        pub = self.client()
        publish(pub, t, b"m", qos=2)
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.qos), (b"m", 0))
        marker(self, sub, pub, t)

    def test_unsubscribe_stops_delivery(self):
        """UNSUBACK echoes the packet id [MQTT-3.10.4-4]; the subscription is deleted and
        no new messages are delivered for it [MQTT-3.10.4-1] [MQTT-3.10.4-2]; other
        subscriptions stay."""
        p = uid("u")
        sub = self.client()
        subscribe(sub, [(p + "/a", 1), (p + "/b", 1), (p + "/+", 0)])
        unsubscribe(sub, [p + "/a", p + "/+"], pid=777)
        pub = self.client()
        publish(pub, p + "/a", b"gone", qos=1)
        marker(self, sub, pub, p + "/b")

    def test_unsubscribe_completes_started_deliveries(self):
        """After UNSUBSCRIBE the server completes QoS 1 and 2 deliveries it has started
        [MQTT-3.10.4-3]: our PUBACK / PUBREC are accepted and PUBREL follows."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        publish(pub, t, b"one", qos=1)
        publish(pub, t, b"two", qos=2)
        m1 = recv_publish(sub, ack=False)
        m2 = recv_publish(sub, ack=False)
        unsubscribe(sub, [t])
        sub.send(ack_packet("puback", m1.pid) + ack_packet("pubrec", m2.pid))
        self.assertEqual(sub.wait_for(PUBREL, pid=m2.pid)[0], 0x62)
        sub.send(ack_packet("pubcomp", m2.pid) + b"\xc0\x00")
        self.assertEqual(sub.wait_for(PINGRESP), (0xD0, b""))

    def test_unsubscribe_unknown_filter_acked(self):
        """UNSUBACK is sent even if no filter matched [MQTT-3.10.4-5]."""
        c = self.client()
        unsubscribe(c, [uid("never/subscribed")], pid=3)

    def test_unsubscribe_compares_filter_literally(self):
        """UNSUBSCRIBE compares filters character by character [MQTT-3.10.4-1]:
        unsubscribing "a/b" does not remove "a/+"."""
        p = uid("l")
        sub = self.client()
        subscribe(sub, [(p + "/+", 0)])
        unsubscribe(sub, [p + "/b"])
        pub = self.client()
        publish(pub, p + "/b", b"still", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"still")


class TestPublish(SharedBroker):

    def test_qos0_delivery(self):
        """QoS 0 PUBLISH is delivered at QoS 0 with no packet id (§3.3.2.2) and no
        acknowledgement to the sender (§3.3.4)."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        pub.send(publish_packet(t, b"zero"))
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload, m.qos, m.retain, m.dup, m.pid), (t, b"zero", 0, False, False, None))

    def test_qos1_delivery(self):
        """QoS 1: sender gets PUBACK with its packet id [MQTT-4.3.2-2]; subscriber gets QoS 1
        with a non-zero packet id [MQTT-2.3.1-1] and DUP 0 on first delivery
        [MQTT-3.3.1-2]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 1)])
        pub = self.client()
        publish(pub, t, b"one", qos=1, pid=513)
        m = recv_publish(sub, ack=False)
        self.assertEqual((m.payload, m.qos, m.dup, m.retain), (b"one", 1, False, False))
        self.assertNotEqual(m.pid, 0)
        sub.send(ack_packet("puback", m.pid))
        marker(self, sub, pub, t)

    def test_qos2_delivery_full_handshake(self):
        """QoS 2 both ways: PUBREC/PUBREL/PUBCOMP with the sender [MQTT-4.3.3-2], and the
        broker as sender sends PUBREL (0x62) after our PUBREC [MQTT-3.6.1-1]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        publish(pub, t, b"two", qos=2, pid=65535)
        m = recv_publish(sub, ack=False)
        self.assertEqual((m.payload, m.qos, m.dup), (b"two", 2, False))
        sub.send(ack_packet("pubrec", m.pid))
        self.assertEqual(sub.wait_for(PUBREL, pid=m.pid), (0x62, struct.pack("!H", m.pid)))
        sub.send(ack_packet("pubcomp", m.pid))
        marker(self, sub, pub, t)

    def test_delivery_qos_is_min_of_publish_and_subscription(self):
        """The message goes out at min(publish QoS, granted QoS) [MQTT-3.3.5-1] (§4.3)."""
        sub = self.client()
        p = uid("q")
        subscribe(sub, [(p + "/0", 0), (p + "/1", 1), (p + "/2", 2)])
        pub = self.client()
        for sq in (0, 1, 2):
            for pq in (0, 1, 2):
                with self.subTest(sub_qos=sq, pub_qos=pq):
                    publish(pub, "%s/%d" % (p, sq), b"%d%d" % (sq, pq), qos=pq)
                    m = recv_publish(sub)
                    self.assertEqual((m.payload, m.qos), (b"%d%d" % (sq, pq), min(sq, pq)))

    def test_qos2_duplicate_before_pubrel_delivered_once(self):
        """Exactly once: a QoS 2 PUBLISH resent with DUP=1 and the same packet id before
        PUBREL is acknowledged again but not delivered again [MQTT-4.3.3-2]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        pub.send(publish_packet(t, b"once", qos=2, pid=77))
        self.assertEqual(pub.wait_for(5, pid=77), (0x50, b"\x00\x4d"))
        pub.send(publish_packet(t, b"once", qos=2, pid=77, dup=True))
        self.assertEqual(pub.wait_for(5, pid=77), (0x50, b"\x00\x4d"))
        pub.send(ack_packet("pubrel", 77))
        self.assertEqual(pub.wait_for(7, pid=77), (0x70, b"\x00\x4d"))
        self.assertEqual(recv_publish(sub).payload, b"once")
        marker(self, sub, pub, t)
        # after PUBCOMP the id is free again: a new message with id 77 is delivered
        publish(pub, t, b"new with same id", qos=2, pid=77)
        self.assertEqual(recv_publish(sub).payload, b"new with same id")

    def test_pubrel_for_unknown_id_gets_pubcomp(self):
        """The QoS 2 receiver answers PUBREL with PUBCOMP with the same packet id
        [MQTT-4.3.3-2], also when it no longer knows the id; the connection stays open."""
        c = self.client()
        c.send(ack_packet("pubrel", 4321))
        self.assertEqual(c.wait_for(7, pid=4321), (0x70, struct.pack("!H", 4321)))
        c.send(b"\xc0\x00")
        self.assertEqual(c.wait_for(PINGRESP), (0xD0, b""))

    def test_incoming_dup_not_propagated(self):
        """The DUP flag of an incoming PUBLISH is not propagated to subscribers
        [MQTT-3.3.1-3]: a first delivery has DUP=0 [MQTT-3.3.1-2]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        for q in (1, 2):
            pub.send(publish_packet(t, b"dup%d" % q, qos=q, pid=40 + q, dup=True))
            if q == 2:  # the broker may hold a QoS 2 message until PUBREL (§4.3.3)
                pub.wait_for(5, pid=42)
                pub.send(ack_packet("pubrel", 42))
                pub.wait_for(7, pid=42)
            m = recv_publish(sub)
            self.assertEqual((m.payload, m.qos, m.dup), (b"dup%d" % q, q, False))

    def test_qos_publish_without_subscribers_acked(self):
        """QoS 1 and 2 publishes with no matching subscriber are still acknowledged
        [MQTT-4.3.2-2] [MQTT-4.3.3-2]."""
        c = self.client()
        publish(c, uid("nobody"), b"x", qos=1)
        publish(c, uid("nobody"), b"x", qos=2)

    def test_outgoing_packet_ids_unique_and_nonzero(self):
        """Unacknowledged outgoing messages carry distinct non-zero packet ids
        [MQTT-2.3.1-1] [MQTT-2.3.1-2]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        pub = self.client()
        for i in range(10):
            publish(pub, t, b"%d" % i, qos=1 + i % 2)
        got = [recv_publish(sub, ack=False) for _ in range(10)]
        pids = [m.pid for m in got]
        self.assertNotIn(0, pids)
        self.assertEqual(len(set(pids)), 10, pids)

    def test_publisher_gets_own_message(self):
        """MQTT 3.1.1 has no no-local option: a client subscribed to the topic it publishes
        receives its own message (§3.3.5)."""
        t = uid("t")
        c = self.client()
        subscribe(c, [(t, 1)])
        publish(c, t, b"me", qos=1)
        self.assertEqual(recv_publish(c).payload, b"me")

    def test_order_preserved_per_topic(self):
        """Messages on one topic from one publisher arrive in order at the same QoS
        [MQTT-4.6.0-5] [MQTT-4.6.0-6]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 1)])
        pub = self.client()
        for i in range(50):
            pub.send(publish_packet(t, b"%d" % i, qos=1, pid=i + 1))
        got = [recv_publish(sub).payload for _ in range(50)]
        self.assertEqual(got, [b"%d" % i for i in range(50)])

    def test_empty_payload_non_retained(self):
        """A zero-length payload is valid (§3.3.3) and delivered as such."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 0)])
        pub = self.client()
        publish(pub, t, b"", qos=1)
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload), (t, b""))


class TestInflight(unittest.TestCase):

    def setUp(self):
        self.broker = start_broker(self, "max_inflight_messages 2\n")

    def test_max_inflight_bounds_unacked_outgoing(self):
        """max_inflight_messages 2: a subscriber that does not acknowledge gets only 2 QoS 1
        messages; each PUBACK releases the next one, in order [MQTT-4.6.0-6]."""
        t = uid("t")
        sub = connect(self, self.broker)
        subscribe(sub, [(t, 1)])
        pub = connect(self, self.broker)
        for i in range(5):
            publish(pub, t, b"m%d" % i, qos=1)
        first = [recv_publish(sub, ack=False) for _ in range(2)]
        self.assertEqual([m.payload for m in first], [b"m0", b"m1"])
        self.assertRaises(socket.timeout, sub.wait_for, PUBLISH, 1.0)
        sub.send(ack_packet("puback", first[0].pid))
        third = recv_publish(sub, ack=False)
        self.assertEqual(third.payload, b"m2")
        self.assertRaises(socket.timeout, sub.wait_for, PUBLISH, 0.5)
        sub.send(ack_packet("puback", first[1].pid))
        sub.send(ack_packet("puback", third.pid))
        self.assertEqual([recv_publish(sub).payload for _ in range(2)], [b"m3", b"m4"])
        marker(self, sub, pub, t)

    def test_max_inflight_applies_to_offline_queue_on_reconnect(self):
        """Messages queued while offline are also sent at most 2 at a time after the
        persistent client reconnects."""
        cid, t = uid("iq"), uid("t")
        c = connect(self, self.broker, cid, clean=False)
        subscribe(c, [(t, 1)])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        pub = connect(self, self.broker)
        for i in range(4):
            publish(pub, t, b"m%d" % i, qos=1)
        c2 = connect(self, self.broker, cid, clean=False, expect_sp=1)
        first = [recv_publish(c2, ack=False) for _ in range(2)]
        self.assertEqual([m.payload for m in first], [b"m0", b"m1"])
        self.assertRaises(socket.timeout, c2.wait_for, PUBLISH, 1.0)
        for m in first:
            c2.send(ack_packet("puback", m.pid))
        self.assertEqual([recv_publish(c2).payload for _ in range(2)], [b"m2", b"m3"])

    def test_qos0_not_held_by_full_inflight_window(self):
        """QoS 0 messages are never acknowledged, so a full QoS 1 window does not hold them
        back (max_inflight_messages counts unacknowledged messages)."""
        t, t0 = uid("t"), uid("t0")
        sub = connect(self, self.broker)
        subscribe(sub, [(t, 1), (t0, 0)])
        pub = connect(self, self.broker)
        for i in range(3):
            publish(pub, t, b"m%d" % i, qos=1)
        self.assertEqual([recv_publish(sub, ack=False).payload for _ in range(2)], [b"m0", b"m1"])
        publish(pub, t0, b"zero", qos=0)
        publish(pub, t0, b"zero-from-qos1", qos=1)  # downgraded to 0 by the subscription
        self.assertEqual([recv_publish(sub, ack=False).payload for _ in range(2)],
                         [b"zero", b"zero-from-qos1"])

    def test_max_inflight_qos2(self):
        """The inflight bound also holds for QoS 2 messages awaiting PUBREC."""
        t = uid("t")
        sub = connect(self, self.broker)
        subscribe(sub, [(t, 2)])
        pub = connect(self, self.broker)
        for i in range(3):
            publish(pub, t, b"m%d" % i, qos=2)
        first = [recv_publish(sub, ack=False) for _ in range(2)]
        self.assertEqual([m.payload for m in first], [b"m0", b"m1"])
        self.assertRaises(socket.timeout, sub.wait_for, PUBLISH, 1.0)
        for m in first:
            sub.send(ack_packet("pubrec", m.pid))
            sub.wait_for(PUBREL, pid=m.pid)
            sub.send(ack_packet("pubcomp", m.pid))
        self.assertEqual(recv_publish(sub).payload, b"m2")


class TestSessions(SharedBroker):

    def test_persistent_session_keeps_subscriptions(self):
        """CleanSession 0: the session (subscriptions) survives the connection
        [MQTT-3.1.2-4]; reconnect reports session present 1 [MQTT-3.2.2-2]; a first
        connect reports 0 [MQTT-3.2.2-3]."""
        cid, t = uid("ps"), uid("t")
        c = self.client(cid, clean=False, expect_sp=0)
        subscribe(c, [(t, 1)])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        c2 = self.client(cid, clean=False, expect_sp=1)
        publish(self.client(), t, b"still subscribed", qos=1)
        self.assertEqual(recv_publish(c2).payload, b"still subscribed")

    def test_unsubscribe_in_persistent_session_persists(self):
        """An UNSUBSCRIBE in a persistent session is part of the session: after reconnect
        the filter stays removed [MQTT-3.10.4-1] [MQTT-3.1.2-4]."""
        cid, p = uid("pu"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(p + "/gone", 1), (p + "/kept", 1)])
        unsubscribe(c, [p + "/gone"])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        pub = self.client()
        publish(pub, p + "/gone", b"no", qos=1)
        publish(pub, p + "/kept", b"yes", qos=1)
        c2 = self.client(cid, clean=False, expect_sp=1)
        self.assertEqual(recv_publish(c2).payload, b"yes")
        marker(self, c2, pub, p + "/kept")

    def test_offline_queue_qos1_qos2_not_qos0(self):
        """While offline a persistent session stores QoS 1 and 2 messages [MQTT-3.1.2-5]
        (QoS 0 is not queued, contract); they are delivered in order on reconnect."""
        cid, t = uid("oq"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 2)])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        pub = self.client()
        publish(pub, t, b"q0", qos=0)
        publish(pub, t, b"q1", qos=1)
        publish(pub, t, b"q2", qos=2)
        c2 = self.client(cid, clean=False, expect_sp=1)
        m1 = recv_publish(c2)
        m2 = recv_publish(c2)
        self.assertEqual([(m1.payload, m1.qos), (m2.payload, m2.qos)], [(b"q1", 1), (b"q2", 2)])
        # never sent before, so not duplicates [MQTT-3.3.1-1]
        self.assertEqual((m1.dup, m2.dup), (False, False))
        marker(self, c2, pub, t)

    def test_clean_session_discards_previous_session(self):
        """CleanSession 1 discards any previous session [MQTT-3.1.2-6] and reports session
        present 0 [MQTT-3.2.2-1]; the next CleanSession 0 connect starts fresh."""
        cid, t = uid("cs"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 1)])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        pub = self.client()
        publish(pub, t, b"queued", qos=1)
        c2 = self.client(cid, clean=True, expect_sp=0)
        mt = uid("m")
        subscribe(c2, [(mt, 1)])
        publish(pub, t, b"old subscription", qos=1)
        marker(self, c2, pub, mt)  # neither the queued message nor the old subscription
        c2.send(b"\xe0\x00")
        assert_closed(self, c2)
        self.client(cid, clean=False, expect_sp=0)

    def test_offline_queue_bounded(self):
        """max_queued_messages 3 bounds what is stored for an offline persistent client
        (contract; Mosquitto key)."""
        b = start_broker(self, "max_queued_messages 3\n")
        cid, t = uid("bq"), uid("t")
        c = connect(self, b, cid, clean=False)
        subscribe(c, [(t, 1)])
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        pub = connect(self, b)
        for i in range(10):
            publish(pub, t, b"m%d" % i, qos=1)
        c2 = connect(self, b, cid, clean=False, expect_sp=1)
        mt = uid("m")
        subscribe(c2, [(mt, 1)])
        publish(pub, mt, b"marker", qos=1)
        got = []
        while True:
            m = recv_publish(c2)
            if m.payload == b"marker":
                break
            got.append(m.payload)
        self.assertGreaterEqual(len(got), 1, "nothing was queued")
        self.assertLessEqual(len(got), 3, "more than max_queued_messages delivered: %r" % got)

    def test_unacked_qos1_redelivered_with_dup(self):
        """Unacknowledged QoS 1 messages are re-sent on reconnect of a persistent session
        with the original packet id [MQTT-4.4.0-1] and DUP=1 [MQTT-3.3.1-1]."""
        cid, t = uid("rd"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 1)])
        pub = self.client()
        publish(pub, t, b"unacked", qos=1)
        m = recv_publish(c, ack=False)
        self.assertFalse(m.dup)
        c.close()
        c2 = self.client(cid, clean=False, expect_sp=1)
        r = recv_publish(c2, ack=False)
        self.assertEqual((r.payload, r.qos, r.dup, r.pid), (b"unacked", 1, True, m.pid))
        c2.send(ack_packet("puback", r.pid))
        marker(self, c2, pub, t)

    def test_unacked_qos2_publish_redelivered_with_dup(self):
        """An outgoing QoS 2 PUBLISH without PUBREC is re-sent on reconnect with DUP=1 and
        the same packet id [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        cid, t = uid("rd2"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 2)])
        pub = self.client()
        publish(pub, t, b"unrec", qos=2)
        m = recv_publish(c, ack=False)
        c.close()
        c2 = self.client(cid, clean=False, expect_sp=1)
        r = recv_publish(c2, ack=False)
        self.assertEqual((r.payload, r.qos, r.dup, r.pid), (b"unrec", 2, True, m.pid))
        c2.send(ack_packet("pubrec", r.pid))
        self.assertEqual(c2.wait_for(PUBREL, pid=r.pid)[0], 0x62)
        c2.send(ack_packet("pubcomp", r.pid))
        marker(self, c2, pub, t)

    def test_redelivery_before_queued_in_order(self):
        """On reconnect the unacknowledged message is re-sent first, then the messages
        queued while offline, in publish order [MQTT-4.6.0-1] [MQTT-4.6.0-6]."""
        cid, t = uid("ord"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 1)])
        pub = self.client()
        publish(pub, t, b"m0", qos=1)
        m0 = recv_publish(c, ack=False)
        c.close()
        # the broker may notice the close after the next publishes: all must still come
        for i in (1, 2, 3):
            publish(pub, t, b"m%d" % i, qos=1)
        c2 = self.client(cid, clean=False, expect_sp=1)
        got = [recv_publish(c2) for _ in range(4)]
        self.assertEqual([m.payload for m in got], [b"m0", b"m1", b"m2", b"m3"])
        self.assertTrue(got[0].dup and got[0].pid == m0.pid)
        marker(self, c2, pub, t)

    def test_takeover_redelivers_unacked(self):
        """A takeover of a persistent session re-sends the unacknowledged QoS 1 message to
        the new connection with DUP=1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        cid, t = uid("tk"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 1)])
        pub = self.client()
        publish(pub, t, b"in flight", qos=1)
        m = recv_publish(c, ack=False)
        c2 = self.client(cid, clean=False, expect_sp=1)
        r = recv_publish(c2)
        self.assertEqual((r.payload, r.dup, r.pid), (b"in flight", True, m.pid))
        marker(self, c2, pub, t)

    def test_pubrel_resent_on_reconnect(self):
        """After our PUBREC the broker owes a PUBREL; if the connection drops before
        PUBCOMP it re-sends PUBREL (not the PUBLISH) on reconnect [MQTT-4.4.0-1]."""
        cid, t = uid("rr"), uid("t")
        c = self.client(cid, clean=False)
        subscribe(c, [(t, 2)])
        pub = self.client()
        publish(pub, t, b"rec'd", qos=2)
        m = recv_publish(c, ack=False)
        c.send(ack_packet("pubrec", m.pid))
        c.wait_for(PUBREL, pid=m.pid)
        c.close()
        c2 = self.client(cid, clean=False, expect_sp=1)
        first, body = c2.next_packet()
        self.assertEqual((first, body), (0x62, struct.pack("!H", m.pid)))
        c2.send(ack_packet("pubcomp", m.pid))
        marker(self, c2, pub, t)

    def test_incoming_qos2_state_survives_reconnect(self):
        """The broker as QoS 2 receiver keeps the packet id across a reconnect of a
        persistent session: PUBREL after reconnect gets PUBCOMP and the message is
        delivered exactly once [MQTT-4.3.3-2] [MQTT-4.4.0-1]."""
        t = uid("t")
        sub = self.client()
        subscribe(sub, [(t, 2)])
        cid = uid("in2")
        p = self.client(cid, clean=False)
        p.send(publish_packet(t, b"half", qos=2, pid=9))
        p.wait_for(5, pid=9)
        p.close()
        p2 = self.client(cid, clean=False, expect_sp=1)
        p2.send(publish_packet(t, b"half", qos=2, pid=9, dup=True))
        p2.wait_for(5, pid=9)
        p2.send(ack_packet("pubrel", 9))
        self.assertEqual(p2.wait_for(7, pid=9), (0x70, b"\x00\x09"))
        self.assertEqual(recv_publish(sub).payload, b"half")
        marker(self, sub, p2, t)


class TestRetained(SharedBroker):

    def test_retained_delivered_on_subscribe_with_retain_flag(self):
        """A retained message is stored [MQTT-3.3.1-5] and sent to a new subscription
        [MQTT-3.3.1-6] with RETAIN=1 [MQTT-3.3.1-8], at min(QoS, granted)."""
        t = uid("r")
        pub = self.client()
        publish(pub, t, b"kept", qos=1, retain=True)
        sub = self.client()
        subscribe(sub, [(t, 1)])
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload, m.retain, m.qos), (t, b"kept", True, 1))
        sub0 = self.client()
        subscribe(sub0, [(t, 0)])
        m = recv_publish(sub0)
        self.assertEqual((m.payload, m.retain, m.qos), (b"kept", True, 0))

    def test_retained_outlives_publisher_session(self):
        """Retained messages are not part of the publisher's session and stay after it
        ends [MQTT-3.1.2-7]."""
        t = uid("r")
        pub = self.client()
        publish(pub, t, b"orphan", qos=1, retain=True)
        pub.send(b"\xe0\x00")
        assert_closed(self, pub)
        sub = self.client()
        subscribe(sub, [(t, 0)])
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.retain), (b"orphan", True))

    def test_live_delivery_has_retain_zero(self):
        """A retained PUBLISH matching an established subscription goes out with RETAIN=0
        [MQTT-3.3.1-9]."""
        t = uid("r")
        sub = self.client()
        subscribe(sub, [(t, 1)])
        publish(self.client(), t, b"live", qos=1, retain=True)
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.retain), (b"live", False))

    def test_retained_replaced_and_wildcard(self):
        """A new retained message replaces the old one [MQTT-3.3.1-5] [MQTT-3.3.1-7]; a
        wildcard subscription gets every matching retained topic once [MQTT-3.3.1-6]."""
        p = uid("r")
        pub = self.client()
        publish(pub, p + "/a", b"a1", retain=True, qos=1)
        publish(pub, p + "/a", b"a2", retain=True, qos=0)
        publish(pub, p + "/b/c", b"bc", retain=True, qos=1)
        sub = self.client()
        subscribe(sub, [(p + "/#", 1)])
        got = sorted((m.topic, m.payload, m.retain) for m in (recv_publish(sub), recv_publish(sub)))
        self.assertEqual(got, [(p + "/a", b"a2", True), (p + "/b/c", b"bc", True)])
        marker(self, sub, pub, p + "/z")

    def test_empty_retained_payload_clears(self):
        """A retained PUBLISH with empty payload removes the retained message
        [MQTT-3.3.1-10] and is not stored itself [MQTT-3.3.1-11]; it is still delivered
        to current subscribers (§3.3.1.3)."""
        t = uid("r")
        pub = self.client()
        publish(pub, t, b"soon gone", qos=1, retain=True)
        live = self.client()
        subscribe(live, [(t, 0)])
        self.assertEqual(recv_publish(live).payload, b"soon gone")
        publish(pub, t, b"", qos=1, retain=True)
        m = recv_publish(live)
        self.assertEqual((m.payload, m.retain), (b"", False))
        sub = self.client()
        subscribe(sub, [(t, 1)])
        marker(self, sub, pub, t)

    def test_non_retained_publish_keeps_retained(self):
        """A PUBLISH with RETAIN=0 neither stores nor replaces the retained message
        [MQTT-3.3.1-12]."""
        t = uid("r")
        pub = self.client()
        publish(pub, t, b"retained", qos=1, retain=True)
        publish(pub, t, b"plain", qos=1)
        sub = self.client()
        subscribe(sub, [(t, 1)])
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.retain), (b"retained", True))
        marker(self, sub, pub, t)

    def test_retained_wildcard_forms(self):
        """Retained messages are found through every filter form: exact, '+' at each level,
        '#' including the parent level (§4.7.1), and never across '$' [MQTT-4.7.2-1]."""
        p = uid("rw")
        pub = self.client()
        topics = [p, p + "/a", p + "/a/b", p + "/c/b", p + "/a/b/c", p + "//b"]
        for t in topics:
            publish(pub, t, t.encode(), qos=1, retain=True)
        cases = {
            p + "/#": topics, p + "/+": [p + "/a"], p + "/+/b": [p + "/a/b", p + "/c/b", p + "//b"],
            p + "/a/#": [p + "/a", p + "/a/b", p + "/a/b/c"], "+/a/b/c": [p + "/a/b/c"],
            p + "/+/+/+": [p + "/a/b/c"], p + "/a/b": [p + "/a/b"], p + "/x/#": [],
        }
        for f, want in cases.items():
            with self.subTest(filter=f):
                sub = self.client()
                subscribe(sub, [(f, 0)])
                got = [recv_publish(sub) for _ in want]
                self.assertEqual(sorted(m.topic for m in got), sorted(want))
                self.assertTrue(all(m.retain and m.payload == m.topic.encode() for m in got))
                marker(self, sub, pub, f.replace("#", "z").replace("+", "z"))  # matches f

    def test_many_retained_to_one_subscription(self):
        """2000 retained topics are all sent, once each with RETAIN=1, to a new '#'-style
        subscription [MQTT-3.3.1-6] [MQTT-3.3.1-8]."""
        p = uid("many")
        pub = self.client()
        n = 2000
        pub.send(b"".join(publish_packet("%s/%d/%d" % (p, i % 10, i), b"%d" % i, retain=True)
                          for i in range(n)))
        publish(pub, p + "/sync", b"", qos=1)  # all retained stored once this is acked
        sub = self.client()
        subscribe(sub, [(p + "/#", 0)])
        got = set()
        for _ in range(n):
            m = recv_publish(sub)
            self.assertTrue(m.retain)
            got.add(m.topic)
        self.assertEqual(len(got), n)
        marker(self, sub, pub, p + "/end")

    def test_retained_survives_subscription_removal(self):
        """Removing the last subscription on a topic (UNSUBSCRIBE, clean-session
        disconnect) keeps its retained message [MQTT-3.3.1-5]."""
        t = uid("rk") + "/x/y"
        publish(self.client(), t, b"keep me", qos=1, retain=True)
        a = self.client()
        subscribe(a, [(t, 0)])
        self.assertEqual(recv_publish(a).payload, b"keep me")
        unsubscribe(a, [t])
        b = self.client()
        subscribe(b, [(t, 0), (t.rsplit("/", 1)[0] + "/+", 0)])
        recv_publish(b)
        recv_publish(b)
        b.send(b"\xe0\x00")
        assert_closed(self, b)
        c = self.client()
        subscribe(c, [(t, 1)])
        m = recv_publish(c)
        self.assertEqual((m.payload, m.retain), (b"keep me", True))

    def test_retained_sent_again_on_resubscribe(self):
        """Re-subscribing re-sends retained messages (§3.8.4, [MQTT-3.8.4-3])."""
        t = uid("r")
        pub = self.client()
        publish(pub, t, b"again", qos=1, retain=True)
        sub = self.client()
        subscribe(sub, [(t, 1)])
        self.assertEqual(recv_publish(sub).payload, b"again")
        subscribe(sub, [(t, 1)])
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.retain), (b"again", True))

    def test_retain_available_false_stores_nothing(self):
        """retain_available false: a retained publish is not stored (contract: only check
        that nothing is retained; whether the publisher is closed is not specified)."""
        b = start_broker(self, "retain_available false\n")
        t = uid("r")
        p1 = connect(self, b)
        p1.send(publish_packet(t, b"nope", qos=1, retain=True, pid=1))
        try:
            p1.wait_for(4, pid=1)
        except (EOFError, ConnectionError):
            pass  # closed instead of acknowledged: allowed
        sub = connect(self, b)
        subscribe(sub, [(t, 1)])
        marker(self, sub, connect(self, b), t)


class TestWill(SharedBroker):

    def test_will_on_socket_close(self):
        """The will is published when the network connection closes without DISCONNECT
        [MQTT-3.1.2-8], with its QoS; log says "connection closed"."""
        off = log_offset(self.broker)
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 2)])
        cid = uid("wc")
        c = self.client(cid, will=(wt, b"bye", 2, False))
        c.close()
        m = recv_publish(sub)
        self.assertEqual((m.topic, m.payload, m.qos, m.retain), (wt, b"bye", 2, False))
        wait_log_line(self, self.broker, cid, "connection closed", offset=off)

    def test_will_on_socket_reset(self):
        """An abortive close (RST) also publishes the will [MQTT-3.1.2-8]; log says
        "socket error" or "connection closed"."""
        off = log_offset(self.broker)
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 0)])
        c = self.client(will=(wt, b"reset", 0, False))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        self.assertEqual(recv_publish(sub).payload, b"reset")
        wait_log_line(self, self.broker, c.client_id, ("socket error", "connection closed"), offset=off)

    def test_will_retain(self):
        """Will Retain 1: the will is published as a retained message [MQTT-3.1.2-17];
        live subscribers see RETAIN=0 [MQTT-3.3.1-9], new ones RETAIN=1."""
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 1)])
        c = self.client(will=(wt, b"retained will", 1, True))
        c.close()
        m = recv_publish(sub)
        self.assertEqual((m.payload, m.retain, m.qos), (b"retained will", False, 1))
        late = self.client()
        subscribe(late, [(wt, 1)])
        m = recv_publish(late)
        self.assertEqual((m.payload, m.retain), (b"retained will", True))

    def test_will_not_retained_when_flag_clear(self):
        """Will Retain 0: the will is not retained [MQTT-3.1.2-16]."""
        wt = uid("will")
        sub = self.client()
        subscribe(sub, [(wt, 1)])
        c = self.client(will=(wt, b"plain will", 1, False))
        c.close()
        self.assertEqual(recv_publish(sub).payload, b"plain will")
        late = self.client()
        subscribe(late, [(wt, 1)])
        marker(self, late, self.client(), wt)

    def test_empty_retained_will_clears_retained(self):
        """A will with Will Retain 1 and an empty message is published like a PUBLISH: it
        removes the retained message on its topic [MQTT-3.1.2-17] [MQTT-3.3.1-10]."""
        wt = uid("will")
        pub = self.client()
        publish(pub, wt, b"old retained", qos=1, retain=True)
        mon = self.client()
        subscribe(mon, [(wt, 1)])
        self.assertEqual(recv_publish(mon).payload, b"old retained")
        w = self.client(will=(wt, b"", 1, True))
        w.close()
        m = recv_publish(mon)
        self.assertEqual((m.payload, m.retain), (b"", False))
        late = self.client()
        subscribe(late, [(wt, 1)])
        marker(self, late, pub, wt)

    def test_will_to_persistent_offline_subscriber(self):
        """A will is an ordinary message: an offline persistent QoS 1 subscriber gets it on
        reconnect [MQTT-3.1.2-5]."""
        wt, cid = uid("will"), uid("off")
        s = self.client(cid, clean=False)
        subscribe(s, [(wt, 1)])
        s.send(b"\xe0\x00")
        assert_closed(self, s)
        mon = self.client()  # tells us when the will has been routed
        subscribe(mon, [(wt, 1)])
        w = self.client(will=(wt, b"while you were away", 1, False))
        w.close()
        self.assertEqual(recv_publish(mon).payload, b"while you were away")
        s2 = self.client(cid, clean=False, expect_sp=1)
        self.assertEqual(recv_publish(s2).payload, b"while you were away")


class TestScale(unittest.TestCase):

    def test_200_concurrent_subscribers(self):
        """200 concurrent subscribers all receive one published QoS 1 message."""
        b = start_broker(self)
        t = uid("fan")
        clients = []
        for i in range(200):
            c = Client(b.port, client_id="fan-%d" % i)
            self.addCleanup(c.close)
            c.send(connect_packet(client_id="fan-%d-%s" % (i, t)))
            clients.append(c)
        for c in clients:
            self.assertEqual(c.wait_for(CONNACK), (0x20, b"\x00\x00"))
        for c in clients:
            c.send(subscribe_packet([(t, 1)], pid=1))
        for c in clients:
            self.assertEqual(c.wait_for(9), (0x90, b"\x00\x01\x01"))
        pub = connect(self, b)
        publish(pub, t, b"to everyone", qos=1)
        for i, c in enumerate(clients):
            m = recv_publish(c)
            self.assertEqual((m.topic, m.payload, m.qos), (t, b"to everyone", 1), "subscriber %d" % i)

    def test_256k_payload_intact(self):
        """A 256 KiB payload (4-byte remaining length) goes through intact at QoS 0, 1 and 2
        and as a retained message."""
        b = start_broker(self)
        t = uid("big")
        payload = bytes((i * 31 + (i >> 8)) & 0xFF for i in range(256 * 1024))
        sub = connect(self, b)
        subscribe(sub, [(t, 2)])
        pub = connect(self, b)
        for q in (0, 1, 2):
            publish(pub, t, payload, qos=q, retain=(q == 2))
            m = recv_publish(sub)
            self.assertEqual((m.qos, len(m.payload)), (q, len(payload)))
            self.assertTrue(m.payload == payload, "payload corrupted at QoS %d" % q)
        late = connect(self, b)
        subscribe(late, [(t, 2)])
        m = recv_publish(late)
        self.assertTrue(m.retain and m.payload == payload)

    def test_256k_payload_refused_over_max_packet_size(self):
        """With max_packet_size below the packet size the 256 KiB PUBLISH is refused: the
        publisher is closed with a "protocol error" log line, nothing is delivered, other
        clients keep working (MQTT 3.1.1 has no size rule; §4.8 closes on violation)."""
        b = start_broker(self, "max_packet_size 100000\n")
        t = uid("big")
        sub = connect(self, b)
        subscribe(sub, [(t, 0)])
        off = log_offset(b)
        cid = uid("bigpub")
        pub = connect(self, b, cid)
        try:
            pub.send(publish_packet(t, b"x" * (256 * 1024), qos=1))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_closed(self, pub)
        wait_log_line(self, b, cid, "protocol error", offset=off)
        marker(self, sub, connect(self, b), t)


class TestRobustness(unittest.TestCase):

    def setUp(self):
        self.broker = start_broker(self)

    def test_stalled_subscriber_does_not_block_others(self):
        """A subscriber that stops reading must not stall the single-threaded broker:
        the publisher and a second subscriber keep going (32 MiB of QoS 0 through).
        Whether the stalled client is buffered or dropped is up to the broker."""
        t = uid("t")
        stalled = Client(self.broker.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.addCleanup(stalled.close)
        stalled.send(connect_packet(client_id=uid("stalled")))
        stalled.wait_for(CONNACK)
        subscribe(stalled, [(t, 0)])
        fast = connect(self, self.broker)
        subscribe(fast, [(t, 0)])
        pub = connect(self, self.broker)
        chunk = b"s" * 16384
        n = 2048
        got, errors = [], []  # messages received intact; why the reader stopped early

        def reader():
            try:
                for i in range(n):
                    m = recv_publish(fast)
                    if m.payload != chunk:
                        errors.append("message %d has payload %r" % (i, m.payload[:32]))
                        return
                    got.append(i)
            except Exception as e:  # a timeout is a lost message, never a delivered one
                errors.append(e)
        th = threading.Thread(target=reader)
        th.start()
        for i in range(n):
            pub.send(publish_packet(t, chunk))
        th.join(10 * WAIT)
        self.assertFalse(th.is_alive(), "fast subscriber still waiting after %d of %d messages"
                         % (len(got), n))
        self.assertEqual((len(got), errors), (n, []), "fast subscriber got %d of %d messages"
                         % (len(got), n))
        publish(pub, t, b"end", qos=1)  # the publisher is still served
        self.assertEqual(recv_publish(fast).payload, b"end")

    def test_subscriber_vanishes_mid_stream(self):
        """A subscriber reset while the broker has output queued for it is cleaned up
        safely: the broker keeps serving others."""
        t = uid("t")
        for _ in range(5):
            s = Client(self.broker.port)
            s.send(connect_packet(client_id=uid("gone")))
            s.wait_for(CONNACK)
            subscribe(s, [(t, 1)])
            pub = connect(self, self.broker)
            for i in range(20):
                pub.send(publish_packet(t, b"v" * 65536, qos=1, pid=i + 1))
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.assertTrue(self.broker.alive())
        ok = connect(self, self.broker)
        t2 = uid("t")
        subscribe(ok, [(t2, 1)])
        publish(connect(self, self.broker), t2, b"fine", qos=1)
        self.assertEqual(recv_publish(ok).payload, b"fine")

    def test_connection_churn(self):
        """300 connect/close cycles (half of them persistent sessions, some with wills, some
        reset) leave the broker healthy."""
        t = uid("t")
        watcher = connect(self, self.broker)
        subscribe(watcher, [(t, 0)])
        for i in range(300):
            c = Client(self.broker.port)
            c.send(connect_packet(client_id="churn-%d" % (i % 37), clean=bool(i % 2),
                                  will=(t, b"w", 0, False) if i % 3 == 0 else None))
            if i % 5 == 0:
                c.send(subscribe_packet([(uid("c"), 1)]))
            if i % 7 == 0:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif i % 2:
                c.wait_for(CONNACK)
                c.send(b"\xe0\x00")
            c.close()
        self.assertTrue(self.broker.alive())
        publish(connect(self, self.broker), t, b"alive", qos=1)
        while recv_publish(watcher).payload != b"alive":
            pass

    def deep_topics(self, b):
        """Up to 200 levels work; deeper filters get 0x80 and deeper PUBLISHes are dropped
        (acknowledged, logged), so no client can make the tree's walks exhaust the stack."""
        limit = "/" * 199 + "x"            # 200 levels: the deepest accepted
        deep = "/" * 65534 + "x"           # 65535 levels, the most a 2-byte length allows
        c = connect(self, b)
        self.assertEqual(subscribe(c, [(limit, 1)]), [1])
        publish(c, limit, b"limit", qos=1, retain=True)
        self.assertEqual(recv_publish(c).payload, b"limit")
        s2 = connect(self, b)
        self.assertEqual(subscribe(s2, [("#", 0)]), [0])
        self.assertEqual(recv_publish(s2).topic, limit)  # retained, found by '#'
        off = log_offset(b)
        granted = subscribe(c, [(deep, 1), ("/" * 40000 + "#", 0), ("+/" * 30000 + "#", 0)])
        self.assertEqual(granted, [0x80, 0x80, 0x80])
        publish(c, deep, b"deep", qos=1, retain=True)  # acknowledged but dropped
        wait_log_line(self, b, "more than 200 levels", offset=off)
        marker = uid("marker")
        publish(c, marker, b"m", qos=0)
        self.assertEqual(recv_publish(s2).topic, marker, "the deep PUBLISH was delivered")
        s3 = connect(self, b)
        subscribe(s3, [("#", 0), (marker, 0)])
        self.assertEqual(recv_publish(s3).topic, limit, "only the 200-level topic is retained")
        publish(c, limit, b"", qos=1, retain=True)
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        self.assertTrue(b.alive(), "broker died:\n" + b.output()[-1500:])
        ok = connect(self, b)
        ok.send(b"\xc0\x00")
        self.assertEqual(ok.wait_for(PINGRESP), (0xD0, b""))
        self.assertEqual(b.stop(), 0, "exit status after SIGTERM (tree freed at exit)")

    def test_deepest_topics(self):
        """Topic depth is capped at 200 levels (as Mosquitto's hierarchy limit): at the limit
        topics are subscribed, matched, retained and found by '#'; beyond it the broker
        refuses the filter (0x80) and drops the PUBLISH, and keeps serving."""
        self.deep_topics(self.broker)

    def test_deepest_topics_small_stack(self):
        """The same with a 2 MiB stack (small boxes, threads, sanitizer builds): stack use
        must not grow with the number of topic levels the client chooses."""
        self.deep_topics(start_broker(self, stack_kb=2048))

    def test_packet_id_wraparound(self):
        """Outgoing packet ids wrap after 65535 without using 0 [MQTT-2.3.1-1]: 66000 QoS 1
        messages to one acknowledging subscriber, sent in batches of 100 so that no queue
        limit is involved."""
        b = start_broker(self, "max_queued_messages 1000\n")
        t = uid("t")
        sub = connect(self, b)
        subscribe(sub, [(t, 1)])
        pub = connect(self, b)
        n, batch, seen = 66000, 100, 0
        for i in range(0, n, batch):
            pub.send(b"".join(publish_packet(t, b"%d" % j, qos=1, pid=j % 65535 + 1)
                              for j in range(i, i + batch)))
            for _ in range(batch):
                pub.wait_for(4)
            for _ in range(batch):
                first, body = sub.next_packet()
                self.assertEqual(first & 0xF6, 0x32, "expected QoS 1 PUBLISH, got 0x%02x" % first)
                m = Msg(*parse_publish(first, body))
                self.assertNotEqual(m.pid, 0, "packet id 0 after %d messages" % seen)
                self.assertEqual(m.payload, b"%d" % seen)
                sub.send(ack_packet("puback", m.pid))  # inflight window may be small
                seen += 1

if __name__ == "__main__":
    unittest.main()
