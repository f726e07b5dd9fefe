"""harness.py - start and stop sluice (and peers) for integration tests.

Every process a test starts is stopped by PID. Ports come from the kernel
(bind to port 0), so tests can run while another sluice is running.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build/asan/sluice"))
PYTHON = "/usr/bin/python3"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not start listening")


def tmpdir(prefix):
    """A fresh temporary directory that daemons running as other users
    (postfix, dovecot, postgrey) can traverse."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def read_text(path):
    """The text of a log file, or "" when it does not exist (yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_until(pred, timeout=10.0, interval=0.05, what="condition", detail=None):
    """Poll pred until it returns a true value (returned); on timeout raise
    AssertionError naming `what`, plus `detail` (text or a callable)."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            extra = detail() if callable(detail) else (detail or "")
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{extra}")
        time.sleep(interval)


def run(cmd, timeout=60, merge_stderr=False, **kw):
    """subprocess.run that kills the child (by PID) on timeout. Returns
    (returncode, stdout, stderr); with merge_stderr, stderr is folded into
    stdout and the third item is ""."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"{cmd} timed out after {timeout}s:\n"
                             + out.decode(errors="replace")[-3000:])
    return p.returncode, out.decode(errors="replace"), (err or b"").decode(errors="replace")


def sanitizer_report(srv):
    """srv's stderr if it holds a sanitizer report, else ""."""
    try:
        text = srv.stderr_text()
    except (FileNotFoundError, AttributeError):
        return ""
    return text if any(m in text for m in SANITIZER_MARKS) else ""


# ---------------------------------------------------------------------------
# processes, by PID

def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children_of(ppid):
    """PIDs whose parent is ppid."""
    out = []
    if not ppid:
        return out
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                out.append(int(d))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return out


def kill_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_popen(p, sig=signal.SIGTERM, timeout=10):
    """Signal a Popen child, wait; SIGKILL it if it outlives timeout.
    Returns its exit status (None if p is None)."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def journal_messages(spool):
    """{qid: queue file image} of the messages the commit journal holds that
    have not left the queue: message records newer than the checkpoint not
    followed by a "gone" record. An independent reader of the format in
    docs/queue-format.md ("Commit journal"); a torn or damaged record ends
    a segment, as in the server."""
    jdir = os.path.join(spool, "journal")
    if not os.path.isdir(jdir):
        return {}
    u32 = lambda b: int.from_bytes(b[:4], "little")
    u64 = lambda b: int.from_bytes(b[:8], "little")
    ckpt = 0
    try:
        with open(os.path.join(jdir, "checkpoint"), "rb") as f:
            data = f.read(128)
        for off in (0, 64):
            slot = data[off:off + 64]
            if len(slot) == 64 and slot[:4] == b"SJC1" and zlib.crc32(slot[:16]) == u32(slot[16:20]):
                ckpt = max(ckpt, u64(slot[8:16]))
    except FileNotFoundError:
        pass
    records = []
    for name in os.listdir(jdir):
        if not name.startswith("seg."):
            continue
        with open(os.path.join(jdir, name), "rb") as f:
            img = f.read()
        pos, prev = 0, 0
        while len(img) - pos >= 40:
            h = img[pos:pos + 40]
            rtype, plen, seq, qid = h[4], u32(h[8:12]), u64(h[16:24]), h[24:40]
            size = 40 + ((plen + 7) & ~7)
            if (h[:4] != b"SJR1" or h[5:8] != b"\0\0\0" or rtype not in (1, 2) or seq <= prev
                    or size > len(img) - pos or (rtype == 2 and plen != 0)):
                break
            payload = img[pos + 40:pos + 40 + plen]
            if zlib.crc32(h[:12] + h[16:40] + payload) != u32(h[12:16]):
                break
            if seq > ckpt:
                records.append((seq, rtype, qid.decode(), payload))
            prev, pos = seq, pos + size
    live = {}
    for seq, rtype, qid, payload in sorted(records):
        if rtype == 1:
            live[qid] = payload
        else:
            live.pop(qid, None)
    return live


class Sluice:
    """A private `sluice serve` with its own config, spool and log."""

    def __init__(self, conf=None, port=None, host="127.0.0.1", tmpdir=None):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="sluice-test-")
        self.host = host
        self.port = port or free_port(host)
        self.spool = os.path.join(self.dir, "spool")
        self.logfile = os.path.join(self.dir, "maillog")
        self.conf_path = os.path.join(self.dir, "sluice.conf")
        base = {
            "smtp_listen": f"{host}:{self.port}" if ":" not in host else f"[{host}]:{self.port}",
            "spool_dir": self.spool,
            "maillog_file": self.logfile,
            "myhostname": "mx.test.example",
            "mydomains": "localhost test.example",
            # inbound tests inspect the queue: keep accepted mail there
            "queue_delivery": "no",
        }
        base.update(conf or {})
        with open(self.conf_path, "w") as f:
            for k, v in base.items():
                f.write(f"{k} = {v}\n")
        self.proc = None

    def start(self, wait=True, extra_args=()):
        self.stderr = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = subprocess.Popen([SLUICE, "serve", "-c", self.conf_path, *extra_args],
                                     stdout=self.stderr, stderr=self.stderr)
        if wait:
            wait_port(self.host, self.port, proc=self.proc)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        return read_text(self.logfile)

    def stderr_text(self):
        with open(os.path.join(self.dir, "stderr"), errors="replace") as f:
            return f.read()

    def queue_files(self):
        """Ids of the queued messages: queue files, and messages resident in
        the commit journal (no queue file until the journal needs the space
        or the server stops; docs/queue-format.md)."""
        q = os.path.join(self.spool, "queue")
        files = set(os.listdir(q)) if os.path.isdir(q) else set()
        return sorted(files | set(journal_messages(self.spool)))

    def read_queue_file(self, qid):
        """A queued message's queue file image, from its file or its journal record."""
        try:
            with open(os.path.join(self.spool, "queue", qid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            resident = journal_messages(self.spool)
            if qid not in resident:
                raise
            return resident[qid]

    def cleanup(self):
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.cleanup()


class RawClient:
    """A line-level SMTP client for protocol abuse tests."""

    def __init__(self, host, port, source=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """Read one (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed: " + repr(self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
