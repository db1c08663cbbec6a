//! Message encodings: the stored record (the commit-log entry that pull, query and view bodies carry
//! verbatim), the property string, offset message ids and batch bodies.
//!
//! Stored record, big-endian, IPv4 hosts (each IPv6 host adds 12 bytes; sysFlag bits 0x10/0x20):
//!
//! ```text
//!  0 [4 total size][4 magic 0xDAA320A7][4 body crc32 & 0x7FFFFFFF][4 queue id][4 flag]
//! 20 [8 queue offset][8 physical offset][4 sys flag][8 born ms][8 born host ip:port]
//! 56 [8 store ms][8 store host ip:port][4 reconsume times][8 prepared tx offset]
//! 84 [4 body len][body][1 topic len][topic][2 properties len][properties]
//! ```
//!
//! Size = 91 + body + topic + properties. Topics are at most 127 bytes so the V1 magic (1-byte topic
//! length) always applies: Go's decoder understands only that form.

use bytes::{Buf, BufMut, Bytes};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Magic of a V1 stored message (1-byte topic length).
pub const MESSAGE_MAGIC: u32 = 0xDAA3_20A7;
/// Magic of RocketMQ's end-of-segment blank filler.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// sysFlag: body compressed by the producer.
pub const FLAG_COMPRESSED: i32 = 0x1;
/// sysFlag mask of the transaction type bits.
pub const FLAG_TRANSACTION_MASK: i32 = 0xC;
pub const FLAG_TRANSACTION_PREPARED: i32 = 0x4;
pub const FLAG_TRANSACTION_COMMIT: i32 = 0x8;
pub const FLAG_TRANSACTION_ROLLBACK: i32 = 0xC;
/// sysFlag: born host is IPv6.
pub const FLAG_BORNHOST_V6: i32 = 0x10;
/// sysFlag: store host is IPv6.
pub const FLAG_STOREHOST_V6: i32 = 0x20;
/// Every sysFlag bit RocketMQ defines (compressed, multi tags, transaction type, host forms,
/// need-unwrap, inner batch, compression type in bits 8–10); a send with any other bit is refused.
pub const FLAG_KNOWN_BITS: i32 = 0x7FF;

/// Longest topic name in bytes (clients assume a 1-byte topic length).
pub const TOPIC_MAX_BYTES: usize = 127;
/// Longest property string: its length is a signed short.
pub const PROPERTIES_MAX_BYTES: usize = 32767;
/// Fixed part of a stored record with IPv4 hosts.
pub const RECORD_FIXED_BYTES: usize = 91;

/// Where the store timestamp ends at the latest: after the fixed head (48 bytes to the born
/// timestamp's end) and an IPv6 born host (20 bytes).
pub const STORE_TIMESTAMP_MAX_END: usize = 48 + 20 + 8;

/// The store timestamp from the first bytes of a stored record: it follows the born host, which is
/// 8 bytes (IPv4 + port) or 20 (IPv6 + port) as the sysFlag says.
pub fn store_timestamp_of(head: &[u8]) -> Option<i64> {
    let sys_flag = i32::from_be_bytes(head.get(36..40)?.try_into().ok()?);
    let at = 48 + if sys_flag & FLAG_BORNHOST_V6 != 0 { 20 } else { 8 };
    Some(i64::from_be_bytes(head.get(at..at + 8)?.try_into().ok()?))
}

/// Property separators (reference §3.4).
pub const NAME_VALUE_SEP: char = '\u{1}';
pub const PROPERTY_SEP: char = '\u{2}';

/// Well-known property keys used by the broker.
pub mod keys {
    /// Timer messages (RocketMQ 5): absolute delivery time in epoch ms, or a delay from arrival.
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const DELAY: &str = "DELAY";
    pub const CLUSTER: &str = "CLUSTER";
    pub const WAIT: &str = "WAIT";
}

/// What the broker stores for one message, before the log assigns its offsets and store time.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageToStore {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub body: Bytes,
    /// Encoded property string.
    pub properties: String,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
}

fn host_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv4() { 8 } else { 20 }
}

fn put_host<B: BufMut>(out: &mut B, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(addr.port() as i32);
}

/// RocketMQ's body CRC: zlib CRC32 masked to 31 bits.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

impl MessageToStore {
    /// Size of the stored record.
    pub fn encoded_len(&self) -> usize {
        RECORD_FIXED_BYTES - 16
            + host_len(&self.born_host)
            + host_len(&self.store_host)
            + self.body.len()
            + self.topic.len()
            + self.properties.len()
    }

