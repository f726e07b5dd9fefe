"""test_smtpd_relay.py - relay policy and local recipient checks.

An untrusted client (mynetworks = 127.0.0.1/32, connecting from another
127/8 address) must never get a 250 for a non-local destination, whatever
the address trick (the classic open-relay battery: percent hack, bang
path, quoted local parts, source routes, trailing dots, address literals,
case and white space), and must get 250 for a plain local address. A
trusted client (in mynetworks) may relay. local_recipients restricts the
local parts (user@domain, @domain catch-all, bare user; unknown -> 550
5.1.1). The rejection is logged in Postfix's NOQUEUE format. swaks is
used as a second, independent client for the relay refusal.
"""
import os
import re
import unittest

from sluicetest import SluiceCase, enhanced, run, source_ip, wait_for_log

UNTRUSTED = "127.0.0.2"

RELAY_TRICKS = [
    "<u%remote.example@localhost>",
    "<U%REMOTE.EXAMPLE@LOCALHOST>",
    '<"u@remote.example"@localhost>',
    '<"u%remote.example"@localhost>',
    '<"u\\@remote.example"@localhost>',
    "<remote.example!u@localhost>",
    "<@localhost:u@remote.example>",
    "<@localhost,@test.example:u@remote.example>",
    "<u@remote.example.>",
    "<u@[1.2.3.4]>",
    "<u@[IPv6:2001:db8::1]>",
    "<U@REMOTE.EXAMPLE>",
    "<u@Remote.Example>",
    "<u@remote.example>",
    "<u@remote.example@localhost>",
    "<u@localhost@remote.example>",
    "<u@remote.example%localhost>",
    "<u@remote.example >",
    "< u@remote.example>",
    "<u@remote.example\t>",
    "<u@localhost.remote.example>",
    "<u@remote.localhost>",
    "<u@remote.exämple>",
    "u@remote.example",
    ":<u@remote.example>",
]


