#!/usr/bin/env bash
# Builds and starts the server with its defaults (wss/https on :4443, one media shard per core).
# Extra arguments go to shardcast, e.g. tools/run.sh --no-tls --shards 2
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin shardcast
echo "Shardcast starting: open https://localhost:4443/?roomId=test in two tabs (accept the self-signed certificate)"
exec target/release/shardcast "$@"
