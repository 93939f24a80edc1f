"""Authentication and authorization, end to end against build/secbroker:
password files (made by Debian's mosquitto_passwd, a $6$ line computed here,
and build/secpasswd), CONNACK 4/5 with the reason in the log and never a
password, the failed-login slow-down, Mosquitto ACL files (topic, user,
pattern with %c and %u, deny wins, SUBACK 0x80, refused PUBLISH still
acknowledged), wills checked at CONNECT, SIGHUP reload, and startup errors.

Failed logins slow down later CONNECTs from the same address, so each failed
login here comes from its own 127.0.0.x source address (mqttlib.fresh_addr)
and successful ones from 127.0.0.1.

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from mqttlib import (HELD_WAIT, SECBROKER, SECPASSWD, WAIT, Client, connect, connect_packet,
                     free_port, fresh_addr, log_lines, log_offset, make_broker, marker,
                     mosq_passwd, need, open_connect, publish, recv_publish, secpasswd, sha6_line,
                     start_broker, start_class_broker, subscribe, uid, wait_log_line, wait_port,
                     write)

FAIL = 0x80

# Distinctive passwords: none of them may ever appear in a log.
PW = {
    "alice": "Alice-Pw-7f3c91",
    "bob": "Bob-Pw-26d1e4",
    "sixer": "Sixer-Pw-b83a02",
    "reader": "Reader-Pw-4417ac",
    "admin": "Admin-Pw-90ce5b",
    "mallory": "Mallory-Pw-3e8d17",
}
WRONG = "Wrong-Guess-5a2f77"


def make_pwfile(path, users=("alice", "bob")):
    """$7$ lines by mosquitto_passwd (-c for the first user, -b to add)."""
    for i, u in enumerate(users):
        mosq_passwd(path, u, PW[u], create=(i == 0))


def require_tools(_tc=None):
    """Fail (not skip) when the broker or mosquitto_passwd is missing."""
    if not os.access(SECBROKER, os.X_OK):
        raise AssertionError("%s not built (make build/secbroker)" % SECBROKER)
    need("mosquitto_passwd")


class AuthCase(unittest.TestCase):
    def assert_no_secrets(self, broker, extra=()):
        log = broker.output()
        for secret in list(PW.values()) + [WRONG] + list(extra):
            self.assertNotIn(secret, log, "a password appears in the broker log")


# ---- passwords ----------------------------------------------------------------

class TestPasswordFile(AuthCase):
    """One broker: allow_anonymous false; alice and bob as $7$ lines written by
    mosquitto_passwd, sixer as a $6$ line written here."""

    @classmethod
    def setUpClass(cls):
        require_tools(cls)

        def pwfile(path):
            make_pwfile(path, ("alice", "bob"))
            with open(path, "a") as f:
                f.write(sha6_line("sixer", PW["sixer"]))
                f.write(sha6_line("empty", ""))

        cls.b = start_class_broker(cls, "allow_anonymous false\npassword_file {dir}/pw\n",
                                   files={"pw": pwfile})

    def test_pwfile_has_both_formats(self):
        with open(os.path.join(self.b.dir, "pw")) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^alice:\$7\$\d+\$")
        self.assertRegex(text, r"(?m)^sixer:\$6\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")

    def test_right_credentials_7(self):
        for user in ("alice", "bob"):
            c = connect(self, self.b, username=user, password=PW[user])
            wait_log_line(self, self.b, "New client connected", c.client_id,
                          "username '%s'" % user)
        self.assert_no_secrets(self.b)

    def test_right_credentials_6(self):
        c = connect(self, self.b, username="sixer", password=PW["sixer"])
        wait_log_line(self, self.b, "New client connected", c.client_id, "username 'sixer'")
        self.assert_no_secrets(self.b)

    def refused(self, rc, reason, **kw):
        """CONNECT from a fresh address; expect CONNACK rc and a log line for this
        client saying "CONNECT refused (CONNACK rc, words): reason"."""
        src = fresh_addr()
        c = connect(self, self.b, expect_rc=rc, source=src, **kw)
        words = {4: "bad user name or password", 5: "not authorized"}[rc]
        line = wait_log_line(self, self.b, c.client_id, "(%s:" % src,
                             "CONNECT refused (CONNACK %d, %s): " % (rc, words))
        self.assertIn(reason, line)
        return src, line

    def test_wrong_password_7(self):
        src, _ = self.refused(4, "wrong username or password for user 'alice'",
                              username="alice", password=WRONG)
        wait_log_line(self, self.b, src + ":", "login as 'alice' failed: wrong password")
        self.assert_no_secrets(self.b)

    def test_wrong_password_6(self):
        src, _ = self.refused(4, "wrong username or password for user 'sixer'",
                              username="sixer", password=PW["alice"])
        wait_log_line(self, self.b, src + ":", "login as 'sixer' failed: wrong password")
        self.assert_no_secrets(self.b)

    def test_right_password_of_another_user(self):
        src, _ = self.refused(4, "wrong username or password for user 'bob'",
                              username="bob", password=PW["alice"])
        wait_log_line(self, self.b, src + ":", "login as 'bob' failed: wrong password")
        self.assert_no_secrets(self.b)

    def test_unknown_user(self):
        src, _ = self.refused(4, "wrong username or password for user 'mallory'",
                              username="mallory", password=PW["alice"])
        wait_log_line(self, self.b, src + ":", "login as 'mallory' failed: unknown user")
        self.assert_no_secrets(self.b)

    def test_username_without_password(self):
        # a known user name with no password flag is a failed login, not anonymous
        self.refused(4, "for user 'alice'", username="alice")

    def test_empty_password(self):
        self.refused(4, "for user 'alice'", username="alice", password="")

    def test_empty_password_entry_needs_password_flag(self):
        # "empty" has the empty string as password ($6$ line, see setUpClass). Sending
        # it works; sending no password at all must not (acl/pwfile.c: "a client that
        # sent no password never matches, even an empty-password entry").
        connect(self, self.b, username="empty", password="")
        self.refused(4, "for user 'empty'", username="empty")

    def test_anonymous_refused(self):
        src, _ = self.refused(5, "anonymous clients are not allowed")
        fails = [l for l in self.b.log().splitlines() if src + ":" in l and "login as" in l]
        self.assertEqual(fails, [], "anonymous refusal logged as a failed login")


class TestAnonymousAllowed(AuthCase):
    def test_anonymous_allowed_with_password_file(self):
        require_tools(self)
        b = start_broker(self, "allow_anonymous true\npassword_file {dir}/pw\n",
                         files={"pw": make_pwfile})
        c = connect(self, b)
        wait_log_line(self, b, "New client connected", c.client_id)
        connect(self, b, username="alice", password=PW["alice"])
        # a username still has to be right when anonymous clients are allowed
        connect(self, b, expect_rc=4, source=fresh_addr(), username="alice", password=WRONG)
        connect(self, b, expect_rc=4, source=fresh_addr(), username="mallory", password=WRONG)
        self.assert_no_secrets(b)


# ---- secpasswd ------------------------------------------------------------------

class TestSecpasswd(AuthCase):
    def setUp(self):
        require_tools(self)
        self.assertTrue(os.access(SECPASSWD, os.X_OK), "%s not built" % SECPASSWD)
        self.b = make_broker("allow_anonymous false\npassword_file {dir}/pw\n")
        self.addCleanup(self.b.cleanup)
        self.pw = os.path.join(self.b.dir, "pw")

    def test_create_add_delete(self):
        r = secpasswd("-c", "-b", self.pw, "alice", PW["alice"])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = secpasswd("-b", self.pw, "bob", PW["bob"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.pw) as f:
            text = f.read()
        self.assertNotIn(PW["alice"], text)
        self.assertRegex(text, r"(?m)^alice:\$7\$")
        self.assertRegex(text, r"(?m)^bob:\$7\$")
        self.b.start()
        connect(self, self.b, username="alice", password=PW["alice"])
        connect(self, self.b, username="bob", password=PW["bob"])

        r = secpasswd("-D", self.pw, "bob")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.pw) as f:
            self.assertNotRegex(f.read(), r"(?m)^bob:")
        off = len(self.b.log())
        self.b.signal(signal.SIGHUP)
        wait_log_line(self, self.b, "reloaded", offset=off)
        connect(self, self.b, expect_rc=4, source=fresh_addr(), username="bob",
                password=PW["bob"])
        wait_log_line(self, self.b, "login as 'bob' failed: unknown user", offset=off)
        connect(self, self.b, username="alice", password=PW["alice"])
        self.assert_no_secrets(self.b)

    def test_colon_in_user_name_refused(self):
        r = secpasswd("-c", "-b", self.pw, "alice", PW["alice"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.pw) as f:
            before = f.read()
        r = secpasswd("-b", self.pw, "ev:il", "x")
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip(), "no reason on stderr")
        with open(self.pw) as f:
            self.assertEqual(f.read(), before, "file changed by a refused user name")
        r = secpasswd("-c", "-b", os.path.join(self.b.dir, "other"), "a:b", "x")
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.b.dir, "other")),
                         "-c with a refused user name created the file")


# ---- failed-login slow-down ----------------------------------------------------------

class TestSlowdown(AuthCase):
    def test_held_logins_answered_and_others_served(self):
        require_tools(self)
        b = start_broker(self, "allow_anonymous true\npassword_file {dir}/pw\n",
                         files={"pw": make_pwfile})
        # already connected clients, from an address with no failures
        sub = connect(self, b)
        self.assertEqual(subscribe(sub, [("slow/t", 1)]), [1])
        pub = connect(self, b)

        x = fresh_addr()
        # 1st failure: answered at once (no earlier failures)
        connect(self, b, expect_rc=4, source=x, username="alice", password=WRONG)

        # 2nd attempt from the same address: held, still answered with CONNACK 4
        off = len(b.log())
        c2, rc = open_connect(self, b, source=x, timeout=HELD_WAIT, username="alice",
                              password=WRONG)
        self.assertEqual(rc, 4)
        self.assertTrue(c2.closed())
        wait_log_line(self, b, x + ":", "CONNECT held for", offset=off)

        # 3rd attempt: while it is held, the broker keeps serving the others
        off = len(b.log())
        c3 = Client(b.port, source=x)
        self.addCleanup(c3.close)
        c3.send(connect_packet(client_id=uid(), username="alice", password=WRONG))
        wait_log_line(self, b, x + ":", "CONNECT held for", offset=off)
        publish(pub, "slow/t", b"while-held", qos=1)
        m = recv_publish(sub)
        self.assertEqual(m.payload, b"while-held")
        self.assertFalse(c3.has_data(),
                         "the held CONNECT was answered before a message between two other "
                         "clients got through (the hold should be about 1 s)")
        first, body = c3.wait_for(2, timeout=HELD_WAIT)
        self.assertEqual(body[1], 4)

        # the right password from a slowed address still gets in (after its hold),
        # and another address is not slowed meanwhile
        off = len(b.log())
        c4 = Client(b.port, source=x)
        self.addCleanup(c4.close)
        c4.send(connect_packet(client_id=uid(), username="alice", password=PW["alice"]))
        wait_log_line(self, b, x + ":", "CONNECT held for", offset=off)
        y = fresh_addr()
        connect(self, b, source=y, username="bob", password=PW["bob"])
        first, body = c4.wait_for(2, timeout=HELD_WAIT)
        self.assertEqual(body[1], 0, "right password after failed logins refused")
        held_y = [l for l in b.log().splitlines() if y + ":" in l and "held" in l]
        self.assertEqual(held_y, [], "a different address was slowed down")
        publish(pub, "slow/t", b"after", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"after")
        self.assert_no_secrets(b)


# ---- ACL ------------------------------------------------------------------------

ACL = """\
# anonymous clients
topic read public/#