class OpenRelayBattery(SluiceCase):
    conf = {"mynetworks": "127.0.0.1/32"}

    def rcpt(self, addr, source=UNTRUSTED, sep="RCPT TO:"):
        c = self.session(source=source)
        self.assertReply(c.cmd("MAIL FROM:<s@remote-sender.example>"), 250, "2.1.0")
        r = c.cmd(f"{sep}{addr}")
        c.cmd("QUIT")
        c.close()
        return r

    def test_tricks_are_refused(self):
        for addr in RELAY_TRICKS:
            with self.subTest(addr=addr):
                code, text = self.rcpt(addr)
                self.assertNotEqual(code // 100, 2, f"RELAYED: RCPT TO:{addr} -> {text}")
                self.assertEqual(code // 100, 5, f"RCPT TO:{addr} -> {text}")
                if code == 554:
                    self.assertEqual(enhanced(text), "5.7.1", text)
                else:
                    self.assertIn(code, (501, 553, 555), f"RCPT TO:{addr} -> {text}")
                    self.assertIsNotNone(enhanced(text), text)

    def test_plain_remote_is_554_571(self):
        for addr in ("<u@remote.example>", "<u%remote.example@localhost>",
                     "<remote.example!u@localhost>", "<@localhost:u@remote.example>",
                     "<u@remote.example.>", "<u@[1.2.3.4]>", "<U@REMOTE.EXAMPLE>",
                     '<"u@remote.example"@localhost>'):
            with self.subTest(addr=addr):
                self.assertReply(self.rcpt(addr), 554, "5.7.1")

    def test_whitespace_and_case_in_verb(self):
        for sep in ("rcpt to:", "RCPT TO: ", "Rcpt To:"):
            with self.subTest(sep=sep):
                self.assertReply(self.rcpt("<u@remote.example>", sep=sep), 554, "5.7.1")

    def test_local_address_accepted(self):
        for addr in ("<u@localhost>", "<u@test.example>", "<U@LOCALHOST>", "<u@localhost.>",
                     "<postmaster>", "<Postmaster@test.example>"):
            with self.subTest(addr=addr):
                self.assertReply(self.rcpt(addr), 250, "2.1.5")

    def test_untrusted_can_deliver_locally(self):
        c = self.session(source=UNTRUSTED)
        code, text = c.send_mail(sender="s@remote-sender.example", rcpts=("u@localhost",))
        self.assertReply((code, text), 250, "2.0.0")

    def test_trusted_client_may_relay(self):
        c = self.session(source="127.0.0.1")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@remote.example>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<u@[192.0.2.1]>"), 250, "2.1.5")

    def test_reject_is_logged_postfix_style(self):
        src = source_ip()
        c = self.session(source=src, ehlo="bad.helo.example")
        self.assertReply(c.cmd("MAIL FROM:<s@remote-sender.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<victim@remote.example>"), 554, "5.7.1")
        c.cmd("QUIT")
        ip = re.escape(src)
        wait_for_log(self.srv, rf"sluice/smtpd\[\d+\]: NOQUEUE: reject: RCPT from unknown\[{ip}\]: "
                     r"554 5\.7\.1 <victim@remote\.example>: Relay access denied; "
                     r"from=<s@remote-sender\.example> to=<victim@remote\.example> "
                     r"proto=ESMTP helo=<bad\.helo\.example>$")

    def test_swaks_relay_refused(self):
        rc, out = run(["swaks", "--server", f"{self.srv.host}:{self.srv.port}",
                       "--local-interface", UNTRUSTED, "--from", "s@remote-sender.example",
                       "--to", "u@remote.example", "--quit-after", "RCPT", "--timeout", "10"])
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<\*\* +554 5\.7\.1 <u@remote\.example>: Relay access denied")

    def test_swaks_local_accepted_from_untrusted(self):
        rc, out = run(["swaks", "--server", f"{self.srv.host}:{self.srv.port}",
                       "--local-interface", UNTRUSTED, "--from", "s@remote-sender.example",
                       "--to", "u@test.example", "--timeout", "10"])
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"<- +250 2\.0\.0 Ok: queued as [0-9A-Z]+")


class LocalRecipients(SluiceCase):
    conf = {"mydomains": "localhost test.example catchall.example"}

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.table_dir = tempfile.mkdtemp(prefix="sluice-table-")
        cls.table = os.path.join(cls.table_dir, "local_recipients")
        with open(cls.table, "w") as f:
            f.write("# users\nalice@test.example OK\n@catchall.example OK\nbob   OK\n\n")
        cls.conf = dict(cls.conf, local_recipients=cls.table)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            import shutil
            shutil.rmtree(cls.table_dir, ignore_errors=True)

    def rcpt(self, addr):
        c = self.session(source=source_ip())
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        r = c.cmd(f"RCPT TO:<{addr}>")
        c.close()
        return r

    def test_known(self):
        for addr in ("alice@test.example", "ALICE@test.example", "anyone@catchall.example",
                     "bob@localhost", "bob@test.example", "bob@catchall.example", "postmaster"):
            with self.subTest(addr=addr):
                self.assertReply(self.rcpt(addr), 250, "2.1.5")

    def test_unknown(self):
        for addr in ("carol@test.example", "alice@localhost", "carol@localhost",
                     "bobby@test.example"):
            with self.subTest(addr=addr):
                self.assertReply(self.rcpt(addr), 550, "5.1.1")

    def test_unknown_is_logged(self):
        src = source_ip()
        c = self.session(source=src)
        c.cmd("MAIL FROM:<s@test.example>")
        self.assertReply(c.cmd("RCPT TO:<nobody@test.example>"), 550, "5.1.1")
        wait_for_log(self.srv, rf"NOQUEUE: reject: RCPT from unknown\[{re.escape(src)}\]: 550 5\.1\.1 "
                     r"<nobody@test\.example>: .*; from=<s@test\.example> to=<nobody@test\.example> "
                     r"proto=ESMTP helo=<client\.test\.example>$")


class NoLocalRecipientsTable(SluiceCase):
    """Without local_recipients every local part of mydomains is accepted."""

    def test_any_local_part(self):
        c = self.session(source=source_ip())
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        for addr in ("x@localhost", "zz.top@test.example", "a+b@localhost"):
            self.assertReply(c.cmd(f"RCPT TO:<{addr}>"), 250, "2.1.5")


if __name__ == "__main__":
    unittest.main()
