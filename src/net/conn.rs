//! One server-side connection (broker shard or name server): a read loop that decodes frames and
//! spawns a handler task per request (so a held long poll never blocks the next request), and a write
//! loop that coalesces queued responses and server-initiated requests into one write.
//!
//! Lives on the executor that accepted it (`!Send`). A malformed frame closes only this connection.

use super::drain::Unfinished;
use super::gather::Gather;
use super::out_queue::OutQueue;
use crate::protocol::{Command, FrameError, FrameReader};
use crate::rt::TcpStream;
use crate::security::tls::{ServerTls, Stream};
use futures_channel::oneshot;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;

/// Requests one connection dispatches before letting the shard's other tasks run: a client keeping
/// its socket full gets turns, not the shard.
const FRAMES_PER_TURN: usize = 64;
/// Smallest read: what an idle connection holds while it waits (a heartbeat or a lone send fits).
const READ_MIN_BYTES: usize = 4 << 10;
/// Largest read: large enough to take a full batch in few reads. Reads grow towards it only while
/// they come back full, so memory follows the bytes that actually arrive.
const READ_MAX_BYTES: usize = 256 << 10;
/// Buffers above this are dropped once empty instead of being kept for the next burst.
const KEEP_BUFFER_BYTES: usize = 64 << 10;
/// Bytes one connection reads back to back before letting the shard's other tasks run, when its
/// socket stays full. Large enough that a client's burst (64 pipelined 1 KiB sends are ~85 KiB)
/// is read whole, so the group commit that the first send wakes takes the whole burst rather
/// than its first read; small enough that other connections get turns within ~100 µs of reads.
const READ_TURN_BYTES: usize = 256 << 10;

/// What one connection may make its shard hold. Defaults and the reason for each value live in
/// `Config` (`max_requests_in_flight_per_connection`, …); docs/OPERATIONS.md lists them.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Largest frame accepted (the length prefix is checked before anything is reserved).
    pub max_frame_bytes: usize,
    /// Requests read but not yet answered (answer written to the socket). At the cap the read loop
    /// stops reading: back-pressure through TCP, not buffering.
    pub max_requests_in_flight: usize,
    /// Bytes of request frames being handled plus answers queued but not yet written. At the cap the
    /// read loop stops reading, so a client that pipelines pulls and never reads holds at most this.
    pub max_held_bytes: usize,
    /// A connection that sends nothing for this long is closed (RocketMQ's channel idle, 120 s).
    pub idle_timeout: std::time::Duration,
    /// A frame whose first byte arrived must be complete within this (slowloris).
    pub frame_timeout: std::time::Duration,
    /// Live connections per service (one shard's ports, or the name server); more are refused.
    pub max_connections: usize,
}

impl ConnLimits {
    pub fn from_config(cfg: &crate::config::Config) -> ConnLimits {
        ConnLimits {
            max_frame_bytes: cfg.max_frame_bytes,
            max_requests_in_flight: cfg.max_requests_in_flight_per_connection.max(1),
            max_held_bytes: cfg.max_held_bytes_per_connection.max(1),
            idle_timeout: std::time::Duration::from_secs(cfg.channel_idle_secs.max(1)),
            frame_timeout: std::time::Duration::from_secs(cfg.frame_timeout_secs.max(1)),
            max_connections: cfg.max_connections_per_shard.max(1),
        }
    }
}

/// What serves requests on a connection.
#[allow(async_fn_in_trait)]
pub trait Service: 'static {
    /// Answers one request; `None` when the answer comes later or never (oneway).
    async fn handle(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command>;
    fn connection_closed(&self, conn: &Rc<Conn>);
    /// Called for every accepted connection before it is served.
    fn connection_opened(&self) {}
    /// Called for every connection closed at accept because of `max_connections` (metrics).
    fn connection_refused(&self) {}
    fn limits(&self) -> &ConnLimits;
    /// Connections of this service now open (checked against `max_connections` at accept).
    fn live_connections(&self) -> usize;
    /// The TLS of this service's listeners (none: plaintext only).
    fn tls(&self) -> Option<&ServerTls> {
        None
    }
}

