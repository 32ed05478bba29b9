//! Report renderers: scan reports and instance investigations as a table (human, colour only on
//! a TTY), Markdown (for tickets and chat), or JSON (machine, the documented schema).
//!
//! Length: three renderings (table, Markdown, JSON) of the same two documents, kept side by
//! side so a field added to one is added to all; its tests follow.

use std::fmt::Write as _;

use comfy_table::{presets, Cell, Color, ContentArrangement, Table};

use chrono::{DateTime, Utc};

use crate::model::{
    DeploymentFinding, DeploymentVerdict, InstanceReport, InstanceVerdict, ProjectedDeath,
};
use crate::sinks::scan_report::{InstanceSummary, Investigation, ScanReport};

/// Characters of the memory sparkline, lowest to highest.
const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Sparkline width in characters.
pub const SPARKLINE_WIDTH: usize = 60;
/// Instances listed in human reports; the JSON always has all of them.
pub const MAX_INSTANCE_ROWS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
    /// One self-contained page with charts (`scan` and `demo`; see `sinks::html`).
    Html,
}

/// Renders a scan report.
pub fn render_scan(report: &ScanReport, format: Format, color: bool) -> String {
    match format {
        Format::Json => to_json(report),
        Format::Table => scan_table(report, color),
        Format::Markdown => scan_markdown(report),
        // Without the stored series: the CLI and the service call `Pipeline::html_report`,
        // which has them; this keeps every format total.
        Format::Html => crate::sinks::html::render(
            &report.deployments,
            &[],
            &[],
            &crate::sinks::html::HtmlContext {
                generated_at: chrono::Utc::now(),
                window: Some(report.window),
                unit: "percent",
                redactor: &crate::sinks::redact::Redactor::default(),
                next_deaths: &report.next_deaths,
                signatures: None,
                heap_diffs: &[],
                unread_targets: &Default::default(),
            },
        ),
    }
}

/// Renders an instance investigation.
pub fn render_investigation(inv: &Investigation, format: Format, color: bool) -> String {
    match format {
        Format::Json => to_json(inv),
        Format::Table | Format::Markdown => {
            investigation_text(inv, format == Format::Markdown, color)
        }
        Format::Html => {
            crate::sinks::html::investigation_page(&investigation_text(inv, false, false))
        }
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising our own plain data types cannot fail; an empty object is the safe fallback.
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".to_string())
}

fn deployment_color(v: DeploymentVerdict) -> Color {
    match v {
        DeploymentVerdict::Leaking => Color::Red,
        DeploymentVerdict::OomWithoutLeak => Color::Magenta,
        DeploymentVerdict::Crashing => Color::Yellow,
        DeploymentVerdict::Healthy => Color::Green,
        DeploymentVerdict::InsufficientEvidence => Color::Grey,
    }
}

fn instance_color(v: InstanceVerdict) -> Color {
    match v {
        InstanceVerdict::OomLeak | InstanceVerdict::MemoryExhaustionSuspected => Color::Red,
        InstanceVerdict::OomSpike | InstanceVerdict::Oom => Color::Magenta,
        InstanceVerdict::CrashOther => Color::Yellow,
        InstanceVerdict::NotACrash => Color::Green,
        InstanceVerdict::Unknown => Color::Grey,
    }
}

fn cell(text: impl ToString, color: Option<Color>) -> Cell {
    match color {
        Some(c) => Cell::new(text).fg(c),
        None => Cell::new(text),
    }
}

fn fmt_opt(v: Option<f64>, suffix: &str) -> String {
    v.map(|x| format!("{x:+.2}{suffix}"))
        .unwrap_or_else(|| "-".into())
}

fn fmt_hours(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1} h")).unwrap_or_else(|| "-".into())
}

fn top_signature(f: &DeploymentFinding) -> String {
    f.evidence
        .signatures
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse((*id).clone())))
        .map(|(id, n)| format!("{id} ×{n}"))
        .unwrap_or_else(|| "-".into())
}

