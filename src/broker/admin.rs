//! The administration views the Java `DefaultMQAdminExt` asks a broker for (`mqadmin`, the
//! rocketmq-dashboard, rocketmq-exporter): topic status, consume progress, connections, who
//! consumes a topic, consume time spans, broker configuration, and the relay of
//! GET_CONSUMER_RUNNING_INFO to a consumer. Runs on the shard that owns the queues it reports.
//!
//! Bodies are written as fastjson writes RocketMQ's classes: fields in alphabetical order, and
//! `MessageQueue` map keys as JSON objects (`offset_table::queue_key`), which is not standard JSON
//! but what the Java tools parse.

use super::Broker;
use super::error::BrokerError;
use crate::net::conn::Conn;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::command::Command;
use crate::protocol::commands::admin_views::{
    ConsumeTimeSpanBody, ConsumerConnectionBody, GroupList, ProducerConnectionBody, QueueTimeSpan,
};
use crate::protocol::commands::body::{MessageQueue, encode_json};
use crate::protocol::commands::clients::SubscriptionData;
use crate::protocol::commands::topics::{
    BrokerConfigResponse, BrokerConsumeStatsRequest, ConsumeStatsRequest, ConsumeTimeSpanRequest,
    ConsumerConnectionRequest, ConsumerRunningInfoRequest, ProducerConnectionRequest, TopicRequest,
};
use crate::protocol::offset_table::queue_key;
use crate::store::io::Disk;
use serde_json::{Value, json};
use std::rc::Rc;
use std::time::Duration;

/// How long a relayed GET_CONSUMER_RUNNING_INFO waits for the consumer (RocketMQ's broker: 10 s).
const CONSUMER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Queue ids of a topic as RocketMQ's views count them: write queues, except GET_CONSUME_STATS,
/// which iterates read queues.
fn queue_ids<D: Disk>(b: &Broker<D>, topic: &str) -> Option<Vec<i32>> {
    let n = b.topics.borrow().get(topic)?.write_queue_nums;
    Some((0..n as i32).collect())
}

fn read_queue_ids<D: Disk>(b: &Broker<D>, topic: &str) -> Option<Vec<i32>> {
    let n = b.topics.borrow().get(topic)?.read_queue_nums;
    Some((0..n as i32).collect())
}

/// RocketMQ's `UtilAll.formatDate(ts, "yyyy-MM-dd#HH:mm:ss:SSS")`, in UTC.
pub fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}#{h:02}:{m:02}:{s:02}:{milli:03}")
}

/// The store time of the message at `offset`, 0 when there is none.
async fn store_time<D: Disk>(b: &Broker<D>, topic: &str, qid: i32, offset: u64) -> i64 {
    b.store.store_time_at(topic, qid, offset).await.unwrap_or(0)
}

/// GET_TOPIC_STATS_INFO (202): `TopicStatsTable` — per queue its min and max offset and the store
/// time of its last message.
pub async fn topic_stats<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let topic = match TopicRequest::decode(req) {
        Ok(h) => h.topic,
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let Some(ids) = queue_ids(b, &topic) else {
        return BrokerError::TopicNotExist { topic: topic.clone(), broker: b.name.clone() }.respond(req);
    };
    let mut items = Vec::new();
    for qid in ids {
        let (min, max) = b.store.queue_bounds(&topic, qid);
        let last = if max > 0 { store_time(b, &topic, qid, max - 1).await } else { 0 };
        let value = json!({"lastUpdateTimestamp": last, "maxOffset": max, "minOffset": min});
        items.push(format!("{}:{value}", queue_key(&b.name, qid, &topic)));
    }
    req.response_to(rs::SUCCESS).with_body(format!("{{\"offsetTable\":{{{}}}}}", items.join(",")))
}

