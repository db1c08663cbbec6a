//! `cargo bench --bench store`: the storage benchmark in full (see `ringmq::bench::storage`).
//! The data directory is `RINGMQ_BENCH_DIR` or a temporary directory on the same disk as the target.

fn main() {
    let dir = std::env::var_os("RINGMQ_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench-store"));
    let quick = std::env::args().any(|a| a == "--quick");
    let cfg = if quick {
        ringmq::bench::storage::StorageBenchConfig::quick(&dir)
    } else {
        ringmq::bench::storage::StorageBenchConfig::full(&dir)
    };
    match ringmq::bench::storage::run(cfg) {
        Ok(r) => {
            print!("{}", ringmq::bench::storage::describe(&r));
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        }
        Err(e) => {
            eprintln!("storage benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
