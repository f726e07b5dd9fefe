"""test_smtpd_config.py - the effect of each inbound configuration key.

Built-in defaults (myhostname from the host name, mydomains = localhost,
mynetworks = 127.0.0.0/8 ::1/128, message_size_limit = 50M,
smtpd_recipient_limit = 1000), smtp_listen on IPv6, tls_cert_file /
tls_key_file (the configured certificate is the one presented; unset ->
a self-signed one made under spool/tls), smtpd_error_limit,
smtpd_max_line_length and tls files set alone (a start-up error).
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from sluicetest import (Client, Sluice, SluiceCase, make_body, parse_queue_file,
                        queued_id, reply_now_or_at_next, source_ip, start_sluice, stop_sluice,
                        wait_for_log)


def presented_cert(host, port, source=None):
    c = Client(host, port, source=source)
    try:
        c.ehlo()
        c.starttls()
        return c.sock.getpeercert(binary_form=True)
    finally:
        c.close()


def minimal_conf(srv, keep=("smtp_listen", "spool_dir", "maillog_file", "queue_delivery"),
                 extra=None):
    """Rewrite srv's config file with only the given keys (others default)."""
    with open(srv.conf_path) as f:
        lines = [l for l in f if l.split(" = ")[0] in keep]
    with open(srv.conf_path, "w") as f:
        f.writelines(lines)
        for k, v in (extra or {}).items():
            f.write(f"{k} = {v}\n")


class Defaults(unittest.TestCase):

    def setUp(self):
        self.srv = Sluice()
        minimal_conf(self.srv)
        self.srv.start()

    def tearDown(self):
        rc, report = stop_sluice(self.srv)
        self.assertEqual(report, "")

    def test_defaults(self):
        c = Client(self.srv.host, self.srv.port)
        host = socket.gethostname()
        self.assertEqual(c.greeting[0], 220)
        self.assertTrue(c.greeting[1].startswith(f"220 {host} "), c.greeting)
        text = c.ehlo()
        self.assertTrue(text.startswith(f"250-{host}\n"), text)
        self.assertIn("250-SIZE 52428800", text)
        # mynetworks default: all of 127/8 may relay
        c2 = Client(self.srv.host, self.srv.port, source=source_ip())
        c2.ehlo()
        self.assertEqual(c2.cmd("MAIL FROM:<s@test.example>")[0], 250)
        self.assertEqual(c2.cmd("RCPT TO:<u@remote.example>")[0], 250)
        c2.close()
        # recipient limit default 1000
        self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
        c.send("".join(f"RCPT TO:<u{i}@localhost>\r\n" for i in range(1001)))
        codes = [c.reply() for _ in range(1001)]
        self.assertEqual([r[0] for r in codes[:1000]], [250] * 1000)
        self.assertEqual(codes[1000][0], 452, codes[1000])
        self.assertEqual(codes[1000][1].split(" ")[1], "4.5.3")
        c.close()
        # self-signed certificate made under spool/tls
        tls = os.path.join(self.srv.spool, "tls")
        self.assertTrue(os.path.isfile(os.path.join(tls, "cert.pem")), os.listdir(self.srv.spool))
        with open(os.path.join(tls, "cert.pem")) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        self.assertEqual(presented_cert(self.srv.host, self.srv.port), want)


class DefaultDomains(unittest.TestCase):

    def test_mydomains_default_localhost(self):
        srv = Sluice()
        try:
            minimal_conf(srv, extra={"mynetworks": "127.0.0.1/32"})
            srv.start()
            c = Client(srv.host, srv.port, source="127.0.0.2")
            c.ehlo()
            self.assertEqual(c.cmd("MAIL FROM:<s@remote.example>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u@localhost>")[0], 250)
            code, text = c.cmd("RCPT TO:<u@test.example>")
            self.assertEqual((code, text.split(" ")[1]), (554, "5.7.1"), text)
            c.close()
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "")


class ConfiguredCertificate(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-cert-")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", "/CN=configured.test.example", "-keyout", self.key,
                            "-out", self.cert], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"openssl req failed: {p.stderr}")
        self.srv = None

    def tearDown(self):
        if self.srv:
            rc, report = stop_sluice(self.srv)
            self.assertEqual(report, "")
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_configured_cert_is_presented(self):
        self.srv = start_sluice({"tls_cert_file": self.cert, "tls_key_file": self.key})
        with open(self.cert) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
        self.assertEqual(presented_cert(self.srv.host, self.srv.port), want)

    def test_cert_without_key_is_an_error(self):
        srv = Sluice({"tls_cert_file": self.cert})
        try:
            srv.start(wait=False)
            rc = srv.proc.wait(20)
            err = srv.stderr_text()
        finally:
            srv.cleanup()
        self.assertNotEqual(rc, 0)
        self.assertIn("tls_cert_file", err)
        self.assertRegex(err, re.escape(srv.conf_path) + r":\d+: ")


class Ipv6Listener(unittest.TestCase):

    def test_ipv6(self):
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
                port = s.getsockname()[1]
        except OSError as e:
            self.skipTest(f"no IPv6 loopback: {e}")
        srv = start_sluice(host="::1", port=port)
        try:
            c = Client("::1", port)
            c.ehlo()
            # ::1/128 is in the default mynetworks: relaying allowed
            self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u@remote.example>")[0], 250)
            # (the message itself goes to a local address: a remote one
            # would start MX lookups, see test_smtpd_lifecycle)
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<s@test.example>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<u@localhost>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(make_body() + b".\r\n")
            code, text = c.reply()
            self.assertEqual(code, 250, text)
            q = parse_queue_file(srv.read_queue_file(queued_id(text)))
            self.assertEqual(q["client"], "::1 unknown")
            self.assertIn(b"(unknown [::1])", q["content"])
            c.cmd("QUIT")
            c.close()
            wait_for_log(srv, r"connect from unknown\[::1\]$")
        finally:
            rc, report = stop_sluice(srv)
        self.assertEqual(report, "", report)
        self.assertEqual(rc, 0)


class ErrorLimit3(SluiceCase):
    conf = {"smtpd_error_limit": "3"}

    def test_third_error_closes(self):
        c = self.session(source=source_ip())
        self.assertReply(c.cmd("BAD1"), 500, "5.5.2")
        self.assertReply(c.cmd("BAD2"), 500, "5.5.2")
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.assertReply(c.cmd("BAD3"), 500, "5.5.2")
        self.assertReply(reply_now_or_at_next(c), 421, "4.7.0")
        self.assertClosed(c)


class MaxLineLength(SluiceCase):
    conf = {"smtpd_max_line_length": "100"}

    def test_limit(self):
        c = self.session(source=source_ip())
        code, text = c.send_mail(body=make_body(extra=b"x" * 100 + b"\r\n"), expect_queued=False)
        self.assertReply((code, text), 250, "2.0.0")
        code, text = c.send_mail(body=make_body(extra=b"x" * 101 + b"\r\n"), expect_queued=False)
        self.assertReply((code, text), 552, "5.6.0")
        # the limit applies to the line as stored (after dot-unstuffing)
        code, text = c.send_mail(body=make_body(extra=b"." + b"." * 100 + b"\r\n"),
                                 expect_queued=False)
        self.assertReply((code, text), 250, "2.0.0")


if __name__ == "__main__":
    unittest.main()
