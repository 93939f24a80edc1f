#!/usr/bin/python3
"""mem-burst.py -- memory under subscribers that never read (issue 18 defect 2).

NSUBS plain subscribers that never read (4 KiB receive buffers) on one topic,
then one publisher's burst of 17.6 MB of QoS 0 (1,100 x 16,000 bytes,
pipelined), then a QoS 1 PUBLISH that must be acknowledged. Measured: the
broker's peak RSS (VmHWM) before and after the burst, and from $SYS
(sys_interval 1) the QoS 0 messages it dropped and the PUBLISHes it refused.

  scripts/mem-burst.py                   all rows (make bench-mem): secbroker,
                                         secbroker with memory_limit, Debian's
                                         mosquitto with and without it; writes
                                         --out (default build/bench/memburst.md)
  scripts/mem-burst.py BINARY ["CONFIG"] one row, e.g.
      scripts/mem-burst.py build/secbroker "memory_limit 8388608"

Each row prints one line: MEMBURST broker=... conf=... hwm_before_kb=...
hwm_after_kb=... sent=... publisher=ok|... dropped=... refused=...
Every number is measured; the report takes the median of --runs runs
(default: $BENCH_RUNS, else 1) on a fresh broker each.
"""
import argparse
import os
import socket
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from mqttlib import (MOSQUITTO, PUBLISH, Client, connect_packet, make_broker,  # noqa: E402
                     parse_publish, publish, publish_packet, subscribe)

SECBROKER = os.path.join(ROOT, "build", "secbroker")
LIMIT = 8388608  # memory_limit of the limited rows: well under the 17.6 MB burst
ROWS = [  # (label, binary, config)
    ("secbroker (message references)", SECBROKER, ""),
    ("secbroker, `memory_limit %d`" % LIMIT, SECBROKER, "memory_limit %d" % LIMIT),
    ("mosquitto (Debian)", MOSQUITTO, ""),
    ("mosquitto, `memory_limit %d`" % LIMIT, MOSQUITTO, "memory_limit %d" % LIMIT),
]
# secbroker counts memory_limit's QoS 0 drops apart from the others
SYS_TOPICS = {"publish/messages/dropped": "dropped", "memory_limit/qos0 dropped": "dropped_ml",
              "memory_limit/publishes refused": "refused"}


def hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)


def non_reader(port, cid):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    c = Client(port, sock=s)
    c.send(connect_packet(cid))
    c.expect(2)
    subscribe(c, "burst/t")
    return c


def sys_counters(port, wait=2):
    """The $SYS counters of SYS_TOPICS (retained, updated every second);
    -1 for one the broker does not publish (mosquitto has no refusals)."""
    time.sleep(wait)  # past one sys_interval after the burst
    c = Client(port, timeout=1)
    c.send(connect_packet("membench-sys"))
    c.expect(2)
    subscribe(c, [("$SYS/broker/" + t, 0) for t in SYS_TOPICS])
    got = {v: -1 for v in SYS_TOPICS.values()}
    end = time.time() + 3
    while time.time() < end and -1 in got.values():  # mosquitto: until the end
        try:
            first, body = c.wait_for(PUBLISH, timeout=1)
        except (socket.timeout, EOFError):
            continue
        topic, payload = parse_publish(first, body)[:2]
        key = SYS_TOPICS.get(topic[len("$SYS/broker/"):])
        if key:
            got[key] = int(payload.split()[0])
    c.close()
    if got["dropped_ml"] > 0:
        got["dropped"] += got["dropped_ml"]
    del got["dropped_ml"]
    return got


NSUBS, BURST, SIZE = 100, 17_600_000, 16000


