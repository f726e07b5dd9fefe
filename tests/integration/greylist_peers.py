"""greylist_peers.py - the peers greylisting tests need, each started
privately on free ports and stopped by PID: a local DNS server (dnsmasq),
Redis, postgrey, a `sluice policy` service, a private Postfix; plus a
Postfix policy-protocol client and a small SMTP client that binds its
source address (so one test host can be a whole sender cluster on the
loopback network 127.0.0.0/8).
"""
import os
import shutil
import signal
import socket
import subprocess
import time

from harness import SLUICE, free_port, read_text, stop_popen, tmpdir, wait_port  # noqa: F401 (tmpdir re-exported)
from peers import PostfixPeer

DNSMASQ = "/usr/sbin/dnsmasq"
REDIS = "/usr/bin/redis-server"
POSTGREY = "/usr/sbin/postgrey"
POSTFIX = "/usr/sbin/postfix"


def have(path):
    return os.path.exists(path)


def free_udp_tcp_port():
    """A port free for both UDP and TCP (DNS listens on both)."""
    for _ in range(50):
        p = free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free port")


class Proc:
    """A child process stopped by PID."""

    def __init__(self, argv, logpath, env=None):
        self.log = open(logpath, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        rc = stop_popen(self.proc, sig, timeout)
        self.log.close()
        return rc


def stop_sluice_and_dns(srv, dns, d):
    """Stop a greylisting sluice and its dnsmasq, remove their directory d;
    returns (sluice's exit status, its stderr)."""
    rc = srv.stop()
    err = srv.stderr_text()
    dns.stop()
    shutil.rmtree(d, ignore_errors=True)
    return rc, err


class Dns:
    """dnsmasq serving only what the test gives it. records: list of
    dnsmasq options such as --txt-record=..., --host-record=...,
    --ptr-record=..."""

    def __init__(self, tmpdir, records, zones=("test", "example", "in-addr.arpa")):
        self.port = free_udp_tcp_port()
        argv = [DNSMASQ, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll",
                "--conf-file=/dev/null", f"--pid-file={tmpdir}/dnsmasq.pid"]
        argv += [f"--local=/{z}/" for z in zones]
        argv += list(records)
        self.proc = Proc(argv, os.path.join(tmpdir, "dnsmasq.log"))
        wait_port("127.0.0.1", self.port, proc=self.proc.proc)
        self.resolver = f"127.0.0.1@{self.port}"

    def stop(self):
        self.proc.stop()


class Redis:
    def __init__(self, tmpdir, port=None):
        self.dir = tmpdir
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.proc = Proc([REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", self.dir],
                         os.path.join(self.dir, f"redis-{self.port}.log"))
        wait_port("127.0.0.1", self.port, proc=self.proc.proc)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None


class Postgrey:
    def __init__(self, tmpdir, delay):
        self.port = free_port()
        self.dbdir = os.path.join(tmpdir, "postgrey-db")
        os.makedirs(self.dbdir, exist_ok=True)
        shutil.chown(self.dbdir, "postgrey", "postgrey")
        self.proc = Proc([POSTGREY, f"--inet=127.0.0.1:{self.port}", f"--dbdir={self.dbdir}",
                          f"--delay={delay}", f"--pidfile={tmpdir}/postgrey.pid"],
                         os.path.join(tmpdir, "postgrey.log"))
        wait_port("127.0.0.1", self.port, timeout=30, proc=self.proc.proc)

    def stop(self):
        self.proc.stop()


class SluicePolicy:
    """A private `sluice policy` with its own configuration."""

    def __init__(self, tmpdir, conf, listen=None):
        self.dir = tmpdir
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.conf_path = os.path.join(tmpdir, "policy.conf")
        self.logfile = os.path.join(tmpdir, "policy.maillog")
        base = {"spool_dir": os.path.join(tmpdir, "policy-spool"), "maillog_file": self.logfile,
                "myhostname": "mx.test.example"}
        base.update(conf)
        with open(self.conf_path, "w") as f:
            for k, v in base.items():
                f.write(f"{k} = {v}\n")
        self.proc = Proc([SLUICE, "policy", "-c", self.conf_path, "--listen", self.listen],
                         os.path.join(tmpdir, "policy.stderr"))
        if not self.listen.startswith("unix:"):
            wait_port("127.0.0.1", self.port, proc=self.proc.proc)

    def log(self):
        return read_text(self.logfile)

    def stop(self):
        return self.proc.stop()

    def cli(self, *args):
        p = subprocess.run([SLUICE, "greylist", "-c", self.conf_path, *args],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr


class PolicyClient:
    """One persistent policy-protocol connection (what Postfix's smtpd keeps)."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def ask(self, ip, sender, rcpt, helo="client.test", extra=None):
        attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
                 "protocol_name": "ESMTP", "client_address": ip, "client_name": "unknown",
                 "reverse_client_name": "unknown", "helo_name": helo, "sender": sender,
                 "recipient": rcpt, "recipient_count": "0", "queue_id": "",
                 "instance": "1.2.3", "size": "0"}
        attrs.update(extra or {})
        self.send("".join(f"{k}={v}\n" for k, v in attrs.items()) + "\n")
        return self.answer()

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def answer(self):
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        a, self.buf = self.buf.split(b"\n\n", 1)
        return a.decode()

    def close(self):
        self.sock.close()


def smtp_attempt(host, port, source, sender, rcpt, helo="client.test", body=None, timeout=20):
    """One SMTP transaction from `source`; returns the RCPT reply code (and
    the message is sent when it is 250)."""
    s = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3]), line.decode(errors="replace").strip()

    def cmd(line):
        s.sendall(line.encode() + b"\r\n")
        return reply()

    try:
        reply()
        cmd(f"EHLO {helo}")
        cmd(f"MAIL FROM:<{sender}>")
        code, text = cmd(f"RCPT TO:<{rcpt}>")
        if code == 250:
            cmd("DATA")
            msg = body or f"Subject: test\r\nMessage-ID: <{time.time()}@{helo}>\r\n\r\nhello\r\n"
            s.sendall(msg.encode() + b".\r\n")
            dcode, _ = reply()
            if dcode != 250:
                code = dcode
        cmd("QUIT")
        return code, text
    finally:
        f.close()
        s.close()


class Postfix(PostfixPeer):
    """A private Postfix that asks `sluice policy` at RCPT, one smtpd on a
    free port of 127.0.0.1, everything accepted discarded."""

    def __init__(self, tmpdir, policy_port, mynetworks="127.0.0.1/32"):
        super().__init__(tmpdir=os.path.join(tmpdir, "postfix"), extra={
            "myhostname": "pf.test.example",
            "mydestination": "test.example",
            "mynetworks": mynetworks,
            "local_recipient_maps": "",
            "local_transport": "discard:",
            "default_transport": "discard:",
            "relay_transport": "discard:",
            "smtpd_relay_restrictions": "permit_mynetworks, defer_unauth_destination",
            "smtpd_recipient_restrictions": f"check_policy_service inet:127.0.0.1:{policy_port}, "
                                            "permit_mynetworks, reject_unauth_destination",
            "smtpd_delay_reject": "yes",
            "smtputf8_enable": "no",
        })
