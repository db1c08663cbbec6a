//! Handler tests of client membership, queue locks, transaction check-back and offset resets,
//! in-process over the fake disk (`testkit`); time moves by the manual clock.

use super::clients::{LOCK_LEASE, expire_clients};
use super::testkit::{Harness, run};
use super::tests::{end, send_half, sent};
use crate::protocol::Command;
use crate::protocol::bodies::decode_records;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::body::{MessageQueue, decode_json, encode_json};
use crate::protocol::commands::clients::{
    CheckClientConfigBody, ConsumerGroupRequest, ConsumerIdList, LockBatchRequestBody, LockBatchResponseBody,
    SubscriptionData,
};
use crate::protocol::commands::offsets::{QueryConsumerOffsetRequest, ResetOffsetRequest};
use crate::protocol::commands::transaction::{CheckTransactionStateRequest, TRANSACTION_COMMIT};
use crate::protocol::offset_table;
use crate::rt;
use std::time::Duration;

const START_MS: i64 = 1_700_000_000_000;

async fn consumer_ids(h: &Harness, group: &str) -> Vec<String> {
    let r = h.call(ConsumerGroupRequest { consumer_group: group.into() }.request(rq::GET_CONSUMER_LIST_BY_GROUP)).await;
    if r.code != rs::SUCCESS {
        return Vec::new();
    }
    let mut ids = decode_json::<ConsumerIdList>("ids", &r.body_bytes()).expect("id list").consumer_id_list;
    ids.sort();
    ids
}

fn drain(h: &Harness) -> Vec<Command> {
    std::iter::from_fn(|| h.pushed()).collect()
}

#[test]
fn silent_consumers_expire_and_their_group_is_told_to_rebalance() {
    run(|| async {
        let clock = rt::manual_clock(START_MS);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        let expiry = Duration::from_secs(h.b.cfg.client_expiry_secs);
        h.heartbeat("quiet", "G", "T", "*").await;
        h.heartbeat("talkative", "G", "T", "*").await;
        drain(&h);
        clock.advance(expiry.as_millis() as i64 / 2);
        h.heartbeat("talkative", "G", "T", "*").await;
        clock.advance(expiry.as_millis() as i64 / 2);
        expire_clients(&h.b, expiry);
        assert_eq!(consumer_ids(&h, "G").await, ["quiet", "talkative"], "exactly the expiry is not past it");
        assert!(drain(&h).is_empty());
        clock.advance(1);
        expire_clients(&h.b, expiry);
        assert_eq!(consumer_ids(&h, "G").await, ["talkative"], "the silent one is dropped");
        let pushed = drain(&h);
        assert_eq!(pushed.len(), 1, "one notification to the member left");
        assert_eq!(pushed[0].code, rq::NOTIFY_CONSUMER_IDS_CHANGED);
        clock.advance(expiry.as_millis() as i64);
        expire_clients(&h.b, expiry);
        assert!(consumer_ids(&h, "G").await.is_empty(), "the group is gone with its last member");
        h.stop().await;
    });
}

fn lock_request(code: i32, client: &str, queues: &[i32]) -> Command {
    let mq_set = queues.iter().map(|&q| MessageQueue { topic: "T".into(), broker_name: "b".into(), queue_id: q });
    let body = LockBatchRequestBody {
        consumer_group: "G".into(),
        client_id: client.into(),
        only_this_broker: false,
        mq_set: mq_set.collect(),
    };
    Command::request(code).with_body(encode_json(&body))
}

async fn lock(h: &Harness, client: &str, queues: &[i32]) -> Vec<i32> {
    let r = h.call(lock_request(rq::LOCK_BATCH_MQ, client, queues)).await;
    assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
    let locked = decode_json::<LockBatchResponseBody>("locked", &r.body_bytes()).expect("lock answer");
    locked.lock_ok_mq_set.iter().map(|mq| mq.queue_id).collect()
}

