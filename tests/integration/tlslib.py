"""Helpers for the TLS integration tests (test_tls.py): the lab PKI from
scripts/mkcerts.sh, TLS listener blocks for brokerlib.Broker, a raw MQTT
client over Python's ssl, openssl s_client runs, a tiny `openssl ca`
database for CRLs, and tshark capture/decode.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

from mqttlib import ROOT, SECBROKER, WAIT, Client, need

MKCERTS = os.path.join(ROOT, "scripts", "mkcerts.sh")

# what scripts/mkcerts.sh DIR writes (README / Makefile `make certs`)
CERT_NAMES = ["ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key",
              "untrusted-ca.crt", "untrusted-ca.key", "untrusted-client.crt",
              "untrusted-client.key", "expired-client.crt", "expired-client.key",
              "revoked-client.crt", "revoked-client.key", "ca.crl"]


def make_certs(d, other=False):
    """Run scripts/mkcerts.sh d; return {file name: path} (asserts every file
    exists). other=True adds other.crt/other.key: a server certificate from the
    lab CA that names only otherhost.example (a host name mismatch)."""
    p = subprocess.run(["sh", MKCERTS, d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    if p.returncode != 0:
        raise RuntimeError("scripts/mkcerts.sh %s failed (%d):\n%s" % (
            d, p.returncode, p.stdout.decode(errors="replace")))
    certs = {n: os.path.join(d, n) for n in CERT_NAMES}
    missing = [n for n, path in certs.items() if not os.path.exists(path)]
    if missing:
        raise RuntimeError("scripts/mkcerts.sh did not write %s; it wrote %s" % (
            missing, sorted(os.listdir(d))))
    certs["dir"] = d
    if other:
        certs.update(make_other_cert(certs))
    return certs


def make_other_cert(certs):
    """other.crt/other.key next to certs["ca.crt"]: EC P-256, CN and SAN
    otherhost.example, signed by the lab CA."""
    d = certs["dir"]

    def openssl(*args):
        subprocess.run([need("openssl")] + list(args), cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "other.key")
    openssl("req", "-new", "-key", "other.key", "-out", "other.csr", "-subj",
            "/CN=otherhost.example/O=Lab")
    with open(os.path.join(d, "other.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:otherhost.example\n")
    openssl("x509", "-req", "-in", "other.csr", "-CA", certs["ca.crt"], "-CAkey", certs["ca.key"],
            "-CAcreateserial", "-out", "other.crt", "-days", "3650", "-extfile", "other.ext")
    return {n: os.path.join(d, n) for n in ("other.crt", "other.key")}


def tls_block(certs, cafile=False, require=False, identity=False, extra=(), server="server",
              request=False):
    """A listener block for brokerlib.Broker(listeners=[...]); server="other"
    serves the certificate that names only otherhost.example. request: add
    secbroker's `request_certificate true` (client certificates asked for,
    optional, verified when shown); a cafile alone asks for nothing, as in
    Mosquitto."""
    lines = ["listener {port} 127.0.0.1",
             "certfile %s" % certs[server + ".crt"],
             "keyfile %s" % certs[server + ".key"]]
    if cafile:
        lines.append("cafile %s" % certs["ca.crt"])
    if require:
        lines.append("require_certificate true")
    if request:
        lines.append("request_certificate true")
    if identity:
        lines.append("use_identity_as_username true")
    lines.extend(extra)
    return "\n".join(lines)


# ---- a raw MQTT client over Python's ssl --------------------------------------

def broker_tls13():
    """True when the broker under test (build/secbroker or SECBROKER_BIN) speaks
    TLS 1.3 (built with mbedTLS 3.x)."""
    out = subprocess.run([SECBROKER, "--version"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    return b"mbed TLS 3." in out


BROKER_TLS13 = broker_tls13()
# the version a client offering everything gets from our listeners
BROKER_MAX_TLS = "TLS 1.3" if BROKER_TLS13 else "TLS 1.2"
# NSS key-log lines: TLS 1.2 CLIENT_RANDOM, TLS 1.3 traffic secrets (SHA-256/384)
KEYLOG_LINE = (r"^(CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}|"
               r"((CLIENT|SERVER)_(HANDSHAKE_TRAFFIC_SECRET|TRAFFIC_SECRET_0)|EXPORTER_SECRET) "
               r"[0-9a-f]{64} [0-9a-f]{64}([0-9a-f]{32})?)$")
TLS13_LABELS = ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"]


def client_context(certs, cert=None, ca="ca.crt", version=None):
    """An ssl client context trusting certs[ca]; cert="client" presents
    client.crt/client.key; version "1.2" or "1.3" pins the TLS version."""
    ctx = ssl.create_default_context(cafile=certs[ca])
    if version:
        v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
        ctx.minimum_version = ctx.maximum_version = v
    if cert:
        ctx.load_cert_chain(certs[cert + ".crt"], certs[cert + ".key"])
    return ctx


def tls_socket(port, ctx, timeout=WAIT, session=None):
    """Connect and complete the handshake (raises ssl.SSLError when refused);
    session: an ssl.SSLSession to offer for resumption."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise
    s.settimeout(timeout)
    return s


