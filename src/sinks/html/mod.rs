//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! resource) with every deployment's verdict and evidence and, for deployments that die of
//! memory, a chart of their instances' memory series with each death marked — the graph an
//! engineer would otherwise hunt for in a dashboard — the last words, and an instance table.
//! Served at `GET /` by `epitaph serve` and written by `--format html`. Drawn from the
//! lookback's compact rows (counts, signatures, coverage) and the full reports of the few
//! instances the page shows ([`cited`]): charts, excerpts, table rows.
//!
//! The page is an askama template, `templates/report.html`, compiled into the binary and
//! HTML-escaped by askama wherever it prints a value; this module picks and orders what it
//! shows (the `Page` it fills in). The charts are SVG drawn by `chart.rs`, the one place
//! markup enters the page unescaped (`chart::TrustedSvg`).

mod chart;

use askama::Template;
use chrono::{DateTime, Utc};

use crate::analysis::heap::{AttachedHeapDiff, Suspect};
use crate::analysis::signatures::{SignatureLibrary, SignatureSpec};
use crate::model::{
    DeploymentFinding, DeploymentVerdict, InstanceFacts, InstanceReport, ProjectedDeath, TimeWindow,
};
use crate::sinks::alert::{fmt_growth, fmt_hours, fmt_value};
use crate::sinks::redact::Redactor;

pub use chart::{CHART_HEIGHT, CHART_WIDTH, MAX_CHART_SERIES};

/// Instances whose last words are shown per deployment.
pub const MAX_EXCERPTS: usize = 3;
/// Log lines per excerpt (the last ones before death).
pub const EXCERPT_LINES: usize = 12;
/// Instance rows per deployment table.
pub const MAX_TABLE_ROWS: usize = 200;
/// Suspects shown from an attached heap diff.
const HEAP_SUSPECT_ROWS: usize = 5;
/// Characters of an activity's cause shown in the table (the whole text is the tooltip).
pub const CAUSE_CHARS: usize = 110;

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

fn verdict_class(v: DeploymentVerdict) -> &'static str {
    match v {
        DeploymentVerdict::Leaking => "leaking",
        DeploymentVerdict::OomWithoutLeak => "oom",
        DeploymentVerdict::Crashing => "crashing",
        DeploymentVerdict::Healthy => "healthy",
        DeploymentVerdict::InsufficientEvidence => "unknown",
    }
}

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

/// What templates/report.html prints: everything chosen, ordered and formatted here; the
/// template only lays it out, escaping every value.
#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    generated_at: DateTime<Utc>,
    window: Option<TimeWindow>,
    unread: &'a crate::store::TargetBacklog,
    /// Sources whose evidence collapsed (`analysis::coverage`).
    collapsed: Vec<String>,
    unattributed: Option<String>,
    next_deaths: Vec<NextDeath<'a>>,
    /// Worst verdict first, then by name: the page opens on what needs attention.
    sections: Vec<Section<'a>>,
}

/// A row of "Next expected deaths".
struct NextDeath<'a> {
    p: &'a ProjectedDeath,
    anchor: String,
    latest: String,
    /// Time left, from the scanned window's end.
    hours: String,
    level: String,
    threshold: String,
    growth: String,
}

/// One deployment: its summary row and its section.
struct Section<'a> {
    f: &'a DeploymentFinding,
    anchor: String,
    class: &'static str,
    growth: Option<String>,
    lifetime: Option<String>,
    /// For deployments that die of memory.
    chart: Option<chart::Chart>,
    excerpts: Vec<Excerpt<'a>>,
    next_steps: Vec<NextStep<'a>>,
    heap: Option<&'a AttachedHeapDiff>,
    suspects: Vec<SuspectRow<'a>>,
    rows: Vec<InstanceRow<'a>>,
    /// Instances of the deployment beyond the table's rows.
    more: usize,
}

/// An instance's last words, redacted; `hit` lines matched a signature.
struct Excerpt<'a> {
    r: &'a InstanceReport,
    lines: Vec<ExcerptLine<'a>>,
}

struct ExcerptLine<'a> {
    hit: bool,
    text: std::borrow::Cow<'a, str>,
}

/// A signature's next step and the documentation of its capture method.
struct NextStep<'a> {
    id: &'a str,
    runtime: &'a str,
    next_step: &'a str,
    docs: Vec<DocLink<'a>>,
}

