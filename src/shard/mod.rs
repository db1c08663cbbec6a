//! Shards and the process around them: one glommio executor per shard, pinned to a core, each owning
//! its store and broker and listening on its own ports; the name server on its own unpinned executor;
//! the registrar thread; signals and graceful shutdown.
//!
//! Lifecycle: start-up checks → name server → shards (recover, bind, register) → serve until SIGINT or
//! SIGTERM → stop accepting, answer parked pulls, flush, checkpoint, persist offsets, unregister.

pub mod ports;
mod registrar;
pub mod registry;
pub mod stalls;
pub mod startup;
mod tasks;

use crate::broker::Broker;
use crate::broker::control::ControlPlane;
use crate::config::{Config, Role};
use crate::nameserver::NameServer;
use crate::net::conn::accept_loop;
use crate::rt::executor::{LocalExecutorBuilder, Placement};
use crate::security::acl::AclGuard;
use crate::security::tls::ServerTls;
use crate::store::io::DmaDisk;
use crate::store::{EXIT_STORE_CORRUPT, Store, StoreError};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// An executor's start-up report: the ports it bound, or why it could not start.
/// Longest `serve` waits for the first registration round before announcing ready.
const REGISTER_WAIT: Duration = Duration::from_secs(5);
/// How often a shard's executor wakes while it starts. Seen on this kernel (6.18) with glommio 0.9: a
/// shard sleeping in `io_uring_enter` during store recovery, with no timer armed, missed the
/// completion of an operation the kernel had handed to an io-wq worker and slept until a signal (a
/// debugger attaching) woke it — once in 17 starts right after heavy runs; a plain loop of fresh
/// starts does not reproduce it (docs/BENCHMARKS.md). A mitigation: a timer makes every sleep bounded,
/// so such a completion is reaped at the next tick. Once serving, the shard's own periodic tasks
/// bound its sleeps the same way.
const STARTUP_TICK: Duration = Duration::from_millis(50);

/// Keeps a timer ticking on the current executor until dropped (see [`STARTUP_TICK`]).
struct StartupTick(Rc<Cell<bool>>);

impl StartupTick {
    fn start() -> StartupTick {
        let on = Rc::new(Cell::new(true));
        let ticking = on.clone();
        crate::rt::spawn(async move {
            while ticking.get() {
                crate::rt::sleep(STARTUP_TICK).await;
            }
        })
        .detach();
        StartupTick(on)
    }
}

impl Drop for StartupTick {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

type Ready = mpsc::Sender<Result<Vec<u16>, (i32, String)>>;

fn bind(port: u16) -> Result<crate::rt::TcpListener, String> {
    // glommio binds with SO_REUSEPORT, which would let a second process share the port silently:
    // refuse a port that something already listens on.
    // A process killed a moment ago may still hold its listener: io_uring releases the files of
    // in-flight requests asynchronously after exit. Give it a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while port != 0 && startup::port_listening(port) {
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "port {port} is already in use (another broker or ringmq?); choose another --listen-port"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::rt::TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        let text = e.to_string();
        if text.contains("in use") || text.contains("AddrInUse") {
            format!("port {port} is already in use (another broker or ringmq?); choose another --listen-port")
        } else {
            format!("cannot listen on port {port}: {text}")
        }
    })
}

