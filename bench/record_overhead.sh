#!/usr/bin/env bash
# Recording overhead: native vs `strace -f` vs `lockstep record`, best of N runs.
#
# Usage: bench/record_overhead.sh
# Environment:
#   LOCKSTEP=/path/to/lockstep   use this binary and skip `cargo build`
#                                (default: build and use target/release/lockstep)
#   RUNS=3                       runs per measurement; the best (minimum) is kept
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

RUNS="${RUNS:-3}"
TRACE=/tmp/lockstep-bench.db
FIXDIR=target/bench-fixtures
ERRLOG="$(mktemp /tmp/lockstep-bench-err.XXXXXX)"
trap 'rm -f "$ERRLOG"' EXIT

if [ -n "${LOCKSTEP:-}" ]; then
    echo "using LOCKSTEP=$LOCKSTEP (skipping cargo build)" >&2
else
    echo "building lockstep (cargo build --release -p lockstep-cli)" >&2
    cargo build --release -p lockstep-cli >&2
    LOCKSTEP="$repo_root/target/release/lockstep"
fi

mkdir -p "$FIXDIR"
for f in syscall_loop pthread_condvar pthread_mutex_loop; do
    gcc -g -O0 -pthread -o "$FIXDIR/$f" "fixtures/$f.c"
done

# best_time CMD...: run CMD $RUNS times (stdout to /dev/null), print the best
# wall time in seconds, or "fail" if any run exits non-zero.
best_time() {
    local best="" start end ns rc
    for _ in $(seq "$RUNS"); do
        start=$(date +%s%N)
        rc=0
        "$@" >/dev/null 2>"$ERRLOG" </dev/null || rc=$?
        end=$(date +%s%N)
        if [ "$rc" -ne 0 ]; then
            echo "  [$1 exited $rc: $(tail -n 1 "$ERRLOG")]" >&2
            echo fail
            return 0
        fi
        ns=$((end - start))
        if [ -z "$best" ] || [ "$ns" -lt "$best" ]; then
            best=$ns
        fi
    done
    awk -v ns="$best" 'BEGIN { printf "%.4f", ns / 1e9 }'
}

# ratio A B: A/B, or n/a if either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) { print "n/a"; exit }
        r = a / b
        printf (r < 0.1 ? "%.4fx" : (r < 10 ? "%.2fx" : "%.1fx")), r }'
}

syscall_rows() {
    local n
    if [ -f "$TRACE" ] && n=$(sqlite3 "$TRACE" 'select count(*) from syscalls' 2>/dev/null); then
        echo "$n"
    else
        echo "n/a"
    fi
}

echo "machine: nproc=$(nproc) kernel=$(uname -r)"
echo "lockstep: $LOCKSTEP   runs: best of $RUNS"
echo
# lockstep binds the tracer and the program to one CPU by default (ptrace
# stops are several times cheaper without cross-CPU wakeups); strace -f does
# not. For a like-for-like figure the table also shows strace -f bound to one
# CPU with taskset, and lockstep unbound (--cpu all).
CPU1=$(( $(nproc) - 1 ))
fmt="%-26s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n"
printf "$fmt" program native_s strace_s strace1_s lockstep_s lk_all_s lk/strace lk/strace1 lk/native syscalls
printf "$fmt" -------------------------- --------- --------- --------- --------- --------- --------- --------- --------- ---------

benches=(
    "syscall_loop 200000"
    "pthread_condvar"
    "pthread_mutex_loop 200000"
)
for bench in "${benches[@]}"; do
    read -r -a cmd <<<"$bench"
    prog=("$FIXDIR/${cmd[0]}" "${cmd[@]:1}")

    native=$(best_time "${prog[@]}")
    strace_t=$(best_time strace -f -o /dev/null "${prog[@]}")
    strace1_t=$(best_time taskset -c "$CPU1" strace -f -o /dev/null "${prog[@]}")
    rm -f "$TRACE" "$TRACE-wal" "$TRACE-shm"
    lock_all_t=$(best_time "$LOCKSTEP" record --cpu all --force -o "$TRACE" -- "${prog[@]}")
    lock_t=$(best_time "$LOCKSTEP" record --force -o "$TRACE" -- "${prog[@]}")
    rows=$(syscall_rows)

    printf "$fmt" "$bench" "$native" "$strace_t" "$strace1_t" "$lock_t" "$lock_all_t" \
        "$(ratio "$lock_t" "$strace_t")" "$(ratio "$lock_t" "$strace1_t")" "$(ratio "$lock_t" "$native")" "$rows"
done
