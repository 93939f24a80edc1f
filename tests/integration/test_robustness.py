"""Regression tests for defects found in review: each drives the broker into a
corner one client can reach (unlimited inflight windows, huge SUBSCRIBEs,
slow TLS readers, pipelined packets behind a held CONNECT, floods of held
logins, clients that never read) and checks that the broker keeps its
promises and keeps serving everybody else. No timing assertions: waits are
upper bounds only.
"""
import os
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import unittest

from mqttlib import (BUILD, WAIT, Client, RawClient, connect, connect_packet, log_offset,
                     parse_publish, publish_packet, start_broker, subscribe_packet, uid,
                     wait_log_line)
from tlslib import make_certs, tls_block

SECPASSWD = os.path.join(BUILD, "secpasswd")


def pingable(tc, broker):
    """A fresh client gets CONNACK and PINGRESP: the broker is serving."""
    c = connect(tc, broker)
    c.send(b"\xc0\x00")
    tc.assertEqual(c.wait_for(13), (0xD0, b""))
    c.close()


class TestInflight(unittest.TestCase):
    def test_unlimited_window_runs_out_of_ids_without_hanging(self):
        """max_inflight_messages 0 means unlimited, but there are only 65535 packet
        ids [MQTT-2.3.1-1]: with a subscriber that never acknowledges, the 65536th
        message must wait in the queue instead of the broker searching forever
        for a free id."""
        b = start_broker(self, "max_inflight_messages 0\nmax_queued_messages 0\n")
        t = uid("t")
        sub = connect(self, b, client_id=uid("sub"))
        sub.send(subscribe_packet([(t, 1)], pid=1))
        sub.wait_for(9)
        pub = connect(self, b)
        n, batch = 65600, 800
        for i in range(0, n, batch):
            pub.send(b"".join(publish_packet(t, b"", qos=1, pid=j % 65535 + 1)
                              for j in range(i, i + batch)))
            for _ in range(batch):
                pub.wait_for(4)
        # the ids ran out: the broker still answers, and the subscriber got
        # exactly 65535 distinct ids
        pingable(self, b)
        pids = set()
        sub.sock.settimeout(WAIT)
        while len(pids) < 65535:
            first, body = sub.next_packet()
            if first >> 4 == 3:
                pids.add(parse_publish(first, body)[5])
        self.assertNotIn(0, pids)
        self.assertEqual(len(pids), 65535)


class TestSubscribe(unittest.TestCase):
    def test_suback_for_twenty_thousand_filters(self):
        """A SUBSCRIBE with 20000 filters is answered with a SUBACK of 20000 codes
        [MQTT-3.8.4-5]; its remaining length needs a 3-byte varint."""
        b = start_broker(self)
        c = connect(self, b)
        filters = [("many/%d" % i, i % 3) for i in range(20000)]
        c.send(subscribe_packet(filters, pid=7))
        first, body = c.wait_for(9)
        self.assertEqual(struct.unpack("!H", body[:2])[0], 7)
        self.assertEqual(list(body[2:]), [q for _, q in filters])
        pingable(self, b)

    def test_repeated_filter_walks_the_retained_store_once(self):
        """The same filter many times in one SUBSCRIBE gets one granted code each
        but the matching retained messages only once."""
        b = start_broker(self)
        pub = connect(self, b)
        pub.send(b"".join(publish_packet("keep/%d" % i, b"r", qos=0, retain=True)
                          for i in range(50)) + b"\xc0\x00")
        pub.wait_for(13)  # same connection, in order: all 50 are stored now
        c = connect(self, b)
        c.send(subscribe_packet([("keep/#", 0)] * 2000, pid=3))
        first, body = c.wait_for(9)
        self.assertEqual(list(body[2:]), [0] * 2000)
        c.send(b"\xc0\x00")
        got = 0
        while True:
            first, body = c.next_packet()
            if first >> 4 == 13:
                break
            if first >> 4 == 3:
                got += 1
        self.assertEqual(got, 50)


