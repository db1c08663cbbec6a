//! Registers every shard with every name server as its own broker (`<broker_name>-<i>`, brokerId 0, or the node id for a
//! slave of a replicated cluster):
//! REGISTER_BROKER at start, whenever a shard's topics change, and every `register_period`; and
//! UNREGISTER_BROKER at shutdown. A control-plane thread: it never touches a shard's data.

use crate::broker::control::{ControlPlane, Registration};
use crate::client::connection::{ClientSecurity, Connection};
use crate::config::{Config, Role};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;
use crate::protocol::commands::namesrv::{RegisterBrokerRequest, UnregisterBrokerRequest};
use crate::security::tls::{ClientTlsFiles, TlsMode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon a registration round that missed a name server is repeated.
const RETRY_MISSED: Duration = Duration::from_secs(1);

/// How the registrar reaches the name servers: over TLS when the listeners enforce it (presenting
/// the node's own certificate, for name servers that require client certificates), and with ACL
/// signed by the brokers' admin account, re-read from the ACL file every round so a rotated secret
/// is picked up without a restart.
pub struct Security {
    client: ClientSecurity,
    acl_file: Option<std::path::PathBuf>,
    account: Option<String>,
}

impl Security {
    /// Checks the configuration's ACL file and TLS files (so a broker asked for them never starts
    /// without them) and prepares the registrar's side.
    pub fn of(cfg: &Config) -> Result<Security, String> {
        let mut client = ClientSecurity::default();
        if cfg.tls_mode != TlsMode::Disabled {
            let files = cfg.tls_files().ok_or("--tls-mode needs --tls-cert and --tls-key")?;
            crate::security::tls::server_config(&files)?;
            if cfg.tls_mode == TlsMode::Enforcing {
                let ours = ClientTlsFiles { ca: None, cert_key: Some((files.cert, files.key)) };
                client.tls = Some(crate::security::tls::client_config(&ours)?);
            }
        }
        if let Some(path) = &cfg.acl_file {
            let file = crate::security::acl::load(path)?;
            if cfg.role != Role::Namesrv {
                client.credentials = Some(file.broker_credentials(cfg.acl_broker_account.as_deref())?);
            }
        }
        Ok(Security { client, acl_file: cfg.acl_file.clone(), account: cfg.acl_broker_account.clone() })
    }

    /// Re-reads the brokers' credentials; true when they changed (connections then reconnect to
    /// sign with them). On an error the previous ones are kept, and it is logged.
    fn refresh(&mut self) -> bool {
        let Some(path) = &self.acl_file else { return false };
        match crate::security::acl::load(path).and_then(|f| f.broker_credentials(self.account.as_deref())) {
            Ok(c) if Some(&c) != self.client.credentials.as_ref() => {
                tracing::info!(access_key = %c.access_key, "registrar: broker credentials changed in the ACL file");
                self.client.credentials = Some(c);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "registrar: keeping the previous broker credentials");
                false
            }
        }
    }
}

pub struct Registrar {
    pub control: Arc<ControlPlane>,
    pub namesrvs: Vec<String>,
    pub cluster: String,
    pub period: Duration,
    pub broker_expiry: Duration,
    /// Told once the first registration round is done, so `serve` announces ready only when the
    /// shards are routable.
    pub registered: Option<std::sync::mpsc::Sender<()>>,
    pub security: Security,
}

impl Registrar {
    /// Sends `cmd` to `ns`; false when it did not get there (the round is retried soon).
    fn request(&self, conns: &mut HashMap<String, Connection>, ns: &str, cmd: Command) -> bool {
        if conns.get(ns).is_none_or(|c| c.is_closed()) {
            match Connection::connect_with(ns, REQUEST_TIMEOUT, &self.security.client) {
                Ok(c) => {
                    conns.insert(ns.to_string(), c);
                }
                Err(e) => {
                    tracing::warn!(namesrv = ns, error = %e, "cannot reach name server; will retry");
                    return false;
                }
            }
        }
        if let Some(c) = conns.get(ns)
            && let Err(e) = c.call(cmd, REQUEST_TIMEOUT)
        {
            tracing::warn!(namesrv = ns, error = %e, "name server request failed; will retry");
            conns.remove(ns);
            return false;
        }
        true
    }

    /// Registers `r` with every name server; false when one of them missed it.
    fn register(&self, conns: &mut HashMap<String, Connection>, r: &Registration) -> bool {
        let mut all = true;
        for ns in &self.namesrvs {
            let cmd = RegisterBrokerRequest {
                broker_name: r.broker_name.clone(),
                broker_addr: r.addr.to_string(),
                cluster_name: self.cluster.clone(),
                broker_id: r.broker_id,
                ha_server_addr: Some(format!("{}:{}", r.addr.ip(), r.addr.port() + 1)),
                compressed: Some(false),
                body_crc32: Some(0),
                heartbeat_timeout_millis: Some(self.broker_expiry.as_millis() as u64),
            }
            .request(rq::REGISTER_BROKER);
            all &= self.request(conns, ns, cmd.with_body((r.body)()));
        }
        all
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
            // A name server that closed our connection went away (killed, restarted): when it is
            // back it knows none of our shards, and a client asking it would find no route for
            // them until the next period. Register with it again within a second instead.
            if conns.values().any(|c: &Connection| c.is_closed())
                && last.elapsed() < self.period.saturating_sub(RETRY_MISSED)
            {
                conns.retain(|_, c| !c.is_closed());
                last = Instant::now() - self.period + RETRY_MISSED;
            }
            if changed || last.elapsed() >= self.period {
                last = Instant::now();
                if self.security.refresh() {
                    conns.clear();
                }
                let mut missed = false;
                for r in self.control.registrations() {
                    missed |= !self.register(&mut conns, &r);
                }
                // A name server that missed this round (down, paused, restarting: it also drops
                // what a closed connection had registered) gets it again within a second, not a
                // period later — a new master must not stay unroutable there for 30 s.
                if missed {
                    last = Instant::now() - self.period + RETRY_MISSED;
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
                    broker_id: Some(r.broker_id),
                }
                .request(rq::UNREGISTER_BROKER);
                let _ = self.request(&mut conns, ns, cmd);
            }
        }
    }
}
