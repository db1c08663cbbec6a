//! Consumption retries and dead letters: CONSUMER_SEND_MSG_BACK, and the same reconsume rules on the
//! send path (clients that fall back to sending to `%RETRY%<group>` themselves).
//!
//! A failed message goes back to `%RETRY%<group>` through the delay levels (level 3 + reconsume
//! times unless the client names one: 10 s, 30 s, 1 m, …), with RETRY_TOPIC and ORIGIN_MESSAGE_ID set
//! and reconsume times + 1. At or past the group's maximum (default 16) or with delay level −1 it
//! goes to `%DLQ%<group>`, which nothing consumes unless a user subscribes to it.

use super::Broker;
use super::error::{BrokerError, Reply};
use super::schedule::park;
use super::topics::{DLQ_PREFIX, RETRY_PREFIX};
use crate::protocol::Command;
use crate::protocol::codes::response as rs;
use crate::protocol::commands::send::ConsumerSendMsgBackRequest;
use crate::protocol::message::{MessageToStore, property_get, property_set};
use crate::store::io::Disk;
use std::rc::Rc;

/// RocketMQ's default maximum reconsume times of a group.
pub const DEFAULT_MAX_RECONSUME: i32 = 16;
/// First retry level: 3 (10 s) for reconsume 0.
const FIRST_RETRY_LEVEL: i32 = 3;
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";

pub async fn send_back<D: Disk>(b: &Rc<Broker<D>>, req: &Command) -> Reply {
    let h = ConsumerSendMsgBackRequest::decode(req)?;
    let (offset, group) = (h.offset, h.group.as_str());
    let delay_level = h.delay_level.unwrap_or(0);
    let group_max = b.groups.borrow().retry_max_times(group);
    // Clients older than 121 send a field of another meaning under this name.
    let max = if req.version >= 121 { h.max_reconsume_times.unwrap_or(group_max) } else { group_max };
    let orig = b
        .store
        .read_message(offset)
        .await
        .map_err(|e| BrokerError::System(format!("look up failed message at offset {offset}: {e}")))?;
    let mut props = orig.properties.clone();
    if property_get(&props, RETRY_TOPIC).is_none() {
        props = property_set(&props, RETRY_TOPIC, &orig.topic);
    }
    if property_get(&props, ORIGIN_MESSAGE_ID).is_none() {
        let origin = h.origin_msg_id.clone().unwrap_or_else(|| orig.offset_msg_id());
        props = property_set(&props, ORIGIN_MESSAGE_ID, &origin);
    }
    let mut m = MessageToStore {
        topic: format!("{RETRY_PREFIX}{group}"),
        queue_id: 0,
        flag: orig.flag,
        body: orig.body.clone(),
        properties: props,
        sys_flag: orig.sys_flag,
        born_timestamp_ms: orig.born_timestamp_ms,
        born_host: orig.born_host,
        store_host: b.addr,
        reconsume_times: orig.reconsume_times + 1,
        prepared_transaction_offset: 0,
    };
    if orig.reconsume_times >= max || delay_level < 0 {
        to_dlq(b, &mut m, group);
    } else {
        b.ensure_topic(&m.topic, 1);
        let level = if delay_level == 0 { FIRST_RETRY_LEVEL + orig.reconsume_times } else { delay_level };
        park(&mut m, level as u32, b.delay_levels());
    }
    b.store.put(std::slice::from_ref(&m), true).await?;
    b.wake_pollers(&m.topic, m.queue_id);
    Ok(req.response_to(rs::SUCCESS))
}

fn to_dlq<D: Disk>(b: &Broker<D>, m: &mut MessageToStore, group: &str) {
    m.topic = format!("{DLQ_PREFIX}{group}");
    m.queue_id = 0;
    b.ensure_topic(&m.topic, 1);
    tracing::info!(topic = %m.topic, reconsume = m.reconsume_times, "message moved to the dead-letter queue");
}

/// Send-path rules: a send to `%RETRY%<group>` past the maximum goes to the DLQ; a DELAY property
/// parks the message on its level, else a timer property in the timer topic. An error is a
/// MESSAGE_ILLEGAL remark.
pub fn apply_send_rules<D: Disk>(
    b: &Broker<D>,
    m: &mut MessageToStore,
    max_reconsume: Option<i32>,
) -> Result<(), String> {
    if let Some(group) = m.topic.strip_prefix(RETRY_PREFIX).map(str::to_string) {
        let max = max_reconsume.unwrap_or(DEFAULT_MAX_RECONSUME);
        if m.reconsume_times > max || property_get(&m.properties, "DELAY") == Some("-1") {
            to_dlq(b, m, &group);
            return Ok(());
        }
    }
    let tx = m.sys_flag & crate::protocol::message::FLAG_TRANSACTION_MASK;
    if tx != 0 && tx != crate::protocol::message::FLAG_TRANSACTION_COMMIT {
        return Ok(());
    }
    if let Some(level) = super::parking::delay_level(&m.properties) {
        m.properties = super::timer::strip(&m.properties);
        park(m, level, b.delay_levels());
        return Ok(());
    }
    super::timer::park_if_timed(m, b.cfg.timer_max_delay_secs)
}
