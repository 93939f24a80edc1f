"""Bridges (issue 17): secbroker's `connection` blocks against Debian's
mosquitto as the remote, secbroker against secbroker, Mosquitto bridging into
secbroker, and a chain of three secbrokers.

Every broker runs on free loopback ports and is stopped by PID. Waiting is
done on log lines (secbroker's "Bridge NAME connected", Mosquitto's "Sending
SUBACK to ID") and on packets, never on sleeps; "nothing else arrived" is
proved with marker messages (mqttlib.marker's argument: one connection's
packets are handled in order).
"""
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest

from mqttlib import (MOSQUITTO, WAIT, RawClient, StubBroker, assert_closed, connect, free_port, log_offset, log_tail, make_broker, need, publish,
                     recv_publish, start_broker, subscribe, uid, wait_log_line)
from tlslib import make_certs, tls_block


def bridge_conf(port, topics, name="b1", host="127.0.0.1", rcid=None, extra=()):
    """A `connection` block: restart_timeout 1 (constant) keeps the tests short."""
    lines = ["connection %s" % name, "address %s:%d" % (host, port),
             "remote_clientid %s" % (rcid or "rc-" + name), "restart_timeout 1"]
    lines += ["topic " + t for t in topics] + list(extra)
    return "\n".join(lines) + "\n"


def wait_remote_suback(remote, rcid, offset=0):
    """The remote answered the bridge's SUBSCRIBE (mosquitto or secbroker)."""
    if os.path.basename(remote.binary) == "mosquitto":
        deadline = time.time() + WAIT
        while "Sending SUBACK to %s" % rcid not in remote.log()[offset:]:
            if time.time() > deadline:
                raise AssertionError("mosquitto never sent SUBACK to %s:\n%s"
                                     % (rcid, remote.log()[-3000:]))
            time.sleep(0.05)
    else:
        wait_log_line(None, remote, "%s subscribed to" % rcid, offset=offset)


class PrivateRefusingStub(StubBroker):
    """A remote that does not know bridges: CONNACK 1 to a CONNECT whose
    protocol level has bit 0x80, CONNACK 0 otherwise."""

    @property
    def rc(self):
        return 1 if self.connects and self.connects[-1][6] & 0x80 else 0

    @rc.setter
    def rc(self, value):
        pass


class PrivateClosingStub(StubBroker):
    """A remote that closes the connection on a CONNECT whose protocol level
    has bit 0x80 (what RabbitMQ does) and accepts it otherwise."""

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
                if body[6] & 0x80:
                    raise EOFError
                raw.send(bytes([0x20, 2, 0, 0]))
                while True:
                    raw.read_packet()
            except (EOFError, OSError):
                pass
            raw.close()


class MaxQosStub(StubBroker):
    """An MQTT 5 remote whose CONNACK says Maximum QoS max_qos. Records
    (topic, QoS) of each PUBLISH; acknowledges QoS 1, and answers a PUBLISH
    above max_qos with DISCONNECT 0x9B (QoS not supported)."""

    def __init__(self, max_qos):
        self.max_qos = max_qos
        self.publishes = []
        super().__init__()

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
                raw.read_packet()
                raw.send(bytes([0x20, 5, 0, 0, 2, 0x24, self.max_qos]))
                while True:
                    first, body = raw.read_packet()
                    if first >> 4 != 3 or body[2:6] == b"$SYS":
                        continue
                    qos = (first >> 1) & 3
                    tlen = body[0] << 8 | body[1]
                    self.publishes.append((body[2:2 + tlen].decode(), qos))
                    if qos > self.max_qos:
                        raw.send(bytes([0xE0, 1, 0x9B]))
                        break
                    if qos == 1:
                        raw.send(bytes([0x40, 2]) + body[2 + tlen:4 + tlen])
            except (EOFError, OSError):
                pass
            raw.close()


class BridgeCase(unittest.TestCase):
    def remote_mosquitto(self, conf="", **kw):
        need(MOSQUITTO)
        return start_broker(self, conf, binary=MOSQUITTO, **kw)

    def local(self, conf, **kw):
        return start_broker(self, conf, **kw)

    def up(self, local, remote, name="b1", rcid=None, subscribes=True, offset=0, roff=0):
        """Wait until the bridge is connected (and subscribed on the remote)."""
        wait_log_line(self, local, "Bridge %s connected" % name, offset=offset)
        if subscribes:
            wait_remote_suback(remote, rcid or "rc-" + name, offset=roff)

    def expect(self, c, topic, payload, qos, retain=False):
        m = recv_publish(c)
        self.assertEqual((m.topic, m.payload, m.qos, m.retain),
                         (topic, payload, qos, retain), "received %r" % (m,))
        return m

    def oversize_skipped(self, remote_conf, extra, big, why):
        """A bridge (max_inflight_messages 1) toward a remote started with
        remote_conf: a QoS 1 message of `big` bytes is not sent, `why` is
        logged, and the window moves on to the next message."""
        remote = start_broker(self, remote_conf)
        local = self.local("max_inflight_messages 1\n" +
                           bridge_conf(remote.port, ["m/# out 1"], extra=[extra]))
        self.up(local, remote, subscribes=False)
        rs, lp = connect(self, remote), connect(self, local)
        subscribe(rs, [("m/#", 1)])
        publish(lp, "m/big", b"x" * big, qos=1)
        publish(lp, "m/small", b"s", qos=1)
        self.expect(rs, "m/small", b"s", 1)
        wait_log_line(self, local, "'m/big'", why)


