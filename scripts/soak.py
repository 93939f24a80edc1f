#!/usr/bin/python3
"""soak.py -- a long mixed load against one broker (not part of make test).

Runs for --minutes (default 30) against a broker it starts itself (default:
the ASan build, build-asan/secbroker, with a plain and a TLS listener and
persistence on): connect churn, QoS 0/1/2 publishers and subscribers,
retained messages, wills (connections dropped without DISCONNECT),
takeovers of the same client id, TLS and plain clients, and slow readers
that stop reading for a while. Client ids, will topics and persistent
sessions come from bounded pools, so the broker's state reaches a steady
size. Every --sample seconds it prints the broker's RSS next to its own
counters from $SYS (sys_interval 10): heap/current (under ASan the
sanitizer allocator's count), clients, offline sessions, subscriptions,
retained and stored messages. At the end the broker gets SIGTERM, and its
stderr is searched for AddressSanitizer / LeakSanitizer / UBSan reports.
(ASan keeps a quarantine of freed memory: 16 MB here.)

Flatness is judged from a third of the run to its end (minute 10 to 30):
the least-squares slope of RSS and of heap/current, flat when the fitted
growth over that window is at most 5% of the window's mean (at least 1 MB)
and at most 4 MB.

Prints one summary line: SOAK minutes=... rss_kb_first/last/max/slope_kb_min
rss_kb_flat heap_kb_first/last/max/slope_kb_min heap_kb_flat connects=...
published=... received=... sanitizer=clean|REPORT flat=yes|NO
Exit status 0 when the sanitizer output is clean, the broker survived and
both series are flat.

Usage: /usr/bin/python3 scripts/soak.py [--minutes 30] [--binary build-asan/secbroker]
Every connection goes to 127.0.0.1; every loop is bounded by the duration.
"""
import argparse
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from brokerlib import (RawClient, ack_packet, connect_packet, free_port,  # noqa: E402
                       parse_publish, publish_packet, subscribe_packet, wait_port)

STOP = threading.Event()
STATS = {"connects": 0, "published": 0, "received": 0, "errors": 0}
LOCK = threading.Lock()


def count(key, n=1):
    with LOCK:
        STATS[key] += n


class Conn(RawClient):
    """brokerlib's RawClient over plain TCP or TLS that sends CONNECT first."""

    def __init__(self, port, cid, tls_ctx=None, clean=True, will=None, keepalive=60):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls_ctx:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        super().__init__(port, timeout=10, sock=s)
        self.pid = 0
        self.send(connect_packet(client_id=cid, clean=clean, keepalive=keepalive, will=will))
        first, body = self.read_packet()
        if first >> 4 != 2:
            raise OSError("no CONNACK")
        count("connects")

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def handle(self, first, body):
        """Acknowledge what needs it; count PUBLISHes."""
        t = first >> 4
        if t == 3:
            count("received")
            qos = (first >> 1) & 3
            if qos:
                tl = struct.unpack("!H", body[:2])[0]
                pid = struct.unpack("!H", body[2 + tl:4 + tl])[0]
                self.send(ack_packet("puback" if qos == 1 else "pubrec", pid))
        elif t == 6:
            self.send(ack_packet("pubcomp", struct.unpack("!H", body[:2])[0]))
        elif t == 5:
            self.send(ack_packet("pubrel", struct.unpack("!H", body[:2])[0]))



