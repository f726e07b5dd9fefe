"""test_greylist_cluster.py - the sender-cluster problem over real SMTP.

A sender domain's SPF authorises six networks (127.40.0.0/16 ...
127.45.0.0/16 on the loopback); a client retries each of 200 messages from
a random address in those networks, binding its source address, until it
is accepted. With pool-keyed triplets every message must pass on its first
retry after the delay. The same request trace is then sent to postgrey
(Debian, default options, delay shortened the same way) through the policy
protocol, and both pass rates are printed side by side.
"""
import json
import os
import random
import subprocess
import time
import unittest

from harness import SLUICE, Sluice, wait_until
from greylist_peers import (DNSMASQ, POSTGREY, Dns, PolicyClient, Postgrey, have, smtp_attempt,
                            stop_sluice_and_dns, tmpdir)

DELAY = 2
NETS = [f"127.{40 + i}" for i in range(6)]
MESSAGES = 200


def random_source(rng):
    return f"{rng.choice(NETS)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


@unittest.skipUnless(have(DNSMASQ), "dnsmasq not installed")
class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tmpdir("sluice-gl-cluster-")
        spf = "v=spf1 " + " ".join(f"ip4:{n}.0.0/16" for n in NETS) + " -all"
        cls.dns = Dns(cls.dir, [f"--txt-record=cluster.test,{spf}"])
        os.makedirs(os.path.join(cls.dir, "serve"))
        cls.srv = Sluice({
            "greylist": "yes",
            "dns_resolver": cls.dns.resolver,
            "greylist_delay": f"{DELAY}s",
            "mynetworks": "127.0.0.1/32",
            "smtpd_tls_security_level": "none",
            "smtpd_client_connection_limit": "1000",
        }, tmpdir=os.path.join(cls.dir, "serve"))
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        rc, err = stop_sluice_and_dns(cls.srv, cls.dns, cls.dir)
        assert rc == 0 and "Sanitizer" not in err, err[-3000:]

    def test_cluster_passes_on_first_retry(self):
        rng = random.Random(4)
        trace = []   # (first source, retry source, sender, recipient)
        for i in range(MESSAGES):
            trace.append((random_source(rng), random_source(rng), f"news{i}@cluster.test",
                          f"user{i % 25}@test.example"))
        # first attempts: all greylisted
        for first, _, sender, rcpt in trace:
            code, text = smtp_attempt(self.srv.host, self.srv.port, first, sender, rcpt)
            self.assertEqual(code, 451, text)
            self.assertIn("Greylisted, retry in", text)
        time.sleep(DELAY + 0.5)
        first_retry = 0
        for _, retry, sender, rcpt in trace:
            code, text = smtp_attempt(self.srv.host, self.srv.port, retry, sender, rcpt)
            attempts = 1
            while code != 250 and attempts < 5:
                time.sleep(DELAY)
                code, text = smtp_attempt(self.srv.host, self.srv.port,
                                          random_source(rng), sender, rcpt)
                attempts += 1
            self.assertEqual(code, 250, text)
            first_retry += attempts == 1
        sluice_rate = 100.0 * first_retry / MESSAGES
        # the passed messages carry X-Greylist after our Received:
        qf = self.srv.queue_files()
        self.assertEqual(len(qf), MESSAGES)
        data = self.srv.read_queue_file(qf[0]).decode(errors="replace")
        self.assertRegex(data, r"Received: [^\n]*\n(\t[^\n]*\n)*X-Greylist: delayed \d+ seconds by sluice")
        self.assertIn("pool=spf:cluster.test, pool_kind=spf, spf=pass", self.srv.log())
        # stats: every passed triplet was seen from two client addresses
        # (the CLI reads committed data, one writer window behind the server)
        def all_passed():
            st = self.stats()
            return st if st["passed"] == MESSAGES else None
        st = wait_until(all_passed, timeout=10, interval=0.1,
                        what=f"stats with {MESSAGES} passed", detail=lambda: repr(self.stats()))
        self.assertEqual(st["passed"], MESSAGES)
        self.assertEqual(st["pending"], 0)
        self.assertGreater(st["client_ips_per_passed_triplet_mean"], 1.9)
        postgrey_rate = self.postgrey_rate(trace) if have(POSTGREY) else None
        print(f"\ncluster of 6 networks, {MESSAGES} messages, delay {DELAY}s: passed on "
              f"first retry: sluice {sluice_rate:.1f}%, postgrey "
              f"{'n/a' if postgrey_rate is None else f'{postgrey_rate:.1f}%'}", flush=True)
        self.assertEqual(sluice_rate, 100.0)

    def stats(self):
        p = subprocess.run([SLUICE, "greylist", "-c", self.srv.conf_path, "stats", "--json"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def postgrey_rate(self, trace):
        """The same trace through postgrey (default options, --delay shortened)."""
        pg = Postgrey(self.dir, DELAY)
        try:
            c = PolicyClient(pg.port, timeout=30)
            for first, _, sender, rcpt in trace:
                a = c.ask(first, sender, rcpt)
                self.assertIn("DEFER_IF_PERMIT", a)
            time.sleep(DELAY + 1.5)
            passed = 0
            for _, retry, sender, rcpt in trace:
                a = c.ask(retry, sender, rcpt)
                passed += "DEFER" not in a
            c.close()
            return 100.0 * passed / len(trace)
        finally:
            pg.stop()


if __name__ == "__main__":
    unittest.main()
