"""postfix_instance.py - a private Debian Postfix for report tests.

A peers.PostfixPeer (own directories under a temporary directory,
127.0.0.1 at a free port, maillog_file) relaying everything to smtp-sink on
loopback except the test domains that go to a scripted peer (pfpeer.py).
Stopped with `postfix stop` (and the master by PID if that fails).
"""
import os
import shutil
import signal
import subprocess
import time

from harness import free_port, tmpdir, wait_port
from peers import PostfixPeer

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

# what the report tests need on top of PostfixPeer's defaults: quick
# retries (deferrals in the log), no TLS, no connection cache
MAIN_CF = {
    "myhostname": "mx.test.example",
    "myorigin": "test.example",
    "smtp_host_lookup": "native",
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "smtp_connection_cache_on_demand": "no",
    "smtpd_tls_security_level": "none",
    "smtp_tls_security_level": "none",
}


class PrivatePostfix:
    """peers.PostfixPeer relaying to smtp-sink, with a scripted peer for the
    test domains and one rejected domain."""

    def __init__(self):
        self.tmp = tmpdir("sluice-pf-")
        self.sink_port = free_port()
        self.sink = None
        self.pf = None

    def configure(self, peer_port):
        pdir = os.path.join(self.tmp, "postfix")
        etc = os.path.join(pdir, "etc")
        transport = "".join("%s smtp:[127.0.0.1]:%d\n" % (dom, peer_port) for dom in
                            ("bounce.example", "busy.example", "grey.example", "block.example"))
        self.pf = PostfixPeer(relay_to=self.sink_port, tmpdir=pdir, files={
            "transport": transport,
            "access": "reject.example REJECT no mail for this domain\n",
        }, extra=dict(MAIN_CF, transport_maps=f"texthash:{etc}/transport",
                      smtpd_recipient_restrictions=f"check_recipient_access texthash:{etc}/access, "
                                                   "permit_mynetworks, reject"))
        self.port = self.pf.port
        self.log = self.pf.logfile

    def start(self):
        self.sink = subprocess.Popen([SMTP_SINK, "-u", "postfix", "-c",
                                      "127.0.0.1:%d" % self.sink_port,
                                      "100"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.sink_port, proc=self.sink)
        self.pf.start(timeout=30)

    def send(self, sender, rcpt, count=1, sessions=1, size=None):
        args = [SMTP_SOURCE, "-m", str(count), "-s", str(sessions), "-f", sender,
                "-t", rcpt, "-M", "client.test.example"]
        if size:
            args += ["-l", str(size)]
        args.append("127.0.0.1:%d" % self.port)
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    def log_text(self):
        return self.pf.log() if self.pf else ""

    def wait_log(self, pred, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self.log_text()):
                return True
            time.sleep(0.5)
        return False

    def stop(self):
        if self.pf:
            self.pf.stop()
        if self.sink and self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(10)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
