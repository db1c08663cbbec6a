//! Request-reply (RocketMQ 4.6+): the requester sends a message and blocks for its answer; a consumer
//! of the request topic answers with `Producer::reply`, which the broker pushes straight back to the
//! requester (PUSH_REPLY_MESSAGE_TO_CLIENT). Run: `cargo run --release --example request_reply [namesrv]`.

mod common;

use common::{Res, namesrv, unique};
use ringmq::client::{Message, Producer, PushConsumer};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Res {
    let ns = namesrv();
    let topic = unique("PriceRequests");
    let requester = Producer::new(&ns, "pricing-client");
    requester.create_topic(&topic, 2)?;
    let responder = Arc::new(Producer::new(&ns, "pricing-service-replies"));
    let r = responder.clone();
    let mut service = PushConsumer::new(&ns, &unique("pricing-service"), move |msgs| {
        msgs.iter().all(|m| {
            let item = String::from_utf8_lossy(&m.body).into_owned();
            r.reply(m, format!("{item}: 9.99 EUR")).is_ok()
        })
    });
    service.subscribe(&topic, "*");
    service.start()?;
    for item in ["book", "lamp"] {
        let reply = requester.request(&Message::new(&topic, item), Duration::from_secs(10))?;
        let answer = String::from_utf8_lossy(&reply.body).into_owned();
        println!("{item} -> {answer}");
        assert_eq!(answer, format!("{item}: 9.99 EUR"));
    }
    service.shutdown();
    Ok(())
}
