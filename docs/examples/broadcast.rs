//! Broadcasting: every member of a broadcasting group receives every message (offsets are kept by
//! each client). Run: `cargo run --release --example broadcast [namesrv]`.

mod common;

use common::{Res, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer};

fn main() -> Res {
    let ns = namesrv();
    let (topic, group) = (unique("BroadcastDemo"), unique("broadcast-demo"));
    let producer = Producer::new(&ns, "broadcast-demo-producer");
    producer.create_topic(&topic, 2)?;
    let members: Vec<_> = (0..2)
        .map(|_| {
            collecting_consumer(&ns, &group, |c| {
                c.subscribe(&topic, "*");
                c.broadcasting(true);
            })
        })
        .collect();
    for (c, _) in &members {
        c.start()?;
    }
    for i in 0..5 {
        producer.send(&Message::new(&topic, format!("notice-{i}")))?;
    }
    for (i, (c, seen)) in members.iter().enumerate() {
        wait_until("every notice at every member", 30, || seen.lock().unwrap().len() >= 5)?;
        println!("member {i} received {} notices", seen.lock().unwrap().len());
        c.shutdown();
    }
    Ok(())
}
