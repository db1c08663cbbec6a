//! Checks on the data directory's storage: the I/O scheduler and write cache of the disk(s) under it,
//! and free space on its filesystem.
//!
//! The disk is found from the data directory's `st_dev` (or its nearest existing ancestor's, when the
//! directory has not been created yet) through `/sys/dev/block/MAJ:MIN`; see [`sysfs::disks_for_device`].
//! When it cannot be found (tmpfs, overlayfs, btrfs, NFS, an unreadable sysfs) the disk checks pass with
//! "not determinable" and the reason: they are advice, not a gate.

use std::path::Path;

use super::sysfs::{self, Disk};
use super::{CheckResult, Ctx, fmt_bytes};

/// Below this share of free space ringmq is close to refusing writes: Fail.
const FREE_PERCENT_FAIL: u64 = 10;
/// Below this share retention has little room to absorb a burst: Warn.
const FREE_PERCENT_WARN: u64 = 25;

/// The disks behind the data directory, or why they are not determinable.
fn data_disks(ctx: &Ctx<'_>) -> Result<Vec<Disk>, String> {
    let dir = sysfs::existing_ancestor(&ctx.opts.data_dir);
    let (major, minor) = ctx.host.device_of(dir).map_err(|e| format!("could not stat {}: {e}", dir.display()))?;
    sysfs::disks_for_device(&ctx.opts.root, major, minor).map_err(|e| e.to_string())
}

/// Scheduler choices that add no reordering latency in front of a device with its own deep queue.
fn scheduler_ok(name: &str) -> bool {
    matches!(name, "none" | "mq-deadline")
}

fn scheduler_fix(disks: &[String]) -> String {
    let cmds: Vec<_> = disks.iter().map(|d| format!("echo none > /sys/block/{d}/queue/scheduler")).collect();
    format!(
        "{} (use mq-deadline where none is not offered; persist with a udev rule: \
         ACTION==\"add|change\", KERNEL==\"{}\", ATTR{{queue/scheduler}}=\"none\")",
        cmds.join("; "),
        disks.first().map_or("sdX", String::as_str)
    )
}

pub(crate) fn disk_scheduler(ctx: &Ctx<'_>) -> CheckResult {
    let name = "disk_scheduler";
    let disks = match data_disks(ctx) {
        Ok(disks) => disks,
        Err(why) => return CheckResult::pass(name, format!("not determinable: {why}")),
    };
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for disk in &disks {
        match sysfs::read_knob(&disk.dir.join("queue/scheduler")) {
            Ok(text) => match sysfs::selected(&text) {
                Some(s) if scheduler_ok(s) => good.push(format!("{}: [{s}]", disk.name)),
                _ => bad.push((disk.name.clone(), text)),
            },
            Err(e) if e.is_not_found() => good.push(format!("{}: no queue/scheduler", disk.name)),
            Err(e) => {
                return CheckResult::warn(name, e.to_string(), scheduler_fix(std::slice::from_ref(&disk.name)));
            }
        }
    }
    if bad.is_empty() {
        return CheckResult::pass(name, good.join(", "));
    }
    let shown: Vec<_> = bad.iter().map(|(d, text)| format!("{d}: {text}")).collect();
    let names: Vec<_> = bad.into_iter().map(|(d, _)| d).collect();
    let why = format!(
        "{}: a reordering scheduler adds latency and CPU per I/O on flash; ringmq writes sequentially",
        shown.join(", ")
    );
    CheckResult::warn(name, why, scheduler_fix(&names))
}

pub(crate) fn write_scheduler(ctx: &Ctx<'_>) -> Result<String, String> {
    let mut done = Vec::new();
    for disk in data_disks(ctx)? {
        let path = disk.dir.join("queue/scheduler");
        let text = sysfs::read_knob(&path).map_err(|e| e.to_string())?;
        if sysfs::selected(&text).is_some_and(scheduler_ok) {
            continue;
        }
        let offered = sysfs::choices(&text);
        let Some(want) = ["none", "mq-deadline"].into_iter().find(|s| offered.contains(s)) else {
            return Err(format!("{}: neither none nor mq-deadline is offered ({text})", disk.name));
        };
        sysfs::write_knob(&path, want).map_err(|e| e.to_string())?;
        done.push(format!("{}={want}", disk.name));
    }
    Ok(format!("set scheduler {}", done.join(", ")))
}

