//! A remoting connection for clients, tools and the broker's registrar: blocking writes, a reader
//! thread that matches responses to requests by opaque, and a callback for server-initiated requests
//! (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE). Usable from any thread; requests pipeline.

use super::wire::{self, WireReader, WireWriter};
use crate::protocol::{Command, FrameReader};
use crate::security::sign::Credentials;
use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::MAX_FRAME_FROM_BROKER as MAX_FRAME_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connection to {0} is closed")]
    Closed(String),
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u128 },
    #[error("{addr} answered code {code}: {remark}")]
    Refused { addr: String, code: i32, remark: String },
    #[error("bad response from {addr}: {message}")]
    BadResponse { addr: String, message: String },
    #[error("no route: {0}")]
    NoRoute(String),
}

type Callback = Box<dyn FnOnce(Option<Command>) + Send>;
/// Answers one server-initiated request; `Some` is written back as the response.
type ServerRequestHandler = Arc<dyn Fn(Command) -> Option<Command> + Send + Sync>;

struct Shared {
    pending: Mutex<HashMap<i32, Callback>>,
    closed: AtomicBool,
    /// Handlers of server-initiated requests, by request code.
    on_request: Mutex<HashMap<i32, ServerRequestHandler>>,
    writer: Mutex<WireWriter>,
}

/// How a client reaches servers: TLS (a rustls configuration, `security::tls::client_config`) and
/// the ACL account it signs every request with. The default is plaintext and unsigned.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub credentials: Option<Credentials>,
}

impl ClientSecurity {
    /// Signs `cmd` when credentials are set.
    pub fn sign(&self, cmd: &mut Command) {
        if let Some(c) = &self.credentials {
            c.sign(cmd);
        }
    }
}

pub struct Connection {
    addr: String,
    shared: Arc<Shared>,
    next_opaque: AtomicI32,
    security: ClientSecurity,
}

impl Connection {
    pub fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        Connection::connect_with(addr, timeout, &ClientSecurity::default())
    }

    /// Connects with TLS and request signing as `security` says.
    pub fn connect_with(addr: &str, timeout: Duration, security: &ClientSecurity) -> Result<Connection, ClientError> {
        let err = |source| ClientError::Connect { addr: addr.to_string(), source };
        let sa = addr
            .to_socket_addrs()
            .map_err(err)?
            .next()
            .ok_or_else(|| err(std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&sa, timeout).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        let (writer, reader) = wire::open(stream, addr, security.tls.as_ref(), timeout).map_err(err)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            on_request: Mutex::new(HashMap::new()),
            writer: Mutex::new(writer),
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name(format!("ringmq-conn-{addr}"))
            .spawn(move || read_loop(reader, s2))
            .map_err(err)?;
        Ok(Connection { addr: addr.to_string(), shared, next_opaque: AtomicI32::new(1), security: security.clone() })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Installs the handler for requests with `code` the server sends on this connection (replacing
    /// an earlier one for that code); a `Some` it returns is sent back as the response.
    pub fn on_server_request(&self, code: i32, f: impl Fn(Command) -> Option<Command> + Send + Sync + 'static) {
        if let Ok(mut h) = self.shared.on_request.lock() {
            h.insert(code, Arc::new(f));
        }
    }

    fn write(&self, cmd: &Command) -> Result<(), ClientError> {
        self.shared.write(cmd).map_err(|_| ClientError::Closed(self.addr.clone()))
    }

    /// Sends a request; `done` runs on the reader thread with the response (None if the connection
    /// closed first).
    pub fn request_async(
        &self,
        mut cmd: Command,
        done: impl FnOnce(Option<Command>) + Send + 'static,
    ) -> Result<(), ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed(self.addr.clone()));
        }
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        cmd.opaque = opaque;
        self.security.sign(&mut cmd);
        if let Ok(mut p) = self.shared.pending.lock() {
            p.insert(opaque, Box::new(done));
        }
        if let Err(e) = self.write(&cmd) {
            if let Ok(mut p) = self.shared.pending.lock() {
                p.remove(&opaque);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Sends a request and waits for its response.
    pub fn request(&self, cmd: Command, timeout: Duration) -> Result<Command, ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.request_async(cmd, move |r| {
            let _ = tx.send(r);
        })?;
        match rx.recv_timeout(timeout) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ClientError::Closed(self.addr.clone())),
            Err(_) => Err(ClientError::Timeout { addr: self.addr.clone(), timeout_ms: timeout.as_millis() }),
        }
    }

    /// A request that must succeed (code 0), else `Refused` with the server's remark.
    pub fn call(&self, cmd: Command, timeout: Duration) -> Result<Command, ClientError> {
        let r = self.request(cmd, timeout)?;
        if r.code != 0 {
            return Err(ClientError::Refused {
                addr: self.addr.clone(),
                code: r.code,
                remark: r.remark.unwrap_or_default(),
            });
        }
        Ok(r)
    }

    /// Sends a oneway request (no response expected).
    pub fn oneway(&self, mut cmd: Command) -> Result<(), ClientError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        cmd.flag |= crate::protocol::command::FLAG_ONEWAY;
        self.security.sign(&mut cmd);
        self.write(&cmd)
    }

    /// Writes raw bytes (tests of malformed input).
    pub fn write_raw(&self, data: &[u8]) -> Result<(), ClientError> {
        let w = self.shared.writer.lock().map_err(|_| ClientError::Closed(self.addr.clone()))?;
        w.write_all(data).map_err(|_| ClientError::Closed(self.addr.clone()))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(w) = self.shared.writer.lock() {
            w.shutdown();
        }
    }
}

fn read_loop(mut stream: WireReader, shared: Arc<Shared>) {
    let mut frames = FrameReader::new(MAX_FRAME_BYTES);
    let mut chunk = vec![0u8; 256 << 10];
    'outer: loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        frames.push(&chunk[..n]);
        loop {
            match frames.next_command() {
                Ok(Some((cmd, _))) => deliver(&shared, cmd),
                Ok(None) => break,
                Err(_) => break 'outer, // a length past the maximum or a bad header: unusable
            }
        }
    }
    shared.closed.store(true, Ordering::SeqCst);
    let pending: Vec<Callback> =
        shared.pending.lock().map(|mut p| p.drain().map(|(_, c)| c).collect()).unwrap_or_default();
    for cb in pending {
        cb(None);
    }
}

impl Shared {
    fn write(&self, cmd: &Command) -> Result<(), ()> {
        let buf = cmd.encode();
        let w = self.writer.lock().map_err(|_| ())?;
        w.write_all(&buf).map_err(|_| self.closed.store(true, Ordering::SeqCst))
    }
}

fn deliver(shared: &Shared, cmd: Command) {
    if cmd.is_response() {
        let cb = shared.pending.lock().ok().and_then(|mut p| p.remove(&cmd.opaque));
        if let Some(cb) = cb {
            cb(Some(cmd));
        }
        return;
    }
    let handler = shared.on_request.lock().ok().and_then(|h| h.get(&cmd.code).cloned());
    let (oneway, opaque) = (cmd.is_oneway(), cmd.opaque);
    let answer = match handler {
        Some(h) => h(cmd),
        None => Some(
            Command::request(0)
                .response_to(crate::protocol::codes::response::REQUEST_CODE_NOT_SUPPORTED)
                .with_remark("this client does not handle that request"),
        ),
    };
    if let Some(mut resp) = answer.filter(|_| !oneway) {
        resp.opaque = opaque;
        let _ = shared.write(&resp);
    }
}
