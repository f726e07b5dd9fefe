#!/usr/bin/python3
"""bench_smtpd.py - inbound SMTP throughput, sluice vs Postfix, and idle-session memory.

Part 1 (throughput). Debian's Postfix and sluice (release build) receive
the same smtp-source load, `smtp-source -s 20 -m N -l 5120`, in the same
run, alternating which goes first, BENCH_RUNS times. Both only receive and
queue, with fsync on:
  * Postfix: a private instance (own config/queue/data directories under
    one temp dir, Debian defaults otherwise) on a loopback port, with
    `smtpd_client_restrictions = check_client_access static:HOLD`, so
    cleanup writes every message (fsync'ed) into the hold queue and
    nothing is delivered;
  * sluice: `queue_delivery = no` (when the binary has that key), so the
    message stays queued: its journal record is fdatasync'ed before the
    250 and stays its only copy ("resident", docs/queue-format.md) until
    the journal needs the segment back (the ring holds ~100 MiB of
    resident mail before it writes queue files) or the server stops.
    Counted through harness.Sluice.queue_files (queue files and resident
    journal records).
Both spools are on the same filesystem (the temp dir). Each run checks
that all N messages arrived in the queue. Messages/s = N / wall time of
smtp-source. Prints per-run figures, the medians and the ratio.

Every run gets a fresh spool, and no spool is deleted before the end of
the benchmark, so every run of either server starts from the same state.
One warm-up run of each server (BENCH_WARMUP, default 1; sluice first,
then Postfix) comes before the measured runs and is left out of the
medians: the first run absorbs what the machine did before the benchmark
(the test suite's or a previous benchmark's deletions, below, slowed
whichever server ran first, always sluice, by up to 25%).
Deleting them between runs made each run slower than the one before: on
ext4 without a journal (this machine's root filesystem) creating a file
skips, one by one, every free inode of the group deleted in the last 60 s
(360 s while its inode table block is dirty), so run k paid for the
~20,000 files runs 1..k-1 had just removed.

Part 2 (memory). BENCH_IDLE idle sessions (default 5,000; greeted and
EHLO'd, then silent) are held open against sluice from 10 loopback source
addresses (smtpd_client_connection_limit raised), and sluice's VmRSS is
read from /proc/PID/status. Target: under 100 MB.

Environment: BENCH_RUNS (default 5), BENCH_WARMUP (default 1), BENCH_MESSAGES (default 10000),
BENCH_SESSIONS (default 20), BENCH_IDLE (default 5000), SLUICE_BIN
(default build/sluice).

Every process started here is stopped by PID.
"""
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))

import harness  # noqa: E402
import peers  # noqa: E402

SLUICE_BIN = os.environ["SLUICE_BIN"]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "1"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "10000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
IDLE = int(os.environ.get("BENCH_IDLE", "5000"))
MSG_LEN = 5120


def log(*a):
    print(*a, flush=True)


def sluice_has_key(key):
    p = subprocess.run([SLUICE_BIN, "config", "-c", "/dev/null"], capture_output=True, text=True)
    return any(line.split(" = ")[0] == key for line in p.stdout.splitlines())


def start_sluice(base, extra=None):
    conf = {"mydomains": "localhost test.example"}
    if sluice_has_key("queue_delivery"):
        conf["queue_delivery"] = "no"
    conf.update(extra or {})
    srv = harness.Sluice(conf=conf, tmpdir=tempfile.mkdtemp(prefix="sluice-", dir=base))
    if not sluice_has_key("queue_delivery"):
        # harness.py may add keys this binary does not know: drop them
        with open(srv.conf_path) as f:
            lines = [l for l in f if not l.startswith("queue_delivery")]
        with open(srv.conf_path, "w") as f:
            f.writelines(lines)
    srv.start()
    # the listener exists before the spool: wait for a real greeting
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.recv(512)
        s.sendall(b"QUIT\r\n")
        s.recv(512)
    return srv


def smtp_source(port, n):
    cmd = ["smtp-source", "-s", str(SESSIONS), "-m", str(n), "-l", str(MSG_LEN),
           "-f", "from@test.example", "-t", "rcpt@test.example", f"127.0.0.1:{port}"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=3600)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({p.returncode}): {out.decode()[-2000:]}")
    return elapsed, " ".join(cmd)


