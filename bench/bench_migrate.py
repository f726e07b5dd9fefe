"""bench_migrate.py - the figures behind bench_migrate.sh (see there).

Each run copies the same source user into a fresh, empty destination user,
once with sluice and once with mbsync, and times the whole command (connect
to exit). Environment: BENCH_RUNS (default 5), BENCH_MESSAGES (default
5000), BENCH_FSYNC (Dovecot mail_fsync, default "optimized"),
SLUICE_BIN (default build/sluice).
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests/integration"))
import dovecot  # noqa: E402
import mailfixture  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "5000"))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build/sluice"))
FOLDERS = ["INBOX", "Archive", "Work", "Lists", "Receipts"]

MBSYNC_CONF = """\
IMAPAccount src
Host 127.0.0.1
Port {port}
User src
PassCmd "cat {srcpass}"
SSLType None
AuthMechs PLAIN

IMAPStore src
Account src

IMAPAccount dst
Host 127.0.0.1
Port {port}
User {dst}
PassCmd "cat {dstpass}"
SSLType None
AuthMechs PLAIN

IMAPStore dst
Account dst

Channel mig
Far :src:
Near :dst:
Patterns *
Create Near
Sync Pull
CopyArrivalDate yes
SyncState {state}/
"""


def fixture(server):
    w = mailfixture.MaildirWriter(server, "src")
    per = MESSAGES // len(FOLDERS)
    for f in FOLDERS:
        for i in range(per):
            data = mailfixture.message(i, f)
            pad = b"X-Pad: " + b"p" * 70 + b"\n"
            head, body = data.split(b"\n\n", 1)
            filler = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2
                      + b"\n") * 80
            data = head + b"\n" + pad + b"\n" + body + filler[: 10240 - len(data)]
            w.add(f, data, ["\\Seen"] if i % 3 else [])
    w.done()
    return per * len(FOLDERS)


def reset(server, user):
    path = os.path.join(server.dir, "mail", user)
    shutil.rmtree(path, ignore_errors=True)


def count(server, user):
    n = 0
    for root, dirs, files in os.walk(os.path.join(server.dir, "mail", user)):
        if os.path.basename(root) in ("cur", "new"):
            n += len(files)
    return n


def run_sluice(server, tmp):
    reset(server, "dst1")
    state = os.path.join(tmp, "sluice.state")
    if os.path.exists(state):
        os.unlink(state)
    cmd = [SLUICE, "migrate", "--host1", "127.0.0.1", "--port1", str(server.ports["imap"]),
           "--user1", "src", "--passfile1", server.passfile("src"), "--host2", "127.0.0.1",
           "--port2", str(server.ports["imap"]), "--user2", "dst1",
           "--passfile2", server.passfile("dst1"), "--statefile", state, "--noprogress",
           "--json"]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    el = time.monotonic() - t
    if p.returncode != 0:
        raise RuntimeError("sluice failed: " + p.stdout + p.stderr)
    return el, count(server, "dst1"), cmd


def run_mbsync(server, tmp):
    reset(server, "dst2")
    state = os.path.join(tmp, "mbsync-state")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    conf = os.path.join(tmp, "mbsyncrc")
    with open(conf, "w") as f:
        f.write(MBSYNC_CONF.format(port=server.ports["imap"], srcpass=server.passfile("src"),
                                   dst="dst2", dstpass=server.passfile("dst2"), state=state))
    cmd = ["mbsync", "-c", conf, "-q", "-a"]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    el = time.monotonic() - t
    if p.returncode != 0:
        raise RuntimeError("mbsync failed: " + p.stdout + p.stderr)
    return el, count(server, "dst2"), cmd


def main():
    server = dovecot.Dovecot({"src": "s", "dst1": "d1", "dst2": "d2"},
                             fsync=os.environ.get("BENCH_FSYNC", "optimized"), auto="no",
                             tag="bench")
    tmp = os.path.join(server.dir, "bench")
    os.makedirs(tmp)
    try:
        server.start()
        n = fixture(server)
        times = {"sluice": [], "mbsync": []}
        for r in range(RUNS):
            for name, fn in (("sluice", run_sluice), ("mbsync", run_mbsync)):
                el, copied, cmd = fn(server, tmp)
                if copied != n:
                    raise RuntimeError(f"{name} copied {copied} of {n}")
                times[name].append(el)
                print(f"run {r + 1}: {name:7s} {el:6.2f} s  {n / el:7.0f} msg/s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{n} messages of ~10 KB in {len(FOLDERS)} folders, median of {RUNS}:")
        for k in ("sluice", "mbsync"):
            print(f"  {k:7s} {med[k]:6.2f} s  {n / med[k]:7.0f} msg/s")
        print(f"  speed-up: {med['mbsync'] / med['sluice']:.2f}x")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
