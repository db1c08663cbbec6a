//! Store errors. Each maps to one RocketMQ response code in `broker::errors`.

use std::path::PathBuf;

/// Exit code of a process whose store was poisoned by a failed write or fdatasync (EX_IOERR). The
/// systemd unit in `tuning/` does not restart on it: an operator must look at the disk first.
pub const EXIT_STORE_POISONED: i32 = 74;

/// Exit code of a process that refused to start on a corrupt commit log (EX_DATAERR).
pub const EXIT_STORE_CORRUPT: i32 = 65;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A write or fdatasync failed earlier; nothing more is written and the process must stop.
    #[error("store poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
    #[error("I/O error on {path}: {message}")]
    Io { path: PathBuf, message: String },
    /// The file system itself ran out of space (ENOSPC/EDQUOT), below the configured ratio.
    #[error("no space left for {path}: {message}; appends are refused until space returns")]
    NoSpace { path: PathBuf, message: String },
    /// Damage before the torn tail: the store refuses to start.
    #[error("corrupt commit log {file} at byte {offset} (log offset {log_offset}): {reason}")]
    Corrupt { file: PathBuf, offset: u64, log_offset: u64, reason: String },
    /// Disk use above the hard limit: appends are refused, reads go on.
    #[error("disk use {used_percent}% is above the {limit_percent}% limit; appends are refused until space returns")]
    DiskFull { used_percent: u32, limit_percent: u32 },
    #[error("message of {size} bytes does not fit a {segment} byte segment")]
    TooLarge { size: usize, segment: u64 },
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("record at offset {0} not found")]
    NotFound(u64),
    /// This replica is not its replica set's master: it appends only what its master streams.
    #[error("this broker is a slave: messages are put to the master only")]
    NotMaster,
    /// This master has not heard from the controller within its lease: it stops acknowledging so
    /// that a newly elected master is never the second one taking sends.
    #[error("this master's controller lease expired: it acknowledges nothing until the controller confirms it")]
    Fenced,
    /// Fewer replicas are in sync than `--in-sync-replicas` asks for (RocketMQ's
    /// IN_SYNC_REPLICAS_NOT_ENOUGH, answered as SYSTEM_ERROR with this remark).
    #[error("in-sync replicas not enough")]
    InSyncReplicasNotEnough,
    /// The record is durable on the master but not enough slaves acknowledged it in time
    /// (FLUSH_SLAVE_TIMEOUT).
    #[error("wait for the slaves timed out")]
    SlaveTimeout,
    /// A stored record failed verification on a read path; it is never served or re-stored.
    #[error("damaged record at log offset {offset}: {reason}")]
    Damaged { offset: u64, reason: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, e: &std::io::Error) -> StoreError {
        let (path, message) = (path.into(), e.to_string());
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::NoSpace { path, message },
            _ => StoreError::Io { path, message },
        }
    }
}