    /// A plain message (no transaction, no retry) between loopback hosts: for tests, benchmarks and
    /// tools.
    pub fn simple(topic: &str, queue_id: i32, body: impl Into<Bytes>, properties: String) -> MessageToStore {
        MessageToStore {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties,
            sys_flag: 0,
            born_timestamp_ms: 0,
            born_host: SocketAddr::from(([127, 0, 0, 1], 1)),
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    /// The sysFlag with the host bits set from the actual addresses.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= FLAG_BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= FLAG_STOREHOST_V6;
        }
        f
    }

    /// Appends the stored record to `out`. The caller has validated lengths (see `validate`).
    pub fn encode_into<B: BufMut>(&self, out: &mut B, physical_offset: u64, queue_offset: u64, store_ms: i64) {
        let size = self.encoded_len();
        out.put_u32(size as u32);
        out.put_u32(MESSAGE_MAGIC);
        out.put_u32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_u64(queue_offset);
        out.put_u64(physical_offset);
        out.put_i32(self.effective_sys_flag());
        out.put_i64(self.born_timestamp_ms);
        put_host(out, &self.born_host);
        out.put_i64(store_ms);
        put_host(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        out.put_u32(self.body.len() as u32);
        out.put_slice(&self.body);
        out.put_u8(self.topic.len() as u8);
        out.put_slice(self.topic.as_bytes());
        out.put_u16(self.properties.len() as u16);
        out.put_slice(self.properties.as_bytes());
    }
}

/// Why a stored record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated: {0}")]
    Truncated(&'static str),
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("total size {total} disagrees with its fields ({fields})")]
    SizeMismatch { total: usize, fields: usize },
    #[error("body CRC {stored:#x} does not match computed {computed:#x}")]
    BodyCrc { stored: u32, computed: u32 },
    #[error("topic or properties are not UTF-8")]
    NotUtf8,
}

/// A decoded view of one stored record; `body` and `properties` share the record's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub size: usize,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: String,
}

pub(super) fn need(buf: &impl Buf, n: usize, what: &'static str) -> Result<(), RecordError> {
    if buf.remaining() < n { Err(RecordError::Truncated(what)) } else { Ok(()) }
}

fn get_host(buf: &mut Bytes, v6: bool) -> Result<SocketAddr, RecordError> {
    if v6 {
        need(buf, 20, "IPv6 host")?;
        let mut ip = [0u8; 16];
        buf.copy_to_slice(&mut ip);
        Ok(SocketAddr::new(IpAddr::from(ip), buf.get_i32() as u16))
    } else {
        need(buf, 8, "IPv4 host")?;
        let ip = Ipv4Addr::new(buf.get_u8(), buf.get_u8(), buf.get_u8(), buf.get_u8());
        Ok(SocketAddr::new(IpAddr::V4(ip), buf.get_i32() as u16))
    }
}

impl StoredMessage {
    /// Decodes one record from the front of `record` and verifies its size and body CRC.
    pub fn decode(record: &Bytes) -> Result<StoredMessage, RecordError> {
        let mut b = record.clone();
        need(&b, 40, "fixed header")?;
        let size = b.get_u32() as usize;
        let magic = b.get_u32();
        if magic != MESSAGE_MAGIC {
            return Err(RecordError::BadMagic(magic));
        }
        if size > record.len() {
            return Err(RecordError::Truncated("shorter than its total size"));
        }
        let crc = b.get_u32();
        let queue_id = b.get_i32();
        let flag = b.get_i32();
        let queue_offset = b.get_u64();
        let physical_offset = b.get_u64();
        let sys_flag = b.get_i32();
        need(&b, 8, "born timestamp")?;
        let born_timestamp_ms = b.get_i64();
        let born_host = get_host(&mut b, sys_flag & FLAG_BORNHOST_V6 != 0)?;
        need(&b, 8, "store timestamp")?;
        let store_timestamp_ms = b.get_i64();
        let store_host = get_host(&mut b, sys_flag & FLAG_STOREHOST_V6 != 0)?;
        need(&b, 16, "reconsume times, prepared offset, body length")?;
        let reconsume_times = b.get_i32();
        let prepared_transaction_offset = b.get_i64();
        let body_len = b.get_u32() as usize;
        need(&b, body_len + 1, "body")?;
        let body = b.split_to(body_len);
        let topic_len = b.get_u8() as usize;
        need(&b, topic_len + 2, "topic")?;
        let topic = String::from_utf8(b.split_to(topic_len).to_vec()).map_err(|_| RecordError::NotUtf8)?;
        let props_len = b.get_u16() as usize;
        need(&b, props_len, "properties")?;
        let properties = String::from_utf8(b.split_to(props_len).to_vec()).map_err(|_| RecordError::NotUtf8)?;
        let fields = record.len() - b.remaining();
        if fields != size {
            return Err(RecordError::SizeMismatch { total: size, fields });
        }
        let computed = body_crc(&body);
        if computed != crc {
            return Err(RecordError::BodyCrc { stored: crc, computed });
        }
        Ok(StoredMessage {
            size,
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp_ms,
            born_host,
            store_timestamp_ms,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        })
    }

