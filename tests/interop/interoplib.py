"""Shared helpers for the interoperability tests (tests/interop/test_*.py):
third-party peers (mosquitto-clients, paho-mqtt, MQTT.js, openssl s_client,
tshark, Debian's mosquitto broker) against build/secbroker, and our
secpub/secsub against Debian's mosquitto.

- Peer versions, read from the installed peers (what docs/interop.md lists).
- InteropCase: prints "peer: NAME VERSION" once per test class and prefixes
  every assertion message with the peer and the feature under test
  (@feature("QoS 1") on the test method), so a CI failure reads
  "mosquitto_pub/mosquitto_sub 2.0.11 | QoS 1: ...".
- One lab PKI per test process (scripts/mkcerts.sh through tlslib.make_certs).
- Brokers through brokerlib.Broker: 127.0.0.1 only, stopped by PID.
- Proc: a peer process whose stdout lines (text or JSON) we can wait for.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import atexit
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
_INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from brokerlib import ROOT, SECBROKER, BUILD, Broker  # noqa: E402
import tlslib  # noqa: E402
from clientlib import LineProc  # noqa: E402

WAIT = 30.0  # upper bound for anything a peer should do "now"
MOSQUITTO = "/usr/sbin/mosquitto"
SECPUB = os.path.join(BUILD, "secpub")
SECSUB = os.path.join(BUILD, "secsub")
NODE_MODULES = os.path.join(ROOT, "node_modules")
JS_DIR = os.path.join(HERE, "js")
DOC = os.path.join(ROOT, "docs", "interop.md")


# ---- peer versions ------------------------------------------------------------

def _out(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(%s: %s)" % (argv[0], e)
    return p.stdout.decode(errors="replace")


def _search(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        raise AssertionError("cannot read the %s version from %r" % (what, text[:300]))
    return m.group(1)


@functools.lru_cache(None)
def mosquitto_clients_version():
    """mosquitto-clients, from `mosquitto_pub --help` ("mosquitto_pub version 2.0.11
    running on libmosquitto 2.0.11.")."""
    return _search(r"mosquitto_pub version (\S+)", _out(["mosquitto_pub", "--help"]),
                   "mosquitto_pub")


@functools.lru_cache(None)
def mosquitto_version():
    """Debian's broker, from `mosquitto -h` ("mosquitto version 2.0.11")."""
    return _search(r"mosquitto version (\S+)", _out([MOSQUITTO, "-h"]), "mosquitto")


@functools.lru_cache(None)
def paho_version():
    import paho.mqtt
    return paho.mqtt.__version__


@functools.lru_cache(None)
def mqttjs_version():
    """The mqtt package npm ci installed into node_modules (pinned in package-lock.json)."""
    with open(os.path.join(NODE_MODULES, "mqtt", "package.json")) as f:
        return json.load(f)["version"]


@functools.lru_cache(None)
def locked_mqttjs_version():
    with open(os.path.join(ROOT, "package-lock.json")) as f:
        return json.load(f)["packages"]["node_modules/mqtt"]["version"]


@functools.lru_cache(None)
def node_version():
    return _search(r"v(\d+\.\d+\.\d+)", _out(["node", "--version"]), "node")


@functools.lru_cache(None)
def openssl_version():
    return _search(r"OpenSSL (\S+)", _out(["openssl", "version"]), "openssl")


@functools.lru_cache(None)
def tshark_version():
    return _search(r"TShark \(Wireshark\) (\d+\.\d+\.\d+)", _out(["tshark", "--version"]),
                   "tshark")


# ---- test case base -------------------------------------------------------------

def feature(name):
    """Names the feature a test method proves (used in failure messages)."""
    def deco(fn):
        fn.interop_feature = name
        return fn
    return deco


class InteropCase(unittest.TestCase):
    """Base class: subclasses define peer() -> "NAME VERSION" (a classmethod)."""

    longMessage = True

    @classmethod
    def peer(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        try:
            cls.PEER = cls.peer()
        except Exception as e:  # a missing peer still gets a readable line
            cls.PEER = "%s (version unknown: %s)" % (cls.__name__, e)
        print("peer: %s" % cls.PEER, flush=True)

    def feature(self):
        fn = getattr(self, self._testMethodName, None)
        return getattr(fn, "interop_feature", self._testMethodName)

    def tag(self):
        return "%s | %s" % (getattr(self, "PEER", type(self).__name__), self.feature())

    def shortDescription(self):
        """The progress line and the FAIL/ERROR header name the peer and feature too."""
        doc = super().shortDescription() or ""
        return "%s: %s" % (self.tag(), doc) if doc else self.tag()

    def _formatMessage(self, msg, standardMsg):
        text = super()._formatMessage(msg, standardMsg)
        return "%s: %s" % (self.tag(), text)

    def fail(self, msg=None):
        msg = str(msg)
        if not msg.startswith(self.tag()):
            msg = "%s: %s" % (self.tag(), msg)
        raise self.failureException(msg)


# ---- certificates --------------------------------------------------------------

_CERTS = {}


def certs():
    """The lab PKI (scripts/mkcerts.sh) shared by every interop test in this process."""
    if not _CERTS:
        d = tempfile.mkdtemp(prefix="secbroker-interop-certs-")
        if not os.environ.get("KEEP_TEST_DIRS"):
            atexit.register(shutil.rmtree, d, True)
        _CERTS.update(tlslib.make_certs(d))
    return _CERTS


def tls_block(cafile=False, require=False, extra=()):
    return tlslib.tls_block(certs(), cafile=cafile, require=require, extra=extra)


# ---- brokers ---------------------------------------------------------------------

def start_broker(owner, conf="", listeners=(), plain=True, files=None, binary=SECBROKER,
                 class_level=False):
    """A brokerlib.Broker (secbroker by default) on free 127.0.0.1 ports, stopped by
    PID at (class) cleanup. For Debian's mosquitto pass binary=MOSQUITTO."""
    if binary == MOSQUITTO and os.geteuid() == 0:
        # as root mosquitto would switch to user "mosquitto", who cannot read the
        # 0700 temp dirs holding the config, certificates and log
        conf = "user root\n" + conf
    b = Broker(conf=conf, listeners=list(listeners), plain=plain, files=files, binary=binary)
    if class_level:
        owner.addClassCleanup(b.cleanup)
    else:
        owner.addCleanup(b.cleanup)
    b.start()
    return b


def log_tail(broker, n=25):
    lines = broker.output().splitlines()
    return "\n  ".join(["%s log (last %d lines):" % (os.path.basename(broker.binary), n)]
                       + lines[-n:])


def wait_log(broker, *needles, timeout=WAIT, offset=0):
    """The first log line after offset holding every needle (AssertionError if none)."""
    deadline = time.time() + timeout
    while True:
        for line in broker.log()[offset:].splitlines():
            if all(n in line for n in needles):
                return line
        if time.time() > deadline:
            raise AssertionError("no broker log line with %r\n  %s" % (needles, log_tail(broker)))
        time.sleep(0.05)


def client_port(broker, client_id, offset=0):
    """The client's local port, from secbroker's "New client connected from
    127.0.0.1:PORT as ID" line."""
    line = wait_log(broker, "New client connected from", " as %s " % client_id, offset=offset)
    return int(re.search(r"from 127\.0\.0\.1:(\d+) as", line).group(1))


# ---- peer processes --------------------------------------------------------------

class Proc(LineProc):
    """A peer process; its stdout lines are collected by a thread so a test can
    wait for one (a SUBACK, a message, a JSON event) without sleeping."""

    def __init__(self, argv, name=None, env=None, cwd=None, line_buffered=False):
        if line_buffered:
            # mosquitto_sub block-buffers its output into a pipe
            argv = [shutil.which("stdbuf") or "stdbuf", "-oL"] + list(argv)
        self.name = name or os.path.basename(argv[0])
        super().__init__(argv, env=env, cwd=cwd)

    @property
    def pid(self):
        return self.proc.pid

    def describe(self):
        with self.cond:
            lines = list(self.lines[-30:])
        return "%s (rc %s)\n  command: %s\n  stdout: %r\n  stderr: %r" % (
            self.name, self.proc.poll(), " ".join(self.argv), lines,
            self.err.decode(errors="replace")[-2000:])

    def wait_line(self, pred, what, timeout=WAIT):
        """Wait for a stdout line (bytes) matching pred; return it."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.time()
                if self.eof or left <= 0:
                    break
                self.cond.wait(min(left, 1.0))
        self.t_err.join(2)
        raise AssertionError("%s: no %s within %.0fs; %s" % (self.name, what, timeout,
                                                             self.describe()))

    def events(self):
        """stdout lines parsed as JSON objects (other lines are skipped)."""
        out = []
        with self.cond:
            lines = list(self.lines)
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def wait_event(self, name, timeout=WAIT, **match):
        """Wait for a JSON line {"event": name, ...match}; return it as a dict."""
        def pred(line):
            try:
                ev = json.loads(line)
            except ValueError:
                return False
            return (isinstance(ev, dict) and ev.get("event") == name
                    and all(ev.get(k) == v for k, v in match.items()))
        return json.loads(self.wait_line(pred, "JSON event %r %r" % (name, match), timeout))

    def wait(self, timeout=WAIT):
        """Wait for exit; return the exit status (AssertionError if it hangs)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.0fs; %s" % (self.name, timeout,
                                                                      self.describe()))
        self.t_out.join(timeout)
        self.t_err.join(timeout)
        return rc

    def stdout_lines(self):
        with self.cond:
            return list(self.lines)

    def kill(self, sig=signal.SIGKILL):
        """Signal our own process by PID (no-op once it has exited)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.proc.wait()

    def close(self):
        self.kill()
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass


def spawn(tc, argv, **kw):
    """Proc killed (by PID) at test cleanup."""
    p = Proc(argv, **kw)
    tc.addCleanup(p.close)
    return p


def run(argv, timeout=WAIT, stdin=None, env=None):
    """Run a peer to completion: (returncode, stdout text, stderr text)."""
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def uid(prefix="c"):
    """A short unique client id / topic component."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])
