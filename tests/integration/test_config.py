"""secbroker command line and configuration: -h, --version, startup errors
(`FILE:LINE: reason` on stderr, non-zero exit), every contract key accepted,
log_dest / connection_messages, several listeners, clean exit on SIGINT/SIGTERM.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from mqttlib import (BINARY, REFERENCE, WAIT, assert_closed, connect, free_port, publish,
                     recv_publish, start_broker, stop_process, subscribe, uid, wait_port)


def run(args, timeout=WAIT):
    """Run the broker binary to completion; (rc, stdout, stderr). A broker that keeps
    running (it should have refused to start) is killed and reported as rc None."""
    p = subprocess.Popen([BINARY] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")


@unittest.skipIf(REFERENCE, "secbroker's own command line")
class TestCommandLine(unittest.TestCase):

    def test_help(self):
        """`secbroker -h` prints usage (mentioning -c) and exits 0."""
        rc, out, err = run(["-h"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex((out + err).lower(), "usage")
        self.assertIn("-c", out + err)

    def test_version(self):
        """`secbroker --version` prints "secbroker X.Y.Z" and exits 0."""
        rc, out, err = run(["--version"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out.strip(), r"^secbroker \d+\.\d+\.\d+\b")

    def test_unknown_option(self):
        """An unknown command-line option is refused with a non-zero exit."""
        rc, out, err = run(["--no-such-option"], timeout=5)
        self.assertNotIn(rc, (0, None), out + err)


@unittest.skipIf(REFERENCE, "secbroker's own error format")
class TestStartupErrors(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="secbroker-conf-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, text, name="broker.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_refused(self, text, line, rx=None):
        """Config refused: non-zero exit, stderr has "FILE:LINE: reason"."""
        path = self.write(text)
        rc, out, err = run(["-c", path], timeout=5)
        self.assertIsNotNone(rc, "broker started with an invalid config:\n%s" % text)
        self.assertNotEqual(rc, 0, "exit 0 for an invalid config:\n%s\n%s" % (text, err))
        m = re.search(r"broker\.conf:%d: *(\S.*)" % line, err)
        self.assertTrue(m, "stderr lacks 'broker.conf:%d: reason':\n%r" % (line, err))
        if rx:
            self.assertRegex(m.group(1), rx)

    def test_missing_config_file(self):
        """A missing config file stops startup with a non-zero exit naming the file."""
        path = os.path.join(self.dir, "does-not-exist.conf")
        rc, out, err = run(["-c", path], timeout=5)
        self.assertNotIn(rc, (0, None), err)
        self.assertIn("does-not-exist.conf", err)

    def test_unreadable_config_is_directory(self):
        """A config path that is a directory cannot be read: startup error."""
        rc, out, err = run(["-c", self.dir], timeout=5)
        self.assertNotIn(rc, (0, None), err)
        self.assertIn(self.dir, err)

    def test_unknown_key(self):
        """An unknown key is a startup error at its line (comments and blank lines
        count)."""
        port = free_port()
        self.assert_refused("# a comment\n\nallow_anonymous true\nno_such_key 1\nlistener %d 127.0.0.1\n"
                            % port, 4, "(?i)no_such_key|unknown")

    def test_bad_values(self):
        """Bad values for each contract key are startup errors naming file and line."""
        port = free_port()
        bad = [
            "max_keepalive abc", "max_keepalive -1", "max_keepalive 65536",
            "max_packet_size abc", "max_packet_size -5",
            "max_inflight_messages abc", "max_inflight_messages -1",
            "max_queued_messages abc", "max_queued_messages -1",
            "retain_available maybe", "allow_anonymous maybe", "connection_messages maybe",
            "log_dest nowhere", "log_dest file", "log_type chatty",
            "allow_anonymous", "max_keepalive",
            "listener abc", "listener 70000", "listener -1", "listener",
            "listener %d 999.1.1.1" % port,
        ]
        for line in bad:
            with self.subTest(line=line):
                self.assert_refused("# header\nallow_anonymous true\n%s\nlistener %d 127.0.0.1\n"
                                    % (line, free_port()), 3)

    def test_error_after_valid_lines_reports_right_line(self):
        """The reported line number is the offending line even deep in the file."""
        lines = ["# line %d" % i for i in range(1, 20)] + ["max_keepalive sixty"]
        lines += ["listener %d 127.0.0.1" % free_port()]
        self.assert_refused("\n".join(lines) + "\n", 20)

    def test_log_file_unwritable(self):
        """log_dest file in a directory that does not exist: startup error (non-zero exit)
        naming the log file (the contract does not say whether with the config line)."""
        log = os.path.join(self.dir, "no", "such", "dir", "log")
        path = self.write("listener %d 127.0.0.1\nlog_dest file %s\n" % (free_port(), log))
        rc, out, err = run(["-c", path], timeout=5)
        self.assertNotIn(rc, (0, None), "started with an unwritable log file: " + err)
        self.assertIn(log, err)

    def test_port_in_use(self):
        """A listener port that is already bound stops startup with a non-zero exit."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        path = self.write("allow_anonymous true\nlistener %d 127.0.0.1\n" % s.getsockname()[1])
        rc, out, err = run(["-c", path], timeout=5)
        self.assertNotIn(rc, (0, None), "started although the port is in use: " + err)
        self.assertTrue(err.strip(), "no message on stderr")


