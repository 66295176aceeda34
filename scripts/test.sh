#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: formatting, lints,
# documentation, unit, doc, example and end-to-end tests. Needs cargo (with the rustfmt and
# clippy components) and python3; it installs moto's server (the S3 Vectors
# emulator, from PyPI) into target/moto-venv and the official MCP Python SDK
# (the client that drives `rag mcp`) into target/mcp-venv the first time. The tests start
# their own fake Ollama, fake S3 Vectors and moto servers on loopback ports
# and never reach AWS or Ollama.
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
  step "cargo doc (warnings, broken links included, are errors)"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
fi

step "moto server (S3 Vectors emulator) in target/moto-venv"
venv=target/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi
RAG_MOTO_SERVER="$PWD/$venv/bin/moto_server"
export RAG_MOTO_SERVER

step "the MCP Python SDK (a real MCP client for rag mcp) in target/mcp-venv"
mcp_venv=target/mcp-venv
if ! "$mcp_venv/bin/python" -c "import mcp" >/dev/null 2>&1; then
  python3 -m venv "$mcp_venv"
  "$mcp_venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0'
fi
RAG_MCP_PYTHON="$PWD/$mcp_venv/bin/python"
export RAG_MCP_PYTHON

step "tests (unit, examples, end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked --no-fail-fast
else
  cargo test --workspace --all-targets --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked
