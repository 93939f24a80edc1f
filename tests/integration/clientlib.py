"""Helpers for the secpub/secsub tests (test_clients.py): run the clients,
start Debian's mosquitto or build/secbroker through brokerlib.Broker, make
test certificates.

Timeouts are generous upper bounds for waiting, never pass/fail timing.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time

from brokerlib import BUILD, ROOT, SECBROKER, Broker, tool

# SECCLIENTS_DIR=build-asan runs the tests with another build of the clients
CLIENTS_DIR = os.path.join(ROOT, os.environ.get("SECCLIENTS_DIR", BUILD))
SECPUB = os.path.join(CLIENTS_DIR, "secpub")
SECSUB = os.path.join(CLIENTS_DIR, "secsub")
MOSQUITTO = "/usr/sbin/mosquitto"
WAIT = 30.0  # upper bound for any one client run


def run(argv, stdin=None, timeout=WAIT, env=None):
    """Run a client to completion: (returncode, stdout bytes, stderr text)."""
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def is_debug_line(line):
    """-d lines of secsub and mosquitto_sub (payloads in tests never look so)."""
    return line.startswith(b"Client ") or line.startswith(b"Subscribed (mid")


class LineProc:
    """A process whose stdout lines a thread collects into self.lines (under
    self.cond, notified per line) and whose stderr ends up in self.err, so a
    test can wait for a line without sleeping. Subclasses add the waiting."""

    def __init__(self, argv, env=None, cwd=None):
        self.argv = list(argv)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cwd)
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.err = b""
        self.t_out = threading.Thread(target=self._read_out, daemon=True)
        self.t_err = threading.Thread(target=self._read_err, daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read_out(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip(b"\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_err(self):
        self.err = self.proc.stderr.read()


class Sub(LineProc):
    """A subscriber process (secsub or mosquitto_sub) run with -d, so that
    wait_subscribed() can wait for its SUBACK before anything is published."""

    def __init__(self, argv, debug=True, env=None):
        super().__init__(list(argv) + ["-d"] if debug else argv, env=env)

    def wait_line(self, pred, timeout=WAIT):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.time()
                if self.eof or left <= 0:
                    raise AssertionError("no matching line from %s; got %r, stderr %r" % (
                        self.argv[0], self.lines[-20:], self.err))
                self.cond.wait(left)

    def wait_subscribed(self, timeout=WAIT):
        return self.wait_line(lambda l: l.startswith(b"Subscribed (mid"), timeout)

    def messages(self):
        with self.cond:
            return [l for l in self.lines if not is_debug_line(l)]

    def wait(self, timeout=WAIT):
        """Wait for exit: (returncode, message lines, stderr text)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %ss; lines %r" % (
                self.argv[0], timeout, self.lines[-20:]))
        self.t_out.join(timeout)
        self.t_err.join(timeout)
        return rc, self.messages(), self.err.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---- brokers --------------------------------------------------------------

def have_secbroker():
    return os.path.exists(SECBROKER)


def make_broker(kind, conf="", listeners=None, plain=True, files=None):
    """A brokerlib.Broker running Debian's mosquitto ("mosquitto") or
    build/secbroker ("secbroker") with the same Mosquitto-syntax config."""
    if kind == "mosquitto":
        if os.geteuid() == 0:
            # mosquitto run as root drops to user "mosquitto", which could not
            # read the 0700 temp dir holding certificates and password files
            conf = "user root\n" + conf
        return Broker(conf=conf, listeners=listeners, plain=plain, binary=MOSQUITTO, files=files)
    return Broker(conf=conf, listeners=listeners, plain=plain, binary=SECBROKER, files=files)


# ---- certificates -----------------------------------------------------------

