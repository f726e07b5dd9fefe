"""peers.py - a private Postfix instance for tests and benchmarks.

Not a test module. `PostfixPeer` is the one private Postfix every suite and
benchmark uses (relay into sluice, receiver for sluice's deliveries,
policy client of `sluice policy`, log source for `sluice report`). It runs
Debian's Postfix with its own
config_directory, queue_directory and data_directory under a temporary
directory, listening on one loopback port, logging to a file (no syslog
needed). Two roles:

  relay    (relayhost set): mail injected into Postfix is delivered by
           its smtp client to [127.0.0.1]:PORT - a real MTA as a client;
  receiver (hold=True): every message accepted is put on hold, so Postfix
           only receives and queues (benchmarks).

Postfix daemons run as the `postfix` user, so the directory tree is made
traversable (0755). The instance is stopped with `postfix stop`, then the
master's PID (queue/pid/master.pid) and any leftover child PIDs recorded
at start are killed.
"""
import os
import shutil
import subprocess
import time

import harness

POSTFIX = "/usr/sbin/postfix"

MASTER_CF = """\
{listen} inet n - n - {smtpd_limit} smtpd
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
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available():
    return os.path.exists(POSTFIX) and os.geteuid() == 0 and _user_exists("postfix")


def _user_exists(name):
    try:
        import pwd
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class PostfixPeer:
    def __init__(self, relay_to=None, hold=False, port=None, extra=None, smtpd_limit="-",
                 tmpdir=None, files=None):
        """extra: main.cf settings that override the defaults below; files:
        {name: text} written into the config directory (tables)."""
        self.dir = tmpdir or harness.tmpdir("sluice-postfix-")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = port or harness.free_port()
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postfix.log")
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        for name, text in (files or {}).items():
            with open(os.path.join(self.etc, name), "w") as f:
                f.write(text)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "relay.test.example",
            "mydomain": "test.example",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": os.path.dirname(self.dir.rstrip("/")) or "/",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtp_dns_support_level": "disabled",
        }
        if relay_to:
            main["relayhost"] = f"[127.0.0.1]:{relay_to}"
            main["smtp_tls_security_level"] = "may"
        else:
            main["relayhost"] = ""
        if hold:
            # Receive and queue only: every message goes to the hold queue.
            main["smtpd_client_restrictions"] = "check_client_access static:HOLD"
        main.update(extra or {})
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen=f"127.0.0.1:{self.port}", smtpd_limit=smtpd_limit))
        self.master_pid = None

    def _postfix(self, *args, timeout=60):
        # Postfix prints errors on stderr only when it is a terminal; it
        # also logs them to maillog_file, which is what we show on failure.
        p = subprocess.run([POSTFIX, "-c", self.etc, *args], capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def cmd(self, *args, timeout=120):
        """Run a Postfix command (postsuper, postqueue, ...); raise on failure."""
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({p.returncode}): {p.stdout}{p.stderr}\n"
                               f"{self.log()[-2000:]}")
        return p.stdout

    def start(self, timeout=20):
        rc, out = self._postfix("check")
        if rc != 0:
            raise RuntimeError(f"postfix check failed ({rc}): {out}\n{self.log()[-2000:]}")
        rc, out = self._postfix("start")
        if rc != 0:
            raise RuntimeError(f"postfix start failed ({rc}): {out}\n{self.log()[-2000:]}")
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(pidfile) as f:
                    self.master_pid = int(f.read().strip())
                break
            except (FileNotFoundError, ValueError):
                time.sleep(0.05)
        harness.wait_port("127.0.0.1", self.port, timeout=timeout)
        return self

    def children(self):
        """PIDs whose parent is our master."""
        return harness.children_of(self.master_pid)

    def stop(self):
        if self.master_pid is None:
            return
        kids = self.children()
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and harness.alive(self.master_pid):
            time.sleep(0.05)
        for pid in [self.master_pid] + kids:
            if harness.alive(pid):
                harness.kill_pid(pid)
        self.master_pid = None

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return harness.read_text(self.logfile)

    def queue_count(self, *queues):
        n = 0
        for q in queues or ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n
