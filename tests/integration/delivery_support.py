"""delivery_support.py - shared pieces of the delivery tests (not a test
module): a unittest base class that starts private sluice instances with
delivery on and compressed timings, message submission, Maildir and queue
inspection, and wrappers for the real peers (smtp-sink, Postfix as a
receiving MTA, Dovecot LMTP/IMAP).

Every process started here is stopped by PID in the test's cleanups.
Each test's maillog (and peer logs) are copied to
$SLUICE_TEST_LOGS (default /tmp/sluice-delivery-logs)/<test id>/ before the
temporary directory is removed, so a failure can be read afterwards; set
SLUICE_KEEP=1 to keep the whole temporary directory.
"""
import email
import email.utils
import email.policy
import glob
import json
import os
import re
import shutil
import smtplib
import subprocess
import time
import unittest

import harness
from harness import alive, children_of, kill_pid, read_text, run, stop_popen  # noqa: F401 (re-export)
from peers import PostfixPeer

SLUICE = harness.SLUICE
LOG_ROOT = os.environ.get("SLUICE_TEST_LOGS", "/tmp/sluice-delivery-logs")

# Delivery on, and every clock compressed so retries happen within seconds.
FAST = {
    "queue_delivery": "yes",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "throttle_pause_time": "1s",
    "queue_run_delay": "1s",
    "maximal_queue_lifetime": "300s",
    "throttled_queue_lifetime": "600s",
    "delay_warning_time": "0",
    "smtp_connect_timeout": "5s",
    "smtp_reply_timeout": "20s",
    "smtp_data_timeout": "20s",
    "smtp_tls_fallback_ttl": "1h",
}

QID_RE = re.compile(r"queued as ([0-9A-F]{16})")


def wait_until(pred, timeout=20.0, interval=0.1, what="condition", detail=None):
    """harness.wait_until with the slower defaults delivery needs."""
    return harness.wait_until(pred, timeout, interval, what, detail)


def make_message(sender, rcpts, subject="test", body="Hello.\r\n", msgid=None, extra=""):
    msgid = msgid or f"<{time.time_ns()}.{os.getpid()}@client.test.example>"
    hdr = (f"From: <{sender}>\r\nTo: {', '.join('<%s>' % r for r in rcpts)}\r\n"
           f"Subject: {subject}\r\nMessage-ID: {msgid}\r\n"
           f"Date: {email.utils.formatdate(localtime=False)}\r\n{extra}")
    return (hdr + "\r\n" + body).encode()


# ---------------------------------------------------------------------------
# Maildir

def maildir_files(base, address):
    local, _, domain = address.rpartition("@")
    if not local:  # a bare local part: sluice delivers it under "localhost"
        local, domain = domain, "localhost"
    d = os.path.join(base, domain.lower(), local.lower(), "new")
    return sorted(glob.glob(os.path.join(d, "*")))


def maildir_messages(base, address):
    out = []
    for p in maildir_files(base, address):
        with open(p, "rb") as f:
            out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
    return out


