"""The lab dashboard (web/) in a real browser: Debian's chromium, headless,
loads it from a websockets listener with http_dir (the repository's web/),
connects over MQTT over WebSockets, and must show a plain client and a TLS
client (with its TLS version, cipher suite, handshake kind and certificate
subject), a refused TLS handshake with its reason and the alert sent, and a
retained message in the live feed of its default filter lab/#.

chromium runs with a fresh profile and no network services, in its own
process group, stopped by its PID; the page is read with --dump-dom (retried:
the page fills in as $SYS messages arrive). DASHBOARD_SCREENSHOT=PATH also
saves a screenshot there (docs/dashboard.png is made that way).
Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import html
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import unittest

from brokerlib import ROOT, WAIT, Broker
from tlslib import make_certs, tls_block
from wslib import PahoClient, RawWS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEB = os.path.join(ROOT, "web")
ATTEMPTS = 8


def chromium(url, profile, *mode, timeout=180):
    """Run headless chromium once in its own process group; its stdout."""
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + profile, "--window-size=1400,1000",
            "--virtual-time-budget=8000"] + list(mode) + [url]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # its group: renderer and helpers too
            p.wait()
    return out.decode(errors="replace")


class TestDashboardInChromium(unittest.TestCase):
    def setUp(self):
        if not CHROMIUM:
            raise AssertionError("chromium is not installed (make test installs it: "
                                 "scripts/deps.sh TEST_PKGS)")
        if not os.path.exists(os.path.join(WEB, "mqtt.min.js")):
            raise AssertionError("web/mqtt.min.js missing: run make (it copies MQTT.js' "
                                 "browser build from node_modules)")
        self.tmp = tempfile.mkdtemp(prefix="secbroker-dash-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.certs = make_certs(os.path.join(self.tmp, "certs"))

    def sys_doc(self, port, topic, pred):
        c = PahoClient(self, port, "probe-" + topic.rsplit("/", 2)[-2])
        c.subscribe(topic, 0)
        c.wait(lambda: any(pred(json.loads(p)) for t, p in c.messages if t == topic),
               topic + " with the clients and the failure")
        c.stop()
        return [json.loads(p) for t, p in c.messages if t == topic and pred(json.loads(p))][-1]

    def test_clients_tls_details_and_failure_appear(self):
        b = Broker(conf="sys_interval 1", listeners=[
            tls_block(self.certs, cafile=True),
            "listener {port} 127.0.0.1\nprotocol websockets\nhttp_dir %s\n"
            "websockets_origin http://127.0.0.1:{port}" % WEB])
        self.addCleanup(b.cleanup)
        b.start()
        plain, tls, web = b.ports
        PahoClient(self, plain, "plain-lab-client")
        PahoClient(self, tls, "tls-lab-client", ca=self.certs["ca.crt"],
                   cert=self.certs["client.crt"], key=self.certs["client.key"])
        # a handshake the broker refuses: a client certificate from another CA
        ctx = ssl.create_default_context(cafile=self.certs["ca.crt"])
        ctx.load_cert_chain(self.certs["untrusted-client.crt"], self.certs["untrusted-client.key"])
        try:
            RawWS(tls, ctx).close()
        except (ssl.SSLError, OSError):
            pass
        # a retained message the live feed (default filter lab/#) shows at once
        feeder = PahoClient(self, plain, "feeder")
        feeder.c.publish("lab/dashboard/temp", b"21.5 degC", qos=1, retain=True).wait_for_publish()
        clients = self.sys_doc(plain, "$SYS/broker/clients/list", lambda d: {
            "plain-lab-client", "tls-lab-client"} <= {c["id"] for c in d["clients"]})
        failures = self.sys_doc(plain, "$SYS/broker/handshakes/failed", lambda d: any(
            "rejected" in f["reason"] for f in d["failures"]))
        tls_client = [c for c in clients["clients"] if c["id"] == "tls-lab-client"][0]["tls"]
        failure = [f for f in failures["failures"] if "rejected" in f["reason"]][0]
        want = ["plain-lab-client", "tls-lab-client", tls_client["version"], tls_client["cipher"],
                tls_client["cert_subject"], failure["reason"], failure["alert"],
                "connected to ws://127.0.0.1:%d/mqtt" % web, "lab/dashboard/temp", "21.5 degC"]
        url = "http://127.0.0.1:%d/" % web
        dom, missing = "", want
        for i in range(ATTEMPTS):
            dom = html.unescape(chromium(url, os.path.join(self.tmp, "profile%d" % i),
                                         "--dump-dom"))
            missing = [w for w in want if w not in dom]
            if not missing:
                break
        self.assertEqual(missing, [], "the dashboard did not show these; page text:\n%s"
                         % dom[-6000:])
        b.wait_log("HTTP GET /mqtt.min.js: 200")
        b.wait_log("as dashboard-")  # its MQTT connection, over ws
        shot = os.path.join(self.tmp, "dashboard.png")
        chromium(url, os.path.join(self.tmp, "profile-shot"), "--screenshot=" + shot)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        if os.environ.get("DASHBOARD_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])


if __name__ == "__main__":
    unittest.main()
