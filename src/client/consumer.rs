//! The native pull consumer: the caller chooses queues and offsets; also the pieces the push
//! consumer (`push.rs`) builds on: pulls with long polling, offsets, heartbeats, queue locks,
//! send-back of failed messages and RocketMQ's average queue allocation.

use super::connection::{ClientError, ClientSecurity};
use super::route::{ClientContext, MessageQueue, REQUEST_TIMEOUT};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::body;
use crate::protocol::commands::clients::{
    ConsumerData, ConsumerGroupRequest, ConsumerIdList, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody,
    SubscriptionData,
};
use crate::protocol::commands::offsets::{
    OffsetResponse, QueryConsumerOffsetRequest, SearchOffsetRequest, UpdateConsumerOffsetRequest,
};
use crate::protocol::commands::pull::{FLAG_SUBSCRIPTION, FLAG_SUSPEND, PullRequestHeader, PullResponseHeader};
use crate::protocol::commands::send::ConsumerSendMsgBackRequest;
use crate::protocol::message::StoredMessage;
use std::sync::Arc;
use std::time::Duration;

/// What one PULL_MESSAGE asks for.
#[derive(Debug, Clone, Copy)]
pub struct PullSpec<'a> {
    pub offset: u64,
    pub max: u32,
    /// [`TAG`] or [`SQL92`].
    pub expression_type: &'a str,
    pub expr: &'a str,
    /// How long the broker may hold the pull when nothing matches (0: answer at once).
    pub suspend_ms: u64,
}

/// Reads a PULL_MESSAGE answer from the broker of `mq`.
pub fn pull_result(mq: &MessageQueue, r: &Command) -> Result<PullResult, ClientError> {
    let messages = if r.code == rs::SUCCESS {
        decode_records(&r.body_bytes())
            .map_err(|m| ClientError::BadResponse { addr: mq.broker_name.clone(), message: m })?
    } else {
        Vec::new()
    };
    let h = if r.code == rs::SUCCESS || PullResponseHeader::FIELDS.iter().all(|f| r.field(f).is_some()) {
        PullResponseHeader::decode(r)
            .map_err(|e| ClientError::BadResponse { addr: mq.broker_name.clone(), message: e.to_string() })?
    } else {
        PullResponseHeader::default() // an error answer carries no positions
    };
    Ok(PullResult {
        code: r.code,
        next_offset: h.next_begin_offset,
        min_offset: h.min_offset,
        max_offset: h.max_offset,
        messages,
    })
}

/// Expression types of a subscription.
pub const TAG: &str = "TAG";
pub const SQL92: &str = "SQL92";

/// Long-poll hold asked of the broker: short enough that stopping a consumer is prompt.
pub const PULL_SUSPEND_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct PullResult {
    pub code: i32,
    pub next_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub messages: Vec<StoredMessage>,
}

/// Pull consumer: the caller chooses queues and offsets.
#[derive(Clone)]
pub struct PullConsumer {
    pub ctx: Arc<ClientContext>,
    pub group: String,
}

/// The `offset` of an answer to 14, 29, 30 or 31 (0 when the answer is an error without one).
pub(super) fn offset_of(r: &Command) -> u64 {
    OffsetResponse::decode(r).map_or(0, |h| h.offset)
}

