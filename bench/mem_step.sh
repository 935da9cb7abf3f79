#!/usr/bin/env bash
# Cost of `--mem=step`, the reference mechanism of memory-access recording
# (single-stepping the executable's code, one ptrace stop per instruction).
#
# Records fixtures/counter_race.c (2 threads x N unlocked `counter++`,
# default N=2000) with `--mem step` and prints, from the trace's meta:
# instructions stepped (`mem_step_steps`), memory accesses executed by the
# stepped code (`mem_step_executed`, before the per-segment deduplication),
# all ptrace stops (`stops`), and per access executed: stops, and recording
# time (native time removed). Also the time per single-step.
#
# Usage: bench/mem_step.sh [N]      (LOCKSTEP=/path/to/lockstep to skip the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-2000}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
BIN=target/bench-fixtures/counter_race
gcc -g -O0 -pthread -o "$BIN" fixtures/counter_race.c
TRACE=/tmp/lockstep-mem-step-bench.db

echo "machine: nproc=$(nproc) kernel=$(uname -r); program: counter_race $N (2 threads, -O0)"
native=$(secs "$BIN" "$N")
plain=$(secs "$LOCKSTEP" record -q --force --mem off -o "$TRACE" -- "$BIN" "$N")
rec=$(secs "$LOCKSTEP" record -q --force --mem step -o "$TRACE" -- "$BIN" "$N")
meta() { sqlite3 "$TRACE" "select value from meta where key = '$1'"; }
steps=$(meta mem_step_steps)
executed=$(meta mem_step_executed)
stored=$(meta mem_step_accesses)
segments=$(meta mem_step_segments)
stops=$(meta stops)
printf "%-28s %9s s\n" native "$native" "lockstep record --mem off" "$plain" "lockstep record --mem step" "$rec"
echo "stepped instructions: $steps; accesses executed: $executed (stored after dedup: $stored in $segments segments); stops: $stops"
awk -v st="$stops" -v sp="$steps" -v a="$executed" -v t="$rec" -v p="$plain" 'BEGIN {
    printf "stops per access: %.2f; steps per access: %.2f\n", st / a, sp / a
    printf "us per access: %.1f; us per step: %.1f (time of --mem off removed)\n", (t - p) * 1e6 / a, (t - p) * 1e6 / sp }'
rm -f "$TRACE"