def wait_count(fn, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = fn()
        if c >= n:
            return c
        time.sleep(0.1)
    return fn()


def run_sluice(base):
    srv = start_sluice(base)
    try:
        elapsed, cmd = smtp_source(srv.port, MESSAGES)
        got = wait_count(lambda: len(srv.queue_files()), MESSAGES, timeout=30)
        if got != MESSAGES:
            raise RuntimeError(f"sluice queued {got} of {MESSAGES}")
        return MESSAGES / elapsed, cmd
    finally:
        srv.stop()
        srv.kill9()   # the spool stays until the end (see the docstring)


def run_postfix(base):
    pf = peers.PostfixPeer(hold=True, tmpdir=tempfile.mkdtemp(prefix="postfix-", dir=base))
    try:
        pf.start()
        elapsed, cmd = smtp_source(pf.port, MESSAGES)
        # smtp-source waits for each 250, and Postfix's 250 comes after
        # cleanup has fsync'ed the file into the hold queue
        got = wait_count(lambda: pf.queue_count("hold"), MESSAGES, timeout=60)
        if got != MESSAGES:
            raise RuntimeError(f"postfix held {got} of {MESSAGES}; log:\n{pf.log()[-2000:]}")
        return MESSAGES / elapsed, cmd
    finally:
        pf.stop()     # the queue stays until the end (see the docstring)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_sessions(base):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    nips = 10
    per_ip = (IDLE + nips - 1) // nips
    srv = start_sluice(base, {"smtpd_client_connection_limit": str(per_ip + 10),
                              "smtpd_max_sessions": str(IDLE + 100)})
    socks = []
    try:
        time.sleep(0.2)
        base_rss = rss_kb(srv.proc.pid)
        t0 = time.time()
        for i in range(IDLE):
            src = f"127.0.{100 + i % nips}.1"
            s = socket.create_connection((srv.host, srv.port), timeout=30, source_address=(src, 0))
            socks.append(s)
        # greet + EHLO each (pipelined across sockets: send all, then read all)
        for s in socks:
            buf = b""
            while b"\r\n" not in buf:
                buf += s.recv(4096)
            if not buf.startswith(b"220 "):
                raise RuntimeError(f"greeting: {buf!r}")
        for s in socks:
            s.sendall(b"EHLO idle.test.example\r\n")
        for s in socks:
            buf = b""
            while b"\r\n250 " not in buf and not buf.startswith(b"250 "):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("closed during EHLO")
                buf += chunk
        setup = time.time() - t0
        time.sleep(1.0)
        rss = rss_kb(srv.proc.pid)
        # still alive and serving
        with socket.create_connection((srv.host, srv.port), timeout=10,
                                      source_address=("127.0.99.1", 0)) as s:
            ok = s.recv(512).startswith(b"220 ")
        return {"sessions": len(socks), "rss_kb": rss, "baseline_rss_kb": base_rss,
                "setup_s": round(setup, 1), "still_serving": ok}
    finally:
        for s in socks:
            s.close()
        srv.stop()
        srv.cleanup()


def main():
    if not os.path.exists(SLUICE_BIN):
        sys.exit(f"bench: {SLUICE_BIN} missing; run make build/sluice")
    if not peers.postfix_available():
        sys.exit("bench: Postfix (and root) needed for the comparison")
    base = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(base, 0o755)
    results = {"sluice": [], "postfix": []}
    cmd = ""
    try:
        log(f"bench: {WARMUP} warm-up + {RUNS} run(s), smtp-source -s {SESSIONS} -m {MESSAGES} "
            f"-l {MSG_LEN}, spools under {base}")
        warmup = {"sluice": [], "postfix": []}
        for i in range(WARMUP):
            for who in ("sluice", "postfix"):
                rate, cmd = (run_sluice if who == "sluice" else run_postfix)(base)
                warmup[who].append(round(rate, 1))
                log(f"  warm-up {who:8s} {rate:9.1f} msg/s (not counted)")
        for i in range(RUNS):
            order = ("sluice", "postfix") if i % 2 == 0 else ("postfix", "sluice")
            for who in order:
                rate, cmd = (run_sluice if who == "sluice" else run_postfix)(base)
                results[who].append(rate)
                log(f"  run {i + 1} {who:8s} {rate:9.1f} msg/s")
        med_s = statistics.median(results["sluice"])
        med_p = statistics.median(results["postfix"])
        log(f"median sluice  {med_s:9.1f} msg/s")
        log(f"median postfix {med_p:9.1f} msg/s")
        log(f"ratio sluice/postfix {med_s / med_p:.2f}")
        idle = None
        if IDLE > 0:
            idle = idle_sessions(base)
            log(f"idle: {idle['sessions']} sessions held, sluice VmRSS {idle['rss_kb'] / 1024:.1f} MB "
                f"(baseline {idle['baseline_rss_kb'] / 1024:.1f} MB, setup {idle['setup_s']}s, "
                f"still serving: {idle['still_serving']})")
        summary = {"runs": RUNS, "warmup_msgs_per_s": warmup, "messages": MESSAGES, "sessions": SESSIONS, "msg_len": MSG_LEN,
                   "command": cmd, "sluice_msgs_per_s": [round(r, 1) for r in results["sluice"]],
                   "postfix_msgs_per_s": [round(r, 1) for r in results["postfix"]],
                   "median_sluice": round(med_s, 1), "median_postfix": round(med_p, 1),
                   "ratio": round(med_s / med_p, 2), "idle": idle}
        log("json: " + json.dumps(summary))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
