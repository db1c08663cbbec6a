//! The administration codes the Java admin tools call (mqadmin, dashboard, exporter), against a
//! started `ringmq` through the native client. Each body is checked field by field against the
//! fastjson shape of RocketMQ's class (field names as its getters produce them, `MessageQueue` map
//! keys as JSON objects): `TopicStatsTable`/`TopicOffset`, `ConsumeStats`/`OffsetWrapper`,
//! `ConsumerConnection`/`Connection`/`SubscriptionData`, `ProducerConnection`, `ConsumeStatsList`,
//! `GroupList`, `QueryConsumeTimeSpanBody`/`QueueTimeSpan`, broker properties text, and the relay
//! of GET_CONSUMER_RUNNING_INFO to the consumer's connection.

mod common;

use common::Server;
use ringmq::client::{Connection, Message, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use ringmq::protocol::offset_table::queue_key;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const TOPIC: &str = "AdminT";
const GROUP: &str = "AdminG";

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The value that follows a `MessageQueue` key in a fastjson map.
fn entry_for(body: &str, broker: &str, qid: i32, topic: &str) -> Value {
    let key = format!("{}:", queue_key(broker, qid, topic));
    let at = body.find(&key).unwrap_or_else(|| panic!("no entry for queue {qid} in {body}")) + key.len();
    serde_json::Deserializer::from_str(&body[at..]).into_iter::<Value>().next().unwrap().unwrap()
}

fn ask(conn: &Connection, code: i32, fields: &[(&str, &str)]) -> Command {
    let mut cmd = Command::request(code);
    for (k, v) in fields {
        cmd.put(k, v);
    }
    conn.request(cmd, T).unwrap()
}

fn body(r: &Command) -> String {
    assert_eq!(r.code, rs::SUCCESS, "code {} remark {:?}", r.code, r.remark);
    String::from_utf8(r.body_bytes().to_vec()).unwrap()
}

/// A consumer connection: heartbeats group AdminG (tags TagA || TagB) and producer group AdminPG,
/// and answers GET_CONSUMER_RUNNING_INFO as a Java consumer would.
fn consumer(s: &Server) -> Connection {
    let conn = Connection::connect(&s.shard_addr(0), T).unwrap();
    conn.on_server_request(rq::GET_CONSUMER_RUNNING_INFO, |req| {
        let info = serde_json::json!({"properties": {"consumerGroup": req.field("consumerGroup")},
            "subscriptionSet": [], "mqTable": {}, "statusTable": {}});
        Some(req.response_to(rs::SUCCESS).with_body(info.to_string()))
    });
    let hb = serde_json::json!({
        "clientID": "admin-client@1",
        "consumerDataSet": [{"groupName": GROUP, "consumeType": "CONSUME_ACTIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "TagA || TagB", "expressionType": "TAG"}]}],
        "producerDataSet": [{"groupName": "AdminPG"}],
    });
    let r = conn.request(Command::request(rq::HEART_BEAT).with_body(hb.to_string()), T).unwrap();
    assert_eq!(r.code, rs::SUCCESS);
    conn
}

#[test]
fn admin_codes_answer_with_rocketmqs_bodies() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic(TOPIC, 2).unwrap();
    for i in 0..6 {
        p.send(&Message::new(TOPIC, format!("m{i}")).with_tags("TagA")).unwrap();
    }
    let c = PullConsumer::new(&s.namesrv(), GROUP);
    let queues = c.queues(TOPIC).unwrap();
    let q0 = queues.iter().find(|q| q.queue_id == 0).unwrap().clone();
    let broker = q0.broker_name.clone();
    let max0 = c.max_offset(&q0).unwrap();
    assert!(max0 >= 2, "queue 0 holds {max0}");
    c.commit(&q0, 1).unwrap();
    let _consumer = consumer(&s);
    let admin = Connection::connect(&s.shard_addr(0), T).unwrap();

    // 202 GET_TOPIC_STATS_INFO → TopicStatsTable {offsetTable: {MessageQueue: TopicOffset}}
    let b = body(&ask(&admin, rq::GET_TOPIC_STATS_INFO, &[("topic", TOPIC)]));
    let e = entry_for(&b, &broker, 0, TOPIC);
    assert_eq!(keys(&e), set(&["lastUpdateTimestamp", "maxOffset", "minOffset"]));
    assert_eq!((e["minOffset"].as_u64(), e["maxOffset"].as_u64()), (Some(0), Some(max0)));
    assert!(e["lastUpdateTimestamp"].as_i64().unwrap() > 1_600_000_000_000);
    let r = ask(&admin, rq::GET_TOPIC_STATS_INFO, &[("topic", "NoSuchTopic")]);
    assert_eq!(r.code, rs::TOPIC_NOT_EXIST);

    // 208 GET_CONSUME_STATS → ConsumeStats {consumeTps, offsetTable: {MessageQueue: OffsetWrapper}}
    let b = body(&ask(&admin, rq::GET_CONSUME_STATS, &[("consumerGroup", GROUP), ("topic", TOPIC)]));
    assert!(b.starts_with("{\"consumeTps\":"), "{b}");
    let e = entry_for(&b, &broker, 0, TOPIC);
    assert_eq!(keys(&e), set(&["brokerOffset", "consumerOffset", "lastTimestamp", "pullOffset"]));
    assert_eq!((e["brokerOffset"].as_u64(), e["consumerOffset"].as_u64()), (Some(max0), Some(1)));
    assert!(e["lastTimestamp"].as_i64().unwrap() > 1_600_000_000_000, "store time of the consumed message");
    assert_eq!(entry_for(&b, &broker, 1, TOPIC)["consumerOffset"].as_u64(), Some(0));

    // 317 GET_BROKER_CONSUME_STATS → ConsumeStatsList {brokerAddr, consumeStatsList: [{group: [ConsumeStats]}], totalDiff}
    let b = body(&ask(&admin, rq::GET_BROKER_CONSUME_STATS, &[("isOrder", "false")]));
    assert!(b.starts_with("{\"brokerAddr\":"), "{b}");
    assert!(b.contains(&format!("\"{GROUP}\":[{{\"consumeTps\":")), "{b}");
    let total: u64 = b.rsplit("\"totalDiff\":").next().unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(b.ends_with(",\"totalInflightDiff\":0}"), "5.x's field: {b}");
    assert_eq!(total, 6 - 1, "six sent, one consumed");

    // 203 GET_CONSUMER_CONNECTION_LIST → ConsumerConnection
    let v: Value =
        serde_json::from_str(&body(&ask(&admin, rq::GET_CONSUMER_CONNECTION_LIST, &[("consumerGroup", GROUP)])))
            .unwrap();
    assert_eq!(
        keys(&v),
        set(&["connectionSet", "consumeFromWhere", "consumeType", "messageModel", "subscriptionTable"])
    );
    assert_eq!(v["consumeType"], "CONSUME_ACTIVELY");
    assert_eq!(v["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET");
    assert_eq!(v["messageModel"], "CLUSTERING");
    let conn = &v["connectionSet"][0];
    assert_eq!(keys(conn), set(&["clientAddr", "clientId", "language", "version"]));
    assert_eq!(conn["clientId"], "admin-client@1");
    assert_eq!(conn["language"], "RUST");
    assert!(conn["clientAddr"].as_str().unwrap().starts_with("127.0.0.1:"));
    let sub = &v["subscriptionTable"][TOPIC];
    assert_eq!(
        keys(sub),
        set(&["classFilterMode", "codeSet", "expressionType", "subString", "subVersion", "tagsSet", "topic"])
    );
    assert_eq!(sub["tagsSet"], serde_json::json!(["TagA", "TagB"]));
    assert_eq!(sub["codeSet"], serde_json::json!([2598919, 2598920]), "Java String.hashCode of the tags");
    let r = ask(&admin, rq::GET_CONSUMER_CONNECTION_LIST, &[("consumerGroup", "Nobody")]);
    assert_eq!(r.code, rs::CONSUMER_NOT_ONLINE);
    assert!(r.remark.unwrap_or_default().contains("not online"));

    // 204 GET_PRODUCER_CONNECTION_LIST → ProducerConnection {connectionSet}
    let v: Value =
        serde_json::from_str(&body(&ask(&admin, rq::GET_PRODUCER_CONNECTION_LIST, &[("producerGroup", "AdminPG")])))
            .unwrap();
    assert_eq!(keys(&v), set(&["connectionSet"]));
    assert_eq!(v["connectionSet"][0]["clientId"], "admin-client@1");
    assert_eq!(ask(&admin, rq::GET_PRODUCER_CONNECTION_LIST, &[("producerGroup", "Nobody")]).code, rs::SYSTEM_ERROR);

    // 300 QUERY_TOPIC_CONSUME_BY_WHO → GroupList {groupList}
    let v: Value =
        serde_json::from_str(&body(&ask(&admin, rq::QUERY_TOPIC_CONSUME_BY_WHO, &[("topic", TOPIC)]))).unwrap();
    assert_eq!(v, serde_json::json!({"groupList": [GROUP]}));

    // 303 QUERY_CONSUME_TIME_SPAN → QueryConsumeTimeSpanBody {consumeTimeSpanSet: [QueueTimeSpan]}
    let v: Value =
        serde_json::from_str(&body(&ask(&admin, rq::QUERY_CONSUME_TIME_SPAN, &[("topic", TOPIC), ("group", GROUP)])))
            .unwrap();
    let spans = v["consumeTimeSpanSet"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let span = spans.iter().find(|s| s["messageQueue"]["queueId"] == 0).unwrap();
    assert_eq!(
        keys(span),
        set(&[
            "consumeTimeStamp",
            "consumeTimeStampStr",
            "delayTime",
            "maxTimeStamp",
            "maxTimeStampStr",
            "messageQueue",
            "minTimeStamp",
            "minTimeStampStr"
        ])
    );
    assert_eq!(span["minTimeStampStr"].as_str().unwrap().len(), "yyyy-MM-dd#HH:mm:ss:SSS".len());
    assert_eq!(keys(&span["messageQueue"]), set(&["brokerName", "queueId", "topic"]));
    let (min, max, consumed) = (
        span["minTimeStamp"].as_i64().unwrap(),
        span["maxTimeStamp"].as_i64().unwrap(),
        span["consumeTimeStamp"].as_i64().unwrap(),
    );
    assert!(min > 1_600_000_000_000 && min <= consumed && consumed <= max, "{span}");
    assert!(span["delayTime"].as_i64().unwrap() >= 0);

    // 26 GET_BROKER_CONFIG → properties text, version header
    let r = ask(&admin, rq::GET_BROKER_CONFIG, &[]);
    let text = body(&r);
    let props: std::collections::BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(props.get("brokerName"), Some(&broker.as_str()));
    assert_eq!(props.get("flushDiskType"), Some(&"SYNC_FLUSH"));
    assert!(props.contains_key("brokerClusterName") && props.contains_key("listenPort"));
    assert!(props.contains_key("task_quota_us"), "ringmq's own settings follow");
    let version: Value = serde_json::from_str(r.field("version").unwrap()).unwrap();
    assert!(version.get("counter").is_some(), "DataVersion JSON: {version}");

    // 28 GET_BROKER_RUNTIME_INFO carries RocketMQ's key names (the dashboard's cluster page).
    let v: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_BROKER_RUNTIME_INFO, &[]))).unwrap();
    let t = &v["table"];
    assert_eq!(t["msgPutTotalTodayNow"], "6", "{t}");
    assert_eq!(t["putTps"].as_str().unwrap().split(' ').count(), 3, "10 s, 1 min, 10 min: {t}");
    assert!(t["bootTimestamp"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000_000);
    for k in ["brokerVersionDesc", "runtime", "getTransferedTps", "commitLogMaxOffset", "commitLogDiskRatio"] {
        assert!(t.get(k).is_some(), "{k} missing from {t}");
    }

    // `ringmq admin` shows the same views.
    let conns = s.admin(&["group", "connections", GROUP, TOPIC]);
    assert_eq!(conns[0]["client_id"], "admin-client@1", "{conns}");
    assert_eq!(conns[0]["consume_type"], "CONSUME_ACTIVELY");
    let progress = s.admin(&["group", "progress", GROUP, TOPIC]);
    let row0 = progress.as_array().unwrap().iter().find(|r| r["queue"] == 0).unwrap();
    assert_eq!((row0["consumer_offset"].as_u64(), row0["lag"].as_u64()), (Some(1), Some(max0 - 1)), "{progress}");
    assert!(row0["lag_ms"].as_i64().unwrap() >= 0);

    // 307 GET_CONSUMER_RUNNING_INFO → relayed to the consumer, its answer returned
    let r = ask(&admin, rq::GET_CONSUMER_RUNNING_INFO, &[("consumerGroup", GROUP), ("clientId", "admin-client@1")]);
    let v: Value = serde_json::from_str(&body(&r)).unwrap();
    assert_eq!(v["properties"]["consumerGroup"], GROUP, "the consumer's own answer");
    let r = ask(&admin, rq::GET_CONSUMER_RUNNING_INFO, &[("consumerGroup", GROUP), ("clientId", "gone@2")]);
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("not online"));
}

fn scrape(s: &Server) -> String {
    s.scrape_metrics()
}

#[test]
fn lag_series_are_capped_keeping_the_queues_furthest_behind() {
    let s = Server::start_with_config(1, ".toml", "max_lag_series_per_shard = 1\n");
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("Lagged", 2).unwrap();
    for i in 0..8 {
        p.send(&Message::new("Lagged", format!("m{i}"))).unwrap();
    }
    let c = PullConsumer::new(&s.namesrv(), "LagGroup");
    let mut queues = c.queues("Lagged").unwrap();
    queues.sort_by_key(|q| q.queue_id);
    let maxes: Vec<u64> = queues.iter().map(|q| c.max_offset(q).unwrap()).collect();
    assert!(maxes.iter().all(|&m| m >= 2), "{maxes:?}");
    c.commit(&queues[0], maxes[0]).unwrap(); // queue 0 caught up
    c.commit(&queues[1], 0).unwrap(); // queue 1 all behind
    let deadline = std::time::Instant::now() + T;
    let text = loop {
        let text = scrape(&s);
        if text.contains(r#"ringmq_consumer_lag_series_dropped{shard="0"} 1"#) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains(r#"ringmq_consumer_lag_series_dropped{shard="0"} 1"#), "{text}");
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("ringmq_consumer_lag_messages{")).collect();
    assert_eq!(
        series,
        [format!(r#"ringmq_consumer_lag_messages{{group="LagGroup",topic="Lagged",queue="0:1"}} {}"#, maxes[1])]
    );
}

#[test]
fn group_and_offset_administration() {
    let s = Server::start(1, &[]);
    let p = Producer::new(&s.namesrv(), "PG");
    p.create_topic("GrpT", 1).unwrap();
    p.send(&Message::new("GrpT", "x")).unwrap();
    let admin = Connection::connect(&s.shard_addr(0), T).unwrap();

    // 200 UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, seen by 201
    let cfg = serde_json::json!({"groupName": "MadeG", "retryMaxTimes": 5, "consumeEnable": true});
    let r =
        admin.request(Command::request(rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(cfg.to_string()), T).unwrap();
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let all: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, &[]))).unwrap();
    assert_eq!(all["subscriptionGroupTable"]["MadeG"]["retryMaxTimes"], 5);

    // 314 CLONE_GROUP_OFFSET, 43 GET_ALL_CONSUMER_OFFSET
    let c = PullConsumer::new(&s.namesrv(), "SrcG");
    let q = c.queues("GrpT").unwrap()[0].clone();
    c.commit(&q, 1).unwrap();
    let r = ask(&admin, rq::CLONE_GROUP_OFFSET, &[("srcGroup", "SrcG"), ("destGroup", "MadeG"), ("topic", "GrpT")]);
    assert_eq!(r.code, rs::SUCCESS);
    assert_eq!(PullConsumer::new(&s.namesrv(), "MadeG").committed_offset(&q).unwrap(), Some(1));
    let all: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_ALL_CONSUMER_OFFSET, &[]))).unwrap();
    assert_eq!(all["offsetTable"]["GrpT@MadeG"][q.queue_id.to_string()], 1, "{all}");

    // 207 DELETE_SUBSCRIPTIONGROUP with cleanOffset
    let r = ask(&admin, rq::DELETE_SUBSCRIPTIONGROUP, &[("groupName", "MadeG"), ("cleanOffset", "true")]);
    assert_eq!(r.code, rs::SUCCESS);
    let all: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_ALL_CONSUMER_OFFSET, &[]))).unwrap();
    assert!(all["offsetTable"].get("GrpT@MadeG").is_none(), "{all}");
    assert!(all["offsetTable"].get("GrpT@SrcG").is_some(), "{all}");

    // 45 GET_ALL_DELAY_OFFSET, 305 GET_SYSTEM_TOPIC_LIST_FROM_BROKER
    let d: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_ALL_DELAY_OFFSET, &[]))).unwrap();
    assert!(d["offsetTable"].is_object(), "{d}");
    let sys: Value = serde_json::from_str(&body(&ask(&admin, rq::GET_SYSTEM_TOPIC_LIST_FROM_BROKER, &[]))).unwrap();
    let sys: Vec<&str> = sys["topicList"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(sys.contains(&"TBW102") && !sys.contains(&"GrpT"), "{sys:?}");

    // 25 and 315: a clear remark, not a bare "not supported"
    let r = ask(&admin, rq::UPDATE_BROKER_CONFIG, &[]);
    assert_eq!(r.code, rs::REQUEST_CODE_NOT_SUPPORTED);
    assert!(r.remark.unwrap_or_default().contains("restart"));

    // Name server: 224 GET_TOPICS_BY_CLUSTER, 311 GET_SYSTEM_TOPIC_LIST_FROM_NS
    let ns = Connection::connect(&s.namesrv(), T).unwrap();
    let cluster = serde_json::from_str::<Value>(&body(&ask(&ns, rq::GET_BROKER_CLUSTER_INFO, &[]))).unwrap();
    let name = cluster["clusterAddrTable"].as_object().unwrap().keys().next().unwrap().clone();
    let topics: Value =
        serde_json::from_str(&body(&ask(&ns, rq::GET_TOPICS_BY_CLUSTER, &[("cluster", &name)]))).unwrap();
    assert!(topics["topicList"].as_array().unwrap().iter().any(|t| t == "GrpT"), "{topics}");
    let none: Value =
        serde_json::from_str(&body(&ask(&ns, rq::GET_TOPICS_BY_CLUSTER, &[("cluster", "Other")]))).unwrap();
    assert_eq!(none["topicList"], serde_json::json!([]));
    let sys: Value = serde_json::from_str(&body(&ask(&ns, rq::GET_SYSTEM_TOPIC_LIST_FROM_NS, &[]))).unwrap();
    assert!(sys["topicList"].as_array().unwrap().iter().any(|t| *t == name), "{sys}");
}
