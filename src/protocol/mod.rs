//! The RocketMQ remoting protocol: frames, headers, codes and message encodings.

// Decoding untrusted bytes: no indexing that can panic (tests may index).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod bodies;
pub mod codes;
pub mod command;
pub mod commands;
pub mod ext_fields;
pub mod frame;
pub mod frame_reader;
pub mod fuzz;
pub mod json_header;
pub mod message;
pub mod offset_table;

pub use command::{Command, FrameError, Split};
pub use frame_reader::FrameReader;

/// Wall-clock milliseconds since the epoch (RocketMQ's timestamps); the runtime's clock, which a test
/// may drive by hand (`rt::manual_clock`).
pub use crate::rt::now_ms;

/// The request-reply topic of a cluster (`<clusterName>_REPLY_TOPIC`; RocketMQ creates it on every
/// broker and responders send replies to it).
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_REPLY_TOPIC")
}

/// Prefix of a consumer group's retry topic (`%RETRY%<group>`).
pub const RETRY_PREFIX: &str = "%RETRY%";

/// Splits an address list `host:port;host:port` (RocketMQ's `namesrvAddr`; commas accepted too).
pub fn split_addrs(v: &str) -> Vec<String> {
    v.split([';', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
