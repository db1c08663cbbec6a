//! Fixture tests: whole frames as the Java client 4.9 / 5.x writes them (JSON header with its
//! `extFields`, fastjson's field order, the `language`/`version`/`serializeTypeCurrentRPC` it sets),
//! decoded by the frame codec and then by each command family's typed header or body. A renamed
//! field, a changed default or a stricter range shows up here as a real client's request no longer
//! decoding.

use super::body::decode_json;
use super::clients::{HeartbeatData, LockBatchRequestBody};
use super::offsets::UpdateConsumerOffsetRequest;
use super::query::QueryMessageRequest;
use super::send::SendHeader;
use super::topics::CreateTopicRequest;
use super::transaction::{EndTransactionRequest, TRANSACTION_COMMIT};
use crate::protocol::Command;
use crate::protocol::codes::request as rq;

/// A frame: total length, header length (serialization type 0 = JSON in the top byte), header, body.
fn java_frame(header: &str, body: &[u8]) -> Command {
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&(header.len() as u32).to_be_bytes());
    f.extend_from_slice(header.as_bytes());
    f.extend_from_slice(body);
    let frame = bytes::Bytes::from(f);
    let (cmd, used) = Command::decode(&frame, usize::MAX).expect("decodes").expect("a whole frame");
    assert_eq!(used, frame.len());
    cmd
}

fn header(code: i32, ext: &str) -> String {
    format!(
        r#"{{"code":{code},"extFields":{ext},"flag":0,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":435}}"#
    )
}

#[test]
fn a_java_send_message_v2_decodes() {
    let ext = r#"{"a":"please_rename_unique_group_name","b":"TopicTest","c":"TBW102","d":"4","e":"2","f":"0","g":"1733000000000","h":"0","i":"TAGS\u0001TagA\u0002KEYS\u0001OrderID188\u0002UNIQ_KEY\u00017F0000010B5418B4AAC2\u0002WAIT\u0001true\u0002","j":"0","k":"false","m":"false","n":"broker-a"}"#;
    let c = java_frame(&header(rq::SEND_MESSAGE_V2, ext), b"Hello RocketMQ");
    let h = SendHeader::decode(&c).expect("the Java client's send header");
    assert_eq!(
        (h.producer_group.as_str(), h.topic.as_str(), h.queue_id),
        ("please_rename_unique_group_name", "TopicTest", 2)
    );
    assert_eq!((h.default_topic_queue_nums, h.born_timestamp_ms, h.batch), (4, 1_733_000_000_000, false));
    assert_eq!(crate::protocol::message::property_get(&h.properties, "KEYS"), Some("OrderID188"));
    assert_eq!((c.opaque, c.version, &*c.language), (42, 435, "JAVA"));
    assert_eq!(c.body_bytes().as_ref(), b"Hello RocketMQ");
}

#[test]
fn a_java_offset_commit_transaction_end_topic_create_and_query_decode() {
    let c = java_frame(
        &header(rq::UPDATE_CONSUMER_OFFSET, r#"{"commitOffset":"128","consumerGroup":"G","queueId":"3","topic":"T"}"#),
        b"",
    );
    let o = UpdateConsumerOffsetRequest::decode(&c).expect("offset commit");
    assert_eq!((o.queue_id, o.commit_offset), (3, 128));

    let ext = r#"{"commitLogOffset":"4096","commitOrRollback":"8","fromTransactionCheck":"true","msgId":"7F00000100002A9F0000000000001000","producerGroup":"PG","tranStateTableOffset":"5","transactionId":"7F0000010B5418B4AAC2"}"#;
    let e = EndTransactionRequest::decode(&java_frame(&header(rq::END_TRANSACTION, ext), b"")).expect("end");
    assert_eq!((e.commit_log_offset, e.tran_state_table_offset, e.commit_or_rollback), (4096, 5, TRANSACTION_COMMIT));
    assert_eq!(e.from_transaction_check, Some(true));

    let ext = r#"{"attributes":"{}","defaultTopic":"TBW102","order":"false","perm":"6","readQueueNums":"8","topic":"T","topicFilterType":"SINGLE_TAG","topicSysFlag":"0","writeQueueNums":"8"}"#;
    let t = CreateTopicRequest::decode(&java_frame(&header(rq::UPDATE_AND_CREATE_TOPIC, ext), b"")).expect("create");
    assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (Some(8), Some(8), Some(6)));

    let ext =
        r#"{"beginTimestamp":"0","endTimestamp":"9223372036854775807","key":"OrderID188","maxNum":"32","topic":"T"}"#;
    let q = QueryMessageRequest::decode(&java_frame(&header(rq::QUERY_MESSAGE, ext), b"")).expect("query");
    assert_eq!((q.key.as_str(), q.max_num, q.end_timestamp), ("OrderID188", Some(32), Some(i64::MAX)));
}

#[test]
fn a_java_heartbeat_and_lock_batch_frame_decode() {
    let body = br#"{"clientID":"127.0.0.1@4242#1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"SQL92","subString":"a > 5","subVersion":1733000000000,"tagsSet":[],"topic":"T"}],"unitMode":false}],"producerDataSet":[],"withoutSub":false}"#;
    let c = java_frame(&header(rq::HEART_BEAT, "{}"), body);
    let h: HeartbeatData = decode_json("HeartbeatData", &c.body_bytes()).expect("heartbeat body");
    let s = &h.consumer_data_set[0].subscription_data_set[0];
    assert_eq!(s.expression(), ("SQL92".into(), "a > 5".into()));

    let body = br#"{"clientId":"127.0.0.1@4242#1","consumerGroup":"G","mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"},{"brokerName":"broker-a","queueId":1,"topic":"T"}],"onlyThisBroker":false}"#;
    let c = java_frame(&header(rq::LOCK_BATCH_MQ, "{}"), body);
    let l: LockBatchRequestBody = decode_json("LockBatchRequestBody", &c.body_bytes()).expect("lock body");
    assert_eq!(l.mq_set.iter().map(|q| q.queue_id).collect::<Vec<_>>(), [0, 1]);
}