/// `url` is `None` for a link that is not http(s): its label and address are shown as text,
/// never as a link a reader could follow into a `javascript:` URL of a signature library.
struct DocLink<'a> {
    label: &'a str,
    url: Option<&'a str>,
    raw: &'a str,
}

struct SuspectRow<'a> {
    s: &'a Suspect,
    retained: String,
}

struct InstanceRow<'a> {
    r: &'a InstanceReport,
    signature: &'a str,
    growth: String,
    lifetime: String,
    /// The cause's first sentence (the whole text is the cell's tooltip).
    cause: String,
}

/// Renders the report: `facts` are the compact rows of every instance in the lookback,
/// `reports` the full reports of those the page shows (at least [`cited`]'s).
pub fn render(
    findings: &[DeploymentFinding],
    facts: &[InstanceFacts],
    reports: &[InstanceReport],
    ctx: &HtmlContext<'_>,
) -> String {
    let mut sorted: Vec<&DeploymentFinding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        b.verdict
            .severity()
            .cmp(&a.verdict.severity())
            .then_with(|| a.deployment.cmp(&b.deployment))
    });
    let coverage = crate::analysis::coverage::assess_facts(facts);
    let page = Page {
        generated_at: ctx.generated_at,
        window: ctx.window,
        unread: ctx.unread_targets,
        collapsed: coverage.collapsed.clone(),
        unattributed: coverage.attribution_note(),
        next_deaths: next_deaths(ctx),
        sections: sorted
            .into_iter()
            .map(|f| section(f, facts, reports, ctx))
            .collect(),
    };
    page.render().unwrap_or_else(|e| render_failed(&e))
}

/// Rendering into a String fails only if a value's `Display` does, and none of the page's does
/// (fixed chrono formats, our own types): should it ever, the page says so instead of showing
/// part of a report, and the log has the error.
fn render_failed(e: &askama::Error) -> String {
    tracing::error!(error = %e, "the HTML report could not be rendered");
    "<!DOCTYPE html><p>The report could not be rendered; the log has the error.</p>\n".to_string()
}

/// The page of one instance's investigation (`instance ID --format html`): its text report.
pub fn investigation_page(text: &str) -> String {
    #[derive(Template)]
    #[template(path = "investigation.html")]
    struct InvestigationPage<'a> {
        text: &'a str,
    }
    InvestigationPage { text }
        .render()
        .unwrap_or_else(|e| render_failed(&e))
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn section<'a>(
    f: &'a DeploymentFinding,
    facts: &'a [InstanceFacts],
    reports: &'a [InstanceReport],
    ctx: &HtmlContext<'a>,
) -> Section<'a> {
    let reports: Vec<&InstanceReport> = reports
        .iter()
        .filter(|r| r.deployment == f.deployment)
        .collect();
    let facts: Vec<&InstanceFacts> = facts
        .iter()
        .filter(|r| r.deployment == f.deployment)
        .collect();
    let memory = shows_memory(f.verdict);
    let heap = ctx.heap_diffs.iter().find(|h| h.deployment == f.deployment);
    let (rows, more) = instance_rows(&reports, facts.len(), ctx);
    Section {
        f,
        anchor: anchor(&f.deployment),
        class: verdict_class(f.verdict),
        growth: f
            .evidence
            .median_growth_per_hour
            .map(|g| fmt_growth(g, ctx.unit)),
        lifetime: f.evidence.median_lifetime_hours.map(fmt_hours),
        chart: memory.then(|| {
            let with_series = facts.iter().filter(|r| r.memory_points >= 2).count();
            chart::chart(f, &reports, with_series, ctx.unit, ctx.generated_at)
        }),
        excerpts: if memory {
            excerpts(&reports, ctx)
        } else {
            Vec::new()
        },
        next_steps: if f.verdict != DeploymentVerdict::Healthy {
            next_steps(&facts, ctx)
        } else {
            Vec::new()
        },
        heap,
        suspects: heap.map_or_else(Vec::new, |h| {
            h.diff
                .suspects
                .iter()
                .take(HEAP_SUSPECT_ROWS)
                .map(|s| SuspectRow {
                    s,
                    retained: crate::sinks::heap::fmt_bytes(s.retained_bytes),
                })
                .collect()
        }),
        rows,
        more,
    }
}

