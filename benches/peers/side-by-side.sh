#!/usr/bin/env bash
# Runs one workload against ringmq and against the Rust RocketMQ broker 1.0.0 (the peer), one after
# the other on this machine, same disk, same durability, with `ringmq bench` as the load generator.
#
#   benches/peers/side-by-side.sh sync|async OUTDIR -- <ringmq bench workload flags>
#
# RINGMQ_ARGS adds flags to `ringmq serve` (e.g. --shards 1); RINGMQ_ONLY=1 skips the peer.
#
# Needs the peer installed (benches/peers/install-rocketmq-rust.sh) and a release build of ringmq.
# The peer runs with commitLogMicroBatchMaxWaitMicros = 0: its default 50 us wait is rounded up by
# its timer to ~1.1 ms per append, which caps unbatched sends near 820 msgs/s. That is its best, not
# its default, configuration.
set -euo pipefail
MODE=$1; OUT=$2; shift 2; [ "${1:-}" = "--" ] && shift
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RINGMQ=$ROOT/target/release/ringmq
PEER=${PEER_ROOT:-$ROOT/target/peer}/bin
DATA=${BENCH_DATA:-$ROOT/target/peer-data}
mkdir -p "$OUT"; rm -rf "$DATA"; mkdir -p "$DATA/ringmq" "$DATA/peer/conf"
[ "$MODE" = sync ] && FLUSH=SYNC_FLUSH || FLUSH=ASYNC_FLUSH

echo "== ringmq (flush $MODE)"
"$RINGMQ" serve --data-dir "$DATA/ringmq" --flush "$MODE" --broker-ip 127.0.0.1 \
  --listen-port 10911 --namesrv-port 9876 ${RINGMQ_ARGS:-} > "$OUT/ringmq-serve.log" 2>&1 &
RPID=$!
sleep 3
"$RINGMQ" bench --namesrv 127.0.0.1:9876 --broker-pid $RPID --json "$OUT/ringmq-$MODE.json" \
  --plot "$OUT/ringmq-$MODE.svg" --probe-dir "$DATA/probe" $([ "$MODE" = sync ] && echo --probe-sync) "$@" \
  | tee "$OUT/ringmq-$MODE.txt"
kill -TERM $RPID; wait $RPID || true

[ -n "${RINGMQ_ONLY:-}" ] && exit 0
echo "== peer: rocketmq-broker-rust 1.0.0 ($FLUSH, commitLogMicroBatchMaxWaitMicros = 0)"
cat > "$DATA/peer/conf/broker.toml" <<TOML
[broker]
namesrvAddr = "127.0.0.1:19876"
brokerIp1 = "127.0.0.1"
listenPort = 20911
storePathRootDir = "$DATA/peer/store"
autoCreateTopicEnable = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "peer-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
flushDiskType = "$FLUSH"
storePathRootDir = "$DATA/peer/store"
haListenAddress = "127.0.0.1"
haListenPort = 20912
commitLogMicroBatchMaxWaitMicros = 0
TOML
export ROCKETMQ_HOME=$DATA/peer
"$PEER/rocketmq-namesrv-rust" --bindAddress 127.0.0.1 --listenPort 19876 > "$OUT/peer-namesrv.log" 2>&1 &
NPID=$!
sleep 2
"$PEER/rocketmq-broker-rust" -c "$DATA/peer/conf/broker.toml" -n 127.0.0.1:19876 > "$OUT/peer-broker.log" 2>&1 &
BPID=$!
sleep 5
"$RINGMQ" bench --namesrv 127.0.0.1:19876 --broker-pid $BPID --json "$OUT/peer-$MODE.json" \
  --plot "$OUT/peer-$MODE.svg" "$@" | tee "$OUT/peer-$MODE.txt"
kill -TERM $BPID $NPID; wait $BPID $NPID 2>/dev/null || true
