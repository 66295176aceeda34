#!/usr/bin/env bash
# Fetches the packages of the code-search benchmark (`rag-bench code`) into
# target/code-bench/ and prints their folders, one a line:
#
#   cargo build --release -p rag-bench
#   target/release/rag-bench code $(scripts/fetch-code-bench.sh) --model target/minilm
#
# Each archive is checked against its SHA-256, so every run measures the
# same code. Fetched, not vendored: their licences (BSD-3-Clause for click,
# MIT/Apache-2.0 for itertools) travel with the archives.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/code-bench/packages
mkdir -p "$dest"

have() { [ -f "$dest/$1" ] && echo "$2  $dest/$1" | sha256sum -c --status; }
check() { echo "$2  $dest/$1" | sha256sum -c --status || { echo "checksum mismatch: $dest/$1" >&2; exit 1; }; }

# Python: click 8.1.8, its source distribution from PyPI.
click=(click-8.1.8.tar.gz ed53c9d8990d83c2a27deae68e4ee337473f6330c040a31d4225c9574d16096a)
if ! have "${click[@]}"; then
  python3 -m pip download --quiet --no-deps --no-binary :all: click==8.1.8 -d "$dest" >&2
  check "${click[@]}"
fi
# Rust: itertools 0.14.0 from crates.io.
itertools=(itertools-0.14.0.crate 2b192c782037fadd9cfa75548310488aabdbf3d2da73885b31bd0abd03351285)
if ! have "${itertools[@]}"; then
  curl -fsSL --retry 3 -o "$dest/${itertools[0]}" https://static.crates.io/crates/itertools/itertools-0.14.0.crate
  check "${itertools[@]}"
fi

[ -d "$dest/click-8.1.8" ] || tar -xzf "$dest/click-8.1.8.tar.gz" -C "$dest"
[ -d "$dest/itertools-0.14.0" ] || tar -xzf "$dest/itertools-0.14.0.crate" -C "$dest"

echo "$dest/click-8.1.8/src/click"
echo "$dest/itertools-0.14.0/src"
