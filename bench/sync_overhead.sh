#!/usr/bin/env bash
# Cost of recording synchronization operations, and of analysing them.
#
# Records fixtures/pthread_mutex_loop.c (2 threads x N uncontended
# lock/unlock pairs, default N=500000) with lockstep's in-process agent
# twice: `--mem off` (sync ops only) and the default (`--mem auto`: memory
# accesses for the race detector too, a segment per sync op), and runs the
# same program natively and under valgrind's helgrind and drd, all in this
# one run; then times `lockstep report` on the default trace. Prints the
# times, the ratios, the cost per recorded sync op of each mode and the
# recorder's peak RSS.
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
# rss CMD...: peak RSS (MB) as GNU time reports it (the largest of CMD and its children).
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null </dev/null | tail -1 | awk '{ printf "%.0f", $1 / 1024 }'; }
off=$(secs "$LOCKSTEP" record -q --force --mem off -o "$TRACE" -- "${PROG[@]}")
ops=$(sqlite3 "$TRACE" 'select count(*) from sync_rows')
off_rss=$(rss "$LOCKSTEP" record -q --force --mem off -o "$TRACE" -- "${PROG[@]}")
dflt=$(secs "$LOCKSTEP" record -q --force -o "$TRACE" -- "${PROG[@]}")
dflt_ops=$(sqlite3 "$TRACE" 'select count(*) from sync_rows')
report=$(secs "$LOCKSTEP" report "$TRACE")
dflt_rss=$(rss "$LOCKSTEP" record -q --force -o "$TRACE.2" -- "${PROG[@]}")
rm -f "$TRACE.2"
helgrind=$(secs valgrind --tool=helgrind "${PROG[@]}")
drd=$(secs valgrind --tool=drd "${PROG[@]}")
printf "%-30s %9s\n" native "$native" "lockstep record --mem off" "$off" "lockstep record (default)" "$dflt" \
    helgrind "$helgrind" drd "$drd" "lockstep report (default)" "$report"
echo "sync ops recorded: $ops (--mem off), $dflt_ops (default)"
per_op() { awk -v t="$1" -v n="$native" -v ops="$2" 'BEGIN { printf "%.2f", (t - n) * 1e6 / ops }'; }
echo "--mem off: $(per_op "$off" "$ops") us/op   lockstep/helgrind: $(ratio "$off" "$helgrind")   lockstep/drd: $(ratio "$off" "$drd")   peak RSS ${off_rss} MB"
echo "default:   $(per_op "$dflt" "$dflt_ops") us/op   lockstep/helgrind: $(ratio "$dflt" "$helgrind")   lockstep/drd: $(ratio "$dflt" "$drd")   peak RSS ${dflt_rss} MB"
echo "(us/op: amortized, native time removed)"
awk -v t="$report" -v ops="$dflt_ops" 'BEGIN { printf "report time per 1M sync ops: %.2f s\n", t * 1e6 / ops }'
rm -f "$TRACE"
