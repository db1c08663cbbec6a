//! SEND_MESSAGE (10, long header names), SEND_MESSAGE_V2 (310, short names a..n) and
//! SEND_BATCH_MESSAGE (320), with batches detected by the header flag (`batch`/`m`) as the C++ client
//! sends them through 310.

use super::Broker;
use super::error::{BrokerError, Reply};
use super::topics::{PERM_WRITE, invalid_topic_name, is_sendable};
use crate::net::conn::Conn;
use crate::protocol::Command;
use crate::protocol::bodies::decode_batch;
use crate::protocol::codes::response as rs;
pub use crate::protocol::commands::send::{SendHeader, SendResponseHeader};
use crate::protocol::message::{MessageToStore, PROPERTIES_MAX_BYTES, keys, offset_msg_id, property_get};
use crate::store::io::Disk;
use std::rc::Rc;

pub async fn handle<D: Disk>(b: &Rc<Broker<D>>, conn: &Rc<Conn>, req: &Command) -> Reply {
    let h = SendHeader::decode(req).map_err(BrokerError::illegal_message)?;
    let msgs = build_messages(b, conn, req, &h)?;
    let wait = property_get(&h.properties, keys::WAIT) != Some("false");
    let (placed, replicated) = b.store.put_acked(&msgs, wait).await?;
    // Stored on this master but not acknowledged by enough slaves in time: RocketMQ answers
    // FLUSH_SLAVE_TIMEOUT with the send header (clients read the msgId and offsets from it).
    let code = match replicated {
        Ok(()) => rs::SUCCESS,
        Err(crate::store::StoreError::SlaveTimeout) => rs::FLUSH_SLAVE_TIMEOUT,
        Err(e) => return Err(e.into()),
    };
    b.wake_pollers(&msgs[0].topic, msgs[0].queue_id);
    let bytes: usize = msgs.iter().map(|m| m.body.len()).sum();
    b.metrics.flow(&h.topic, msgs.len() as u64, bytes as u64, 0, 0);
    let ids: Vec<String> = placed.iter().map(|p| offset_msg_id(&b.addr, p.physical_offset)).collect();
    let mut resp = req.response_to(code);
    SendResponseHeader {
        msg_id: ids.join(","),
        queue_id: requested_queue(&h, &msgs[0]),
        queue_offset: placed[0].queue_offset,
        transaction_id: property_get(&h.properties, keys::UNIQ_KEY).map(str::to_string),
        msg_region: Some("DefaultRegion".into()),
        trace_on: Some("true".into()),
    }
    .encode(&mut resp);
    Ok(resp)
}

/// The queue a send answer names: the one the client sent to, as RocketMQ answers, even when the
/// record was parked in a schedule, timer or half queue (clients build `SendResult.messageQueue`
/// from it).
pub(super) fn requested_queue(h: &SendHeader, stored: &MessageToStore) -> i32 {
    if stored.topic == h.topic {
        return stored.queue_id;
    }
    let real = property_get(&stored.properties, super::schedule::REAL_QID).and_then(|q| q.parse().ok());
    real.unwrap_or(stored.queue_id)
}

/// Validates the request and builds the records to store (the request-reply path shares it).
pub(super) fn build_messages<D: Disk>(
    b: &Broker<D>,
    conn: &Conn,
    req: &Command,
    h: &SendHeader,
) -> Result<Vec<MessageToStore>, BrokerError> {
    let illegal = BrokerError::MessageIllegal;
    if let Some(why) = invalid_topic_name(&h.topic) {
        return Err(BrokerError::InvalidParameter(why));
    }
    if !is_sendable(&h.topic) {
        return Err(BrokerError::NoPermission(format!(
            "topic {} is a system topic; sending to it is not allowed",
            h.topic
        )));
    }
    let tc = b.topic_for_send(&h.topic, h.default_topic_queue_nums)?;
    if tc.perm & PERM_WRITE == 0 {
        return Err(BrokerError::NoPermission(format!("topic {} is not writable on {}", h.topic, b.name)));
    }
    let queue_id = if h.queue_id < 0 { rand::random_range(0..tc.write_queue_nums.max(1)) as i32 } else { h.queue_id };
    if queue_id as u32 >= tc.write_queue_nums.max(tc.read_queue_nums) {
        return Err(BrokerError::InvalidParameter(format!(
            "queueId {queue_id} is out of range: topic {} has {} write queues on {}",
            h.topic, tc.write_queue_nums, b.name
        )));
    }
    let body = req.body_bytes();
    if body.len() > b.cfg.max_message_bytes {
        return Err(illegal(format!(
            "message body of {} bytes exceeds the {}-byte limit",
            body.len(),
            b.cfg.max_message_bytes
        )));
    }
    if h.properties.len() > PROPERTIES_MAX_BYTES {
        return Err(illegal(format!("properties of {} bytes exceed {PROPERTIES_MAX_BYTES} bytes", h.properties.len())));
    }
    let base = MessageToStore {
        topic: h.topic.clone(),
        queue_id,
        flag: h.flag,
        body: body.clone(),
        properties: with_cluster(&h.properties, &b.cfg.cluster_name),
        sys_flag: h.sys_flag,
        born_timestamp_ms: h.born_timestamp_ms,
        born_host: conn.peer,
        store_host: b.addr,
        reconsume_times: h.reconsume_times,
        prepared_transaction_offset: 0,
    };
    if !h.batch {
        if body.is_empty() {
            return Err(illegal("message body is empty".into()));
        }
        let mut m = base;
        if super::transaction::is_prepared(&m) {
            b.ensure_topic(super::transaction::HALF_TOPIC, 1);
            super::transaction::to_half(&mut m);
        } else {
            super::retry::apply_send_rules(b, &mut m, h.max_reconsume_times).map_err(illegal)?;
        }
        return Ok(vec![m]);
    }
    if h.topic.starts_with(super::topics::RETRY_PREFIX) {
        return Err(illegal("batches cannot be sent to retry topics".into()));
    }
    let items = decode_batch(&body).map_err(|e| illegal(format!("malformed batch body: {e}")))?;
    if items.is_empty() {
        return Err(illegal("batch holds no messages".into()));
    }
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        if it.properties.len() > PROPERTIES_MAX_BYTES {
            return Err(illegal("a batch item's properties exceed 32767 bytes".into()));
        }
        if property_get(&it.properties, keys::DELAY).is_some()
            || super::timer::requested_delivery(&it.properties, 0).ok().flatten().is_some()
        {
            return Err(illegal("batch messages cannot carry a delay level or a delivery time".into()));
        }
        let properties = with_cluster(&it.properties, &b.cfg.cluster_name);
        out.push(MessageToStore { flag: it.flag, body: it.body, properties, ..base.clone() });
    }
    Ok(out)
}

