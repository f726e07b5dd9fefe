#!/bin/bash
# bench_report.sh - `sluice report` vs pflogsumm on the same 1,000,000-line
# Postfix log (written by bench/gen_postfix_log.py in Postfix's real line
# formats), in the same run: wall time and peak RSS from /usr/bin/time -v,
# median of BENCH_RUNS runs (default 5). Figures go to stdout as a Markdown
# table; docs/benchmarks.md records them under "sluice report vs pflogsumm".
#
#   BENCH_RUNS=1 BENCH_LINES=200000 bash bench/bench_report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-5}
LINES=${BENCH_LINES:-1000000}
SLUICE=${SLUICE_BIN:-build/sluice}
DIR=build/bench
LOG=$DIR/maillog-$LINES
mkdir -p "$DIR"
[ -x "$SLUICE" ] || make -s build/sluice
command -v pflogsumm >/dev/null || { echo "bench_report: pflogsumm missing (scripts/deps.sh)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_report: /usr/bin/time missing (Debian package 'time')"; exit 1; }
if [ ! -s "$LOG" ]; then
    echo "generating $LOG ($LINES lines)..." >&2
    /usr/bin/python3 bench/gen_postfix_log.py --lines "$LINES" --seed 1 > "$LOG.tmp"
    mv "$LOG.tmp" "$LOG"
fi

# run CMD...: one measured run; prints "wall_seconds max_rss_kb cpu_seconds"
run() {
    local err
    err=$(mktemp)
    /usr/bin/time -v "$@" > /dev/null 2> "$err"
    local wall rss usr sys
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$err")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$err")
    usr=$(sed -n 's/.*User time (seconds): //p' "$err")
    sys=$(sed -n 's/.*System time (seconds): //p' "$err")
    rm -f "$err"
    /usr/bin/python3 -c 'import sys
p = sys.argv[1].split(":")
s = sum(float(x) * 60 ** i for i, x in enumerate(reversed(p)))
print("%.3f %s %.3f" % (s, sys.argv[2], float(sys.argv[3]) + float(sys.argv[4])))' \
        "$wall" "$rss" "$usr" "$sys"
}

declare -a S P
for i in $(seq 1 "$RUNS"); do
    S+=("$(run "$SLUICE" report "$LOG")")
    P+=("$(run pflogsumm "$LOG")")
done

# the two must agree on the totals they both report
"$SLUICE" report --json "$LOG" > "$DIR/sluice.json"
pflogsumm "$LOG" > "$DIR/pflogsumm.txt"

/usr/bin/python3 - "$LOG" "$RUNS" "$DIR/sluice.json" "$DIR/pflogsumm.txt" "${S[@]}" -- "${P[@]}" <<'PY'
import json, re, statistics, sys
log, runs, sj, pt = sys.argv[1:5]
rest = sys.argv[5:]
cut = rest.index("--")
s = [tuple(map(float, x.split())) for x in rest[:cut]]
p = [tuple(map(float, x.split())) for x in rest[cut + 1:]]
med = lambda v, i: statistics.median(x[i] for x in v)
sw, sr, sc = med(s, 0), med(s, 1), med(s, 2)
pw, pr, pc = med(p, 0), med(p, 1), med(p, 2)
lines = sum(1 for _ in open(log, "rb"))
load = open("/proc/loadavg").read().split()[0]
print("| tool | wall (median of %s) | CPU user+sys (median) | peak RSS (median) |" % runs)
print("|---|---|---|---|")
print("| sluice report | %.3f s | %.3f s | %.1f MiB |" % (sw, sc, sr / 1024))
print("| pflogsumm | %.3f s | %.3f s | %.1f MiB |" % (pw, pc, pr / 1024))
print()
print("%d lines, load average %s at the end; sluice is %.1fx faster (wall), "
      "%.1fx less CPU, %.1fx less memory (target: at least 20x faster, no more "
      "memory)" % (lines, load, pw / sw, pc / sc, pr / sr))
d = json.load(open(sj))["totals"]
txt = open(pt).read()
def num(label):
    m = re.search(r"^\s*(\d+)([km]?)\s+%s\b" % label, txt, re.M)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1048576}[m.group(2)]
for k in ("received", "delivered", "deferred", "bounced", "rejected"):
    if d[k] != num(k) and num(k) < 10000:
        print("MISMATCH %s: sluice %d, pflogsumm %d" % (k, d[k], num(k)))
        sys.exit(1)
print("totals agree: " + ", ".join("%s %d" % (k, d[k]) for k in
      ("received", "delivered", "deferred", "bounced", "rejected")))
PY
