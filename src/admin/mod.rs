//! `ringmq admin`: day-to-day operations over the protocol, through the name server (like mqadmin).
//! Tables by default, `--json` for scripts. Works against any RocketMQ-protocol cluster.

use crate::client::route::{ClientContext, REQUEST_TIMEOUT};
use crate::client::{ClientError, Message, MessageQueue, Producer, PullConsumer};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::admin_views::{ConsumeTimeSpanBody, ConsumerConnectionBody};
use crate::protocol::commands::body::decode_json;
use crate::protocol::commands::namesrv::{ClusterInfo, TopicList};
use crate::protocol::commands::topics::TopicRequest;
use crate::protocol::message::StoredMessage;
use serde_json::{Value, json};
use std::sync::Arc;

/// `ringmq admin cluster …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCmd {
    /// Brokers of every cluster, with their runtime statistics
    List,
    /// Every replica of every replica set: role, epoch, durable log end, lag behind its master
    Replicas,
    /// Moves a replica set's master to another in-sync replica (CONTROLLER_ELECT_MASTER)
    Elect {
        /// The replica set (broker name, e.g. ringmq-0)
        broker: String,
        /// The node to make master; it must be in the in-sync set
        #[arg(long)]
        node: u32,
        /// A controller (default: each name server's host, port + 2, until the leader answers)
        #[arg(long)]
        controller: Option<String>,
        /// Allow a node outside the in-sync set (a learner, or a lagging replica): acknowledged
        /// messages it lacks are lost
        #[arg(long)]
        unclean: bool,
    },
}

/// `ringmq admin topic …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicCmd {
    /// Create a topic on every broker
    Create {
        topic: String,
        #[arg(long, default_value_t = 8)]
        queues: u32,
    },
    /// Change a topic's queue count on every broker
    Update {
        topic: String,
        #[arg(long)]
        queues: u32,
    },
    /// Delete a topic from every broker and the name server
    Delete { topic: String },
    /// Every topic the name server knows
    List,
    /// A topic's route: brokers and queue counts
    Route { topic: String },
    /// Per queue: min and max offset and last store time
    Status { topic: String },
}

/// `ringmq admin group …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GroupCmd {
    /// Consumer groups known to the brokers (connected or with committed offsets)
    List,
    /// A group's progress on a topic: broker offset, consumer offset and lag (messages, ms) per queue
    Progress { group: String, topic: String },
    /// Members of a consumer group
    Connections { group: String, topic: String },
    /// Reset a group's offsets on a topic to the first message stored at or after a time (ms since
    /// the epoch; -1 = the end). Each broker commits the new offsets and pushes them to the group's
    /// running consumers (INVOKE_BROKER_TO_RESET_OFFSET, as `mqadmin resetOffsetByTime`).
    ResetOffset {
        group: String,
        topic: String,
        #[arg(long, allow_negative_numbers = true)]
        to_time: i64,
    },
}

/// `ringmq admin message …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MessageCmd {
    /// Look a message up by offset id, by key, or by queue and offset
    Get {
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        queue: Option<i32>,
        #[arg(long)]
        broker: Option<String>,
        #[arg(long)]
        queue_offset: Option<u64>,
    },
    /// Send one message
    Send {
        topic: String,
        body: String,
        #[arg(long)]
        tags: Option<String>,
        #[arg(long)]
        keys: Option<String>,
    },
    /// Print new messages of a topic as they arrive (Ctrl-C to stop)
    Tail { topic: String },
}

/// `ringmq admin broker …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BrokerCmd {
    /// Runtime statistics of every broker
    Status,
    /// Configuration of every broker (GET_BROKER_CONFIG)
    Config,
}

/// What to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCmd {
    #[command(subcommand)]
    Cluster(ClusterCmd),
    #[command(subcommand)]
    Topic(TopicCmd),
    #[command(subcommand)]
    Group(GroupCmd),
    #[command(subcommand)]
    Message(MessageCmd),
    #[command(subcommand)]
    Broker(BrokerCmd),
}

/// Options shared by all admin commands.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub security: crate::client::SecurityArgs,
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

fn err(m: impl Into<String>) -> ClientError {
    ClientError::NoRoute(m.into())
}

