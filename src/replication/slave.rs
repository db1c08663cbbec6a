//! A slave's side of its replica set, on the shard's executor: connect to the master the controller
//! names, at its
//! replication port, say where this log ends, then append every frame it streams — verified again
//! here (`Store::append_replicated`) — and acknowledge the durable end after every group commit and
//! at least every second.

use super::timed;
use super::wire::{self, Hello, Transfer, Welcome};
use crate::rt::TcpStream;
use crate::store::Store;
use crate::store::io::Disk;
use crate::store::replicas::ReplicaRole;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Between attempts to reach the master (and checks for one being known).
const RETRY: Duration = Duration::from_millis(200);
/// A master silent this long (it heartbeats every second) is given up on and looked up again.
const MASTER_SILENCE: Duration = super::master::SLAVE_SILENCE;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Who this slave is, and where its master is (the controller says, through `agent.rs`).
pub struct Follower {
    pub broker_name: String,
    pub node_id: u32,
    pub learner: bool,
    /// The master's client address; none while no master is known.
    pub master: Rc<RefCell<Option<String>>>,
    /// Where the master's tables go.
    pub meta: Rc<dyn super::Metadata>,
    /// Called when this slave's readable end (its confirm offset) moved: parked pulls run again.
    pub readable_moved: Rc<dyn Fn()>,
}

/// Follows the master until `stop` is set or this replica stops being a slave.
pub async fn follow<D: Disk + 'static>(store: Rc<Store<D>>, me: Follower, stop: Rc<Cell<bool>>) {
    let mut last_error = String::new();
    while !stop.get() && store.replicas.role() == ReplicaRole::Slave {
        match follow_once(&store, &me, &stop).await {
            Ok(()) => last_error.clear(),
            Err(e) => {
                if e != last_error {
                    tracing::warn!(broker = %me.broker_name, error = %e, "following the master failed; retrying");
                    last_error = e;
                }
            }
        }
        crate::rt::sleep(RETRY).await;
    }
}

/// The replication address of a broker at `addr`: its port + 1.
fn replication_addr(addr: &str) -> Result<String, String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("bad broker address {addr}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad broker address {addr}"))?;
    Ok(format!("{host}:{}", port.checked_add(1).ok_or_else(|| format!("bad broker address {addr}"))?))
}

async fn follow_once<D: Disk + 'static>(
    store: &Rc<Store<D>>,
    me: &Follower,
    stop: &Rc<Cell<bool>>,
) -> Result<(), String> {
    let Some(master) = me.master.borrow().clone() else {
        return Ok(());
    };
    let target = replication_addr(&master)?;
    let mut stream = timed(CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await?;
    let _ = stream.set_nodelay(true);
    let log = store.log();
    let (epoch, epoch_start) = store.epochs().last();
    let hello = Hello { learner: me.learner, node_id: me.node_id, epoch, epoch_start, log_end: log.write_pos() };
    timed(CONNECT_TIMEOUT, stream.write_all(&hello.encode())).await?;
    let mut head = [0u8; wire::WELCOME_BYTES];
    timed(CONNECT_TIMEOUT, stream.read_exact(&mut head)).await?;
    let (mut welcome, reason_len, entries_len) = Welcome::decode_head(&head)?;
    let mut rest = vec![0u8; reason_len + entries_len];
    timed(CONNECT_TIMEOUT, stream.read_exact(&mut rest)).await?;
    welcome.decode_rest(reason_len, &rest);
    match welcome.status {
        wire::STATUS_OK => {}
        wire::STATUS_DIVERGED => {
            let mut theirs = crate::store::epochs::EpochHistory::default();
            for &(e, s) in &welcome.epochs {
                theirs.push(e, s);
            }
            let to = store.epochs().truncation_point(log.write_pos(), &theirs, welcome.master_end);
            tracing::warn!(broker = %me.broker_name, master = %target, reason = %welcome.reason, to,
                "this log diverged from the master's: truncating");
            store.truncate_to(to).await.map_err(|e| format!("truncation to {to} failed: {e}"))?;
            me.meta.truncated();
            return Err(format!("truncated to {to} where the log diverged; reconnecting"));
        }
        _ => return Err(format!("master {target} refused: {}", welcome.reason)),
    }
    tracing::info!(broker = %me.broker_name, master = %target, from = hello.log_end, "following the master");
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let closed = Rc::new(Cell::new(false));
    // What consumers of this slave may read moves with the master's confirm offset and with this
    // slave's own flushes: either may wake them.
    let readable = Rc::new(Cell::new(store.visible_limit()));
    let check_readable = {
        let (store, readable, moved) = (store.clone(), readable.clone(), me.readable_moved.clone());
        Rc::new(move || {
            let now = store.visible_limit();
            if now > readable.replace(now) {
                moved();
            }
        })
    };
    let acker = {
        let (store, closed, check_readable) = (store.clone(), closed.clone(), check_readable.clone());
        crate::rt::spawn(async move {
            let log = store.log();
            loop {
                let seen = log.flushed.generation();
                let ack = wire::encode_ack(log.flushed_pos());
                if let Err(e) = timed(MASTER_SILENCE, async {
                    wr.write_all(&ack).await?;
                    wr.flush().await
                })
                .await
                {
                    tracing::info!(error = %e, "replication ack failed");
                    break;
                }
                if closed.get() {
                    break;
                }
                log.flushed.wait_past_at_most(seen, super::master::HEARTBEAT).await;
                check_readable();
            }
            closed.set(true);
        })
    };
    let still = || me.master.borrow().as_deref() == Some(&master[..]);
    let result = receive(store, &*me.meta, &mut rd, (&closed, stop), (&still, &*check_readable)).await;
    closed.set(true);
    drop(acker);
    result
}

async fn receive<D: Disk, R: futures_lite::AsyncRead + Unpin>(
    store: &Store<D>,
    meta: &dyn super::Metadata,
    rd: &mut R,
    (closed, stop): (&Cell<bool>, &Cell<bool>),
    (still_master, check_readable): (&dyn Fn() -> bool, &dyn Fn()),
) -> Result<(), String> {
    let mut head = [0u8; wire::TRANSFER_BYTES];
    while !stop.get() && !closed.get() && store.replicas.role() == ReplicaRole::Slave && still_master() {
        timed(MASTER_SILENCE, rd.read_exact(&mut head)).await?;
        let t = Transfer::decode(&head)?;
        let mut data = vec![0u8; t.len as usize];
        if t.len > 0 {
            timed(MASTER_SILENCE, rd.read_exact(&mut data)).await?;
        }
        if t.kind != wire::KIND_LOG {
            meta.apply(t.kind, &data)?;
        } else if t.len > 0 {
            if t.offset != store.log().write_pos() {
                return Err(format!("frame at {} but this log ends at {}", t.offset, store.log().write_pos()));
            }
            if (t.epoch, t.epoch_start) != store.epochs().last() {
                store.begin_epoch(t.epoch, t.epoch_start).await.map_err(|e| e.to_string())?;
            }
            store.append_replicated(t.offset, &bytes::Bytes::from(data)).await.map_err(|e| e.to_string())?;
            meta.log_reached(store.log().write_pos());
        }
        store.replicas.set_master_confirm(t.confirm);
        check_readable();
    }
    Ok(())
}
