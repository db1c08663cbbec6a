//! Routes from the name server (GET_ROUTEINFO_BY_TOPIC) and a pool of broker connections shared by a
//! client's producers and consumers.

use super::connection::{ClientError, ClientSecurity, Connection};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::commands::body::decode_json;
use crate::protocol::commands::namesrv::{RouteRequest, TopicRouteData};
use crate::protocol::commands::topics::{PERM_READ, PERM_WRITE};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply received by a requester (request-reply), handed from the connection that received the
/// push to the waiting request through the context's `replies`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub topic: String,
    pub body: bytes::Bytes,
    /// The reply's property string (`k\u1v\u2`…).
    pub properties: String,
}

impl Reply {
    pub fn property(&self, key: &str) -> Option<&str> {
        crate::protocol::message::property_get(&self.properties, key)
    }
}

/// Routes are refreshed this often (RocketMQ clients: 30 s).
pub const ROUTE_TTL: Duration = Duration::from_secs(30);

/// One queue of a topic on one broker (the wire type every body names).
pub use crate::protocol::commands::body::MessageQueue;

/// A topic's route: its queues and the master address of each broker.
#[derive(Debug, Clone, Default)]
pub struct TopicRoute {
    pub write_queues: Vec<MessageQueue>,
    pub read_queues: Vec<MessageQueue>,
    pub brokers: BTreeMap<String, String>,
}

/// Queues per broker a client accepts from a route: a broker's own limit (`max_queues_per_topic`)
/// is 1 024 by default and 65 535 at most, so a route claiming more is damaged, and a client must
/// not build billions of queue entries from one number.
pub const MAX_ROUTE_QUEUES_PER_BROKER: u32 = 65_535;

/// Parses TopicRouteData JSON into the queues a client sends to and pulls from (masters only).
pub fn parse_route(topic: &str, body: &[u8]) -> Result<TopicRoute, String> {
    let data: TopicRouteData = decode_json("TopicRouteData", body).map_err(|e| e.to_string())?;
    let mut route = TopicRoute::default();
    for bd in &data.broker_datas {
        if let Some(addr) = bd.master_addr() {
            route.brokers.insert(bd.broker_name.clone(), addr.to_string());
        }
    }
    for qd in &data.queue_datas {
        if !route.brokers.contains_key(&qd.broker_name) {
            continue;
        }
        let (read, write) = (qd.queues.read_queue_nums, qd.queues.write_queue_nums);
        if read.max(write) > MAX_ROUTE_QUEUES_PER_BROKER {
            return Err(format!(
                "route of {topic} gives broker {} {read} read and {write} write queues, past \
                 {MAX_ROUTE_QUEUES_PER_BROKER}",
                qd.broker_name
            ));
        }
        let mq = |i| MessageQueue { topic: topic.to_string(), broker_name: qd.broker_name.clone(), queue_id: i as i32 };
        if qd.queues.perm & PERM_WRITE != 0 {
            route.write_queues.extend((0..write).map(mq));
        }
        if qd.queues.perm & PERM_READ != 0 {
            route.read_queues.extend((0..read).map(mq));
        }
    }
    route.write_queues.sort();
    route.read_queues.sort();
    Ok(route)
}

/// The topic whose route producers use for topics the name server does not know yet.
pub const AUTO_CREATE_TEMPLATE: &str = "TBW102";
/// Queues per broker a producer asks for when its send creates a topic (RocketMQ's
/// `defaultTopicQueueNums`, sent as header `d`); the broker creates that many.
pub const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

/// The template route as a producer sees it for a topic to be auto-created: at most
/// `DEFAULT_TOPIC_QUEUE_NUMS` queues per broker, as the Java client trims it, since the broker creates
/// the topic with that many queues and refuses a queue id beyond them.
pub fn as_template_route(mut route: TopicRoute) -> TopicRoute {
    route.write_queues.retain(|q| q.queue_id < DEFAULT_TOPIC_QUEUE_NUMS);
    route.read_queues.retain(|q| q.queue_id < DEFAULT_TOPIC_QUEUE_NUMS);
    route
}

/// The GET_ROUTEINFO_BY_TOPIC request for `topic`.
pub(super) fn route_request(topic: &str) -> Command {
    RouteRequest { topic: topic.into() }.request(rq::GET_ROUTEINFO_BY_TOPIC)
}

/// The route in a name server's answer to [`route_request`].
pub(super) fn route_of(topic: &str, resp: Command) -> Result<TopicRoute, ClientError> {
    if resp.code != 0 {
        return Err(ClientError::NoRoute(format!("{topic}: {}", resp.remark.unwrap_or_default())));
    }
    parse_route(topic, &resp.body_bytes()).map_err(|m| ClientError::BadResponse { addr: "namesrv".into(), message: m })
}

/// Connections and routes shared by one client instance.
pub struct ClientContext {
    pub namesrvs: Vec<String>,
    pub client_id: String,
    security: ClientSecurity,
    conns: Mutex<HashMap<String, Arc<Connection>>>,
    routes: Mutex<HashMap<String, (Instant, TopicRoute)>>,
    /// Requests waiting for their reply, by CORRELATION_ID (request-reply).
    pub replies: Mutex<HashMap<String, std::sync::mpsc::SyncSender<Reply>>>,
    /// Handlers of broker-initiated requests, installed on every connection, present and future.
    handlers: Mutex<Vec<(i32, ServerRequestHandler)>>,
}

