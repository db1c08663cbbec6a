//! Registers every shard with every name server as its own broker (`<broker_name>-<i>`, brokerId 0):
//! REGISTER_BROKER at start, whenever a shard's topics change, and every `register_period`; and
//! UNREGISTER_BROKER at shutdown. A control-plane thread: it never touches a shard's data.

use crate::broker::control::{ControlPlane, Registration};
use crate::client::connection::Connection;
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::commands::namesrv::{RegisterBrokerRequest, UnregisterBrokerRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Registrar {
    pub control: Arc<ControlPlane>,
    pub namesrvs: Vec<String>,
    pub cluster: String,
    pub period: Duration,
    pub broker_expiry: Duration,
    /// Told once the first registration round is done, so `serve` announces ready only when the
    /// shards are routable.
    pub registered: Option<std::sync::mpsc::Sender<()>>,
}

impl Registrar {
    fn request(&self, conns: &mut HashMap<String, Connection>, ns: &str, cmd: Command) {
        if conns.get(ns).is_none_or(|c| c.is_closed()) {
            match Connection::connect(ns, REQUEST_TIMEOUT) {
                Ok(c) => {
                    conns.insert(ns.to_string(), c);
                }
                Err(e) => {
                    tracing::warn!(namesrv = ns, error = %e, "cannot reach name server; will retry");
                    return;
                }
            }
        }
        if let Some(c) = conns.get(ns)
            && let Err(e) = c.call(cmd, REQUEST_TIMEOUT)
        {
            tracing::warn!(namesrv = ns, error = %e, "name server request failed; will retry");
            conns.remove(ns);
        }
    }

    fn register(&self, conns: &mut HashMap<String, Connection>, r: &Registration) {
        for ns in &self.namesrvs {
            let cmd = RegisterBrokerRequest {
                broker_name: r.broker_name.clone(),
                broker_addr: r.addr.to_string(),
                cluster_name: self.cluster.clone(),
                broker_id: 0,
                ha_server_addr: Some(format!("{}:{}", r.addr.ip(), r.addr.port() + 1)),
                compressed: Some(false),
                body_crc32: Some(0),
                heartbeat_timeout_millis: Some(self.broker_expiry.as_millis() as u64),
            }
            .request(rq::REGISTER_BROKER);
            self.request(conns, ns, cmd.with_body((r.body)()));
        }
    }

    /// Runs until shutdown, then unregisters every shard.
    pub fn run(mut self) {
        let mut conns = HashMap::new();
        let mut last = Instant::now() - self.period;
        loop {
            let changed = self.control.wait_changed(Duration::from_millis(200));
            if self.control.is_shutdown() {
                break;
            }
            if changed || last.elapsed() >= self.period {
                last = Instant::now();
                for r in self.control.registrations() {
                    self.register(&mut conns, &r);
                }
                if let Some(tx) = self.registered.take() {
                    let _ = tx.send(());
                }
            }
        }
        for r in self.control.registrations() {
            for ns in &self.namesrvs {
                let cmd = UnregisterBrokerRequest {
                    broker_addr: r.addr.to_string(),
                    broker_name: Some(r.broker_name.clone()),
                    cluster_name: Some(self.cluster.clone()),
                    broker_id: Some(0),
                }
                .request(rq::UNREGISTER_BROKER);
                self.request(&mut conns, ns, cmd);
            }
        }
    }
}
