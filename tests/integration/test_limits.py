"""Limits at their exact edge (issue 18, "tests that let a bug through"): each
test here fails on a one-line bug that the older tests let through.

- max_queued_messages N holds exactly N messages for an offline persistent
  session, and drops the N+1st.
- A subscriber that never reads is disconnected (not only logged) once its
  output buffer passes the hard limit (4 x max_output_buffer).
- A listener that sets `ciphers` still refuses TLS 1.1 (minimum TLS 1.2).
- A keepalive-1 client is closed on the first tick after 1.5 s of silence:
  asserted on the figure the broker logs, never on the test's own clock.

Timeouts are upper bounds for waiting, never pass/fail timing.
"""
import re
import socket
import time
import unittest

from mqttlib import (WAIT, Client, assert_closed, connect, connect_packet, log_offset, marker,
                     publish, publish_packet, recv_publish, start_broker, subscribe, uid,
                     wait_log_line)
from tlslib import make_certs, s_client, tls_block

CERTS = {}
TCP_ESTABLISHED = "01"


def broker_side_state(broker_port, client_port):
    """The kernel's TCP state (hex, as in /proc/net/tcp) of the broker's end of the
    connection 127.0.0.1:client_port -> broker_port, or None once it is gone."""
    want = ("0100007F:%04X" % broker_port, "0100007F:%04X" % client_port)
    with open("/proc/net/tcp") as f:
        for row in f.readlines()[1:]:
            cols = row.split()
            if (cols[1], cols[2]) == want:
                return cols[3]
    return None


def wait_broker_side_closed(broker_port, client_port, timeout=WAIT):
    """Whether the broker closes its end (leaves ESTABLISHED) within timeout."""
    deadline = time.time() + timeout
    while broker_side_state(broker_port, client_port) == TCP_ESTABLISHED:
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def certs():
    if not CERTS:
        from mqttlib import TempDir
        d = TempDir("secbroker-limits-pki-")
        unittest.addModuleCleanup(d.cleanup)
        CERTS.update(make_certs(d.path))
    return CERTS


class TestOfflineQueue(unittest.TestCase):
    N = 5

    def test_offline_queue_holds_exactly_max_queued_messages(self):
        """max_queued_messages 5: of 6 QoS 1 messages published while the persistent
        subscriber is offline, the first 5 arrive after it reconnects, in order, and the
        6th was dropped (logged): the next message after them is one published now."""
        b = start_broker(self, "max_queued_messages %d\n" % self.N)
        t, cid = uid("q"), uid("persist")
        sub = connect(self, b, cid, clean=False)
        self.assertEqual(subscribe(sub, [(t, 1)]), [1])
        sub.send(b"\xe0\x00")  # DISCONNECT: the session stays
        assert_closed(self, sub)
        pub = connect(self, b)
        off = log_offset(b)
        for i in range(self.N + 1):
            publish(pub, t, b"m%d" % i, qos=1)
        wait_log_line(self, b, cid, "queue full", "max_queued_messages %d" % self.N, offset=off)
        sub = connect(self, b, cid, clean=False, expect_sp=1)
        publish(pub, t, b"end", qos=1)  # queued ones go first (one session keeps order)
        got = []
        while not got or got[-1] != b"end":
            got.append(recv_publish(sub).payload)
        self.assertEqual(got, [b"m%d" % i for i in range(self.N)] + [b"end"],
                         "an offline queue of max_queued_messages %d must hold %d messages "
                         "and drop the next" % (self.N, self.N))


