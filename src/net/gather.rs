//! Answers written without copying their bodies: a batch of frames is gathered as the headers
//! (and small bodies) in one buffer plus references to the large body parts where they already
//! are — a pull response's records are slices of the read cache's blocks, and records back to back
//! in the log are back to back there, so a thousand of them merge into a few pieces — and sent with
//! one `sendmsg` per [`MAX_PIECES`]. Copying a catch-up pull's ~300 KiB into the write buffer was
//! 8–9 % of a shard draining a backlog (docs/BENCHMARKS.md, issue 17 part 4).
//!
//! Plaintext only: TLS encrypts from one buffer, so [`Gather::flatten`] copies everything there.
//! What the socket does not take at once is copied out and written by the caller's stream, which
//! waits for the socket to drain (the common case sends all of it in one call).
//!
//! Unsafe code: the `sendmsg` call, whose entries point into the buffer and the `Bytes` the batch
//! holds for the duration of the call.
#![allow(unsafe_code)]

use crate::protocol::Command;
use bytes::Bytes;
use std::io;
use std::os::fd::RawFd;

/// A body smaller than this is copied next to its header: one piece instead of two.
const COPY_BODY_BYTES: usize = 2048;
/// Pieces per `sendmsg` (Linux's IOV_MAX).
const MAX_PIECES: usize = 1024;

enum Piece {
    /// Bytes `start..end` of the batch's buffer.
    Own(usize, usize),
    /// The batch's `held[i]`.
    Held(usize),
}

/// Frames gathered for one write.
#[derive(Default)]
pub struct Gather {
    buf: Vec<u8>,
    pieces: Vec<Piece>,
    /// The body parts the `Held` pieces point into, kept alive until the batch is cleared.
    held: Vec<Bytes>,
    len: usize,
}

impl Gather {
    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Capacity of the owned buffer (kept between batches up to the caller's limit).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.pieces.clear();
        self.held.clear();
        self.len = 0;
    }

    /// Adds one frame: its header (and a small body) copied, a large body's parts referenced.
    pub fn push(&mut self, cmd: &Command) {
        let start = self.buf.len();
        let body = cmd.body_len();
        if body < COPY_BODY_BYTES {
            cmd.encode_into(&mut self.buf);
            self.own(start);
            return;
        }
        cmd.encode_head_into(&mut self.buf);
        self.own(start);
        for part in cmd.body.iter().filter(|p| !p.is_empty()) {
            self.len += part.len();
            self.pieces.push(Piece::Held(self.held.len()));
            self.held.push(part.clone());
        }
    }

    fn own(&mut self, start: usize) {
        let end = self.buf.len();
        self.len += end - start;
        match self.pieces.last_mut() {
            Some(Piece::Own(_, e)) if *e == start => *e = end,
            _ => self.pieces.push(Piece::Own(start, end)),
        }
    }

    fn slice(&self, p: &Piece) -> &[u8] {
        match *p {
            Piece::Own(s, e) => &self.buf[s..e],
            Piece::Held(i) => &self.held[i],
        }
    }

    /// The gathered bytes from byte `from` on, piece by piece.
    fn parts_from(&self, from: usize) -> impl Iterator<Item = &[u8]> {
        let mut skip = from;
        self.pieces.iter().map(|p| self.slice(p)).filter_map(move |s| {
            if skip >= s.len() {
                skip -= s.len();
                return None;
            }
            let part = &s[skip..];
            skip = 0;
            Some(part)
        })
    }

    /// Everything gathered as one contiguous buffer (for TLS, or what a socket did not take).
    pub fn flatten(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len - from);
        self.parts_from(from).for_each(|part| out.extend_from_slice(part));
        out
    }

    /// Sends as much as the socket `fd` takes without waiting; returns the bytes sent (all of them
    /// unless the socket is full).
    pub fn send_now(&self, fd: RawFd) -> io::Result<usize> {
        let mut sent = 0usize;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(self.pieces.len().min(MAX_PIECES));
        while sent < self.len {
            iov.clear();
            for part in self.parts_from(sent) {
                let (ptr, len) = (part.as_ptr(), part.len());
                let full = iov.len() == MAX_PIECES;
                match iov.last_mut() {
                    // Back to back with the previous piece (records of one read block): one entry.
                    Some(last) if (last.iov_base as *const u8).wrapping_add(last.iov_len) == ptr => last.iov_len += len,
                    _ if full => break,
                    _ => iov.push(libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len }),
                }
            }
            // SAFETY: an all-zero msghdr is valid; it points at `iov`, whose entries point into
            // buffers this batch keeps alive for the duration of the call.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = iov.len() as _;
                libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(sent),
                    _ => return Err(e),
                }
            }
            sent += n as usize;
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn response(body: Vec<Bytes>) -> Command {
        let mut c = Command::request(11).response_to(0);
        c.body = body;
        c
    }

    #[test]
    fn gathered_frames_are_byte_for_byte_the_encoded_frames() {
        let block = Bytes::from((0..64 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let records: Vec<Bytes> = (0..200).map(|i| block.slice(i * 300..(i + 1) * 300)).collect();
        // Larger than a socket buffer: the socket takes a prefix, the rest is left to the caller.
        let apart = vec![block.slice(0..3000), Bytes::from(vec![7u8; 4 << 20]), block.slice(3000..5000)];
        let frames =
            [response(records), response(vec![Bytes::from_static(b"small")]), response(apart), response(vec![])];
        let mut g = Gather::default();
        let mut want = Vec::new();
        for f in &frames {
            g.push(f);
            f.encode_into(&mut want);
        }
        assert_eq!(g.len(), want.len());
        assert_eq!(g.flatten(0), want);
        assert_eq!(g.flatten(1234), want[1234..]);

        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sent = g.send_now(a.as_raw_fd()).unwrap();
        let mut got = vec![0u8; sent];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, want[..sent], "what the socket took is the encoded prefix");
        assert!(sent < want.len(), "a full socket stops the send, it does not wait");
        assert_eq!(g.flatten(sent), want[sent..], "the rest, for the stream to write");
        drop(a);
        g.clear();
        assert!(g.len() == 0 && g.held.is_empty());
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        let mut g = Gather::default();
        g.push(&response(vec![Bytes::from(vec![1u8; 4096])]));
        assert!(g.send_now(a.as_raw_fd()).is_err());
    }
}
