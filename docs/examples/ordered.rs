//! Ordered messages: sends with one sharding key go to one queue; an orderly consumer group consumes
//! each queue under a broker lock (LOCK_BATCH_MQ), so every key's messages arrive in send order.
//! Run: `cargo run --release --example ordered [namesrv]`.

mod common;

use common::{Res, bodies, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer};

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("OrderDemo");
    let producer = Producer::new(&ns, "order-demo-producer");
    producer.create_topic(&topic, 4)?;
    for step in ["created", "paid", "shipped", "delivered"] {
        for order in ["order-1", "order-2", "order-3"] {
            producer.send_by_key(&Message::new(&topic, format!("{order}:{step}")), Some(order))?;
        }
    }
    let (consumer, seen) = collecting_consumer(&ns, &unique("order-demo"), |c| {
        c.subscribe(&topic, "*");
        c.orderly(true);
    });
    consumer.start()?;
    wait_until("12 messages", 30, || seen.lock().unwrap().len() >= 12)?;
    consumer.shutdown();
    for order in ["order-1", "order-2", "order-3"] {
        let steps: Vec<String> =
            bodies(&seen).iter().filter_map(|b| b.strip_prefix(&format!("{order}:")).map(str::to_string)).collect();
        println!("{order}: {}", steps.join(" -> "));
        assert_eq!(steps, ["created", "paid", "shipped", "delivered"]);
    }
    Ok(())
}
