//! The RocketMQ remoting protocol: frames, headers, codes and message encodings.

pub mod codes;
pub mod command;
pub mod fuzz;
pub mod json_header;
pub mod message;
pub mod offset_table;

pub use command::{Command, FrameError, Split};

/// Wall-clock milliseconds since the epoch (RocketMQ's timestamps: born, store, due times).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The request-reply topic of a cluster (`<clusterName>_REPLY_TOPIC`; RocketMQ creates it on every
/// broker and responders send replies to it).
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_REPLY_TOPIC")
}
