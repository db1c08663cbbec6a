//! The remoting frame's types: [`Command`] (one request, response or oneway request), its header
//! flags, the frame errors and the `extFields` map — what both header codecs (`json_header`, and the
//! binary one in `command`) produce. The encoding and decoding live in `command.rs`; this module
//! holds only the types, so the codecs depend on it and not on each other.

use bytes::Bytes;
use std::borrow::Cow;

/// Header flag bit: this command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Header flag bit: this request expects no response.
pub const FLAG_ONEWAY: i32 = 2;

/// Serialization type byte of a JSON header.
pub const SERIALIZE_JSON: u8 = 0;
/// Serialization type byte of a ROCKETMQ binary header.
pub const SERIALIZE_ROCKETMQ: u8 = 1;

/// The version ordinal ringmq reports: V4_9_4 (401). Java clients refuse SQL92 pulls below 232, and the
/// name server sends standard JSON routes to requests at or above 401.
pub const RINGMQ_VERSION: i32 = 401;

/// Why a frame could not be decoded. Any of these closes the connection that sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {length} exceeds the limit of {limit} bytes")]
    TooLarge { length: usize, limit: usize },
    #[error("frame length {0} is smaller than its 4-byte header-length word")]
    TooSmall(usize),
    #[error("header length {header_len} exceeds the frame's {frame_len} bytes")]
    HeaderOverrun { header_len: usize, frame_len: usize },
    #[error("unknown header serialization type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    BadJson(String),
    #[error("malformed binary header: {0}")]
    BadBinary(&'static str),
}

pub use super::ext_fields::ExtFields;

/// What [`Command::split_frame`] found at the front of a read buffer.
#[derive(Debug, PartialEq)]
pub enum Split {
    /// One whole frame, length prefix included.
    Frame(Bytes),
    /// This many more bytes are needed before the next frame is whole.
    Need(usize),
}

/// One remoting command: a request, a response, or a oneway request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Command {
    pub code: i32,
    /// The sender's LanguageCode name; the names ringmq knows cost no allocation.
    pub language: Cow<'static, str>,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext: ExtFields,
    /// Body parts, written back to back (a pull response is many stored records).
    pub body: Vec<Bytes>,
}

/// RocketMQ's LanguageCode names, by ordinal.
const LANGUAGE_NAMES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST",
    "NODE_JS",
];

/// LanguageCode byte → JSON name (unknown → OTHER).
pub fn language_name(code: u8) -> &'static str {
    LANGUAGE_NAMES.get(code as usize).copied().unwrap_or("OTHER")
}

/// A `language` header value as a command holds it: a known name without an allocation.
pub fn language_of(name: &str) -> Cow<'static, str> {
    match LANGUAGE_NAMES.iter().find(|n| **n == name) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(name.to_string()),
    }
}
