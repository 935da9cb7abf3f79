#!/usr/bin/env bash
# Cost of capturing memory accesses with the agent's instrumentation.
#
# Runs bench/mem_loop.c (2 threads sweeping private arrays: R rounds x 4096
# elements, ~9 memory instructions per element at -O0) natively, under
# `lockstep record --mem off` and `--mem agent`, under valgrind's helgrind
# and under ThreadSanitizer (the same source built with
# -fsanitize=thread), all in this one run; prints the times, the ratios,
# and lockstep's cost per loop iteration and per memory instruction.
#
# Usage: bench/mem_overhead.sh [R]     (LOCKSTEP=/path/to/lockstep to skip the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
R="${1:-2000}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
gcc -g -O0 -pthread -o target/bench-fixtures/mem_loop bench/mem_loop.c
gcc -g -O0 -pthread -fsanitize=thread -o target/bench-fixtures/mem_loop_tsan bench/mem_loop.c
PROG=(target/bench-fixtures/mem_loop "$R")
TRACE=/tmp/lockstep-mem-bench.db

# Memory instructions per element, counted in the loop's own code.
per_elem=$(objdump -d --no-show-raw-insn target/bench-fixtures/mem_loop |
    awk '/<worker>:/{f=1} f&&/^$/{f=0} f' | grep -cE '\(%r(bp|ax|dx|ip)\)|-0x[0-9a-f]+\(%rbp\)' || true)
iters=$((2 * R * 4096))
echo "machine: nproc=$(nproc) kernel=$(uname -r); program: mem_loop $R (2 threads, $iters loop iterations)"
native=$(secs "${PROG[@]}")
off=$(secs "$LOCKSTEP" record -q --force --mem off -o "$TRACE" -- "${PROG[@]}")
agent=$(secs "$LOCKSTEP" record -q --force --mem agent -o "$TRACE" -- "${PROG[@]}")
accesses=$(sqlite3 "$TRACE" 'select coalesce(sum(count),0) from mem_batches')
report=$(secs "$LOCKSTEP" report "$TRACE")
helgrind=$(secs valgrind --tool=helgrind "${PROG[@]}")
tsan=$(secs target/bench-fixtures/mem_loop_tsan "$R")
printf "%-26s %9s\n" native "$native" "lockstep record --mem off" "$off" "lockstep record --mem agent" "$agent" \
    "lockstep report" "$report" helgrind "$helgrind" "tsan (-fsanitize=thread)" "$tsan"
echo "accesses stored (deduplicated per segment): $accesses"
echo "lockstep --mem agent / native:   $(ratio "$agent" "$native")"
echo "lockstep --mem agent / helgrind: $(ratio "$agent" "$helgrind")"
echo "lockstep --mem agent / tsan:     $(ratio "$agent" "$tsan")"
awk -v a="$agent" -v o="$off" -v n="$iters" -v p="$per_elem" 'BEGIN {
    printf "capture cost: %.1f ns per loop iteration", (a - o) * 1e9 / n
    if (p > 0) printf ", ~%.1f ns per memory instruction (%d per iteration in worker)", (a - o) * 1e9 / n / p, p
    printf "\n" }'
