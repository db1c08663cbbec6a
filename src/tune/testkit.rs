//! Test fixtures for `tune`: a fake [`Host`] and a fake `/proc` + `/sys` tree in a temporary
//! directory, and helpers that run one check against them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::io;
use std::path::Path;

pub(crate) use super::host::{Rlimit, Space};
use super::*;

pub(crate) const UNLIMITED: Rlimit = Rlimit { soft: None, hard: None };

pub(crate) struct FakeHost {
    pub(crate) euid: u32,
    pub(crate) memlock: Option<Rlimit>,
    pub(crate) nofile: Cell<Rlimit>,
    pub(crate) dev: (u32, u32),
    pub(crate) space: Option<Space>,
    pub(crate) cpus: usize,
    pub(crate) addrs: Vec<std::net::IpAddr>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            euid: 1000,
            memlock: Some(UNLIMITED),
            nofile: Cell::new(Rlimit { soft: Some(1 << 20), hard: Some(1 << 20) }),
            dev: (8, 1),
            space: Some(Space { total_bytes: 100 << 30, avail_bytes: 50 << 30 }),
            cpus: 4,
            addrs: vec![[127, 0, 0, 1].into()],
        }
    }
}

fn unavailable() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "fake: unavailable")
}

impl Host for FakeHost {
    fn euid(&self) -> u32 {
        self.euid
    }
    fn rlimit(&self, kind: LimitKind) -> io::Result<Rlimit> {
        match kind {
            LimitKind::Memlock => self.memlock.ok_or_else(unavailable),
            LimitKind::Nofile => Ok(self.nofile.get()),
        }
    }
    fn raise_nofile_soft_to_hard(&self) -> io::Result<Rlimit> {
        let lim = self.nofile.get();
        self.nofile.set(Rlimit { soft: lim.hard, hard: lim.hard });
        Ok(self.nofile.get())
    }
    fn device_of(&self, _path: &Path) -> io::Result<(u32, u32)> {
        Ok(self.dev)
    }
    fn space_of(&self, _path: &Path) -> io::Result<Space> {
        self.space.ok_or_else(unavailable)
    }
    fn cpus_online(&self) -> usize {
        self.cpus
    }
    fn interface_addrs(&self) -> io::Result<Vec<std::net::IpAddr>> {
        Ok(self.addrs.clone())
    }
}

pub(crate) struct Tree(tempfile::TempDir);

impl Tree {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    pub(crate) fn root(&self) -> &Path {
        self.0.path()
    }
    pub(crate) fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }
    pub(crate) fn mkdir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.root().join(rel)).unwrap();
        self
    }
    pub(crate) fn link(&self, rel: &str, target: &str) -> &Self {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }
    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap().trim().to_string()
    }
}

pub(crate) fn options(tree: &Tree, apply: bool) -> TuneOptions {
    TuneOptions {
        apply,
        data_dir: tree.root().join("data"),
        json: false,
        root: tree.root().to_path_buf(),
        acl_file: None,
        metrics_addr: None,
    }
}

pub(crate) fn check_with(tree: &Tree, host: &FakeHost, apply: bool, name: &str) -> CheckResult {
    check_opts(&options(tree, apply), host, name)
}

/// Runs check `name` with these options against `host`.
pub(crate) fn check_opts(opts: &TuneOptions, host: &FakeHost, name: &str) -> CheckResult {
    let ctx = Ctx { opts, host };
    let check = checks::ALL.iter().find(|c| c.name == name).unwrap();
    let result = checks::execute(check, &ctx);
    assert_eq!(result.name, name);
    assert_eq!(result.fix.is_some(), result.status != Status::Pass, "{result:?}");
    result
}

pub(crate) fn check(tree: &Tree, name: &str) -> CheckResult {
    check_with(tree, &FakeHost::default(), false, name)
}

pub(crate) fn root_host() -> FakeHost {
    FakeHost { euid: 0, ..FakeHost::default() }
}

pub(crate) fn limited(soft: u64, hard: u64) -> Rlimit {
    Rlimit { soft: Some(soft), hard: Some(hard) }
}
