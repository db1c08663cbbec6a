//! Handler tests, in-process over the fake disk (`testkit`): send and pull, long polling, offsets,
//! clients, transactions, retries, queries, delay levels and timers. Time moves by the manual clock;
//! nothing sleeps.

use super::testkit::{Harness, run};
use crate::protocol::Command;
use crate::protocol::bodies::decode_records;
use crate::protocol::codes::{request as rq, response as rs};
use crate::protocol::commands::clients::{ConsumerGroupRequest, UnregisterClientRequest};
use crate::protocol::commands::offsets::{
    OffsetResponse, QueryConsumerOffsetRequest, QueueRequest, SearchOffsetRequest, UpdateConsumerOffsetRequest,
};
use crate::protocol::commands::pull::PullResponseHeader;
use crate::protocol::commands::query::{QueryMessageRequest, ViewMessageRequest};
use crate::protocol::commands::send::{ConsumerSendMsgBackRequest, SendHeader, SendResponseHeader};
use crate::protocol::commands::transaction::{EndTransactionRequest, TRANSACTION_COMMIT, TRANSACTION_ROLLBACK};
use crate::protocol::message::{FLAG_TRANSACTION_PREPARED, decode_offset_msg_id, properties_encode};
use crate::rt;

pub(super) fn sent(r: &Command) -> SendResponseHeader {
    assert_eq!(r.code, rs::SUCCESS, "send refused: {:?}", r.remark);
    SendResponseHeader::decode(r).expect("send answer header")
}

#[test]
fn send_then_pull_returns_the_message_and_positions() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 2).await;
        for i in 0..3 {
            assert_eq!(sent(&h.send("T", 1, &format!("m{i}"), &[("TAGS", "a")]).await).queue_offset, i);
        }
        let p = h.pull("G", "T", 1, 0).await;
        assert_eq!(p.code, rs::SUCCESS);
        assert_eq!(p.bodies(), ["m0", "m1", "m2"]);
        assert_eq!((p.header.next_begin_offset, p.header.min_offset, p.header.max_offset), (3, 0, 3));
        assert_eq!(h.pull("G", "T", 1, 3).await.code, rs::PULL_NOT_FOUND);
        assert_eq!(h.pull("G", "T", 0, 0).await.code, rs::PULL_NOT_FOUND);
        h.stop().await;
    });
}

#[test]
fn acknowledged_sends_survive_a_crash_of_the_broker_and_its_disk() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        for i in 0..20 {
            sent(&h.send("T", 0, &format!("m{i}"), &[]).await);
        }
        let h = h.crash_and_restart().await;
        let p = h.pull("G", "T", 0, 0).await;
        assert_eq!(p.bodies(), (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
        h.stop().await;
    });
}

#[test]
fn pull_errors_name_what_is_wrong() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 2).await;
        let r = h.call(Harness::pull_request("G", "Nope", 0, 0, "*", 0)).await;
        assert_eq!(r.code, rs::TOPIC_NOT_EXIST);
        let r = h.call(Harness::pull_request("G", "T", 7, 0, "*", 0)).await;
        assert_eq!(r.code, rs::INVALID_PARAMETER, "{:?}", r.remark);
        let mut no_offset = Harness::pull_request("G", "T", 0, 0, "*", 0);
        no_offset.ext.remove("queueOffset");
        let r = h.call(no_offset).await;
        assert_eq!(
            (r.code, r.remark.as_deref()),
            (rs::SYSTEM_ERROR, Some("header field 'queueOffset' is required but missing"))
        );
        let mut no_sub = Harness::pull_request("G", "T", 0, 0, "*", 0);
        no_sub.put("sysFlag", 0);
        assert_eq!(h.call(no_sub).await.code, rs::SUBSCRIPTION_NOT_EXIST, "no heartbeat, no subscription in the pull");
        let r = h.call(Harness::pull_request("G", "T", 0, 0, "a ||| (", 0)).await;
        assert!(r.code == rs::SUCCESS || r.code == rs::PULL_NOT_FOUND || r.code == rs::SUBSCRIPTION_PARSE_FAILED);
        h.stop().await;
    });
}

