//! The native transactional producer: send a half message, run the local transaction, end it with
//! END_TRANSACTION; answer the broker's CHECK_TRANSACTION_STATE through a check listener.

use super::connection::ClientError;
use super::consumer::decode_records;
use super::producer::{Message, Producer, SendResult};
use super::route::ClientContext;
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::commands::transaction::{
    CheckTransactionStateRequest, EndTransactionRequest, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE, TRANSACTION_ROLLBACK,
};
use crate::protocol::message::{StoredMessage, decode_offset_msg_id};
use std::sync::{Arc, Weak};

/// Outcome of a local transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Commit,
    Rollback,
    Unknown,
}

impl TxState {
    fn code(self) -> i32 {
        match self {
            TxState::Commit => TRANSACTION_COMMIT,
            TxState::Rollback => TRANSACTION_ROLLBACK,
            TxState::Unknown => TRANSACTION_NOT_TYPE,
        }
    }
}

fn end_command(group: &str, state: TxState, phys: u64, queue_offset: u64, uniq: &str, from_check: bool) -> Command {
    EndTransactionRequest {
        producer_group: group.into(),
        tran_state_table_offset: queue_offset,
        commit_log_offset: phys,
        commit_or_rollback: state.code(),
        from_transaction_check: Some(from_check),
        msg_id: Some(uniq.into()),
        transaction_id: Some(uniq.into()),
    }
    .request(rq::END_TRANSACTION)
}

impl Producer {
    /// Sends `msg` as a half message, runs `local`, and commits or rolls back by its answer
    /// (`Unknown` leaves the decision to the broker's check-back).
    pub fn send_in_transaction(
        &self,
        msg: &Message,
        local: impl FnOnce() -> TxState,
    ) -> Result<(SendResult, TxState), ClientError> {
        let group = self.group().to_string();
        let half = msg.clone().with_property("TRAN_MSG", "true").with_property("PGROUP", &group);
        let r = self.send_with_sys_flag(&half, 4)?;
        let state = local();
        let (host, phys) = decode_offset_msg_id(&r.offset_msg_id)
            .ok_or_else(|| ClientError::BadResponse { addr: "broker".into(), message: "bad offset msgId".into() })?;
        if state != TxState::Unknown {
            let cmd = end_command(&group, state, phys, r.queue_offset, &r.unique_key, false);
            self.context().conn(&host.to_string())?.oneway(cmd)?;
        }
        Ok((r, state))
    }

    /// Registers this producer group with the brokers of `topic` and answers their check-backs with
    /// `check` (which sees the half message with its real topic).
    pub fn set_check_listener(
        &self,
        topic: &str,
        check: impl Fn(&StoredMessage) -> TxState + Send + Sync + 'static,
    ) -> Result<(), ClientError> {
        let check: Arc<dyn Fn(&StoredMessage) -> TxState + Send + Sync> = Arc::new(check);
        self.register_with_brokers(topic, true, |conn, addr| {
            let (ctx, group, check, a2): (Weak<ClientContext>, String, _, String) =
                (Arc::downgrade(self.context()), self.group().to_string(), check.clone(), addr.to_string());
            conn.on_server_request(rq::CHECK_TRANSACTION_STATE, move |cmd| {
                let ctx = ctx.upgrade()?;
                let half = decode_records(&cmd.body_bytes()).ok().and_then(|v| v.into_iter().next())?;
                let state = check(&half);
                let h = CheckTransactionStateRequest::decode(&cmd).ok()?;
                let uniq = h.msg_id.as_deref().unwrap_or_default();
                let end = end_command(&group, state, h.commit_log_offset, h.tran_state_table_offset, uniq, true);
                if let Ok(c) = ctx.conn(&a2) {
                    let _ = c.oneway(end);
                }
                None
            });
        })
    }
}
