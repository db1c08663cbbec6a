//! Test harness: starts a real `ringmq serve` process with its own data directory on ports the kernel
//! chooses (`--listen-port 0`: the server keeps its choice in `listening.json`, so a restart binds the
//! same addresses), and stops it (SIGTERM, or SIGKILL for crash tests). Nothing probes for free ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Option<Child>,
    pub dir: PathBuf,
    /// Explicit ports (`Server::with_ports`), or 0: chosen by the server, read back after start.
    pub base_port: u16,
    pub ns_port: u16,
    pub shards: usize,
    pub extra: Vec<String>,
    pub _tmp: Option<tempfile::TempDir>,
}

/// The ports a started server reports in `<data_dir>/listening.json`.
#[derive(Default)]
struct Bound {
    namesrv: u16,
    metrics: u16,
    shards: Vec<u16>,
}

fn bound(dir: &Path) -> Bound {
    let text = std::fs::read_to_string(dir.join("listening.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let port = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as u16;
    Bound {
        namesrv: port(&v["namesrv"]),
        metrics: port(&v["metrics"]),
        shards: v["shards"].as_array().into_iter().flatten().map(|p| port(&p[0])).collect(),
    }
}

impl Server {
    pub fn start(shards: usize, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            child: None,
            dir,
            base_port: 0,
            ns_port: 0,
            shards,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        s.spawn().expect("ringmq did not start");
        s
    }

    /// A server on explicit ports (tests of start-up errors about ports and locks).
    pub fn with_ports(dir: PathBuf, base_port: u16, ns_port: u16, shards: usize) -> Server {
        Server { child: None, dir, base_port, ns_port, shards, extra: vec![], _tmp: None }
    }

    fn ephemeral(&self) -> bool {
        self.base_port == 0 && self.ns_port == 0
    }

    fn bound(&self) -> Bound {
        if self.ephemeral() {
            return bound(&self.dir);
        }
        let shards = (0..self.shards as u16).map(|i| self.base_port + 4 * i).collect();
        Bound { namesrv: self.ns_port, metrics: self.ns_port + 1, shards }
    }

    /// Process id of the running broker (for `ringmq bench --broker-pid`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Resident memory of the running broker, in KiB (0 when it is not running).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.bound().namesrv)
    }

    pub fn metrics_url_addr(&self) -> String {
        format!("127.0.0.1:{}", self.bound().metrics)
    }

    /// One scrape of the metrics endpoint: the HTTP response, headers included.
    pub fn scrape_metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(self.metrics_url_addr()).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = conn.read_to_string(&mut text);
        text
    }

    /// The sum over all label sets of the metric `name` (e.g. `ringmq_acl_denied_total`) in one scrape.
    /// Shards publish their counters once a second, so a test waits on this, never reads it once.
    pub fn metric_sum(&self, name: &str) -> u64 {
        self.metric_published(name).unwrap_or(0)
    }

    /// The sum of the metric `name` over its label sets, or `None` while no shard has published it
    /// (a gauge read before the first publication must not pass for zero).
    pub fn metric_published(&self, name: &str) -> Option<u64> {
        let text = self.scrape_metrics();
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Waits until the broker's transaction checker has completed `rounds` more check-back rounds
    /// than when called: what a test needs before asserting that nothing was checked back. The
    /// published counter may be up to one publication (1 s) old when first read, so the rounds the
    /// caller needs are counted on top of the rounds one second can hold at the fastest interval
    /// (`start_fast`: one every 200 ms).
    pub fn wait_check_rounds(&self, rounds: u64) {
        let stale_allowance = 5;
        let from = self.metric_sum("ringmq_transaction_check_rounds_total");
        assert!(
            wait_until(Duration::from_secs(30), || {
                self.metric_sum("ringmq_transaction_check_rounds_total") >= from + stale_allowance + rounds
            }),
            "the transaction checker did not run {rounds} rounds"
        );
    }

    pub fn shard_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.bound().shards.get(i).copied().unwrap_or(0))
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(binary());
        c.args(["serve", "--data-dir"]).arg(&self.dir);
        c.args(["--listen-port", &self.base_port.to_string(), "--namesrv-port", &self.ns_port.to_string()]);
        let metrics = if self.ephemeral() { 0 } else { self.ns_port + 1 };
        c.args([
            "--shards",
            &self.shards.to_string(),
            "--broker-ip",
            "127.0.0.1",
            "--segment-bytes",
            &(4u64 << 20).to_string(),
        ]);
        c.args(["--metrics-addr", &format!("127.0.0.1:{metrics}")]);
        c.args(&self.extra);
        c.env("RINGMQ_LOG", std::env::var("RINGMQ_TEST_LOG").unwrap_or_else(|_| "warn".into()));
        c
    }

    /// Starts the process and waits for its ready banner; Err(stderr) if it exits first. A start
    /// that hangs (seen about once in 40 starts on the 2-core VM: a shard waiting in io_uring for a
    /// completion during start-up, under investigation) is reported with its threads' wait
    /// channels on stderr, killed, and tried once more.
    pub fn spawn(&mut self) -> Result<(), String> {
        match self.spawn_once(Duration::from_secs(30)) {
            Err(e) if e.starts_with("timed out") => {
                eprintln!("ringmq start hung ({e}); starting it again");
                self.spawn_once(Duration::from_secs(60))
            }
            r => r,
        }
    }

    fn spawn_once(&mut self, within: Duration) -> Result<(), String> {
        // stderr goes to a file: an undrained pipe would block the server once it fills.
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let mut child = self.command().stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" ready:") {
                    let _ = tx.send(());
                }
            }
        });
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                // "ready" is printed once the shards are registered with the name server.
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}: {err}"));
            }
        }
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
            .into_iter()
            .flatten()
            .flatten()
            .map(|t| {
                let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default().trim().to_string();
                format!("{} waits in {}", read("comm"), read("wchan"))
            })
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("timed out waiting for the ready banner; threads: {}", threads.join(", ")))
    }

    /// Graceful stop (SIGTERM) and wait.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Crash (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("restart failed");
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn log_path(&self) -> PathBuf {
        // Named after the data directory, which is unique to this server and kept across restarts.
        let tag = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::env::temp_dir().join(format!("ringmq-test-{}-{tag}.log", std::process::id()))
    }

    /// Starts a server with `config` written to a config file (`.toml`, or a RocketMQ `broker.conf`
    /// when `suffix` is `.conf`).
    pub fn start_with_config(shards: usize, suffix: &str, config: &str) -> Server {
        let cfg = tempfile::NamedTempFile::with_suffix(suffix).unwrap();
        std::fs::write(cfg.path(), config).unwrap();
        let (_f, path) = cfg.keep().unwrap();
        Server::start(shards, &["--config", path.to_str().unwrap()])
    }

    /// Starts a server whose retry back-offs are 1 s and whose transaction check-back starts after
    /// 300 ms, so tests of those features finish in seconds.
    pub fn start_fast(shards: usize) -> Server {
        Server::start_with_config(
            shards,
            ".toml",
            "message_delay_level = \"1s 1s 1s 1s 1s 1s\"\ntransaction_timeout_ms = 300\ntransaction_check_interval_ms = 200\n",
        )
    }

    /// Runs `ringmq admin --json <args>` against this server and parses its output.
    pub fn admin(&self, args: &[&str]) -> serde_json::Value {
        let out = std::process::Command::new(binary())
            .args(["admin", "--namesrv", &self.namesrv(), "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// The `ringmq` binary: Cargo's when built with the main crate, else `RINGMQ_BIN` or the release build
/// beside this checkout (the compat crate shares this harness).
pub fn binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_ringmq") {
        return p.into();
    }
    std::env::var_os("RINGMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/ringmq"))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `cond` holds, checking every 20 ms, for at most `within`; returns whether it held.
/// Tests wait on what they need (a route, a delivery, a closed socket), never a fixed time.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Milliseconds since the epoch (RocketMQ's timestamps).
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
