//! The replication stream's frames (big-endian), in the shape of RocketMQ 5's auto-switch HA
//! protocol; not byte-compatible with Java brokers, whose logs carry no seal records.
//!
//! ```text
//! slave → master  hello     [magic "RQHS" 4][version 2][flags 2: bit 0 learner][slave node id 4]
//!                           [last epoch 4][its start 8][slave log end 8]                       = 32 B
//! master → slave  welcome   [magic "RQWL" 4][status 4: 0 ok, 1 refused, 2 diverged][master epoch 4]
//!                           [master durable end 8][reason length 4][epoch entries 4]            = 28 B +
//!                           reason (UTF-8) + entries [epoch 4][start 8] (the master's newest ones)
//! master → slave  transfer  [magic "RQTX" 4][length 4][offset 8][epoch 4][epoch start 8]
//!                           [confirm offset 8][kind 2][reserved 2][CRC32 of the 40 bytes before 4]
//!                           + payload                                                           = 44 B +
//!                 kind 0: whole sealed batches at `offset` (length 0: a heartbeat carrying the
//!                 confirm offset); kind 1: the topic table, kind 2: the consumer offsets, kind 3:
//!                 the subscription groups (JSON),
//!                 `offset` then carrying the table's version
//! slave → master  ack       [magic "RQAK" 4][reserved 4][slave durable end 8]                   = 16 B
//! ```
//! The transfer payload is verified by the seals it carries (`store::batches`); the header has its
//! own CRC so that a flipped offset or length is never acted on.

