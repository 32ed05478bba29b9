//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! resource) with every deployment's verdict and evidence and, for deployments that die of
//! memory, a chart of their instances' memory series with each death marked — the graph an
//! engineer would otherwise hunt for in a dashboard — the last words, and an instance table.
//! Served at `GET /` by `epitaph serve` and written by `--format html`. Drawn from the
//! lookback's compact rows (counts, signatures, coverage) and the full reports of the few
//! instances the page shows ([`cited`]): charts, excerpts, table rows.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::analysis::heap::AttachedHeapDiff;
use crate::analysis::signatures::SignatureLibrary;
use crate::model::{
    DeploymentFinding, DeploymentVerdict, InstanceFacts, InstanceReport, ProjectedDeath,
    SegmentEnd, TimeWindow,
};
use crate::sinks::alert::{fmt_growth, fmt_hours, fmt_value};
use crate::sinks::redact::Redactor;

/// Chart size in CSS pixels.
pub const CHART_WIDTH: f64 = 900.0;
pub const CHART_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 14.0;
const MARGIN_BOTTOM: f64 = 34.0;
/// Series drawn per chart; the rest are listed in the table only.
pub const MAX_CHART_SERIES: usize = 24;
/// Instances whose last words are shown per deployment.
pub const MAX_EXCERPTS: usize = 3;
/// Log lines per excerpt (the last ones before death).
pub const EXCERPT_LINES: usize = 12;
/// Instance rows per deployment table.
pub const MAX_TABLE_ROWS: usize = 200;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22",
];

/// What the page is about.
pub struct HtmlContext<'a> {
    pub generated_at: DateTime<Utc>,
    pub window: Option<TimeWindow>,
    /// `percent` or `bytes`.
    pub unit: &'a str,
    pub redactor: &'a Redactor,
    /// Early warning: running instances projected to reach their memory limit, soonest first.
    pub next_deaths: &'a [ProjectedDeath],
    /// The library the verdicts were matched with: each deployment's next steps and the
    /// links to their capture method come from its signatures.
    pub signatures: Option<&'a SignatureLibrary>,
    /// Heap diffs attached to deployments (`heap diff … --attach`), the latest of each.
    pub heap_diffs: &'a [AttachedHeapDiff],
    /// Targets (account/role × region) the latest scan could not read: named in a banner
    /// first, since the page lacks their instances.
    pub unread_targets: &'a crate::store::TargetBacklog,
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn verdict_class(v: DeploymentVerdict) -> &'static str {
    match v {
        DeploymentVerdict::Leaking => "leaking",
        DeploymentVerdict::OomWithoutLeak => "oom",
        DeploymentVerdict::Crashing => "crashing",
        DeploymentVerdict::Healthy => "healthy",
        DeploymentVerdict::InsufficientEvidence => "unknown",
    }
}

/// The chart's value axis reaches at least this quantile of the drawn values.
const AXIS_QUANTILE: f64 = 0.995;

