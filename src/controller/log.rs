//! The controller's Raft log storage: raft-rs's `MemStorage` for the hard state and the entries, plus
//! the snapshot the log was last compacted to — the serialized [`ControllerState`] at an index. raft
//! sends it to a member whose next entry was compacted away (`MemStorage` alone would send a
//! snapshot without the state). Lives on the name server's executor, with the controller.
//!
//! [`ControllerState`]: super::state::ControllerState

use raft::prelude::{Entry, Snapshot};
use raft::storage::{MemStorage, RaftState, Storage};
use raft::{GetEntriesContext, StorageError};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Clone, Default)]
pub struct ControllerLog {
    pub mem: MemStorage,
    /// The snapshot the log starts after (empty: never compacted).
    pub snapshot: Rc<RefCell<Snapshot>>,
}

impl Storage for ControllerLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = self.snapshot.borrow();
        if snap.get_metadata().index == 0 || snap.get_metadata().index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(snap.clone())
    }
}
