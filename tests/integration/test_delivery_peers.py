"""Delivery to real peers: Debian's Postfix as the receiving MTA (private
instance, Maildir through virtual_mailbox_domains) and Dovecot over LMTP
(TCP and unix socket), read back through IMAP."""
import imaplib
import os
import unittest

from delivery_support import DeliveryCase, Dovecot, PostfixReceiver, wait_until

SENDER = "sender@test.example"


def postfix_skip_reason():
    if not os.path.exists("/usr/sbin/postfix"):
        return "postfix is not installed (scripts/deps.sh installs it)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    try:
        import pwd
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


class ToPostfix(DeliveryCase):
    def setUp(self):
        why = postfix_skip_reason()
        if why:
            self.skipTest(why)
        super().setUp()

    def test_sluice_delivers_to_postfix(self):
        pf = PostfixReceiver(self.tmp)
        self.addCleanup(pf.stop)
        pf.start()
        srv = self.sluice(transports={pf.domain: f"smtp:[127.0.0.1]:{pf.port}"})
        body = "".join(f"line {i}\r\n" for i in range(50)) + ".dot line\r\n"
        qids = [self.send(srv, SENDER, [f"user{i}@{pf.domain}", f"other{i}@{pf.domain}"],
                          subject=f"to postfix {i}", body=body) for i in range(3)]
        self.wait_queue_empty(srv, 30)
        wait_until(lambda: len(pf.mailbox()) >= 6, 30, what="6 messages in Postfix's Maildir",
                   detail=lambda: pf.log()[-3000:])
        box = pf.mailbox()
        self.assertEqual(len(box), 6, "3 messages x 2 recipients")
        subjects = sorted(m["Subject"] for m in box)
        self.assertEqual(subjects, sorted([f"to postfix {i}" for i in range(3)] * 2))
        for m in box:
            self.assertEqual(m["Return-Path"], f"<{SENDER}>")
            self.assertIn(".dot line", m.get_content())
            received = m.get_all("Received")
            self.assertTrue(any("mx.test.example" in r for r in received), received)
        for qid in qids:
            self.assertRegex(srv.log(), rf"{qid}: to=<user\d@{pf.domain}>, relay=127\.0\.0\.1"
                             rf"\[127\.0\.0\.1\]:{pf.port}, .*status=sent \(250 2\.0\.0 Ok")
        # Postfix offers STARTTLS? Debian's default has no smtpd cert here: plaintext
        self.assertRegex(pf.log(), r"postfix/smtpd\[\d+\]: connect from")

    def test_postfix_refusal_bounces(self):
        pf = PostfixReceiver(self.tmp, recipient_access={
            "nope@rcv.test.example": "550 5.1.1 <nope@rcv.test.example>: no such user here"})
        self.addCleanup(pf.stop)
        pf.start()
        srv = self.sluice(transports={pf.domain: f"smtp:[127.0.0.1]:{pf.port}"})
        qid = self.send(srv, SENDER, [f"nope@{pf.domain}", f"yes@{pf.domain}"])
        dsn = self.wait_maildir(srv, SENDER, timeout=30)
        self.wait_queue_empty(srv, 30)
        self.assertIn("nope@rcv.test.example", dsn[0].as_string())
        wait_until(lambda: len(pf.mailbox()) >= 1, 30, what="the accepted copy at Postfix")
        self.assertEqual(pf.mailbox()[0]["Delivered-To"], f"yes@{pf.domain}")
        self.assertRegex(srv.log(), rf"{qid}: to=<nope@{pf.domain}>, .*dsn=5\.1\.1, status=bounced")


class ToDovecotLMTP(DeliveryCase):
    def setUp(self):
        why = Dovecot.available()
        if why:
            self.skipTest(f"Dovecot LMTP/IMAP: {why} (apt-get install dovecot-lmtpd "
                          f"dovecot-imapd)")
        super().setUp()
        self.dove = Dovecot(self.tmp)
        self.addCleanup(self.dove.stop)
        try:
            self.dove.start()
        except Exception as e:  # noqa: BLE001 - report why it cannot run here
            self.skipTest(f"Dovecot cannot run here: {e}\n{self.dove.log()[-2000:]}")

    def imap_messages(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.dove.imap_port, timeout=10)
        try:
            m.login(user, self.dove.password)
            typ, data = m.select("INBOX")
            self.assertEqual(typ, "OK", data)
            typ, data = m.search(None, "ALL")
            out = []
            for num in data[0].split():
                typ, msg = m.fetch(num, "(RFC822)")
                out.append(msg[0][1])
            return out
        finally:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def _deliver(self, nexthop):
        srv = self.sluice(transports={"dove.test.example": nexthop})
        qid = self.send(srv, SENDER, ["alice@dove.test.example", "bob@dove.test.example",
                                      "nobody@dove.test.example"],
                        subject="over lmtp", body="Hello Dovecot.\r\n.dotted\r\n")
        self.wait_queue_empty(srv, 30)
        for user in ("alice@dove.test.example", "bob@dove.test.example"):
            msgs = wait_until(lambda u=user: self.imap_messages(u), 15,
                              what=f"a message for {user} over IMAP",
                              detail=lambda: self.dove.log()[-3000:])
            self.assertEqual(len(msgs), 1)
            self.assertIn(b"Subject: over lmtp", msgs[0])
            self.assertIn(b"\r\n.dotted\r\n", msgs[0])
            self.assertIn(b"Return-Path: <sender@test.example>", msgs[0])
        log = srv.log()
        self.assertRegex(log, rf"sluice/lmtp\[\d+\]: {qid}: to=<alice@dove.test.example>, "
                              rf".*status=sent")
        self.assertRegex(log, rf"{qid}: to=<bob@dove.test.example>, .*status=sent")
        # the unknown user: LMTP refuses at RCPT, a DSN goes back
        self.assertRegex(log, rf"{qid}: to=<nobody@dove.test.example>, .*status=bounced")
        dsn = self.wait_maildir(srv, SENDER)
        self.assertEqual(len(dsn), 1)
        return srv

    def test_lmtp_tcp(self):
        self._deliver(f"lmtp:[127.0.0.1]:{self.dove.lmtp_port}")

    def test_lmtp_unix_socket(self):
        srv = self._deliver(f"lmtp:unix:{self.dove.lmtp_socket}")
        self.assertIn(f"relay={self.dove.lmtp_socket}", srv.log())


if __name__ == "__main__":
    unittest.main()