pub(crate) fn disk_write_cache(ctx: &Ctx<'_>) -> CheckResult {
    let name = "disk_write_cache";
    let disks = match data_disks(ctx) {
        Ok(disks) => disks,
        Err(why) => return CheckResult::pass(name, format!("not determinable: {why}")),
    };
    let mut through = Vec::new();
    let mut back = Vec::new();
    for disk in &disks {
        match sysfs::read_knob(&disk.dir.join("queue/write_cache")) {
            Ok(v) if v == "write through" => through.push(disk.name.clone()),
            Ok(v) if v == "write back" => back.push(disk.name.clone()),
            Ok(v) => {
                return CheckResult::warn(name, format!("{}: unexpected value {v:?}", disk.name), CACHE_FIX);
            }
            Err(e) if e.is_not_found() => through.push(format!("{} (not exposed)", disk.name)),
            Err(e) => return CheckResult::warn(name, e.to_string(), CACHE_FIX),
        }
    }
    if back.is_empty() {
        return CheckResult::pass(name, format!("write through: {}", through.join(", ")));
    }
    let why = format!(
        "write back on {}: the drive has a volatile cache, so every fdatasync also sends a cache flush and \
         pays for it; an acknowledged message is durable only if the device honours flushes",
        back.join(", ")
    );
    CheckResult::warn(name, why, CACHE_FIX)
}

const CACHE_FIX: &str = "nothing to change if the drive honours flushes (ringmq's fdatasync then costs a \
flush); if it has power-loss protection (nvme id-ctrl: vwc=0 / enterprise SSD), \
echo 'write through' > /sys/block/<disk>/queue/write_cache stops the needless flushes. Never do that on a \
drive without power-loss protection: acknowledged messages would be lost on power failure";

