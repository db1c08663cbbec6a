//! A small SVG chart of a bench run: publish and consume rate, and publish / end-to-end p99 latency,
//! per report period.

use super::load::Report;
use std::fmt::Write;

const W: f64 = 800.0;
const H: f64 = 220.0;

fn polyline(out: &mut String, ys: &[f64], y_max: f64, top: f64, color: &str) {
    let n = ys.len().max(2) as f64 - 1.0;
    let pts: Vec<String> = ys
        .iter()
        .enumerate()
        .map(|(i, y)| format!("{:.1},{:.1}", 60.0 + i as f64 / n * (W - 80.0), top + H - y / y_max.max(1e-9) * H))
        .collect();
    let _ = write!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
}

fn panel(out: &mut String, title: &str, top: f64, series: &[(&str, &str, Vec<f64>)]) {
    let y_max = series.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(0.0, f64::max) * 1.1;
    let _ = write!(out, r#"<text x="60" y="{}" font-size="14">{title} (max {:.0})</text>"#, top - 6.0, y_max);
    let _ = write!(out, r##"<rect x="60" y="{top}" width="{}" height="{H}" fill="none" stroke="#999"/>"##, W - 80.0);
    for (i, (name, color, ys)) in series.iter().enumerate() {
        polyline(out, ys, y_max, top, color);
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="12" fill="{color}">{name}</text>"#,
            70.0 + i as f64 * 170.0,
            top + 16.0
        );
    }
}

/// The chart as an SVG document.
pub fn svg(r: &Report) -> String {
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif">"#,
        2.0 * H + 90.0
    );
    let get = |f: fn(&super::load::Period) -> f64| r.periods.iter().map(f).collect::<Vec<f64>>();
    panel(
        &mut out,
        "throughput, msgs/s per period",
        30.0,
        &[("publish", "#1f77b4", get(|p| p.publish_rate)), ("consume", "#ff7f0e", get(|p| p.consume_rate))],
    );
    panel(
        &mut out,
        "p99 latency, us per period",
        H + 70.0,
        &[
            ("publish p99", "#2ca02c", get(|p| p.publish_latency.p99_us as f64)),
            ("end-to-end p99", "#d62728", get(|p| p.end_to_end.p99_us as f64)),
            ("publish-delay p99", "#9467bd", get(|p| p.publish_delay.p99_us as f64)),
        ],
    );
    out.push_str("</svg>");
    out
}
