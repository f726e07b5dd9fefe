"""Delivery: replays of the seed incidents against a scripted destination.

(a) Microsoft "451 4.7.500 Server busy" for longer than
    maximal_queue_lifetime (two days at 1/1000 scale is about 3 minutes; we
    compress further): the destination is throttled, attempts do not count,
    and the mail is kept up to throttled_queue_lifetime, so everything ends
    delivered and nothing bounces.
(b) STARTTLS dropped by the peer after "220 Ready to start TLS" (or in the
    handshake): sluice reconnects at once in plaintext, remembers the host,
    and delivers; with TLS required it defers with 4.7.5.
(c) Reputation blocks (S3150, SC-001): the bounce explains them in plain
    language; reputation_block_action = hold keeps the mail for the
    operator.
"""
import re
import time
import unittest

from delivery_support import DeliveryCase, dsn_parts, maildir_files, wait_until
from fakesmtp import S3150_REPLY, SC001_REPLY

SENDER = "sender@test.example"
REPUTATION_EXPLANATION = ("The receiver refuses mail from your IP address or domain because "
                          "of its reputation or a block list entry.")


class BusyIncident(DeliveryCase):
    N = 10   # more messages than the throttled destination tries per pause
    WINDOW = 9.0

    def _replay(self, busy_at):
        fake = self.start_fake(busy_for=self.WINDOW, busy_at=busy_at)
        srv = self.sluice({"maximal_queue_lifetime": "4s", "throttled_queue_lifetime": "30s",
                           "throttle_pause_time": "1s"},
                          transports={"outlook.example": fake.nexthop})
        t0 = time.monotonic()
        qids = [self.send(srv, SENDER, [f"user{i}@outlook.example"]) for i in range(self.N)]
        self.wait_log(srv, r"destination smtp:\[127\.0\.0\.1\]:%d throttled \(busy\)" % fake.port)
        # while the destination is busy: deferred, class busy, no attempt counted
        time.sleep(2)
        q = self.queue_json(srv)
        self.assertEqual(sorted(m["id"] for m in q), sorted(qids))
        for m in q:
            for r in m["recipients"]:
                if r["status"] != "deferred":
                    continue
                self.assertEqual(r["attempts"], 0, f"throttling must not count attempts: {r}")
                # tried: the busy reply; still waiting behind the paused
                # destination: no reply yet
                if r["last_reply"]:
                    self.assertEqual(r["class"], "busy", r)
                    self.assertIn("4.7.500", r["last_reply"])
                else:
                    self.assertEqual(r["class"], "", r)
        # past maximal_queue_lifetime, still queued (not expired)
        wait_until(lambda: time.monotonic() - t0 > 5, 10)
        self.assertEqual(re.findall(r"^.*status=expired.*$", srv.log(), re.M), [],
                         "expired under maximal_queue_lifetime during throttling")
        self.wait_queue_empty(srv, timeout=self.WINDOW + 25)
        self.assertGreater(fake.busy_replies, 0)
        self.assertEqual(sorted(fake.delivered_rcpts()),
                         sorted(f"user{i}@outlook.example" for i in range(self.N)),
                         "every message delivered exactly once")
        log = srv.log()
        bad = re.findall(r"^.*(?:status=bounced|status=expired|non-delivery notification).*$",
                         log, re.M)
        self.assertEqual(bad, [], "nothing may bounce or expire during a busy incident")
        self.assertEqual(maildir_files(srv.maildir, SENDER), [], "no bounce to the sender")
        self.assertRegex(log, r"dsn=4\.7\.500, status=deferred \(451 4\.7\.500 Server busy")
        self.assertRegex(log, r"class=busy: ")
        for qid in qids:
            self.assertRegex(log, rf"{qid}: to=<[^>]+>, relay=[^,]+, .*status=sent")

    def test_busy_at_mail_longer_than_queue_lifetime(self):
        self._replay("mail")

    def test_busy_at_rcpt_longer_than_queue_lifetime(self):
        self._replay("rcpt")

    def test_other_4xx_expires_after_maximal_queue_lifetime(self):
        """The control experiment: the same timings with a plain 4xx bounce."""
        fake = self.start_fake(mail_reply="451 4.3.2 System not accepting network messages")
        srv = self.sluice({"maximal_queue_lifetime": "4s", "throttled_queue_lifetime": "30s"},
                          transports={"outlook.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["user@outlook.example"])
        msgs = self.wait_maildir(srv, SENDER, timeout=15)
        self.wait_log(srv, rf"{qid}: to=<user@outlook.example>, status=expired")
        _, rcpts, _ = dsn_parts(msgs[0])
        self.assertEqual(rcpts[0]["action"], "failed")
        self.assertIn("4.3.2", rcpts[0]["diagnostic-code"])
        q = self.queue_json(srv)
        self.assertEqual(q, [])


class StartTLSDropped(DeliveryCase):
    N = 5

    def _check_plaintext(self, srv, fake, n):
        self.wait_queue_empty(srv, 30)
        self.assertEqual(len(fake.delivered()), n, "every message delivered once")
        self.assertLessEqual(fake.connections, n + 1,
                             f"at most one extra connection per host; got {fake.connections} "
                             f"connections for {n} messages, {fake.tls_attempts} STARTTLS")
        log = srv.log()
        sent = re.findall(r"^.*status=sent.*$", log, re.M)
        self.assertEqual(len(sent), n)
        for line in sent:
            self.assertIn("tls=may:none", line)
        self.assertRegex(log, r"STARTTLS with 127\.0\.0\.1\[127\.0\.0\.1\] failed")
        self.assertNotIn("status=deferred", log, "the fallback is immediate, not a deferral")

    def _sequential(self, mode):
        fake = self.start_fake(starttls=mode)
        srv = self.sluice(transports={"outlook.example": fake.nexthop})
        self.send(srv, SENDER, ["first@outlook.example"])
        self.wait_queue_empty(srv)
        self.assertEqual(fake.tls_attempts, 1)
        self.assertEqual(fake.connections, 2, "one broken TLS connection, one plaintext")
        for i in range(self.N - 1):
            self.send(srv, SENDER, [f"user{i}@outlook.example"])
        self._check_plaintext(srv, fake, self.N)
        self.assertEqual(fake.tls_attempts, 1, "later connections skip STARTTLS")

    def test_drop_after_220_ready_to_start_tls(self):
        self._sequential("drop")

    def test_drop_mid_handshake(self):
        self._sequential("handshake")

    def test_burst_from_a_full_queue(self):
        """N messages already queued when delivery starts (restart after an
        outage): concurrency > 1 must still cost at most one extra
        connection for the host."""
        fake = self.start_fake(starttls="drop")
        srv = self.sluice({"queue_delivery": "no"},
                          transports={"outlook.example": fake.nexthop})
        for i in range(self.N):
            self.send(srv, SENDER, [f"user{i}@outlook.example"])
        srv.stop()
        with open(srv.conf_path) as f:
            conf = f.read().replace("queue_delivery = no", "queue_delivery = yes")
        with open(srv.conf_path, "w") as f:
            f.write(conf)
        srv.start()
        self._check_plaintext(srv, fake, self.N)
        # docs/delivery.md: "at most one extra connection per host" - the
        # extra connections are exactly the broken STARTTLS attempts
        self.assertLessEqual(fake.tls_attempts, 1,
                             f"{fake.tls_attempts} connections broke in STARTTLS for one host "
                             f"(parallel connections at start each tried TLS)")

    def test_fallback_is_remembered_across_restart(self):
        fake = self.start_fake(starttls="drop")
        srv = self.sluice(transports={"outlook.example": fake.nexthop})
        self.send(srv, SENDER, ["a@outlook.example"])
        self.wait_queue_empty(srv)
        self.restart(srv)
        self.send(srv, SENDER, ["b@outlook.example"])
        self.wait_queue_empty(srv)
        self.assertEqual(fake.tls_attempts, 1, "the remembered host skips STARTTLS")
        self.assertEqual(fake.connections, 3)
        self.assertEqual(len(fake.delivered()), 2)

    def _encrypt(self, conf, tls_policy):
        fake = self.start_fake(starttls="drop")
        srv = self.sluice(conf, transports={"outlook.example": fake.nexthop},
                          tls_policy=tls_policy)
        qid = self.send(srv, SENDER, ["user@outlook.example"])
        self.wait_log(srv, rf"{qid}: to=<user@outlook.example>, .*dsn=4\.7\.5, status=deferred")
        time.sleep(3)  # a retry or two
        self.assertEqual(fake.delivered(), [], "nothing may go out in plaintext")
        for c, line in fake.commands:
            self.assertFalse(line.upper().startswith("MAIL"), "MAIL sent without TLS")
        self.assertNotRegex(srv.log(), r"status=sent")
        q = self.queue_json(srv)
        self.assertEqual(len(q), 1)
        r = q[0]["recipients"][0]
        self.assertEqual(r["status"], "deferred")
        self.assertIn("4.7.5", r["last_reply"])
        self.assertEqual(maildir_files(srv.maildir, SENDER), [])

    def test_encrypt_defers_with_475(self):
        self._encrypt({"smtp_tls_security_level": "encrypt"}, None)

    def test_tls_policy_maps_encrypt_defers_with_475(self):
        self._encrypt({}, {"outlook.example": "encrypt"})


class ReputationBlock(DeliveryCase):
    def _bounce(self, reply, at):
        kw = {"mail_reply": reply} if at == "mail" else {"rcpt_reply": lambda a: reply}
        fake = self.start_fake(**kw)
        srv = self.sluice(transports={"outlook.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["user@outlook.example"], subject="blocked")
        dsns = self.wait_maildir(srv, SENDER)
        self.wait_queue_empty(srv)
        self.assertEqual(len(dsns), 1)
        d = dsns[0]
        self.assertEqual(d.get_content_type(), "multipart/report")
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        human, rcpts, status = dsn_parts(d)
        self.assertIsNotNone(status, "a message/delivery-status part")
        self.assertEqual(len(rcpts), 1)
        self.assertEqual(rcpts[0]["action"], "failed")
        self.assertRegex(rcpts[0]["status"], r"^5\.\d{1,3}\.\d{1,3}$")
        self.assertEqual(rcpts[0]["final-recipient"].lower(), "rfc822; user@outlook.example")
        self.assertIn(REPUTATION_EXPLANATION, re.sub(r"\s+", " ", human))
        self.assertIn(reply[4:40], re.sub(r"\s+", " ", human))
        self.assertIn("Subject: blocked", d.as_string())
        log = srv.log()
        self.assertRegex(log, rf"{qid}: to=<user@outlook.example>, .*status=bounced")
        self.assertRegex(log, rf"{qid}: to=<user@outlook.example>, class=reputation_block: ")
        self.assertEqual(fake.delivered(), [])
        return srv, fake

    def test_s3150_bounces_with_explanation(self):
        self._bounce(S3150_REPLY, "rcpt")

    def test_sc001_bounces_with_explanation(self):
        self._bounce(SC001_REPLY, "mail")

    def test_hold_keeps_the_message_then_bounce_by_operator(self):
        fake = self.start_fake(mail_reply=SC001_REPLY)
        srv = self.sluice({"reputation_block_action": "hold"},
                          transports={"outlook.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["user@outlook.example"])
        self.wait_log(srv, rf"{qid}: held by reputation_block_action = hold")
        time.sleep(2.5)
        q = self.queue_json(srv)
        self.assertEqual(len(q), 1)
        self.assertEqual(q[0]["id"], qid)
        self.assertIs(q[0]["held"], True)
        self.assertEqual(q[0]["recipients"][0]["class"], "reputation_block")
        self.assertIn("SC-001", q[0]["recipients"][0]["last_reply"])
        self.assertEqual(fake.connections, 1, "held mail is not retried")
        self.assertEqual(maildir_files(srv.maildir, SENDER), [], "no bounce while held")
        self.assertNotIn("status=bounced", srv.log())
        # after "delisting" the operator bounces it (or releases it)
        rc, out, err = self.queue_cli(srv, "bounce", qid)
        self.assertEqual(rc, 0, err)
        dsns = self.wait_maildir(srv, SENDER)
        self.wait_queue_empty(srv)
        _, rcpts, _ = dsn_parts(dsns[0])
        self.assertEqual(rcpts[0]["action"], "failed")

    def test_hold_s3150_then_release_delivers(self):
        state = {"blocked": True}
        fake = self.start_fake(rcpt_reply=lambda a: S3150_REPLY if state["blocked"] else None)
        srv = self.sluice({"reputation_block_action": "hold"},
                          transports={"outlook.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["user@outlook.example"])
        self.wait_log(srv, rf"{qid}: held by reputation_block_action = hold")
        q = self.queue_json(srv)
        self.assertIs(q[0]["held"], True)
        state["blocked"] = False   # delisted
        rc, out, err = self.queue_cli(srv, "release", qid)
        self.assertEqual(rc, 0, err)
        self.wait_queue_empty(srv)
        self.assertEqual(fake.delivered_rcpts(), ["user@outlook.example"])
        self.assertEqual(maildir_files(srv.maildir, SENDER), [])


if __name__ == "__main__":
    unittest.main()