class TestBridgeMosquitto(BridgeCase):
    """secbroker bridging to Debian's mosquitto."""

    def test_directions_prefixes_and_qos(self):
        remote = self.remote_mosquitto()
        topics = ["out/# out 1 l/ r/", "in/# in 2 l/ r/", "plain/# out 2", "q0/# out 0",
                  '"" out 1 local/one remote/one', '"" in 1 local/two remote/two',
                  "s/+/t both 2 site/ plant/site/"]
        local = self.local(bridge_conf(remote.port, topics))
        self.up(local, remote)
        rs = connect(self, remote)
        subscribe(rs, [("r/out/#", 2), ("r/in/back", 2), ("plain/#", 2), ("q0/#", 2), ("remote/one", 2),
                       ("plant/site/s/+/t", 2)])
        ls = connect(self, local)
        subscribe(ls, [("l/in/#", 2), ("local/two", 2), ("site/s/+/t", 2)])
        lp, rp = connect(self, local), connect(self, remote)
        # out: local prefix replaced by the remote one, QoS min(published, topic line)
        publish(lp, "l/out/a", b"1", qos=2)
        self.expect(rs, "r/out/a", b"1", 1)
        publish(lp, "plain/c", b"2", qos=2)
        self.expect(rs, "plain/c", b"2", 2)
        publish(lp, "q0/d", b"3", qos=1)
        self.expect(rs, "q0/d", b"3", 0)
        publish(lp, "local/one", b"4", qos=1)
        self.expect(rs, "remote/one", b"4", 1)
        # in: remote prefix replaced by the local one
        publish(rp, "r/in/b", b"5", qos=2)
        self.expect(ls, "l/in/b", b"5", 2)
        publish(rp, "remote/two", b"6", qos=1)
        self.expect(ls, "local/two", b"6", 1)
        # both, with a wildcard inside the pattern and prefixes on both sides
        publish(lp, "site/s/x/t", b"7", qos=2)
        self.expect(rs, "plant/site/s/x/t", b"7", 2)
        self.expect(ls, "site/s/x/t", b"7", 2)  # the local subscriber, as usual
        publish(rp, "plant/site/s/y/t", b"8", qos=2)
        self.expect(ls, "site/s/y/t", b"8", 2)
        self.expect(rs, "plant/site/s/y/t", b"8", 2)
        # an `out` topic does not come in, an `in` topic does not go out
        publish(rp, "r/out/back", b"no", qos=1)
        publish(lp, "l/in/back", b"no", qos=1)
        self.expect(ls, "l/in/back", b"no", 1)  # local delivery only, not r/in/back
        publish(rp, "remote/two", b"mark", qos=1)
        self.expect(ls, "local/two", b"mark", 1)
        self.expect(rs, "r/out/back", b"no", 1)  # remote's own delivery
        publish(lp, "local/one", b"mark", qos=1)
        self.expect(rs, "remote/one", b"mark", 1)

    def retained_case(self, outgoing_retain):
        remote = self.remote_mosquitto()
        extra = [] if outgoing_retain else ["bridge_outgoing_retain false"]
        local = self.local(bridge_conf(remote.port, ["ret/# out 1"], extra=extra))
        self.up(local, remote, subscribes=False)
        rs = connect(self, remote)
        subscribe(rs, [("ret/#", 1)])
        lp = connect(self, local)
        publish(lp, "ret/a", b"kept", qos=1, retain=True)
        self.expect(rs, "ret/a", b"kept", 1)  # live: retain 0 to a live subscriber
        late = connect(self, remote)
        subscribe(late, [("ret/#", 1)])
        publish(lp, "ret/mark", b"mark", qos=1)
        if outgoing_retain:
            self.expect(late, "ret/a", b"kept", 1, retain=True)
        self.expect(late, "ret/mark", b"mark", 1)

    def test_retained_goes_out_as_retained(self):
        self.retained_case(True)

    def test_bridge_outgoing_retain_false(self):
        self.retained_case(False)

    def test_remote_down_at_start_and_restarted(self):
        """QoS 1 published while the remote is down (from broker start on, and
        again after a restart) arrives in order once it is back."""
        remote = self.remote_mosquitto("persistence true\npersistence_location {dir}/\n")
        sub_id = uid("persub")
        rs = connect(self, remote, client_id=sub_id, clean=False)
        subscribe(rs, [("r/#", 1)])
        rs.close()
        remote.stop()
        local = self.local(bridge_conf(remote.port, ["q/# out 1 l/ r/"]))
        wait_log_line(self, local, "Bridge b1: connection to 127.0.0.1", "failed",
                      "Connection refused")
        wait_log_line(self, local, "Bridge b1: next attempt in 1.0 s")
        lp = connect(self, local)
        for i in range(5):
            publish(lp, "l/q/%d" % i, b"a%d" % i, qos=1)
        off = log_offset(local)
        remote.start()
        self.up(local, remote, subscribes=False, offset=off)
        rs = connect(self, remote, client_id=sub_id, clean=False, expect_sp=1)
        got = [recv_publish(rs) for _ in range(5)]
        self.assertEqual([(m.topic, m.payload) for m in got],
                         [("r/q/%d" % i, b"a%d" % i) for i in range(5)])
        # the remote restarts while the bridge is up: queued again, then delivered
        rs.send(bytes([0xE0, 0]))  # DISCONNECT: the PUBACKs are handled before the close
        assert_closed(self, rs)
        off = log_offset(local)
        remote.stop()
        wait_log_line(self, local, "Bridge b1 disconnected from", offset=off)
        for i in range(3):
            publish(lp, "l/q/again%d" % i, b"b%d" % i, qos=1)
        remote.start()
        self.up(local, remote, subscribes=False, offset=off)
        rs = connect(self, remote, client_id=sub_id, clean=False, expect_sp=1)
        got = [recv_publish(rs) for _ in range(3)]
        self.assertEqual([m.payload for m in got], [b"b0", b"b1", b"b2"])

    def test_back_to_the_main_address(self):
        self.back_to_main("127.0.0.1")

    def test_back_to_the_main_address_by_name(self):
        """The main address as a name (localhost): the probe resolves it off
        the loop first."""
        self.back_to_main("localhost")

    def back_to_main(self, host):
        """round_robin false: main down at start -> the backup; once the main
        address accepts again (a probe every 5 s) the bridge leaves the backup
        cleanly (its state set to 0) for the main one. QoS 1 published locally
        all along arrives, none lost."""
        main = self.remote_mosquitto()
        main.stop()
        backup = self.remote_mosquitto()
        conf = bridge_conf(backup.port, ["fo/# out 1"], rcid="rc-fo")
        conf = conf.replace("address 127.0.0.1:%d" % backup.port,
                            "address %s:%d 127.0.0.1:%d" % (host, main.port, backup.port))
        local = self.local(conf)
        wait_log_line(self, local, "Bridge b1 connected to 127.0.0.1:%d" % backup.port)
        bs = connect(self, backup)
        subscribe(bs, [("fo/#", 1)])
        lp = connect(self, local)
        sent = []

        def pub():
            sent.append(b"%d" % len(sent))
            publish(lp, "fo/m", sent[-1], qos=1)

        for _ in range(5):
            pub()
        roff, off = len(backup.log()), log_offset(local)
        main.start()
        ms = connect(self, main)
        subscribe(ms, [("fo/#", 1)])
        deadline = time.time() + 3 * WAIT
        while "Bridge b1 connected to" not in local.log()[off:] and time.time() < deadline:
            pub()  # throughout the switch
            time.sleep(0.02)
        line = wait_log_line(self, local, "Bridge b1 connected to", offset=off)
        self.assertIn("connected to 127.0.0.1:%d (%s:%d)" % (main.port, host, main.port), line)
        for _ in range(5):
            pub()
        publish(lp, "fo/end", b"end", qos=1)
        got = set()
        while True:
            m = recv_publish(ms)
            if m.topic == "fo/end":
                break
            got.add(m.payload)
        # the backup saw the bridge leave: whatever it had is delivered before a marker
        deadline = time.time() + WAIT
        while "Client rc-fo disconnected" not in backup.log()[roff:] and time.time() < deadline:
            time.sleep(0.05)
        bp = connect(self, backup)
        publish(bp, "fo/end", b"end", qos=1)
        while True:
            m = recv_publish(bs)
            if m.topic == "fo/end":
                break
            got.add(m.payload)
        self.assertEqual(set(sent) - got, set(), "lost on the way")
        self.assertGreater(len(sent), 10)
        self.assertEqual(local.log().count("accepts connections again; leaving"), 1)
        st = connect(self, backup)
        subscribe(st, [("$SYS/broker/connection/rc-fo/state", 1)])
        self.expect(st, "$SYS/broker/connection/rc-fo/state", b"0", 0, retain=True)

    def both_no_echo(self, local, remote, lfilter="both/#", rfilter="both/#"):
        """A `both` topic: each side's message reaches the other once, never
        comes back (no echo) and does not circle (no loop)."""
        lc, rc = connect(self, local), connect(self, remote)
        subscribe(lc, [(lfilter, 1)])
        subscribe(rc, [(rfilter, 1)])
        publish(lc, "both/from-local", b"L", qos=1)
        self.expect(lc, "both/from-local", b"L", 1)
        self.expect(rc, "both/from-local", b"L", 1)
        publish(rc, "both/from-remote", b"R", qos=1)
        self.expect(rc, "both/from-remote", b"R", 1)
        # an echo of "L" from the remote would have reached lc before this
        self.expect(lc, "both/from-remote", b"R", 1)
        publish(lc, "both/mark", b"M", qos=1)
        self.expect(lc, "both/mark", b"M", 1)
        # an echo of "R" back to the remote would have reached rc before this
        self.expect(rc, "both/mark", b"M", 1)
        publish(rc, "both/mark2", b"M2", qos=1)
        self.expect(rc, "both/mark2", b"M2", 1)
        self.expect(lc, "both/mark2", b"M2", 1)

    def test_both_no_echo_no_loop(self):
        remote = self.remote_mosquitto()
        local = self.local(bridge_conf(remote.port, ["both/# both 1"]))
        self.up(local, remote)
        self.both_no_echo(local, remote)

    def test_notifications_and_will(self):
        """$SYS/broker/connection/<remote_clientid>/state: 1 on both sides while
        up, 0 on the remote through the bridge's will after kill -9."""
        remote = self.remote_mosquitto()
        rcid = uid("rc")
        local = self.local("sys_interval 1\n" + bridge_conf(remote.port, ["n/# out 1"], rcid=rcid))
        self.up(local, remote, rcid=rcid, subscribes=False)
        state = "$SYS/broker/connection/%s/state" % rcid
        ls = connect(self, local)
        subscribe(ls, [(state, 1)])
        self.expect(ls, state, b"1", 1, retain=True)
        rs = connect(self, remote)
        subscribe(rs, [(state, 1), ("n/#", 1)])
        m = recv_publish(rs)
        self.assertEqual((m.topic, m.payload, m.retain), (state, b"1", True))
        lp = connect(self, local)
        for i in range(3):
            publish(lp, "n/%d" % i, b"x", qos=1)
            self.expect(rs, "n/%d" % i, b"x", 1)
        sent = connect(self, local)
        subscribe(sent, [("$SYS/broker/bridge/b1/messages/sent", 0)])
        deadline = time.time() + WAIT
        while True:  # counters are published every sys_interval
            m = recv_publish(sent)
            if int(m.payload) >= 3 or time.time() > deadline:
                break
        self.assertGreaterEqual(int(m.payload), 3)
        local.proc.kill()
        local.proc.wait()
        self.expect(rs, state, b"0", 1)


