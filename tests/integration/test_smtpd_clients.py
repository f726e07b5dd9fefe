"""test_smtpd_clients.py - sluice against real SMTP clients.

Clients: swaks (plain, STARTTLS, PIPELINING, DSN parameters), Python's
smtplib (STARTTLS with an unverified context, send_message, SMTPUTF8,
DSN options, BDAT driven by hand since neither swaks 20201014 nor smtplib
speaks CHUNKING), and a real Postfix 3.7 running as a relay whose smtp
client delivers into sluice (with opportunistic TLS, PIPELINING and DSN
parameters passed through). Each message is checked in sluice's queue.
"""
import email.message
import email.policy
import re
import smtplib
import ssl
import time
import unittest

import peers
from sluicetest import (SluiceCase, make_body, parse_queue_file, queued_id, run,
                        split_message, wait_until)


def unverified_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Swaks(SluiceCase):

    def swaks(self, *args, timeout=30):
        return run(["swaks", "--server", f"{self.srv.host}:{self.srv.port}",
                    "--helo", "swaks.test.example", "--timeout", "15", *args], timeout=timeout)

    def queued(self, out):
        ids = re.findall(r"<[-~] +250 2\.0\.0 Ok: queued as ([0-9A-Z]+)", out)
        self.assertEqual(len(ids), 1, out)
        return parse_queue_file(self.srv.read_queue_file(ids[0]))

    def test_plain(self):
        rc, out = self.swaks("--from", "s@test.example", "--to", "u@localhost")
        self.assertEqual(rc, 0, out)
        q = self.queued(out)
        self.assertEqual(q["sender"], "s@test.example")
        self.assertEqual(q["helo"], "swaks.test.example")
        self.assertEqual(q["proto"], "ESMTP")
        self.assertEqual([r[0] for r in q["rcpt"]], ["u@localhost"])
        self.assertIn(b"X-Mailer: swaks", q["content"])

    def test_starttls(self):
        rc, out = self.swaks("-tls", "--from", "s@test.example", "--to", "u@localhost,v@test.example")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"<- +220 2\.0\.0 ")
        self.assertNotRegex(out, r"<~ +250-STARTTLS")  # not offered again inside TLS
        self.assertIn("TLS started with cipher TLSv1.3", out)
        q = self.queued(out)
        self.assertEqual(q["proto"], "ESMTPS")
        self.assertEqual([r[0] for r in q["rcpt"]], ["u@localhost", "v@test.example"])
        self.assertRegex(split_message(q["content"])[0].decode(),
                         r"\(using TLSv1\.3 with cipher [A-Z0-9_]+ \(\d+/\d+ bits\)\)")

    def test_pipeline(self):
        rc, out = self.swaks("--pipeline", "--from", "s@test.example",
                             "--to", "a@localhost,b@localhost,c@localhost")
        self.assertEqual(rc, 0, out)
        q = self.queued(out)
        self.assertEqual(len(q["rcpt"]), 3)

    def test_pipeline_with_tls(self):
        rc, out = self.swaks("-tls", "--pipeline", "--from", "s@test.example", "--to", "u@localhost")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.queued(out)["proto"], "ESMTPS")

    def test_dsn_parameters(self):
        """swaks has no DSN options; its address is sent verbatim inside <>,
        so parameters can ride after a '>' (the closing '>' swaks adds
        ends up in the last xtext value, which is valid xtext)."""
        rc, out = self.swaks("--from", "s@test.example> RET=HDRS ENVID=swaks-1",
                             "--to", "u@localhost> NOTIFY=FAILURE ORCPT=rfc822;u@localhost")
        self.assertEqual(rc, 0, out)
        q = self.queued(out)
        self.assertEqual(q["ret"], "HDRS")
        self.assertEqual(q["envid"], "swaks-1>")
        self.assertEqual(q["rcpt"][0], ("u@localhost", "FAILURE", "rfc822;u@localhost>"))

    def test_quit_after_rcpt(self):
        rc, out = self.swaks("--from", "s@test.example", "--to", "u@localhost", "--quit-after", "RCPT")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"<- +250 2\.1\.5 Ok")


