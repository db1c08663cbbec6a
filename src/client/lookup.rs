//! Message lookups and offset resets on the native client: QUERY_MESSAGE by key (every broker of the
//! topic), VIEW_MESSAGE_BY_ID by offset message id, and INVOKE_BROKER_TO_RESET_OFFSET (replay a group
//! from a time). Used by applications and by `ringmq admin`.

use super::connection::ClientError;
use super::consumer::{PullConsumer, decode_records};
use super::route::REQUEST_TIMEOUT;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::offsets::ResetOffsetRequest;
use crate::protocol::commands::query::{QueryMessageRequest, ViewMessageRequest};
use crate::protocol::message::{StoredMessage, decode_offset_msg_id};
use crate::protocol::offset_table::{self, QueueOffset};
use std::time::Duration;

fn bad(addr: &str, message: String) -> ClientError {
    ClientError::BadResponse { addr: addr.to_string(), message }
}

impl PullConsumer {
    /// Messages of `topic` whose KEYS (or unique key) include `key`, from every broker, up to `max`
    /// per broker.
    pub fn query_by_key(&self, topic: &str, key: &str, max: u32) -> Result<Vec<StoredMessage>, ClientError> {
        let mut out = Vec::new();
        for addr in self.ctx.route(topic, true)?.brokers.into_values() {
            let c = QueryMessageRequest {
                topic: topic.into(),
                key: key.into(),
                max_num: Some(max.into()),
                begin_timestamp: Some(0),
                end_timestamp: Some(i64::MAX),
                unique_key_query: None,
            }
            .request(rq::QUERY_MESSAGE);
            let r = self.ctx.conn(&addr)?.request(c, REQUEST_TIMEOUT)?;
            if r.code == rs::SUCCESS {
                out.extend(decode_records(&r.body_bytes()).map_err(|m| bad(&addr, m))?);
            }
        }
        Ok(out)
    }

    /// The message with this offset message id (the `msgId` a send returns), from the broker named in it.
    pub fn view_by_id(&self, offset_msg_id: &str) -> Result<StoredMessage, ClientError> {
        let (host, phys) = decode_offset_msg_id(offset_msg_id)
            .ok_or_else(|| ClientError::NoRoute(format!("{offset_msg_id:?} is not an offset message id")))?;
        let addr = host.to_string();
        let c = ViewMessageRequest { offset: phys }.request(rq::VIEW_MESSAGE_BY_ID);
        let r = self.ctx.conn(&addr)?.call(c, REQUEST_TIMEOUT)?;
        let mut msgs = decode_records(&r.body_bytes()).map_err(|m| bad(&addr, m))?;
        msgs.pop().ok_or_else(|| bad(&addr, "empty VIEW_MESSAGE_BY_ID answer".into()))
    }

    /// Moves this group's offsets on `topic`, on every broker, to the first message stored at or after
    /// `timestamp_ms` (−1: the end). Brokers commit the offsets and push them to the group's running
    /// consumers. Returns the new offset of each queue.
    pub fn reset_offset_by_time(&self, topic: &str, timestamp_ms: i64) -> Result<Vec<QueueOffset>, ClientError> {
        let mut table = Vec::new();
        for addr in self.ctx.route(topic, true)?.brokers.into_values() {
            let cmd = ResetOffsetRequest {
                topic: topic.into(),
                group: self.group.clone(),
                timestamp: timestamp_ms,
                is_force: Some(true),
                ..Default::default()
            }
            .request(rq::INVOKE_BROKER_TO_RESET_OFFSET);
            let r = self.ctx.conn(&addr)?.call(cmd, Duration::from_secs(10))?;
            let body = String::from_utf8_lossy(&r.body_bytes()).into_owned();
            table.extend(offset_table::decode(&body).map_err(|m| bad(&addr, m))?);
        }
        Ok(table)
    }
}