def worker(kind, port, tls_port, ctx, seed):
    rnd = random.Random(seed)
    while not STOP.is_set():
        use_tls = rnd.random() < 0.3
        p, c = (tls_port, ctx) if use_tls else (port, None)
        # persistent sessions come from small pools of ids, so the broker's
        # state reaches a steady size and a growing RSS would mean a leak
        pool = {"takeover": 20, "sub": 40, "slow": 20}.get(kind, 1000000)
        cid = "soak-%s-%d" % (kind, rnd.randrange(pool))
        try:
            if kind == "churn":
                # will topics from a pool too: a retained will on a topic of its
                # own per client id (1,000,000 of them) is retained state that
                # grows for the whole run (about 8,000 topics a minute)
                will = ("soak/will/%d" % rnd.randrange(500), b"gone", rnd.randrange(3),
                        rnd.random() < 0.2)
                conn = Conn(p, cid, c, will=will)
                conn.close()  # no DISCONNECT: the will goes out
            elif kind == "takeover":
                conn = Conn(p, cid, c, clean=False)
                conn.send(subscribe_packet([("soak/t/#", 1)], pid=1))
                time.sleep(rnd.uniform(0, 0.5))
                conn.close()
            elif kind == "pub":
                conn = Conn(p, cid, c)
                for _ in range(rnd.randrange(50, 500)):
                    if STOP.is_set():
                        break
                    qos = rnd.randrange(3)
                    topic = "soak/%s/%d" % (rnd.choice("abc"), rnd.randrange(50))
                    payload = os.urandom(rnd.choice((10, 200, 4000)))
                    pid = conn.next_pid()
                    conn.send(publish_packet(topic, payload, qos=qos, retain=rnd.random() < 0.1,
                                                  pid=pid))
                    count("published")
                    if qos:
                        while True:
                            first, body = conn.read_packet()
                            conn.handle(first, body)
                            if first >> 4 in (4, 7) or (first >> 4 == 5 and qos == 2):
                                if first >> 4 == 5:
                                    continue  # PUBREL sent, wait for PUBCOMP
                                break
                conn.close()
            elif kind in ("sub", "slow"):
                conn = Conn(p, cid, c, clean=rnd.random() < 0.5)
                conn.send(subscribe_packet([("soak/#", rnd.randrange(3))], pid=1))
                end = time.time() + rnd.uniform(2, 15)
                conn.sock.settimeout(1)
                while time.time() < end and not STOP.is_set():
                    if kind == "slow" and rnd.random() < 0.1:
                        time.sleep(rnd.uniform(1, 5))  # stop reading for a while
                    try:
                        first, body = conn.read_packet()
                        conn.handle(first, body)
                    except socket.timeout:
                        pass
                conn.close()
        except (OSError, EOFError, ssl.SSLError):
            count("errors")
            time.sleep(0.1)


# $SYS topics sampled next to RSS (short name, topic under $SYS/broker/)
SYS_SERIES = [("heap_kb", "heap/current"), ("clients", "clients/total"),
              ("offline", "clients/disconnected"), ("subs", "subscriptions/count"),
              ("retained", "retained messages/count"), ("stored", "store/messages/count"),
              ("stored_kb", "store/messages/bytes")]
SYS = {}


def sys_monitor(port):
    """Keeps the latest value of every $SYS/broker/... topic in SYS."""
    while not STOP.is_set():
        try:
            conn = Conn(port, "soak-monitor", keepalive=60)
            conn.send(subscribe_packet([("$SYS/broker/#", 0)], pid=1))
            conn.sock.settimeout(1)
            last_ping = time.time()
            while not STOP.is_set():
                if time.time() - last_ping > 20:
                    conn.send(b"\xc0\x00")  # PINGREQ
                    last_ping = time.time()
                try:
                    first, body = conn.read_packet()
                except socket.timeout:
                    continue
                if first >> 4 == 3:
                    topic, payload = parse_publish(first, body)[:2]
                    SYS[topic[len("$SYS/broker/"):]] = payload.decode(errors="replace")
        except (OSError, EOFError):
            time.sleep(1)


def sys_value(topic):
    """A sampled $SYS counter as an int (kB for byte counts), or -1 before the first."""
    try:
        v = int(SYS[topic].split()[0])
    except (KeyError, ValueError, IndexError):
        return -1
    return v // 1024 if topic.endswith(("heap/current", "bytes")) else v


