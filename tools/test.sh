#!/usr/bin/env bash
# Sets up and runs every check CI runs: formatting, clippy, then all tests (unit, integration
# through real sockets against the real binary). Usage: tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
echo "== browser tests (headless Chromium against the real server)"
tools/browser-test.sh
