//! A panic on one shard stops the whole process with its own exit code (70) instead of leaving the
//! other shards serving beside a dead one. Own test binary: it sets the failpoint in the environment
//! that the started `ringmq` inherits.

mod common;

use common::Server;
use ringmq::client::Connection;
use ringmq::protocol::Command;
use ringmq::protocol::codes::request as rq;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

#[test]
fn a_panic_on_one_shard_stops_the_process_with_exit_code_70() {
    // SAFETY: this test binary has one test, so no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("RINGMQ_FAILPOINT_PANIC_ON_REQUEST", rq::GET_BROKER_RUNTIME_INFO.to_string()) };
    let mut s = Server::start(2, &[]);
    let conn = Connection::connect(&s.shard_addr(1), Duration::from_secs(5)).unwrap();
    let _ = conn.request(Command::request(rq::GET_BROKER_RUNTIME_INFO), Duration::from_secs(2));
    let child = s.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the process kept running after a shard panicked");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70), "exit status {status:?} (signal {:?})", status.signal());
    assert!(s.log().contains("stopping the process"), "no log line names the panic");
    s.child = None;
}
