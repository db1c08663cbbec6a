//! Transactional messages: half messages, END_TRANSACTION, and check-back.
//!
//! A half message (sysFlag PREPARED, property TRAN_MSG=true) is stored in `RMQ_SYS_TRANS_HALF_TOPIC`
//! queue 0 with REAL_TOPIC/REAL_QID, invisible to consumers. END_TRANSACTION commits (stores the real
//! message with transaction type COMMIT and the half's physical offset) or rolls back, and in both
//! cases appends an op record (`RMQ_SYS_TRANS_OP_HALF_TOPIC`, tag `d`, body = the half's queue offset)
//! that marks the half resolved. A per-shard check task walks unresolved halves older than the
//! transaction timeout: it re-appends a copy with TRANSACTION_CHECK_TIMES + 1 and asks a live producer
//! of the group (CHECK_TRANSACTION_STATE on its connection); past the check limit the half is
//! discarded with a log line and a counter. Resolved offsets are rebuilt from the op queue at start.

use super::Broker;
use super::error::BrokerError;
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::transaction::{
    CheckTransactionStateRequest, EndTransactionRequest, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE,
};
use crate::protocol::message::{
    FLAG_TRANSACTION_COMMIT, FLAG_TRANSACTION_MASK, FLAG_TRANSACTION_PREPARED, MessageToStore, StoredMessage,
    offset_msg_id, property_get, property_set,
};
use crate::store::io::Disk;
use crate::store::now_ms;
use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
const IMMUNITY_SECS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
const TRANSACTION_ID: &str = "__transactionId__";
/// Checks before a half message is discarded (RocketMQ's transactionCheckMax).
pub const CHECK_MAX: u32 = 15;

/// Transaction state of one shard.
#[derive(Default)]
pub struct Transactions {
    /// Half-queue offsets resolved by an op record.
    pub resolved: HashSet<u64>,
    /// Next half-queue offset the checker looks at (rebuilt as the first unresolved at start).
    pub check_from: Cell<u64>,
    pub discarded: Cell<u64>,
    /// Check-back rounds completed: lets an operator (and a test) see that the checker ran, so
    /// "no half was checked" can be told apart from "the checker has not looked yet".
    pub rounds: Cell<u64>,
}

/// Rewrites a prepared message into a half message.
pub fn to_half(m: &mut MessageToStore) {
    let uniq = property_get(&m.properties, "UNIQ_KEY").unwrap_or_default().to_string();
    let extra: &[(&str, &str)] = if uniq.is_empty() { &[] } else { &[(TRANSACTION_ID, &uniq)] };
    super::parking::park(m, HALF_TOPIC, 0, extra);
    m.sys_flag &= !FLAG_TRANSACTION_MASK;
}

/// Whether a send is a transaction's half message.
pub fn is_prepared(m: &MessageToStore) -> bool {
    m.sys_flag & FLAG_TRANSACTION_MASK == FLAG_TRANSACTION_PREPARED
}

/// Rebuilds the resolved set from the op queue (start-up).
pub async fn recover<D: Disk>(b: &Broker<D>) {
    let (min, max) = b.store.queue_bounds(OP_TOPIC, 0);
    let mut resolved = HashSet::new();
    let mut off = min;
    while off < max {
        let r = b.store.get(OP_TOPIC, 0, off, 256, 1 << 20, &|_| true, &|_| true).await;
        for rec in &r.records {
            if let Ok(m) = StoredMessage::decode(rec) {
                resolved.extend(
                    std::str::from_utf8(&m.body).unwrap_or("").split(',').filter_map(|s| s.trim().parse::<u64>().ok()),
                );
            }
        }
        if r.next_offset <= off {
            break;
        }
        off = r.next_offset;
    }
    let (hmin, _) = b.store.queue_bounds(HALF_TOPIC, 0);
    b.transactions.borrow_mut().resolved = resolved;
    b.transactions.borrow().check_from.set(hmin);
}