def dsn_queue_id(msg):
    """X-Sluice-Queue-ID of the per-message block of a DSN."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            return str(part.get_payload()[0].get("X-Sluice-Queue-ID", ""))
    return None


def dsn_parts(msg):
    """(human text, list of per-recipient status dicts, message/delivery-status part)."""
    human = ""
    status = None
    for part in msg.walk():
        ct = part.get_content_type()
        if ct == "text/plain" and not human:
            human = part.get_content()
        elif ct == "message/delivery-status":
            status = part
    rcpts = []
    if status is not None and not status.get_payload():
        raise AssertionError("empty message/delivery-status part")
    if status is not None:
        # the email package parses message/delivery-status into a list of
        # header blocks: the per-message block first, then one per recipient
        blocks = status.get_payload()
        for b in blocks[1:]:
            rcpts.append({k.lower(): str(v) for k, v in b.items()})
    return human, rcpts, status


# ---------------------------------------------------------------------------
# peers

class SmtpSink:
    """Debian's smtp-sink (Postfix test server) with a dump file."""

    def __init__(self, tmp, extra=()):
        self.dir = os.path.join(tmp, f"sink{time.time_ns()}")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)
        self.dump = os.path.join(self.dir, "dump")
        self.port = harness.free_port()
        self.extra = list(extra)
        self.proc = None

    def start(self):
        self.err = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-D", self.dump,
                                      *self.extra, f"127.0.0.1:{self.port}", "256"],
                                     stdout=self.err, stderr=self.err)
        harness.wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    @property
    def nexthop(self):
        return f"smtp:[127.0.0.1]:{self.port}"

    def stop(self):
        stop_popen(self.proc)
        if getattr(self, "err", None):
            self.err.close()

    def text(self):
        try:
            with open(self.dump, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def count(self):
        return len(re.findall(r"^X-Client-Addr: ", self.text(), re.M))

    def message_ids(self):
        return re.findall(r"^Message-ID: (<[^>]*>)", self.text(), re.M | re.I)


class PostfixReceiver(PostfixPeer):
    """A private Debian Postfix that receives mail for one domain into a
    Maildir (virtual_mailbox_domains), listening on one loopback port."""

    def __init__(self, tmp, domain="rcv.test.example", extra=None, recipient_access=None):
        os.chmod(tmp, 0o755)
        pdir = os.path.join(tmp, "postfix")
        self.domain = domain
        self.mail = os.path.join(pdir, "vmail")
        os.makedirs(self.mail)
        shutil.chown(self.mail, "nobody", "nogroup")
        etc = os.path.join(pdir, "etc")
        files = {"vmailbox": f"@{domain} {domain}/catchall/\n"}
        main = {
            "myhostname": "postfix.test.example",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "virtual_mailbox_domains": domain,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": f"texthash:{etc}/vmailbox",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_minimum_uid": "100",
        }
        if recipient_access:
            files["recipient_access"] = "".join(f"{k} {v}\n" for k, v in recipient_access.items())
            main["smtpd_recipient_restrictions"] = (f"check_recipient_access "
                                                    f"texthash:{etc}/recipient_access, "
                                                    "permit_mynetworks, reject")
        main.update(extra or {})
        super().__init__(tmpdir=pdir, extra=main, files=files)

    def mailbox(self):
        d = os.path.join(self.mail, self.domain, "catchall", "new")
        out = []
        for p in sorted(glob.glob(os.path.join(d, "*"))):
            with open(p, "rb") as f:
                out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
        return out


class Dovecot:
    """A private Dovecot (foreground master, own base_dir) with IMAP and LMTP
    on free loopback ports, an LMTP unix socket, passwd-file users and
    Maildirs under the temp dir."""

    def __init__(self, tmp, users=("alice@dove.test.example", "bob@dove.test.example"),
                 password="secret"):
        self.dir = os.path.join(tmp, "dovecot")
        os.makedirs(self.dir)
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o755)
        self.imap_port = harness.free_port()
        self.lmtp_port = harness.free_port()
        self.base = os.path.join(self.dir, "run")
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)
        shutil.chown(self.mail, "nobody", "nogroup")
        self.logfile = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.password = password
        self.users = users
        passwd = os.path.join(self.dir, "passwd")
        with open(passwd, "w") as f:
            for u in users:
                f.write(f"{u}:{{PLAIN}}{password}:65534:65534::{self.mail}/{u}\n")
        os.chmod(passwd, 0o644)
        self.lmtp_socket = os.path.join(self.base, "lmtp")
        with open(self.conf, "w") as f:
            f.write(f"""\
base_dir = {self.base}
state_dir = {self.dir}/state
log_path = {self.logfile}
info_log_path = {self.logfile}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 100
mail_location = maildir:{self.mail}/%u
postmaster_address = postmaster@dove.test.example
hostname = dove.test.example
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
        self.proc = None

    @staticmethod
    def available():
        missing = [p for p in ("/usr/sbin/dovecot", "/usr/lib/dovecot/lmtp",
                               "/usr/lib/dovecot/imap") if not os.path.exists(p)]
        if missing:
            return "not installed: " + ", ".join(missing)
        if os.geteuid() != 0:
            return "needs root (mail uid switching)"
        return None

    def start(self, timeout=20):
        self.err = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", self.conf],
                                     stdout=self.err, stderr=self.err)
        harness.wait_port("127.0.0.1", self.lmtp_port, timeout=timeout, proc=self.proc)
        harness.wait_port("127.0.0.1", self.imap_port, timeout=timeout, proc=self.proc)
        return self

    def stop(self):
        if self.proc is None:
            return
        kids = children_of(self.proc.pid)
        stop_popen(self.proc)
        for pid in kids:
            if alive(pid):
                kill_pid(pid)
        self.err.close()

    def log(self):
        return "".join(read_text(p) for p in (self.logfile, os.path.join(self.dir, "stderr")))


# ---------------------------------------------------------------------------
# the base class

class DeliveryCase(unittest.TestCase):
    """Starts private sluice instances (delivery on, fast clocks) and peers;
    everything is stopped by PID in the cleanups."""

    maxDiff = None

    def setUp(self):
        self.tmp = harness.tmpdir("sluice-dlv-")
        self.servers = []
        self.addCleanup(self._save_and_remove)

    # -- cleanup ---------------------------------------------------------
    def _save_and_remove(self):
        dest = os.path.join(LOG_ROOT, self.id())
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest, exist_ok=True)
        for pat in ("*.json", "*/maillog", "*/stderr", "*/postfix.log", "*/dovecot.log",
                    "*/*/stderr"):
            for p in glob.glob(os.path.join(self.tmp, pat)):
                rel = os.path.relpath(p, self.tmp).replace("/", "_")
                try:
                    shutil.copy(p, os.path.join(dest, rel))
                except OSError:
                    pass
        if os.environ.get("SLUICE_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _stop_sluice(self, srv):
        if srv.proc is None:
            return
        died = srv.proc.poll()
        rc = srv.stop() if died is None else died
        report = self.sanitizer(srv)
        if report:
            raise AssertionError(f"sanitizer report from sluice:\n{report[-4000:]}")
        if died not in (None, 0) and not getattr(srv, "killed", False):
            raise AssertionError(f"sluice died during the test (exit {died}); log tail:\n"
                                 + self.tail(srv))
        if rc not in (0, None) and not getattr(srv, "killed", False):
            raise AssertionError(f"sluice exited {rc} on SIGTERM")

    sanitizer = staticmethod(harness.sanitizer_report)

    # -- sluice ------------------------------------------------------------
    def sluice(self, conf=None, transports=None, tls_policy=None, start=True, name=None):
        """A private sluice with delivery on. transports: {key: nexthop}."""
        d = os.path.join(self.tmp, name or f"sluice{len(self.servers)}")
        os.makedirs(d)
        c = dict(FAST)
        c["maildir_base"] = os.path.join(d, "mail")
        if transports:
            path = os.path.join(d, "transport")
            with open(path, "w") as f:
                for k, v in transports.items():
                    f.write(f"{k} {v}\n")
            c["transport_maps"] = path
        if tls_policy:
            path = os.path.join(d, "tls_policy")
            with open(path, "w") as f:
                for k, v in tls_policy.items():
                    f.write(f"{k} {v}\n")
            c["tls_policy_maps"] = path
        c.update(conf or {})
        srv = harness.Sluice(conf=c, tmpdir=d)
        srv.maildir = c["maildir_base"]
        srv.killed = False
        self.servers.append(srv)
        self.addCleanup(self._stop_sluice, srv)
        if start:
            srv.start()
        return srv

    def restart(self, srv, kill=False):
        if kill:
            srv.killed = True
            srv.kill9()
        else:
            rc = srv.stop()
            self.assertEqual(rc, 0, "sluice exited non-zero on SIGTERM")
        srv.start()
        return srv

    def send(self, srv, sender, rcpts, msg=None, mail_options=(), rcpt_options=(),
             subject="test", body="Hello.\r\n", msgid=None):
        """Submit one message over SMTP; returns its queue id."""
        if msg is None:
            msg = make_message(sender, rcpts, subject=subject, body=body, msgid=msgid)
        with smtplib.SMTP(srv.host, srv.port, timeout=30) as s:
            s.ehlo("client.test.example")
            code, resp = s.mail(sender, list(mail_options))
            self.assertEqual(code, 250, resp)
            for r in rcpts:
                code, resp = s.rcpt(r, list(rcpt_options))
                self.assertEqual(code, 250, f"RCPT {r}: {resp}")
            code, resp = s.data(msg)
            self.assertEqual(code, 250, resp)
        m = QID_RE.search(resp.decode())
        self.assertIsNotNone(m, resp)
        return m.group(1)

    def send_many(self, srv, items, sender="sender@test.example"):
        """Submit many messages over one SMTP session. items: iterable of
        (rcpts, msgid); returns the queue ids in order."""
        qids = []
        with smtplib.SMTP(srv.host, srv.port, timeout=30) as s:
            s.ehlo("client.test.example")
            for rcpts, msgid in items:
                msg = make_message(sender, rcpts, subject=f"bulk {msgid}", msgid=msgid,
                                   body="bulk message\r\n" + ("z" * 70 + "\r\n") * 10)
                code, resp = s.mail(sender)
                self.assertEqual(code, 250, resp)
                for r in rcpts:
                    code, resp = s.rcpt(r)
                    self.assertEqual(code, 250, resp)
                code, resp = s.data(msg)
                self.assertEqual(code, 250, resp)
                qids.append(QID_RE.search(resp.decode()).group(1))
        return qids

    def queue_cli(self, srv, *args, json_out=False, timeout=30):
        cmd = [SLUICE, "queue", "-c", srv.conf_path]
        if json_out:
            cmd.append("--json")
        return run(cmd + list(args), timeout=timeout)

    def queue_json(self, srv):
        rc, out, err = self.queue_cli(srv, "list", json_out=True)
        self.assertEqual(rc, 0, f"sluice queue --json list: rc {rc}: {err}")
        return json.loads(out)

    def alive(self, srv):
        """Raise at once (with the sanitizer report) if sluice has died."""
        if srv.proc is not None and srv.proc.poll() is not None and not srv.killed \
                and not getattr(srv, "stopping", False):
            raise AssertionError(f"sluice exited with {srv.proc.returncode} during the test\n"
                                 f"{self.sanitizer(srv)[:3000]}\nlog tail:\n{self.tail(srv, 15)}")
        return False

    def tail(self, srv, n=40):
        return "\n".join(srv.log().splitlines()[-n:])

    def wait_log(self, srv, pattern, timeout=20.0, count=1):
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: self.alive(srv) or
                          (len(rx.findall(srv.log())) >= count and rx.search(srv.log())),
                          timeout, what=f"log line /{pattern}/ x{count}",
                          detail=lambda: "log tail:\n" + self.tail(srv))

    def wait_queue_empty(self, srv, timeout=30.0):
        wait_until(lambda: self.alive(srv) or not srv.queue_files(), timeout,
                   what="an empty queue",
                   detail=lambda: f"queue: {srv.queue_files()}\nlog tail:\n" + self.tail(srv))

    def wait_maildir(self, srv, address, count=1, timeout=20.0):
        wait_until(lambda: self.alive(srv) or len(maildir_files(srv.maildir, address)) >= count,
                   timeout,
                   what=f"{count} message(s) in the Maildir of {address}",
                   detail=lambda: "log tail:\n" + self.tail(srv))
        return maildir_messages(srv.maildir, address)

    def start_fake(self, **kw):
        from fakesmtp import FakeSMTP
        f = FakeSMTP(**kw).start()
        self.addCleanup(f.stop)
        return f

    def start_sink(self, extra=()):
        s = SmtpSink(self.tmp, extra).start()
        self.addCleanup(s.stop)
        return s

    def log_lines(self, srv, pattern):
        return re.findall(pattern, srv.log(), re.M)
