//! `ringmq bench --rate-sweep 1000,2000,5000,10000,20000`: latency against offered load.
//!
//! The same workload runs once per fixed rate, one after another against the same broker (each run
//! on a fresh topic, with its own warm-up), so every point of the curve comes from the same broker
//! process, machine state and client placement — the only way to compare rates on a shared, noisy
//! machine. Each point keeps its whole report; the summary holds what the curve is drawn from:
//! publish p50/p99/p99.9/max, end-to-end p99, publish delay (how far behind the schedule the
//! generator fell: a rate is *held* only if the achieved rate is within 5 % of the target) and the
//! broker's CPU per message. Placement is the caller's: `taskset -c 0 ringmq serve …` and
//! `taskset -c 1 ringmq bench …` (docs/BENCHMARKS.md).

use super::load::{Percentiles, Report, Workload};
use serde::Serialize;
use std::fmt::Write;

/// Most rates one sweep accepts: each point costs warm-up + duration seconds, and the plot's
/// x axis stays readable.
pub const MAX_POINTS: usize = 16;

/// A rate is held when the generator achieved at least this share of it.
const HELD_SHARE: f64 = 0.95;

/// One rate of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub held: bool,
    pub publish_errors: u64,
    pub publish_latency: Percentiles,
    pub publish_delay: Percentiles,
    pub end_to_end: Percentiles,
    pub broker_cpu_us_per_message: Option<f64>,
}

/// The whole sweep: one summary point and one full report per rate, in the order run.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub workload: Workload,
    pub points: Vec<SweepPoint>,
    pub reports: Vec<Report>,
}

/// Checks the rates before any load is sent.
pub fn validate(rates: &[u64]) -> Result<(), String> {
    if rates.is_empty() || rates.len() > MAX_POINTS {
        return Err(format!("--rate-sweep takes 1..={MAX_POINTS} rates, got {}", rates.len()));
    }
    if rates.contains(&0) {
        return Err("--rate-sweep rates must be > 0 (0 means flat out: run it without --rate-sweep)".into());
    }
    Ok(())
}

/// Summarises one run at `target` messages per second.
pub fn point(target: u64, r: &Report) -> SweepPoint {
    let t = &r.total;
    SweepPoint {
        target_rate: target,
        achieved_rate: t.publish_rate,
        held: t.publish_rate >= HELD_SHARE * target as f64,
        publish_errors: t.publish_errors,
        publish_latency: t.publish_latency.clone(),
        publish_delay: t.publish_delay.clone(),
        end_to_end: t.end_to_end.clone(),
        broker_cpu_us_per_message: r.broker_cpu_us_per_message,
    }
}

/// Runs the workload once per rate.
pub fn run(w: &Workload, rates: &[u64], broker_pid: Option<u32>) -> Result<Sweep, String> {
    validate(rates)?;
    let mut sweep = Sweep { workload: w.clone(), points: Vec::new(), reports: Vec::new() };
    for &rate in rates {
        println!("--- rate {rate} msgs/s ---");
        let report = super::load::run(&Workload { rate, ..w.clone() }, broker_pid)?;
        let p = point(rate, &report);
        println!("{}", describe(&p));
        sweep.points.push(p);
        sweep.reports.push(report);
    }
    Ok(sweep)
}

/// One line per point, for the terminal.
pub fn describe(p: &SweepPoint) -> String {
    format!(
        "rate {:>6} -> {:>8.0} msgs/s {}  publish p50 {} p99 {} p99.9 {} max {} us  e2e p99 {} us  delay p99 {} us  broker {}",
        p.target_rate,
        p.achieved_rate,
        if p.held { "held" } else { "NOT HELD" },
        p.publish_latency.p50_us,
        p.publish_latency.p99_us,
        p.publish_latency.p999_us,
        p.publish_latency.max_us,
        p.end_to_end.p99_us,
        p.publish_delay.p99_us,
        p.broker_cpu_us_per_message.map_or("n/a".to_string(), |c| format!("{c:.1} us/msg")),
    )
}

const W: f64 = 820.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;

/// Position of `v` on a log10 axis spanning [lo, hi] over `len` pixels.
fn log_pos(v: f64, lo: f64, hi: f64, len: f64) -> f64 {
    let (v, lo, hi) = (v.max(lo).log10(), lo.log10(), hi.log10());
    (v - lo) / (hi - lo).max(1e-9) * len
}