user alice
topic readwrite sensors/#
topic deny sensors/secret

user reader
topic read sensors/#

user admin
topic readwrite #

pattern readwrite devices/%c/#
pattern read users/%u/inbox
"""

ACL_USERS = ("alice", "bob", "reader", "admin")


class TestAcl(AuthCase):
    """One broker with ACL above; anonymous clients allowed."""

    @classmethod
    def setUpClass(cls):
        require_tools(cls)
        cls.b = start_class_broker(cls, "allow_anonymous true\npassword_file {dir}/pw\n"
                                   "acl_file {dir}/acl\n",
                                   files={"pw": lambda p: make_pwfile(p, ACL_USERS), "acl": ACL})

    def login(self, user, client_id=None, **kw):
        if user is None:
            return connect(self, self.b, client_id=client_id, **kw)
        return connect(self, self.b, client_id=client_id, username=user, password=PW[user], **kw)

    def admin_observer(self, filt="#"):
        adm = self.login("admin")
        self.assertEqual(subscribe(adm, [(filt, 1)]), [1])
        return adm

    def off(self):
        return len(self.b.log())

    def test_suback_mixed(self):
        alice = self.login("alice")
        cid = alice.client_id
        filters = [("sensors/#", 1), ("sensors/secret", 0), ("public/#", 2), ("other/#", 1),
                   ("devices/%s/#" % cid, 2), ("users/alice/inbox", 1), ("#", 0),
                   ("sensors/+", 2), ("users/bob/inbox", 1)]
        off = self.off()
        got = subscribe(alice, filters)
        self.assertEqual(got, [1, FAIL, FAIL, FAIL, 2, 1, FAIL, 2, FAIL],
                         "SUBACK for %s" % filters)
        for f in ("sensors/secret", "public/#", "other/#", "#", "users/bob/inbox"):
            wait_log_line(self, self.b, "Denied SUBSCRIBE from %s (user alice) to '%s'" % (cid, f),
                          "not allowed by the ACL", offset=off)
        # granted subscriptions are live, refused ones are not
        adm = self.login("admin")
        publish(adm, "other/x", b"not-subscribed", qos=1)
        publish(adm, "users/alice/inbox", b"inbox", qos=1)
        m = recv_publish(alice)
        self.assertEqual((m.topic, m.payload), ("users/alice/inbox", b"inbox"))
        marker(self, [alice], adm, "sensors/m")

    def test_hash_rule_does_not_cover_dollar_topics(self):
        # [MQTT-4.7.2-1]: a leading wildcard never matches a '$' topic, in rules too
        adm = self.login("admin")
        self.assertEqual(subscribe(adm, [("$SYS/#", 0), ("#", 0)]), [FAIL, 0])

    def test_anonymous_rules(self):
        anon = self.login(None)
        cid = anon.client_id
        self.assertEqual(subscribe(anon, [("public/#", 1), ("sensors/#", 1),
                                          ("users/%s/inbox" % cid, 1)]), [1, FAIL, FAIL])
        adm = self.admin_observer()
        # read-only for anonymous: refused, acknowledged, logged, not delivered
        off = self.off()
        publish(anon, "public/news", b"anon-write", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user anonymous) to 'public/news'" % cid,
                      "not allowed by the ACL", offset=off)
        # patterns apply to anonymous clients too (%c), so anon can send a marker
        marker(self, [adm], anon, "devices/%s/m" % cid)
        publish(adm, "public/news", b"for-all", qos=1)
        self.assertEqual(recv_publish(anon).payload, b"for-all")
        self.assertEqual(recv_publish(adm).payload, b"for-all")

    def test_denied_publish_qos1_acked_not_delivered(self):
        adm = self.admin_observer()
        alice = self.login("alice")
        off = self.off()
        publish(alice, "other/x", b"denied-q1", qos=1)  # PUBACK checked by publish()
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to 'other/x'"
                      % alice.client_id, "not allowed by the ACL", offset=off)
        marker(self, [adm], alice, "sensors/m")
        self.assertTrue(self.b.alive())

    def test_denied_publish_qos0_dropped(self):
        adm = self.admin_observer()
        alice = self.login("alice")
        off = self.off()
        publish(alice, "other/q0", b"denied-q0", qos=0)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to 'other/q0'"
                      % alice.client_id, offset=off)
        marker(self, [adm], alice, "sensors/m")

    def test_denied_publish_qos2_completes(self):
        adm = self.admin_observer()
        alice = self.login("alice")
        off = self.off()
        publish(alice, "other/y", b"denied-q2", qos=2)  # PUBREC, PUBREL, PUBCOMP
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to 'other/y'"
                      % alice.client_id, offset=off)
        marker(self, [adm], alice, "sensors/m", qos=2)
        # the packet id is free again: an allowed QoS 2 with the same id flows
        alice.next_pid = 1
        publish(alice, "sensors/q2", b"allowed-q2", qos=2)
        self.assertEqual(recv_publish(adm).payload, b"allowed-q2")

    def test_deny_wins_and_read_checked_per_subscriber(self):
        adm = self.admin_observer()
        alice = self.login("alice")
        reader = self.login("reader")
        self.assertEqual(subscribe(alice, [("sensors/#", 1), ("sensors/secret", 1)]), [1, FAIL])
        self.assertEqual(subscribe(reader, [("sensors/#", 1)]), [1])
        # alice may not write the denied topic though sensors/# is granted
        off = self.off()
        publish(alice, "sensors/secret", b"from-alice", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to 'sensors/secret'"
                      % alice.client_id, offset=off)
        marker(self, [adm, reader, alice], alice, "sensors/m")
        # both subscriptions to sensors/# were granted; only reader may read this
        publish(adm, "sensors/secret", b"top-secret", qos=1)
        m = recv_publish(reader)
        self.assertEqual((m.topic, m.payload), ("sensors/secret", b"top-secret"))
        self.assertEqual(recv_publish(adm).payload, b"top-secret")
        marker(self, [alice], adm, "sensors/m")
        # reader may read but not write
        off = self.off()
        publish(reader, "sensors/r", b"reader-write", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user reader) to 'sensors/r'"
                      % reader.client_id, offset=off)

    def test_pattern_client_id(self):
        adm = self.admin_observer()
        dev1 = self.login("bob", client_id="dev1")  # bob has no user section: patterns only
        self.assertEqual(subscribe(dev1, [("devices/dev1/#", 1), ("devices/dev2/#", 1),
                                          ("devices/+/x", 1), ("devices/#", 1)]),
                         [1, FAIL, FAIL, FAIL])
        publish(dev1, "devices/dev1/x", b"own", qos=1)
        self.assertEqual(recv_publish(adm).topic, "devices/dev1/x")
        self.assertEqual(recv_publish(dev1).payload, b"own")
        off = self.off()
        publish(dev1, "devices/dev2/x", b"foreign", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from dev1 (user bob) to 'devices/dev2/x'",
                      offset=off)
        marker(self, [adm, dev1], dev1, "devices/dev1/m")
        # the same user with another client id gets that id's tree instead
        dev2 = self.login("bob", client_id="dev2")
        self.assertEqual(subscribe(dev2, [("devices/dev1/#", 1), ("devices/dev2/#", 1)]),
                         [FAIL, 1])

    def test_pattern_username(self):
        adm = self.admin_observer()
        bob = self.login("bob")
        self.assertEqual(subscribe(bob, [("users/bob/inbox", 2), ("users/alice/inbox", 1),
                                         ("users/+/inbox", 1), ("users/#", 1)]),
                         [2, FAIL, FAIL, FAIL])
        publish(adm, "users/alice/inbox", b"for-alice", qos=1)
        publish(adm, "users/bob/inbox", b"for-bob", qos=1)
        m = recv_publish(bob)
        self.assertEqual((m.topic, m.payload), ("users/bob/inbox", b"for-bob"))
        self.assertEqual(recv_publish(adm).payload, b"for-alice")
        self.assertEqual(recv_publish(adm).payload, b"for-bob")
        # read-only: bob's own publish there is refused
        off = self.off()
        publish(bob, "users/bob/inbox", b"bob-writes", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user bob) to 'users/bob/inbox'"
                      % bob.client_id, offset=off)
        marker(self, [adm], bob, "devices/%s/m" % bob.client_id)
        # %u never matches an anonymous client, whatever its client id
        anon = self.login(None, client_id="bob")
        self.assertEqual(subscribe(anon, [("users/bob/inbox", 1)]), [FAIL])

    def test_wildcard_client_id_never_matches_patterns(self):
        adm = self.admin_observer()
        for cid in ("+", "#"):
            with self.subTest(client_id=cid):
                c = self.login("alice", client_id=cid)
                self.assertEqual(subscribe(c, [("devices/+/#", 1), ("devices/#", 1),
                                               ("devices/+/x", 1), ("sensors/#", 1)]),
                                 [FAIL, FAIL, FAIL, 1])
                off = self.off()
                publish(c, "devices/dev2/x", b"via-wildcard-id", qos=1)
                wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to "
                              "'devices/dev2/x'" % cid, offset=off)
                marker(self, [adm, c], c, "sensors/m")
                c.close()

    def test_will_must_be_writable(self):
        adm = self.admin_observer()
        for user, topic, rc in (("alice", "other/will", 5), ("alice", "sensors/secret", 5),
                                (None, "public/will", 5), ("alice", "sensors/will", 0)):
            with self.subTest(user=user, will=topic):
                off = self.off()
                c = self.login(user, will=(topic, b"gone", 1, False), expect_rc=rc)
                if rc:
                    wait_log_line(self, self.b, "CONNECT refused (CONNACK 5",
                                  "will topic '%s' is not allowed for writing" % topic,
                                  offset=off)
        # the accepted will is published when alice's connection drops
        c.close()
        m = recv_publish(adm)
        self.assertEqual((m.topic, m.payload), ("sensors/will", b"gone"))


class TestAclWildcardUsername(AuthCase):
    """A user name '+' or '#' must not turn "pattern read users/%u/inbox" into a
    wildcard. Such names cannot be in a password file ('#' starts a comment
    line), so this broker has an ACL but no password file: with
    allow_anonymous true, a user name is then taken as given."""

    def test_wildcard_username_never_matches_patterns(self):
        require_tools()
        b = start_broker(self, "allow_anonymous true\nacl_file {dir}/acl\n", files={"acl": ACL})
        adm = connect(self, b, username="admin")
        self.assertEqual(subscribe(adm, [("#", 1)]), [1])
        bob = connect(self, b, username="bob")
        self.assertEqual(subscribe(bob, [("users/bob/inbox", 1)]), [1])  # the pattern works
        for user in ("+", "#"):
            with self.subTest(username=user):
                c = connect(self, b, username=user)
                self.assertEqual(subscribe(c, [("users/+/inbox", 1), ("users/#", 1),
                                               ("users/bob/inbox", 1),
                                               ("devices/%s/#" % c.client_id, 1)]),
                                 [FAIL, FAIL, FAIL, 1])
                # nothing on users/... reaches c; the %c pattern still works for it
                publish(adm, "users/bob/inbox", b"for-bob-only", qos=1)
                self.assertEqual(recv_publish(adm).payload, b"for-bob-only")
                self.assertEqual(recv_publish(bob).payload, b"for-bob-only")
                marker(self, [c, adm], c, "devices/%s/m" % c.client_id)
                c.close()


class TestAclRetained(AuthCase):
    def test_retained_messages_are_read_checked(self):
        require_tools(self)
        b = start_broker(self, "allow_anonymous false\npassword_file {dir}/pw\nacl_file {dir}/acl\n",
                         files={"pw": lambda p: make_pwfile(p, ACL_USERS), "acl": ACL})
        adm = connect(self, b, username="admin", password=PW["admin"])
        publish(adm, "sensors/secret", b"retained-secret", qos=1, retain=True)
        publish(adm, "sensors/open", b"retained-open", qos=1, retain=True)
        for user, want in (("alice", {"sensors/open"}), ("reader", {"sensors/open", "sensors/secret"})):
            with self.subTest(user=user):
                c = connect(self, b, username=user, password=PW[user])
                self.assertEqual(subscribe(c, [("sensors/#", 1)]), [1])
                mark = uid("mark").encode()
                publish(adm, "sensors/mark", mark, qos=1)
                got = set()
                while True:
                    m = recv_publish(c)
                    if m.payload == mark:
                        break
                    self.assertTrue(m.retain, m)
                    got.add(m.topic)
                self.assertEqual(got, want)


# ---- a session resumed by another user ----------------------------------------------

RESUME_ACL = """\
user alice
topic read secret/#
topic read pub/#