pub(crate) fn free_space(ctx: &Ctx<'_>) -> CheckResult {
    let name = "free_space";
    let dir: &Path = sysfs::existing_ancestor(&ctx.opts.data_dir);
    let where_ = if dir == ctx.opts.data_dir.as_path() {
        dir.display().to_string()
    } else {
        format!("{} (data_dir {} does not exist yet)", dir.display(), ctx.opts.data_dir.display())
    };
    let fix = format!("free space on the filesystem of {where_}, shorten retention, or move data_dir");
    let space = match ctx.host.space_of(dir) {
        Ok(space) => space,
        Err(e) => return CheckResult::warn(name, format!("could not statvfs {where_}: {e}"), fix),
    };
    if space.total_bytes == 0 {
        return CheckResult::pass(name, format!("not determinable: {where_} reports a size of 0"));
    }
    let percent = space.avail_bytes.saturating_mul(100) / space.total_bytes;
    let shown =
        format!("{percent}% free ({} of {}) on {where_}", fmt_bytes(space.avail_bytes), fmt_bytes(space.total_bytes));
    if percent < FREE_PERCENT_FAIL {
        CheckResult::fail(name, format!("{shown}: below {FREE_PERCENT_FAIL}%, the log will soon fill the disk"), fix)
    } else if percent < FREE_PERCENT_WARN {
        CheckResult::warn(name, format!("{shown}: below {FREE_PERCENT_WARN}%, little room for a burst"), fix)
    } else {
        CheckResult::pass(name, shown)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::Status;
    use super::super::testkit::*;

    /// sda with partition sda1 (8:1) holding the data directory.
    fn disk_tree(tree: &Tree, scheduler: &str, write_cache: &str) {
        tree.write("sys/devices/pci0/block/sda/queue/scheduler", scheduler);
        tree.write("sys/devices/pci0/block/sda/queue/write_cache", write_cache);
        tree.write("sys/devices/pci0/block/sda/sda1/partition", "1\n");
        tree.link("sys/dev/block/8:1", "../../devices/pci0/block/sda/sda1");
    }

    #[test]
    fn scheduler_resolves_partition_to_disk() {
        for (text, want) in [
            ("[none] mq-deadline\n", Status::Pass),
            ("none [mq-deadline] kyber\n", Status::Pass),
            ("none mq-deadline [bfq]\n", Status::Warn),
            ("[kyber] none\n", Status::Warn),
        ] {
            let tree = Tree::new();
            disk_tree(&tree, text, "write through\n");
            let r = check(&tree, "disk_scheduler");
            assert_eq!(r.status, want, "{text}: {r:?}");
            assert!(r.observed.contains("sda"), "{}", r.observed);
        }
    }

    #[test]
    fn scheduler_apply_prefers_none() {
        let tree = Tree::new();
        disk_tree(&tree, "mq-deadline kyber [bfq] none\n", "write through\n");
        let r = check_with(&tree, &FakeHost::default(), true, "disk_scheduler");
        assert!(!r.applied);
        let r = check_with(&tree, &root_host(), true, "disk_scheduler");
        assert!(r.applied && r.status == Status::Pass, "{r:?}");
        assert_eq!(tree.read("sys/devices/pci0/block/sda/queue/scheduler"), "none");

        let tree = Tree::new();
        disk_tree(&tree, "mq-deadline [bfq]\n", "write through\n");
        let r = check_with(&tree, &root_host(), true, "disk_scheduler");
        assert!(r.applied, "{r:?}");
        assert_eq!(tree.read("sys/devices/pci0/block/sda/queue/scheduler"), "mq-deadline");
    }

    #[test]
    fn scheduler_follows_device_mapper_slaves() {
        let tree = Tree::new();
        disk_tree(&tree, "[none]\n", "write through\n");
        tree.write("sys/devices/pci1/block/nvme0n1/queue/scheduler", "[bfq] none\n");
        tree.write("sys/devices/virtual/block/dm-0/queue/scheduler", "none\n");
        tree.link("sys/devices/virtual/block/dm-0/slaves/sda1", "../../../../pci0/block/sda/sda1");
        tree.link("sys/devices/virtual/block/dm-0/slaves/nvme0n1", "../../../../pci1/block/nvme0n1");
        tree.link("sys/dev/block/253:0", "../../devices/virtual/block/dm-0");
        let host = FakeHost { dev: (253, 0), ..FakeHost::default() };
        let r = check_with(&tree, &host, false, "disk_scheduler");
        assert_eq!(r.status, Status::Warn);
        assert!(r.observed.contains("nvme0n1: [bfq] none"), "{}", r.observed);
        assert!(r.fix.unwrap().contains("/sys/block/nvme0n1/queue/scheduler"));
    }

    #[test]
    fn disk_checks_not_determinable() {
        let tree = Tree::new();
        let anon = FakeHost { dev: (0, 45), ..FakeHost::default() };
        for name in ["disk_scheduler", "disk_write_cache"] {
            let r = check_with(&tree, &anon, false, name);
            assert_eq!(r.status, Status::Pass);
            assert!(r.observed.starts_with("not determinable: st_dev 0:45"), "{}", r.observed);
            let r = check(&tree, name);
            assert_eq!(r.status, Status::Pass);
            assert!(r.observed.contains("could not read"), "{}", r.observed);
        }
    }

    #[test]
    fn write_cache_paths() {
        let tree = Tree::new();
        disk_tree(&tree, "[none]\n", "write back\n");
        let r = check(&tree, "disk_write_cache");
        assert_eq!(r.status, Status::Warn);
        assert!(r.observed.contains("honours flushes"), "{}", r.observed);
        assert!(r.fix.unwrap().contains("power-loss protection"));
        let r = check_with(&tree, &root_host(), true, "disk_write_cache");
        assert!(!r.applied, "write cache is never changed by --apply");

        let tree = Tree::new();
        disk_tree(&tree, "[none]\n", "write through\n");
        assert_eq!(check(&tree, "disk_write_cache").status, Status::Pass);
    }

    #[test]
    fn free_space_paths() {
        let tree = Tree::new();
        for (avail, want) in [(5, Status::Fail), (20, Status::Warn), (50, Status::Pass)] {
            let space = Some(Space { total_bytes: 100 << 30, avail_bytes: avail << 30 });
            let host = FakeHost { space, ..FakeHost::default() };
            let r = check_with(&tree, &host, false, "free_space");
            assert_eq!(r.status, want, "{r:?}");
            assert!(r.observed.contains("does not exist yet"), "{}", r.observed);
        }
        let host = FakeHost { space: None, ..FakeHost::default() };
        assert_eq!(check_with(&tree, &host, false, "free_space").status, Status::Warn);
    }
}
