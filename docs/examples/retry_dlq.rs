//! Retries and dead letters: a consumer that fails a message hands it back to the broker, which
//! redelivers it through `%RETRY%<group>` after RocketMQ's back-off (10 s, then 30 s, …) and, past the
//! group's maximum reconsume times, moves it to `%DLQ%<group>`. Here one message succeeds on its retry
//! and one always fails (maximum 1 retry). Run: `cargo run --release --example retry_dlq [namesrv]`.

mod common;

use common::{Res, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer, PullConsumer, PushConsumer, StartFrom};
use std::sync::{Arc, Mutex};

fn main() -> Res {
    let ns = namesrv();
    let (topic, group) = (unique("RetryDemo"), unique("retry-demo"));
    let producer = Producer::new(&ns, "retry-demo-producer");
    producer.create_topic(&topic, 1)?;
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    let mut consumer = PushConsumer::new(&ns, &group, move |msgs| {
        let m = &msgs[0]; // one message per call (consumeMessageBatchMaxSize = 1)
        let body = String::from_utf8_lossy(&m.body).into_owned();
        let ok = body == "flaky" && m.reconsume_times > 0;
        sink.lock().unwrap().push(format!(
            "{body} attempt {} -> {}",
            m.reconsume_times + 1,
            if ok { "ok" } else { "fail" }
        ));
        ok
    });
    consumer.subscribe(&topic, "*");
    consumer.max_reconsume_times(1);
    consumer.start_from(StartFrom::First);
    consumer.start()?;
    producer.send(&Message::new(&topic, "flaky"))?;
    producer.send(&Message::new(&topic, "poison"))?;
    let auditor = PullConsumer::new(&ns, "retry-demo-auditor");
    let dlq = format!("%DLQ%{group}");
    // The dead-letter topic exists on every shard; the message sits on the one that stored it.
    let dead = || -> Vec<String> {
        let queues = auditor.queues(&dlq).unwrap_or_default();
        let msgs = queues.iter().flat_map(|q| auditor.pull(q, 0, 32, "*", 0).map(|r| r.messages).unwrap_or_default());
        msgs.map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
    };
    // The two retries are due at about the same time and come back in either order: wait for both.
    let flaky_ok = || log.lock().unwrap().iter().any(|l| l == "flaky attempt 2 -> ok");
    wait_until("the poison message in the dead-letter queue", 120, || !dead().is_empty())?;
    wait_until("the flaky message's successful retry", 120, flaky_ok)?;
    consumer.shutdown();
    for line in log.lock().unwrap().iter() {
        println!("{line}");
    }
    println!("{dlq} holds {:?}", dead());
    assert_eq!(dead(), ["poison"]);
    Ok(())
}
