//! `ringmq tune`: checks the host for the settings a shard-per-core io_uring broker depends on, prints
//! what it found with the exact command that fixes each problem, and with `--apply` (as root) writes
//! the few fixes that are safe to make on a running machine.
//!
//! Lifecycle: one call of [`run`] (or [`run_checks`]) from `main`, on the main thread, before or instead
//! of starting executors. It holds no state and starts no executor.
//!
//! What is checked: the memlock and open-files limits of this process, whether io_uring is allowed,
//! CPU frequency governor, transparent hugepages, `vm.swappiness`, the data disk's I/O scheduler and
//! write cache, NIC interrupt spread, the clocksource, free space on the data directory, and who can
//! reach the broker unauthenticated (ACL off on a non-loopback address, metrics bound beyond loopback).
//!
//! What `--apply` writes, and only with euid 0: `vm.swappiness=1`, THP `madvise`, governor
//! `performance`, scheduler `none`/`mq-deadline` on the data disk. Each write is checked by reading the
//! knob back. Writes to `/proc/sys` and `/sys` do not survive a reboot; `tuning/` in the repository
//! holds the persistent forms (sysctl.d, limits.d, the systemd unit). Raising the open-files soft limit
//! needs no root and affects only the `ringmq tune` process itself.
//!
//! Failure model: nothing here panics on the host's state. Every read goes through
//! [`TuneOptions::root`] so tests run against a fake `/proc` + `/sys` tree; a file that cannot be read
//! yields a Warn or Pass whose `observed` says "could not read <path>: <error>".

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod disk;
mod exposure;
mod host;
mod net;
mod sysfs;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

pub(crate) use host::{Host, LimitKind, SystemHost};

/// What `ringmq tune` was asked to do.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Write the safe fixes (needs euid 0 for everything except the open-files soft limit).
    pub apply: bool,
    /// The broker's data directory: its disk and filesystem are checked.
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    pub json: bool,
    /// Filesystem root under which `proc/` and `sys/` are read and written: `/` normally.
    pub root: PathBuf,
    /// The broker's ACL file (`--acl-file`, `aclEnable`); `None` = ACL off.
    pub acl_file: Option<PathBuf>,
    /// The broker's metrics endpoint address; `None` = off.
    pub metrics_addr: Option<String>,
}

/// Outcome of one check.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine for ringmq.
    Pass,
    /// ringmq runs, but slower or with a risk the message explains.
    Warn,
    /// ringmq will not start or will not run safely.
    Fail,
}

/// One check's finding.
#[derive(Serialize, Debug, Clone)]
pub struct CheckResult {
    /// Short stable identifier (`swappiness`, `disk_scheduler`, …).
    pub name: &'static str,
    pub status: Status,
    /// What was found, and why it matters when it is not a Pass.
    pub observed: String,
    /// The exact command(s) that fix it; `None` on a Pass.
    pub fix: Option<String>,
    /// True when `--apply` changed the setting during this run.
    pub applied: bool,
}

impl CheckResult {
    pub(crate) fn pass(name: &'static str, observed: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, observed: observed.into(), fix: None, applied: false }
    }

    pub(crate) fn warn(name: &'static str, observed: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::with_fix(name, Status::Warn, observed.into(), fix.into())
    }

    pub(crate) fn fail(name: &'static str, observed: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::with_fix(name, Status::Fail, observed.into(), fix.into())
    }

    fn with_fix(name: &'static str, status: Status, observed: String, fix: String) -> Self {
        Self { name, status, observed, fix: Some(fix), applied: false }
    }
}

/// Everything a check may look at: the options and the process-level facts behind [`Host`].
pub(crate) struct Ctx<'a> {
    pub opts: &'a TuneOptions,
    pub host: &'a dyn Host,
}

