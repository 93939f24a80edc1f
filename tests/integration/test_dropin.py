"""secbroker as a drop-in for Mosquitto (issue 16, configuration and signals):
Debian's own mosquitto.conf with its conf.d, include_dir, pid_file, every error
of a file in one run, the Mosquitto keys secbroker accepts (and those it
refuses by name), cafile without require_certificate, SIGHUP/SIGUSR1/SIGUSR2,
`user`, the command line (-p, -d, -c, -v), $SYS and log_dest topic.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from mqttlib import (BINARY, REFERENCE, WAIT, assert_closed, connect, connect_packet, free_port,
                     log_offset, make_password_file, publish, recv_publish, start_broker,
                     stop_process, subscribe, uid, wait_log_line, wait_port)
from tlslib import (BROKER_TLS13, TLSClient, client_context, handshake_failure, make_certs,
                    s_client, tls_block)

DEBIAN_CONF = "/etc/mosquitto/mosquitto.conf"
CONNACK_IDENTIFIER = 2
CONNACK_NOT_AUTHORIZED = 5


def run(args, timeout=WAIT, cwd=None):
    """Run the broker to completion: (rc, stdout, stderr); rc None if it kept running."""
    p = subprocess.Popen([BINARY] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def read(path):
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def wait_file_line(path, needle, timeout=WAIT):
    """Wait for a line containing needle in path; return it (or fail)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in read(path).splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError("%s never had a line with %r:\n%s" % (path, needle, read(path)[-3000:]))


class TempDirCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="secbroker-dropin-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def spawn(self, args, port):
        """Start the broker (stdout/stderr to files in self.dir), stopped at cleanup."""
        out = open(os.path.join(self.dir, "out"), "w")
        err = open(os.path.join(self.dir, "err"), "w")
        self.addCleanup(out.close)
        self.addCleanup(err.close)
        p = subprocess.Popen([BINARY] + args, stdout=out, stderr=err, cwd=self.dir)
        self.addCleanup(stop_process, p)
        self.assertTrue(wait_port(port), "broker did not listen on %d:\n%s" % (
            port, read(os.path.join(self.dir, "err"))))
        return p


class Port:
    """Enough of brokerlib.Broker for mqttlib.connect()."""

    def __init__(self, port):
        self.port = port


@unittest.skipIf(REFERENCE, "secbroker's drop-in behaviour")
class TestDebianConf(TempDirCase):

    @unittest.skipUnless(os.path.exists(DEBIAN_CONF), "the mosquitto package is not installed")
    def test_debian_mosquitto_conf_starts_secbroker(self):
        """Debian's /etc/mosquitto/mosquitto.conf, only its absolute paths moved to a temp
        dir: pid_file written (and removed at exit), persistence in persistence_location,
        the log in `log_dest file`, include_dir's *.conf read in sorted order (the last
        max_keepalive wins), README and *.conf.disabled ignored."""
        d = self.dir
        with open(DEBIAN_CONF) as f:
            text = f.read()
        moved = {"/run/mosquitto/": d + "/run/", "/var/lib/mosquitto/": d + "/lib/",
                 "/var/log/mosquitto/": d + "/log/", "/etc/mosquitto/conf.d": d + "/conf.d"}
        for old, new in moved.items():
            self.assertIn(old, text, "Debian's file changed: no %s" % old)
            text = text.replace(old, new)
            os.makedirs(new, exist_ok=True)
        conf = write(os.path.join(d, "mosquitto.conf"), text)
        port = free_port()
        readme = "/etc/mosquitto/conf.d/README"
        if os.path.exists(readme):
            shutil.copy(readme, os.path.join(d, "conf.d", "README"))
        write(os.path.join(d, "conf.d", "10-listener.conf"),
              "listener %d 127.0.0.1  # local only\nallow_anonymous true\n" % port)
        write(os.path.join(d, "conf.d", "20-keepalive.conf"), "max_keepalive 30\n")
        write(os.path.join(d, "conf.d", "30-keepalive.conf"), "max_keepalive 60\n")
        write(os.path.join(d, "conf.d", "40-off.conf.disabled"), "this is not a key\n")
        p = self.spawn(["-c", conf], port)
        pid_file = os.path.join(d, "run", "mosquitto.pid")
        deadline = time.time() + WAIT
        while not read(pid_file).strip() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(read(pid_file).strip(), str(p.pid))
        log = os.path.join(d, "log", "mosquitto.log")
        wait_file_line(log, "running")
        self.assertTrue(os.listdir(os.path.join(d, "lib")), "nothing in persistence_location")
        b = Port(port)
        connect(self, b, keepalive=45)  # over 30 (20-keepalive) but not 60 (30-keepalive)
        connect(self, b, keepalive=90, expect_rc=CONNACK_IDENTIFIER)
        t = uid("deb")
        sub = connect(self, b)
        subscribe(sub, [(t, 1)])
        publish(connect(self, b), t, b"debian", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"debian")
        p.terminate()
        self.assertEqual(p.wait(timeout=WAIT), 0)
        self.assertFalse(os.path.exists(pid_file), "pid_file left behind after a clean exit")