class TestSlowTLSReader(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="secbroker-robust-")
        cls.certs = make_certs(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_last_record_is_not_left_inside_the_tls_layer(self):
        """A TLS subscriber that reads nothing for a while, then drains its
        socket, must get every message: the broker may not drop its interest in
        writability while the last record is still inside mbedTLS. Messages go
        one at a time (each acknowledged by a PINGREQ round trip on the
        publisher's connection) until one no longer fits in the socket buffers,
        so that message's record is the one left half-sent."""
        b = start_broker(self, listeners=[tls_block(self.certs)])
        tport = b.ports[1]
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", tport))
        lport = s.getsockname()[1]
        ctx = ssl.create_default_context(cafile=self.certs["ca.crt"])
        sub = RawClient(0, sock=ctx.wrap_socket(s, server_hostname="localhost"), timeout=WAIT)
        self.addCleanup(sub.close)
        t = uid("big")
        self.assertEqual(sub.connect(client_id=uid("slow"), keepalive=0)[1], 0)
        sub.send(subscribe_packet([(t, 0)], pid=1))
        sub.expect(9)
        pub = connect(self, b)
        queued = socket_queues(tport, lport)
        last = None
        for i in range(5000):
            pub.send(publish_packet(t, b"%06d" % i + b"x" * 2000) + b"\xc0\x00")
            pub.wait_for(13)  # the broker has handled it and tried to send it
            now = socket_queues(tport, lport)
            if now - queued < 2000:  # it did not fit: part of its record waits
                last = i
                break
            queued = now
        self.assertIsNotNone(last, "the socket buffers never filled up")
        seen = []
        while len(seen) <= last:  # we send nothing: nothing else wakes the broker
            first, body = sub.read_packet()
            seen.append(int(parse_publish(first, body)[1][:6]))
        self.assertEqual(seen, list(range(last + 1)))


def socket_queues(server_port, client_port):
    """Bytes queued on the loopback connection between the two ports: the
    server socket's send queue plus the client socket's receive queue (from
    /proc/net/tcp, so no extra tool is needed)."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            local, remote = int(cols[1].split(":")[1], 16), int(cols[2].split(":")[1], 16)
            tx, rx = (int(x, 16) for x in cols[4].split(":"))
            if (local, remote) == (server_port, client_port):
                total += tx
            elif (local, remote) == (client_port, server_port):
                total += rx
    return total


class TestHalfOpenHandshakes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="secbroker-halfopen-")
        cls.certs = make_certs(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_a_thousand_half_open_handshakes_do_not_block_others(self):
        """1000 connections to the TLS port that stop mid-handshake (half of them
        after a partial ClientHello, half after nothing at all) never stop a real
        client from connecting and exchanging messages: handshakes never block
        the loop. The broker (started by this process) inherits the raised
        open-files limit."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2600
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        n = min(1000, (min(want, hard) - 100) // 2)
        b = start_broker(self, "handshake_timeout 60\n", listeners=[tls_block(self.certs)])
        tport = b.ports[1]
        half = []
        hello_start = bytes([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])  # a record that never completes
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", tport), timeout=WAIT)
            if i % 2:
                s.sendall(hello_start)
            half.append(s)
        self.addCleanup(lambda: [x.close() for x in half])
        ctx = ssl.create_default_context(cafile=self.certs["ca.crt"])
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tport), timeout=WAIT),
                               server_hostname="localhost")
        c = RawClient(0, sock=sock, timeout=WAIT)
        self.addCleanup(c.close)
        self.assertEqual(c.connect(client_id=uid("real"))[1], 0)
        t = uid("t")
        c.send(subscribe_packet([(t, 0)], pid=1))
        c.expect(9)
        c.send(publish_packet(t, b"through"))
        first, body = c.expect(3)
        self.assertEqual(parse_publish(first, body)[1], b"through")
        self.assertEqual(n, 1000, "only %d half-open connections: open-files hard limit %d"
                         % (n, hard))


class TestHeldConnect(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="secbroker-held-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pwfile = os.path.join(self.tmp, "passwd")
        subprocess.run([SECPASSWD, "-c", "-b", self.pwfile, "alice", "right"], check=True)

    def broker(self, extra=""):
        return start_broker(self, "allow_anonymous false\npassword_file %s\n%s" % (self.pwfile,
                                                                                   extra))

    def fail_once(self, b):
        c = RawClient(b.port)
        self.assertEqual(c.connect(client_id=uid("bad"), username="alice", password="wrong")[1], 4)
        c.close()

    def test_packets_pipelined_behind_a_held_connect_are_kept(self):
        """After a failed login from this address the next CONNECT is held; what
        the client sent right behind it (SUBSCRIBE, PINGREQ: allowed before
        CONNACK, §3.1.4) is handled once the CONNECT is accepted."""
        b = self.broker()
        self.fail_once(b)
        c = Client(b.port)
        self.addCleanup(c.close)
        c.send(connect_packet(client_id=uid("good"), username="alice", password="right",
                              keepalive=60) +
               subscribe_packet([("x/y", 1)], pid=5) + b"\xc0\x00")
        first, body = c.wait_for(2)
        self.assertEqual(body[1], 0)
        first, body = c.wait_for(9)
        self.assertEqual(body, b"\x00\x05\x01")
        self.assertEqual(c.wait_for(13), (0xD0, b""))

    def test_held_logins_from_one_address_are_bounded(self):
        """One held attempt per (address, user name): each newer attempt takes the
        turn, the older ones get CONNACK 3 unchecked instead of queueing (issue 18,
        defect 5), and the attempt whose turn comes, with the right password, gets in."""
        b = self.broker("handshake_timeout 2\n")
        self.fail_once(b)
        off = log_offset(b)
        clients = []
        for _ in range(12):
            c = RawClient(b.port)
            self.addCleanup(c.close)
            c.send(connect_packet(client_id=uid("q"), username="alice", password="right"))
            clients.append(c)
        codes = []
        for c in clients:
            first, body = c.expect(2)
            codes.append(body[1])
        self.assertIn(3, codes, codes)
        self.assertIn(0, codes, codes)
        wait_log_line(self, b, "took its turn", offset=off)


class TestNeverReads(unittest.TestCase):
    def test_client_that_never_reads_is_disconnected(self):
        """Deliveries beyond 4 x max_output_buffer to a client that reads nothing
        disconnect it (QoS 1/2 are not dropped like QoS 0), and everyone else
        keeps being served."""
        b = start_broker(self, "max_output_buffer 65536\nmax_inflight_messages 0\n"
                               "max_queued_messages 0\n")
        t = uid("t")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", b.port))
        sub = RawClient(0, sock=s)
        self.addCleanup(sub.close)
        sid = uid("deaf")
        self.assertEqual(sub.connect(client_id=sid, keepalive=0)[1], 0)
        sub.send(subscribe_packet([(t, 1)], pid=1))
        off = log_offset(b)
        pub = connect(self, b)
        for i in range(400):  # 400 x 10 KB = 4 MB against a 256 KB hard limit
            pub.send(publish_packet(t, b"x" * 10000, qos=1, pid=i + 1))
            pub.wait_for(4)
        wait_log_line(self, b, sid, "client does not read", offset=off)
        pingable(self, b)


if __name__ == "__main__":
    unittest.main()
