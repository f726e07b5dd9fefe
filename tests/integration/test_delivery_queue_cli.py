"""`sluice queue` (list/show/hold/release/delete/bounce/flush, with the
server running and stopped, --json schema, exit codes) and `sluice explain`
(the reply classifier, text and --json)."""
import json
import os
import time
import unittest

from delivery_support import SLUICE, DeliveryCase, dsn_parts, maildir_files, run, wait_until
from fakesmtp import BUSY_REPLY, S3150_REPLY, SC001_REPLY

SENDER = "sender@test.example"
UNKNOWN_ID = "0123456789ABCDEF"
MSG_KEYS = {"id", "arrival", "sender", "size", "held", "recipients"}
RCPT_KEYS = {"address", "status", "attempts", "next_attempt", "last_reply", "class"}
STATUSES = {"pending", "deferred", "active", "sent", "bounced", "done"}


class QueueCommands(DeliveryCase):
    """A destination that keeps deferring, long backoff: mail stays queued
    and only moves when the operator says so."""

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake(mail_reply="451 4.3.0 Try again later")
        self.srv = self.sluice({"minimal_backoff_time": "60s", "maximal_backoff_time": "120s"},
                               transports={"remote.example": self.fake.nexthop,
                                           "other.example": self.fake.nexthop})
        self.q1 = self.send(self.srv, SENDER, ["a@remote.example", "local@test.example"],
                            subject="one")
        self.q2 = self.send(self.srv, "other@test.example", ["b@other.example"],
                            subject="two")
        self.wait_log(self.srv, rf"{self.q2}: to=<b@other.example>, .*status=deferred")
        self.wait_log(self.srv, rf"{self.q1}: to=<a@remote.example>, .*status=deferred")

    def check_schema(self, msgs):
        self.assertIsInstance(msgs, list)
        for m in msgs:
            self.assertEqual(set(m), MSG_KEYS, m)
            self.assertRegex(m["id"], r"^[0-9A-F]{16}$")
            self.assertIsInstance(m["sender"], str)
            self.assertIsInstance(m["size"], int)
            self.assertIsInstance(m["held"], bool)
            self.assertIsInstance(m["arrival"], (int, float, str))
            self.assertIsInstance(m["recipients"], list)
            self.assertTrue(m["recipients"])
            for r in m["recipients"]:
                self.assertEqual(set(r), RCPT_KEYS, r)
                self.assertIn(r["status"], STATUSES)
                self.assertIsInstance(r["attempts"], int)
                self.assertIsInstance(r["next_attempt"], (int, float, str))
                self.assertIsInstance(r["last_reply"], str)
                self.assertIsInstance(r["class"], str)

    def by_id(self, srv=None):
        return {m["id"]: m for m in self.queue_json(srv or self.srv)}

    def rc(self, *args, json_out=False):
        return self.queue_cli(self.srv, *args, json_out=json_out)

    # -- running ---------------------------------------------------------
    def test_list_and_show_running(self):
        rc, out, err = self.rc("list")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.q1, out)
        self.assertIn(self.q2, out)
        self.assertIn("a@remote.example", out)
        msgs = self.queue_json(self.srv)
        self.check_schema(msgs)
        m = {x["id"]: x for x in msgs}
        self.assertEqual(set(m), {self.q1, self.q2})
        self.assertEqual(m[self.q1]["sender"], SENDER)
        self.assertIs(m[self.q1]["held"], False)
        r = {x["address"]: x for x in m[self.q1]["recipients"]}
        self.assertEqual(r["a@remote.example"]["status"], "deferred")
        self.assertEqual(r["a@remote.example"]["attempts"], 1)
        self.assertIn("451 4.3.0 Try again later", r["a@remote.example"]["last_reply"])
        self.assertEqual(r["a@remote.example"]["class"], "other_temp")
        self.assertIn(r["local@test.example"]["status"], ("sent", "done"))
        # DOMAIN filter
        rc, out, err = self.rc("list", "other.example", json_out=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual([x["id"] for x in json.loads(out)], [self.q2])
        # show
        rc, out, err = self.rc("show", self.q1)
        self.assertEqual(rc, 0, err)
        self.assertIn(self.q1, out)
        rc, out, err = self.rc("show", self.q1, json_out=True)
        self.assertEqual(rc, 0, err)
        one = json.loads(out)
        self.check_schema([one])
        self.assertEqual(one["id"], self.q1)

    def test_unknown_id_exit_1_running(self):
        for cmd in ("show", "hold", "release", "delete", "bounce"):
            rc, out, err = self.rc(cmd, UNKNOWN_ID)
            self.assertEqual(rc, 1, f"queue {cmd} {UNKNOWN_ID}: {out}{err}")
            self.assertIn("no such message", err)

    def test_hold_release_running(self):
        rc, out, err = self.rc("hold", self.q1)
        self.assertEqual(rc, 0, err)
        self.assertIs(self.by_id()[self.q1]["held"], True)
        seen = len(self.fake.commands)
        rc, out, err = self.rc("flush")
        self.assertEqual(rc, 0, err)
        # q2 is retried at once, the held q1 is not
        self.wait_log(self.srv, rf"{self.q2}: to=<b@other.example>, .*status=deferred", count=2)
        time.sleep(1.5)
        new = [line for _, line in self.fake.commands[seen:]]
        self.assertTrue(any("other@test.example" in line for line in new), new)
        self.assertFalse(any("<sender@test.example>" in line for line in new),
                         f"a held message was tried: {new}")
        self.assertRegex(self.srv.log(), rf"{self.q1}: held by the postmaster")
        rc, out, err = self.rc("release", self.q1)
        self.assertEqual(rc, 0, err)
        self.assertIs(self.by_id()[self.q1]["held"], False)
        self.assertRegex(self.srv.log(), rf"{self.q1}: released by the postmaster")
        # release schedules it: the attempt happens now, not after the backoff
        self.wait_log(self.srv, rf"{self.q1}: to=<a@remote.example>, .*status=deferred",
                      count=2, timeout=5)
        wait_until(lambda: self.fake.open_connections() == 0, 10, what="idle destination")

    def test_flush_retries_now(self):
        time.sleep(1)
        before = self.fake.connections
        rc, out, err = self.rc("flush")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"flush: \d+ deferred recipient\(s\) scheduled now")
        wait_until(lambda: self.fake.connections > before, 5,
                   what="a new attempt after flush (backoff is 60s)")
        self.wait_log(self.srv, rf"{self.q1}: to=<a@remote.example>, .*status=deferred", count=2)
        m = self.by_id()
        r = {x["address"]: x for x in m[self.q1]["recipients"]}
        self.assertEqual(r["a@remote.example"]["attempts"], 2)
        wait_until(lambda: self.fake.open_connections() == 0, 10, what="idle destination")

    def test_flush_domain_running(self):
        time.sleep(1)
        rc, out, err = self.rc("flush", "other.example")
        self.assertEqual(rc, 0, err)
        self.wait_log(self.srv, rf"{self.q2}: to=<b@other.example>, .*status=deferred", count=2)
        wait_until(lambda: self.fake.open_connections() == 0, 10, what="idle destination")

    def test_delete_running(self):
        rc, out, err = self.rc("delete", self.q2)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(self.q2, self.by_id())
        self.assertNotIn(self.q2, self.srv.queue_files())
        self.assertRegex(self.srv.log(), rf"{self.q2}: deleted by the postmaster")
        time.sleep(1.5)
        self.assertEqual(maildir_files(self.srv.maildir, "other@test.example"), [],
                         "delete sends no notice")
        rc, out, err = self.rc("show", self.q2)
        self.assertEqual(rc, 1)

    def test_bounce_running(self):
        rc, out, err = self.rc("bounce", self.q1)
        self.assertEqual(rc, 0, err)
        dsn = self.wait_maildir(self.srv, SENDER)
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual([r["final-recipient"].lower() for r in rcpts],
                         ["rfc822; a@remote.example"], "only the undelivered recipient")
        self.assertEqual(rcpts[0]["action"], "failed")
        wait_until(lambda: self.q1 not in self.srv.queue_files(), 10, what="removal")
        self.assertNotIn(self.q1, self.by_id())

    # -- stopped ------------------------------------------------------------
    def stop(self):
        rc = self.srv.stop()
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(os.path.join(self.srv.spool, "control")) and
                         _control_answers(os.path.join(self.srv.spool, "control")),
                         "control socket still answering after stop")

    def test_list_show_stopped(self):
        online = self.by_id()
        self.stop()
        rc, out, err = self.rc("list")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.q1, out)
        msgs = self.queue_json(self.srv)
        self.check_schema(msgs)
        offline = {m["id"]: m for m in msgs}
        self.assertEqual(set(offline), set(online))
        for qid in online:
            a, b = online[qid], offline[qid]
            self.assertEqual((a["sender"], a["size"], a["held"]),
                             (b["sender"], b["size"], b["held"]))
            self.assertEqual([(r["address"], r["status"], r["attempts"]) for r in a["recipients"]],
                             [(r["address"], r["status"], r["attempts"]) for r in b["recipients"]])
        rc, out, err = self.rc("show", self.q1, json_out=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["id"], self.q1)
        rc, out, err = self.rc("list", "other.example", json_out=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual([x["id"] for x in json.loads(out)], [self.q2])

    def test_unknown_id_exit_1_stopped(self):
        self.stop()
        for cmd in ("show", "hold", "release", "delete", "bounce"):
            rc, out, err = self.rc(cmd, UNKNOWN_ID)
            self.assertEqual(rc, 1, f"queue {cmd} {UNKNOWN_ID} (stopped): {out}{err}")

    def test_malformed_id_exit_1_running_and_stopped(self):
        """An id that cannot exist is an unknown id too: same exit code
        whether sluice runs or not."""
        bad = []
        for state in ("running", "stopped"):
            if state == "stopped":
                self.stop()
            for cmd in ("show", "hold", "release", "delete", "bounce"):
                rc, out, err = self.rc(cmd, "NOSUCH")
                if rc != 1:
                    bad.append(f"{state}: queue {cmd} NOSUCH -> exit {rc}: {(out + err).strip()}")
        self.assertEqual(bad, [])

    def test_flush_stopped(self):
        self.stop()
        rc, out, err = self.rc("flush")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.rc("flush", "other.example")
        self.assertEqual(rc, 0, f"queue flush DOMAIN with sluice stopped: {out}{err}")

    def test_hold_stopped_is_kept_at_start(self):
        self.stop()
        rc, out, err = self.rc("hold", self.q1)
        self.assertEqual(rc, 0, err)
        self.assertIs(self.by_id()[self.q1]["held"], True)
        rc, out, err = self.rc("release", self.q2)
        self.assertEqual(rc, 0, err)
        # the destination recovers; restart: q2 is delivered, q1 stays held
        self.fake.mail_reply = None
        self.srv.start()
        self.queue_cli(self.srv, "flush")
        wait_until(lambda: self.q2 not in self.srv.queue_files(), 15, what="q2 delivered",
                   detail=lambda: self.tail(self.srv))
        time.sleep(1.5)
        self.assertIn(self.q1, self.srv.queue_files(), "a message held offline stays held")
        self.assertEqual(self.fake.delivered_rcpts(), ["b@other.example"])
        rc, out, err = self.rc("release", self.q1)
        self.assertEqual(rc, 0, err)
        self.wait_queue_empty(self.srv)
        self.assertEqual(sorted(self.fake.delivered_rcpts()),
                         ["a@remote.example", "b@other.example"])

    def test_delete_and_bounce_stopped(self):
        self.stop()
        rc, out, err = self.rc("delete", self.q2)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(self.q2, self.srv.queue_files())
        rc, out, err = self.rc("bounce", self.q1)
        self.assertEqual(rc, 0, err)
        self.srv.start()
        dsn = self.wait_maildir(self.srv, SENDER)
        self.wait_queue_empty(self.srv)
        _, rcpts, _ = dsn_parts(dsn[0])
        self.assertEqual([r["final-recipient"].lower() for r in rcpts],
                         ["rfc822; a@remote.example"])
        self.assertEqual(maildir_files(self.srv.maildir, "other@test.example"), [])

    def test_usage_errors_exit_2(self):
        rc, out, err = self.rc("frobnicate")
        self.assertEqual(rc, 2)
        rc, out, err = run([SLUICE, "queue", "-c", self.srv.conf_path])
        self.assertEqual(rc, 2)


def _control_answers(path):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Explain(unittest.TestCase):
    CASES = [
        (BUSY_REPLY, "busy", True),
        ("451 4.7.650 The mail server [127.0.0.1] has been temporarily rate limited due to "
         "IP reputation.", "rate_limited", True),
        ("451 4.7.651 The mail server [127.0.0.1] has been temporarily rate limited due to "
         "IP reputation.", "rate_limited", True),
        ("451 4.7.652 The mail server [127.0.0.1] has exceeded the maximum number of "
         "connections.", "connection_cap", True),
        (S3150_REPLY, "reputation_block", False),
        (SC001_REPLY, "reputation_block", False),
        ("450 4.2.0 <u@example.org>: Recipient address rejected: Greylisted, see "
         "http://postgrey.schweikert.ch/help/example.org.html", "greylisted", True),
        ("451 4.7.1 Please try again in 5 minutes (greylisting)", "greylisted", True),
        ("550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown",
         "no_such_user", False),
        ("552 5.2.2 <u@example.org>: mailbox full", "mailbox_full", False),
        ("552 5.3.4 Message size exceeds fixed limit", "message_too_big", False),
        ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
         "zen.spamhaus.org", "reputation_block", False),
        ("550 5.7.26 This mail is unauthenticated, which poses a security risk to the "
         "sender and Gmail users", "auth_policy", False),
        ("421 4.7.28 Our system has detected an unusual rate of unsolicited mail",
         "rate_limited", True),
        ("530 5.7.0 Must issue a STARTTLS command first", "tls_required", False),
        ("451 4.4.2 lost connection with mx.example.org[192.0.2.1] while in DATA",
         "network", True),
        ("451 4.3.0 something odd happened", "other_temp", True),
        ("554 5.0.0 something odd happened", "other_perm", False),
    ]

    def explain(self, *args):
        return run([SLUICE, "explain", *args], env=dict(os.environ, SLUICE_CONFIG=""))

    def test_classes_json(self):
        bad = []
        for reply, cls, temp in self.CASES:
            rc, out, err = self.explain("--json", reply)
            self.assertEqual(rc, 0, err)
            j = json.loads(out)
            self.assertEqual(set(j), {"reply", "code", "enhanced", "class", "temporary",
                                      "explanation", "next_step"})
            self.assertEqual(j["reply"], reply)
            self.assertEqual(j["code"], int(reply[:3]))
            if (j["class"], j["temporary"]) != (cls, temp):
                bad.append((reply[:60], (cls, temp), (j["class"], j["temporary"])))
            self.assertTrue(j["explanation"])
            self.assertTrue(j["next_step"])
        self.assertEqual(bad, [], "reply -> (expected class, temporary), got")

    def test_enhanced_code_parsed(self):
        rc, out, err = self.explain("--json", BUSY_REPLY)
        self.assertEqual(json.loads(out)["enhanced"], "4.7.500")
        rc, out, err = self.explain("--json", SC001_REPLY)
        self.assertEqual(json.loads(out)["enhanced"], "")

    def test_text_output(self):
        rc, out, err = self.explain(BUSY_REPLY)
        self.assertEqual(rc, 0, err)
        self.assertIn("class:       busy (temporary: sluice retries)", out)
        self.assertRegex(out, r"(?m)^meaning: +The receiving service says it is overloaded")
        self.assertRegex(out, r"(?m)^next step: +")
        rc, out, err = self.explain(S3150_REPLY)
        self.assertIn("reputation_block (permanent: returned to sender)", out)

    def test_mx_specific_rule(self):
        reply = ("550 5.7.1 [192.0.2.1] Our system has detected that this message is likely "
                 "unsolicited mail.")
        rc, out, err = self.explain("--json", "--mx", "gmail-smtp-in.l.google.com", reply)
        self.assertEqual(json.loads(out)["class"], "reputation_block")
        rc, out, err = self.explain("--json", "--mx", "mx.example.org", reply)
        self.assertNotEqual(json.loads(out)["class"], "reputation_block")

    def test_reply_rules_file(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="sluice-explain-")
        try:
            rules = os.path.join(d, "rules")
            with open(rules, "w") as f:
                f.write('rule busy text="frobnicated"\n'
                        'explain busy "custom meaning" "custom step"\n')
            conf = os.path.join(d, "sluice.conf")
            with open(conf, "w") as f:
                f.write(f"reply_rules = {rules}\nspool_dir = {d}/spool\n")
            rc, out, err = run([SLUICE, "explain", "-c", conf, "--json",
                                "451 4.3.0 the server is frobnicated"])
            self.assertEqual(rc, 0, err)
            j = json.loads(out)
            self.assertEqual((j["class"], j["explanation"]), ("busy", "custom meaning"))
        finally:
            import shutil
            shutil.rmtree(d, ignore_errors=True)

    def test_no_argument_exit_2(self):
        rc, out, err = self.explain()
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main()
