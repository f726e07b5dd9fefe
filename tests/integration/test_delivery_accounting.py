"""Delivery: end-to-end accounting (no recipient is ever lost) and a
kill -9 in the middle of a delivery run (every accepted message arrives;
duplicates only within the in-flight window)."""
import collections
import json
import os
import re
import unittest

from delivery_support import (DeliveryCase, dsn_parts, dsn_queue_id, maildir_files,
                              maildir_messages, wait_until)
from fakesmtp import NO_USER_REPLY

SENDER = "sender@test.example"


class Accounting(DeliveryCase):
    N = 40

    def test_every_recipient_delivered_queued_or_bounced(self):
        ok = self.start_fake(name="accept.test.example")
        refuse = self.start_fake(name="refuse.test.example",
                                 rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a))
        mixed = self.start_fake(name="mixed.test.example",
                                rcpt_reply=lambda a: NO_USER_REPLY.format(addr=a)
                                if a.startswith("bad") else None)
        later = self.start_fake(name="later.test.example",
                                mail_reply="451 4.3.0 Try again later (queue stays)")
        srv = self.sluice(transports={"accept.example": ok.nexthop,
                                      "refuse.example": refuse.nexthop,
                                      "mixed.example": mixed.nexthop,
                                      "later.example": later.nexthop})
        plan = []   # (msgid, [rcpts])
        for i in range(self.N):
            kind = i % 5
            if kind == 0:
                rcpts = [f"a{i}@accept.example"]
            elif kind == 1:
                rcpts = [f"r{i}@refuse.example"]
            elif kind == 2:
                rcpts = [f"good{i}@mixed.example", f"bad{i}@mixed.example",
                         f"a{i}@accept.example"]
            elif kind == 3:
                rcpts = [f"l{i}@test.example", f"r{i}@refuse.example"]
            else:
                rcpts = [f"q{i}@later.example", f"a{i}@accept.example"]
            plan.append((f"<acct{i}@client.test.example>", rcpts))
        qids = self.send_many(srv, [(rcpts, mid) for mid, rcpts in plan])
        by_qid = {q: (mid, rcpts) for q, (mid, rcpts) in zip(qids, plan)}

        expected_bounces = sum(1 for _, r in plan for a in r
                               if "refuse.example" in a or a.startswith("bad"))
        expected_dsns = sum(1 for _, r in plan
                            if any("refuse.example" in a or a.startswith("bad") for a in r))

        def settled():
            self.alive(srv)
            q = self.queue_json(srv)
            busy = [m for m in q for r in m["recipients"]
                    if r["status"] not in ("deferred", "sent", "done")
                    or (r["status"] == "deferred" and "later.example" not in r["address"])]
            return not busy and len(maildir_files(srv.maildir, SENDER)) >= expected_dsns

        wait_until(settled, 40, interval=0.5, what="every recipient settled",
                   detail=lambda: json.dumps(self.queue_json(srv), indent=1)[:3000])

        # where did each (qid, recipient) end?
        fate = collections.defaultdict(list)
        msgid_to_qid = {mid: q for q, (mid, _) in by_qid.items()}
        for fake in (ok, mixed):
            for t in fake.delivered():
                m = re.search(rb"^Message-ID: (<[^>]+>)", t["data"], re.M | re.I)
                q = msgid_to_qid[m.group(1).decode()]
                for r in t["rcpts"]:
                    fate[(q, r)].append("delivered")
        for mid, rcpts in plan:
            for r in rcpts:
                if r.endswith("@test.example"):
                    for m in maildir_messages(srv.maildir, r):
                        fate[(msgid_to_qid[m["Message-ID"]], r)].append("delivered")
        for m in self.queue_json(srv):
            for r in m["recipients"]:
                if r["status"] == "deferred":
                    fate[(m["id"], r["address"])].append("queued")
        dsns = maildir_messages(srv.maildir, SENDER)
        self.assertEqual(len(dsns), expected_dsns, "one DSN per message with failures")
        for d in dsns:
            q = dsn_queue_id(d)
            self.assertIn(q, by_qid, "DSN names a queue id we submitted")
            _, rcpts, _ = dsn_parts(d)
            for r in rcpts:
                self.assertEqual(r["action"], "failed")
                addr = r["final-recipient"].split(";", 1)[1].strip()
                fate[(q, addr)].append("bounced")

        lost, dup = [], []
        for q, (mid, rcpts) in by_qid.items():
            for r in rcpts:
                f = fate.get((q, r), [])
                if not f:
                    lost.append((q, r))
                elif len(f) > 1:
                    dup.append((q, r, f))
                else:
                    want = ("bounced" if ("refuse.example" in r or r.startswith("bad"))
                            else "queued" if "later.example" in r else "delivered")
                    self.assertEqual(f[0], want, f"{q} {r}")
        self.assertEqual(lost, [], "recipients with no fate: lost mail")
        self.assertEqual(dup, [], "recipients counted twice")
        total = sum(len(r) for _, r in plan)
        self.assertEqual(len(fate), total)
        self.assertEqual(sum(1 for f in fate.values() if f == ["bounced"]), expected_bounces)
        # the queue holds exactly the messages with a later.example recipient
        left = sorted(m["id"] for m in self.queue_json(srv))
        self.assertEqual(left, sorted(q for q, (_, r) in by_qid.items()
                                      if any("later.example" in a for a in r)))
        # quiesce before shutdown: hold what is left, let open connections end
        for q in left:
            rc, out, err = self.queue_cli(srv, "hold", q)
            self.assertEqual(rc, 0, err)
        wait_until(lambda: later.open_connections() == 0, 15, what="idle destination")


