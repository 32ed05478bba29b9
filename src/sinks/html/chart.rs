//! The memory chart of a deployment's instances, as inline SVG: each series, its deaths, the
//! memory limit, and what the leak detector saw (floors, restarts, returns to rest).
//!
//! This is the one place where markup built in Rust enters the page unescaped: [`TrustedSvg`]
//! is marked [`askama::filters::HtmlSafe`] and only this module can make one. So every text
//! that reaches the SVG from data — the deployment in `aria-label`, instance ids in the
//! `<title>`s — goes through [`text`] (askama's own HTML escaper); the rest is numbers, dates,
//! colours from [`PALETTE`] and class names written here. The page around it is the template
//! (templates/report.html), escaped by askama.

use std::fmt::{self, Display, Write};

use chrono::{DateTime, Utc};

use crate::model::{DeploymentFinding, InstanceReport, SegmentEnd};
use crate::sinks::alert::fmt_value;

/// Chart size in CSS pixels.
pub const CHART_WIDTH: f64 = 900.0;
pub const CHART_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 14.0;
const MARGIN_BOTTOM: f64 = 34.0;
/// Series drawn per chart; the rest are listed in the table only.
pub const MAX_CHART_SERIES: usize = 24;
/// The chart's value axis reaches at least this quantile of the drawn values.
const AXIS_QUANTILE: f64 = 0.995;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22",
];

/// SVG markup made by [`chart`], every data text in it escaped: inserted into the page as it
/// is. Its field is private, so nothing outside this module can pass markup off as safe.
pub struct TrustedSvg(String);

impl Display for TrustedSvg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reviewed exception to the template's escaping (see the module comment).
impl askama::filters::HtmlSafe for TrustedSvg {}

/// A deployment's chart and what its legend says.
pub struct Chart {
    /// `None` when none of the instances has a series to draw.
    pub svg: Option<TrustedSvg>,
    /// Series drawn.
    pub drawn: usize,
    /// Instances with a series that are not drawn (older than the [`MAX_CHART_SERIES`] latest).
    pub skip: usize,
}

/// Text from data (an instance id, a deployment), escaped for SVG content and attribute values
/// by askama's HTML escaper, the one the template uses.
fn text(s: &str) -> impl Display + '_ {
    askama::filters::escape(s, askama::filters::Html).unwrap_or_else(|never| match never {})
}