/// Broker name → master address, from the name server.
fn brokers(ctx: &ClientContext) -> Result<Vec<(String, String)>, ClientError> {
    let r = ctx.namesrv_call(Command::request(rq::GET_BROKER_CLUSTER_INFO))?;
    let info: ClusterInfo = decode_json("ClusterInfo", &r.body_bytes()).map_err(|e| err(e.to_string()))?;
    let masters = info.broker_addr_table.iter();
    Ok(masters.filter_map(|(name, bd)| Some((name.clone(), bd.master_addr()?.to_string()))).collect())
}

fn broker_call(ctx: &ClientContext, addr: &str, cmd: Command) -> Result<Command, ClientError> {
    ctx.conn(addr)?.call(cmd, REQUEST_TIMEOUT)
}

fn runtime(ctx: &ClientContext, addr: &str) -> Value {
    broker_call(ctx, addr, Command::request(rq::GET_BROKER_RUNTIME_INFO))
        .ok()
        .and_then(|r| serde_json::from_slice::<Value>(&r.body_bytes()).ok())
        .map(|v| v["table"].clone())
        .unwrap_or(Value::Null)
}

/// The brokers (name, address) serving a topic.
fn topic_brokers(ctx: &Arc<ClientContext>, topic: &str) -> Result<Vec<(String, String)>, ClientError> {
    let route = ctx.route(topic, true)?;
    let names: std::collections::BTreeSet<String> = route.read_queues.iter().map(|q| q.broker_name.clone()).collect();
    names.into_iter().map(|b| Ok((b.clone(), ctx.broker_addr(topic, &b)?))).collect()
}

/// Calls `code` with `fields` on a broker; the body of a SUCCESS answer.
fn admin_body(ctx: &ClientContext, addr: &str, code: i32, fields: &[(&str, &str)]) -> Result<String, ClientError> {
    let mut cmd = Command::request(code);
    for (k, v) in fields {
        cmd.put(k, v);
    }
    let r = broker_call(ctx, addr, cmd)?;
    if r.code != crate::protocol::codes::response::SUCCESS {
        return Err(err(format!("{addr}: code {} {}", r.code, r.remark.unwrap_or_default())));
    }
    Ok(String::from_utf8_lossy(&r.body_bytes()).into_owned())
}

/// Per queue of a topic: its offsets and the store time of its last message (GET_TOPIC_STATS_INFO).
fn topic_status(ctx: &Arc<ClientContext>, topic: &str) -> Result<Value, ClientError> {
    let mut rows = Vec::new();
    for (_, addr) in topic_brokers(ctx, topic)? {
        let body = admin_body(ctx, &addr, rq::GET_TOPIC_STATS_INFO, &[("topic", topic)])?;
        for (q, v) in crate::protocol::offset_table::decode_values(&body).map_err(err)? {
            rows.push(json!({"broker": q.broker_name, "queue": q.queue_id, "min": v["minOffset"],
                "max": v["maxOffset"], "last_store_ms": v["lastUpdateTimestamp"]}));
        }
    }
    rows.sort_by_key(|r| (r["broker"].as_str().map(str::to_string), r["queue"].as_i64()));
    Ok(Value::Array(rows))
}

/// Per queue: the broker's and the group's offsets, the lag in messages, and how long the next
/// unconsumed message has waited (GET_CONSUME_STATS and QUERY_CONSUME_TIME_SPAN).
fn group_progress(ctx: &Arc<ClientContext>, group: &str, topic: &str) -> Result<Value, ClientError> {
    let mut rows = Vec::new();
    for (_, addr) in topic_brokers(ctx, topic)? {
        let stats = admin_body(ctx, &addr, rq::GET_CONSUME_STATS, &[("consumerGroup", group), ("topic", topic)])?;
        let spans = admin_body(ctx, &addr, rq::QUERY_CONSUME_TIME_SPAN, &[("topic", topic), ("group", group)])?;
        let spans: ConsumeTimeSpanBody =
            decode_json("QueryConsumeTimeSpanBody", spans.as_bytes()).map_err(|e| err(e.to_string()))?;
        for (q, v) in crate::protocol::offset_table::decode_values(&stats).map_err(err)? {
            let (max, consumer) = (v["brokerOffset"].as_u64().unwrap_or(0), v["consumerOffset"].as_u64().unwrap_or(0));
            let span = spans
                .consume_time_span_set
                .iter()
                .find(|s| s.message_queue.queue_id == q.queue_id && s.message_queue.broker_name == q.broker_name);
            rows.push(json!({"broker": q.broker_name, "queue": q.queue_id, "broker_offset": max,
                "consumer_offset": consumer, "lag": max.saturating_sub(consumer),
                "lag_ms": span.map(|s| s.delay_time)}));
        }
    }
    rows.sort_by_key(|r| (r["broker"].as_str().map(str::to_string), r["queue"].as_i64()));
    Ok(Value::Array(rows))
}