class TestBridgeTLS(BridgeCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="secbroker-bridge-certs-")
        cls.certs = make_certs(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def remote_tls(self):
        need(MOSQUITTO)
        return start_broker(self, "", binary=MOSQUITTO,
                            listeners=[tls_block(self.certs, cafile=True, require=True)])

    def tls_conf(self, remote, cert=True, extra=()):
        c = self.certs
        lines = ["bridge_cafile %s" % c["ca.crt"]]
        if cert:
            lines += ["bridge_certfile %s" % c["client.crt"], "bridge_keyfile %s" % c["client.key"]]
        return bridge_conf(remote.ports[1], ["t/# both 1"], host="localhost",
                           extra=lines + list(extra))

    def test_mutual_tls_with_bridge_certfile_and_resumption(self):
        remote = self.remote_tls()
        keylog = os.path.join(self.tmp, uid("keylog"))
        local = self.local(self.tls_conf(remote, extra=["bridge_keylog_file " + keylog]))
        self.up(local, remote)
        line = wait_log_line(self, local, "TLS handshake with")
        self.assertIn("full handshake", line)
        rs, lc = connect(self, remote), connect(self, local)
        subscribe(rs, [("t/#", 1)])
        publish(lc, "t/secure", b"over TLS", qos=1)
        self.expect(rs, "t/secure", b"over TLS", 1)
        # the remote drops the bridge (a takeover of its client id): the
        # reconnect resumes the saved TLS session
        off, roff = log_offset(local), len(remote.log())
        thief = connect(self, remote, client_id="rc-b1")
        thief.close()
        self.up(local, remote, offset=off, roff=roff)
        line = wait_log_line(self, local, "TLS handshake with", offset=off)
        self.assertIn("resumed", line)
        publish(lc, "t/again", b"2", qos=1)
        self.expect(rs, "t/again", b"2", 1)
        with open(keylog) as f:  # the lab decrypts the bridge too
            self.assertIn("CLIENT_RANDOM ", f.read())

    def test_missing_client_certificate_is_logged(self):
        remote = self.remote_tls()
        local = self.local(self.tls_conf(remote, cert=False))
        line = wait_log_line(self, local, "Bridge b1: connection to localhost", "failed")
        self.assertIn("TLS", line)
        wait_log_line(self, local, "Bridge b1: next attempt in")


class TestBridgeSecbroker(BridgeCase):
    """secbroker on both ends, and Mosquitto bridging into secbroker."""

    def test_secbroker_to_secbroker_both(self):
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["both/# both 1"]))
        self.up(local, remote)
        wait_log_line(self, remote, "as rc-b1 (MQTT 3.1.1 bridge,")
        TestBridgeMosquitto.both_no_echo(self, local, remote)

    def test_try_private_false_is_a_plain_client(self):
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["x/# out 1"], extra=["try_private false"]))
        self.up(local, remote, subscribes=False)
        wait_log_line(self, remote, "as rc-b1 (MQTT 3.1.1, clean session 0")

    def test_start_type_once(self):
        local = self.local(bridge_conf(free_port(), ["x/# out 1"], extra=["start_type once"]))
        wait_log_line(self, local, "Bridge b1: start_type once, not reconnecting")
        self.assertNotIn("Bridge b1: next attempt", local.log())

    def test_attempt_unsubscribe_and_local_only_notifications(self):
        """cleansession false: UNSUBSCRIBE for out-only topics (a topic that
        was `in` before stops arriving); notifications_local_only: the remote
        gets neither the state nor a will."""
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["x/# out 1", "y/# in 1"],
                                       extra=["notifications_local_only true",
                                              "notification_topic bridges/b1/up"]))
        self.up(local, remote)
        wait_log_line(self, remote, "rc-b1 unsubscribed from 'x/#'")
        wait_log_line(self, remote, "as rc-b1 (MQTT 3.1.1 bridge, clean session 0, keepalive 60, ")
        ls = connect(self, local)
        subscribe(ls, [("bridges/b1/up", 1)])
        self.expect(ls, "bridges/b1/up", b"1", 1, retain=True)
        rs = connect(self, remote)
        subscribe(rs, [("bridges/#", 1), ("x/#", 1)])
        publish(connect(self, local), "x/mark", b"m", qos=1)
        self.expect(rs, "x/mark", b"m", 1)  # no retained state arrived before it

    def test_mosquitto_bridges_into_secbroker(self):
        """Mosquitto's bridge announces itself (try_private, level | 0x80):
        secbroker accepts it, sends it nothing it published (no echo) and the
        retain flag as published."""
        need(MOSQUITTO)
        sec = start_broker(self, "")
        mconf = ("connection m2s\naddress 127.0.0.1:%d\ntopic both/# both 1\n"
                 "remote_clientid m2s-bridge\ntry_private true\n" % sec.port)
        mos = start_broker(self, mconf, binary=MOSQUITTO)
        wait_log_line(self, sec, "as m2s-bridge (MQTT 3.1.1 bridge,")
        wait_log_line(self, sec, "m2s-bridge subscribed to 'both/#'")
        TestBridgeMosquitto.both_no_echo(self, mos, sec)
        # retain as published towards the bridge: a late subscriber on mosquitto
        # gets a message retained on secbroker after the bridge subscribed
        watcher, sp = connect(self, mos), connect(self, sec)
        subscribe(watcher, [("both/kept", 1)])
        publish(sp, "both/kept", b"K", qos=1, retain=True)
        self.expect(watcher, "both/kept", b"K", 1)  # mosquitto has it now
        late = connect(self, mos)
        subscribe(late, [("both/kept", 1)])
        self.expect(late, "both/kept", b"K", 1, retain=True)

    def test_queue_limit_drops_are_counted_and_logged_once(self):
        """Remote down: QoS 1 queues up to max_queued_messages; the rest is
        dropped, counted in $SYS and logged once for the episode."""
        local = self.local("max_queued_messages 5\nsys_interval 1\n" +
                           bridge_conf(free_port(), ["q/# out 1"]))
        lp = connect(self, local)
        for i in range(8):
            publish(lp, "q/%d" % i, b"x", qos=1)
        wait_log_line(self, local, "Bridge b1: queue full (5 messages", "max_queued_messages 5,")
        sys = connect(self, local)
        subscribe(sys, [("$SYS/broker/bridge/b1/messages/dropped", 0),
                        ("$SYS/broker/bridge/b1/messages/queued", 0)])
        seen = {}
        deadline = time.time() + WAIT
        while seen != {"dropped": b"3", "queued": b"5"} and time.time() < deadline:
            m = recv_publish(sys)
            seen[m.topic.rsplit("/", 1)[1]] = m.payload
        self.assertEqual(seen, {"dropped": b"3", "queued": b"5"})
        self.assertEqual(local.log().count("Bridge b1: queue full"), 1, "one line per episode")

    def test_bridge_own_queue_limits(self):
        """bridge_max_queued_messages replaces max_queued_messages for the
        bridge; bridge_max_queued_bytes bounds topic + payload bytes."""
        local = self.local("sys_interval 1\n" +
                           bridge_conf(free_port(), ["m/# out 1"], name="bym",
                                       extra=["bridge_max_queued_messages 2"]) +
                           bridge_conf(free_port(), ["b/# out 1"], name="byb",
                                       extra=["bridge_max_queued_bytes 100"]))
        lp = connect(self, local)
        for i in range(4):
            publish(lp, "m/%d" % i, b"x", qos=1)
            publish(lp, "b/%d" % i, b"y" * 40, qos=1)  # 43 bytes each: the 4th is over
        wait_log_line(self, local, "Bridge bym: queue full (2 messages",
                      "bridge_max_queued_messages 2")
        wait_log_line(self, local, "Bridge byb: queue full (3 messages, 129 bytes",
                      "bridge_max_queued_bytes 100")
        sys = connect(self, local)
        subscribe(sys, [("$SYS/broker/bridge/+/messages/queued", 0)])
        seen = {}
        deadline = time.time() + WAIT
        while seen != {"bym": b"2", "byb": b"3"} and time.time() < deadline:
            m = recv_publish(sys)
            seen[m.topic.split("/")[3]] = m.payload
        self.assertEqual(seen, {"bym": b"2", "byb": b"3"})

    def test_bridge_max_packet_size(self):
        """A message over bridge_max_packet_size is not sent (logged); a QoS 1
        one is acknowledged by the bridge, so the window (1 here) moves on."""
        self.oversize_skipped("", "bridge_max_packet_size 100", 200,
                              "over bridge_max_packet_size 100")

    def test_try_private_falls_back_on_connack_1(self):
        """try_private: level 4 | 0x80 first; after CONNACK 1 at once level 4.
        The CONNECT carries cleansession false, keepalive 60 and the
        notification will (retained "0", QoS 1)."""
        stub = PrivateRefusingStub()
        self.addCleanup(stub.stop)
        local = self.local(bridge_conf(stub.port, ["x/# out 1"], rcid="rc-stub"))
        wait_log_line(self, local, "Bridge b1: connection to 127.0.0.1", "remote refused the "
                      "bridge protocol level (try_private); retrying without it")
        line = wait_log_line(self, local, "Bridge b1 connected")
        self.assertNotIn("announced as bridge", line)
        self.assertNotIn("next attempt", local.log(), "the fallback waits for no delay")
        levels = [c[6] for c in stub.connects[:2]]
        self.assertEqual(levels, [0x84, 0x04])
        body = stub.connects[1]
        self.assertEqual(body[:6], b"\x00\x04MQTT")
        self.assertEqual(body[7], 0x04 | 0x08 | 0x20, "will, will QoS 1, will retain, not clean")
        self.assertEqual(body[8:10], b"\x00\x3c")
        will_topic = b"$SYS/broker/connection/rc-stub/state"
        self.assertEqual(body[10:12 + 7], b"\x00\x07rc-stub")
        self.assertEqual(body[19:21 + len(will_topic)], bytes([0, len(will_topic)]) + will_topic)
        self.assertEqual(body[21 + len(will_topic):], b"\x00\x010")

    def test_try_private_falls_back_when_the_remote_closes(self):
        stub = PrivateClosingStub()
        self.addCleanup(stub.stop)
        local = self.local(bridge_conf(stub.port, ["x/# out 1"]))
        wait_log_line(self, local, "Bridge b1: the remote closed the connection instead of "
                      "answering the bridge CONNECT (try_private); retrying without it")
        wait_log_line(self, local, "Bridge b1 connected")
        self.assertEqual([c[6] for c in stub.connects[:2]], [0x84, 0x04])

    def test_connack_refusal_is_logged_and_retried(self):
        stub = StubBroker(rc=5)
        self.addCleanup(stub.stop)
        local = self.local(bridge_conf(stub.port, ["x/# out 1"], extra=["try_private false"]))
        wait_log_line(self, local, "Bridge b1: connection to 127.0.0.1",
                      "CONNECT refused: CONNACK 5 (")
        wait_log_line(self, local, "Bridge b1: next attempt in 1.0 s")
        deadline = time.time() + WAIT
        while len(stub.connects) < 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(stub.connects), 2, "retried")

    def test_local_clientid_is_reserved(self):
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["x/# out 1"],
                                       extra=["local_clientid bridge-local"]))
        connect(self, local, client_id="bridge-local", expect_rc=2)

    def test_name_resolved_off_the_loop(self):
        """A name (localhost) goes through the resolver; a name that does not
        resolve is logged and retried while local clients are served."""
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["r/# out 1"], host="localhost") +
                           bridge_conf(1, ["z/# out 1"], name="b2", host="nonexistent.invalid"))
        self.up(local, remote, subscribes=False)
        wait_log_line(self, local, "Bridge b2: connection to nonexistent.invalid:1 failed",
                      "cannot resolve")
        a, b = connect(self, local), connect(self, local)
        subscribe(b, [("plain/x", 1)])
        publish(a, "plain/x", b"served", qos=1)
        self.expect(b, "plain/x", b"served", 1)

    def test_lazy_start(self):
        remote = start_broker(self, "")
        local = self.local(bridge_conf(remote.port, ["lz/# out 1"],
                                       extra=["start_type lazy", "threshold 3"]))
        rs = connect(self, remote)
        subscribe(rs, [("lz/#", 1)])
        lp = connect(self, local)
        publish(lp, "lz/0", b"0", qos=1)
        publish(lp, "lz/1", b"1", qos=1)
        self.assertNotIn("Bridge b1: connecting", local.log())
        publish(lp, "lz/2", b"2", qos=1)
        self.up(local, remote, subscribes=False)
        self.assertEqual([recv_publish(rs).payload for _ in range(3)], [b"0", b"1", b"2"])

    def test_config_errors_name_file_and_line(self):
        for conf, words in [("connection c1\ntopic a/# out 1\n", "no address"),
                            ("address 127.0.0.1:1\n", "must follow a 'connection' line"),
                            ("connection c1\naddress 127.0.0.1:1\ntopic a/# sideways 1\n", "topic")]:
            b = make_broker(conf)
            self.addCleanup(b.cleanup)
            self.assertNotEqual(b.start(expect_fail=True), 0)
            out = b.output()
            self.assertIn(b.conf_path + ":", out)
            self.assertIn(words, out)