pub const HELLO_MAGIC: u32 = u32::from_be_bytes(*b"RQHS");
pub const WELCOME_MAGIC: u32 = u32::from_be_bytes(*b"RQWL");
pub const TRANSFER_MAGIC: u32 = u32::from_be_bytes(*b"RQTX");
pub const ACK_MAGIC: u32 = u32::from_be_bytes(*b"RQAK");
pub const VERSION: u16 = 1;
pub const HELLO_BYTES: usize = 32;
pub const WELCOME_BYTES: usize = 28;
/// Epoch entries a welcome carries (the newest): enough to find where any live replica parted.
pub const MAX_WELCOME_EPOCHS: usize = 256;
pub const STATUS_OK: u32 = 0;
pub const STATUS_REFUSED: u32 = 1;
/// The slave's log diverged: it truncates where the master's epochs say, then reconnects.
pub const STATUS_DIVERGED: u32 = 2;
pub const TRANSFER_BYTES: usize = 44;
/// Transfer kinds.
pub const KIND_LOG: u16 = 0;
pub const KIND_TOPICS: u16 = 1;
pub const KIND_OFFSETS: u16 = 2;
pub const KIND_GROUPS: u16 = 3;
/// Delay-level delivery progress, and timer progress: `{"covers": log offset, "table": …}` — a
/// slave takes one only once its log reaches `covers` (every delivery it counts is below it).
pub const KIND_DELAY: u16 = 4;
pub const KIND_TIMER: u16 = 5;
pub const ACK_BYTES: usize = 16;
/// Longest refusal reason read.
pub const MAX_REASON_BYTES: usize = 4096;
/// Largest transfer payload accepted: a batch is sealed at 4 MiB, plus one record of at most the
/// largest message (4 MiB body and its properties), so 16 MiB leaves room and bounds a slave's buffer.
pub const MAX_TRANSFER_BYTES: usize = 16 << 20;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub learner: bool,
    pub node_id: u32,
    /// The slave's newest epoch entry.
    pub epoch: u32,
    pub epoch_start: u64,
    pub log_end: u64,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[0..4].copy_from_slice(&HELLO_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&VERSION.to_be_bytes());
        b[6..8].copy_from_slice(&u16::from(self.learner).to_be_bytes());
        b[8..12].copy_from_slice(&self.node_id.to_be_bytes());
        b[12..16].copy_from_slice(&self.epoch.to_be_bytes());
        b[16..24].copy_from_slice(&self.epoch_start.to_be_bytes());
        b[24..32].copy_from_slice(&self.log_end.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; HELLO_BYTES]) -> Result<Hello, String> {
        if u32_at(b, 0) != HELLO_MAGIC {
            return Err("not a ringmq replication hello".into());
        }
        if u16_at(b, 4) != VERSION {
            return Err(format!("replication protocol version {} (this node speaks {VERSION})", u16_at(b, 4)));
        }
        Ok(Hello {
            learner: u16_at(b, 6) & 1 == 1,
            node_id: u32_at(b, 8),
            epoch: u32_at(b, 12),
            epoch_start: u64_at(b, 16),
            log_end: u64_at(b, 24),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub status: u32,
    pub reason: String,
    pub epoch: u32,
    pub master_end: u64,
    /// The master's newest epoch entries, oldest first.
    pub epochs: Vec<(u32, u64)>,
}

impl Welcome {
    pub fn encode(&self) -> Vec<u8> {
        let reason = self.reason.as_bytes();
        let reason = &reason[..reason.len().min(MAX_REASON_BYTES)];
        let epochs = &self.epochs[self.epochs.len().saturating_sub(MAX_WELCOME_EPOCHS)..];
        let mut b = Vec::with_capacity(WELCOME_BYTES + reason.len() + 12 * epochs.len());
        b.extend_from_slice(&WELCOME_MAGIC.to_be_bytes());
        b.extend_from_slice(&self.status.to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.master_end.to_be_bytes());
        b.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        b.extend_from_slice(&(epochs.len() as u32).to_be_bytes());
        b.extend_from_slice(reason);
        for (e, s) in epochs {
            b.extend_from_slice(&e.to_be_bytes());
            b.extend_from_slice(&s.to_be_bytes());
        }
        b
    }

    /// Decodes the fixed part; returns it with the lengths of the reason and of the entries to read.
    pub fn decode_head(b: &[u8; WELCOME_BYTES]) -> Result<(Welcome, usize, usize), String> {
        if u32_at(b, 0) != WELCOME_MAGIC {
            return Err("not a ringmq replication welcome".into());
        }
        let (reason_len, entries) = (u32_at(b, 20) as usize, u32_at(b, 24) as usize);
        if reason_len > MAX_REASON_BYTES || entries > MAX_WELCOME_EPOCHS {
            return Err(format!("welcome with a {reason_len}-byte reason and {entries} epochs"));
        }
        let w = Welcome {
            status: u32_at(b, 4),
            reason: String::new(),
            epoch: u32_at(b, 8),
            master_end: u64_at(b, 12),
            epochs: Vec::with_capacity(entries),
        };
        Ok((w, reason_len, 12 * entries))
    }

    /// Fills in the reason and entries from the bytes after the fixed part.
    pub fn decode_rest(&mut self, reason_len: usize, rest: &[u8]) {
        self.reason = String::from_utf8_lossy(&rest[..reason_len.min(rest.len())]).into_owned();
        for c in rest.get(reason_len..).unwrap_or_default().chunks_exact(12) {
            self.epochs.push((u32_at(c, 0), u64_at(c, 4)));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub len: u32,
    pub offset: u64,
    pub epoch: u32,
    pub epoch_start: u64,
    pub confirm: u64,
    pub kind: u16,
}

impl Transfer {
    pub fn encode(&self) -> [u8; TRANSFER_BYTES] {
        let mut b = [0u8; TRANSFER_BYTES];
        b[0..4].copy_from_slice(&TRANSFER_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.len.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..20].copy_from_slice(&self.epoch.to_be_bytes());
        b[20..28].copy_from_slice(&self.epoch_start.to_be_bytes());
        b[28..36].copy_from_slice(&self.confirm.to_be_bytes());
        b[36..38].copy_from_slice(&self.kind.to_be_bytes());
        let crc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; TRANSFER_BYTES]) -> Result<Transfer, String> {
        if u32_at(b, 0) != TRANSFER_MAGIC {
            return Err("not a replication transfer frame".into());
        }
        if crc32fast::hash(&b[0..40]) != u32_at(b, 40) {
            return Err("transfer header CRC mismatch".into());
        }
        let t = Transfer {
            len: u32_at(b, 4),
            offset: u64_at(b, 8),
            epoch: u32_at(b, 16),
            epoch_start: u64_at(b, 20),
            confirm: u64_at(b, 28),
            kind: u16_at(b, 36),
        };
        if t.len as usize > MAX_TRANSFER_BYTES {
            return Err(format!("transfer of {} bytes is over the {MAX_TRANSFER_BYTES} limit", t.len));
        }
        Ok(t)
    }
}

pub fn encode_ack(durable: u64) -> [u8; ACK_BYTES] {
    let mut b = [0u8; ACK_BYTES];
    b[0..4].copy_from_slice(&ACK_MAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&durable.to_be_bytes());
    b
}

pub fn decode_ack(b: &[u8; ACK_BYTES]) -> Result<u64, String> {
    if u32_at(b, 0) != ACK_MAGIC {
        return Err("not a replication ack".into());
    }
    Ok(u64_at(b, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let h = Hello { learner: true, node_id: 3, epoch: 7, epoch_start: 9, log_end: 1 << 40 };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let w = Welcome {
            status: STATUS_DIVERGED,
            reason: "behind".into(),
            epoch: 7,
            master_end: 99,
            epochs: vec![(1, 0), (7, 50)],
        };
        let enc = w.encode();
        let (mut head, reason, entries) = Welcome::decode_head(enc[..WELCOME_BYTES].try_into().unwrap()).unwrap();
        assert_eq!((reason, entries), (6, 24));
        head.decode_rest(6, &enc[WELCOME_BYTES..]);
        assert_eq!(head, w);
        let t = Transfer { len: 4096, offset: 123, epoch: 2, epoch_start: 100, confirm: 120, kind: KIND_TOPICS };
        let mut enc = t.encode();
        assert_eq!(Transfer::decode(&enc).unwrap(), t);
        enc[10] ^= 1;
        assert!(Transfer::decode(&enc).unwrap_err().contains("CRC"));
        let big = Transfer { len: (MAX_TRANSFER_BYTES + 1) as u32, ..t };
        assert!(Transfer::decode(&big.encode()).is_err());
        assert_eq!(decode_ack(&encode_ack(77)).unwrap(), 77);
        assert!(decode_ack(&[0u8; ACK_BYTES]).is_err());
    }
}
