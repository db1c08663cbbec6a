//! Reading and writing kernel knobs under a configurable filesystem root.
//!
//! Every path the checks touch is `root.join("proc/…")` or `root.join("sys/…")`, so tests point the root
//! at a fake tree in a temporary directory. Nothing here panics on odd input: a missing file, a directory
//! where a file was expected, a value in an unexpected shape or a loop of symlinks all come back as an
//! error or `None` that the check turns into a Warn or Pass with the reason.
//!
//! Also here: finding the block device(s) behind a data directory from its `st_dev`, through
//! `/sys/dev/block/MAJ:MIN`, up from a partition to its disk and down through device-mapper / md
//! `slaves/` to the physical disks whose queue settings matter.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest knob we read. sysfs attributes are at most one page; the bound keeps a stray large regular
/// file in a fake tree (or a misdirected root) from being slurped whole.
const KNOB_SIZE_BYTES_MAX: u64 = 64 * 1024;

/// Most directory entries we look at in one listing: more CPUs, IRQs or queues than any host has today,
/// and a bound on the work a strange tree can cause.
pub(crate) const DIR_ENTRIES_MAX: usize = 16_384;

/// Most CPUs a CPU list may name; Linux's NR_CPUS tops out at 8192.
const CPU_LIST_LEN_MAX: usize = 8_192;

/// How deep we follow `slaves/` (dm on md on partition is 3); deeper stacks are reported at the depth
/// reached rather than walked without end.
const DEVICE_STACK_DEPTH_MAX: usize = 4;

/// A failed read or write of a kernel knob, with the path as it was touched (root included).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SysfsError {
    #[error("could not read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("could not write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl SysfsError {
    /// True when the knob does not exist: the kernel does not expose it, which is not a fault.
    pub(crate) fn is_not_found(&self) -> bool {
        let (Self::Read { source, .. } | Self::Write { source, .. }) = self;
        source.kind() == io::ErrorKind::NotFound
    }
}

