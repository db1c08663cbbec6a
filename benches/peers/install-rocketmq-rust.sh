#!/usr/bin/env bash
# Installs the peer for side-by-side runs: the Rust RocketMQ broker and name server 1.0.0 from
# crates.io (binaries rocketmq-namesrv-rust, rocketmq-broker-rust) under $PEER_ROOT (default
# target/peer). Takes 10-20 minutes on 2 cores.
set -euo pipefail
PEER_ROOT=${PEER_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)/target/peer}
cargo install --locked --root "$PEER_ROOT" rocketmq-namesrv@1.0.0 rocketmq-broker@1.0.0
ls -la "$PEER_ROOT/bin"
