#!/usr/bin/python3
"""bench_delivery.py - outbound delivery throughput, sluice vs Postfix.

Both MTAs deliver to the same kind of destination: Debian's smtp-sink
(`smtp-sink -u nobody -c 127.0.0.1:PORT 1000`, a fresh one per measurement,
its message counter read from its -c output), relaying everything through
`relayhost = [127.0.0.1]:PORT` (no DNS, plaintext: smtp-sink offers no
STARTTLS). Messages: `smtp-source -s 20 -m N -l 5120 -f from@test.example
-t rcpt@remote.example`, one recipient each, 5 KB.

(a) outbound only: the MTA's queue is filled first, delivery off, then
    delivery is switched on and we time until the queue is empty.
      sluice  (release build): `queue_delivery = no` while smtp-source
              fills it; SIGTERM; restart with `queue_delivery = yes` and
              the relayhost; time from the restart until spool/queue is
              empty.
      Postfix (private instance, Debian defaults otherwise): fill with
              `smtpd_client_restrictions = check_client_access static:HOLD`
              (every message in the hold queue, nothing delivered); then
              `postsuper -c DIR -H ALL` + `postqueue -c DIR -f`; time from
              the release until no queue file is left.
(b) end to end: smtp-source -> MTA (delivery on) -> smtp-sink; time from
    the start of smtp-source until the MTA's queue is empty.

Each run checks that smtp-sink counted N messages and that the MTA logged
N `status=sent` lines. Runs alternate which MTA goes first. Prints per-run
msgs/s, medians and the sluice/Postfix ratio (target: >= 3).

Environment: BENCH_RUNS (default 5), BENCH_MESSAGES (default 10000),
BENCH_SESSIONS (default 20), BENCH_PARTS ("a,b"), SLUICE_BIN (default
build/sluice), BENCH_JSON (write the results there too).

Every process started here is stopped by PID.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))

import harness  # noqa: E402
from peers import PostfixPeer  # noqa: E402

SLUICE_BIN = os.environ["SLUICE_BIN"]
harness.SLUICE = SLUICE_BIN
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "10000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
PARTS = [p.strip() for p in os.environ.get("BENCH_PARTS", "a,b").split(",") if p.strip()]
MSG_LEN = 5120
RCPT = "rcpt@remote.example"
DEADLINE = float(os.environ.get("BENCH_TIMEOUT", "900"))


def log(*a):
    print(*a, flush=True)



def wait_for(pred, timeout, what, proc=None):
    deadline = time.time() + timeout
    while True:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the MTA exited with {proc.returncode}")
        if time.time() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# smtp-sink and smtp-source

class Sink:
    def __init__(self, base):
        self.dir = tempfile.mkdtemp(prefix="sink-", dir=base)
        os.chmod(self.dir, 0o755)
        self.port = harness.free_port()
        self.out_path = os.path.join(self.dir, "counter")
        self.out = open(self.out_path, "wb")
        self.cmd = ["/usr/sbin/smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{self.port}",
                    "1000"]
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT)
        harness.wait_port("127.0.0.1", self.port, proc=self.proc)

    def counters(self):
        with open(self.out_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 200))
            tail = f.read().decode(errors="replace")
        m = re.findall(r"sess=(\d+) quit=(\d+) mesg=(\d+)", tail)
        return tuple(int(x) for x in m[-1]) if m else (0, 0, 0)

    def count(self):
        return self.counters()[2]

    def sessions(self):
        return self.counters()[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def smtp_source_cmd(port, n):
    return ["/usr/sbin/smtp-source", "-s", str(SESSIONS), "-m", str(n), "-l", str(MSG_LEN),
            "-f", "from@test.example", "-t", RCPT, f"127.0.0.1:{port}"]


def smtp_source(port, n):
    cmd = smtp_source_cmd(port, n)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise RuntimeError("smtp-source timed out")
    if p.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({p.returncode}): {out.decode()[-2000:]}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# sluice

def sluice_conf(sink_port=None, delivery=False):
    c = {"queue_delivery": "yes" if delivery else "no"}
    if sink_port:
        c["relayhost"] = f"[127.0.0.1]:{sink_port}"
    return c


def write_conf(srv, extra):
    with open(srv.conf_path) as f:
        lines = [l for l in f if l.split(" = ")[0] not in extra]
    with open(srv.conf_path, "w") as f:
        f.writelines(lines)
        for k, v in extra.items():
            f.write(f"{k} = {v}\n")


def sluice_sent(srv):
    return len(re.findall(r"status=sent", srv.log()))


def run_sluice_outbound(base):
    srv = harness.Sluice(conf=sluice_conf(), tmpdir=tempfile.mkdtemp(prefix="sluice-", dir=base))
    sink = None
    try:
        srv.start()
        fill = smtp_source(srv.port, MESSAGES)
        wait_for(lambda: len(srv.queue_files()) >= MESSAGES, 60, "sluice queue filled")
        rc = srv.stop()
        if rc != 0:
            raise RuntimeError(f"sluice exited {rc} after filling")
        sink = Sink(base)
        write_conf(srv, {"queue_delivery": "yes", "relayhost": f"[127.0.0.1]:{sink.port}"})
        t0 = time.perf_counter()
        srv.start(wait=False)
        wait_for(lambda: not srv.queue_files(), DEADLINE, "sluice queue empty", srv.proc)
        elapsed = time.perf_counter() - t0
        wait_for(lambda: sink.count() >= MESSAGES, 30, "smtp-sink count")
        check(sink.count(), sluice_sent(srv), "sluice")
        time.sleep(0.5)  # let the last sessions end (QUIT) before reading sess=
        return {"rate": MESSAGES / elapsed, "seconds": elapsed, "fill_rate": MESSAGES / fill,
                "connections": sink.sessions()}
    except Exception:
        keep_evidence(srv, "sluice-outbound")
        raise
    finally:
        srv.stop()
        if sink:
            sink.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)


def keep_evidence(srv, what):
    """Copy sluice's maillog and stderr out of the temp dir and say where."""
    dest = tempfile.mkdtemp(prefix=f"bench-delivery-{what}-", dir="/tmp")
    for name in ("maillog", "stderr", "sluice.conf"):
        p = os.path.join(srv.dir, name)
        if os.path.exists(p):
            shutil.copy(p, dest)
    rc = srv.proc.poll() if srv.proc else None
    log(f"  !! {what} failed; sluice exit status {rc}; maillog and stderr kept in {dest}")
    try:
        with open(os.path.join(srv.dir, "stderr"), errors="replace") as f:
            err = f.read()[-1500:]
        if err.strip():
            log("  !! sluice stderr tail:\n" + err)
    except FileNotFoundError:
        pass