/// One `ConsumeStats` of a group on a topic: per queue the broker's max offset, the committed
/// offset and the store time of the last consumed message; and the messages behind in total.
async fn consume_stats<D: Disk>(
    b: &Broker<D>,
    group: &str,
    topic: &str,
    read_queues: bool,
) -> Option<(Vec<String>, u64)> {
    let ids = if read_queues { read_queue_ids(b, topic)? } else { queue_ids(b, topic)? };
    let mut items = Vec::new();
    let mut diff = 0;
    for qid in ids {
        let (_, max) = b.store.queue_bounds(topic, qid);
        let committed = b.offsets.borrow().get(group, topic, qid).unwrap_or(0);
        let last = if committed > 0 { store_time(b, topic, qid, committed - 1).await } else { 0 };
        diff += max.saturating_sub(committed);
        let value = json!({"brokerOffset": max, "consumerOffset": committed, "lastTimestamp": last,
            "pullOffset": committed});
        items.push(format!("{}:{value}", queue_key(&b.name, qid, topic)));
    }
    Some((items, diff))
}

/// A `ConsumeStats` body from its per-queue entries (ringmq keeps no consume TPS: 0.0).
fn consume_stats_body(items: &[String]) -> String {
    format!("{{\"consumeTps\":0.0,\"offsetTable\":{{{}}}}}", items.join(","))
}

/// Topics a group consumes here: committed offsets and live subscriptions.
fn topics_of_group<D: Disk>(b: &Broker<D>, group: &str) -> Vec<String> {
    let mut topics: std::collections::BTreeSet<String> =
        b.offsets.borrow().entries().into_iter().filter(|(g, ..)| g == group).map(|(_, t, ..)| t).collect();
    if let Some(view) = b.clients.borrow().consumer_view(group) {
        topics.extend(view.subscriptions.into_keys());
    }
    topics.into_iter().collect()
}

/// GET_CONSUME_STATS (208): `ConsumeStats` of a group, for one topic or all it consumes here.
pub async fn get_consume_stats<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let h = match ConsumeStatsRequest::decode(req) {
        Ok(h) => h,
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let (group, one_topic) = (h.consumer_group, h.topic.filter(|t| !t.is_empty()));
    let topics = match &one_topic {
        Some(t) => vec![t.clone()],
        None => topics_of_group(b, &group),
    };
    let mut items = Vec::new();
    for topic in &topics {
        // One body for all topics: the per-queue entries merge (their keys name the topic).
        match consume_stats(b, &group, topic, true).await {
            Some((entries, _)) => items.extend(entries),
            None if one_topic.is_some() => {
                return BrokerError::TopicNotExist { topic: topic.clone(), broker: b.name.clone() }.respond(req);
            }
            None => {}
        }
    }
    req.response_to(rs::SUCCESS).with_body(consume_stats_body(&items))
}

/// GET_BROKER_CONSUME_STATS (317): `ConsumeStatsList` — every group's `ConsumeStats` per topic, the
/// broker's address and the messages behind in total. `isOrder=true` keeps only order topics.
pub async fn broker_consume_stats<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let only_order = BrokerConsumeStatsRequest::decode(req).ok().and_then(|h| h.is_order).unwrap_or(false);
    // Group → topics, from one pass over the offset table and the live subscriptions (per-group
    // scans of the whole table were quadratic in the number of groups).
    let mut groups: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for (g, t, ..) in b.offsets.borrow().entries() {
        groups.entry(g).or_default().insert(t);
    }
    for (g, _, _, subscribed) in b.clients.borrow().consumer_groups() {
        groups.entry(g).or_default().extend(subscribed);
    }
    let mut list = Vec::new();
    let mut total = 0u64;
    for (group, topics) in groups {
        let mut per_topic = Vec::new();
        for topic in topics {
            let order = b.topics.borrow().get(&topic).is_some_and(|t| t.order);
            if only_order && !order {
                continue;
            }
            if let Some((entries, diff)) = consume_stats(b, &group, &topic, false).await {
                per_topic.push(consume_stats_body(&entries));
                total += diff;
            }
        }
        list.push(format!("{{{}:[{}]}}", Value::String(group), per_topic.join(",")));
    }
    // `totalInflightDiff` is 5.x's (messages delivered but not acknowledged): 0, ringmq has no pop.
    let body = format!(
        "{{\"brokerAddr\":{},\"consumeStatsList\":[{}],\"totalDiff\":{total},\"totalInflightDiff\":0}}",
        Value::String(b.addr.to_string()),
        list.join(",")
    );
    req.response_to(rs::SUCCESS).with_body(body)
}

