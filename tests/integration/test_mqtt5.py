"""MQTT 5.0 behaviour of build/secbroker over raw sockets (mqtt5lib builds
the packets): CONNECT/CONNACK properties, session expiry, flow control,
maximum packet size, topic aliases both ways, reason codes, server
DISCONNECT, properties forwarded (and dropped for 3.1.1 subscribers),
message expiry, subscription options and identifiers, shared
subscriptions, will properties, $SYS counts.

Docstrings cite the MQTT 5.0 (OASIS) conformance statements they check.
Nothing-else-arrived checks publish a marker afterwards, never sleep.
"""
import socket
import struct
import time
import unittest
import uuid

from mqttlib import (SECPUB, SECSUB, WAIT, Sub, connect, log_offset, need, publish, recv_publish,
                     run, start_broker, start_class_broker, subscribe, uid, wait_log_line)
from mqtt5lib import (ASSIGNED_CLIENT_ID, AUTH_METHOD, CONTENT_TYPE, CORRELATION_DATA, DISCONNECT,
                      MAXIMUM_PACKET_SIZE, MESSAGE_EXPIRY, PAYLOAD_FORMAT, PUBACK, PUBLISH,
                      PUBREC, PUBREL, REASON_STRING, RECEIVE_MAXIMUM, RESPONSE_TOPIC,
                      REQUEST_PROBLEM_INFO, REQUEST_RESPONSE_INFO, RESPONSE_INFO,
                      RETAIN_AVAILABLE, SERVER_KEEP_ALIVE, SESSION_EXPIRY, SHARED_SUB_AVAILABLE,
                      SUB_ID_AVAILABLE, SUBSCRIPTION_ID, TOPIC_ALIAS, TOPIC_ALIAS_MAXIMUM, USER,
                      WILDCARD_SUB_AVAILABLE, WILL_DELAY, Client5, ack5, disconnect5, opts,
                      parse_ack, parse_publish5, parse_suback, prop, props, publish5, subscribe5,
                      unsubscribe5)


def marker5(tc, subs, pub, topic, qos=1):
    """A unique marker published by pub (v5 or 3.1.1 raw client) is the next
    message each v5 subscriber in subs gets."""
    mark = ("marker-" + uuid.uuid4().hex).encode()
    if isinstance(pub, Client5):
        pub.publish(topic, mark, qos=qos)
    else:
        publish(pub, topic, mark, qos=qos)
    for s in subs:
        tc.assertEqual(s.recv().payload, mark, "something arrived before the marker")


class V5(unittest.TestCase):
    conf = "max_inflight_messages 4\nmax_keepalive 100\n"

    @classmethod
    def setUpClass(cls):
        cls.broker = start_class_broker(cls, cls.conf)

    def c5(self, client_id=None, expect=0, **kw):
        c = Client5(self.broker.port, client_id if client_id is not None else uid("v5"))
        self.addCleanup(c.close)
        ca = c.connect(**kw)
        self.assertEqual(ca.reason, expect, "CONNACK reason (props %r)" % (ca.props,))
        c.connack = ca
        return c

    def closed(self, c):
        self.assertTrue(c.closed(WAIT), "broker did not close the connection")


