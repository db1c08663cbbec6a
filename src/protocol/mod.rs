//! The RocketMQ remoting protocol: frames, headers, codes and message encodings.

pub mod codes;
pub mod command;
pub mod fuzz;
pub mod json_header;
pub mod message;
pub mod offset_table;

pub use command::{Command, FrameError, Split};
