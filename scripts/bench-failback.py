#!/usr/bin/python3
"""bench-failback.py -- a bridge with `round_robin false` going back to its
main address, measured (docs/bridge.md, "Back to the main address").

Two Debian mosquittos: the main one down at start, the backup up. secbroker
bridges `fb/#` (QoS 1) to them. A local client publishes QoS 1 on fb/N and,
after each PUBACK, times a local QoS 0 round trip (publish -> local
subscriber) on another topic, every 5 ms, from before the main broker starts
until 2 s after the bridge reconnected to it. Prints: the time from the main
broker listening to the switch log line and to the CONNACK from the main
address, the round trips before and during the switch (p50/p99/max), and
how many of the QoS 1 messages reached the two remotes (unique; a message
the backup had not acknowledged may arrive twice).

Run from the repository root after `make`: /usr/bin/python3 scripts/bench-failback.py
Takes about 15 s.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from mqttlib import MOSQUITTO, make_broker, publish, recv_publish, subscribe  # noqa: E402
from mqttlib import Client  # noqa: E402


def client(broker):
    c = Client(broker.port)
    c.connect(client_id="fb-%d-%d" % (os.getpid(), time.monotonic_ns() % 10**9))
    return c


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6 if xs else float("nan")


def drain(c, got):
    while c.has_data():
        m = recv_publish(c)
        got.add(m.payload)


def main():
    main_b = make_broker("", binary=MOSQUITTO)
    backup = make_broker("", binary=MOSQUITTO)
    backup.start()
    conf = ("connection b1\naddress 127.0.0.1:%d 127.0.0.1:%d\nremote_clientid rc-fb\n"
            "restart_timeout 1\ntopic fb/# out 1\n" % (main_b.port, backup.port))
    local = make_broker(conf)
    local.start()
    try:
        local.wait_log("Bridge b1 connected to 127.0.0.1:%d" % backup.port)
        bs = client(backup)
        subscribe(bs, [("fb/#", 1)])
        lp, ls, rt = client(local), client(local), client(local)
        subscribe(ls, [("rt/x", 0)])
        got, sent, before, during = set(), 0, [], []
        t_main = t_switch = t_conn = None
        start = time.monotonic()
        ms = None
        while True:
            now = time.monotonic()
            if t_main is None and now - start > 3:
                main_b.start()
                t_main = time.monotonic()
                ms = client(main_b)
                subscribe(ms, [("fb/#", 1)])
            log = local.log()
            if t_main and t_switch is None and "leaving 127.0.0.1:%d" % backup.port in log:
                t_switch = time.monotonic()
            if t_switch and t_conn is None and log.count("Bridge b1 connected") >= 2:
                t_conn = time.monotonic()
            if t_conn and now - t_conn > 2:
                break
            if now - start > 30:
                raise SystemExit("no switch within 30 s:\n" + log[-2000:])
            publish(lp, "fb/%d" % sent, b"%d" % sent, qos=1)
            sent += 1
            t0 = time.perf_counter()
            rt.send(bytes([0x30, 7, 0, 4]) + b"rt/x" + b"x")
            recv_publish(ls)
            (during if t_main else before).append(time.perf_counter() - t0)
            drain(bs, got)
            if ms:
                drain(ms, got)
            time.sleep(0.005)
        deadline = time.monotonic() + 10
        while len(got) < sent and time.monotonic() < deadline:
            for c in (bs, ms):
                if c.has_data():
                    got.add(recv_publish(c).payload)
            time.sleep(0.01)
        print("main broker listening -> switch line: %.2f s, -> CONNACK from main: %.2f s"
              % (t_switch - t_main, t_conn - t_main))
        print("local QoS 0 round trip before the main broker started: n=%d p50 %.0f us p99 %.0f us"
              " max %.0f us" % (len(before), pct(before, .5), pct(before, .99), pct(before, 1)))
        print("... from then to 2 s after the switch:                  n=%d p50 %.0f us p99 %.0f us"
              " max %.0f us" % (len(during), pct(during, .5), pct(during, .99), pct(during, 1)))
        print("QoS 1 published locally: %d, arrived (unique, both remotes): %d" % (sent, len(got)))
    finally:
        for b in (local, backup, main_b):
            b.cleanup()


if __name__ == "__main__":
    main()