class TestRunning(unittest.TestCase):

    ALL_KEYS = """# every key of the core contract
allow_anonymous true
max_keepalive 120
max_packet_size 268435455
max_inflight_messages 20
max_queued_messages 1000
retain_available true
connection_messages true
log_type error
log_type warning
log_type notice
log_type information
log_type debug
"""

    def test_all_contract_keys_accepted(self):
        """A config using every core key (with comments and blank lines) starts and
        serves clients."""
        b = start_broker(self, self.ALL_KEYS)
        t = uid("t")
        sub = connect(self, b)
        subscribe(sub, [(t, 1)])
        publish(connect(self, b), t, b"ok", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"ok")

    def test_listener_without_address_and_two_listeners(self):
        """`listener PORT` (all addresses) and a second listener both accept clients and
        share one topic space."""
        b = start_broker(self, "", listeners=["listener {port}"])
        t = uid("t")
        sub = connect(self, b, port=b.ports[0])
        subscribe(sub, [(t, 1)])
        publish(connect(self, b, port=b.ports[1]), t, b"across", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"across")

    def shutdown(self, sig):
        b = start_broker(self)
        c = connect(self, b)
        subscribe(c, [(uid("t"), 1)])
        b.signal(sig)
        rc = b.proc.wait(timeout=WAIT)
        self.assertEqual(rc, 0, "exit status after %s; output:\n%s" % (sig.name, b.output()[-2000:]))
        assert_closed(self, c)

    def test_sigterm_clean_exit(self):
        """SIGTERM with a connected client: the broker exits 0."""
        self.shutdown(signal.SIGTERM)

    def test_sigint_clean_exit(self):
        """SIGINT with a connected client: the broker exits 0."""
        self.shutdown(signal.SIGINT)

    def spawn(self, conf):
        """Start the binary with stdout and stderr in separate files; (proc, port, dir)."""
        d = tempfile.mkdtemp(prefix="secbroker-log-")
        self.addCleanup(shutil.rmtree, d, True)
        port = free_port()
        path = os.path.join(d, "broker.conf")
        with open(path, "w") as f:
            f.write(("user root\n" if REFERENCE else "") + conf.replace("{dir}", d)
                    + "\nallow_anonymous true\nlistener %d 127.0.0.1\n" % port)
        out = open(os.path.join(d, "out"), "w")
        err = open(os.path.join(d, "err"), "w")
        self.addCleanup(out.close)
        self.addCleanup(err.close)
        p = subprocess.Popen([BINARY, "-c", path], stdout=out, stderr=err, cwd=d)
        self.addCleanup(stop_process, p)
        self.assertTrue(wait_port(port), "broker did not listen")

        class B:  # enough of Broker for connect()
            pass
        b = B()
        b.port = port
        return p, b, d, lambda: stop_process(p)

    def read(self, d, name):
        path = os.path.join(d, name)
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    def connect_and_leave(self, b):
        cid = uid("logged")
        c = connect(self, b, cid)
        c.send(b"\xe0\x00")
        assert_closed(self, c)
        return cid

    @unittest.skipIf(REFERENCE, "secbroker log wording")
    def test_log_dest_stdout(self):
        """log_dest stdout: connection lines go to stdout (checked after shutdown, so
        buffering does not matter)."""
        p, b, d, stop = self.spawn("log_dest stdout\nlog_type all\n")
        cid = self.connect_and_leave(b)
        stop()
        self.assertEqual(p.returncode, 0)
        out = self.read(d, "out")
        self.assertTrue(any("connected from 127.0.0.1:" in l and cid in l for l in out.splitlines()), out)
        self.assertTrue(any(cid in l and "client sent DISCONNECT" in l for l in out.splitlines()), out)

    @unittest.skipIf(REFERENCE, "secbroker log wording")
    def test_log_dest_stderr(self):
        """log_dest stderr: connection lines go to stderr, not stdout."""
        p, b, d, stop = self.spawn("log_dest stderr\nlog_type all\n")
        cid = self.connect_and_leave(b)
        stop()
        err = self.read(d, "err")
        self.assertTrue(any("connected from 127.0.0.1:" in l and cid in l for l in err.splitlines()), err)
        self.assertNotIn(cid, self.read(d, "out"))

    @unittest.skipIf(REFERENCE, "secbroker log wording")
    def test_log_dest_none(self):
        """log_dest none: nothing about connections is written anywhere."""
        p, b, d, stop = self.spawn("log_dest none\nlog_type all\n")
        cid = self.connect_and_leave(b)
        stop()
        self.assertNotIn(cid, self.read(d, "out") + self.read(d, "err"))

    @unittest.skipIf(REFERENCE, "secbroker log wording")
    def test_log_dest_file_and_connection_messages_false(self):
        """connection_messages false: no connect/disconnect lines in the log file, which
        is still written (log_dest file)."""
        p, b, d, stop = self.spawn("log_dest file {dir}/b.log\nlog_type all\nconnection_messages false\n")
        cid = self.connect_and_leave(b)
        stop()
        self.assertEqual(p.returncode, 0)
        self.assertTrue(os.path.exists(os.path.join(d, "b.log")), "log file not created")
        log = self.read(d, "b.log")
        self.assertNotIn("connected from", log)
        self.assertNotIn(cid, log)

    def test_whitespace_and_line_endings_tolerated(self):
        """Mosquitto syntax tolerance: CRLF line endings, indentation, tabs between key and
        value, trailing blanks and comment lines are accepted."""
        p, b, d, stop = self.spawn("# windows-edited\r\n  max_keepalive 600 \r\n\tretain_available\ttrue\r\n"
                                   "log_dest none  \r\n\r\n   # indented comment\r\n")
        c = connect(self, b)
        c.send(b"\xc0\x00")
        self.assertEqual(c.next_packet(), (0xD0, b""))

    def test_log_dest_syslog_accepted(self):
        """log_dest syslog is a valid destination (no syslog daemon needed to start)."""
        p, b, d, stop = self.spawn("log_dest syslog\nlog_type error\n")
        c = connect(self, b)
        c.send(b"\xc0\x00")
        self.assertEqual(c.next_packet(), (0xD0, b""))

    @unittest.skipIf(REFERENCE, "secbroker log wording")
    def test_log_type_none_and_connection_lines_default(self):
        """log_type none: no connection lines in the log file."""
        p, b, d, stop = self.spawn("log_dest file {dir}/b.log\nlog_type none\n")
        cid = self.connect_and_leave(b)
        stop()
        self.assertNotIn(cid, self.read(d, "b.log"))


if __name__ == "__main__":
    unittest.main()
