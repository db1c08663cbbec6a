//! Black-box tests of request-reply (SEND_REPLY_MESSAGE_V2 → PUSH_REPLY_MESSAGE_TO_CLIENT) on a
//! started two-shard ringmq, with the native client as requester and responder.

mod common;

use common::Server;
use ringmq::client::{ClientError, Connection, Message, Producer, PullConsumer, PushConsumer};
use ringmq::protocol::Command;
use ringmq::protocol::codes::{request as rq, response as rs};
use ringmq::protocol::message::properties_encode;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_request_gets_its_reply_through_the_broker() {
    let s = Server::start(2, &[]);
    let requester = Producer::new(&s.namesrv(), "Requesters");
    requester.create_topic("Ask", 2).unwrap();
    let responder = Arc::new(Producer::new(&s.namesrv(), "Responders"));
    let r2 = responder.clone();
    let mut service = PushConsumer::new(&s.namesrv(), "Service", move |msgs| {
        for m in msgs {
            let answer = format!("pong:{}", String::from_utf8_lossy(&m.body));
            if r2.reply(m, answer).is_err() {
                return false;
            }
        }
        true
    });
    service.subscribe("Ask", "*");
    service.start().unwrap();
    for i in 0..6 {
        let reply = requester.request(&Message::new("Ask", format!("ping{i}")), Duration::from_secs(10)).unwrap();
        assert_eq!(&reply.body[..], format!("pong:ping{i}").as_bytes());
        assert_eq!(reply.topic, "DefaultCluster_REPLY_TOPIC");
        assert_eq!(reply.property("MSG_TYPE"), Some("reply"));
        assert!(reply.property("CORRELATION_ID").is_some_and(|c| c.len() == 36));
        assert!(reply.property("PUSH_REPLY_TIME").is_some());
    }
    service.shutdown();
    // Replies are stored too (RocketMQ's storeReplyMessageEnable).
    let c = PullConsumer::new(&s.namesrv(), "Audit");
    let stored: u64 = c
        .queues("DefaultCluster_REPLY_TOPIC")
        .unwrap()
        .iter()
        .map(|q| c.pull(q, 0, 32, "*", 0).map(|r| r.messages.len() as u64).unwrap_or(0))
        .sum();
    assert_eq!(stored, 6, "server log:\n{}", s.log());
}

#[test]
fn a_request_without_a_responder_times_out() {
    let s = Server::start(1, &[]);
    let requester = Producer::new(&s.namesrv(), "Requesters");
    requester.create_topic("Nobody", 1).unwrap();
    match requester.request(&Message::new("Nobody", "hello?"), Duration::from_millis(500)) {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_reply_for_an_unknown_requester_is_refused_but_stored() {
    let s = Server::start(1, &[]);
    let conn = Connection::connect(&s.shard_addr(0), Duration::from_secs(5)).unwrap();
    let mut cmd = Command::request(rq::SEND_REPLY_MESSAGE); // V1: long header names
    cmd.put("producerGroup", "Responders");
    cmd.put("topic", "DefaultCluster_REPLY_TOPIC");
    cmd.put("defaultTopic", "TBW102");
    cmd.put("defaultTopicQueueNums", 4);
    cmd.put("queueId", 0);
    cmd.put("sysFlag", 0);
    cmd.put("bornTimestamp", 1);
    cmd.put("flag", 0);
    cmd.put("properties", properties_encode([("REPLY_TO_CLIENT", "10.0.0.9@42"), ("CORRELATION_ID", "c1")]));
    let r = conn.request(cmd.clone().with_body("late answer"), Duration::from_secs(5)).unwrap();
    assert_eq!(r.code, rs::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("push reply message fail, channel of 10.0.0.9@42 not found."));
    assert_ne!(r.field("msgId"), Some("0"), "stored although nobody took it");
    cmd.put("properties", properties_encode([("CORRELATION_ID", "c2")]));
    let r = conn.request(cmd.with_body("x"), Duration::from_secs(5)).unwrap();
    assert_eq!(r.remark.as_deref(), Some("reply message properties[REPLY_TO_CLIENT] is null"));
}