/// The decades [10^a, 10^b] that contain every value.
fn decades(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for v in vals.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// The sweep as an SVG chart: publish p50/p99/p99.9 (log µs, left axis) and broker CPU per message
/// (linear µs, right axis, dashed) against the offered rate (log axis); unheld rates are marked.
pub fn svg(s: &Sweep) -> String {
    let pw = W - LEFT - RIGHT;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif" font-size="12">"#,
        H + TOP + 60.0
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="20" font-size="14">publish latency and broker CPU per message vs offered rate ({} B, batch {})</text><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{H}" fill="none" stroke="#999"/>"##,
        s.workload.message_size, s.workload.batch
    );
    let rates: Vec<f64> = s.points.iter().map(|p| p.target_rate as f64).collect();
    let (x_lo, x_hi) = match (rates.iter().copied().reduce(f64::min), rates.iter().copied().reduce(f64::max)) {
        (Some(a), Some(b)) if b > a => (a / 1.2, b * 1.2),
        (Some(a), _) => (a / 2.0, a * 2.0),
        _ => (1.0, 10.0),
    };
    let x = |r: f64| LEFT + log_pos(r, x_lo, x_hi, pw);
    let lat = |p: &SweepPoint| [p.publish_latency.p50_us, p.publish_latency.p99_us, p.publish_latency.p999_us];
    let (y_lo, y_hi) = decades(s.points.iter().flat_map(|p| lat(p).map(|v| v as f64)));
    let y = |us: f64| TOP + H - log_pos(us, y_lo, y_hi, H);
    let mut d = y_lo;
    while d <= y_hi * 1.001 {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y(d) + 4.0,
            fmt_us(d),
            yy = y(d)
        );
        d *= 10.0;
    }
    for p in &s.points {
        let xx = x(p.target_rate as f64);
        let _ = write!(
            out,
            r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="{}">{}{}</text>"##,
            TOP + H + 16.0,
            if p.held { "#000" } else { "#d62728" },
            p.target_rate,
            if p.held { "" } else { "*" }
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">offered rate, msgs/s (log; * = not held)</text>"#,
        LEFT + pw / 2.0,
        TOP + H + 36.0
    );
    let series: [(&str, &str, usize); 3] = [("p50", "#1f77b4", 0), ("p99", "#ff7f0e", 1), ("p99.9", "#d62728", 2)];
    for (i, (name, color, k)) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter_map(|p| lat(p).get(*k).map(|v| format!("{:.1},{:.1}", x(p.target_rate as f64), y(*v as f64))))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{color}">publish {name}</text>"#,
            pts.join(" "),
            LEFT + 10.0 + i as f64 * 120.0,
            TOP + 16.0
        );
    }
    let cpu: Vec<(f64, f64)> =
        s.points.iter().filter_map(|p| p.broker_cpu_us_per_message.map(|c| (p.target_rate as f64, c))).collect();
    if let Some(c_max) = cpu.iter().map(|(_, c)| *c).reduce(f64::max) {
        let c_max = (c_max * 1.1).max(1.0);
        let cy = |c: f64| TOP + H - c / c_max * H;
        let pts: Vec<String> = cpu.iter().map(|(r, c)| format!("{:.1},{:.1}", x(*r), cy(*c))).collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="#2ca02c" stroke-width="2" stroke-dasharray="6 4" points="{}"/><text x="{}" y="{}" fill="#2ca02c">broker CPU us/msg (right)</text>"##,
            pts.join(" "),
            LEFT + 10.0 + 3.0 * 120.0,
            TOP + 16.0
        );
        for k in 0..=4 {
            let c = c_max * k as f64 / 4.0;
            let _ =
                write!(out, r##"<text x="{}" y="{:.1}" fill="#2ca02c">{c:.0}</text>"##, LEFT + pw + 6.0, cy(c) + 4.0);
        }
    }
    out.push_str("</svg>");
    out
}

fn fmt_us(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{:.0} s", u / 1e6),
        u if u >= 1e3 => format!("{:.0} ms", u / 1e3),
        u => format!("{u:.0} us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::Period;

    fn report(rate: f64, p99: u64, cpu: f64) -> Report {
        let lat = Percentiles { p50_us: p99 / 4, p99_us: p99, p999_us: p99 * 3, max_us: p99 * 5, ..Default::default() };
        Report {
            total: Period { publish_rate: rate, publish_latency: lat, ..Default::default() },
            broker_cpu_us_per_message: Some(cpu),
            ..Default::default()
        }
    }

    #[test]
    fn a_rate_is_held_only_within_five_percent() {
        assert!(point(2000, &report(1990.0, 500, 20.0)).held);
        assert!(!point(20000, &report(11000.0, 500, 20.0)).held);
    }

    #[test]
    fn sweep_rates_are_validated_before_any_load() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[1000, 0]).is_err());
        assert!(validate(&[1000; MAX_POINTS + 1]).is_err());
        assert!(validate(&[1000, 2000, 5000, 10000, 20000]).is_ok());
    }

    #[test]
    fn plot_draws_every_point_and_marks_unheld_rates() {
        let rates = [1000u64, 2000, 5000, 10000, 20000];
        let reports: Vec<Report> = rates
            .iter()
            .map(|&r| report(if r == 20000 { 11000.0 } else { r as f64 }, 300 + r / 10, 300.0 - r as f64 / 100.0))
            .collect();
        let s = Sweep {
            workload: Workload::default(),
            points: rates.iter().zip(&reports).map(|(&r, rep)| point(r, rep)).collect(),
            reports,
        };
        let svg = svg(&s);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4, "p50, p99, p99.9 and CPU");
        assert!(svg.contains(">20000*<"), "20000 was not held");
        assert!(svg.contains(">5000<"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        assert_eq!(decades([250.0, 14_000.0].into_iter()), (100.0, 100_000.0));
        assert_eq!(decades(std::iter::empty()), (1.0, 10.0));
        assert!((log_pos(1000.0, 100.0, 10_000.0, 200.0) - 100.0).abs() < 1e-9);
    }
}
