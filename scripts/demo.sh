#!/usr/bin/env bash
# The main job on bundled examples: build lockstep, compile two fixtures
# (the lecture's T1/T2 lock-order deadlock, and a correct condvar program),
# and run `lockstep check` on each; then peek into a trace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p lockstep-cli
mkdir -p target/demo
for f in abba_deadlock pthread_condvar; do
    gcc -g -O0 -pthread -o "target/demo/$f" "fixtures/$f.c"
done
L=target/release/lockstep
echo "== lockstep check -- abba_deadlock   (hangs: T1 takes A then B, T2 takes B then A)"
$L check --force --hang-timeout 1 -o target/demo/abba_deadlock.db -- target/demo/abba_deadlock || true
echo
echo "== lockstep check -- pthread_condvar   (correct: no findings)"
$L check --force -o target/demo/pthread_condvar.db -- target/demo/pthread_condvar || true
echo
echo "== lockstep ps / locks on the condvar trace"
$L ps target/demo/pthread_condvar.db
$L locks target/demo/pthread_condvar.db
