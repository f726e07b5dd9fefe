"""test_migrate_hostile.py - `sluice migrate` against a scripted hostile IMAP
server: each misbehaviour must end in a clear error (one line naming the
problem, a non-zero documented exit code), never a crash or a hang.
"""
import os
import subprocess
import tempfile
import unittest

from fakeimap import FakeIMAP, make_message
from harness import SLUICE, free_port


class HostileTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-hostile-")
        self.passfile = os.path.join(self.tmp, "pass")
        with open(self.passfile, "w") as f:
            f.write("p\n")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        subprocess.run(["rm", "-rf", self.tmp])

    def server(self, **kw):
        s = FakeIMAP(**kw)
        self.servers.append(s)
        return s

    def migrate(self, src, dst, *extra, timeout=60):
        args = [SLUICE, "migrate", "--host1", "127.0.0.1", "--port1", str(src.port),
                "--user1", "u", "--passfile1", self.passfile, "--host2", "127.0.0.1",
                "--port2", str(dst.port), "--user2", "u", "--passfile2", self.passfile,
                "--statefile", os.path.join(self.tmp, "state"), "--timeout", "5",
                "--noprogress", *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)

    def assertCleanFailure(self, p, codes, needle):
        self.assertIn(p.returncode, codes, p.stdout + p.stderr)
        self.assertNotIn("AddressSanitizer", p.stderr)
        self.assertNotIn("runtime error", p.stderr)
        self.assertIn(needle, p.stdout + p.stderr)

    def msgs(self, n=5):
        return [make_message(i) for i in range(1, n + 1)]

    def test_benign_fake_works(self):
        src, dst = self.server(messages=self.msgs()), self.server()
        p = self.migrate(src, dst)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(len(dst.appended), 5)

    def test_imap4rev2_enabled_where_offered(self):
        caps = "IMAP4rev2 IMAP4rev1 ENABLE LITERAL- UIDPLUS AUTH=PLAIN ID NAMESPACE"
        src = self.server(messages=self.msgs(), caps=caps)
        dst = self.server(caps=caps)
        p = self.migrate(src, dst)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(getattr(src, "enabled", ""), "IMAP4rev2")
        self.assertEqual(len(dst.appended), 5)

    def test_synchronising_literals(self):
        src = self.server(messages=self.msgs(), caps="IMAP4rev1 AUTH=PLAIN")
        dst = self.server(caps="IMAP4rev1 UIDPLUS")
        p = self.migrate(src, dst)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(len(dst.appended), 5)
        self.assertEqual(src.auth_seen[-1][0], "PLAIN")     # no SASL-IR: a "+" round trip
        self.assertEqual(dst.auth_seen[-1][0], "LOGIN")

    def test_truncated_literal(self):
        src, dst = self.server(messages=self.msgs(), fault="truncated-literal"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (6, 8), "closed the connection")

    def test_literal_of_2gb(self):
        src, dst = self.server(messages=self.msgs(), fault="huge-literal"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (6, 8), "literal of 2147483648 bytes")

    def test_bye_mid_fetch(self):
        src, dst = self.server(messages=self.msgs(), fault="bye-mid-fetch"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (6,), "BYE")

    def test_no_on_append(self):
        src, dst = self.server(messages=self.msgs()), self.server(fault="no-append")
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (6,), "OVERQUOTA")
        self.assertIn("failed:               5", p.stdout)

    def test_unsolicited_responses(self):
        src, dst = self.server(messages=self.msgs(), fault="unsolicited"), self.server()
        p = self.migrate(src, dst)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(len(dst.appended), 5)

    def test_garbage_mid_fetch(self):
        src, dst = self.server(messages=self.msgs(), fault="garbage-mid-fetch"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (6, 8), "unparsable response")

    def test_garbage_greeting(self):
        src, dst = self.server(messages=self.msgs(), fault="garbage-greeting"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (3, 8), "host1")

    def test_silent_server_times_out(self):
        src, dst = self.server(messages=self.msgs(), fault="silence"), self.server()
        p = self.migrate(src, dst, "--timeout", "2")
        self.assertCleanFailure(p, (6,), "no reply")

    def test_auth_failure(self):
        src, dst = self.server(messages=self.msgs(), password="other"), self.server()
        p = self.migrate(src, dst)
        self.assertCleanFailure(p, (5,), "authentication as u failed")

    def test_password_not_in_output(self):
        src, dst = self.server(messages=self.msgs(), password="other"), self.server()
        p = self.migrate(src, dst, "--trace")
        self.assertNotIn("cA==", p.stderr)           # base64 fragment of the PLAIN reply
        self.assertNotIn("\x00p", p.stderr)

    def test_xoauth2_token_from_file_and_command(self):
        src = self.server(messages=self.msgs(), token="tok123")
        dst = self.server()
        tokfile = os.path.join(self.tmp, "token")
        with open(tokfile, "w") as f:
            f.write("tok123\n")
        p = self.migrate(src, dst, "--oauthaccesstoken1", tokfile)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(src.auth_seen[-1][0], "XOAUTH2")
        p = self.migrate(src, dst, "--oauthcommand1", "echo wrong")
        self.assertCleanFailure(p, (5,), "authentication")

    def test_connection_refused(self):
        dst = self.server()

        class Nobody:
            port = free_port()
        p = self.migrate(Nobody, dst)
        self.assertCleanFailure(p, (3,), "cannot connect")


if __name__ == "__main__":
    unittest.main()