class KillDuringDelivery(DeliveryCase):
    N = 300

    def test_kill9_mid_run_then_restart(self):
        sink = self.start_sink()
        srv = self.sluice({"queue_delivery": "no"})
        items = [([f"u{i}@remote.example"], f"<kill{i}@client.test.example>")
                 for i in range(self.N)]
        qids = self.send_many(srv, items)
        self.assertEqual(len(set(qids)), self.N)
        srv.stop()
        with open(srv.conf_path, "a") as f:
            f.write("queue_delivery = yes\n")
            f.write(f"relayhost = [127.0.0.1]:{sink.port}\n")
        srv.start()
        wait_until(lambda: self.alive(srv) or sink.count() >= self.N // 3, 60, interval=0.01,
                   what="a third of the messages at smtp-sink")
        srv.killed = True
        srv.kill9()
        at_kill = sink.count()
        in_queue = len(srv.queue_files())
        srv.start()
        self.wait_queue_empty(srv, 90)
        wait_until(lambda: sink.count() >= self.N, 10, what="all messages at smtp-sink")
        ids = sink.message_ids()
        counts = collections.Counter(ids)
        missing = [mid for _, mid in items if counts[mid] == 0]
        dups = sum(c - 1 for c in counts.values() if c > 1)
        limit = int(srv_conf_value(srv, "default_destination_concurrency_limit", "20"))
        record = {"messages": self.N, "at_smtp_sink_when_killed": at_kill,
                  "queue_files_after_kill": in_queue, "deliveries": len(ids),
                  "duplicates": dups, "missing": len(missing),
                  "in_flight_window": limit}
        # kept with the logs: $SLUICE_TEST_LOGS/<test id>/kill9.json
        with open(os.path.join(self.tmp, "kill9.json"), "w") as f:
            json.dump(record, f, indent=1)
        print(f"\n    kill -9 run: {record}", flush=True)
        self.assertEqual(missing, [], "every accepted message is delivered")
        self.assertEqual(set(ids), {mid for _, mid in items}, "nothing unexpected")
        self.assertEqual(at_kill + in_queue >= self.N, True,
                         "delivered before the kill + still queued covers every message")
        self.assertLessEqual(dups, limit,
                             "duplicates only within the in-flight window (concurrency limit)")


def srv_conf_value(srv, key, default):
    with open(srv.conf_path) as f:
        for line in f:
            k, _, v = line.partition("=")
            if k.strip() == key:
                default = v.strip()
    return default


if __name__ == "__main__":
    unittest.main()
