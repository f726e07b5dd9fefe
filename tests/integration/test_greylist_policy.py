"""test_greylist_policy.py - `sluice policy`, the Postfix policy delegation
service: the answers, persistent connections, protocol abuse (over-long
attributes, a missing request=, garbage, 10,000 requests on one
connection, a client that stops reading), a unix socket, and a real
private Postfix that defers a message and accepts its retry.
"""
import os
import shutil
import socket
import time
import unittest

from greylist_peers import (DNSMASQ, POSTFIX, Dns, PolicyClient, Postfix, SluicePolicy, have,
                            smtp_attempt, tmpdir)

DELAY = 2


@unittest.skipUnless(have(DNSMASQ), "dnsmasq not installed")
class PolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tmpdir("sluice-gl-policy-")
        cls.dns = Dns(cls.dir, [
            "--txt-record=cluster.test,v=spf1 ip4:127.40.0.0/16 ip4:127.41.0.0/16 -all"])
        cls.pol = SluicePolicy(cls.dir, {"dns_resolver": cls.dns.resolver,
                                         "greylist_delay": f"{DELAY}s",
                                         "mynetworks": "127.0.0.1/32"})

    @classmethod
    def tearDownClass(cls):
        rc = cls.pol.stop()
        cls.dns.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert rc == 0, f"sluice policy exited {rc}"

    def client(self):
        return PolicyClient(self.pol.port)

    def test_defer_then_prepend_then_dunno(self):
        c = self.client()
        a = c.ask("127.40.1.1", "ann@cluster.test", "bob@test.example")
        self.assertEqual(a, f"action=DEFER_IF_PERMIT Greylisted, retry in {DELAY} seconds")
        time.sleep(DELAY + 0.3)
        a = c.ask("127.41.9.9", "ann@cluster.test", "bob@test.example")
        self.assertRegex(a, r"^action=PREPEND X-Greylist: delayed \d+ seconds by sluice at ")
        a = c.ask("127.41.9.10", "ann@cluster.test", "bob@test.example")
        self.assertEqual(a, "action=DUNNO")
        # not at RCPT, or authenticated, or trusted: DUNNO
        self.assertEqual(c.ask("127.99.0.1", "x@y.test", "z@test.example",
                               extra={"protocol_state": "DATA"}), "action=DUNNO")
        self.assertEqual(c.ask("127.99.0.1", "x@y.test", "z@test.example",
                               extra={"sasl_username": "x"}), "action=DUNNO")
        self.assertEqual(c.ask("127.0.0.1", "x@y.test", "z@test.example"), "action=DUNNO")
        c.close()
        self.assertIn("sluice/greylist[", self.pol.log())

    def test_over_long_attribute_missing_request_garbage(self):
        c = self.client()
        c.send("request=smtpd_access_policy\nclient_address=127.99.1.1\n"
               "ccert_subject=" + "x" * 5000 + "\nrecipient=a@test.example\n\n")
        self.assertEqual(c.answer(), "action=DUNNO")
        c.send("client_address=127.99.1.1\nrecipient=a@test.example\n\n")
        self.assertEqual(c.answer(), "action=DUNNO")
        c.send("request=something_else\nclient_address=127.99.1.1\n\n")
        self.assertEqual(c.answer(), "action=DUNNO")
        # the connection still works after all that
        self.assertIn("DEFER_IF_PERMIT", c.ask("127.99.1.2", "g@x.test", "a@test.example"))
        c.send("this is not a policy request\n\n")
        with self.assertRaises((ConnectionError, OSError)):
            c.answer()
        c.close()

    def test_ten_thousand_requests_on_one_connection(self):
        c = self.client()
        n = 10000
        req = ("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.99.5.5\n"
               "helo_name=h.test\nsender=bulk@x.test\nrecipient=r@test.example\n\n")
        t0 = time.time()
        sent = 0
        answers = 0
        while answers < n:   # keep up to 100 requests ahead of the answers
            while sent < n and sent - answers < 100:
                c.send(req)
                sent += 1
            a = c.answer()
            self.assertTrue(a.startswith("action=DEFER_IF_PERMIT"), a)
            answers += 1
        print(f"\n10,000 policy requests on one connection: {time.time() - t0:.1f}s", flush=True)
        c.close()

    def test_client_that_stops_reading(self):
        stuck = socket.create_connection(("127.0.0.1", self.pol.port))
        stuck.setblocking(False)
        req = ("request=smtpd_access_policy\nclient_address=127.99.6.6\nsender=s@x.test\n"
               "recipient=r@test.example\n\n").encode() * 200
        pushed = 0
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                pushed += stuck.send(req)
            except BlockingIOError:
                break   # the server stopped reading from us: good
        self.assertLess(pushed, 64 * 1024 * 1024)
        # everyone else is still served at once
        c = self.client()
        t0 = time.time()
        self.assertIn("action=", c.ask("127.99.7.7", "t@x.test", "r@test.example"))
        self.assertLess(time.time() - t0, 2)
        c.close()
        stuck.close()

    def test_unix_socket(self):
        path = os.path.join(self.dir, "policy.sock")
        d = os.path.join(self.dir, "unix")
        os.makedirs(d)
        pol = SluicePolicy(d, {"dns_resolver": self.dns.resolver, "greylist_delay": "2s",
                               "mynetworks": "127.0.0.1/32"},
                           listen=f"unix:{path}")
        try:
            for _ in range(100):
                if os.path.exists(path):
                    break
                time.sleep(0.05)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b"request=smtpd_access_policy\nclient_address=127.99.8.8\n"
                      b"sender=u@x.test\nrecipient=r@test.example\n\n")
            self.assertTrue(s.recv(1000).startswith(b"action=DEFER_IF_PERMIT"))
            s.close()
        finally:
            self.assertEqual(pol.stop(), 0)


@unittest.skipUnless(have(DNSMASQ) and have(POSTFIX), "dnsmasq or postfix not installed")
class PostfixTest(unittest.TestCase):
    def test_postfix_defers_then_accepts(self):
        d = tmpdir("sluice-gl-postfix-")
        dns = Dns(d, ["--txt-record=cluster.test,v=spf1 ip4:127.40.0.0/16 -all"])
        pol = SluicePolicy(d, {"dns_resolver": dns.resolver, "greylist_delay": f"{DELAY}s",
                               "mynetworks": "127.0.0.1/32"})
        pf = Postfix(d, pol.port)
        try:
            pf.start()
            code, text = smtp_attempt("127.0.0.1", pf.port, "127.40.2.2", "ann@cluster.test",
                                      "bob@test.example")
            self.assertEqual(code // 100, 4, text)
            self.assertIn("Greylisted", text)
            time.sleep(DELAY + 0.5)
            code, text = smtp_attempt("127.0.0.1", pf.port, "127.40.3.3", "ann@cluster.test",
                                      "bob@test.example")
            self.assertEqual(code, 250, text + "\n" + pf.log()[-3000:])
            self.assertIn("action=accept, reason=retry", pol.log())
        finally:
            pf.stop()
            pol.stop()
            dns.stop()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