@unittest.skipIf(REFERENCE, "secbroker's error format")
class TestErrors(TempDirCase):

    def test_every_error_of_a_run_reported(self):
        """Three bad lines in the main file and one in an include_dir file: one run
        reports all four, each as FILE:LINE: reason on its own line, and exits non-zero."""
        inc = os.path.join(self.dir, "conf.d")
        write(os.path.join(inc, "a.conf"), "# included\nmax_inflight_messages lots\n")
        conf = write(os.path.join(self.dir, "broker.conf"),
                     "allow_anonymous maybe\nno_such_key 1\ninclude_dir %s\n"
                     "max_keepalive -4\nlistener %d 127.0.0.1\n" % (inc, free_port()))
        rc, out, err = run(["-c", conf])
        self.assertNotIn(rc, (0, None), err)
        lines = err.splitlines()
        for where, what in (("broker.conf:1:", "allow_anonymous"), ("broker.conf:2:", "no_such_key"),
                            ("a.conf:2:", "max_inflight_messages"),
                            ("broker.conf:4:", "max_keepalive")):
            self.assertTrue(any(where in l and what in l for l in lines),
                            "no line with %s %s in:\n%s" % (where, what, err))

    def test_include_dir_missing(self):
        """include_dir naming a directory that does not exist: FILE:LINE error."""
        conf = write(os.path.join(self.dir, "broker.conf"),
                     "include_dir %s/nope\nlistener %d 127.0.0.1\n" % (self.dir, free_port()))
        rc, out, err = run(["-c", conf])
        self.assertNotIn(rc, (0, None), err)
        self.assertRegex(err, r"broker\.conf:1: include_dir: cannot open .*nope")

    def test_refused_mosquitto_keys_say_what_instead(self):
        """Mosquitto keys secbroker does not have are refused by name with advice."""
        for line, advice in (("message_size_limit 100", "max_packet_size"),
                             ("psk_hint lab", "certificates"),
                             ("auto_id_prefix a/b", "'/'"),
                             ("max_qos 1", "acl_file"),
                             ("websockets_log_level 255", "log_type")):
            with self.subTest(line=line):
                conf = write(os.path.join(self.dir, "broker.conf"),
                             "%s\nlistener %d 127.0.0.1\n" % (line, free_port()))
                rc, out, err = run(["-c", conf])
                self.assertNotIn(rc, (0, None), err)
                key = line.split("\n")[-1].split()[0]
                m = re.search(r"broker\.conf:\d+: (.*)", err)
                self.assertTrue(m, err)
                self.assertIn(key, m.group(1))
                self.assertIn(advice, m.group(1))

    def test_listener_keys_before_listener_need_port(self):
        """A listener key before any listener line without `port`: the error says to add
        `port` or a listener line."""
        conf = write(os.path.join(self.dir, "broker.conf"),
                     "protocol mqtt\nlistener %d 127.0.0.1\n" % free_port())
        rc, out, err = run(["-c", conf])
        self.assertNotIn(rc, (0, None), err)
        self.assertIn("port", err)

    def test_user_that_does_not_exist(self):
        """`user NAME` naming no account: refused at startup, naming the user."""
        conf = write(os.path.join(self.dir, "broker.conf"),
                     "user no-such-user-%d\nlistener %d 127.0.0.1\n" % (os.getpid(), free_port()))
        rc, out, err = run(["-c", conf])
        self.assertNotIn(rc, (0, None), err)
        self.assertIn("no-such-user-%d does not exist" % os.getpid(), err)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to drop privileges")
    def test_files_unreadable_after_dropping_privileges_warned(self):
        """Running as root with `user nobody`: a password_file that nobody cannot read
        (here: in a 0700 directory) gets a startup warning naming it."""
        b = start_broker(self, "user nobody\npassword_file {dir}/pw\n",
                         files={"pw": lambda p: make_password_file(p, "u", "secret-pw")})
        line = wait_log_line(self, b, "user nobody cannot", "password_file")
        self.assertIn(os.path.join(b.dir, "pw"), line)
        self.assertIn("warning:", line)

    def test_c_without_value(self):
        """`-c` without a file: a clear message, exit 2."""
        rc, out, err = run(["-c"])
        self.assertEqual(rc, 2, err)
        self.assertIn("-c needs a configuration file", err)

    def test_no_temporary_file_in_messages(self):
        """Without -c (built-in defaults through a private temp file) an error never
        names that temp file: here -p names a port already in use."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        rc, out, err = run(["-p", str(s.getsockname()[1])])
        self.assertNotIn(rc, (0, None), err)
        self.assertIn("Address already in use", err)
        self.assertNotIn("/tmp/", err)
        self.assertIn("default configuration", err)


class TestCompatKeys(unittest.TestCase):

    def test_harmless_keys_accepted(self):
        """Every common Mosquitto key of issue 16 is accepted (with a trailing
        comment) and the broker serves clients."""
        conf = ("per_listener_settings false  # the default\n"
                "log_timestamp true\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\nlog_facility 5\n"
                "log_dest topic\nuse_username_as_clientid false\nclientid_prefixes c\n"
                "max_inflight_bytes 0\nmax_queued_bytes 0\nallow_zero_length_clientid true\n"
                "set_tcp_nodelay false\ncheck_retain_source false\nretry_interval 20\n"
                "persistent_client_expiration 1d\n")
        b = start_broker(self, conf, listeners=[
            "listener {port} 127.0.0.1\nprotocol mqtt\nuse_subject_as_username false"])
        t = uid("t")
        for port in b.ports:
            sub = connect(self, b, uid("c"), port=port)
            subscribe(sub, [(t, 1)])
            publish(connect(self, b, uid("c"), port=port), t, b"ok", qos=1)
            self.assertEqual(recv_publish(sub).payload, b"ok")
            t += "x"

    def test_port_and_bind_address(self):
        """`port` and `bind_address` make Mosquitto's default listener."""
        port = free_port()
        b = start_broker(self, "port %d\nbind_address 127.0.0.1\n" % port, plain=False)
        b.ports.append(port)
        self.assertTrue(wait_port(port), b.output())
        connect(self, b)

    @unittest.skipIf(REFERENCE, "secbroker's error wording")
    def test_per_listener_settings_true_must_come_first(self):
        """per_listener_settings true after a security key is refused with FILE:LINE
        (as Mosquitto refuses it); listeners with their own settings start
        (tests/integration/test_perlistener.py has the semantics)."""
        same = "listener {port} 127.0.0.1\nallow_anonymous true"
        b = start_broker(self, "per_listener_settings true\nallow_anonymous false",
                         plain=False, listeners=[same, "listener {port} 127.0.0.1"])
        connect(self, b, port=b.ports[0])
        connect(self, b, port=b.ports[1], expect_rc=CONNACK_NOT_AUTHORIZED)
        d = tempfile.mkdtemp(prefix="secbroker-pls-")
        self.addCleanup(shutil.rmtree, d, True)
        conf = write(os.path.join(d, "broker.conf"),
                     "allow_anonymous true\nper_listener_settings true\nlistener %d 127.0.0.1\n"
                     % free_port())
        rc, out, err = run(["-c", conf])
        self.assertNotIn(rc, (0, None), err)
        self.assertIn("broker.conf:2: per_listener_settings true must come before", err)

    def test_clientid_prefixes(self):
        """clientid_prefixes: other ids get CONNACK 2 (identifier rejected)."""
        b = start_broker(self, "clientid_prefixes lab-\n")
        connect(self, b, "lab-" + uid())
        connect(self, b, "other-" + uid(), expect_rc=CONNACK_IDENTIFIER)

    def test_allow_zero_length_clientid_false(self):
        """allow_zero_length_clientid false: an empty id gets CONNACK 2 even with clean
        session; by default the broker makes one up."""
        b = start_broker(self, "allow_zero_length_clientid false\n")
        connect(self, b, "", expect_rc=CONNACK_IDENTIFIER)
        b2 = start_broker(self)
        connect(self, b2, "")

    def test_use_username_as_clientid(self):
        """use_username_as_clientid: the username is the client id, so a second
        connection of the same user takes the first one over; no username: refused."""
        b = start_broker(self, "use_username_as_clientid true\n")
        user = uid("user")
        first = connect(self, b, uid("a"), username=user)
        connect(self, b, uid("b"), username=user)
        assert_closed(self, first, msg="(same username: taken over)")
        connect(self, b, uid("c"), expect_rc=CONNACK_NOT_AUTHORIZED)

    @unittest.skipIf(REFERENCE, "secbroker's log format")
    def test_log_timestamp_and_format(self):
        """log_timestamp false: lines start with the level; log_timestamp_format: the
        strftime format starts each line."""
        b = start_broker(self, "log_timestamp false\n")
        wait_log_line(self, b, "running")
        self.assertTrue(all(re.match(r"^(notice|info|debug|warning|error|tls|subscribe): ", l)
                            for l in b.log().splitlines()), b.log()[:2000])
        b2 = start_broker(self, "log_timestamp_format [%Y/%m/%d]\n")
        wait_log_line(self, b2, "running")
        for line in b2.log().splitlines():
            self.assertRegex(line, r"^\[\d{4}/\d\d/\d\d\] \w+: ")

    @unittest.skipIf(REFERENCE, "secbroker's log wording")
    def test_log_dest_topic(self):
        """log_dest topic: log lines are published on $SYS/broker/log/LEVEL."""
        b = start_broker(self, "log_dest topic\n")
        sub = connect(self, b)
        subscribe(sub, [("$SYS/broker/log/#", 0)])
        cid = uid("seen")
        connect(self, b, cid)
        deadline = time.time() + WAIT
        while time.time() < deadline:
            m = recv_publish(sub)
            if cid.encode() in m.payload:
                self.assertTrue(m.topic.startswith("$SYS/broker/log/"), m.topic)
                self.assertRegex(m.payload.decode(), r"^\d+: ")
                return
        self.fail("no log line about %s on $SYS/broker/log/#" % cid)

    def test_max_inflight_bytes(self):
        """max_inflight_bytes 100 with 60-byte messages: two in flight (the second
        starts below the limit), the third waits until one is acknowledged."""
        b = start_broker(self, "max_inflight_bytes 100\nmax_inflight_messages 20\n")
        t = uid("ib")
        sub = connect(self, b)
        subscribe(sub, [(t, 1)])
        pub = connect(self, b)
        for i in range(3):
            publish(pub, t, b"%d" % i + b"x" * 59, qos=1)
        first = recv_publish(sub, ack=False)
        recv_publish(sub, ack=False)
        self.assertRaises(socket.timeout, sub.wait_for, 3, timeout=1.0)
        sub.send(bytes([0x40, 2]) + first.pid.to_bytes(2, "big"))
        self.assertEqual(recv_publish(sub).payload[:1], b"2")

    def test_max_queued_bytes(self):
        """max_queued_bytes 100: an offline persistent session keeps one 60-byte message
        (a second would pass the limit) and drops the rest."""
        b = start_broker(self, "max_queued_bytes 100\n")
        t, cid = uid("qb"), uid("qbsub")
        sub = connect(self, b, cid, clean=False)
        subscribe(sub, [(t, 1)])
        sub.close()
        pub = connect(self, b)
        for i in range(3):
            publish(pub, t, b"%d" % i + b"x" * 59, qos=1)
        marker_t = uid("m")
        sub = connect(self, b, cid, clean=False, expect_sp=1)
        self.assertEqual(recv_publish(sub).payload[:1], b"0")
        subscribe(sub, [(marker_t, 1)])
        publish(pub, marker_t, b"marker", qos=1)
        self.assertEqual(recv_publish(sub).payload, b"marker")

    def retained_after_write_revoked(self, check):
        """A retained message from a client whose write access the ACL then loses
        (SIGHUP); what a new subscriber gets: the message, or the marker first."""
        acl = "topic read ret/#\ntopic readwrite mark/#\n"
        b = start_broker(self, "check_retain_source %s\nacl_file {dir}/acl\n" % check,
                         files={"acl": acl + "pattern write ret/%c\n"})
        pub = connect(self, b, "pub1")
        publish(pub, "ret/pub1", b"retained", qos=1, retain=True)
        off = log_offset(b)
        write(os.path.join(b.dir, "acl"), acl)
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "SIGHUP: configuration", offset=off)
        sub = connect(self, b)
        subscribe(sub, [("ret/#", 1), ("mark/x", 1)])
        publish(sub, "mark/x", b"marker", qos=1)
        return recv_publish(sub).payload

    @unittest.skipIf(REFERENCE, "secbroker's log wording")
    def test_check_retain_source(self):
        """check_retain_source true (the default, as Mosquitto's): a retained message
        whose publisher may no longer write its topic is not sent to new subscribers;
        false: it is."""
        self.assertEqual(self.retained_after_write_revoked("true"), b"marker")
        self.assertEqual(self.retained_after_write_revoked("false"), b"retained")

    @unittest.skipIf(REFERENCE, "Debian's mosquitto 2.0.11 sent u1's message here even without "
                     "a restart (its documented rule and current source withhold it)")
    def test_check_retain_source_after_restart(self):
        """The publisher of a retained message is persisted with it: after a restart
        with u1's write right gone from the ACL, a new subscriber gets u2's retained
        message but not u1's (check_retain_source left at its default, true)."""
        keep = "topic read ret/#\ntopic readwrite mark/#\nuser u2\ntopic write ret/#\n"
        u1 = "user u1\ntopic write ret/#\n"
        b = start_broker(self, "persistence true\npersistence_location {dir}\n"
                         "acl_file {dir}/acl\n", files={"acl": keep + u1})
        for user in ("u1", "u2"):
            publish(connect(self, b, username=user), "ret/" + user, user.encode(), qos=1,
                    retain=True)
        b.stop()
        write(os.path.join(b.dir, "acl"), keep)
        b.start()
        sub = connect(self, b)
        subscribe(sub, [("ret/#", 1)])
        subscribe(sub, [("mark/x", 1)])
        publish(sub, "mark/x", b"marker", qos=1)
        got = []
        while not got or got[-1] != "mark/x":
            got.append(recv_publish(sub).topic)
        self.assertEqual(got, ["ret/u2", "mark/x"])

    @unittest.skipIf(REFERENCE, "secbroker's s unit")
    def test_persistent_client_expiration(self):
        """persistent_client_expiration: a persistent session offline longer than that is
        destroyed (logged), so the client's next CONNECT finds no session."""
        b = start_broker(self, "persistent_client_expiration 2s\n")
        cid = uid("exp")
        c = connect(self, b, cid, clean=False)
        subscribe(c, [(uid("t"), 1)])
        c.close()
        wait_log_line(self, b, "Expiring client %s" % cid)
        connect(self, b, cid, clean=False, expect_sp=0)

    @unittest.skipIf(REFERENCE, "secbroker's s unit and bridge log lines")
    def test_persistent_client_expiration_spares_a_bridge_session(self):
        """A bridge's own local session (its remote down, so offline since startup) is
        not a client's: persistent_client_expiration expires the client's session
        but never the bridge's, which keeps queueing what its topics match."""
        b = start_broker(self, "persistent_client_expiration 2s\n"
                               "connection down\naddress 127.0.0.1:%d\n"
                               "remote_clientid rc-down\nlocal_clientid lc-down\n"
                               "restart_timeout 1\ntopic spare/# out 1\n" % free_port())
        cid = uid("exp")
        c = connect(self, b, cid, clean=False)
        subscribe(c, [(uid("t"), 1)])
        c.close()
        wait_log_line(self, b, "Expiring client %s" % cid)
        self.assertNotIn("Expiring client lc-down", b.log())
        publish(connect(self, b), "spare/x", b"queued for the bridge", qos=1)
        connect(self, b, cid, clean=False, expect_sp=0)  # the broker still serves
        self.assertNotIn("Expiring client lc-down", b.log())

    @unittest.skipIf(REFERENCE, "secbroker's s unit")
    def test_persistent_client_expiration_is_journaled(self):
        """With persistence, an expired session is gone from the database too: after a
        restart the client finds no session."""
        b = start_broker(self, "persistence true\npersistence_location {dir}\n"
                               "persistent_client_expiration 2s\n")
        cid = uid("expdb")
        c = connect(self, b, cid, clean=False)
        subscribe(c, [(uid("t"), 1)])
        c.close()
        wait_log_line(self, b, "Expiring client %s" % cid)
        b.stop()
        write(b.conf_path, read(b.conf_path).replace("persistent_client_expiration 2s",
                                                     "persistent_client_expiration 1d"))
        b.start()
        connect(self, b, cid, clean=False, expect_sp=0)


