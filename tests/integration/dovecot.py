"""dovecot.py - a private Dovecot (IMAP + POP3) for integration tests and
benchmarks.

Each instance has its own config file, base_dir, log and Maildirs under a
temporary directory, listens on free loopback ports (imap, imaps, pop3,
pop3s), and is stopped by its master PID. Users live in a passwd-file with
PLAIN passwords. Running as root, mail processes use the 'dovecot' system
user's uid (Dovecot refuses uid 0), and the mail tree is chowned to it.
"""
import os
import pwd
import shutil
import signal
import subprocess
import time

from harness import free_port, read_text, tmpdir, wait_port

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"

CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
info_log_path = {d}/log
instance_name = sluicetest-{tag}
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
mail_fsync = {fsync}
mail_plugins =
pop3_uidl_format = %08Xu%08Xv
imap_capability = +{extra_caps}
namespace inbox {{
  inbox = yes
  separator = {sep}
  prefix = {prefix}
  mailbox "{sent}" {{
    special_use = \\Sent
    auto = {auto}
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = {auto}
  }}
  mailbox {junk} {{
    special_use = \\Junk
    auto = {auto}
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = {auto}
  }}
  mailbox Archive {{
    special_use = \\Archive
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


def make_cert(directory):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", os.path.join(directory, "key.pem"),
                    "-out", os.path.join(directory, "cert.pem")],
                   check=True, capture_output=True)


class Dovecot:
    """Users: dict name -> password. sep/prefix: the inbox namespace."""

    def __init__(self, users, sep="/", prefix="", sent="Sent", junk="Junk",
                 auto="create", fsync="never", tag="a", extra_caps=""):
        self.dir = tmpdir("sluice-dovecot-")
        self.users = dict(users)
        self.sep, self.prefix = sep, prefix
        if os.getuid() == 0:
            pw = pwd.getpwnam("dovecot")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            user, group, login_user = "dovecot", "dovecot", "dovenull"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            user = pwd.getpwuid(self.uid).pw_name
            group, login_user = user, user
        self.ports = {k: free_port() for k in ("imap", "imaps", "pop3", "pop3s")}
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(self.dir, sub))
        os.chown(os.path.join(self.dir, "mail"), self.uid, self.gid)
        make_cert(self.dir)
        with open(os.path.join(self.dir, "users"), "w") as f:
            for u, p in self.users.items():
                f.write(f"{u}:{{PLAIN}}{p}:{self.uid}:{self.gid}::{self.dir}/mail/{u}::\n")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(d=self.dir, user=user, group=group, login_user=login_user,
                                sep=sep, prefix=prefix, sent=sent, junk=junk, auto=auto,
                                fsync=fsync, tag=tag + str(os.getpid()) + str(id(self)),
                                extra_caps=extra_caps or "ID", **self.ports))
        self.pid = None

    def start(self):
        # The daemon keeps inherited descriptors open: never pipe them.
        errpath = os.path.join(self.dir, "start.err")
        with open(errpath, "w") as err:
            rc = subprocess.call([DOVECOT, "-c", self.conf], stdout=err, stderr=err,
                                 stdin=subprocess.DEVNULL, timeout=30)
        if rc != 0:
            with open(errpath) as f:
                raise RuntimeError("dovecot failed: " + f.read() + self.log())
        pidfile = os.path.join(self.dir, "run", "master.pid")
        deadline = time.time() + 10
        while not os.path.exists(pidfile) and time.time() < deadline:
            time.sleep(0.02)
        with open(pidfile) as f:
            self.pid = int(f.read().strip())
        for k in ("imap", "pop3"):
            wait_port("127.0.0.1", self.ports[k])
        return self

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(200):
                    os.kill(self.pid, 0)
                    time.sleep(0.02)
            except ProcessLookupError:
                pass
            self.pid = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return read_text(os.path.join(self.dir, "log"))

    def maildir(self, user, folder=""):
        """Path of a folder's Maildir++ directory ('' = INBOX)."""
        base = os.path.join(self.dir, "mail", user)
        if not folder or folder == "INBOX":
            return base
        return os.path.join(base, "." + folder.replace(self.sep, "."))

    def doveadm(self, *args):
        return subprocess.run([DOVEADM, "-c", self.conf, *args], capture_output=True,
                              text=True, check=True).stdout

    def chown_tree(self, user):
        for root, dirs, files in os.walk(os.path.join(self.dir, "mail", user)):
            os.chown(root, self.uid, self.gid)
            for n in files:
                os.chown(os.path.join(root, n), self.uid, self.gid)

    def passfile(self, user):
        path = os.path.join(self.dir, f"pass-{user}")
        with open(path, "w") as f:
            f.write(self.users[user] + "\n")
        os.chmod(path, 0o600)
        return path