type ServerRequestHandler = Arc<dyn Fn(Command) -> Option<Command> + Send + Sync>;

impl ClientContext {
    pub fn new(namesrv: &str) -> Arc<ClientContext> {
        ClientContext::with_security(namesrv, ClientSecurity::default())
    }

    /// A context whose connections use TLS and sign requests as `security` says.
    pub fn with_security(namesrv: &str, security: ClientSecurity) -> Arc<ClientContext> {
        let namesrvs = crate::protocol::split_addrs(namesrv);
        let client_id = format!("127.0.0.1@{}#{}", std::process::id(), rand::random::<u32>());
        Arc::new(ClientContext {
            namesrvs,
            client_id,
            security,
            conns: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            replies: Mutex::new(HashMap::new()),
            handlers: Mutex::new(Vec::new()),
        })
    }

    /// A live connection to `addr`, reconnecting when the old one closed.
    pub fn conn(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut conns = self.conns.lock().map_err(|_| ClientError::Closed(addr.into()))?;
        if let Some(c) = conns.get(addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Connection::connect_with(addr, REQUEST_TIMEOUT, &self.security)?);
        for (code, h) in self.handlers.lock().map(|h| h.clone()).unwrap_or_default() {
            c.on_server_request(code, move |cmd| h(cmd));
        }
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Handles broker-initiated requests with `code` on every connection of this client, including
    /// ones opened later (reconnects, new brokers).
    pub fn on_server_request(&self, code: i32, f: impl Fn(Command) -> Option<Command> + Send + Sync + 'static) {
        let h: ServerRequestHandler = Arc::new(f);
        if let Ok(mut hs) = self.handlers.lock() {
            hs.retain(|(c, _)| *c != code);
            hs.push((code, h.clone()));
        }
        for c in self.open_conns() {
            let h = h.clone();
            c.on_server_request(code, move |cmd| h(cmd));
        }
    }

    /// Every connection currently open (for heartbeats).
    pub fn open_conns(&self) -> Vec<Arc<Connection>> {
        self.conns.lock().map(|c| c.values().filter(|c| !c.is_closed()).cloned().collect()).unwrap_or_default()
    }

    /// Asks each name server in turn.
    pub fn namesrv_call(&self, cmd: Command) -> Result<Command, ClientError> {
        let mut last = ClientError::NoRoute("no name server configured".into());
        for ns in &self.namesrvs {
            match self.conn(ns).and_then(|c| c.request(cmd.clone(), REQUEST_TIMEOUT)) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The route of `topic`, cached for `ROUTE_TTL`.
    pub fn route(&self, topic: &str, refresh: bool) -> Result<TopicRoute, ClientError> {
        if !refresh
            && let Some((at, r)) = self.routes.lock().ok().and_then(|m| m.get(topic).cloned())
            && at.elapsed() < ROUTE_TTL
        {
            return Ok(r);
        }
        let route = route_of(topic, self.namesrv_call(route_request(topic))?)?;
        if let Ok(mut m) = self.routes.lock() {
            m.insert(topic.to_string(), (Instant::now(), route.clone()));
        }
        Ok(route)
    }

    pub fn broker_addr(&self, topic: &str, broker: &str) -> Result<String, ClientError> {
        let route = self.route(topic, false)?;
        route
            .brokers
            .get(broker)
            .cloned()
            .ok_or_else(|| ClientError::NoRoute(format!("broker {broker} not in route of {topic}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_standard_route_json() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"b-0","cluster":"C"},
            {"brokerAddrs":{"1":"127.0.0.1:20911"},"brokerName":"slave-only","cluster":"C"}],
            "queueDatas":[{"brokerName":"b-0","perm":6,"readQueueNums":2,"writeQueueNums":3,"topicSysFlag":0},
            {"brokerName":"slave-only","perm":6,"readQueueNums":2,"writeQueueNums":2}]}"#;
        let r = parse_route("T", body).unwrap();
        assert_eq!(r.write_queues.len(), 3);
        assert_eq!(r.read_queues.len(), 2);
        assert_eq!(r.brokers.len(), 1);
    }

    #[test]
    fn a_route_claiming_billions_of_queues_is_refused_not_built() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{"0":"a:1"},"brokerName":"b-0"}],
            "queueDatas":[{"brokerName":"b-0","perm":6,"readQueueNums":4294967295,"writeQueueNums":1}]}"#;
        let e = parse_route("T", body).unwrap_err();
        assert!(e.contains("4294967295 read"), "{e}");
        assert!(parse_route("T", b"{\"queueDatas\":7}").is_err());
    }

    #[test]
    fn template_route_offers_only_the_queues_an_auto_created_topic_gets() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{"0":"a:1"},"brokerName":"b-0"}],
            "queueDatas":[{"brokerName":"b-0","perm":6,"readQueueNums":8,"writeQueueNums":8}]}"#;
        let r = as_template_route(parse_route("TBW102", body).unwrap());
        assert_eq!(r.write_queues.iter().map(|q| q.queue_id).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(r.read_queues.len(), 4);
    }
}
