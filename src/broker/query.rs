//! Message queries: QUERY_MESSAGE (by key or unique key, within a store-time range),
//! VIEW_MESSAGE_BY_ID (by physical offset, decoded by the client from an offset msgId), and
//! GET_BROKER_RUNTIME_INFO (runtime statistics for admin tools).

use super::Broker;
use super::error::{BrokerError, Reply};
use crate::protocol::Command;
use crate::protocol::codes::response as rs;
use crate::protocol::commands::query::{QueryMessageRequest, QueryMessageResponse, ViewMessageRequest};
use crate::protocol::message::{StoredMessage, keys, property_get};
use crate::store::dispatch::index_keys;
use crate::store::io::Disk;

/// Matches returned by a unique-key query (RocketMQ's defaultQueryMaxNum).
const UNIQUE_QUERY_MAX: usize = 32;
/// Upper bound on matches of any query, keeping the response well under the frame limit.
const QUERY_MAX: usize = 64;

pub async fn query_message<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let h = QueryMessageRequest::decode(req)?;
    let (topic, key, unique) = (&h.topic, &h.key, h.unique());
    let max = if unique { UNIQUE_QUERY_MAX } else { h.max_num.unwrap_or(32).clamp(1, QUERY_MAX as i64) as usize };
    let begin = h.begin_timestamp.unwrap_or(0);
    let end = h.end_timestamp.unwrap_or(i64::MAX);
    let mut body = Vec::new();
    let mut last_ts = 0;
    // A record indexed under the same string twice (KEYS equal to UNIQ_KEY) is answered once.
    let mut seen = std::collections::HashSet::new();
    for phys in b.store.index_lookup(topic, key, begin, end, max * 2) {
        if !seen.insert(phys) {
            continue;
        }
        let rec = match b.store.read_record(phys).await {
            Ok(rec) => rec,
            Err(e @ crate::store::StoreError::Damaged { .. }) => return Err(e.into()),
            Err(_) => continue, // deleted by retention
        };
        let Ok(m) = StoredMessage::decode(&rec) else {
            continue;
        };
        let hit = m.topic == *topic
            && !super::parking::is_parking_topic(&m.topic)
            && index_keys(&m.properties).contains(&key.as_str());
        let uniq_ok = !unique || property_get(&m.properties, keys::UNIQ_KEY) == Some(key.as_str());
        if hit && uniq_ok {
            last_ts = last_ts.max(m.store_timestamp_ms);
            body.push(rec);
            if body.len() >= max {
                break;
            }
        }
    }
    if body.is_empty() {
        return Err(BrokerError::NotFound(format!("no message with key {key} in topic {topic}")));
    }
    let mut r = req.response_to(rs::SUCCESS);
    QueryMessageResponse {
        index_last_update_timestamp: last_ts,
        index_last_update_phyoffset: b.store.log().write_pos(),
    }
    .encode(&mut r);
    r.body = body;
    Ok(r)
}

pub async fn view_by_offset<D: Disk>(b: &Broker<D>, req: &Command) -> Reply {
    let offset = ViewMessageRequest::decode(req)?.offset;
    match b.store.read_record(offset).await {
        Ok(rec) => Ok(req.response_to(rs::SUCCESS).with_body(rec)),
        Err(e @ crate::store::StoreError::Damaged { .. }) => Err(e.into()),
        Err(_) => Err(BrokerError::System(format!("no message at offset {offset} on {}", b.name))),
    }
}

pub fn runtime_info<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let s = b.store.log().stats();
    let table = serde_json::json!({
        "brokerName": b.name,
        "commitLogMinOffset": b.store.log().min_pos().to_string(),
        "commitLogMaxOffset": b.store.log().write_pos().to_string(),
        "commitLogFlushedOffset": b.store.log().flushed_pos().to_string(),
        "appends": s.appends.to_string(),
        "flushes": s.flushes.to_string(),
        "syncedBytes": s.synced_bytes.to_string(),
        "segmentWaits": s.segment_waits.to_string(),
        "tailCacheHits": s.tail_hits.to_string(),
        "readCacheHits": s.read_cache_hits.to_string(),
        "diskReads": s.disk_reads.to_string(),
        "longPollWaiters": b.polls.borrow().len().to_string(),
        "diskFull": b.store.disk_full().is_some().to_string(),
        "flushMode": format!("{:?}", b.store.log().flush_mode()),
        "replicaRole": format!("{:?}", b.store.replicas.role()),
        "replicaEpoch": b.store.replicas.epoch().to_string(),
        "confirmOffset": b.store.visible_limit().to_string(),
        "inSyncSlaves": b.store.replicas.in_sync_slaves().to_string(),
    });
    let mut table = table;
    // RocketMQ's key names, where they mean the same here (the dashboard's cluster page reads them).
    let (msgs_in, msgs_out) = b.metrics.totals();
    let rates = b.metrics.rates.borrow();
    let windows = [10, 60, 600].map(|s| rates.per_sec(std::time::Duration::from_secs(s)));
    let tps = |pick: fn(&(f64, f64)) -> f64| windows.iter().map(|w| format!("{:.2}", pick(w))).collect::<Vec<_>>();
    let boot = b.metrics.boot_ms.get();
    let up_s = (crate::store::now_ms() - boot).max(0) / 1000;
    let disk_ratio = b.store.usage().map(|u| format!("{:.4}", u.used_ratio())).unwrap_or_default();
    let rocketmq = serde_json::json!({
        "brokerVersionDesc": format!("ringmq {}", env!("CARGO_PKG_VERSION")),
        "brokerVersion": crate::protocol::command::RINGMQ_VERSION.to_string(),
        "bootTimestamp": boot.to_string(),
        "runtime": format!("[ {} days, {} hours, {} minutes, {} seconds ]", up_s / 86400, up_s / 3600 % 24, up_s / 60 % 60, up_s % 60),
        "msgPutTotalTodayNow": msgs_in.to_string(),
        "msgGetTotalTodayNow": msgs_out.to_string(),
        "putTps": tps(|w| w.0).join(" "),
        "getTransferedTps": tps(|w| w.1).join(" "),
        "remainHowManyDataToFlush": (b.store.log().write_pos() - b.store.log().flushed_pos()).to_string(),
        "dispatchBehindBytes": "0",
        "commitLogDiskRatio": disk_ratio,
    });
    if let (Some(t), serde_json::Value::Object(extra)) = (table.as_object_mut(), rocketmq) {
        t.extend(extra);
    }
    req.response_to(rs::SUCCESS).with_body(serde_json::json!({ "table": table }).to_string())
}
