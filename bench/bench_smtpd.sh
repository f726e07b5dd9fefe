#!/bin/bash
# bench_smtpd.sh - inbound SMTP: sluice vs Debian's Postfix under the same
# smtp-source load (median of alternating runs), plus sluice's memory with
# 5,000 idle sessions. Details and knobs in bench/bench_smtpd.py.
#
#   bash bench/bench_smtpd.sh                       # 5 runs x 10,000 messages
#   BENCH_RUNS=3 BENCH_MESSAGES=2000 bash bench/bench_smtpd.sh   # quick try
set -euo pipefail
cd "$(dirname "$0")/.."
flock /tmp/sluice-build.lock make -s build/sluice
exec /usr/bin/python3 bench/bench_smtpd.py "$@"
