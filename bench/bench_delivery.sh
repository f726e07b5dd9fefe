#!/bin/bash
# bench_delivery.sh - outbound delivery: sluice vs Debian's Postfix, both
# relaying to smtp-sink on loopback (median of alternating runs):
#   (a) outbound only: a full queue (10,000 x 5 KB) drained to smtp-sink
#   (b) end to end: smtp-source -> MTA -> smtp-sink
# Details and knobs in bench/bench_delivery.py.
#
#   bash bench/bench_delivery.sh                                  # 5 runs x 10,000
#   BENCH_RUNS=3 BENCH_MESSAGES=2000 bash bench/bench_delivery.sh # quick try
#   BENCH_PARTS=a bash bench/bench_delivery.sh                    # outbound only
set -euo pipefail
cd "$(dirname "$0")/.."
flock /tmp/sluice-build.lock make -s build/sluice
exec /usr/bin/python3 bench/bench_delivery.py "$@"