/// GET_CONSUMER_CONNECTION_LIST (203): `ConsumerConnection` of a group with live members here.
pub fn consumer_connections<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let group = match ConsumerConnectionRequest::decode(req) {
        Ok(h) => h.consumer_group,
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let Some(view) = b.clients.borrow().consumer_view(&group) else {
        return BrokerError::ConsumerNotOnline(format!("the consumer group[{group}] not online")).respond(req);
    };
    let body = ConsumerConnectionBody {
        connection_set: view.connections,
        consume_from_where: view.consume_from_where,
        consume_type: view.consume_type,
        message_model: view.message_model,
        subscription_table: view
            .subscriptions
            .iter()
            .map(|(t, (kind, expr))| (t.clone(), SubscriptionData::new(t, expr, kind)))
            .collect(),
    };
    req.response_to(rs::SUCCESS).with_body(encode_json(&body))
}

/// GET_PRODUCER_CONNECTION_LIST (204): `ProducerConnection` of a group with live members here.
pub fn producer_connections<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let group = match ProducerConnectionRequest::decode(req) {
        Ok(h) => h.producer_group,
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let conns = b.clients.borrow().producer_connections(&group);
    if conns.is_empty() {
        return BrokerError::System(format!("the producer group[{group}] not exist")).respond(req);
    }
    let body = ProducerConnectionBody { connection_set: conns };
    req.response_to(rs::SUCCESS).with_body(encode_json(&body))
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300): `GroupList` — groups subscribed to the topic or with
/// committed offsets on it.
pub fn topic_consumed_by<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let topic = match TopicRequest::decode(req) {
        Ok(h) => h.topic,
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let mut groups = GroupList::default();
    groups.group_list.extend(b.clients.borrow().groups_subscribed_to(&topic));
    groups.group_list.extend(b.offsets.borrow().entries().into_iter().filter(|e| e.1 == topic).map(|e| e.0));
    req.response_to(rs::SUCCESS).with_body(encode_json(&groups))
}

/// QUERY_CONSUME_TIME_SPAN (303): `QueryConsumeTimeSpanBody` — per queue the store times of its
/// first and last message, of the last consumed one, and how long the next one has waited.
pub async fn consume_time_span<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let (topic, group) = match ConsumeTimeSpanRequest::decode(req) {
        Ok(h) => (h.topic, h.group),
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let Some(ids) = queue_ids(b, &topic) else {
        return BrokerError::TopicNotExist { topic: topic.clone(), broker: b.name.clone() }.respond(req);
    };
    let now = crate::store::now_ms();
    let mut spans = Vec::new();
    for qid in ids {
        let (min, max) = b.store.queue_bounds(&topic, qid);
        let committed = b.offsets.borrow().get(&group, &topic, qid).unwrap_or(min);
        let min_ts = if max > min { store_time(b, &topic, qid, min).await } else { 0 };
        let max_ts = if max > min { store_time(b, &topic, qid, max - 1).await } else { 0 };
        let consume_ts = if committed > min { store_time(b, &topic, qid, committed - 1).await } else { min_ts };
        let delay = if committed < max { now - store_time(b, &topic, qid, committed.max(min)).await } else { 0 };
        spans.push(QueueTimeSpan {
            consume_time_stamp: consume_ts,
            consume_time_stamp_str: format_ms(consume_ts),
            delay_time: delay.max(0),
            max_time_stamp: max_ts,
            max_time_stamp_str: format_ms(max_ts),
            message_queue: MessageQueue { topic: topic.clone(), broker_name: b.name.clone(), queue_id: qid },
            min_time_stamp: min_ts,
            min_time_stamp_str: format_ms(min_ts),
        });
    }
    req.response_to(rs::SUCCESS).with_body(encode_json(&ConsumeTimeSpanBody { consume_time_span_set: spans }))
}