#[test]
fn a_held_pull_is_answered_by_the_next_send_or_at_its_deadline() {
    run(|| async {
        let clock = rt::manual_clock(1_700_000_000_000);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        assert!(h.call_held(Harness::pull_request("G", "T", 0, 0, "*", 15_000)).await.is_none(), "parked");
        assert_eq!(h.b.polls.borrow().len(), 1);
        assert!(h.pushed().is_none());
        sent(&h.send("T", 0, "wake", &[]).await);
        rt::yield_now().await;
        let answer = h.next_pushed().await;
        assert_eq!(answer.code, rs::SUCCESS);
        let msgs = decode_records(&answer.body_bytes()).unwrap();
        assert_eq!(msgs[0].body.as_ref(), b"wake");
        assert_eq!(h.b.polls.borrow().len(), 0);

        // Parked again at the end; its deadline passes with nothing new.
        assert!(h.call_held(Harness::pull_request("G", "T", 0, 1, "*", 15_000)).await.is_none());
        clock.advance(14_999);
        h.b.expire_pollers(rt::now());
        rt::yield_now().await;
        assert!(h.pushed().is_none(), "answered before its deadline");
        clock.advance(1);
        h.b.expire_pollers(rt::now());
        let answer = h.next_pushed().await;
        assert_eq!(answer.code, rs::PULL_NOT_FOUND);
        h.stop().await;
    });
}

#[test]
fn a_paced_catch_up_pull_waits_for_what_the_previous_one_served() {
    run(|| async {
        let clock = rt::manual_clock(1_700_000_000_000);
        let h = Harness::with(|c| {
            c.catch_up_read_mib_per_sec = 1;
            c.tail_cache_bytes = 8 << 10;
        })
        .await;
        h.create_topic("T", 1).await;
        let body = "x".repeat(1000);
        for _ in 0..64 {
            sent(&h.send("T", 0, &body, &[]).await);
        }
        let mut spins = 0;
        while !h.b.store.is_catch_up("T", 0, 0) {
            spins += 1;
            assert!(spins < 100_000, "the first records never left the log's memory");
            rt::yield_now().await;
        }
        // 32 records of ~1.1 KiB: ~35 ms of a 1 MiB/s budget.
        assert_eq!(h.pull("G", "T", 0, 0).await.messages.len(), 32);
        let (b, conn) = (h.b.clone(), h.conn.clone());
        let req = Harness::pull_request("G", "T", 0, 32, "*", 0);
        let second = rt::spawn(async move { super::Service::handle(&b, &conn, req).await });
        for _ in 0..10 {
            rt::yield_now().await;
        }
        assert_eq!(h.b.catch_up.waiting(), 1, "the second catch-up pull went ahead before its turn");
        clock.advance(40);
        let answer = second.await.expect("answered");
        assert_eq!(super::testkit::Pulled::of(&answer).messages.len(), 32);
        h.stop().await;
    });
}

#[test]
fn a_held_pull_with_a_tag_filter_stays_held_past_messages_it_does_not_want() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        assert!(h.call_held(Harness::pull_request("G", "T", 0, 0, "wanted", 15_000)).await.is_none());
        sent(&h.send("T", 0, "other", &[("TAGS", "other")]).await);
        for _ in 0..10 {
            rt::yield_now().await;
        }
        assert!(h.pushed().is_none(), "woken, filtered out, parked again");
        assert_eq!(h.b.polls.borrow().len(), 1);
        sent(&h.send("T", 0, "yes", &[("TAGS", "wanted")]).await);
        let answer = h.next_pushed().await;
        let msgs = decode_records(&answer.body_bytes()).unwrap();
        assert_eq!(msgs.iter().map(|m| m.body.as_ref()).collect::<Vec<_>>(), [b"yes"]);
        h.stop().await;
    });
}

