"""per_listener_settings (issue 16): with true, allow_anonymous, password_file,
acl_file and allow_zero_length_clientid belong to the listener block they are
written in; a client logs in with its listener's password file and
allow_anonymous, its publishes and subscriptions are checked with its
listener's ACL, and a delivery with the receiving client's listener's ACL.
With false (the default) the same keys are the whole broker's wherever they
are written. Every test here also runs against Mosquitto
(SECBROKER_TEST_BINARY=/usr/sbin/mosquitto) but for secbroker's log lines.
"""
import os
import signal
import time
import unittest

from mqtt5lib import ASSIGNED_CLIENT_ID, Client5, prop
from mqttlib import (REFERENCE, connect, fresh_addr, log_offset, publish, recv_publish,
                     sha6_line, start_broker, subscribe, uid, wait_log_line, write)

CONNACK_IDENTIFIER = 2
# an unknown user or a wrong password: Mosquitto answers 5 (not authorized)
CONNACK_BAD_CREDENTIALS = 5 if REFERENCE else 4
CONNACK_NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80

# Listener A: users alice (and carol), nobody anonymous; listener B: bob, anonymous allowed.
PW_A = sha6_line("alice", "pa") + sha6_line("carol", "pc")
PW_B = sha6_line("bob", "pb")
ACL_A = ("user alice\ntopic readwrite a/#\ntopic read x/#\ntopic deny x/secret\n"
         "user carol\ntopic readwrite c/#\n")
# B would let alice write b/#: a broker that used B's rules for A's clients fails
ACL_B = ("topic readwrite b/#\ntopic readwrite x/#\n"
         "user bob\ntopic readwrite x/#\ntopic readwrite b/#\n"
         "user alice\ntopic readwrite b/#\n")


def start_two(tc, extra_a="", extra_b=""):
    """A broker with per_listener_settings true and listeners A (ports[0]) and B
    (ports[1]), each with its own password file and ACL."""
    a = ("listener {port} 127.0.0.1\npassword_file {dir}/pw_a\nacl_file {dir}/acl_a\n"
         "allow_anonymous false\n" + extra_a)
    b = ("listener {port} 127.0.0.1\npassword_file {dir}/pw_b\nacl_file {dir}/acl_b\n"
         "allow_anonymous true\n" + extra_b)
    # allow_anonymous false before any listener: the default listener's, and no
    # `port` makes one, so it changes nothing (Mosquitto accepts it too)
    return start_broker(tc, "per_listener_settings true\nallow_anonymous false\n", plain=False,
                        listeners=[a, b],
                        files={"pw_a": PW_A, "pw_b": PW_B, "acl_a": ACL_A, "acl_b": ACL_B})


