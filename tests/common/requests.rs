//! Raw requests for the black-box tests that link ringmq (kept out of `mod.rs`: the compat/ crate
//! shares that file and does not depend on ringmq). Included with `#[path]`.

/// A raw SEND_MESSAGE_V2 of one body to `topic` queue 0, through the template route (the broker
/// creates the topic).
pub fn raw_send(topic: &str, body: &str) -> ringmq::protocol::Command {
    let mut cmd = ringmq::protocol::Command::request(ringmq::protocol::codes::request::SEND_MESSAGE_V2);
    for (k, v) in [
        ("a", "PG"),
        ("b", topic),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "0"),
        ("f", "0"),
        ("g", "0"),
        ("h", "0"),
        ("i", ""),
    ] {
        cmd.put(k, v);
    }
    cmd.with_body(body.to_string())
}