#[test]
fn consumer_offsets_commit_query_and_bounds() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        for i in 0..5 {
            sent(&h.send("T", 0, &format!("{i}"), &[]).await);
        }
        let q = |set_zero| {
            QueryConsumerOffsetRequest {
                consumer_group: "G".into(),
                topic: "T".into(),
                queue_id: 0,
                set_zero_if_not_found: set_zero,
            }
            .request(rq::QUERY_CONSUMER_OFFSET)
        };
        assert_eq!(h.call(q(Some(false))).await.code, rs::QUERY_NOT_FOUND);
        let young = h.call(q(None)).await;
        assert_eq!(OffsetResponse::decode(&young).unwrap().offset, 0, "young queue: start at 0");
        let commit = UpdateConsumerOffsetRequest {
            consumer_group: "G".into(),
            topic: "T".into(),
            queue_id: 0,
            commit_offset: 3,
        };
        assert_eq!(h.call(commit.request(rq::UPDATE_CONSUMER_OFFSET)).await.code, rs::SUCCESS);
        assert_eq!(OffsetResponse::decode(&h.call(q(Some(false))).await).unwrap().offset, 3);
        let neg = UpdateConsumerOffsetRequest { commit_offset: -1, ..commit };
        h.call(neg.request(rq::UPDATE_CONSUMER_OFFSET)).await;
        assert_eq!(OffsetResponse::decode(&h.call(q(None)).await).unwrap().offset, 3, "negative commits ignored");
        let queue = QueueRequest { topic: "T".into(), queue_id: 0 };
        let max = h.call(queue.request(rq::GET_MAX_OFFSET)).await;
        let min = h.call(queue.request(rq::GET_MIN_OFFSET)).await;
        assert_eq!(
            (OffsetResponse::decode(&min).unwrap().offset, OffsetResponse::decode(&max).unwrap().offset),
            (0, 5)
        );
        h.stop().await;
    });
}

#[test]
fn search_by_timestamp_uses_store_times() {
    run(|| async {
        let clock = rt::manual_clock(1_700_000_000_000);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        for i in 0..4 {
            sent(&h.send("T", 0, &format!("{i}"), &[]).await);
            clock.advance(1_000);
        }
        let search = |ts, upper: bool| {
            SearchOffsetRequest {
                topic: "T".into(),
                queue_id: 0,
                timestamp: ts,
                boundary_type: upper.then(|| "upper".into()),
            }
            .request(rq::SEARCH_OFFSET_BY_TIMESTAMP)
        };
        let at = |r: Command| OffsetResponse::decode(&r).unwrap().offset;
        assert_eq!(at(h.call(search(1_700_000_001_500, false)).await), 2, "first stored at or after");
        assert_eq!(at(h.call(search(1_700_000_001_500, true)).await), 1, "last stored at or before");
        assert_eq!(at(h.call(search(0, false)).await), 0);
        h.stop().await;
    });
}

#[test]
fn heartbeat_registers_the_subscription_and_membership_changes_are_pushed() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        sent(&h.send("T", 0, "x", &[("TAGS", "b")]).await);
        assert_eq!(h.heartbeat("c1", "G", "T", "a").await.code, rs::SUCCESS);
        let mut by_heartbeat = Harness::pull_request("G", "T", 0, 0, "*", 0);
        by_heartbeat.put("sysFlag", 0);
        let r = h.call(by_heartbeat).await;
        assert_ne!(r.code, rs::SUCCESS, "the heartbeat's tag filter 'a' excludes the 'b' message");
        let list =
            h.call(ConsumerGroupRequest { consumer_group: "G".into() }.request(rq::GET_CONSUMER_LIST_BY_GROUP)).await;
        assert!(String::from_utf8_lossy(&list.body_bytes()).contains("c1"));

        h.heartbeat("c2", "G", "T", "a").await;
        let pushed = h.pushed().expect("a new member makes the broker notify the group");
        assert_eq!(pushed.code, rq::NOTIFY_CONSUMER_IDS_CHANGED);
        assert_eq!(ConsumerGroupRequest::decode(&pushed).unwrap().consumer_group, "G");
        while h.pushed().is_some() {}

        let bye =
            UnregisterClientRequest { client_id: "c1".into(), producer_group: None, consumer_group: Some("G".into()) };
        assert_eq!(h.call(bye.request(rq::UNREGISTER_CLIENT)).await.code, rs::SUCCESS);
        let list =
            h.call(ConsumerGroupRequest { consumer_group: "G".into() }.request(rq::GET_CONSUMER_LIST_BY_GROUP)).await;
        let ids = String::from_utf8_lossy(&list.body_bytes()).into_owned();
        assert!(ids.contains("c2") && !ids.contains("c1"), "{ids}");
        let none =
            h.call(ConsumerGroupRequest { consumer_group: "X".into() }.request(rq::GET_CONSUMER_LIST_BY_GROUP)).await;
        assert_eq!(none.code, rs::SYSTEM_ERROR);
        h.stop().await;
    });
}

