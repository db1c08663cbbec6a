//! The name server: brokers register their topics (REGISTER_BROKER every 30 s and on change); clients
//! ask for routes (GET_ROUTEINFO_BY_TOPIC). Also cluster info, the topic list, KV config, and
//! UNREGISTER_BROKER. Brokers silent for `broker_expiry` or whose registering connection closes leave
//! the routes.
//!
//! Runs on its own executor (the control plane); its state is owned by that executor (`RefCell`).
//! Route JSON is standard and compact (no spaces: the Go client splits it as text), keys sorted.

pub mod routes;

use crate::net::conn::{Conn, ConnLimits, Service};
use crate::protocol::Command;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::HeaderError;
use crate::protocol::commands::body::decode_json;
use crate::protocol::commands::namesrv::{
    ClusterRequest, KvRequest, KvValueResponse, RegisterBrokerBody, RegisterBrokerRequest, RegisterBrokerResponse,
    RouteRequest, UnregisterBrokerRequest,
};
use crate::protocol::commands::topics::TopicRequest;
use crate::security::acl::{AclGuard, Grant};
use crate::security::tls::ServerTls;
use routes::{BrokerLive, RouteTable};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct NameServer {
    pub routes: RefCell<RouteTable>,
    pub broker_expiry: Duration,
    pub limits: ConnLimits,
    connections: std::cell::Cell<usize>,
    /// With ACL on, registrations, unregistrations, KV writes and topic deletion need an admin
    /// account; queries stay open.
    pub acl: Option<AclGuard>,
    pub tls: Option<ServerTls>,
}

/// A request whose header does not decode: SYSTEM_ERROR naming the field, as the broker answers.
fn bad_header(req: &Command, e: HeaderError) -> Command {
    req.response_to(rs::SYSTEM_ERROR).with_remark(e.to_string())
}

/// Why `addr` is not `host:port` (IPv6 hosts in brackets or bare, as RocketMQ prints them).
pub fn invalid_host_port(addr: &str) -> Option<&'static str> {
    let Some((host, port)) = addr.rsplit_once(':') else { return Some("is not host:port") };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Some("has no valid port");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let hostname = |h: &str| h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    if host.is_empty() || (host.parse::<std::net::IpAddr>().is_err() && !hostname(host)) {
        return Some("has no valid host");
    }
    None
}

impl NameServer {
    pub fn new(broker_expiry: Duration, limits: ConnLimits) -> NameServer {
        NameServer {
            routes: RefCell::new(RouteTable::default()),
            broker_expiry,
            limits,
            connections: std::cell::Cell::new(0),
            acl: None,
            tls: None,
        }
    }

    /// What the ACL says about `req` (everything is allowed without one).
    fn authorize(&self, conn: &Conn, req: &Command) -> Result<Grant, Command> {
        let Some(acl) = &self.acl else { return Ok(Grant::All) };
        acl.check(req, conn.peer.ip(), &crate::security::acl::access::namesrv_need(req)).map_err(|d| {
            tracing::warn!(peer = %conn.peer, code = req.code, "name server ACL: {d}");
            req.response_to(rs::NO_PERMISSION).with_remark(d.0)
        })
    }

