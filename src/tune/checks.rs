//! The checks, in the order they are reported, and the runner that applies a fix and reads it back.
//!
//! Each probe is a pure read of the host (through [`Ctx`]) returning one [`CheckResult`]. A check with
//! an [`Apply`] can fix itself under `--apply`; the runner then probes again, so a Pass after apply
//! means the kernel accepted the value, not merely that a write returned Ok.

use super::sysfs::{self, SysfsError};
use super::{CheckResult, Ctx, LimitKind, Status, fmt_bytes, fmt_limit};

pub(crate) use super::disk::{disk_scheduler, disk_write_cache, free_space, write_scheduler};
pub(crate) use super::exposure::{acl, metrics_bind};
pub(crate) use super::net::irq_spread;

/// glommio refuses to start when it cannot lock this much (measured with glommio 0.9.0).
const MEMLOCK_START_BYTES_MIN: u64 = 512 * 1024;
/// glommio 0.9's default `io_memory` per executor (`DEFAULT_IO_MEMORY = 10 << 20`).
const IO_MEMORY_BYTES_DEFAULT: u64 = 10 << 20;
/// Each executor registers its io_memory with its three rings (main, latency, poll).
const RINGS_PER_EXECUTOR: u64 = 3;
/// CAP_IPC_LOCK's bit in the capability masks of /proc/self/status.
const CAP_IPC_LOCK_BIT: u32 = 14;
/// Open files: a socket per client connection plus segment, index and consume-queue files per shard;
/// 65536 leaves room for tens of thousands of connections.
const NOFILE_MIN: u64 = 65_536;
/// Above this the kernel prefers swapping out anonymous memory to dropping page cache.
const SWAPPINESS_MAX: u64 = 10;

