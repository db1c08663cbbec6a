//! ringmq: a RocketMQ-compatible message broker built shard-per-core on glommio (io_uring, O_DIRECT).
//!
//! See `docs/ARCHITECTURE.md`. Folder names show the architecture: `protocol` (wire formats), `store`
//! (per-shard commit log, consume queues, index), `shard` (executors and cross-core control),
//! `broker` (request handlers), `nameserver`, `net` (server connections), `client`, `filter`, `tune`.

pub mod admin;
pub mod bench;
pub mod broker;
pub mod client;
pub mod config;
pub mod filter;
pub mod metrics;
pub mod nameserver;
pub mod net;
pub mod protocol;
pub mod rt;
pub mod shard;
pub mod store;
pub mod tune;
