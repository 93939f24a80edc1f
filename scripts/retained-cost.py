#!/usr/bin/python3
"""retained-cost.py -- memory and CPU a broker spends on N retained messages
(distinct topics, one publisher with a client id and a username), e.g. to see
what recording the publisher of each retained message (check_retain_source)
costs. Usage: scripts/retained-cost.py [-n N] [--conf-extra TEXT] BINARY...
Prints, per binary: RSS growth in bytes per message and broker CPU seconds.
Timing is informative only (shared machine); RSS is the figure to compare."""
import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "integration"))
from brokerlib import connect_packet, free_port, publish_packet, wait_port  # noqa: E402


def rss_and_cpu(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def ping(s):
    s.sendall(b"\xc0\x00")
    buf = b""
    while not buf.endswith(b"\xd0\x00"):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("broker closed the connection")
        buf += chunk


def run(binary, n, extra):
    d = tempfile.mkdtemp(prefix="retained-cost-")
    port = free_port()
    conf = os.path.join(d, "broker.conf")
    with open(conf, "w") as f:
        f.write("allow_anonymous true\nlog_dest none\n%s\nlistener %d 127.0.0.1\n" % (extra, port))
    p = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port):
            raise RuntimeError("%s did not listen" % binary)
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(connect_packet(client_id="retained-publisher-01", username="sensor-user-01"))
        s.recv(4)
        ping(s)
        time.sleep(0.2)
        rss0, cpu0 = rss_and_cpu(p.pid)
        batch = b""
        for i in range(n):
            batch += publish_packet("site/building/room%06d/temperature" % i, b"21.5 C sensor ok",
                                    qos=0, retain=True)
            if len(batch) > 65536:
                s.sendall(batch)
                batch = b""
        s.sendall(batch)
        ping(s)
        rss1, cpu1 = rss_and_cpu(p.pid)
        s.close()
        return (rss1 - rss0) / n, cpu1 - cpu0
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--conf-extra", default="")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    for b in a.binaries:
        per, cpu = run(b, a.n, a.conf_extra.replace("\\n", "\n"))
        print("%s %s: %d retained messages: RSS +%.0f bytes/message, broker CPU %.2f s"
              % (b, a.conf_extra or "(defaults)", a.n, per, cpu))


if __name__ == "__main__":
    main()
