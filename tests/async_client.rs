//! Black-box tests of the glommio client (`AsyncProducer`, `AsyncPullConsumer`) against a started
//! `ringmq` with two shards.

mod common;

use common::Server;
use ringmq::client::consumer::{PullSpec, TAG};
use ringmq::client::{AsyncClient, AsyncProducer, AsyncPullConsumer, ClientError, Message, MessageQueue, Producer};
use ringmq::protocol::codes::response as rs;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Runs `f` on a fresh glommio executor and returns its output.
fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::default().spawn(move || async move { f().await }).unwrap().join().unwrap()
}

/// Everything in `q` from `offset` (no long polling).
async fn drain(c: &AsyncPullConsumer, q: &MessageQueue, mut offset: u64) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let spec = PullSpec { offset, max: 32, expression_type: TAG, expr: "*", suspend_ms: 0 };
        let r = c.pull(q, &spec).await.unwrap();
        if r.code != rs::SUCCESS {
            return out;
        }
        out.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
        offset = r.next_offset;
    }
}

#[test]
fn async_producer_sends_single_keyed_batch_and_oneway_and_pull_consumer_reads_them() {
    let s = Server::start(2, &[]);
    Producer::new(&s.namesrv(), "setup").create_topic("Async", 2).unwrap();
    let ns = s.namesrv();
    let (by_queue, keyed_queues, committed) = on_executor(move || async move {
        let client = AsyncClient::new(&ns);
        let p = AsyncProducer::with_client(client.clone(), "APG");
        // Concurrent sends from many tasks pipeline over one connection per broker.
        let p = Rc::new(p);
        let sends: Vec<_> = (0..40)
            .map(|i| {
                let p = p.clone();
                glommio::spawn_local(async move { p.send(&Message::new("Async", format!("m{i}"))).await.unwrap() })
            })
            .collect();
        let mut brokers = BTreeSet::new();
        for s in sends {
            brokers.insert(s.await.queue.broker_name);
        }
        assert_eq!(brokers.len(), 2, "round robin reaches both shards");
        let mut keyed_queues = BTreeSet::new();
        for i in 0..5 {
            let r = p.send_by_key(&Message::new("Async", format!("k{i}")), Some("order-7")).await.unwrap();
            keyed_queues.insert((r.queue.broker_name, r.queue.queue_id));
        }
        let batch: Vec<Message> = (0..10).map(|i| Message::new("Async", format!("b{i}"))).collect();
        let r = p.send_batch(&batch).await.unwrap();
        assert_eq!(r.queue.topic, "Async");
        p.send_oneway(&Message::new("Async", "oneway")).await.unwrap();
        let auto = p.send(&Message::new("AsyncAutoCreated", "first")).await.unwrap();
        assert_eq!(auto.queue.topic, "AsyncAutoCreated", "sent through the TBW102 template route");
        let empty: Result<_, ClientError> = p.send_batch(&[]).await;
        assert!(empty.is_err(), "an empty batch is refused by the client");

        let c = AsyncPullConsumer::with_client(client, "ACG");
        let queues = c.queues("Async").await.unwrap();
        assert_eq!(queues.len(), 4, "2 queues on each of 2 shards");
        // The oneway send has no answer: wait until every message is readable.
        let mut by_queue = BTreeMap::new();
        for _ in 0..100 {
            by_queue.clear();
            for q in &queues {
                by_queue.insert((q.broker_name.clone(), q.queue_id), drain(&c, q, 0).await);
            }
            if by_queue.values().map(Vec::len).sum::<usize>() == 56 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        }
        let q0 = &queues[0];
        let max = c.max_offset(q0).await.unwrap();
        c.commit(q0, max).await.unwrap();
        let committed = c.committed_offset(q0).await.unwrap();
        assert_eq!(committed, Some(max));
        (by_queue, keyed_queues, committed)
    });
    let all: BTreeSet<String> = by_queue.values().flatten().cloned().collect();
    assert_eq!(all.len(), 56, "40 single + 5 keyed + 10 batched + 1 oneway, each once: {by_queue:?}");
    assert_eq!(keyed_queues.len(), 1, "one sharding key, one queue");
    let keyed: Vec<&String> = by_queue.values().flatten().filter(|b| b.starts_with('k')).collect();
    assert_eq!(keyed, ["k0", "k1", "k2", "k3", "k4"], "keyed sends keep their order");
    let batch_queue = by_queue.values().find(|v| v.iter().any(|b| b.starts_with('b'))).unwrap();
    let batched: Vec<&String> = batch_queue.iter().filter(|b| b.starts_with('b')).collect();
    assert_eq!(batched.len(), 10, "a batch lands in one queue");
    assert!(committed.is_some());
}

#[test]
fn async_producer_reports_an_unknown_topic_and_a_dead_name_server() {
    let s = Server::start_with_config(1, ".toml", "auto_create_topic = false\n");
    let ns = s.namesrv();
    on_executor(move || async move {
        let p = AsyncProducer::new(&ns, "APG");
        let e = p.send(&Message::new("NoSuchTopic", "x")).await.unwrap_err();
        assert!(matches!(e, ClientError::NoRoute(_)), "{e:?}");
        let dead = AsyncProducer::new("127.0.0.1:1", "APG");
        let e = dead.send(&Message::new("T", "x")).await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    });
}
