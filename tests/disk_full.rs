//! Disk full with a real process: a data directory on a small tmpfs is filled up; sends must get
//! SERVICE_NOT_AVAILABLE within a second while reads and admin keep working, and sends must resume by
//! themselves within 10 s of space returning. Needs root (mount): as root a failed mount fails the test;
//! otherwise the test says SKIPPED on stderr.

mod common;

use common::Server;
use ringmq::client::{Connection, Message, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use std::time::{Duration, Instant};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn send_raw(conn: &Connection, topic: &str) -> Command {
    let mut cmd = Command::request(rq::SEND_MESSAGE_V2);
    for (k, v) in [("a", "PG"), ("b", topic), ("e", "0"), ("g", "0")] {
        cmd.put(k, v);
    }
    conn.request(cmd.with_body("x"), Duration::from_secs(5)).unwrap()
}

#[test]
fn disk_full_refuses_sends_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // As root (CI runs as root) a failed mount is a failure, not a skip.
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        assert!(uid.ok().as_deref() != Some("0"), "running as root but cannot mount a tmpfs for the disk-full test");
        eprintln!("SKIPPED disk_full_refuses_sends_keeps_reads_and_recovers: needs root to mount a tmpfs");
        return;
    }
    let _mount = Tmpfs(dir.path().to_path_buf());
    let mut s = Server::start(1, &[]);
    s.stop();
    s.dir = dir.path().join("data");
    s.spawn().unwrap();
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Full", 1).unwrap();
    p.send(&Message::new("Full", "before")).unwrap();
    let conn = Connection::connect(&s.shard_addr(0), Duration::from_secs(5)).unwrap();
    // Fill the file system past the 90% hard limit.
    let filler = dir.path().join("filler");
    let free = ringmq::store::DiskUsage::measure(dir.path()).unwrap().available_bytes;
    std::fs::write(&filler, vec![1u8; (free - (2 << 20)) as usize]).unwrap();
    let start = Instant::now();
    let refused = loop {
        let r = send_raw(&conn, "Full");
        if r.code == rs::SERVICE_NOT_AVAILABLE {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "sends still accepted on a full disk");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(start.elapsed() <= Duration::from_millis(1500), "refused within about a second");
    assert!(refused.remark.unwrap_or_default().contains("disk use"));
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Full").unwrap()[0].clone();
    assert_eq!(c.pull(&q, 0, 32, "*", 0).unwrap().code, rs::SUCCESS, "reads keep working");
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    while send_raw(&conn, "Full").code != rs::SUCCESS {
        assert!(start.elapsed() < Duration::from_secs(10), "sends did not resume within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
