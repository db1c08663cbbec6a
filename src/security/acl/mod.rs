//! RocketMQ ACL 1.0 on the server side: the `plain_acl.yml` in force, reloaded when it changes, and
//! the check of one request against it.
//!
//! Each shard and the name server keep their own [`AclGuard`] (no state shared between cores): the
//! file is small, and each guard looks at it at most once a second ([`RELOAD_CHECK`]), on the first
//! request after that second — a `stat`, and a read and parse only when it changed. A file that does
//! not parse (or fails a check of [`file`]) is not used: the previous one stays in force and the
//! reason is logged once per change. A guard whose file was never readable denies everything but
//! the global white list — there is none — so a broker never runs open by mistake.
//!
//! The check, in RocketMQ's order: a global white address passes; otherwise the request must name an
//! account (`AccessKey`); a request from the account's white address passes; otherwise its
//! `Signature` must verify (constant time); then the request code's admin need and each resource's
//! permission (the account's entry, else its default for topics or groups) are checked.

pub mod access;
pub mod addr;
pub mod file;

use crate::protocol::Command;
use crate::security::sign;
use access::{Need, Resource};
use file::{Account, AclFile, Perm};
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the file is looked at for changes: edits take effect within a second.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What passed the check: everything (a white address) or what one account holds.
#[derive(Debug, Clone)]
pub enum Grant {
    All,
    Account(Rc<Account>),
}

/// Why a request was refused; answered as NO_PERMISSION (16) with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial(pub String);

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Grant {
    /// The account's access key, if the grant is an account's.
    pub fn access_key(&self) -> Option<&str> {
        match self {
            Grant::All => None,
            Grant::Account(a) => Some(&a.access_key),
        }
    }

    /// Whether this grant allows `perm` on `resource`.
    pub fn require(&self, resource: &Resource, perm: Perm) -> Result<(), Denial> {
        let Grant::Account(a) = self else { return Ok(()) };
        // RocketMQ: an admin account with no per-resource entries may do anything.
        if a.admin && a.topic_perms.is_empty() && a.group_perms.is_empty() {
            return Ok(());
        }
        let (owned, default) = match resource {
            Resource::Topic(t) => (a.topic_perms.get(t), a.default_topic_perm),
            Resource::Group(g) => (a.group_perms.get(g), a.default_group_perm),
        };
        let held = owned.copied().unwrap_or(default);
        if held.grants(perm) {
            return Ok(());
        }
        let which = if owned.is_some() { "" } else { " by default" };
        Err(Denial(format!(
            "No permission for {resource}: accessKey={} holds {}{which}, the request needs {}",
            a.access_key,
            held.name(),
            perm.name()
        )))
    }
}

/// Identifies a version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

/// Reads and parses the ACL file.
pub fn load(path: &Path) -> Result<AclFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    AclFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The ACL in force on one shard (or the name server); `!Send`, lives where it was made.
pub struct AclGuard {
    path: PathBuf,
    current: RefCell<Rc<AclFile>>,
    /// Accounts as shared grants, rebuilt on reload.
    accounts: RefCell<std::collections::HashMap<String, Rc<Account>>>,
    seen: Cell<Option<Stamp>>,
    checked: Cell<Instant>,
}

impl AclGuard {
    /// Loads `path`; an error here stops the start-up (a broker asked for ACL must not start open).
    pub fn open(path: &Path) -> Result<AclGuard, String> {
        let seen = stamp(path);
        let file = load(path)?;
        let g = AclGuard {
            path: path.to_path_buf(),
            current: RefCell::new(Rc::new(AclFile::default())),
            accounts: RefCell::default(),
            seen: Cell::new(seen),
            checked: Cell::new(Instant::now()),
        };
        g.install(file);
        Ok(g)
    }

    fn install(&self, file: AclFile) {
        *self.accounts.borrow_mut() = file.accounts.iter().map(|(k, a)| (k.clone(), Rc::new(a.clone()))).collect();
        *self.current.borrow_mut() = Rc::new(file);
    }

    /// The file in force, after looking for a change if the last look is older than a second.
    pub fn current(&self) -> Rc<AclFile> {
        if self.checked.get().elapsed() >= RELOAD_CHECK {
            self.checked.set(Instant::now());
            self.reload_if_changed();
        }
        self.current.borrow().clone()
    }

