//! ringmq: a RocketMQ-compatible message broker built shard-per-core on glommio (io_uring, O_DIRECT).
//!
//! See `docs/ARCHITECTURE.md`. Folder names show the architecture: `protocol` (wire formats), `store`
//! (per-shard commit log, consume queues, index), `shard` (executors and cross-core control),
//! `broker` (request handlers), `nameserver`, `net` (server connections), `client`, `filter`, `security` (ACL, TLS), `tune`.

// What the code already does, locked in: no unwraps outside tests (errors are values with reasons),
// and no unsafe code except in the modules that call libc, each call with a SAFETY comment.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(unsafe_code)]

pub mod admin;
pub mod bench;
pub(crate) mod broker;
pub mod client;
pub mod config;
pub mod controller;
pub mod filter;
pub(crate) mod metrics;
pub(crate) mod nameserver;
pub(crate) mod net;
pub mod protocol;
pub mod replication;
pub(crate) mod rt;
pub mod security;
pub(crate) mod shard;
pub mod store;
pub mod tune;

// The public API: the clients, configuration, the wire formats clients share with the broker, and
// the server entry (`serve`, used by the binary). The store and the tools are public for the
// binary, the benchmarks and the black-box tests.
pub use broker::schedule::parse_levels as parse_delay_levels;
pub use shard::serve;
pub use shard::startup::EXIT_CONFIG;
