//! An unmodified third-party RocketMQ client (rocketmq-client-rust 1.0.0) against a started ringmq:
//! producer (single, batch, ordered by selector, delay level, timer, request-reply), transactional
//! producer (commit, rollback, check-back), push consumer (concurrent, tag and SQL92 filters, retry by
//! ReconsumeLater, broadcasting, offset reset while running), lite pull consumer in assign mode, topic
//! creation through TBW102.
#![recursion_limit = "512"]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::Server;
use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultLitePullConsumer,
    DefaultMQProducer, DefaultMQPushConsumer, LocalTransactionState, MQPushConsumer, MessageSelector, MessageUtil,
    SendStatus, TelemetryHandle, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static OWNER: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    RuntimeOwner::plan(RuntimeConfig { thread_name: "compat".to_string(), ..Default::default() })
        .expect("runtime plan")
        .build()
        .expect("runtime owner")
});

fn rt(scope: &'static str) -> Arc<ClientRuntime> {
    ClientRuntime::try_new(
        OWNER.root_context().component(scope),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("client runtime")
}

async fn producer(ns: &str, group: &str) -> DefaultMQProducer {
    let mut p = DefaultMQProducer::builder(rt("producer"))
        .producer_group(group.to_string())
        .name_server_addr(ns.to_string())
        .send_msg_timeout(5_000)
        .build();
    p.start().await.expect("producer start");
    p
}

async fn create_topic(p: &mut DefaultMQProducer, topic: &str, queues: i32) {
    p.create_topic("TBW102", topic, queues, HashMap::new()).await.expect("create topic");
    for _ in 0..100 {
        if p.fetch_publish_message_queues(topic).await.is_ok_and(|q| !q.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("topic {topic} never got a route");
}

fn msg(topic: &str, tag: &str, key: &str, body: &str) -> Message {
    Message::builder().topic(topic).tags(tag).key(key).body_slice(body.as_bytes()).build_unchecked()
}

fn body_of(m: &MessageExt) -> String {
    m.body().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

async fn wait_for(seen: &Arc<Mutex<Vec<String>>>, n: usize, secs: u64) -> Vec<String> {
    for _ in 0..secs * 10 {
        if seen.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_single_and_batch_then_push_consume_with_tag_filter() {
    let s = Server::start(2, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg").await;
    create_topic(&mut p, "CompatOrders", 4).await;
    let mut offset_ids = BTreeSet::new();
    for i in 0..20 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let r = p
            .send_with_timeout(msg("CompatOrders", tag, &format!("k{i}"), &format!("m{i}")), 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.send_status, SendStatus::SendOk);
        offset_ids.insert(r.offset_msg_id.clone().unwrap());
    }
    let batch: Vec<Message> =
        (0..10).map(|i| msg("CompatOrders", "TagA", &format!("b{i}"), &format!("batch{i}"))).collect();
    let br = p.send_batch(batch).await.unwrap();
    assert_eq!(br.send_status, SendStatus::SendOk);

    let (mut c, all) = push_consumer(&ns, "compat_cg_all", "CompatOrders", MessageSelector::by_tag("*")).await;
    let (mut t, tagged) = push_consumer(&ns, "compat_cg_tag", "CompatOrders", MessageSelector::by_tag("TagB")).await;

    let got: BTreeSet<String> = wait_for(&all, 30, 40).await.into_iter().collect();
    assert_eq!(got.len(), 30, "every single and batch message consumed: {got:?}");
    let tag_b: BTreeSet<String> = wait_for(&tagged, 10, 20).await.into_iter().collect();
    let expected: BTreeSet<String> = (0..20).filter(|i| i % 2 == 1).map(|i| format!("m{i}")).collect();
    assert_eq!(tag_b, expected, "the TagB subscription sees exactly the TagB messages");
    c.shutdown().await;
    t.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_sends_keep_per_key_order_and_lite_pull_reads_them() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_order").await;
    create_topic(&mut p, "CompatSeq", 4).await;
    for i in 0..40u64 {
        let key = i % 4;
        let m = msg("CompatSeq", "T", &format!("key{key}"), &format!("{key}:{i}"));
        let r = p
            .send_with_selector(m, |mqs, _m, k: &u64| Some(mqs[(*k as usize) % mqs.len()].clone()), key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.send_status, SendStatus::SendOk);
    }
    let c = DefaultLitePullConsumer::builder(rt("lite"))
        .consumer_group("compat_lite".to_string())
        .name_server_addr(ns.clone())
        .auto_commit(true)
        .build()
        .unwrap();
    c.start().await.unwrap();
    let queues = c.fetch_message_queues("CompatSeq").await.unwrap();
    assert_eq!(queues.len(), 4);
    c.assign(queues.clone()).await.unwrap();
    for q in &queues {
        c.seek(q, 0).await.unwrap();
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut total = 0;
    for _ in 0..100 {
        for m in c.poll_with_timeout(500).await {
            let b = body_of(&m);
            let (k, i) = b.split_once(':').unwrap();
            seen.entry(k.to_string()).or_default().push(i.parse().unwrap());
            total += 1;
        }
        if total >= 40 {
            break;
        }
    }
    assert_eq!(total, 40);
    for (k, v) in seen {
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(v, sorted, "key {k} kept its order");
    }
    c.shutdown().await;
    p.shutdown().await;
}

async fn push_consumer(
    ns: &str,
    group: &str,
    topic: &str,
    selector: MessageSelector,
) -> (DefaultMQPushConsumer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut c = DefaultMQPushConsumer::builder(rt("push-sel"))
        .consumer_group(group.to_string())
        .name_server_addr(ns.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    c.subscribe_with_selector(topic, Some(selector)).await.unwrap();
    c.register_message_listener_concurrently(move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
        sink.lock().unwrap().extend(msgs.iter().map(|m| body_of(m)));
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    });
    c.start().await.unwrap();
    (c, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_subscription_and_delay_level_with_a_real_client() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_sql").await;
    create_topic(&mut p, "CompatSql", 2).await;
    for price in 0..10 {
        let m = Message::builder()
            .topic("CompatSql")
            .tags(if price % 2 == 0 { "even" } else { "odd" })
            .body_slice(format!("p{price}").as_bytes())
            .raw_property("price", price.to_string())
            .unwrap()
            .build_unchecked();
        p.send_with_timeout(m, 5_000).await.unwrap().unwrap();
    }
    let (mut c, seen) =
        push_consumer(&ns, "compat_sql", "CompatSql", MessageSelector::by_sql("price > 5 AND TAGS = 'odd'")).await;
    let got: BTreeSet<String> = wait_for(&seen, 2, 30).await.into_iter().collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after: BTreeSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(got, ["p7".to_string(), "p9".to_string()].into_iter().collect::<BTreeSet<_>>());
    assert_eq!(got, got_after, "nothing outside the SQL92 filter is delivered");
    c.shutdown().await;

    create_topic(&mut p, "CompatDelay", 1).await;
    let (mut d, delayed) = push_consumer(&ns, "compat_delay", "CompatDelay", MessageSelector::by_tag("*")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = std::time::Instant::now();
    let m = Message::builder().topic("CompatDelay").body_slice(b"later").delay_level(1).build_unchecked();
    p.send_with_timeout(m, 5_000).await.unwrap().unwrap();
    let got = wait_for(&delayed, 1, 10).await;
    assert_eq!(got, vec!["later".to_string()]);
    assert!(sent.elapsed() >= Duration::from_millis(990), "delivered after its 1 s delay level: {:?}", sent.elapsed());
    d.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_message_and_request_reply_with_a_real_client() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_timer").await;
    create_topic(&mut p, "CompatTimer", 1).await;
    let (mut d, timed) = push_consumer(&ns, "compat_timer", "CompatTimer", MessageSelector::by_tag("*")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = std::time::Instant::now();
    let m = Message::builder().topic("CompatTimer").body_slice(b"in 1500 ms").delay_millis(1500).build_unchecked();
    p.send_with_timeout(m, 5_000).await.unwrap().unwrap();
    assert_eq!(wait_for(&timed, 1, 10).await, vec!["in 1500 ms".to_string()]);
    assert!(sent.elapsed() >= Duration::from_millis(1490), "timer message early: {:?}", sent.elapsed());
    d.shutdown().await;

    // Request-reply: the responder answers with MessageUtil::create_reply_message (SEND_REPLY_MESSAGE).
    create_topic(&mut p, "CompatAsk", 1).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageExt>();
    let mut service = DefaultMQPushConsumer::builder(rt("responder"))
        .consumer_group("compat_service".to_string())
        .name_server_addr(ns.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    service.subscribe_with_selector("CompatAsk", Some(MessageSelector::by_tag("*"))).await.unwrap();
    service.register_message_listener_concurrently(move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
        for m in msgs {
            let _ = tx.send((*m).clone());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    });
    service.start().await.unwrap();
    let responder = producer(&ns, "compat_responder").await;
    let answering = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let answer = format!("pong:{}", body_of(&m));
            let reply = MessageUtil::create_reply_message(&m.message, answer.as_bytes()).unwrap();
            responder.send_with_timeout(reply, 5_000).await.unwrap().unwrap();
        }
    });
    let reply = p.request(msg("CompatAsk", "q", "k", "ping"), 10_000).await.unwrap();
    let body = reply.get_body().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    assert_eq!(body, "pong:ping");
    service.shutdown().await;
    answering.abort();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_reset_reaches_a_running_real_consumer() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_reset").await;
    create_topic(&mut p, "CompatReset", 1).await;
    for i in 0..4 {
        p.send_with_timeout(msg("CompatReset", "t", "k", &format!("old{i}")), 5_000).await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = common::epoch_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..4 {
        p.send_with_timeout(msg("CompatReset", "t", "k", &format!("new{i}")), 5_000).await.unwrap().unwrap();
    }
    let (mut c, seen) = push_consumer(&ns, "compat_reset", "CompatReset", MessageSelector::by_tag("*")).await;
    assert_eq!(wait_for(&seen, 8, 30).await.len(), 8);
    tokio::time::sleep(Duration::from_secs(6)).await; // its offsets are persisted every 5 s
    let ns2 = ns.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(common::binary())
            .args(["admin", "--namesrv", &ns2, "--json", "group", "reset-offset", "compat_reset", "CompatReset"])
            .arg(format!("--to-time={cut}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(rows.contains("\"offset\": 4"), "reset to the first message after the cut: {rows}");
    // The client applies RESET_CONSUMER_CLIENT_OFFSET after its 10 s pause, then replays.
    let all = wait_for(&seen, 12, 40).await;
    assert_eq!(all.len(), 12, "{all:?}");
    assert!(all[8..].iter().all(|b| b.starts_with("new")), "only messages after the cut replayed: {all:?}");
    c.shutdown().await;
    p.shutdown().await;
}

struct LocalTx;

impl TransactionListener for LocalTx {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        match msg.get_body().map(|b| b.as_ref()) {
            Some(b"commit") => LocalTransactionState::CommitMessage,
            Some(b"rollback") => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        LocalTransactionState::CommitMessage
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_with_check_back_and_consumer_retry_with_a_real_client() {
    let s = Server::start_fast(1);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_tx_setup").await;
    create_topic(&mut p, "CompatTx", 1).await;
    let mut tx = TransactionMQProducer::builder(rt("tx"))
        .producer_group("compat_tx".to_string())
        .name_server_addr(ns.clone())
        .send_msg_timeout(5_000)
        .transaction_listener(LocalTx)
        .build();
    tx.start().await.unwrap();
    let (mut c, seen) = push_consumer(&ns, "compat_tx_cg", "CompatTx", MessageSelector::by_tag("*")).await;
    for body in ["commit", "rollback", "unknown"] {
        let m = Message::builder().topic("CompatTx").body_slice(body.as_bytes()).build_unchecked();
        tx.send_message_in_transaction::<(), _>(m, None).await.unwrap();
    }
    let got: BTreeSet<String> = wait_for(&seen, 2, 30).await.into_iter().collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: BTreeSet<String> = seen.lock().unwrap().iter().cloned().collect();
    assert_eq!(got, ["commit".to_string(), "unknown".to_string()].into_iter().collect::<BTreeSet<_>>());
    assert_eq!(got, after, "the rolled-back message never appears");
    c.shutdown().await;
    tx.shutdown().await;

    // Consumption retry: ReconsumeLater sends the message back; it returns through %RETRY%.
    create_topic(&mut p, "CompatRetry", 1).await;
    let attempts = Arc::new(Mutex::new(Vec::<(String, i32)>::new()));
    let sink = attempts.clone();
    let mut r = DefaultMQPushConsumer::builder(rt("retry"))
        .consumer_group("compat_retry".to_string())
        .name_server_addr(ns.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    r.subscribe_with_selector("CompatRetry", Some(MessageSelector::by_tag("*"))).await.unwrap();
    r.register_message_listener_concurrently(move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
        let m = msgs[0];
        sink.lock().unwrap().push((m.topic().to_string(), m.reconsume_times()));
        Ok(if m.reconsume_times() == 0 {
            ConsumeConcurrentlyStatus::ReconsumeLater
        } else {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    });
    r.start().await.unwrap();
    p.send_with_timeout(msg("CompatRetry", "t", "k", "job"), 5_000).await.unwrap().unwrap();
    for _ in 0..200 {
        if attempts.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].1, 1, "redelivered once by the broker: {seen:?}");
    r.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_with_a_real_client() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    let mut p = producer(&ns, "compat_pg_bc").await;
    create_topic(&mut p, "CompatBroadcast", 2).await;
    let mut members = Vec::new();
    for i in 0..2 {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut c = DefaultMQPushConsumer::builder(rt(if i == 0 { "bc0" } else { "bc1" }))
            .consumer_group("compat_bc".to_string())
            .name_server_addr(ns.clone())
            .message_model(MessageModel::Broadcasting)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        c.subscribe_with_selector("CompatBroadcast", Some(MessageSelector::by_tag("*"))).await.unwrap();
        c.register_message_listener_concurrently(move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            sink.lock().unwrap().extend(msgs.iter().map(|m| body_of(m)));
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        });
        c.start().await.unwrap();
        members.push((c, seen));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        p.send_with_timeout(msg("CompatBroadcast", "t", "k", &format!("n{i}")), 5_000).await.unwrap().unwrap();
    }
    for (c, seen) in &mut members {
        let got: BTreeSet<String> = wait_for(seen, 4, 30).await.into_iter().collect();
        assert_eq!(got.len(), 4, "every member receives every message: {got:?}");
        c.shutdown().await;
    }
    p.shutdown().await;
}

const ACL: &str = r#"
accounts:
  - accessKey: compat-ops
    secretKey: ops-secret
    admin: true
  - accessKey: compat-app
    secretKey: app-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - CompatAcl=PUB|SUB
"#;

fn acl_hook(ak: &str, sk: &str) -> Arc<dyn rocketmq_transport::api::RPCHook> {
    let credentials = rocketmq_client_rust::SessionCredentials::with_keys(ak.to_string(), sk.to_string());
    Arc::new(rocketmq_client_rust::AclClientRPCHook::new(credentials))
}

async fn signed_producer(ns: &str, group: &str, ak: &str, sk: &str) -> DefaultMQProducer {
    let mut p = DefaultMQProducer::builder(rt("acl-producer"))
        .producer_group(group.to_string())
        .name_server_addr(ns.to_string())
        .send_msg_timeout(5_000)
        .rpc_hook(acl_hook(ak, sk))
        .build();
    p.start().await.expect("producer start");
    p
}

/// The client's own ACL hook (`AclClientRpcHook`, the Java `AclClientRPCHook`'s signature) is
/// accepted unchanged; a wrong secret is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_by_the_clients_acl_hook_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("plain_acl.yml");
    std::fs::write(&acl, ACL).unwrap();
    let s = Server::start(1, &["--acl-file", acl.to_str().unwrap()]);
    let ns = s.namesrv();
    let mut ops = signed_producer(&ns, "compat_acl_ops", "compat-ops", "ops-secret").await;
    create_topic(&mut ops, "CompatAcl", 2).await;
    let mut app = signed_producer(&ns, "compat_acl_pg", "compat-app", "app-secret").await;
    for i in 0..5 {
        let r = app.send_with_timeout(msg("CompatAcl", "T", &format!("k{i}"), &format!("a{i}")), 5_000).await;
        assert_eq!(r.unwrap().unwrap().send_status, SendStatus::SendOk);
    }
    let c = DefaultLitePullConsumer::builder(rt("acl-lite"))
        .consumer_group("compat_acl_lite".to_string())
        .name_server_addr(ns.clone())
        .rpc_hook(acl_hook("compat-app", "app-secret"))
        .build()
        .unwrap();
    c.start().await.unwrap();
    let queues = c.fetch_message_queues("CompatAcl").await.unwrap();
    c.assign(queues.clone()).await.unwrap();
    for q in &queues {
        c.seek(q, 0).await.unwrap();
    }
    let mut got = BTreeSet::new();
    for _ in 0..40 {
        got.extend(c.poll_with_timeout(500).await.iter().map(|m| body_of(m)));
        if got.len() >= 5 {
            break;
        }
    }
    assert_eq!(got, (0..5).map(|i| format!("a{i}")).collect::<BTreeSet<_>>());
    let mut wrong = signed_producer(&ns, "compat_acl_bad", "compat-app", "not-the-secret").await;
    let r = wrong.send_with_timeout(msg("CompatAcl", "T", "k", "refused"), 5_000).await;
    assert!(r.is_err() || r.as_ref().is_ok_and(|o| o.is_none()), "a wrongly signed send was accepted: {r:?}");
    c.shutdown().await;
    for p in [&mut ops, &mut app, &mut wrong] {
        p.shutdown().await;
    }
}
