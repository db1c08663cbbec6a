//! Process-level facts the checks need that do not live under `/proc` or `/sys`: effective uid,
//! resource limits, the device and free space of a path, CPU count. Behind the [`Host`] trait so tests
//! can supply them; [`SystemHost`] asks the kernel through libc. This is the only `unsafe` in `tune`.

// libc calls (each with its SAFETY comment): the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Which resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    /// RLIMIT_MEMLOCK: bytes of memory the process may pin (io_uring registered buffers count).
    Memlock,
    /// RLIMIT_NOFILE: open file descriptors (sockets, segment files).
    Nofile,
}

/// A resource limit; `None` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rlimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Size and room of the filesystem holding a path, as an unprivileged user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    pub total_bytes: u64,
    pub avail_bytes: u64,
}

/// Facts about this process and its filesystems.
pub(crate) trait Host {
    fn euid(&self) -> u32;
    fn rlimit(&self, kind: LimitKind) -> io::Result<Rlimit>;
    /// Raises this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new limit.
    fn raise_nofile_soft_to_hard(&self) -> io::Result<Rlimit>;
    /// `(major, minor)` of the device holding `path` (its `st_dev`).
    fn device_of(&self, path: &Path) -> io::Result<(u32, u32)>;
    fn space_of(&self, path: &Path) -> io::Result<Space>;
    fn cpus_online(&self) -> usize;
    /// Addresses of the interfaces that are up (loopback included).
    fn interface_addrs(&self) -> io::Result<Vec<IpAddr>>;
}

/// The running kernel, through libc.
pub(crate) struct SystemHost;

fn finite(value: libc::rlim_t) -> Option<u64> {
    (value != libc::RLIM_INFINITY).then_some(value)
}

fn get_rlimit(kind: LimitKind) -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // The resource constant's type differs between libcs (u32 on glibc, c_int on musl), so each call
    // names its constant directly.
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    let rc = match kind {
        LimitKind::Memlock => unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) },
        LimitKind::Nofile => unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) },
    };
    if rc == 0 { Ok(lim) } else { Err(io::Error::last_os_error()) }
}

impl Host for SystemHost {
    fn euid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    fn rlimit(&self, kind: LimitKind) -> io::Result<Rlimit> {
        let lim = get_rlimit(kind)?;
        Ok(Rlimit { soft: finite(lim.rlim_cur), hard: finite(lim.rlim_max) })
    }

    fn raise_nofile_soft_to_hard(&self) -> io::Result<Rlimit> {
        let mut lim = get_rlimit(LimitKind::Nofile)?;
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.rlimit(LimitKind::Nofile)
    }

    fn device_of(&self, path: &Path) -> io::Result<(u32, u32)> {
        let dev = std::fs::metadata(path)?.dev();
        Ok((libc::major(dev), libc::minor(dev)))
    }

    // statvfs field widths follow c_ulong, which is u64 here but u32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    fn space_of(&self, path: &Path) -> io::Result<Space> {
        let c_path =
            CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: all-zero is a valid statvfs value (plain integers).
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is NUL-terminated and `st` is writable for the call.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let frsize = u64::from(st.f_frsize);
        Ok(Space {
            total_bytes: u64::from(st.f_blocks).saturating_mul(frsize),
            avail_bytes: u64::from(st.f_bavail).saturating_mul(frsize),
        })
    }

    fn cpus_online(&self) -> usize {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(n).unwrap_or(1).max(1)
    }

    fn interface_addrs(&self) -> io::Result<Vec<IpAddr>> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: `head` is a valid out-pointer; on success the list is freed below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
            let ifa = unsafe { &*cur };
            cur = ifa.ifa_next;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            if !up || ifa.ifa_addr.is_null() {
                continue;
            }
            // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            } else if family == libc::AF_INET6 {
                // SAFETY: AF_INET6 means the sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        // SAFETY: `head` came from a successful getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(head) };
        Ok(out)
    }
}
