#!/usr/bin/env bash
# Single node vs three nodes with sync replication (in-sync 2) vs async, in one run on one machine:
# max rate (unbatched, 64 in flight) and publish latency at a fixed rate, 1 KiB messages, 1 shard
# per node. Usage: benches/scripts/replication.sh [BIN] [SECONDS] [RATE] [OUT_DIR]
set -euo pipefail
BIN=${1:-target/release/ringmq}
SECS=${2:-10}
RATE=${3:-2000}
OUT=${4:-/tmp/ringmq-replication-bench}
mkdir -p "$OUT"
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap stop_all EXIT

start_nodes() { # $1 = number of nodes, rest = extra flags
  local n=$1; shift
  local list=""
  for k in $(seq 1 "$n"); do list+="${list:+,}$k=127.0.0.1:$((26000 + 100 * k))"; done
  for k in $(seq 1 "$n"); do
    local ns=$((26000 + 100 * k)) dir="$OUT/data-$k"
    rm -rf "$dir"
    local cluster=()
    [ "$n" -gt 1 ] && cluster=(--node-id "$k" --cluster "$list")
    "$BIN" serve --data-dir "$dir" --shards 1 --listen-port $((ns + 10)) --namesrv-port "$ns" \
      --metrics-addr "127.0.0.1:$((ns + 1))" --broker-ip 127.0.0.1 "${cluster[@]}" "$@" >"$OUT/node-$k.log" 2>&1 &
    PIDS+=($!)
  done
  # Wait until shard 0 has a master that accepts sends.
  for _ in $(seq 1 60); do
    if "$BIN" admin --namesrv 127.0.0.1:26100 --json cluster replicas 2>/dev/null | grep -q '"Master"'; then return 0; fi
    if [ "$n" -eq 1 ] && "$BIN" admin --namesrv 127.0.0.1:26100 --json cluster list 2>/dev/null | grep -q ringmq-0; then return 0; fi
    sleep 0.5
  done
  echo "cluster did not come up" >&2; exit 1
}

run() { # $1 = name, rest = bench flags
  local name=$1; shift
  "$BIN" bench --namesrv "127.0.0.1:26100;127.0.0.1:26200;127.0.0.1:26300" --duration "$SECS" --warmup 3 \
    --report-every 100 --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1 || true
}

for cfg in single sync async; do
  case $cfg in
    single) start_nodes 1 ;;
    sync) start_nodes 3 --replication sync --in-sync-replicas 2 ;;
    async) start_nodes 3 --replication async ;;
  esac
  sleep 5 # let the slaves join the in-sync set
  run "$cfg-max"
  run "$cfg-rate" --rate "$RATE"
  stop_all
done
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print(f"{'config':8} {'max msgs/s':>10} {'p99 ms @max':>11} {'p50 ms @rate':>12} {'p99 ms @rate':>12} {'p99.9 ms @rate':>14} {'errors':>6}")
for cfg in ("single", "sync", "async"):
    def load(k):
        p = os.path.join(out, f"{cfg}-{k}.json")
        return json.load(open(p))["total"] if os.path.exists(p) else None
    m, r = load("max"), load("rate")
    if not m or not r:
        print(f"{cfg:8} (no result)")
        continue
    ms = lambda d, q: d["publish_latency"][q] / 1000
    errors = (m.get("publish_errors") or 0) + (r.get("publish_errors") or 0)
    print(f"{cfg:8} {m['publish_rate']:>10.0f} {ms(m, 'p99_us'):>11.1f} {ms(r, 'p50_us'):>12.2f} {ms(r, 'p99_us'):>12.1f} {ms(r, 'p999_us'):>14.1f} {errors:>6}")
PY
