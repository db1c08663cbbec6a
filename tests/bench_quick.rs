//! The quick forms of the benchmarks, so they cannot rot: they must run and produce sane numbers.
//! (No speed is asserted here; targets live in `cargo bench` and `ringmq bench` runs.)

mod common;

#[test]
fn storage_benchmark_quick_mode_runs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let r = ringmq::bench::storage::run(ringmq::bench::storage::StorageBenchConfig::quick(dir.path())).unwrap();
    assert!(r.raw_write_mb_per_sec > 0.0 && r.async_append_mb_per_sec > 0.0);
    assert_eq!(r.sync.len(), 3);
    assert!(r.sync.iter().all(|s| s.msgs_per_sec > 0.0));
    assert!(r.tail_read_mb_per_sec > 0.0 && r.disk_read_mb_per_sec > 0.0);
    println!("{}", ringmq::bench::storage::describe(&r));
}

#[test]
fn raw_probe_quick_mode_runs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let r = ringmq::bench::probe::run(dir.path(), 8 << 20, 1024, false).unwrap();
    assert!(r.mb_per_sec > 0.0 && r.msgs_per_sec > 0.0);
}

/// `ringmq bench` against a started broker: glommio producers and consumers move messages, the JSON
/// report carries the documented fields, and timer workloads count no early delivery.
#[test]
fn load_generator_publishes_and_consumes_against_a_started_broker() {
    let s = common::Server::start(2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = std::process::Command::new(common::binary())
        .args(["bench", "--namesrv", &s.namesrv(), "--rate", "400", "--producers", "2", "--consumers", "2"])
        .args(["--queues", "2", "--message-size", "64", "--duration", "3", "--warmup", "1", "--report-every", "1"])
        .args(["--deliver-after-ms", "300", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let total = &r["total"];
    assert!(total["publish_rate"].as_f64().unwrap() > 200.0, "{total}");
    assert!(total["consume_rate"].as_f64().unwrap() > 100.0, "{total}");
    assert_eq!(total["publish_errors"], 0);
    assert_eq!(total["early_deliveries"], 0, "a timer message was consumed before its due time");
    assert!(total["end_to_end"]["p50_us"].as_u64().unwrap() > 0);
    assert!(r["periods"].as_array().unwrap().len() >= 2);
}

/// `ringmq bench --rate-sweep`: one run per rate against the same broker, one JSON with a point per
/// rate (and its full report) and one SVG plot of latency and broker CPU against rate.
#[test]
fn rate_sweep_reports_every_rate_in_one_json_and_one_plot() {
    let s = common::Server::start(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (json, plot) = (dir.path().join("sweep.json"), dir.path().join("sweep.svg"));
    let out = std::process::Command::new(common::binary())
        .args(["bench", "--namesrv", &s.namesrv(), "--rate-sweep", "200,400", "--queues", "2"])
        .args(["--message-size", "64", "--duration", "2", "--warmup", "1", "--report-every", "1"])
        .args(["--broker-pid", &s.pid().to_string()])
        .args(["--json", json.to_str().unwrap(), "--plot", plot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["target_rate"].as_u64().unwrap()).collect::<Vec<_>>(), [200, 400]);
    for p in points {
        assert!(p["achieved_rate"].as_f64().unwrap() > 0.5 * p["target_rate"].as_f64().unwrap(), "{p}");
        assert!(p["publish_latency"]["p99_us"].as_u64().unwrap() > 0, "{p}");
        assert!(p["broker_cpu_us_per_message"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(r["reports"].as_array().unwrap().len(), 2);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 4, "{svg}");
}

/// `ringmq bench --backlog`: the accumulated messages are not the tail consumers' to read, the
/// drain group reads every one of them from the first offset while the workload runs, and the
/// report compares its rate with a raw read of the commit log and gives both publish latencies.
#[test]
fn backlog_drain_reads_every_accumulated_message_from_the_first_offset() {
    let s = common::Server::start(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("drain.json");
    let log_dir = s.data_dir().join("0").join("commitlog");
    let out = std::process::Command::new(common::binary())
        .args(["bench", "--namesrv", &s.namesrv(), "--backlog", "6000", "--rate", "300", "--queues", "3"])
        .args(["--message-size", "100", "--duration", "6", "--warmup", "0", "--report-every", "2"])
        .args(["--raw-read-dir", log_dir.to_str().unwrap(), "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let d = &r["drain"];
    assert_eq!(d["backlog"], 6000, "{d}");
    let to_read = d["to_read"].as_u64().unwrap();
    assert!(to_read >= 6000, "the queues hold the backlog and the workload's messages: {d}");
    assert_eq!(d["drained"].as_u64().unwrap(), to_read, "the drain group reads every message from the first: {d}");
    assert_eq!(d["finished"], true, "{d}");
    assert!(d["drained_log_bytes"].as_u64().unwrap() > 6000 * 100, "{d}");
    assert!(d["raw_read_mib_per_sec"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["quiet_publish"]["p99_us"].as_u64().unwrap() > 0, "{d}");
    assert!(d["draining_publish"]["p99_us"].as_u64().unwrap() > 0, "{d}");
    let total = &r["total"];
    assert_eq!(total["publish_errors"], 0);
    // The tail consumer started after the backlog: it sees only the measured workload's messages.
    assert!(total["backlog"].as_i64().unwrap() > -300, "tail consumers read the backlog: {total}");
    assert!(text.contains(&format!("drain: {to_read} of {to_read} messages (backlog 6000)")), "{text}");
}
