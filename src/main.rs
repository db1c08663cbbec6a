//! The `ringmq` command line: parses arguments and calls into the library.

use clap::{Parser, Subcommand};
use ringmq::config::{Config, Role, split_addrs};
use ringmq::store::FlushMode;
use ringmq::store::io::LogSync;
use std::path::PathBuf;

/// mimalloc: glibc malloc's consolidation showed up at ~35% of broker CPU for unbatched sends.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringmq",
    version,
    about = "A RocketMQ-compatible message broker, one pinned io_uring executor per core"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TOML config file, or a RocketMQ broker.conf (Java properties)
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shard 0's port; shard i listens on this + 4·i (and that − 2)
    #[arg(long)]
    listen_port: Option<u16>,
    #[arg(long)]
    namesrv_port: Option<u16>,
    /// Number of shards (default: one per online core)
    #[arg(long)]
    shards: Option<usize>,
    #[arg(long, value_parser = ["sync", "async"])]
    flush: Option<String>,
    /// How group commits reach the disk: dsync (O_DSYNC writes) or fdatasync (write, then fdatasync)
    #[arg(long, value_parser = ["dsync", "fdatasync"])]
    log_sync: Option<String>,
    /// Shards poll instead of sleeping when idle (for cores given to ringmq alone): lower latency,
    /// a full core per shard even when idle
    #[arg(long)]
    busy_poll: bool,
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// Name servers to register with, `host:port;host:port`
    #[arg(long)]
    namesrv: Option<String>,
    /// Address advertised to clients (default: this host's outbound address)
    #[arg(long)]
    broker_ip: Option<std::net::IpAddr>,
    #[arg(long)]
    broker_name: Option<String>,
    #[arg(long)]
    cluster_name: Option<String>,
    /// Segment size in bytes (default 1 GiB)
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Start on a log corrupt before its tail by truncating there (drops data after it)
    #[arg(long)]
    truncate_corrupt_log: bool,
    /// Start even if a config file and its previous version are both damaged (sets them aside)
    #[arg(long)]
    start_with_damaged_config: bool,
    #[arg(long)]
    metrics_addr: Option<String>,
    /// RocketMQ ACL 1.0 file (plain_acl.yml): requests must be signed by its accounts
    #[arg(long)]
    acl_file: Option<PathBuf>,
    /// Admin account (access key) the shards sign their registrations with
    #[arg(long)]
    acl_broker_account: Option<String>,
    /// TLS on every listener: disabled, permissive (TLS and plaintext) or enforcing (TLS only)
    #[arg(long, value_enum)]
    tls_mode: Option<ringmq::security::tls::TlsMode>,
    /// Server certificate chain (PEM)
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM)
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM)
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// This node's id in --cluster
    #[arg(long)]
    node_id: Option<u32>,
    /// Every node of a replicated cluster: `1=host:port,2=host:port,...`, each node's name server
    #[arg(long)]
    cluster: Option<String>,
    /// Acknowledge sends once --in-sync-replicas replicas hold them (sync) or on the master (async)
    #[arg(long, value_enum)]
    replication: Option<ringmq::config::ReplicationMode>,
    /// Replicas (master included) that must hold a send with --replication sync (default: a majority)
    #[arg(long)]
    in_sync_replicas: Option<usize>,
    /// The controller's port (default: the name server's port + 2)
    #[arg(long)]
    controller_port: Option<u16>,
    /// Follow as an async learner: never in the in-sync set, never elected
    #[arg(long)]
    learner: bool,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    workload: ringmq::bench::load::Workload,
    /// A workload file (TOML with the same field names) instead of the flags
    #[arg(long)]
    workload_file: Option<PathBuf>,
    /// Write the results as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and latency per period as SVG
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The broker's process id, for its CPU time
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Also run the raw-limit probe (loopback socket into an O_DIRECT file) in this directory
    #[arg(long)]
    probe_dir: Option<PathBuf>,
    /// With --backlog: also read the files of this directory (the broker's commit log,
    /// <data-dir>/0/commitlog) sequentially with O_DIRECT after the run, the rate the drain
    /// is reported against
    #[arg(long)]
    raw_read_dir: Option<PathBuf>,
    /// With --raw-read-dir: also measure the drain's serve floor, the same files read with O_DIRECT
    /// and sent over one loopback connection by a sender pinned to CPU N (the broker's), with no
    /// per-record work
    #[arg(long, value_name = "N")]
    serve_floor_cpu: Option<usize>,
    /// fdatasync every probe write (compare with flush = sync)
    #[arg(long)]
    probe_sync: bool,
    /// Also measure the request/response floor: echo servers (glommio, and plain threads) pinned to
    /// CPU N, answering the same request sizes and windows from a client on the next CPU; with
    /// --probe-dir also the durable floor (the glommio echo writes each read batch with O_DSYNC
    /// into that directory before answering it)
    #[arg(long, value_name = "N")]
    echo_floor_cpu: Option<usize>,
    /// Run the workload once per fixed rate (msgs/s, comma-separated) and report latency against
    /// rate: --json gets every point, --plot draws p50/p99/p99.9 and broker CPU per message
    #[arg(long, value_delimiter = ',', value_name = "RATES")]
    rate_sweep: Vec<u64>,
}