class TestPerListenerTrue(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.b = start_two(cls)
        cls.A, cls.B = cls.b.ports

    def login(self, port, user=None, password=None, rc=0, client_id=None):
        kw = {} if user is None else {"username": user, "password": password.encode()}
        return connect(self, self.b, client_id or uid(), expect_rc=rc, port=port,
                       source=fresh_addr(), **kw)

    def test_password_file_of_the_listener(self):
        """alice is in A's password file only: accepted on A, bad credentials on B;
        bob the other way round."""
        self.login(self.A, "alice", "pa")
        self.login(self.B, "alice", "pa", rc=CONNACK_BAD_CREDENTIALS)
        self.login(self.B, "bob", "pb")
        self.login(self.A, "bob", "pb", rc=CONNACK_BAD_CREDENTIALS)

    def test_allow_anonymous_of_the_listener(self):
        """allow_anonymous false on A, true on B."""
        self.login(self.A, rc=CONNACK_NOT_AUTHORIZED)
        self.login(self.B)

    def test_acl_of_the_listener_for_its_clients(self):
        """alice on A is judged by A's ACL only: she may not subscribe to or publish
        on b/# there, although B's ACL would let alice do both."""
        alice = self.login(self.A, "alice", "pa")
        granted = subscribe(alice, [("a/#", 1), ("b/#", 1)])
        # Mosquitto grants any SUBSCRIBE and filters at delivery; secbroker refuses
        self.assertEqual(granted, [1, 1 if REFERENCE else SUBACK_FAILURE])
        t = uid("b/")
        watcher = self.login(self.B)  # anonymous on B may read b/#
        subscribe(watcher, [(t, 1)])
        publish(alice, t, b"from alice on A", qos=1)
        publish(self.login(self.B), t, b"marker", qos=1)
        self.assertEqual(recv_publish(watcher).payload, b"marker")
        # and what A's ACL grants her works (nothing from b/ reached her)
        t = uid("a/")
        publish(alice, t, b"own", qos=1)
        self.assertEqual(recv_publish(alice).payload, b"own")

    def test_delivery_uses_the_receivers_listener_acl(self):
        """bob on B publishes x/secret and x/open: alice on A gets only x/open (A's
        ACL denies her x/secret), an anonymous subscriber on B gets both (B's ACL)."""
        alice = self.login(self.A, "alice", "pa")
        self.assertEqual(subscribe(alice, [("x/#", 1)]), [1])
        anon = self.login(self.B)
        self.assertEqual(subscribe(anon, [("x/#", 1)]), [1])
        bob = self.login(self.B, "bob", "pb")
        publish(bob, "x/secret", b"s", qos=1)
        publish(bob, "x/open", b"o", qos=1)
        self.assertEqual(recv_publish(alice).topic, "x/open")
        self.assertEqual([recv_publish(anon).topic for _ in range(2)], ["x/secret", "x/open"])

    def test_auto_id_prefix_of_the_listener(self):
        """auto_id_prefix is per listener: an MQTT 5 client with an empty client id is
        told the id the broker made, with A's prefix on A and the default on B."""
        b = start_two(self, extra_a="auto_id_prefix lab-a-\n")
        for port, user, prefix in ((b.ports[0], "alice", b"lab-a-"), (b.ports[1], None, b"auto-")):
            c = Client5(port, "")
            self.addCleanup(c.close)
            kw = {"username": user, "password": b"pa"} if user else {}
            ack = c.connect(**kw)
            self.assertEqual(ack.reason, 0)
            cid = prop(ack.props, ASSIGNED_CLIENT_ID)
            self.assertTrue(cid and cid.startswith(prefix), cid)
            if not REFERENCE:  # Mosquitto appends a UUID with dashes
                self.assertEqual(len(cid), len(prefix) + 32, cid)

    def test_allow_zero_length_clientid_of_the_listener(self):
        """allow_zero_length_clientid is per listener too: B keeps the default (true)."""
        b = start_two(self, extra_a="allow_zero_length_clientid false\n")
        connect(self, b, "", port=b.ports[0], username="alice", password=b"pa",
                expect_rc=CONNACK_IDENTIFIER)
        connect(self, b, "", port=b.ports[1])


class TestPerListenerReload(unittest.TestCase):

    def test_sighup_changes_one_listeners_acl(self):
        """SIGHUP re-reads each listener's files: a new ACL for A takes alice's a/#
        away, B's clients keep theirs."""
        b = start_two(self)
        A, B = b.ports
        alice = connect(self, b, uid(), port=A, username="alice", password=b"pa")
        self.assertEqual(subscribe(alice, [("a/#", 1)]), [1])
        off = log_offset(b)
        write(os.path.join(b.dir, "acl_a"), "user alice\ntopic readwrite other/#\n")
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "reloaded for listener %d" % A, "acl_a", offset=off)
        wait_log_line(self, b, "SIGHUP: configuration", offset=off)
        if REFERENCE:
            time.sleep(1)  # Mosquitto says nothing we could wait for
        alice = connect(self, b, uid(), port=A, username="alice", password=b"pa")
        granted = subscribe(alice, [("a/#", 1), ("other/#", 1)])
        self.assertEqual(granted, [1 if REFERENCE else SUBACK_FAILURE, 1])
        publish(alice, "a/1", b"revoked", qos=1)
        publish(alice, "other/1", b"granted", qos=1)
        self.assertEqual(recv_publish(alice).payload, b"granted")
        anon = connect(self, b, uid(), port=B)
        self.assertEqual(subscribe(anon, [("b/#", 1)]), [1])
        publish(anon, "b/1", b"still", qos=1)
        self.assertEqual(recv_publish(anon).payload, b"still")

    def test_sighup_to_per_listener_with_a_broken_acl_keeps_the_old_security(self):
        """A SIGHUP that turns per_listener_settings on but names a broken
        listener ACL fails and keeps the previous security whole: the running
        broker-wide ACL still applies (before the fix the listener's empty
        set was used: no ACL at all, everything allowed)."""
        if REFERENCE:
            self.skipTest("secbroker's reload log lines")
        b = start_broker(self, "acl_file {dir}/acl\n",
                         files={"acl": "topic readwrite ok/#\n", "broken": "no such keyword\n"})
        c = connect(self, b, uid())
        self.assertEqual(subscribe(c, [("ok/#", 1), ("secret/#", 1)]), [1, SUBACK_FAILURE])
        with open(b.conf_path) as f:
            conf = f.read().replace("acl_file %s/acl\n" % b.dir, "")
        conf = "per_listener_settings true\n" + conf.replace("allow_anonymous true\n", "")
        write(b.conf_path, conf + "acl_file %s/broken\nallow_anonymous true\n" % b.dir)
        off = log_offset(b)
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "reload failed", "broken", offset=off)
        wait_log_line(self, b, "SIGHUP: configuration", offset=off)
        c = connect(self, b, uid())
        self.assertEqual(subscribe(c, [("ok/#", 1), ("secret/#", 1)]), [1, SUBACK_FAILURE])