@unittest.skipIf(REFERENCE, "secbroker's request_certificate key")
class TestCafile(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="secbroker-dropin-certs-")
        cls.addClassCleanup(shutil.rmtree, cls.certdir, True)
        cls.certs = make_certs(cls.certdir)

    def test_cafile_alone_requests_no_certificate(self):
        """cafile without require_certificate (Mosquitto's meaning): no CertificateRequest;
        request_certificate true asks for one (optional, verified when shown)."""
        b = start_broker(self, listeners=[tls_block(self.certs, cafile=True, request=False),
                                          tls_block(self.certs, cafile=True, request=True)])
        # -msg names each handshake message, in TLS 1.2 and 1.3 alike (a TLS 1.3
        # CertificateRequest from mbedTLS carries no CA names to look for)
        for version in ("-tls1_2", "-tls1_3") if BROKER_TLS13 else ("-tls1_2",):
            with self.subTest(version=version):
                rc, out = s_client(b.ports[1], "-CAfile", self.certs["ca.crt"], "-msg", version)
                self.assertIn("ServerHello", out)
                self.assertNotIn("CertificateRequest", out)
                rc, out = s_client(b.ports[2], "-CAfile", self.certs["ca.crt"], "-msg", version)
                self.assertIn("CertificateRequest", out)


    def test_use_subject_as_username(self):
        """use_subject_as_username: the certificate's whole subject (RFC 2253 order, as
        Mosquitto) is the username, so ACL rules name it."""
        subject = "CN=labclient,O=secbroker lab"
        b = start_broker(self, "acl_file {dir}/acl\n", files={
            "acl": "user %s\ntopic readwrite subj/#\n" % subject},
            listeners=[tls_block(self.certs, cafile=True, require=True,
                                 extra=["use_subject_as_username true"])])
        cid = uid("subj")
        c = TLSClient(b.ports[1], client_context(self.certs, "client"), client_id=cid)
        self.addCleanup(c.close)
        c.send(connect_packet(client_id=cid))
        first, body = c.next_packet()
        self.assertEqual((first, body[1]), (0x20, 0))
        self.assertEqual(subscribe(c, [("subj/x", 1), ("other/x", 1)]), [1, 0x80])
        publish(c, "subj/x", b"by subject", qos=1)
        self.assertEqual(recv_publish(c).payload, b"by subject")

