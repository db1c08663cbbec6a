//! Request-reply (RocketMQ 4.6+), on the shard that receives the reply.
//!
//! A requester sends an ordinary message carrying `CORRELATION_ID`, `REPLY_TO_CLIENT` (its client
//! id) and `TTL`; every stored message carries `CLUSTER`. The responder builds the reply for topic
//! `<cluster>_REPLY_TOPIC` and sends it with SEND_REPLY_MESSAGE (324, long header names) or _V2 (325,
//! short names). This shard pushes it to the requester's connection — found among the producers
//! registered by heartbeat on this shard — with PUSH_REPLY_MESSAGE_TO_CLIENT (326) and waits for the
//! answer, then stores the reply in the reply topic (RocketMQ's `storeReplyMessageEnable`, default
//! on). A requester not connected to this shard gets SYSTEM_ERROR, which RocketMQ producers retry on
//! another broker — as with RocketMQ, whose brokers do not forward replies either.

use super::Broker;
use super::error::{BrokerError, Reply};
use super::send::{SendHeader, build_messages};
use crate::net::conn::Conn;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::send::{PushReplyHeader, SendResponseHeader};
use crate::protocol::message::{MessageToStore, keys, offset_msg_id, property_get, property_set};
use crate::store::io::Disk;
use std::rc::Rc;
use std::time::Duration;

pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
/// How long the push to the requester may take: a producer's default send timeout, so a responder
/// learns of a dead requester before its own request times out (RocketMQ waits 10 s).
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325).
pub async fn handle<D: Disk>(b: &Rc<Broker<D>>, conn: &Rc<Conn>, req: &Command) -> Reply {
    let h = SendHeader::decode(req)?;
    if h.batch {
        return Err(BrokerError::MessageIllegal("a reply cannot be a batch".into()));
    }
    let msgs = build_messages(b, conn, req, &h)?;
    let m = &msgs[0];
    let pushed = push_to_requester(b, &h, m).await;
    let mut resp = match &pushed {
        Ok(()) => req.response_to(rs::SUCCESS),
        Err(why) => BrokerError::System(why.clone()).respond(req),
    };
    // Where the reply was stored; "0" and offset 0 when it was not (the push's outcome decides).
    let mut stored = SendResponseHeader { msg_id: "0".into(), queue_id: m.queue_id, ..Default::default() };
    match b.store.put(&msgs, property_get(&h.properties, keys::WAIT) != Some("false")).await {
        Ok(placed) => {
            b.wake_pollers(&m.topic, m.queue_id);
            stored.msg_id = offset_msg_id(&b.addr, placed[0].physical_offset);
            stored.queue_offset = placed[0].queue_offset;
        }
        Err(e) if pushed.is_ok() => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "reply message not stored"),
    }
    stored.encode(&mut resp);
    Ok(resp)
}

/// Pushes the reply to the connection of the requester named by REPLY_TO_CLIENT; the error is the
/// remark for the responder (RocketMQ's texts).
async fn push_to_requester<D: Disk>(b: &Broker<D>, h: &SendHeader, m: &MessageToStore) -> Result<(), String> {
    let Some(client) = property_get(&m.properties, REPLY_TO_CLIENT) else {
        return Err(format!("reply message properties[{REPLY_TO_CLIENT}] is null"));
    };
    let Some(target) = b.clients.borrow().producer_by_client_id(client) else {
        return Err(format!("push reply message fail, channel of {client} not found."));
    };
    let now = crate::store::now_ms();
    let mut push = PushReplyHeader {
        producer_group: h.producer_group.clone(),
        topic: h.topic.clone(),
        default_topic: Some(super::topics::DEFAULT_TOPIC.into()),
        default_topic_queue_nums: Some(h.default_topic_queue_nums),
        queue_id: m.queue_id,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp_ms,
        flag: h.flag,
        properties: Some(property_set(&m.properties, PUSH_REPLY_TIME, &now.to_string())),
        reconsume_times: Some(h.reconsume_times),
        unit_mode: Some(false),
        born_host: m.born_host.to_string(),
        store_host: b.addr.to_string(),
        store_timestamp: now,
    }
    .request(rq::PUSH_REPLY_MESSAGE_TO_CLIENT);
    push.body = vec![m.body.clone()];
    match target.call(push, PUSH_TIMEOUT).await {
        Some(answer) if answer.code == rs::SUCCESS => Ok(()),
        _ => Err(format!("push reply message to {client}fail.")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reply_topic_follows_the_cluster_name() {
        assert_eq!(crate::protocol::reply_topic("DefaultCluster"), "DefaultCluster_REPLY_TOPIC");
    }
}