class TestConnect(V5):

    def test_connack_properties(self):
        """CONNACK 0 of a level-5 CONNECT carries Receive Maximum (max_inflight_messages),
        Topic Alias Maximum, Retain/Wildcard/Subscription Identifier/Shared Subscription
        Available [MQTT-3.2.2-*], Server Keep Alive when max_keepalive caps the client's
        [MQTT-3.2.2-21]."""
        c = self.c5(keepalive=500)
        p = c.connack.props
        self.assertEqual(prop(p, RECEIVE_MAXIMUM), 4)
        self.assertEqual(prop(p, TOPIC_ALIAS_MAXIMUM), 10)
        self.assertEqual(prop(p, RETAIN_AVAILABLE), 1)
        for flag in (WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE):
            self.assertEqual(prop(p, flag), 1)
        self.assertEqual(prop(p, SERVER_KEEP_ALIVE), 100)
        self.assertIsNone(prop(p, ASSIGNED_CLIENT_ID))

    def test_assigned_client_identifier(self):
        """An empty Client Identifier gets one in Assigned Client Identifier [MQTT-3.2.2-16],
        also with Clean Start 0 (spec 3.1.3.1)."""
        c = self.c5("", clean=False)
        cid = prop(c.connack.props, ASSIGNED_CLIENT_ID)
        self.assertTrue(cid and cid.startswith(b"auto-"), cid)

    def test_response_information(self):
        """Request Response Information 1: CONNACK carries Response Information (4.10.2);
        without the request it does not [MQTT-3.1.2-28]."""
        cid = uid("ri")
        c = self.c5(cid, properties=props((REQUEST_RESPONSE_INFO, 1)))
        self.assertEqual(prop(c.connack.props, RESPONSE_INFO), ("response/%s/" % cid).encode())
        self.assertIsNone(prop(self.c5().connack.props, RESPONSE_INFO))

    def test_request_problem_information_0(self):
        """Request Problem Information 0: no Reason String on a PUBACK [MQTT-3.1.2-29];
        with the default (1) the refusal says why."""
        b = start_broker(self, "allow_anonymous true\nacl_file {dir}/acl\n",
                         files={"acl": "topic readwrite open/#\n"})
        for pi, has_reason in ((0, False), (1, True)):
            c = Client5(b.port, uid("pi"))
            self.addCleanup(c.close)
            c.connect(properties=props((REQUEST_PROBLEM_INFO, pi)))
            pid = c.pid()
            c.send(publish5("closed/x", b"", qos=1, pid=pid))
            f, body = c.wait_for(PUBACK, pid=pid)
            a = parse_ack(f, body)
            self.assertEqual(a.reason, 0x87)
            self.assertEqual(prop(a.props, REASON_STRING) is not None, has_reason, a.props)

    def test_unsupported_auth_method(self):
        """An Authentication Method the broker does not support: CONNACK 0x8C, closed
        (spec 4.12)."""
        c = self.c5(expect=0x8C, properties=props((AUTH_METHOD, "SCRAM-SHA-1")))
        self.assertEqual(c.connack.sp, 0)
        self.closed(c)

    def test_bad_credentials_reason(self):
        """Refusals use v5 reason codes: anonymous not allowed is 0x87 Not authorized with a
        Reason String."""
        b = start_broker(self, "allow_anonymous false\n")
        c = Client5(b.port, uid("anon"))
        self.addCleanup(c.close)
        ca = c.connect()
        self.assertEqual(ca.reason, 0x87)
        self.assertIn(b"anonymous", prop(ca.props, REASON_STRING))
        self.assertTrue(c.closed(WAIT))

    def test_malformed_properties_connack_0x81_or_0x82(self):
        """A CONNECT with a duplicate property is refused with a CONNACK reason >= 0x80 and
        closed [MQTT-3.1.4-1/2]."""
        dup = props((SESSION_EXPIRY, 1), (SESSION_EXPIRY, 2))
        c = Client5(self.broker.port, uid("dup"))
        self.addCleanup(c.close)
        ca = c.connect(properties=dup)
        self.assertGreaterEqual(ca.reason, 0x80)
        self.assertTrue(c.closed(WAIT))

    def test_keepalive_timeout_disconnect_0x8d(self):
        """A silent client gets DISCONNECT 0x8D Keep Alive timeout."""
        c = self.c5(keepalive=1)
        a = c.wait_disconnect()
        self.assertEqual(a.reason, 0x8D)
        self.closed(c)

    def test_takeover_disconnect_0x8e(self):
        """The old connection of a taken-over client id gets DISCONNECT 0x8E."""
        cid = uid("take")
        old = self.c5(cid)
        self.c5(cid)
        self.assertEqual(old.wait_disconnect().reason, 0x8E)

    def test_second_connect_protocol_error(self):
        """A second CONNECT is a Protocol Error: DISCONNECT 0x82 [MQTT-3.1.0-2]."""
        c = self.c5()
        c.send(b"\x10\x00")  # any CONNECT (the type alone is enough)
        a = c.wait_disconnect()
        self.assertIn(a.reason, (0x81, 0x82))

    def test_malformed_publish_disconnect_0x81(self):
        """A PUBLISH whose property block runs past the packet: DISCONNECT 0x81 Malformed."""
        c = self.c5()
        c.send(bytes([0x30, 6, 0, 1, ord("t"), 9, 1, 0]))
        self.assertEqual(c.wait_disconnect().reason, 0x81)

    def test_too_large_disconnect_0x95(self):
        """A packet over the broker's Maximum Packet Size: DISCONNECT 0x95 [MQTT-3.2.2-?]."""
        b = start_broker(self, "max_packet_size 200\n")
        c = Client5(b.port, uid("big"))
        self.addCleanup(c.close)
        ca = c.connect()
        self.assertEqual(prop(ca.props, MAXIMUM_PACKET_SIZE), 200)
        c.send(publish5("t", b"x" * 300))
        self.assertEqual(c.wait_disconnect().reason, 0x95)

    def test_auth_packet_protocol_error(self):
        """AUTH without an Authentication Method in CONNECT is a Protocol Error (4.12)."""
        c = self.c5()
        c.send(bytes([0xF0, 0x0B, 0x18, 0x09, 0x15, 0x00, 0x06]) + b"SCRAM1")
        self.assertEqual(c.wait_disconnect().reason, 0x82)


