//! A remoting connection for code running on a glommio executor (the load generator of
//! `ringmq bench`): requests pipeline on one socket, a reader task completes them by opaque, a writer
//! task coalesces queued frames into one write. Lives on the executor that opened it (`!Send`).
//! The blocking [`super::Connection`] is the façade for tools, tests and examples.

use super::connection::{ClientError, ClientSecurity};
use crate::protocol::{Command, FrameReader};
use crate::rt::JoinHandle;
use crate::rt::TcpStream;
use crate::security::tls::Stream;
use futures_channel::{mpsc, oneshot};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Frames queued together are copied into one write of up to this many bytes.
const COALESCE_BYTES: usize = 256 << 10;

use super::MAX_FRAME_FROM_BROKER as MAX_FRAME_BYTES;

type Pending = Rc<RefCell<HashMap<i32, oneshot::Sender<Command>>>>;

pub struct AsyncConnection {
    addr: String,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_opaque: Cell<i32>,
    /// Set by the reader task when the broker closed the connection or sent garbage.
    closed: Rc<Cell<bool>>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    security: ClientSecurity,
}

impl AsyncConnection {
    /// Connects to `addr` (host:port) from the current glommio executor.
    pub async fn connect(addr: &str) -> Result<AsyncConnection, ClientError> {
        AsyncConnection::connect_with(addr, &ClientSecurity::default()).await
    }

    /// Connects with TLS and request signing as `security` says.
    pub async fn connect_with(addr: &str, security: &ClientSecurity) -> Result<AsyncConnection, ClientError> {
        let err = |e: &dyn std::fmt::Display| ClientError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let tcp = TcpStream::connect(addr).await.map_err(|e| err(&e))?;
        let _ = tcp.set_nodelay(true);
        let stream = match &security.tls {
            Some(cfg) => crate::security::tls::connect(cfg, addr, tcp).await.map_err(|e| err(&e))?,
            None => Stream::Plain(tcp),
        };
        let (reader, writer) = futures_lite::io::split(stream);
        let (out, rx) = mpsc::unbounded();
        let pending: Pending = Rc::default();
        let closed = Rc::new(Cell::new(false));
        let r = crate::rt::spawn(read_loop(reader, pending.clone(), closed.clone())).detach();
        let w = crate::rt::spawn(write_loop(writer, rx)).detach();
        Ok(AsyncConnection {
            addr: addr.to_string(),
            out,
            pending,
            next_opaque: Cell::new(1),
            closed,
            reader: Some(r),
            writer: Some(w),
            security: security.clone(),
        })
    }

    /// Whether the connection is gone (a new one has to be opened).
    pub fn is_closed(&self) -> bool {
        self.closed.get() || self.out.is_closed()
    }

    fn next_opaque(&self) -> i32 {
        let opaque = self.next_opaque.get();
        self.next_opaque.set(opaque.wrapping_add(1) & i32::MAX);
        opaque
    }

    /// Sends `cmd` without waiting for (or expecting) an answer.
    pub fn oneway(&self, mut cmd: Command) -> Result<(), ClientError> {
        cmd.opaque = self.next_opaque();
        cmd.flag |= crate::protocol::command::FLAG_ONEWAY;
        self.security.sign(&mut cmd);
        self.out.unbounded_send(cmd.encode()).map_err(|_| ClientError::Closed(self.addr.clone()))
    }

    /// Sends `cmd` and waits up to `timeout` for its response.
    pub async fn request(&self, mut cmd: Command, timeout: Duration) -> Result<Command, ClientError> {
        let opaque = self.next_opaque();
        cmd.opaque = opaque;
        self.security.sign(&mut cmd);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(opaque, tx);
        if self.out.unbounded_send(cmd.encode()).is_err() {
            self.pending.borrow_mut().remove(&opaque);
            return Err(ClientError::Closed(self.addr.clone()));
        }
        let expire = async {
            crate::rt::sleep(timeout).await;
            Err(oneshot::Canceled)
        };
        match futures_lite::future::or(rx, expire).await {
            Ok(resp) => Ok(resp),
            Err(_) => {
                let timed_out = self.pending.borrow_mut().remove(&opaque).is_some();
                Err(if timed_out {
                    ClientError::Timeout { addr: self.addr.clone(), timeout_ms: timeout.as_millis() }
                } else {
                    ClientError::Closed(self.addr.clone())
                })
            }
        }
    }
}

impl Drop for AsyncConnection {
    fn drop(&mut self) {
        self.out.close_channel();
        for task in [self.reader.take(), self.writer.take()].into_iter().flatten() {
            task.cancel();
        }
    }
}

async fn read_loop(reader: futures_lite::io::ReadHalf<Stream>, pending: Pending, closed: Rc<Cell<bool>>) {
    read_frames(reader, &pending).await;
    closed.set(true);
    pending.borrow_mut().clear(); // waiters see the connection as closed
}

async fn read_frames(mut reader: futures_lite::io::ReadHalf<Stream>, pending: &Pending) {
    let mut frames = FrameReader::new(MAX_FRAME_BYTES);
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        frames.push(&chunk[..n]);
        loop {
            match frames.next_command() {
                Ok(Some((cmd, _))) if cmd.is_response() => {
                    let waiter = pending.borrow_mut().remove(&cmd.opaque);
                    if let Some(tx) = waiter {
                        let _ = tx.send(cmd);
                    }
                }
                Ok(Some(_)) => {} // broker-initiated requests are not used by the load generator
                Ok(None) => break,
                Err(_) => return, // a length past the maximum or a bad header: unusable
            }
        }
    }
}

async fn write_loop(mut writer: futures_lite::io::WriteHalf<Stream>, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(COALESCE_BYTES);
    while let Some(first) = rx.next().await {
        let Ok(second) = rx.try_recv() else {
            // Alone in the queue: written as is, without copying it into the coalescing buffer.
            if writer.write_all(&first).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            continue;
        };
        buf.clear();
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        while buf.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        // The flush sends what TLS still holds (a no-op on plaintext).
        if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
}
