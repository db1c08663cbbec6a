//! Query: find messages by key (QUERY_MESSAGE over every broker of the topic), by the offset message
//! id a send returned (VIEW_MESSAGE_BY_ID), and by queue and offset.
//! Run: `cargo run --release --example query [namesrv]`.

mod common;

use common::{Res, namesrv, unique};
use ringmq::client::{Message, Producer, PullConsumer};

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("QueryDemo");
    let producer = Producer::new(&ns, "query-demo-producer");
    producer.create_topic(&topic, 2)?;
    let sent = producer.send(&Message::new(&topic, "invoice 42").with_keys(&["invoice-42", "customer-7"]))?;
    producer.send(&Message::new(&topic, "invoice 43").with_keys(&["invoice-43", "customer-7"]))?;
    let lookup = PullConsumer::new(&ns, "query-demo");
    let mut by_customer: Vec<String> = lookup
        .query_by_key(&topic, "customer-7", 32)?
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    by_customer.sort();
    println!("key customer-7 -> {by_customer:?}");
    assert_eq!(by_customer, ["invoice 42", "invoice 43"]);
    let by_id = lookup.view_by_id(&sent.offset_msg_id)?;
    println!("id {} -> {:?}", sent.offset_msg_id, String::from_utf8_lossy(&by_id.body));
    assert_eq!(&by_id.body[..], b"invoice 42");
    let at = lookup.pull(&sent.queue, sent.queue_offset, 1, "*", 0)?;
    println!("{:?} offset {} -> {:?}", sent.queue, sent.queue_offset, String::from_utf8_lossy(&at.messages[0].body));
    assert_eq!(&at.messages[0].body[..], b"invoice 42");
    Ok(())
}
