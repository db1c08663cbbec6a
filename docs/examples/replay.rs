//! Replay by time: a running consumer group is moved back to the first message stored at or after a
//! timestamp (INVOKE_BROKER_TO_RESET_OFFSET; the brokers commit the offsets and push them to the
//! running consumers with RESET_CONSUMER_CLIENT_OFFSET) and consumes again from there. The same from
//! the shell: `ringmq admin group reset-offset <group> <topic> --to-time <ms>`.
//! Run: `cargo run --release --example replay [namesrv]`.

mod common;

use common::{Res, bodies, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer, PullConsumer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> Res {
    let ns = namesrv();
    let (topic, group) = (unique("ReplayDemo"), unique("replay-demo"));
    let producer = Producer::new(&ns, "replay-demo-producer");
    producer.create_topic(&topic, 1)?;
    producer.send(&Message::new(&topic, "before the incident"))?;
    std::thread::sleep(Duration::from_millis(20));
    let incident = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    std::thread::sleep(Duration::from_millis(20));
    producer.send(&Message::new(&topic, "during the incident"))?;
    let (consumer, seen) = collecting_consumer(&ns, &group, |c| c.subscribe(&topic, "*"));
    consumer.start()?;
    wait_until("both messages", 30, || seen.lock().unwrap().len() >= 2)?;
    let table = PullConsumer::new(&ns, &group).reset_offset_by_time(&topic, incident)?;
    for q in &table {
        println!("{}:{} queue {} -> offset {}", q.broker_name, q.topic, q.queue_id, q.offset);
    }
    wait_until("the replay", 30, || seen.lock().unwrap().len() >= 3)?;
    consumer.shutdown();
    let got = bodies(&seen);
    println!("consumed: {got:?}");
    assert_eq!(got[2], "during the incident");
    Ok(())
}
