//! Overload black-box tests: one client flooding a shard must not starve the others.

mod common;

use common::Server;
use ringmq::client::{Message, Producer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::request as rq;
use ringmq::protocol::command::FLAG_ONEWAY;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn a_connection_that_keeps_the_socket_full_does_not_starve_sends_on_other_connections() {
    // Socket reads complete synchronously while data is waiting; a read loop that never yields let
    // one flooding client freeze the shard (no group commit, no other connection served).
    let s = Server::start(1, &["--flush", "sync"]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Flood", 1).unwrap();
    let mut cmd = Command::request(rq::GET_MAX_OFFSET);
    cmd.put("topic", "Flood");
    cmd.put("queueId", 0);
    cmd.flag |= FLAG_ONEWAY; // no answers to pile up: the flood is pure input
    let burst = cmd.encode().repeat(2_000);
    let stop = Arc::new(AtomicBool::new(false));
    let bursts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flooder = {
        let (stop, bursts, addr) = (stop.clone(), bursts.clone(), s.shard_addr(0));
        std::thread::spawn(move || {
            let mut sock = std::net::TcpStream::connect(addr).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if sock.write_all(&burst).is_err() {
                    break;
                }
                bursts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The flood is on: ten bursts (20 000 requests) written, more being written.
    assert!(
        common::wait_until(Duration::from_secs(10), || bursts.load(Ordering::Relaxed) >= 10),
        "the flood did not start"
    );
    let started = Instant::now();
    for i in 0..20 {
        // Each send waits for its group commit; the client gives up after 5 s.
        p.send(&Message::new("Flood", format!("m{i}"))).unwrap();
    }
    let took = started.elapsed();
    eprintln!("20 sync sends next to a flood: {took:?}");
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(took < Duration::from_secs(30), "20 sync sends took {took:?} next to a flooding connection");
}
