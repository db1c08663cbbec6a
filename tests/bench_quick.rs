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
