"""test_smtpd_logging.py - maillog_file lines in Postfix's format.

Operators grep sluice's log with the patterns they use for Postfix, so the
lines must match Postfix byte for byte (apart from "sluice/" in the
program name): connect, client=, message-id=, from=<> size= nrcpt=
(queue active), the disconnect summary with per-command counts, lost
connection after DATA, the TLS established line, and SSL_accept errors
followed by "lost connection after STARTTLS". Each test uses its own
client address so its lines are unambiguous.
"""
import os
import re
import time
import unittest

from sluicetest import (SluiceCase, make_body, parse_queue_file, queued_id, source_ip,
                        wait_for_log)

PREFIX = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx\.test\.example sluice/(\w+)\[\d+\]: "


class MailLog(SluiceCase):

    def lines_for(self, ip, qid=None):
        out = []
        for line in self.srv.log().splitlines():
            if f"[{ip}]" in line or (qid and f": {qid}: " in line):
                out.append(line)
        return out

    def test_accepted_message_lines(self):
        ip = source_ip()
        c = self.session(source=ip, ehlo="logger.test.example")
        mid = "<log-test-1@client.test.example>"
        code, text = c.send_mail(sender="s@test.example", rcpts=("u@localhost",),
                                 body=make_body(msgid=mid))
        qid = queued_id(text)
        self.assertReply(c.cmd("QUIT"), 221, "2.0.0")
        c.close()
        q = parse_queue_file(self.srv.read_queue_file(qid))
        eip = re.escape(ip)
        wait_for_log(self.srv, PREFIX.replace(r"(\w+)", "smtpd") + rf"disconnect from unknown\[{eip}\]")
        expected = [
            ("smtpd", rf"connect from unknown\[{eip}\]$"),
            ("smtpd", rf"{qid}: client=unknown\[{eip}\]$"),
            (r"\w+", rf"{qid}: message-id={re.escape(mid)}$"),
            (r"\w+", rf"{qid}: from=<s@test\.example>, size={q['length']}, nrcpt=1 \(queue active\)$"),
            ("smtpd", rf"disconnect from unknown\[{eip}\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$"),
        ]
        lines = self.lines_for(ip, qid)
        pos = 0
        for prog, pat in expected:
            rx = re.compile(PREFIX.replace(r"(\w+)", f"(?:{prog})") + pat)
            for i in range(pos, len(lines)):
                if rx.search(lines[i]):
                    pos = i + 1
                    break
            else:
                self.fail(f"no log line (in order) matching {pat!r}; lines for {ip}:\n"
                          + "\n".join(lines))

    def test_disconnect_counts_errors(self):
        ip = source_ip()
        c = self.session(source=ip)
        c.cmd("MAIL FROM:<s@test.example>")
        c.cmd("RCPT TO:<bad@>")
        c.cmd("RCPT TO:<u@localhost>")
        c.cmd("BOGUS")
        c.cmd("RSET")
        c.cmd("QUIT")
        wait_for_log(self.srv, rf"disconnect from unknown\[{re.escape(ip)}\] ehlo=1 mail=1 "
                     r"rcpt=1/2 rset=1 quit=1 unknown=0/1 commands=5/7$")

    def test_lost_connection_after_data(self):
        ip = source_ip()
        c = self.session(source=ip)
        before = set(self.srv.queue_files())
        c.cmd("MAIL FROM:<s@test.example>")
        c.cmd("RCPT TO:<u@localhost>")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: half\r\n\r\nhalf a mess")
        time.sleep(0.1)
        c.close()
        wait_for_log(self.srv, PREFIX.replace(r"(\w+)", "smtpd")
                     + rf"lost connection after DATA from unknown\[{re.escape(ip)}\]$")
        wait_for_log(self.srv, rf"disconnect from unknown\[{re.escape(ip)}\] ")
        self.assertEqual(set(self.srv.queue_files()), before, "half a message was queued")
        self.assertEqual(os.listdir(self.srv.spool + "/tmp"), [], "tmp file left behind")

    def test_lost_connection_after_rcpt(self):
        ip = source_ip()
        c = self.session(source=ip)
        c.cmd("MAIL FROM:<s@test.example>")
        c.cmd("RCPT TO:<u@localhost>")
        c.close()
        wait_for_log(self.srv, rf"lost connection after RCPT from unknown\[{re.escape(ip)}\]$")

    def test_tls_established_line(self):
        ip = source_ip()
        c = self.session(source=ip)
        c.starttls()
        c.ehlo()
        c.cmd("QUIT")
        wait_for_log(self.srv, PREFIX.replace(r"(\w+)", "smtpd")
                     + rf"Anonymous TLS connection established from unknown\[{re.escape(ip)}\]: "
                     r"TLSv1\.3 with cipher [A-Z0-9_]+ \(\d+/\d+ bits\)$")
        wait_for_log(self.srv, rf"disconnect from unknown\[{re.escape(ip)}\] ehlo=2 starttls=1 "
                     r"quit=1 commands=4$")

    def test_ssl_accept_error(self):
        ip = source_ip()
        c = self.session(source=ip)
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.send(b"this is not a TLS ClientHello\r\n" * 4)
        self.assertClosed(c, timeout=10)
        m = wait_for_log(self.srv, PREFIX.replace(r"(\w+)", "smtpd")
                         + rf"SSL_accept error from unknown\[{re.escape(ip)}\]: .+$")
        lines = self.lines_for(ip)
        idx = [i for i, l in enumerate(lines) if "SSL_accept error" in l][0]
        self.assertRegex(lines[idx + 1], PREFIX.replace(r"(\w+)", "smtpd")
                         + rf"lost connection after STARTTLS from unknown\[{re.escape(ip)}\]$")

    def test_ssl_accept_client_gone(self):
        ip = source_ip()
        c = self.session(source=ip)
        self.assertEqual(c.cmd("STARTTLS")[0], 220)
        c.close()
        wait_for_log(self.srv, rf"SSL_accept error from unknown\[{re.escape(ip)}\]: .+$")
        wait_for_log(self.srv, rf"lost connection after STARTTLS from unknown\[{re.escape(ip)}\]$")

    def test_tls_handshake_with_real_client_logged_once(self):
        ip = source_ip()
        c = self.session(source=ip)
        c.starttls()
        c.ehlo()
        code, text = c.send_mail()
        c.cmd("QUIT")
        wait_for_log(self.srv, rf"disconnect from unknown\[{re.escape(ip)}\]")
        lines = self.lines_for(ip)
        self.assertEqual(sum("Anonymous TLS connection established" in l for l in lines), 1, lines)


if __name__ == "__main__":
    unittest.main()