class TestSessionExpiry(V5):

    def test_expiry_zero_ends_at_disconnect(self):
        """Session Expiry Interval 0 (absent): the session ends at disconnect; Clean Start 0
        then finds none (session present 0) [MQTT-3.1.2-?]."""
        cid = uid("se0")
        c = self.c5(cid, clean=False)
        c.subscribe([("se0/t", opts(1))])
        c.send(disconnect5())
        self.closed(c)
        c2 = self.c5(cid, clean=False)
        self.assertEqual(c2.connack.sp, 0)

    def test_expiry_keeps_session_and_queues(self):
        """With an interval the session outlives the connection: QoS 1 messages queue, the
        reconnect sees session present 1 and gets them [MQTT-3.2.2-2]."""
        cid, t = uid("se"), uid("se/t")
        c = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        c.subscribe([(t, opts(1))])
        c.send(disconnect5())
        self.closed(c)
        p = self.c5()
        p.publish(t, b"while away", qos=1)
        c2 = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        self.assertEqual(c2.connack.sp, 1)
        self.assertEqual(c2.recv().payload, b"while away")

    def test_expiry_runs_out(self):
        """A session whose interval has run out is gone: session present 0."""
        cid = uid("sex")
        c = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 1)))
        c.subscribe([("sex/t", opts(1))])
        c.send(disconnect5())
        self.closed(c)
        deadline = time.time() + WAIT
        while True:
            c2 = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 1)))
            if c2.connack.sp == 0:
                break
            self.assertLess(time.time(), deadline, "session never expired")
            c2.send(disconnect5())
            self.closed(c2)
            time.sleep(1.5)

    def test_disconnect_sets_expiry(self):
        """DISCONNECT may set a Session Expiry Interval when CONNECT had one > 0."""
        cid = uid("sed")
        c = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 1)))
        c.send(disconnect5(0, props((SESSION_EXPIRY, 300))))
        self.closed(c)
        time.sleep(2.5)  # longer than the first interval; the second one holds
        self.assertEqual(self.c5(cid, clean=False).connack.sp, 1)

    def test_disconnect_expiry_after_zero_is_protocol_error(self):
        """DISCONNECT may not set an expiry when CONNECT had 0: DISCONNECT 0x82
        [MQTT-3.14.2-2]."""
        c = self.c5()
        c.send(disconnect5(0, props((SESSION_EXPIRY, 30))))
        self.assertEqual(c.wait_disconnect().reason, 0x82)

    def test_clean_start_discards(self):
        """Clean Start 1 discards a kept session [MQTT-3.1.2-4]."""
        cid = uid("cs")
        c = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        c.close()
        self.assertEqual(self.c5(cid, clean=True).connack.sp, 0)


class TestFlowControl(V5):

    def test_receive_maximum_towards_client(self):
        """The broker never has more unacknowledged QoS 1 PUBLISHes towards a client than its
        Receive Maximum [MQTT-3.3.4-9]; acking one releases the next."""
        t = uid("rm")
        sub = self.c5(properties=props((RECEIVE_MAXIMUM, 2)))
        sub.subscribe([(t, opts(1))])
        p = self.c5()
        for i in range(5):
            p.publish(t, b"%d" % i, qos=1)
        got = [sub.recv(ack=False), sub.recv(ack=False)]
        marker = uid("m").encode()
        p.publish(t, marker, qos=0)  # QoS 0 is not flow controlled
        m = sub.recv(ack=False)
        self.assertEqual(m.payload, marker, "a third QoS 1 PUBLISH came before any ack")
        sub.send(ack5(PUBACK, got[0].pid))
        self.assertEqual(sub.recv(ack=False).payload, b"2")

    def test_receive_maximum_exceeded_0x93(self):
        """More unacknowledged QoS 2 PUBLISHes than the broker's Receive Maximum (4):
        DISCONNECT 0x93 [MQTT-3.3.4-8]."""
        c = self.c5()
        for pid in range(1, 6):
            c.send(publish5("rmx", b"x", qos=2, pid=pid))
        self.assertEqual(c.wait_disconnect().reason, 0x93)

    def test_maximum_packet_size_towards_client(self):
        """A message larger than the client's Maximum Packet Size is not sent (dropped)
        [MQTT-3.1.2-24]; smaller ones are."""
        t = uid("mps")
        sub = self.c5(properties=props((MAXIMUM_PACKET_SIZE, 100)))
        sub.subscribe([(t, opts(1))])
        p = self.c5()
        p.publish(t, b"x" * 200, qos=1)
        p.publish(t, b"small", qos=1)
        self.assertEqual(sub.recv().payload, b"small")