    /// Reloads the file if it changed on disk; true when a new version is in force.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.path);
        if now == self.seen.get() {
            return false;
        }
        self.seen.set(now);
        match load(&self.path) {
            Ok(file) => {
                tracing::info!(file = %self.path.display(), accounts = file.accounts.len(), "ACL file reloaded");
                self.install(file);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "ACL file not reloaded; the previous version stays in force");
                false
            }
        }
    }

    /// Checks `req` from `peer` against what it needs.
    pub fn check(&self, req: &Command, peer: IpAddr, need: &Need) -> Result<Grant, Denial> {
        if need.open {
            return Ok(Grant::All);
        }
        let file = self.current();
        if file.global_white.iter().any(|p| p.matches(peer)) {
            return Ok(Grant::All);
        }
        let Some(ak) = req.ext.get(sign::ACCESS_KEY).filter(|k| !k.is_empty()) else {
            return Err(Denial(format!("No accessKey is configured (request code {}, from {peer})", req.code)));
        };
        let Some(account) = self.accounts.borrow().get(ak).cloned() else {
            return Err(Denial(format!("No acl config for accessKey={ak}")));
        };
        if account.white.as_ref().is_some_and(|w| w.matches(peer)) {
            return Ok(Grant::All);
        }
        let signed = req.ext.get(sign::SIGNATURE).is_some_and(|s| sign::verify_request(req, &account.secret_key, s));
        if !signed {
            return Err(Denial(format!("Check signature failed for accessKey={ak}")));
        }
        if need.admin && !account.admin {
            return Err(Denial(format!(
                "Need admin permission for request code={}, but accessKey={ak} is not",
                req.code
            )));
        }
        let grant = Grant::Account(account);
        for (resource, perm) in &need.resources {
            grant.require(resource, *perm)?;
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::access::broker_need;
    use super::*;
    use crate::protocol::codes::request as rq;

    const FILE: &str = r#"
globalWhiteRemoteAddresses: [10.9.9.*]
accounts:
  - accessKey: app
    secretKey: app-secret
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms: [orders=PUB|SUB, audit=SUB]
    groupPerms: [blocked=DENY]
  - accessKey: ops
    secretKey: ops-secret
    admin: true
  - accessKey: lab
    secretKey: lab-secret
    whiteRemoteAddress: 192.168.5.*
"#;

    fn guard(dir: &Path) -> AclGuard {
        let p = dir.join("plain_acl.yml");
        std::fs::write(&p, FILE).unwrap();
        AclGuard::open(&p).unwrap()
    }

    fn signed(code: i32, fields: &[(&str, &str)], ak: &str, sk: &str) -> Command {
        let mut c = Command { code, version: 401, ..Default::default() };
        for (k, v) in fields {
            c.put(k, v);
        }
        sign::Credentials::new(ak, sk).sign(&mut c);
        c
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn check(g: &AclGuard, req: &Command) -> Result<Grant, Denial> {
        g.check(req, LOCAL, &broker_need(req))
    }

    #[test]
    fn signed_requests_within_the_accounts_permissions_pass() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let send = signed(rq::SEND_MESSAGE_V2, &[("a", "P"), ("b", "orders")], "app", "app-secret");
        assert_eq!(check(&g, &send).unwrap().access_key(), Some("app"));
        let pull = signed(rq::PULL_MESSAGE, &[("topic", "audit"), ("consumerGroup", "G")], "app", "app-secret");
        assert!(check(&g, &pull).is_ok());
        let admin = signed(rq::DELETE_TOPIC_IN_BROKER, &[("topic", "orders")], "ops", "ops-secret");
        assert!(check(&g, &admin).is_ok());
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let denied = |req: Command| check(&g, &req).unwrap_err().0;
        let mut anon = Command { code: rq::SEND_MESSAGE_V2, ..Default::default() };
        anon.put("b", "orders");
        assert!(denied(anon).contains("No accessKey"));
        assert!(denied(signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "nobody", "x")).contains("No acl config"));
        assert!(denied(signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "app", "wrong")).contains("signature"));
        let e = denied(signed(rq::SEND_MESSAGE_V2, &[("b", "audit")], "app", "app-secret"));
        assert!(e.contains("topic audit") && e.contains("accessKey=app") && e.contains("needs PUB"), "{e}");
        let e = denied(signed(rq::SEND_MESSAGE_V2, &[("b", "other")], "app", "app-secret"));
        assert!(e.contains("by default"), "{e}");
        let e =
            denied(signed(rq::PULL_MESSAGE, &[("topic", "orders"), ("consumerGroup", "blocked")], "app", "app-secret"));
        assert!(e.contains("group blocked"), "{e}");
        let e = denied(signed(rq::DELETE_TOPIC_IN_BROKER, &[("topic", "orders")], "app", "app-secret"));
        assert!(e.contains("Need admin permission"), "{e}");
        // A field changed after signing (a replayed signature on another topic) fails the signature.
        let mut tampered = signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "app", "app-secret");
        tampered.put("b", "audit");
        assert!(denied(tampered).contains("signature"));
    }

    #[test]
    fn white_addresses_pass_without_a_signature() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let anon = Command { code: rq::DELETE_TOPIC_IN_BROKER, ..Default::default() };
        assert!(g.check(&anon, "10.9.9.4".parse().unwrap(), &broker_need(&anon)).is_ok());
        let mut lab = anon.clone();
        lab.put(sign::ACCESS_KEY, "lab");
        assert!(g.check(&lab, "192.168.5.1".parse().unwrap(), &broker_need(&lab)).is_ok());
        assert!(g.check(&lab, "192.168.6.1".parse().unwrap(), &broker_need(&lab)).is_err());
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_malformed_one_keeps_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let p = dir.path().join("plain_acl.yml");
        let send = signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "app", "app-secret");
        assert!(check(&g, &send).is_ok());
        std::fs::write(&p, "accounts:\n  - accessKey: app\n    secretKey: rotated\n    defaultTopicPerm: PUB\n")
            .unwrap();
        assert!(g.reload_if_changed());
        assert!(check(&g, &send).unwrap_err().0.contains("signature"));
        assert!(check(&g, &signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "app", "rotated")).is_ok());
        std::fs::write(&p, "accounts:\n  - accessKey: app\n    secretKey: [oops\n").unwrap();
        assert!(!g.reload_if_changed());
        assert!(check(&g, &signed(rq::SEND_MESSAGE_V2, &[("b", "orders")], "app", "rotated")).is_ok());
    }

    #[test]
    fn brokers_sign_with_the_first_admin_account() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path());
        let f = g.current();
        assert_eq!(f.broker_credentials(None).unwrap().access_key, "ops");
        assert!(f.broker_credentials(Some("app")).unwrap_err().contains("not an admin"));
        assert!(f.broker_credentials(Some("zzz")).is_err());
    }
}
