#!/usr/bin/env bash
# Accumulation run (issue 17, part 6): one shard pinned to CPU 0, `ringmq bench` on CPU 1.
#   1. `--backlog N`: N messages of 100 B accumulated flat out (batches), then the workload at a
#      fixed rate for DURATION s, a new group draining the backlog from offset 0 in its second half
#      (drain rate against the raw O_DIRECT read rate of the same log; publish p99 quiet vs draining).
#   2. RSS sampled every second throughout (rss.csv), the index / consume-queue gauges, bytes the
#      broker wrote to disk per message (/proc/PID/io write_bytes).
#   3. QUERY_MESSAGE latency (`ringmq admin message get --key`, process start included) for the unique
#      key of the first and of the last message, beside a lookup by queue offset in the same run.
#   4. A graceful stop and a timed restart (to the ready banner), RSS after it.
# Usage: benches/scripts/accumulate.sh N RATE DURATION OUT_DIR   (from the repository root, after
# `cargo build --release`).
set -euo pipefail
N=${1:-10000000}; RATE=${2:-50000}; DURATION=${3:-40}; OUT=${4:-/tmp/ringmq-accumulate}
BIN=${BIN:-target/release/ringmq}
PORT=${PORT:-19911}; NS=${NS:-19876}; METRICS=${METRICS:-127.0.0.1:19557}
ADMIN=("$BIN" admin --namesrv "127.0.0.1:$NS")
rm -rf "$OUT"; mkdir -p "$OUT"
now() { date +%s.%N; }
start() { # $1: log name
  taskset -c 0 "$BIN" serve --shards 1 --flush async --data-dir "$OUT/data" --listen-port "$PORT" \
    --namesrv-port "$NS" --metrics-addr "$METRICS" >"$OUT/$1.log" 2>&1 &
  PID=$!
  local t0; t0=$(now)
  until grep -q " ready:" "$OUT/$1.log"; do sleep 0.005; done
  READY=$(echo "$(now) - $t0" | bc)
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
start first
echo "first start: ready after ${READY}s, RSS $(rss) KiB" | tee "$OUT/summary.txt"
echo "seconds,rss_kib" >"$OUT/rss.csv"
( t0=$(date +%s); while kill -0 "$PID" 2>/dev/null; do
    echo "$(( $(date +%s) - t0 )),$(rss)" >>"$OUT/rss.csv"; sleep 1; done ) 2>/dev/null &
SAMPLER=$!
taskset -c 1 "$BIN" bench --namesrv "127.0.0.1:$NS" --queues 4 --message-size 100 --batch 1 \
  --window 64 --rate "$RATE" --consumers 1 --duration "$DURATION" --warmup 0 --backlog "$N" \
  --broker-pid "$PID" --raw-read-dir "$OUT/data/0/commitlog" --serve-floor-cpu 0 --json "$OUT/bench.json" \
  >"$OUT/bench.log" 2>&1 || echo "bench failed: $(tail -3 "$OUT/bench.log")"
grep -E "accumulated|^total|drain" "$OUT/bench.log" | tee -a "$OUT/summary.txt"
sleep 2
curl -s "http://$METRICS/metrics" | grep -E '^ringmq_(index_|cq_entries_in_memory|commitlog_total\{.*appends)' \
  | tee -a "$OUT/summary.txt"
APPENDS=$(curl -s "http://$METRICS/metrics" | awk -F' ' '/^ringmq_commitlog_total\{.*appends/ {print $2}')
WROTE=$(awk '/^write_bytes/ {print $2}' "/proc/$PID/io")
echo "broker wrote $WROTE bytes to disk for $APPENDS messages: $(echo "$WROTE / $APPENDS" | bc) B/message" \
  | tee -a "$OUT/summary.txt"
echo "RSS after the run: $(rss) KiB; max over the run: $(cut -d, -f2 "$OUT/rss.csv" | sort -n | tail -1) KiB" \
  | tee -a "$OUT/summary.txt"
TOPIC=$("${ADMIN[@]}" --json topic list | python3 -c 'import json,sys; print([t["topic"] for t in json.load(sys.stdin) if t["topic"].startswith("bench-")][0])' 2>/dev/null || true)
if [ -n "$TOPIC" ]; then
  uniq_at() { "${ADMIN[@]}" --json message get --topic "$TOPIC" --broker ringmq-0 --queue 0 --queue-offset "$1" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d["properties"]["UNIQ_KEY"])'; }
  MAX=$("${ADMIN[@]}" --json topic status "$TOPIC" | python3 -c 'import json,sys; print([q["max"] for q in json.load(sys.stdin) if q["queue"] == 0][0])')
  for what in first last; do
    off=0; [ "$what" = last ] && off=$((MAX - 1))
    KEY=$(uniq_at "$off")
    for i in 1 2 3; do
      t0=$(now); "${ADMIN[@]}" message get --topic "$TOPIC" --key "$KEY" >/dev/null; tk=$(echo "$(now) - $t0" | bc)
      t0=$(now); "${ADMIN[@]}" message get --topic "$TOPIC" --broker ringmq-0 --queue 0 --queue-offset "$off" >/dev/null; to=$(echo "$(now) - $t0" | bc)
      echo "query by unique key of the $what message (queue offset $off): ${tk}s; by queue offset: ${to}s" | tee -a "$OUT/summary.txt"
    done
  done
fi
kill "$SAMPLER" 2>/dev/null || true
kill -TERM "$PID"; wait "$PID" || true
du -sh "$OUT/data" | tee -a "$OUT/summary.txt"
start restart
echo "restart: ready after ${READY}s, RSS $(rss) KiB" | tee -a "$OUT/summary.txt"
kill -TERM "$PID"; wait "$PID" || true
