"""test_smtpd_protocol.py - the ESMTP dialogue of `sluice serve`, line by line.

Covers: the EHLO extension list, VRFY/HELP, enhanced status codes on
every reply (RFC 2034/3463), command-line length limits (RFC 5321
4.5.3.1.4), unknown commands, bad sequences, syntax errors, address and
parameter errors, SIZE at MAIL and after the data, the recipient limit,
the error limit, NUL bytes, over-long text lines, CHUNKING (BDAT), DSN
and SMTPUTF8 parameters in the queue file, STARTTLS (twice, and the
CVE-2011-0411 plaintext-injection case), RFC 2920 pipelining and the
"protocol synchronization" rule, and SMTP smuggling with bare CR/LF
(CVE-2023-51764 class) in both smtpd_bare_newline modes.

Each test asserts the reply code AND the enhanced code.
"""
import os
import socket
import time
import unittest

from sluicetest import (SluiceCase, dot_stuff, enhanced, make_body, parse_queue_file,
                        queued_id, reply_now_or_at_next, split_message, source_ip)

SIZE_LIMIT = 200000


class EhloAndInformational(SluiceCase):
    conf = {"message_size_limit": str(SIZE_LIMIT)}

    def test_ehlo_lists_extensions(self):
        c = self.connect()
        self.assertEqual(c.greeting[0], 220)
        text = c.ehlo("client.test.example")
        lines = text.split("\n")
        self.assertTrue(lines[0].startswith("250-"), lines[0])
        for l in lines[:-1]:
            self.assertTrue(l.startswith("250-"), l)
        self.assertTrue(lines[-1].startswith("250 "), lines[-1])
        kws = {l[4:].split(" ")[0].upper(): l[4:] for l in lines[1:]}
        for ext in ("PIPELINING", "SIZE", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME",
                    "DSN", "SMTPUTF8", "CHUNKING"):
            self.assertIn(ext, kws, f"EHLO lacks {ext}: {text}")
        self.assertEqual(kws["SIZE"], f"SIZE {SIZE_LIMIT}")

    def test_helo_is_plain_250(self):
        c = self.connect()
        code, text = c.cmd("HELO client.test.example")
        self.assertEqual(code, 250, text)
        self.assertNotIn("\n", text, "HELO reply must be a single line")

    def test_vrfy_252(self):
        c = self.session()
        self.assertReply(c.cmd("VRFY u@localhost"), 252, None)
        r = c.cmd("VRFY postmaster")
        self.assertReply(r, 252)
        self.assertTrue(enhanced(r[1]).startswith("2."), r)

    def test_help_214(self):
        c = self.session()
        r = c.cmd("HELP")
        self.assertReply(r, 214)
        self.assertTrue(enhanced(r[1]) and enhanced(r[1]).startswith("2."), r)

    def test_every_reply_has_enhanced_code(self):
        """All 2xx/4xx/5xx replies but greeting and EHLO/HELO carry X.Y.Z.

        354 is an intermediate reply and RFC 2034 section 3 only requires
        codes on 2xx/4xx/5xx, so it is exempt here.
        """
        c = self.connect()
        replies = []
        # before EHLO
        for cmd in ("NOOP", "MAIL FROM:<s@test.example>", "RSET", "HELP"):
            replies.append((cmd, c.cmd(cmd)))
        c.ehlo()
        script = ["NOOP", "RSET", "VRFY postmaster", "EXPN staff", "HELP", "AUTH PLAIN",
                  "XYZZY", "RCPT TO:<u@localhost>", "DATA", "MAIL FROM:<s@test.example>",
                  "MAIL FROM:<s@test.example>", "RCPT TO:<u@localhost>",
                  "RCPT TO:<bad@>", "RCPT TO:<u@localhost> FOO=1"]
        for cmd in script:
            replies.append((cmd, c.cmd(cmd)))
        code, text = c.cmd("DATA")
        self.assertEqual(code, 354, text)
        c.send(make_body() + b".\r\n")
        replies.append(("<end of data>", c.reply()))
        replies.append(("QUIT", c.cmd("QUIT")))
        for cmd, (code, text) in replies:
            for line in text.split("\n"):
                self.assertIsNotNone(enhanced(line), f"{cmd!r} -> {line!r} lacks an enhanced code")
                self.assertEqual(enhanced(line)[0], str(code)[0],
                                 f"{cmd!r} -> {line!r}: enhanced class differs from code")


