//! The RocketMQ remoting frame and its header (`RemotingCommand`).
//!
//! Frame layout (big-endian), one frame per request or response:
//!
//! ```text
//! [4 length = 4 + header_len + body_len][1 serialize type][3 header_len][header][body]
//! ```
//!
//! The header is JSON (type 0) or ROCKETMQ binary (type 1):
//!
//! ```text
//! binary: [2 code][1 language][2 version][4 opaque][4 flag]
//!         [4 remark_len][remark][4 ext_len]{[2 key_len][key][4 value_len][value]}*
//! ```
//!
//! Both are accepted on input; responses are always JSON (the C++ client reads the type byte as part of
//! the header length). JSON decoding is tolerant: extFields values may be numbers or booleans, `remark` may
//! be null, unknown keys are ignored. Decoding never panics and never allocates more than the frame holds.

use bytes::{Buf, Bytes};
use std::fmt::Write as _;

pub use super::frame::{
    Command, ExtFields, FLAG_ONEWAY, FLAG_RESPONSE, FrameError, RINGMQ_VERSION, SERIALIZE_JSON, SERIALIZE_ROCKETMQ,
    Split, language_name,
};

impl Command {
    /// A new request with the given code, stamped as ringmq's own (language RUST).
    pub fn request(code: i32) -> Command {
        Command { code, language: "RUST".into(), version: RINGMQ_VERSION, ..Default::default() }
    }

    /// A response to `self` with `code`, echoing the opaque.
    pub fn response_to(&self, code: i32) -> Command {
        Command {
            code,
            language: "RUST".into(),
            version: RINGMQ_VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            ..Default::default()
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Command {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Command {
        self.body = vec![body.into()];
        self
    }

    pub fn put(&mut self, key: &str, value: impl ToString) {
        self.ext.insert(key, &value.to_string());
    }

    /// The whole body as one buffer (copies only when it has several parts).
    pub fn body_bytes(&self) -> Bytes {
        match self.body.len() {
            0 => Bytes::new(),
            1 => self.body.first().cloned().unwrap_or_default(),
            _ => Bytes::from(self.body.iter().flat_map(|b| b.iter().copied()).collect::<Vec<u8>>()),
        }
    }

    pub fn body_len(&self) -> usize {
        self.body.iter().map(|b| b.len()).sum()
    }

    /// An upper estimate of the encoded frame's size without encoding it (connection budgets).
    pub fn approx_encoded_len(&self) -> usize {
        let fields: usize = self.ext.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        128 + self.language.len() + self.remark.as_ref().map_or(0, |r| 2 * r.len()) + 2 * fields + self.body_len()
    }

    /// Encodes the frame (length word, JSON header, body) into `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.body_len());
        self.encode_head_into(out);
        for part in &self.body {
            out.extend_from_slice(part);
        }
    }

    /// Encodes the frame up to its body (length word, JSON header): the body's parts follow it on
    /// the wire as they are (net/gather.rs writes them without a copy).
    pub fn encode_head_into(&self, out: &mut Vec<u8>) {
        let header = self.encode_json_header();
        let total = 4 + header.len() + self.body_len();
        out.reserve(8 + header.len());
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes()); // type byte 0 = JSON
        out.extend_from_slice(header.as_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Compact JSON with keys in Java's (alphabetical) order; extFields always present.
    fn encode_json_header(&self) -> String {
        let mut s = String::with_capacity(128 + self.ext.len() * 32);
        let _ = write!(s, "{{\"code\":{},\"extFields\":{{", self.code);
        for (i, (k, v)) in self.ext.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_json_str(&mut s, k);
            s.push(':');
            push_json_str(&mut s, v);
        }
        let _ = write!(s, "}},\"flag\":{},\"language\":", self.flag);
        push_json_str(&mut s, if self.language.is_empty() { "RUST" } else { &self.language });
        let _ = write!(s, ",\"opaque\":{}", self.opaque);
        if let Some(r) = &self.remark {
            s.push_str(",\"remark\":");
            push_json_str(&mut s, r);
        }
        let _ = write!(s, ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{}}}", self.version);
        s
    }

    /// Takes the next whole frame off the front of a connection's read buffer, or says how many more
    /// bytes it needs; a length prefix past `max_frame_bytes` is an error before anything is
    /// buffered for it. The one frame splitter of the server and both clients.
    pub fn split_frame(acc: &mut bytes::BytesMut, max_frame_bytes: usize) -> Result<Split, FrameError> {
        let Some(length) = be_u32(acc, 0) else {
            return Ok(Split::Need(4 - acc.len()));
        };
        let length = length as usize;
        if length > max_frame_bytes {
            return Err(FrameError::TooLarge { length, limit: max_frame_bytes });
        }
        if acc.len() < 4 + length {
            return Ok(Split::Need(4 + length - acc.len()));
        }
        Ok(Split::Frame(acc.split_to(4 + length).freeze()))
    }

    /// Decodes one frame from the front of `buf`. Returns `Ok(None)` when more bytes are needed, else the
    /// command and the number of bytes it used.
    pub fn decode(buf: &Bytes, max_frame_bytes: usize) -> Result<Option<(Command, usize)>, FrameError> {
        let Some(length) = be_u32(buf, 0) else {
            return Ok(None);
        };
        let length = length as usize;
        if length > max_frame_bytes {
            return Err(FrameError::TooLarge { length, limit: max_frame_bytes });
        }
        if length < 4 {
            return Err(FrameError::TooSmall(length));
        }
        if buf.len() < 4 + length {
            return Ok(None);
        }
        let word = be_u32(buf, 4).ok_or(FrameError::TooSmall(length))?;
        let kind = (word >> 24) as u8;
        let header_len = (word & 0x00FF_FFFF) as usize;
        if header_len > length - 4 {
            return Err(FrameError::HeaderOverrun { header_len, frame_len: length });
        }
        let header = buf.get(8..8 + header_len).ok_or(FrameError::HeaderOverrun { header_len, frame_len: length })?;
        let mut cmd = match kind {
            SERIALIZE_JSON => super::json_header::decode(header)?,
            SERIALIZE_ROCKETMQ => decode_binary_header(header)?,
            other => return Err(FrameError::UnknownSerializeType(other)),
        };
        let body = buf.slice(8 + header_len..4 + length);
        if !body.is_empty() {
            cmd.body = vec![body];
        }
        Ok(Some((cmd, 4 + length)))
    }

    /// Reads a required extFields value.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.ext.get(key)
    }
}