/// The PULL_MESSAGE request of `group` for `mq`.
pub(super) fn pull_request(group: &str, mq: &MessageQueue, spec: &PullSpec) -> Command {
    let PullSpec { offset, max, expression_type, expr, suspend_ms } = *spec;
    PullRequestHeader {
        consumer_group: group.into(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        queue_offset: offset as i64,
        max_msg_nums: Some(max as i32),
        sys_flag: Some(FLAG_SUBSCRIPTION | if suspend_ms > 0 { FLAG_SUSPEND } else { 0 }),
        commit_offset: Some(0),
        suspend_timeout_millis: Some(suspend_ms as i64),
        subscription: Some(expr.into()),
        sub_version: Some(0),
        expression_type: Some(expression_type.into()),
        max_msg_bytes: None,
    }
    .request(rq::PULL_MESSAGE)
}

/// A request of `code` naming `group`, topic and queue id (offset queries and commits).
pub(super) fn queue_request(group: &str, code: i32, mq: &MessageQueue) -> Command {
    QueryConsumerOffsetRequest {
        consumer_group: group.into(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        set_zero_if_not_found: None,
    }
    .request(code)
}

/// The UPDATE_CONSUMER_OFFSET request committing `offset` (the next to consume) of `mq` for `group`.
pub(super) fn commit_request(group: &str, mq: &MessageQueue, offset: u64) -> Command {
    UpdateConsumerOffsetRequest {
        consumer_group: group.into(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset as i64,
    }
    .request(rq::UPDATE_CONSUMER_OFFSET)
}

/// Splits a pull body into stored records.
pub use crate::protocol::bodies::decode_records;

impl PullConsumer {
    pub fn new(namesrv: &str, group: &str) -> PullConsumer {
        PullConsumer::with_security(namesrv, group, ClientSecurity::default())
    }

    /// A consumer whose connections use TLS and sign requests as `security` says.
    pub fn with_security(namesrv: &str, group: &str, security: ClientSecurity) -> PullConsumer {
        PullConsumer { ctx: ClientContext::with_security(namesrv, security), group: group.into() }
    }

    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.ctx.route(topic, true)?.read_queues)
    }

    /// Address of the broker serving `mq`.
    pub fn context_addr(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        self.ctx.broker_addr(&mq.topic, &mq.broker_name)
    }

    fn call(&self, mq: &MessageQueue, cmd: Command) -> Result<Command, ClientError> {
        let addr = self.context_addr(mq)?;
        self.ctx.conn(&addr)?.request(cmd, REQUEST_TIMEOUT + Duration::from_millis(PULL_SUSPEND_MS))
    }

    /// Pulls up to `max` messages at `offset` that match the tag expression.
    pub fn pull(
        &self,
        mq: &MessageQueue,
        offset: u64,
        max: u32,
        expr: &str,
        suspend_ms: u64,
    ) -> Result<PullResult, ClientError> {
        self.pull_selected(mq, &PullSpec { offset, max, expression_type: TAG, expr, suspend_ms })
    }

    /// Pulls what `spec` asks for: with a [`TAG`] (`a || b`, `*`) or [`SQL92`] expression.
    pub fn pull_selected(&self, mq: &MessageQueue, spec: &PullSpec) -> Result<PullResult, ClientError> {
        let r = self.call(mq, self.pull_command(mq, spec))?;
        pull_result(mq, &r)
    }

    /// The PULL_MESSAGE request of [`PullConsumer::pull_selected`], for callers with their own
    /// connection (the load generator on glommio executors).
    pub fn pull_command(&self, mq: &MessageQueue, spec: &PullSpec) -> Command {
        pull_request(&self.group, mq, spec)
    }

    fn queue_request(&self, code: i32, mq: &MessageQueue) -> Command {
        queue_request(&self.group, code, mq)
    }

    /// The group's committed offset (None when the broker has none for it).
    pub fn committed_offset(&self, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
        let r = self.call(mq, self.queue_request(rq::QUERY_CONSUMER_OFFSET, mq))?;
        Ok((r.code == rs::SUCCESS).then(|| offset_of(&r)))
    }

    pub fn commit(&self, mq: &MessageQueue, offset: u64) -> Result<(), ClientError> {
        self.call(mq, commit_request(&self.group, mq, offset)).map(|_| ())
    }

    /// Hands a message this group failed to consume back to the broker that stored it
    /// (CONSUMER_SEND_MSG_BACK): redelivered through `%RETRY%<group>` after the back-off of
    /// `delay_level` (0: the broker's choice, 3 + reconsume times), or to `%DLQ%<group>` past
    /// `max_reconsume` failures (None: the group's setting on the broker, 16 by default).
    pub fn send_back(
        &self,
        mq: &MessageQueue,
        m: &StoredMessage,
        delay_level: i32,
        max_reconsume: Option<i32>,
    ) -> Result<(), ClientError> {
        let cmd = ConsumerSendMsgBackRequest {
            offset: m.physical_offset,
            group: self.group.clone(),
            delay_level: Some(delay_level),
            origin_msg_id: Some(m.property("UNIQ_KEY").unwrap_or_else(|| m.offset_msg_id())),
            origin_topic: Some(m.property("RETRY_TOPIC").unwrap_or_else(|| m.topic.clone())),
            unit_mode: Some(false),
            max_reconsume_times: max_reconsume,
        }
        .request(rq::CONSUMER_SEND_MSG_BACK);
        let addr = self.ctx.broker_addr(&mq.topic, &mq.broker_name)?;
        self.ctx.conn(&addr)?.call(cmd, REQUEST_TIMEOUT).map(|_| ())
    }

    pub fn max_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        Ok(offset_of(&self.call(mq, self.queue_request(rq::GET_MAX_OFFSET, mq))?))
    }

    pub fn min_offset(&self, mq: &MessageQueue) -> Result<u64, ClientError> {
        Ok(offset_of(&self.call(mq, self.queue_request(rq::GET_MIN_OFFSET, mq))?))
    }

    pub fn offset_by_time(&self, mq: &MessageQueue, ts_ms: i64) -> Result<u64, ClientError> {
        let cmd = SearchOffsetRequest {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp: ts_ms,
            boundary_type: None,
        }
        .request(rq::SEARCH_OFFSET_BY_TIMESTAMP);
        Ok(offset_of(&self.call(mq, cmd)?))
    }

    /// Registers this client's subscriptions with every broker of the topics (HEART_BEAT).
    /// Registers this consumer with the brokers of its topics; `subs` are (topic, tag expression).
    pub fn heartbeat(&self, subs: &[(String, String)], model: &str) -> Result<(), ClientError> {
        let typed: Vec<(String, String, &str)> = subs.iter().map(|(t, e)| (t.clone(), e.clone(), TAG)).collect();
        self.heartbeat_typed(&typed, model)
    }

    /// [`PullConsumer::heartbeat`] with (topic, expression, expression type) subscriptions.
    pub fn heartbeat_typed(&self, subs: &[(String, String, &str)], model: &str) -> Result<(), ClientError> {
        let body = body::encode_json(&HeartbeatData {
            client_id: Some(self.ctx.client_id.clone()),
            producer_data_set: Vec::new(),
            consumer_data_set: vec![ConsumerData {
                group_name: Some(self.group.clone()),
                consume_type: Some("CONSUME_PASSIVELY".into()),
                message_model: Some(model.into()),
                consume_from_where: Some("CONSUME_FROM_FIRST_OFFSET".into()),
                subscription_data_set: subs.iter().map(|(t, e, kind)| SubscriptionData::new(t, e, kind)).collect(),
                unit_mode: false,
                without_sub: false,
            }],
            without_sub: false,
        });
        let mut addrs: Vec<String> = Vec::new();
        for (t, _, _) in subs {
            match self.ctx.route(t, false) {
                Ok(r) => addrs.extend(r.brokers.into_values()),
                Err(_) if t.starts_with("%RETRY%") => {} // created by the broker on the first failure
                Err(e) => return Err(e),
            }
        }
        addrs.sort();
        addrs.dedup();
        for a in addrs {
            self.ctx.conn(&a)?.call(Command::request(rq::HEART_BEAT).with_body(body.clone()), REQUEST_TIMEOUT)?;
        }
        Ok(())
    }

    fn lock_body(&self, mq: &MessageQueue) -> String {
        body::encode_json(&LockBatchRequestBody {
            consumer_group: self.group.clone(),
            client_id: self.ctx.client_id.clone(),
            only_this_broker: false,
            mq_set: vec![mq.clone()],
        })
    }

    /// Takes or renews the broker lock of `mq` for this client (orderly consumption).
    pub fn lock(&self, mq: &MessageQueue) -> Result<bool, ClientError> {
        let r = self.call(mq, Command::request(rq::LOCK_BATCH_MQ).with_body(self.lock_body(mq)))?;
        let locked: LockBatchResponseBody = body::decode_json("LockBatchResponseBody", &r.body_bytes())
            .map_err(|e| ClientError::BadResponse { addr: mq.broker_name.clone(), message: e.to_string() })?;
        Ok(locked.lock_ok_mq_set.contains(mq))
    }

    pub fn unlock(&self, mq: &MessageQueue) -> Result<(), ClientError> {
        self.call(mq, Command::request(rq::UNLOCK_BATCH_MQ).with_body(self.lock_body(mq))).map(|_| ())
    }

    /// Consumer ids of the group, sorted (from any broker of `topic`).
    pub fn consumer_ids(&self, topic: &str) -> Result<Vec<String>, ClientError> {
        let route = self.ctx.route(topic, false)?;
        let addr = route.brokers.values().next().ok_or_else(|| ClientError::NoRoute(topic.into()))?;
        let cmd = ConsumerGroupRequest { consumer_group: self.group.clone() }.request(rq::GET_CONSUMER_LIST_BY_GROUP);
        let r = self.ctx.conn(addr)?.call(cmd, REQUEST_TIMEOUT)?;
        let list: ConsumerIdList = body::decode_json("ConsumerIdList", &r.body_bytes())
            .map_err(|e| ClientError::BadResponse { addr: addr.clone(), message: e.to_string() })?;
        let mut ids = list.consumer_id_list;
        ids.sort();
        Ok(ids)
    }
}

/// RocketMQ's default allocation: contiguous, as even as possible, by position in the sorted id list.
pub fn allocate_average<T: Clone>(queues: &[T], ids: &[String], me: &str) -> Vec<T> {
    let Some(i) = ids.iter().position(|x| x == me) else {
        return Vec::new();
    };
    let (n, q) = (ids.len(), queues.len());
    let rem = q % n;
    let size = if q <= n {
        1
    } else if rem > 0 && i < rem {
        q / n + 1
    } else {
        q / n
    };
    let start = if rem > 0 && i < rem { i * size } else { i * size + rem };
    (0..size.min(q.saturating_sub(start))).map(|k| queues[(start + k) % q].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_allocation_matches_rocketmq() {
        let q: Vec<i32> = (0..8).collect();
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(allocate_average(&q, &ids, "a"), vec![0, 1, 2]);
        assert_eq!(allocate_average(&q, &ids, "b"), vec![3, 4, 5]);
        assert_eq!(allocate_average(&q, &ids, "c"), vec![6, 7]);
        assert!(allocate_average(&q, &ids, "z").is_empty());
        let many: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(allocate_average(&q[..2], &many[..3], "2"), Vec::<i32>::new());
    }
}