class LineLimits(SluiceCase):
    """RFC 5321 4.5.3.1.4: 512 octets including CRLF; +500 for MAIL/RCPT params."""

    def test_512_octets_ok_513_refused(self):
        c = self.session()
        ok = "NOOP " + "x" * (512 - 2 - 5)  # 510 + CRLF = 512
        self.assertEqual(len(ok) + 2, 512)
        self.assertReply(c.cmd(ok), 250, "2.0.0")
        too_long = ok + "x"
        self.assertReply(c.cmd(too_long), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")  # session still in sync

    def test_very_long_line_refused_and_session_resyncs(self):
        c = self.session()
        c.send("NOOP " + "y" * 20000 + "\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        c.send("NOOP " + "y" * 700 + "\r\nNOOP\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.reply(), 250, "2.0.0")

    def test_mail_rcpt_may_carry_500_more_for_params(self):
        c = self.session()
        domain = "d" * 63 + "." + "e" * 63 + "." + "f" * 50 + ".example"  # path 253 <= 256
        mail = (f"MAIL FROM:<{'l' * 64}@{domain}> ENVID={'E' * 100} RET=HDRS SIZE=1000 "
                "BODY=8BITMIME")
        mail += " " * (1010 - len(mail))  # trailing blanks are harmless
        self.assertEqual(len(mail) + 2, 1012)
        self.assertReply(c.cmd(mail), 250, "2.1.0")
        orcpt = "rfc822;" + "a" * 480 + "@localhost"
        rcpt = f"RCPT TO:<u@localhost> NOTIFY=SUCCESS,FAILURE ORCPT={orcpt}"
        self.assertGreater(len(rcpt) + 2, 512)
        self.assertReply(c.cmd(rcpt), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual(q["rcpt"][0], ("u@localhost", "SUCCESS,FAILURE", orcpt))
        self.assertEqual(q["envid"], "E" * 100)
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>" + " " * (1011 - 26)), 500, "5.5.2")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>" + " " * (1011 - 21)), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP " + " " * 600), 500, "5.5.2")


class CommandErrors(SluiceCase):
    conf = {"message_size_limit": str(SIZE_LIMIT), "smtpd_recipient_limit": "3"}

    def test_unknown_command(self):
        c = self.session()
        self.assertReply(c.cmd("XYZZY foo"), 500, "5.5.2")
        self.assertReply(c.cmd("MAILFROM:<s@test.example>"), 500, "5.5.2")

    def test_bad_sequence(self):
        c = self.connect()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 503, "5.5.1")
        c.ehlo()
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")

    def test_syntax_errors(self):
        c = self.connect()
        self.assertReply(c.cmd("EHLO"), 501, "5.5.4")
        self.assertReply(c.cmd("HELO"), 501, "5.5.4")
        c.ehlo()
        self.assertReply(c.cmd("MAIL <s@test.example>"), 501, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM"), 501, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT <u@localhost>"), 501, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA now"), 501, "5.5.4")

    def test_bad_mail_address(self):
        for addr in ("<a b@test.example>", "<s@>", "<s@test..example>", "<@test.example>",
                     "<s@test.example", "<s@-bad.example>"):
            c = self.session()
            self.assertReply(c.cmd(f"MAIL FROM:{addr}"), 501, "5.1.7", f"MAIL FROM:{addr}")
            c.close()

    def test_bad_rcpt_address(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        for addr in ("<u@>", "<u b@localhost>", "<u@localhost", "<u@local..host>"):
            self.assertReply(c.cmd(f"RCPT TO:{addr}"), 553, "5.1.3", f"RCPT TO:{addr}")
        c.close()

    def test_unknown_parameters(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> FOO=bar"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> XYZ"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost> FOO=1"), 555, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")

    def test_size_parameter_over_limit(self):
        c = self.session()
        self.assertReply(c.cmd(f"MAIL FROM:<s@test.example> SIZE={SIZE_LIMIT + 1}"), 552, "5.3.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> SIZE=99999999999999"), 552, "5.3.4")
        self.assertReply(c.cmd(f"MAIL FROM:<s@test.example> SIZE={SIZE_LIMIT}"), 250, "2.1.0")

    def test_real_size_over_limit(self):
        c = self.session()
        before = set(self.srv.queue_files())
        self.begin_data(c)
        line = b"z" * 98 + b"\r\n"
        c.send(make_body() + line * (SIZE_LIMIT // 100 + 50) + b".\r\n")
        self.assertReply(c.reply(), 552, "5.3.4")
        self.assertEqual(set(self.srv.queue_files()), before, "an oversized message was queued")
        # the session goes on
        _, text = c.send_mail(body=make_body())
        self.assertIsNotNone(queued_id(text))

    def test_too_many_recipients(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        for i in range(3):
            self.assertReply(c.cmd(f"RCPT TO:<u{i}@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<u3@localhost>"), 452, "4.5.3")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual([r[0] for r in q["rcpt"]], ["u0@localhost", "u1@localhost", "u2@localhost"])

    def test_error_limit_closes_with_421(self):
        c = self.session()
        for i in range(9):
            self.assertReply(c.cmd(f"BOGUS{i}"), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0", "9 errors must not close the session")
        self.assertReply(c.cmd("BOGUS9"), 500, "5.5.2")
        self.assertReply(reply_now_or_at_next(c), 421, "4.7.0")
        self.assertClosed(c)

    def test_nul_in_command(self):
        c = self.session()
        c.send(b"NOOP\x00x\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        c.send(b"MAIL FROM:<s@test.example>\x00 SIZE=10\r\n")
        self.assertReply(c.reply(), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_nul_in_message(self):
        c = self.session()
        before = set(self.srv.queue_files())
        self.begin_data(c)
        c.send(make_body(extra=b"bad \x00 byte\r\n") + b".\r\n")
        self.assertReply(c.reply(), 550, "5.6.0")
        self.assertEqual(set(self.srv.queue_files()), before)
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_text_line_over_998(self):
        c = self.session()
        before = set(self.srv.queue_files())
        self.begin_data(c)
        c.send(make_body(extra=b"L" * 999 + b"\r\n") + b".\r\n")
        self.assertReply(c.reply(), 552, "5.6.0")
        self.assertEqual(set(self.srv.queue_files()), before)
        # exactly 998 is fine
        code, text = c.send_mail(body=make_body(extra=b"L" * 998 + b"\r\n"))
        self.assertReply((code, text), 250, "2.0.0")
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertIn(b"\r\n" + b"L" * 998 + b"\r\n", q["content"])

    def test_dot_stuffing_is_undone(self):
        c = self.session()
        body = make_body(extra=b".leading dot\r\n..two dots\r\n.\tdot tab\r\n")
        code, text = c.send_mail(body=dot_stuff(body))
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q["content"].endswith(body), q["content"][-200:])


class StartTls(SluiceCase):

    def test_starttls_then_mail(self):
        c = self.session()
        c.starttls()
        self.assertEqual(c.sock.version(), "TLSv1.3")
        # RFC 3207: the client must EHLO again; the server forgot the old one
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 503, "5.5.1")
        text = c.ehlo()
        self.assertNotIn("STARTTLS", text, "STARTTLS offered inside TLS")
        code, text = c.send_mail()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        head, _ = split_message(q["content"])
        self.assertRegex(head.decode(), r"^Received: from client\.test\.example .*\r\n"
                         r"\t\(using TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)\)\r\n")
        self.assertEqual(q["proto"], "ESMTPS")

    def test_starttls_twice(self):
        c = self.session()
        c.starttls()
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_starttls_with_argument(self):
        c = self.session()
        self.assertReply(c.cmd("STARTTLS now"), 501, "5.5.4")

    def test_plaintext_injection_cve_2011_0411(self):
        """Commands sent with STARTTLS in one packet must be thrown away."""
        c = self.session()
        c.send("STARTTLS\r\nMAIL FROM:<a@b.example>\r\n")
        code, text = c.reply()
        self.assertReply((code, text), 220, "2.0.0")
        self.assertEqual(c.buf, b"", "a reply to the injected MAIL arrived in plaintext")
        c.wrap_tls()
        c.ehlo()
        # had the MAIL been executed (before or after the handshake), RCPT
        # would be accepted
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")


class Pipelining(SluiceCase):

    def test_pipelined_transaction(self):
        c = self.session()
        c.send("MAIL FROM:<s@test.example>\r\nRCPT TO:<u1@localhost>\r\n"
               "RCPT TO:<u2@localhost>\r\nDATA\r\n")
        self.assertReply(c.reply(), 250, "2.1.0")
        self.assertReply(c.reply(), 250, "2.1.5")
        self.assertReply(c.reply(), 250, "2.1.5")
        self.assertReply(c.reply(), 354)
        # end of data, then more commands, in one packet (RFC 2920 allows it)
        c.send(make_body() + b".\r\nRSET\r\nMAIL FROM:<s2@test.example>\r\nQUIT\r\n")
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        self.assertIsNotNone(queued_id(text))
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.reply(), 250, "2.1.0")
        self.assertReply(c.reply(), 221, "2.0.0")
        self.assertClosed(c)

    def test_two_messages_pipelined(self):
        c = self.session()
        body = make_body()
        c.send(b"MAIL FROM:<s@test.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n")
        for exp in (250, 250, 354):
            self.assertEqual(c.reply()[0], exp)
        c.send(body + b".\r\nMAIL FROM:<s@test.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n")
        q1 = queued_id(c.reply()[1])
        self.assertIsNotNone(q1)
        for exp in (250, 250, 354):
            self.assertEqual(c.reply()[0], exp)
        c.send(body + b".\r\n")
        q2 = queued_id(c.reply()[1])
        self.assertIsNotNone(q2)
        self.assertNotEqual(q1, q2)

    def test_commands_after_ehlo_in_same_packet(self):
        c = self.connect()
        c.send("EHLO client.test.example\r\nMAIL FROM:<s@test.example>\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        self.assertReply(c.reply(), 554, "5.5.0")
        self.assertClosed(c)

    def test_sync_error_text(self):
        c = self.connect()
        c.send("EHLO client.test.example\r\nNOOP\r\n")
        c.reply()
        code, text = c.reply()
        self.assertReply((code, text), 554, "5.5.0")
        self.assertIn("SMTP protocol synchronization", text)
        self.assertClosed(c)

    def test_content_before_354(self):
        c = self.session()
        before = set(self.srv.queue_files())
        c.send("MAIL FROM:<s@test.example>\r\nRCPT TO:<u@localhost>\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)
        c.send(b"DATA\r\n" + make_body() + b".\r\n")
        code, text = c.reply()
        if code == 354:
            code, text = c.reply()
        self.assertReply((code, text), 554, "5.5.0")
        self.assertIn("SMTP protocol synchronization", text)
        self.assertClosed(c)
        time.sleep(0.2)
        self.assertEqual(set(self.srv.queue_files()), before, "message queued despite sync error")


class Chunking(SluiceCase):
    conf = {"message_size_limit": str(SIZE_LIMIT)}

    def bdat_session(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        return c

    def test_bdat_chunks(self):
        c = self.bdat_session()
        body = make_body(lines=50)
        a, b = body[:333], body[333:]
        c.send(b"BDAT %d\r\n" % len(a) + a)
        self.assertReply(c.reply(), 250, "2.0.0")
        c.send(b"BDAT %d LAST\r\n" % len(b) + b)
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        qid = queued_id(text)
        self.assertIsNotNone(qid, text)
        q = parse_queue_file(self.srv.read_queue_file(qid))
        self.assertTrue(q["content"].endswith(body))
        # no dot handling in BDAT: a lone "." line is content
        c.send("MAIL FROM:<s@test.example>\r\nRCPT TO:<u@localhost>\r\n")
        c.reply(), c.reply()
        chunk = b"Subject: dots\r\n\r\n.\r\n..\r\nend\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q["content"].endswith(chunk), q["content"])

    def test_bdat_zero_last(self):
        c = self.bdat_session()
        body = make_body()
        c.send(b"BDAT %d\r\n" % len(body) + body)
        self.assertReply(c.reply(), 250, "2.0.0")
        c.send(b"BDAT 0 LAST\r\n")
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q["content"].endswith(body))

    def test_bdat_pipelined_with_envelope(self):
        c = self.session()
        body = make_body()
        c.send(b"MAIL FROM:<s@test.example>\r\nRCPT TO:<u@localhost>\r\nBDAT %d LAST\r\n"
               % len(body) + body + b"QUIT\r\n")
        self.assertReply(c.reply(), 250, "2.1.0")
        self.assertReply(c.reply(), 250, "2.1.5")
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        self.assertIsNotNone(queued_id(text))
        self.assertReply(c.reply(), 221, "2.0.0")

    def test_data_after_bdat_is_503(self):
        c = self.bdat_session()
        c.send(b"BDAT 5\r\nHello")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")

    def test_bdat_without_transaction_is_503(self):
        c = self.session()
        c.send(b"BDAT 5 LAST\r\nHello")
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        c.send(b"BDAT 5 LAST\r\nHello")
        self.assertReply(c.reply(), 503, "5.5.1")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")

    def test_bdat_over_size_limit(self):
        c = self.bdat_session()
        chunk = (b"x" * 98 + b"\r\n") * (SIZE_LIMIT // 100 + 10)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertReply(c.reply(), 552, "5.3.4")


class DsnAndUtf8(SluiceCase):

    def test_dsn_parameters_stored(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> RET=HDRS ENVID=QQ+2B123"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u1@localhost> NOTIFY=SUCCESS,FAILURE "
                               "ORCPT=rfc822;u1+2Bx@localhost"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<u2@localhost> NOTIFY=NEVER"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<u3@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual(q["envid"], "QQ+2B123")
        self.assertEqual(q["ret"], "HDRS")
        self.assertEqual(q["rcpt"][0], ("u1@localhost", "SUCCESS,FAILURE", "rfc822;u1+2Bx@localhost"))
        self.assertEqual(q["rcpt"][1], ("u2@localhost", "NEVER", "-"))
        self.assertEqual(q["rcpt"][2], ("u3@localhost", "-", "-"))

    def test_bad_dsn_parameters(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> RET=ALL"), 501, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> ENVID=a=b"), 501, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<s@test.example> RET=FULL ENVID=x BODY=8BITMIME"),
                         250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost> NOTIFY=SOMETIMES"), 501, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<u@localhost> NOTIFY=NEVER,SUCCESS"), 501, "5.5.4")
        self.assertReply(c.cmd("RCPT TO:<u@localhost> ORCPT=nosemicolon"), 501, "5.5.4")

    def test_smtputf8(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<jörg@test.example> SMTPUTF8 BODY=8BITMIME"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<müller@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send("Subject: grüße\r\n\r\nhällo\r\n.\r\n".encode())
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q.get("smtputf8"))
        self.assertEqual(q["sender"], "jörg@test.example")
        self.assertEqual(q["rcpt"][0][0], "müller@localhost")
        self.assertEqual(q["body"], "8BITMIME")
        self.assertEqual(q["proto"], "UTF8SMTP")

    def test_utf8_address_without_smtputf8(self):
        c = self.session()
        code, text = c.cmd("MAIL FROM:<jörg@test.example>")
        self.assertGreaterEqual(code, 500, text)
        self.assertEqual(enhanced(text), "5.6.7", text)
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        code, text = c.cmd("RCPT TO:<müller@localhost>")
        self.assertGreaterEqual(code, 500, text)
        self.assertEqual(enhanced(text), "5.6.7", text)


class EnvelopeAndContent(SluiceCase):
    """Addresses and content that are valid but unusual, and injection tries."""

    def test_null_sender(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual(q["sender"], "")

    def test_quoted_local_parts(self):
        """RFC 5321 4.1.2: a Quoted-string local part may hold '>' and spaces."""
        c = self.session()
        self.assertReply(c.cmd('MAIL FROM:<"odd>name x"@test.example> SIZE=100'), 250, "2.1.0")
        self.assertReply(c.cmd('RCPT TO:<"x>y z"@localhost> NOTIFY=NEVER'), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(make_body() + b".\r\n")
        code, text = c.reply()
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertEqual(q["sender"], '"odd>name x"@test.example')
        self.assertEqual(q["rcpt"][0], ('"x>y z"@localhost', "NEVER", "-"))

    def test_helo_cannot_inject_header_lines(self):
        """A bare CR inside the EHLO/HELO argument must not reach the
        stored message (the Received: header) as a bare CR: either the
        command is refused or the name is sanitised."""
        for verb in ("EHLO", "HELO"):
            with self.subTest(verb=verb):
                c = self.connect(source=source_ip())
                code, text = c.cmd(f"{verb} evil.example\rX-Injected: yes")
                if code != 250:
                    self.assertEqual((code, enhanced(text)), (501, "5.5.4"), text)
                    c.close()
                    continue
                code, text = c.send_mail(expect_queued=False)
                if code != 250:
                    c.close()
                    continue
                data = self.srv.read_queue_file(queued_id(text))
                try:
                    q = parse_queue_file(data)
                except ValueError as e:
                    self.fail(f"{verb} with a bare CR: stored message is malformed ({e}): "
                              f"{data[data.find(b'Received:'):][:120]!r}")
                self.assertNotIn(b"\nX-Injected", q["content"])
                self.assertNotIn(b"\rX-Injected", data)
                c.close()

    def test_large_message_data(self):
        c = self.session()
        line = b"0123456789" * 9 + b"abcdefg\r\n"  # 99 octets
        body = make_body() + line * 100000  # ~10 MB
        code, text = c.send_mail(body=body)
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q["content"].endswith(body))
        self.assertEqual(q["length"], len(q["content"]))

    def test_large_bdat_chunk(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        body = make_body() + (b"b" * 77 + b"\r\n") * 65000  # ~5 MB
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = c.reply()
        self.assertReply((code, text), 250, "2.0.0")
        q = parse_queue_file(self.srv.read_queue_file(queued_id(text)))
        self.assertTrue(q["content"].endswith(body))

    def test_client_gone_after_final_dot(self):
        """The client vanishes after ".": the message is still queued
        (at-least-once) and nothing breaks."""
        before = set(self.srv.queue_files())
        c = self.session(source=source_ip())
        c.send(b"MAIL FROM:<gone@test.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n")
        for _ in range(3):
            c.reply()
        c.send(make_body() + b".\r\n")
        c.close()
        deadline = time.time() + 10
        while len(set(self.srv.queue_files()) - before) < 1 and time.time() < deadline:
            time.sleep(0.05)
        new = set(self.srv.queue_files()) - before
        self.assertEqual(len(new), 1)
        q = parse_queue_file(self.srv.read_queue_file(new.pop()))
        self.assertEqual(q["sender"], "gone@test.example")
        self.assertEqual(os.listdir(os.path.join(self.srv.spool, "tmp")), [])


SMUGGLE_SEPARATORS = {
    "lf_dot_lf": b"\n.\n",
    "crlf_dot_lf": b"\r\n.\n",
    "lf_dot_crlf": b"\n.\r\n",
    "cr_dot_cr": b"\r.\r",
}
SMUGGLED = (b"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n"
            b"From: admin@bank.example\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def smuggle_payload(sep):
    return (b"From: <s@test.example>\r\nSubject: outer\r\n\r\nouter body" + sep + SMUGGLED
            + b".\r\n")


class SmugglingNormalize(SluiceCase):
    conf = {"smtpd_bare_newline": "normalize"}

    def check(self, name):
        c = self.session(source=source_ip())
        before = set(self.srv.queue_files())
        self.begin_data(c)
        c.send(smuggle_payload(SMUGGLE_SEPARATORS[name]) + b"QUIT\r\n")
        replies = c.replies_until_closed()
        self.assertEqual(len(replies), 2, f"{name}: expected one 250 then 221, got {replies}")
        self.assertIsNotNone(queued_id(replies[0]), replies)
        self.assertEqual(enhanced(replies[0]), "2.0.0")
        self.assertTrue(replies[1].startswith("221 2.0.0"), replies)
        new = set(self.srv.queue_files()) - before
        self.assertEqual(new, {queued_id(replies[0])}, f"{name}: one message expected")
        q = parse_queue_file(self.srv.read_queue_file(queued_id(replies[0])))
        self.assertEqual([r[0] for r in q["rcpt"]], ["u@localhost"])
        self.assertIn(b"MAIL FROM:<admin@bank.example>\r\n", q["content"])
        self.assertIn(b"RCPT TO:<victim@localhost>\r\n", q["content"])
        self.assertIn(b"\r\nsmuggled body\r\n", q["content"])

    def test_lf_dot_lf(self):
        self.check("lf_dot_lf")

    def test_crlf_dot_lf(self):
        self.check("crlf_dot_lf")

    def test_lf_dot_crlf(self):
        self.check("lf_dot_crlf")

    def test_cr_dot_cr(self):
        self.check("cr_dot_cr")

    def test_payload_split_across_packets(self):
        """The same, with the separator split over TCP segments."""
        c = self.session(source=source_ip())
        self.begin_data(c)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = smuggle_payload(b"\n.\n")
        for i in range(0, len(payload), 7):
            c.send(payload[i:i + 7])
            time.sleep(0.002)
        c.send(b"QUIT\r\n")
        replies = c.replies_until_closed()
        self.assertEqual(len(replies), 2, replies)
        self.assertIsNotNone(queued_id(replies[0]), replies)


class SmugglingReject(SluiceCase):
    conf = {"smtpd_bare_newline": "reject"}

    def check(self, name):
        c = self.session(source=source_ip())
        before = set(self.srv.queue_files())
        self.begin_data(c)
        c.send(smuggle_payload(SMUGGLE_SEPARATORS[name]) + b"QUIT\r\n")
        replies = c.replies_until_closed()
        self.assertEqual(len(replies), 2, f"{name}: expected 550 then 221, got {replies}")
        self.assertTrue(replies[0].startswith("550 5.5.2 "), replies)
        self.assertTrue(replies[1].startswith("221 2.0.0"), replies)
        self.assertEqual(set(self.srv.queue_files()), before, f"{name}: something was queued")

    def test_lf_dot_lf(self):
        self.check("lf_dot_lf")

    def test_crlf_dot_lf(self):
        self.check("crlf_dot_lf")

    def test_lf_dot_crlf(self):
        self.check("lf_dot_crlf")

    def test_cr_dot_cr(self):
        self.check("cr_dot_cr")

    def test_clean_message_still_accepted(self):
        c = self.session()
        code, text = c.send_mail()
        self.assertReply((code, text), 250, "2.0.0")


if __name__ == "__main__":
    unittest.main()
