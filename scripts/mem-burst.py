#!/usr/bin/python3
"""Memory under non-readers (issue 18 defect 2): NSUBS subscribers that never
read (4 KiB receive buffers) and one publisher's burst of 17.6 MB of QoS 0
(1,100 x 16,000 bytes). Prints the broker's peak RSS (VmHWM) before and after
the burst. Usage: scripts/mem-burst.py BINARY ["CONFIG LINES"]
e.g. scripts/mem-burst.py build/secbroker "memory_limit 8388608"
"""
import os, socket, struct, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
from mqttlib import *
KEY = "VmHWM"
def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith(KEY + ":"): return int(l.split()[1])
def run(binary, conf, nsubs=100, burst=17_600_000, size=16000):
    b = make_broker(conf, binary=os.path.abspath(binary))
    b.start()
    try:
        pid = b.proc.pid
        subs = []
        for i in range(nsubs):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", b.port)); c = Client(b.port, sock=s)
            c.send(connect_packet("nr%d" % i)); c.expect(2)
            subscribe(c, "burst/t"); subs.append(c)
        time.sleep(0.3)
        r0 = rss_kb(pid)
        pub = Client(b.port); pub.send(connect_packet("pub")); pub.expect(2)
        payload = b"x" * size
        pkt = publish_packet("burst/t", payload)
        n = burst // size
        sent = 0
        try:
            for i in range(0, n, 50):
                pub.send(pkt * min(50, n - i)); sent += min(50, n - i)
            publish(pub, "done/t", b"", qos=1)
            ok = True
        except Exception as e:
            ok = "publisher: %r" % e
        time.sleep(1.5)
        r1 = rss_kb(pid)
        log = b.log()
        return dict(hwm_before_mb=r0/1024, hwm_after_mb=r1/1024, sent=sent, publisher=ok,
                    memlog=[l[24:] for l in log.splitlines() if "memory_limit" in l or "dropping QoS 0" in l][:4])
    finally:
        b.cleanup()
if __name__ == "__main__":
    binary = sys.argv[1]; conf = sys.argv[2].replace("\\n", "\n") if len(sys.argv) > 2 else ""
    print(binary, repr(conf), run(binary, conf))