class TestTopicAlias(V5):

    def test_alias_from_client(self):
        """A client binds a Topic Alias with a topic, then publishes with an empty topic and
        the alias (3.3.2.3.4)."""
        t = uid("ta")
        sub = self.c5()
        sub.subscribe([(t, opts(0))])
        p = self.c5()
        p.send(publish5(t, b"one", properties=props((TOPIC_ALIAS, 3))))
        p.send(publish5("", b"two", properties=props((TOPIC_ALIAS, 3))))
        self.assertEqual([sub.recv().payload, sub.recv().payload], [b"one", b"two"])
        self.assertEqual(sub.recv.__self__.aliases, {})

    def test_alias_out_of_range_0x94(self):
        """Alias 0 or above the broker's Topic Alias Maximum: DISCONNECT 0x94
        [MQTT-3.3.2-8/9]."""
        c = self.c5()
        c.send(publish5("x", b"", properties=props((TOPIC_ALIAS, 11))))
        self.assertEqual(c.wait_disconnect().reason, 0x94)

    def test_unknown_alias_protocol_error(self):
        """An empty topic with an alias never bound: DISCONNECT 0x82."""
        c = self.c5()
        c.send(publish5("", b"", properties=props((TOPIC_ALIAS, 2))))
        self.assertEqual(c.wait_disconnect().reason, 0x82)

    def test_alias_towards_client(self):
        """A client with Topic Alias Maximum > 0 gets the topic once with an alias, then the
        alias alone; a client without one never gets an alias [MQTT-3.3.2-7]."""
        t = uid("tao")
        sub = self.c5(properties=props((TOPIC_ALIAS_MAXIMUM, 5)))
        plain = self.c5()
        sub.subscribe([(t, opts(0))])
        plain.subscribe([(t, opts(0))])
        p = self.c5()
        p.publish(t, b"1", qos=1)
        p.publish(t, b"2", qos=1)
        f1, b1 = sub.wait_for(PUBLISH)
        f2, b2 = sub.wait_for(PUBLISH)
        m1, m2 = parse_publish5(f1, b1), parse_publish5(f2, b2)
        self.assertEqual(m1.topic, t)
        self.assertEqual(m2.topic, "")
        self.assertEqual(prop(m1.props, TOPIC_ALIAS), prop(m2.props, TOPIC_ALIAS))
        f, b = plain.wait_for(PUBLISH)
        self.assertIsNone(prop(parse_publish5(f, b).props, TOPIC_ALIAS))


class TestReasonCodes(V5):

    def test_puback_not_authorized_0x87(self):
        """A PUBLISH the ACL denies is acknowledged with 0x87 (QoS 1 and 2)."""
        b = start_broker(self, "allow_anonymous true\nacl_file {dir}/acl\n",
                         files={"acl": "topic readwrite open/#\n"})
        c = Client5(b.port, uid("acl"))
        self.addCleanup(c.close)
        c.connect()
        self.assertEqual(c.publish("closed/x", b"no", qos=1), 0x87)
        self.assertEqual(c.publish("closed/x", b"no", qos=2), 0x87)
        self.assertEqual(c.publish("open/x", b"yes", qos=1), 0)
        self.assertEqual(c.subscribe([("closed/#", 0), ("open/#", 1)]), [0x87, 1])

    def test_suback_unsuback_codes(self):
        """SUBACK grants QoS per filter; UNSUBACK says 0x00 or 0x11 No subscription existed
        [MQTT-3.11.3-2]; an invalid share name gets 0x8F [MQTT-4.8.2-1/2]."""
        c = self.c5()
        codes = c.subscribe([("a/b", opts(2)), ("a/c", opts(1)), ("$share//x", opts(0)),
                             ("$share/g", opts(0)), ("$share/g/", opts(0))])
        self.assertEqual(codes, [2, 1, 0x8F, 0x8F, 0x8F])
        pid = c.pid()
        c.send(unsubscribe5(["a/b", "nope"], pid=pid))
        f, body = c.wait_for(11, pid=pid)
        self.assertEqual(parse_suback(body)[2], [0x00, 0x11])

    def test_pubrel_unknown_id_0x92(self):
        """PUBREL for an unknown packet id: PUBCOMP 0x92 Packet Identifier not found."""
        c = self.c5()
        c.send(ack5(PUBREL, 77))
        f, body = c.wait_for(7, pid=77)
        self.assertEqual(parse_ack(f, body).reason, 0x92)

    def test_retain_not_available_0x9a(self):
        """retain_available false: announced in CONNACK; a retained PUBLISH gets DISCONNECT
        0x9A."""
        b = start_broker(self, "retain_available false\n")
        c = Client5(b.port, uid("ret"))
        self.addCleanup(c.close)
        self.assertEqual(prop(c.connect().props, RETAIN_AVAILABLE), 0)
        c.send(publish5("r", b"x", retain=True))
        self.assertEqual(c.wait_disconnect().reason, 0x9A)

    def test_server_shutdown_0x8b(self):
        """SIGTERM: v5 clients get DISCONNECT 0x8B Server shutting down."""
        b = start_broker(self)
        c = Client5(b.port, uid("down"))
        self.addCleanup(c.close)
        c.connect()
        c.subscribe([("x", 0)])
        b.proc.terminate()
        self.assertEqual(c.wait_disconnect().reason, 0x8B)