/// The group's live consumers on the topic's brokers (GET_CONSUMER_CONNECTION_LIST).
fn group_connections(ctx: &Arc<ClientContext>, group: &str, topic: &str) -> Result<Value, ClientError> {
    let mut rows = Vec::new();
    for (broker, addr) in topic_brokers(ctx, topic)? {
        let Ok(body) = admin_body(ctx, &addr, rq::GET_CONSUMER_CONNECTION_LIST, &[("consumerGroup", group)]) else {
            continue; // not online on this broker
        };
        let v: ConsumerConnectionBody =
            decode_json("ConsumerConnection", body.as_bytes()).map_err(|e| err(e.to_string()))?;
        for c in &v.connection_set {
            rows.push(json!({"broker": broker, "client_id": c.client_id, "addr": c.client_addr,
                "language": c.language, "version": c.version, "model": v.message_model,
                "consume_type": v.consume_type}));
        }
    }
    Ok(Value::Array(rows))
}

/// Every broker's configuration as `key=value` rows (GET_BROKER_CONFIG).
fn broker_config(ctx: &Arc<ClientContext>) -> Result<Value, ClientError> {
    let mut rows = Vec::new();
    for (name, addr) in brokers(ctx)? {
        let text = admin_body(ctx, &addr, rq::GET_BROKER_CONFIG, &[])?;
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            rows.push(json!({"broker": name, "key": k, "value": v}));
        }
    }
    Ok(Value::Array(rows))
}

fn message_json(m: &StoredMessage) -> Value {
    json!({"topic": m.topic, "queue": m.queue_id, "queue_offset": m.queue_offset, "offset_msg_id": m.offset_msg_id(),
        "store_ms": m.store_timestamp_ms, "born_ms": m.born_timestamp_ms, "reconsume_times": m.reconsume_times,
        "properties": crate::protocol::message::properties_iter(&m.properties).collect::<std::collections::BTreeMap<_, _>>(),
        "body": String::from_utf8_lossy(&m.body)})
}

fn message_get(
    ctx: &Arc<ClientContext>,
    topic: Option<&str>,
    id: Option<&str>,
    key: Option<&str>,
    mq: Option<MessageQueue>,
    offset: Option<u64>,
) -> Result<Value, ClientError> {
    let pc = PullConsumer { ctx: ctx.clone(), group: "ringmq-admin".into() };
    if let Some(id) = id {
        return Ok(Value::Array(vec![message_json(&pc.view_by_id(id)?)]));
    }
    let topic = topic.ok_or_else(|| err("--topic is needed with --key or --queue"))?;
    if let Some(key) = key {
        return Ok(Value::Array(pc.query_by_key(topic, key, 32)?.iter().map(message_json).collect()));
    }
    let (mq, offset) =
        mq.zip(offset).ok_or_else(|| err("give --id, --key, or --queue with --broker and --queue-offset"))?;
    let r = pc.pull(&mq, offset, 1, "*", 0)?;
    Ok(Value::Array(r.messages.iter().map(message_json).collect()))
}

