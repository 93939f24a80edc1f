"""secpasswd: files it writes are accepted by Debian's mosquitto (and verify
with an independent PBKDF2), it edits files made by mosquitto_passwd, prompts
without echo on a terminal, refuses bad input with one plain line and
rewrites atomically keeping the file mode.

Mosquitto, started as root, drops to the "mosquitto" user before reading the
password file, so test files are made readable (0644 in a 0755 directory);
that also exercises "an update keeps the original mode".
"""
import base64
import hashlib
import os
import pty
import select
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from mqttlib import BUILD, free_port, need, wait_port

SECPASSWD = os.path.join(BUILD, "secpasswd")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQ_PUB = shutil.which("mosquitto_pub")
MOSQ_PASSWD = shutil.which("mosquitto_passwd")


def verify_line(line, user, password):
    """Independent check of a $7$ line with Python's hashlib."""
    name, h = line.rstrip("\n").split(":", 1)
    if name != user:
        return False
    _, kind, iters, salt, digest = h.split("$")
    if kind != "7":
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iters), 64)
    return got == base64.b64decode(digest)


class SecpasswdCase(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.access(SECPASSWD, os.X_OK), "%s not built (make build/secpasswd)" % SECPASSWD)
        self.dir = tempfile.mkdtemp(prefix="secpasswd-test-")
        os.chmod(self.dir, 0o755)
        self.pw = os.path.join(self.dir, "passwd")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_sp(self, *args, **kw):
        return subprocess.run([SECPASSWD] + list(args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30, **kw)

    def lines(self):
        with open(self.pw) as f:
            return f.read().splitlines(True)


class TestSecpasswdFile(SecpasswdCase):
    def test_create_update_delete(self):
        r = self.run_sp("-c", "-b", self.pw, "alice", "s3cret")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertEqual(stat.S_IMODE(os.stat(self.pw).st_mode), 0o600)  # new files are private
        (line,) = self.lines()
        self.assertRegex(line, r"^alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$")
        self.assertTrue(verify_line(line, "alice", "s3cret"))
        self.assertNotIn("s3cret", line)

        os.chmod(self.pw, 0o644)
        with open(self.pw, "a") as f:
            f.write("# a comment that must survive\n")
        self.assertEqual(self.run_sp("-b", self.pw, "bob", "p a:ss").returncode, 0)
        self.assertEqual(self.run_sp("-b", "-I", "2000", self.pw, "alice", "n3w").returncode, 0)
        self.assertEqual(stat.S_IMODE(os.stat(self.pw).st_mode), 0o644)  # mode kept
        lines = self.lines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith("alice:$7$2000$"))  # updated in place
        self.assertTrue(verify_line(lines[0], "alice", "n3w"))
        self.assertEqual(lines[1], "# a comment that must survive\n")
        self.assertTrue(verify_line(lines[2], "bob", "p a:ss"))

        self.assertEqual(self.run_sp("-D", self.pw, "alice").returncode, 0)
        self.assertEqual([l.split(":")[0] for l in self.lines()], ["# a comment that must survive\n", "bob"])
        r = self.run_sp("-D", self.pw, "alice")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("alice", r.stderr)
        # no temporary files left behind
        self.assertEqual(sorted(os.listdir(self.dir)), ["passwd"])

    def test_create_overwrites(self):
        self.run_sp("-c", "-b", self.pw, "alice", "a")
        self.run_sp("-b", self.pw, "bob", "b")
        self.assertEqual(self.run_sp("-c", "-b", self.pw, "carol", "c").returncode, 0)
        self.assertEqual([l.split(":")[0] for l in self.lines()], ["carol"])

    def test_symlink_target_rewritten(self):
        real = os.path.join(self.dir, "real")
        self.run_sp("-c", "-b", real, "alice", "a")
        os.symlink("real", self.pw)
        self.assertEqual(self.run_sp("-b", self.pw, "bob", "b").returncode, 0)
        self.assertTrue(os.path.islink(self.pw))
        with open(real) as f:
            self.assertEqual([l.split(":")[0] for l in f], ["alice", "bob"])

    def test_refusals(self):
        self.run_sp("-c", "-b", self.pw, "alice", "a")
        before = self.lines()
        cases = [
            (["-b", self.pw, "a:b", "x"], "':'"),
            (["-b", self.pw, "", "x"], "empty"),
            (["-b", self.pw, "a\tb", "x"], "control character"),
            (["-b", self.pw, "a\x7fb", "x"], "control character"),
            (["-b", self.pw, "#x", "x"], "comment"),
            (["-b", self.pw, " x", "x"], "space"),
            (["-b", self.pw, "ok", ""], "empty"),
            (["-b", self.pw, "ok"], "-b needs"),
            ([self.pw, "ok", "pw"], "needs -b"),
            (["-c", "-D", self.pw, "alice"], "cannot be combined"),
            (["-D", "-b", self.pw, "alice", "x"], "no password"),
            (["-I", "0", "-b", self.pw, "ok", "x"], "iteration"),
            (["-I", "x", "-b", self.pw, "ok", "x"], "iteration"),
            (["-q", self.pw, "ok"], "unknown option"),
            ([self.pw], "required"),
            (["-b", os.path.join(self.dir, "missing"), "u", "p"], "-c"),
        ]
        for args, needle in cases:
            r = self.run_sp(*args)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertEqual(r.stdout, "", args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("secpasswd: "), r.stderr)
            self.assertIn(needle, r.stderr, args)
        self.assertEqual(self.lines(), before)  # nothing changed
        self.assertEqual(sorted(os.listdir(self.dir)), ["passwd"])

    def test_help(self):
        r = self.run_sp("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: secpasswd", r.stdout)
        self.assertIn("-I iterations", r.stdout)

    def test_no_terminal(self):
        # a new session has no controlling terminal: the prompt must fail clearly
        r = self.run_sp("-c", self.pw, "alice", start_new_session=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no terminal", r.stderr)
        self.assertIn("-b", r.stderr)
        self.assertFalse(os.path.exists(self.pw))


class TestSecpasswdPrompt(SecpasswdCase):
    def converse(self, answers):
        """Run secpasswd -c FILE alice on a fresh pty, answer each prompt."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(SECPASSWD, [SECPASSWD, "-c", self.pw, "alice"])
        seen = b""
        deadline = time.time() + 20
        try:
            for answer in answers:
                while not seen.rstrip().lower().endswith(b"password:") and time.time() < deadline:
                    r, _, _ = select.select([fd], [], [], 0.5)
                    if r:
                        seen += os.read(fd, 1024)
                os.write(fd, answer + b"\n")
                seen += b"|"  # mark the answer so the next prompt is awaited
            while time.time() < deadline:
                r, _, _ = select.select([fd], [], [], 0.5)
                if not r:
                    continue
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            done, status = os.waitpid(pid, os.WNOHANG)
            end = time.time() + 5
            while not done and time.time() < end:
                time.sleep(0.05)
                done, status = os.waitpid(pid, os.WNOHANG)
            if not done:  # stuck on a prompt: do not hang the suite
                os.kill(pid, 9)
                _, status = os.waitpid(pid, 0)
            os.close(fd)
        return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")

    def test_prompt_twice_without_echo(self):
        rc, seen = self.converse([b"pty-s3cret", b"pty-s3cret"])
        self.assertEqual(rc, 0, seen)
        self.assertIn("Password:", seen)
        self.assertIn("Reenter password:", seen)
        self.assertNotIn("pty-s3cret", seen)  # echo was off
        (line,) = self.lines()
        self.assertTrue(verify_line(line, "alice", "pty-s3cret"))

    def test_prompt_mismatch(self):
        rc, seen = self.converse([b"one", b"two"])
        self.assertNotEqual(rc, 0)
        self.assertIn("do not match", seen)
        self.assertFalse(os.path.exists(self.pw))


class TestMosquittoAcceptsSecpasswd(SecpasswdCase):
    """The real interoperability claim: Debian's mosquitto authenticates
    users from a file secpasswd wrote (and one both tools edited)."""

    def setUp(self):
        need(MOSQUITTO)
        need("mosquitto_pub")
        super().setUp()

    def start_mosquitto(self):
        self.port = free_port()
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n"
                    "log_dest stdout\nlog_type all\n" % (self.port, self.pw))
        self.log = open(os.path.join(self.dir, "mosquitto.log"), "w+")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self.stop_mosquitto)
        if not wait_port(self.port, timeout=10):
            self.fail("mosquitto did not start:\n" + self.mosquitto_log())

    def stop_mosquitto(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def mosquitto_log(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def pub(self, user, password):
        return subprocess.run([MOSQ_PUB, "-h", "127.0.0.1", "-p", str(self.port), "-u", user, "-P", password,
                               "-i", "sp-" + user, "-t", "t/x", "-m", "hello", "-q", "1"],
                              capture_output=True, text=True, timeout=20)

    def test_mosquitto_accepts_file(self):
        self.assertEqual(self.run_sp("-c", "-b", self.pw, "alice", "s3cret").returncode, 0)
        os.chmod(self.pw, 0o644)  # readable by the "mosquitto" user mosquitto drops to
        self.assertEqual(self.run_sp("-b", self.pw, "bob", "b0b pass").returncode, 0)
        self.assertEqual(self.run_sp("-b", "-I", "1000", self.pw, "carol", "c").returncode, 0)
        self.start_mosquitto()
        for user, password in (("alice", "s3cret"), ("bob", "b0b pass"), ("carol", "c")):
            r = self.pub(user, password)
            self.assertEqual(r.returncode, 0, "%s refused: %s\n%s" % (user, r.stderr, self.mosquitto_log()))
        for user, password in (("alice", "wrong"), ("bob", "b0b"), ("mallory", "s3cret")):
            r = self.pub(user, password)
            self.assertNotEqual(r.returncode, 0, "%s/%s accepted" % (user, password))
        log = self.mosquitto_log()
        self.assertNotIn("Unable to decode", log)
        self.assertNotIn("Error", log)

    def test_mixed_tools(self):
        need("mosquitto_passwd")
        subprocess.run([MOSQ_PASSWD, "-c", "-b", self.pw, "alice", "from-mosq"], check=True)
        os.chmod(self.pw, 0o644)
        alice_line = self.lines()[0]
        self.assertEqual(self.run_sp("-b", self.pw, "bob", "from-sec").returncode, 0)
        self.assertEqual(self.lines()[0], alice_line)  # kept byte for byte
        subprocess.run([MOSQ_PASSWD, "-b", self.pw, "carol", "mosq-again"], check=True)
        self.start_mosquitto()
        for user, password in (("alice", "from-mosq"), ("bob", "from-sec"), ("carol", "mosq-again")):
            r = self.pub(user, password)
            self.assertEqual(r.returncode, 0, "%s refused: %s\n%s" % (user, r.stderr, self.mosquitto_log()))
        self.assertNotEqual(self.pub("bob", "from-mosq").returncode, 0)


if __name__ == "__main__":
    unittest.main()
