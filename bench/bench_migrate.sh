#!/bin/bash
# bench_migrate.sh - `sluice migrate` vs mbsync (Debian isync) on the same
# data in the same run: 5,000 messages of about 10 KB in 5 folders between
# two users of one private Dovecot on loopback; median of BENCH_RUNS runs
# (default 5). Figures and the exact command: docs/benchmarks.md,
# "sluice migrate vs mbsync".
set -e
cd "$(dirname "$0")/.."
[ -x build/sluice ] || make -s build/sluice
command -v mbsync >/dev/null || { echo "bench_migrate: mbsync missing (apt-get install isync)"; exit 1; }
exec /usr/bin/python3 bench/bench_migrate.py "$@"
