"""build/secbench against build/secbroker: short fan-in and fan-out runs,
plain and TLS, whose SECBENCH summary line must parse and whose message
counts must agree with what Debian's mosquitto_sub counts on the same topics.

Counts, not timing: every run uses --count (messages per publisher), so the
expected totals are exact; timeouts are generous upper bounds only.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from mqttlib import BUILD, ROOT, Broker, need

SECBENCH = os.path.join(BUILD, "secbench")
WAIT = 60.0


def parse_summary(stdout):
    """The last line starting with 'SECBENCH ' as a dict (values as strings)."""
    lines = [l for l in stdout.splitlines() if l.startswith("SECBENCH ")]
    if not lines:
        raise AssertionError("no SECBENCH summary line in:\n" + stdout)
    if stdout.strip().splitlines()[-1] != lines[-1]:
        raise AssertionError("the SECBENCH line is not the last line:\n" + stdout)
    out = {}
    for word in lines[-1].split()[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise AssertionError("bad summary word %r in %r" % (word, lines[-1]))
        out[key] = value
    return out


class Counter:
    """mosquitto_sub -C N on a filter, one line per message (-F %t: the topic,
    since secbench payloads are binary). Waits until the broker logged the
    subscription, so nothing published afterwards can be missed."""

    def __init__(self, broker, filter_, expected, qos=1, client_id="benchcount"):
        self.proc = subprocess.Popen(
            [need("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-i", client_id,
             "-q", str(qos), "-t", filter_, "-C", str(expected), "-W", str(int(WAIT)), "-F", "%t"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        broker.wait_log("%s subscribed to '%s'" % (client_id, filter_), timeout=WAIT)

    def result(self):
        out, err = self.proc.communicate(timeout=WAIT + 10)
        lines = [l for l in out.splitlines() if l.strip()]
        return self.proc.returncode, lines, err


class BenchTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need(SECBENCH)
        need("mosquitto_sub")
        cls.pki = tempfile.mkdtemp(prefix="secbench-pki-")
        subprocess.run(["sh", os.path.join(ROOT, "scripts", "mkcerts.sh"), cls.pki], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tls = "\n".join(["listener {port} 127.0.0.1",
                         "certfile %s" % os.path.join(cls.pki, "server.crt"),
                         "keyfile %s" % os.path.join(cls.pki, "server.key"),
                         "tls_version tlsv1.2",
                         "ciphers ECDHE-ECDSA-AES128-GCM-SHA256"])
        cls.broker = Broker(conf="max_queued_messages 10000", listeners=[tls])
        cls.broker.start()

    @classmethod
    def tearDownClass(cls):
        cls.broker.cleanup()
        shutil.rmtree(cls.pki, ignore_errors=True)

    def bench(self, *args, tls=False):
        argv = [SECBENCH, "-h", "127.0.0.1", "--pid", str(self.broker.proc.pid)]
        if tls:
            argv += ["-p", str(self.broker.ports[1]), "--cafile", os.path.join(self.pki, "ca.crt")]
        else:
            argv += ["-p", str(self.broker.port)]
        p = subprocess.run(argv + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=WAIT)
        self.assertEqual(p.returncode, 0, "secbench failed:\n%s\n%s" % (p.stdout, p.stderr))
        return parse_summary(p.stdout)

    def check_counts(self, s, sent, delivered):
        self.assertEqual(int(s["sent"]), sent)
        self.assertEqual(int(s["expected"]), delivered)
        self.assertEqual(int(s["delivered"]), delivered)
        self.assertEqual(int(s["lost"]), 0)
        self.assertEqual(int(s["dup"]), 0)
        self.assertEqual(int(s["errors"]), 0)
        for key in ("msgs_per_s", "lat_p50_us", "lat_p99_us", "lat_max_us", "broker_cpu_s"):
            float(s[key])  # present and numeric (a value, never asserted)
        self.assertGreater(int(s["broker_rss_kb"]), 0)

    def fan_in(self, prefix, qos, tls, rate):
        n, count = 3, 40
        counter = Counter(self.broker, prefix + "/#", n * count, qos=qos, client_id=prefix + "count")
        args = ["--scenario", "fan-in", "-n", str(n), "--count", str(count), "-q", str(qos),
                "-t", prefix, "-s", "100"]
        if rate:
            args += ["--rate", str(rate)]
        s = self.bench(*args, tls=tls)
        self.assertEqual(s["scenario"], "fan-in")
        self.assertEqual(s["tls"], "1" if tls else "0")
        self.assertEqual((s["pubs"], s["subs"], s["qos"]), (str(n), "1", str(qos)))
        self.check_counts(s, n * count, n * count)
        if qos:
            self.assertEqual(int(s["acked"]), n * count)
        rc, lines, err = counter.result()
        self.assertEqual(rc, 0, err)
        # mosquitto_sub saw exactly what secbench sent and delivered
        self.assertEqual(len(lines), int(s["sent"]))
        self.assertEqual(len(lines), int(s["delivered"]))
        self.assertEqual(sorted(set(lines)), ["%s/in/%d" % (prefix, i) for i in range(n)])

    def fan_out(self, prefix, qos, tls, rate):
        m, count = 4, 50
        counter = Counter(self.broker, prefix + "/out", count, qos=qos, client_id=prefix + "count")
        args = ["--scenario", "fan-out", "-m", str(m), "--count", str(count), "-q", str(qos),
                "-t", prefix]
        if rate:
            args += ["--rate", str(rate)]
        s = self.bench(*args, tls=tls)
        self.assertEqual(s["scenario"], "fan-out")
        self.assertEqual((s["pubs"], s["subs"]), ("1", str(m)))
        self.check_counts(s, count, count * m)
        rc, lines, err = counter.result()
        self.assertEqual(rc, 0, err)
        # one more subscriber on the same topic: it got every message once
        self.assertEqual(len(lines), int(s["sent"]))
        self.assertEqual(len(lines) * m, int(s["delivered"]))

    def test_fan_in_plain_qos1(self):
        self.fan_in("tbinp1", 1, False, 0)

    def test_fan_in_plain_qos0_rate(self):
        # QoS 0 at a modest fixed rate: nothing is dropped on loopback
        self.fan_in("tbinp0", 0, False, 300)

    def test_fan_in_tls_qos1(self):
        self.fan_in("tbint1", 1, True, 0)

    def test_fan_out_plain_qos0(self):
        self.fan_out("tboutp0", 0, False, 0)

    def test_fan_out_tls_qos1(self):
        self.fan_out("tboutt1", 1, True, 0)

    def test_mqtt5_fan_out(self):
        """-V 5: every connection speaks MQTT 5 (the broker logs them so); counts exact."""
        m, count = 3, 40
        s = self.bench("--scenario", "fan-out", "-m", str(m), "--count", str(count), "-q", "1",
                       "-t", "tbv5", "-V", "5")
        self.check_counts(s, count, count * m)
        self.assertIn("(MQTT 5.0,", self.broker.log())

    def test_shared_fan_in(self):
        """--shared K: K subscribers in one $share group get each message once in all."""
        n, count, k = 3, 40, 4
        s = self.bench("--scenario", "fan-in", "-n", str(n), "--count", str(count), "-q", "1",
                       "-t", "tbsh", "--filter", "tbsh/#", "--shared", str(k))
        self.assertEqual((s["pubs"], s["subs"]), (str(n), str(k)))
        self.check_counts(s, n * count, n * count)

    def test_fan_out_tls_qos0_rate(self):
        self.fan_out("tboutt0", 0, True, 200)

    def test_storm_and_idle_summaries(self):
        s = self.bench("--scenario", "storm", "-n", "4", "-d", "0.5", "--resumed", tls=True)
        self.assertEqual((s["scenario"], s["mode"]), ("storm", "resumed"))
        self.assertGreater(int(s["connections"]), 0)
        self.assertEqual(int(s["failed"]), 0)
        s = self.bench("--scenario", "idle", "-n", "20", "-d", "0", tls=True)
        self.assertEqual((s["scenario"], s["held"], s["still"]), ("idle", "20", "20"))
        int(s["rss_after_kb"])

    def test_usage(self):
        p = subprocess.run([SECBENCH, "--help"], stdout=subprocess.PIPE, text=True, timeout=WAIT)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--scenario", p.stdout)
        p = subprocess.run([SECBENCH, "--scenario", "nonsense"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=WAIT)
        self.assertEqual(p.returncode, 64)
        self.assertIn("nonsense", p.stderr)


if __name__ == "__main__":
    unittest.main()
