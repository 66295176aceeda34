#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: formatting, lints,
# unit, doc, example and end-to-end tests. Needs only cargo (and the
# rustfmt and clippy components of the installed toolchain); the tests start
# their own fake Ollama on loopback and never reach the network.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    tests only (no fmt/clippy)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[ "${1:-}" = "--quick" ] && quick=true

step() { printf '\n==> %s\n' "$*" >&2; }

if ! $quick; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy (warnings are errors)"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

step "tests (unit, examples, end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked --no-fail-fast
else
  cargo test --workspace --all-targets --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked
