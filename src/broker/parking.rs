//! Parking: how the broker holds a message back from its topic until it may be consumed — delay
//! levels (`SCHEDULE_TOPIC_XXXX`, one queue per level), timers (`rmq_sys_wheel_timer`, queue 0) and
//! transaction halves (`RMQ_SYS_TRANS_HALF_TOPIC`) — and how it is let go. One [`park`] and one
//! [`unpark`] serve all three, each editing the property string once.
//!
//! A parked record carries `REAL_TOPIC`/`REAL_QID` (its destination). In the schedule and timer
//! topics its consume-queue tag code is its due time, so each queue is ordered by due time; the store
//! learns this through [`ParkingRules`], the broker's `DispatchRules`. Parked records are not indexed
//! by key (nobody queries `SCHEDULE_TOPIC_XXXX` by key, and a million pending timers would cost
//! ~90 MiB of index); they are indexed under their real topic once delivered.

use crate::protocol::message::{MessageToStore, StoredMessage, keys, properties_edit, property_get};
use crate::store::dispatch::{DispatchRules, tag_hash};
use std::net::SocketAddr;

/// RocketMQ's topic for messages waiting on a delay level; its tag codes are due times.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// RocketMQ 5's topic for messages waiting on an arbitrary delivery time (queue 0).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Due time (epoch ms) of a record parked in [`TIMER_TOPIC`].
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const REAL_QID: &str = "REAL_QID";

/// Properties that change what a re-send of a consumed message means: a delay level or delivery
/// time (parked again) and `TRAN_MSG` (the Java producer turns it into a half message). RocketMQ's
/// broker leaves them on the copy it delivers; ringmq removes them from every re-stored copy
/// (delivered delayed, timer and committed messages) and keeps the informational ones
/// (`REAL_TOPIC`, `REAL_QID`, `TIMER_OUT_MS`, `PGROUP`). docs/COMPATIBILITY.md says so.
pub const RESEND_CHANGING_PROPERTIES: [&str; 5] =
    [keys::DELAY, keys::TIMER_DELIVER_MS, keys::TIMER_DELAY_SEC, keys::TIMER_DELAY_MS, "TRAN_MSG"];

/// The `DELAY` level of a property string, when positive.
pub fn delay_level(properties: &str) -> Option<u32> {
    property_get(properties, keys::DELAY).and_then(|v| v.parse().ok()).filter(|&l| l > 0)
}

/// Whether `topic` only parks records until they move to their real topic (delay levels, timers).
pub fn is_parking_topic(topic: &str) -> bool {
    topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC
}

/// Rewrites `m` to wait in `topic`:`queue_id`, remembering its destination, with `extra` properties
/// set — one pass over the property string.
pub fn park(m: &mut MessageToStore, topic: &str, queue_id: i32, extra: &[(&str, &str)]) {
    let qid = m.queue_id.to_string();
    let mut set: Vec<(&str, &str)> = vec![(REAL_TOPIC, &m.topic), (REAL_QID, &qid)];
    set.extend_from_slice(extra);
    m.properties = properties_edit(&m.properties, &set, &[]);
    m.topic = topic.to_string();
    m.queue_id = queue_id;
}

/// The message to store in its real topic for the parked record `s`, re-stored by `store_host`:
/// same body, flag, sysFlag, born info and reconsume times, properties without
/// [`RESEND_CHANGING_PROPERTIES`]. `None` when the record does not name its destination.
pub fn unpark(s: &StoredMessage, store_host: SocketAddr) -> Option<MessageToStore> {
    Some(MessageToStore {
        topic: property_get(&s.properties, REAL_TOPIC)?.to_string(),
        queue_id: property_get(&s.properties, REAL_QID)?.parse().ok()?,
        flag: s.flag,
        body: s.body.clone(),
        properties: strip_resend_changing(&s.properties),
        sys_flag: s.sys_flag,
        born_timestamp_ms: s.born_timestamp_ms,
        born_host: s.born_host,
        store_host,
        reconsume_times: s.reconsume_times,
        prepared_transaction_offset: s.prepared_transaction_offset,
    })
}

/// `properties` without [`RESEND_CHANGING_PROPERTIES`], in one pass.
pub fn strip_resend_changing(properties: &str) -> String {
    properties_edit(properties, &[], &RESEND_CHANGING_PROPERTIES)
}

/// The broker's dispatch rules for its store: due times as the tag codes of parking topics, and no
/// key index for parked records.
#[derive(Debug, Clone)]
pub struct ParkingRules {
    /// Delay of each level (1-based) in ms: due time = store time + delay.
    pub delay_levels_ms: Vec<u64>,
}

impl DispatchRules for ParkingRules {
    fn tag_code(&self, topic: &str, properties: &str, store_ms: i64) -> i64 {
        match topic {
            TIMER_TOPIC => property_get(properties, TIMER_OUT_MS).and_then(|v| v.parse().ok()).unwrap_or(0),
            SCHEDULE_TOPIC => {
                let levels = &self.delay_levels_ms;
                let level = delay_level(properties).unwrap_or(1).clamp(1, levels.len().max(1) as u32) as usize;
                store_ms + levels.get(level - 1).copied().unwrap_or(0) as i64
            }
            _ => tag_hash(properties),
        }
    }

    fn indexed(&self, topic: &str) -> bool {
        !is_parking_topic(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::properties_encode;

    #[test]
    fn park_and_unpark_round_trip_in_one_edit_each() {
        let mut m = MessageToStore::simple("T", 3, &b"x"[..], properties_encode([("TAGS", "a"), ("DELAY", "2")]));
        park(&mut m, SCHEDULE_TOPIC, 1, &[(keys::DELAY, "2")]);
        assert_eq!((m.topic.as_str(), m.queue_id), (SCHEDULE_TOPIC, 1));
        assert_eq!(property_get(&m.properties, REAL_TOPIC), Some("T"));
        assert_eq!(property_get(&m.properties, REAL_QID), Some("3"));
        assert_eq!(m.properties.matches("DELAY").count(), 1, "set replaces, never duplicates");
        let rules = ParkingRules { delay_levels_ms: vec![1_000, 5_000] };
        assert_eq!(rules.tag_code(SCHEDULE_TOPIC, &m.properties, 100), 5_100);
        assert_eq!(rules.tag_code("T", &m.properties, 100), crate::protocol::message::java_string_hash("a"));
        assert!(!rules.indexed(SCHEDULE_TOPIC) && !rules.indexed(TIMER_TOPIC) && rules.indexed("T"));
        let mut buf = Vec::new();
        m.encode_into(&mut buf, 0, 0, 1);
        let stored = StoredMessage::decode(&bytes::Bytes::from(buf)).unwrap();
        let back = unpark(&stored, "127.0.0.1:1".parse().unwrap()).unwrap();
        assert_eq!((back.topic.as_str(), back.queue_id), ("T", 3));
        assert_eq!(property_get(&back.properties, keys::DELAY), None, "a re-send would park again");
        assert_eq!(property_get(&back.properties, "TAGS"), Some("a"));
    }
}
