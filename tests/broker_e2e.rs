//! Black-box tests: a real `ringmq serve` process and the native client over TCP.

mod common;
#[path = "common/requests.rs"]
mod requests;

use common::{Server, wait_until};
use ringmq::client::consumer::decode_records;
use ringmq::client::{Connection, Message, Producer, PullConsumer, PushConsumer, StartFrom};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn pull_all(c: &PullConsumer, topic: &str, expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in c.queues(topic).unwrap() {
        let mut off = 0;
        loop {
            let r = c.pull(&q, off, 32, expr, 0).unwrap();
            if r.code != rs::SUCCESS {
                break;
            }
            out.extend(r.messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
            off = r.next_offset;
        }
    }
    out
}

#[test]
fn produce_and_pull_through_two_shards() {
    let s = Server::start(2, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Orders", 4).unwrap();
    let mut brokers = BTreeSet::new();
    for i in 0..100 {
        let r =
            p.send(&Message::new("Orders", format!("m{i}")).with_tags("TagA").with_keys(&[&format!("k{i}")])).unwrap();
        assert_eq!(r.offset_msg_id.len(), 32);
        brokers.insert(r.queue.broker_name.clone());
    }
    assert_eq!(brokers.len(), 2, "round robin spreads sends over both shards");
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let got: BTreeSet<String> = pull_all(&c, "Orders", "*").into_iter().collect();
    assert_eq!(got.len(), 100);
    assert!(pull_all(&c, "Orders", "TagB").is_empty(), "tag filter drops non-matching messages");
}

#[test]
fn auto_created_topic_batch_and_offsets() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    // Send through the template route: the broker auto-creates the topic.
    let r = conn.call(requests::raw_send("Auto", "first"), T).unwrap();
    assert_eq!(r.field("queueOffset"), Some("0"));
    // The auto-created topic reaches the name server with the shard's next registration.
    assert!(wait_until(Duration::from_secs(10), || PullConsumer::new(&s.namesrv(), "Probe").queues("Auto").is_ok()));
    let msgs: Vec<Message> = (0..10).map(|i| Message::new("Auto", format!("b{i}"))).collect();
    let res = p.send_batch(&msgs).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = res.queue.clone();
    assert_eq!(c.max_offset(&q).unwrap(), res.queue_offset + 10);
    assert_eq!(c.committed_offset(&q).unwrap(), Some(0), "young-queue rule: a new group starts at 0");
    c.commit(&q, 3).unwrap();
    assert_eq!(c.committed_offset(&q).unwrap(), Some(3));
    assert_eq!(c.offset_by_time(&q, 0).unwrap(), 0);
    assert_eq!(c.offset_by_time(&q, i64::MAX).unwrap(), c.max_offset(&q).unwrap());
}

#[test]
fn long_poll_is_woken_by_a_send() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("LP", 1).unwrap();
    p.send(&Message::new("LP", "zero")).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("LP").unwrap()[0].clone();
    let held = std::thread::spawn(move || {
        let start = Instant::now();
        let r = c.pull(&q, 1, 32, "*", 10_000).unwrap();
        (r, start.elapsed(), c, q)
    });
    // Sent once the broker holds the pull (not after a guessed pause).
    assert!(wait_until(T, || s.metric_sum("ringmq_long_poll_waiters") >= 1), "the pull was not held");
    Producer::new(&s.namesrv(), "PG2").send(&Message::new("LP", "woken")).unwrap();
    let (r, waited, c, q) = held.join().unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(&r.messages[0].body[..], b"woken");
    assert!(waited < Duration::from_secs(8), "woken by the send, not at its 10 s deadline: {waited:?}");
    // Nothing arrives: answered PULL_NOT_FOUND at the deadline.
    let start = Instant::now();
    let r = c.pull(&q, 2, 32, "*", 1_000).unwrap();
    assert_eq!(r.code, rs::PULL_NOT_FOUND);
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn push_consumers_share_queues_and_see_every_message() {
    let s = Server::start(2, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Push", 4).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let mk = |seen: Arc<Mutex<Vec<String>>>| {
        let mut c = PushConsumer::new(&s.namesrv(), "PushGroup", move |msgs| {
            seen.lock().unwrap().extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
            true
        });
        c.subscribe("Push", "*");
        c.start_from(StartFrom::First);
        c.start().unwrap();
        c
    };
    let a = mk(seen.clone());
    let b = mk(seen.clone());
    let push_count = |v: Vec<ringmq::client::MessageQueue>| v.into_iter().filter(|q| q.topic == "Push").count();
    assert!(
        wait_until(Duration::from_secs(20), || push_count(a.assigned()) + push_count(b.assigned()) == 8
            && push_count(a.assigned()) > 0
            && push_count(b.assigned()) > 0),
        "the two members never split the 8 queues"
    );
    // Each member also consumes its share of %RETRY%PushGroup (created by the broker on heartbeat).
    let push_only =
        |v: Vec<ringmq::client::MessageQueue>| v.into_iter().filter(|q| q.topic == "Push").collect::<Vec<_>>();
    let (qa, qb) = (push_only(a.assigned()), push_only(b.assigned()));
    assert_eq!(qa.len() + qb.len(), 8, "8 queues split over two members: {qa:?} {qb:?}");
    assert!(qa.iter().all(|q| !qb.contains(q)));
    for i in 0..200 {
        p.send(&Message::new("Push", format!("p{i}"))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    // At-least-once: a queue changing owner during the start-up rebalances may deliver a message twice.
    while seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = seen.lock().unwrap().clone();
    let unique: BTreeSet<&String> = got.iter().collect();
    let missing: Vec<String> = (0..200).map(|i| format!("p{i}")).filter(|b| !unique.contains(b)).collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}; assigned now {:?} / {:?}; server log:\n{}",
        a.assigned(),
        b.assigned(),
        s.log()
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn data_topics_and_offsets_survive_restart_and_kill9() {
    let mut s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Durable", 2).unwrap();
    for i in 0..50 {
        p.send(&Message::new("Durable", format!("d{i}"))).unwrap();
    }
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Durable").unwrap()[0].clone();
    c.heartbeat(&[("Durable".into(), "*".into())], "CLUSTERING").unwrap(); // creates group CG's config
    c.commit(&q, 7).unwrap();
    // Offsets persist every 5 s: wait for the file to have it (a restart also persists on the way out).
    let offsets = s.data_dir().join("0").join("config").join("offsets.json");
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(&offsets)
        .is_ok_and(|t| t.contains("Durable@CG"))));
    s.restart();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    assert_eq!(pull_all(&c, "Durable", "*").len(), 50);
    assert_eq!(c.committed_offset(&q).unwrap(), Some(7));
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    let groups = conn.call(Command::request(rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG), T).unwrap().body_bytes();
    let groups: serde_json::Value = serde_json::from_slice(&groups).unwrap();
    assert_eq!(groups["subscriptionGroupTable"]["CG"]["retryMaxTimes"], 16, "group config survives restart");
    let p = Producer::new(&s.namesrv(), "PG");
    for i in 50..80 {
        p.send(&Message::new("Durable", format!("d{i}"))).unwrap();
    }
    s.kill9();
    s.spawn().unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    assert_eq!(pull_all(&c, "Durable", "*").len(), 80, "every acknowledged sync send survives kill -9");
}

#[test]
fn acknowledged_sends_survive_sigkill_under_load() {
    let mut s = Server::start(1, &[]);
    Producer::new(&s.namesrv(), "PG").create_topic("Crash", 4).unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (ns, acked) = (s.namesrv(), acked.clone());
        workers.push(std::thread::spawn(move || {
            let p = Producer::new(&ns, "PG");
            for i in 0.. {
                let body = format!("w{w}-{i}");
                match p.send(&Message::new("Crash", body.clone())) {
                    Ok(_) => {
                        acked.lock().unwrap().insert(body);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Crash mid-load: once a few hundred sends are acknowledged and more are in flight.
    assert!(wait_until(Duration::from_secs(30), || acked.lock().unwrap().len() >= 300), "load did not run");
    s.kill9();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "load ran: {} acks", acked.len());
    s.spawn().unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let got: BTreeSet<String> = pull_all(&c, "Crash", "*").into_iter().collect();
    let missing: Vec<&String> = acked.difference(&got).collect();
    assert!(missing.is_empty(), "{} acknowledged messages lost, e.g. {:?}", missing.len(), missing.first());
}

#[test]
fn query_by_key_and_view_by_offset_id() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Q", 1).unwrap();
    let r = p.send(&Message::new("Q", "findme").with_keys(&["order-42", "user-7"])).unwrap();
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    let mut q = Command::request(rq::QUERY_MESSAGE);
    for (k, v) in [
        ("topic", "Q"),
        ("key", "user-7"),
        ("maxNum", "10"),
        ("beginTimestamp", "0"),
        ("endTimestamp", &i64::MAX.to_string()),
    ] {
        q.put(k, v);
    }
    let resp = conn.call(q.clone(), T).unwrap();
    let msgs = decode_records(&resp.body_bytes()).unwrap();
    assert_eq!(&msgs[0].body[..], b"findme");
    q.put("key", "nobody");
    assert_eq!(conn.request(q, T).unwrap().code, rs::QUERY_NOT_FOUND);
    let (_, offset) = ringmq::protocol::message::decode_offset_msg_id(&r.offset_msg_id).unwrap();
    let mut v = Command::request(rq::VIEW_MESSAGE_BY_ID);
    v.put("offset", offset);
    let msgs = decode_records(&conn.call(v, T).unwrap().body_bytes()).unwrap();
    assert_eq!(msgs[0].offset_msg_id(), r.offset_msg_id);
}

#[test]
fn bad_input_gets_clear_errors_and_only_its_connection_closes() {
    let s = Server::start(1, &[]);
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    let r = conn.request(Command::request(9999), T).unwrap();
    assert_eq!(r.code, rs::REQUEST_CODE_NOT_SUPPORTED);
    assert!(r.remark.unwrap().contains("9999"));
    // Oversized body → MESSAGE_ILLEGAL with a remark.
    let mut cmd = Command::request(rq::SEND_MESSAGE_V2);
    for (k, v) in [("a", "PG"), ("b", "Big"), ("e", "0"), ("g", "0")] {
        cmd.put(k, v);
    }
    let r = conn.request(cmd.with_body(vec![0u8; (4 << 20) + 1]), T).unwrap();
    assert_eq!(r.code, rs::MESSAGE_ILLEGAL, "{:?}", r.remark);
    // Bad topic name → INVALID_PARAMETER.
    let mut cmd = Command::request(rq::SEND_MESSAGE_V2);
    for (k, v) in [("a", "PG"), ("b", "bad topic"), ("e", "0")] {
        cmd.put(k, v);
    }
    assert_eq!(conn.request(cmd.with_body("x"), T).unwrap().code, rs::INVALID_PARAMETER);
    // A malformed frame closes that connection only.
    let bad = Connection::connect(&s.shard_addr(0), T).unwrap();
    bad.write_raw(&[0, 0, 0, 10, 0, 0, 0, 6, b'{', b'n', b'o', b'p', b'e', b'!']).unwrap();
    assert!(wait_until(Duration::from_secs(5), || bad.is_closed()));
    let huge = Connection::connect(&s.shard_addr(0), T).unwrap();
    huge.write_raw(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || huge.is_closed()),
        "a frame over the 16 MiB limit closes its connection"
    );
    let r = conn.request(Command::request(rq::GET_ALL_TOPIC_CONFIG), T).unwrap();
    assert_eq!(r.code, rs::SUCCESS, "the good connection still works");
}

#[test]
fn startup_errors_are_clear() {
    let s = Server::start(1, &[]);
    let port = |a: String| a.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    let (base, ns) = (port(s.shard_addr(0)), port(s.namesrv()));
    // Same data directory: refused by the lock.
    let mut second = Server::with_ports(s.dir.clone(), 0, 0, 1);
    let err = second.spawn().unwrap_err();
    assert!(err.contains("in use by another ringmq process"), "{err}");
    // Port in use.
    let tmp = tempfile::tempdir().unwrap();
    let mut third = Server::with_ports(tmp.path().to_path_buf(), base, ns + 200, 1);
    let err = third.spawn().unwrap_err();
    assert!(err.contains("already in use"), "{err}");
    // Unwritable data directory.
    let mut fourth = Server::with_ports("/proc/ringmq-data".into(), 0, 0, 1);
    let err = fourth.spawn().unwrap_err();
    assert!(err.contains("data directory"), "{err}");
}

#[test]
fn name_server_routes_and_cluster_info() {
    let s = Server::start(2, &[]);
    let ns = Connection::connect(&s.namesrv(), T).unwrap();
    let mut r = Command::request(rq::GET_ROUTEINFO_BY_TOPIC);
    r.put("topic", "TBW102");
    let body = ns.call(r.clone(), T).unwrap().body_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("ringmq-0") && text.contains("ringmq-1") && !text.contains(' '), "{text}");
    r.put("topic", "NoSuchTopic");
    assert_eq!(ns.request(r, T).unwrap().code, rs::TOPIC_NOT_EXIST);
    let info = ns.call(Command::request(rq::GET_BROKER_CLUSTER_INFO), T).unwrap().body_bytes();
    assert!(String::from_utf8_lossy(&info).contains("DefaultCluster"));
}

#[test]
fn separate_name_server_and_broker_processes() {
    // A name-server-only process, and a broker-only process that registers with it.
    let ns = Server::start(1, &["--role", "namesrv"]);
    let b = Server::start(1, &["--role", "broker", "--namesrv", &ns.namesrv()]);
    let p = Producer::new(&ns.namesrv(), "PG");
    p.create_topic("Split", 2).unwrap();
    p.send(&Message::new("Split", "via external name server")).unwrap();
    let c = PullConsumer::new(&ns.namesrv(), "CG");
    assert_eq!(pull_all(&c, "Split", "*"), vec!["via external name server".to_string()]);
    drop(b);
}

#[test]
fn memlock_too_low_is_explained() {
    // Root is exempt from the memlock limit, so drop to `nobody` with a 64 KiB limit.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "prlimit", "--memlock=65536:65536"])
        .arg(common::binary())
        .args(["serve", "--shards", "1", "--listen-port", "0", "--namesrv-port", "0", "--data-dir"])
        .arg(tmp.path())
        .output();
    let Ok(out) = out else {
        eprintln!("memlock_too_low_is_explained: SKIPPED, setpriv or prlimit missing on this host");
        return;
    };
    if String::from_utf8_lossy(&out.stderr).contains("setpriv:") {
        eprintln!("memlock_too_low_is_explained: SKIPPED, not permitted to change uid here");
        return;
    }
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RLIMIT_MEMLOCK") && err.contains("LimitMEMLOCK=infinity"), "{err}");
}

#[test]
fn admin_cli_topics_groups_and_messages() {
    let s = Server::start(2, &[]);
    s.admin(&["topic", "create", "Adm", "--queues", "2"]);
    let topics = s.admin(&["topic", "list"]);
    assert!(topics.as_array().unwrap().iter().any(|t| t["topic"] == "Adm"));
    let sent = s.admin(&["message", "send", "Adm", "hello admin", "--keys", "k-1"]);
    let id = sent["offset_msg_id"].as_str().unwrap().to_string();
    let by_id = s.admin(&["message", "get", "--id", &id]);
    assert_eq!(by_id[0]["body"], "hello admin");
    let by_key = s.admin(&["message", "get", "--topic", "Adm", "--key", "k-1"]);
    assert_eq!(by_key[0]["offset_msg_id"], id.as_str());
    let status = s.admin(&["topic", "status", "Adm"]);
    assert_eq!(status.as_array().unwrap().len(), 4, "2 queues on each of 2 shards");
    let total: u64 = status.as_array().unwrap().iter().map(|r| r["max"].as_u64().unwrap()).sum();
    assert_eq!(total, 1);
    s.admin(&["group", "reset-offset", "AdmGroup", "Adm", "--to-time", "0"]);
    let progress = s.admin(&["group", "progress", "AdmGroup", "Adm"]);
    let lag: u64 = progress.as_array().unwrap().iter().map(|r| r["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, 1, "reset to the beginning: the one message is unconsumed");
    let groups = s.admin(&["group", "list"]);
    assert!(groups.as_array().unwrap().iter().any(|g| g["group"] == "AdmGroup"), "{groups}");
    assert!(progress.as_array().unwrap().iter().all(|r| r.get("lag_ms").is_some()), "{progress}");
    let brokers = s.admin(&["broker", "status"]);
    assert_eq!(brokers.as_array().unwrap().len(), 2);
    let config = s.admin(&["broker", "config"]);
    let names: std::collections::BTreeSet<&str> = config
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "brokerName")
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "one brokerName per shard: {config}");
}

#[test]
fn metrics_endpoint_reports_traffic_and_lag() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Metered", 1).unwrap();
    for i in 0..5 {
        p.send(&Message::new("Metered", format!("m{i}"))).unwrap();
    }
    let c = PullConsumer::new(&s.namesrv(), "MeterGroup");
    let q = c.queues("Metered").unwrap()[0].clone();
    c.pull(&q, 0, 2, "*", 0).unwrap();
    c.commit(&q, 2).unwrap();
    let scrape = || s.scrape_metrics();
    // Shards publish their counters once a second: wait for the committed offset's lag to show.
    let mut text = String::new();
    wait_until(Duration::from_secs(10), || {
        text = scrape();
        text.contains(r#"queue="0:0"} 3"#)
    });
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains(r#"ringmq_messages_in_total{topic="Metered"} 5"#), "{text}");
    assert!(text.contains(r#"ringmq_messages_out_total{topic="Metered"} 2"#), "{text}");
    assert!(
        text.contains(r#"ringmq_consumer_lag_messages{group="MeterGroup",topic="Metered",queue="0:0"} 3"#),
        "{text}"
    );
    assert!(text.contains("ringmq_commitlog_flush_latency_us"), "{text}");
    assert!(text.contains(r#"ringmq_requests_total{code="310"}"#), "{text}");
}

#[test]
fn a_graceful_stop_answers_a_held_pull_before_the_process_exits() {
    let mut s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Held", 1).unwrap();
    let c = PullConsumer::new(&s.namesrv(), "CG");
    let q = c.queues("Held").unwrap()[0].clone();
    let held = std::thread::spawn(move || {
        let asked = Instant::now();
        (c.pull(&q, 0, 32, "*", 15_000), asked.elapsed())
    });
    assert!(wait_until(T, || s.metric_sum("ringmq_long_poll_waiters") >= 1), "the pull is held");
    let status = s.stop().expect("the broker exits");
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let (answer, waited) = held.join().unwrap();
    let answer = answer.expect("answered before the connection closed, not cut off");
    assert_eq!(answer.code, rs::PULL_NOT_FOUND);
    assert!(waited < Duration::from_secs(14), "answered by the stop, not at its deadline: {waited:?}");
}
