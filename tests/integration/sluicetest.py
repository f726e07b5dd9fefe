"""sluicetest.py - shared helpers for the sluice end-to-end tests.

Not a test module (run_tests.py only collects test_*.py). It adds to
harness.py:

  * Client        a RawClient that can read the greeting, upgrade to TLS,
                  and assert reply code + RFC 3463 enhanced code;
  * parse_queue_file  a strict reader of the queue file format
                  (SLUICE-QUEUE 1 / envelope / content / end OFF LEN);
  * SluiceCase    a unittest base class that starts one private sluice per
                  test class (or per test) and checks, when it stops, that
                  the ASan/UBSan build reported nothing;
  * source_ip()   distinct 127.x.y.z client addresses, so tests that count
                  connections per IP or read the log never see each other.

Every process started here is stopped by PID.
"""
import itertools
import os
import re
import socket
import ssl
import threading
import time
import unittest

import harness
from harness import (SANITIZER_MARKS, RawClient, Sluice, free_port, kill_pid,  # noqa: F401 (re-export)
                     sanitizer_report, wait_port, wait_until)

SLUICE = harness.SLUICE
ROOT = harness.ROOT

# Integration runs abort on any sanitizer error (run_tests.py sets the same).
os.environ.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")

ENH_RE = re.compile(r"^(\d{3})[ -]([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)\s*$")

# ---------------------------------------------------------------------------
# client addresses

_src_lock = threading.Lock()
# 127.0.0.1 is the "trusted, default" client; tests draw others from here.
# The third octet starts at 10 and the pid is folded in so two concurrent
# runs of the suite on one machine are unlikely to collide in logs.
_src_counter = itertools.count(0)


def source_ip():
    """A fresh loopback client address such as 127.13.0.7."""
    with _src_lock:
        n = next(_src_counter)
    return f"127.{10 + (n // 250) % 200}.{(os.getpid() % 200) + 1}.{n % 250 + 2}"


# ---------------------------------------------------------------------------
# replies

def enhanced(text):
    """The enhanced status code of the last line of a reply, or None."""
    last = text.split("\n")[-1]
    m = ENH_RE.match(last)
    return f"{m.group(2)}.{m.group(3)}.{m.group(4)}" if m else None


def queued_id(text):
    m = QUEUED_RE.match(text.split("\n")[-1])
    return m.group(1) if m else None