class TLSClient(Client):
    """mqttlib.Client (packet reader that keeps unrelated packets) over TLS."""

    def __init__(self, port, ctx, timeout=WAIT, client_id=None, session=None):
        sock = tls_socket(port, ctx, timeout, session=session)
        super().__init__(port, timeout=timeout, client_id=client_id, sock=sock)
        self.peer = "127.0.0.1:%d" % sock.getsockname()[1]

    def read_all_until_closed(self, timeout=WAIT):
        try:
            return super().read_all_until_closed(timeout)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return True, b""
        except ssl.SSLError as e:  # e.g. a fatal alert: the session is over too
            return True, repr(e).encode()


def handshake_failure(port, ctx, timeout=WAIT):
    """Try a handshake that must fail. Returns (error, peer): the ssl.SSLError
    (None if the handshake and a first read both succeeded) and our
    "127.0.0.1:PORT" as the broker logs it.

    In TLS 1.2 a client certificate is checked after the client's Finished,
    so the server's alert arrives while the client waits for the server's
    Finished: do_handshake() raises. The read after it covers a server that
    completes the handshake and then drops the session."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    peer = "127.0.0.1:%d" % raw.getsockname()[1]
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except ssl.SSLError as e:
        raw.close()
        return e, peer
    try:
        s.settimeout(timeout)
        try:
            s.recv(1)
        except ssl.SSLError as e:
            return e, peer
        except OSError:
            pass
        return None, peer
    finally:
        s.close()


# ---- openssl s_client -----------------------------------------------------------

def s_client(port, *args, timeout=WAIT, stdin=b""):
    """Run openssl s_client against 127.0.0.1:port; (returncode, stdout+stderr).
    stdin EOF makes it close right after the handshake."""
    argv = [need("openssl"), "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# ---- tshark -----------------------------------------------------------------------

TSHARK = "/usr/bin/tshark"


class Capture:
    """tshark -i lo -f 'tcp port PORT' -w FILE, started and stopped by PID."""

    def __init__(self, port, path):
        self.port = port
        self.path = path
        self.err_path = path + ".stderr"
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([shutil.which("tshark") or TSHARK, "-i", "lo", "-f",
                                      "tcp port %d" % port, "-w", path],
                                     stdout=subprocess.DEVNULL, stderr=self.err)

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=30.0):
        """Wait until packets on the port really reach the file. tshark says
        "Capturing on" a little before the filter is live, so after that we
        open probe connections to the port (each is one failed handshake in
        the broker's log) until one of them shows up in the capture."""
        deadline = time.time() + timeout
        while "Capturing on" not in self.stderr():
            if self.proc.poll() is not None:
                raise AssertionError("tshark exited (%d): %s" % (self.proc.returncode,
                                                                  self.stderr()))
            if time.time() > deadline:
                raise AssertionError("tshark never said 'Capturing on': %s" % self.stderr())
            time.sleep(0.05)
        while True:
            probe = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
            pport = probe.getsockname()[1]
            probe.close()
            try:
                self.wait_frames("tcp.srcport==%d" % pport, timeout=2.0)
                return
            except AssertionError:
                if time.time() > deadline:
                    raise AssertionError("tshark captured none of our probe connections: %s"
                                         % self.stderr())

    def wait_frames(self, display_filter, timeout=30.0):
        """Wait until the capture file holds a frame matching display_filter.
        dumpcap hands packets over in blocks (not per packet), and a SIGTERM
        can lose the last block: wait for the last packet we care about to be
        on disk before stopping."""
        deadline = time.time() + timeout
        argv = [shutil.which("tshark") or TSHARK, "-r", self.path, "-Y", display_filter,
                "-T", "fields", "-e", "frame.number"]
        while time.time() < deadline:
            if os.path.exists(self.path):
                p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   timeout=60)
                if p.stdout.strip():
                    return
            time.sleep(0.2)
        raise AssertionError("no frame matching %r in the capture within %.0fs" % (
            display_filter, timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def tshark_mqtt_messages(pcap, port, keylog=None):
    """Decode the capture as TLS on port, TLS application data as MQTT
    (-d tls.port==PORT,mqtt; -d tcp.port==PORT,mqtt alone would hand the TLS
    records themselves to the MQTT dissector and print garbage); return a
    dict {type, topic, payload, src} for every MQTT message tshark saw.
    JSON output gives one object per MQTT message even when one TLS record
    carries several (the broker coalesces e.g. PUBACK and PUBLISH), where
    -T fields would not say which message a topic belongs to."""
    argv = [shutil.which("tshark") or TSHARK, "-r", pcap]
    if keylog:
        argv += ["-o", "tls.keylog_file:%s" % keylog]
    argv += ["-d", "tcp.port==%d,tls" % port, "-d", "tls.port==%d,mqtt" % port, "-Y", "mqtt",
             "-T", "json", "--no-duplicate-keys", "-j", "tcp mqtt"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise AssertionError("tshark -r failed: %s" % p.stderr.decode(errors="replace"))
    out = []
    for frame in json.loads(p.stdout or b"[]"):
        layers = frame["_source"]["layers"]
        src = int(layers["tcp"]["tcp.srcport"])
        msgs = layers.get("mqtt", [])
        for m in msgs if isinstance(msgs, list) else [msgs]:
            mtype = int(m.get("mqtt.hdrflags", "0xf0"), 16) >> 4  # the packet type nibble
            msg = m.get("mqtt.msg", "")
            try:
                payload = bytes.fromhex(msg.replace(":", ""))
            except ValueError:
                payload = msg.encode()
            topic = m.get("mqtt.topic", "")
            if isinstance(topic, list):  # SUBSCRIBE with several filters
                topic = topic[0]
            out.append({"type": mtype, "topic": topic, "payload": payload, "src": src})
    return out


def tshark_mqtt(pcap, port, keylog=None):
    """[(msgtype, topic, payload bytes)] of tshark_mqtt_messages."""
    return [(m["type"], m["topic"], m["payload"])
            for m in tshark_mqtt_messages(pcap, port, keylog)]


# ---- paho -----------------------------------------------------------------------

def paho_client(certs, client_id, cert=None):
    """A paho-mqtt 1.6 client set up for TLS with the lab CA (and a client cert)."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    kw = {}
    if cert:
        kw = {"certfile": certs[cert + ".crt"], "keyfile": certs[cert + ".key"]}
    c.tls_set(ca_certs=certs["ca.crt"], tls_version=ssl.PROTOCOL_TLS_CLIENT, **kw)
    return c


class PahoWaiter:
    """Collects paho callbacks into events the test thread can wait on."""

    def __init__(self, client):
        self.cond = threading.Condition()
        self.connack = None
        self.subacks = {}
        self.published = set()
        self.messages = []
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def _set(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def _on_connect(self, client, userdata, flags, rc):
        self._set(lambda: setattr(self, "connack", rc))

    def _on_subscribe(self, client, userdata, mid, granted):
        self._set(lambda: self.subacks.__setitem__(mid, list(granted)))

    def _on_publish(self, client, userdata, mid):
        self._set(lambda: self.published.add(mid))

    def _on_message(self, client, userdata, msg):
        self._set(lambda: self.messages.append((msg.topic, msg.payload)))

    def wait(self, pred, what, timeout=WAIT):
        deadline = time.time() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("paho: no %s within %.0fs" % (what, timeout))
                self.cond.wait(left)

