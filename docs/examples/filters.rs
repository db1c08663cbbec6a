//! Tag and SQL92 filters: one consumer group subscribes by tag (`TagA || TagB`), another with an SQL92
//! expression over a user property and the tag. Run: `cargo run --release --example filters [namesrv]`.

mod common;

use common::{Res, bodies, collecting_consumer, namesrv, unique, wait_until};
use ringmq::client::{Message, Producer};

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("FilterDemo");
    let producer = Producer::new(&ns, "filter-demo-producer");
    producer.create_topic(&topic, 2)?;
    for (i, tag) in ["TagA", "TagB", "TagC"].iter().cycle().take(9).enumerate() {
        let price = (i * 10).to_string();
        producer.send(&Message::new(&topic, format!("order-{i}")).with_tags(tag).with_property("price", &price))?;
    }
    let (tags, by_tag) = collecting_consumer(&ns, &unique("by-tag"), |c| c.subscribe(&topic, "TagA || TagB"));
    let sql = "price >= 50 AND TAGS <> 'TagC'";
    let (props, by_sql) = collecting_consumer(&ns, &unique("by-sql"), |c| c.subscribe_sql92(&topic, sql));
    tags.start()?;
    props.start()?;
    wait_until("6 tagged messages", 30, || by_tag.lock().unwrap().len() >= 6)?;
    wait_until("2 messages matching the SQL92 filter", 30, || by_sql.lock().unwrap().len() >= 2)?;
    std::thread::sleep(std::time::Duration::from_millis(500)); // nothing else may arrive
    let (mut t, mut s) = (bodies(&by_tag), bodies(&by_sql));
    t.sort();
    s.sort();
    println!("TagA || TagB  -> {t:?}");
    println!("{sql} -> {s:?}");
    assert_eq!(t, ["order-0", "order-1", "order-3", "order-4", "order-6", "order-7"]);
    assert_eq!(s, ["order-6", "order-7"]);
    tags.shutdown();
    props.shutdown();
    Ok(())
}
