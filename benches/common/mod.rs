//! What every micro-benchmark here shares: one timing loop, so that ringmq and its peer are measured
//! the same way, interleaved in one run (the machine is shared and noisy: ratios, not absolute times).

use std::time::Instant;

/// Nanoseconds per call of `f` over `iters` calls, after `iters / 10` warm-up calls.
pub fn per_op_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}