@unittest.skipIf(REFERENCE, "secbroker's log wording")
class TestLogLines(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="secbroker-dropin-certs-")
        cls.addClassCleanup(shutil.rmtree, cls.certdir, True)
        cls.certs = make_certs(cls.certdir)

    def lines_about(self, b, peer):
        return [l for l in b.log().splitlines() if peer + ":" in l or peer + " " in l]

    def test_failed_handshake_is_one_line(self):
        """A refused client certificate: exactly one line names the peer (a notice with
        the reason in plain words), even with log_type all; no mbedTLS state numbers."""
        b = start_broker(self, listeners=[tls_block(self.certs, cafile=True, require=True)])
        err, peer = handshake_failure(b.ports[1], client_context(self.certs, "untrusted-client"))
        self.assertIsNotNone(err)
        line = wait_log_line(self, b, peer, "TLS handshake failed")
        self.assertIn("notice:", line)
        connect(self, b)  # a later event: the failure's lines are all written by now
        about = [l for l in self.lines_about(b, peer) if " tls: " not in l
                 and "New connection" not in l]
        self.assertEqual(about, [line], "\n".join(about))
        self.assertNotIn("mbedTLS state", b.log())

    def test_tls_client_on_plain_port(self):
        """A TLS ClientHello on a plain port: one notice saying exactly that."""
        b = start_broker(self)
        raw = socket.create_connection(("127.0.0.1", b.port), timeout=WAIT)
        self.addCleanup(raw.close)
        peer = "127.0.0.1:%d" % raw.getsockname()[1]
        ctx = client_context(self.certs)
        with self.assertRaises((OSError, socket.timeout)):
            ctx.wrap_socket(raw, server_hostname="localhost")
        line = wait_log_line(self, b, peer, "TLS client connected to plain MQTT port")
        self.assertIn("notice:", line)
        connect(self, b)
        about = [l for l in self.lines_about(b, peer) if "New connection" not in l]
        self.assertEqual(about, [line], "\n".join(about))

    def test_ipv4_peer_on_dual_stack_listener(self):
        """A listener on every address (one IPv6 socket that takes IPv4 too) shows an
        IPv4 client as 127.0.0.1:PORT, not [::ffff:127.0.0.1]:PORT."""
        b = start_broker(self, plain=False, listeners=["listener {port}"])
        cid = uid("v4")
        connect(self, b, cid)
        line = wait_log_line(self, b, "New client connected from", cid)
        self.assertIn("from 127.0.0.1:", line)
        self.assertNotIn("::ffff:", b.log())