class TestProperties(V5):

    PROPS = props((PAYLOAD_FORMAT, 1), (CONTENT_TYPE, "text/plain"), (RESPONSE_TOPIC, "reply/x"),
                  (CORRELATION_DATA, b"\x00\x01corr"), (USER, ("k", "v")), (USER, ("k", "v2")))

    def test_forwarded_unchanged_to_v5(self):
        """User Properties (order kept [MQTT-3.3.2-18]), Response Topic, Correlation Data,
        Payload Format Indicator and Content Type reach v5 subscribers unchanged."""
        t = uid("pp")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        self.c5().publish(t, b"hi", qos=1, properties=self.PROPS)
        m = sub.recv()
        self.assertEqual(m.payload, b"hi")
        self.assertEqual([(k, v) for k, v in m.props if k != SUBSCRIPTION_ID],
                         [(PAYLOAD_FORMAT, 1), (CONTENT_TYPE, b"text/plain"),
                          (RESPONSE_TOPIC, b"reply/x"), (CORRELATION_DATA, b"\x00\x01corr"),
                          (USER, (b"k", b"v")), (USER, (b"k", b"v2"))])

    def test_dropped_for_v311(self):
        """A 3.1.1 subscriber gets the same message without properties."""
        t = uid("pp3")
        sub = connect(self, self.broker, uid("v311"))
        subscribe(sub, [(t, 1)])
        self.c5().publish(t, b"plain", qos=1, properties=self.PROPS)
        self.assertEqual(recv_publish(sub).payload, b"plain")

    def test_v311_publisher_to_v5(self):
        """A 3.1.1 publisher's message reaches a v5 subscriber with no properties."""
        t = uid("pp4")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        publish(connect(self, self.broker, uid("v311")), t, b"old", qos=1)
        m = sub.recv()
        self.assertEqual((m.payload, m.props), (b"old", []))

    def test_message_expiry_remaining_time(self):
        """A queued message is forwarded with the remaining Message Expiry Interval
        [MQTT-3.3.2-6], an expired one not at all [MQTT-3.3.2-5]."""
        cid, t = uid("mx"), uid("mx/t")
        c = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        c.subscribe([(t, opts(1))])
        c.close()
        p = self.c5()
        p.publish(t, b"short", qos=1, properties=props((MESSAGE_EXPIRY, 1)))
        p.publish(t, b"long", qos=1, properties=props((MESSAGE_EXPIRY, 1000)))
        time.sleep(2.2)
        c2 = self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        m = c2.recv()
        self.assertEqual(m.payload, b"long")
        self.assertTrue(990 <= prop(m.props, MESSAGE_EXPIRY) < 1000, m.props)

    def test_retained_message_expiry(self):
        """An expired retained message is not sent to a new subscriber."""
        t = uid("rx")
        p = self.c5()
        p.publish(t, b"gone soon", qos=1, retain=True, properties=props((MESSAGE_EXPIRY, 1)))
        p.publish(t + "/2", b"stays", qos=1, retain=True, properties=props((MESSAGE_EXPIRY, 100)))
        time.sleep(2.2)
        s = self.c5()
        s.subscribe([(t + "/#", opts(1))])
        m = s.recv()
        self.assertEqual(m.payload, b"stays")
        self.assertLess(prop(m.props, MESSAGE_EXPIRY), 100)


