//! Shared by the feature examples: the name server address (first argument), unique names so an
//! example can run twice against one broker, and a push consumer that collects what it receives.
#![allow(dead_code)] // each example uses part of it

use ringmq::client::{PushConsumer, StartFrom};
use ringmq::protocol::message::StoredMessage;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Res = Result<(), Box<dyn std::error::Error>>;

pub fn namesrv() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9876".into())
}

/// `name` made unique to this run.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Waits up to `secs` for `ok`, failing with `what`.
pub fn wait_until(what: &str, secs: u64, ok: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub type Seen = Arc<Mutex<Vec<StoredMessage>>>;

/// Starts a push consumer of `group` from the first offset, set up by `setup` (subscriptions and
/// options), that records every message it is given.
pub fn collecting_consumer(ns: &str, group: &str, setup: impl FnOnce(&mut PushConsumer)) -> (PushConsumer, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let mut c = PushConsumer::new(ns, group, move |msgs| {
        sink.lock().unwrap().extend(msgs.iter().cloned());
        true
    });
    c.start_from(StartFrom::First);
    setup(&mut c);
    (c, seen)
}

pub fn bodies(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap().iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}
