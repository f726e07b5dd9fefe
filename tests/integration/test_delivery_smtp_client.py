"""Delivery: the SMTP client against a scripted peer (EHLO/HELO, PIPELINING,
SIZE, 8BITMIME, SMTPUTF8, DSN parameters, CHUNKING, recipients per
transaction, connection reuse, slow and dropping peers), and routing
through transport_maps."""
import time
import unittest

from delivery_support import DeliveryCase, dsn_parts, maildir_files, make_message, wait_until
from fakesmtp import NO_USER_REPLY

SENDER = "sender@test.example"


def body_lines(n, width=60):
    return "".join(f"line {i:04d} " + "y" * width + "\r\n" for i in range(n))


class Protocol(DeliveryCase):
    def _one(self, fake_kw=None, conf=None, rcpts=("u@remote.example",), **send_kw):
        fake = self.start_fake(**(fake_kw or {}))
        srv = self.sluice(conf, transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, list(rcpts), **send_kw)
        self.wait_queue_empty(srv)
        return srv, fake, qid

    def test_ehlo_refused_falls_back_to_helo(self):
        srv, fake, qid = self._one({"ehlo": False})
        verbs = [line.split()[0].upper() for _, line in fake.commands]
        self.assertIn("EHLO", verbs)
        self.assertIn("HELO", verbs)
        self.assertEqual(fake.delivered_rcpts(), ["u@remote.example"])
        t = fake.delivered()[0]
        self.assertEqual(t["mail_params"], "", "no ESMTP parameters after HELO")

    def test_data_is_dot_stuffed_and_arrives_intact(self):
        body = ".starts with a dot\r\n..two dots\r\nmiddle\r\n.\r\nend\r\n"
        srv, fake, qid = self._one({"chunking": False}, body=body)
        t = fake.delivered()[0]
        self.assertEqual(t["via"], "DATA")
        self.assertTrue(t["data"].endswith(body.encode()), t["data"][-200:])

    def test_chunking_uses_bdat(self):
        body = body_lines(3000)  # ~200 KB: several reads of the queue file
        srv, fake, qid = self._one({"chunking": True}, body=body)
        t = fake.delivered()[0]
        self.assertEqual(t["via"], "BDAT")
        self.assertTrue(t["data"].endswith(body.encode()))
        self.assertIn(b"Received: ", t["data"][:400])
        self.assertFalse(any(line.upper() == "DATA" for _, line in fake.commands))

    def test_no_pipelining_mixed_recipients(self):
        fake = self.start_fake(pipelining=False,
                               rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a)
                               if a.startswith("bad") else None)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        self.send(srv, SENDER, ["ok1@remote.example", "bad@remote.example", "ok2@remote.example"])
        self.wait_queue_empty(srv)
        self.assertEqual(len(fake.delivered()), 1)
        self.assertEqual(fake.delivered()[0]["rcpts"], ["ok1@remote.example", "ok2@remote.example"])
        dsn = self.wait_maildir(srv, SENDER)
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual([r["final-recipient"].lower() for r in rcpts],
                         ["rfc822; bad@remote.example"])

    def test_all_recipients_refused_sends_no_data(self):
        srv, fake, qid = self._one({"rcpt_reply": lambda a: NO_USER_REPLY.format(addr=a)},
                                   rcpts=["a@remote.example", "b@remote.example"])
        self.assertEqual(fake.transactions, [])
        dsn = self.wait_maildir(srv, SENDER)
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual(len(rcpts), 2)

    def test_dsn_parameters_passed_on(self):
        srv, fake, qid = self._one(
            {"dsn": True}, mail_options=["RET=HDRS", "ENVID=env+2Bid42"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@remote.example"])
        t = fake.delivered()[0]
        self.assertIn("RET=HDRS", t["mail_params"])
        self.assertIn("ENVID=env+2Bid42", t["mail_params"])
        self.assertIn("NOTIFY=SUCCESS,FAILURE", t["rcpt_params"][0])
        self.assertIn("ORCPT=rfc822;orig@remote.example", t["rcpt_params"][0])

    def test_dsn_parameters_not_sent_to_a_peer_without_dsn(self):
        srv, fake, qid = self._one({"dsn": False}, mail_options=["RET=HDRS"],
                                   rcpt_options=["NOTIFY=FAILURE"])
        t = fake.delivered()[0]
        self.assertNotIn("RET=", t["mail_params"])
        self.assertNotIn("NOTIFY=", t["rcpt_params"][0])

    def test_size_announced_and_respected(self):
        srv, fake, qid = self._one({"size": 10_000_000})
        t = fake.delivered()[0]
        self.assertRegex(t["mail_params"], r"SIZE=\d+")

    def test_size_over_peer_limit_bounces_5_3_4_without_sending(self):
        srv, fake, qid = self._one({"size": 2000}, body=body_lines(100))
        self.assertEqual(fake.transactions, [])
        self.assertFalse(any(line.upper().startswith("MAIL") for _, line in fake.commands))
        dsn = self.wait_maildir(srv, SENDER)
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual(rcpts[0]["status"], "5.3.4")

    def test_8bitmime_passed_on(self):
        fake = self.start_fake(eightbitmime=True)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        body = "Gr\u00fc\u00dfe aus K\u00f6ln\r\n".encode()
        raw = make_message(SENDER, ["u@remote.example"], body="X\r\n").replace(b"X\r\n", body)
        self.send(srv, SENDER, ["u@remote.example"], msg=raw, mail_options=["BODY=8BITMIME"])
        self.wait_queue_empty(srv)
        t = fake.delivered()[0]
        self.assertIn("BODY=8BITMIME", t["mail_params"])
        self.assertTrue(t["data"].endswith(body), t["data"][-80:])

    def test_smtputf8_passed_on(self):
        fake = self.start_fake(smtputf8=True)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        rcpt = "j\u00f6rg@remote.example"
        raw = make_message(SENDER, ["x@remote.example"])
        self.send(srv, SENDER, [rcpt], msg=raw, mail_options=["SMTPUTF8"])
        self.wait_queue_empty(srv)
        t = fake.delivered()[0]
        self.assertIn("SMTPUTF8", t["mail_params"])
        self.assertEqual(t["rcpts"], [rcpt])

    def test_smtputf8_needed_but_missing_bounces_5_6_7(self):
        fake = self.start_fake(smtputf8=False)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        rcpt = "j\u00f6rg@remote.example"
        raw = make_message(SENDER, ["x@remote.example"])
        qid = self.send(srv, SENDER, [rcpt], msg=raw, mail_options=["SMTPUTF8"])
        dsn = self.wait_maildir(srv, SENDER)
        self.wait_queue_empty(srv)
        self.assertEqual(fake.transactions, [])
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual(rcpts[0]["status"], "5.6.7")
        self.assertRegex(srv.log(), rf"{qid}: to=<{rcpt}>, .*dsn=5\.6\.7, status=bounced")


class Transactions(DeliveryCase):
    def test_several_recipients_share_one_transaction(self):
        fake = self.start_fake()
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        rcpts = [f"r{i}@remote.example" for i in range(5)]
        self.send(srv, SENDER, rcpts)
        self.wait_queue_empty(srv)
        self.assertEqual(len(fake.delivered()), 1)
        self.assertEqual(fake.delivered()[0]["rcpts"], rcpts)

    def test_recipient_limit_splits_transactions(self):
        fake = self.start_fake()
        srv = self.sluice({"smtp_destination_recipient_limit": "2"},
                          transports={"remote.example": fake.nexthop})
        rcpts = [f"r{i}@remote.example" for i in range(5)]
        self.send(srv, SENDER, rcpts)
        self.wait_queue_empty(srv)
        sizes = sorted(len(t["rcpts"]) for t in fake.delivered())
        self.assertEqual(sizes, [1, 2, 2])
        self.assertEqual(sorted(fake.delivered_rcpts()), rcpts)

    def _queued_then_delivered(self, n, conf):
        fake = self.start_fake()
        c = {"queue_delivery": "no"}
        srv = self.sluice(c, transports={"remote.example": fake.nexthop})
        for i in range(n):
            self.send(srv, SENDER, [f"u{i}@remote.example"])
        srv.stop()
        with open(srv.conf_path, "a") as f:
            f.write("queue_delivery = yes\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        srv.start()
        self.wait_queue_empty(srv, 30)
        self.assertEqual(len(fake.delivered()), n)
        return fake

    def test_connection_reuse(self):
        fake = self._queued_then_delivered(10, {"initial_destination_concurrency": "1",
                                                "default_destination_concurrency_limit": "1"})
        self.assertEqual(fake.connections, 1, "10 messages over one connection")

    def test_connection_reuse_count(self):
        fake = self._queued_then_delivered(10, {"initial_destination_concurrency": "1",
                                                "default_destination_concurrency_limit": "1",
                                                "smtp_connection_reuse_count": "3"})
        self.assertEqual(fake.connections, 4, "3 messages per connection: 4 connections")


class DifficultPeers(DeliveryCase):
    def test_slow_peer_within_timeouts(self):
        fake = self.start_fake(slow=0.4)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        self.send(srv, SENDER, ["u@remote.example", "v@remote.example"])
        self.wait_queue_empty(srv, 40)
        self.assertEqual(len(fake.delivered()), 1)
        self.assertNotIn("status=deferred", srv.log())
        # let the QUIT finish (SIGTERM with a session open: see the next test)
        wait_until(lambda: fake.open_connections() == 0, 10, what="the client's QUIT")

    def test_sigterm_with_delivery_connections_open(self):
        """SIGTERM while the client is in the middle of a slow transaction or
        its QUIT: exit 0 without sanitizer reports; the message is delivered
        now or after the restart (never lost)."""
        fake = self.start_fake(slow=1.5)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        self.send(srv, SENDER, ["u@remote.example"])
        wait_until(lambda: fake.connections >= 1, 10, what="a delivery connection")
        time.sleep(2)
        t0 = time.monotonic()
        rc = srv.stop()
        self.assertEqual(rc, 0, "exit code on SIGTERM")
        self.assertLess(time.monotonic() - t0, 35)
        report = self.sanitizer(srv)
        self.assertEqual(report, "", "sanitizer report at shutdown")
        fake.slow = 0
        srv.start()
        wait_until(lambda: fake.delivered(), 20, what="delivery after restart")
        self.wait_queue_empty(srv)

    def test_peer_slower_than_reply_timeout_is_retried(self):
        fake = self.start_fake(slow=3.0)
        srv = self.sluice({"smtp_reply_timeout": "1s"},
                          transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["u@remote.example"])
        self.wait_log(srv, rf"{qid}: to=<u@remote.example>, .*status=deferred", timeout=15)
        fake.slow = 0
        self.wait_queue_empty(srv, 20)
        self.assertEqual(fake.delivered_rcpts(), ["u@remote.example"])
        self.assertRegex(srv.log(), rf"{qid}: to=<u@remote.example>, .*class=network")

    def test_drop_during_data_then_accept(self):
        fake = self.start_fake(drop_data_conns=1, chunking=False)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["u@remote.example"], body=body_lines(2000))
        self.wait_log(srv, rf"{qid}: to=<u@remote.example>, .*dsn=4\.4\.2, status=deferred "
                           rf"\(451 4\.4\.2 lost connection")
        self.wait_queue_empty(srv, 20)
        self.assertEqual(fake.dropped_data, 1)
        self.assertEqual(len(fake.delivered()), 1, "delivered once, on a later connection")
        self.assertGreaterEqual(fake.connections, 2)
        self.assertEqual(maildir_files(srv.maildir, SENDER), [])

    def test_drop_during_bdat_then_accept(self):
        fake = self.start_fake(drop_data_conns=1, chunking=True)
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["u@remote.example"], body=body_lines(500))
        self.wait_log(srv, rf"{qid}: to=<u@remote.example>, .*status=deferred")
        self.wait_queue_empty(srv, 20)
        self.assertEqual(len(fake.delivered()), 1)
        self.assertEqual(fake.delivered()[0]["via"], "BDAT")

    def test_greeting_421_is_retried(self):
        fake = self.start_fake(greeting="421 4.3.2 fake.test.example service not available")
        srv = self.sluice(transports={"remote.example": fake.nexthop})
        qid = self.send(srv, SENDER, ["u@remote.example"])
        self.wait_log(srv, rf"{qid}: to=<u@remote.example>, .*status=deferred \(421 4\.3\.2")
        fake.greeting = "220 fake.test.example ESMTP ready again"
        self.wait_queue_empty(srv, 20)
        self.assertEqual(fake.delivered_rcpts(), ["u@remote.example"])

    def test_connection_refused_is_retried(self):
        from harness import free_port
        port = free_port()
        srv = self.sluice(transports={"remote.example": f"smtp:[127.0.0.1]:{port}"})
        qid = self.send(srv, SENDER, ["u@remote.example"])
        self.wait_log(srv, rf"{qid}: to=<u@remote.example>, .*dsn=4\.4\.1, status=deferred")
        q = self.queue_json(srv)
        self.assertEqual(q[0]["recipients"][0]["status"], "deferred")
        self.assertEqual(q[0]["recipients"][0]["class"], "network")


class Routing(DeliveryCase):
    def test_transport_maps_address_domain_parent_error_maildir(self):
        exact = self.start_fake(name="exact.test.example")
        dom = self.start_fake(name="domain.test.example")
        parent = self.start_fake(name="parent.test.example")
        relay = self.start_fake(name="relay.test.example")
        srv = self.sluice({"relayhost": f"[127.0.0.1]:{relay.port}"}, transports={
            "vip@remote.example": exact.nexthop,
            "remote.example": dom.nexthop,
            ".parent.example": parent.nexthop,
            "dead.example": "error:5.1.1 this domain is closed",
            "inbox.example": "maildir",
        })
        self.send(srv, SENDER, ["vip@remote.example", "plain@remote.example",
                                "x@sub.parent.example", "gone@dead.example",
                                "me@inbox.example", "far@elsewhere.example"])
        self.wait_queue_empty(srv)
        self.assertEqual(exact.delivered_rcpts(), ["vip@remote.example"])
        self.assertEqual(dom.delivered_rcpts(), ["plain@remote.example"])
        self.assertEqual(parent.delivered_rcpts(), ["x@sub.parent.example"])
        self.assertEqual(relay.delivered_rcpts(), ["far@elsewhere.example"])
        self.assertEqual(len(maildir_files(srv.maildir, "me@inbox.example")), 1)
        dsn = self.wait_maildir(srv, SENDER)
        human, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual([(r["final-recipient"].lower(), r["status"]) for r in rcpts],
                         [("rfc822; gone@dead.example", "5.1.1")])
        self.assertIn("this domain is closed", human)


if __name__ == "__main__":
    unittest.main()