    pub fn property(&self, key: &str) -> Option<String> {
        property_get(&self.properties, key).map(str::to_string)
    }

    /// The offset message id of this record (its store host and physical offset).
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(&self.store_host, self.physical_offset)
    }
}

/// Iterates `(key, value)` pairs of a property string, skipping malformed segments (Java's rule).
pub fn properties_iter(s: &str) -> impl Iterator<Item = (&str, &str)> {
    // Byte search (memchr) for the ASCII separators: `str::split` with a char pattern was ~10 % of
    // broker CPU at 200 000 sends/s, since every send looks up several properties. Slicing at an ASCII
    // byte always lands on a char boundary.
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < s.len() {
            let end = memchr::memchr(PROPERTY_SEP as u8, s.as_bytes().get(at..).unwrap_or_default())
                .map_or(s.len(), |i| at + i);
            let seg = &s[at..end];
            at = end + 1;
            if let Some(i) = memchr::memchr(NAME_VALUE_SEP as u8, seg.as_bytes()) {
                let (k, v) = (&seg[..i], &seg[i + 1..]);
                if !k.is_empty() && !v.is_empty() {
                    return Some((k, v));
                }
            }
        }
        None
    })
}

/// Looks up one property; the last occurrence wins as in Java's HashMap.
pub fn property_get<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    properties_iter(s).filter(|(k, _)| *k == key).map(|(_, v)| v).last()
}

/// Encodes pairs as `k\u1v\u2` each (Java emits the trailing separator too).
pub fn properties_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push(NAME_VALUE_SEP);
        out.push_str(v);
        out.push(PROPERTY_SEP);
    }
    out
}

/// Sets `key` (replacing earlier values) in a property string.
pub fn property_set(s: &str, key: &str, value: &str) -> String {
    let kept: Vec<(&str, &str)> = properties_iter(s).filter(|(k, _)| *k != key).collect();
    properties_encode(kept.into_iter().chain(std::iter::once((key, value))))
}

/// Sets every `(key, value)` of `set` and removes every key of `remove`, in one pass over the string
/// (the park and unpark paths change several properties of every delayed, timed or half message).
pub fn properties_edit(s: &str, set: &[(&str, &str)], remove: &[&str]) -> String {
    let kept = properties_iter(s).filter(|(k, _)| !remove.contains(k) && !set.iter().any(|(sk, _)| sk == k));
    let mut out = String::with_capacity(s.len() + set.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>());
    for (k, v) in kept.chain(set.iter().copied()) {
        out.push_str(k);
        out.push(NAME_VALUE_SEP);
        out.push_str(v);
        out.push(PROPERTY_SEP);
    }
    out
}

/// Removes every value of `key` from a property string.
pub fn property_remove(s: &str, key: &str) -> String {
    if property_get(s, key).is_none() {
        return s.to_string();
    }
    properties_encode(properties_iter(s).filter(|(k, _)| *k != key))
}

/// Java `String.hashCode` over UTF-16 code units, sign-extended: RocketMQ's tag code (reference §3.7).
pub fn java_string_hash(s: &str) -> i64 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h as i64
}

/// Offset msgId: `[ip 4|16][port i32][physical offset i64]` as uppercase hex.
pub fn offset_msg_id(store_host: &SocketAddr, physical_offset: u64) -> String {
    let mut raw = Vec::with_capacity(28);
    put_host(&mut raw, store_host);
    raw.put_u64(physical_offset);
    let mut s = String::with_capacity(raw.len() * 2);
    for b in raw {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0').to_ascii_uppercase());
        s.push(char::from_digit((b & 0xF) as u32, 16).unwrap_or('0').to_ascii_uppercase());
    }
    s
}