user mallory
topic read pub/#

user admin
topic readwrite #
"""


class TestSessionResumedByAnotherUser(AuthCase):
    """MQTT names a session by client id only: mallory connecting with alice's
    client id and clean session 0 resumes her session (session present 1).
    What it queued or has in flight was allowed for alice, so it is checked
    again with mallory's ACL and what he may not read is dropped from the
    session, for good: alice does not get it either when she comes back
    (Mosquitto #3553; Mosquitto loses them too). The same user resuming
    gets everything."""

    def start(self, conf=""):
        self.b = start_broker(self, "allow_anonymous false\npassword_file {dir}/pw\n"
                              "acl_file {dir}/acl\n" + conf,
                              files={"pw": lambda p: make_pwfile(p, ("alice", "mallory",
                                                                     "admin")),
                                     "acl": RESUME_ACL})

    def login(self, user, client_id=None, **kw):
        return connect(self, self.b, client_id=client_id, username=user, password=PW[user],
                       keepalive=0, **kw)

    def alice_leaves_three_behind(self, cid):
        """alice's session cid gets secret/0 in flight (not acknowledged) and
        secret/1, secret/2 queued while she is away."""
        alice = self.login("alice", cid, clean=False)
        self.assertEqual(subscribe(alice, [("secret/#", 1), ("pub/#", 1)]), [1, 1])
        adm = self.login("admin")
        publish(adm, "secret/x", b"secret-0", qos=1)
        self.assertEqual(recv_publish(alice, ack=False).payload, b"secret-0")
        alice.close()
        for i in (1, 2):
            publish(adm, "secret/x", b"secret-%d" % i, qos=1)
        return adm

    def expect_nothing_before_marker(self, c, adm):
        # a filter new to the session: journaled, so with persistence the
        # SUBACK leaves after a commit that holds what happened before it
        self.assertEqual(subscribe(c, [("pub/m", 1)]), [1])
        marker(self, c, adm, "pub/m")

    def test_other_user_gets_none_and_they_are_gone(self):
        self.start()
        adm = self.alice_leaves_three_behind("gw")
        off = log_offset(self.b)
        mallory = self.login("mallory", "gw", clean=False, expect_sp=1)
        self.expect_nothing_before_marker(mallory, adm)
        wait_log_line(self, self.b, "gw: session resumed by user 'mallory' (was 'alice'): 3 "
                      "queued messages its ACL does not allow were dropped", offset=off)
        mallory.close()
        alice = self.login("alice", "gw", clean=False, expect_sp=1)
        self.expect_nothing_before_marker(alice, adm)
        # her subscription is still there: new messages reach her again
        publish(adm, "secret/x", b"after", qos=1)
        self.assertEqual(recv_publish(alice).payload, b"after")

    def test_same_user_resuming_gets_everything(self):
        self.start()
        adm = self.alice_leaves_three_behind("gw")
        off = log_offset(self.b)
        alice = self.login("alice", "gw", clean=False, expect_sp=1)
        got = [recv_publish(alice).payload for _ in range(3)]
        self.assertEqual(got, [b"secret-0", b"secret-1", b"secret-2"])
        self.expect_nothing_before_marker(alice, adm)
        self.assertNotIn("session resumed by user", "\n".join(log_lines(self.b, off)))

    def test_drops_are_durable(self):
        """persistence on: the drops are journaled, so neither a restart
        before mallory's resume nor one after brings them back."""
        self.start("persistence true\npersistence_location {dir}\n")
        self.alice_leaves_three_behind("gw")
        self.b.stop()
        self.b.start()
        mallory = self.login("mallory", "gw", clean=False, expect_sp=1)
        adm = self.login("admin")
        self.expect_nothing_before_marker(mallory, adm)
        # the marker's PUBACK is committed with (or before) this SUBSCRIBE's commit
        self.assertEqual(subscribe(mallory, [("pub/z", 1)]), [1])
        mallory.close()
        self.b.proc.kill()
        self.b.proc.wait()
        self.b.stop()  # closes its output file
        self.b.start()
        alice = self.login("alice", "gw", clean=False, expect_sp=1)
        adm = self.login("admin")
        self.expect_nothing_before_marker(alice, adm)


# ---- reload ------------------------------------------------------------------------

RELOAD_ACL = """\
user alice
topic readwrite sensors/#
"""


class TestReload(AuthCase):
    def setUp(self):
        require_tools(self)
        self.b = start_broker(self, "allow_anonymous false\npassword_file {dir}/pw\n"
                              "acl_file {dir}/acl\n",
                              files={"pw": lambda p: make_pwfile(p, ("alice",)),
                                     "acl": RELOAD_ACL})
        self.pw = os.path.join(self.b.dir, "pw")
        self.acl = os.path.join(self.b.dir, "acl")
        self.alice = connect(self, self.b, username="alice", password=PW["alice"])
        self.assertEqual(subscribe(self.alice, [("sensors/#", 1)]), [1])

    def reload(self, expect="reloaded"):
        off = len(self.b.log())
        self.b.signal(signal.SIGHUP)
        return wait_log_line(self, self.b, expect, offset=off)

    def alice_still_served(self, payload):
        other = connect(self, self.b, username="alice", password=PW["alice"])
        publish(other, "sensors/x", payload, qos=1)
        m = recv_publish(self.alice)
        self.assertEqual((m.topic, m.payload), ("sensors/x", payload))
        return other

    def test_reload_adds_user_without_dropping_connections(self):
        connect(self, self.b, expect_rc=4, source=fresh_addr(), username="bob",
                password=PW["bob"])
        mosq_passwd(self.pw, "bob", PW["bob"])
        write(self.acl, RELOAD_ACL + "user bob\ntopic write sensors/bob\n")
        line = self.reload()
        self.assertIn(self.pw, line)
        self.assertIn(self.acl, line)
        bob = connect(self, self.b, source=fresh_addr(), username="bob", password=PW["bob"])
        publish(bob, "sensors/bob", b"hello-from-bob", qos=1)
        m = recv_publish(self.alice)  # the connection from before the reload
        self.assertEqual((m.topic, m.payload), ("sensors/bob", b"hello-from-bob"))
        self.alice_still_served(b"after-reload")
        closed = [l for l in self.b.log().splitlines()
                  if self.alice.client_id in l and "closed" in l]
        self.assertEqual(closed, [])
        self.assert_no_secrets(self.b)

    def test_reload_applies_new_acl_to_existing_subscriptions(self):
        write(self.acl, "user alice\ntopic readwrite sensors/open\ntopic write sensors/closed\n")
        self.reload()
        other = connect(self, self.b, username="alice", password=PW["alice"])
        publish(other, "sensors/closed", b"no-longer-readable", qos=1)
        publish(other, "sensors/open", b"still-readable", qos=1)
        m = recv_publish(self.alice)
        self.assertEqual((m.topic, m.payload), ("sensors/open", b"still-readable"))
        # and a new SUBSCRIBE is checked against the new rules
        self.assertEqual(subscribe(self.alice, [("sensors/#", 1), ("sensors/open", 1)]),
                         [FAIL, 1])

    def test_broken_acl_keeps_old_rules(self):
        write(self.acl, "user alice\ntopic readwrite sensors/#\ntopic bogus other/#\n"
                        "topic readwrite other/#\n")
        line = self.reload("reload failed")
        self.assertIn(self.acl + ":3:", line)
        other = self.alice_still_served(b"old-rules")
        # the broken file's other grants were not applied
        off = len(self.b.log())
        publish(other, "other/x", b"still-denied", qos=1)
        wait_log_line(self, self.b, "Denied PUBLISH from %s (user alice) to 'other/x'"
                      % other.client_id, offset=off)
        # fixing the file and reloading again applies it
        write(self.acl, "user alice\ntopic readwrite sensors/#\ntopic readwrite other/#\n")
        self.reload()
        self.assertEqual(subscribe(self.alice, [("other/#", 1)]), [1])
        publish(other, "other/x", b"now-allowed", qos=1)
        self.assertEqual(recv_publish(self.alice).payload, b"now-allowed")

    def test_broken_password_file_keeps_old_files(self):
        # a valid ACL change together with a broken password file: neither is applied
        write(self.acl, "user alice\ntopic readwrite other/#\n")
        with open(self.pw, "a") as f:
            f.write("# comment\nmallory:plaintext-password\n")
        line = self.reload("reload failed")
        self.assertIn(self.pw + ":3:", line)
        self.assertNotIn("plaintext-password", self.b.log())
        self.alice_still_served(b"old-password-file")
        connect(self, self.b, expect_rc=4, source=fresh_addr(), username="mallory",
                password="plaintext-password")
        self.assertEqual(subscribe(self.alice, [("other/#", 1)]), [FAIL])

    def test_missing_acl_on_reload_keeps_old_rules(self):
        os.unlink(self.acl)
        line = self.reload("reload failed")
        self.assertIn(self.acl, line)
        self.alice_still_served(b"acl-gone")


# ---- startup ---------------------------------------------------------------------------

class TestStartupErrors(AuthCase):
    def setUp(self):
        require_tools(self)
        self.dir = tempfile.mkdtemp(prefix="secbroker-auth-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.pw = os.path.join(self.dir, "pw")
        self.acl = os.path.join(self.dir, "acl")
        make_pwfile(self.pw, ("alice", "bob"))
        write(self.acl, ACL)

    def run_broker(self, pw=None, acl=None):
        conf = os.path.join(self.dir, "broker.conf")
        lines = ["allow_anonymous false", "log_dest stderr",
                 "listener %d 127.0.0.1" % free_port()]
        if pw:
            lines.insert(0, "password_file " + pw)
        if acl:
            lines.insert(0, "acl_file " + acl)
        write(conf, "\n".join(lines) + "\n")
        p = subprocess.Popen([SECBROKER, "-c", conf], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.dir)
        try:
            out, err = p.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("broker kept running with a bad file; stderr:\n" + err)
        self.assertNotEqual(p.returncode, 0, "broker exited 0; stderr:\n" + err)
        return err

    def test_missing_password_file(self):
        missing = os.path.join(self.dir, "no-such-pw")
        err = self.run_broker(pw=missing, acl=self.acl)
        self.assertRegex(err, re.escape(missing) + r": \S")
        self.assertIn("No such file", err)

    def test_malformed_password_line(self):
        with open(self.pw, "a") as f:
            f.write("carol:clear-text-secret\n")  # line 3
        err = self.run_broker(pw=self.pw)
        self.assertRegex(err, re.escape(self.pw) + r":3: \S")
        self.assertNotIn("clear-text-secret", err)

    def test_malformed_hash_6(self):
        with open(self.pw, "a") as f:
            f.write("# six\n" + sha6_line("carol", "x").replace("$6$", "$6$!!"))  # line 4
        err = self.run_broker(pw=self.pw)
        self.assertRegex(err, re.escape(self.pw) + r":4: \S")

    def test_missing_acl_file(self):
        missing = os.path.join(self.dir, "no-such-acl")
        err = self.run_broker(pw=self.pw, acl=missing)
        self.assertRegex(err, re.escape(missing) + r": \S")
        self.assertIn("No such file", err)

    def test_malformed_acl_line(self):
        write(self.acl, "topic read public/#\n\nuser alice\ntopic bogus sensors/#\n")
        err = self.run_broker(pw=self.pw, acl=self.acl)
        self.assertRegex(err, re.escape(self.acl) + r":4: \S")

    def test_bad_acl_filter(self):
        write(self.acl, "user alice\ntopic read sensors/#/x\n")
        err = self.run_broker(pw=self.pw, acl=self.acl)
        self.assertRegex(err, re.escape(self.acl) + r":2: \S")

    def test_good_files_start(self):
        # the fixtures themselves are fine: the same files start a broker
        conf = os.path.join(self.dir, "ok.conf")
        port = free_port()
        write(conf, "password_file %s\nacl_file %s\nlistener %d 127.0.0.1\n"
              % (self.pw, self.acl, port))
        p = subprocess.Popen([SECBROKER, "-c", conf], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_port(port), "broker with good files did not listen")
        finally:
            p.terminate()
            p.wait(timeout=WAIT)


if __name__ == "__main__":
    unittest.main()