/// `with_series`: how many of the deployment's instances have a series to draw (the reports
/// given hold at least the latest [`MAX_CHART_SERIES`] of them).
pub fn chart(
    f: &DeploymentFinding,
    reports: &[&InstanceReport],
    with_series: usize,
    unit: &str,
    generated_at: DateTime<Utc>,
) -> Chart {
    let mut drawn: Vec<&InstanceReport> = reports
        .iter()
        .copied()
        .filter(|r| r.memory.points.len() >= 2)
        .collect();
    drawn.sort_by_key(|r| r.terminated_at);
    // Keep the most recent deaths when there are too many to draw.
    let drawn = &drawn[drawn.len().saturating_sub(MAX_CHART_SERIES)..];
    let skip = with_series.saturating_sub(drawn.len());
    if drawn.is_empty() {
        return Chart {
            svg: None,
            drawn: 0,
            skip,
        };
    }
    let t0 = drawn
        .iter()
        .filter_map(|r| r.memory.points.first().map(|p| p.0))
        .min()
        .unwrap_or(f.evidence.first_death.unwrap_or(generated_at));
    let t1 = drawn
        .iter()
        .map(|r| {
            r.terminated_at
                .max(r.memory.points.last().map_or(r.terminated_at, |p| p.0))
        })
        .max()
        .unwrap_or(t0);
    let span = ((t1 - t0).num_seconds().max(60)) as f64;
    let limit = drawn.iter().find_map(|r| r.memory.limit);
    // The axis reaches the limit, or the values' high quantile: one wild sample that got
    // past the sources' checks is drawn clipped at the top instead of flattening the chart.
    let mut values: Vec<f64> = drawn
        .iter()
        .flat_map(|r| r.memory.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    values.sort_by(f64::total_cmp);
    let high = values
        .get(((values.len() as f64 * AXIS_QUANTILE) as usize).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    let vmax = high.max(limit.unwrap_or(0.0)).max(1e-9);
    let (w, h) = (
        CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
    );
    let x = |t: DateTime<Utc>| MARGIN_LEFT + (t - t0).num_seconds() as f64 / span * w;
    let y = |v: f64| MARGIN_TOP + h - (v / vmax).clamp(0.0, 1.0) * h;
    let fmt_v = |v: f64| {
        if unit == "bytes" {
            format!("{:.0} MiB", v / 1048576.0)
        } else {
            format!("{v:.0}%")
        }
    };

    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" role=\"img\" aria-label=\"memory of {} instances of {}\" data-series=\"{}\">",
        drawn.len(),
        text(&f.deployment),
        drawn.len()
    );
    for i in 0..=4 {
        let v = vmax * i as f64 / 4.0;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            MARGIN_LEFT + w,
            y(v),
            y(v),
            MARGIN_LEFT - 6.0,
            y(v) + 4.0,
            fmt_v(v)
        );
    }
    for i in 0..=4 {
        let t = t0 + chrono::Duration::seconds((span * i as f64 / 4.0) as i64);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{}\">{}</text>",
            x(t),
            CHART_HEIGHT - 12.0,
            // The end labels stay inside the chart.
            match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            },
            t.format("%m-%d %H:%M")
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{MARGIN_LEFT}\" x2=\"{MARGIN_LEFT}\" y1=\"{MARGIN_TOP}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        MARGIN_TOP + h,
        MARGIN_LEFT + w,
        MARGIN_TOP + h,
        MARGIN_TOP + h
    );
    if let Some(l) = limit {
        let _ = writeln!(
            out,
            "<line class=\"limit\" x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" style=\"fill:#cf222e\">limit</text>",
            MARGIN_LEFT + w,
            y(l),
            y(l),
            MARGIN_LEFT + w - 4.0,
            y(l) - 4.0
        );
    }
    for (i, r) in drawn.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let id = text(&r.instance_id);
        let _ = write!(
            out,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.4\" points=\""
        );
        for (k, (t, v)) in r.memory.points.iter().enumerate() {
            let sep = if k == 0 { "" } else { " " };
            let _ = write!(out, "{sep}{:.1},{:.1}", x(*t), y(*v));
        }
        let _ = writeln!(out, "\"><title>{id}</title></polyline>");
        let dx = x(r.terminated_at);
        let _ = writeln!(
            out,
            "<line class=\"death\" x1=\"{dx:.1}\" x2=\"{dx:.1}\" y1=\"{MARGIN_TOP}\" y2=\"{:.1}\"/>",
            MARGIN_TOP + h
        );
        // What the leak detector saw: a tick on the time axis where a segment ended (a
        // restart, or a return to the series' resting level), in the series' colour.
        for seg in r.leak.iter().flat_map(|l| l.segments.iter()) {
            // Its floor, as the detector fitted it: a thin dashed line in the series' colour.
            if let (Some(a), Some(b)) = (seg.floor_start, seg.floor_end) {
                let _ = writeln!(
                    out,
                    "<line class=\"floor\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\"><title>{id}: memory floor {} → {}</title></line>",
                    x(seg.start),
                    x(seg.end),
                    y(a),
                    y(b),
                    fmt_value(a, unit),
                    fmt_value(b, unit)
                );
            }
            let (class, what) = match seg.ended_by {
                SegmentEnd::Restart => ("restart", "restart"),
                SegmentEnd::ReturnToBaseline => ("rest", "back to its resting level"),
                SegmentEnd::SeriesEnd => continue,
            };
            let sx = x(seg.end);
            let _ = writeln!(
                out,
                "<path class=\"{class}\" d=\"M{sx:.1},{:.1}l-4,7h8z\" fill=\"{color}\"><title>{id}: {what} at {}</title></path>",
                MARGIN_TOP + h,
                seg.end.format("%Y-%m-%d %H:%M UTC")
            );
        }
        if r.verdict.is_memory_death() {
            let dy = r.memory.points.last().map_or(MARGIN_TOP, |p| y(p.1));
            let _ = writeln!(
                out,
                "<path class=\"oom\" d=\"M{:.1},{:.1}l8,8m0,-8l-8,8\" stroke=\"#cf222e\" stroke-width=\"2.2\"><title>{id} died of memory at {}</title></path>",
                dx - 4.0,
                dy - 4.0,
                r.terminated_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    out.push_str("</svg>");
    Chart {
        svg: Some(TrustedSvg(out)),
        drawn: drawn.len(),
        skip,
    }
}