def run_sluice_e2e(base):
    sink = Sink(base)
    srv = harness.Sluice(conf=sluice_conf(sink.port, delivery=True),
                         tmpdir=tempfile.mkdtemp(prefix="sluice-", dir=base))
    try:
        srv.start()
        t0 = time.perf_counter()
        smtp_source(srv.port, MESSAGES)
        wait_for(lambda: not srv.queue_files() and sluice_sent(srv) >= MESSAGES, DEADLINE,
                 "sluice queue empty", srv.proc)
        elapsed = time.perf_counter() - t0
        wait_for(lambda: sink.count() >= MESSAGES, 30, "smtp-sink count")
        check(sink.count(), sluice_sent(srv), "sluice")
        time.sleep(0.5)
        return {"rate": MESSAGES / elapsed, "seconds": elapsed, "connections": sink.sessions()}
    except Exception:
        keep_evidence(srv, "sluice-e2e")
        raise
    finally:
        srv.stop()
        sink.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)


def check(at_sink, sent_lines, who):
    if at_sink != MESSAGES:
        raise RuntimeError(f"{who}: smtp-sink counted {at_sink} messages, want {MESSAGES}")
    if sent_lines != MESSAGES:
        raise RuntimeError(f"{who}: {sent_lines} status=sent log lines, want {MESSAGES}")


# ---------------------------------------------------------------------------
# Postfix

class Postfix(PostfixPeer):
    """tests/integration/peers.py's private Postfix, relaying to smtp-sink."""

    def __init__(self, base, relay_port, hold):
        super().__init__(relay_to=relay_port, hold=hold,
                         tmpdir=tempfile.mkdtemp(prefix="postfix-", dir=base),
                         extra={"myhostname": "postfix.test.example",
                                "smtp_tls_security_level": "none"})

    def sent(self):
        return len(re.findall(r"postfix/smtp\[\d+\]: .* status=sent", self.log()))