    fn register(&self, conn: &Conn, req: &Command, grant: &Grant) -> Result<Command, Command> {
        let invalid = |why: String| req.response_to(rs::INVALID_PARAMETER).with_remark(why);
        let h = RegisterBrokerRequest::decode(req).map_err(|e| match e.field {
            "brokerId" => invalid(e.to_string()),
            _ => bad_header(req, e),
        })?;
        let (name, addr, cluster, id) = (h.broker_name, h.broker_addr, h.cluster_name, h.broker_id);
        if let Some(why) = invalid_host_port(&addr) {
            return Err(invalid(format!("brokerAddr {addr:?} {why}")));
        }
        for (key, v) in [("brokerName", &name), ("clusterName", &cluster)] {
            if let Some(why) = crate::broker::topics::invalid_topic_name(v) {
                return Err(invalid(format!("{key}: {why}")));
            }
        }
        if h.compressed == Some(true) {
            return Err(req
                .response_to(rs::SYSTEM_ERROR)
                .with_remark("compressed registration bodies are not supported; set compressedRegister=false"));
        }
        let body: RegisterBrokerBody = decode_json("RegisterBrokerBody", &req.body_bytes())
            .map_err(|e| req.response_to(rs::SYSTEM_ERROR).with_remark(e.to_string()))?;
        let owner = grant.access_key().map(str::to_string);
        // A live broker's place is its own: another address may take it only when the same ACL
        // account signs (a broker that moved); without ACL it waits for the old one to leave.
        if let Some(holder) = self.routes.borrow().live_holder(&name, id).filter(|l| l.addr != addr)
            && (owner.is_none() || holder.owner != owner)
        {
            tracing::warn!(broker = %name, id, live = %holder.addr, claimed = %addr, peer = %conn.peer,
                "refused a registration that would replace a live broker's address");
            return Err(req.response_to(rs::NO_PERMISSION).with_remark(format!(
                "broker {name} id {id} is registered live at {}; a registration from another address cannot \
                 replace it (it leaves when its connection closes or after broker_expiry)",
                holder.addr
            )));
        }
        let live = BrokerLive {
            last_update: Instant::now(),
            conn_id: conn.id,
            name: name.clone(),
            id,
            addr: addr.clone(),
            peer: conn.peer.ip(),
            owner,
        };
        self.routes.borrow_mut().register(&cluster, &name, id, &addr, &body, live);
        let mut r = req.response_to(rs::SUCCESS);
        RegisterBrokerResponse::default().encode(&mut r);
        Ok(r.with_body(r#"{"table":{}}"#))
    }

    fn route(&self, req: &Command) -> Result<Command, Command> {
        let topic = RouteRequest::decode(req).map_err(|e| bad_header(req, e))?.topic;
        match self.routes.borrow().route_json(&topic) {
            Some(body) => Ok(req.response_to(rs::SUCCESS).with_body(body)),
            None => Err(req
                .response_to(rs::TOPIC_NOT_EXIST)
                .with_remark(format!("No topic route info in name server for the topic: {topic}"))),
        }
    }

    fn kv(&self, req: &Command) -> Result<Command, Command> {
        let h = KvRequest::decode(req).map_err(|e| bad_header(req, e))?;
        let need = |v: Result<&str, HeaderError>| v.map(str::to_string).map_err(|e| bad_header(req, e));
        let ns = h.namespace.clone();
        let mut routes = self.routes.borrow_mut();
        match req.code {
            rq::PUT_KV_CONFIG => {
                routes.kv.entry(ns).or_default().insert(need(h.key())?, need(h.value())?);
                Ok(req.response_to(rs::SUCCESS))
            }
            rq::GET_KV_CONFIG => {
                let key = need(h.key())?;
                match routes.kv.get(&ns).and_then(|m| m.get(&key)) {
                    Some(v) => {
                        let mut r = req.response_to(rs::SUCCESS);
                        KvValueResponse { value: v.clone() }.encode(&mut r);
                        Ok(r)
                    }
                    None => Err(req
                        .response_to(rs::QUERY_NOT_FOUND)
                        .with_remark(format!("No config item, Namespace: {ns} Key: {key}"))),
                }
            }
            rq::DELETE_KV_CONFIG => {
                let key = need(h.key())?;
                if let Some(m) = routes.kv.get_mut(&ns) {
                    m.remove(&key);
                }
                Ok(req.response_to(rs::SUCCESS))
            }
            _ => match routes.kv.get(&ns) {
                Some(m) => Ok(req.response_to(rs::SUCCESS).with_body(serde_json::json!({ "table": m }).to_string())),
                None => {
                    Err(req.response_to(rs::QUERY_NOT_FOUND).with_remark(format!("No config item, Namespace: {ns}")))
                }
            },
        }
    }

    /// UNREGISTER_BROKER: accepted from the registering connection's host, or (with ACL) from the
    /// account that registered it or any admin account, which the ACL check has already required.
    fn unregister(&self, conn: &Conn, req: &Command, grant: &Grant) -> Result<Command, Command> {
        let h = UnregisterBrokerRequest::decode(req).map_err(|e| bad_header(req, e))?;
        let allowed = match self.routes.borrow().live_at(&h.broker_addr) {
            None => true, // nothing to remove
            Some(l) => grant.access_key().is_some() || l.peer == conn.peer.ip() || l.conn_id == conn.id,
        };
        if !allowed {
            tracing::warn!(addr = %h.broker_addr, peer = %conn.peer, "refused to unregister a broker from another host");
            return Err(req
                .response_to(rs::NO_PERMISSION)
                .with_remark(format!("broker {} was registered from another host", h.broker_addr)));
        }
        self.routes.borrow_mut().remove_where(|l| l.addr_matches(&h.broker_addr));
        Ok(req.response_to(rs::SUCCESS))
    }

    /// Removes brokers not re-registered within the expiry time; run every few seconds.
    pub fn expire(&self, now: Instant) {
        let expiry = self.broker_expiry;
        self.routes.borrow_mut().remove_where(|l| now.duration_since(l.last_update) > expiry);
    }
}

impl Service for NameServer {
    async fn handle(self: &Rc<Self>, conn: &Rc<Conn>, req: Command) -> Option<Command> {
        let grant = match self.authorize(conn, &req) {
            Ok(g) => g,
            Err(refused) => return Some(refused),
        };
        let r = match req.code {
            rq::REGISTER_BROKER => self.register(conn, &req, &grant),
            rq::UNREGISTER_BROKER => self.unregister(conn, &req, &grant),
            rq::GET_ROUTEINFO_BY_TOPIC => self.route(&req),
            rq::GET_BROKER_CLUSTER_INFO => {
                Ok(req.response_to(rs::SUCCESS).with_body(self.routes.borrow().cluster_json()))
            }
            rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Ok(req.response_to(rs::SUCCESS).with_body(self.routes.borrow().topic_list_json()))
            }
            rq::GET_TOPICS_BY_CLUSTER => ClusterRequest::decode(&req)
                .map_err(|e| bad_header(&req, e))
                .map(|h| req.response_to(rs::SUCCESS).with_body(self.routes.borrow().cluster_topics_json(&h.cluster))),
            rq::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                Ok(req.response_to(rs::SUCCESS).with_body(self.routes.borrow().system_topics_json()))
            }
            rq::DELETE_TOPIC_IN_NAMESRV => TopicRequest::decode(&req).map_err(|e| bad_header(&req, e)).map(|h| {
                self.routes.borrow_mut().topics.remove(&h.topic);
                req.response_to(rs::SUCCESS)
            }),
            rq::PUT_KV_CONFIG | rq::GET_KV_CONFIG | rq::DELETE_KV_CONFIG | rq::GET_KVLIST_BY_NAMESPACE => self.kv(&req),
            code => Err(req
                .response_to(rs::REQUEST_CODE_NOT_SUPPORTED)
                .with_remark(format!("request code {code} is not supported by the ringmq name server"))),
        };
        Some(r.unwrap_or_else(|e| e))
    }

