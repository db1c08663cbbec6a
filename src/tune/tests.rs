//! Every check against a fake `/proc` + `/sys` tree in a temporary directory and a fake [`Host`]:
//! the pass, warn and fail paths, unreadable files, and that `--apply` writes (only) as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;

use super::testkit::*;
use super::*;

#[test]
fn memlock_paths() {
    let tree = Tree::new();
    let low = FakeHost { memlock: Some(limited(64 << 10, 64 << 10)), ..FakeHost::default() };
    let r = check_with(&tree, &low, false, "memlock");
    assert_eq!(r.status, Status::Fail);
    assert!(r.observed.contains("glommio refuses to start"), "{}", r.observed);
    assert!(r.fix.as_deref().unwrap().contains("LimitMEMLOCK=infinity"));

    let root = FakeHost { euid: 0, ..low };
    assert_eq!(check_with(&tree, &root, false, "memlock").status, Status::Pass);

    let mid = FakeHost { memlock: Some(limited(8 << 20, 8 << 20)), ..FakeHost::default() };
    let r = check_with(&tree, &mid, false, "memlock");
    assert_eq!(r.status, Status::Warn);
    assert!(r.observed.contains("120 MiB for 4 executors"), "{}", r.observed);

    let big = FakeHost { memlock: Some(limited(1 << 30, 1 << 30)), ..FakeHost::default() };
    assert_eq!(check_with(&tree, &big, false, "memlock").status, Status::Pass);
    assert_eq!(check(&tree, "memlock").status, Status::Pass);

    let unreadable = FakeHost { memlock: None, ..FakeHost::default() };
    assert_eq!(check_with(&tree, &unreadable, false, "memlock").status, Status::Warn);
}

#[test]
fn memlock_cap_ipc_lock_exempts() {
    let tree = Tree::new();
    tree.write("proc/self/status", "Name:\tringmq\nCapEff:\t0000000000004000\n");
    let low = FakeHost { memlock: Some(limited(64 << 10, 64 << 10)), ..FakeHost::default() };
    let r = check_with(&tree, &low, false, "memlock");
    assert_eq!(r.status, Status::Pass);
    assert!(r.observed.contains("CAP_IPC_LOCK"));
}

#[test]
fn memlock_counts_cpus_from_sysfs() {
    let tree = Tree::new();
    tree.write("sys/devices/system/cpu/online", "0-1\n");
    let mid = FakeHost { memlock: Some(limited(64 << 20, 64 << 20)), ..FakeHost::default() };
    assert_eq!(check_with(&tree, &mid, false, "memlock").status, Status::Pass);
}

#[test]
fn nofile_warns_and_apply_raises_this_process_only() {
    let tree = Tree::new();
    assert_eq!(check(&tree, "nofile").status, Status::Pass);

    let host = FakeHost { nofile: Cell::new(limited(1024, 524_288)), ..FakeHost::default() };
    assert_eq!(check_with(&tree, &host, false, "nofile").status, Status::Warn);
    let r = check_with(&tree, &host, true, "nofile");
    assert!(r.applied);
    assert_eq!(r.status, Status::Warn, "the broker's own limit is unchanged");
    assert!(r.observed.contains("this `ringmq tune` process only"), "{}", r.observed);
    assert_eq!(host.nofile.get().soft, Some(524_288));

    let stuck = FakeHost { nofile: Cell::new(limited(1024, 1024)), ..FakeHost::default() };
    let r = check_with(&tree, &stuck, true, "nofile");
    assert!(!r.applied);
    assert!(r.observed.contains("raising the hard limit needs root"));
}

#[test]
fn io_uring_paths() {
    let tree = Tree::new();
    let path = "proc/sys/kernel/io_uring_disabled";
    assert_eq!(check(&tree, "io_uring").status, Status::Pass, "absent on old kernels");
    tree.write(path, "0\n");
    assert_eq!(check(&tree, "io_uring").status, Status::Pass);
    tree.write(path, "1\n");
    assert_eq!(check(&tree, "io_uring").status, Status::Warn);
    assert_eq!(check_with(&tree, &root_host(), false, "io_uring").status, Status::Pass);
    tree.write(path, "2\n");
    let r = check(&tree, "io_uring");
    assert_eq!(r.status, Status::Fail);
    assert!(r.fix.unwrap().contains("sysctl -w kernel.io_uring_disabled=0"));
    tree.write(path, "7\n");
    assert_eq!(check(&tree, "io_uring").status, Status::Warn);
}

