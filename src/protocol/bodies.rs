//! Bodies that carry many messages: a batch send's items (`MessageBatch` encoding) and the stored
//! records back to back of a pull or query answer. Split from `message.rs`, which owns one record.

use super::message::{MESSAGE_MAGIC, RecordError, StoredMessage, need};
use bytes::{Buf, BufMut, Bytes};

/// One message inside a batch body: `[4 size][4 magic][4 crc][4 flag][4 body len][body][2 props len][props]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Decodes a batch body; each item's declared size must match its fields.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchItem>, RecordError> {
    let mut b = body.clone();
    let mut items = Vec::new();
    while b.has_remaining() {
        need(&b, 20, "batch item header")?;
        let size = b.get_u32() as usize;
        let _magic = b.get_u32();
        let _crc = b.get_u32();
        let flag = b.get_i32();
        let body_len = b.get_u32() as usize;
        need(&b, body_len + 2, "batch item body")?;
        let item_body = b.split_to(body_len);
        let props_len = b.get_u16() as usize;
        need(&b, props_len, "batch item properties")?;
        let properties = String::from_utf8(b.split_to(props_len).to_vec()).map_err(|_| RecordError::NotUtf8)?;
        let fields = 22 + body_len + props_len;
        if size != fields {
            return Err(RecordError::SizeMismatch { total: size, fields });
        }
        items.push(BatchItem { flag, body: item_body, properties });
    }
    Ok(items)
}

/// Encodes a batch body (used by the native client).
pub fn encode_batch(items: &[BatchItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        out.put_u32((22 + it.body.len() + it.properties.len()) as u32);
        out.put_u32(0);
        out.put_u32(0);
        out.put_i32(it.flag);
        out.put_u32(it.body.len() as u32);
        out.extend_from_slice(&it.body);
        out.put_u16(it.properties.len() as u16);
        out.extend_from_slice(it.properties.as_bytes());
    }
    out
}

/// The framing of a pull body's records without decoding them: each record's queue offset and
/// size, the size bounded by what is left and the magic checked. For a consumer that passes bodies
/// on unparsed (`ringmq bench`'s drain, which measures the broker, not the client's decode).
pub fn record_frames(body: &[u8]) -> Result<Vec<(u64, u32)>, String> {
    let word = |at: usize, n: usize| body.get(at..at + n).map(|b| b.iter().fold(0u64, |v, x| v << 8 | u64::from(*x)));
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let (Some(size), Some(magic), Some(offset)) = (word(at, 4), word(at + 4, 4), word(at + 20, 8)) else {
            return Err(format!("{} bytes left at byte {at}, short of a record header", body.len() - at));
        };
        if magic != u64::from(MESSAGE_MAGIC) || size < 28 || size as usize > body.len() - at {
            return Err(format!("bad record at byte {at}: size {size}, magic {magic:#x}"));
        }
        out.push((offset, size as u32));
        at += size as usize;
    }
    Ok(out)
}

/// Splits a body of stored records back to back (a pull or query answer) into messages.
pub fn decode_records(body: &Bytes) -> Result<Vec<StoredMessage>, String> {
    let mut out = Vec::new();
    let mut rest = body.clone();
    while rest.len() >= 4 {
        let size = super::command::be_u32(&rest, 0).unwrap_or(0) as usize;
        if size > rest.len() || size < 4 {
            return Err(format!("record size {size} exceeds the {} bytes left", rest.len()));
        }
        let rec = rest.split_to(size);
        out.push(StoredMessage::decode(&rec).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{MessageToStore, properties_encode};

    #[test]
    fn record_frames_match_the_decoded_records_and_refuse_a_bad_size() {
        let mut body = Vec::new();
        for i in 0..3u64 {
            let props = properties_encode([("TAGS", "TagA")]);
            let m = MessageToStore::simple("TopicTest", 1, vec![i as u8; 10 + i as usize], props);
            m.encode_into(&mut body, i * 1000, 7 + i, 1);
        }
        let decoded = decode_records(&Bytes::from(body.clone())).unwrap();
        let frames = record_frames(&body).unwrap();
        let want: Vec<(u64, u32)> = decoded.iter().map(|m| (m.queue_offset, m.size as u32)).collect();
        assert_eq!(frames, want);
        body[0] ^= 0x40; // a size larger than the body
        assert!(record_frames(&body).is_err());
        assert!(record_frames(&body[..20]).is_err());
    }

    #[test]
    fn batch_round_trip_and_truncation() {
        let items = vec![
            BatchItem { flag: 1, body: Bytes::from_static(b"one"), properties: "K\u{1}v\u{2}".into() },
            BatchItem { flag: 2, body: Bytes::from_static(b"two!"), properties: String::new() },
        ];
        let enc = Bytes::from(encode_batch(&items));
        assert_eq!(decode_batch(&enc).unwrap(), items);
        for n in 1..enc.len() {
            if n == 22 + 3 + 4 {
                continue; // exactly the first item
            }
            assert!(decode_batch(&enc.slice(..n)).is_err(), "prefix {n}");
        }
    }
}