fn memory_deaths(f: &DeploymentFinding) -> usize {
    InstanceVerdict::ALL
        .iter()
        .filter(|v| v.is_memory_death())
        .map(|v| f.evidence.counts.get(v.as_str()).copied().unwrap_or(0))
        .sum()
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(160);
    t
}

fn headline(r: &ScanReport) -> String {
    let s = &r.summary;
    format!(
        "window {} → {}: {} terminations, {} analysed, {} already known, {} pending, {} skipped record(s)",
        r.window.start.format("%Y-%m-%d %H:%M"),
        r.window.end.format("%Y-%m-%d %H:%M UTC"),
        s.discovered,
        s.analysed,
        s.cached,
        s.pending.len(),
        s.skipped_records
    )
}

fn scan_table(r: &ScanReport, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "epitaph scan — {}\n", headline(r));
    if let Some(b) = targets_banner(r) {
        let _ = writeln!(out, "{b}\n");
    }
    input_problems(&mut out, r, "");

    let mut t = new_table();
    t.set_header([
        "deployment",
        "verdict",
        "instances",
        "memory deaths",
        "floor growth/h",
        "median lifetime",
        "top signature",
    ]);
    for f in &r.deployments {
        t.add_row(vec![
            Cell::new(&f.deployment),
            cell(f.verdict, color.then(|| deployment_color(f.verdict))),
            Cell::new(f.evidence.instances.len()),
            Cell::new(memory_deaths(f)),
            Cell::new(fmt_opt(f.evidence.median_growth_per_hour, "")),
            Cell::new(fmt_hours(f.evidence.median_lifetime_hours)),
            Cell::new(top_signature(f)),
        ]);
    }
    let _ = writeln!(out, "DEPLOYMENTS\n{t}\n");

    for f in r
        .deployments
        .iter()
        .filter(|f| f.verdict != DeploymentVerdict::Healthy)
    {
        let _ = writeln!(out, "  {} is {}: {}.", f.deployment, f.verdict, f.summary);
        if let Some(o) = &f.origin {
            let _ = writeln!(out, "    origin: {}.", o.summary);
        }
    }
    out.push('\n');

    if !r.next_deaths.is_empty() {
        let mut t = new_table();
        t.set_header(NEXT_DEATH_COLUMNS);
        for p in r.next_deaths.iter().take(MAX_INSTANCE_ROWS) {
            t.add_row(next_death_row(p, r.window.end));
        }
        let _ = writeln!(
            out,
            "NEXT EXPECTED DEATHS (running instances whose memory is projected to reach the limit)\n{t}\n"
        );
    }

    let mut t = new_table();
    t.set_header([
        "instance",
        "deployment",
        "terminated",
        "cause",
        "verdict",
        "signature",
        "floor growth/h",
    ]);
    for i in sorted_instances(&r.instances)
        .into_iter()
        .take(MAX_INSTANCE_ROWS)
    {
        t.add_row(vec![
            Cell::new(&i.instance_id),
            Cell::new(&i.deployment),
            Cell::new(i.terminated_at.format("%m-%d %H:%M")),
            Cell::new(i.cause),
            cell(i.verdict, color.then(|| instance_color(i.verdict))),
            Cell::new(
                crate::model::deciding_signature(&i.signatures, i.verdict)
                    .map(|m| m.signature.as_str())
                    .unwrap_or("-"),
            ),
            Cell::new(fmt_opt(i.leak.as_ref().and_then(|l| l.growth_per_hour), "")),
        ]);
    }
    let _ = writeln!(out, "INSTANCES\n{t}");
    if r.instances.len() > MAX_INSTANCE_ROWS {
        let _ = writeln!(
            out,
            "  … and {} more (use --format json for all)",
            r.instances.len() - MAX_INSTANCE_ROWS
        );
    }
    problems(&mut out, r, "  ");
    out
}

