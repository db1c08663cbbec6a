//! `plain_acl.yml` (RocketMQ ACL 1.0): global white addresses and accounts.
//!
//! ```yaml
//! globalWhiteRemoteAddresses: [ "10.10.103.*" ]
//! accounts:
//!   - accessKey: RocketMQ
//!     secretKey: 12345678
//!     whiteRemoteAddress:
//!     admin: false
//!     defaultTopicPerm: DENY
//!     defaultGroupPerm: SUB
//!     topicPerms: [ "topicA=DENY", "topicB=PUB|SUB" ]
//!     groupPerms: [ "groupA=DENY", "groupB=PUB|SUB" ]
//! ```
//!
//! Stricter than the Java broker where leniency would open access: an unknown permission word, a
//! malformed address pattern, a duplicate access key or an unknown key is an error (the file is not
//! used, see [`super::AclGuard`]), where Java reads the first three as DENY, match-nothing or
//! last-wins. Scalars may be written as numbers (`secretKey: 12345678`), as in RocketMQ's sample.

use super::addr::AddrPattern;
use crate::security::sign::Credentials;
use serde_yaml::Value;
use std::collections::HashMap;

/// Permission bits as RocketMQ's `Permission`: DENY = 1, ANY = 2, PUB = 4, SUB = 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm(pub u8);

impl Perm {
    pub const DENY: Perm = Perm(1);
    pub const ANY: Perm = Perm(2);
    pub const PUB: Perm = Perm(4);
    pub const SUB: Perm = Perm(8);

    pub fn parse(s: &str) -> Result<Perm, String> {
        match s.trim().to_ascii_uppercase().replace(' ', "").as_str() {
            "DENY" => Ok(Perm::DENY),
            "PUB" => Ok(Perm::PUB),
            "SUB" => Ok(Perm::SUB),
            "PUB|SUB" | "SUB|PUB" => Ok(Perm(Perm::PUB.0 | Perm::SUB.0)),
            other => Err(format!("unknown permission {other:?} (DENY, PUB, SUB or PUB|SUB)")),
        }
    }

    /// Whether an account holding `self` may do what needs `needed` (`Permission.checkPermission`).
    pub fn grants(self, needed: Perm) -> bool {
        if self.0 & Perm::DENY.0 != 0 {
            return false;
        }
        if needed.0 & Perm::ANY.0 != 0 {
            return self.0 & (Perm::PUB.0 | Perm::SUB.0) != 0;
        }
        needed.0 & self.0 != 0
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "DENY",
            2 => "ANY",
            4 => "PUB",
            8 => "SUB",
            12 => "PUB|SUB",
            _ => "?",
        }
    }
}

/// One account.
#[derive(Debug, Clone)]
pub struct Account {
    pub access_key: String,
    pub secret_key: String,
    /// Requests from a matching address need no signature and get every permission (as in Java).
    pub white: Option<AddrPattern>,
    pub admin: bool,
    pub default_topic_perm: Perm,
    pub default_group_perm: Perm,
    pub topic_perms: HashMap<String, Perm>,
    pub group_perms: HashMap<String, Perm>,
}

/// A parsed, valid file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    pub global_white: Vec<AddrPattern>,
    pub accounts: HashMap<String, Account>,
    /// Access keys in file order (the first admin account is the brokers' own by default).
    pub order: Vec<String>,
}

fn scalar(v: &Value, what: &str) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(format!("{what} must be a single value")),
    }
}

fn list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items.iter().filter_map(|i| scalar(i, what).transpose()).collect(),
        other => Ok(scalar(other, what)?.into_iter().collect()),
    }
}

fn perms(v: &Value, what: &str) -> Result<HashMap<String, Perm>, String> {
    let mut out = HashMap::new();
    for entry in list(v, what)? {
        let (name, perm) = entry.split_once('=').ok_or_else(|| format!("{what}: {entry:?} is not name=PERM"))?;
        let perm = Perm::parse(perm).map_err(|e| format!("{what}: {name}: {e}"))?;
        out.insert(name.trim().to_string(), perm);
    }
    Ok(out)
}

const ACCOUNT_KEYS: [&str; 8] = [
    "accessKey",
    "secretKey",
    "whiteRemoteAddress",
    "admin",
    "defaultTopicPerm",
    "defaultGroupPerm",
    "topicPerms",
    "groupPerms",
];

