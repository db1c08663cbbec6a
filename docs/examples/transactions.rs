//! Transactional messages: a half message stays invisible until its local transaction commits; a
//! rollback discards it; an unknown outcome is resolved by the broker asking the producer group back
//! (CHECK_TRANSACTION_STATE, after `transaction_timeout_ms`, every `transaction_check_interval_ms`).
//! Run: `cargo run --release --example transactions [namesrv]` (the check-back takes up to
//! 6 s + 30 s with RocketMQ's default settings).

mod common;

use common::{Res, bodies, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer, TxState};

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("TxDemo");
    let producer = Producer::new(&ns, &unique("tx-demo-producer"));
    producer.create_topic(&topic, 1)?;
    // The check listener answers for transactions whose outcome was unknown at send time.
    producer.set_check_listener(&topic, |half| {
        println!("broker asks about {:?}: commit", String::from_utf8_lossy(&half.body));
        TxState::Commit
    })?;
    let (consumer, seen) = collecting_consumer(&ns, &unique("tx-demo"), |c| c.subscribe(&topic, "*"));
    consumer.start()?;
    producer.send_in_transaction(&Message::new(&topic, "paid order"), || TxState::Commit)?;
    producer.send_in_transaction(&Message::new(&topic, "cancelled order"), || TxState::Rollback)?;
    producer.send_in_transaction(&Message::new(&topic, "order in doubt"), || TxState::Unknown)?;
    wait_until("the committed message", 30, || !seen.lock().unwrap().is_empty())?;
    println!("visible at once: {:?}", bodies(&seen));
    wait_until("the checked-back message", 90, || seen.lock().unwrap().len() >= 2)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut got = bodies(&seen);
    got.sort();
    println!("visible in the end: {got:?}");
    assert_eq!(got, ["order in doubt", "paid order"]);
    consumer.shutdown();
    Ok(())
}
