#!/usr/bin/env bash
# Browser end-to-end tests: installs what they need (Debian's chromium, the npm packages of the web
# client and of the tests), builds the web client and the server, and runs tests/browser in headless
# Chromium against the real binary. Usage: tools/browser-test.sh
#
# Honours CARGO_TARGET_DIR (default: target/). A missing Chromium that cannot be installed is a
# failure, not a skip. Artifacts (server log, /metrics, page states) land in tests/browser/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "== installing chromium (Debian package)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q chromium
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "FAIL: $CHROMIUM is still missing after apt-get install chromium" >&2
  exit 1
fi
"$CHROMIUM" --version 2>/dev/null || true

for cmd in node npm cargo; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "FAIL: $cmd not found" >&2
    exit 1
  fi
done

echo "== web client: npm ci + build (tools/web)"
(cd tools/web && npm ci --no-audit --no-fund && npm run build)

echo "== browser tests: npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund)

echo "== server: cargo build --bin shardcast"
cargo build --bin shardcast
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export SHARDCAST_BIN="$TARGET_DIR/debug/shardcast"
export SHARDCAST_WEB_ROOT="$ROOT/tools/web/dist"
export CHROMIUM

echo "== browser tests (node --test tests/browser)"
cd tests/browser
exec node --test --test-concurrency=1 --test-timeout=1200000 browser.test.mjs