/// Body of one shard's executor.
async fn shard_main(
    shard: usize,
    cfg: Config,
    ip: IpAddr,
    ports: (u16, u16),
    control: Arc<ControlPlane>,
    ready: Ready,
) {
    let starting = StartupTick::start();
    let store = match Store::open(DmaDisk { sync: cfg.log_sync }, crate::broker::store_config(&cfg, shard)).await {
        Ok(s) => s,
        Err(e) => {
            let code = if matches!(e, StoreError::Corrupt { .. }) { EXIT_STORE_CORRUPT } else { 1 };
            let hint = if code == EXIT_STORE_CORRUPT {
                " (start with --truncate-corrupt-log to drop everything from there on)"
            } else {
                ""
            };
            let _ = ready.send(Err((code, format!("shard {shard}: {e}{hint}"))));
            return;
        }
    };
    let listeners = match (bind(ports.0), bind(ports.1)) {
        (Ok(a), Ok(b)) => [a, b],
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("shard {shard}: {e}"))));
            return;
        }
    };
    let bound: Vec<u16> = listeners.iter().map(|l| l.local_addr().map_or(0, |a| a.port())).collect();
    let addr = SocketAddr::new(ip, bound.first().copied().unwrap_or(0));
    let allow_damaged = cfg.start_with_damaged_config;
    let security = match security_of(&cfg) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("shard {shard}: {e}"))));
            return;
        }
    };
    let replication = match replication_of(&cfg, addr.port(), &store) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("shard {shard}: {e}"))));
            return;
        }
    };
    let mut broker = Broker::new(shard, cfg, addr, store, control.clone());
    (broker.acl, broker.tls) = security;
    let broker = Rc::new(broker);
    let damaged = crate::broker::config_file::take_damaged();
    if !damaged.is_empty() {
        let names: Vec<String> = damaged.iter().map(|(p, why)| format!("{} ({why})", p.display())).collect();
        if !allow_damaged {
            let msg = format!(
                "shard {shard}: config file(s) damaged with no good previous version: {}. Restore them from a \
                 backup, or start with --start-with-damaged-config to set them aside and start with empty tables",
                names.join("; ")
            );
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, msg)));
            return;
        }
        tracing::warn!(shard, files = %names.join("; "), "starting with empty tables in place of damaged config files");
        for (p, _) in &damaged {
            crate::broker::config_file::set_aside(&**broker.store.files(), p);
        }
    }
    broker.publish_registration();
    let stop = Rc::new(Cell::new(false));
    let accepts: Vec<_> =
        listeners.into_iter().map(|l| crate::rt::spawn(accept_loop(broker.clone(), l, stop.clone()))).collect();
    let replicating = replication.map(|(t, listener)| start_replication(&broker, t, listener, &stop));
    let store_tasks = tasks::start_store(&broker);
    let background = tasks::spawn_all(&broker);
    let _ = ready.send(Ok(bound));
    drop(starting);
    tasks::control_loop(&broker).await;
    stop.set(true);
    drop(accepts);
    drop(replicating);
    tasks::shutdown(&broker, background, store_tasks).await;
}

/// In a cluster: binds the replication port (the shard's port + 1); the shard starts as a slave that
/// follows no one and takes its role from the controllers (`replication::agent`).
fn replication_of(
    cfg: &Config,
    port: u16,
    store: &Store<DmaDisk>,
) -> Result<Option<(crate::replication::Topology, crate::rt::TcpListener)>, String> {
    let Some(t) = crate::replication::Topology::of(cfg)? else { return Ok(None) };
    if port == 0 {
        return Err("a replicated node needs a fixed --listen-port (the replication port is the shard's + 1)".into());
    }
    store.replicas.set_role(crate::store::replicas::ReplicaRole::Slave, store.epochs().last().0, t.needed());
    let listener = bind(port + 1)?;
    Ok(Some((t, listener)))
}

/// Starts the replication listener and the shard's agent; dropping the tasks stops them.
fn start_replication(
    broker: &Rc<Broker>,
    t: crate::replication::Topology,
    listener: crate::rt::TcpListener,
    stop: &Rc<Cell<bool>>,
) -> Vec<crate::rt::Task<()>> {
    use crate::replication::{agent, master};
    let listen = master::listen(broker.store.clone(), broker.clone(), listener, t.catchup_limit, stop.clone());
    vec![crate::rt::spawn(listen), crate::rt::spawn(agent::run(broker.clone(), t, stop.clone()))]
}

/// The ACL guard and listener TLS of one executor, from the configuration (checked at start-up,
/// so an error here means a file changed in between).
fn security_of(cfg: &Config) -> Result<(Option<AclGuard>, Option<ServerTls>), String> {
    let acl = cfg.acl_file.as_deref().map(AclGuard::open).transpose()?;
    let tls = ServerTls::new(cfg.tls_mode, cfg.tls_files().as_ref())?;
    Ok((acl, tls))
}

/// Body of the name server's executor.
async fn namesrv_main(cfg: Config, port: u16, control: Arc<ControlPlane>, ready: Ready) {
    let listener = match bind(port) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("name server: {e}"))));
            return;
        }
    };
    let (acl, tls) = match security_of(&cfg) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("name server: {e}"))));
            return;
        }
    };
    let mut ns =
        NameServer::new(Duration::from_secs(cfg.broker_expiry_secs), crate::net::conn::ConnLimits::from_config(&cfg));
    (ns.acl, ns.tls) = (acl, tls);
    let ns = Rc::new(ns);
    let stop = Rc::new(Cell::new(false));
    let bound = listener.local_addr().map_or(0, |a| a.port());
    let accept = crate::rt::spawn(accept_loop(ns.clone(), listener, stop.clone()));
    let controller = match start_controller(&cfg, &stop) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err((crate::shard::startup::EXIT_CONFIG, format!("controller: {e}"))));
            return;
        }
    };
    let _ = ready.send(Ok(vec![bound]));
    while !control.is_shutdown() {
        crate::rt::sleep(Duration::from_millis(200)).await;
        ns.expire(std::time::Instant::now());
    }
    // Stay up briefly so the registrar can unregister the shards.
    crate::rt::sleep(Duration::from_millis(500)).await;
    stop.set(true);
    drop(accept);
    drop(controller);
}

