//! What the store derives from each record for its consume queues and index, at append time and when
//! recovery replays the log.

use crate::protocol::message::{
    FLAG_TRANSACTION_MASK, FLAG_TRANSACTION_PREPARED, FLAG_TRANSACTION_ROLLBACK, StoredMessage, java_string_hash, keys,
    properties_iter,
};

/// RocketMQ's topic for messages waiting on a delay level; its tag codes are due times.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// The `DELAY` level of a property string, when positive.
pub fn delay_level(properties: &str) -> Option<u32> {
    crate::protocol::message::property_get(properties, keys::DELAY).and_then(|v| v.parse().ok()).filter(|&l| l > 0)
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
    pub delay_level: Option<u32>,
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

/// RocketMQ 5's topic for messages waiting on an arbitrary delivery time (queue 0); its tag codes are
/// due times taken from `TIMER_OUT_MS`.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Due time (epoch ms) of a record parked in [`TIMER_TOPIC`].
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";

/// Whether `topic` only parks records until they move to their real topic (delay levels, timers).
pub fn is_parking_topic(topic: &str) -> bool {
    topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC
}

/// Tag code of a record: hash of TAGS (0 without tags); in the timer topic, the due time.
pub fn tags_code(topic: &str, properties: &str) -> i64 {
    let get = |k| crate::protocol::message::property_get(properties, k);
    if topic == TIMER_TOPIC {
        return get(TIMER_OUT_MS).and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    get(keys::TAGS).map(java_string_hash).unwrap_or(0)
}

/// Index keys of a record: every KEYS token and the UNIQ_KEY. Records in parking topics are not
/// indexed (nobody queries `SCHEDULE_TOPIC_XXXX` by key; a million pending timers would otherwise
/// cost ~90 MiB of index); they are indexed under their real topic once delivered.
pub fn index_keys(topic: &str, properties: &str) -> Vec<String> {
    let mut out = Vec::new();
    if is_parking_topic(topic) {
        return out;
    }
    for (k, v) in properties_iter(properties) {
        if k == keys::KEYS {
            out.extend(v.split_whitespace().map(str::to_string));
        } else if k == keys::UNIQ_KEY {
            out.push(v.to_string());
        }
    }
    out
}

impl DispatchInfo {
    pub fn from_stored(m: &StoredMessage, crc: u32) -> DispatchInfo {
        DispatchInfo {
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            physical_offset: m.physical_offset,
            size: m.size as u32,
            tags_code: tags_code(&m.topic, &m.properties),
            crc,
            delay_level: delay_level(&m.properties),
            store_timestamp_ms: m.store_timestamp_ms,
            keys: index_keys(&m.topic, &m.properties),
            to_queue: enters_queue(m.sys_flag),
        }
    }
}