@unittest.skipIf(REFERENCE, "secbroker's signal handling")
class TestSignals(unittest.TestCase):

    def test_sighup_reloads_configuration(self):
        """SIGHUP: allow_anonymous false in the file takes effect without a restart."""
        b = start_broker(self)
        connect(self, b)
        off = log_offset(b)
        text = read(b.conf_path).replace("allow_anonymous true", "allow_anonymous false")
        write(b.conf_path, text)
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "SIGHUP: configuration", offset=off)
        connect(self, b, expect_rc=CONNACK_NOT_AUTHORIZED)
        self.assertTrue(b.alive())

    def test_sighup_broken_config_keeps_the_old_one(self):
        """SIGHUP with an error in the file: FILE:LINE logged, the old configuration stays."""
        b = start_broker(self)
        off = log_offset(b)
        text = read(b.conf_path)
        nlines = len(text.splitlines())
        write(b.conf_path, text.replace("allow_anonymous true", "allow_anonymous false")
              + "bogus_key 1\n")
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "broker.conf:%d:" % (nlines + 1), "bogus_key", offset=off)
        connect(self, b)  # anonymous still allowed
        self.assertTrue(b.alive())

    def test_sighup_reopens_log_file(self):
        """logrotate: the log file moved away, SIGHUP: a new file with the next lines."""
        b = start_broker(self)
        wait_log_line(self, b, "running")
        os.rename(b.log_path, b.log_path + ".1")
        b.signal(signal.SIGHUP)
        wait_file_line(b.log_path, "SIGHUP: configuration")
        self.assertTrue(b.alive())

    def test_sighup_listener_change_waits_for_restart(self):
        """A new listener in the file: SIGHUP says it takes effect at the next restart,
        and the old listener keeps serving."""
        b = start_broker(self)
        off = log_offset(b)
        write(b.conf_path, read(b.conf_path) + "listener %d 127.0.0.1\n" % free_port())
        b.signal(signal.SIGHUP)
        wait_log_line(self, b, "listener changes", "next restart", offset=off)
        connect(self, b)

    def test_sigusr2_logs_subscriptions(self):
        """SIGUSR2 writes each subscription (client, filter, QoS) to the log."""
        b = start_broker(self)
        cid, t = uid("dump"), uid("dump/t")
        c = connect(self, b, cid)
        subscribe(c, [(t, 1)])
        b.signal(signal.SIGUSR2)
        wait_log_line(self, b, cid, t + " 1")
        self.assertTrue(b.alive())

    def test_sigusr1_without_persistence(self):
        """SIGUSR1 with persistence off: logged, the broker keeps running."""
        b = start_broker(self)
        off = log_offset(b)
        b.signal(signal.SIGUSR1)
        wait_log_line(self, b, "SIGUSR1", offset=off)
        connect(self, b)