class TestSubscriptionOptions(V5):

    def test_no_local(self):
        """No Local: the client's own messages are not sent back [MQTT-3.8.3-3]; another
        client's are."""
        t = uid("nl")
        c = self.c5()
        c.subscribe([(t, opts(1, no_local=True))])
        c.publish(t, b"mine", qos=1)
        self.c5().publish(t, b"theirs", qos=1)
        self.assertEqual(c.recv().payload, b"theirs")

    def test_retain_as_published(self):
        """Retain As Published keeps the RETAIN flag of a forwarded message
        [MQTT-3.3.1-12]; without it the flag is 0 [MQTT-3.3.1-13]."""
        t = uid("rap")
        a, b = self.c5(), self.c5()
        a.subscribe([(t, opts(1, rap=True))])
        b.subscribe([(t, opts(1))])
        self.c5().publish(t, b"r", qos=1, retain=True)
        self.assertTrue(a.recv().retain)
        self.assertFalse(b.recv().retain)

    def test_retain_handling(self):
        """Retain Handling 0 sends retained messages at every SUBSCRIBE, 1 only for a new
        subscription, 2 never [MQTT-3.3.1-9/10/11]."""
        t = uid("rh")
        p = self.c5()
        p.publish(t, b"kept", qos=1, retain=True)
        for rh, expect in ((0, [True, True]), (1, [True, False]), (2, [False, False])):
            c = self.c5()
            got = []
            for _ in range(2):
                c.subscribe([(t, opts(1, rh=rh))])
                marker = uid("mk").encode()
                p.publish(t, marker, qos=1)
                m = c.recv()
                got.append(m.payload == b"kept")
                if got[-1]:
                    self.assertTrue(m.retain)
                    self.assertEqual(c.recv().payload, marker)
            self.assertEqual(got, expect, "retain handling %d" % rh)

    def test_subscription_identifiers(self):
        """Each matching subscription's identifier is sent with the message
        [MQTT-3.3.4-3/4]; a subscription without one adds none."""
        t = uid("sid")
        c = self.c5()
        c.subscribe([(t + "/#", opts(1))], properties=props((SUBSCRIPTION_ID, 7)))
        c.subscribe([(t + "/+", opts(1))], properties=props((SUBSCRIPTION_ID, 300)))
        c.subscribe([(t + "/x", opts(1))])
        self.c5().publish(t + "/x", b"m", qos=1)
        m = c.recv()
        self.assertEqual(sorted(v for k, v in m.props if k == SUBSCRIPTION_ID), [7, 300])


class TestShared(V5):

    def test_round_robin_v5_and_v311(self):
        """$share/G/F: each message goes to one member, in turn, v5 and 3.1.1 members alike
        (spec 4.8.2); a normal subscriber gets every one."""
        t, g = uid("sh"), uid("g")
        a, b = self.c5(), self.c5()
        old = connect(self, self.broker, uid("v311"))
        a.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        b.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        self.assertEqual(subscribe(old, [("$share/%s/%s" % (g, t), 1)]), [1])
        plain = self.c5()
        plain.subscribe([(t, opts(1))])
        p = self.c5()
        for i in range(6):
            p.publish(t, b"%d" % i, qos=1)
        got = [a.recv().payload, a.recv().payload, b.recv().payload, b.recv().payload,
               recv_publish(old).payload, recv_publish(old).payload]
        self.assertEqual(sorted(got), [b"%d" % i for i in range(6)])
        self.assertEqual([plain.recv().payload for _ in range(6)], [b"%d" % i for i in range(6)])

    def test_no_retained_on_shared(self):
        """Retained messages are not sent on a shared subscription [MQTT-3.8.4-?]."""
        t, g = uid("shr"), uid("g")
        p = self.c5()
        p.publish(t, b"retained", qos=1, retain=True)
        c = self.c5()
        c.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        p.publish(t, b"live", qos=1)
        self.assertEqual(c.recv().payload, b"live")

    def test_unacked_go_to_another_member(self):
        """QoS 1 messages a member did not acknowledge before it went away (session ended)
        go to another member."""
        t, g = uid("shu"), uid("g")
        a = self.c5()
        a.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        p = self.c5()
        p.publish(t, b"for a", qos=1)
        self.assertEqual(a.recv(ack=False).payload, b"for a")
        b = self.c5()
        b.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        a.close()
        self.assertEqual(b.recv().payload, b"for a")

    def test_shared_unsubscribe(self):
        """UNSUBSCRIBE $share/G/F leaves the group."""
        t, g = uid("shx"), uid("g")
        a, b = self.c5(), self.c5()
        for c in (a, b):
            c.subscribe([("$share/%s/%s" % (g, t), opts(1))])
        pid = a.pid()
        a.send(unsubscribe5(["$share/%s/%s" % (g, t)], pid=pid))
        f, body = a.wait_for(11, pid=pid)
        self.assertEqual(parse_suback(body)[2], [0])
        p = self.c5()
        for i in range(3):
            p.publish(t, b"%d" % i, qos=1)
        self.assertEqual([b.recv().payload for _ in range(3)], [b"0", b"1", b"2"])

    def test_shared_subscription_identifier(self):
        """A shared subscription's Subscription Identifier comes with the messages it
        delivers [MQTT-3.3.4-3]; leaving the group stops it."""
        t, g = uid("shid"), uid("g")
        c = self.c5()
        c.subscribe([("$share/%s/%s" % (g, t), opts(1))], properties=props((SUBSCRIPTION_ID, 77)))
        self.c5().publish(t, b"m", qos=1)
        self.assertEqual(prop(c.recv().props, SUBSCRIPTION_ID), 77)

    def test_acl_sees_real_filter(self):
        """The ACL checks the filter after $share/G/."""
        br = start_broker(self, "allow_anonymous true\nacl_file {dir}/acl\n",
                          files={"acl": "topic readwrite open/#\n"})
        c = Client5(br.port, uid("sacl"))
        self.addCleanup(c.close)
        c.connect()
        self.assertEqual(c.subscribe([("$share/g/open/x", 1), ("$share/g/closed/x", 1)]),
                         [1, 0x87])