/// The early-warning table: running instances projected to reach their limit, soonest first,
/// with the interval and the time left from the data's end.
fn next_deaths<'a>(ctx: &HtmlContext<'a>) -> Vec<NextDeath<'a>> {
    ctx.next_deaths
        .iter()
        .take(MAX_TABLE_ROWS)
        .map(|p| {
            // From the scanned window's end (the scan's "now"), as the table and the alert say it.
            let now = ctx.window.map_or(p.as_of, |w| w.end);
            let hours = (p.expected - now).num_seconds().max(0) as f64 / 3600.0;
            NextDeath {
                p,
                anchor: anchor(&p.deployment),
                latest: p
                    .latest
                    .map_or("open".to_string(), |l| l.format("%m-%d %H:%M").to_string()),
                hours: fmt_hours(hours),
                level: fmt_value(p.floor + p.swing, ctx.unit),
                threshold: fmt_value(p.threshold, ctx.unit),
                growth: fmt_growth(p.growth_per_hour, ctx.unit),
            }
        })
        .collect()
}

/// What to do next for the signatures this deployment died with, and where the capture
/// method is documented (a runtime's heap snapshot, heap dump or profile).
fn next_steps<'a>(facts: &[&'a InstanceFacts], ctx: &HtmlContext<'a>) -> Vec<NextStep<'a>> {
    let Some(lib) = ctx.signatures else {
        return Vec::new();
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for r in facts {
        for id in &r.death_signatures {
            if seen.contains(&id.as_str()) {
                continue;
            }
            seen.push(id);
            let Some(sig) = lib.get(id) else {
                continue;
            };
            out.push(next_step(&sig.spec));
        }
    }
    out
}

fn next_step(spec: &SignatureSpec) -> NextStep<'_> {
    NextStep {
        id: &spec.id,
        runtime: &spec.runtime,
        next_step: &spec.next_step,
        docs: spec
            .docs
            .iter()
            .map(|d| DocLink {
                label: &d.label,
                url: (d.url.starts_with("https://") || d.url.starts_with("http://"))
                    .then_some(d.url.as_str()),
                raw: &d.url,
            })
            .collect(),
    }
}

fn excerpts<'a>(reports: &[&'a InstanceReport], ctx: &HtmlContext<'_>) -> Vec<Excerpt<'a>> {
    let mut with_words: Vec<&'a InstanceReport> = reports
        .iter()
        .copied()
        .filter(|r| r.verdict.is_memory_death() && !r.last_words.events.is_empty())
        .collect();
    with_words.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
    with_words
        .into_iter()
        .take(MAX_EXCERPTS)
        .map(|r| {
            let ev = &r.last_words.events;
            let hit_lines: Vec<usize> = r.signatures.iter().map(|m| m.line).collect();
            let start = ev.len().saturating_sub(EXCERPT_LINES);
            Excerpt {
                r,
                lines: ev
                    .iter()
                    .enumerate()
                    .skip(start)
                    .map(|(i, e)| ExcerptLine {
                        hit: hit_lines.contains(&i),
                        text: ctx.redactor.redact(&e.message),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The table's rows, newest first, and how many of the deployment's `total` instances it
/// leaves out (the reports given hold at least the latest [`MAX_TABLE_ROWS`]).
fn instance_rows<'a>(
    reports: &[&'a InstanceReport],
    total: usize,
    ctx: &HtmlContext<'_>,
) -> (Vec<InstanceRow<'a>>, usize) {
    let mut rows: Vec<&'a InstanceReport> = reports.to_vec();
    rows.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
    rows.truncate(MAX_TABLE_ROWS);
    let more = total.saturating_sub(rows.len());
    let rows = rows
        .into_iter()
        .map(|r| InstanceRow {
            r,
            signature: r
                .deciding_signature()
                .map(|m| m.signature.as_str())
                .unwrap_or(""),
            growth: r
                .leak
                .as_ref()
                .and_then(|l| l.growth_per_hour)
                .map(|g| fmt_growth(g, ctx.unit))
                .unwrap_or_default(),
            lifetime: r.lifetime_hours().map(fmt_hours).unwrap_or_default(),
            cause: first_sentence(&r.cause_text, CAUSE_CHARS),
        })
        .collect();
    (rows, more)
}

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
mod tests;