class TestBridgeV5(BridgeCase):
    """bridge_protocol_version mqttv50: against Debian's mosquitto (2.0.11
    speaks MQTT 5) and secbroker <-> secbroker."""

    TOPICS = ["v5out/# out 2", "v5in/# in 2", "both/# both 1"]

    def v5_bridge(self, remote, extra=()):
        local = self.local(bridge_conf(remote.port, self.TOPICS,
                                       extra=["bridge_protocol_version mqttv50"] + list(extra)))
        self.up(local, remote)
        line = wait_log_line(self, local, "Bridge b1 connected")
        self.assertIn("MQTT 5", line)
        return local

    def directions_qos_retained(self, local, remote):
        rs, ls = connect(self, remote), connect(self, local)
        subscribe(rs, [("v5out/#", 2)])
        subscribe(ls, [("v5in/#", 2)])
        lp, rp = connect(self, local), connect(self, remote)
        for q in (0, 1, 2):
            publish(lp, "v5out/q%d" % q, b"o%d" % q, qos=q)
            self.expect(rs, "v5out/q%d" % q, b"o%d" % q, q)
            publish(rp, "v5in/q%d" % q, b"i%d" % q, qos=q)
            self.expect(ls, "v5in/q%d" % q, b"i%d" % q, q)
        # retained both ways: the flag travels (Retain As Published on the remote)
        publish(lp, "v5out/kept", b"K", qos=1, retain=True)
        self.expect(rs, "v5out/kept", b"K", 1)
        late = connect(self, remote)
        subscribe(late, [("v5out/kept", 1)])
        self.expect(late, "v5out/kept", b"K", 1, retain=True)
        publish(rp, "v5in/kept", b"R", qos=1, retain=True)
        self.expect(ls, "v5in/kept", b"R", 1)
        late = connect(self, local)
        subscribe(late, [("v5in/kept", 1)])
        self.expect(late, "v5in/kept", b"R", 1, retain=True)

    def test_mosquitto_directions_qos_retained(self):
        remote = self.remote_mosquitto()
        local = self.v5_bridge(remote)
        self.directions_qos_retained(local, remote)

    def test_mosquitto_both_no_echo_no_loop(self):
        remote = self.remote_mosquitto()
        local = self.v5_bridge(remote)
        TestBridgeMosquitto.both_no_echo(self, local, remote)

    def test_secbroker_directions_qos_retained(self):
        remote = start_broker(self, "")
        local = self.v5_bridge(remote)
        wait_log_line(self, remote, "as rc-b1 (MQTT 5.0, clean session 0")
        self.directions_qos_retained(local, remote)

    def test_secbroker_both_no_echo_no_loop(self):
        remote = start_broker(self, "")
        local = self.v5_bridge(remote)
        TestBridgeMosquitto.both_no_echo(self, local, remote)

    def test_refusal_in_words(self):
        remote = start_broker(self, "allow_anonymous false\n")
        local = self.local(bridge_conf(remote.port, self.TOPICS,
                                       extra=["bridge_protocol_version mqttv50"]))
        wait_log_line(self, local, "Bridge b1: connection to 127.0.0.1", "CONNECT refused: reason 0x8",
                      ("Not authorized", "Bad user name or password"))

    def test_remote_maximum_packet_size(self):
        """The remote's Maximum Packet Size (CONNACK): a larger message is not
        sent (logged); QoS 1 ones are acknowledged by the bridge, so the
        window (1 here) moves on."""
        self.oversize_skipped("max_packet_size 200\n", "bridge_protocol_version mqttv50", 300,
                              "over the remote's Maximum Packet Size 200")

    def maximum_qos(self, max_qos, qos):
        remote = MaxQosStub(max_qos)
        self.addCleanup(remote.stop)
        local = self.local("max_inflight_messages 1\n" +
                           bridge_conf(remote.port, ["q/# out 2"],
                                       extra=["bridge_protocol_version mqttv50"]))
        self.up(local, remote, subscribes=False)
        lp = connect(self, local)
        for i in range(3):
            publish(lp, "q/%d" % i, b"p%d" % i, qos=qos)
        deadline = time.time() + WAIT
        while len(remote.publishes) < 3 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(remote.publishes, [("q/%d" % i, max_qos) for i in range(3)],
                         log_tail(local))

    def test_remote_maximum_qos(self):
        """The remote's Maximum QoS (CONNACK, [MQTT-3.2.2-11]): no PUBLISH
        above it goes out. A QoS 2 message leaves at QoS 1 and the remote's
        PUBACK ends its exchange, so the window (1 here) moves on; a remote
        that sees QoS 2 disconnects with 0x9B as the specification says."""
        self.maximum_qos(1, 2)

    def test_remote_maximum_qos_0(self):
        """Maximum QoS 0: QoS 1 and 2 messages leave at QoS 0 and the bridge
        acknowledges them itself, so the window moves on."""
        self.maximum_qos(0, 2)
        self.maximum_qos(0, 1)


