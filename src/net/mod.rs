//! Networking shared by the broker shards and the name server.

pub mod conn;
pub mod drain;
pub mod gather;
pub mod out_queue;
