#!/usr/bin/env bash
# Forwarding cost per core, side by side with the floor.
#
# Starts the server pinned to core 0 with one media shard, runs the load tool pinned to core 1
# through a fixed scenario set, runs the floor program (the cheapest forwarding of the same
# packets this machine can do) with the same fan-out, and prints one table: scenario,
# forwarded packets/s, server CPU µs per forwarded packet, the floor's µs, and the ratio.
#
#   tools/bench.sh                 # all scenarios, 10 s each
#   DURATION=20 tools/bench.sh     # longer windows
#   SCENARIOS="broadcast" tools/bench.sh
#
# Needs 2+ cores; results (JSON, SVG, logs) go to target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SCENARIOS=${SCENARIOS:-"broadcast meeting audio"}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
OUT=${OUT:-target/bench}
# The load tool polls its sockets (see --poll-us) so the server's sends wake nobody, as with
# receivers across a network; POLL_US= (empty) is not allowed, use a large value to compare.
POLL_US=${POLL_US:-500}
mkdir -p "$OUT"

echo "building release binaries..." >&2
cargo build --release -q --bin shardcast -p shardcast
cargo build --release -q -p shardcast-tools --bin shardcast-load --bin shardcast-floor
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER=$TARGET_DIR/release/shardcast
LOAD=$TARGET_DIR/release/shardcast-load
FLOOR=$TARGET_DIR/release/shardcast-floor

# scenario name -> load tool flags | floor flags (fan-out and packet size of the scenario)
scenario_load() {
  case $1 in
    broadcast) echo "--rooms 1 --publishers 1 --subscribers 50 --bitrate 20M --ramp 50" ;;
    meeting) echo "--rooms 10 --publishers 5 --subscribers 0 --bitrate 4M --ramp 50" ;;
    audio) echo "--rooms 1 --publishers 0 --audio-publishers 1 --subscribers 200 --ramp 100" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
scenario_floor() {
  case $1 in
    # Same fan-out, wire size (1200-byte RTP + 16-byte GCM tag), frame size and input rate as
    # the load scenario.
    broadcast) echo "--consumers 50 --size 1216 --frame-packets 32 --pps 2150" ;;
    meeting) echo "--consumers 4 --size 1216 --frame-packets 14 --pps 21000" ;;
    audio) echo "--consumers 200 --size 136 --frame-packets 1 --pps 50" ;;
  esac
}
scenario_title() {
  case $1 in
    broadcast) echo "broadcast 1 -> 50 (video 20 Mbit/s)" ;;
    meeting) echo "meeting 10 rooms x 5 (video 4 Mbit/s each)" ;;
    audio) echo "audio-only 1 -> 200" ;;
  esac
}

PORT=${PORT:-4443}
RTC_PORT=${RTC_PORT:-42000}
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

rows=()
for s in $SCENARIOS; do
  # A fresh server per scenario: nothing left over from the previous one.
  taskset -c "$SERVER_CORE" "$SERVER" --listen "127.0.0.1:$PORT" --rtc-ip 127.0.0.1 \
    --rtc-port "$RTC_PORT" --shards 1 --no-pin >"$OUT/server-$s.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  echo "== $s: $(scenario_title "$s")" >&2
  # shellcheck disable=SC2046
  taskset -c "$LOAD_CORE" "$LOAD" --url "wss://127.0.0.1:$PORT" $(scenario_load "$s") \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$server_pid" --cores "$LOAD_CORE" \
    --poll-us "$POLL_US" \
    --json "$OUT/load-$s.json" --plot "$OUT/load-$s.svg" --quiet | tee "$OUT/load-$s.txt" >&2 || true
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  # shellcheck disable=SC2046
  "$FLOOR" --core "$SERVER_CORE" --gen-core "$LOAD_CORE" $(scenario_floor "$s") \
    --json "$OUT/floor-$s.json" >&2
  rows+=("$s")
done

python3 - "$OUT" "${rows[@]}" <<'PY'
import json, os, platform, subprocess, sys, datetime
out, scenarios = sys.argv[1], sys.argv[2:]
titles = {
    "broadcast": "broadcast 1 -> 50 (video 20 Mbit/s)",
    "meeting": "meeting 10 rooms x 5 (video 4 Mbit/s each)",
    "audio": "audio-only 1 -> 200",
}
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
print(f"{datetime.date.today()} · {cpu} · {os.cpu_count()} cores · Linux {platform.release()}")
print()
print("| scenario | forwarded pkt/s | server CPU % | server µs/fwd pkt | floor sendto µs | floor best µs (variant) | ratio | loss % | p50/p99 ms | load tool CPU % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in scenarios:
    try:
        r = json.load(open(f"{out}/load-{s}.json"))
    except (OSError, ValueError):
        print(f"| {titles.get(s, s)} | run failed, see {out}/load-{s}.txt | | | | | | | | |")
        continue
    srv = r.get("server") or {}
    us = srv.get("cpu_us_per_forwarded_packet")
    floor = json.load(open(f"{out}/floor-{s}.json"))
    by = {f["variant"]: f["cpu_us_per_forwarded_packet"] for f in floor}
    best_v = min(by, key=by.get)
    best = by[best_v]
    ratio = f"{us / best:.2f}x" if us and best else "n/a"
    us_text = f"{us:.2f}" if us else "n/a"
    o = r["overall"]
    print(f"| {titles.get(s, s)} | {srv.get('forwarded_pps', 0):,.0f} | {srv.get('cpu_pct', 0):.0f} | "
          f"{us_text} | {by.get('sendto', float('nan')):.2f} | {best:.2f} ({best_v}) | {ratio} | "
          f"{o['loss_pct']:.3f} | {o['latency_ms']['p50']:.2f}/{o['latency_ms']['p99']:.2f} | "
          f"{r['load_tool']['cpu_pct']:.0f} |")
PY
