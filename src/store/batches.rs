//! Whole sealed batches in a run of log bytes: the unit replication moves. The master walks the
//! bytes it read back before it sends them, and a slave walks what it received before it appends
//! it, with this one function: every record inside the batch CRC its seal records, every seal in
//! place and intact, a blank only where the segment ends. Either side refuses anything else.

use super::log::{SEAL_BYTES, SEAL_MAGIC, decode_seal};
use crate::protocol::message::{BLANK_MAGIC, MESSAGE_MAGIC, RECORD_FIXED_BYTES};

/// What a walk found: the length of the longest prefix made of whole verified batches, the message
/// records in it (start relative to the walk, length), and whether that prefix ends with the
/// segment's blank record (the next byte of the log is then the next segment's first).
#[derive(Debug, Default, PartialEq)]
pub struct SealedRun {
    pub len: usize,
    pub records: Vec<(usize, usize)>,
    pub ends_segment: bool,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Walks `bytes`, which start at log offset `start`, a batch boundary. A batch cut off by the end of
/// `bytes` is left out of the prefix (not an error); damage is an error.
pub fn walk_sealed(bytes: &[u8], start: u64, segment_bytes: u64) -> Result<SealedRun, String> {
    let mut run = SealedRun::default();
    let mut pos = 0usize;
    let mut pending = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    let mut batch_start = start;
    while pos + 8 <= bytes.len() {
        let abs = start + pos as u64;
        let size = be_u32(bytes, pos) as usize;
        let magic = be_u32(bytes, pos + 4);
        match magic {
            MESSAGE_MAGIC if size >= RECORD_FIXED_BYTES => {
                if pos + size > bytes.len() {
                    break;
                }
                crc.update(&bytes[pos..pos + size]);
                pending.push((pos, size));
            }
            SEAL_MAGIC if size == SEAL_BYTES as usize => {
                if pos + size > bytes.len() {
                    break;
                }
                let expected = std::mem::replace(&mut crc, crc32fast::Hasher::new()).finalize();
                match decode_seal(&bytes[pos..pos + size]) {
                    Some((s, c)) if s == batch_start && c == expected => {}
                    Some((s, _)) if s != batch_start => {
                        return Err(format!("seal at {abs} closes a batch from {s}, expected {batch_start}"));
                    }
                    _ => return Err(format!("seal at {abs} is damaged or its batch CRC does not match")),
                }
                run.records.append(&mut pending);
                run.len = pos + size;
                batch_start = abs + size as u64;
            }
            BLANK_MAGIC if pending.is_empty() && abs % segment_bytes + size as u64 == segment_bytes => {
                run.len = pos + 8;
                run.ends_segment = true;
                return Ok(run);
            }
            _ => return Err(format!("record at {abs} has size {size} and magic {magic:#010x}: not a log record")),
        }
        pos += size;
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::encode_seal;

    fn record(len: usize, fill: u8) -> Vec<u8> {
        let mut r = vec![fill; len];
        r[0..4].copy_from_slice(&(len as u32).to_be_bytes());
        r[4..8].copy_from_slice(&MESSAGE_MAGIC.to_be_bytes());
        r
    }

    fn batch(start: u64, records: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = records.concat();
        let seal = encode_seal(start, crc32fast::hash(&out));
        out.extend_from_slice(&seal);
        out
    }

    #[test]
    fn whole_batches_are_the_prefix_and_a_cut_batch_is_left_out() {
        let a = batch(1000, &[record(100, 1), record(120, 2)]);
        let b = batch(1000 + a.len() as u64, &[record(200, 3)]);
        let mut bytes = [a.clone(), b.clone()].concat();
        let run = walk_sealed(&bytes, 1000, 1 << 20).unwrap();
        assert_eq!(run.len, bytes.len());
        assert_eq!(run.records, vec![(0, 100), (100, 120), (a.len(), 200)]);
        bytes.truncate(bytes.len() - 5);
        let run = walk_sealed(&bytes, 1000, 1 << 20).unwrap();
        assert_eq!((run.len, run.records.len()), (a.len(), 2));
    }

    #[test]
    fn a_flipped_byte_or_a_misplaced_seal_is_refused() {
        let mut a = batch(0, &[record(100, 1)]);
        a[50] ^= 1;
        assert!(walk_sealed(&a, 0, 1 << 20).unwrap_err().contains("CRC"));
        let a = batch(0, &[record(100, 1)]);
        assert!(walk_sealed(&a, 4096, 1 << 20).unwrap_err().contains("expected 4096"));
        assert!(walk_sealed(&[0xFFu8; 16], 0, 1 << 20).is_err());
    }

    #[test]
    fn a_blank_ends_the_segment_only_where_it_reaches_its_end() {
        let seg = 4096u64;
        let a = batch(0, &[record(100, 1)]);
        let mut bytes = a.clone();
        let remaining = (seg - a.len() as u64) as u32;
        bytes.extend_from_slice(&remaining.to_be_bytes());
        bytes.extend_from_slice(&BLANK_MAGIC.to_be_bytes());
        let run = walk_sealed(&bytes, 0, seg).unwrap();
        assert!(run.ends_segment);
        assert_eq!(run.len, a.len() + 8);
        assert!(walk_sealed(&bytes, 0, seg * 2).is_err(), "a blank short of the segment end is damage");
    }
}