pub(super) async fn send_half(h: &Harness, body: &str) -> (u64, u64) {
    let mut req = Harness::send_request("T", 0, body, &[("TRAN_MSG", "true"), ("PGROUP", "PG"), ("UNIQ_KEY", body)]);
    let mut header = SendHeader::decode(&req).unwrap();
    header.sys_flag = FLAG_TRANSACTION_PREPARED;
    let body_bytes = req.body.clone();
    req = header.request(rq::SEND_MESSAGE_V2);
    req.body = body_bytes;
    let r = sent(&h.call(req).await);
    let (_, phys) = decode_offset_msg_id(&r.msg_id).expect("offset msg id");
    (phys, r.queue_offset)
}

pub(super) fn end(phys: u64, qoff: u64, kind: i32) -> Command {
    EndTransactionRequest {
        producer_group: "PG".into(),
        tran_state_table_offset: qoff,
        commit_log_offset: phys,
        commit_or_rollback: kind,
        from_transaction_check: Some(false),
        msg_id: None,
        transaction_id: None,
    }
    .request(rq::END_TRANSACTION)
}

#[test]
fn half_messages_are_invisible_until_committed_and_rollback_drops_them() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        let (p1, q1) = send_half(&h, "commit-me").await;
        let (p2, q2) = send_half(&h, "roll-me-back").await;
        assert_eq!(h.pull("G", "T", 0, 0).await.code, rs::PULL_NOT_FOUND, "halves are not in the topic");
        assert_eq!(h.call(end(p1, q1, TRANSACTION_COMMIT)).await.code, rs::SUCCESS);
        assert_eq!(h.call(end(p2, q2, TRANSACTION_ROLLBACK)).await.code, rs::SUCCESS);
        assert_eq!(h.call(end(p1, q1, TRANSACTION_COMMIT)).await.code, rs::SUCCESS, "idempotent");
        assert_eq!(h.pull("G", "T", 0, 0).await.bodies(), ["commit-me"], "committed once, rollback dropped");
        let wrong = h.call(end(p1, q1 + 7, TRANSACTION_COMMIT)).await;
        assert_eq!(wrong.code, rs::SYSTEM_ERROR);
        let mut bad = end(p1, q1, TRANSACTION_COMMIT);
        bad.put("commitOrRollback", 3);
        assert_eq!(h.call(bad).await.code, rs::SYSTEM_ERROR, "{:?}", "not a transaction type");
        h.stop().await;
    });
}