    fn connection_closed(&self, conn: &Rc<Conn>) {
        self.connections.set(self.connections.get().saturating_sub(1));
        let id = conn.id;
        self.routes.borrow_mut().remove_where(|l| l.conn_id == id);
    }

    fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
    }

    fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn live_connections(&self) -> usize {
        self.connections.get()
    }

    fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ns: &Rc<NameServer>, conn: &Rc<Conn>, req: Command) -> Command {
        futures_lite::future::block_on(ns.handle(conn, req)).expect("an answer")
    }

    fn register(name: &str, addr: &str) -> Command {
        let mut c = Command::request(rq::REGISTER_BROKER);
        for (k, v) in [("brokerName", name), ("brokerAddr", addr), ("clusterName", "C"), ("brokerId", "0")] {
            c.put(k, v);
        }
        c.with_body(
            r#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"readQueueNums":1,"writeQueueNums":1}}}}"#,
        )
    }

    fn unregister(addr: &str) -> Command {
        let mut c = Command::request(rq::UNREGISTER_BROKER);
        c.put("brokerAddr", addr);
        c
    }

    fn limits() -> ConnLimits {
        ConnLimits::from_config(&crate::config::Config::default())
    }

    #[test]
    fn a_live_broker_is_neither_replaced_nor_unregistered_from_another_host() {
        let ns = Rc::new(NameServer::new(Duration::from_secs(120), limits()));
        let (real, _o1) = Conn::in_memory(1, "10.0.0.1:5000".parse().unwrap());
        let (other, _o2) = Conn::in_memory(2, "10.0.0.2:5000".parse().unwrap());
        assert_eq!(call(&ns, &real, register("b-0", "10.0.0.1:10911")).code, rs::SUCCESS);
        let hijack = call(&ns, &other, register("b-0", "203.0.113.7:10911"));
        assert_eq!(hijack.code, rs::NO_PERMISSION, "{:?}", hijack.remark);
        assert_eq!(call(&ns, &other, unregister("10.0.0.1:10911")).code, rs::NO_PERMISSION);
        ns.connection_closed(&other);
        assert!(ns.routes.borrow().route_json("T").is_some_and(|r| r.contains("10.0.0.1:10911")));
        // The registering host may re-register and unregister; then the place is free.
        assert_eq!(call(&ns, &real, register("b-0", "10.0.0.1:10911")).code, rs::SUCCESS);
        assert_eq!(call(&ns, &real, unregister("10.0.0.1:10911")).code, rs::SUCCESS);
        assert!(ns.routes.borrow().route_json("T").is_none());
        assert_eq!(call(&ns, &other, register("b-0", "10.0.0.2:10911")).code, rs::SUCCESS);
    }

    #[test]
    fn with_acl_the_same_account_may_move_a_broker_and_others_may_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_acl.yml");
        std::fs::write(
            &path,
            "accounts:\n  - accessKey: ops\n    secretKey: s1\n    admin: true\n  - accessKey: ops2\n    secretKey: s2\n    admin: true\n",
        )
        .unwrap();
        let mut ns = NameServer::new(Duration::from_secs(120), limits());
        ns.acl = Some(AclGuard::open(&path).unwrap());
        let ns = Rc::new(ns);
        let (a, _o1) = Conn::in_memory(1, "10.0.0.1:5000".parse().unwrap());
        let (b, _o2) = Conn::in_memory(2, "10.0.0.2:5000".parse().unwrap());
        let signed = |mut c: Command, ak: &str, sk: &str| {
            crate::security::sign::Credentials::new(ak, sk).sign(&mut c);
            c
        };
        assert_eq!(call(&ns, &a, register("b-0", "10.0.0.1:10911")).code, rs::NO_PERMISSION); // anonymous
        assert_eq!(call(&ns, &a, signed(register("b-0", "10.0.0.1:10911"), "ops", "s1")).code, rs::SUCCESS);
        let other_account = call(&ns, &b, signed(register("b-0", "10.0.0.2:10911"), "ops2", "s2"));
        assert_eq!(other_account.code, rs::NO_PERMISSION);
        assert_eq!(call(&ns, &b, signed(register("b-0", "10.0.0.2:10911"), "ops", "s1")).code, rs::SUCCESS);
        // The old registration's connection closing leaves the moved broker in place.
        ns.connection_closed(&a);
        assert!(ns.routes.borrow().route_json("T").is_some_and(|r| r.contains("10.0.0.2:10911")));
    }

    #[test]
    fn broker_addresses_must_be_host_and_port() {
        for ok in ["127.0.0.1:10911", "broker-a.example:1", "[::1]:10911", "::1:10911"] {
            assert_eq!(invalid_host_port(ok), None, "{ok}");
        }
        for bad in ["nohostport", ":10911", "host:", "host:0", "host:70000", "ho st:1", "a/b:1"] {
            assert!(invalid_host_port(bad).is_some(), "{bad}");
        }
    }
}
