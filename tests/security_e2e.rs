//! Security against a started `ringmq serve`: ACL (signed requests, permissions, admin codes, the
//! name server's writes, address hijack) and TLS (permissive, enforcing, client certificates,
//! certificate reload), with the native client and `ringmq admin`.

mod common;

use common::{Server, wait_until};
use ringmq::client::{ClientError, ClientSecurity, Connection, Credentials, Message, Producer, PullConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::request as rq;
use ringmq::security::tls::{ClientTlsFiles, client_config};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ACL: &str = r#"
accounts:
  - accessKey: ops
    secretKey: ops-secret-1
    admin: true
  - accessKey: app
    secretKey: app-secret-1
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - orders=PUB|SUB
      - audit=SUB
    groupPerms:
      - blocked=DENY
"#;

fn signed(ak: &str, sk: &str) -> ClientSecurity {
    ClientSecurity { credentials: Some(Credentials::new(ak, sk)), ..Default::default() }
}

fn acl_server(dir: &Path) -> Server {
    let acl = dir.join("plain_acl.yml");
    std::fs::write(&acl, ACL).unwrap();
    Server::start(1, &["--acl-file", acl.to_str().unwrap()])
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> (i32, String) {
    match r {
        Err(ClientError::Refused { code, remark, .. }) => (code, remark),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn signed_requests_pass_and_each_acl_refusal_answers_no_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let s = acl_server(tmp.path());
    let ns = s.namesrv();
    let ops = Producer::with_security(&ns, "ops-admin", signed("ops", "ops-secret-1"));
    ops.create_topic("orders", 2).unwrap();
    ops.create_topic("audit", 1).unwrap();
    let app = Producer::with_security(&ns, "app-producer", signed("app", "app-secret-1"));
    let sent = app.send(&Message::new("orders", "paid")).unwrap();
    let consumer = PullConsumer::with_security(&ns, "billing", signed("app", "app-secret-1"));
    let got = consumer.pull(&sent.queue, 0, 32, "*", 0).unwrap();
    assert_eq!(got.messages.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [&b"paid"[..]]);

    let (code, remark) =
        refused(Producer::with_security(&ns, "p", signed("app", "wrong")).send(&Message::new("orders", "x")));
    assert_eq!(code, 16);
    assert!(remark.contains("signature"), "{remark}");
    let (code, remark) =
        refused(Producer::with_security(&ns, "p", signed("ghost", "x")).send(&Message::new("orders", "x")));
    assert!(code == 16 && remark.contains("No acl config for accessKey=ghost"), "{remark}");
    let (code, remark) = refused(Producer::new(&ns, "anonymous").send(&Message::new("orders", "x")));
    assert!(code == 16 && remark.contains("No accessKey"), "{remark}");
    let (code, remark) = refused(app.send(&Message::new("audit", "x")));
    assert!(code == 16 && remark.contains("topic audit") && remark.contains("accessKey=app"), "{remark}");
    let blocked = PullConsumer::with_security(&ns, "blocked", signed("app", "app-secret-1"));
    let r = blocked.pull(&sent.queue, 0, 32, "*", 0).unwrap();
    assert!(r.code == 16 && r.messages.is_empty(), "{r:?}"); // a pull reports its answer's code
    let (code, remark) = refused(app.create_topic("orders", 8));
    assert!(code == 16 && remark.contains("Need admin permission"), "{remark}");
    // Nothing the refused requests tried happened: one message, two queues.
    assert_eq!(consumer.pull(&sent.queue, 0, 32, "*", 0).unwrap().messages.len(), 1);
    assert_eq!(
        PullConsumer::with_security(&ns, "billing", signed("app", "app-secret-1")).queues("orders").unwrap().len(),
        2
    );

    // Refusals are counted in the metrics.
    assert!(
        wait_until(Duration::from_secs(10), || s.metric_sum("ringmq_acl_denied_total") >= 6),
        "{}",
        s.scrape_metrics()
    );
}

#[test]
fn admin_cli_signs_with_access_keys_or_a_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let s = acl_server(tmp.path());
    let admin = |extra: &[&str]| {
        std::process::Command::new(common::binary())
            .args(["admin", "--namesrv", &s.namesrv(), "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = admin(&["topic", "create", "Unsigned", "--queues", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No accessKey"), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        admin(&["--access-key", "ops", "--secret-key", "ops-secret-1", "topic", "create", "Signed", "--queues", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile = tmp.path().join("tools.yml");
    std::fs::write(&profile, "accessKey: ops\nsecretKey: ops-secret-1\n").unwrap();
    let out = admin(&["--profile", profile.to_str().unwrap(), "topic", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signed"));
}

fn register_request(name: &str, addr: &str) -> Command {
    let mut c = Command::request(rq::REGISTER_BROKER);
    for (k, v) in [("brokerName", name), ("brokerAddr", addr), ("clusterName", "DefaultCluster"), ("brokerId", "0")] {
        c.put(k, v);
    }
    c.with_body(r#"{"topicConfigSerializeWrapper":{"topicConfigTable":{}}}"#)
}

fn route_addr(ns: &str, topic: &str) -> String {
    let c = Connection::connect(ns, Duration::from_secs(3)).unwrap();
    let mut q = Command::request(rq::GET_ROUTEINFO_BY_TOPIC);
    q.put("topic", topic);
    let r = c.request(q, Duration::from_secs(3)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body_bytes()).unwrap_or_default();
    v["brokerDatas"][0]["brokerAddrs"]["0"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_live_brokers_address_cannot_be_hijacked_even_without_acl() {
    let s = Server::start(1, &[]);
    let ns = s.namesrv();
    Producer::new(&ns, "p").create_topic("Routed", 1).unwrap();
    let real = route_addr(&ns, "Routed");
    assert_eq!(real, s.shard_addr(0));
    let attacker = Connection::connect(&ns, Duration::from_secs(3)).unwrap();
    let r = attacker.request(register_request("ringmq-0", "203.0.113.7:10911"), Duration::from_secs(3)).unwrap();
    assert_eq!(r.code, 16, "{:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("registered live"));
    drop(attacker); // its connection closing must not take the real broker out of the routes
    std::thread::sleep(Duration::from_millis(300)); // a window: the removal, if any, is immediate
    assert_eq!(route_addr(&ns, "Routed"), real);
    assert!(s.log().contains("refused a registration"), "{}", s.log());
}

#[test]
fn with_acl_the_name_server_refuses_anonymous_writes_and_keeps_queries_open() {
    let tmp = tempfile::tempdir().unwrap();
    let s = acl_server(tmp.path());
    let ns = s.namesrv();
    Producer::with_security(&ns, "ops", signed("ops", "ops-secret-1")).create_topic("Kept", 1).unwrap();
    // The shard registered signed with the file's first admin account: the route is there, and a
    // route query needs no signature.
    assert_eq!(route_addr(&ns, "Kept"), s.shard_addr(0));
    let anon = Connection::connect(&ns, Duration::from_secs(3)).unwrap();
    let mut unregister = Command::request(rq::UNREGISTER_BROKER);
    unregister.put("brokerAddr", s.shard_addr(0));
    let mut kv = Command::request(rq::PUT_KV_CONFIG);
    for (k, v) in [("namespace", "ORDER_TOPIC_CONFIG"), ("key", "Kept"), ("value", "x")] {
        kv.put(k, v);
    }
    let mut delete = Command::request(rq::DELETE_TOPIC_IN_NAMESRV);
    delete.put("topic", "Kept");
    for req in [register_request("fake-0", "127.0.0.1:1"), unregister.clone(), kv, delete.clone()] {
        let code = req.code;
        let r = anon.request(req, Duration::from_secs(3)).unwrap();
        assert_eq!(r.code, 16, "request {code}: {:?}", r.remark);
    }
    // An app account is not an admin either.
    let app = Connection::connect_with(&ns, Duration::from_secs(3), &signed("app", "app-secret-1")).unwrap();
    let r = app.request(delete, Duration::from_secs(3)).unwrap();
    assert!(r.code == 16 && r.remark.unwrap_or_default().contains("Need admin"));
    assert_eq!(route_addr(&ns, "Kept"), s.shard_addr(0));
    // The admin account may.
    let ops = Connection::connect_with(&ns, Duration::from_secs(3), &signed("ops", "ops-secret-1")).unwrap();
    assert_eq!(ops.request(unregister, Duration::from_secs(3)).unwrap().code, 0);
}

// ---- TLS ----

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a certificate it signed for 127.0.0.1, written under `dir` with `prefix`.
fn pki(dir: &Path, prefix: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let p = Pki {
        ca: dir.join(format!("{prefix}ca.pem")),
        cert: dir.join(format!("{prefix}cert.pem")),
        key: dir.join(format!("{prefix}key.pem")),
    };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

fn tls_server(p: &Pki, mode: &str, extra: &[&str]) -> Server {
    let mut args =
        vec!["--tls-mode", mode, "--tls-cert", p.cert.to_str().unwrap(), "--tls-key", p.key.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(1, &args)
}

fn tls_client(ca: Option<&Path>, cert_key: Option<&Pki>) -> ClientSecurity {
    let files =
        ClientTlsFiles { ca: ca.map(Path::to_path_buf), cert_key: cert_key.map(|p| (p.cert.clone(), p.key.clone())) };
    ClientSecurity { tls: Some(client_config(&files).unwrap()), credentials: None }
}

/// Whether a plaintext GET_ROUTEINFO_BY_TOPIC written straight to the socket gets any answer.
fn plaintext_answered(addr: &str) -> bool {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = Command::request(rq::GET_ROUTEINFO_BY_TOPIC);
    q.put("topic", "Any");
    let _ = sock.write_all(&q.encode());
    let mut buf = [0u8; 64];
    // A TLS server reads our bytes as a broken handshake and closes (or sends an alert, which is
    // not a remoting frame: its first length byte would be 0x15).
    match sock.read(&mut buf) {
        Ok(n) if n >= 4 => buf[0] == 0,
        _ => false,
    }
}

#[test]
fn permissive_tls_serves_both_and_enforcing_answers_only_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path(), "");
    let s = tls_server(&p, "permissive", &[]);
    let ns = s.namesrv();
    let tls = Producer::with_security(&ns, "tls-p", tls_client(Some(&p.ca), None));
    tls.create_topic("Both", 1).unwrap();
    tls.send(&Message::new("Both", "over tls")).unwrap();
    Producer::new(&ns, "plain-p").send(&Message::new("Both", "in plaintext")).unwrap();
    assert!(plaintext_answered(&ns));
    drop(s);

    let s = tls_server(&p, "enforcing", &[]);
    let ns = s.namesrv();
    // The shard registered with the name server over TLS, so routes exist.
    let tls = Producer::with_security(&ns, "tls-p", tls_client(Some(&p.ca), None));
    tls.create_topic("OnlyTls", 1).unwrap();
    let sent = tls.send(&Message::new("OnlyTls", "secret")).unwrap();
    let got =
        PullConsumer::with_security(&ns, "tls-c", tls_client(None, None)).pull(&sent.queue, 0, 8, "*", 0).unwrap();
    assert_eq!(got.messages.len(), 1);
    assert!(!plaintext_answered(&ns), "the name server answered plaintext under enforcing");
    assert!(!plaintext_answered(&s.shard_addr(0)), "the broker answered plaintext under enforcing");
    // A client that trusts another CA refuses the server.
    let other = pki(tmp.path(), "other-");
    assert!(Connection::connect_with(&ns, Duration::from_secs(3), &tls_client(Some(&other.ca), None)).is_err());
}

#[test]
fn client_certificates_are_required_when_a_client_ca_is_set_and_certificates_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let p = pki(tmp.path(), "");
    let s = tls_server(&p, "enforcing", &["--tls-client-ca", p.ca.to_str().unwrap()]);
    let ns = s.namesrv();
    let without = Connection::connect_with(&ns, Duration::from_secs(3), &tls_client(Some(&p.ca), None));
    let answered = without.ok().and_then(|c| {
        let mut q = Command::request(rq::GET_ROUTEINFO_BY_TOPIC);
        q.put("topic", "Any");
        c.request(q, Duration::from_secs(3)).ok()
    });
    assert!(answered.is_none(), "a client without a certificate was served");
    let with = Producer::with_security(&ns, "mtls", tls_client(Some(&p.ca), Some(&p)));
    with.create_topic("Mutual", 1).unwrap();
    with.send(&Message::new("Mutual", "both sides verified")).unwrap();

    // A new server certificate from another CA is picked up without a restart (the client keeps
    // presenting a certificate of the CA the server trusts for clients).
    let client =
        Pki { ca: p.ca.clone(), cert: tmp.path().join("client-cert.pem"), key: tmp.path().join("client-key.pem") };
    std::fs::copy(&p.cert, &client.cert).unwrap();
    std::fs::copy(&p.key, &client.key).unwrap();
    let next = pki(tmp.path(), "next-");
    std::fs::copy(&next.cert, &p.cert).unwrap();
    std::fs::copy(&next.key, &p.key).unwrap();
    let serves_next =
        || Connection::connect_with(&ns, Duration::from_secs(3), &tls_client(Some(&next.ca), Some(&client))).is_ok();
    assert!(wait_until(Duration::from_secs(10), serves_next), "the new certificate was not loaded");
}
