"""test_greylist_redis.py - several MX hosts share one greylist state in
Redis: a first attempt at one `sluice serve`, the retry at another, passes.
When Redis stops, mail is accepted (greylist_failure = open) with a
warning; when it comes back, greylisting resumes by itself. With
greylist_failure = closed the same outage defers. A dead DNS resolver is
handled the same way.
"""
import os
import shutil
import time
import unittest

from harness import Sluice
from greylist_peers import DNSMASQ, REDIS, Dns, Redis, free_udp_tcp_port, have, smtp_attempt, tmpdir

DELAY = 2


@unittest.skipUnless(have(DNSMASQ) and have(REDIS), "dnsmasq or redis-server not installed")
class RedisTest(unittest.TestCase):
    def setUp(self):
        self.dir = tmpdir("sluice-gl-redis-")
        self.dns = Dns(self.dir, [
            "--txt-record=cluster.test,v=spf1 ip4:127.40.0.0/16 ip4:127.41.0.0/16 -all"])
        self.redis = Redis(self.dir).start()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            rc = s.stop()
            self.assertEqual(rc, 0, s.stderr_text()[-3000:])
            self.assertNotIn("Sanitizer", s.stderr_text())
        self.redis.stop()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, name, failure="open"):
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        s = Sluice({
            "greylist": "yes",
            "dns_resolver": self.dns.resolver,
            "greylist_delay": f"{DELAY}s",
            "greylist_store": f"redis://127.0.0.1:{self.redis.port}/3",
            "greylist_failure": failure,
            "greylist_timeout": "2s",
            "mynetworks": "127.0.0.1/32",
            "smtpd_tls_security_level": "none",
        }, tmpdir=d)
        self.servers.append(s.start())
        return s

    @staticmethod
    def send(srv, src, sender, rcpt):
        return smtp_attempt(srv.host, srv.port, src, sender, rcpt)

    def test_shared_state_and_fail_open(self):
        a, b = self.serve("mx1"), self.serve("mx2")
        code, _ = self.send(a, "127.40.1.1", "ann@cluster.test", "bob@test.example")
        self.assertEqual(code, 451)
        time.sleep(DELAY + 0.3)
        code, text = self.send(b, "127.41.2.2", "ann@cluster.test", "bob@test.example")
        self.assertEqual(code, 250, text)
        # Redis goes away: accepted, with a warning
        self.redis.stop()
        time.sleep(0.3)
        code, text = self.send(a, "127.40.3.3", "new@cluster.test", "bob@test.example")
        self.assertEqual(code, 250, text)
        self.assertIn("warning:", a.log())
        self.assertIn("unavailable (fail open)", a.log())
        # Redis comes back on the same port: greylisting resumes by itself
        self.redis.start()
        deadline = time.time() + 10
        code = 250
        n = 0
        while time.time() < deadline and code != 451:
            time.sleep(0.5)
            n += 1
            code, _ = self.send(a, "127.40.4.4", f"back{n}@cluster.test", "bob@test.example")
        self.assertEqual(code, 451)
        self.assertIn("is back", a.log())

    def test_fail_closed_defers(self):
        c = self.serve("mx3", failure="closed")
        self.redis.stop()
        time.sleep(0.3)
        code, text = self.send(c, "127.40.5.5", "ann@cluster.test", "bob@test.example")
        self.assertEqual(code, 451, text)
        self.assertIn("temporarily unavailable", text)


class DnsDownTest(unittest.TestCase):
    """No DNS at all (a resolver address where nothing answers)."""

    def run_with(self, failure):
        d = tmpdir("sluice-gl-nodns-")
        try:
            srv = Sluice({
                "greylist": "yes",
                "dns_resolver": f"127.0.0.1@{free_udp_tcp_port()}",
                "greylist_failure": failure,
                "greylist_timeout": "2s",
                "mynetworks": "127.0.0.1/32",
                "smtpd_tls_security_level": "none",
            }, tmpdir=d).start()
            code, text = smtp_attempt(srv.host, srv.port, "127.40.1.1", "a@cluster.test",
                                      "b@test.example")
            log = srv.log()
            self.assertEqual(srv.stop(), 0)
            return code, text, log
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_fail_open_and_closed(self):
        code, text, log = self.run_with("open")
        self.assertEqual(code, 250, text)
        self.assertIn("warning:", log)
        self.assertIn("problem=DNS unavailable", log)
        code, text, log = self.run_with("closed")
        self.assertEqual(code, 451, text)


if __name__ == "__main__":
    unittest.main()