/// Adds the broker's cluster as property `CLUSTER`, as RocketMQ 4.6+ does for every message: a
/// responder derives the reply topic `<cluster>_REPLY_TOPIC` from it.
/// On the send path of every message: when the property is absent (the usual case) it is appended
/// without re-encoding the others.
fn with_cluster(properties: &str, cluster: &str) -> String {
    use crate::protocol::message::{NAME_VALUE_SEP, PROPERTY_SEP};
    match property_get(properties, keys::CLUSTER) {
        Some(c) if c == cluster => properties.to_string(),
        Some(_) => crate::protocol::message::property_set(properties, keys::CLUSTER, cluster),
        None => {
            let mut out = String::with_capacity(properties.len() + keys::CLUSTER.len() + cluster.len() + 3);
            out.push_str(properties);
            if !out.is_empty() && !out.ends_with(PROPERTY_SEP) {
                out.push(PROPERTY_SEP);
            }
            out.push_str(keys::CLUSTER);
            out.push(NAME_VALUE_SEP);
            out.push_str(cluster);
            out.push(PROPERTY_SEP);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn decodes_both_header_namings() {
        let mut v1 = Command::request(rq::SEND_MESSAGE);
        for (k, v) in [
            ("producerGroup", "PG"),
            ("topic", "T"),
            ("queueId", "2"),
            ("sysFlag", "0"),
            ("bornTimestamp", "5"),
            ("flag", "1"),
            ("properties", "TAGS\u{1}a\u{2}"),
        ] {
            v1.put(k, v);
        }
        let h1 = SendHeader::decode(&v1).unwrap();
        let mut v2 = Command::request(rq::SEND_MESSAGE_V2);
        for (k, v) in
            [("a", "PG"), ("b", "T"), ("e", "2"), ("f", "0"), ("g", "5"), ("h", "1"), ("i", "TAGS\u{1}a\u{2}")]
        {
            v2.put(k, v);
        }
        let h2 = SendHeader::decode(&v2).unwrap();
        assert_eq!(h1, h2);
        assert_eq!((h1.queue_id, h1.born_timestamp_ms, h1.batch), (2, 5, false));
        v2.put("m", "true");
        assert!(SendHeader::decode(&v2).unwrap().batch);
        v2.put("e", "x");
        assert!(SendHeader::decode(&v2).is_err());
    }

    #[test]
    fn send_header_out_of_range_values_are_refused_not_truncated() {
        let header = |k: &str, v: &str| {
            let mut c = Command::request(rq::SEND_MESSAGE_V2);
            c.put("b", "T");
            c.put(k, v);
            SendHeader::decode(&c)
        };
        assert!(header("e", &(1i64 << 40).to_string()).unwrap_err().to_string().contains("queueId"));
        assert!(header("e", "-2").is_err());
        assert_eq!(header("e", "-1").unwrap().queue_id, -1);
        assert!(header("f", "-1").unwrap_err().to_string().contains("sysFlag"));
        assert!(header("f", "4096").unwrap_err().to_string().contains("bits"));
        assert!(header("f", "8").unwrap_err().to_string().contains("END_TRANSACTION"));
        assert!(header("f", "12").is_err());
        assert_eq!(header("f", "4").unwrap().sys_flag, 4);
        assert_eq!(header("f", "3").unwrap().sys_flag, 3);
        assert!(header("j", "-1").is_err());
        assert!(header("h", &(1i64 << 33).to_string()).is_err());
    }

    #[test]
    fn cluster_property_is_added_once() {
        let c = |p: &str| with_cluster(p, "C1");
        assert_eq!(c(""), "CLUSTER\u{1}C1\u{2}");
        assert_eq!(c("TAGS\u{1}a\u{2}"), "TAGS\u{1}a\u{2}CLUSTER\u{1}C1\u{2}");
        assert_eq!(c("TAGS\u{1}a"), "TAGS\u{1}a\u{2}CLUSTER\u{1}C1\u{2}");
        assert_eq!(c("CLUSTER\u{1}C1\u{2}"), "CLUSTER\u{1}C1\u{2}");
        assert_eq!(property_get(&c("CLUSTER\u{1}old\u{2}TAGS\u{1}a\u{2}"), "CLUSTER"), Some("C1"));
    }
}