#[test]
fn send_back_redelivers_through_the_retry_topic_after_its_delay_and_dead_letters_past_the_maximum() {
    run(|| async {
        let clock = rt::manual_clock(1_700_000_000_000);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        let r = sent(&h.send("T", 0, "fails", &[("UNIQ_KEY", "U1")]).await);
        let (_, phys) = decode_offset_msg_id(&r.msg_id).unwrap();
        let back = ConsumerSendMsgBackRequest {
            offset: phys,
            group: "G".into(),
            delay_level: Some(1), // 1 s
            ..Default::default()
        };
        assert_eq!(h.call(back.request(rq::CONSUMER_SEND_MSG_BACK)).await.code, rs::SUCCESS);
        let level = rt::spawn(super::schedule::run_level(h.b.clone(), 1));
        rt::yield_now().await;
        assert_eq!(h.b.store.queue_bounds("%RETRY%G", 0).1, 0, "not before its delay");
        clock.advance(1_000);
        for _ in 0..20 {
            rt::yield_now().await;
            if h.b.store.queue_bounds("%RETRY%G", 0).1 == 1 {
                break;
            }
        }
        let retry = h.pull("G", "%RETRY%G", 0, 0).await;
        assert_eq!(retry.bodies(), ["fails"]);
        assert_eq!(retry.messages[0].reconsume_times, 1);
        assert_eq!(retry.messages[0].property("RETRY_TOPIC").as_deref(), Some("T"));

        let dead = ConsumerSendMsgBackRequest { delay_level: Some(-1), ..back };
        assert_eq!(h.call(dead.request(rq::CONSUMER_SEND_MSG_BACK)).await.code, rs::SUCCESS);
        assert_eq!(h.pull("G", "%DLQ%G", 0, 0).await.bodies(), ["fails"], "delay level -1: straight to the DLQ");
        let missing = ConsumerSendMsgBackRequest { offset: 1 << 40, ..ConsumerSendMsgBackRequest::default() };
        let mut m = missing.request(rq::CONSUMER_SEND_MSG_BACK);
        m.put("group", "G");
        assert_eq!(h.call(m).await.code, rs::SYSTEM_ERROR);
        drop(level);
        h.stop().await;
    });
}