def run_postfix_outbound(base):
    sink = Sink(base)
    pf = Postfix(base, sink.port, hold=True)
    try:
        pf.start()
        fill = smtp_source(pf.port, MESSAGES)
        wait_for(lambda: pf.queue_count("hold") >= MESSAGES, 120, "postfix hold queue filled")
        t0 = time.perf_counter()
        pf.cmd("/usr/sbin/postsuper", "-c", pf.etc, "-H", "ALL")
        pf.cmd("/usr/sbin/postqueue", "-c", pf.etc, "-f")
        wait_for(lambda: pf.queue_count() == 0, DEADLINE, "postfix queue empty")
        elapsed = time.perf_counter() - t0
        wait_for(lambda: sink.count() >= MESSAGES and pf.sent() >= MESSAGES, 30,
                 "smtp-sink count and postfix log")
        check(sink.count(), pf.sent(), "postfix")
        time.sleep(0.5)
        return {"rate": MESSAGES / elapsed, "seconds": elapsed, "fill_rate": MESSAGES / fill,
                "connections": sink.sessions()}
    finally:
        pf.stop()
        sink.stop()
        shutil.rmtree(pf.dir, ignore_errors=True)


def run_postfix_e2e(base):
    sink = Sink(base)
    pf = Postfix(base, sink.port, hold=False)
    try:
        pf.start()
        t0 = time.perf_counter()
        smtp_source(pf.port, MESSAGES)
        wait_for(lambda: pf.queue_count() == 0 and pf.sent() >= MESSAGES, DEADLINE,
                 "postfix queue empty")
        elapsed = time.perf_counter() - t0
        wait_for(lambda: sink.count() >= MESSAGES, 30, "smtp-sink count")
        check(sink.count(), pf.sent(), "postfix")
        time.sleep(0.5)
        return {"rate": MESSAGES / elapsed, "seconds": elapsed, "connections": sink.sessions()}
    finally:
        pf.stop()
        sink.stop()
        shutil.rmtree(pf.dir, ignore_errors=True)


# ---------------------------------------------------------------------------

def main():
    if not os.path.exists(SLUICE_BIN):
        sys.exit(f"bench: {SLUICE_BIN} missing; run make build/sluice")
    if os.geteuid() != 0:
        sys.exit("bench: needs root (private Postfix instance, smtp-sink -u nobody)")
    base = tempfile.mkdtemp(prefix="bench-delivery-")
    os.chmod(base, 0o755)
    pf_version = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                                capture_output=True, text=True).stdout.strip()
    log(f"bench_delivery: {RUNS} runs x {MESSAGES} messages of {MSG_LEN} bytes, "
        f"{SESSIONS} smtp-source sessions; sluice {SLUICE_BIN}; Postfix {pf_version}")
    log("load: " + " ".join(smtp_source_cmd("PORT", MESSAGES)))
    parts = {"a": ("outbound only (queued -> smtp-sink)", run_sluice_outbound,
                   run_postfix_outbound),
             "b": ("end to end (smtp-source -> MTA -> smtp-sink)", run_sluice_e2e,
                   run_postfix_e2e)}
    results = {}
    try:
        for key in PARTS:
            title, fs, fp = parts[key]
            log(f"\n({key}) {title}")
            res = {"sluice": [], "postfix": []}
            for i in range(RUNS):
                order = [("sluice", fs), ("postfix", fp)]
                if i % 2:
                    order.reverse()
                line = []
                for name, fn in order:
                    r = fn(base)
                    res[name].append(r)
                    extra = f", filled at {r['fill_rate']:.0f}/s" if "fill_rate" in r else ""
                    extra += f", {r['connections']} conns"
                    line.append(f"{name} {r['rate']:8.1f} msg/s ({r['seconds']:.1f}s{extra})")
                log(f"  run {i + 1}: " + "; ".join(line))
            ms = statistics.median(r["rate"] for r in res["sluice"])
            mp = statistics.median(r["rate"] for r in res["postfix"])
            log(f"  median: sluice {ms:.1f} msg/s, Postfix {mp:.1f} msg/s, ratio {ms / mp:.2f} "
                f"(target >= 3)")
            results[key] = {"title": title, "runs": res, "median_sluice": ms,
                            "median_postfix": mp, "ratio": ms / mp}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as f:
            json.dump({"messages": MESSAGES, "runs": RUNS, "sessions": SESSIONS,
                       "postfix": pf_version, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