@unittest.skipIf(REFERENCE, "secbroker's command line")
class TestCommandLine(TempDirCase):

    def test_p_adds_a_listener(self):
        """-p PORT with -c: one more listener on that port."""
        p1, p2 = free_port(), free_port()
        conf = write(os.path.join(self.dir, "b.conf"),
                     "allow_anonymous true\nlistener %d 127.0.0.1\n" % p1)
        p = self.spawn(["-c", conf, "-p", str(p2)], p2)
        connect(self, Port(p2))
        connect(self, Port(p1))
        # SIGHUP adds the -p listener again: no "listener changes" warning
        p.send_signal(signal.SIGHUP)
        wait_file_line(os.path.join(self.dir, "err"), "SIGHUP: configuration")
        self.assertNotIn("listener changes", read(os.path.join(self.dir, "err")))

    def test_daemon(self):
        """-d: the command returns at once, the broker keeps serving in the background
        with the pid written to pid_file; SIGTERM stops it."""
        port = free_port()
        pid_file = os.path.join(self.dir, "b.pid")
        conf = write(os.path.join(self.dir, "b.conf"),
                     "allow_anonymous true\npid_file %s\nlog_dest file %s/b.log\n"
                     "listener %d 127.0.0.1\n" % (pid_file, self.dir, port))
        rc, out, err = run(["-d", "-c", conf])
        self.assertEqual(rc, 0, err)
        deadline = time.time() + WAIT
        while not read(pid_file).strip() and time.time() < deadline:
            time.sleep(0.05)
        pid = int(read(pid_file))

        def stop():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.addCleanup(stop)
        self.assertTrue(wait_port(port))
        connect(self, Port(port))
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + WAIT
        while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(pid_file), "pid_file left after SIGTERM")

    def test_verbose_with_stdout_prints_once(self):
        """-v with log_dest stdout: each line once on stdout, nothing on stderr."""
        port = free_port()
        conf = write(os.path.join(self.dir, "b.conf"),
                     "allow_anonymous true\nlog_dest stdout\nlistener %d 127.0.0.1\n" % port)
        p = self.spawn(["-c", conf, "-v"], port)
        cid = uid("verbose")
        connect(self, Port(port), cid)
        wait_file_line(os.path.join(self.dir, "out"), cid)
        p.terminate()
        p.wait(timeout=WAIT)
        out = read(os.path.join(self.dir, "out"))
        self.assertEqual(len([l for l in out.splitlines() if "running" in l]), 1, out)
        self.assertEqual(read(os.path.join(self.dir, "err")), "")