#[test]
fn governor_paths_and_apply() {
    let tree = Tree::new();
    assert_eq!(check(&tree, "cpu_governor").observed, "not exposed (VM?)");
    tree.mkdir("sys/devices/system/cpu/cpu0").mkdir("sys/devices/system/cpu/cpufreq");
    assert_eq!(check(&tree, "cpu_governor").observed, "not exposed (VM?)");

    let gov = |n: u32| format!("sys/devices/system/cpu/cpu{n}/cpufreq/scaling_governor");
    tree.write(&gov(0), "performance\n").write(&gov(1), "powersave\n");
    tree.write("sys/devices/system/cpu/cpu1/cpufreq/scaling_available_governors", "performance powersave\n");
    let r = check(&tree, "cpu_governor");
    assert_eq!(r.status, Status::Warn);
    assert!(r.observed.contains("cpu1=powersave"), "{}", r.observed);

    let r = check_with(&tree, &FakeHost::default(), true, "cpu_governor");
    assert!(!r.applied && r.observed.contains("needs root"), "{}", r.observed);
    assert_eq!(tree.read(&gov(1)), "powersave");

    let r = check_with(&tree, &root_host(), true, "cpu_governor");
    assert!(r.applied);
    assert_eq!(r.status, Status::Pass);
    assert_eq!(tree.read(&gov(1)), "performance");
}

#[test]
fn governor_apply_refuses_when_not_offered() {
    let tree = Tree::new();
    tree.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "schedutil\n");
    tree.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors", "schedutil\n");
    let r = check_with(&tree, &root_host(), true, "cpu_governor");
    assert!(!r.applied);
    assert!(r.observed.contains("offers no performance governor"), "{}", r.observed);
}

#[test]
fn thp_paths_and_apply() {
    let tree = Tree::new();
    let path = "sys/kernel/mm/transparent_hugepage/enabled";
    assert_eq!(check(&tree, "transparent_hugepages").status, Status::Pass);
    tree.write(path, "always madvise [never]\n");
    assert_eq!(check(&tree, "transparent_hugepages").status, Status::Pass);
    tree.write(path, "always [madvise] never\n");
    assert_eq!(check(&tree, "transparent_hugepages").status, Status::Pass);
    tree.write(path, "[always] madvise never\n");
    assert_eq!(check(&tree, "transparent_hugepages").status, Status::Warn);

    let r = check_with(&tree, &root_host(), true, "transparent_hugepages");
    assert!(r.applied);
    assert_eq!(r.status, Status::Pass);
    assert_eq!(tree.read(path), "madvise");
}

#[test]
fn swappiness_paths_and_apply() {
    let tree = Tree::new();
    let path = "proc/sys/vm/swappiness";
    let r = check(&tree, "swappiness");
    assert_eq!(r.status, Status::Warn);
    assert!(r.observed.starts_with("could not read"), "{}", r.observed);
    tree.write(path, "10\n");
    assert_eq!(check(&tree, "swappiness").status, Status::Pass);
    tree.write(path, "60\n");
    let r = check(&tree, "swappiness");
    assert_eq!(r.status, Status::Warn);
    assert_eq!(r.fix.as_deref().unwrap().split(' ').take(3).collect::<Vec<_>>(), ["sysctl", "-w", "vm.swappiness=1"]);

    let r = check_with(&tree, &root_host(), true, "swappiness");
    assert!(r.applied && r.status == Status::Pass, "{r:?}");
    assert_eq!(tree.read(path), "1");
}

#[test]
fn unreadable_knob_is_reported_not_panicked() {
    let tree = Tree::new();
    tree.mkdir("proc/sys/vm/swappiness");
    let r = check(&tree, "swappiness");
    assert_eq!(r.status, Status::Warn);
    assert!(r.observed.starts_with("could not read "), "{}", r.observed);
    assert!(r.observed.contains("proc/sys/vm/swappiness"));

    let r = check_with(&tree, &root_host(), true, "swappiness");
    assert!(!r.applied && r.observed.contains("--apply failed: could not write"), "{}", r.observed);
}

#[test]
fn clocksource_paths() {
    let tree = Tree::new();
    let dir = "sys/devices/system/clocksource/clocksource0";
    assert_eq!(check(&tree, "clocksource").status, Status::Pass);
    tree.write(&format!("{dir}/current_clocksource"), "tsc\n");
    assert_eq!(check(&tree, "clocksource").status, Status::Pass);
    tree.write(&format!("{dir}/current_clocksource"), "arch_sys_counter\n");
    assert_eq!(check(&tree, "clocksource").status, Status::Pass);
    tree.write(&format!("{dir}/current_clocksource"), "hpet\n");
    tree.write(&format!("{dir}/available_clocksource"), "tsc hpet acpi_pm\n");
    let r = check(&tree, "clocksource");
    assert_eq!(r.status, Status::Warn);
    assert!(r.fix.unwrap().starts_with("echo tsc >"));
    tree.write(&format!("{dir}/current_clocksource"), "kvm-clock\n");
    tree.write(&format!("{dir}/available_clocksource"), "kvm-clock acpi_pm\n");
    let r = check(&tree, "clocksource");
    assert_eq!(r.status, Status::Warn);
    assert!(r.observed.contains("tsc is not offered"), "{}", r.observed);
}

