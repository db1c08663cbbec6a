//! Start-up checks that turn environment problems into clear errors before any shard starts: the data
//! directory (writable, not used by another process), io_uring availability, and the memlock limit
//! glommio needs.

// libc calls (each with its SAFETY comment): the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

/// Exit code for a configuration or environment problem (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code after a panic on any thread (EX_SOFTWARE): the whole process stops, so no shard keeps
/// serving — and staying registered — beside a dead one.
pub const EXIT_PANIC: i32 = 70;

/// Makes a panic anywhere stop the process with [`EXIT_PANIC`] after the usual report.
pub fn fail_stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(thread, "panic: {info}; stopping the process (exit {EXIT_PANIC})");
        std::process::exit(EXIT_PANIC);
    }));
}

/// Memory each executor registers with io_uring (glommio's `io_memory`); glommio pins 3× this per
/// executor. 8 MiB holds several in-flight group-commit writes; larger writes fall back to the heap.
pub const IO_MEMORY_BYTES: usize = 8 << 20;

/// Holds the exclusive lock on `<data>/LOCK` for the life of the process.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory, checks it is writable, and locks it against a second process.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| format!("data directory {} is not writable: {e}", dir.display()))?;
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(format!(
            "data directory {} is in use by another ringmq process (lock file {} is held); stop it or use another --data-dir",
            dir.display(),
            path.display()
        ));
    }
    let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
    Ok(DataDirLock { _file: file })
}

/// Fails when io_uring is disabled by the kernel setting.
pub fn check_io_uring() -> Result<(), String> {
    check_io_uring_at(Path::new("/proc/sys/kernel/io_uring_disabled"))
}

/// `check_io_uring` reading the setting from `path`.
pub fn check_io_uring_at(path: &Path) -> Result<(), String> {
    match std::fs::read_to_string(path).map(|s| s.trim().to_string()) {
        Ok(v) if v == "2" => Err("io_uring is disabled on this host (kernel.io_uring_disabled = 2); ringmq needs it. \
             Fix: sysctl -w kernel.io_uring_disabled=0 (see `ringmq tune`)"
            .into()),
        _ => Ok(()),
    }
}

fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Explains what to do when the memlock limit is too low for `executors` glommio executors.
pub fn memlock_advice(executors: usize) -> String {
    let need = 3 * IO_MEMORY_BYTES * executors;
    format!(
        "glommio pins 3 × {} KiB of io_uring memory per executor ({} executors need {} KiB) but RLIMIT_MEMLOCK is {} KiB. \
         Fix: run as root, or raise the limit: `ulimit -l unlimited` in this shell, `LimitMEMLOCK=infinity` in the systemd unit \
         (tuning/ringmq.service), or `* - memlock unlimited` in /etc/security/limits.d (tuning/limits.d/60-ringmq.conf)",
        IO_MEMORY_BYTES >> 10,
        executors,
        need >> 10,
        memlock_limit()
            .map(|l| if l == libc::RLIM_INFINITY { "unlimited".to_string() } else { (l >> 10).to_string() })
            .unwrap_or_else(|| "unknown".into())
    )
}

/// Fails early when the memlock limit cannot cover the executors (root is exempt).
pub fn check_memlock(executors: usize) -> Result<(), String> {
    if is_root() {
        return Ok(());
    }
    match memlock_limit() {
        Some(l) if l != libc::RLIM_INFINITY && (l as usize) < 3 * IO_MEMORY_BYTES * executors => {
            Err(memlock_advice(executors))
        }
        _ => Ok(()),
    }
}

/// Whether any socket listens on TCP `port` (from /proc/net/tcp and tcp6: state 0A is LISTEN).
pub fn port_listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let mut f = l.split_whitespace();
                let local = f.nth(1).unwrap_or("");
                let state = f.nth(1).unwrap_or("");
                local.ends_with(&want) && state == "0A"
            })
        })
    })
}

/// The address to advertise when none is configured: the host's outbound address, else loopback.
pub fn detect_ip() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect("192.0.2.1:9")?;
        s.local_addr()
    });
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).err().unwrap();
        assert!(err.contains("in use by another ringmq process"), "{err}");
    }

    #[test]
    fn listening_ports_are_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(port_listening(l.local_addr().unwrap().port()));
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!port_listening(port));
    }

    #[test]
    fn disabled_io_uring_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("io_uring_disabled");
        std::fs::write(&knob, "2\n").unwrap();
        let err = check_io_uring_at(&knob).unwrap_err();
        assert!(err.contains("kernel.io_uring_disabled=0"), "{err}");
        std::fs::write(&knob, "0\n").unwrap();
        assert!(check_io_uring_at(&knob).is_ok());
        assert!(check_io_uring_at(&dir.path().join("absent")).is_ok(), "kernels without the knob allow io_uring");
    }

    #[test]
    fn memlock_advice_says_how_to_fix() {
        let text = memlock_advice(3);
        assert!(text.contains("LimitMEMLOCK=infinity") && text.contains("ulimit -l"));
    }
}