SYS_TOPICS = """version uptime clients/total clients/connected clients/active clients/disconnected
clients/inactive clients/maximum clients/expired subscriptions/count shared_subscriptions/count
messages/stored store/messages/count store/messages/bytes
messages/received messages/sent publish/messages/received publish/messages/sent
publish/messages/dropped
publish/bytes/received publish/bytes/sent bytes/received bytes/sent heap/current heap/maximum""".split()
SYS_TOPICS.append("retained messages/count")
for what in ("messages/received", "messages/sent", "bytes/received", "bytes/sent",
             "publish/received", "publish/sent", "publish/dropped", "connections", "sockets"):
    SYS_TOPICS += ["load/%s/%s" % (what, n) for n in ("1min", "5min", "15min")]


class TestSys(unittest.TestCase):

    def test_sys_topics(self):
        """$SYS with Mosquitto's names (53 topics; docs/sys.md): every one published,
        values of the right kind (counts, 'N seconds', load averages as decimals)."""
        b = start_broker(self, "sys_interval 1\n")
        sub = connect(self, b)
        t = uid("t")
        subscribe(sub, [("$SYS/#", 0), (t, 0)])
        publish(connect(self, b), t, b"hello")
        seen = {}
        deadline = time.time() + WAIT
        # (the dashboard's JSON topics come too: wait for every Mosquitto one)
        while time.time() < deadline and any(x not in seen for x in SYS_TOPICS):
            m = recv_publish(sub)
            if m.topic.startswith("$SYS/broker/"):
                seen[m.topic[len("$SYS/broker/"):]] = m.payload.decode()
        missing = [x for x in SYS_TOPICS if x not in seen]
        self.assertEqual(missing, [], "missing $SYS topics; seen %s" % sorted(seen))
        self.assertGreaterEqual(len(SYS_TOPICS), 50)
        self.assertRegex(seen["uptime"], r"^\d+ seconds$")
        self.assertRegex(seen["version"], r"^(secbroker|mosquitto) version \d")
        self.assertGreaterEqual(int(seen["clients/connected"]), 2)
        self.assertGreaterEqual(int(seen["subscriptions/count"]), 2)
        self.assertGreater(int(seen["heap/current"]), 0)
        for k, v in seen.items():
            if k.startswith("load/"):
                float(v)


if __name__ == "__main__":
    unittest.main()