/// In a cluster, this node's controller: its listener and its Raft ticker (dropping them stops it).
fn start_controller(cfg: &Config, stop: &Rc<Cell<bool>>) -> Result<Vec<crate::rt::Task<()>>, String> {
    let Some(t) = crate::replication::Topology::of(cfg)? else { return Ok(Vec::new()) };
    let listener = bind(t.own_controller_port())?;
    let controller = crate::controller::service::Controller::open(
        u64::from(t.node_id),
        t.controller_members(),
        cfg.data_dir.join("controller"),
        crate::store::files::OsFiles::shared(),
        crate::net::conn::ConnLimits::from_config(cfg),
        cfg.elect_unclean_master,
    )?;
    Ok(vec![
        crate::rt::spawn(accept_loop(controller.clone(), listener, stop.clone())),
        crate::rt::spawn(controller.run(stop.clone())),
    ])
}

fn executor(name: String, placement: Placement, cfg: &Config, control_cpus: Option<&[usize]>) -> LocalExecutorBuilder {
    // glommio pins an executor's blocking pool to the executor's own core by default, so the shard's
    // off-executor work (checkpoint files, large heartbeat parses) took the CPU from the very shard it
    // was moved off (measured: a 600 KB heartbeat parse stalled sends for 60–90 ms). It runs on the
    // cores no shard uses, or anywhere when there are none.
    let builder = LocalExecutorBuilder::new(placement)
        .name(&name)
        .io_memory(startup::IO_MEMORY_BYTES)
        .blocking_thread_pool_placement(stalls::blocking_pool(control_cpus));
    stalls::configure(builder, cfg)
}

/// Waits for an executor's start-up report; a thread that died without one failed to create its
/// executor (io_uring or memlock).
fn await_ready<T: Send>(
    rx: &mpsc::Receiver<Result<Vec<u16>, (i32, String)>>,
    handle: crate::rt::executor::ExecutorJoinHandle<T>,
    executors: usize,
) -> Result<(crate::rt::executor::ExecutorJoinHandle<T>, Vec<u16>), (i32, String)> {
    match rx.recv() {
        Ok(Ok(ports)) => Ok((handle, ports)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let why = handle.join().err().map(|e| e.to_string()).unwrap_or_default();
            let hint = if why.contains("memory") || why.contains("ENOMEM") || why.contains("locked") {
                startup::memlock_advice(executors)
            } else {
                "io_uring could not be set up: check kernel.io_uring_disabled and the memlock limit (`ringmq tune`)"
                    .into()
            };
            Err((startup::EXIT_CONFIG, format!("executor failed to start: {why}. {hint}")))
        }
    }
}

/// Runs `ringmq serve` until a signal; returns the process exit code.
pub fn serve(cfg: Config) -> i32 {
    match serve_inner(cfg) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("ringmq: {msg}");
            tracing::error!("{msg}");
            code
        }
    }
}