def _openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _ca(d, name, cn):
    _openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key"], d)
    _openssl(["req", "-new", "-x509", "-key", name + ".key", "-out", name + ".crt", "-days",
              "3650", "-subj", "/CN=%s/O=Lab" % cn, "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _leaf(d, name, ca, cn, san=None, client=False):
    _openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key"], d)
    _openssl(["req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj",
              "/CN=%s/O=Lab" % cn], d)
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
           "extendedKeyUsage=%s" % ("clientAuth" if client else "serverAuth")]
    if san:
        ext.append("subjectAltName=" + san)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("\n".join(ext) + "\n")
    _openssl(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
              "-CAcreateserial", "-out", name + ".crt", "-days", "3650", "-extfile",
              name + ".ext"], d)


def make_certs(d):
    """Test PKI in directory d (EC P-256), from scripts/mkcerts.sh when it exists:
    ca.crt; server.crt/key for localhost + 127.0.0.1 + ::1; other.crt/key
    naming only otherhost.example; client.crt/key CN=labclient; untrusted CA
    (untrusted-ca.crt) and a client signed by it (untrusted-client.crt/key).
    Returns a dict name -> path."""
    os.makedirs(d, exist_ok=True)
    mkcerts = os.path.join(ROOT, "scripts", "mkcerts.sh")
    if os.path.exists(mkcerts):
        # the project's lab PKI, the same files users get from `make certs`
        subprocess.run(["sh", mkcerts, d], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    else:
        _ca(d, "ca", "Lab Test CA")
        _ca(d, "untrusted-ca", "Untrusted CA")
        _leaf(d, "server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
        _leaf(d, "client", "ca", "labclient", client=True)
        _leaf(d, "untrusted-client", "untrusted-ca", "labclient", client=True)
    # mkcerts.sh has no certificate for a foreign name: make one with its CA
    _leaf(d, "other", "ca", "otherhost.example", "DNS:otherhost.example")
    names = ["ca.crt", "untrusted-ca.crt", "server.crt", "server.key", "other.crt", "other.key",
             "client.crt", "client.key", "untrusted-client.crt", "untrusted-client.key"]
    return {n: os.path.join(d, n) for n in names}


def tls_listener(certs, server="server", cafile=True, require=False):
    """A Mosquitto-syntax TLS listener block for brokerlib.Broker."""
    lines = ["listener {port} 127.0.0.1",
             "certfile %s" % certs[server + ".crt"],
             "keyfile %s" % certs[server + ".key"]]
    if cafile:
        lines.append("cafile %s" % certs["ca.crt"])
    if require:
        lines.append("require_certificate true")
    return "\n".join(lines)


def make_password_file(path, user, password):
    """A password file written by mosquitto_passwd (None if it is missing)."""
    exe = tool("mosquitto_passwd")
    if exe is None:
        return None
    if os.path.exists(path):
        os.unlink(path)
    subprocess.run([exe, "-b", "-c", path, user, password], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


class TempDir:
    def __init__(self, prefix="secclients-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def cleanup(self):
        if not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.path, ignore_errors=True)


__all__ = ["ROOT", "BUILD", "SECPUB", "SECSUB", "MOSQUITTO", "WAIT", "run", "Sub",
           "have_secbroker", "make_broker", "make_certs", "tls_listener", "make_password_file",
           "TempDir", "tool", "is_debug_line", "StubBroker"]


class StubBroker:
    """A one-thread fake broker for what a real one will not do on demand:
    listen on ::1, or answer every CONNECT with CONNACK return code rc.
    Records the raw CONNECT bodies it saw in self.connects."""

    def __init__(self, rc=0, host="127.0.0.1"):
        import socket
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.rc = rc
        self.connects = []
        self.packets = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        from brokerlib import RawClient
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            raw = RawClient(0, sock=conn, timeout=10)
            try:
                first, body = raw.read_packet()
                self.connects.append(body)
                raw.send(bytes([0x20, 2, 0, self.rc]))
                while True:
                    first, body = raw.read_packet()
                    self.packets.append(first >> 4)
                    if first >> 4 == 3 and (first >> 1) & 3 == 1:
                        raw.send(bytes([0x40, 2]) + body[2 + (body[0] << 8 | body[1]):][:2])
                    if first >> 4 == 14:
                        break
            except (EOFError, OSError):
                pass
            raw.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