def slope(xs, ys):
    """Least-squares slope of ys over xs (per unit of x)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def judge(samples, key, start_min):
    """(slope in kB/min, growth over the window in kB, flat?) of one series
    from start_min to the end. Flat: the fitted growth over the window is at
    most 5% of the window's mean (at least 1 MB: the offline sessions' queues
    come and go with the load) and at most 4 MB, so a leak of 200 kB a
    minute over 20 minutes fails."""
    win = [(s["min"], s[key]) for s in samples if s["min"] >= start_min and s[key] >= 0]
    if len(win) < 3:
        return 0.0, 0.0, False
    xs, ys = zip(*win)
    k = slope(xs, ys)
    growth = k * (xs[-1] - xs[0])
    mean = sum(ys) / len(ys)
    return k, growth, growth <= min(max(0.05 * mean, 1024), 4096)


def make_certs(d):
    subprocess.run(["sh", os.path.join(ROOT, "scripts", "mkcerts.sh"), d], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build-asan", "secbroker"))
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="secbroker-soak-")
    make_certs(os.path.join(d, "certs"))
    port, tls_port = free_port(), free_port()
    with open(os.path.join(d, "b.conf"), "w") as f:
        f.write("allow_anonymous true\nlog_dest file %s/broker.log\npersistence true\n"
                "persistence_location %s\nmax_output_buffer 262144\nlistener %d 127.0.0.1\n"
                "listener %d 127.0.0.1\ncertfile %s/certs/server.crt\nkeyfile %s/certs/server.key\n"
                % (d, d, port, tls_port, d, d))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:halt_on_error=0:quarantine_size_mb=16",
               UBSAN_OPTIONS="print_stacktrace=1")
    err = open(os.path.join(d, "stderr.txt"), "w")
    broker = subprocess.Popen([args.binary, "-c", os.path.join(d, "b.conf")], stderr=err, env=env)
    if not (wait_port(port) and wait_port(tls_port)):
        sys.exit("broker did not start: see %s" % d)
    ctx = ssl.create_default_context(cafile=os.path.join(d, "certs", "ca.crt"))
    kinds = ["churn"] * 2 + ["takeover"] * 2 + ["pub"] * 3 + ["sub"] * 3 + ["slow"] * 2
    threads = [threading.Thread(target=worker, args=(k, port, tls_port, ctx, i), daemon=True)
               for i, k in enumerate(kinds)]
    for t in threads:
        t.start()
    threading.Thread(target=sys_monitor, args=(port,), daemon=True).start()
    samples = []
    t0 = time.time()
    end = t0 + args.minutes * 60
    while time.time() < end and broker.poll() is None:
        sample = {"min": (time.time() - t0) / 60, "rss_kb": rss_kb(broker.pid)}
        for name, topic in SYS_SERIES:
            sample[name] = sys_value(topic)
        samples.append(sample)
        print("  %5.1f min  " % sample["min"]
              + "  ".join("%s=%d" % (k, v) for k, v in sample.items() if k != "min")
              + "  connects=%(connects)d received=%(received)d" % STATS, flush=True)
        time.sleep(args.sample)
    STOP.set()
    for t in threads:
        t.join(timeout=30)
    alive = broker.poll() is None
    if alive:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=120)
    err.close()
    with open(os.path.join(d, "stderr.txt"), errors="replace") as f:
        text = f.read()
    bad = any(w in text for w in ("AddressSanitizer", "LeakSanitizer", "runtime error"))
    # flatness is judged from a third of the run on (minute 10 of 30): the
    # state bounded by the limits fills up during the first minutes
    start = args.minutes / 3
    verdict, flat = [], True
    for key in ("rss_kb", "heap_kb"):
        k, growth, ok = judge(samples, key, start)
        series = [s[key] for s in samples if s[key] >= 0] or [0]  # $SYS: after its first tick
        verdict.append("%s_first=%d %s_last=%d %s_max=%d %s_slope_kb_min=%.0f %s_flat=%s"
                       % (key, series[0], key, series[-1], key, max(series), key, k, key,
                          "yes" if ok else "NO"))
        flat = flat and ok
    print("SOAK minutes=%g %s connects=%d published=%d received=%d client_errors=%d "
          "broker_survived=%d exit=%s sanitizer=%s flat_from_min=%.0f flat=%s dir=%s"
          % (args.minutes, " ".join(verdict), STATS["connects"], STATS["published"],
             STATS["received"], STATS["errors"], alive, broker.returncode,
             "REPORT" if bad else "clean", start, "yes" if flat else "NO", d))
    sys.exit(0 if alive and not bad and flat else 1)


if __name__ == "__main__":
    main()
