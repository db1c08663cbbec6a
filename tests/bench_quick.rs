//! The quick forms of the benchmarks, so they cannot rot: they must run and produce sane numbers.
//! (No speed is asserted here; targets live in `cargo bench` and `ringmq bench` runs.)

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
