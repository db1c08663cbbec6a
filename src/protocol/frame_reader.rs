//! The receiving half of the frame codec, without I/O: a connection's read loop pushes the bytes it
//! read and takes whole commands out. The broker's connections and both clients read through it, so
//! the maximum-length check and the split-then-decode order are written once.

use super::{Command, FrameError, Split};
use bytes::BytesMut;

/// Bytes received and not yet taken as commands, for one connection.
pub struct FrameReader {
    acc: BytesMut,
    max_frame_bytes: usize,
    /// Bytes the front frame still lacks (0: none buffered, or not yet known).
    missing: usize,
}

impl FrameReader {
    /// A reader refusing frames longer than `max_frame_bytes` — before buffering them: only what
    /// arrived is ever held.
    pub fn new(max_frame_bytes: usize) -> FrameReader {
        FrameReader { acc: BytesMut::new(), max_frame_bytes, missing: 0 }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.acc.extend_from_slice(bytes);
    }

    /// The next whole command and its frame's length, or `None` until more bytes arrive. An error
    /// (a length past the maximum, a malformed header) leaves the stream unusable: close it.
    pub fn next_command(&mut self) -> Result<Option<(Command, usize)>, FrameError> {
        self.missing = 0;
        if self.acc.is_empty() {
            return Ok(None);
        }
        let frame = match Command::split_frame(&mut self.acc, self.max_frame_bytes)? {
            Split::Frame(f) => f,
            Split::Need(n) => {
                self.missing = n;
                return Ok(None);
            }
        };
        Ok(Command::decode(&frame, self.max_frame_bytes)?.map(|(cmd, _)| (cmd, frame.len())))
    }

    /// Bytes the frame at the front still lacks (to size the next read); 0 when none is started.
    pub fn missing(&self) -> usize {
        self.missing
    }

    /// True when no partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.acc.is_empty()
    }

    /// Drops a buffer grown past `keep` bytes once it is empty (an idle connection keeps no
    /// burst-sized buffer).
    pub fn shrink_when_empty(&mut self, keep: usize) {
        if self.acc.is_empty() && self.acc.capacity() > keep {
            self.acc = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes::request as rq;

    #[test]
    fn commands_come_out_whole_whatever_the_read_boundaries() {
        let mut a = Command::request(rq::SEND_MESSAGE_V2).with_body("first");
        a.put("b", "T");
        let b = Command::request(rq::PULL_MESSAGE);
        let bytes: Vec<u8> = [a.encode(), b.encode()].concat();
        for step in [1, 3, 7, bytes.len()] {
            let mut r = FrameReader::new(1 << 20);
            let mut got = Vec::new();
            for piece in bytes.chunks(step) {
                r.push(piece);
                while let Some((cmd, len)) = r.next_command().unwrap() {
                    assert!(len > 0);
                    got.push(cmd.code);
                }
            }
            assert_eq!(got, [rq::SEND_MESSAGE_V2, rq::PULL_MESSAGE], "read {step} bytes at a time");
            assert!(r.is_empty());
        }
        let mut r = FrameReader::new(1 << 20);
        r.push(&a.encode()[..10]);
        assert_eq!(r.next_command(), Ok(None));
        assert!(r.missing() > 0, "says how much the front frame lacks");
    }

    #[test]
    fn a_length_past_the_maximum_is_an_error_before_anything_is_buffered() {
        let mut r = FrameReader::new(64);
        r.push(&(1u32 << 30).to_be_bytes());
        assert!(matches!(r.next_command(), Err(FrameError::TooLarge { .. })));
    }
}