class Client(RawClient):
    """RawClient plus greeting, TLS upgrade and assertion helpers."""

    def __init__(self, host, port, source=None, timeout=10, greet=True):
        super().__init__(host, port, source=source, timeout=timeout)
        self.greeting = self.reply() if greet else None

    def starttls(self, expect=True):
        code, text = self.cmd("STARTTLS")
        if not expect:
            return code, text
        if code != 220:
            raise AssertionError(f"STARTTLS refused: {text}")
        self.wrap_tls()
        return code, text

    def wrap_tls(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.buf:
            raise AssertionError(f"plaintext bytes left before TLS: {self.buf!r}")
        self.sock = ctx.wrap_socket(self.sock)
        return self.sock

    def read_until_closed(self, timeout=10):
        """Everything the server still sends until it closes (bytes)."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"server did not close; got so far {data!r}")
            except ssl.SSLError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def replies_until_closed(self, timeout=10):
        data = self.read_until_closed(timeout)
        return [l.decode(errors="replace") for l in data.split(b"\r\n") if l]

    def ehlo(self, name="client.test.example"):
        code, text = self.cmd(f"EHLO {name}")
        if code != 250:
            raise AssertionError(f"EHLO failed: {text}")
        return text

    def send_mail(self, sender="s@test.example", rcpts=("u@localhost",), body=None,
                  mail_params="", expect_queued=True):
        """MAIL/RCPT/DATA on an open session; returns (code, text) of the end."""
        code, text = self.cmd(f"MAIL FROM:<{sender}>{(' ' + mail_params) if mail_params else ''}")
        if code != 250:
            raise AssertionError(f"MAIL refused: {text}")
        for r in rcpts:
            code, text = self.cmd(f"RCPT TO:<{r}>")
            if code != 250:
                raise AssertionError(f"RCPT {r} refused: {text}")
        code, text = self.cmd("DATA")
        if code != 354:
            raise AssertionError(f"DATA refused: {text}")
        if body is None:
            body = make_body()
        if isinstance(body, str):
            body = body.encode()
        self.send(body + b".\r\n")
        code, text = self.reply()
        if expect_queued and queued_id(text) is None:
            raise AssertionError(f"message not queued: {text}")
        return code, text


def make_body(subject="test", lines=3, msgid=None, extra=b""):
    mid = msgid or f"<{time.time_ns()}.{os.getpid()}@client.test.example>"
    hdr = (f"From: <s@test.example>\r\nTo: <u@localhost>\r\nSubject: {subject}\r\n"
           f"Message-ID: {mid}\r\n\r\n").encode()
    body = b"".join(b"line %d of the body\r\n" % i for i in range(lines))
    return hdr + body + extra


def dot_stuff(body):
    """Dot-stuff a CRLF body for DATA."""
    lines = body.split(b"\r\n")
    return b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in lines)


# ---------------------------------------------------------------------------
# queue files

ENVELOPE_KEYS = {"id", "arrival", "client", "helo", "proto", "sender", "envid", "ret",
                 "body", "smtputf8", "rcpt"}


class QueueFileError(ValueError):
    pass


def parse_queue_file(data):
    """Parse and validate one queue file image; raises QueueFileError.

    Returns a dict: envelope records (single-valued ones as str, 'rcpt' as a
    list of (addr, notify, orcpt)), 'content' (bytes), 'offset', 'length'.
    """
    magic = b"SLUICE-QUEUE 1\n"
    if not data.startswith(magic):
        raise QueueFileError("bad magic")
    if not data.endswith(b"\n"):
        raise QueueFileError("does not end in newline")
    nl = data.rfind(b"\n", 0, len(data) - 1)
    if nl < 0:
        raise QueueFileError("no trailer line")
    m = re.fullmatch(rb"end (\d+) (\d+)", data[nl + 1:-1])
    if not m:
        raise QueueFileError(f"bad trailer {data[nl + 1:-1][:80]!r}")
    off, length = int(m.group(1)), int(m.group(2))
    if off + length != nl:
        raise QueueFileError(f"trailer offsets {off}+{length} != {nl} (file size {len(data)})")
    if data[off - len(b"content\n"):off] != b"content\n":
        raise QueueFileError("content record does not end at OFFSET")
    env_text = data[len(magic):off - len(b"content\n")]
    out = {"rcpt": [], "offset": off, "length": length}
    for raw in env_text.split(b"\n"):
        if raw == b"":
            continue
        line = raw.decode("utf-8")  # must be valid UTF-8
        key, _, val = line.partition(" ")
        if key not in ENVELOPE_KEYS:
            raise QueueFileError(f"unknown envelope record {line!r}")
        if key == "rcpt":
            parts = val.split("\t")
            if len(parts) != 3:
                raise QueueFileError(f"bad rcpt record {line!r}")
            out["rcpt"].append(tuple(parts))
        elif key == "smtputf8":
            out["smtputf8"] = True
        else:
            if key in out:
                raise QueueFileError(f"duplicate record {key}")
            out[key] = val
    for key in ("id", "arrival", "client", "helo", "proto", "sender"):
        if key not in out:
            raise QueueFileError(f"missing envelope record {key}")
    if not out["rcpt"]:
        raise QueueFileError("no recipients")
    if not re.fullmatch(r"\d+\.\d{6}", out["arrival"]):
        raise QueueFileError(f"bad arrival {out['arrival']!r}")
    content = data[off:off + length]
    out["content"] = content
    if not content.startswith(b"Received: "):
        raise QueueFileError("content does not start with Received:")
    if not content.endswith(b"\r\n"):
        raise QueueFileError("content does not end in CRLF")
    stripped = content.replace(b"\r\n", b"")
    if b"\r" in stripped or b"\n" in stripped:
        raise QueueFileError("content has a bare CR or LF")
    return out


def read_queue_file(srv, qid):
    return parse_queue_file(srv.read_queue_file(qid))


def split_message(content):
    """(header bytes, body bytes) of a stored CRLF message."""
    head, sep, body = content.partition(b"\r\n\r\n")
    return head + b"\r\n", body


# ---------------------------------------------------------------------------
# logs

def wait_for_log(srv, pattern, timeout=10.0, flags=0):
    """Wait until the maillog matches regex pattern; returns the match."""
    rx = re.compile(pattern, flags | re.M)
    deadline = time.time() + timeout
    while True:
        m = rx.search(srv.log())
        if m:
            return m
        if time.time() > deadline:
            raise AssertionError(f"log never matched {pattern!r}; log tail:\n"
                                 + "\n".join(srv.log().splitlines()[-25:]))
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# servers

def start_sluice(conf=None, **kw):
    srv = Sluice(conf=conf, **kw)
    try:
        srv.start()
        # The listener exists before the spool is open: wait for a greeting
        # so the server is really serving.
        c = Client(srv.host, srv.port)
        c.cmd("QUIT")
        c.close()
    except BaseException:
        srv.cleanup()
        raise
    return srv


def stop_sluice(srv, check=True):
    """SIGTERM, wait, remove the directory; return (exit code, sanitizer text)."""
    rc = None
    report = ""
    try:
        if srv.proc is not None and srv.proc.poll() is None:
            rc = srv.stop()
        elif srv.proc is not None:
            rc = srv.proc.returncode
        report = sanitizer_report(srv)
    finally:
        srv.cleanup()
    return rc, report


class SluiceCase(unittest.TestCase):
    """One sluice per class (conf = extra config keys).

    Subclasses set `conf`; tests get self.srv. At class end the server is
    stopped with SIGTERM and must exit 0 with a clean sanitizer report.
    """
    conf = {}

    @classmethod
    def setUpClass(cls):
        cls.srv = start_sluice(dict(cls.conf))

    @classmethod
    def tearDownClass(cls):
        died = cls.srv.proc.poll()
        log_tail = "\n".join(cls.srv.log().splitlines()[-20:])
        rc, report = stop_sluice(cls.srv)
        if died is not None:
            raise AssertionError(f"sluice died during {cls.__name__} (exit {died}):\n"
                                 f"{report}\n{log_tail}")
        if report:
            raise AssertionError(f"sanitizer report from sluice in {cls.__name__}:\n{report}")
        if rc != 0:
            raise AssertionError(f"sluice exited {rc} on SIGTERM after {cls.__name__}")

    def setUp(self):
        self.clients = []

    def tearDown(self):
        close_clients(self.clients)
        self.assertIsNone(self.srv.proc.poll(), "sluice is no longer running:\n"
                          + sanitizer_report(self.srv))

    def connect(self, source=None, greet=True, timeout=10):
        c = Client(self.srv.host, self.srv.port, source=source, greet=greet, timeout=timeout)
        self.clients.append(c)
        return c

    def session(self, source=None, ehlo="client.test.example"):
        c = self.connect(source=source)
        self.assertEqual(c.greeting[0], 220, c.greeting[1])
        c.ehlo(ehlo)
        return c

    def assertReply(self, reply, code, enh=None, msg=None):
        got_code, text = reply
        self.assertEqual(got_code, code, msg or f"reply was {text!r}")
        last = text.split("\n")[-1]
        self.assertTrue(last.startswith(f"{code} "), f"malformed last line {last!r}")
        if enh is not None:
            self.assertEqual(enhanced(text), enh, msg or f"reply was {text!r}")

    def assertClosed(self, c, timeout=5):
        self.assertTrue(c.closed(timeout), "server did not close the connection")

    def begin_data(self, c):
        """MAIL FROM:<s@test.example>, RCPT TO:<u@localhost>, DATA, asserting
        the 250 2.1.0, 250 2.1.5 and 354 replies."""
        self.assertReply(c.cmd("MAIL FROM:<s@test.example>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<u@localhost>"), 250, "2.1.5")
        self.assertReply(c.cmd("DATA"), 354)


def reply_now_or_at_next(c, wait=2):
    """A reply the server may send right away or only at the next command
    (e.g. the 421 after the error limit): wait `wait` seconds for it, else
    send NOOP and read the answer."""
    c.sock.settimeout(wait)
    try:
        return c.reply()
    except (socket.timeout, TimeoutError):
        c.sock.settimeout(10)
        c.send("NOOP\r\n")
        return c.reply()


class ConcurrentSenders:
    """`clients` sessions at once, each from its own loopback address,
    each sending mail until it has sent `per_client` messages or finish()
    stops it. body(n, i) makes session n's i-th message. finish() returns
    (queue ids in the order the 250s came, errors as repr strings)."""

    def __init__(self, host, port, clients, per_client=None, rcpts=("u@localhost",),
                 body=None):
        self.qids, self.errors = [], []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._args = (host, port, per_client, rcpts, body)
        self._threads = [threading.Thread(target=self._client, args=(n,))
                         for n in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self, n):
        host, port, per_client, rcpts, body = self._args
        try:
            c = Client(host, port, source=source_ip())
            c.ehlo()
            i = 0
            while (per_client is None or i < per_client) and not self._stop.is_set():
                code, text = c.send_mail(rcpts=rcpts, body=body(n, i) if body else make_body())
                with self._lock:
                    self.qids.append(queued_id(text))
                i += 1
            c.cmd("QUIT")
            c.close()
        except Exception as e:   # noqa: BLE001 - returned by finish()
            with self._lock:
                self.errors.append(repr(e))

    def finish(self, stop=False, timeout=120):
        if stop:
            self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return self.qids, self.errors


def close_clients(clients):
    for c in clients:
        try:
            c.close()
        except OSError:
            pass


def run(cmd, timeout=60, **kw):
    """harness.run with stderr folded into stdout; returns (rc, output)."""
    rc, out, _ = harness.run(cmd, timeout, merge_stderr=True, **kw)
    return rc, out
