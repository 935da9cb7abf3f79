#!/usr/bin/env bash
# All the tests: the workspace (unit, synthetic-trace and end-to-end tests
# that record the fixtures) and the in-process agent, which is a workspace
# of its own (a cdylib with its own build flags).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --workspace --release -- --test-threads=2
RUSTFLAGS="-C force-frame-pointers=yes" cargo test --release --manifest-path agent/Cargo.toml --target-dir target/agent -- --test-threads=2