/// A live connection's outbound side.
pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    out: OutQueue<Outgoing>,
    next_opaque: Cell<i32>,
    /// Broker-initiated requests awaiting the client's answer, by opaque.
    calls: RefCell<HashMap<i32, oneshot::Sender<Command>>>,
    /// Requests read and not yet answered on the socket.
    in_flight: Cell<usize>,
    /// Request frames being handled plus answers queued for writing, in bytes.
    held_bytes: Cell<usize>,
    /// The read loop, when it waits for the budget to come back.
    reader: RefCell<Option<std::task::Waker>>,
}

/// A command queued for the writer; `held` is what its writing gives back to the budget
/// (requests, bytes).
struct Outgoing {
    cmd: Command,
    held: (usize, usize),
    /// Owed to the client until written (graceful stop waits for it).
    owed: Unfinished,
}

impl Conn {
    /// Queues a command for writing; false when the connection is gone. A response (a parked
    /// pull's late answer) counts against the connection's byte budget until it is written.
    pub fn send(&self, cmd: Command) -> bool {
        let bytes = if cmd.is_response() { cmd.approx_encoded_len() } else { 0 };
        self.queue(cmd, (0, bytes))
    }

    /// Queues the answer to a request read from this connection: it stays in the budget until written.
    fn answer(&self, cmd: Command) {
        let bytes = cmd.approx_encoded_len();
        self.queue(cmd, (1, bytes));
    }

    fn queue(&self, cmd: Command, held: (usize, usize)) -> bool {
        self.held_bytes.set(self.held_bytes.get() + held.1);
        let sent = self.out.push(Outgoing { cmd, held, owed: Unfinished::begin() }).is_ok();
        if !sent {
            self.release(held.0, held.1);
        }
        sent
    }

    fn over_budget(&self, limits: &ConnLimits) -> bool {
        self.in_flight.get() >= limits.max_requests_in_flight || self.held_bytes.get() >= limits.max_held_bytes
    }