fn print(v: &Value, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    match v {
        Value::Array(rows) if rows.first().is_some_and(Value::is_object) => print_table(rows),
        other => println!("{}", serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Value]) {
    let cols: Vec<String> = rows[0].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let widths: Vec<usize> =
        cols.iter().map(|c| rows.iter().map(|r| cell(&r[c]).len()).max().unwrap_or(0).max(c.len())).collect();
    let line =
        |vals: Vec<String>| vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ");
    println!("{}", line(cols.iter().map(|c| c.to_uppercase()).collect()));
    for r in rows {
        println!("{}", line(cols.iter().map(|c| cell(&r[c])).collect()));
    }
}

/// Runs one admin command; returns the exit code.
pub fn run(a: &AdminArgs) -> i32 {
    match run_inner(a) {
        Ok(v) => {
            print(&v, a.json);
            0
        }
        Err(e) => {
            eprintln!("ringmq admin: {e}\n(is the name server at {} reachable? set --namesrv)", a.namesrv);
            1
        }
    }
}

fn run_inner(a: &AdminArgs) -> Result<Value, ClientError> {
    let security = a.security.resolve().map_err(err)?;
    let ctx = ClientContext::with_security(&a.namesrv, security);
    match &a.cmd {
        AdminCmd::Cluster(ClusterCmd::List) | AdminCmd::Broker(BrokerCmd::Status) => Ok(Value::Array(
            brokers(&ctx)?
                .into_iter()
                .map(|(n, addr)| json!({"broker": n, "addr": addr, "runtime": runtime(&ctx, &addr)}))
                .collect(),
        )),
        AdminCmd::Cluster(ClusterCmd::Replicas) => replicas(&ctx),
        AdminCmd::Cluster(ClusterCmd::Elect { broker, node, controller, unclean }) => {
            let controllers = controller.clone().map_or_else(|| controllers_of(&a.namesrv), |c| vec![c]);
            elect(&controllers, broker, *node, *unclean)
        }
        AdminCmd::Broker(BrokerCmd::Config) => broker_config(&ctx),
        AdminCmd::Topic(t) => topic_cmd(&ctx, t),
        AdminCmd::Group(g) => group_cmd(&ctx, g),
        AdminCmd::Message(m) => message_cmd(&ctx, m),
    }
}

/// Every registered replica with its replication state; lag is behind its set's master.
fn replicas(ctx: &ClientContext) -> Result<Value, ClientError> {
    let r = ctx.namesrv_call(Command::request(rq::GET_BROKER_CLUSTER_INFO))?;
    let info: ClusterInfo = decode_json("ClusterInfo", &r.body_bytes()).map_err(|e| err(e.to_string()))?;
    let num = |v: &Value, k: &str| v[k].as_str().and_then(|s| s.parse::<u64>().ok());
    let mut rows = Vec::new();
    for (name, bd) in &info.broker_addr_table {
        let states: Vec<(i64, &String, Value)> =
            bd.broker_addrs.iter().map(|(id, addr)| (*id, addr, runtime(ctx, addr))).collect();
        let master_end =
            states.iter().find(|(id, _, _)| *id == 0).and_then(|(_, _, t)| num(t, "commitLogFlushedOffset"));
        for (id, addr, t) in states {
            let end = num(&t, "commitLogFlushedOffset");
            rows.push(json!({
                "broker": name, "brokerId": id, "addr": addr,
                "role": t["replicaRole"].as_str().unwrap_or("unreachable"),
                "epoch": num(&t, "replicaEpoch"), "logEnd": end, "confirm": num(&t, "confirmOffset"),
                "inSyncSlaves": num(&t, "inSyncSlaves"),
                "lagBytes": master_end.zip(end).map(|(m, e)| m.saturating_sub(e)),
            }));
        }
    }
    Ok(Value::Array(rows))
}

/// The controllers beside the name servers: each one's host, port + 2.
fn controllers_of(namesrv: &str) -> Vec<String> {
    crate::protocol::split_addrs(namesrv)
        .into_iter()
        .filter_map(|a| {
            let (host, port) = a.rsplit_once(':')?;
            Some(format!("{host}:{}", port.parse::<u16>().ok()?.saturating_add(2)))
        })
        .collect()
}

/// Asks the controllers, one after another until the leader answers, to elect `node` master of
/// `broker`.
fn elect(controllers: &[String], broker: &str, node: u32, unclean: bool) -> Result<Value, ClientError> {
    let mut last = err("no controller given");
    for addr in controllers {
        let mut cmd = Command::request(rq::CONTROLLER_ELECT_MASTER);
        cmd.put("brokerName", broker);
        cmd.put("brokerId", node);
        cmd.put("unclean", unclean);
        let answer = crate::client::Connection::connect(addr, REQUEST_TIMEOUT)
            .and_then(|c| c.call(cmd, std::time::Duration::from_secs(5)));
        match answer {
            Ok(r) => return serde_json::from_slice(&r.body_bytes()).map_err(|e| err(e.to_string())),
            Err(ClientError::Refused { code, .. }) if code == rs::CONTROLLER_NOT_LEADER => {
                last = err(format!("{addr} is not the controller leader"));
            }
            Err(e @ ClientError::Refused { .. }) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn topic_cmd(ctx: &Arc<ClientContext>, t: &TopicCmd) -> Result<Value, ClientError> {
    match t {
        TopicCmd::Create { topic, queues } | TopicCmd::Update { topic, queues } => {
            Producer::with_context(ctx.clone(), "ringmq-admin").create_topic(topic, *queues)?;
            Ok(json!({"topic": topic, "queues_per_broker": queues}))
        }
        TopicCmd::Delete { topic } => {
            for (_, addr) in brokers(ctx)? {
                let c = TopicRequest { topic: topic.clone() }.request(rq::DELETE_TOPIC_IN_BROKER);
                broker_call(ctx, &addr, c)?;
            }
            ctx.namesrv_call(TopicRequest { topic: topic.clone() }.request(rq::DELETE_TOPIC_IN_NAMESRV))?;
            Ok(json!({"deleted": topic}))
        }
        TopicCmd::List => {
            let r = ctx.namesrv_call(Command::request(rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER))?;
            let list: TopicList = decode_json("TopicList", &r.body_bytes()).map_err(|e| err(e.to_string()))?;
            Ok(Value::Array(list.topic_list.into_iter().map(|t| json!({"topic": t})).collect()))
        }
        TopicCmd::Route { topic } => {
            let r = ctx.route(topic, true)?;
            Ok(json!({"brokers": r.brokers, "write_queues": r.write_queues.len(), "read_queues": r.read_queues.len()}))
        }
        TopicCmd::Status { topic } => topic_status(ctx, topic),
    }
}

fn group_cmd(ctx: &Arc<ClientContext>, g: &GroupCmd) -> Result<Value, ClientError> {
    match g {
        GroupCmd::List => {
            let mut groups = std::collections::BTreeSet::new();
            for (_, addr) in brokers(ctx)? {
                let r = broker_call(ctx, &addr, Command::request(rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG))?;
                let v: Value = serde_json::from_slice(&r.body_bytes()).map_err(|e| err(e.to_string()))?;
                groups.extend(v["subscriptionGroupTable"].as_object().into_iter().flat_map(|m| m.keys().cloned()));
            }
            Ok(Value::Array(groups.into_iter().map(|g| json!({"group": g})).collect()))
        }
        GroupCmd::Progress { group, topic } => group_progress(ctx, group, topic),
        GroupCmd::Connections { group, topic } => group_connections(ctx, group, topic),
        GroupCmd::ResetOffset { group, topic, to_time } => {
            let pc = PullConsumer { ctx: ctx.clone(), group: group.clone() };
            let rows = pc.reset_offset_by_time(topic, *to_time)?.into_iter();
            Ok(rows.map(|e| json!({"broker": e.broker_name, "queue": e.queue_id, "offset": e.offset})).collect())
        }
    }
}

fn message_cmd(ctx: &Arc<ClientContext>, m: &MessageCmd) -> Result<Value, ClientError> {
    match m {
        MessageCmd::Get { topic, id, key, queue, broker, queue_offset } => {
            let mq = queue.zip(broker.clone()).zip(topic.clone()).map(|((q, b), t)| MessageQueue {
                topic: t,
                broker_name: b,
                queue_id: q,
            });
            message_get(ctx, topic.as_deref(), id.as_deref(), key.as_deref(), mq, *queue_offset)
        }
        MessageCmd::Send { topic, body, tags, keys } => {
            let mut msg = Message::new(topic, body.clone().into_bytes());
            msg.tags = tags.clone();
            msg.keys = keys.iter().flat_map(|k| k.split_whitespace().map(String::from)).collect();
            let r = Producer::with_context(ctx.clone(), "ringmq-admin").send(&msg)?;
            Ok(json!({"offset_msg_id": r.offset_msg_id, "broker": r.queue.broker_name, "queue": r.queue.queue_id,
                "queue_offset": r.queue_offset}))
        }
        MessageCmd::Tail { topic } => tail(ctx, topic),
    }
}

fn tail(ctx: &Arc<ClientContext>, topic: &str) -> Result<Value, ClientError> {
    let pc = PullConsumer { ctx: ctx.clone(), group: "ringmq-admin-tail".into() };
    let queues = pc.queues(topic)?;
    let mut next: Vec<u64> = queues.iter().map(|q| pc.max_offset(q)).collect::<Result<_, _>>()?;
    loop {
        for (i, q) in queues.iter().enumerate() {
            let r = pc.pull(q, next[i], 32, "*", 0)?;
            for m in &r.messages {
                println!("{}", message_json(m));
            }
            if r.code == rs::SUCCESS || r.code == rs::PULL_OFFSET_MOVED {
                next[i] = r.next_offset;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
