//! Transactions: END_TRANSACTION (37, producer → broker) and CHECK_TRANSACTION_STATE (39, broker →
//! producer, oneway).
//!
//! END_TRANSACTION `extFields`: `producerGroup`, `tranStateTableOffset` (the half message's queue
//! offset), `commitLogOffset` (its physical offset), `commitOrRollback` (0 not a type, 8 commit, 12
//! rollback — the sysFlag transaction values), `fromTransactionCheck`, `msgId`, `transactionId`.
//! CHECK_TRANSACTION_STATE carries the half message as its body and `tranStateTableOffset`,
//! `commitLogOffset`, `msgId`, `transactionId`, `offsetMsgId`.

use super::{Checked, HeaderError, header};

/// `commitOrRollback`: not a transaction (nothing to do, no answer).
pub const TRANSACTION_NOT_TYPE: i32 = 0;
/// `commitOrRollback`: commit.
pub const TRANSACTION_COMMIT: i32 = 8;
/// `commitOrRollback`: roll back.
pub const TRANSACTION_ROLLBACK: i32 = 12;

header! {
    /// END_TRANSACTION.
    pub struct EndTransactionRequest {
        pub producer_group: String = "producerGroup",
        pub tran_state_table_offset: u64 = "tranStateTableOffset",
        pub commit_log_offset: u64 = "commitLogOffset",
        pub commit_or_rollback: i32 = "commitOrRollback",
        pub from_transaction_check: Option<bool> = "fromTransactionCheck",
        pub msg_id: Option<String> = "msgId",
        pub transaction_id: Option<String> = "transactionId",
    }
}

impl Checked for EndTransactionRequest {
    fn check(&self) -> Result<(), HeaderError> {
        match self.commit_or_rollback {
            TRANSACTION_NOT_TYPE | TRANSACTION_COMMIT | TRANSACTION_ROLLBACK => Ok(()),
            v => Err(HeaderError::new("commitOrRollback", format!("= {v} is none of 0, 8 (commit), 12 (rollback)"))),
        }
    }
}

header! {
    /// CHECK_TRANSACTION_STATE.
    pub struct CheckTransactionStateRequest {
        pub tran_state_table_offset: u64 = "tranStateTableOffset",
        pub commit_log_offset: u64 = "commitLogOffset",
        pub msg_id: Option<String> = "msgId",
        pub transaction_id: Option<String> = "transactionId",
        pub offset_msg_id: Option<String> = "offsetMsgId",
    }
}
impl Checked for CheckTransactionStateRequest {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn round_trips_ranges_and_garbage() {
        let e = EndTransactionRequest {
            producer_group: "P".into(),
            tran_state_table_offset: 4,
            commit_log_offset: 4096,
            commit_or_rollback: TRANSACTION_COMMIT,
            from_transaction_check: Some(false),
            msg_id: Some("U".into()),
            transaction_id: Some("U".into()),
        };
        let c = e.request(rq::END_TRANSACTION);
        assert_eq!(EndTransactionRequest::decode(&over_the_wire(&c)), Ok(e));
        each_required_field_is_checked(
            &c,
            &["producerGroup", "tranStateTableOffset", "commitLogOffset", "commitOrRollback"],
            EndTransactionRequest::decode,
        );
        garbage_never_panics(&c, EndTransactionRequest::decode);
        let mut bad = c.clone();
        bad.put("commitOrRollback", 4);
        assert_eq!(EndTransactionRequest::decode(&bad).unwrap_err().field, "commitOrRollback");
        let k = CheckTransactionStateRequest { tran_state_table_offset: 1, commit_log_offset: 2, ..Default::default() };
        assert_eq!(
            CheckTransactionStateRequest::decode(&over_the_wire(&k.request(rq::CHECK_TRANSACTION_STATE))),
            Ok(k)
        );
    }
}
