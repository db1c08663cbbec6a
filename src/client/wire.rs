//! The blocking client's socket: plaintext, or TLS with rustls over a std `TcpStream` shared by the
//! connection's writers and its reader thread.
//!
//! TLS state lives under one mutex; the reader thread never holds it while it blocks on the socket:
//! it reads ciphertext from its own handle of the socket, then takes the lock only to feed rustls and
//! take the plaintext out. Writers take the lock to encrypt and write. So a reader waiting for a
//! held pull's answer never blocks a send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shared side (writes).
pub enum WireWriter {
    Plain(TcpStream),
    Tls(Arc<TlsShared>),
}

/// The reader thread's side.
pub enum WireReader {
    Plain(TcpStream),
    Tls { shared: Arc<TlsShared>, sock: TcpStream, plain: Vec<u8>, at: usize, cipher: Vec<u8> },
}

pub struct TlsShared {
    sock: TcpStream,
    conn: Mutex<rustls::ClientConnection>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Wraps a connected socket; with `tls`, completes the handshake (within `timeout`) first.
pub fn open(
    sock: TcpStream,
    addr: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> std::io::Result<(WireWriter, WireReader)> {
    let Some(cfg) = tls else {
        let reader = sock.try_clone()?;
        return Ok((WireWriter::Plain(sock), WireReader::Plain(reader)));
    };
    let name = crate::security::tls::server_name(addr).map_err(io_err)?;
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(io_err)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let mut s = &sock;
    while conn.is_handshaking() {
        conn.complete_io(&mut s)?;
    }
    sock.set_read_timeout(None)?;
    sock.set_write_timeout(None)?;
    let reader = sock.try_clone()?;
    let shared = Arc::new(TlsShared { sock, conn: Mutex::new(conn) });
    let r =
        WireReader::Tls { shared: shared.clone(), sock: reader, plain: Vec::new(), at: 0, cipher: vec![0; 64 << 10] };
    Ok((WireWriter::Tls(shared), r))
}

impl WireWriter {
    pub fn write_all(&self, data: &[u8]) -> std::io::Result<()> {
        match self {
            WireWriter::Plain(s) => (&*s).write_all(data),
            WireWriter::Tls(t) => {
                let mut conn = t.conn.lock().map_err(io_err)?;
                conn.writer().write_all(data)?;
                let mut s = &t.sock;
                while conn.wants_write() {
                    conn.write_tls(&mut s)?;
                }
                Ok(())
            }
        }
    }

    pub fn shutdown(&self) {
        let sock = match self {
            WireWriter::Plain(s) => s,
            WireWriter::Tls(t) => &t.sock,
        };
        let _ = sock.shutdown(std::net::Shutdown::Both);
    }
}

impl WireReader {
    /// Reads plaintext; 0 at the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (shared, sock, plain, at, cipher) = match self {
            WireReader::Plain(s) => return s.read(buf),
            WireReader::Tls { shared, sock, plain, at, cipher } => (shared, sock, plain, at, cipher),
        };
        loop {
            if *at < plain.len() {
                let n = (plain.len() - *at).min(buf.len());
                buf[..n].copy_from_slice(&plain[*at..*at + n]);
                *at += n;
                return Ok(n);
            }
            plain.clear();
            *at = 0;
            let n = sock.read(cipher)?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = shared.conn.lock().map_err(io_err)?;
            let mut input = &cipher[..n];
            while !input.is_empty() {
                conn.read_tls(&mut input)?;
                let state = conn.process_new_packets().map_err(io_err)?;
                let available = state.plaintext_bytes_to_read();
                let start = plain.len();
                plain.resize(start + available, 0);
                conn.reader().read_exact(&mut plain[start..])?;
                if state.peer_has_closed() && available == 0 && plain.is_empty() {
                    return Ok(0);
                }
            }
            // Alerts, key updates and session tickets may need an answer.
            let mut s = &shared.sock;
            while conn.wants_write() {
                conn.write_tls(&mut s)?;
            }
        }
    }
}
