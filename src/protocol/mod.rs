//! The RocketMQ remoting protocol: frames, headers, codes and message encodings.

pub mod codes;
pub mod command;
pub mod message;

pub use command::{Command, FrameError};