class TestWillAndSys(V5):

    def test_will_properties_and_disconnect_with_will(self):
        """DISCONNECT 0x04 publishes the will [MQTT-3.14.4-3 exception]; the will carries its
        properties (Will Delay Interval is not forwarded)."""
        t = uid("will")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        wprops = props((CONTENT_TYPE, "text/x"), (USER, ("why", "gone")))
        c = self.c5(will=(t, b"bye", 1, False, wprops))
        c.send(disconnect5(0x04))
        m = sub.recv()
        self.assertEqual(m.payload, b"bye")
        self.assertEqual([(k, v) for k, v in m.props if k != SUBSCRIPTION_ID],
                         [(CONTENT_TYPE, b"text/x"), (USER, (b"why", b"gone"))])

    def test_normal_disconnect_no_will(self):
        """DISCONNECT 0x00 discards the will."""
        t = uid("nowill")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        c = self.c5(will=(t, b"bye", 1, False, props((WILL_DELAY, 0))))
        c.send(disconnect5(0))
        self.closed(c)
        marker5(self, [sub], self.c5(), t)

    def test_will_delay(self):
        """The will waits for its Will Delay Interval (spec 3.1.3.2.2): not sent at once,
        sent after the delay; a reconnect within the delay cancels it [MQTT-3.1.3-9]."""
        t, cid = uid("wd"), uid("wd")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        c = self.c5(cid, properties=props((SESSION_EXPIRY, 60)),
                    will=(t, b"late", 1, False, props((WILL_DELAY, 2))))
        off = log_offset(self.broker)
        c.close()  # no DISCONNECT: the will is due
        wait_log_line(self, self.broker, "Will of %s delayed by 2 s" % cid, offset=off)
        marker5(self, [sub], self.c5(), t)  # nothing before the marker
        self.assertEqual(sub.recv().payload, b"late")
        # a reconnect within the delay: no will
        c = self.c5(cid, properties=props((SESSION_EXPIRY, 60)),
                    will=(t, b"never", 1, False, props((WILL_DELAY, 30))))
        off = log_offset(self.broker)
        c.close()
        wait_log_line(self, self.broker, "Will of %s delayed by 30 s" % cid, offset=off)
        self.c5(cid, clean=False, properties=props((SESSION_EXPIRY, 60)))
        wait_log_line(self, self.broker, "Will of %s cancelled" % cid, offset=off)

    def test_will_delay_session_ends_first(self):
        """Session expiry 0: the session ends at disconnect, so the will goes at once
        whatever its delay."""
        t = uid("wd0")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        c = self.c5(will=(t, b"now", 1, False, props((WILL_DELAY, 300))))
        c.close()
        self.assertEqual(sub.recv().payload, b"now")

    def test_sys_counts_by_version(self):
        """$SYS/broker/clients/mqtt5, mqtt311, mqtt31 count connected clients."""
        b = start_broker(self, "sys_interval 1\n")
        c = Client5(b.port, uid("sys"))
        self.addCleanup(c.close)
        c.connect()
        c.subscribe([("$SYS/broker/clients/mqtt5", 0)])
        m = c.recv()
        self.assertEqual(m.payload, b"1")


