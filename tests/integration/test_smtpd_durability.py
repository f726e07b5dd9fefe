"""test_smtpd_durability.py - the durable spool as seen from outside.

* "250 Ok: queued as QID" means the message is queued, complete, at that
  moment: as its journal record (resident, the default) or as
  spool/queue/QID; the queue file image has the documented layout
  (SLUICE-QUEUE 1, envelope records in order, content starting with our
  Received: header, end OFFSET LENGTH trailer that matches its size). A
  stopped server leaves every queued message in spool/queue.
* Leftovers in spool/tmp are removed at start; queued files are kept.
* Crash safety: kill -9 in the middle of a 2,000-message smtp-source load
  plus Python clients that record every queue id they were given; after
  a restart every such id is queued and parses, every queued message
  parses, and spool/tmp is empty.
* The three ways of making a batch durable (spool_sync = journal, the
  default: one journal append + fdatasync per batch; auto: one syncfs per
  batch; fdatasync: one fdatasync per file) queue every message of
  concurrent sessions, complete; a bad spool_sync value stops the start
  with the file, line and choices named.
* Journal replay (kill -9 leaves resident messages without queue files;
  a power failure is simulated by deleting, truncating or zeroing any
  queue file that was written, as unsynced files can be): the next start,
  or an offline `sluice queue list`, writes every acknowledged message
  from the journal, complete; a message deleted before the crash stays
  deleted; a second server on the same spool is refused.
* Disk full: the spool on a 2 MB tmpfs (or a loop-mounted ext4 image);
  messages are refused with 452 4.3.1 once it is full, the server keeps
  running, nothing partial is left in queue/ or tmp/, and a small message
  is accepted again once space is freed (ballast removed: deleting
  resident messages frees their journal space only when the segment is
  reused).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from sluicetest import (SLUICE, Client, ConcurrentSenders, Sluice, SluiceCase, make_body, parse_queue_file,
                        queued_id, sanitizer_report, source_ip, split_message, start_sluice,
                        stop_sluice, wait_for_log, wait_until)


class QueueFiles(SluiceCase):

    def test_queued_when_250_is_seen(self):
        c = self.session(source=source_ip())
        tmp = os.path.join(self.srv.spool, "tmp")
        qids = []
        for i in range(30):
            code, text = c.send_mail(body=make_body(subject=f"n{i}"))
            qid = queued_id(text)
            qids.append(qid)
            # no waiting: it must already be queued, whole (in the journal)
            self.assertIn(qid, self.srv.queue_files(), f"{qid} not queued when 250 arrived")
            self.assertFalse(os.path.exists(os.path.join(tmp, qid)), f"{qid} still in tmp/")
            self.assertEqual(parse_queue_file(self.srv.read_queue_file(qid))["id"], qid)
        # resident: no queue file yet
        qdir = os.path.join(self.srv.spool, "queue")
        self.assertEqual([q for q in qids if os.path.exists(os.path.join(qdir, q))], [])

    def test_format(self):
        ip = source_ip()
        c = self.session(source=ip, ehlo="fmt.test.example")
        body = make_body(subject="format", lines=5)
        code, text = c.send_mail(sender="s@test.example", rcpts=("u@localhost",), body=body)
        qid = queued_id(text)
        data = self.srv.read_queue_file(qid)
        self.assertTrue(data.startswith(b"SLUICE-QUEUE 1\nid " + qid.encode() + b"\n"), data[:80])
        q = parse_queue_file(data)
        env = data[:q["offset"]].decode().split("\n")
        keys = [l.split(" ", 1)[0] for l in env[1:] if l]
        order = ["id", "arrival", "client", "helo", "proto", "sender", "envid", "ret", "body",
                 "smtputf8", "rcpt", "content"]
        self.assertEqual(keys, [k for k in order if k in keys], f"record order: {keys}")
        self.assertEqual(keys[-1], "content")
        self.assertEqual(q["id"], qid)
        self.assertEqual(q["client"], f"{ip} unknown")
        self.assertEqual(q["helo"], "fmt.test.example")
        self.assertEqual(q["proto"], "ESMTP")
        self.assertEqual(q["sender"], "s@test.example")
        self.assertEqual(q["rcpt"], [("u@localhost", "-", "-")])
        arrival = float(q["arrival"])
        self.assertLess(abs(arrival - time.time()), 60)
        # trailer: "\nend OFFSET LENGTH\n" closes the file exactly
        trailer = b"\nend %d %d\n" % (q["offset"], q["length"])
        self.assertTrue(data.endswith(trailer))
        self.assertEqual(len(data), q["offset"] + q["length"] + len(trailer))
        content = q["content"]
        self.assertTrue(content.endswith(body), "stored message differs from what was sent")
        received = content[:len(content) - len(body)].decode()
        self.assertRegex(received, rf"^Received: from fmt\.test\.example \(unknown \[{re.escape(ip)}\]\)\r\n"
                         rf"\tby mx\.test\.example \(sluice\) with ESMTP id {qid}\r\n"
                         r"\tfor <u@localhost>; [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} "
                         r"\d\d:\d\d:\d\d [+-]\d{4}( \(\w+\))?\r\n$")

    def test_multi_recipient_received_has_no_for(self):
        c = self.session()
        code, text = c.send_mail(rcpts=("a@localhost", "b@localhost"))
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        head = split_message(q["content"])[0].decode()
        first = head.split("\r\n")[0:3]
        self.assertNotIn("for <", "\n".join(first))


def one_queue_file():
    """Queue one message through a throwaway sluice; (qid, file image)."""
    srv = start_sluice()
    try:
        c = Client(srv.host, srv.port)
        c.ehlo()
        _, text = c.send_mail()
        qid = queued_id(text)
        c.close()
        return qid, srv.read_queue_file(qid)
    finally:
        stop_sluice(srv)


class SpoolStart(unittest.TestCase):

    def test_stop_writes_queue_files(self):
        """Resident messages get their queue files at a clean stop; the
        next start has nothing to replay and finds them all."""
        srv = start_sluice()
        try:
            c = Client(srv.host, srv.port)
            c.ehlo()
            qids = [queued_id(c.send_mail(body=make_body(subject=f"stop {i}"))[1])
                    for i in range(5)]
            c.close()
            qdir = os.path.join(srv.spool, "queue")
            self.assertEqual(os.listdir(qdir), [])
            self.assertEqual(srv.stop(), 0)
            self.assertEqual(sorted(os.listdir(qdir)), sorted(qids))
            for qid in qids:
                with open(os.path.join(qdir, qid), "rb") as f:
                    self.assertEqual(parse_queue_file(f.read())["id"], qid)
            srv.start()
            wait_for_log(srv, r"5 message\(s\) in the queue")
            self.assertNotIn("journal replayed", srv.log())
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "")
        self.assertEqual(rc, 0)

    def test_tmp_cleaned_queue_kept(self):
        srv = Sluice()
        try:
            os.makedirs(os.path.join(srv.spool, "tmp"))
            os.makedirs(os.path.join(srv.spool, "queue"))
            for name in ("6B0000000000A000", "6B0000000000B000"):
                with open(os.path.join(srv.spool, "tmp", name), "wb") as f:
                    f.write(b"SLUICE-QUEUE 1\nid " + name.encode() + b"\nhalf")
            # a complete queue file from "before"
            qid, image = one_queue_file()
            with open(os.path.join(srv.spool, "queue", qid), "wb") as f:
                f.write(image)
            srv.start()
            c = Client(srv.host, srv.port)  # a greeting means the spool is open
            c.cmd("QUIT")
            c.close()
            self.assertEqual(os.listdir(os.path.join(srv.spool, "tmp")), [])
            self.assertEqual(srv.queue_files(), [qid])
            wait_for_log(srv, r"removed 2 incomplete message file\(s\) from ")
            wait_for_log(srv, r"1 message\(s\) in queue")
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "")
        self.assertEqual(rc, 0)

    def test_incomplete_queue_files_removed_damaged_kept(self):
        """A file cut short in queue/ (the journal writes queue files in
        place; a crash can interrupt it, and the replay rewrites those it
        still has records of) is removed at start; a damaged one with a
        valid end goes to corrupt/."""
        srv = Sluice()
        try:
            qdir = os.path.join(srv.spool, "queue")
            os.makedirs(qdir)
            qid, image = one_queue_file()
            with open(os.path.join(qdir, qid), "wb") as f:
                f.write(image)
            with open(os.path.join(qdir, "6B0000000000A000"), "wb") as f:
                f.write(image[:len(image) // 2])      # cut short
            open(os.path.join(qdir, "6B0000000000B000"), "wb").close()   # empty
            damaged = image.replace(b"\nrcpt ", b"\nrcpX ")
            self.assertNotEqual(damaged, image)
            with open(os.path.join(qdir, "6B0000000000C000"), "wb") as f:
                f.write(damaged)                      # no recipients, valid end
            srv.start()
            c = Client(srv.host, srv.port)
            c.cmd("QUIT")
            c.close()
            wait_for_log(srv, r"removed 2 incomplete queue file\(s\)")
            wait_for_log(srv, r"6B0000000000C000: damaged queue file moved to ")
            self.assertEqual(srv.queue_files(), [qid])
            self.assertEqual(os.listdir(os.path.join(srv.spool, "corrupt")),
                             ["6B0000000000C000"])
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "")
        self.assertEqual(rc, 0)


class SyncModes(unittest.TestCase):
    """spool_sync = auto | fdatasync, with concurrent sessions (real batches)."""

    def queue_concurrently(self, mode):
        srv = start_sluice(conf={"spool_sync": mode})
        try:
            qids, errors = ConcurrentSenders(
                srv.host, srv.port, 8, per_client=10,
                body=lambda n, i: make_body(subject=f"{mode} {n} {i}")).finish()
            self.assertEqual(errors, [])
            self.assertEqual(len(qids), 80)
            for qid in qids:   # complete, with its end record
                self.assertEqual(parse_queue_file(srv.read_queue_file(qid))["id"], qid)
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "")
        self.assertEqual(rc, 0)

    def test_auto(self):
        self.queue_concurrently("auto")

    def test_fdatasync(self):
        self.queue_concurrently("fdatasync")

    def test_journal(self):
        self.queue_concurrently("journal")

    def test_bad_value_named(self):
        srv = Sluice(conf={"spool_sync": "sometimes"})
        try:
            p = subprocess.run([SLUICE, "serve", "-c", srv.conf_path], capture_output=True,
                               text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("spool_sync", p.stderr)
            self.assertIn("auto|fdatasync", p.stderr)
            self.assertIn(srv.conf_path, p.stderr)
        finally:
            srv.cleanup()

class JournalReplay(unittest.TestCase):
    """What survives a power failure: the journal, not the unsynced files."""

    def setUp(self):
        self.srv = start_sluice()

    def tearDown(self):
        stop_sluice(self.srv)

    def queue_messages(self, n_clients=4, per_client=6):
        qids, errors = ConcurrentSenders(
            self.srv.host, self.srv.port, n_clients, per_client=per_client,
            body=lambda n, i: make_body(subject=f"journal {n} {i}", lines=40)).finish()
        self.assertEqual(errors, [])
        self.assertEqual(len(qids), n_clients * per_client)
        return qids

    def crash_and_damage(self, qids, deleted):
        """kill -9 (resident messages have no queue file), give some
        messages a queue file as the journal writes them when it needs the
        space, then do to those what a power failure may do to files that
        were never synced; returns the ids without a whole file."""
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait()
        qdir = os.path.join(self.srv.spool, "queue")
        written = [q for q in qids if q != deleted]
        for qid in written[:20]:
            if not os.path.exists(os.path.join(qdir, qid)):
                image = self.srv.read_queue_file(qid)   # from the journal
                with open(os.path.join(qdir, qid), "wb") as f:
                    f.write(image)
        for qid in written[:5]:
            os.unlink(os.path.join(qdir, qid))
        for qid in written[5:10]:
            path = os.path.join(qdir, qid)
            os.truncate(path, os.path.getsize(path) // 2)
        for qid in written[10:15]:
            path = os.path.join(qdir, qid)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.seek(size // 3)
                f.write(b"\0" * (size // 3))
        # written[15:20] survived whole
        return [q for q in written if q not in written[15:20]]

    def delete_online(self, qid):
        p = subprocess.run([SLUICE, "queue", "-c", self.srv.conf_path, "delete", qid],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def assert_all_back(self, qids, deleted):
        qdir = os.path.join(self.srv.spool, "queue")
        self.assertFalse(os.path.exists(os.path.join(qdir, deleted)),
                         "a deleted message came back from the journal")
        for qid in qids:
            if qid == deleted:
                continue
            with open(os.path.join(qdir, qid), "rb") as f:
                q = parse_queue_file(f.read())
            self.assertEqual(q["id"], qid)

    def test_start_restores_from_the_journal(self):
        qids = self.queue_messages()
        deleted = qids[-1]
        self.delete_online(deleted)
        damaged = self.crash_and_damage(qids, deleted)
        srv2 = Sluice(port=self.srv.port, tmpdir=self.srv.dir)
        srv2.start()
        self.srv = srv2
        c = Client(srv2.host, srv2.port)
        c.cmd("QUIT")
        c.close()
        wait_for_log(srv2, rf"journal replayed: \d+ record\(s\), {len(damaged)} queue "
                           rf"file\(s\) restored, 1 already gone")
        for qid in damaged:
            wait_for_log(srv2, rf"{qid}: queue file written from the journal")
        self.assert_all_back(qids, deleted)
        # a second server on the same spool is refused, with the reason
        other = Sluice(tmpdir=tempfile.mkdtemp(prefix="sluice-second-"))
        with open(other.conf_path, "a") as f:
            f.write(f"spool_dir = {srv2.spool}\n")
        p = subprocess.run([SLUICE, "serve", "-c", other.conf_path], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("journal/lock", p.stderr)
        shutil.rmtree(other.dir, ignore_errors=True)

    def test_offline_queue_tool_replays(self):
        qids = self.queue_messages(n_clients=3, per_client=6)
        deleted = qids[-1]
        self.delete_online(deleted)
        self.crash_and_damage(qids, deleted)
        p = subprocess.run([SLUICE, "queue", "-c", self.srv.conf_path, "--json", "list"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("warning: cannot", p.stderr)
        listed = {m["id"] for m in json.loads(p.stdout)}
        self.assertEqual(listed, set(qids) - {deleted})
        self.assert_all_back(qids, deleted)


class CrashSafety(unittest.TestCase):
    """kill -9 under load; every acknowledged message survives."""

    RECORDERS = 6

    def setUp(self):
        self.srv = start_sluice()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop_sluice(self.srv)

    def test_kill9_during_load(self):
        # one kill under `make test`; several in a row under `make soak`
        cycles = 5 if os.environ.get("SLUICE_SOAK") else 1
        acked = []
        for cycle in range(cycles):
            with self.subTest(cycle=cycle):
                self.kill_restart_check(acked)

    def kill_restart_check(self, acked):
        srv = self.srv
        lock = threading.Lock()
        stop = threading.Event()
        first_new = len(acked)

        def recorder(i):
            body = make_body(lines=60)
            try:
                c = Client(srv.host, srv.port, source=source_ip(), timeout=10)
                c.ehlo(f"rec{i}.test.example")
                while not stop.is_set():
                    code, text = c.send_mail(sender=f"rec{i}@test.example", body=body,
                                             expect_queued=False)
                    qid = queued_id(text)
                    if qid is None:
                        return
                    with lock:
                        acked.append(qid)
            except (OSError, ConnectionError, AssertionError):
                return

        load = subprocess.Popen(["smtp-source", "-s", "20", "-m", "2000", "-l", "5120",
                                 "-f", "from@test.example", "-t", "rcpt@localhost",
                                 f"127.0.0.1:{srv.port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(load)
        threads = [threading.Thread(target=recorder, args=(i,)) for i in range(self.RECORDERS)]
        for t in threads:
            t.start()
        # acknowledged messages, counted in the log (the queue files of
        # resident messages appear only later)
        accepted = lambda: srv.log().count("(queue active)")
        start_count = accepted()
        wait_until(lambda: accepted() >= start_count + 400, timeout=60,
                   interval=0.005, what="400 queued messages")
        load_running = load.poll() is None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        stop.set()
        for t in threads:
            t.join(30)
        try:
            load.wait(15)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
        self.assertTrue(load_running, "smtp-source finished before the kill; raise -m")
        self.assertGreater(len(acked) - first_new, 10,
                           "the recorders saw too few acknowledgements")
        tmp_before = len(os.listdir(os.path.join(srv.spool, "tmp")))

        # restart on the same spool and port
        srv2 = Sluice(port=srv.port, tmpdir=srv.dir)
        srv2.start()
        self.srv = srv2
        c = Client(srv2.host, srv2.port)
        c.cmd("QUIT")
        c.close()
        self.assertEqual(os.listdir(os.path.join(srv2.spool, "tmp")), [],
                         "spool/tmp not cleaned at start")
        if tmp_before:
            wait_for_log(srv2, rf"removed {tmp_before} incomplete message file\(s\)")
        queued = set(srv2.queue_files())
        missing = [q for q in acked if q not in queued]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged message(s) lost")
        bad = []
        for qid in queued:
            try:
                q = parse_queue_file(srv2.read_queue_file(qid))
                if q["id"] != qid:
                    bad.append((qid, "id record differs"))
            except ValueError as e:
                bad.append((qid, str(e)))
        self.assertEqual(bad, [], f"{len(bad)} corrupt queue file(s)")
        # and it serves again
        c = Client(srv2.host, srv2.port)
        c.ehlo()
        code, text = c.send_mail()
        self.assertEqual(code, 250, text)
        c.close()


def _mount_small_fs(path, size_mb=2):
    """Mount a small filesystem on path; returns (how, cleanup info) or raises SkipTest."""
    errors = []
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode == 0:
        return "tmpfs", None
    errors.append(f"tmpfs: {p.stderr.strip()}")
    img = path.rstrip("/") + ".img"
    try:
        subprocess.run(["truncate", "-s", f"{size_mb + 2}M", img], check=True, capture_output=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True, capture_output=True)
        p = subprocess.run(["mount", "-o", "loop", img, path], capture_output=True, text=True)
        if p.returncode == 0:
            return "ext4-loop", img
        errors.append(f"loop: {p.stderr.strip()}")
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        errors.append(f"loop: {e}")
    raise unittest.SkipTest("cannot mount a small filesystem: " + "; ".join(errors))


class DiskFull(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-full-")
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.spool)
        self.img = None
        self.mounted = False
        self.how, self.img = _mount_small_fs(self.spool)
        self.mounted = True
        self.srv = None

    def tearDown(self):
        try:
            if self.srv is not None and self.srv.proc and self.srv.proc.poll() is None:
                self.srv.stop()
            if self.srv is not None:
                self.srv.kill9()
        finally:
            if self.mounted:
                subprocess.run(["umount", self.spool], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.img:
                try:
                    os.unlink(self.img)
                except FileNotFoundError:
                    pass

    def test_disk_full_452_then_recovers(self):
        self.srv = Sluice(tmpdir=self.dir)  # spool = self.dir/spool, the small fs
        ballast = os.path.join(self.spool, "ballast")   # what an operator can free
        with open(ballast, "wb") as f:
            f.write(b"b" * (384 * 1024))
        self.srv.start()
        c = Client(self.srv.host, self.srv.port, source=source_ip(), timeout=20)
        c.ehlo()
        big = make_body(lines=1) + (b"f" * 78 + b"\r\n") * 1300  # ~100 KB
        got = []
        for i in range(60):
            code, text = c.send_mail(body=big, expect_queued=False)
            got.append(code)
            if code != 250:
                break
        self.assertEqual(code, 452, f"after {len(got)} messages: {text}")
        self.assertEqual(text.split(" ")[1], "4.3.1", text)
        self.assertGreater(got.count(250), 3, "the filesystem filled up suspiciously early")
        self.assertIsNone(self.srv.proc.poll(), "sluice died on ENOSPC")
        # fill the rest with messages small enough to be written only at
        # the end of DATA (the final flush hits ENOSPC)
        small = make_body(lines=1) + (b"s" * 78 + b"\r\n") * 200  # ~16 KB
        for i in range(40):
            code, text = c.send_mail(body=small, expect_queued=False)
            if code != 250:
                break
        self.assertEqual(code, 452, text)
        self.assertEqual(text.split(" ")[1], "4.3.1", text)
        self.assertIsNone(self.srv.proc.poll(), "sluice died on ENOSPC")
        # nothing partial anywhere
        for qid in self.srv.queue_files():
            parse_queue_file(self.srv.read_queue_file(qid))
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])
        # the session is still usable, the small message may or may not fit
        self.assertEqual(c.cmd("NOOP")[0], 250)
        # free space (resident messages keep theirs in the journal until
        # its segment is reused)
        os.unlink(ballast)
        code, text = c.send_mail(body=make_body(subject="after"), expect_queued=False)
        self.assertEqual(code, 250, text)
        parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        c.cmd("QUIT")
        c.close()
        # a new session works too
        c = Client(self.srv.host, self.srv.port, timeout=20)
        c.ehlo()
        code, text = c.send_mail(expect_queued=False)
        self.assertEqual(code, 250, text)
        c.close()
        wait_for_log(self.srv, r"cannot write queue file: No space left on device")
        rc = self.srv.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(sanitizer_report(self.srv), "")


if __name__ == "__main__":
    unittest.main()