class PythonSmtplib(SluiceCase):

    def smtp(self, source=None):
        s = smtplib.SMTP(self.srv.host, self.srv.port, local_hostname="py.test.example",
                         timeout=15, source_address=(source, 0) if source else None)
        self.addCleanup(s.close)
        return s

    def message(self, subject="smtplib", to="u@localhost", frm="s@test.example"):
        m = email.message.EmailMessage()
        m["From"] = frm
        m["To"] = to
        m["Subject"] = subject
        m["Message-ID"] = f"<{time.time_ns()}@py.test.example>"
        m.set_content("Hello from smtplib.\n.\n..leading dots\n")
        return m

    def test_starttls_send_message(self):
        s = self.smtp()
        s.ehlo()
        self.assertTrue(s.has_extn("starttls"))
        code, _ = s.starttls(context=unverified_context())
        self.assertEqual(code, 220)
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        before = set(self.srv.queue_files())
        refused = s.send_message(self.message())
        self.assertEqual(refused, {})
        s.quit()
        new = set(self.srv.queue_files()) - before
        self.assertEqual(len(new), 1)
        q = parse_queue_file(self.srv.read_queue_file(new.pop()))
        self.assertEqual(q["proto"], "ESMTPS")
        self.assertIn(b"\r\n.\r\n..leading dots\r\n", q["content"])
        self.assertIn(b"(using TLSv1.3 with cipher ", q["content"])

    def test_smtputf8(self):
        s = self.smtp()
        s.ehlo()
        self.assertTrue(s.has_extn("smtputf8"))
        m = email.message.EmailMessage(policy=email.policy.SMTPUTF8)
        m["From"] = "Jörg <jörg@test.example>"
        m["To"] = "müller@localhost"
        m["Subject"] = "Grüße"
        m.set_content("Ünïcödé body\n")
        before = set(self.srv.queue_files())
        self.assertEqual(s.send_message(m), {})
        s.quit()
        new = set(self.srv.queue_files()) - before
        self.assertEqual(len(new), 1)
        q = parse_queue_file(self.srv.read_queue_file(new.pop()))
        self.assertTrue(q.get("smtputf8"))
        self.assertEqual(q["sender"], "jörg@test.example")
        self.assertEqual(q["rcpt"][0][0], "müller@localhost")
        self.assertIn("Subject: Grüße".encode(), q["content"])

    def test_dsn_and_size_options(self):
        s = self.smtp()
        s.ehlo()
        body = self.message().as_bytes()
        before = set(self.srv.queue_files())
        refused = s.sendmail("s@test.example", ["u@localhost", "v@localhost"], body,
                             mail_options=["RET=FULL", "ENVID=py+2Denvid", "BODY=8BITMIME"],
                             rcpt_options=["NOTIFY=DELAY,FAILURE", "ORCPT=rfc822;orig@localhost"])
        self.assertEqual(refused, {})
        s.quit()
        new = set(self.srv.queue_files()) - before
        q = parse_queue_file(self.srv.read_queue_file(new.pop()))
        self.assertEqual(q["ret"], "FULL")
        self.assertEqual(q["envid"], "py+2Denvid")
        self.assertEqual(q["body"], "8BITMIME")
        self.assertEqual(q["rcpt"], [("u@localhost", "FAILURE,DELAY", "rfc822;orig@localhost"),
                                     ("v@localhost", "FAILURE,DELAY", "rfc822;orig@localhost")])

    def test_smtplib_errors(self):
        s = self.smtp()
        s.ehlo()
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail("s@test.example", ["u@localhost"], b"x" * 10,
                       mail_options=["SIZE=999999999999"])
        self.assertEqual(cm.exception.smtp_code, 552)
        self.assertTrue(cm.exception.smtp_error.startswith(b"5.3.4"), cm.exception.smtp_error)
        s.rset()
        code, msg = s.docmd("VRFY", "u@localhost")
        self.assertEqual(code, 252)
        code, msg = s.docmd("HELP")
        self.assertEqual(code, 214)
        s.quit()

    def test_bdat_by_hand_over_tls(self):
        s = self.smtp()
        s.ehlo()
        self.assertTrue(s.has_extn("chunking"))
        s.starttls(context=unverified_context())
        s.ehlo()
        self.assertEqual(s.mail("s@test.example")[0], 250)
        self.assertEqual(s.rcpt("u@localhost")[0], 250)
        body = make_body(lines=2000)
        half = len(body) // 2
        s.send(b"BDAT %d\r\n" % half + body[:half])
        code, msg = s.getreply()
        self.assertEqual((code, msg[:5]), (250, b"2.0.0"))
        s.send(b"BDAT %d LAST\r\n" % (len(body) - half) + body[half:])
        code, msg = s.getreply()
        self.assertEqual(code, 250, msg)
        qid = queued_id(f"{code} {msg.decode()}")
        q = parse_queue_file(self.srv.read_queue_file(qid))
        self.assertTrue(q["content"].endswith(body))
        self.assertEqual(q["proto"], "ESMTPS")
        s.quit()


