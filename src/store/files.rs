//! The second storage I/O boundary: the small files beside the commit log — consume-queue files, the
//! key index, `checkpoint` and the broker's `config/*.json` — written with plain buffered I/O, off the
//! shard's thread (the checkpoint job and the config writer run on other threads, so the trait is
//! `Send + Sync`). The commit log itself goes through [`super::io::Disk`], which hands out the
//! `Files` of the same device so that the fault-injecting fake covers every file the store writes.
//!
//! Contract (what POSIX promises, and what the fake enforces): a write is durable only after a later
//! `sync` of that file returned `Ok`; a created, renamed or removed name is durable only after a
//! later `sync_dir` of its directory returned `Ok`.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The small files of one store or config directory.
pub trait Files: Send + Sync + 'static {
    /// The whole file; `NotFound` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes at `pos` (fewer at the end of the file); `NotFound` when it does not exist.
    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes `data` at `pos`, creating the file when missing.
    fn write_at(&self, path: &Path, pos: u64, data: &[u8]) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the file's completed writes durable (fdatasync).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Makes the names in `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it; a missing one is not an error.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names directly inside `dir`, sorted (empty when it does not exist).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
}

/// Shared handle: stores, checkpoint jobs and config tables each hold one.
pub type SharedFiles = Arc<dyn Files>;

/// The file system itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFiles;

impl OsFiles {
    pub fn shared() -> SharedFiles {
        Arc::new(OsFiles)
    }
}

impl Files for OsFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; len];
        let mut n = 0;
        while n < len {
            match f.read_at(&mut buf[n..], pos + n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn write_at(&self, path: &Path, pos: u64, data: &[u8]) -> io::Result<()> {
        let f = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        f.write_all_at(data, pos)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    /// Through a fresh descriptor: Linux reports a writeback error to every descriptor that has not
    /// seen it yet, including one opened after the failed write.
    fn sync(&self, path: &Path) -> io::Result<()> {
        std::fs::OpenOptions::new().write(true).open(path)?.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        list_dir(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// The file's contents, `None` when it does not exist.
pub fn read_optional(files: &dyn Files, path: &Path) -> io::Result<Option<Vec<u8>>> {
    match files.read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `data` atomically and durably: write a temporary file, sync it, rename it
/// over `path`, sync the directory. A crash at any point leaves the old or the new version whole.
pub fn write_atomic(files: &dyn Files, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    if files.exists(&tmp) {
        files.remove_file(&tmp)?;
    }
    files.write_at(&tmp, 0, data)?;
    files.sync(&tmp)?;
    files.rename(&tmp, path)?;
    files.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Removes files no longer needed once a checkpoint stopped naming them; one that cannot be removed
/// is logged and left for the next start, which removes what the checkpoint does not name.
pub fn remove_unneeded(files: &dyn Files, paths: &[std::path::PathBuf]) {
    for p in paths {
        if let Err(e) = files.remove_file(p)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %p.display(), error = %e, "cannot remove a file the checkpoint no longer names");
        }
    }
}

/// Creates `dir` and its missing parents durably: each new directory's name is synced in its parent.
pub fn create_dir_durable(files: &dyn Files, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !files.exists(p)) {
        missing.push(p);
        d = p.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    files.create_dir_all(dir)?;
    for p in missing.iter().rev() {
        files.sync_dir(p.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// File names in `dir`, sorted; a missing directory is empty.
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
