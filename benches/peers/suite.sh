#!/usr/bin/env bash
# The workloads of docs/BENCHMARKS.md ("End to end"), each against ringmq and the peer in one run:
#
#   benches/peers/suite.sh OUTDIR [seconds]
#
# Needs a release build (`cargo build --release`) and the peer (install-rocketmq-rust.sh).
set -euo pipefail
OUT=${1:?usage: suite.sh OUTDIR [seconds]}; SECS=${2:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
RUN="$HERE/side-by-side.sh"
COMMON=(--duration "$SECS" --warmup 5 --report-every 10)
MAX=(--topics 1 --queues 16 --message-size 1024 --producers 2 --consumers 2 --batch 64)
"$RUN" async "$OUT/max-async" -- "${COMMON[@]}" "${MAX[@]}"
"$RUN" sync "$OUT/max-sync" -- "${COMMON[@]}" "${MAX[@]}"
"$RUN" sync "$OUT/fixed-20k-sync" -- "${COMMON[@]}" --queues 16 --message-size 1024 --producers 2 --consumers 2 \
  --batch 1 --rate 20000
# The same fixed rate on one shard: one group commit stream instead of two flushing one device.
RINGMQ_ARGS="--shards 1" RINGMQ_ONLY=1 "$RUN" sync "$OUT/fixed-20k-sync-1-shard" -- "${COMMON[@]}" --queues 16 \
  --message-size 1024 --producers 2 --consumers 2 --batch 1 --rate 20000
# Per-core efficiency: one shard, one queue, 100-byte messages, as fast as possible (ringmq only).
RINGMQ_ARGS="--shards 1" RINGMQ_ONLY=1 "$RUN" async "$OUT/single-queue-100b" -- "${COMMON[@]}" --queues 1 \
  --message-size 100 --producers 1 --consumers 1 --batch 64