@unittest.skipUnless(peers.postfix_available(), "Postfix not installed or not root")
class PostfixRelay(SluiceCase):
    """A real Postfix relays into sluice (relayhost = [127.0.0.1]:SLUICEPORT)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.pf = peers.PostfixPeer(relay_to=cls.srv.port).start()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.pf.cleanup()
        finally:
            super().tearDownClass()

    def wait_new(self, before, n, timeout=30):
        return wait_until(lambda: (set(self.srv.queue_files()) - before
                                   if len(set(self.srv.queue_files()) - before) >= n else None),
                          timeout=timeout, what=f"{n} message(s) relayed by Postfix:\n"
                          + self.pf.log()[-3000:])

    def test_relay_one_message_with_dsn(self):
        before = set(self.srv.queue_files())
        s = smtplib.SMTP("127.0.0.1", self.pf.port, local_hostname="origin.test.example", timeout=15)
        try:
            s.sendmail("sender@origin.example", ["rcpt@test.example"],
                       make_body(subject="via postfix", msgid="<via-postfix@origin.example>"),
                       mail_options=["RET=HDRS", "ENVID=pf-envid-1"],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
            s.quit()
        finally:
            s.close()
        new = self.wait_new(before, 1)
        self.assertEqual(len(new), 1)
        q = parse_queue_file(self.srv.read_queue_file(new.pop()))
        self.assertEqual(q["sender"], "sender@origin.example")
        self.assertEqual(q["rcpt"][0][0], "rcpt@test.example")
        self.assertEqual(q["rcpt"][0][1], "SUCCESS,FAILURE")
        self.assertEqual(q["rcpt"][0][2], "rfc822;rcpt@test.example")
        self.assertEqual(q["envid"], "pf-envid-1")
        self.assertEqual(q["ret"], "HDRS")
        self.assertEqual(q["helo"], "relay.test.example")
        self.assertEqual(q["proto"], "ESMTPS")  # Postfix used STARTTLS (level may)
        head = split_message(q["content"])[0].decode()
        # ours first, then Postfix's
        self.assertRegex(head, r"^Received: from relay\.test\.example \(unknown \[127\.0\.0\.1\]\)\r\n"
                         r"\t\(using TLSv1\.3 with cipher ")
        self.assertRegex(head, r"\r\nReceived: from origin\.test\.example .*\r\n\tby relay\.test\.example \(Postfix\)")
        self.assertIn("Message-ID: <via-postfix@origin.example>", head)
        m = re.search(r"status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-Z]+)\)", self.pf.log())
        self.assertIsNotNone(m, self.pf.log()[-2000:])
        self.assertEqual(m.group(1), q["id"])

    def test_relay_smtp_source_burst(self):
        before = set(self.srv.queue_files())
        rc, out = run(["smtp-source", "-s", "5", "-m", "40", "-l", "2048", "-f", "burst@origin.example",
                       "-t", "rcpt@test.example", f"127.0.0.1:{self.pf.port}"], timeout=60)
        self.assertEqual(rc, 0, out)
        new = self.wait_new(before, 40, timeout=60)
        self.assertEqual(len(new), 40)
        for qid in new:
            q = parse_queue_file(self.srv.read_queue_file(qid))
            self.assertEqual(q["sender"], "burst@origin.example")
        wait_until(lambda: self.pf.log().count("status=sent (250 2.0.0 Ok: queued as") >= 40,
                   timeout=30, what="Postfix logging 40 deliveries")
        self.assertNotIn("status=deferred", self.pf.log())
        self.assertNotIn("status=bounced", self.pf.log())


if __name__ == "__main__":
    unittest.main()
