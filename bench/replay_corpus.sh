#!/usr/bin/env bash
# Replay corpus: the fraction of a corpus of programs that `lockstep record`
# and `lockstep replay --verify` run with identical output and no
# divergence (target 100%), and what a replay costs against its recording
# (target replay / record <= 1.0).
#
# The corpus: every fixtures/*.c (built with `gcc -g -O0 -pthread` plus the
# flags of its `// lockstep-build:` first line, invoked as tests/ invoke
# it), and everyday commands and pipelines run through `sh -c`. Each entry
# is recorded (`lockstep record -q --force`, program stdout and stderr to
# files, stdin /dev/null) and replayed (`lockstep replay --verify`). It
# passes when the replay exits with the recorded status, prints the same
# stdout bytes and the same stderr bytes (lockstep's own `lockstep: ` and
# log lines and a hang's `  thread N blocked in` lines set aside), prints no
# `replay diverged` line and ends with `replay verified`. Fixtures that
# hang are recorded with `--hang-timeout 2` (record exits 124) and must
# replay to the recorded hang (replay exits 124). Every lockstep run is
# under `timeout` (120 s; a hanging fixture's recording 60 s), so a stuck
# recording or replay is a FAIL, not a stuck script.
#
# Prints one line per entry (recorded exit status, record and replay wall
# seconds, replay/record, PASS/FAIL and, on FAIL, the first divergence or
# error), then passed/total and replay/record over the passing entries as
# the ratio of summed times and as the median of the per-entry ratios.
#
# Usage: bench/replay_corpus.sh
#   LOCKSTEP=/path/to/lockstep   the binary to measure (default: a release build here)
#   CORPUS_FILTER=REGEX          only the entries whose name matches (fx/... fixtures, sh/... commands)
#   RECORD_OPTS="--mem off"      extra `lockstep record` options for every entry
#   KEEP=1                       keep each failing entry's trace and outputs in
#                                target/bench-fixtures/corpus/traces/ (replay them
#                                from the repository root: fixture paths are relative)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh
lockstep_bin
FILTER="${CORPUS_FILTER:-}"
read -r -a OPTS <<<"${RECORD_OPTS:-}"
BIN=target/bench-fixtures/corpus
KEPT="$BIN/traces"
mkdir -p "$BIN"
WORK=$(mktemp -d /tmp/lockstep-corpus.XXXXXX)
TRACE="$WORK/trace.db"
CHILD=
cleanup() {
    if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# timed LIMIT OUT ERR CMD...: CMD under a hard timeout of LIMIT seconds,
# stdout and stderr to files; sets RC, SECS and TIMED_OUT.
timed() {
    local limit=$1 out=$2 err=$3 s e
    shift 3
    s=$(date +%s%N)
    timeout --verbose -k 5 "$limit" "$@" >"$out" 2>"$err" </dev/null &
    CHILD=$!
    RC=0
    wait "$CHILD" || RC=$?
    CHILD=
    e=$(date +%s%N)
    SECS=$(awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }')
    TIMED_OUT=0
    if grep -q '^timeout: sending signal' "$err"; then TIMED_OUT=1; fi
}

# The program's own stderr: lockstep's status lines and log lines
# (`2024-01-01T00:00:00.0Z  WARN lockstep_recorder::...`, maybe coloured) and
# timeout's set aside.
program_err() {
    awk '{ l = $0; gsub(/\033\[[0-9;]*m/, "", l) }
        l ~ /^(lockstep: |  thread [0-9]+ blocked in |timeout: sending signal)/ { next }
        l ~ /^[0-9-]+T[0-9:.]+Z +(TRACE|DEBUG|INFO|WARN|ERROR) +lockstep/ { next }
        { print }' "$1"
}

# The first `lockstep: ` line of a file that is not a success status line.
lockstep_error() {
    { grep -a -E '^lockstep: ' "$1" || true; } |
        { grep -avE '^lockstep: (replay verified|replay reached|the program hung)' || true; } | head -1 | sed 's/^lockstep: //'
}

PASSED=0
FAILED=0
SKIPPED=0
FAILS=()
SKIPS=()
RATIOS="$WORK/ratios"
: >"$RATIOS"
AFTER_RECORD=


# build FIXTURE: compiles fixtures/FIXTURE.c into $BIN unless up to date,
# with the flags of a `// lockstep-build: FLAGS` first line, as tests/ do.
build() {
    local src="fixtures/$1.c" bin="$BIN/$1" flags
    [ -x "$bin" ] && [ ! "$src" -nt "$bin" ] && return 0
    flags=$(head -n1 "$src" | sed -n 's|^// lockstep-build:||p')
    # shellcheck disable=SC2086
    gcc -g -O0 -pthread $flags -o "$bin" "$src" 2>"$WORK/gcc.err"
}

# entry NAME ok|hang [record options...] -- PROGRAM ARGS...
entry() {
    local name=$1 mode=$2 opts=() why="" expect ratio_s limit=120
    shift 2
    while [ "$1" != "--" ]; do
        # An option RECORD_OPTS gives already is not given twice.
        if [[ " ${OPTS[*]-} " != *" $1 "* ]]; then opts+=("$1"); fi
        shift
    done
    shift
    if [ -n "$FILTER" ] && ! [[ $name =~ $FILTER ]]; then AFTER_RECORD=; return; fi
    if [[ $1 == "$BIN"/* ]] && ! build "$(basename "$1")"; then
        skip "$name" "does not compile: $(grep -a -m1 error "$WORK/gcc.err")"
        return
    fi
    if [ "$mode" = hang ]; then opts+=(--hang-timeout 2); limit=60; fi
    rm -f "$TRACE"
    timed "$limit" "$WORK/rec.out" "$WORK/rec.err" \
        "$LOCKSTEP" record -q --force -o "$TRACE" ${opts[@]+"${opts[@]}"} ${OPTS[@]+"${OPTS[@]}"} -- "$@"
    local rec_rc=$RC rec_s=$SECS rec_to=$TIMED_OUT
    if [ -n "$AFTER_RECORD" ]; then eval "$AFTER_RECORD"; AFTER_RECORD=; fi
    local rep_rc="" rep_s="-" rep_to=0
    if [ "$rec_to" = 1 ]; then
        why="record: timed out after ${limit}s"
    elif [ ! -s "$TRACE" ]; then
        why="record: no trace (exit $rec_rc): $(lockstep_error "$WORK/rec.err")"
    elif [ "$mode" = hang ] && ! grep -q '^lockstep: the program hung' "$WORK/rec.err"; then
        why="record: expected a hang, the program exited $rec_rc"
    fi
    if [ -s "$TRACE" ] && [ "$rec_to" = 0 ]; then
        timed 120 "$WORK/rep.out" "$WORK/rep.err" "$LOCKSTEP" replay --verify "$TRACE"
        rep_rc=$RC rep_s=$SECS rep_to=$TIMED_OUT
    fi
    if [ -z "$why" ]; then
        expect=$rec_rc
        if [ "$rep_to" = 1 ]; then
            why="replay: timed out after 120s"
        elif grep -aq 'replay diverged' "$WORK/rep.err"; then
            why=$(grep -a -m1 'replay diverged' "$WORK/rep.err" | sed 's/^lockstep: //')
        elif [ -n "$(lockstep_error "$WORK/rep.err")" ]; then
            why="replay: $(lockstep_error "$WORK/rep.err")"
        elif [ "$rep_rc" != "$expect" ]; then
            why="replay exited $rep_rc, recorded $expect"
        elif ! cmp -s "$WORK/rec.out" "$WORK/rep.out"; then
            why="stdout differs: $({ cmp "$WORK/rec.out" "$WORK/rep.out" 2>&1 || true; } | head -1 | sed "s#$WORK/##g")"
        elif ! cmp -s <(program_err "$WORK/rec.err") <(program_err "$WORK/rep.err"); then
            why="stderr differs"
        elif ! grep -q '^lockstep: replay verified' "$WORK/rep.err"; then
            why="no 'replay verified' line"
        elif [ "$mode" = hang ] && ! grep -q '^lockstep: replay reached the recorded hang' "$WORK/rep.err"; then
            why="replay did not reach the recorded hang"
        fi
    fi
    ratio_s=$(if [ "$rep_s" = - ]; then echo -; else ratio "$rep_s" "$rec_s"; fi)
    if [ -z "$why" ]; then
        PASSED=$((PASSED + 1))
        echo "$rec_s $rep_s" >>"$RATIOS"
        printf "%-34s %5s %8s %8s %7s  PASS\n" "$name" "$rec_rc" "$rec_s" "$rep_s" "$ratio_s"
    else
        FAILED=$((FAILED + 1))
        FAILS+=("$name: $why")
        printf "%-34s %5s %8s %8s %7s  FAIL  %s\n" "$name" "$rec_rc" "$rec_s" "$rep_s" "$ratio_s" "$why"
        if [ "${KEEP:-0}" = 1 ]; then
            local k="$KEPT/${name//[^A-Za-z0-9_.-]/_}" out
            mkdir -p "$KEPT"
            if [ -f "$TRACE" ]; then cp "$TRACE" "$k.db"; fi
            for out in rec.out rec.err rep.out rep.err; do
                if [ -f "$WORK/$out" ]; then cp "$WORK/$out" "$k.$out"; fi
            done
        fi
    fi
    rm -f "$WORK"/rec.* "$WORK"/rep.* "$TRACE"
}

skip() {
    if [ -n "$FILTER" ] && ! [[ $1 =~ $FILTER ]]; then return; fi
    SKIPPED=$((SKIPPED + 1))
    SKIPS+=("$1: $2")
    printf "%-34s %5s %8s %8s %7s  skipped (%s)\n" "$1" - - - - "$2"
}

# cmd NAME "TOOLS NEEDED" SCRIPT: an everyday command, run as `sh -c SCRIPT`.
cmd() {
    local t
    for t in $2; do
        if ! command -v "$t" >/dev/null; then skip "sh/$1" "no $t"; return; fi
    done
    entry "sh/$1" ok -- sh -c "$3"
}

echo "machine: nproc=$(nproc) kernel=$(uname -r); lockstep: $LOCKSTEP${RECORD_OPTS:+; record options: $RECORD_OPTS}"
printf "%-34s %5s %8s %8s %7s  %s\n" entry exit record replay ratio result

# --- fixtures -------------------------------------------------------------
# Invoked as tests/ invoke them; the ones that hang end in the hang detector.
for src in fixtures/*.c; do
    f=$(basename "$src" .c)
    bin="$BIN/$f"
    case $f in
        abba_deadlock | bank_transfer_deadlock | deep_stack_no_fp | dining_philosophers | nested_monitor | \
            pipe_leak_hang | self_deadlock | spin_forever | three_lock_cycle)
            entry "fx/$f" hang -- "$bin" ;;
        pipe_64k_deadlock)
            entry "fx/$f" hang -- "$bin"
            entry "fx/$f small" ok -- "$bin" small ;;
        mem_file_fake) # writes the agent's memory files itself: --mem off, as its header says
            entry "fx/$f" ok --mem off -- "$bin"
            entry "fx/$f hang" hang --mem off -- "$bin" hang ;;
        replay_sources) # reads a file deleted after the recording, as tests/replay.rs does
            echo "only in the recording" >"$WORK/input.txt"
            AFTER_RECORD='rm -f "$WORK/input.txt"'
            entry "fx/$f" ok -- "$bin" "$WORK/input.txt" ;;
        rdtsc_clock) # its output is the time-stamp counter: recorded trapped, as tests/tsc.rs does
            entry "fx/$f" ok --trap-tsc -- "$bin" ;;
        signal_in_loop) # signals in the middle of user code: serialized, as tests/replay.rs does
            entry "fx/$f" ok --serialize -- "$bin" ;;
        syscall_loop) entry "fx/$f 20000" ok -- "$bin" 20000 ;;
        pthread_mutex_loop) entry "fx/$f 200000" ok -- "$bin" 200000 ;;
        *) entry "fx/$f" ok -- "$bin" ;;
    esac
done

# --- everyday commands and pipelines ---------------------------------------
# Only reads outside $WORK (a scratch directory in /tmp, removed at the end).
cmd ls-usr-bin-sort-head "ls sort head" 'ls -la /usr/bin | sort | head'
cmd python3-primes-time-random "python3" 'python3 -c "
import hashlib, random, time
t0 = time.time()
p = [n for n in range(2, 20000) if all(n % d for d in range(2, int(n ** 0.5) + 1))]
print(len(p), sum(p), hashlib.sha256(str(p).encode()).hexdigest()[:16])
print(random.random(), random.randint(1, 10**9), time.time() - t0 > 0, time.strftime(\"%Y-%m-%d %H:%M:%S\"))
"'
cmd python3-threads "python3" 'python3 -c "
import threading, queue
q, out = queue.Queue(), []
def work():
    while (n := q.get()) is not None:
        out.append(sum(i * i for i in range(n)))
ts = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in ts]
[q.put(n) for n in range(1000, 1200)]
[q.put(None) for _ in ts]
[t.join() for t in ts]
print(len(out), sum(out))
"'
cmd python3-subprocess "python3 uname" 'python3 -c "
import os, subprocess
print(subprocess.run([\"uname\", \"-sm\"], capture_output=True, text=True).stdout.strip(), os.getpid() > 0)
"'
cmd gcc-version "gcc" 'gcc --version'
cmd git-version "git" 'git --version'
cmd git-log "git cut" 'git rev-list --count HEAD >/dev/null && git log -3 --format=%s | cut -c1-40'
cmd sqlite3-select-1 "sqlite3" "sqlite3 :memory: 'select 1'"
cmd sqlite3-recursive-random "sqlite3" "sqlite3 :memory: 'create table t(x); with recursive c(i) as (select 1 union all select i + 1 from c where i < 5000) insert into t select i from c; select count(*), sum(x), random(), datetime() from t'"
cmd find-etc-conf "find sort head" 'find /etc -maxdepth 2 -name "*.conf" 2>/dev/null | sort | head'
cmd grep-r-fixtures "grep sort head" 'grep -rn pthread_cond_wait fixtures | sort | head -5'
cmd awk-sums "seq awk" 'seq 1 50000 | awk "{ s += \$1; q += \$1 * \$1 } END { print s, q / NR }"'
cmd sed-includes-uniq "sed sort uniq head" 'sed -n "s/^#include <\(.*\)>/\1/p" fixtures/*.c | sort | uniq -c | sort -rn | head -5'
cmd passwd-shells-uniq-c "cut sort uniq" 'cut -d: -f7 /etc/passwd | sort | uniq -c | sort -rn'
cmd tar-fixtures "tar wc" 'tar -cf - fixtures | wc -c'
cmd tar-gz-list "tar gzip wc" 'tar -czf - fixtures | tar -tzf - | wc -l'
cmd wc-fixtures "wc tail" 'wc -l fixtures/*.c | tail -1'
cmd date "date" 'date; date -u +%s.%N'
cmd proc-self-status "cat head" 'cat /proc/self/status | head'
cmd env-sort-head "env sort head" 'env | sort | head'
cmd seq-sort-rn-head "seq sort head" 'seq 1 100000 | sort -rn | head -3'
cmd md5sum-fixtures "md5sum head" 'md5sum fixtures/*.c | head -5'
cmd sha256-zero "head sha256sum" 'head -c 1000000 /dev/zero | sha256sum'
cmd base64-urandom "base64 head" 'base64 /dev/urandom | head -c 300; echo'
cmd od-urandom "head od" 'head -c 64 /dev/urandom | od -An -tx1'
cmd gcc-compile-and-run "gcc" "printf '#include <stdio.h>\nint main(void) { puts(\"hello from gcc\"); return 42; }\n' >$WORK/t.c && gcc -O1 -o $WORK/t $WORK/t.c && $WORK/t; echo exit=\$?"
cmd make-j2 "make" "printf 'all: a b\n\t@echo done\na:\n\t@echo building a\nb:\n\t@echo building b\n' | make -s -j2 -f -"
cmd xz-threads "xz md5sum" 'cat fixtures/*.c | xz -T2 -c | xz -dc | md5sum'
cmd perl-time-rand "perl" 'perl -e "print join(q(,), map { \$_ * \$_ } 1..10), qq(\n), time > 0, q( ), rand() < 1, qq(\n)"'
cmd bc-pi "bc" 'echo "scale=200; 4*a(1)" | bc -l | tail -1'
cmd jq-sum "jq" "echo '{\"a\": [1, 2, 3, 4]}' | jq '.a | add'"
cmd node-eval "node" 'node -e "console.log(Date.now() > 0, Math.random() < 1, [1, 2, 3].map(x => x * 2).join())"'
cmd readelf-ls "readelf head" 'readelf -h /bin/ls | head -8'
cmd ps-count "ps wc" 'ps -eo pid,comm | wc -l'
cmd dd-stderr "dd" 'dd if=/dev/zero of=/dev/null bs=64k count=100'
cmd sleep-echo "sleep" 'sleep 0.3; echo slept'
cmd stderr-exit-2 "ls" 'ls -d /nonexistent-lockstep-corpus /tmp'
cmd id-uname "id uname" 'id -u; uname -sr'

# --- summary --------------------------------------------------------------
total=$((PASSED + FAILED))
echo
if [ "$total" -eq 0 ]; then
    echo "no entries${FILTER:+ matching $FILTER}"
    exit 0
fi
echo "passed: $PASSED/$total ($(awk -v p="$PASSED" -v t="$total" 'BEGIN { printf "%.1f%%", 100 * p / t }'))$([ "$SKIPPED" -eq 0 ] || echo ", $SKIPPED skipped")"
if [ "$PASSED" -gt 0 ]; then
    awk '{ print $1, $2, ($1 > 0 ? $2 / $1 : 0) }' "$RATIOS" | sort -g -k3 |
        awk '{ rec += $1; rep += $2; r[NR] = $3 }
            END {
                med = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
                printf "replay/record over the %d passing entries: %.2fx of summed times (%.2f s / %.2f s), median %.2fx\n",
                    NR, rep / rec, rep, rec, med
            }'
fi
if [ "$FAILED" -gt 0 ]; then
    echo "failed:"
    printf '  %s\n' "${FAILS[@]}"
fi
if [ "$SKIPPED" -gt 0 ]; then
    echo "skipped:"
    printf '  %s\n' "${SKIPS[@]}"
fi
