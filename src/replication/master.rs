//! The master's side of a replica set, on the shard's executor: the replication listener (shard
//! port + 1) and one stream per slave. A stream sends what is durable on the master, from the slave's
//! reported end, in frames of whole sealed batches read back through the log's caches and verified
//! before they leave; the slave's acks feed the store's replica gate (in-sync set, acknowledgements
//! of sync sends, confirm offset).
//!
//! Bounds: at most [`MAX_SLAVES`] streams per shard; a stream has at most [`WINDOW_BYTES`] sent and
//! not acknowledged (a slave catching up cannot fill the master's memory or starve its sends: each
//! frame is one read of at most [`FRAME_BYTES`], and the stream waits for acks past the window).

use super::wire::{self, Hello, Transfer, Welcome};
use super::{Metadata, timed};
use crate::rt::{Beacon, TcpListener, TcpStream};
use crate::store::Store;
use crate::store::batches::walk_sealed;
use crate::store::io::Disk;
use crate::store::replicas::ReplicaRole;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Bytes read per frame when the slave is behind (one DMA read of this size, or tail-cache slices).
pub const FRAME_BYTES: usize = 1 << 20;
/// Sent and not yet acknowledged per slave: a few frames in flight keep the link busy while the
/// slave syncs; more would only queue in socket buffers.
pub const WINDOW_BYTES: u64 = 32 << 20;
/// Replication connections per shard: every other node's replica and a few learners.
pub const MAX_SLAVES: usize = 16;
/// Idle streams send a heartbeat (with the confirm offset) this often.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A slave silent this long (no ack, no heartbeat; it sends one every second) is dropped from the
/// in-sync set and disconnected: a paused or partitioned slave must not hold sync sends for long.
pub const SLAVE_SILENCE: Duration = Duration::from_secs(5);
/// A connection must say hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts slaves until `stop` is set.
/// Also drops slaves that have not caught up for `catchup_limit` from the in-sync set.
pub async fn listen<D: Disk + 'static>(
    store: Rc<Store<D>>,
    meta: Rc<dyn Metadata>,
    listener: TcpListener,
    catchup_limit: Duration,
    stop: Rc<Cell<bool>>,
) {
    let streams = Rc::new(Cell::new(0usize));
    while !stop.get() {
        store.replicas.expire_laggards(catchup_limit, crate::rt::now());
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            crate::rt::sleep(Duration::from_millis(200)).await;
            None
        })
        .await;
        let Some(accepted) = accepted else { continue };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "replication accept failed");
                crate::rt::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if streams.get() >= MAX_SLAVES {
            tracing::warn!(limit = MAX_SLAVES, "replication connection refused: too many slaves");
            continue;
        }
        streams.set(streams.get() + 1);
        let (store, meta, streams, stop) = (store.clone(), meta.clone(), streams.clone(), stop.clone());
        crate::rt::spawn(async move {
            if let Err(e) = serve_slave(&store, &*meta, stream, &stop).await {
                tracing::info!(error = %e, "replication stream ended");
            }
            streams.set(streams.get() - 1);
        })
        .detach();
    }
}

/// Whether the master streams to a slave with this hello: `STATUS_OK`, or a status and the reason.
fn admission<D: Disk>(store: &Store<D>, h: &Hello) -> (u32, String) {
    let log = store.log();
    if store.replicas.role() != ReplicaRole::Master {
        return (wire::STATUS_REFUSED, "this replica is not the master".into());
    }
    match store.epochs().consistent_end(h.epoch, h.epoch_start, log.flushed_pos()) {
        Some(agreed) if h.log_end <= agreed => {}
        Some(agreed) => {
            let why = format!(
                "the slave's log ends at {} but agrees with the master's only up to {agreed} (epoch {} from {})",
                h.log_end, h.epoch, h.epoch_start
            );
            return (wire::STATUS_DIVERGED, why);
        }
        None => {
            let why = format!("the slave's epoch {} from {} is not in the master's history", h.epoch, h.epoch_start);
            return (wire::STATUS_DIVERGED, why);
        }
    }
    if h.log_end < log.min_pos() {
        let why =
            format!("the slave's log ends at {} before the master's first retained byte {}", h.log_end, log.min_pos());
        return (wire::STATUS_REFUSED, why);
    }
    (wire::STATUS_OK, String::new())
}

