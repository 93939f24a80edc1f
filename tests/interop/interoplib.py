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
Brokers, peer processes, log waits and the raw client come from mqttlib, the
helper library every suite shares.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import tlslib  # noqa: E402
from mqttlib import MOSQUITTO, ROOT  # noqa: E402

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
