"""postfix_instance.py - a private Debian Postfix for report tests.

Its own config_directory and queue_directory under a temporary directory,
listening on 127.0.0.1 at a free port, logging to <tmp>/postfix.log
(maillog_file through postlogd), relaying everything to smtp-sink on
loopback except the test domains that go to a scripted peer (pfpeer.py).
Stopped with `postfix stop` (and the master by PID if that fails).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import free_port, wait_port

POSTFIX = "/usr/sbin/postfix"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test.example
mydomain = test.example
myorigin = test.example
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink}
transport_maps = texthash:{conf}/transport
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access texthash:{conf}/access, permit_mynetworks, reject
maillog_file = {log}
maillog_file_prefixes = {tmp}
smtp_dns_support_level = disabled
smtp_host_lookup = native
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connection_cache_on_demand = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
alias_maps =
alias_database =
biff = no
"""


class PrivatePostfix:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="sluice-pf-")
        os.chmod(self.tmp, 0o755)
        self.conf = os.path.join(self.tmp, "conf")
        self.queue = os.path.join(self.tmp, "queue")
        self.data = os.path.join(self.tmp, "data")
        self.log = os.path.join(self.tmp, "postfix.log")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        shutil.chown(self.data, "postfix", "postfix")
        self.port = free_port()
        self.sink_port = free_port()
        self.sink = None
        self.started = False

    def configure(self, peer_port):
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(conf=self.conf, queue=self.queue, data=self.data,
                                   sink=self.sink_port, log=self.log, tmp=self.tmp))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        with open(os.path.join(self.conf, "transport"), "w") as f:
            for dom in ("bounce.example", "busy.example", "grey.example", "block.example"):
                f.write("%s smtp:[127.0.0.1]:%d\n" % (dom, peer_port))
        with open(os.path.join(self.conf, "access"), "w") as f:
            f.write("reject.example REJECT no mail for this domain\n")

    def postfix(self, *args, check=True):
        return subprocess.run([POSTFIX, "-c", self.conf, *args], capture_output=True,
                              text=True, timeout=60, check=check)

    def start(self):
        self.sink = subprocess.Popen([SMTP_SINK, "-u", "postfix", "-c",
                                      "127.0.0.1:%d" % self.sink_port,
                                      "100"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.sink_port, proc=self.sink)
        self.postfix("start")
        self.started = True
        wait_port("127.0.0.1", self.port, timeout=30)

    def send(self, sender, rcpt, count=1, sessions=1, size=None):
        args = [SMTP_SOURCE, "-m", str(count), "-s", str(sessions), "-f", sender,
                "-t", rcpt, "-M", "client.test.example"]
        if size:
            args += ["-l", str(size)]
        args.append("127.0.0.1:%d" % self.port)
        return subprocess.run(args, capture_output=True, text=True, timeout=120)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pred, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self.log_text()):
                return True
            time.sleep(0.5)
        return False

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        if self.started:
            pid = self.master_pid()
            self.postfix("stop", check=False)
            deadline = time.time() + 20
            while pid and time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.started = False
        if self.sink and self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(10)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
