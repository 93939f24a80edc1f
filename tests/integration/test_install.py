"""make install / make uninstall (issue 16): what lands where, the systemd
unit, the man pages (rendered by man -l without a warning), the installed
configuration starting the installed broker, and uninstall removing exactly
what install put there."""
import os
import re
import stat
import subprocess
import unittest

from brokerlib import ROOT, free_port, wait_port
from mqttlib import TempDir
from mqttlib import need as tool

CLIENTS = ["secbench", "secpasswd", "secpub", "secsub"]
MAN = {"1": ["secbench.1", "secpasswd.1", "secpub.1", "secsub.1"], "5": ["secbroker.conf.5"],
       "8": ["secbroker.8"]}


def make(*args):
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    return p.returncode, p.stdout.decode(errors="replace")


def tree(root):
    """Every file under root, relative, sorted."""
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files]
    return sorted(out)


def expected_files(prefix, etc, unitdir):
    p = prefix.lstrip("/")
    files = ["%s/sbin/secbroker" % p] + ["%s/bin/%s" % (p, c) for c in CLIENTS]
    for sec, pages in MAN.items():
        files += ["%s/share/man/man%s/%s" % (p, sec, m) for m in pages]
    files += ["%s/secbroker.service" % unitdir.lstrip("/"),
              "%s/lib/sysusers.d/secbroker.conf" % p,
              "%s/secbroker/secbroker.conf" % etc.lstrip("/"),
              "%s/secbroker/examples/broker.conf" % etc.lstrip("/"),
              "%s/secbroker/examples/acl.example" % etc.lstrip("/")]
    return sorted(files)


class TestInstall(unittest.TestCase):

    def setUp(self):
        self.tmp = TempDir("secinstall-")
        self.addCleanup(self.tmp.cleanup)
        self.dest = os.path.join(self.tmp.path, "root")

    def install(self, prefix="/usr"):
        rc, out = make("install", "DESTDIR=" + self.dest, "PREFIX=" + prefix)
        self.assertEqual(rc, 0, out)
        return out

    def test_install_usr_contents_and_uninstall(self):
        self.install()
        self.assertEqual(tree(self.dest), expected_files("/usr", "/etc", "/lib/systemd/system"))
        for rel, mode in (("usr/sbin/secbroker", 0o755), ("usr/bin/secpub", 0o755),
                          ("usr/share/man/man8/secbroker.8", 0o644),
                          ("etc/secbroker/secbroker.conf", 0o644)):
            st = os.stat(os.path.join(self.dest, rel))
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, rel)
        out = subprocess.run([os.path.join(self.dest, "usr/sbin/secbroker"), "--version"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
        self.assertIn(b"secbroker", out)
        rc, out = make("uninstall", "DESTDIR=" + self.dest, "PREFIX=/usr")
        self.assertEqual(rc, 0, out)
        self.assertEqual(tree(self.dest), [])
        self.assertFalse(os.path.exists(os.path.join(self.dest, "etc/secbroker")))

    def test_install_local_prefix(self):
        self.install("/usr/local")
        self.assertEqual(tree(self.dest), expected_files("/usr/local", "/usr/local/etc",
                                                         "/usr/local/lib/systemd/system"))
        unit = open(os.path.join(self.dest, "usr/local/lib/systemd/system/secbroker.service")).read()
        self.assertIn("ExecStart=/usr/local/sbin/secbroker -c "
                      "/usr/local/etc/secbroker/secbroker.conf\n", unit)
        rc, out = make("uninstall", "DESTDIR=" + self.dest, "PREFIX=/usr/local")
        self.assertEqual((rc, tree(self.dest)), (0, []), out)

    def test_changed_config_is_kept(self):
        self.install()
        conf = os.path.join(self.dest, "etc/secbroker/secbroker.conf")
        with open(conf, "a") as f:
            f.write("# changed by the admin\n")
        out = self.install()
        self.assertIn("keeping the existing", out)
        self.assertTrue(open(conf).read().endswith("# changed by the admin\n"))
        rc, out = make("uninstall", "DESTDIR=" + self.dest, "PREFIX=/usr")
        self.assertEqual(rc, 0, out)
        self.assertIn("it was changed after install", out)
        self.assertEqual(tree(self.dest), ["etc/secbroker/secbroker.conf"])

    def test_systemd_unit(self):
        self.install()
        unit = open(os.path.join(self.dest, "lib/systemd/system/secbroker.service")).read()
        self.assertIn("ExecStart=/usr/sbin/secbroker -c /etc/secbroker/secbroker.conf\n", unit)
        for line in ("Type=simple", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "User=secbroker", "LimitNOFILE=65536", "ExecReload=/bin/kill -HUP $MAINPID",
                     "WantedBy=multi-user.target"):
            self.assertIn("\n" + line + "\n", unit)
        self.assertNotIn("@", unit.replace("man:", ""))
        sysusers = open(os.path.join(self.dest, "usr/lib/sysusers.d/secbroker.conf")).read()
        self.assertRegex(sysusers, r"(?m)^u secbroker ")

    def test_systemd_analyze_verify(self):
        exe = tool("systemd-analyze")
        if exe is None:
            self.skipTest("systemd-analyze is not installed")
        prefix = os.path.join(self.tmp.path, "prefix")
        rc, out = make("install", "PREFIX=" + prefix)
        self.assertEqual(rc, 0, out)
        unit = os.path.join(prefix, "lib/systemd/system/secbroker.service")
        p = subprocess.run([exe, "verify", "--man=no", unit], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode(errors="replace"))
        self.assertEqual(p.stdout.strip(), b"", p.stdout)

    def test_man_pages_render_without_warnings(self):
        man = tool("man")
        self.assertIsNotNone(man, "man (man-db) is not installed: scripts/deps.sh installs it")
        self.install()
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="0")
        for sec, pages in MAN.items():
            for page in pages:
                path = os.path.join(self.dest, "usr/share/man/man%s" % sec, page)
                p = subprocess.run([man, "--warnings", "-l", path], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, timeout=60)
                self.assertEqual(p.returncode, 0, (page, p.stderr))
                self.assertEqual(p.stderr, b"", (page, p.stderr))
                name = page.rsplit(".", 1)[0]
                text = re.sub(rb".\x08", b"", p.stdout)  # no overstrike bold/underline
                self.assertRegex(text, rb"NAME\s+" + re.escape(name.encode()) + rb"\s+-",
                                 page)
                self.assertIn(b"SEE ALSO", text, page)

    def test_installed_config_starts_installed_broker(self):
        self.install()
        conf = os.path.join(self.dest, "etc/secbroker/secbroker.conf")
        port = free_port()
        text = open(conf).read()
        self.assertIn("listener 1883 127.0.0.1", text)
        mine = os.path.join(self.tmp.path, "test.conf")
        with open(mine, "w") as f:
            f.write(text.replace("listener 1883", "listener %d" % port))
        p = subprocess.Popen([os.path.join(self.dest, "usr/sbin/secbroker"), "-c", mine],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self.assertTrue(wait_port(port, timeout=10), "the installed broker did not listen")
            pub = os.path.join(self.dest, "usr/bin/secpub")
            r = subprocess.run([pub, "-h", "127.0.0.1", "-p", str(port), "-t", "i/t", "-m", "x",
                                "-q", "1"], stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    unittest.main()