fn serve_inner(mut cfg: Config) -> Result<i32, (i32, String)> {
    let cfg_err = |m: String| (startup::EXIT_CONFIG, m);
    startup::fail_stop_on_panic();
    let shards = if cfg.role == Role::Namesrv { 0 } else { cfg.shard_count() };
    // Every thread this one starts from here on inherits the control CPUs; shards pin themselves.
    let control_cpus = if cfg.isolate_control_plane { stalls::control_cpus(shards) } else { None };
    if let Some(cpus) = &control_cpus
        && let Err(e) = stalls::pin_current_thread(cpus)
    {
        tracing::warn!(error = %e, ?cpus, "control-plane threads not kept off the shards' cores");
    }
    let control_cpus = control_cpus.as_deref();
    crate::broker::config_file::start_background_writes();
    let with_ns = cfg.role != Role::Broker;
    startup::check_io_uring().map_err(cfg_err)?;
    startup::check_memlock(shards + with_ns as usize).map_err(cfg_err)?;
    let _lock = if shards > 0 { Some(startup::lock_data_dir(&cfg.data_dir).map_err(cfg_err)?) } else { None };
    // A broker asked for ACL or TLS must not start without them: check the files before any listener.
    let security = registrar::Security::of(&cfg).map_err(cfg_err)?;
    let control = Arc::new(ControlPlane::new(shards));
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signalled.clone())
            .map_err(|e| cfg_err(format!("cannot install signal handler: {e}")))?;
    }
    let last = ports::load(&cfg.data_dir);
    let mut bound = ports::Listening::default();
    let mut ns_handle = None;
    if with_ns {
        let (tx, rx) = mpsc::channel();
        let (c, k) = (cfg.clone(), control.clone());
        let port = ports::sticky(cfg.namesrv_port, last.namesrv);
        let h = executor("ringmq-namesrv".into(), Placement::Unbound, &cfg, control_cpus)
            .spawn(move || namesrv_main(c, port, k, tx))
            .map_err(|e| cfg_err(e.to_string()))?;
        let (h, p) = await_ready(&rx, h, shards + 1)?;
        // The registrar and the banner name the port actually bound (it differs for port 0).
        cfg.namesrv_port = p.first().copied().unwrap_or(cfg.namesrv_port);
        bound.namesrv = Some(cfg.namesrv_port);
        ns_handle = Some(h);
    }
    let ip = cfg.broker_ip.unwrap_or_else(startup::detect_ip);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Every shard opens its store at once (recovery and derived files are per shard); `serve`
    // then waits for each in turn. A shard that fails stops the others.
    let mut starting = Vec::new();
    for i in 0..shards {
        let (tx, rx) = mpsc::channel();
        let wanted = match (cfg.listen_port, last.shards.get(i)) {
            (0, Some(&p)) => p,
            (0, None) => (0, 0),
            _ => (cfg.shard_port(i), cfg.shard_port(i).saturating_sub(2)),
        };
        let (c, k) = (cfg.clone(), control.clone());
        let started = executor(format!("ringmq-shard-{i}"), Placement::Fixed(i % cores), &cfg, control_cpus)
            .spawn(move || shard_main(i, c, ip, wanted, k, tx));
        match started {
            Ok(h) => starting.push((rx, h)),
            Err(e) => {
                control.shutdown();
                for (_, h) in starting {
                    let _ = h.join();
                }
                return Err(cfg_err(e.to_string()));
            }
        }
    }
    let mut handles = Vec::new();
    let mut failed = None;
    for (rx, h) in starting {
        match await_ready(&rx, h, shards + 1) {
            Ok((h, p)) => {
                handles.push(h);
                bound.shards.push((p.first().copied().unwrap_or(0), p.get(1).copied().unwrap_or(0)));
            }
            Err(e) => {
                // Later shards may still be opening: stop them once they are up.
                control.shutdown();
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }
    let (registered_tx, registered) = mpsc::channel();
    let registrar = (shards > 0).then(|| {
        let r = registrar::Registrar {
            control: control.clone(),
            namesrvs: cfg.namesrv_list(),
            cluster: cfg.cluster_name.clone(),
            period: Duration::from_secs(cfg.register_period_secs),
            broker_expiry: Duration::from_secs(cfg.broker_expiry_secs),
            registered: Some(registered_tx),
            security,
        };
        std::thread::spawn(move || r.run())
    });
    // Ready means routable: wait (bounded: an external name server may be down) for the first round.
    if registrar.is_some() && registered.recv_timeout(REGISTER_WAIT).is_err() {
        tracing::warn!("first registration with the name server(s) not confirmed yet; serving anyway");
    }
    if let Some(addr) = cfg.metrics_addr.as_ref().filter(|_| shards > 0) {
        let addr = match (addr.rsplit_once(':'), last.metrics) {
            (Some((host, "0")), Some(p)) => format!("{host}:{p}"),
            _ => addr.clone(),
        };
        match crate::metrics::serve_control(&addr, control.metrics.clone(), cfg.data_dir.clone()) {
            Ok(at) => {
                bound.metrics = Some(at.port());
                tracing::info!(%at, "metrics on http://{at}/metrics");
            }
            Err(e) => tracing::warn!(addr, error = %e, "metrics endpoint not started"),
        }
    }
    if let Err(e) = ports::save(&cfg.data_dir, &bound) {
        tracing::warn!(error = %e, "cannot record the bound ports in listening.json");
    }
    banner(&cfg, shards, ip, with_ns, &bound);
    while !signalled.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("shutting down: no new connections, flushing and checkpointing");
    control.shutdown();
    for h in handles {
        let _ = h.join();
    }
    if let Some(r) = registrar {
        let _ = r.join();
    }
    if let Some(h) = ns_handle {
        let _ = h.join();
    }
    tracing::info!("ringmq stopped");
    Ok(0)
}

fn banner(cfg: &Config, shards: usize, ip: std::net::IpAddr, with_ns: bool, bound: &ports::Listening) {
    let ports: Vec<String> = bound.shards.iter().map(|(p, v)| format!("{p}(+vip {v})")).collect();
    let ns = if with_ns {
        format!("embedded name server on :{}", cfg.namesrv_port)
    } else {
        format!("name servers {}", cfg.namesrv_list().join(";"))
    };
    let msg = format!(
        "ringmq {} ready: {shards} shard(s) as brokers {}-0..{} at {ip} ports [{}]; {ns}; data {}; flush {:?}",
        env!("CARGO_PKG_VERSION"),
        cfg.broker_name,
        shards.saturating_sub(1),
        ports.join(", "),
        cfg.data_dir.display(),
        cfg.flush
    );
    println!("{msg}");
    tracing::info!("{msg}");
}