const STYLE: &str = r#"
.banner{background:#fdecea;border:1px solid #d93025;color:#7a1c14;padding:.6em .9em;margin:.8em 0;border-radius:4px}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:980px;color:#1b1f24;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}
.meta{color:#57606a;margin-bottom:18px}
table{border-collapse:collapse;width:100%;margin:8px 0 4px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;margin-left:8px;vertical-align:middle}
.leaking{background:#cf222e}.oom{background:#bc4c00}.crashing{background:#9a6700}.healthy{background:#1a7f37}.unknown{background:#6e7781}
section.deployment{border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;margin:16px 0}
.facts{display:flex;flex-wrap:wrap;gap:6px 24px;margin:8px 0;color:#24292f}
.facts b{font-weight:600}
pre{background:#f6f8fa;border-radius:6px;padding:8px 10px;overflow-x:auto;font-size:12px;margin:4px 0 10px;white-space:pre-wrap;word-break:break-all}
pre .hit{background:#ffebe9;color:#82071e;font-weight:600}
svg.chart{display:block;width:100%;height:auto;max-width:900px;background:#fff}
svg .axis{stroke:#57606a;stroke-width:1}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .limit{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:6 4}
svg .death{stroke:#57606a;stroke-width:1;stroke-dasharray:2 3}
svg .rest{fill-opacity:0.15;stroke-width:1;stroke:#57606a}
svg .floor{stroke-width:1;stroke-dasharray:4 3;opacity:0.8}
svg text{font-size:11px;fill:#57606a}
.legend{font-size:12px;color:#57606a}
td.id,td.t{white-space:nowrap;font-variant-numeric:tabular-nums}
td.cause{color:#57606a;font-size:12px}
"#;

/// Whether a deployment's section draws its memory: a chart and last-words excerpts.
fn shows_memory(verdict: DeploymentVerdict) -> bool {
    matches!(
        verdict,
        DeploymentVerdict::Leaking | DeploymentVerdict::OomWithoutLeak
    )
}

/// The instances whose full reports the page shows, of the lookback's compact rows (oldest
/// first, as the store gives them): per deployment, the latest [`MAX_TABLE_ROWS`] for its
/// table and, when its section draws memory, the latest [`MAX_CHART_SERIES`] with a series
/// and the latest [`MAX_EXCERPTS`] memory deaths with last words.
pub fn cited(findings: &[DeploymentFinding], facts: &[InstanceFacts]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in findings {
        let mine: Vec<&InstanceFacts> = facts
            .iter()
            .filter(|r| r.deployment == f.deployment)
            .collect();
        // Newest first; among equal times, the order the sections use (stable sorts of the
        // store's order).
        let mut newest: Vec<&InstanceFacts> = mine.clone();
        newest.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
        out.extend(
            newest
                .iter()
                .take(MAX_TABLE_ROWS)
                .map(|r| r.instance_id.clone()),
        );
        if shows_memory(f.verdict) {
            out.extend(
                newest
                    .iter()
                    .filter(|r| r.verdict.is_memory_death() && r.last_words_lines > 0)
                    .take(MAX_EXCERPTS)
                    .map(|r| r.instance_id.clone()),
            );
            let mut drawn: Vec<&InstanceFacts> =
                mine.into_iter().filter(|r| r.memory_points >= 2).collect();
            drawn.sort_by_key(|r| r.terminated_at);
            let skip = drawn.len().saturating_sub(MAX_CHART_SERIES);
            out.extend(drawn[skip..].iter().map(|r| r.instance_id.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Renders the report: `facts` are the compact rows of every instance in the lookback,
/// `reports` the full reports of those the page shows (at least [`cited`]'s).
pub fn render(
    findings: &[DeploymentFinding],
    facts: &[InstanceFacts],
    reports: &[InstanceReport],
    ctx: &HtmlContext<'_>,
) -> String {
    // Worst verdict first, then by name: the page opens on what needs attention.
    let mut sorted: Vec<&DeploymentFinding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        b.verdict
            .severity()
            .cmp(&a.verdict.severity())
            .then_with(|| a.deployment.cmp(&b.deployment))
    });
    let findings = sorted;
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>epitaph report</title><style>{STYLE}</style></head><body>\n<h1>epitaph: why instances died</h1>\n<div class=\"meta\">Generated {}",
        ctx.generated_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(w) = ctx.window {
        let _ = write!(
            out,
            " · window {} → {}",
            w.start.format("%Y-%m-%d %H:%M"),
            w.end.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let _ = writeln!(out, " · {} deployments</div>", findings.len());
    // A source that gave nothing for any instance shown is said first: the verdicts below
    // lack that evidence.
    if !ctx.unread_targets.is_empty() {
        let _ = write!(
            out,
            "<div class=\"banner\" role=\"alert\" id=\"unread-targets\"><b>Targets not read:</b> {} target(s) could not be read in the latest scan; this page lacks their instances, and the next scan reads their windows again.<ul>",
            ctx.unread_targets.len()
        );
        for (target, u) in ctx.unread_targets {
            let _ = write!(
                out,
                "<li><code>{}</code>: {} (unread since {})</li>",
                esc(target),
                esc(&u.error),
                u.since.format("%Y-%m-%d %H:%M UTC")
            );
        }
        let _ = writeln!(out, "</ul></div>");
    }
    let coverage = crate::analysis::coverage::assess_facts(facts);
    for c in &coverage.collapsed {
        let _ = writeln!(
            out,
            "<div class=\"banner\" role=\"alert\"><b>Evidence collapsed:</b> {}. Verdicts that need it are not to be trusted.</div>",
            esc(c)
        );
    }
    if let Some(note) = coverage.attribution_note() {
        let _ = writeln!(
            out,
            "<div class=\"banner\" role=\"note\"><b>Unattributed:</b> {}.</div>",
            esc(&note)
        );
    }

    // Summary table.
    out.push_str("<table id=\"summary\"><thead><tr><th>deployment</th><th>verdict</th><th>instances</th><th>floor growth</th><th>median lifetime</th><th>summary</th></tr></thead><tbody>\n");
    for f in &findings {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#d-{}\">{}</a></td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            anchor(&f.deployment),
            esc(&f.deployment),
            verdict_class(f.verdict),
            f.verdict,
            f.evidence.instances.len(),
            f.evidence.median_growth_per_hour.map(|g| fmt_growth(g, ctx.unit)).unwrap_or_default(),
            f.evidence.median_lifetime_hours.map(fmt_hours).unwrap_or_default(),
            esc(&f.summary)
        );
    }
    out.push_str("</tbody></table>\n");
    if findings.is_empty() {
        out.push_str("<p>No terminations in the lookback.</p>\n");
    }
    next_deaths(&mut out, ctx);

    for f in &findings {
        let mine: Vec<&InstanceReport> = reports
            .iter()
            .filter(|r| r.deployment == f.deployment)
            .collect();
        let my_facts: Vec<&InstanceFacts> = facts
            .iter()
            .filter(|r| r.deployment == f.deployment)
            .collect();
        deployment_section(&mut out, f, &my_facts, &mine, ctx);
    }
    out.push_str("</body></html>\n");
    out
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn deployment_section(
    out: &mut String,
    f: &DeploymentFinding,
    facts: &[&InstanceFacts],
    reports: &[&InstanceReport],
    ctx: &HtmlContext<'_>,
) {
    let _ = writeln!(
        out,
        "<section class=\"deployment\" id=\"d-{}\" data-verdict=\"{}\"><h2>{}<span class=\"badge {}\">{}</span></h2><p>{}</p>",
        anchor(&f.deployment),
        f.verdict,
        esc(&f.deployment),
        verdict_class(f.verdict),
        f.verdict,
        esc(&f.summary)
    );
    if let Some(o) = &f.origin {
        let _ = writeln!(
            out,
            "<p class=\"origin\"><b>Origin</b> {}</p>",
            esc(&o.summary)
        );
    }
    let e = &f.evidence;
    out.push_str("<div class=\"facts\">");
    let _ = write!(
        out,
        "<span><b>groups</b> {}</span>",
        esc(&f.asgs.join(", "))
    );
    for (k, v) in &e.counts {
        let _ = write!(out, "<span><b>{}</b> {v}</span>", esc(k));
    }
    if let Some(g) = e.median_growth_per_hour {
        let _ = write!(
            out,
            "<span><b>floor growth</b> {}</span>",
            fmt_growth(g, ctx.unit)
        );
    }
    if let Some(h) = e.median_lifetime_hours {
        let _ = write!(out, "<span><b>median lifetime</b> {}</span>", fmt_hours(h));
    }
    for (sig, n) in &e.signatures {
        let _ = write!(out, "<span><b>{}</b> ×{n}</span>", esc(sig));
    }
    out.push_str("</div>\n");

    if shows_memory(f.verdict) {
        let with_series = facts.iter().filter(|r| r.memory_points >= 2).count();
        chart(out, f, reports, with_series, ctx);
        excerpts(out, reports, ctx);
    }
    if f.verdict != DeploymentVerdict::Healthy {
        next_steps(out, facts, ctx);
    }
    if let Some(h) = ctx.heap_diffs.iter().find(|h| h.deployment == f.deployment) {
        heap_diff(out, h);
    }
    instance_table(out, reports, facts.len(), ctx);
    out.push_str("</section>\n");
}

/// The early-warning table: running instances projected to reach their limit, soonest first,
/// with the interval and the time left from the data's end.
fn next_deaths(out: &mut String, ctx: &HtmlContext<'_>) {
    if ctx.next_deaths.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"next-deaths\">Next expected deaths</h2><p class=\"legend\">Running instances whose memory is projected to reach the limit (the leak detector's trend of the memory floor plus its usual swing, up to the level where the deployment's instances died — or the limit; the interval is the trend's 90 % interval).</p>\n<table id=\"next-deaths-table\"><thead><tr><th>instance</th><th>deployment</th><th>expected</th><th>interval</th><th>in</th><th>memory now / death level</th><th>floor growth</th></tr></thead><tbody>\n");
    for p in ctx.next_deaths.iter().take(MAX_TABLE_ROWS) {
        // From the scanned window's end (the scan's "now"), as the table and the alert say it.
        let now = ctx.window.map_or(p.as_of, |w| w.end);
        let hours = (p.expected - now).num_seconds().max(0) as f64 / 3600.0;
        let _ = writeln!(
            out,
            "<tr><td class=\"id\">{}</td><td><a href=\"#d-{}\">{}</a></td><td class=\"t\">{}</td><td class=\"t\">{} – {}</td><td class=\"t\">{}</td><td class=\"t\">{} / {}</td><td class=\"t\">{}</td></tr>",
            esc(&p.instance_id),
            anchor(&p.deployment),
            esc(&p.deployment),
            p.expected.format("%Y-%m-%d %H:%M UTC"),
            p.earliest.format("%m-%d %H:%M"),
            p.latest.map_or("open".to_string(), |l| l.format("%m-%d %H:%M").to_string()),
            fmt_hours(hours),
            fmt_value(p.floor + p.swing, ctx.unit),
            fmt_value(p.threshold, ctx.unit),
            fmt_growth(p.growth_per_hour, ctx.unit)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// Suspects shown from an attached heap diff.
const HEAP_SUSPECT_ROWS: usize = 5;

/// The attached heap diff: the suspects (constructors allocated after the baseline that stay
/// alive), what they retain, and the retainer path of the top ones.
fn heap_diff(out: &mut String, h: &AttachedHeapDiff) {
    let d = &h.diff;
    let _ = writeln!(
        out,
        "<div class=\"heap-diff\"><b>Heap snapshot diff</b> <span class=\"legend\">({}; attached {}: {})</span>",
        esc(&d.method),
        h.attached_at.format("%Y-%m-%d %H:%M UTC"),
        esc(&h.files.join(", "))
    );
    if d.suspects.is_empty() {
        out.push_str("<p>No leak suspect: nothing allocated after the baseline stays alive in numbers.</p></div>\n");
        return;
    }
    out.push_str("<table class=\"heap-suspects\"><thead><tr><th>constructor</th><th>origin</th><th>surviving</th><th>retained</th><th>count per snapshot</th><th>held by</th></tr></thead><tbody>\n");
    for s in d.suspects.iter().take(HEAP_SUSPECT_ROWS) {
        let counts: Vec<String> = s.counts.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(
            out,
            "<tr><td class=\"id\">{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"cause\">{}</td></tr>",
            esc(&s.class),
            esc(&s.origin),
            s.surviving,
            esc(&crate::sinks::heap::fmt_bytes(s.retained_bytes)),
            counts.join(" → "),
            esc(&s.retainer_path.join(" → "))
        );
    }
    out.push_str("</tbody></table></div>\n");
}

/// What to do next for the signatures this deployment died with, and where the capture
/// method is documented (a runtime's heap snapshot, heap dump or profile).
fn next_steps(out: &mut String, facts: &[&InstanceFacts], ctx: &HtmlContext<'_>) {
    let Some(lib) = ctx.signatures else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut items = String::new();
    for r in facts {
        for id in &r.death_signatures {
            if seen.contains(&id.as_str()) {
                continue;
            }
            seen.push(id);
            let Some(sig) = lib.get(id) else {
                continue;
            };
            let links: Vec<String> = sig
                .spec
                .docs
                .iter()
                .map(|d| format!("<a href=\"{}\">{}</a>", esc(&d.url), esc(&d.label)))
                .collect();
            let _ = write!(
                items,
                "<li><b>{}</b> ({}): {}{}</li>",
                esc(&sig.spec.id),
                esc(&sig.spec.runtime),
                esc(&sig.spec.next_step),
                if links.is_empty() {
                    String::new()
                } else {
                    format!(" <span class=\"legend\">· {}</span>", links.join(" · "))
                }
            );
        }
    }
    if !items.is_empty() {
        let _ = writeln!(
            out,
            "<div class=\"next-steps\"><b>Next steps</b><ul>{items}</ul></div>"
        );
    }
}

/// `with_series`: how many of the deployment's instances have a series to draw (the reports
/// given hold at least the latest [`MAX_CHART_SERIES`] of them).
fn chart(
    out: &mut String,
    f: &DeploymentFinding,
    reports: &[&InstanceReport],
    with_series: usize,
    ctx: &HtmlContext<'_>,
) {
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
        out.push_str("<p class=\"legend\">No memory series for these instances.</p>\n");
        return;
    }
    let t0 = drawn
        .iter()
        .filter_map(|r| r.memory.points.first().map(|p| p.0))
        .min()
        .unwrap_or(f.evidence.first_death.unwrap_or(ctx.generated_at));
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
        if ctx.unit == "bytes" {
            format!("{:.0} MiB", v / 1048576.0)
        } else {
            format!("{v:.0}%")
        }
    };

    let _ = writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" role=\"img\" aria-label=\"memory of {} instances of {}\" data-series=\"{}\">",
        drawn.len(),
        esc(&f.deployment),
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
        let pts: Vec<String> = r
            .memory
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.4\" points=\"{}\"><title>{}</title></polyline>",
            pts.join(" "),
            esc(&r.instance_id)
        );
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
                    "<line class=\"floor\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\"><title>{}: memory floor {} → {}</title></line>",
                    x(seg.start),
                    x(seg.end),
                    y(a),
                    y(b),
                    esc(&r.instance_id),
                    fmt_value(a, ctx.unit),
                    fmt_value(b, ctx.unit)
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
                "<path class=\"{class}\" d=\"M{sx:.1},{:.1}l-4,7h8z\" fill=\"{color}\"><title>{}: {what} at {}</title></path>",
                MARGIN_TOP + h,
                esc(&r.instance_id),
                seg.end.format("%Y-%m-%d %H:%M UTC")
            );
        }
        if r.verdict.is_memory_death() {
            let dy = r.memory.points.last().map_or(MARGIN_TOP, |p| y(p.1));
            let _ = writeln!(
                out,
                "<path class=\"oom\" d=\"M{:.1},{:.1}l8,8m0,-8l-8,8\" stroke=\"#cf222e\" stroke-width=\"2.2\"><title>{} died of memory at {}</title></path>",
                dx - 4.0,
                dy - 4.0,
                esc(&r.instance_id),
                r.terminated_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    out.push_str("</svg>\n");
    let _ = writeln!(
        out,
        "<p class=\"legend\">{} instance series; dotted verticals mark terminations, red ✕ an out-of-memory death, the dashed red line the memory limit, thin dashed lines the memory floor the leak detector fitted to each stretch, triangles on the time axis where it saw a restart (filled) or a return to the resting level (hollow).{}</p>",
        drawn.len(),
        if skip > 0 {
            format!(" {skip} older instances not drawn.")
        } else {
            String::new()
        }
    );
}

fn excerpts(out: &mut String, reports: &[&InstanceReport], ctx: &HtmlContext<'_>) {
    let mut with_words: Vec<&&InstanceReport> = reports
        .iter()
        .filter(|r| r.verdict.is_memory_death() && !r.last_words.events.is_empty())
        .collect();
    with_words.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
    for r in with_words.iter().take(MAX_EXCERPTS) {
        let ev = &r.last_words.events;
        let hit_lines: Vec<usize> = r.signatures.iter().map(|m| m.line).collect();
        let start = ev.len().saturating_sub(EXCERPT_LINES);
        let _ = writeln!(
            out,
            "<div class=\"excerpt\"><b>Last words of {}</b> <span class=\"legend\">(terminated {})</span><pre>",
            esc(&r.instance_id),
            r.terminated_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        for (i, e) in ev.iter().enumerate().skip(start) {
            let text = esc(&ctx.redactor.redact(&e.message));
            if hit_lines.contains(&i) {
                let _ = writeln!(out, "<span class=\"hit\">{text}</span>");
            } else {
                let _ = writeln!(out, "{text}");
            }
        }
        out.push_str("</pre></div>\n");
    }
}

/// `total`: the deployment's instances (the reports given hold at least the latest
/// [`MAX_TABLE_ROWS`]).
fn instance_table(
    out: &mut String,
    reports: &[&InstanceReport],
    total: usize,
    ctx: &HtmlContext<'_>,
) {
    let mut rows: Vec<&&InstanceReport> = reports.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
    out.push_str("<table class=\"instances\"><thead><tr><th>instance</th><th>terminated</th><th>verdict</th><th>signature</th><th>floor growth</th><th>lifetime</th><th>cause</th></tr></thead><tbody>\n");
    for r in rows.iter().take(MAX_TABLE_ROWS) {
        let _ = writeln!(
            out,
            "<tr><td class=\"id\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"cause\" title=\"{}\">{}</td></tr>",
            esc(&r.instance_id),
            r.terminated_at.format("%Y-%m-%d %H:%M"),
            r.verdict,
            esc(r.deciding_signature().map(|m| m.signature.as_str()).unwrap_or("")),
            r.leak
                .as_ref()
                .and_then(|l| l.growth_per_hour)
                .map(|g| fmt_growth(g, ctx.unit))
                .unwrap_or_default(),
            r.lifetime_hours().map(fmt_hours).unwrap_or_default(),
            esc(&r.cause_text),
            esc(&first_sentence(&r.cause_text, CAUSE_CHARS))
        );
    }
    out.push_str("</tbody></table>\n");
    let listed = rows.len().min(MAX_TABLE_ROWS);
    if total > listed {
        let _ = writeln!(
            out,
            "<p class=\"legend\">{} more instances not listed.</p>",
            total - listed
        );
    }
}

/// Characters of an activity's cause shown in the table (the whole text is the tooltip).
pub const CAUSE_CHARS: usize = 110;

/// The cause text without its leading "At <time> " and cut after its first sentence.
fn first_sentence(s: &str, max: usize) -> String {
    let s = match s.strip_prefix("At ") {
        Some(rest) => rest.split_once(' ').map_or(rest, |(_, r)| r),
        None => s,
    };
    let s = s.split(". ").next().unwrap_or(s);
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_user_controlled() {
        assert_eq!(esc("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
        let f = DeploymentFinding {
            deployment: "<img src=x onerror=alert(1)>".into(),
            asgs: vec!["<b>".into()],
            verdict: DeploymentVerdict::Crashing,
            summary: "<script>".into(),
            evidence: Default::default(),
            origin: None,
        };
        let r = Redactor::default();
        let html = render(
            &[f],
            &[],
            &[],
            &HtmlContext {
                generated_at: Utc::now(),
                window: None,
                unit: "percent",
                redactor: &r,
                next_deaths: &[],
                signatures: None,
                heap_diffs: &[],
                unread_targets: &[(
                    "us-west-2".to_string(),
                    crate::store::UnreadTarget {
                        since: Utc::now(),
                        error: "AccessDenied: <script>alert(1)</script>".into(),
                    },
                )]
                .into(),
            },
        );
        assert!(!html.contains("<script>") && !html.contains("<img"));
        assert!(html.contains("&lt;b&gt;") && html.contains("&lt;img src=x"));
        // A target the latest scan could not read is named in a banner, escaped like the rest.
        let banner = html.find("id=\"unread-targets\"").expect("banner");
        assert!(banner < html.find("id=\"summary\"").unwrap());
        assert!(html.contains("<code>us-west-2</code>: AccessDenied: &lt;script&gt;"));
    }

    #[test]
    fn the_chart_marks_where_the_detector_saw_restarts() {
        use crate::model::{CauseCategory, InstanceVerdict, LastWords, MemorySeries};
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        // Two lives of a leak: climb, restart, climb again until death.
        let points: Vec<(chrono::DateTime<Utc>, f64)> = (0..240)
            .map(|i| {
                (
                    t0 + chrono::Duration::minutes(5 * i),
                    20.0 + (i % 120) as f64 * 0.6,
                )
            })
            .collect();
        let leak = crate::analysis::leak::assess(&points, Some(100.0));
        assert_eq!(
            leak.segments
                .iter()
                .filter(|s| s.ended_by == SegmentEnd::Restart)
                .count(),
            1,
            "{leak:?}"
        );
        let report = InstanceReport {
            instance_id: "i-0abc".into(),
            deployment: "web:1".into(),
            asg: "web".into(),
            terminated_at: points[points.len() - 1].0,
            cause: CauseCategory::HealthCheck,
            cause_text: String::new(),
            launch_time: None,
            verdict: InstanceVerdict::MemoryExhaustionSuspected,
            explanation: String::new(),
            signatures: vec![],
            leak: Some(leak),
            last_words: LastWords::default(),
            memory: MemorySeries {
                points,
                limit: Some(100.0),
                ..Default::default()
            },
        };
        let f = DeploymentFinding {
            deployment: "web:1".into(),
            asgs: vec!["web".into()],
            verdict: DeploymentVerdict::Leaking,
            summary: String::new(),
            evidence: Default::default(),
            origin: None,
        };
        let r = Redactor::default();
        let facts = [crate::model::InstanceFacts::of(&report)];
        assert_eq!(
            cited(std::slice::from_ref(&f), &facts),
            vec![report.instance_id.clone()]
        );
        let html = render(
            &[f],
            &facts,
            &[report],
            &HtmlContext {
                generated_at: Utc::now(),
                window: None,
                unit: "percent",
                redactor: &r,
                next_deaths: &[],
                signatures: None,
                heap_diffs: &[],
                unread_targets: &Default::default(),
            },
        );
        assert_eq!(html.matches("<path class=\"restart\"").count(), 1, "{html}");
        // Two lives, two floor lines.
        assert_eq!(html.matches("<line class=\"floor\"").count(), 2, "{html}");
        assert!(
            html.contains("i-0abc: restart at 2026-01-05 09:55 UTC"),
            "{html}"
        );
    }

    /// The page drawn from the cited reports alone is the page drawn from every report: the
    /// charts, excerpts and tables pick the same instances (times tie on purpose, and the
    /// newest instances, which fill the table, have neither series nor last words), and the
    /// counts of what is left out come from the compact rows.
    #[test]
    fn the_cited_reports_draw_the_same_page_as_all_of_them() {
        use crate::model::{
            CauseCategory, InstanceFacts, InstanceVerdict, LastWords, LogEvent, MemorySeries,
            SignatureKind, SignatureMatch,
        };
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        let old = 90;
        let mut reports: Vec<InstanceReport> = (0..(MAX_TABLE_ROWS + old))
            .map(|i| {
                // Three instances per termination time: ties at every cut.
                let at = t0 + chrono::Duration::minutes((i / 3) as i64);
                let evidence = i < old;
                let verdict = match (evidence, i % 2) {
                    (true, 0) => InstanceVerdict::OomLeak,
                    (true, _) => InstanceVerdict::OomSpike,
                    (false, 0) => InstanceVerdict::NotACrash,
                    (false, _) => InstanceVerdict::CrashOther,
                };
                // The newest fill web:1's table exactly; web:2 has a few old ones.
                let deployment = if evidence && i % 7 == 0 {
                    "web:2"
                } else {
                    "web:1"
                };
                InstanceReport {
                    instance_id: format!("i-{:03}", (i * 37) % 1000),
                    deployment: deployment.into(),
                    asg: "web".into(),
                    terminated_at: at,
                    cause: CauseCategory::HealthCheck,
                    cause_text: format!("cause {i}"),
                    launch_time: None,
                    verdict,
                    explanation: String::new(),
                    signatures: if verdict.is_memory_death() {
                        vec![SignatureMatch {
                            signature: format!("sig.{}", i % 3),
                            runtime: "node".into(),
                            kind: SignatureKind::Oom,
                            line: 0,
                            text: "heap out of memory".into(),
                            details: Default::default(),
                        }]
                    } else {
                        vec![]
                    },
                    leak: None,
                    last_words: LastWords {
                        // Words and series on different instances: each section cites its own.
                        events: (0..if evidence && i % 4 < 2 { i % 4 + 1 } else { 0 })
                            .map(|k| LogEvent {
                                timestamp: at,
                                message: format!("line {k} of {i}"),
                            })
                            .collect(),
                        ..Default::default()
                    },
                    memory: MemorySeries {
                        points: (0..if evidence && i % 4 >= 2 { i % 4 } else { 0 })
                            .map(|k| (at - chrono::Duration::minutes(k as i64), k as f64))
                            .collect(),
                        limit: Some(100.0),
                        ..Default::default()
                    },
                }
            })
            .collect();
        reports.sort_by(|a, b| {
            (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id))
        });
        let facts: Vec<InstanceFacts> = reports.iter().map(InstanceFacts::of).collect();
        let findings: Vec<DeploymentFinding> = ["web:1", "web:2"]
            .iter()
            .map(|d| DeploymentFinding {
                deployment: d.to_string(),
                asgs: vec!["web".into()],
                verdict: DeploymentVerdict::Leaking,
                summary: String::new(),
                evidence: Default::default(),
                origin: None,
            })
            .collect();
        let ids = cited(&findings, &facts);
        assert!(
            ids.len() < reports.len(),
            "{} of {}",
            ids.len(),
            reports.len()
        );
        let shown: Vec<InstanceReport> = reports
            .iter()
            .filter(|r| ids.contains(&r.instance_id))
            .cloned()
            .collect();
        let r = Redactor::default();
        let lib = crate::analysis::signatures::SignatureLibrary::default_library().unwrap();
        let ctx = HtmlContext {
            generated_at: t0,
            window: None,
            unit: "percent",
            redactor: &r,
            next_deaths: &[],
            signatures: Some(&lib),
            heap_diffs: &[],
            unread_targets: &Default::default(),
        };
        let all = render(&findings, &facts, &reports, &ctx);
        assert!(
            all.contains("more instances not listed"),
            "the table is cut"
        );
        assert!(
            all.contains("older instances not drawn"),
            "the chart is cut"
        );
        assert!(all.contains("Last words of"), "excerpts are shown");
        assert_eq!(render(&findings, &facts, &shown, &ctx), all);
    }
}
