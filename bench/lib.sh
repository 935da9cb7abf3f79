# Helpers shared by the bench scripts (source it from the repository root).

# Sets LOCKSTEP to the binary to measure: $LOCKSTEP if given, else a fresh
# release build.
lockstep_bin() {
    if [ -z "${LOCKSTEP:-}" ]; then
        cargo build --release -q -p lockstep-cli
        LOCKSTEP="$PWD/target/release/lockstep"
    fi
}

# secs CMD...: wall seconds of one run, program output discarded.
secs() {
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 </dev/null || true
    e=$(date +%s%N)
    awk -v ns=$((e - s)) 'BEGIN { printf "%.3f", ns / 1e9 }'
}

# ratio A B: A / B as "1.23x" ("n/a" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
