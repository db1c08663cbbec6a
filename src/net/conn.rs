//! One server-side connection (broker shard or name server): a read loop that decodes frames and
//! spawns a handler task per request (so a held long poll never blocks the next request), and a write
//! loop that coalesces queued responses and server-initiated requests into one write.
//!
//! Lives on the executor that accepted it (`!Send`). A malformed frame closes only this connection.

use crate::protocol::{Command, FrameError};
use bytes::BytesMut;
use futures_channel::mpsc;
use futures_channel::oneshot;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

/// Requests one connection dispatches before letting the shard's other tasks run: a client keeping
/// its socket full gets turns, not the shard.
const FRAMES_PER_TURN: usize = 64;
/// Read chunk size: large enough to take a full batch in few reads.
const READ_CHUNK_BYTES: usize = 256 << 10;

/// What serves requests on a connection.
#[allow(async_fn_in_trait)]
pub trait Service: 'static {
    /// Answers one request; `None` when the answer comes later or never (oneway).
    async fn handle(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command>;
    fn connection_closed(&self, conn: &Rc<Conn>);
    fn connection_opened(&self) {}
    fn max_frame_bytes(&self) -> usize;
}

/// A live connection's outbound side.
pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    out: mpsc::UnboundedSender<Command>,
    next_opaque: Cell<i32>,
    /// Broker-initiated requests awaiting the client's answer, by opaque.
    calls: RefCell<HashMap<i32, oneshot::Sender<Command>>>,
}

impl Conn {
    /// Queues a command for writing; false when the connection is gone.
    pub fn send(&self, cmd: Command) -> bool {
        self.out.unbounded_send(cmd).is_ok()
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
            glommio::timer::sleep(timeout).await;
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
}

/// Accepts connections on `listener` until `stop` is set, serving each with `service`.
pub async fn accept_loop<S: Service>(service: Rc<S>, listener: glommio::net::TcpListener, stop: Rc<Cell<bool>>) {
    let mut next_id = 0u64;
    while !stop.get() {
        match listener.accept().await {
            Ok(stream) => {
                next_id += 1;
                glommio::spawn_local(serve(service.clone(), stream, next_id)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve<S: Service>(broker: Rc<S>, stream: TcpStream, id: u64) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let (reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = mpsc::unbounded();
    let conn = Rc::new(Conn { id, peer, out: tx, next_opaque: Cell::new(0), calls: RefCell::default() });
    broker.connection_opened();
    let writer_task = glommio::spawn_local(write_loop(writer, rx));
    if let Err(e) = read_loop(&broker, &conn, reader).await {
        tracing::warn!(%peer, error = %e, "closing connection after a malformed frame");
    }
    conn.out.close_channel();
    broker.connection_closed(&conn);
    writer_task.await;
}

async fn read_loop<S: Service>(
    broker: &Rc<S>,
    conn: &Rc<Conn>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
) -> Result<(), FrameError> {
    let mut acc = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let max = broker.max_frame_bytes();
    let mut dispatched = 0usize;
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => n,
        };
        acc.extend_from_slice(&chunk[..n]);
        while acc.len() >= 4 {
            let len = u32::from_be_bytes([acc[0], acc[1], acc[2], acc[3]]) as usize;
            if len > max {
                return Err(FrameError::TooLarge { length: len, limit: max });
            }
            if acc.len() < 4 + len {
                acc.reserve(4 + len - acc.len());
                break;
            }
            let frame = acc.split_to(4 + len).freeze();
            let Some((cmd, _)) = Command::decode(&frame, max)? else {
                break;
            };
            dispatch(broker, conn, cmd);
            dispatched += 1;
            if dispatched.is_multiple_of(FRAMES_PER_TURN) {
                futures_lite::future::yield_now().await; // one full read buffer is thousands of frames
            }
        }
        // glommio completes a socket read synchronously when data is waiting, so a client that keeps
        // the socket full would keep this loop from ever returning to the executor: the requests it
        // spawned, the flusher and every other connection would starve while requests pile up in
        // memory (seen as a broker stuck at 0 acknowledged sends and GiBs of RSS under open-loop load).
        // A full read means more is waiting: let the others run first. (Yielding after every read
        // cost a fifth of the consume rate at the maximum publish rate.)
        if n == chunk.len() {
            futures_lite::future::yield_now().await;
        }
    }
}

fn dispatch<S: Service>(broker: &Rc<S>, conn: &Rc<Conn>, cmd: Command) {
    if cmd.is_response() {
        conn.answered(cmd); // other answers (to oneway notifications) carry nothing we need
        return;
    }
    let (broker, conn) = (broker.clone(), conn.clone());
    glommio::spawn_local(async move {
        let oneway = cmd.is_oneway();
        if let Some(resp) = broker.handle(&conn, cmd).await
            && !oneway
        {
            conn.send(resp);
        }
    })
    .detach();
}

async fn write_loop(mut writer: futures_lite::io::WriteHalf<TcpStream>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut buf = Vec::with_capacity(64 << 10);
    while let Some(cmd) = rx.next().await {
        buf.clear();
        cmd.encode_into(&mut buf);
        while buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(more) => more.encode_into(&mut buf),
                _ => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = writer.close().await;
}
