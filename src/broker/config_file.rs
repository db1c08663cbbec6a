//! The JSON files of a shard's broker state under `config/` (topics, groups, consumer offsets,
//! delay and timer progress): loaded at start, replaced atomically when they change.
//!
//! Integrity: each file is framed like the checkpoint (JSON, newline, CRC32, newline) and the previous
//! version is kept beside it as `<name>.bak`. A file that fails its CRC or does not parse is never
//! trusted and never overwritten silently: the previous version is loaded (with a warning); if that is
//! damaged too, the file is recorded as damaged and the shard refuses to start naming it, unless the
//! operator starts with `--start-with-damaged-config`, which moves both aside
//! (`<name>.damaged-<ms>`) and starts with an empty table. Files written by older ringmq versions
//! (plain JSON without the CRC line) are accepted when they parse.
//!
//! Writes: in a serving process (`start_background_writes`) a save hands the framed bytes to one
//! writer thread, which writes them in order (the latest version per file when several are queued),
//! so a shard never waits for a config file's two fsyncs; `flush_background_writes` waits for it (at
//! shutdown). Elsewhere (tools, tests) saves are synchronous.
//!
//! Lives on the shard that owns the directory; the damaged list is per thread for that reason.

use crate::store::checkpoint::{frame, unframe, write_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

thread_local! {
    /// Files found damaged (with no good previous version) by loads on this thread.
    static DAMAGED: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
}

/// Takes the files this thread found damaged since the last call (start-up checks them).
pub fn take_damaged() -> Vec<(PathBuf, String)> {
    DAMAGED.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

fn previous(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".bak");
    PathBuf::from(p)
}

/// Reads and verifies one file: `Ok(None)` when it does not exist.
fn read_verified<T: DeserializeOwned>(path: &Path, field: Option<&str>) -> Result<Option<T>, String> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let json = match unframe(&data) {
        Ok(json) => json,
        // An older ringmq wrote plain JSON: accepted when it parses.
        Err(crate::store::checkpoint::CheckpointError::NoChecksum) => &data[..],
        Err(e) => return Err(e.to_string()),
    };
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let v = match field {
        Some(f) => v.get(f).cloned().ok_or_else(|| format!("no field {f:?}"))?,
        None => v,
    };
    serde_json::from_value(v).map(Some).map_err(|e| e.to_string())
}

/// Reads `path` (or `field` of it: RocketMQ wraps some tables, e.g. `offsetTable`), falling back to
/// its previous version; see the module doc for what happens when both are damaged.
pub fn load<T: DeserializeOwned + Default>(path: &Path, field: Option<&str>) -> T {
    let bak = previous(path);
    let why = match read_verified(path, field) {
        Ok(Some(v)) => return v,
        Ok(None) if !bak.exists() => return T::default(),
        Ok(None) => "missing".to_string(),
        Err(why) => why,
    };
    match read_verified(&bak, field) {
        Ok(Some(v)) => {
            tracing::warn!(file = %path.display(), %why, previous = %bak.display(),
                "config file damaged: loaded its previous version (changes since then are lost)");
            move_aside(path);
            v
        }
        Ok(None) | Err(_) => {
            tracing::error!(file = %path.display(), %why, "config file damaged and no good previous version");
            DAMAGED.with(|d| d.borrow_mut().push((path.to_path_buf(), why)));
            T::default()
        }
    }
}

/// Moves a damaged file and its previous version aside so that the empty table that replaces them
/// never overwrites the evidence (`--start-with-damaged-config`).
pub fn set_aside(path: &Path) {
    move_aside(path);
    move_aside(&previous(path));
}

/// Renames a damaged file to `<name>.damaged-<ms>` (kept for the operator, never overwritten).
fn move_aside(p: &Path) {
    let mut to = p.as_os_str().to_owned();
    to.push(format!(".damaged-{}", crate::store::now_ms()));
    if p.exists() && std::fs::rename(p, &to).is_ok() {
        tracing::warn!(file = %p.display(), moved_to = %PathBuf::from(&to).display(), "damaged config file set aside");
    }
}

/// A request to the writer thread: write a file, or tell when everything before is written.
enum Job {
    /// The file and how to encode it: a snapshot of the table, encoded on the writer thread (a large
    /// table takes milliseconds to encode).
    Write(PathBuf, Box<dyn FnOnce() -> Option<Vec<u8>> + Send>),
    Flushed(std::sync::mpsc::Sender<()>),
}

static WRITER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();

/// Sends later saves to one background writer thread (a serving process calls this once).
pub fn start_background_writes() {
    WRITER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ringmq-config-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Coalesce: of several queued versions of one file only the latest is written.
                    type Encode = Box<dyn FnOnce() -> Option<Vec<u8>> + Send>;
                    let mut pending: Vec<(PathBuf, Encode)> = Vec::new();
                    let mut waiters = Vec::new();
                    for job in std::iter::once(first).chain(rx.try_iter()) {
                        match job {
                            Job::Write(p, d) => match pending.iter_mut().find(|(q, _)| *q == p) {
                                Some(slot) => slot.1 = d,
                                None => pending.push((p, d)),
                            },
                            Job::Flushed(w) => waiters.push(w),
                        }
                    }
                    for (p, encode) in pending {
                        let Some(d) = encode() else { continue };
                        if let Err(e) = write_with_previous(&p, &d) {
                            tracing::error!(file = %p.display(), error = %e, "cannot persist config file");
                        }
                    }
                    for w in waiters {
                        let _ = w.send(());
                    }
                }
            })
            .map(|_| std::sync::Mutex::new(tx))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no config writer thread; config files are written inline");
                std::sync::Mutex::new(std::sync::mpsc::channel().0)
            })
    });
}

