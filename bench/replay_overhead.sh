#!/usr/bin/env bash
# Cost of replaying: native vs `lockstep record` vs `lockstep replay` and
# `replay --verify`, in one run, on a syscall-heavy loop (every call is a
# ptrace stop in both directions), a shell pipeline (forks, execs, pipes,
# file mappings redone by injection) and a threaded program; with the ptrace
# stops per recorded syscall the replay took.
#
# Usage: bench/replay_overhead.sh [N]     (N getppid calls, default 100000;
#                                          LOCKSTEP=/path/to/lockstep skips the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-100000}"
. bench/lib.sh
lockstep_bin
mkdir -p target/bench-fixtures
for f in syscall_loop counter_locked; do
    gcc -g -O0 -pthread -o "target/bench-fixtures/$f" "fixtures/$f.c"
done
TRACE=/tmp/lockstep-replay-bench.db
echo "machine: nproc=$(nproc) kernel=$(uname -r)"
printf "%-34s %9s %9s %9s %9s %s\n" program native record replay verify "stops/syscall  replay/record"
run() {
    local name="$1"; shift
    local native record replay verify calls stops
    native=$(secs "$@")
    record=$(secs "$LOCKSTEP" record -q --force -o "$TRACE" -- "$@")
    replay=$(secs "$LOCKSTEP" replay "$TRACE")
    verify=$(secs "$LOCKSTEP" replay --verify "$TRACE")
    calls=$(sqlite3 "$TRACE" 'select count(*) from syscall_rows')
    stops=$("$LOCKSTEP" replay --verify "$TRACE" 2>&1 >/dev/null | sed -n 's/.*; \([0-9]*\) ptrace stops.*/\1/p')
    printf "%-34s %9s %9s %9s %9s %s  %s\n" "$name" "$native" "$record" "$replay" "$verify" \
        "$(awk -v s="${stops:-0}" -v c="$calls" 'BEGIN { printf "%.2f", s / c }')" "$(ratio "$replay" "$record")"
}
run "syscall_loop $N" target/bench-fixtures/syscall_loop "$N"
run "seq 1 100000 | sort -rn | head -3" sh -c 'seq 1 100000 | sort -rn | head -3'
run "counter_locked (2 threads)" target/bench-fixtures/counter_locked
rm -f "$TRACE"
