//! The epoch file of a replica (`<shard dir>/epochs`): which master epoch wrote which part of the
//! log, as `(epoch, start offset)` entries in order (RocketMQ's EpochFile). A new master records its
//! epoch at its log end before it appends; a slave records each epoch its master's frames carry
//! before it appends their bytes. When a slave connects, the master compares the slave's last entry
//! with its own history: equal entries mean equal bytes up to where that epoch ends on the master,
//! so a slave whose log ends there or before continues; any other slave has diverged and must
//! truncate first. The file is JSON with a CRC, replaced atomically; a damaged file reads as no
//! history, which no master accepts for a non-empty log (safe: never streams onto a divergent log).

use super::files::{Files, read_optional, write_atomic};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Entries kept: one per election this replica saw; past this the oldest are dropped (the log they
/// describe has long been deleted by retention, and only the newest entries decide consistency).
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochHistory {
    /// `(epoch, start offset)`, epochs increasing, starts non-decreasing.
    entries: Vec<(u32, u64)>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    entries: Vec<(u32, u64)>,
    crc: u32,
}

fn crc_of(entries: &[(u32, u64)]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (e, s) in entries {
        h.update(&e.to_be_bytes());
        h.update(&s.to_be_bytes());
    }
    h.finalize()
}

impl EpochHistory {
    /// Reads the file; `Err` says why a present file could not be used.
    pub fn load(files: &dyn Files, path: &Path) -> Result<EpochHistory, String> {
        let Some(bytes) = read_optional(files, path).map_err(|e| e.to_string())? else {
            return Ok(EpochHistory::default());
        };
        let d: OnDisk = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if crc_of(&d.entries) != d.crc {
            return Err(format!("{}: CRC mismatch", path.display()));
        }
        let h = EpochHistory { entries: d.entries };
        if h.entries.windows(2).any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1) {
            return Err(format!("{}: entries out of order", path.display()));
        }
        Ok(h)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&OnDisk { entries: self.entries.clone(), crc: crc_of(&self.entries) }).unwrap_or_default()
    }

    pub fn save(&self, files: &dyn Files, path: &Path) -> std::io::Result<()> {
        write_atomic(files, path, &self.encode())
    }

    /// The newest entry, `(0, 0)` without any.
    pub fn last(&self) -> (u32, u64) {
        self.entries.last().copied().unwrap_or((0, 0))
    }

    pub fn entries(&self) -> &[(u32, u64)] {
        &self.entries
    }

    /// Adds an epoch starting at `start`; false (unchanged) unless it is newer than the last.
    pub fn push(&mut self, epoch: u32, start: u64) -> bool {
        let (last, last_start) = self.last();
        if epoch <= last || start < last_start {
            return false;
        }
        self.entries.push((epoch, start));
        if self.entries.len() > MAX_ENTRIES {
            self.entries.remove(0);
        }
        true
    }

    /// The epoch that wrote `offset` and where the next epoch starts (none: still current).
    pub fn epoch_at(&self, offset: u64) -> Option<(u32, u64, Option<u64>)> {
        let i = self.entries.partition_point(|(_, s)| *s <= offset).checked_sub(1)?;
        let (e, s) = self.entries[i];
        Some((e, s, self.entries.get(i + 1).map(|x| x.1)))
    }

    /// Forgets the epochs that start at or past `to` (the log was cut back there).
    pub fn truncate(&mut self, to: u64) {
        self.entries.retain(|(_, s)| *s < to);
    }

    /// Where a replica whose log ends at `end` must cut its log to agree with a master holding
    /// `master` up to `master_end`: at the newest epoch both recorded alike, the smaller of the two
    /// ends of that epoch; 0 when they share none.
    pub fn truncation_point(&self, end: u64, master: &EpochHistory, master_end: u64) -> u64 {
        for (i, &(e, s)) in self.entries.iter().enumerate().rev() {
            if let Some(j) = master.entries.iter().position(|&x| x == (e, s)) {
                let mine = self.entries.get(i + 1).map_or(end, |x| x.1);
                let theirs = master.entries.get(j + 1).map_or(master_end, |x| x.1);
                return mine.min(theirs);
            }
        }
        0
    }

    /// On a master whose log ends at `end`: how far a slave whose newest entry is `(epoch, start)`
    /// agrees with this history (its bytes up to there are this log's); `None`: it diverged.
    pub fn consistent_end(&self, epoch: u32, start: u64, end: u64) -> Option<u64> {
        if epoch == 0 {
            return Some(0);
        }
        let i = self.entries.iter().position(|(e, _)| *e == epoch)?;
        if self.entries[i].1 != start {
            return None;
        }
        Some(self.entries.get(i + 1).map_or(end, |x| x.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_is_decided_by_the_shared_epoch() {
        let mut m = EpochHistory::default();
        assert!(m.push(1, 0));
        assert!(m.push(3, 5000));
        assert!(!m.push(2, 6000), "an older epoch is refused");
        assert_eq!(m.consistent_end(0, 0, 9000), Some(0), "an empty slave starts at 0");
        assert_eq!(m.consistent_end(1, 0, 9000), Some(5000), "epoch 1 ended where 3 began");
        assert_eq!(m.consistent_end(3, 5000, 9000), Some(9000));
        assert_eq!(m.consistent_end(2, 4000, 9000), None, "an epoch the master never saw");
        assert_eq!(m.consistent_end(3, 4000, 9000), None, "same epoch, other start");
        assert_eq!(m.epoch_at(4999), Some((1, 0, Some(5000))));
        assert_eq!(m.epoch_at(5000), Some((3, 5000, None)));
    }

    #[test]
    fn truncation_goes_back_to_where_the_histories_part() {
        let mut master = EpochHistory::default();
        master.push(1, 0);
        master.push(2, 5000);
        // An old master of epoch 1 that wrote past 5000 before it was replaced.
        let mut old = EpochHistory::default();
        old.push(1, 0);
        assert_eq!(old.truncation_point(7000, &master, 9000), 5000);
        assert_eq!(old.truncation_point(4000, &master, 9000), 4000, "nothing past the shared part");
        // A replica elected in an epoch the winner never saw.
        let mut other = old.clone();
        other.push(3, 6000);
        assert_eq!(other.truncation_point(8000, &master, 9000), 5000);
        other.truncate(5000);
        assert_eq!(other.last(), (1, 0));
        assert_eq!(EpochHistory::default().truncation_point(100, &master, 9000), 0);
    }

    #[test]
    fn the_file_round_trips_and_damage_is_found() {
        let files = crate::store::files::OsFiles::shared();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epochs");
        assert_eq!(EpochHistory::load(&*files, &path).unwrap(), EpochHistory::default());
        let mut h = EpochHistory::default();
        h.push(1, 0);
        h.push(2, 4096);
        h.save(&*files, &path).unwrap();
        assert_eq!(EpochHistory::load(&*files, &path).unwrap(), h);
        let text = std::fs::read_to_string(&path).unwrap().replace("4096", "4097");
        std::fs::write(&path, text).unwrap();
        assert!(EpochHistory::load(&*files, &path).unwrap_err().contains("CRC"));
    }
}