#[test]
fn check_names_are_unique_and_match_probes() {
    let tree = Tree::new();
    let opts = options(&tree, false);
    let host = FakeHost::default();
    let results = run_checks_with(&Ctx { opts: &opts, host: &host });
    assert_eq!(results.len(), checks::ALL.len());
    for (check, result) in checks::ALL.iter().zip(&results) {
        assert_eq!(check.name, result.name);
    }
    let mut names: Vec<_> = results.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), checks::ALL.len());
}

#[test]
fn empty_tree_never_writes_without_apply() {
    let tree = Tree::new();
    tree.write("proc/sys/vm/swappiness", "60\n");
    let opts = options(&tree, false);
    let host = root_host();
    let results = run_checks_with(&Ctx { opts: &opts, host: &host });
    assert!(results.iter().all(|r| !r.applied));
    assert_eq!(tree.read("proc/sys/vm/swappiness"), "60");
}

#[test]
fn report_table_json_and_exit_code() {
    let tree = Tree::new();
    tree.write("proc/sys/vm/swappiness", "60\n");
    tree.write("proc/sys/kernel/io_uring_disabled", "2\n");
    let mut opts = options(&tree, false);
    let host = FakeHost::default();
    let results = run_checks_with(&Ctx { opts: &opts, host: &host });
    assert_eq!(exit_code(&results), 1);

    let mut table = Vec::new();
    render(&opts, &results, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("WARN  swappiness"), "{table}");
    assert!(table.contains("fix: sysctl -w vm.swappiness=1"), "{table}");
    assert!(table.contains("FAIL  io_uring"), "{table}");

    opts.json = true;
    let mut json = Vec::new();
    render(&opts, &results, &mut json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["summary"]["fail"], 1);
    let checks = value["checks"].as_array().unwrap();
    let swap = checks.iter().find(|c| c["name"] == "swappiness").unwrap();
    assert_eq!(swap["status"], "warn");
    assert_eq!(swap["applied"], false);

    tree.write("proc/sys/kernel/io_uring_disabled", "0\n");
    assert_eq!(exit_code(&run_checks_with(&Ctx { opts: &opts, host: &host })), 0);
}

#[test]
fn real_host_read_only_smoke() {
    let opts = TuneOptions {
        apply: false,
        data_dir: std::env::temp_dir(),
        json: false,
        root: "/".into(),
        acl_file: None,
        metrics_addr: None,
    };
    let results = run_checks(&opts);
    assert_eq!(results.len(), checks::ALL.len());
    assert!(results.iter().all(|r| !r.applied));
}

#[test]
fn byte_counts_read_naturally() {
    assert_eq!(fmt_bytes(0), "0 B");
    assert_eq!(fmt_bytes(512 << 10), "512 KiB");
    assert_eq!(fmt_bytes(30 << 20), "30 MiB");
    assert_eq!(fmt_bytes(3 << 29), "1.5 GiB");
    assert_eq!(fmt_limit(None, true), "unlimited");
    assert_eq!(fmt_limit(Some(1024), false), "1024");
}

#[test]
fn acl_off_warns_only_when_another_host_can_connect() {
    let tree = Tree::new();
    let mut opts = options(&tree, false);
    let lo_only =
        FakeHost { addrs: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()], ..FakeHost::default() };
    assert_eq!(check_opts(&opts, &lo_only, "acl").status, Status::Pass);
    let exposed = FakeHost { addrs: vec![[127, 0, 0, 1].into(), [10, 0, 0, 7].into()], ..FakeHost::default() };
    let r = check_opts(&opts, &exposed, "acl");
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert!(r.observed.contains("10.0.0.7"), "{r:?}");
    assert!(r.fix.as_deref().is_some_and(|f| f.contains("--acl-file")), "{r:?}");

    let acl = tree.root().join("plain_acl.yml");
    std::fs::write(&acl, "accounts:\n  - accessKey: ops\n    secretKey: s3cret\n    admin: true\n").unwrap();
    opts.acl_file = Some(acl.clone());
    let r = check_opts(&opts, &exposed, "acl");
    assert_eq!(r.status, Status::Pass, "{r:?}");
    std::fs::write(&acl, "accounts:\n  - accessKey: ops\n    secretKey: s3cret\n    topicPerms: [T=WRITE]\n").unwrap();
    let r = check_opts(&opts, &exposed, "acl");
    assert_eq!(r.status, Status::Fail, "a file the broker rejects is reported: {r:?}");
}

#[test]
fn metrics_bound_beyond_loopback_warns() {
    let tree = Tree::new();
    let mut opts = options(&tree, false);
    let host = FakeHost::default();
    assert_eq!(check_opts(&opts, &host, "metrics_bind").status, Status::Pass);
    opts.metrics_addr = Some("127.0.0.1:5557".into());
    assert_eq!(check_opts(&opts, &host, "metrics_bind").status, Status::Pass);
    opts.metrics_addr = Some("0.0.0.0:5557".into());
    assert_eq!(check_opts(&opts, &host, "metrics_bind").status, Status::Warn);
    opts.metrics_addr = Some("[::]:5557".into());
    assert_eq!(check_opts(&opts, &host, "metrics_bind").status, Status::Warn);
}
