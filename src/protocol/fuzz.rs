//! The checks the `protocol_decode` fuzz target runs on arbitrary bytes, kept here so the committed
//! corpus is replayed by a stable unit test (and `cargo +nightly fuzz run protocol_decode` explores
//! further). Every decoder must return an error, never panic, and never allocate more than its input
//! or limit allows; what decodes must survive an encode/decode round trip.

use super::bodies::{decode_batch, encode_batch};
use super::command::Command;
use super::message::StoredMessage;
use bytes::Bytes;

/// Frame limit used while fuzzing: small, so an over-long length prefix is refused early.
const FUZZ_FRAME_LIMIT_BYTES: usize = 1 << 20;

/// Runs every wire and record decoder on `data` (as given, and framed by a length prefix).
pub fn check_decoders(data: &[u8]) {
    let raw = Bytes::copy_from_slice(data);
    check_frame(&raw);
    let mut framed = (data.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(data);
    check_frame(&Bytes::from(framed));
    let _ = super::json_header::decode(data);
    if let Ok(m) = StoredMessage::decode(&raw) {
        assert!(m.body.len() <= data.len(), "a record's body cannot exceed the record");
    }
    if let Ok(items) = decode_batch(&raw) {
        let again = decode_batch(&Bytes::from(encode_batch(&items))).expect("a re-encoded batch decodes");
        assert_eq!(items.len(), again.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = super::offset_table::decode(text);
    }
}

fn check_frame(buf: &Bytes) {
    let Ok(Some((cmd, used))) = Command::decode(buf, FUZZ_FRAME_LIMIT_BYTES) else { return };
    assert!(used <= buf.len(), "a frame cannot use more bytes than it was given");
    let encoded = Bytes::from(cmd.encode());
    let (again, _) = Command::decode(&encoded, usize::MAX)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is complete");
    assert_eq!((again.code, again.opaque, again.flag), (cmd.code, cmd.opaque, cmd.flag));
    assert_eq!(again.ext, cmd.ext, "extFields survive a round trip");
    assert_eq!(again.remark, cmd.remark, "the remark survives a round trip");
    assert_eq!(again.body_bytes(), cmd.body_bytes(), "the body survives a round trip");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bodies::BatchItem;
    use crate::protocol::codes::request as rq;
    use crate::protocol::message::{MessageToStore, properties_encode};

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/protocol_decode")
    }

    /// Seeds of the corpus: a send frame, a pull frame, a stored record and a batch body.
    fn seeds() -> Vec<Vec<u8>> {
        let mut send = Command::request(rq::SEND_MESSAGE_V2);
        for (k, v) in [("a", "PG"), ("b", "T"), ("e", "1"), ("i", "TAGS\u{1}a\u{2}")] {
            send.put(k, v);
        }
        let mut pull = Command::request(rq::PULL_MESSAGE);
        pull.put("topic", "T");
        pull.put("queueId", "0");
        let m = MessageToStore {
            topic: "T".into(),
            queue_id: 1,
            flag: 0,
            body: Bytes::from_static(b"hello"),
            properties: properties_encode([("KEYS", "k1"), ("UNIQ_KEY", "U")]),
            sys_flag: 0,
            born_timestamp_ms: 1,
            born_host: "127.0.0.1:1".parse().expect("literal address"),
            store_host: "[::1]:2".parse().expect("literal address"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let mut record = Vec::new();
        m.encode_into(&mut record, 4096, 7, 2);
        let batch = encode_batch(&[BatchItem {
            flag: 0,
            body: Bytes::from_static(b"b1"),
            properties: "TAGS\u{1}x\u{2}".into(),
        }]);
        vec![send.with_body("body").encode(), pull.encode(), record, batch, br#"{"T@0":5}"#.to_vec()]
    }

    #[test]
    fn seeds_decode_and_round_trip() {
        for s in seeds() {
            check_decoders(&s);
        }
        let record = Bytes::from(seeds().swap_remove(2));
        assert_eq!(StoredMessage::decode(&record).expect("seed record decodes").topic, "T");
    }

    /// Replays the committed corpus (seeds and past findings) on stable Rust.
    #[test]
    fn protocol_fuzz_corpus_never_panics() {
        let mut n = 0;
        for entry in std::fs::read_dir(corpus_dir()).expect("fuzz corpus directory") {
            let data = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
            check_decoders(&data);
            // Every truncation of a corpus entry must be refused or decoded, never panic.
            for cut in 0..data.len().min(512) {
                check_decoders(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 5, "the corpus holds at least the seeds");
    }

    /// Writes the seeds into the corpus directory (`cargo test -- --ignored write_protocol_seeds`).
    #[test]
    #[ignore]
    fn write_protocol_seeds() {
        std::fs::create_dir_all(corpus_dir()).expect("corpus directory");
        for (i, s) in seeds().iter().enumerate() {
            std::fs::write(corpus_dir().join(format!("seed-{i}")), s).expect("seed file");
        }
    }
}