/// Reads a knob and trims surrounding whitespace.
pub(crate) fn read_knob(path: &Path) -> Result<String, SysfsError> {
    let wrap = |source| SysfsError::Read { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(wrap)?;
    let mut text = String::new();
    file.take(KNOB_SIZE_BYTES_MAX).read_to_string(&mut text).map_err(wrap)?;
    Ok(text.trim().to_string())
}

/// Writes a knob the way `echo value > path` does. Never creates a file: a knob that does not exist is
/// one the kernel does not have, and inventing it would hide that.
pub(crate) fn write_knob(path: &Path, value: &str) -> Result<(), SysfsError> {
    let wrap = |source| SysfsError::Write { path: path.to_path_buf(), source };
    let mut file = fs::OpenOptions::new().write(true).truncate(true).open(path).map_err(wrap)?;
    file.write_all(format!("{value}\n").as_bytes()).map_err(wrap)
}

/// Names in a directory, sorted, at most [`DIR_ENTRIES_MAX`]; names that are not UTF-8 are skipped.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<String>, SysfsError> {
    let wrap = |source| SysfsError::Read { path: path.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(wrap)?.take(DIR_ENTRIES_MAX) {
        if let Some(name) = entry.map_err(wrap)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The selected entry of a kernel choice list: `always [madvise] never` → `madvise`. A value with no
/// brackets is taken whole when it is one word (a queue with no scheduler choice reads `none`).
pub(crate) fn selected(text: &str) -> Option<&str> {
    if let Some(start) = text.find('[') {
        let rest = text.get(start + 1..)?;
        let end = rest.find(']')?;
        return rest.get(..end);
    }
    let mut words = text.split_whitespace();
    let only = words.next()?;
    words.next().is_none().then_some(only)
}

/// All entries of a choice list, brackets removed: `[mq-deadline] none` → `["mq-deadline", "none"]`.
pub(crate) fn choices(text: &str) -> Vec<&str> {
    text.split_whitespace().map(|w| w.trim_matches(|c| c == '[' || c == ']')).collect()
}

/// Parses a kernel CPU list (`0-3,8,10-11`). `None` when malformed or naming more than 8192 CPUs.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim().parse::<u32>().ok()?, hi.trim().parse::<u32>().ok()?),
            None => {
                let cpu = part.trim().parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        let span = usize::try_from(hi.checked_sub(lo)?).ok()?;
        if cpus.len() + span >= CPU_LIST_LEN_MAX {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

/// Counts the CPUs in a hex CPU mask (`00000000,0000000f` → 4). `None` when not hex.
pub(crate) fn mask_cpu_count(text: &str) -> Option<u32> {
    let mut count = 0;
    for c in text.trim().chars().filter(|&c| c != ',') {
        count += c.to_digit(16)?.count_ones();
    }
    Some(count)
}

/// The nearest ancestor of `path` (itself included) that exists: a data directory that has not been
/// created yet will live on its parent's filesystem.
pub(crate) fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists()).unwrap_or(Path::new("."))
}

/// A whole block device whose `queue/` settings govern I/O for the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Kernel name (`sda`, `nvme0n1`), as used in `/sys/block/<name>`.
    pub name: String,
    /// The device's directory in the (possibly fake) sysfs tree.
    pub dir: PathBuf,
}

/// Why the data directory's disks could not be found; the checks report it as "not determinable".
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiskError {
    #[error("st_dev 0:{minor} is an anonymous device (tmpfs, overlayfs, btrfs, NFS…): no single block device")]
    Anonymous { minor: u32 },
    #[error("could not read {}: {source}", path.display())]
    Resolve { path: PathBuf, source: io::Error },
}

/// The physical disks behind block device `major:minor`, found under `root/sys/dev/block`.
pub(crate) fn disks_for_device(root: &Path, major: u32, minor: u32) -> Result<Vec<Disk>, DiskError> {
    if major == 0 {
        return Err(DiskError::Anonymous { minor });
    }
    let link = root.join(format!("sys/dev/block/{major}:{minor}"));
    let dir = canonical(&link)?;
    let mut disks = Vec::new();
    collect_disks(&dir, 0, &mut disks)?;
    Ok(disks)
}

fn canonical(path: &Path) -> Result<PathBuf, DiskError> {
    fs::canonicalize(path).map_err(|source| DiskError::Resolve { path: path.to_path_buf(), source })
}

/// Adds the disks under `dir`: a partition stands for its parent disk; a device with `slaves/`
/// (device-mapper, md) stands for the devices it is built from.
fn collect_disks(dir: &Path, depth: usize, disks: &mut Vec<Disk>) -> Result<(), DiskError> {
    let disk = whole_disk(dir);
    let slaves = list_dir(&disk.join("slaves")).unwrap_or_default();
    if slaves.is_empty() || depth >= DEVICE_STACK_DEPTH_MAX {
        let name = disk.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        if !disks.iter().any(|d| d.dir == disk) {
            disks.push(Disk { name, dir: disk });
        }
        return Ok(());
    }
    for slave in slaves {
        let below = canonical(&disk.join("slaves").join(slave))?;
        collect_disks(&below, depth + 1, disks)?;
    }
    Ok(())
}

/// A partition's directory sits inside its disk's directory and has a `partition` file.
fn whole_disk(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(parent) if dir.join("partition").exists() => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_handles_brackets_and_single_words() {
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("none"), Some("none"));
        assert_eq!(selected("mq-deadline none"), None);
        assert_eq!(selected("[broken"), None);
        assert_eq!(selected(""), None);
    }

    #[test]
    fn cpu_lists_parse_and_bound() {
        assert_eq!(parse_cpu_list("0-3,8"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("5\n"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }

    #[test]
    fn masks_count_cpus() {
        assert_eq!(mask_cpu_count("00000000,0000000f"), Some(4));
        assert_eq!(mask_cpu_count("0"), Some(0));
        assert_eq!(mask_cpu_count("zz"), None);
    }

    #[test]
    fn anonymous_devices_are_not_resolved() {
        let err = disks_for_device(Path::new("/nonexistent"), 0, 42);
        assert!(matches!(err, Err(DiskError::Anonymous { minor: 42 })));
    }
}