    /// Gives back what a finished request held and wakes the read loop if it waits for it.
    fn release(&self, requests: usize, bytes: usize) {
        self.in_flight.set(self.in_flight.get().saturating_sub(requests));
        self.held_bytes.set(self.held_bytes.get().saturating_sub(bytes));
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until this connection is within its budget again.
    async fn budget(&self, limits: &ConnLimits) {
        std::future::poll_fn(|cx| {
            if self.over_budget(limits) && !self.is_closed() {
                *self.reader.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }

    fn next_opaque(&self) -> i32 {
        let op = self.next_opaque.get().wrapping_add(1) & i32::MAX;
        self.next_opaque.set(op);
        op
    }

    /// Sends a broker-initiated oneway request (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE).
    pub fn send_oneway(&self, mut cmd: Command) -> bool {
        cmd.opaque = self.next_opaque();
        cmd.flag |= crate::protocol::command::FLAG_ONEWAY;
        self.send(cmd)
    }

    /// Sends a broker-initiated request and waits for the client's answer (PUSH_REPLY_MESSAGE_TO_CLIENT);
    /// `None` when the connection closed or `timeout` passed first.
    pub async fn call(&self, mut cmd: Command, timeout: std::time::Duration) -> Option<Command> {
        let op = self.next_opaque();
        cmd.opaque = op;
        let (tx, rx) = oneshot::channel();
        self.calls.borrow_mut().insert(op, tx);
        if !self.send(cmd) {
            self.calls.borrow_mut().remove(&op);
            return None;
        }
        let expire = async {
            crate::rt::sleep(timeout).await;
            Err(oneshot::Canceled)
        };
        let answer = futures_lite::future::or(rx, expire).await.ok();
        self.calls.borrow_mut().remove(&op);
        answer
    }

    /// Completes a pending [`Conn::call`]; false when nothing waits for this answer.
    fn answered(&self, resp: Command) -> bool {
        match self.calls.borrow_mut().remove(&resp.opaque) {
            Some(tx) => tx.send(resp).is_ok(),
            None => false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.out.is_closed()
    }

    /// A connection with no socket behind it: what the broker writes to it comes out of the returned
    /// [`Outbox`]. In-process handler tests drive the broker through one.
    #[cfg(test)]
    pub fn in_memory(id: u64, peer: SocketAddr) -> (Rc<Conn>, Outbox) {
        let conn = Rc::new(Conn::new(id, peer));
        (conn.clone(), Outbox { conn })
    }

    fn new(id: u64, peer: SocketAddr) -> Conn {
        Conn {
            id,
            peer,
            out: OutQueue::default(),
            next_opaque: Cell::new(0),
            calls: RefCell::default(),
            in_flight: Cell::new(0),
            held_bytes: Cell::new(0),
            reader: RefCell::new(None),
        }
    }
}

/// What the broker wrote to an in-memory connection ([`Conn::in_memory`]), in order.
#[cfg(test)]
pub struct Outbox {
    conn: Rc<Conn>,
}

#[cfg(test)]
impl Outbox {
    /// The next command written, if one is queued now.
    pub fn try_next(&mut self) -> Option<Command> {
        let out = self.conn.out.try_pop()?;
        self.conn.release(out.held.0, out.held.1);
        Some(out.cmd)
    }

    /// Answers a broker-initiated call (as a client's response frame would).
    pub fn answer(&self, resp: Command) -> bool {
        self.conn.answered(resp)
    }
}

/// Accepts connections on `listener` until `stop` is set, serving each with `service`. Past
/// `max_connections` live ones a new connection is closed at once (logged at most once a second).
pub async fn accept_loop<S: Service>(service: Rc<S>, listener: crate::rt::TcpListener, stop: Rc<Cell<bool>>) {
    let mut next_id = 0u64;
    let mut refused = 0u64;
    let mut last_refusal_log: Option<std::time::Instant> = None;
    while !stop.get() {
        match listener.accept().await {
            Ok(stream) => {
                let limit = service.limits().max_connections;
                if service.live_connections() >= limit {
                    refused += 1;
                    service.connection_refused();
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                        let peer = stream.peer_addr().ok();
                        tracing::warn!(?peer, limit, refused, "connection limit reached; refusing new connections");
                        last_refusal_log = Some(std::time::Instant::now());
                    }
                    drop(stream);
                    continue;
                }
                next_id += 1;
                crate::rt::spawn(serve(service.clone(), stream, next_id)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                crate::rt::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no complete frame within {0:?} of its first byte")]
    FrameTimeout(std::time::Duration),
}

/// Runs `f` for at most `limit`; `None` when the time ran out first.
async fn within<T>(limit: std::time::Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    let expire = async {
        crate::rt::sleep(limit).await;
        None
    };
    futures_lite::future::or(async { Some(f.await) }, expire).await
}

/// The connection's stream: plaintext, or TLS after the handshake when the service's mode asks for
/// it (in permissive mode, when the first byte is a TLS handshake's).
async fn open_stream(tls: Option<&ServerTls>, tcp: TcpStream) -> std::io::Result<Stream> {
    let Some(tls) = tls else { return Ok(Stream::Plain(tcp)) };
    let mut first = [0u8; 1];
    let first = match tls.mode {
        crate::security::tls::TlsMode::Permissive => (tcp.peek(&mut first).await? == 1).then_some(first[0]),
        _ => None,
    };
    if tls.wants_tls(first) { tls.accept(tcp).await } else { Ok(Stream::Plain(tcp)) }
}

/// Serves one accepted connection until it closes. The TLS handshake, if any, counts against the
/// connection limit and must finish within the frame timeout.
pub async fn serve<S: Service>(broker: Rc<S>, tcp: TcpStream, id: u64) {
    let Ok(peer) = tcp.peer_addr() else { return };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(broker.limits().idle_timeout));
    let conn = Rc::new(Conn::new(id, peer));
    broker.connection_opened();
    let stream = match within(broker.limits().frame_timeout, open_stream(broker.tls(), tcp)).await {
        Some(Ok(s)) => s,
        failed => {
            let why =
                failed.map_or_else(|| "timed out".to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
            tracing::info!(%peer, error = %why, "TLS handshake failed; closing the connection");
            conn.out.close();
            broker.connection_closed(&conn);
            return;
        }
    };
    let fd = stream.plain_fd();
    let (reader, writer) = futures_lite::io::split(stream);
    let writer_task = crate::rt::spawn(write_loop(writer, fd, conn.clone()));
    if let Err(e) = read_loop(&broker, &conn, reader).await {
        tracing::warn!(%peer, error = %e, "closing connection");
    }
    conn.out.close();
    broker.connection_closed(&conn);
    writer_task.await;
}

/// Size of the next read: doubled while reads come back full, else sized to what last arrived —
/// and never more than the frame in progress still lacks. What a length prefix announces never
/// makes a read larger: memory follows the bytes that arrive.
fn next_read_size(last_size: usize, last_read: usize, frame_missing: usize) -> usize {
    let adaptive = if last_read == last_size { last_size.saturating_mul(2) } else { last_read.next_power_of_two() };
    let wanted = if frame_missing > 0 { adaptive.min(frame_missing) } else { adaptive };
    wanted.clamp(READ_MIN_BYTES, READ_MAX_BYTES)
}

/// Reads into `chunk`, bounded by `deadline` when a frame is in progress.
async fn read_some(
    reader: &mut futures_lite::io::ReadHalf<Stream>,
    chunk: &mut [u8],
    deadline: Option<std::time::Instant>,
) -> Option<std::io::Result<usize>> {
    let Some(deadline) = deadline else { return Some(reader.read(chunk).await) };
    within(deadline.saturating_duration_since(std::time::Instant::now()), reader.read(chunk)).await
}

async fn read_loop<S: Service>(
    broker: &Rc<S>,
    conn: &Rc<Conn>,
    mut reader: futures_lite::io::ReadHalf<Stream>,
) -> Result<(), Closed> {
    let limits = broker.limits().clone();
    let max = limits.max_frame_bytes;
    let mut frames = FrameReader::new(max);
    let mut chunk = vec![0u8; READ_MIN_BYTES];
    let mut frame_started: Option<std::time::Instant> = None;
    let mut dispatched = 0usize;
    let mut turn_bytes = 0usize;
    loop {
        conn.budget(&limits).await;
        let deadline = frame_started.map(|t| t + limits.frame_timeout);
        let n = match read_some(&mut reader, &mut chunk, deadline).await {
            None => return Err(Closed::FrameTimeout(limits.frame_timeout)),
            Some(Ok(0)) => return Ok(()),
            Some(Err(e)) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::info!(peer = %conn.peer, idle = ?limits.idle_timeout, "closing an idle connection");
                }
                return Ok(());
            }
            Some(Ok(n)) => n,
        };
        // Only what arrived is kept: a length prefix alone reserves nothing.
        frames.push(&chunk[..n]);
        while let Some((cmd, frame_len)) = frames.next_command()? {
            conn.budget(&limits).await;
            dispatch(broker, conn, cmd, frame_len);
            dispatched += 1;
            if dispatched.is_multiple_of(FRAMES_PER_TURN) {
                futures_lite::future::yield_now().await; // one full read buffer is thousands of frames
            }
        }
        if frames.is_empty() {
            frame_started = None;
            frames.shrink_when_empty(KEEP_BUFFER_BYTES);
        } else if frame_started.is_none() {
            frame_started = Some(std::time::Instant::now());
        }
        if frame_started.is_some_and(|t| t.elapsed() > limits.frame_timeout) {
            return Err(Closed::FrameTimeout(limits.frame_timeout));
        }
        let full = n == chunk.len();
        let size = next_read_size(chunk.len(), n, frames.missing());
        if size != chunk.len() {
            chunk = vec![0u8; size];
        }
        // glommio completes a socket read synchronously when data is waiting, so a client that keeps
        // the socket full would keep this loop from ever returning to the executor: the requests it
        // spawned, the flusher and every other connection would starve while requests pile up in
        // memory (seen as a broker stuck at 0 acknowledged sends and GiBs of RSS under open-loop load).
        // A full read means more is waiting. Let the others run first when answers wait for the
        // writer (they keep the client's pipeline moving: `flush = async` sends, pulls) or once this
        // turn's bytes are spent; otherwise read on, so that a burst of sync sends reaches the
        // group commit whole rather than a first read of it. (Yielding after every read cost a
        // fifth of the consume rate at the maximum publish rate; yielding after every full read
        // cost sync sends 10-19 % of their rate.)
        turn_bytes = if full { turn_bytes + n } else { 0 };
        if full && (turn_bytes >= READ_TURN_BYTES || !conn.out.is_empty()) {
            turn_bytes = 0;
            futures_lite::future::yield_now().await;
        }
    }
}

fn dispatch<S: Service>(broker: &Rc<S>, conn: &Rc<Conn>, cmd: Command, frame_bytes: usize) {
    if cmd.is_response() {
        conn.answered(cmd); // other answers (to oneway notifications) carry nothing we need
        return;
    }
    if super::drain::closing() {
        return; // stopping: a request read now is dropped, as if it arrived after the exit
    }
    conn.in_flight.set(conn.in_flight.get() + 1);
    conn.held_bytes.set(conn.held_bytes.get() + frame_bytes);
    let (broker, conn) = (broker.clone(), conn.clone());
    let owed = Unfinished::begin();
    crate::rt::spawn(async move {
        let _owed = owed; // until the answer is queued (which owes it in turn) or the handler is done
        let oneway = cmd.is_oneway();
        let resp = broker.handle(&conn, cmd).await;
        conn.release(0, frame_bytes);
        match resp {
            Some(resp) if !oneway => conn.answer(resp),
            _ => conn.release(1, 0),
        }
    })
    .detach();
}

/// Writes queued answers in batches of up to ~1 MiB: on a plaintext connection (`fd`) gathered
/// and sent without copying their bodies (gather.rs), under TLS through one buffer.
async fn write_loop(mut writer: futures_lite::io::WriteHalf<Stream>, fd: Option<RawFd>, conn: Rc<Conn>) {
    let mut batch = Gather::default();
    while let Some(first) = conn.out.next().await {
        batch.clear();
        let (mut answers, mut bytes) = (0usize, 0usize);
        let mut written = Unfinished::none();
        let mut take = |o: Outgoing, batch: &mut Gather| {
            batch.push(&o.cmd);
            answers += o.held.0;
            bytes += o.held.1;
            written.absorb(o.owed);
        };
        take(first, &mut batch);
        while batch.len() < (1 << 20) {
            match conn.out.try_pop() {
                Some(more) => take(more, &mut batch),
                None => break,
            }
        }
        let ok = write_batch(&mut writer, fd, &batch).await;
        conn.release(answers, bytes);
        drop(written);
        if !ok {
            break;
        }
        if batch.buffer_capacity() > KEEP_BUFFER_BYTES {
            batch = Gather::default(); // an idle connection keeps no burst-sized buffer
        }
    }
    // Whatever is still queued is dropped; give its budget back.
    conn.out.close();
    while let Some(o) = conn.out.try_pop() {
        conn.release(o.held.0, o.held.1);
    }
    let _ = writer.close().await;
}

/// Writes a batch: what a plaintext socket takes at once straight from the batch, the rest (or
/// everything, under TLS) through the stream, which waits for the socket. The flush sends what TLS
/// still holds (a no-op on plaintext). False when the connection failed.
async fn write_batch(writer: &mut futures_lite::io::WriteHalf<Stream>, fd: Option<RawFd>, batch: &Gather) -> bool {
    let sent = match fd {
        Some(fd) => match batch.send_now(fd) {
            Ok(n) => n,
            Err(_) => return false,
        },
        None => 0,
    };
    if sent == batch.len() {
        return true;
    }
    writer.write_all(&batch.flatten(sent)).await.is_ok() && writer.flush().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the order its handlers start in. Code 1 waits once (a send waiting for its group
    /// commit); every other code finishes at once.
    struct Order {
        started: RefCell<Vec<i32>>,
        limits: ConnLimits,
    }

    impl Service for Order {
        async fn handle(self: &Rc<Self>, _conn: &Rc<Conn>, req: Command) -> Option<Command> {
            self.started.borrow_mut().push(req.opaque);
            if req.code == 1 {
                crate::rt::yield_now().await;
            }
            Some(req.response_to(0))
        }
        fn connection_closed(&self, _conn: &Rc<Conn>) {}
        fn limits(&self) -> &ConnLimits {
            &self.limits
        }
        fn live_connections(&self) -> usize {
            1
        }
    }

    fn request(code: i32, opaque: i32) -> Command {
        let mut c = Command::request(code);
        c.opaque = opaque;
        c
    }

    /// glommio's `spawn_local` runs a new task at once, in the spawner's turn (`spawn_and_run`), so a
    /// handler has started (and one that completes synchronously has queued its answer) before the
    /// read loop decodes the next frame: handlers start in arrival order, and an append never
    /// overtakes an earlier one from the same connection. The per-request cost of a task is its
    /// allocation; polling handlers in place instead measured within noise (docs/BENCHMARKS.md).
    #[test]
    fn handlers_start_in_arrival_order_and_synchronous_ones_answer_before_the_next_frame() {
        let ex = crate::rt::executor::LocalExecutorBuilder::default().spawn(|| async {
            let limits = ConnLimits::from_config(&crate::config::Config::default());
            let svc = Rc::new(Order { started: RefCell::new(Vec::new()), limits });
            let (conn, mut out) = Conn::in_memory(1, "127.0.0.1:1".parse().unwrap());
            dispatch(&svc, &conn, request(2, 1), 10);
            assert_eq!(*svc.started.borrow(), [1], "started in the read loop's turn");
            assert_eq!(out.try_next().map(|a| a.opaque), Some(1), "and answered in it");
            dispatch(&svc, &conn, request(1, 2), 10);
            dispatch(&svc, &conn, request(2, 3), 10);
            assert_eq!(*svc.started.borrow(), [1, 2, 3], "in arrival order, the waiting one first");
            let mut answered = Vec::new();
            while answered.len() < 2 {
                match out.try_next() {
                    Some(a) => answered.push(a.opaque),
                    None => crate::rt::yield_now().await,
                }
            }
            answered.sort_unstable();
            assert_eq!(answered, [2, 3]);
        });
        ex.expect("test executor").join().expect("test passed");
    }

    #[test]
    fn reads_grow_only_while_full_and_shrink_to_what_arrived() {
        assert_eq!(next_read_size(READ_MIN_BYTES, READ_MIN_BYTES, 0), 2 * READ_MIN_BYTES);
        assert_eq!(next_read_size(READ_MAX_BYTES, READ_MAX_BYTES, 0), READ_MAX_BYTES);
        assert_eq!(next_read_size(READ_MAX_BYTES, 100, 0), READ_MIN_BYTES);
        assert_eq!(next_read_size(READ_MAX_BYTES, 40_000, 0), 64 << 10);
        // A 16 MiB length prefix with 72 bytes behind it reserves nothing beyond the smallest read.
        assert_eq!(next_read_size(READ_MIN_BYTES, 76, 16 << 20), READ_MIN_BYTES);
        // A large frame arriving fast is read in doubling steps, never past what it lacks.
        assert_eq!(next_read_size(16 << 10, 16 << 10, 16 << 20), 32 << 10);
        assert_eq!(next_read_size(16 << 10, 16 << 10, 20_000), 20_000);
    }
}