async fn serve_slave<D: Disk>(
    store: &Rc<Store<D>>,
    meta: &dyn Metadata,
    mut stream: TcpStream,
    stop: &Rc<Cell<bool>>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut hello = [0u8; wire::HELLO_BYTES];
    timed(HELLO_TIMEOUT, stream.read_exact(&mut hello)).await?;
    let hello = Hello::decode(&hello)?;
    let (status, reason) = admission(store, &hello);
    let welcome = Welcome {
        status,
        reason: reason.clone(),
        epoch: store.replicas.epoch(),
        master_end: store.log().flushed_pos(),
        epochs: store.epochs().entries().to_vec(),
    };
    timed(HELLO_TIMEOUT, stream.write_all(&welcome.encode())).await?;
    if status != wire::STATUS_OK {
        return Err(format!("refused slave {}: {reason}", hello.node_id));
    }
    tracing::info!(slave = hello.node_id, from = hello.log_end, learner = hello.learner, "replication stream started");
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let acked = Rc::new(Cell::new(hello.log_end));
    let acks = Rc::new(Beacon::default());
    let closed = Rc::new(Cell::new(false));
    let reader = {
        let (store, acked, acks, closed) = (store.clone(), acked.clone(), acks.clone(), closed.clone());
        crate::rt::spawn(async move {
            let mut b = [0u8; wire::ACK_BYTES];
            let why = loop {
                match timed(SLAVE_SILENCE, rd.read_exact(&mut b)).await.and_then(|()| wire::decode_ack(&b)) {
                    Ok(v) => {
                        let master_end = store.log().flushed_pos();
                        store.replicas.on_ack(
                            hello.node_id,
                            hello.learner,
                            v.min(master_end),
                            master_end,
                            crate::rt::now(),
                        );
                        acked.set(acked.get().max(v));
                        acks.raise();
                    }
                    Err(e) => break e,
                }
            };
            tracing::warn!(slave = hello.node_id, why = %why, "replication stream lost its slave");
            closed.set(true);
            acks.raise();
        })
    };
    let link = Link { acked: &acked, acks: &acks, closed: &closed, stop };
    let result = stream_to(store, meta, &mut wr, hello.log_end, &link).await;
    closed.set(true);
    store.replicas.remove(hello.node_id);
    drop(reader);
    result
}

/// The state of one stream that its ack reader shares.
struct Link<'a> {
    acked: &'a Cell<u64>,
    acks: &'a Beacon,
    closed: &'a Cell<bool>,
    stop: &'a Cell<bool>,
}

/// Offsets commit often and progress moves with every delivery: those tables go out at most this often.
const OFFSETS_EVERY: Duration = Duration::from_millis(500);