fn op_record<D: Disk>(b: &Broker<D>, half_queue_offset: u64) -> MessageToStore {
    MessageToStore {
        topic: OP_TOPIC.into(),
        queue_id: 0,
        flag: 0,
        body: half_queue_offset.to_string().into(),
        properties: crate::protocol::message::properties_encode([("TAGS", "d")]),
        sys_flag: 0,
        born_timestamp_ms: now_ms(),
        born_host: b.addr,
        store_host: b.addr,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

/// END_TRANSACTION: commit or roll back the half message at `commitLogOffset`.
pub async fn end_transaction<D: Disk>(b: &Rc<Broker<D>>, req: &Command) -> Option<Command> {
    let h = match EndTransactionRequest::decode(req) {
        Ok(h) if h.commit_or_rollback == TRANSACTION_NOT_TYPE => return None, // nothing to do, no reply
        Ok(h) => h,
        Err(e) => return Some(BrokerError::from(e).respond(req)),
    };
    let resp = match end(b, &h).await {
        Ok(()) => req.response_to(rs::SUCCESS),
        Err(e) => {
            tracing::warn!(error = %e, "END_TRANSACTION refused");
            e.respond(req)
        }
    };
    Some(resp)
}

async fn end<D: Disk>(b: &Rc<Broker<D>>, h: &EndTransactionRequest) -> Result<(), BrokerError> {
    let (phys, qoff) = (h.commit_log_offset, h.tran_state_table_offset);
    let half = match b.store.read_message(phys).await {
        Ok(half) if half.topic == HALF_TOPIC => half,
        Err(e @ crate::store::StoreError::Damaged { .. }) => return Err(e.into()),
        _ => return Err(BrokerError::System(format!("no half message at offset {phys}"))),
    };
    if property_get(&half.properties, "PGROUP").is_some_and(|g| g != h.producer_group) {
        return Err(BrokerError::System("producer group does not match the half message".into()));
    }
    if half.queue_offset != qoff {
        return Err(BrokerError::System("tranStateTableOffset does not match the half message".into()));
    }
    if b.transactions.borrow().resolved.contains(&qoff) {
        return Ok(()); // already resolved: idempotent
    }
    let mut batch = Vec::new();
    if h.commit_or_rollback == TRANSACTION_COMMIT {
        let Some(mut real) = committed_copy(b, &half) else {
            return Err(BrokerError::System("half message lacks REAL_TOPIC/REAL_QID".into()));
        };
        b.ensure_topic(&real.topic, real.queue_id as u32 + 1);
        if let Err(why) = super::retry::apply_send_rules(b, &mut real, None) {
            // The half message was accepted; a committed message is never dropped: deliver it now.
            tracing::warn!(offset = qoff, %why, "committed message has an invalid delivery time; delivered now");
        }
        batch.push(real);
    }
    let real_dest = batch.first().map(|m| (m.topic.clone(), m.queue_id));
    b.ensure_topic(OP_TOPIC, 1);
    // The committed message and the op record that resolves its half go in one append: one seal
    // covers both, so a crash keeps both or neither, and a restart never commits the half again.
    batch.push(op_record(b, qoff));
    b.store.put(&batch, true).await?;
    b.transactions.borrow_mut().resolved.insert(qoff);
    if let Some((t, q)) = real_dest {
        b.wake_pollers(&t, q);
    }
    Ok(())
}

fn committed_copy<D: Disk>(b: &Broker<D>, half: &StoredMessage) -> Option<MessageToStore> {
    let mut real = super::parking::unpark(half, b.addr)?;
    real.sys_flag = (half.sys_flag & !FLAG_TRANSACTION_MASK) | FLAG_TRANSACTION_COMMIT;
    real.prepared_transaction_offset = half.physical_offset as i64;
    Some(real)
}

/// One check-back round over unresolved half messages older than `timeout`.
pub async fn check_round<D: Disk>(b: &Rc<Broker<D>>, timeout: Duration) {
    let (min, max) = b.store.queue_bounds(HALF_TOPIC, 0);
    let mut off = b.transactions.borrow().check_from.get().max(min);
    while off < max {
        if b.transactions.borrow().resolved.contains(&off) {
            off += 1;
            continue;
        }
        let Some(e) = b.store.entry(HALF_TOPIC, 0, off).await else {
            break;
        };
        let half = match b.store.read_message(e.physical_offset).await {
            Ok(h) => h,
            Err(err) => {
                // Damaged (logged and counted by the store) or removed: never checked or committed.
                tracing::warn!(offset = off, error = %err, "half message unreadable: not checked back");
                off += 1;
                continue;
            }
        };
        let immunity =
            property_get(&half.properties, IMMUNITY_SECS).and_then(|v| v.parse::<i64>().ok()).map(|s| s * 1000);
        let age = now_ms() - half.store_timestamp_ms;
        if age < immunity.unwrap_or(timeout.as_millis() as i64) {
            break; // later halves are younger
        }
        let checks: u32 = property_get(&half.properties, CHECK_TIMES).and_then(|v| v.parse().ok()).unwrap_or(0);
        if checks >= CHECK_MAX {
            tracing::warn!(offset = off, msg_id = %half.offset_msg_id(), "transaction unresolved after {CHECK_MAX} checks: discarded");
            if !resolve_durably(b, vec![], off).await {
                break;
            }
            b.transactions.borrow().discarded.set(b.transactions.borrow().discarded.get() + 1);
            off += 1;
            continue;
        }
        let group = property_get(&half.properties, "PGROUP").unwrap_or_default().to_string();
        let conn = b.clients.borrow().producer_conn(&group);
        if conn.is_none() {
            // As RocketMQ does: the check is counted (the copy carries it) and the round moves on,
            // so an orphaned group neither blocks later halves nor stays undecided forever.
            tracing::warn!(
                offset = off,
                group,
                check = checks + 1,
                "no live producer of the group to check a transaction back"
            );
        }
        if !ask_producer(b, &half, off, checks + 1, conn.as_ref()).await {
            break;
        }
        off += 1;
    }
    let t = b.transactions.borrow();
    t.check_from.set(off);
    t.rounds.set(t.rounds.get() + 1);
}

/// Appends `with` and an op record resolving the half at `off` in one append (one seal: both or
/// neither survive a crash); marks it resolved. False when the store refused.
async fn resolve_durably<D: Disk>(b: &Broker<D>, mut with: Vec<MessageToStore>, off: u64) -> bool {
    b.ensure_topic(OP_TOPIC, 1);
    with.push(op_record(b, off));
    match b.store.put(&with, true).await {
        Ok(_) => {
            b.transactions.borrow_mut().resolved.insert(off);
            true
        }
        Err(e) => {
            tracing::warn!(offset = off, error = %e, "cannot record a transaction check");
            false
        }
    }
}

/// Re-appends the half at `off` with one more check, superseding it durably, and sends
/// CHECK_TRANSACTION_STATE about the copy to `conn` when a producer of the group is live.
async fn ask_producer<D: Disk>(
    b: &Broker<D>,
    half: &StoredMessage,
    off: u64,
    checks: u32,
    conn: Option<&Rc<crate::net::conn::Conn>>,
) -> bool {
    let mut copy = MessageToStore {
        topic: HALF_TOPIC.into(),
        queue_id: 0,
        flag: half.flag,
        body: half.body.clone(),
        properties: property_set(&half.properties, CHECK_TIMES, &checks.to_string()),
        sys_flag: half.sys_flag,
        born_timestamp_ms: half.born_timestamp_ms,
        born_host: half.born_host,
        store_host: b.addr,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: 0,
    };
    b.ensure_topic(OP_TOPIC, 1);
    let batch = [copy.clone(), op_record(b, off)];
    let placed = match b.store.put(&batch, true).await {
        Ok(p) => p[0],
        Err(e) => {
            tracing::warn!(error = %e, "cannot re-append half message for check-back");
            return false;
        }
    };
    // The original is superseded by the copy, durably: a restart checks the copy only.
    b.transactions.borrow_mut().resolved.insert(off);
    let Some(conn) = conn else { return true };
    let uniq = property_get(&copy.properties, "UNIQ_KEY").unwrap_or_default().to_string();
    let mut cmd = Command::request(rq::CHECK_TRANSACTION_STATE);
    CheckTransactionStateRequest {
        tran_state_table_offset: placed.queue_offset,
        commit_log_offset: placed.physical_offset,
        msg_id: Some(uniq.clone()),
        transaction_id: Some(uniq.clone()),
        offset_msg_id: Some(offset_msg_id(&b.addr, placed.physical_offset)),
    }
    .encode(&mut cmd);
    // The body is the half message as the producer should see it: real topic and queue.
    copy.topic = property_get(&copy.properties, super::schedule::REAL_TOPIC).unwrap_or_default().to_string();
    copy.queue_id = property_get(&copy.properties, super::schedule::REAL_QID).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(copy.encoded_len());
    copy.encode_into(&mut body, placed.physical_offset, placed.queue_offset, now_ms());
    conn.send_oneway(cmd.with_body(body));
    true
}
