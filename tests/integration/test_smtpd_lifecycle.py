"""test_smtpd_lifecycle.py - start-up failures, signals and reload.

* SIGTERM: exit 0; an idle session gets 421 4.3.2; a session in the
  middle of a transaction finishes it (250 queued) first; a transaction
  that never finishes delays the exit by at most smtpd_shutdown_timeout.
* SIGHUP: configuration and tables are reloaded without dropping
  connections (a user added to local_recipients is accepted on an
  already-open session; a new message_size_limit shows in the next EHLO);
  a broken file on reload keeps the running configuration.
* Start-up errors exit non-zero with one clear line on stderr: a taken
  port ("cannot listen"), an unwritable spool, and configuration errors
  that name FILE:LINE and suggest a fix (misspelled key -> did you mean).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from sluicetest import (SLUICE, Client, ConcurrentSenders, close_clients, free_port, make_body, parse_queue_file,
                        queued_id, sanitizer_report, source_ip, start_sluice, stop_sluice,
                        wait_for_log)


class ServerTest(unittest.TestCase):
    """Each test gets its own server (they stop it)."""
    conf = {}

    def setUp(self):
        self.srv = start_sluice(dict(self.conf))
        self.clients = []

    def tearDown(self):
        close_clients(self.clients)
        stop_sluice(self.srv)

    def connect(self, **kw):
        c = Client(self.srv.host, self.srv.port, **kw)
        self.clients.append(c)
        return c

    def term(self, timeout=40):
        self.srv.proc.send_signal(signal.SIGTERM)
        t0 = time.time()
        rc = self.srv.proc.wait(timeout)
        return rc, time.time() - t0


class Sigterm(ServerTest):

    def test_idle_exit_0(self):
        rc, elapsed = self.term()
        self.assertEqual(rc, 0, sanitizer_report(self.srv))
        self.assertLess(elapsed, 5)
        self.assertEqual(sanitizer_report(self.srv), "")

    def test_idle_session_gets_421(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        c2 = self.connect(source=source_ip())  # not even greeted by EHLO
        self.srv.proc.send_signal(signal.SIGTERM)
        for cl in (c, c2):
            code, text = cl.reply()
            self.assertEqual(code, 421, text)
            self.assertEqual(text.split(" ")[1], "4.3.2", text)
            self.assertTrue(cl.closed(5))
        rc = self.srv.proc.wait(20)
        self.assertEqual(rc, 0, sanitizer_report(self.srv))

    def test_transaction_finishes_first(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<u@localhost>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        body = make_body(subject="in flight")
        c.send(body[:40])
        idle = self.connect(source=source_ip())
        idle.ehlo()
        self.srv.proc.send_signal(signal.SIGTERM)
        code, text = idle.reply()
        self.assertEqual((code, text.split(" ")[1]), (421, "4.3.2"), text)
        time.sleep(0.5)
        self.assertIsNone(self.srv.proc.poll(), "exited with a transaction in flight")
        c.send(body[40:] + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        qid = queued_id(text)
        self.assertIsNotNone(qid, text)
        # after the transaction the session is closed with 421 4.3.2
        code, text = c.reply()
        self.assertEqual((code, text.split(" ")[1]), (421, "4.3.2"), text)
        self.assertTrue(c.closed(5))
        rc = self.srv.proc.wait(20)
        self.assertEqual(rc, 0, sanitizer_report(self.srv))
        q = parse_queue_file(self.srv.read_queue_file(qid))
        self.assertTrue(q["content"].endswith(body))

    def test_many_idle_sessions(self):
        clients = []
        for i in range(200):
            c = self.connect(source=f"127.77.{i % 5}.{os.getpid() % 200 + 2}")
            self.assertEqual(c.greeting[0], 220)
            if i % 2:
                c.ehlo()
            clients.append(c)
        rc, elapsed = self.term(timeout=30)
        self.assertEqual(rc, 0, sanitizer_report(self.srv))
        for c in clients:
            code, text = c.reply()
            self.assertEqual((code, text.split(" ")[1]), (421, "4.3.2"), text)

    def test_remote_message_queued_then_sigterm(self):
        """A relayed message is queued and SIGTERM follows at once: the
        exit must still be clean (whatever the queue manager started for
        the message, e.g. an MX lookup, is torn down)."""
        c = self.connect()
        c.ehlo()
        code, text = c.send_mail(rcpts=("u@remote.example",))
        qid = queued_id(text)
        c.cmd("QUIT")
        rc, elapsed = self.term(timeout=40)
        self.assertEqual(rc, 0, "stderr:\n" + self.srv.stderr_text()[-2500:])
        self.assertEqual(sanitizer_report(self.srv), "")
        self.assertIn(qid, self.srv.queue_files())

    def test_mail_state_session_may_finish(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
        self.srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertEqual(c.cmd("RCPT TO:<u@localhost>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        self.assertEqual(self.srv.proc.wait(20), 0, sanitizer_report(self.srv))


class SigtermBounded(ServerTest):
    conf = {"smtpd_shutdown_timeout": "2s"}

    def test_stuck_transaction_bounded(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        before = set(self.srv.queue_files())
        c.cmd("MAIL FROM:<s@test.example>")
        c.cmd("RCPT TO:<u@localhost>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: never ends\r\n\r\nstill typing")
        rc, elapsed = self.term(timeout=30)
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 8)
        self.assertEqual(rc, 0, "exit code after smtpd_shutdown_timeout; stderr:\n"
                         + self.srv.stderr_text()[-3000:])
        self.assertEqual(set(self.srv.queue_files()), before, "a partial message was queued")
        wait_for_log(self.srv, r"shutdown: 1 session\(s\) still busy after 2s; exiting")


class Sighup(ServerTest):

    def setUp(self):
        self.tdir = tempfile.mkdtemp(prefix="sluice-hup-")
        self.table = os.path.join(self.tdir, "local_recipients")
        with open(self.table, "w") as f:
            f.write("alice OK\n")
        self.conf = {"local_recipients": self.table, "message_size_limit": "100000"}
        super().setUp()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            shutil.rmtree(self.tdir, ignore_errors=True)

    def rewrite_conf(self, **changes):
        with open(self.srv.conf_path) as f:
            text = f.read()
        for k, v in changes.items():
            text = re.sub(rf"^{k} = .*$", f"{k} = {v}", text, flags=re.M)
            if not re.search(rf"^{k} = ", text, re.M):
                text += f"{k} = {v}\n"
        with open(self.srv.conf_path, "w") as f:
            f.write(text)

    def hup_and_wait(self):
        n = self.srv.log().count("reload -- configuration")
        self.srv.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while self.srv.log().count("reload -- configuration") <= n:
            self.assertLess(time.time(), deadline, "no reload line in the log")
            self.assertIsNone(self.srv.proc.poll(), "sluice exited on SIGHUP")
            time.sleep(0.05)

    def test_table_reload_on_open_connection(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<alice@localhost>")[0], 250)
        code, text = c.cmd("RCPT TO:<bob@localhost>")
        self.assertEqual((code, text.split(" ")[1]), (550, "5.1.1"), text)
        with open(self.table, "a") as f:
            f.write("bob OK\n")
        self.hup_and_wait()
        code, text = c.cmd("RCPT TO:<bob@localhost>")
        self.assertEqual((code, text.split(" ")[1]), (250, "2.1.5"), text)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual([r[0] for r in q["rcpt"]], ["alice@localhost", "bob@localhost"])

    def test_config_reload_keeps_connections(self):
        c = self.connect(source=source_ip())
        text = c.ehlo()
        self.assertIn("SIZE 100000", text)
        self.rewrite_conf(message_size_limit="200000")
        self.hup_and_wait()
        self.assertEqual(c.cmd("NOOP")[0], 250)
        text = c.ehlo()
        self.assertIn("SIZE 200000", text)
        c2 = self.connect(source=source_ip())
        self.assertIn("SIZE 200000", c2.ehlo())

    def test_spool_sync_switched_by_reload(self):
        """journal -> fdatasync -> auto -> journal under concurrent
        sessions: every message queued, complete, across the switches."""
        senders = ConcurrentSenders(self.srv.host, self.srv.port, 4, rcpts=["alice@localhost"],
                                    body=lambda n, i: make_body(lines=30))
        try:
            for mode in ("fdatasync", "auto", "journal"):
                time.sleep(0.3)
                self.rewrite_conf(spool_sync=mode)
                self.hup_and_wait()
            time.sleep(0.3)
        finally:
            qids, errors = senders.finish(stop=True, timeout=60)
        self.assertEqual(errors, [])
        self.assertGreater(len(qids), 20)
        for qid in qids:
            parse_queue_file(self.srv.read_queue_file(qid))

    def test_broken_config_on_reload_keeps_running(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        self.rewrite_conf(message_size_limit="lots")
        self.srv.proc.send_signal(signal.SIGHUP)
        wait_for_log(self.srv, r"reload failed, keeping the running configuration: .*"
                     + re.escape(self.srv.conf_path) + r":\d+: .*message_size_limit")
        self.assertIsNone(self.srv.proc.poll())
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertIn("SIZE 100000", c.ehlo())

    def test_many_hups(self):
        c = self.connect(source=source_ip())
        c.ehlo()
        fds = len(os.listdir(f"/proc/{self.srv.proc.pid}/fd"))
        for _ in range(5):
            self.hup_and_wait()
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertLessEqual(len(os.listdir(f"/proc/{self.srv.proc.pid}/fd")), fds,
                             "file descriptors leak on reload")


def run_failing(conf_text, timeout=20, conf_name="sluice.conf"):
    """Start sluice on conf_text; return (exit code, stderr text, conf path, dir)."""
    d = tempfile.mkdtemp(prefix="sluice-bad-")
    path = os.path.join(d, conf_name)
    with open(path, "w") as f:
        f.write(conf_text.replace("@DIR@", d))
    p = subprocess.Popen([SLUICE, "serve", "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        shutil.rmtree(d, ignore_errors=True)
        raise AssertionError(f"sluice kept running on a bad setup:\n{err.decode()}")
    return p.returncode, (out + err).decode(errors="replace"), path, d


class StartupErrors(unittest.TestCase):

    def setUp(self):
        self.dirs = []
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        for d in self.dirs:
            subprocess.run(["umount", os.path.join(d, "ro")], capture_output=True)
            shutil.rmtree(d, ignore_errors=True)

    def start(self, conf_text):
        rc, err, path, d = run_failing(conf_text)
        self.dirs.append(d)
        return rc, err, path

    def one_line(self, err):
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"expected one line on stderr, got:\n{err}")
        return lines[0]

    def test_port_taken(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        self.socks.append(s)
        port = s.getsockname()[1]
        rc, err, _ = self.start(f"smtp_listen = 127.0.0.1:{port}\nspool_dir = @DIR@/spool\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn("cannot listen", line)
        self.assertIn(f"127.0.0.1:{port}", line)

    def test_spool_under_a_file(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = /etc/passwd/spool\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn("/etc/passwd/spool", line)
        self.assertIn("fix:", line)

    def test_spool_read_only(self):
        d = tempfile.mkdtemp(prefix="sluice-ro-")
        self.dirs.append(d)
        ro = os.path.join(d, "ro")
        os.makedirs(ro)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a read-only tmpfs: {p.stderr.strip()}")
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = {ro}/spool\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{ro}/spool", line)
        self.assertRegex(line, r"[Rr]ead-only file system")

    def test_spool_tmp_not_writable(self):
        """spool exists but tmp/ is on a read-only mount."""
        d = tempfile.mkdtemp(prefix="sluice-ro-")
        self.dirs.append(d)
        spool = os.path.join(d, "spool")
        os.makedirs(os.path.join(spool, "tmp"))
        os.makedirs(os.path.join(spool, "queue"))
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                            os.path.join(spool, "tmp")], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a read-only tmpfs: {p.stderr.strip()}")
        try:
            rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = {spool}\n")
        finally:
            subprocess.run(["umount", os.path.join(spool, "tmp")], capture_output=True)
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn("not writable", line)
        self.assertIn("fix:", line)

    def test_misspelled_key(self):
        rc, err, path = self.start(f"# test\nsmtp_listen = 127.0.0.1:{free_port()}\nspool_dir = @DIR@/spool\n"
                                   "mesage_size_limit = 10M\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:4:", line)
        self.assertIn("mesage_size_limit", line)
        self.assertIn("did you mean 'message_size_limit'", line)

    def test_bad_value(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = @DIR@/spool\n"
                                   "smtpd_timeout = soon\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:3:", line)
        self.assertIn("smtpd_timeout", line)
        self.assertIn("fix:", line)

    def test_bad_enum(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = @DIR@/spool\n\n"
                                   "smtpd_bare_newline = allow\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:4:", line)
        self.assertIn("normalize|reject", line)

    def test_missing_equals(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir @DIR@/spool\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:2:", line)
        self.assertIn("fix:", line)

    def test_bad_network(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = @DIR@/spool\n"
                                   "mynetworks = 127.0.0.0/8 10.0.0.0/33\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:3:", line)
        self.assertIn("10.0.0.0/33", line)

    def test_missing_table(self):
        rc, err, path = self.start(f"smtp_listen = 127.0.0.1:{free_port()}\nspool_dir = @DIR@/spool\n"
                                   "local_recipients = @DIR@/nonexistent\n")
        self.assertNotEqual(rc, 0)
        line = self.one_line(err)
        self.assertIn(f"{path}:3:", line)
        self.assertIn("nonexistent", line)

    def test_missing_config_file(self):
        p = subprocess.run([SLUICE, "serve", "-c", "/nonexistent/sluice.conf"],
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        line = self.one_line(p.stdout + p.stderr)
        self.assertIn("/nonexistent/sluice.conf", line)


if __name__ == "__main__":
    unittest.main()
