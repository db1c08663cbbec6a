//! Scheduled messages: a delay level (`DELAY`, RocketMQ's 18 levels: 1s 5s 10s 30s 1m …) and arbitrary
//! delivery times (`TIMER_DELAY_MS` relative, `TIMER_DELIVER_MS` absolute). None arrives before its
//! time. Run: `cargo run --release --example scheduled [namesrv]`.

mod common;

use common::{Res, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("ScheduleDemo");
    let producer = Producer::new(&ns, "schedule-demo-producer");
    producer.create_topic(&topic, 1)?;
    let (consumer, seen) = collecting_consumer(&ns, &unique("schedule-demo"), |c| c.subscribe(&topic, "*"));
    consumer.start()?;
    std::thread::sleep(Duration::from_secs(1));
    let t0 = epoch_ms();
    let at = t0 + 2_000;
    producer.send(&Message::new(&topic, "level 1").with_property("DELAY", "1"))?;
    producer.send(&Message::new(&topic, "in 3000 ms").with_property("TIMER_DELAY_MS", "3000"))?;
    producer.send(&Message::new(&topic, "at t0+2000").with_property("TIMER_DELIVER_MS", &at.to_string()))?;
    wait_until("three scheduled messages", 60, || seen.lock().unwrap().len() >= 3)?;
    consumer.shutdown();
    for m in seen.lock().unwrap().iter() {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let due = match body.as_str() {
            "in 3000 ms" => t0 + 3_000,
            "at t0+2000" => at,
            _ => t0, // the delay level's due time depends on the broker's messageDelayLevel
        };
        println!("{body:>12}: stored for delivery {} ms after sending", m.store_timestamp_ms - t0);
        assert!(m.store_timestamp_ms >= due, "{body} delivered early");
    }
    Ok(())
}
