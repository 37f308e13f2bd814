#!/usr/bin/env bash
# Builds the web client (npm ci + esbuild, when needed) and the server, then starts it with its
# defaults: https/wss on :4443 (self-signed certificate), one media shard per core, the web client
# served at /. Extra arguments go to shardcast, e.g. tools/run.sh --shards 2
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f tools/web/dist/app.js ] || [ tools/web/src/app.js -nt tools/web/dist/app.js ]; then
  (cd tools/web && npm ci --no-audit --no-fund && npm run build)
fi
cargo build --release --bin shardcast
echo "Shardcast starting: open https://localhost:4443/?roomId=test in two tabs (accept the self-signed certificate)"
exec target/release/shardcast --web-root tools/web/dist "$@"