/// GET_BROKER_CONFIG (26): the configuration as Java properties text (`key=value` lines), with
/// RocketMQ's names where a setting means the same, then every ringmq setting under its own name.
pub fn broker_config<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let c = &b.cfg;
    let flush = match b.store.log().flush_mode() {
        crate::store::FlushMode::Sync => "SYNC_FLUSH",
        crate::store::FlushMode::Async => "ASYNC_FLUSH",
    };
    let mut lines = vec![
        format!("brokerClusterName={}", c.cluster_name),
        format!("brokerName={}", b.name),
        "brokerId=0".to_string(),
        "brokerRole=ASYNC_MASTER".to_string(),
        format!("brokerIP1={}", b.addr.ip()),
        format!("listenPort={}", b.addr.port()),
        format!("namesrvAddr={}", c.namesrv_list().join(";")),
        format!("storePathRootDir={}", b.store.config().dir.display()),
        format!("flushDiskType={flush}"),
        format!("autoCreateTopicEnable={}", c.auto_create_topic),
        format!("mappedFileSizeCommitLog={}", b.store.config().segment_bytes),
        format!("fileReservedTime={}", b.store.config().file_reserved_ms / 3_600_000),
    ];
    if let Ok(Value::Object(all)) = serde_json::to_value(c) {
        for (k, v) in all {
            let v = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            lines.push(format!("{k}={v}"));
        }
    }
    let mut r = req.response_to(rs::SUCCESS).with_body(lines.join("\n") + "\n");
    let version = serde_json::to_string(&b.topics.borrow().version).unwrap_or_default();
    BrokerConfigResponse { version }.encode(&mut r);
    r
}

/// GET_CONSUMER_RUNNING_INFO (307): relayed to the consumer's connection, its answer returned as
/// RocketMQ's broker does.
pub async fn consumer_running_info<D: Disk>(b: &Broker<D>, req: &Command) -> Command {
    let (group, client_id) = match ConsumerRunningInfoRequest::decode(req) {
        Ok(h) => (h.consumer_group, h.client_id),
        Err(e) => return BrokerError::from(e).respond(req),
    };
    let conn: Option<Rc<Conn>> = b.clients.borrow().consumer_member_conn(&group, &client_id);
    let Some(conn) = conn else {
        return BrokerError::System(format!("The Consumer <{group}> <{client_id}> not online")).respond(req);
    };
    // The same request, header fields and body, as RocketMQ's broker relays it.
    let mut ask = Command::request(rq::GET_CONSUMER_RUNNING_INFO);
    ask.ext = req.ext.clone();
    ask.body = req.body.clone();
    match conn.call(ask, CONSUMER_CALL_TIMEOUT).await {
        Some(answer) => {
            let mut r = req.response_to(answer.code);
            r.remark = answer.remark;
            r.body = answer.body;
            r
        }
        None => BrokerError::ClientTimeout(format!(
            "consumer <{group}> <{client_id}> Timeout: no answer to GET_CONSUMER_RUNNING_INFO within {CONSUMER_CALL_TIMEOUT:?}"
        )).respond(req),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_formatted_as_rocketmqs_time_span_strings() {
        assert_eq!(super::format_ms(0), "1970-01-01#00:00:00:000");
        assert_eq!(super::format_ms(1_700_000_000_123), "2023-11-14#22:13:20:123");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29#00:00:00:000");
    }
}