/// Waits until every save handed to the writer thread is written (shutdown).
pub fn flush_background_writes() {
    let Some(writer) = WRITER.get() else { return };
    let (tx, rx) = std::sync::mpsc::channel();
    let sent = writer.lock().map(|w| w.send(Job::Flushed(tx)).is_ok()).unwrap_or(false);
    if sent {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    }
}

/// Replaces `path` with `framed` atomically, keeping the previous version as `<path>.bak`.
fn write_with_previous(path: &Path, framed: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    // Only a file that verifies becomes the previous version: a damaged one stays as it is
    // until the operator looks (it was reported at start).
    if path.exists() && read_verified::<serde_json::Value>(path, None).is_ok() {
        std::fs::copy(path, previous(path))?;
    }
    write_atomic(path, framed)?;
    // A table written once still has a second copy to fall back on.
    if !previous(path).exists() {
        std::fs::copy(path, previous(path))?;
    }
    Ok(())
}

/// The framed file content of `value` (under `field` when given).
fn encode<T: Serialize>(path: &Path, field: Option<&str>, value: &T) -> Option<Vec<u8>> {
    let json = match field {
        Some(f) => serde_json::json!({ f: value }),
        None => serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
    };
    match serde_json::to_vec_pretty(&json) {
        Ok(data) => Some(frame(data)),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot encode config file");
            None
        }
    }
}

/// Writes `value` (under `field` when given) to `path` atomically, keeping the previous version as
/// `<path>.bak` — from a snapshot on the writer thread when one runs (then true means queued); logs
/// and returns false on failure.
pub fn save<T: Serialize + Clone + Send + 'static>(path: &Path, field: Option<&str>, value: &T) -> bool {
    if let Some(writer) = WRITER.get()
        && let Ok(w) = writer.lock()
    {
        let (snapshot, field, p) = (value.clone(), field.map(str::to_string), path.to_path_buf());
        let job = Job::Write(path.to_path_buf(), Box::new(move || encode(&p, field.as_deref(), &snapshot)));
        if w.send(job).is_ok() {
            return true;
        }
    }
    let Some(framed) = encode(path, field, value) else { return false };
    let result = write_with_previous(path, &framed);
    if let Err(e) = &result {
        tracing::error!(file = %path.display(), error = %e, "cannot persist config file");
    }
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table(v: u64) -> BTreeMap<String, u64> {
        [("a".to_string(), v)].into()
    }

    #[test]
    fn round_trip_with_and_without_wrapper() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert!(save(&p, Some("offsetTable"), &table(1)));
        assert_eq!(load::<BTreeMap<String, u64>>(&p, Some("offsetTable")), table(1));
        assert!(save(&p, None, &table(2)));
        assert_eq!(load::<BTreeMap<String, u64>>(&p, None), table(2));
        std::fs::write(&p, br#"{"a": 7}"#).unwrap(); // an older ringmq's plain JSON
        assert_eq!(load::<BTreeMap<String, u64>>(&p, None), table(7));
        assert!(take_damaged().is_empty());
    }

    #[test]
    fn damaged_config_file_loads_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("offsets.json");
        assert!(save(&p, None, &table(1)));
        assert!(save(&p, None, &table(2)));
        for damage in [&b"{not json"[..], &b""[..], &b"{\"a\": 3}\n00000000\n"[..]] {
            std::fs::write(&p, damage).unwrap();
            assert_eq!(load::<BTreeMap<String, u64>>(&p, None), table(1), "{damage:?}");
        }
        let _ = std::fs::remove_file(&p); // a crash between the two renames (or set aside above)
        assert!(
            std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("damaged-"))
        );
        assert_eq!(load::<BTreeMap<String, u64>>(&p, None), table(1));
        assert!(take_damaged().is_empty());
    }

    #[test]
    fn both_versions_damaged_is_reported_and_never_overwritten_silently() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("topics.json");
        assert!(save(&p, None, &table(1)));
        assert!(save(&p, None, &table(2)));
        std::fs::write(&p, b"garbage").unwrap();
        std::fs::write(previous(&p), b"garbage too").unwrap();
        assert!(load::<BTreeMap<String, u64>>(&p, None).is_empty());
        let damaged = take_damaged();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].0, p);
        // A save does not turn the damaged file into the previous version.
        assert!(save(&p, None, &table(3)));
        assert_eq!(std::fs::read(previous(&p)).unwrap(), b"garbage too");
        set_aside(&p);
        assert!(!p.exists() && !previous(&p).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "both kept aside");
    }
}