fn account(v: &Value, index: usize) -> Result<Account, String> {
    let map = v.as_mapping().ok_or_else(|| format!("accounts[{index}] is not a mapping"))?;
    for k in map.keys() {
        let k = k.as_str().unwrap_or_default();
        if !ACCOUNT_KEYS.contains(&k) {
            return Err(format!("accounts[{index}]: unknown key {k:?}"));
        }
    }
    let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
    let field = |k: &str| scalar(get(k), &format!("accounts[{index}].{k}"));
    let access_key = field("accessKey")?.filter(|s| !s.trim().is_empty());
    let access_key = access_key.ok_or_else(|| format!("accounts[{index}] has no accessKey"))?.trim().to_string();
    let secret_key = field("secretKey")?.filter(|s| !s.trim().is_empty());
    let secret_key = secret_key.ok_or_else(|| format!("account {access_key} has no secretKey"))?.trim().to_string();
    let white = match field("whiteRemoteAddress")?.filter(|s| !s.trim().is_empty()) {
        Some(p) => Some(AddrPattern::parse(&p).map_err(|e| format!("account {access_key}: whiteRemoteAddress: {e}"))?),
        None => None,
    };
    let admin = match field("admin")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("account {access_key}: admin must be true or false, not {other:?}")),
    };
    let default_perm = |k: &str| -> Result<Perm, String> {
        match field(k)? {
            Some(p) => Perm::parse(&p).map_err(|e| format!("account {access_key}: {k}: {e}")),
            None => Ok(Perm::DENY), // RocketMQ: an unset default denies
        }
    };
    Ok(Account {
        default_topic_perm: default_perm("defaultTopicPerm")?,
        default_group_perm: default_perm("defaultGroupPerm")?,
        topic_perms: perms(get("topicPerms"), &format!("account {access_key}: topicPerms"))?,
        group_perms: perms(get("groupPerms"), &format!("account {access_key}: groupPerms"))?,
        access_key,
        secret_key,
        white,
        admin,
    })
}

impl AclFile {
    pub fn parse(text: &str) -> Result<AclFile, String> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let root = match &doc {
            Value::Null => return Ok(AclFile::default()),
            Value::Mapping(m) => m,
            _ => return Err("the file is not a mapping".into()),
        };
        for k in root.keys() {
            let k = k.as_str().unwrap_or_default();
            if !["globalWhiteRemoteAddresses", "accounts", "dataVersion"].contains(&k) {
                return Err(format!("unknown key {k:?}"));
            }
        }
        let mut file = AclFile::default();
        for p in list(root.get("globalWhiteRemoteAddresses").unwrap_or(&Value::Null), "globalWhiteRemoteAddresses")? {
            file.global_white.push(AddrPattern::parse(&p).map_err(|e| format!("globalWhiteRemoteAddresses: {e}"))?);
        }
        let accounts = match root.get("accounts") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Sequence(s)) => s.as_slice(),
            Some(_) => return Err("accounts must be a list".into()),
        };
        for (i, a) in accounts.iter().enumerate() {
            let a = account(a, i)?;
            if file.accounts.contains_key(&a.access_key) {
                return Err(format!("accessKey {} appears twice", a.access_key));
            }
            file.order.push(a.access_key.clone());
            file.accounts.insert(a.access_key.clone(), a);
        }
        Ok(file)
    }

    /// The first admin account (what brokers sign their registrations with by default).
    pub fn first_admin(&self) -> Option<&Account> {
        self.order.iter().filter_map(|k| self.accounts.get(k)).find(|a| a.admin)
    }

    /// The credentials brokers sign their own requests (registrations) with: the admin account
    /// `access_key` if given, else the first admin account.
    pub fn broker_credentials(&self, access_key: Option<&str>) -> Result<Credentials, String> {
        let account = match access_key {
            Some(k) => {
                self.accounts.get(k).ok_or_else(|| format!("acl_broker_account {k:?} is not in the ACL file"))?
            }
            None => self.first_admin().ok_or("the ACL file has no admin account for the brokers to register with")?,
        };
        if !account.admin {
            return Err(format!("acl_broker_account {:?} is not an admin account", account.access_key));
        }
        Ok(Credentials::new(&account.access_key, &account.secret_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB
  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    admin: true
"#;

    #[test]
    fn rocketmqs_sample_file_parses() {
        let f = AclFile::parse(SAMPLE).unwrap();
        assert_eq!(f.global_white.len(), 2);
        let a = &f.accounts["RocketMQ"];
        assert_eq!(a.secret_key, "12345678");
        assert!(!a.admin && a.white.is_none());
        assert_eq!(a.default_group_perm, Perm::SUB);
        assert_eq!(a.topic_perms["topicB"], Perm(12));
        assert_eq!(a.group_perms["groupA"], Perm::DENY);
        assert_eq!(f.first_admin().map(|a| a.access_key.as_str()), Some("rocketmq2"));
    }

    #[test]
    fn permissions_check_as_rocketmq_does() {
        assert!(Perm(12).grants(Perm::PUB) && Perm(12).grants(Perm::SUB));
        assert!(!Perm::SUB.grants(Perm::PUB));
        assert!(!Perm::DENY.grants(Perm::SUB));
        assert!(Perm::SUB.grants(Perm::ANY) && !Perm::DENY.grants(Perm::ANY));
    }

    #[test]
    fn a_malformed_file_is_refused_with_the_reason() {
        for (text, why) in [
            ("accounts:\n  - accessKey: a\n    secretKey: b\n    defaultTopicPerm: ALL\n", "unknown permission"),
            ("accounts:\n  - accessKey: a\n", "no secretKey"),
            ("accounts:\n  - accessKey: a\n    secretKey: b\n  - accessKey: a\n    secretKey: c\n", "twice"),
            ("accounts:\n  - accessKey: a\n    secretKey: b\n    topicPerms: [t]\n", "name=PERM"),
            ("accounts:\n  - accessKey: a\n    secretkey: b\n", "unknown key"),
            ("globalWhiteRemoteAddresses: [300.1.1.1]\n", "globalWhiteRemoteAddresses"),
            ("accounts: [", "not YAML"),
        ] {
            let e = AclFile::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