class TestBridgeReload(BridgeCase):
    """SIGHUP: bridges added, removed, changed and unchanged; a broken block."""

    def reload(self, local, old, new):
        with open(local.conf_path) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(local.conf_path, "w") as f:
            f.write(text.replace(old, new))
        off = log_offset(local)
        local.signal(signal.SIGHUP)
        return off

    def test_added_removed_changed_unchanged(self):
        remote = start_broker(self, "")
        keep = bridge_conf(remote.port, ["k/# out 1"], name="keep")
        gone = bridge_conf(remote.port, ["g/# out 1"], name="gone")
        # nothing listens on chg's first address: its messages queue
        chg_old = bridge_conf(free_port(), ["c/# out 1"], name="chg")
        chg_new = bridge_conf(remote.port, ["c/# out 1"], name="chg")
        add = bridge_conf(remote.port, ["a/# out 1"], name="add")
        local = self.local(keep + gone + chg_old)
        wait_log_line(self, local, "Bridge keep connected")
        wait_log_line(self, local, "Bridge gone connected")
        rs = connect(self, remote)
        subscribe(rs, [("k/#", 1), ("g/#", 1), ("c/#", 1), ("a/#", 1)])
        lp = connect(self, local)
        for i in range(3):
            publish(lp, "c/%d" % i, b"q%d" % i, qos=1)  # queued for chg
        roff = log_offset(remote)
        off = self.reload(local, keep + gone + chg_old, keep + chg_new + add)
        wait_log_line(self, local, "SIGHUP: bridges: 1 unchanged, 1 restarted, 1 added, 1 removed",
                      offset=off)
        # removed: a clean DISCONNECT
        wait_log_line(self, remote, "Client rc-gone", "disconnected: client sent DISCONNECT",
                      offset=roff)
        # changed (same local client id): the queued messages go out, in order
        self.assertEqual([recv_publish(rs).payload for _ in range(3)], [b"q0", b"q1", b"q2"])
        # added
        wait_log_line(self, local, "Bridge add connected", offset=off)
        publish(lp, "a/x", b"added", qos=1)
        self.expect(rs, "a/x", b"added", 1)
        # removed: nothing goes out any more; unchanged: still up, never reconnected
        publish(lp, "g/x", b"stopped", qos=1)
        publish(lp, "k/x", b"kept", qos=1)
        self.expect(rs, "k/x", b"kept", 1)
        self.assertEqual(local.log().count("Bridge keep connected"), 1)
        self.assertEqual(remote.log().count("as rc-keep "), 1)
        self.assertNotIn("Bridge keep:", local.log()[off:])

    def added_bridge_takes_over_its_local_clientid(self, local_clean):
        """A bridge added by SIGHUP whose local client id a connected client
        holds: the client is disconnected (a takeover) and the bridge gets a
        session of its own; before, the bridge shared (or, with
        local_cleansession true, freed) the client's live session."""
        remote = start_broker(self, "")
        local = self.local("# no bridges yet\n")
        holder = connect(self, local, "local.rc-add")
        subscribe(holder, [("h/#", 1)])
        add = bridge_conf(remote.port, ["a/# out 1"], name="add",
                          extra=["local_cleansession %s" % local_clean])
        off = self.reload(local, "# no bridges yet\n", add)
        wait_log_line(self, local, "SIGHUP: bridges: 0 unchanged, 0 restarted, 1 added", offset=off)
        assert_closed(self, holder)
        wait_log_line(self, local, "Bridge add connected", offset=off)
        rs, lp = connect(self, remote), connect(self, local)
        subscribe(rs, [("a/#", 1), ("h/#", 1)])
        publish(lp, "h/x", b"not bridged", qos=1)
        publish(lp, "a/x", b"bridged", qos=1)
        self.expect(rs, "a/x", b"bridged", 1)

    def test_added_bridge_takes_over_its_local_clientid(self):
        self.added_bridge_takes_over_its_local_clientid("false")

    def test_added_clean_bridge_takes_over_its_local_clientid(self):
        self.added_bridge_takes_over_its_local_clientid("true")

    def test_changed_bridge_keeps_in_flight_messages(self):
        """A changed bridge (new topic line) with the same local client id:
        the session and its queue carry over; the old out filter is gone."""
        remote = start_broker(self, "")
        old = bridge_conf(free_port(), ["c/# out 1"], name="chg", rcid="rc-chg")
        new = bridge_conf(remote.port, ["d/# out 1"], name="chg", rcid="rc-chg")
        local = self.local(old)
        rs = connect(self, remote)
        subscribe(rs, [("c/#", 1), ("d/#", 1)])
        lp = connect(self, local)
        publish(lp, "c/0", b"queued", qos=1)
        off = self.reload(local, old, new)
        wait_log_line(self, local, "SIGHUP: bridges: 0 unchanged, 1 restarted", offset=off)
        self.expect(rs, "c/0", b"queued", 1)
        publish(lp, "c/1", b"no longer bridged", qos=1)
        publish(lp, "d/1", b"bridged now", qos=1)
        self.expect(rs, "d/1", b"bridged now", 1)

    def test_broken_block_keeps_the_running_bridges(self):
        remote = start_broker(self, "")
        keep = bridge_conf(remote.port, ["k/# out 1"], name="keep")
        local = self.local(keep)
        wait_log_line(self, local, "Bridge keep connected")
        bad = "connection bad\naddress 127.0.0.1:1\ntopic x sideways 1\n"
        off = self.reload(local, keep, keep + bad)
        line = wait_log_line(self, local, "SIGHUP: reload failed, keeping the running configuration",
                             offset=off)
        self.assertIn(local.conf_path + ":", line)
        self.assertIn("topic", line)
        rs, lp = connect(self, remote), connect(self, local)
        subscribe(rs, [("k/#", 1)])
        publish(lp, "k/x", b"still", qos=1)
        self.expect(rs, "k/x", b"still", 1)
        self.assertNotIn("SIGHUP: bridges:", local.log()[off:])
        self.assertNotIn("Bridge bad", local.log())
        self.assertEqual(local.log().count("Bridge keep connected"), 1)