def run(binary, conf, nsubs=NSUBS, burst=BURST, size=SIZE):
    b = make_broker("sys_interval 1\n" + conf, binary=os.path.abspath(binary))
    b.start()
    subs = []
    try:
        subs = [non_reader(b.port, "nr%d" % i) for i in range(nsubs)]
        time.sleep(0.3)
        before = hwm_kb(b.proc.pid)
        pub = Client(b.port)
        pub.send(connect_packet("pub"))
        pub.expect(2)
        pkt = publish_packet("burst/t", b"x" * size)
        n, sent = burst // size, 0
        try:
            for i in range(0, n, 50):
                pub.send(pkt * min(50, n - i))
                sent += min(50, n - i)
            publish(pub, "done/t", b"", qos=1)
            outcome = "ok"
        except (OSError, EOFError, AssertionError) as e:
            outcome = "closed(%s)" % type(e).__name__  # refused: disconnected
        time.sleep(1.5)
        after = hwm_kb(b.proc.pid)
        # the counters once the non-readers are gone: while memory is over
        # 7/8 of memory_limit, QoS 0 to a client with output pending (as
        # after its SUBACK) is dropped, $SYS included
        for c in subs:
            c.close()
        counters = sys_counters(b.port)
        return dict(hwm_before_kb=before, hwm_after_kb=after, sent=sent, publisher=outcome,
                    **counters)
    finally:
        for c in subs:
            c.close()
        b.cleanup()


def line(binary, conf, r):
    return ("MEMBURST broker=%s conf=%r " % (os.path.basename(binary), conf)
            + " ".join("%s=%s" % kv for kv in r.items()))


def mb(kb):
    return "{:,.1f} MB".format(kb / 1024)


def report(runs, out):
    rows = []
    for label, binary, conf in ROWS:
        if not os.access(binary, os.X_OK):
            sys.exit("mem-burst: %s is missing (make; apt-get install mosquitto)" % binary)
        res = []
        for _ in range(runs):
            r = run(binary, conf)
            print(line(binary, conf, r), flush=True)
            res.append(r)
        med = {k: statistics.median_low(r[k] for r in res)
               for k in ("hwm_before_kb", "hwm_after_kb", "dropped", "refused")}
        pubs = sorted({"ok" if r["publisher"] == "ok" else
                       "disconnected after {:,} of {:,} sent".format(r["sent"], BURST // SIZE)
                       for r in res})
        rows.append("| %s | %s | %s | %s | %s | %s |" % (
            label, mb(med["hwm_before_kb"]), mb(med["hwm_after_kb"]),
            "{:,}".format(med["dropped"]),
            "-" if med["refused"] < 0 else "{:,}".format(med["refused"]), ", ".join(pubs)))
    text = MD % {"runs": runs, "rows": "\n".join(rows), "date": time.strftime("%Y-%m-%d")}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text)


MD = """## Memory under subscribers that never read (issue 18 defect 2)

`scripts/mem-burst.py` (`make bench-mem` runs only this table): 100 plain
subscribers that never read (4 KiB receive buffers) on one topic, then one
publisher's burst of 17.6 MB of QoS 0 (1,100 x 16,000 bytes, pipelined),
then a QoS 1 PUBLISH that must be acknowledged. Figures: the broker's peak
RSS (VmHWM) before and after the burst, and from `$SYS` the QoS 0 messages
dropped and the PUBLISHes refused; median of %(runs)s run(s) on a fresh broker
each, %(date)s. Defaults otherwise (secbroker: max_output_buffer 16 MiB).

| broker | peak RSS before | peak RSS after the burst | QoS 0 dropped | PUBLISHes refused | publisher |
|---|---|---|---|---|---|
%(rows)s

Before the fix (each non-reader held up to 16 MiB of encoded copies)
secbroker reached 1,398.9 MB here. With references the burst costs the
messages once (17.6 MB) plus, per non-reader, an output buffer of at most
64 KiB to 128 KiB of encoded bytes and 16 bytes per owed message: memory
grows with messages, not messages x subscribers. The per-client policy
still counts owed bytes as output (QoS 0 dropped over max_output_buffer,
disconnect over the hard limit). "publisher": ok when its closing QoS 1
PUBLISH was acknowledged, else when the broker disconnected it (a refused
PUBLISH: Mosquitto's answer at its memory_limit). Mosquitto publishes no
count of refusals (-).
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", nargs="?")
    ap.add_argument("conf", nargs="?", default="")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "1")))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "memburst.md"))
    args = ap.parse_args()
    if args.binary:
        conf = args.conf.replace("\\n", "\n")
        print(line(args.binary, conf, run(args.binary, conf)))
    else:
        report(max(1, args.runs), args.out)


if __name__ == "__main__":
    main()
