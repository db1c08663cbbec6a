//! Benchmarks that measure ringmq against limits measured in the same run: the storage benchmark
//! (store vs raw O_DIRECT I/O), the `ringmq bench` load generator with its latency-vs-rate sweep, the raw-limit probe and the echo
//! floor.

pub mod drain;
pub mod echo;
mod generator;
pub mod load;
pub mod plot;
pub mod probe;
pub mod storage;
pub mod sweep;
mod workload;