fn run_bench(a: BenchArgs) -> Result<(), String> {
    let w = match &a.workload_file {
        Some(p) => toml::from_str(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => a.workload.clone(),
    };
    if !a.rate_sweep.is_empty() {
        return run_sweep(&a, &w);
    }
    let mut report = ringmq::bench::load::run(&w, a.broker_pid)?;
    println!("total: {}", ringmq::bench::load::describe(&report.total));
    if let (Some(cpu), Some(per)) = (report.broker_cpu_seconds, report.broker_cpu_us_per_message) {
        println!("broker cpu {cpu:.2} s = {per:.2} us/msg; bench cpu {:.2} s", report.bench_cpu_seconds);
    }
    if let Some(d) = report.drain.as_mut() {
        if let Some(dir) = &a.raw_read_dir {
            let raw = ringmq::bench::drain::raw_read_rate(dir, d.drained_log_bytes)?;
            d.raw_read_mib_per_sec = Some(raw);
            d.ratio_to_raw_read = Some(d.log_mib_per_sec / raw.max(1e-9));
            if let Some(cpu) = a.serve_floor_cpu {
                let floor = ringmq::bench::drain::raw_serve_rate(dir, d.drained_log_bytes, cpu)?;
                d.raw_serve_mib_per_sec = Some(floor);
                d.ratio_to_raw_serve = Some(d.log_mib_per_sec / floor.max(1e-9));
            }
        }
        println!("{}", ringmq::bench::drain::describe(d));
    }
    let mut json = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    if let Some(dir) = &a.probe_dir {
        let bytes = ((report.total.publish_rate * w.message_size as f64) as u64 * 5).clamp(64 << 20, 4 << 30);
        let probe = ringmq::bench::probe::run(dir, bytes, w.message_size, a.probe_sync)?;
        println!(
            "raw-limit probe: {:.0} MB/s = {:.0} msgs/s of {} B; broker publish rate = {:.2} x probe",
            probe.mb_per_sec,
            probe.msgs_per_sec,
            w.message_size,
            report.total.publish_rate / probe.msgs_per_sec
        );
        json["probe"] = serde_json::to_value(&probe).map_err(|e| e.to_string())?;
    }
    if let Some(cpu) = a.echo_floor_cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let o = ringmq::bench::echo::EchoOptions {
            message_size: w.message_size,
            window: w.window,
            seconds: (w.duration as f64).min(5.0),
            server_cpu: cpu % cores,
            client_cpu: (cpu + 1) % cores,
            paced_rate: (w.rate > 0).then_some(w.rate),
            durable_dir: a.probe_dir.clone(),
        };
        let runs = ringmq::bench::echo::run(&o)?;
        for r in &runs {
            println!(
                "echo floor ({}, {}): {:.0} req/s, {:.2} us server CPU/req; ringmq publish = {:.2} x, broker CPU/msg = {}",
                r.server,
                r.pattern,
                r.requests_per_sec,
                r.server_cpu_us_per_request,
                report.total.publish_rate / r.requests_per_sec,
                report
                    .broker_cpu_us_per_message
                    .map_or("n/a".to_string(), |c| format!("{:.2} x", c / r.server_cpu_us_per_request.max(1e-9)))
            );
            if let Some(l) = &r.latency_us {
                println!(
                    "  round trip p50 {} p99 {} p99.9 {} max {} us (ringmq publish p50 {} p99 {} p99.9 {} max {} us)",
                    l.p50_us,
                    l.p99_us,
                    l.p999_us,
                    l.max_us,
                    report.total.publish_latency.p50_us,
                    report.total.publish_latency.p99_us,
                    report.total.publish_latency.p999_us,
                    report.total.publish_latency.max_us
                );
            }
        }
        json["echo_floor"] = serde_json::to_value(&runs).map_err(|e| e.to_string())?;
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, ringmq::bench::plot::svg(&report)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run_sweep(a: &BenchArgs, w: &ringmq::bench::load::Workload) -> Result<(), String> {
    use ringmq::bench::sweep;
    if a.probe_dir.is_some() || a.echo_floor_cpu.is_some() {
        return Err("--rate-sweep runs alone: measure --probe-dir / --echo-floor-cpu in a run of their own".into());
    }
    let s = sweep::run(w, &a.rate_sweep, a.broker_pid)?;
    println!("sweep:");
    for p in &s.points {
        println!("  {}", sweep::describe(p));
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, sweep::svg(&s)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker (and the embedded name server)
    Serve(Box<ServeArgs>),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Inspect and change a cluster through its name server (topics, groups, messages, brokers)
    Admin(Box<ringmq::admin::AdminArgs>),
    /// Generate OpenMessaging-style load against a RocketMQ-protocol broker and report latencies
    Bench(Box<BenchArgs>),
    /// Check (and with --apply, fix) host settings that matter for ringmq
    Tune {
        /// The broker's data directory (default: the config's, else ./data)
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The broker's config file (TOML or broker.conf), for the data directory, ACL and metrics checks
        #[arg(long)]
        config: Option<PathBuf>,
        /// The broker's ACL file, as given to `serve --acl-file`
        #[arg(long)]
        acl_file: Option<PathBuf>,
        #[arg(long)]
        apply: bool,
        #[arg(long)]
        json: bool,
    },
}

fn build_config(a: ServeArgs) -> Result<Config, String> {
    let mut c = match &a.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(v) = a.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = a.listen_port {
        c.listen_port = v;
    }
    if let Some(v) = a.namesrv_port {
        c.namesrv_port = v;
    }
    if let Some(v) = a.shards {
        c.shards = v;
    }
    if let Some(v) = a.flush {
        c.flush = if v == "async" { FlushMode::Async } else { FlushMode::Sync };
    }
    if let Some(v) = a.log_sync {
        c.log_sync = if v == "fdatasync" { LogSync::Fdatasync } else { LogSync::Dsync };
    }
    c.busy_poll |= a.busy_poll;
    if let Some(v) = a.role {
        c.role = v;
    }
    if let Some(v) = a.namesrv {
        c.namesrv_addrs = split_addrs(&v);
    }
    if let Some(v) = a.broker_ip {
        c.broker_ip = Some(v);
    }
    if let Some(v) = a.broker_name {
        c.broker_name = v;
    }
    if let Some(v) = a.cluster_name {
        c.cluster_name = v;
    }
    if let Some(v) = a.segment_bytes {
        c.segment_bytes = v;
    }
    if let Some(v) = a.metrics_addr {
        c.metrics_addr = Some(v);
    }
    if a.acl_file.is_some() {
        c.acl_file = a.acl_file;
    }
    if a.acl_broker_account.is_some() {
        c.acl_broker_account = a.acl_broker_account;
    }
    if let Some(v) = a.tls_mode {
        c.tls_mode = v;
    }
    for (flag, to) in
        [(a.tls_cert, &mut c.tls_cert), (a.tls_key, &mut c.tls_key), (a.tls_client_ca, &mut c.tls_client_ca)]
    {
        if flag.is_some() {
            *to = flag;
        }
    }
    c.truncate_corrupt_log |= a.truncate_corrupt_log;
    c.start_with_damaged_config |= a.start_with_damaged_config;
    if let Some(v) = a.node_id {
        c.node_id = v;
    }
    if let Some(v) = a.cluster {
        c.cluster = v.split([',', ';']).map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
    }
    if let Some(v) = a.replication {
        c.replication = v;
    }
    if let Some(v) = a.in_sync_replicas {
        c.in_sync_replicas = v;
    }
    if a.controller_port.is_some() {
        c.controller_port = a.controller_port;
    }
    c.learner |= a.learner;
    if let Some(t) = ringmq::replication::Topology::of(&c)? {
        // The embedded name server listens where the cluster list says this node's is.
        if a.namesrv_port.is_none() {
            c.namesrv_port = t.own_namesrv_port();
        }
    }
    ringmq::parse_delay_levels(&c.message_delay_level).map_err(|e| format!("message_delay_level: {e}"))?;
    if c.segment_bytes % 4096 != 0 || c.segment_bytes < (64 << 10) {
        return Err(format!("segment size {} must be a multiple of 4096 and at least 64 KiB", c.segment_bytes));
    }
    if c.max_message_bytes as u64 + (8 << 10) > c.segment_bytes {
        c.max_message_bytes = (c.segment_bytes - (8 << 10)) as usize;
    }
    Ok(c)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RINGMQ_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Serve(a) => match build_config(*a) {
            Ok(c) => ringmq::serve(c),
            Err(e) => {
                eprintln!("ringmq: {e}");
                ringmq::EXIT_CONFIG
            }
        },
        Cmd::Admin(a) => ringmq::admin::run(&a),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "ringmq", &mut std::io::stdout());
            0
        }
        Cmd::Bench(a) => match run_bench(*a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ringmq bench: {e}");
                1
            }
        },
        Cmd::Tune { data_dir, config, acl_file, apply, json } => {
            match config.map(|p| Config::from_file(&p)).transpose() {
                Ok(c) => {
                    let c = c.unwrap_or_default();
                    ringmq::tune::run(&ringmq::tune::TuneOptions {
                        apply,
                        data_dir: data_dir.unwrap_or(c.data_dir),
                        json,
                        root: PathBuf::from("/"),
                        acl_file: acl_file.or(c.acl_file),
                        metrics_addr: c.metrics_addr,
                    })
                }
                Err(e) => {
                    eprintln!("ringmq tune: {e}");
                    ringmq::EXIT_CONFIG
                }
            }
        }
    };
    std::process::exit(code);
}
