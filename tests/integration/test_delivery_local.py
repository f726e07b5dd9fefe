"""Delivery: local Maildir, relay to smtp-sink, and the notifications
(partial failure DSN, NOTIFY=NEVER, null-sender failure to postmaster,
delay notice, expiry)."""
import os
import re
import time
import unittest

from delivery_support import DeliveryCase, dsn_parts, maildir_files, maildir_messages, wait_until
from fakesmtp import NO_USER_REPLY

SENDER = "sender@test.example"


class LocalMaildir(DeliveryCase):
    def test_maildir_delivery_headers(self):
        srv = self.sluice()
        body = "Line one.\r\n.leading dot\r\nLast line.\r\n"
        qid = self.send(srv, SENDER, ["Alice@test.example", "bob@localhost"], body=body,
                        subject="maildir check")
        alice = self.wait_maildir(srv, "alice@test.example")
        bob = self.wait_maildir(srv, "bob@localhost")
        self.assertEqual(len(alice), 1)
        self.assertEqual(len(bob), 1)
        path = maildir_files(srv.maildir, "alice@test.example")[0]
        raw = open(path, "rb").read()
        self.assertNotIn(b"\r\n", raw, "Maildir copies must have LF line endings")
        lines = raw.split(b"\n")
        self.assertEqual(lines[0], b"Return-Path: <sender@test.example>")
        self.assertTrue(lines[1].lower().startswith(b"delivered-to: "), lines[1])
        self.assertIn(b"alice@test.example", lines[1].lower())
        self.assertEqual(alice[0]["Subject"], "maildir check")
        self.assertIn("Received", alice[0])
        self.assertIn(b"\n.leading dot\n", raw)
        self.assertEqual(bob[0]["Delivered-To"], "bob@localhost")
        self.wait_log(srv, rf"{qid}: to=<Alice@test.example>, relay=local, .*status=sent")
        self.wait_log(srv, rf"{qid}: removed")
        self.wait_queue_empty(srv)
        # tmp/ is empty after delivery
        local_tmp = os.path.join(srv.maildir, "test.example", "alice", "tmp")
        self.assertEqual(os.listdir(local_tmp), [])


class RelayToSmtpSink(DeliveryCase):
    N = 40

    def test_relay_n_messages_to_smtp_sink(self):
        sink = self.start_sink()
        srv = self.sluice({"relayhost": f"[127.0.0.1]:{sink.port}"})
        ids = []
        for i in range(self.N):
            mid = f"<relay{i}@client.test.example>"
            ids.append(mid)
            self.send(srv, SENDER, [f"user{i}@remote.example", f"other{i}@remote.example"],
                      msgid=mid, body=f"message {i}\r\n" + ("x" * 70 + "\r\n") * 30)
        self.wait_queue_empty(srv, 60)
        wait_until(lambda: sink.count() >= self.N, 10, what="all messages at smtp-sink")
        got = sink.message_ids()
        self.assertEqual(sorted(got), sorted(ids), "every message exactly once at smtp-sink")
        # both recipients went in one transaction
        self.assertEqual(len(re.findall(r"^X-Rcpt-Args: ", sink.text(), re.M)), 2 * self.N)
        sent = self.log_lines(srv, r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent"
                              % sink.port)
        self.assertEqual(len(sent), 2 * self.N)
        self.assertEqual(self.log_lines(srv, r"status=(bounced|deferred)"), [])


