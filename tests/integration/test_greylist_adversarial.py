"""test_greylist_adversarial.py - what greylisting must still stop, over
real SMTP against `sluice serve`: retries from outside the sender's pool,
SPF fail/softfail forgeries of the cluster's domain (netmask keys), a
forged PTR name whose forward lookup does not match, new recipients before
auto-allow, senders that never retry; and what it must let through:
confirmed PTR pools, auto-allowed (pool, sender domain), static allows,
trusted clients.
"""
import json
import os
import subprocess
import time
import unittest

from harness import SLUICE, Sluice, wait_until
from greylist_peers import DNSMASQ, Dns, have, smtp_attempt, stop_sluice_and_dns, tmpdir

DELAY = 2
WINDOW = 5
AA_INTERVAL = 2


@unittest.skipUnless(have(DNSMASQ), "dnsmasq not installed")
class AdversarialTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tmpdir("sluice-gl-adv-")
        cls.dns = Dns(cls.dir, [
            "--txt-record=cluster.test,v=spf1 ip4:127.40.0.0/16 ip4:127.41.0.0/16 -all",
            "--txt-record=soft.test,v=spf1 ip4:127.40.0.0/16 ~all",
            "--txt-record=cluster2.test,v=spf1 ip4:127.40.0.0/16 ip4:127.41.0.0/16 -all",
            # a sending organisation without SPF, two servers in two /24s
            "--host-record=mx1.ptrorg.test,127.50.0.1",
            "--host-record=mx2.ptrorg.test,127.51.0.1",
            # a spammer's PTR that claims to be Outlook, not forward-confirmed
            "--ptr-record=1.0.60.127.in-addr.arpa,i.am.spammer.outbound.protection.outlook.com",
            "--host-record=i.am.spammer.outbound.protection.outlook.com,127.61.0.1",
            # generic access-network names
            "--host-record=127-52-0-9.dsl.isp.test,127.52.0.9",
        ], zones=("test", "in-addr.arpa", "outlook.com"))
        os.makedirs(os.path.join(cls.dir, "serve"))
        with open(os.path.join(cls.dir, "allow_senders"), "w") as f:
            f.write("# static allow list\nfriends.test\n")
        cls.srv = Sluice({
            "greylist": "yes",
            "dns_resolver": cls.dns.resolver,
            "greylist_delay": f"{DELAY}s",
            "greylist_window": f"{WINDOW}s",
            "greylist_auto_allow_interval": f"{AA_INTERVAL}s",
            "greylist_auto_allow_count": "2",
            "greylist_allow_senders": os.path.join(cls.dir, "allow_senders"),
            "greylist_allow_clients": "127.70.0.0/16",
            "mynetworks": "127.0.0.1/32",
            "smtpd_tls_security_level": "none",
        }, tmpdir=os.path.join(cls.dir, "serve"))
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        rc, err = stop_sluice_and_dns(cls.srv, cls.dns, cls.dir)
        assert rc == 0 and "Sanitizer" not in err, err[-3000:]

    def send(self, src, sender, rcpt):
        return smtp_attempt(self.srv.host, self.srv.port, src, sender, rcpt)[0]

    def log_line(self, sender, rcpt):
        lines = [l for l in self.srv.log().splitlines()
                 if "sluice/greylist" in l and f"from=<{sender}>" in l and f"to=<{rcpt}>" in l]
        self.assertTrue(lines, f"no greylist log line for {sender} -> {rcpt}")
        return lines[-1]

    def test_retry_from_outside_the_pool_stays_deferred(self):
        # (its own domain: other tests auto-allow cluster.test)
        s, r = "ann@cluster2.test", "out1@test.example"
        self.assertEqual(self.send("127.40.1.1", s, r), 451)
        time.sleep(DELAY + 0.3)
        for src in ("127.99.1.1", "127.98.7.7"):   # not authorised by SPF
            self.assertEqual(self.send(src, s, r), 451)
        self.assertIn("pool=net:127.98.7.0/24", self.log_line(s, r))
        self.assertEqual(self.send("127.41.200.3", s, r), 250)   # inside: passes

    def test_spf_forgeries_get_a_netmask_key(self):
        s, r = "ceo@cluster.test", "forged@test.example"
        self.assertEqual(self.send("127.99.2.2", s, r), 451)
        line = self.log_line(s, r)
        self.assertIn("pool=net:127.99.2.0/24, pool_kind=net, spf=fail", line)
        s2 = "ceo@soft.test"
        self.assertEqual(self.send("127.99.3.3", s2, r), 451)
        self.assertIn("pool=net:127.99.3.0/24, pool_kind=net, spf=softfail", self.log_line(s2, r))

    def test_forged_ptr_falls_back_to_the_netmask(self):
        s, r = "x@nospf.test", "ptr@test.example"
        self.assertEqual(self.send("127.60.0.1", s, r), 451)
        self.assertIn("pool=net:127.60.0.0/24", self.log_line(s, r))
        s2 = "y@nospf.test"
        self.assertEqual(self.send("127.52.0.9", s2, r), 451)   # generic name
        self.assertIn("pool=net:127.52.0.0/24", self.log_line(s2, r))

    def test_confirmed_ptr_pool_passes_from_another_server(self):
        s, r = "billing@ptrorg.test", "ptrpool@test.example"
        self.assertEqual(self.send("127.50.0.1", s, r), 451)
        self.assertIn("pool=ptr:ptrorg.test, pool_kind=ptr", self.log_line(s, r))
        time.sleep(DELAY + 0.3)
        self.assertEqual(self.send("127.51.0.1", s, r), 250)

    def test_new_recipient_greylisted_until_auto_allowed(self):
        s = "news@cluster.test"
        self.assertEqual(self.send("127.40.5.5", s, "aa1@test.example"), 451)
        time.sleep(DELAY + 0.3)
        self.assertEqual(self.send("127.41.5.5", s, "aa1@test.example"), 250)   # pass 1
        self.assertEqual(self.send("127.40.6.6", "other@cluster.test", "aa2@test.example"),
                         451)   # same domain, new triplet: not yet allowed
        time.sleep(AA_INTERVAL + 0.3)
        self.assertEqual(self.send("127.40.7.7", s, "aa1@test.example"), 250)   # pass 2
        self.assertEqual(self.send("127.41.8.8", "third@cluster.test", "aa3@test.example"), 250)
        self.assertIn("reason=auto-allowed", self.log_line("third@cluster.test", "aa3@test.example"))
        # never a whole pool: another sender domain from the same networks
        self.assertEqual(self.send("127.40.9.9", "x@soft.test", "aa3@test.example"), 451)

    def test_never_retrying_sender_never_passes(self):
        s, r = "spam@cluster.test", "never@test.example"
        self.assertEqual(self.send("127.99.9.9", s, r), 451)
        self.assertEqual(self.send("127.99.9.9", s, "never2@test.example"), 451)
        time.sleep(WINDOW + 1)
        # a retry after the window starts over: still deferred
        self.assertEqual(self.send("127.99.9.9", s, r), 451)
        self.assertIn("reason=new", self.log_line(s, r))
        # `greylist list` reads committed data: it may lag the server by
        # one writer window (up to 1 s; longer on a loaded machine), so
        # look again until the restarted triplet shows or 10 s pass
        want = {"never2@test.example": "never-retried", r: "pending"}
        wait_until(lambda: all(self.triplet_states(s).get(k) == v for k, v in want.items()),
                   timeout=10, interval=0.1, what="triplet states " + repr(want),
                   detail=lambda: repr(self.triplet_states(s)))
        states = self.triplet_states(s)
        self.assertEqual(states.get("never2@test.example"), "never-retried")
        self.assertEqual(states.get(r), "pending")

    def triplet_states(self, sender):
        p = subprocess.run([SLUICE, "greylist", "-c", self.srv.conf_path, "list", "--json"],
                           capture_output=True, text=True, timeout=60)
        return {x["recipient"]: x["state"] for x in json.loads(p.stdout)
                if x.get("type") == "triplet" and x.get("sender") == sender}

    def test_static_allows_and_trusted_clients(self):
        self.assertEqual(self.send("127.99.4.4", "a@friends.test", "st@test.example"), 250)
        self.assertIn("reason=allow-sender", self.log_line("a@friends.test", "st@test.example"))
        self.assertEqual(self.send("127.70.1.1", "b@whoever.test", "st@test.example"), 250)
        self.assertIn("reason=allow-client", self.log_line("b@whoever.test", "st@test.example"))
        self.assertEqual(self.send("127.0.0.1", "c@whoever.test", "st@test.example"), 250)
        self.assertIn("reason=mynetworks", self.log_line("c@whoever.test", "st@test.example"))

    def test_client_that_leaves_during_the_decision(self):
        import socket
        s = socket.create_connection((self.srv.host, self.srv.port), source_address=("127.40.33.1", 0))
        s.recv(1000)
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<gone@cluster.test>\r\nRCPT TO:<gone@test.example>\r\n")
        s.close()
        time.sleep(0.5)
        # the server is fine and answers the next client
        self.assertEqual(self.send("127.40.33.2", "next@cluster.test", "gone@test.example"), 451)

    def test_many_greylisted_recipients_in_one_session(self):
        import socket
        s = socket.create_connection((self.srv.host, self.srv.port),
                                     source_address=("127.40.44.1", 0))
        f = s.makefile("rb")

        def cmd(line):
            s.sendall(line.encode() + b"\r\n")
            while True:
                l = f.readline()
                if l[3:4] != b"-":
                    return int(l[:3])
        f.readline()
        cmd("EHLO many.test")
        cmd("MAIL FROM:<list@cluster2.test>")
        codes = [cmd(f"RCPT TO:<m{i}@test.example>") for i in range(30)]
        self.assertEqual(codes, [451] * 30)   # greylisted, never "too many errors"
        self.assertEqual(cmd("QUIT"), 221)
        f.close()
        s.close()

    def test_cli(self):
        conf = self.srv.conf_path
        p = subprocess.run([SLUICE, "greylist", "-c", conf, "allow", "spf:cluster.test", "vip.test"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([SLUICE, "greylist", "-c", conf, "list"], capture_output=True,
                           text=True, timeout=60)
        self.assertIn("auto-allow allowed", p.stdout)
        p = subprocess.run([SLUICE, "greylist", "-c", conf, "forget", "net:127.99.2.0/24"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([SLUICE, "greylist", "-c", conf, "expire", "--json"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("expired", json.loads(p.stdout))
        p = subprocess.run([SLUICE, "greylist", "-c", conf, "bogus"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
