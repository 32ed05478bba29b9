#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. CI runs exactly this (.ci/run);
# README.md documents it as the test command. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# Tests only: benches are benchmarks (cargo bench), compiled above by clippy --all-targets.
cargo test --locked