class TestPerListenerPersistence(unittest.TestCase):

    def test_offline_session_keeps_its_listener_across_a_restart(self):
        """A persistent session remembers the listener it last connected through, in
        the persistence file too: after a restart, while alice (A) is offline, bob (B)
        publishes x/secret and x/open; A's ACL lets her session queue only x/open."""
        b = start_two(self)
        b.stop()
        with open(b.conf_path, "a") as f:
            f.write("persistence true\npersistence_location %s/\n" % b.dir)
        b.start()
        A, B = b.ports
        alice = connect(self, b, "alice-durable", clean=False, port=A, username="alice",
                        password=b"pa")
        self.assertEqual(subscribe(alice, [("x/#", 1)]), [1])
        alice.close()
        b.stop()
        b.start()
        bob = connect(self, b, uid(), port=B, username="bob", password=b"pb")
        publish(bob, "x/secret", b"s", qos=1)
        publish(bob, "x/open", b"o", qos=1)
        alice = connect(self, b, "alice-durable", clean=False, port=A, username="alice",
                        password=b"pa", expect_sp=1)
        self.assertEqual(recv_publish(alice).topic, "x/open")  # x/secret never queued


class TestPerListenerResume(unittest.TestCase):

    @unittest.skipIf(REFERENCE, "Mosquitto resends them (its issue #3553)")
    def test_session_resumed_on_another_listener_is_checked_with_its_acl(self):
        """dave is in both password files; B's ACL lets him read x/#, A's does
        not. His persistent session from B, with x/1 in flight and x/2 queued,
        resumed through A: both are dropped (A's ACL), not sent."""
        pw = sha6_line("dave", "pd")
        a = ("listener {port} 127.0.0.1\npassword_file {dir}/pw\nacl_file {dir}/acl_a\n"
             "allow_anonymous false\n")
        b = ("listener {port} 127.0.0.1\npassword_file {dir}/pw\nacl_file {dir}/acl_b\n"
             "allow_anonymous true\n")
        br = start_broker(self, "per_listener_settings true\nallow_anonymous false\n",
                          plain=False, listeners=[a, b],
                          files={"pw": pw, "acl_a": "user dave\ntopic readwrite m/#\n",
                                 "acl_b": "topic readwrite #\nuser dave\ntopic read x/#\n"})
        A, B = br.ports
        dave = connect(self, br, "pl", clean=False, port=B, username="dave", password=b"pd")
        self.assertEqual(subscribe(dave, [("x/#", 1)]), [1])
        pub = connect(self, br, uid(), port=B)
        publish(pub, "x/1", b"one", qos=1)
        self.assertEqual(recv_publish(dave, ack=False).payload, b"one")
        dave.close()
        publish(pub, "x/2", b"two", qos=1)
        off = log_offset(br)
        dave = connect(self, br, "pl", clean=False, port=A, username="dave", password=b"pd",
                       expect_sp=1)
        self.assertEqual(subscribe(dave, [("m/#", 1)]), [1])
        publish(connect(self, br, uid(), port=B), "m/mark", b"marker", qos=1)
        self.assertEqual(recv_publish(dave).payload, b"marker")
        wait_log_line(self, br, "pl: session resumed by user 'dave' (was 'dave', on another "
                      "listener): 2 queued messages its ACL does not allow were dropped",
                      offset=off)


class TestPerListenerFalse(unittest.TestCase):

    def test_security_key_after_a_listener_is_global(self):
        """per_listener_settings false (the default): allow_anonymous true written in
        the second listener's block applies to the first listener as well; the same
        file with true admits anonymous clients on the second listener only."""
        blocks = ["listener {port} 127.0.0.1", "listener {port} 127.0.0.1\nallow_anonymous true"]
        b = start_broker(self, "per_listener_settings false\nallow_anonymous false\n", plain=False,
                         listeners=blocks)
        for port in b.ports:
            connect(self, b, port=port)
        b = start_broker(self, "per_listener_settings true\nallow_anonymous false\n", plain=False,
                         listeners=blocks)
        connect(self, b, port=b.ports[0], expect_rc=CONNACK_NOT_AUTHORIZED)
        connect(self, b, port=b.ports[1])


if __name__ == "__main__":
    unittest.main()
