"""tshark (Wireshark 4.0) decrypting secbroker's TLS with the broker's key log
(`tls_keylog_file`), the way lab students watch MQTT in Wireshark: capture one
TLS session on lo, then decode it with `-o tls.keylog_file:KEYLOG -d
tcp.port==PORT,tls -d tls.port==PORT,mqtt`. With the key log, MQTT Connect,
Subscribe (with its topic filter) and Publish (topic and payload, both
directions) are visible; without it no MQTT is, and the payload never
appears in clear in the capture file.

The capture helpers are tlslib's (Capture waits with probe connections until
packets really reach the file, and for both FINs of a session before it
stops). Timeouts are upper bounds only.
"""
import os
import shutil
import socket
import time

from interoplib import InteropCase, certs, feature, tls_block, tshark_version
from mqttlib import (WAIT, client_port, connect_packet, publish, recv_publish, run, spawn,
                     start_broker, subscribe, uid, wait_log)
from tlslib import Capture, TLSClient, client_context, tshark_mqtt, tshark_mqtt_messages

CONNECT, PUBLISH, SUBSCRIBE = 1, 3, 8


class TestTshark(InteropCase):
    """A secbroker TLS listener with tls_keylog_file, one per test."""

    @classmethod
    def peer(cls):
        return "tshark %s" % tshark_version()

    def setUp(self):
        self.assertTrue(shutil.which("tshark"), "tshark not installed (make test installs it)")
        self.broker = start_broker(self, plain=False, listeners=[
            tls_block(extra=["tls_keylog_file {dir}/keylog.txt"])])
        self.port = self.broker.port
        self.keylog = os.path.join(self.broker.dir, "keylog.txt")
        self.pcap = os.path.join(self.broker.dir, "capture.pcapng")
        self.cap = Capture(self.port, self.pcap)
        self.addCleanup(self.cap.stop)
        self.cap.wait_ready()

    def stop_capture(self, client_ports):
        """Wait until the end of every session is on disk, then stop tshark: both
        FINs, or a RST from either side. (mosquitto_pub/sub close their socket
        right after DISCONNECT, so the broker's close_notify may get a RST back;
        and when the broker closes with the client's close_notify still unread,
        its kernel sends a RST instead of a FIN.) dumpcap hands packets to
        the file in blocks, so the last ones of a quiet capture can wait there:
        while they are missing we open probe connections (like
        Capture.wait_ready) to push them out."""
        deadline = time.time() + WAIT
        for cport in client_ports:
            for src in (cport, self.port):
                cond = ("tcp.port==%d && (tcp.flags.reset==1 || (tcp.srcport==%d && "
                        "tcp.flags.fin==1))" % (cport, src))
                while True:
                    try:
                        self.cap.wait_frames(cond, timeout=2.0)
                        break
                    except AssertionError:
                        if time.time() > deadline:
                            raise
                        socket.create_connection(("127.0.0.1", self.port), timeout=WAIT).close()
        self.cap.stop()

    def check_decoded(self, client_ports, topic, payload, subscriber, publisher):
        """With the key log: Connect from every client, the subscriber's Subscribe
        naming the filter, the publisher's Publish and the broker's Publish to the
        subscriber, each with topic and payload. Without it: nothing."""
        with open(self.pcap, "rb") as f:
            self.assertNotIn(payload, f.read(), "the payload is in the capture in clear text")
        self.assertTrue(os.path.getsize(self.keylog) > 0, "the broker wrote no key log")
        msgs = tshark_mqtt_messages(self.pcap, self.port, self.keylog)
        seen = [(m["type"], m["src"], m["topic"]) for m in msgs]
        for cport in client_ports:
            self.assertIn(CONNECT, [m["type"] for m in msgs if m["src"] == cport],
                          "no MQTT Connect decoded from client port %d: %r" % (cport, seen))
        self.assertIn((SUBSCRIBE, subscriber, topic), seen,
                      "no MQTT Subscribe with the topic decoded: %r" % seen)
        pubs = [(m["src"], m["topic"], m["payload"]) for m in msgs if m["type"] == PUBLISH]
        self.assertIn((publisher, topic, payload), pubs,
                      "no MQTT Publish (client to broker) decoded: %r" % pubs)
        self.assertIn((self.port, topic, payload), pubs,
                      "no MQTT Publish (broker to subscriber) decoded: %r" % pubs)
        self.assertEqual(tshark_mqtt(self.pcap, self.port), [],
                         "MQTT decoded without the key log")

    @feature("decrypt Connect/Subscribe/Publish with the broker's key log")
    def test_decrypt_one_session(self):
        """One TLS client (Python ssl, raw MQTT) connects, subscribes, publishes QoS 1
        to itself and receives it, disconnects."""
        topic, payload = uid("wire/t"), ("payload-" + uid("p")).encode()
        cid = uid("wire")
        c = TLSClient(self.port, client_context(certs()), client_id=cid)
        self.addCleanup(c.close)
        c.send(connect_packet(client_id=cid))
        self.assertEqual(c.wait_for(2)[1], b"\x00\x00", "CONNACK")
        self.assertEqual(subscribe(c, [(topic, 1)]), [1])
        publish(c, topic, payload, qos=1)
        self.assertEqual(recv_publish(c).payload, payload)
        c.send(b"\xe0\x00")  # DISCONNECT
        closed, _ = c.read_all_until_closed(WAIT)
        self.assertTrue(closed, "broker did not close after DISCONNECT")
        c.close()
        cport = int(c.peer.rsplit(":", 1)[1])
        wait_log(self.broker, "Client %s" % cid, "disconnected")
        self.stop_capture([cport])
        self.check_decoded([cport], topic, payload, subscriber=cport, publisher=cport)

    @feature("decrypt mosquitto_sub/mosquitto_pub sessions (lab scenario)")
    def test_decrypt_mosquitto_clients(self):
        """The lab exercise: mosquitto_sub and mosquitto_pub over TLS (--cafile);
        tshark shows mosquitto_sub's Subscribe, mosquitto_pub's Publish and the
        broker's Publish to mosquitto_sub, with topic and payload."""
        topic, payload = uid("lab/wire"), ("lab-" + uid("p")).encode()
        sid, pid = uid("lab-sub"), uid("lab-pub")
        conn = ["-h", "127.0.0.1", "-p", str(self.port), "--cafile", certs()["ca.crt"]]
        sub = spawn(self, ["mosquitto_sub"] + conn + ["-t", topic, "-q", "1", "-C", "1", "-d",
                                                      "-W", str(int(WAIT)), "-i", sid],
                    line_buffered=True)
        sub.wait_line(lambda l: l.startswith(b"Subscribed (mid"), "SUBACK")
        rc, out, err = run(["mosquitto_pub"] + conn + ["-t", topic, "-q", "1", "-m",
                                                       payload.decode(), "-i", pid], text=True)
        self.assertEqual(rc, 0, "mosquitto_pub: %s %s" % (out, err))
        self.assertEqual(sub.wait(), 0, sub.describe())
        self.assertIn(payload, sub.stdout_lines())
        sport, pport = client_port(self.broker, sid), client_port(self.broker, pid)
        wait_log(self.broker, "Client %s" % sid, "disconnected")
        self.stop_capture([sport, pport])
        self.check_decoded([sport, pport], topic, payload, subscriber=sport, publisher=pport)
