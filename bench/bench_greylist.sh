#!/bin/bash
# bench_greylist.sh - Greylisting policy: sluice vs postgrey.
#
# The same deterministic request stream (bench/policy_load.c) goes to
# `sluice policy` (release build, LMDB store, SPF through a local dnsmasq)
# and to postgrey (Debian, default options, its own BerkeleyDB), in the same
# run, with 1 and 8 persistent connections, new and repeated triplets.
# Each case runs BENCH_RUNS times (default 3), alternating which service
# goes first; every run of a `new` case gets its own triplets (an offset in
# the request stream), so no case re-sends what an earlier one stored.
# Prints decisions/s and p50/p99 latency per run, then per case the median
# rates and the ratio; figures and the command are recorded in
# docs/benchmarks.md ("Greylisting policy: sluice vs postgrey"). Everything
# runs on 127.0.0.1 and stops by itself.
#
# usage: bench/bench_greylist.sh [REQUESTS_SLUICE] [REQUESTS_POSTGREY]
set -euo pipefail
cd "$(dirname "$0")/.."
N_SLUICE=${1:-40000}
N_POSTGREY=${2:-4000}
MAX_SECONDS=${BENCH_MAX_SECONDS:-30}
RUNS=${BENCH_RUNS:-3}

make -s build/sluice
cc -O2 -std=c17 -D_GNU_SOURCE -pthread -o build/policy_load bench/policy_load.c

TMP=$(mktemp -d /tmp/sluice-bench-gl-XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    # postgrey (Net::Server) may linger after SIGTERM: make sure
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2; exit 1
}

DNS_PORT=$(port)
/usr/sbin/dnsmasq --no-daemon --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --conf-file=/dev/null --local=/test/ --local=/in-addr.arpa/ \
    --txt-record=bench.test,"v=spf1 ip4:127.40.0.0/16 -all" >"$TMP/dnsmasq.log" 2>&1 &
PIDS+=($!)

SL_PORT=$(port)
cat >"$TMP/sluice.conf" <<CONF
spool_dir = $TMP/spool
maillog_file = ${BENCH_SLUICE_LOG:-$TMP/sluice.log}
myhostname = mx.bench.test
mynetworks = 127.0.0.1/32
dns_resolver = 127.0.0.1@$DNS_PORT
CONF
./build/sluice policy -c "$TMP/sluice.conf" --listen 127.0.0.1:"$SL_PORT" 2>"$TMP/sluice.err" &
PIDS+=($!)

PG_PORT=$(port)
mkdir -p "$TMP/pgdb" && chown postgrey:postgrey "$TMP/pgdb"
/usr/sbin/postgrey --inet=127.0.0.1:"$PG_PORT" --dbdir="$TMP/pgdb" --pidfile="$TMP/pg.pid" \
    >"$TMP/postgrey.log" 2>&1 &
PIDS+=($!)
wait_port "$SL_PORT"
wait_port "$PG_PORT"

echo "sluice $(./build/sluice version | cut -d' ' -f2) vs postgrey $(dpkg-query -W -f='${Version}' postgrey 2>/dev/null); $(nproc) CPUs"
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
rate_of() { sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p'; }
case_no=0
for conns in 1 8; do
    for mode in new repeat; do
        case_no=$((case_no + 1))
        : >"$TMP/sl.$case_no"; : >"$TMP/pg.$case_no"
        for run in $(seq 1 "$RUNS"); do
            offset=$(( (run * 4 + case_no) * 10000000 ))
            sl() { ./build/policy_load 127.0.0.1 "$SL_PORT" "$conns" "$N_SLUICE" "$mode" "$MAX_SECONDS" sluice "$offset" | tee -a "$TMP/sl.$case_no"; }
            pg() { ./build/policy_load 127.0.0.1 "$PG_PORT" "$conns" "$N_POSTGREY" "$mode" "$MAX_SECONDS" postgrey "$offset" | tee -a "$TMP/pg.$case_no"; }
            if [ $((run % 2)) -eq 1 ]; then sl; pg; else pg; sl; fi
        done
    done
done
echo "medians of $RUNS runs:"
case_no=0
for conns in 1 8; do
    for mode in new repeat; do
        case_no=$((case_no + 1))
        s=$(rate_of <"$TMP/sl.$case_no" | median)
        p=$(rate_of <"$TMP/pg.$case_no" | median)
        awk -v c="$conns" -v m="$mode" -v s="$s" -v p="$p" 'BEGIN {
            printf "  conns=%s mode=%-6s sluice %6d/s  postgrey %5d/s  ratio %.1fx\n", c, m, s, p, s / p }'
    done
done
