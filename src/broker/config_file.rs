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
//! Every read and write goes through the store's [`Files`] (`Store::files`), so the storage fake
//! can tear, flip and drop unsynced writes in these files as in every other file of a shard.
//!
//! Lives on the shard that owns the directory; the damaged list is per thread for that reason.

use crate::store::checkpoint::{frame, unframe};
use crate::store::files::{Files, SharedFiles, read_optional, write_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// One config file and the files it is read and written through; a table keeps one.
#[derive(Clone)]
pub struct ConfigFile {
    files: SharedFiles,
    path: PathBuf,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConfigFile").field(&self.path).finish()
    }
}

impl ConfigFile {
    /// `name` inside `dir` (a shard's `config/`).
    pub fn new(files: &SharedFiles, dir: &Path, name: &str) -> ConfigFile {
        ConfigFile { files: files.clone(), path: dir.join(name) }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the table (or `field` of it: RocketMQ wraps some tables, e.g. `offsetTable`), falling
    /// back to its previous version; see the module doc for what happens when both are damaged.
    pub fn load<T: DeserializeOwned + Default>(&self, field: Option<&str>) -> T {
        load(&*self.files, &self.path, field)
    }

    /// Writes `value` (under `field` when given) atomically, keeping the previous version as
    /// `<name>.bak` — from a snapshot on the writer thread when one runs (then true means queued);
    /// logs and returns false on failure.
    pub fn save<T: Serialize + Clone + Send + 'static>(&self, field: Option<&str>, value: &T) -> bool {
        save(&self.files, &self.path, field, value)
    }
}

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
fn read_verified<T: DeserializeOwned>(
    files: &dyn Files,
    path: &Path,
    field: Option<&str>,
) -> Result<Option<T>, String> {
    let Some(data) = read_optional(files, path).map_err(|e| e.to_string())? else {
        return Ok(None);
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

fn load<T: DeserializeOwned + Default>(files: &dyn Files, path: &Path, field: Option<&str>) -> T {
    let bak = previous(path);
    let why = match read_verified(files, path, field) {
        Ok(Some(v)) => return v,
        Ok(None) if !files.exists(&bak) => return T::default(),
        Ok(None) => "missing".to_string(),
        Err(why) => why,
    };
    match read_verified(files, &bak, field) {
        Ok(Some(v)) => {
            tracing::warn!(file = %path.display(), %why, previous = %bak.display(),
                "config file damaged: loaded its previous version (changes since then are lost)");
            move_aside(files, path);
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
pub fn set_aside(files: &dyn Files, path: &Path) {
    move_aside(files, path);
    move_aside(files, &previous(path));
}

/// Renames a damaged file to `<name>.damaged-<ms>` (kept for the operator, never overwritten).
fn move_aside(files: &dyn Files, p: &Path) {
    let mut to = p.as_os_str().to_owned();
    to.push(format!(".damaged-{}", crate::store::now_ms()));
    let to = PathBuf::from(to);
    let dir = p.parent().unwrap_or(Path::new("."));
    if files.exists(p) && files.rename(p, &to).and_then(|()| files.sync_dir(dir)).is_ok() {
        tracing::warn!(file = %p.display(), moved_to = %to.display(), "damaged config file set aside");
    }
}

/// A request to the writer thread: write a file, or tell when everything before is written.
enum Job {
    /// The file and how to encode it: a snapshot of the table, encoded on the writer thread (a large
    /// table takes milliseconds to encode).
    Write(SharedFiles, PathBuf, Box<dyn FnOnce() -> Option<Vec<u8>> + Send>),
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
                    let mut pending: Vec<(SharedFiles, PathBuf, Encode)> = Vec::new();
                    let mut waiters = Vec::new();
                    for job in std::iter::once(first).chain(rx.try_iter()) {
                        match job {
                            Job::Write(f, p, d) => match pending.iter_mut().find(|(_, q, _)| *q == p) {
                                Some(slot) => slot.2 = d,
                                None => pending.push((f, p, d)),
                            },
                            Job::Flushed(w) => waiters.push(w),
                        }
                    }
                    for (f, p, encode) in pending {
                        let Some(d) = encode() else { continue };
                        if let Err(e) = write_with_previous(&*f, &p, &d) {
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
fn write_with_previous(files: &dyn Files, path: &Path, framed: &[u8]) -> std::io::Result<()> {
    crate::store::files::create_dir_durable(files, path.parent().unwrap_or(Path::new(".")))?;
    // Only a file that verifies becomes the previous version: a damaged one stays as it is
    // until the operator looks (it was reported at start).
    if files.exists(path) && read_verified::<serde_json::Value>(files, path, None).is_ok() {
        write_atomic(files, &previous(path), &files.read(path)?)?;
    }
    write_atomic(files, path, framed)?;
    // A table written once still has a second copy to fall back on.
    if !files.exists(&previous(path)) {
        write_atomic(files, &previous(path), framed)?;
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

fn save<T: Serialize + Clone + Send + 'static>(
    files: &SharedFiles,
    path: &Path,
    field: Option<&str>,
    value: &T,
) -> bool {
    if let Some(writer) = WRITER.get()
        && let Ok(w) = writer.lock()
    {
        let (snapshot, field, p) = (value.clone(), field.map(str::to_string), path.to_path_buf());
        let job =
            Job::Write(files.clone(), path.to_path_buf(), Box::new(move || encode(&p, field.as_deref(), &snapshot)));
        if w.send(job).is_ok() {
            return true;
        }
    }
    let Some(framed) = encode(path, field, value) else { return false };
    let result = write_with_previous(&**files, path, &framed);
    if let Err(e) = &result {
        tracing::error!(file = %path.display(), error = %e, "cannot persist config file");
    }
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fake_files::FakeFiles;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn table(v: u64) -> BTreeMap<String, u64> {
        [("a".to_string(), v)].into()
    }

    fn on_fake(name: &str) -> (FakeFiles, ConfigFile) {
        let fake = FakeFiles::new();
        let shared: SharedFiles = Arc::new(fake.clone());
        (fake, ConfigFile::new(&shared, Path::new("/shard/config"), name))
    }

    #[test]
    fn round_trip_with_and_without_wrapper() {
        let (fake, f) = on_fake("x.json");
        assert!(f.save(Some("offsetTable"), &table(1)));
        assert_eq!(f.load::<BTreeMap<String, u64>>(Some("offsetTable")), table(1));
        assert!(f.save(None, &table(2)));
        assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(2));
        fake.put_durable(f.path(), br#"{"a": 7}"#); // an older ringmq's plain JSON
        assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(7));
        assert!(take_damaged().is_empty());
    }

    #[test]
    fn round_trip_on_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let f = ConfigFile::new(&crate::store::files::OsFiles::shared(), &dir.path().join("config"), "t.json");
        assert!(f.save(None, &table(1)));
        assert!(f.save(None, &table(2)));
        assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(2));
        assert!(previous(f.path()).exists());
    }

    #[test]
    fn damaged_config_file_loads_the_previous_version() {
        let (fake, f) = on_fake("offsets.json");
        assert!(f.save(None, &table(1)));
        assert!(f.save(None, &table(2)));
        for damage in [&b"{not json"[..], &b""[..], &b"{\"a\": 3}\n00000000\n"[..]] {
            fake.put_durable(f.path(), damage);
            assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(1), "{damage:?}");
        }
        fake.delete(f.path()); // a crash between the two renames (or set aside above)
        assert!(fake.paths().iter().any(|p| p.to_string_lossy().contains("damaged-")));
        assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(1));
        // A flipped bit anywhere in the file is caught by its CRC.
        assert!(f.save(None, &table(5)));
        let len = fake.read(f.path()).unwrap().len() as u64;
        for pos in 0..len {
            assert!(fake.flip_bit(f.path(), pos, 3));
            assert_eq!(f.load::<BTreeMap<String, u64>>(None), table(1), "flip at {pos}");
            assert!(f.save(None, &table(5)), "the next save writes a good file again");
        }
        assert!(take_damaged().is_empty());
    }

    #[test]
    fn both_versions_damaged_is_reported_and_never_overwritten_silently() {
        let (fake, f) = on_fake("topics.json");
        assert!(f.save(None, &table(1)));
        assert!(f.save(None, &table(2)));
        fake.put_durable(f.path(), b"garbage");
        fake.put_durable(&previous(f.path()), b"garbage too");
        assert!(f.load::<BTreeMap<String, u64>>(None).is_empty());
        let damaged = take_damaged();
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].0, f.path());
        // A save does not turn the damaged file into the previous version.
        assert!(f.save(None, &table(3)));
        assert_eq!(fake.read(&previous(f.path())).unwrap(), b"garbage too");
        set_aside(&fake, f.path());
        assert!(!fake.exists(f.path()) && !fake.exists(&previous(f.path())));
        assert_eq!(fake.paths().iter().filter(|p| p.to_string_lossy().contains("damaged-")).count(), 2);
    }

    /// A power cut at every step of a save (the fake drops unsynced writes and names, tears the last
    /// write): the next start loads the last saved version, or the one being saved, never an empty
    /// or damaged table.
    #[test]
    fn crash_at_any_point_of_a_save_loads_a_saved_version() {
        for seed in 0..96u64 {
            let (fake, f) = on_fake("offsets.json");
            assert!(f.save(None, &table(1)));
            assert!(f.save(None, &table(2)));
            fake.fail_syncs_after(seed % 12);
            let acked = f.save(None, &table(3));
            fake.crash(seed);
            let got = f.load::<BTreeMap<String, u64>>(None);
            assert!(take_damaged().is_empty(), "seed {seed}: reported damaged");
            if acked {
                assert_eq!(got, table(3), "seed {seed}: a completed save was lost");
            } else {
                assert!(got == table(2) || got == table(3), "seed {seed}: loaded {got:?}");
            }
        }
    }
}
