"""Delivery through MX records served by a real DNS server (Debian's
dnsmasq on loopback): MX rollup (two domains, one MX host, one
destination), preference order with fallback when the first MX is dead,
implicit MX (no MX record: the domain's own address), null MX (RFC 7505:
immediate bounce with 5.1.10)."""
import os
import shutil
import subprocess
import unittest

import harness
from delivery_support import DeliveryCase, dsn_parts, maildir_messages, stop_popen

SENDER = "sender@test.example"
DNSMASQ = "/usr/sbin/dnsmasq"


class MXDelivery(DeliveryCase):
    def setUp(self):
        super().setUp()
        if not os.access(DNSMASQ, os.X_OK):
            self.skipTest("dnsmasq is not installed (apt-get install dnsmasq-base)")
        self.dns_port = harness.free_port()
        args = [DNSMASQ, "--no-daemon", f"--port={self.dns_port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--local=/mx.test/",
                # two domains hosted at one provider: one MX host
                "--mx-host=one.mx.test,mx.shared.mx.test,10",
                "--mx-host=two.mx.test,mx.shared.mx.test,10",
                "--address=/mx.shared.mx.test/127.0.0.1",
                # first MX dead (nothing listens on 127.0.0.2), second alive
                "--mx-host=backup.mx.test,dead.mx.test,10",
                "--mx-host=backup.mx.test,live.mx.test,20",
                "--address=/dead.mx.test/127.0.0.2",
                "--address=/live.mx.test/127.0.0.1",
                # no MX record at all: implicit MX
                "--host-record=implicit.mx.test,127.0.0.1",
                # null MX
                "--mx-host=nullmx.mx.test,.,0"]
        self.dns_log = open(os.path.join(self.tmp, "dnsmasq.log"), "wb")
        self.dns = subprocess.Popen(args, stdout=self.dns_log, stderr=self.dns_log)
        self.addCleanup(self._stop_dns)
        self._wait_dns()
        self.sink = self.start_sink()

    def _wait_dns(self):
        # dnsmasq answers on UDP; poll with a real query until it does
        import socket
        import struct
        import time
        q = struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x03one\x02mx\x04test\x00" + \
            struct.pack(">HH", 15, 1)
        for _ in range(100):
            if self.dns.poll() is not None:
                self.fail("dnsmasq exited: " + open(self.dns_log.name).read())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                try:
                    s.sendto(q, ("127.0.0.1", self.dns_port))
                    if s.recvfrom(512)[0]:
                        return
                except OSError:
                    time.sleep(0.05)
        self.fail("dnsmasq did not answer")

    def _stop_dns(self):
        stop_popen(self.dns)
        self.dns_log.close()

    def _sluice(self):
        p = self.sink.port
        # "smtp:DOMAIN:PORT" (no brackets): look up DOMAIN's MX, use PORT
        transports = {d: f"smtp:{d}:{p}" for d in
                      ("one.mx.test", "two.mx.test", "backup.mx.test", "implicit.mx.test",
                       "nullmx.mx.test")}
        return self.sluice({"dns_resolver": f"127.0.0.1@{self.dns_port}",
                            "smtp_connect_timeout": "2s"}, transports=transports)

    def test_mx_rollup_two_domains_one_destination(self):
        srv = self._sluice()
        q1 = self.send(srv, SENDER, ["a@one.mx.test"])
        q2 = self.send(srv, SENDER, ["b@two.mx.test"])
        self.wait_queue_empty(srv)
        for qid in (q1, q2):
            self.wait_log(srv, rf"{qid}: to=<[ab]@(one|two)\.mx\.test>, "
                               rf"relay=mx\.shared\.mx\.test\[127\.0\.0\.1\]:{self.sink.port}, "
                               rf".*status=sent")
        opened = self.log_lines(srv, r"^.*destination smtp:mx:mx\.shared\.mx\.test:\d+ opened.*$")
        self.assertEqual(len(opened), 1, "both domains must share one destination: "
                         f"{opened}")

    def test_preference_order_and_fallback(self):
        srv = self._sluice()
        qid = self.send(srv, SENDER, ["c@backup.mx.test"])
        self.wait_queue_empty(srv)
        self.wait_log(srv, rf"{qid}: to=<c@backup\.mx\.test>, relay=live\.mx\.test\[127\.0\.0\.1\]"
                           rf":{self.sink.port}, .*status=sent")

    def test_implicit_mx(self):
        srv = self._sluice()
        qid = self.send(srv, SENDER, ["d@implicit.mx.test"])
        self.wait_queue_empty(srv)
        self.wait_log(srv, rf"{qid}: to=<d@implicit\.mx\.test>, "
                           rf"relay=implicit\.mx\.test\[127\.0\.0\.1\]:\d+, .*status=sent")

    def test_null_mx_bounces_at_once(self):
        srv = self._sluice()
        qid = self.send(srv, SENDER, ["e@nullmx.mx.test"])
        self.wait_log(srv, rf"{qid}: to=<e@nullmx\.mx\.test>, .*dsn=5\.1\.10, status=bounced")
        msgs = self.wait_maildir(srv, SENDER)
        self.assertEqual(len(msgs), 1)
        human, rcpts, status = dsn_parts(msgs[0])
        self.assertIsNotNone(status, "the bounce must carry message/delivery-status")
        self.assertEqual(rcpts[0].get("status"), "5.1.10")
        self.assertEqual(rcpts[0].get("action"), "failed")
        self.assertEqual(self.sink.count(), 0, "nothing may be sent to a null-MX domain")


if __name__ == "__main__":
    unittest.main()