/// The targets a scan could not read, named first: the report covers only the others.
pub fn targets_banner(r: &ScanReport) -> Option<String> {
    let failed: Vec<_> = r
        .summary
        .targets
        .iter()
        .filter(|t| t.status == crate::sinks::scan_report::TargetState::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let mut out = format!(
        "TARGETS NOT READ — {} of {} target(s) could not be read; this report covers the others. Their windows are read again next run:",
        failed.len(),
        r.summary.targets.len()
    );
    for t in failed {
        let _ = write!(
            out,
            "\n  {}: {} (unread since {})",
            t.target,
            t.error.as_deref().unwrap_or("?"),
            t.read_since.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Some(out)
}

/// Crashes first (worst verdict), then newest.
fn sorted_instances(list: &[InstanceSummary]) -> Vec<&InstanceSummary> {
    let mut v: Vec<&InstanceSummary> = list.iter().collect();
    v.sort_by(|a, b| {
        a.verdict
            .cmp(&b.verdict)
            .then(b.terminated_at.cmp(&a.terminated_at))
    });
    v
}

fn problems(out: &mut String, r: &ScanReport, indent: &str) {
    let s = &r.summary;
    for c in &s.coverage.collapsed {
        let _ = writeln!(
            out,
            "\n{indent}EVIDENCE COLLAPSED — {c}. Verdicts that need this evidence are not to be trusted."
        );
    }
    if !s.unrecognised_causes.is_empty() {
        let _ = writeln!(
            out,
            "\n{indent}termination causes not recognised (counted as unknown):"
        );
        for (cause, n) in &s.unrecognised_causes {
            let _ = writeln!(out, "{indent}  {n} × {cause}");
        }
    }
    let ew = &s.early_warning;
    if ew.errors > 0 || ew.over_cap > 0 || (ew.candidates > 0 && ew.no_series == ew.candidates) {
        let _ = writeln!(
            out,
            "\n{indent}EARLY WARNING INCOMPLETE — of {} running instance(s) in scope ({}): {} projected, {} not leaking, {} without a memory series, {} failed to fetch, {} over the cap (analysis.early_warning_max_instances).",
            ew.candidates, ew.scope, ew.projected, ew.not_leaking, ew.no_series, ew.errors, ew.over_cap
        );
        for e in &ew.error_samples {
            let _ = writeln!(out, "{indent}  {e}");
        }
    }
    if let Some(note) = s.coverage.attribution_note() {
        let _ = writeln!(out, "\n{indent}UNATTRIBUTED — {note}.");
    }
    if s.alerts_failed > 0 || s.alerts_undelivered > 0 {
        let _ = writeln!(
            out,
            "\n{indent}ALERTS NOT DELIVERED — {} failed for good (a 4xx, or every attempt spent), {} waiting in the outbox for the next run.",
            s.alerts_failed, s.alerts_undelivered
        );
    }
    if !s.pending.is_empty() {
        let _ = writeln!(
            out,
            "\n{indent}{} instance(s) could not be fetched and stay pending for the next run:",
            s.pending.len()
        );
        for p in s.pending.iter().take(20) {
            let _ = writeln!(out, "{indent}  {}: {}", p.instance_id, p.error);
        }
    }
    if s.skipped_records > 0 {
        let _ = writeln!(
            out,
            "\n{indent}{} record(s) skipped for bad content, by input and kind:",
            s.skipped_records
        );
        for g in s.skipped_by_input.iter().take(MAX_SKIP_ROWS) {
            let _ = writeln!(out, "{indent}  {:>6} × {} — {}", g.count, g.kind, g.input);
        }
        if s.skipped_by_input.len() > MAX_SKIP_ROWS {
            let _ = writeln!(
                out,
                "{indent}  … and {} more (use --format json for all)",
                s.skipped_by_input.len() - MAX_SKIP_ROWS
            );
        }
    }
}

/// Rows of skipped-record counts the table report shows (JSON has them all).
const MAX_SKIP_ROWS: usize = 10;

/// Whole inputs refused or truncated: one line each, at the top of the report (before any
/// verdict they may have changed), never among the skipped records.
fn input_problems(out: &mut String, r: &ScanReport, indent: &str) {
    let s = &r.summary;
    if !s.input_errors.is_empty() {
        let _ = writeln!(
            out,
            "{indent}UNREADABLE INPUTS — not used; verdicts may lack their evidence (this window will be scanned again):"
        );
        for e in &s.input_errors {
            let _ = writeln!(out, "{indent}  {e}");
        }
        out.push('\n');
    }
    if !s.input_warnings.is_empty() {
        let _ = writeln!(
            out,
            "{indent}TRUNCATED INPUTS — read, but incomplete (this window will be scanned again):"
        );
        for w in &s.input_warnings {
            let _ = writeln!(out, "{indent}  {w}");
        }
        out.push('\n');
    }
}

const NEXT_DEATH_COLUMNS: [&str; 7] = [
    "instance",
    "deployment",
    "expected",
    "interval",
    "in",
    "now / death level",
    "floor growth/h",
];

/// One row of the next-expected-deaths table; times relative to `as_of` (the window's end).
fn next_death_row(p: &ProjectedDeath, as_of: DateTime<Utc>) -> Vec<String> {
    let hours = |t: DateTime<Utc>| (t - as_of).num_seconds().max(0) as f64 / 3600.0;
    vec![
        p.instance_id.clone(),
        p.deployment.clone(),
        p.expected.format("%Y-%m-%d %H:%M").to_string(),
        format!(
            "{} – {}",
            p.earliest.format("%m-%d %H:%M"),
            p.latest
                .map_or("open".to_string(), |l| l.format("%m-%d %H:%M").to_string())
        ),
        fmt_hours(Some(hours(p.expected))),
        format!(
            "{} / {}",
            crate::sinks::alert::fmt_value(p.floor + p.swing, &p.unit),
            crate::sinks::alert::fmt_value(p.threshold, &p.unit)
        ),
        crate::sinks::alert::fmt_growth(p.growth_per_hour, &p.unit),
    ]
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn scan_markdown(r: &ScanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# epitaph scan\n\n{}\n", headline(r));
    if let Some(b) = targets_banner(r) {
        let _ = writeln!(out, "> **{}**\n", md_escape(&b).replace('\n', "<br>"));
    }
    input_problems(&mut out, r, "");
    let _ = writeln!(out, "## Deployments\n");
    let _ = writeln!(out, "| deployment | verdict | instances | memory deaths | floor growth/h | median lifetime | top signature | summary |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|---|");
    for f in &r.deployments {
        let _ = writeln!(
            out,
            "| {} | **{}** | {} | {} | {} | {} | {} | {} |",
            md_escape(&f.deployment),
            f.verdict,
            f.evidence.instances.len(),
            memory_deaths(f),
            fmt_opt(f.evidence.median_growth_per_hour, ""),
            fmt_hours(f.evidence.median_lifetime_hours),
            md_escape(&top_signature(f)),
            md_escape(&match &f.origin {
                Some(o) => format!("{} Origin: {}.", f.summary, o.summary),
                None => f.summary.clone(),
            })
        );
    }
    if !r.next_deaths.is_empty() {
        let _ = writeln!(
            out,
            "\n## Next expected deaths\n\nRunning instances whose memory is projected to reach the limit.\n"
        );
        let _ = writeln!(out, "| {} |", NEXT_DEATH_COLUMNS.join(" | "));
        let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|");
        for p in r.next_deaths.iter().take(MAX_INSTANCE_ROWS) {
            let row: Vec<String> = next_death_row(p, r.window.end)
                .iter()
                .map(|c| md_escape(c))
                .collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    }
    let _ = writeln!(out, "\n## Instances\n");
    let _ = writeln!(
        out,
        "| instance | deployment | terminated | cause | verdict | signature | floor growth/h |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---:|");
    for i in sorted_instances(&r.instances)
        .into_iter()
        .take(MAX_INSTANCE_ROWS)
    {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            i.instance_id,
            md_escape(&i.deployment),
            i.terminated_at.format("%Y-%m-%d %H:%M"),
            i.cause,
            i.verdict,
            crate::model::deciding_signature(&i.signatures, i.verdict)
                .map(|m| m.signature.as_str())
                .unwrap_or("-"),
            fmt_opt(i.leak.as_ref().and_then(|l| l.growth_per_hour), "")
        );
    }
    problems(&mut out, r, "");
    out
}

/// A sparkline of the values, bucketed to `width` characters (each bucket shows its maximum).
pub fn sparkline(values: &[f64], width: usize, limit: Option<f64>) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let hi = limit.unwrap_or_else(|| values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let span = (hi - lo).max(f64::EPSILON);
    let buckets = width.min(values.len());
    (0..buckets)
        .map(|b| {
            let from = b * values.len() / buckets;
            let to = ((b + 1) * values.len() / buckets).max(from + 1);
            let v = values[from..to]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let idx = (((v - lo) / span) * (SPARK.len() - 1) as f64)
                .round()
                .clamp(0.0, (SPARK.len() - 1) as f64);
            SPARK[idx as usize]
        })
        .collect()
}

fn investigation_text(inv: &Investigation, markdown: bool, color: bool) -> String {
    let mut out = String::new();
    match inv {
        Investigation::NoTermination {
            instance_id,
            in_service,
            asg,
            memory,
            leak,
        } => {
            if *in_service {
                let _ = writeln!(
                    out,
                    "{instance_id}: in service in {} (listed by the inventory now); no termination in the activity history.",
                    asg.as_deref().unwrap_or("an Auto Scaling group")
                );
            } else {
                let _ = writeln!(out, "{instance_id}: not in any group's inventory now and no termination in the activity history (terminated before the history, or not behind a group); only its memory series is known.");
            }
            if let Some(m) = memory {
                let values: Vec<f64> = m.points.iter().map(|p| p.1).collect();
                let _ = writeln!(
                    out,
                    "memory  {}",
                    sparkline(&values, SPARKLINE_WIDTH, m.limit)
                );
            }
            match leak {
                Some(l) => {
                    let _ = writeln!(
                        out,
                        "trend   {} ({}), growth {}",
                        l.verdict.as_str(),
                        l.reason,
                        fmt_opt(l.growth_per_hour, "/h")
                    );
                    if let Some(p) = l.projected_exhaustion {
                        let _ = writeln!(
                            out,
                            "        projected to reach the limit at {}",
                            p.to_rfc3339()
                        );
                    }
                }
                None => {
                    let _ = writeln!(out, "trend   no memory series in the metrics backend");
                }
            }
        }
        Investigation::Terminated {
            from,
            report,
            next_steps,
        } => instance_text(&mut out, report, next_steps, from, markdown, color),
    }
    out
}

fn instance_text(
    out: &mut String,
    r: &InstanceReport,
    next_steps: &[String],
    from: &str,
    markdown: bool,
    color: bool,
) {
    let (h, pre_open, pre_close) = if markdown {
        ("## ", "```text\n", "```\n")
    } else {
        ("", "", "")
    };
    let verdict = if color {
        let code = match instance_color(r.verdict) {
            Color::Red => "31",
            Color::Magenta => "35",
            Color::Yellow => "33",
            Color::Green => "32",
            _ => "90",
        };
        format!("\x1b[1;{code}m{}\x1b[0m", r.verdict)
    } else {
        r.verdict.to_string()
    };
    let _ = writeln!(out, "{h}{} — {verdict}", r.instance_id);
    let _ = writeln!(out, "{}\n", r.explanation);
    let _ = writeln!(
        out,
        "{pre_open}deployment   {} (group {})",
        r.deployment, r.asg
    );
    let _ = writeln!(
        out,
        "terminated   {}  cause {}",
        r.terminated_at.to_rfc3339(),
        r.cause
    );
    let _ = writeln!(out, "cause text   {}", r.cause_text);
    if let Some(l) = r.launch_time {
        let _ = writeln!(
            out,
            "launched     {}  (lifetime {})",
            l.to_rfc3339(),
            fmt_hours(r.lifetime_hours())
        );
    }
    let values: Vec<f64> = r.memory.points.iter().map(|p| p.1).collect();
    if values.is_empty() {
        let _ = writeln!(out, "memory       no series");
    } else {
        let _ = writeln!(
            out,
            "memory       {}  {:.1} → {:.1}{}",
            sparkline(&values, SPARKLINE_WIDTH, r.memory.limit),
            values[0],
            values[values.len() - 1],
            r.memory
                .limit
                .map(|l| format!(" (limit {l})"))
                .unwrap_or_default()
        );
    }
    if let Some(l) = &r.leak {
        let _ = writeln!(
            out,
            "leak         {}: {} (confidence {:.2})",
            l.verdict.as_str(),
            l.reason,
            l.confidence
        );
        if let Some(p) = l.projected_exhaustion {
            let _ = writeln!(
                out,
                "             trend reaches the limit at {}",
                p.to_rfc3339()
            );
        }
    }
    let _ = writeln!(
        out,
        "source       {from}{}",
        if markdown { "\n```" } else { "" }
    );
    out.push('\n');
    if r.last_words.events.is_empty() {
        let _ = writeln!(out, "{h}Last words\n\nnone: the log backend has nothing from this instance (no evidence, not an error)");
    } else {
        let _ = writeln!(
            out,
            "{h}Last words ({} line(s) up to {}{})\n",
            r.last_words.events.len(),
            r.last_words
                .last_event_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            if r.last_words.truncated {
                ", truncated at the byte cap"
            } else {
                ""
            }
        );
        out.push_str(pre_open);
        for (i, e) in r.last_words.events.iter().enumerate() {
            let m = r.signatures.iter().find(|m| m.line == i);
            let mark = if m.is_some() { ">>" } else { "  " };
            let tag = m
                .map(|m| format!("   [{} {}]", m.signature, m.kind.as_str()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{mark} {}  {}{tag}",
                e.timestamp.format("%H:%M:%S%.3f"),
                e.message
            );
        }
        out.push_str(pre_close);
    }
    if !next_steps.is_empty() {
        let _ = writeln!(out, "\n{h}Next steps\n");
        for s in next_steps {
            let _ = writeln!(out, "- {s}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_not_read_is_named_above_the_report() {
        use crate::sinks::scan_report::{ScanSummary, TargetState, TargetStatus};
        let at = |h: i64| chrono::DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap();
        let status = |target: &str, error: Option<&str>| TargetStatus {
            target: target.into(),
            status: if error.is_some() {
                TargetState::Failed
            } else {
                TargetState::Ok
            },
            read_since: at(0),
            error: error.map(str::to_string),
        };
        let mut report = ScanReport {
            schema_version: 1,
            window: crate::model::TimeWindow {
                start: at(0),
                end: at(3),
            },
            instances: Vec::new(),
            deployments: Vec::new(),
            next_deaths: Vec::new(),
            summary: ScanSummary {
                targets: vec![
                    status("us-east-1", None),
                    status(
                        "arn:aws:iam::123456789012:role/epitaph-read@us-west-2",
                        Some("DescribeAutoScalingGroups: AccessDenied: not authorized"),
                    ),
                ],
                ..ScanSummary::default()
            },
        };
        for format in [Format::Table, Format::Markdown] {
            let text = render_scan(&report, format, false);
            let banner = text.find("TARGETS NOT READ — 1 of 2").expect(&text);
            let table = text.to_lowercase().find("deployments").unwrap();
            assert!(banner < table, "first: {text}");
            assert!(
                text.contains(
                    "role/epitaph-read@us-west-2: DescribeAutoScalingGroups: AccessDenied"
                ),
                "{text}"
            );
            assert!(
                !text.contains("us-east-1:"),
                "a target read is not named: {text}"
            );
        }
        report.summary.targets.truncate(1);
        assert!(!render_scan(&report, Format::Table, false).contains("TARGETS NOT READ"));
    }

    #[test]
    fn sparkline_scales_to_limit() {
        let s = sparkline(&[0.0, 50.0, 100.0], 3, Some(100.0));
        assert_eq!(s, "▁▅█");
        assert_eq!(sparkline(&[], 10, None), "");
        assert_eq!(sparkline(&[1.0; 500], 60, Some(100.0)).chars().count(), 60);
    }
}