/// The big-endian u32 at `at`, when `b` holds it.
pub(crate) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Appends `v` as a JSON string literal.
fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    let mut run = 0; // start of the bytes not yet copied: runs without escapes are copied whole
    for (i, b) in v.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&v[run..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(&v[run..]);
    out.push('"');
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
    if buf.len() < n {
        return Err(FrameError::BadBinary(what));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_len(buf: &mut &[u8], width: usize, what: &'static str) -> Result<usize, FrameError> {
    let mut raw = take(buf, width, what)?;
    Ok(match width {
        2 => raw.get_u16() as usize,
        _ => raw.get_u32() as usize,
    })
}

fn take_str<'a>(buf: &mut &'a [u8], width: usize, what: &'static str) -> Result<&'a str, FrameError> {
    let n = take_len(buf, width, what)?;
    let raw = take(buf, n, what)?;
    std::str::from_utf8(raw).map_err(|_| FrameError::BadBinary("string is not UTF-8"))
}

fn decode_binary_header(header: &[u8]) -> Result<Command, FrameError> {
    let mut buf = header;
    let mut fixed = take(&mut buf, 13, "fixed header fields")?;
    let code = fixed.get_i16() as i32;
    let language = language_name(fixed.get_u8()).into();
    let version = fixed.get_i16() as i32;
    let opaque = fixed.get_i32();
    let flag = fixed.get_i32();
    let remark = take_str(&mut buf, 4, "remark")?;
    let ext_len = take_len(&mut buf, 4, "extFields length")?;
    let mut ext_buf = take(&mut buf, ext_len, "extFields")?;
    let mut ext = ExtFields::with_capacity(ext_buf.len(), 16);
    while !ext_buf.is_empty() {
        let key = take_str(&mut ext_buf, 2, "extFields key")?;
        let value = take_str(&mut ext_buf, 4, "extFields value")?;
        ext.push_unordered(key, value);
    }
    ext.restore_order();
    Ok(Command {
        code,
        language,
        version,
        opaque,
        flag,
        remark: if remark.is_empty() { None } else { Some(remark.to_string()) },
        ext,
        body: Vec::new(),
    })
}

/// Encodes a binary (ROCKETMQ) header; used by tests and by clients that opt into it.
pub fn encode_binary_header(cmd: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(cmd.code as i16).to_be_bytes());
    out.push(12); // RUST
    out.extend_from_slice(&(cmd.version as i16).to_be_bytes());
    out.extend_from_slice(&cmd.opaque.to_be_bytes());
    out.extend_from_slice(&cmd.flag.to_be_bytes());
    let remark = cmd.remark.as_deref().unwrap_or("");
    out.extend_from_slice(&(remark.len() as u32).to_be_bytes());
    out.extend_from_slice(remark.as_bytes());
    let mut ext = Vec::new();
    for (k, v) in cmd.ext.iter() {
        ext.extend_from_slice(&(k.len() as u16).to_be_bytes());
        ext.extend_from_slice(k.as_bytes());
        ext.extend_from_slice(&(v.len() as u32).to_be_bytes());
        ext.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&(ext.len() as u32).to_be_bytes());
    out.extend_from_slice(&ext);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the async client's frame loop had no maximum-length check, so a peer announcing
    /// a huge frame made it buffer without bound. One splitter now serves the server and both clients.
    #[test]
    fn split_frame_refuses_lengths_past_the_maximum_before_buffering() {
        let mut acc = bytes::BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(Command::split_frame(&mut acc, 100).unwrap(), Split::Need(1));
        acc.extend_from_slice(&[200]);
        assert!(matches!(Command::split_frame(&mut acc, 100), Err(FrameError::TooLarge { length: 200, limit: 100 })));
        let frame = Command::request(10).encode();
        let mut acc = bytes::BytesMut::from(&frame[..frame.len() - 1]);
        assert_eq!(Command::split_frame(&mut acc, 1 << 20).unwrap(), Split::Need(1));
        acc.extend_from_slice(&frame[frame.len() - 1..]);
        acc.extend_from_slice(&frame);
        assert_eq!(Command::split_frame(&mut acc, 1 << 20).unwrap(), Split::Frame(Bytes::from(frame.clone())));
        assert_eq!(Command::split_frame(&mut acc, 1 << 20).unwrap(), Split::Frame(Bytes::from(frame)));
        assert!(acc.is_empty());
    }

    fn sample() -> Command {
        let mut c = Command::request(310);
        c.opaque = 42;
        c.put("a", "PG");
        c.put("b", "TopicA");
        c.put("i", "TAGS\u{1}x\u{2}");
        c.body = vec![Bytes::from_static(b"hello")];
        c
    }

    #[test]
    fn json_round_trip() {
        let c = sample();
        let bytes = Bytes::from(c.encode());
        let (d, used) = Command::decode(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(d, c);
    }

    #[test]
    fn truncation_at_every_byte_asks_for_more() {
        let bytes = Bytes::from(sample().encode());
        for n in 0..bytes.len() {
            assert_eq!(Command::decode(&bytes.slice(..n), 1 << 20), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn binary_header_round_trip_and_truncation() {
        let c = sample();
        let header = encode_binary_header(&c);
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + header.len() + 5) as u32).to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32 | 1 << 24).to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(b"hello");
        let (d, _) = Command::decode(&Bytes::from(frame), 1 << 20).unwrap().unwrap();
        assert_eq!(d.ext, c.ext);
        assert_eq!((d.code, d.opaque, &*d.language), (310, 42, "RUST"));
        for n in 0..header.len() {
            assert!(decode_binary_header(&header[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn json_fixture_is_byte_exact() {
        let mut c = Command { code: 0, opaque: 7, flag: 1, version: 401, ..Default::default() };
        c.language = "JAVA".into();
        c.put("offset", 5);
        let bytes = c.encode();
        let header = br#"{"code":0,"extFields":{"offset":"5"},"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":401}"#;
        assert_eq!(&bytes[8..], &header[..]);
        assert_eq!(&bytes[..4], &((header.len() + 4) as u32).to_be_bytes());
    }

    #[test]
    fn tolerant_json_accepts_numbers_bools_null_and_unknown_keys() {
        let header = br#"{"code":11,"language":"CPP","version":333,"opaque":3,"flag":0,"remark":null,
            "extFields":{"queueId":3,"sysFlag":0,"flag":true,"Signature":""},"other":[1,2]}"#;
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
        frame.extend_from_slice(header);
        let (d, _) = Command::decode(&Bytes::from(frame), 1 << 20).unwrap().unwrap();
        assert_eq!(d.field("queueId"), Some("3"));
        assert_eq!(d.field("flag"), Some("true"));
        assert_eq!(d.remark, None);
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let big = Bytes::from(vec![0x7f, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(Command::decode(&big, 1 << 20), Err(FrameError::TooLarge { .. })));
        let bad = Bytes::from(vec![0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x']);
        assert!(matches!(Command::decode(&bad, 1 << 20), Err(FrameError::BadJson(_))));
        let overrun = Bytes::from(vec![0, 0, 0, 4, 0, 0, 0, 9]);
        assert!(matches!(Command::decode(&overrun, 1 << 20), Err(FrameError::HeaderOverrun { .. })));
        let kind = Bytes::from(vec![0, 0, 0, 4, 9, 0, 0, 0]);
        assert_eq!(Command::decode(&kind, 1 << 20), Err(FrameError::UnknownSerializeType(9)));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Command::decode(&Bytes::from(data), 1 << 20);
        }
    }
}
