//! What the store derives from each record for its consume queues and index, at append time and when
//! recovery replays the log.

use crate::protocol::message::{
    FLAG_TRANSACTION_MASK, FLAG_TRANSACTION_PREPARED, FLAG_TRANSACTION_ROLLBACK, StoredMessage, java_string_hash, keys,
    properties_iter,
};

/// What the owner of a store decides about each record as it is dispatched, at append and when
/// recovery replays the log (so both give the same answer). The broker parks delayed and timed messages
/// in topics whose consume-queue tag code is a due time rather than a tag hash, and keeps them out of
/// the key index (`broker::parking`); the store itself knows no topic by name.
pub trait DispatchRules: Send + Sync + std::fmt::Debug {
    /// The consume-queue tag code of a record (default: the hash of its TAGS, 0 without).
    fn tag_code(&self, _topic: &str, properties: &str, _store_ms: i64) -> i64 {
        tag_hash(properties)
    }
    /// Whether the record's keys enter the key index.
    fn indexed(&self, _topic: &str) -> bool {
        true
    }
}

/// The default rules: tag hashes and every record indexed.
#[derive(Debug, Default)]
pub struct PlainRules;

impl DispatchRules for PlainRules {}

/// RocketMQ's tag code: the Java string hash of TAGS (0 without tags).
pub fn tag_hash(properties: &str) -> i64 {
    crate::protocol::message::property_get(properties, keys::TAGS).map(java_string_hash).unwrap_or(0)
}

/// Dispatch information of one stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchInfo {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub size: u32,
    pub tags_code: i64,
    /// CRC32 of the whole record.
    pub crc: u32,
    pub store_timestamp_ms: i64,
    /// `KEYS` tokens and the `UNIQ_KEY`, for the key index.
    pub keys: Vec<String>,
    /// False for transaction PREPARED/ROLLBACK records, which never enter a consume queue.
    pub to_queue: bool,
}

/// Whether a record with this sysFlag enters its consume queue.
pub fn enters_queue(sys_flag: i32) -> bool {
    let t = sys_flag & FLAG_TRANSACTION_MASK;
    t != FLAG_TRANSACTION_PREPARED && t != FLAG_TRANSACTION_ROLLBACK
}

/// Index keys of a record: every KEYS token and the UNIQ_KEY.
pub fn index_keys(properties: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (k, v) in properties_iter(properties) {
        if k == keys::KEYS {
            out.extend(v.split_whitespace());
        } else if k == keys::UNIQ_KEY {
            out.push(v);
        }
    }
    out
}

impl DispatchInfo {
    pub fn from_stored(m: &StoredMessage, crc: u32, rules: &dyn DispatchRules) -> DispatchInfo {
        DispatchInfo {
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            physical_offset: m.physical_offset,
            size: m.size as u32,
            tags_code: rules.tag_code(&m.topic, &m.properties, m.store_timestamp_ms),
            crc,
            store_timestamp_ms: m.store_timestamp_ms,
            keys: if rules.indexed(&m.topic) {
                index_keys(&m.properties).into_iter().map(str::to_string).collect()
            } else {
                Vec::new()
            },
            to_queue: enters_queue(m.sys_flag),
        }
    }
}
