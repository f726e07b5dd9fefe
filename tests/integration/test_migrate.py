"""test_migrate.py - `sluice migrate` between two private Dovecot servers.

The source speaks "/" as its hierarchy separator with no namespace prefix
and calls its Sent folder "Sent Items"; the destination uses "." with the
prefix "INBOX." and calls its folders Sent and Spam, so separators,
prefixes and special-use folders must all be translated. Fixtures: about
2,000 messages (mailfixture.py) with flags, keywords, old INTERNALDATEs,
messages without Message-ID, duplicates, 8-bit bodies and a 20 MB message.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
import imaplib
import shutil

import dovecot
import mailfixture
from harness import SLUICE

SRC = DST = None
USERS = [f"u{i}" for i in range(1, 11)]
MAPPING = {"INBOX": "INBOX", "Sent Items": "INBOX.Sent", "Junk": "INBOX.Spam",
           "Trash": "INBOX.Trash", "Drafts": "INBOX.Drafts", "Lists": "INBOX.Lists",
           "Archive/2019": "INBOX.Archive.2019", "Archive/2019/Q1": "INBOX.Archive.2019.Q1",
           "Work/Projects/Alpha": "INBOX.Work.Projects.Alpha", "Big": "INBOX.Big"}


def setUpModule():
    global SRC, DST
    SRC = dovecot.Dovecot({u: "src-" + u for u in USERS}, sep="/", prefix="",
                          sent="Sent Items", tag="src").start()
    DST = dovecot.Dovecot({u: "dst-" + u for u in USERS}, sep=".", prefix="INBOX.",
                          sent="Sent", junk="Spam", tag="dst").start()


def tearDownModule():
    for s in (SRC, DST):
        if s:
            s.cleanup()


def dedup(snap):
    """content -> list of (flags, idate) variants."""
    out = {}
    for folder, c in snap.items():
        d = {}
        for (sha, flags, idate), n in c.items():
            d.setdefault(sha, []).extend([(flags, idate)] * n)
        out[folder] = d
    return out


class MigrateTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-migrate-")
        self.state = os.path.join(self.tmp, "state")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def args(self, user, *extra, pop3=False):
        return [SLUICE, "migrate", "--host1", "127.0.0.1",
                "--port1", str(SRC.ports["pop3" if pop3 else "imap"]), "--user1", user,
                "--passfile1", SRC.passfile(user), "--host2", "127.0.0.1",
                "--port2", str(DST.ports["imap"]), "--user2", user,
                "--passfile2", DST.passfile(user), "--statefile", self.state,
                "--noprogress", *extra]

    def migrate(self, user, *extra, code=0, pop3=False, timeout=240):
        p = subprocess.run(self.args(user, *extra, pop3=pop3), capture_output=True,
                           text=True, timeout=timeout)
        self.assertNotIn("AddressSanitizer", p.stderr)
        if code is not None:
            self.assertEqual(p.returncode, code, p.stdout[-4000:] + p.stderr[-4000:])
        return p

    def summary(self, user, *extra, **kw):
        p = self.migrate(user, "--json", *extra, **kw)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def assertMigrated(self, user, mapping=MAPPING):
        src = dedup(mailfixture.snapshot(SRC.ports["imap"], user, "src-" + user))
        dst = dedup(mailfixture.snapshot(DST.ports["imap"], user, "dst-" + user))
        for f1, content in src.items():
            f2 = mapping.get(f1)
            if f2 is None:
                continue
            self.assertIn(f2, dst, f"{f1} -> {f2} missing on the destination")
            self.assertEqual(set(content), set(dst[f2]), f"content of {f1} -> {f2}")
            for sha, variants in dst[f2].items():
                self.assertEqual(len(variants), 1, f"{f2}: duplicated message {sha}")
                self.assertIn(variants[0], content[sha], f"{f2}: flags/date of {sha}")

    # ------------------------------------------------------------------
    def test_full_migration_then_rerun_copies_nothing(self):
        n = mailfixture.standard(SRC, "u1", big=True)
        self.assertGreater(n, 1900)
        t0 = time.time()
        s = self.summary("u1")
        self.assertEqual(s["failed"], 0)
        self.assertEqual(s["missing"], 0)
        self.assertEqual(s["folders_failed"], 0)
        self.assertGreater(s["duplicates"], 10)
        self.assertEqual(s["transferred"] + s["duplicates"], n)
        self.assertEqual(s["verdict"], "ok")
        self.assertMigrated("u1")
        again = self.summary("u1")
        self.assertEqual(again["transferred"], 0)
        self.assertEqual(again["already"], s["transferred"])
        self.assertMigrated("u1")
        self.assertLess(time.time() - t0, 300)

    def test_text_report_and_progress(self):
        mailfixture.standard(SRC, "u9", scale=0.02)
        s = self.summary("u9", "--maxsize", "400")
        self.assertGreater(s["skipped"], 0)
        self.assertEqual(s["missing"], 0)
        p = self.migrate("u9", "--progress")
        self.assertIn("verification: all", p.stdout)
        self.assertIn("messages transferred:", p.stdout)
        self.assertIn("msg/s", p.stderr)       # the progress line
        self.assertIn("ETA", p.stderr)

    def test_kill9_then_resume_no_loss_no_duplicates(self):
        n = mailfixture.standard(SRC, "u2", scale=0.5)
        proc = subprocess.Popen(self.args("u2", "--maxmessagespersecond", "300", "--jobs", "2"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if sum(mailfixture.tree_digest(DST, "u2").values()) > n // 4:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        copied = sum(mailfixture.tree_digest(DST, "u2").values())
        self.assertGreater(copied, 0)
        self.assertLess(copied, n, "the run finished before it could be killed")
        s = self.summary("u2")
        self.assertEqual(s["missing"], 0)
        self.assertEqual(s["failed"], 0)
        self.assertMigrated("u2")

    def test_uidvalidity_change_falls_back_to_identity(self):
        mailfixture.standard(SRC, "u3", scale=0.1)
        first = self.summary("u3")
        self.assertGreater(first["transferred"], 50)
        SRC.doveadm("mailbox", "update", "-u", "u3", "--uid-validity", "12345", "INBOX")
        SRC.doveadm("mailbox", "update", "-u", "u3", "--uid-validity", "12346", "Lists")
        p = self.migrate("u3", "--json")
        s = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(s["transferred"], 0)
        self.assertEqual(s["missing"], 0)
        self.assertIn("UIDVALIDITY changed", p.stderr)
        self.assertMigrated("u3")

    def test_dry_run_changes_nothing(self):
        mailfixture.standard(SRC, "u4", scale=0.1)
        m = imaplib.IMAP4("127.0.0.1", DST.ports["imap"])
        m.login("u4", "dst-u4")
        m.append("INBOX", "(\\Seen)", None, b"Message-ID: <pre@x>\r\n\r\nalready here\r\n")
        m.logout()
        before = mailfixture.tree_digest(DST, "u4")
        p = self.migrate("u4", "--dry", "--delete2")
        self.assertIn("would copy", p.stdout)
        self.assertIn("would create folder", p.stdout)
        self.assertIn("would delete 1 messages from INBOX", p.stdout)
        self.assertEqual(mailfixture.tree_digest(DST, "u4"), before)
        self.assertFalse(os.path.exists(self.state))

    def test_delete2_mirrors_and_flags_resync(self):
        mailfixture.standard(SRC, "u5", scale=0.05)
        self.summary("u5")
        m = imaplib.IMAP4("127.0.0.1", DST.ports["imap"])
        m.login("u5", "dst-u5")
        m.append("INBOX", None, None, b"Message-ID: <extra@x>\r\n\r\nonly on host2\r\n")
        m.logout()
        s = imaplib.IMAP4("127.0.0.1", SRC.ports["imap"])
        s.login("u5", "src-u5")
        s.select("INBOX")
        s.uid("STORE", "1:3", "+FLAGS", "(\\Deleted)")
        s.expunge()
        s.uid("STORE", "4", "FLAGS", "(\\Answered project-x)")
        s.logout()
        out = self.summary("u5", "--delete2")
        self.assertGreaterEqual(out["deleted"], 3)
        self.assertGreaterEqual(out["flags_updated"], 1)
        src = dedup(mailfixture.snapshot(SRC.ports["imap"], "u5", "src-u5", ["INBOX"]))
        dst = dedup(mailfixture.snapshot(DST.ports["imap"], "u5", "dst-u5", ["INBOX"]))
        self.assertEqual(set(src["INBOX"]), set(dst["INBOX"]))
        for sha, v in dst["INBOX"].items():      # a duplicate may stand in: same flags
            self.assertIn(v[0][0], [flags for flags, _ in src["INBOX"][sha]])

    def test_pop3_source_rerun_copies_nothing_twice(self):
        w = mailfixture.MaildirWriter(SRC, "u6")
        for i in range(60):
            w.add("INBOX", mailfixture.message(i, "pop", msgid=(i % 9 != 0),
                                               eightbit=(i % 5 == 0)))
        w.done()
        s = self.summary("u6", "--pop3", pop3=True)
        self.assertEqual(s["transferred"], 60)
        self.assertEqual(s["missing"], 0)
        again = self.summary("u6", "--pop3", pop3=True)
        self.assertEqual(again["transferred"], 0)
        os.unlink(self.state)              # even without the state file
        third = self.summary("u6", "--pop3", pop3=True)
        self.assertEqual(third["transferred"], 0)
        stls = self.summary("u6", "--pop3", "--tls1", "--cafile1",
                            os.path.join(SRC.dir, "cert.pem"), pop3=True)
        self.assertEqual(stls["transferred"], 0)
        p = self.migrate("u6", "--pop3", "--ssl1", "--port1", str(SRC.ports["pop3s"]),
                         "--insecure1", pop3=True)
        self.assertIn("already there:        60", p.stdout)
        dst = mailfixture.snapshot(DST.ports["imap"], "u6", "dst-u6", ["INBOX"])
        self.assertEqual(sum(dst["INBOX"].values()), 60)

    def test_tls_starttls_and_exit_codes(self):
        mailfixture.standard(SRC, "u7", scale=0.02)
        ca = os.path.join(SRC.dir, "cert.pem")
        ca2 = os.path.join(DST.dir, "cert.pem")
        s = self.summary("u7", "--ssl1", "--port1", str(SRC.ports["imaps"]), "--cafile1", ca,
                         "--tls2", "--cafile2", ca2)
        self.assertEqual(s["missing"], 0)
        self.assertGreater(s["transferred"], 0)
        p = self.migrate("u7", "--ssl1", "--port1", str(SRC.ports["imaps"]), code=4)
        self.assertIn("TLS", p.stdout)
        p = self.migrate("u7", "--insecure1", "--ssl1", "--port1", str(SRC.ports["imaps"]))
        bad = os.path.join(self.tmp, "bad")
        with open(bad, "w") as f:
            f.write("wrong\n")
        args = self.args("u7")
        args[args.index("--passfile2") + 1] = bad
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 5, p.stdout)
        self.assertNotIn("wrong", p.stdout + p.stderr)

    def test_filters_f1f2_and_accounts_file(self):
        for u in ("u8", "u10"):
            mailfixture.standard(SRC, u, scale=0.02)
        accounts = os.path.join(self.tmp, "accounts")
        with open(accounts, "w") as f:
            f.write("# two account pairs\n")
            for u in ("u8", "u10"):
                f.write(f"--user1 {u} --passfile1 {SRC.passfile(u)} "
                        f"--user2 {u} --passfile2 {DST.passfile(u)}\n")
        args = [SLUICE, "migrate", "--host1", "127.0.0.1", "--port1", str(SRC.ports["imap"]),
                "--host2", "127.0.0.1", "--port2", str(DST.ports["imap"]),
                "--statedir", self.tmp, "--noprogress", "--json",
                "--include", "^(INBOX|Lists|Work)", "--exclude", "Alpha",
                "--f1f2", "Lists=INBOX.Mailing", "--accounts", accounts, "--parallel", "2"]
        p = subprocess.run(args, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        s = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(s["folders_synced"], 4)
        for u in ("u8", "u10"):
            dst = mailfixture.snapshot(DST.ports["imap"], u, "dst-" + u)
            self.assertIn("INBOX.Mailing", dst)
            self.assertNotIn("INBOX.Lists", dst)
            self.assertNotIn("INBOX.Work.Projects.Alpha", dst)
            self.assertNotIn("INBOX.Archive.2019", dst)

    def test_password_on_command_line_warns(self):
        args = self.args("u9")
        i = args.index("--passfile1")
        args[i:i + 2] = ["--password1", "src-u9"]
        p = subprocess.run(args + ["--dry"], capture_output=True, text=True, timeout=120)
        self.assertIn("warning: --password1", p.stderr)
        self.assertNotIn("src-u9", p.stdout)


if __name__ == "__main__":
    unittest.main()