#[test]
fn queue_locks_belong_to_one_client_until_released_or_their_lease_runs_out() {
    run(|| async {
        let clock = rt::manual_clock(START_MS);
        let h = Harness::start().await;
        assert_eq!(lock(&h, "c1", &[0, 1]).await, [0, 1]);
        assert_eq!(lock(&h, "c2", &[1, 2]).await, [2], "queue 1 is c1's");
        assert_eq!(lock(&h, "c1", &[0, 1]).await, [0, 1], "the owner renews");
        let r = h.call(lock_request(rq::UNLOCK_BATCH_MQ, "c2", &[0])).await;
        assert_eq!(r.code, rs::SUCCESS);
        assert_eq!(lock(&h, "c2", &[0]).await, Vec::<i32>::new(), "only the owner unlocks");
        h.call(lock_request(rq::UNLOCK_BATCH_MQ, "c1", &[0])).await;
        assert_eq!(lock(&h, "c2", &[0]).await, [0], "released by its owner");
        clock.advance(LOCK_LEASE.as_millis() as i64);
        assert_eq!(lock(&h, "c2", &[1]).await, Vec::<i32>::new(), "the lease is not over yet");
        clock.advance(1);
        assert_eq!(lock(&h, "c2", &[1]).await, [1], "a lease not renewed runs out");
        assert_eq!(h.b.clients.borrow().locks_held(), 3, "queues 0, 1, 2 of c2");
        clock.advance(LOCK_LEASE.as_millis() as i64 + 1);
        expire_clients(&h.b, Duration::from_secs(h.b.cfg.client_expiry_secs));
        assert_eq!(h.b.clients.borrow().locks_held(), 0, "expired leases are dropped, not kept forever");

        let bad = Command::request(rq::LOCK_BATCH_MQ).with_body(r#"{"consumerGroup":"G","mqSet":[{"topic":"T"}]}"#);
        let r = h.call(bad).await;
        assert_eq!(r.code, rs::SYSTEM_ERROR);
        assert!(r.remark.as_deref().unwrap_or_default().contains("LockBatchRequestBody"), "{:?}", r.remark);
        let too_many: Vec<i32> = (0..=h.b.cfg.max_request_list_entries as i32).collect();
        let r = h.call(lock_request(rq::LOCK_BATCH_MQ, "c3", &too_many)).await;
        assert_eq!(r.code, rs::SYSTEM_ERROR, "past max_request_list_entries");
        h.stop().await;
    });
}

#[test]
fn check_client_config_parses_the_subscription_it_is_given() {
    run(|| async {
        let h = Harness::start().await;
        let check = |expr: &str, kind: &str| {
            let body = CheckClientConfigBody {
                client_id: Some("c".into()),
                group: Some("G".into()),
                subscription_data: SubscriptionData::new("T", expr, kind),
            };
            Command::request(rq::CHECK_CLIENT_CONFIG).with_body(encode_json(&body))
        };
        assert_eq!(h.call(check("a || b", "TAG")).await.code, rs::SUCCESS);
        assert_eq!(h.call(check("a > 1 AND b = 'x'", "SQL92")).await.code, rs::SUCCESS);
        assert_eq!(h.call(check("a > AND", "SQL92")).await.code, rs::SUBSCRIPTION_PARSE_FAILED);
        let junk = Command::request(rq::CHECK_CLIENT_CONFIG).with_body("{nope");
        assert_eq!(h.call(junk).await.code, rs::SYSTEM_ERROR);
        h.stop().await;
    });
}

#[test]
fn an_unresolved_transaction_is_checked_back_with_its_producer_after_the_timeout() {
    run(|| async {
        let clock = rt::manual_clock(START_MS);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        assert_eq!(h.call(Harness::producer_heartbeat_request("p1", "PG")).await.code, rs::SUCCESS);
        send_half(&h, "undecided").await;
        let timeout = Duration::from_millis(h.b.cfg.transaction_timeout_ms);
        clock.advance(timeout.as_millis() as i64 - 1);
        super::transaction::check_round(&h.b, timeout).await;
        assert!(drain(&h).is_empty(), "too young to be checked");

        clock.advance(1);
        super::transaction::check_round(&h.b, timeout).await;
        let asked = h.next_pushed().await;
        assert_eq!(asked.code, rq::CHECK_TRANSACTION_STATE);
        let q = CheckTransactionStateRequest::decode(&asked).expect("check header");
        let shown = decode_records(&asked.body_bytes()).expect("the half message");
        assert_eq!((shown[0].topic.as_str(), shown[0].body.as_ref()), ("T", &b"undecided"[..]), "real topic");
        assert_eq!(h.pull("G", "T", 0, 0).await.code, rs::PULL_NOT_FOUND, "still undecided");

        // The producer answers the check: commit the copy it was asked about.
        let mut answer = end(q.commit_log_offset, q.tran_state_table_offset, TRANSACTION_COMMIT);
        answer.put("fromTransactionCheck", "true");
        assert_eq!(h.call(answer).await.code, rs::SUCCESS);
        assert_eq!(h.pull("G", "T", 0, 0).await.bodies(), ["undecided"]);
        clock.advance(timeout.as_millis() as i64 * 2);
        super::transaction::check_round(&h.b, timeout).await;
        assert!(drain(&h).is_empty(), "a resolved transaction is not checked again");
        h.stop().await;
    });
}

async fn committed(h: &Harness) -> Option<i64> {
    let q = QueryConsumerOffsetRequest {
        consumer_group: "G".into(),
        topic: "T".into(),
        queue_id: 0,
        set_zero_if_not_found: None,
    };
    h.call(q.request(rq::QUERY_CONSUMER_OFFSET)).await.field("offset").and_then(|o| o.parse().ok())
}

#[test]
fn reset_offset_moves_committed_offsets_by_time_and_tells_the_group() {
    run(|| async {
        let clock = rt::manual_clock(START_MS);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        for i in 0..4 {
            sent(&h.send("T", 0, &format!("m{i}"), &[]).await);
            clock.advance(1_000);
        }
        h.heartbeat("c1", "G", "T", "*").await;
        drain(&h);
        let reset = |ts: i64, force: bool| {
            ResetOffsetRequest {
                topic: "T".into(),
                group: "G".into(),
                timestamp: ts,
                is_force: Some(force),
                ..Default::default()
            }
            .request(rq::INVOKE_BROKER_TO_RESET_OFFSET)
        };
        let r = h.call(reset(START_MS + 2_000, true)).await;
        assert_eq!(r.code, rs::SUCCESS, "{:?}", r.remark);
        let table = offset_table::decode(&String::from_utf8_lossy(&r.body_bytes())).expect("offset table");
        assert_eq!(table.iter().map(|q| q.offset).collect::<Vec<_>>(), [2], "the first stored at or after");
        assert_eq!(committed(&h).await, Some(2));
        let pushed = drain(&h);
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].code, rq::RESET_CONSUMER_CLIENT_OFFSET);
        assert_eq!(ResetOffsetRequest::decode(&pushed[0]).expect("push header").group, "G");

        h.call(reset(-1, true)).await;
        assert_eq!(committed(&h).await, Some(4), "-1 is the end");
        h.call(reset(START_MS, false)).await;
        assert_eq!(committed(&h).await, Some(0), "without force an offset may still move back");
        h.call(reset(-1, false)).await;
        assert_eq!(committed(&h).await, Some(0), "but never forward");
        let r = h
            .call(
                ResetOffsetRequest { topic: "Nope".into(), ..Default::default() }
                    .request(rq::INVOKE_BROKER_TO_RESET_OFFSET),
            )
            .await;
        assert_eq!(r.code, rs::TOPIC_NOT_EXIST);
        h.stop().await;
    });
}