#[test]
fn query_by_key_and_view_by_offset() {
    run(|| async {
        let h = Harness::start().await;
        h.create_topic("T", 2).await;
        sent(&h.send("T", 0, "one", &[("KEYS", "order-1 shared")]).await);
        let r = sent(&h.send("T", 1, "two", &[("KEYS", "order-2 shared"), ("UNIQ_KEY", "U2")]).await);
        let query = |key: &str, unique: bool| {
            QueryMessageRequest {
                topic: "T".into(),
                key: key.into(),
                max_num: Some(32),
                begin_timestamp: Some(0),
                end_timestamp: Some(i64::MAX),
                unique_key_query: Some(unique),
            }
            .request(rq::QUERY_MESSAGE)
        };
        let bodies = |r: Command| {
            let mut v: Vec<String> = decode_records(&r.body_bytes())
                .unwrap()
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(bodies(h.call(query("shared", false)).await), ["one", "two"]);
        assert_eq!(bodies(h.call(query("U2", true)).await), ["two"]);
        assert_eq!(h.call(query("nothing", false)).await.code, rs::QUERY_NOT_FOUND);
        let (_, phys) = decode_offset_msg_id(&r.msg_id).unwrap();
        let view = h.call(ViewMessageRequest { offset: phys }.request(rq::VIEW_MESSAGE_BY_ID)).await;
        assert_eq!(bodies(view), ["two"]);
        let nothing = h.call(ViewMessageRequest { offset: 1 << 40 }.request(rq::VIEW_MESSAGE_BY_ID)).await;
        assert_eq!(nothing.code, rs::SYSTEM_ERROR);
        h.stop().await;
    });
}

#[test]
fn a_timer_message_is_delivered_at_its_time_not_before() {
    run(|| async {
        let clock = rt::manual_clock(1_700_000_000_000);
        let h = Harness::start().await;
        h.create_topic("T", 1).await;
        let at = (clock.now_ms() + 30_000).to_string();
        sent(&h.send("T", 0, "later", &[("TIMER_DELIVER_MS", &at)]).await);
        sent(&h.send("T", 0, "now", &[]).await);
        let timer = rt::spawn(super::timer::run(h.b.clone()));
        for _ in 0..5 {
            clock.advance(5);
            rt::yield_now().await;
        }
        assert_eq!(h.pull("G", "T", 0, 0).await.bodies(), ["now"]);
        clock.advance(29_000);
        rt::yield_now().await;
        assert_eq!(h.pull("G", "T", 0, 0).await.bodies(), ["now"], "a second early");
        for _ in 0..400 {
            clock.advance(5);
            rt::yield_now().await;
            if h.b.store.queue_bounds("T", 0).1 == 2 {
                break;
            }
        }
        let p = h.pull("G", "T", 0, 0).await;
        assert_eq!(p.bodies(), ["now", "later"]);
        assert!(p.messages[1].store_timestamp_ms >= 1_700_000_030_000, "stored at its time");
        drop(timer);
        h.stop().await;
    });
}

#[test]
fn sends_are_refused_with_rocketmq_codes() {
    run(|| async {
        let h = Harness::with(|c| c.auto_create_topic = false).await;
        assert_eq!(h.send("Nope", 0, "x", &[]).await.code, rs::TOPIC_NOT_EXIST);
        h.create_topic("T", 1).await;
        assert_eq!(h.send("T", 5, "x", &[]).await.code, rs::INVALID_PARAMETER);
        assert_eq!(h.send("T", 0, "", &[]).await.code, rs::MESSAGE_ILLEGAL);
        assert_eq!(h.send("SCHEDULE_TOPIC_XXXX", 0, "x", &[]).await.code, rs::NO_PERMISSION);
        let mut bad = Harness::send_request("T", 0, "x", &[]);
        bad.put("f", 8);
        assert_eq!(h.call(bad).await.code, rs::MESSAGE_ILLEGAL);
        let props = properties_encode([("DELAY", "1")]);
        assert!(!props.is_empty());
        h.stop().await;
    });
}

#[test]
fn consumer_running_info_is_relayed_to_the_consumer_and_its_answer_returned() {
    use crate::protocol::commands::topics::ConsumerRunningInfoRequest;
    run(|| async {
        let h = std::rc::Rc::new(Harness::start().await);
        h.create_topic("T", 1).await;
        h.heartbeat("c1", "G", "T", "*").await;
        while h.pushed().is_some() {} // the membership notice
        let ask =
            ConsumerRunningInfoRequest { consumer_group: "G".into(), client_id: "c1".into(), jstack_enable: None };
        let h2 = h.clone();
        let pending = rt::spawn(async move { h2.call(ask.request(rq::GET_CONSUMER_RUNNING_INFO)).await });
        let relayed = h.next_pushed().await;
        assert_eq!(relayed.code, rq::GET_CONSUMER_RUNNING_INFO);
        assert_eq!(ConsumerRunningInfoRequest::decode(&relayed).unwrap().client_id, "c1");
        assert!(h.answer(relayed.response_to(rs::SUCCESS).with_body("{\"running\":true}")));
        let answer = pending.await;
        assert_eq!(answer.code, rs::SUCCESS);
        assert_eq!(answer.body_bytes().as_ref(), b"{\"running\":true}");
        let offline =
            ConsumerRunningInfoRequest { consumer_group: "G".into(), client_id: "nobody".into(), jstack_enable: None };
        assert_eq!(h.call(offline.request(rq::GET_CONSUMER_RUNNING_INFO)).await.code, rs::SYSTEM_ERROR);
    });
}

#[test]
fn acl_checks_the_groups_and_topics_inside_a_heartbeat_and_counts_refusals() {
    use crate::security::sign::Credentials;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain_acl.yml");
    std::fs::write(
        &path,
        "accounts:\n  - accessKey: app\n    secretKey: s\n    defaultTopicPerm: DENY\n    defaultGroupPerm: SUB\n    \
         topicPerms: [audit=SUB]\n    groupPerms: [blocked=DENY]\n",
    )
    .unwrap();
    run(|| async move {
        let h = Harness::with(|c| c.acl_file = Some(path)).await;
        let signed = |mut c: Command| {
            Credentials::new("app", "s").sign(&mut c);
            c
        };
        let ok = h.call(signed(Harness::heartbeat_request("c1", "G", "audit", "*"))).await;
        assert_eq!(ok.code, rs::SUCCESS, "{:?}", ok.remark);
        let topic = h.call(signed(Harness::heartbeat_request("c2", "G2", "payments", "*"))).await;
        assert_eq!(topic.code, rs::NO_PERMISSION);
        assert!(topic.remark.unwrap_or_default().contains("topic payments"));
        let group = h.call(signed(Harness::heartbeat_request("c3", "blocked", "audit", "*"))).await;
        assert_eq!(group.code, rs::NO_PERMISSION);
        let unsigned = h.call(Harness::heartbeat_request("c4", "G", "audit", "*")).await;
        assert_eq!(unsigned.code, rs::NO_PERMISSION);
        // Only the allowed consumer was registered.
        assert_eq!(
            h.b.clients.borrow().consumer_ids("G2").len() + h.b.clients.borrow().consumer_ids("blocked").len(),
            0
        );
        assert_eq!(h.b.acl_denied.get(), 3);
        h.stop().await;
    });
}

#[test]
fn a_reader_far_behind_is_sent_to_an_in_sync_slave_and_back_to_the_master_once_caught_up() {
    use crate::store::replicas::ReplicaRole;
    run(|| async {
        let h = Harness::with(|c| {
            c.slave_read_enable = true;
            c.tail_cache_bytes = 4096;
        })
        .await;
        h.create_topic("T", 1).await;
        for i in 0..30 {
            assert_eq!(h.send("T", 0, &format!("{i:0>500}"), &[]).await.code, rs::SUCCESS);
        }
        let suggested = |r: &Command| PullResponseHeader::decode(r).unwrap().suggest_which_broker_id;
        let pull = |off| {
            let mut r = Harness::pull_request("G", "T", 0, off, "*", 0);
            r.put("maxMsgNums", 1);
            r
        };
        let g = &h.b.store.replicas;
        assert_eq!(suggested(&h.call(pull(0)).await), 0, "a single node has no slave");

        g.set_role(ReplicaRole::Master, 1, 1);
        let end = h.b.store.log().write_pos();
        g.on_ack(2, false, end, end, rt::now());
        g.on_ack(2, false, end, end, rt::now());
        assert_eq!(g.read_slave(), Some(2));
        assert_eq!(suggested(&h.call(pull(0)).await), 2, "far behind the master: read from the slave");
        assert_eq!(suggested(&h.call(pull(29)).await), 0, "near the end: stay on the master");

        g.set_controlled(3);
        g.set_role(ReplicaRole::Slave, 1, 1);
        g.set_master_confirm(end);
        let r = h.call(pull(0)).await;
        assert_eq!((r.code, suggested(&r)), (rs::SUCCESS, 3), "a slave keeps a reader that is far behind");
        assert_eq!(suggested(&h.call(pull(29)).await), 0, "and sends one that caught up back to the master");
        h.stop().await;
    });
    run(|| async {
        let h = Harness::with(|c| c.tail_cache_bytes = 4096).await;
        h.create_topic("T", 1).await;
        for i in 0..30 {
            assert_eq!(h.send("T", 0, &format!("{i:0>500}"), &[]).await.code, rs::SUCCESS);
        }
        let g = &h.b.store.replicas;
        g.set_role(ReplicaRole::Master, 1, 1);
        let end = h.b.store.log().write_pos();
        g.on_ack(2, false, end, end, rt::now());
        g.on_ack(2, false, end, end, rt::now());
        let mut r = Harness::pull_request("G", "T", 0, 0, "*", 0);
        r.put("maxMsgNums", 1);
        let r = h.call(r).await;
        assert_eq!(PullResponseHeader::decode(&r).unwrap().suggest_which_broker_id, 0, "slaveReadEnable off");
        h.stop().await;
    });
}