/// Decodes an offset msgId into (store host, physical offset).
pub fn decode_offset_msg_id(id: &str) -> Option<(SocketAddr, u64)> {
    if !(id.len() == 32 || id.len() == 56) || !id.is_ascii() {
        return None;
    }
    let raw: Vec<u8> =
        (0..id.len()).step_by(2).map(|i| u8::from_str_radix(&id[i..i + 2], 16).ok()).collect::<Option<_>>()?;
    let mut b = Bytes::from(raw);
    let host = get_host(&mut b, id.len() == 56).ok()?;
    Some((host, b.get_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MessageToStore {
        MessageToStore {
            topic: "TopicTest".into(),
            queue_id: 3,
            flag: 0,
            body: Bytes::from_static(b"Hello RocketMQ"),
            properties: properties_encode([("TAGS", "TagA"), ("UNIQ_KEY", "AC11000100002A9F0000000000000001")]),
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "127.0.0.1:50000".parse().unwrap(),
            store_host: "10.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    /// Regression: the store timestamp was read at a fixed +56, wrong for IPv6 born hosts.
    #[test]
    fn store_timestamp_is_found_after_an_ipv4_or_ipv6_born_host() {
        for born in ["127.0.0.1:50000", "[2001:db8::7]:50000"] {
            let m = MessageToStore { born_host: born.parse().unwrap(), ..sample() };
            let mut buf = Vec::new();
            m.encode_into(&mut buf, 0, 0, 1_700_000_000_456);
            assert_eq!(store_timestamp_of(&buf[..STORE_TIMESTAMP_MAX_END]), Some(1_700_000_000_456), "{born}");
        }
    }

    #[test]
    fn record_round_trip_and_size() {
        let m = sample();
        let mut buf = Vec::new();
        m.encode_into(&mut buf, 4096, 7, 1_700_000_000_123);
        assert_eq!(buf.len(), 91 + 14 + 9 + m.properties.len());
        let d = StoredMessage::decode(&Bytes::from(buf)).unwrap();
        assert_eq!((d.queue_offset, d.physical_offset, d.store_timestamp_ms), (7, 4096, 1_700_000_000_123));
        assert_eq!(d.topic, "TopicTest");
        assert_eq!(d.body, m.body);
        assert_eq!(d.property("TAGS").as_deref(), Some("TagA"));
    }

    #[test]
    fn record_truncation_at_every_byte_is_an_error() {
        let mut buf = Vec::new();
        sample().encode_into(&mut buf, 0, 0, 0);
        for n in 0..buf.len() {
            assert!(StoredMessage::decode(&Bytes::copy_from_slice(&buf[..n])).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn record_fixture_header_bytes() {
        let mut buf = Vec::new();
        sample().encode_into(&mut buf, 0x1122, 5, 9);
        assert_eq!(&buf[4..8], &[0xDA, 0xA3, 0x20, 0xA7]);
        assert_eq!(&buf[8..12], &body_crc(b"Hello RocketMQ").to_be_bytes());
        assert_eq!(&buf[28..36], &0x1122u64.to_be_bytes());
        assert_eq!(&buf[64..72], &[10, 0, 0, 1, 0, 0, 0x2A, 0x9F]);
    }

    #[test]
    fn flipped_body_byte_fails_crc() {
        let mut buf = Vec::new();
        sample().encode_into(&mut buf, 0, 0, 0);
        buf[90] ^= 1;
        assert!(matches!(StoredMessage::decode(&Bytes::from(buf)), Err(RecordError::BodyCrc { .. })));
    }

    #[test]
    fn msg_id_round_trip_and_fixture() {
        let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        let id = offset_msg_id(&host, 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
        assert_eq!(decode_offset_msg_id(&id), Some((host, 0x1234)));
        assert_eq!(decode_offset_msg_id("zz"), None);
    }

    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN as i64);
    }

    #[test]
    fn properties_parse_like_java() {
        let s = "A\u{1}1\u{2}\u{1}x\u{2}B\u{1}\u{2}A\u{1}2\u{2}junk";
        assert_eq!(property_get(s, "A"), Some("2"));
        assert_eq!(property_get(s, "B"), None);
        let t = property_set(s, "A", "3");
        assert_eq!(property_get(&t, "A"), Some("3"));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let b = Bytes::from(data);
            let _ = StoredMessage::decode(&b);
        }

        /// The memchr splitter reads property strings exactly as `str::split` + `split_once` do.
        #[test]
        fn properties_iter_matches_str_split(s in "[a\u{1}\u{2}é]{0,40}") {
            let by_split: Vec<(&str, &str)> = s
                .split(PROPERTY_SEP)
                .filter_map(|seg| seg.split_once(NAME_VALUE_SEP))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .collect();
            proptest::prop_assert_eq!(properties_iter(&s).collect::<Vec<_>>(), by_split);
        }
    }
}
