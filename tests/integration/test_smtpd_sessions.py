"""test_smtpd_sessions.py - many clients, per-IP limits and idle timeouts.

* smtpd_client_connection_limit: 50 connections from one address are
  served, the 51st gets 421 4.7.0 and is closed; other addresses are not
  affected; the slot frees when a connection ends.
* smtpd_timeout (2s here): an idle client gets 421 4.4.2 and is closed,
  in the command phase and in the middle of DATA (no queue file then); a
  client that keeps talking is not cut off.
* 500 concurrent sessions from 20 source addresses (25 each, under the
  per-IP limit), all connected before any sends: every one gets 250 and
  a complete queue file, and the server stays healthy.
* A client that sends 600 KiB while its message is being committed (more
  than the 256 KiB a session buffers) is served on: 250, then the rest is
  read once the commit reports.
"""
import os
import re
import threading
import time
import unittest

from sluicetest import (Client, SluiceCase, make_body, parse_queue_file, queued_id, source_ip,
                        wait_for_log, wait_until)


class ConnectionLimit(SluiceCase):

    def test_51st_connection_refused(self):
        ip = source_ip()
        conns = []
        for i in range(50):
            c = self.connect(source=ip)
            self.assertEqual(c.greeting[0], 220, f"connection {i + 1}: {c.greeting}")
            conns.append(c)
        extra = self.connect(source=ip)
        self.assertReply(extra.greeting, 421, "4.7.0")
        self.assertClosed(extra)
        # another address is not affected
        other = self.connect(source=source_ip())
        self.assertEqual(other.greeting[0], 220)
        # the first 50 still work
        self.assertReply(conns[0].cmd("NOOP"), 250, "2.0.0")
        self.assertReply(conns[49].cmd("NOOP"), 250, "2.0.0")
        # free one slot; a new connection is served again
        conns[0].cmd("QUIT")
        conns[0].close()

        def try_once():
            c = Client(self.srv.host, self.srv.port, source=ip)
            self.clients.append(c)
            return c if c.greeting[0] == 220 else None
        c = wait_until(try_once, timeout=5, interval=0.1, what="a freed per-IP slot")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        wait_for_log(self.srv, rf"too many connections from unknown\[{re.escape(ip)}\]")


class LowConnectionLimit(SluiceCase):
    conf = {"smtpd_client_connection_limit": "3"}

    def test_limit_is_configurable(self):
        ip = source_ip()
        for i in range(3):
            self.assertEqual(self.connect(source=ip).greeting[0], 220)
        c = self.connect(source=ip)
        self.assertReply(c.greeting, 421, "4.7.0")
        self.assertClosed(c)


class IdleTimeout(SluiceCase):
    conf = {"smtpd_timeout": "2s"}

    def test_idle_after_ehlo(self):
        ip = source_ip()
        c = self.session(source=ip)
        t0 = time.time()
        c.sock.settimeout(10)
        r = c.reply()
        elapsed = time.time() - t0
        self.assertReply(r, 421, "4.4.2")
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 5.0)
        self.assertClosed(c)
        wait_for_log(self.srv, rf"timeout after EHLO from unknown\[{re.escape(ip)}\]$")

    def test_idle_before_anything(self):
        c = self.connect(source=source_ip())
        c.sock.settimeout(10)
        self.assertReply(c.reply(), 421, "4.4.2")
        self.assertClosed(c)

    def test_idle_in_data(self):
        ip = source_ip()
        c = self.session(source=ip)
        before = set(self.srv.queue_files())
        c.cmd("MAIL FROM:<s@test.example>")
        c.cmd("RCPT TO:<u@localhost>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: slow\r\n\r\npart")
        c.sock.settimeout(10)
        self.assertReply(c.reply(), 421, "4.4.2")
        self.assertClosed(c)
        wait_for_log(self.srv, rf"timeout after DATA from unknown\[{re.escape(ip)}\]$")
        self.assertEqual(set(self.srv.queue_files()), before)
        self.assertEqual(os.listdir(os.path.join(self.srv.spool, "tmp")), [])

    def test_active_client_not_cut(self):
        c = self.session(source=source_ip())
        for _ in range(4):
            time.sleep(1.0)
            self.assertReply(c.cmd("NOOP"), 250, "2.0.0")


class InputDuringCommit(SluiceCase):
    # the sync thread waits 0.1 s before each batch: the flood arrives
    # while the message is in COMMIT, where input is buffered, not parsed
    conf = {"spool_sync_delay_us": "100000"}

    def test_flood_while_committing(self):
        c = self.session(source=source_ip())
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        self.assertEqual(c.cmd("DATA")[0], 354)
        junk = b"X" * (600 * 1024)   # one over-long command line
        c.send(b"Subject: flood\r\n\r\nbody\r\n.\r\n" + junk + b"\r\nNOOP\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.reply(), 250, "2.0.0")


class FiveHundredSessions(SluiceCase):
    N_IPS = 20
    PER_IP = 25

    def test_500_concurrent_sessions(self):
        ips = [source_ip() for _ in range(self.N_IPS)]
        n = self.N_IPS * self.PER_IP
        before = set(self.srv.queue_files())
        barrier = threading.Barrier(n, timeout=120)
        results = [None] * n
        errors = []
        body = make_body(lines=40)

        def worker(i):
            c = None
            try:
                c = Client(self.srv.host, self.srv.port, source=ips[i % self.N_IPS], timeout=60)
                if c.greeting[0] != 220:
                    raise AssertionError(f"greeting {c.greeting}")
                c.ehlo(f"client{i}.test.example")
                barrier.wait()  # all 500 sessions open at once
                code, text = c.send_mail(sender=f"s{i}@test.example", rcpts=(f"u{i}@localhost",),
                                         body=body, expect_queued=False)
                results[i] = (code, text)
                c.cmd("QUIT")
            except Exception as e:  # noqa: BLE001 - collected and reported
                errors.append(f"{i}: {e!r}")
                barrier.abort()
            finally:
                if c:
                    c.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        self.assertEqual(errors[:10], [], f"{len(errors)} session(s) failed")
        bad = [(i, r) for i, r in enumerate(results) if r is None or r[0] != 250]
        self.assertEqual(bad[:10], [], f"{len(bad)} session(s) without 250")
        qids = {queued_id(r[1]) for r in results}
        self.assertEqual(len(qids), n, "queue ids must be unique")
        new = set(self.srv.queue_files()) - before
        self.assertEqual(qids, new)
        for qid in qids:
            q = parse_queue_file(self.srv.read_queue_file(qid))
            i = int(q["sender"][1:].split("@")[0])
            self.assertEqual(q["rcpt"][0][0], f"u{i}@localhost")
        # still healthy
        c = self.session(source=source_ip())
        code, text = c.send_mail()
        self.assertReply((code, text), 250, "2.0.0")


if __name__ == "__main__":
    unittest.main()