impl Ctx<'_> {
    /// `rel` (no leading slash, e.g. `proc/sys/vm/swappiness`) under the configured root.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.opts.root.join(rel)
    }

    /// Online CPUs from `sys/devices/system/cpu/online`, else what the host reports; at least 1.
    pub(crate) fn cpus_online(&self) -> usize {
        sysfs::read_knob(&self.path("sys/devices/system/cpu/online"))
            .ok()
            .and_then(|text| sysfs::parse_cpu_list(&text))
            .map_or_else(|| self.host.cpus_online(), |cpus| cpus.len())
            .max(1)
    }
}

/// Runs every check against the real host (reads under `opts.root`), applying safe fixes when
/// `opts.apply` is set.
pub fn run_checks(opts: &TuneOptions) -> Vec<CheckResult> {
    run_checks_with(&Ctx { opts, host: &SystemHost })
}

pub(crate) fn run_checks_with(ctx: &Ctx<'_>) -> Vec<CheckResult> {
    checks::ALL.iter().map(|check| checks::execute(check, ctx)).collect()
}

/// Prints a table (or JSON with `opts.json`) and returns the process exit code: 0 if no Fail, 1
/// otherwise.
pub fn run(opts: &TuneOptions) -> i32 {
    let euid = SystemHost.euid();
    if opts.apply && euid != 0 {
        eprintln!(
            "ringmq tune: --apply needs root to write kernel settings (euid {euid}); \
             only this process's open-files soft limit can be raised"
        );
    }
    let results = run_checks(opts);
    let mut out = io::stdout().lock();
    if let Err(e) = render(opts, &results, &mut out) {
        eprintln!("ringmq tune: could not write the report: {e}");
    }
    exit_code(&results)
}

pub(crate) fn exit_code(results: &[CheckResult]) -> i32 {
    i32::from(results.iter().any(|r| r.status == Status::Fail))
}

pub(crate) fn render(opts: &TuneOptions, results: &[CheckResult], out: &mut dyn Write) -> io::Result<()> {
    if opts.json { render_json(results, out) } else { render_table(opts, results, out) }
}

#[derive(Serialize)]
struct Report<'a> {
    checks: &'a [CheckResult],
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    pass: usize,
    warn: usize,
    fail: usize,
}

fn summarize(results: &[CheckResult]) -> Summary {
    let count = |status| results.iter().filter(|r| r.status == status).count();
    Summary { pass: count(Status::Pass), warn: count(Status::Warn), fail: count(Status::Fail) }
}

/// `{"checks": [CheckResult…], "summary": {"pass": n, "warn": n, "fail": n}}`.
fn render_json(results: &[CheckResult], out: &mut dyn Write) -> io::Result<()> {
    let report = Report { checks: results, summary: summarize(results) };
    serde_json::to_writer_pretty(&mut *out, &report)?;
    writeln!(out)
}

fn render_table(opts: &TuneOptions, results: &[CheckResult], out: &mut dyn Write) -> io::Result<()> {
    let mode = if opts.apply { "applying safe fixes" } else { "read-only; --apply as root writes safe fixes" };
    writeln!(out, "ringmq tune: data_dir {} ({mode})", opts.data_dir.display())?;
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in results {
        let label = match r.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let applied = if r.applied { " [applied]" } else { "" };
        writeln!(out, "{label}  {:<width$}  {}{applied}", r.name, r.observed)?;
        if let Some(fix) = &r.fix {
            writeln!(out, "      {:<width$}  fix: {fix}", "")?;
        }
    }
    let s = summarize(results);
    writeln!(out, "{} pass, {} warn, {} fail", s.pass, s.warn, s.fail)
}

/// Formats a byte count in the largest binary unit that keeps one decimal.
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if value.fract() == 0.0 { format!("{value:.0} {name}") } else { format!("{value:.1} {name}") }
}

pub(crate) fn fmt_limit(value: Option<u64>, bytes: bool) -> String {
    match value {
        None => "unlimited".to_string(),
        Some(v) if bytes => fmt_bytes(v),
        Some(v) => v.to_string(),
    }
}
