//! Request-reply on the native client (RocketMQ 4.6+ semantics), both sides.
//!
//! Requester: [`Producer::request`] tags the message with `CORRELATION_ID`, `REPLY_TO_CLIENT` (this
//! client's id) and `TTL`, registers this producer by heartbeat with every broker of the topic (a
//! reply is pushed only over a connection the broker knows), sends it, and waits for the broker's
//! PUSH_REPLY_MESSAGE_TO_CLIENT with the same correlation id.
//! Responder: [`Producer::reply`] turns a received request into a reply for `<CLUSTER>_REPLY_TOPIC`
//! and sends it with SEND_REPLY_MESSAGE_V2, retrying another broker on failure as RocketMQ does.

use super::connection::ClientError;
use super::producer::{Message, Producer, SendResult};
use super::route::ClientContext;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::send::PushReplyHeader;
use crate::protocol::message::{StoredMessage, property_get};
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use super::route::Reply;

/// Handles one PUSH_REPLY_MESSAGE_TO_CLIENT: hands the reply to the waiting request.
fn receive_reply(ctx: &Weak<ClientContext>, cmd: Command) -> Option<Command> {
    let resp = cmd.response_to(rs::SUCCESS);
    let Ok(h) = PushReplyHeader::decode(&cmd) else {
        return Some(cmd.response_to(rs::SYSTEM_ERROR).with_remark("malformed PUSH_REPLY_MESSAGE_TO_CLIENT header"));
    };
    let properties = h.properties.unwrap_or_default();
    let Some(id) = property_get(&properties, "CORRELATION_ID").map(str::to_string) else {
        return Some(cmd.response_to(rs::SYSTEM_ERROR).with_remark("reply without CORRELATION_ID"));
    };
    let reply = Reply { topic: h.topic, body: cmd.body_bytes(), properties };
    if let Some(tx) = ctx.upgrade().and_then(|c| c.replies.lock().ok().and_then(|mut m| m.remove(&id))) {
        let _ = tx.try_send(reply);
    }
    Some(resp) // RocketMQ answers SUCCESS even for a reply nobody waits for any more
}

impl Producer {
    /// Sends `msg` as a request and waits up to `timeout` for its reply.
    pub fn request(&self, msg: &Message, timeout: Duration) -> Result<Reply, ClientError> {
        self.register_for_replies(&msg.topic)?;
        let id = uuid_v4();
        let mut m = msg.clone();
        for (k, v) in [
            ("CORRELATION_ID", id.clone()),
            ("REPLY_TO_CLIENT", self.context().client_id.clone()),
            ("TTL", timeout.as_millis().to_string()),
        ] {
            m = m.with_property(k, &v);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let replies = &self.context().replies;
        replies.lock().map_err(|_| ClientError::Closed("reply table".into()))?.insert(id.clone(), tx);
        let forget = || {
            if let Ok(mut r) = replies.lock() {
                r.remove(&id);
            }
        };
        if let Err(e) = self.send(&m) {
            forget();
            return Err(e);
        }
        rx.recv_timeout(timeout).map_err(|_| {
            forget();
            ClientError::Timeout { addr: format!("reply to {}", msg.topic), timeout_ms: timeout.as_millis() }
        })
    }

    /// Heartbeats this producer to every broker of `topic` and installs the reply handler there.
    fn register_for_replies(&self, topic: &str) -> Result<(), ClientError> {
        let ctx = Arc::downgrade(self.context());
        self.context().on_server_request(rq::PUSH_REPLY_MESSAGE_TO_CLIENT, move |cmd| receive_reply(&ctx, cmd));
        self.register_with_brokers(topic, false, |_, _| {})
    }

    /// Answers `request` (a message received by a consumer) with `body`.
    pub fn reply(&self, request: &StoredMessage, body: impl Into<Bytes>) -> Result<SendResult, ClientError> {
        let get = |k: &str| request.property(k);
        let cluster = get("CLUSTER").ok_or_else(|| {
            ClientError::NoRoute("the request message has no CLUSTER property: cannot name the reply topic".into())
        })?;
        let mut reply = Message::new(&crate::protocol::reply_topic(&cluster), body);
        for k in ["CORRELATION_ID", "REPLY_TO_CLIENT", "TTL"] {
            if let Some(v) = get(k) {
                reply = reply.with_property(k, &v);
            }
        }
        reply = reply.with_property("MSG_TYPE", "reply");
        self.send_inner(&reply, None, 0, rq::SEND_REPLY_MESSAGE_V2)
    }
}

/// A random UUID (version 4) in its canonical text form, as Java's `UUID.randomUUID()`.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_the_canonical_v4_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
    }
}
