//! Runs every feature example in `docs/examples/` against a started ringmq; an example exits non-zero
//! when its feature did not behave as it shows.

mod common;

use common::Server;

const EXAMPLES: [&str; 9] =
    ["filters", "retry_dlq", "scheduled", "transactions", "ordered", "broadcast", "query", "replay", "request_reply"];

#[test]
fn every_feature_example_runs_against_a_started_broker() {
    // Short back-offs and check-back intervals so the examples finish in seconds.
    let s = Server::start_fast(2);
    let dir = common::binary().parent().unwrap().join("examples");
    for name in EXAMPLES {
        let out = std::process::Command::new(dir.join(name)).arg(s.namesrv()).output().unwrap();
        assert!(
            out.status.success(),
            "example {name} failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
    }
}
