//! Remoting header decode: ringmq's typed JSON header decoder against the generic route (parse into a
//! `serde_json::Value` tree, then copy the fields out — what ringmq did before), measured in the same
//! run on a Java client's SEND_MESSAGE_V2 header. Run: `cargo bench --bench header`.

use bytes::Bytes;
use ringmq::protocol::Command;
use std::collections::HashMap;
use std::hint::black_box;

mod common;
use common::per_op_ns;

/// The broker's allocator, so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEADER: &[u8] = br#"{"code":310,"extFields":{"a":"ProducerGroupName","b":"TopicTest","c":"TBW102","d":"4","e":"3","f":"0","g":"1732550000000","h":"0","i":"KEYS\u0001OrderID188\u0002TAGS\u0001TagA\u0002UNIQ_KEY\u0001AC110001547318B4AAC28A0F4BC80000\u0002WAIT\u0001true\u0002","j":"0","k":"false","m":"false"},"flag":0,"language":"JAVA","opaque":1234,"serializeTypeCurrentRPC":"JSON","version":453}"#;

/// The generic route: a `Value` tree, then the fields copied into the command's shape.
fn via_value(header: &[u8]) -> (i32, HashMap<String, String>) {
    let v: serde_json::Value = serde_json::from_slice(header).expect("valid header");
    let mut ext = HashMap::new();
    if let Some(serde_json::Value::Object(fields)) = v.get("extFields") {
        for (k, v) in fields {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ext.insert(k.clone(), s);
        }
    }
    (v.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0) as i32, ext)
}

fn main() {
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + HEADER.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(HEADER.len() as u32).to_be_bytes());
    frame.extend_from_slice(HEADER);
    let frame = Bytes::from(frame);
    let iters = 300_000;
    for round in 1..=3 {
        let typed = per_op_ns(iters, || {
            black_box(Command::decode(black_box(&frame), 1 << 20).expect("decodes"));
        });
        let tree = per_op_ns(iters, || {
            black_box(via_value(black_box(HEADER)));
        });
        println!(
            "round {round}: typed decode {typed:.0} ns/header, Value tree {tree:.0} ns/header: {:.2}x faster",
            tree / typed
        );
    }
}