/// One check: a probe and, where a safe fix exists, how to apply it.
pub(crate) struct Check {
    pub name: &'static str,
    probe: fn(&Ctx<'_>) -> CheckResult,
    apply: Option<Apply>,
}

/// A fix `--apply` may make. `run` returns what it did, for the report.
struct Apply {
    run: fn(&Ctx<'_>) -> Result<String, String>,
    /// Writing kernel settings needs euid 0; raising our own soft limit does not.
    needs_root: bool,
    /// The fix changes only this process, so it does not make the check pass for the broker.
    process_local: bool,
}

/// A check `--apply` leaves alone.
const fn report_only(name: &'static str, probe: fn(&Ctx<'_>) -> CheckResult) -> Check {
    Check { name, probe, apply: None }
}

/// A check whose fix is writing a kernel knob (root only).
const fn knob(
    name: &'static str,
    probe: fn(&Ctx<'_>) -> CheckResult,
    run: fn(&Ctx<'_>) -> Result<String, String>,
) -> Check {
    let apply = Apply { run, needs_root: true, process_local: false };
    Check { name, probe, apply: Some(apply) }
}

/// Every check, in report order.
pub(crate) const ALL: &[Check] = &[
    report_only("memlock", memlock),
    Check {
        name: "nofile",
        probe: nofile,
        apply: Some(Apply { run: raise_nofile, needs_root: false, process_local: true }),
    },
    report_only("io_uring", io_uring),
    knob("cpu_governor", cpu_governor, write_governor),
    knob("transparent_hugepages", thp, write_thp),
    knob("swappiness", swappiness, write_swappiness),
    knob("disk_scheduler", disk_scheduler, write_scheduler),
    report_only("disk_write_cache", disk_write_cache),
    report_only("irq_spread", irq_spread),
    report_only("clocksource", clocksource),
    report_only("free_space", free_space),
    report_only("acl", acl),
    report_only("metrics_bind", metrics_bind),
];

/// Probes `check` and, under `--apply`, fixes what it can and probes again.
pub(crate) fn execute(check: &Check, ctx: &Ctx<'_>) -> CheckResult {
    let before = (check.probe)(ctx);
    debug_assert_eq!(before.name, check.name, "a probe reports under its own check's name");
    match &check.apply {
        Some(apply) if ctx.opts.apply && before.status != Status::Pass => apply_fix(check, apply, before, ctx),
        _ => before,
    }
}

fn apply_fix(check: &Check, apply: &Apply, mut before: CheckResult, ctx: &Ctx<'_>) -> CheckResult {
    let euid = ctx.host.euid();
    if apply.needs_root && euid != 0 {
        before.observed += &format!("; --apply skipped: writing kernel settings needs root (euid {euid})");
        return before;
    }
    match (apply.run)(ctx) {
        Err(e) => {
            before.observed += &format!("; --apply failed: {e}");
            before
        }
        Ok(done) if apply.process_local => {
            before.observed += &format!("; --apply: {done}");
            before.applied = true;
            before
        }
        Ok(done) => {
            let mut after = (check.probe)(ctx);
            after.observed += &format!(" (--apply: {done})");
            after.applied = true;
            after
        }
    }
}

const MEMLOCK_FIX: &str = "ulimit -l unlimited (in the shell that starts ringmq; the hard limit must allow it), \
or LimitMEMLOCK=infinity in the systemd unit (tuning/ringmq.service), \
or 'ringmq - memlock unlimited' in /etc/security/limits.d/60-ringmq.conf";

fn memlock(ctx: &Ctx<'_>) -> CheckResult {
    let name = "memlock";
    let lim = match ctx.host.rlimit(LimitKind::Memlock) {
        Ok(lim) => lim,
        Err(e) => {
            return CheckResult::warn(name, format!("could not read RLIMIT_MEMLOCK: {e}"), MEMLOCK_FIX);
        }
    };
    let executors = ctx.cpus_online() as u64;
    let wanted = RINGS_PER_EXECUTOR * IO_MEMORY_BYTES_DEFAULT * executors;
    let Some(soft) = lim.soft else {
        return CheckResult::pass(name, "unlimited");
    };
    let have = fmt_bytes(soft);
    if let Some(who) = memlock_exempt(ctx) {
        return CheckResult::pass(name, format!("soft limit {have}, but {who}: pinned memory is not limited"));
    }
    let need = format!(
        "glommio pins {RINGS_PER_EXECUTOR} × io_memory ({}) per executor = {} for {executors} executors",
        fmt_bytes(IO_MEMORY_BYTES_DEFAULT),
        fmt_bytes(wanted)
    );
    if soft < MEMLOCK_START_BYTES_MIN {
        let why = format!("soft limit {have} < 512 KiB: glommio refuses to start; {need}");
        return CheckResult::fail(name, why, MEMLOCK_FIX);
    }
    if soft < wanted {
        let why = format!(
            "soft limit {have}: starts, but {need}; executors past the limit fail to register buffers (ENOMEM)"
        );
        return CheckResult::warn(name, why, MEMLOCK_FIX);
    }
    CheckResult::pass(name, format!("soft limit {have} ≥ {}", fmt_bytes(wanted)))
}

/// Root and holders of CAP_IPC_LOCK pin memory without RLIMIT_MEMLOCK accounting.
fn memlock_exempt(ctx: &Ctx<'_>) -> Option<&'static str> {
    if ctx.host.euid() == 0 {
        return Some("running as root (euid 0)");
    }
    let status = sysfs::read_knob(&ctx.path("proc/self/status")).ok()?;
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let mask = u64::from_str_radix(caps.trim(), 16).ok()?;
    (mask & (1 << CAP_IPC_LOCK_BIT) != 0).then_some("the process has CAP_IPC_LOCK")
}

const NOFILE_FIX: &str = "ulimit -n 1048576 (shell), or LimitNOFILE=1048576 in the systemd unit, \
or 'ringmq - nofile 1048576' in /etc/security/limits.d/60-ringmq.conf";

fn nofile(ctx: &Ctx<'_>) -> CheckResult {
    let name = "nofile";
    let lim = match ctx.host.rlimit(LimitKind::Nofile) {
        Ok(lim) => lim,
        Err(e) => {
            return CheckResult::warn(name, format!("could not read RLIMIT_NOFILE: {e}"), NOFILE_FIX);
        }
    };
    let shown = format!("soft {}, hard {}", fmt_limit(lim.soft, false), fmt_limit(lim.hard, false));
    match lim.soft {
        Some(soft) if soft < NOFILE_MIN => {
            let why = format!("{shown} < {NOFILE_MIN}: many connections and segment files can hit EMFILE");
            CheckResult::warn(name, why, NOFILE_FIX)
        }
        _ => CheckResult::pass(name, shown),
    }
}

fn raise_nofile(ctx: &Ctx<'_>) -> Result<String, String> {
    let before = ctx.host.rlimit(LimitKind::Nofile).map_err(|e| e.to_string())?;
    if before.soft == before.hard {
        return Err(format!(
            "soft limit already equals the hard limit {}; raising the hard limit needs root",
            fmt_limit(before.hard, false)
        ));
    }
    let after = ctx.host.raise_nofile_soft_to_hard().map_err(|e| format!("setrlimit failed: {e}"))?;
    Ok(format!(
        "raised the soft limit to {} for this `ringmq tune` process only; the broker gets its limit \
         from how it is started (LimitNOFILE / ulimit -n)",
        fmt_limit(after.soft, false)
    ))
}

fn io_uring(ctx: &Ctx<'_>) -> CheckResult {
    let name = "io_uring";
    let path = ctx.path("proc/sys/kernel/io_uring_disabled");
    let fix = "sysctl -w kernel.io_uring_disabled=0 (persist: tuning/sysctl.d/60-ringmq.conf)";
    let value = match sysfs::read_knob(&path) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            return CheckResult::pass(name, "kernel.io_uring_disabled absent (kernel < 6.6): not restricted");
        }
        Err(e) => return CheckResult::warn(name, e.to_string(), fix),
    };
    match value.as_str() {
        "0" => CheckResult::pass(name, "kernel.io_uring_disabled = 0"),
        "1" if ctx.host.euid() == 0 => CheckResult::pass(
            name,
            "kernel.io_uring_disabled = 1: only CAP_SYS_ADMIN or kernel.io_uring_group may use io_uring; running as root",
        ),
        "1" => CheckResult::warn(
            name,
            "kernel.io_uring_disabled = 1: only CAP_SYS_ADMIN or members of kernel.io_uring_group may create \
             rings; as this user glommio cannot start",
            format!("{fix}, or add the ringmq user to the group named by kernel.io_uring_group"),
        ),
        "2" => CheckResult::fail(
            name,
            "kernel.io_uring_disabled = 2: io_uring is off for everyone; glommio cannot start",
            fix,
        ),
        other => CheckResult::warn(name, format!("kernel.io_uring_disabled = {other:?}: unexpected value"), fix),
    }
}

/// A CPU (`cpu3`) and its `scaling_governor` value or read error.
type Governor = (String, Result<String, SysfsError>);

/// Every CPU that exposes a `scaling_governor`, with its value or read error.
fn governors(ctx: &Ctx<'_>) -> Result<Vec<Governor>, SysfsError> {
    let cpu_dir = ctx.path("sys/devices/system/cpu");
    let mut found = Vec::new();
    for entry in sysfs::list_dir(&cpu_dir)? {
        let is_cpu = entry.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        match sysfs::read_knob(&cpu_dir.join(&entry).join("cpufreq/scaling_governor")) {
            Err(e) if e.is_not_found() => {}
            value => found.push((entry, value)),
        }
    }
    Ok(found)
}

const GOVERNOR_FIX: &str = "cpupower frequency-set -g performance \
(or: echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)";

fn cpu_governor(ctx: &Ctx<'_>) -> CheckResult {
    let name = "cpu_governor";
    let found = match governors(ctx) {
        Ok(found) => found,
        Err(e) if e.is_not_found() => return CheckResult::pass(name, "not exposed (VM?)"),
        Err(e) => return CheckResult::warn(name, e.to_string(), GOVERNOR_FIX),
    };
    if found.is_empty() {
        return CheckResult::pass(name, "not exposed (VM?)");
    }
    let total = found.len();
    let mut slow = Vec::new();
    for (cpu, value) in found {
        match value {
            Ok(v) if v == "performance" => {}
            Ok(v) => slow.push(format!("{cpu}={v}")),
            Err(e) => return CheckResult::warn(name, e.to_string(), GOVERNOR_FIX),
        }
    }
    if slow.is_empty() {
        return CheckResult::pass(name, format!("performance on all {total} CPUs"));
    }
    let shown: Vec<_> = slow.iter().take(4).cloned().collect();
    let more = if slow.len() > shown.len() { ", …" } else { "" };
    let why = format!(
        "{} of {total} CPUs not on performance ({}{more}): polling executors pay frequency ramp-up as latency",
        slow.len(),
        shown.join(", ")
    );
    CheckResult::warn(name, why, GOVERNOR_FIX)
}

fn write_governor(ctx: &Ctx<'_>) -> Result<String, String> {
    let cpu_dir = ctx.path("sys/devices/system/cpu");
    let mut written = 0;
    for (cpu, value) in governors(ctx).map_err(|e| e.to_string())? {
        if value.as_deref().is_ok_and(|v| v == "performance") {
            continue;
        }
        let dir = cpu_dir.join(&cpu).join("cpufreq");
        let offered = sysfs::read_knob(&dir.join("scaling_available_governors"))
            .map(|list| sysfs::choices(&list).contains(&"performance"))
            .unwrap_or(true);
        if !offered {
            return Err(format!("{cpu}: the cpufreq driver offers no performance governor"));
        }
        sysfs::write_knob(&dir.join("scaling_governor"), "performance").map_err(|e| e.to_string())?;
        written += 1;
    }
    Ok(format!("set performance on {written} CPUs"))
}

const THP_FIX: &str = "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled \
(persist: transparent_hugepage=madvise on the kernel command line)";

fn thp(ctx: &Ctx<'_>) -> CheckResult {
    let name = "transparent_hugepages";
    let path = ctx.path("sys/kernel/mm/transparent_hugepage/enabled");
    let text = match sysfs::read_knob(&path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => {
            return CheckResult::pass(name, "not exposed (kernel without THP)");
        }
        Err(e) => return CheckResult::warn(name, e.to_string(), THP_FIX),
    };
    match sysfs::selected(&text) {
        Some(mode @ ("never" | "madvise")) => CheckResult::pass(name, format!("[{mode}]")),
        Some("always") => CheckResult::warn(
            name,
            "[always]: page faults may stall on compaction and khugepaged scans memory in the background; \
             latency spikes with no gain for ringmq's buffers",
            THP_FIX,
        ),
        _ => CheckResult::warn(name, format!("unexpected value {text:?}"), THP_FIX),
    }
}

fn write_thp(ctx: &Ctx<'_>) -> Result<String, String> {
    let path = ctx.path("sys/kernel/mm/transparent_hugepage/enabled");
    sysfs::write_knob(&path, "madvise").map_err(|e| e.to_string())?;
    Ok("wrote madvise".to_string())
}

const SWAPPINESS_FIX: &str = "sysctl -w vm.swappiness=1 (persist: tuning/sysctl.d/60-ringmq.conf)";

fn swappiness(ctx: &Ctx<'_>) -> CheckResult {
    let name = "swappiness";
    let text = match sysfs::read_knob(&ctx.path("proc/sys/vm/swappiness")) {
        Ok(text) => text,
        Err(e) => return CheckResult::warn(name, e.to_string(), SWAPPINESS_FIX),
    };
    match text.parse::<u64>() {
        Ok(v) if v <= SWAPPINESS_MAX => CheckResult::pass(name, format!("vm.swappiness = {v}")),
        Ok(v) => CheckResult::warn(
            name,
            format!(
                "vm.swappiness = {v} > {SWAPPINESS_MAX}: idle broker memory may be swapped out for page cache, \
                 and a swap-in stalls the whole shard"
            ),
            SWAPPINESS_FIX,
        ),
        Err(_) => CheckResult::warn(name, format!("vm.swappiness = {text:?}: not a number"), SWAPPINESS_FIX),
    }
}

fn write_swappiness(ctx: &Ctx<'_>) -> Result<String, String> {
    sysfs::write_knob(&ctx.path("proc/sys/vm/swappiness"), "1").map_err(|e| e.to_string())?;
    Ok("wrote 1".to_string())
}

fn clocksource(ctx: &Ctx<'_>) -> CheckResult {
    let name = "clocksource";
    let dir = ctx.path("sys/devices/system/clocksource/clocksource0");
    let fix_tsc = "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource \
                   (persist: clocksource=tsc on the kernel command line)";
    let current = match sysfs::read_knob(&dir.join("current_clocksource")) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return CheckResult::pass(name, "not exposed"),
        Err(e) => return CheckResult::warn(name, e.to_string(), fix_tsc),
    };
    // arch_sys_counter is arm64's equivalent of the TSC: read in user space through the vDSO.
    if current == "tsc" || current == "arch_sys_counter" {
        return CheckResult::pass(name, current);
    }
    let offered = sysfs::read_knob(&dir.join("available_clocksource"))
        .map(|list| sysfs::choices(&list).contains(&"tsc"))
        .unwrap_or(false);
    let why = format!("{current}: reading the clock costs more than rdtsc, and ringmq reads it per request");
    if offered {
        CheckResult::warn(name, why, fix_tsc)
    } else {
        let why = format!("{why}; tsc is not offered (common on VMs: kvm-clock is the right choice there)");
        CheckResult::warn(name, why, "none on this host unless the hypervisor exposes an invariant TSC")
    }
}