/// Sends from `from` until the slave goes, this replica stops being the master, or the shard stops.
async fn stream_to<D: Disk, W: futures_lite::AsyncWrite + Unpin>(
    store: &Store<D>,
    meta: &dyn Metadata,
    wr: &mut W,
    from: u64,
    link: &Link<'_>,
) -> Result<(), String> {
    let Link { acked, acks, closed, stop } = *link;
    let log = store.log();
    let seg_bytes = store.config().segment_bytes;
    let mut sent = from;
    let mut last_send = crate::rt::now();
    // Each table: the version sent last and when.
    let never = crate::rt::now() - OFFSETS_EVERY;
    let mut tables = [wire::KIND_TOPICS, wire::KIND_OFFSETS, wire::KIND_GROUPS, wire::KIND_DELAY, wire::KIND_TIMER]
        .map(|k| (k, u64::MAX, never));
    // The confirm offset this slave was last told: a slave serves reads only up to it.
    let mut confirm_sent = 0;
    loop {
        if closed.get() || stop.get() {
            return Ok(());
        }
        if store.replicas.role() != ReplicaRole::Master {
            return Err("this replica is no longer the master".into());
        }
        for (kind, sent_version, sent_at) in tables.iter_mut() {
            let v = meta.version(*kind);
            // Tables that move with every commit or delivery go out at most every OFFSETS_EVERY.
            let often = matches!(*kind, wire::KIND_OFFSETS | wire::KIND_DELAY | wire::KIND_TIMER);
            let due = !often || sent_at.elapsed() >= OFFSETS_EVERY;
            if v == *sent_version || !due {
                continue;
            }
            let body = meta.encode(*kind);
            if body.len() > wire::MAX_TRANSFER_BYTES {
                return Err(format!("table {kind} is {} bytes, over the frame limit", body.len()));
            }
            let (epoch, epoch_start) = store.epochs().last();
            let confirm = store.visible_limit();
            let t = Transfer { len: body.len() as u32, offset: v, epoch, epoch_start, confirm, kind: *kind };
            timed(SLAVE_SILENCE, wr.write_all(&t.encode())).await?;
            timed(SLAVE_SILENCE, wr.write_all(&body)).await?;
            *sent_version = v;
            *sent_at = crate::rt::now();
        }
        let (flushes, ack_gen, any_ack) =
            (log.flushed.generation(), acks.generation(), store.replicas.acked.generation());
        let end = log.flushed_pos();
        let confirm = store.visible_limit();
        if sent < end && sent - acked.get().min(sent) < WINDOW_BYTES {
            // A frame never crosses an epoch: it carries the epoch that wrote its bytes.
            let (epoch, epoch_start, next_epoch) =
                store.epochs().epoch_at(sent).ok_or_else(|| format!("no epoch recorded for log offset {sent}"))?;
            let (bytes, next) = read_frame(store, sent, next_epoch.map_or(end, |n| n.min(end)), seg_bytes).await?;
            let t =
                Transfer { len: bytes.len() as u32, offset: sent, epoch, epoch_start, confirm, kind: wire::KIND_LOG };
            timed(SLAVE_SILENCE, wr.write_all(&t.encode())).await?;
            timed(SLAVE_SILENCE, wr.write_all(&bytes)).await?;
            timed(SLAVE_SILENCE, wr.flush()).await?;
            sent = next;
            last_send = crate::rt::now();
            confirm_sent = confirm;
            continue;
        }
        // A moved confirm offset goes out at once (its slave's parked pulls wake on it), else a
        // heartbeat every second.
        if last_send.elapsed() >= HEARTBEAT || confirm > confirm_sent {
            let (epoch, epoch_start) = store.epochs().last();
            let t = Transfer { len: 0, offset: sent, epoch, epoch_start, confirm, kind: wire::KIND_LOG };
            timed(SLAVE_SILENCE, wr.write_all(&t.encode())).await?;
            timed(SLAVE_SILENCE, wr.flush()).await?;
            last_send = crate::rt::now();
            confirm_sent = confirm;
        }
        let acked = futures_lite::future::or(acks.wait_past(ack_gen), store.replicas.acked.wait_past(any_ack));
        futures_lite::future::or(log.flushed.wait_past_at_most(flushes, HEARTBEAT), acked).await;
    }
}

/// Reads whole sealed batches from `from` (a batch boundary) up to at most the durable `end`, within
/// one segment, verified; returns them and where the next frame starts.
async fn read_frame<D: Disk>(
    store: &Store<D>,
    from: u64,
    end: u64,
    seg_bytes: u64,
) -> Result<(bytes::Bytes, u64), String> {
    let seg_end = from - from % seg_bytes + seg_bytes;
    let limit = end.min(seg_end) - from;
    let mut want = (FRAME_BYTES as u64).min(limit);
    loop {
        let bytes = store.log().read(from, want as usize).await.map_err(|e| format!("read at {from}: {e}"))?;
        let run = walk_sealed(&bytes, from, seg_bytes).map_err(|e| format!("master log does not verify: {e}"))?;
        if run.ends_segment {
            return Ok((bytes.slice(..run.len), seg_end));
        }
        if run.len > 0 {
            return Ok((bytes.slice(..run.len), from + run.len as u64));
        }
        if want >= limit || want as usize >= wire::MAX_TRANSFER_BYTES {
            return Err(format!("no whole batch between {from} and {}", from + want));
        }
        want = (want * 2).min(limit).min(wire::MAX_TRANSFER_BYTES as u64);
    }
}
