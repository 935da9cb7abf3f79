#!/usr/bin/env bash
# Cost of the breakpoint (ptrace) path of sync recording.
#
# Records fixtures/pthread_mutex_loop.c built -static (2 threads x N
# uncontended lock/unlock pairs, default N=20000): a static binary cannot
# load the agent, so every op comes from int3 breakpoints. Prints the ptrace
# stops per recorded sync op (from the trace's meta `stops`, which counts
# every stop including single-steps, and `sync_ptrace_traps`, the
# breakpoint traps alone) and the recording time per op.
#
# Usage: bench/sync_ptrace.sh [N]      (LOCKSTEP=/path/to/lockstep to skip the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-20000}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
BIN=target/bench-fixtures/pthread_mutex_loop_static
gcc -g -O0 -pthread -static -o "$BIN" fixtures/pthread_mutex_loop.c
TRACE=/tmp/lockstep-sync-ptrace-bench.db

echo "machine: nproc=$(nproc) kernel=$(uname -r); program: pthread_mutex_loop $N (2 threads, -static)"
native=$(secs "$BIN" "$N")
rec=$(secs "$LOCKSTEP" record -q --force -o "$TRACE" -- "$BIN" "$N")
ops=$(sqlite3 "$TRACE" 'select count(*) from sync_rows')
meta() { sqlite3 "$TRACE" "select value from meta where key = '$1'"; }
stops=$(meta stops)
traps=$(meta sync_ptrace_traps)
steps=$(meta sync_ptrace_steps)
calls=$(meta sync_ptrace_calls)
printf "%-22s %9s\n" native "$native" "lockstep record" "$rec"
echo "sync ops recorded: $ops (calls: $calls); stops: $stops (breakpoint traps: $traps, single-steps: $steps)"
awk -v s="$stops" -v t="$traps" -v ops="$ops" -v c="$calls" 'BEGIN {
    printf "stops per sync op: %.2f (all stops) / %.2f (breakpoint traps); traps per call: %.2f\n", s / ops, t / ops, t / c }'
awk -v t="$rec" -v n="$native" -v ops="$ops" 'BEGIN { printf "record cost per sync op: %.2f us (native time removed)\n", (t - n) * 1e6 / ops }'
rm -f "$TRACE"
