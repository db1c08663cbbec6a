#!/usr/bin/env bash
# Sends during retention (issue 17, part 5): one shard on CPU 0 with file_reserved_hours = 0, so every
# 1 GiB segment is deleted within a second of the roll past it, while `ringmq bench` on CPU 1 sends
# 1 KiB messages at a fixed RATE for DURATION s. Prints the publish latency and how many segments
# retention deleted meanwhile. Usage: benches/scripts/retention_stall.sh [BIN] [RATE] [DURATION] [OUT]
set -euo pipefail
BIN=${1:-target/release/ringmq}; RATE=${2:-60000}; DURATION=${3:-60}; OUT=${4:-/tmp/ringmq-retention}
PORT=${PORT:-19911}; NS=${NS:-19876}; METRICS=${METRICS:-127.0.0.1:19557}
rm -rf "$OUT"; mkdir -p "$OUT"
printf "file_reserved_hours = ${RESERVED_HOURS:-0}\nflush = \"async\"\n" >"$OUT/broker.toml"
taskset -c 0 "$BIN" serve -c "$OUT/broker.toml" --shards 1 --data-dir "$OUT/data" --listen-port "$PORT" \
  --namesrv-port "$NS" --metrics-addr "$METRICS" >"$OUT/broker.log" 2>&1 &
PID=$!
until grep -q " ready:" "$OUT/broker.log"; do sleep 0.01; done
taskset -c 1 "$BIN" bench --namesrv "127.0.0.1:$NS" --queues 4 --message-size 1024 --batch 16 --rate "$RATE" \
  --consumers 1 --duration "$DURATION" --warmup 5 --broker-pid "$PID" --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1 || true
grep -E "^total" "$OUT/bench.log"
echo "segments deleted by retention during the run: $(grep -c 'retention deleted commit-log segment' "$OUT/broker.log")"
kill -TERM "$PID"; wait "$PID" || true
rm -rf "$OUT/data"
