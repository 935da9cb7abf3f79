#!/usr/bin/env bash
# Cost of recording synchronization operations, and of analysing them.
#
# Records fixtures/pthread_mutex_loop.c (2 threads x N uncontended
# lock/unlock pairs, default N=500000) with lockstep's in-process agent, and
# runs the same program natively and under valgrind's helgrind and drd, all
# in this one run; then times `lockstep report` on the trace. Prints the
# times, the ratios, and the cost per recorded sync op.
#
# Usage: bench/sync_overhead.sh [N]      (LOCKSTEP=/path/to/lockstep to skip the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-500000}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
gcc -g -O0 -pthread -o target/bench-fixtures/pthread_mutex_loop fixtures/pthread_mutex_loop.c
PROG=(target/bench-fixtures/pthread_mutex_loop "$N")
TRACE=/tmp/lockstep-sync-bench.db

echo "machine: nproc=$(nproc) kernel=$(uname -r); program: pthread_mutex_loop $N (2 threads)"
native=$(secs "${PROG[@]}")
lockstep=$(secs "$LOCKSTEP" record -q --force -o "$TRACE" -- "${PROG[@]}")
ops=$(sqlite3 "$TRACE" 'select count(*) from sync_rows')
report=$(secs "$LOCKSTEP" report "$TRACE")
helgrind=$(secs valgrind --tool=helgrind "${PROG[@]}")
drd=$(secs valgrind --tool=drd "${PROG[@]}")
printf "%-22s %9s\n" native "$native" "lockstep record" "$lockstep" helgrind "$helgrind" drd "$drd" "lockstep report" "$report"
echo "sync ops recorded: $ops"
awk -v t="$lockstep" -v n="$native" -v ops="$ops" 'BEGIN { printf "record cost per sync op: %.2f us (amortized, native time removed)\n", (t - n) * 1e6 / ops }'
awk -v t="$report" -v ops="$ops" 'BEGIN { printf "report time per 1M sync ops: %.2f s\n", t * 1e6 / ops }'
echo "lockstep/helgrind: $(ratio "$lockstep" "$helgrind")   lockstep/drd: $(ratio "$lockstep" "$drd")   lockstep/native: $(ratio "$lockstep" "$native")"
rm -f "$TRACE"