class PartialRecipients(DeliveryCase):
    def test_one_sent_one_bounced_dsn_for_the_bounced_only(self):
        fake = self.start_fake(rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a)
                               if a.startswith("nobody") else None)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["good@remote.example", "nobody@remote.example"],
                        subject="partial")
        dsns = self.wait_maildir(srv, SENDER)
        self.wait_queue_empty(srv)
        self.assertEqual(len(dsns), 1)
        self.assertEqual(fake.delivered_rcpts(), ["good@remote.example"])
        d = dsns[0]
        self.assertEqual(d.get_content_type(), "multipart/report")
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        human, rcpts, _ = dsn_parts(d)
        self.assertEqual(len(rcpts), 1, rcpts)
        self.assertEqual(rcpts[0]["final-recipient"].lower(), "rfc822; nobody@remote.example")
        self.assertEqual(rcpts[0]["action"], "failed")
        self.assertEqual(rcpts[0]["status"], "5.1.1")
        self.assertIn("User unknown", rcpts[0].get("diagnostic-code", ""))
        self.assertNotIn("good@remote.example", human)
        self.wait_log(srv, rf"{qid}: to=<good@remote.example>, .*status=sent")
        self.wait_log(srv, rf"{qid}: to=<nobody@remote.example>, .*dsn=5\.1\.1, status=bounced")
        self.wait_log(srv, rf"{qid}: to=<nobody@remote.example>, class=no_such_user: ")
        self.wait_log(srv, rf"{qid}: sender non-delivery notification: [0-9A-F]{{16}}")

    def test_notify_never_suppresses_the_dsn(self):
        fake = self.start_fake(rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a))
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["nobody@remote.example"], rcpt_options=["NOTIFY=NEVER"])
        self.wait_log(srv, rf"{qid}: to=<nobody@remote.example>, .*status=bounced")
        self.wait_log(srv, rf"{qid}: removed")
        self.wait_queue_empty(srv)
        time.sleep(1.5)
        self.assertEqual(maildir_files(srv.maildir, SENDER), [])
        self.assertNotIn("notification", srv.log())

    def test_null_sender_failure_goes_to_postmaster_once(self):
        fake = self.start_fake(rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a))
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, "", ["nobody@remote.example"], subject="a bounce")
        # bounce_notice_recipient = postmaster (bare: the "localhost" Maildir)
        notices = self.wait_maildir(srv, "postmaster")
        self.wait_queue_empty(srv)
        time.sleep(2.5)  # a few queue runs: still exactly one notice
        notices = maildir_messages(srv.maildir, "postmaster")
        self.assertEqual(len(notices), 1,
                         "postmaster gets exactly one notice for failed null-sender mail")
        human, rcpts, _ = dsn_parts(notices[0])
        self.assertEqual(rcpts[0]["action"], "failed")
        self.assertEqual(rcpts[0]["final-recipient"].lower(), "rfc822; nobody@remote.example")
        self.assertEqual(notices[0]["Return-Path"], "<>")
        self.assertEqual(len(self.log_lines(srv, rf"{qid}: sender non-delivery notification")),
                         1)
        # nothing was sent back to the (null) sender or to the remote side
        self.assertEqual(fake.delivered(), [])


class DelayAndExpiry(DeliveryCase):
    def test_delay_notice_once_then_expiry_bounce_with_last_reply(self):
        fake = self.start_fake(mail_reply="451 4.3.0 Temporary local problem, try later")
        srv = self.sluice({"delay_warning_time": "2s", "maximal_queue_lifetime": "7s"},
                          transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["late@remote.example"], subject="slow one")
        notes = self.wait_maildir(srv, SENDER, 1, timeout=15)
        human, rcpts, _ = dsn_parts(notes[0])
        self.assertEqual(notes[0].get_param("report-type"), "delivery-status")
        self.assertEqual(rcpts[0]["action"], "delayed")
        self.assertTrue(rcpts[0]["status"].startswith("4."), rcpts[0])
        self.assertIn("Will-Retry-Until".lower(), rcpts[0])
        self.wait_log(srv, rf"{qid}: sender delay notification: ")
        # then the message expires: one failure DSN quoting the last reply
        notes = self.wait_maildir(srv, SENDER, 2, timeout=20)
        self.wait_queue_empty(srv)
        time.sleep(1.5)
        notes = maildir_messages(srv.maildir, SENDER)
        actions = sorted(dsn_parts(n)[1][0]["action"] for n in notes)
        self.assertEqual(actions, ["delayed", "failed"], "one delay notice, one bounce")
        failed = [n for n in notes if dsn_parts(n)[1][0]["action"] == "failed"][0]
        human, rcpts, _ = dsn_parts(failed)
        self.assertEqual(rcpts[0]["status"], "4.4.7", "expiry is reported as 4.4.7")
        self.assertIn("Temporary local problem", rcpts[0].get("diagnostic-code", ""))
        self.assertIn("Temporary local problem", human)
        self.assertGreater(fake.connections, 1, "the destination was retried")
        self.wait_log(srv, rf"{qid}: to=<late@remote.example>, status=expired")

    def test_notify_never_suppresses_delay_notice(self):
        fake = self.start_fake(mail_reply="451 4.3.0 Temporary local problem, try later")
        srv = self.sluice({"delay_warning_time": "1s", "maximal_queue_lifetime": "5s"},
                          transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["late@remote.example"], rcpt_options=["NOTIFY=NEVER"])
        self.wait_log(srv, rf"{qid}: removed", timeout=20)
        time.sleep(1)
        self.assertEqual(maildir_files(srv.maildir, SENDER), [])


if __name__ == "__main__":
    unittest.main()