class TestBridgeChain(BridgeCase):
    """edge -> site -> cloud, three secbrokers."""

    def chain(self, site_extra=""):
        cloud = start_broker(self, "")
        site = start_broker(self, site_extra + bridge_conf(cloud.port, ["chain/# out 1"],
                                                           name="tocloud"))
        edge = start_broker(self, bridge_conf(site.port, ["chain/# out 1"], name="tosite"))
        wait_log_line(self, site, "Bridge tocloud connected")
        wait_log_line(self, edge, "Bridge tosite connected")
        return edge, site, cloud

    def test_kill_9_of_the_middle(self):
        edge, site, cloud = self.chain()
        cs, ep = connect(self, cloud), connect(self, edge)
        subscribe(cs, [("chain/#", 1)])
        publish(ep, "chain/0", b"0", qos=1)
        self.expect(cs, "chain/0", b"0", 1)
        off = log_offset(edge)
        site.proc.kill()
        site.proc.wait()
        wait_log_line(self, edge, "Bridge tosite disconnected from", offset=off)
        for i in range(1, 4):
            publish(ep, "chain/%d" % i, b"%d" % i, qos=1)  # queued at the edge
        site.start()
        self.assertEqual([recv_publish(cs).payload for _ in range(3)], [b"1", b"2", b"3"])

    def test_kill_9_of_the_middle_with_persistence(self):
        """With persistence on, what the site acknowledged to the edge while
        the cloud was down survives kill -9 of the site: the bridge's local
        session (local_cleansession false) is durable like a client's."""
        persist = "persistence true\npersistence_location {dir}/\n"
        cloud = start_broker(self, persist)
        site = start_broker(self, persist + bridge_conf(cloud.port, ["chain/# out 1"],
                                                        name="tocloud"))
        edge = start_broker(self, bridge_conf(site.port, ["chain/# out 1"], name="tosite"))
        wait_log_line(self, site, "Bridge tocloud connected")
        wait_log_line(self, edge, "Bridge tosite connected")
        cs, ep = connect(self, cloud, client_id="cloudsub", clean=False), connect(self, edge)
        subscribe(cs, [("chain/#", 1)])
        cs.close()
        cloud.stop()
        ss = connect(self, site)
        subscribe(ss, [("chain/#", 1)])
        for i in range(3):
            publish(ep, "chain/p%d" % i, b"%d" % i, qos=1)
        for i in range(3):  # the site has them (and acknowledged them to the edge)
            self.expect(ss, "chain/p%d" % i, b"%d" % i, 1)
        site.proc.kill()
        site.proc.wait()
        site.start()
        cloud.start()
        cs = connect(self, cloud, client_id="cloudsub", clean=False)
        # at least once, in order: a PUBACK the kill kept from the edge makes
        # the edge send that message again (a duplicate, allowed at QoS 1)
        first = []
        for _ in range(10):
            p = recv_publish(cs).payload
            if p not in first:
                first.append(p)
            if len(first) == 3:
                break
        self.assertEqual(first, [b"0", b"1", b"2"])


if __name__ == "__main__":
    unittest.main()