class TestOutputBufferHardLimit(unittest.TestCase):

    def test_non_reader_is_disconnected_over_hard_limit(self):
        """A QoS 1 subscriber that never reads (tiny receive buffer, unlimited inflight
        window) is disconnected once its output buffer passes 4 x max_output_buffer
        (64 KiB here): the broker closes it, says why, and keeps serving the others."""
        b = start_broker(self, "max_output_buffer 65536\nmax_inflight_messages 0\n")
        t, cid = uid("hard"), uid("nonreader")
        stuck = Client(b.port, client_id=cid)
        self.addCleanup(stuck.close)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.send(connect_packet(client_id=cid))
        stuck.wait_for(2)
        self.assertEqual(subscribe(stuck, [(t, 1)]), [1])
        other = connect(self, b)
        subscribe(other, [(t, 0)])  # QoS 0 and reading: must keep getting messages
        pub = connect(self, b)
        off = log_offset(b)
        payload = b"h" * 60000
        line = ""
        # the kernel's socket buffers take a few MiB before the broker's own buffer
        # grows; 100 MiB without a disconnect is a failure
        for i in range(1700):
            pub.send(publish_packet(t, payload, qos=1, pid=i % 65535 + 1))
            pub.wait_for(4)
            self.assertEqual(recv_publish(other).payload, payload)
            if i % 20 == 19:
                line = next((l for l in b.log()[off:].splitlines()
                             if cid in l and "client does not read" in l), "")
                if line:
                    break
        self.assertIn("output buffer over 262144 bytes", line,
                      "the non-reader was never disconnected; log tail:\n%s" % b.log()[-2000:])
        # Reading the megabytes queued in the kernel through a 4 KiB window would take
        # minutes: ask the kernel instead whether the broker's end is still open.
        self.assertTrue(wait_broker_side_closed(b.port, stuck.sock.getsockname()[1]),
                        "the broker logged the disconnect but its end of the connection is "
                        "still ESTABLISHED")
        marker(self, other, pub, t, qos=0)


class TestTLS11WithCiphers(unittest.TestCase):

    def test_tls11_refused_on_listener_with_ciphers(self):
        """A listener whose `ciphers` list includes a suite TLS 1.1 could use
        (ECDHE-ECDSA-AES128-SHA) still has the TLS 1.2 minimum: a TLS 1.1-only
        ClientHello gets a protocol_version alert and the log says why. The client
        must really offer TLS 1.1 (SECLEVEL=0): if it cannot, the test fails."""
        b = start_broker(self, plain=False, listeners=[tls_block(
            certs(), extra=["ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA"])])
        off = log_offset(b)
        rc, out = s_client(b.port, "-tls1_1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
        self.assertNotIn("no protocols available", out,
                         "this openssl cannot offer TLS 1.1, so the test proves nothing")
        self.assertNotEqual(rc, 0, "TLS 1.1 handshake accepted:\n" + out)
        self.assertIn("alert protocol version", out)
        wait_log_line(self, b, "TLS handshake failed",
                      "client offered only TLS 1.1 while the minimum is TLS 1.2",
                      "(sent alert protocol_version)", offset=off)


# The figure the keepalive close must log (see test_keepalive_close_on_first_tick):
# "closed S.SSS s after the last packet", S.SSS = (the due time of the tick that
# closed the connection, on the absolute 100 ms tick schedule) - (time of the last
# packet), in milliseconds. The due time, not the time the loop woke up, so that a
# loaded machine cannot move it.
KEEPALIVE_FIGURE = re.compile(r"closed (\d+\.\d{3}) s after the last packet")
TICK = 0.1


class TestKeepalivePrecision(unittest.TestCase):

    def test_keepalive_close_on_first_tick(self):
        """keepalive 1: the broker closes the silent client on the first tick after
        1.5 s ([MQTT-3.1.2-24]), i.e. between 1.5 s and 1.5 s + the 100 ms tick after
        its last packet, by the broker's own account in the log."""
        b = start_broker(self)
        cid = uid("ka")
        c = connect(self, b, cid, keepalive=1)
        assert_closed(self, c)
        line = wait_log_line(self, b, cid, "keepalive timeout")
        m = KEEPALIVE_FIGURE.search(line)
        self.assertIsNotNone(m, "the keepalive close line does not say when, after the last "
                             "packet, it closed: %r" % line)
        after = float(m.group(1))
        self.assertGreaterEqual(after, 1.5, line)
        self.assertLessEqual(after, 1.5 + TICK + 0.0005, line)


if __name__ == "__main__":
    unittest.main()
