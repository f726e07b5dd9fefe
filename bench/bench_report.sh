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

# run NAME CMD...: one measured run; prints "seconds kilobytes"
run() {
    local err
    err=$(mktemp)
    /usr/bin/time -v "$@" > /dev/null 2> "$err"
    local wall rss
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$err")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$err")
    rm -f "$err"
    /usr/bin/python3 -c 'import sys
p = sys.argv[1].split(":")
s = sum(float(x) * 60 ** i for i, x in enumerate(reversed(p)))
print("%.3f %s" % (s, sys.argv[2]))' "$wall" "$rss"
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
sw, sr = statistics.median(x[0] for x in s), statistics.median(x[1] for x in s)
pw, pr = statistics.median(x[0] for x in p), statistics.median(x[1] for x in p)
lines = sum(1 for _ in open(log, "rb"))
print("| tool | wall (median of %s) | peak RSS (median) |" % runs)
print("|---|---|---|")
print("| sluice report | %.3f s | %.1f MiB |" % (sw, sr / 1024))
print("| pflogsumm | %.3f s | %.1f MiB |" % (pw, pr / 1024))
print()
print("%d lines; sluice is %.1fx faster and uses %.1fx less memory "
      "(target: at least 20x faster, no more memory)" % (lines, pw / sw, pr / sr))
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