class TestClients5(V5):
    """secpub/secsub -V 5, -D COMMAND PROPERTY VALUE, -x (as mosquitto_pub/sub)."""

    def test_secpub_properties_reach_v5_subscriber(self):
        """secpub -V 5 -D publish ...: the properties arrive unchanged."""
        t = uid("cp")
        sub = self.c5()
        sub.subscribe([(t, opts(1))])
        rc, _, err = run([need(SECPUB), "-V", "5", "-p", str(self.broker.port), "-t", t, "-m", "hi",
                          "-q", "1", "-D", "publish", "content-type", "text/x", "-D", "publish",
                          "user-property", "a", "b", "-D", "publish", "response-topic", "r/1",
                          "-D", "connect", "session-expiry-interval", "10"])
        self.assertEqual(rc, 0, err)
        m = sub.recv()
        self.assertEqual(m.payload, b"hi")
        self.assertEqual(m.props, [(CONTENT_TYPE, b"text/x"), (USER, (b"a", b"b")),
                                   (RESPONSE_TOPIC, b"r/1")])

    def test_secsub_session_expiry_and_subscription_id(self):
        """secsub -V 5 -x 300 -c keeps its session: a message published while it is away
        is delivered on its next run; its subscription identifier travels with it."""
        t, cid = uid("cs"), uid("cs")
        argv = [need(SECSUB), "-V", "5", "-p", str(self.broker.port), "-t", t, "-q", "1", "-c",
                "-i", cid, "-x", "300", "-D", "subscribe", "subscription-identifier", "5"]
        first = Sub(argv + ["-C", "1"])
        self.addCleanup(first.close)
        first.wait_subscribed()
        self.c5().publish(t, b"one", qos=1)
        self.assertEqual(first.wait()[:2], (0, [b"one"]))
        self.c5().publish(t, b"while away", qos=1)
        second = Sub(argv + ["-C", "1"])
        self.addCleanup(second.close)
        self.assertEqual(second.wait()[:2], (0, [b"while away"]))

    def test_secsub_format_prints_properties_as_mosquitto_sub(self):
        """secsub -V 5 -F %A..%S prints the message's properties the way mosquitto_sub
        does (both subscribed to the same message); absent ones print nothing."""
        t = uid("cf")
        fmt = "%t|%p|%C|%R|%D|%P|%F|%S|%A|"
        subs = []
        for exe in (need(SECSUB), "mosquitto_sub"):
            sub = Sub([need("stdbuf"), "-oL", exe, "-V", "5", "-p", str(self.broker.port), "-t", t,
                       "-C", "2", "-q", "1", "-F", fmt, "-D", "subscribe",
                       "subscription-identifier", "7"])
            self.addCleanup(sub.close)
            sub.wait_subscribed()
            subs.append(sub)
        self.c5().publish(t, b"hello", qos=1, properties=props(
            (CONTENT_TYPE, "text/plain"), (RESPONSE_TOPIC, "r/t"), (CORRELATION_DATA, "abc"),
            (USER, ("k", "v")), (USER, ("k2", "v2")), (PAYLOAD_FORMAT, 1)))
        self.c5().publish(t, b"bare", qos=1)
        ours, theirs = (sub.wait() for sub in subs)
        self.assertEqual(ours[0], 0, ours[2])
        self.assertEqual(ours[1], [("%s|hello|text/plain|r/t|abc|k:v k2:v2|1|7||" % t).encode(),
                                   ("%s|bare||||||7||" % t).encode()])
        self.assertEqual(ours[1], theirs[1])

    def test_debug_lines_decode_v5_packets(self):
        """-d with -V 5: the lines read the v5 packets (properties are not payload)."""
        t = uid("cd")
        sub = Sub([need(SECSUB), "-V", "5", "-d", "-p", str(self.broker.port), "-t", t, "-q", "1",
                   "-C", "1", "-D", "subscribe", "subscription-identifier", "3"])
        self.addCleanup(sub.close)
        sub.wait_subscribed()
        rc, out, err = run([need(SECPUB), "-V", "5", "-d", "-p", str(self.broker.port), "-t", t,
                            "-m", "hi", "-q", "1", "-i", "dbg5", "-D", "publish", "content-type",
                            "text/plain"])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"Client dbg5 received CONNACK (0)", out)
        self.assertIn(b"Client dbg5 sending PUBLISH (d0, q1, r0, m1, '" + t.encode() +
                      b"', ... (2 bytes))", out)
        self.assertIn(b"Client dbg5 received PUBACK (Mid: 1)", out)
        rc, lines, err = sub.wait()
        self.assertEqual((rc, lines), (0, [b"hi"]), err)
        text = b"\n".join(sub.stdout_lines())
        self.assertIn(b"SUBSCRIBE (Mid: 1, Topic: " + t.encode() + b", QoS: 1)", text)
        self.assertIn(b"received PUBLISH (d0, q1, r0, m1, '" + t.encode() + b"', ... (2 bytes))",
                      text)

    def test_bad_property_arguments(self):
        """-D without -V 5, an unknown property, a property the packet may not carry:
        usage errors (exit 64) naming the problem."""
        base = [need(SECPUB), "-p", str(self.broker.port), "-t", "x", "-m", "y"]
        for extra, words in ((["-D", "publish", "content-type", "a"], "need -V 5"),
                             (["-V", "5", "-D", "publish", "no-such", "1"], "unknown property"),
                             (["-V", "5", "-D", "publish", "session-expiry-interval", "1"],
                              "not allowed in publish"),
                             (["-V", "5", "-D", "connect", "receive-maximum", "x"], "number")):
            with self.subTest(extra=extra):
                rc, _, err = run(base + extra)
                self.assertEqual(rc, 64, err)
                self.assertIn(words, err)


if __name__ == "__main__":
    unittest.main()
