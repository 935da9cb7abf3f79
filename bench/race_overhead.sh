#!/usr/bin/env bash
# The race detector's cost on a race fixture, against the other race
# checkers, all in this one run.
#
# bench/matmul.c: the exam's threaded ikj matrix multiply with its `&m`
# bug (every thread's arguments in one loop-local struct of main), 4
# threads, 128 x 128 by default, built with -O0 as the course builds it.
# Measured: native; `lockstep record --mem off` (the recording without
# memory capture); `lockstep record --mem agent` (the fast mechanism: the
# agent's instrumentation); `lockstep report` of that trace (the analysis:
# import of nothing more, detector, symbols); valgrind --tool=helgrind; the
# same source built with -fsanitize=thread, run as is and with
# TSAN_OPTIONS=report_bugs=0 (most of tsan's time on this racy program goes
# to its reports). The reference mechanism (`--mem step`, one ptrace stop
# per instruction) is timed on a smaller product (STEP_N, default 16) with
# native and agent times at that size.
#
# Prints each time, the ratios (lockstep record and record + report against
# native, helgrind and tsan) and whether each tool reported the race.
#
# Usage: bench/race_overhead.sh [N] [THREADS]   (STEP_N=16, LOCKSTEP=/path/to/lockstep)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-128}"
T="${2:-4}"
STEP_N="${STEP_N:-16}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
BIN=target/bench-fixtures/matmul
gcc -g -O0 -pthread -o "$BIN" bench/matmul.c
gcc -g -O0 -pthread -fsanitize=thread -o "${BIN}_tsan" bench/matmul.c
TRACE=/tmp/lockstep-race-bench.$$.db
trap 'rm -f "$TRACE" "$TRACE"-* /tmp/lockstep-race-bench.$$.*' EXIT

echo "machine: nproc=$(nproc) kernel=$(uname -r) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "program: matmul $N $T (${T} threads, ${N}x${N} doubles, -O0, the &m race)"
native=$(secs "$BIN" "$N" "$T")
off=$(secs "$LOCKSTEP" record -q --force --mem off -o "$TRACE" -- "$BIN" "$N" "$T")
agent=$(secs "$LOCKSTEP" record -q --force --mem agent -o "$TRACE" -- "$BIN" "$N" "$T")
stored=$(sqlite3 "$TRACE" 'select coalesce(sum(count),0) from mem_batches')
s=$(date +%s%N)
"$LOCKSTEP" report --format json -o /tmp/lockstep-race-bench.$$.json "$TRACE" >/dev/null 2>&1 || true
e=$(date +%s%N)
report=$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')
races=$(grep -o '"kind": *"data_race"' /tmp/lockstep-race-bench.$$.json | wc -l)
s=$(date +%s%N)
valgrind --tool=helgrind "$BIN" "$N" "$T" >/dev/null 2>/tmp/lockstep-race-bench.$$.hg || true
e=$(date +%s%N)
helgrind=$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')
hg_errors=$(grep -o 'ERROR SUMMARY: [0-9]* errors from [0-9]* contexts' /tmp/lockstep-race-bench.$$.hg || echo none)
s=$(date +%s%N)
"${BIN}_tsan" "$N" "$T" >/dev/null 2>/tmp/lockstep-race-bench.$$.ts || true
e=$(date +%s%N)
tsan=$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')
ts_warn=$(grep -o 'reported [0-9]* warnings' /tmp/lockstep-race-bench.$$.ts || echo none)
tsan_quiet=$(TSAN_OPTIONS=report_bugs=0 secs "${BIN}_tsan" "$N" "$T")

printf "%-34s %8s s\n" native "$native" "lockstep record --mem off" "$off" \
    "lockstep record --mem agent" "$agent" "lockstep report (analysis)" "$report" \
    "valgrind --tool=helgrind" "$helgrind" "tsan (-fsanitize=thread)" "$tsan" \
    "tsan, report_bugs=0" "$tsan_quiet"
total=$(awk -v a="$agent" -v r="$report" 'BEGIN { printf "%.3f", a + r }')
echo "lockstep: $stored accesses stored (deduplicated per segment), $races data_race findings;" \
    "helgrind: $hg_errors; tsan: $ts_warn"
echo "record --mem agent / native:    $(ratio "$agent" "$native")"
echo "record --mem agent / helgrind:  $(ratio "$agent" "$helgrind")"
echo "record --mem agent / tsan:      $(ratio "$agent" "$tsan") (report_bugs=0: $(ratio "$agent" "$tsan_quiet"))"
echo "record + report ($total s) / native: $(ratio "$total" "$native"), / helgrind: $(ratio "$total" "$helgrind")," \
    "/ tsan: $(ratio "$total" "$tsan") (report_bugs=0: $(ratio "$total" "$tsan_quiet"))"

# The reference mechanism, on a smaller product.
snative=$(secs "$BIN" "$STEP_N" "$T")
sagent=$(secs "$LOCKSTEP" record -q --force --mem agent -o "$TRACE" -- "$BIN" "$STEP_N" "$T")
sstep=$(secs "$LOCKSTEP" record -q --force --mem step -o "$TRACE" -- "$BIN" "$STEP_N" "$T")
steps=$(sqlite3 "$TRACE" "select value from meta where key = 'mem_step_steps'")
echo "reference mechanism at ${STEP_N}x${STEP_N}: native $snative s, --mem agent $sagent s," \
    "--mem step $sstep s ($steps instructions stepped; step / agent: $(ratio "$sstep" "$sagent"))"
