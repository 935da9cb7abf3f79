#!/usr/bin/env bash
# The main job on a bundled example: build lockstep, compile the pthread
# fixture, record it, and show what the trace holds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p lockstep-cli
mkdir -p target/demo
gcc -g -O0 -pthread -o target/demo/pthread_condvar fixtures/pthread_condvar.c
L=target/release/lockstep
$L record --force -o target/demo/pthread_condvar.db -- target/demo/pthread_condvar
echo; echo "== lockstep ps"; $L ps target/demo/pthread_condvar.db
echo; echo "== lockstep events --syscall futex,clone3,exit (first 15)"
$L events target/demo/pthread_condvar.db --syscall futex,clone3,clone,exit | head -15
echo; echo "== lockstep summary (top 10)"; $L summary target/demo/pthread_condvar.db | head -12
