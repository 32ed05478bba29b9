//! The scan pipeline: the one place that wires sources → analysis → store for a scan, and for
//! the on-demand investigation of one instance.
//!
//! A scan: pick the window (flag, else the store's watermark, else config) → record the
//! inventory → list terminations (plus pending retries) → skip instances already analysed
//! (unless `--refresh`) → in batches, fetch memory series (one batched call) and last words
//! (bounded concurrency, each with a timeout) → analyse (pure) → persist → judge every
//! deployment with deaths in the finding lookback → decide alert transitions and enqueue
//! them in the store's outbox (atomically, once per transition) → record the run. Delivery
//! of the outbox is separate ([`Pipeline::deliver_alerts`]). A failed fetch leaves the instance
//! pending for the next run; bad records are skipped and counted; nothing fails the whole scan
//! but an unusable store or configuration.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use crate::analysis::alerting::{self, AlertPolicy, AlertState, Standing};
use crate::analysis::correlate::{
    judge_deployments, judge_instance, live_deployment, resolve_deployment,
};
use crate::analysis::early_warning::{self, EarlyWarningScope, EarlyWarningSummary, NoProjection};
use crate::analysis::leak;
use crate::analysis::signatures::SignatureLibrary;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{
    DeploymentFinding, InstanceInfo, InstanceReport, LastWords, MemorySeries, ProjectedDeath,
    Termination, TimeWindow,
};
use crate::sinks::alert::{self as alert_msg, AlertInput, LinkConfig};
use crate::sinks::bundle;
use crate::sinks::deliver::{Deliverer, DeliveryStats};
use crate::sinks::redact::Redactor;
pub use crate::sinks::scan_report::{
    InstanceSummary, Investigation, PendingInstance, ScanReport, ScanSummary, TargetState,
    TargetStatus,
};
use crate::sources::{LastWordsQuery, SeriesQuery, Skipped, Sources};
use crate::store::{AlertChange, OutboxMessage, RunRecord, Store};

/// Version of the scan JSON schema (README, "JSON schema"). Bumped on breaking changes only.
pub const SCHEMA_VERSION: u32 = 1;
/// Instances per metrics request and per store transaction (CloudWatch takes 500 queries).
pub const BATCH_SIZE: usize = 500;
/// Memory points kept per instance in the store and reports (the analysis uses all of them).
pub const MAX_STORED_POINTS: usize = 288;
/// At most this many input problems are listed in a summary (the counts are exact).
pub const MAX_LISTED_PROBLEMS: usize = 50;
/// Times an alert commit is retried after losing a race with another writer (a replica).
pub const MAX_ALERT_COMMIT_ATTEMPTS: usize = 5;
/// Show a progress bar when a scan has at least this many instances to fetch (and stderr is a TTY).
pub const PROGRESS_BAR_MIN_INSTANCES: usize = 50;

/// What the caller asks of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Re-fetch and re-analyse instances already in the store.
    pub refresh: bool,
    /// Allow a progress bar on stderr (shown only on a TTY).
    pub progress: bool,
    /// A truncated input (an export with a pagination token left in it) is an input error,
    /// not a warning (`--strict`).
    pub strict: bool,
}

/// What the caller asks of an export (`epitaph export`).
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Window start; default `scan.since` (never the store's watermark).
    pub since: Option<DateTime<Utc>>,
    /// Window end; default `scan.until`, else now.
    pub until: Option<DateTime<Utc>>,
    /// The bundle's folder (created; an existing one must be empty).
    pub out: std::path::PathBuf,
}

/// A target's unread window reaches back at most this far: Auto Scaling keeps six weeks of
/// activity history, so nothing older can be read again.
pub const MAX_TARGET_BACKLOG: chrono::Duration = chrono::Duration::days(42);

/// Each target's standing in a scan: `failed` with its (first) error when a source could not
/// read it, else `ok`; read from its earlier start when it had one, else `start`.
fn target_statuses(
    targets: &[String],
    failures: &[crate::sources::TargetFailure],
    earlier: &BTreeMap<String, DateTime<Utc>>,
    start: DateTime<Utc>,
) -> Vec<TargetStatus> {
    targets
        .iter()
        .map(|name| {
            let error = failures
                .iter()
                .find(|f| &f.target == name)
                .map(|f| f.error.clone());
            TargetStatus {
                target: name.clone(),
                status: if error.is_some() {
                    TargetState::Failed
                } else {
                    TargetState::Ok
                },
                read_since: earlier.get(name).copied().unwrap_or(start).min(start),
                error,
            }
        })
        .collect()
}

pub struct Pipeline {
    cfg: Config,
    sources: Sources,
    store: Arc<dyn Store>,
    signatures: Arc<SignatureLibrary>,
    redactor: Arc<Redactor>,
    deliverer: Option<std::result::Result<Deliverer, String>>,
}

/// One instance's evidence as fetched: its memory series and its last words, each or its error.
type Evidence = (
    std::result::Result<Option<MemorySeries>, String>,
    std::result::Result<LastWords, String>,
);

/// The outcome of fetching one instance.
enum Fetched {
    Done(Box<InstanceReport>),
    Failed(Box<Termination>, String),
}

/// What the event intake's analysis of one termination came to.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAnalysis {
    /// Analysed now, and stored.
    Stored,
    /// Analysed before (by a scan, or an earlier delivery of the same event): left alone.
    AlreadyKnown,
    /// Its evidence could not be fetched; kept pending, so the next scan retries it too.
    Failed(String),
}

impl Pipeline {
    pub fn new(
        cfg: Config,
        sources: Sources,
        store: Arc<dyn Store>,
        signatures: Arc<SignatureLibrary>,
    ) -> Self {
        // The patterns were validated with the config; an invalid one cannot reach here.
        let redactor = Arc::new(Redactor::new(&cfg.alerts.redact_patterns).unwrap_or_default());
        // A client that cannot be built is reported by every delivery attempt, never ignored.
        let deliverer = match Deliverer::new(&cfg.alerts, store.clone()) {
            Ok(d) if d.has_sinks() => Some(Ok(d)),
            Ok(_) => None,
            Err(e) => Some(Err(e.to_string())),
        };
        Pipeline {
            cfg,
            sources,
            store,
            signatures,
            redactor,
            deliverer,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The HTML report of the stored findings and the instances behind them, as of the end of
    /// `window` (or now): every deployment with deaths in the finding lookback.
    pub async fn html_report(&self, window: Option<TimeWindow>) -> Result<String> {
        // As of the scanned data: the window given, else the last complete run's end.
        let end = match window {
            Some(w) => w.end,
            None => self.store.watermark().await?.unwrap_or_else(Utc::now),
        };
        let lookback = TimeWindow {
            start: end - self.cfg.finding_lookback(),
            end: end + chrono::Duration::seconds(1),
        };
        let findings = self.store.findings().await?;
        let reports = self.store.instances_in(lookback).await?;
        let next_deaths = self.store.projections().await?;
        let heap_diffs = self.store.heap_diffs().await?;
        let unread_targets = self.store.target_backlog().await?;
        Ok(crate::sinks::html::render(
            &findings,
            &reports,
            &crate::sinks::html::HtmlContext {
                generated_at: Utc::now(),
                window,
                unit: &self.cfg.sources.metrics.unit,
                redactor: &self.redactor,
                next_deaths: &next_deaths,
                signatures: Some(&self.signatures),
                heap_diffs: &heap_diffs,
                unread_targets: &unread_targets,
            },
        ))
    }

    /// Delivers due outbox messages until none is due or `deadline` passes. Without
    /// configured sinks there is nothing to deliver.
    /// Outbox messages not yet delivered (pending or being sent), from this run or earlier.
    pub async fn undelivered_alerts(&self) -> Result<u64> {
        let counts = self.store.outbox_counts().await?;
        Ok(counts
            .iter()
            .filter(|(status, _)| !matches!(status.as_str(), "delivered" | "failed"))
            .map(|(_, n)| n)
            .sum())
    }

    pub async fn deliver_alerts(&self, deadline: Option<Instant>) -> Result<DeliveryStats> {
        match &self.deliverer {
            Some(Ok(d)) => d.deliver_due(deadline).await,
            Some(Err(e)) => Err(Error::Config(vec![e.clone()])),
            None => Ok(DeliveryStats::default()),
        }
    }

    /// Opens everything a config describes: checks input paths, compiles the signature library
    /// (built in, plus `signatures.extra`), builds the sources and opens the state store.
    pub async fn open(cfg: Config) -> Result<Self> {
        let problems = cfg.filesystem_problems();
        if !problems.is_empty() {
            return Err(Error::Config(
                problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", cfg.origin))
                    .collect(),
            ));
        }
        let signatures = Arc::new(load_signatures(&cfg)?);
        let sources = Sources::from_config(&cfg).await?;
        let store = crate::store::open(&cfg).await?;
        Ok(Pipeline::new(cfg, sources, store, signatures))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn signatures(&self) -> &SignatureLibrary {
        &self.signatures
    }

    /// The window a scan covers.
    pub async fn window(&self, opts: &ScanOptions, now: DateTime<Utc>) -> Result<TimeWindow> {
        let until = match (opts.until, &self.cfg.scan.until) {
            (Some(u), _) => u,
            (None, Some(s)) => crate::timefmt::parse_since(s, now)
                .map_err(|e| Error::Config(vec![format!("scan.until: {e}")]))?,
            (None, None) => now,
        };
        let since = match opts.since {
            Some(s) => s,
            None => match self.store.watermark().await? {
                Some(w) => w - self.cfg.overlap(),
                None => crate::timefmt::parse_since(&self.cfg.scan.since, until)
                    .map_err(|e| Error::Config(vec![format!("scan.since: {e}")]))?,
            },
        };
        if since >= until {
            return Err(Error::input(
                "--since",
                format!("window start {since} is not before its end {until}"),
            ));
        }
        Ok(TimeWindow {
            start: since,
            end: until,
        })
    }

    /// The inventory, outside a scan: its problems (files refused or truncated) are logged, as
    /// a scan would report them.
    async fn inventory_logged(&self) -> Result<Vec<crate::model::InstanceInfo>> {
        let inventory = self.sources.activities.inventory().await?;
        let problems = self.sources.activities.inventory_problems();
        for e in problems.errors.iter().chain(&problems.warnings) {
            tracing::warn!("inventory: {e}");
        }
        Ok(inventory)
    }

    /// Runs one scan.
    pub async fn scan(&self, opts: &ScanOptions) -> Result<ScanReport> {
        let clock = Instant::now();
        let started_at = Utc::now();
        let window = self.window(opts, started_at).await?;
        tracing::info!(start = %window.start, end = %window.end, "scan started");
        let mut summary = ScanSummary::default();
        self.sources.begin_scan();
        // The sources count calls over their lifetime (a service runs many scans): this scan's
        // calls are the difference.
        let calls_before = self.sources.calls();

        let inventory = self.sources.activities.inventory().await?;
        self.store.save_inventory(&inventory).await?;
        let mut problems = self.sources.activities.inventory_problems();

        // Targets an earlier run could not read are read from where their unread window
        // starts (at most six weeks back); the others from the window's start.
        let backlog = self.store.target_backlog().await?;
        let oldest = window.end - MAX_TARGET_BACKLOG;
        let earlier: BTreeMap<String, DateTime<Utc>> = backlog
            .iter()
            .map(|(t, u)| (t.clone(), u.since.max(oldest)))
            .filter(|(_, since)| *since < window.start)
            .collect();
        let batch = self
            .sources
            .activities
            .terminations_since(window, &earlier)
            .await?;
        summary.discovered = batch.terminations.len();
        for t in batch
            .terminations
            .iter()
            .filter(|t| t.cause == crate::model::CauseCategory::Unknown)
        {
            let key = crate::analysis::cause::cause_template(&t.cause_text);
            if summary.unrecognised_causes.len() < MAX_LISTED_PROBLEMS
                || summary.unrecognised_causes.contains_key(&key)
            {
                *summary.unrecognised_causes.entry(key).or_insert(0) += 1;
            }
        }
        problems.errors.extend(batch.errors.iter().cloned());
        problems.warnings.extend(batch.warnings.iter().cloned());
        problems
            .failed_targets
            .extend(batch.failed_targets.iter().cloned());
        summary.targets = target_statuses(
            &self.sources.activities.targets(),
            &problems.failed_targets,
            &earlier,
            window.start,
        );
        for t in summary
            .targets
            .iter()
            .filter(|t| t.status == TargetState::Failed)
        {
            tracing::warn!(target = %t.target, error = t.error.as_deref().unwrap_or(""), "target could not be read; its window is read again next run");
        }
        // The window's instances, and those of targets read from further back.
        let read_start = earlier.values().copied().fold(window.start, DateTime::min);
        let mut skipped_records = batch.skipped.len();
        let mut skipped = batch.skipped.clone();
        // Every skipped record by input and kind (the activities' here, the others' later).
        let mut groups = crate::sources::SkipGroups::default();
        for k in &batch.skipped {
            groups.add(&k.location, &k.reason, 1);
        }

        let terminated: BTreeSet<String> = batch
            .terminations
            .iter()
            .map(|t| t.instance_id.clone())
            .collect();
        // Decide what to fetch: new terminations (or all with --refresh) and pending retries.
        let ids: Vec<String> = batch
            .terminations
            .iter()
            .map(|t| t.instance_id.clone())
            .collect();
        let known = if opts.refresh {
            Default::default()
        } else {
            self.store.analysed_ids(&ids).await?
        };
        summary.cached = known.len();
        let mut todo: Vec<Termination> = batch
            .terminations
            .into_iter()
            .filter(|t| !known.contains(&t.instance_id))
            .collect();
        let in_todo: BTreeSet<String> = todo.iter().map(|t| t.instance_id.clone()).collect();
        for p in self.store.pending().await? {
            if !in_todo.contains(&p.termination.instance_id) {
                summary.retried += 1;
                todo.push(p.termination);
            }
        }

        let bar = progress_bar(opts.progress, todo.len());
        let mut coverage = crate::analysis::coverage::Coverage::default();
        for chunk in todo.chunks(BATCH_SIZE) {
            let fetched = self.fetch_chunk(chunk).await?;
            let mut reports = Vec::with_capacity(fetched.len());
            for f in fetched {
                match f {
                    Fetched::Done(r) => reports.push(*r),
                    Fetched::Failed(t, error) => {
                        tracing::warn!(instance_id = %t.instance_id, %error, "fetch failed; kept pending");
                        self.store.save_pending(&t, &error).await?;
                        summary.pending.push(PendingInstance {
                            instance_id: t.instance_id.clone(),
                            error,
                        });
                    }
                }
            }
            summary.analysed += reports.len();
            reports.iter().for_each(|r| coverage.add(r));
            self.store.save_instances(&reports).await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        summary.coverage = coverage.finish();
        for c in &summary.coverage.collapsed {
            tracing::warn!("evidence collapsed: {c}");
        }

        for (count, list) in [self.sources.logs.skipped(), self.sources.metrics.skipped()] {
            skipped_records += count;
            skipped.extend(list);
        }
        for g in self
            .sources
            .logs
            .skipped_by_input()
            .into_iter()
            .chain(self.sources.metrics.skipped_by_input())
        {
            groups.add_group(g);
        }
        summary.skipped_by_input = groups.rows();
        summary.skipped_by_input.truncate(MAX_LISTED_PROBLEMS);
        summary.skipped_records = skipped_records;
        skipped.truncate(MAX_LISTED_PROBLEMS);
        summary.skipped = skipped;

        // Report the window's instances, and the standing of every deployment with deaths in
        // the finding lookback (not only those touched now: a quiet window changes no verdict).
        // The lookback contains the window, so one read serves both.
        let lookback = TimeWindow {
            start: read_start.min(window.end - self.cfg.finding_lookback()),
            end: window.end,
        };
        let history = self.store.instances_in(lookback).await?;
        let reports: Vec<&InstanceReport> = history
            .iter()
            .filter(|r| window.contains(r.terminated_at) || terminated.contains(&r.instance_id))
            .collect();
        let findings = judge_deployments(&history, self.cfg.finding_policy());
        self.store.save_findings(&findings).await?;
        let (next_deaths, early) = self
            .early_warning(&findings, &history, &inventory, &terminated, window.end)
            .await?;
        self.store.replace_projections(&next_deaths).await?;
        summary.early_warning = early;
        summary.alerts_enqueued = self
            .enqueue_alerts(&findings, &history, &inventory, &next_deaths, window.end)
            .await?;

        for r in &reports {
            *summary
                .verdicts
                .entry(r.verdict.as_str().to_string())
                .or_insert(0) += 1;
        }
        for f in &findings {
            *summary
                .deployment_verdicts
                .entry(f.verdict.as_str().to_string())
                .or_insert(0) += 1;
        }
        // Whole files refused or truncated, as of this scan's reads (a log or metrics index is
        // built when an instance is first fetched from it, early warning's series included).
        problems.extend(self.sources.logs.input_problems());
        problems.extend(self.sources.metrics.input_problems());
        if opts.strict {
            let truncated = std::mem::take(&mut problems.warnings);
            problems
                .errors
                .extend(truncated.into_iter().map(|w| format!("{w} [--strict]")));
        }
        summary.input_errors = problems.errors;
        summary.input_warnings = problems.warnings;
        summary.complete = summary.input_errors.is_empty()
            && summary.input_warnings.is_empty()
            && summary.pending.is_empty()
            && summary.targets.iter().all(|t| t.status == TargetState::Ok);
        summary.api_calls = self
            .sources
            .calls()
            .into_iter()
            .map(|(op, n)| {
                let d = n.saturating_sub(calls_before.get(&op).copied().unwrap_or(0));
                (op, d)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let fetched = summary.analysed + summary.pending.len();
        let total: u64 = summary.api_calls.values().sum();
        summary.api_calls_per_instance =
            (fetched > 0 && total > 0).then(|| total as f64 / fetched as f64);
        summary.duration_ms = clock.elapsed().as_millis() as u64;

        let report = ScanReport {
            schema_version: SCHEMA_VERSION,
            window,
            instances: reports.iter().map(|r| InstanceSummary::from(*r)).collect(),
            deployments: findings,
            next_deaths,
            summary,
        };
        self.store
            .record_run(&RunRecord {
                started_at,
                finished_at: Utc::now(),
                window,
                // Unreadable or truncated inputs may hide terminations: rescan this window
                // next time. A target that could not be read does not hold the others back:
                // the watermark advances, and the backlog names where its window starts.
                complete: report.summary.input_errors.is_empty()
                    && report.summary.input_warnings.is_empty(),
                summary: serde_json::to_value(&report.summary).unwrap_or_default(),
                target_backlog: report
                    .summary
                    .targets
                    .iter()
                    .filter(|t| t.status == TargetState::Failed)
                    .map(|t| {
                        let unread = crate::store::UnreadTarget {
                            since: t.read_since,
                            error: t.error.clone().unwrap_or_default(),
                        };
                        (t.target.clone(), unread)
                    })
                    .collect(),
            })
            .await?;
        tracing::info!(
            analysed = report.summary.analysed,
            cached = report.summary.cached,
            pending = report.summary.pending.len(),
            "scan finished"
        );
        Ok(report)
    }

    /// Writes an evidence bundle (`epitaph export`): the window's terminations, the inventory
    /// (as listed now, completed by what the store recorded for instances gone since), and for
    /// every terminated instance the last words and memory series a scan would analyse — the
    /// same queries as [`Pipeline::scan`] — in the folder layout the `file` backends read
    /// (`sinks::bundle`). Last words are masked like a scan's. Nothing is analysed or stored.
    /// Every part that could not be read or fetched is named in the manifest
    /// (`complete: false`); the caller makes that a non-zero exit.
    pub async fn export(&self, opts: &ExportOptions) -> Result<bundle::Manifest> {
        let now = Utc::now();
        let until = match (opts.until, &self.cfg.scan.until) {
            (Some(u), _) => u,
            (None, Some(s)) => crate::timefmt::parse_since(s, now)
                .map_err(|e| Error::Config(vec![format!("scan.until: {e}")]))?,
            (None, None) => now,
        };
        // An export's window never comes from the store's watermark: --since, else scan.since.
        let since = match opts.since {
            Some(s) => s,
            None => crate::timefmt::parse_since(&self.cfg.scan.since, until)
                .map_err(|e| Error::Config(vec![format!("scan.since: {e}")]))?,
        };
        let window = self
            .window(
                &ScanOptions {
                    since: Some(since),
                    until: Some(until),
                    ..Default::default()
                },
                now,
            )
            .await?;
        tracing::info!(start = %window.start, end = %window.end, out = %opts.out.display(), "export started");
        self.sources.begin_scan();
        let mut incomplete = Vec::new();
        let mut note = |source: &str, problems: crate::sources::InputProblems| {
            let targets = problems
                .failed_targets
                .into_iter()
                .map(|f| format!("{}: {}", f.target, f.error))
                .collect();
            for (kind, list) in [
                ("input_error", problems.errors),
                ("truncated", problems.warnings),
                ("target_failed", targets),
            ] {
                for detail in list {
                    incomplete.push(bundle::IncompletePart {
                        source: source.to_string(),
                        kind: kind.to_string(),
                        detail,
                    });
                }
            }
        };

        let listed = self.sources.activities.inventory().await?;
        note("inventory", self.sources.activities.inventory_problems());
        let batch = self.sources.activities.terminations(window).await?;
        note(
            "activities",
            crate::sources::InputProblems {
                errors: batch.errors.clone(),
                warnings: batch.warnings.clone(),
                failed_targets: batch.failed_targets.clone(),
            },
        );
        let ids: Vec<String> = batch
            .terminations
            .iter()
            .map(|t| t.instance_id.clone())
            .collect();
        // What the store recorded (instances EC2 has forgotten since), overridden by what is
        // listed now: the inventory a scan would use.
        let mut inventory = self.store.inventory(&ids).await?;
        for info in listed {
            inventory.insert(info.instance_id.clone(), info);
        }

        let mut last_words = BTreeMap::new();
        let mut series = BTreeMap::new();
        let (mut no_words, mut no_series) = (Vec::new(), Vec::new());
        let mut failed = Vec::new();
        for chunk in batch.terminations.chunks(BATCH_SIZE) {
            for (t, (s, w)) in chunk
                .iter()
                .zip(self.fetch_evidence(chunk, &inventory).await)
            {
                let id = t.instance_id.clone();
                match s {
                    Ok(Some(s)) if !s.points.is_empty() => {
                        series.insert(id.clone(), s);
                    }
                    Ok(_) => no_series.push(id.clone()),
                    Err(e) => failed.push(("metrics", format!("{id}: {e}"))),
                }
                match w {
                    Ok(w) if !w.events.is_empty() => {
                        last_words.insert(id, self.masked(w));
                    }
                    Ok(_) => no_words.push(id),
                    Err(e) => failed.push(("logs", format!("{id}: {e}"))),
                }
            }
        }
        note("logs", self.sources.logs.input_problems());
        note("metrics", self.sources.metrics.input_problems());
        for (source, detail) in failed {
            incomplete.push(bundle::IncompletePart {
                source: source.to_string(),
                kind: "fetch_failed".to_string(),
                detail,
            });
        }

        let extra = match &self.cfg.signatures.extra {
            Some(p) => {
                let p = self.cfg.resolve(p);
                Some(std::fs::read(&p).map_err(|e| Error::io(&p, e))?)
            }
            None => None,
        };
        let config_toml = bundle::config_toml(
            &self.cfg,
            window,
            extra.as_ref().map(|_| bundle::SIGNATURES_FILE),
        )?;
        let mut inventory: Vec<InstanceInfo> = inventory.into_values().collect();
        inventory.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let coverage = crate::analysis::coverage::Coverage {
            last_words: crate::analysis::coverage::SourceCoverage {
                with_evidence: last_words.len(),
                without: [(
                    crate::analysis::coverage::NO_LOG_EVENTS.to_string(),
                    no_words.len(),
                )]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            },
            memory: crate::analysis::coverage::SourceCoverage {
                with_evidence: series.len(),
                without: [(
                    crate::analysis::coverage::NO_SERIES.to_string(),
                    no_series.len(),
                )]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            },
            ..Default::default()
        }
        .finish();
        let manifest = bundle::Manifest {
            schema: bundle::BUNDLE_SCHEMA.to_string(),
            created_at: now,
            window,
            sources: bundle::BundleSources {
                activities: self.sources.activities.name(),
                logs: self.sources.logs.name(),
                metrics: self.sources.metrics.name(),
            },
            terminations: batch.terminations.len(),
            inventory_instances: inventory.len(),
            last_words: last_words.len(),
            memory_series: series.len(),
            no_last_words: no_words,
            no_memory_series: no_series,
            collapsed: coverage.collapsed,
            redacted: true,
            complete: incomplete.is_empty(),
            incomplete,
            files: Vec::new(),
        };
        for part in &manifest.incomplete {
            tracing::warn!(source = %part.source, kind = %part.kind, "export incomplete: {}", part.detail);
        }
        bundle::write(
            &opts.out,
            &bundle::BundleContents {
                terminations: &batch.terminations,
                inventory: &inventory,
                last_words: &last_words,
                series: &series,
                config_toml: &config_toml,
                signatures_extra: extra.as_deref(),
            },
            manifest,
        )
    }

    /// Last words with secrets masked, as a sequence (a private key logged over several lines
    /// is masked whole). Only the lines that changed are copied.
    fn masked(&self, mut words: LastWords) -> LastWords {
        let messages: Vec<&str> = words.events.iter().map(|e| e.message.as_str()).collect();
        let masked: Vec<Option<String>> = self
            .redactor
            .redact_lines(&messages)
            .into_iter()
            .map(|m| match m {
                Cow::Owned(m) => Some(m),
                Cow::Borrowed(_) => None,
            })
            .collect();
        for (e, m) in words.events.iter_mut().zip(masked) {
            if let Some(m) = m {
                e.message = m;
            }
        }
        words
    }

    /// Analyses terminations pushed by the event intake, outside a scan. Instances already
    /// analysed are left alone (a scan, or an earlier delivery of the same message, got there
    /// first; the scan likewise skips what this stored). The others are fetched and analysed
    /// exactly as a scan does, and stored. The inventory (deployment identity, launch time) is
    /// the store's, as the last scan saved it; when it lacks one of the instances it is read
    /// again first. Deployment findings and alerts follow at the next scan.
    pub async fn analyse_terminations(
        &self,
        terminations: &[Termination],
    ) -> Result<Vec<(String, EventAnalysis)>> {
        let mut seen = BTreeSet::new();
        let unique: Vec<&Termination> = terminations
            .iter()
            .filter(|t| seen.insert(t.instance_id.clone()))
            .collect();
        let ids: Vec<String> = unique.iter().map(|t| t.instance_id.clone()).collect();
        let known = self.store.analysed_ids(&ids).await?;
        let todo: Vec<Termination> = unique
            .iter()
            .filter(|t| !known.contains(&t.instance_id))
            .map(|t| (*t).clone())
            .collect();
        let mut out: Vec<(String, EventAnalysis)> = known
            .iter()
            .map(|id| (id.clone(), EventAnalysis::AlreadyKnown))
            .collect();
        if todo.is_empty() {
            return Ok(out);
        }
        let todo_ids: Vec<String> = todo.iter().map(|t| t.instance_id.clone()).collect();
        let stored = self.store.inventory(&todo_ids).await?;
        if todo_ids.iter().any(|id| !stored.contains_key(id)) {
            let inventory = self.inventory_logged().await?;
            self.store.save_inventory(&inventory).await?;
        }
        for chunk in todo.chunks(BATCH_SIZE) {
            let mut reports = Vec::with_capacity(chunk.len());
            for f in self.fetch_chunk(chunk).await? {
                match f {
                    Fetched::Done(r) => {
                        out.push((r.instance_id.clone(), EventAnalysis::Stored));
                        reports.push(*r);
                    }
                    Fetched::Failed(t, error) => {
                        tracing::warn!(instance_id = %t.instance_id, %error, "event: fetch failed; kept pending");
                        self.store.save_pending(&t, &error).await?;
                        out.push((t.instance_id.clone(), EventAnalysis::Failed(error)));
                    }
                }
            }
            self.store.save_instances(&reports).await?;
        }
        Ok(out)
    }

    /// Decides each deployment's alert transition and commits new states with their outbox
    /// messages atomically. A commit that loses a race with another writer (a replica doing
    /// the same) re-reads the states and decides again, so a transition is enqueued once.
    /// `at` is the window's end: alerting judges the fleet as of the data, not the wall clock.
    async fn enqueue_alerts(
        &self,
        findings: &[DeploymentFinding],
        history: &[InstanceReport],
        inventory: &[InstanceInfo],
        next_deaths: &[ProjectedDeath],
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let sinks: Vec<&'static str> = self
            .cfg
            .alerts
            .sinks()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if sinks.is_empty() {
            return Ok(0);
        }
        let policy = AlertPolicy {
            verdicts: self
                .cfg
                .alerts
                .verdicts
                .iter()
                .filter_map(|v| crate::model::DeploymentVerdict::parse(v))
                .collect(),
            cooldown: self.cfg.alerts.cooldown(),
            resolve_after: self.cfg.alerts.resolve_after(),
        };
        let dead: BTreeSet<&str> = history.iter().map(|r| r.instance_id.as_str()).collect();
        let identity = self.cfg.deployment_identity();
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for info in inventory
            .iter()
            .filter(|i| i.is_live() && !dead.contains(i.instance_id.as_str()))
        {
            if let (Some(asg), Some(dep)) = (&info.asg, live_deployment(&identity, info)) {
                live.entry(asg.clone()).or_default().insert(dep);
            }
        }
        let last_bad = alerting::last_bad_deaths(history);
        let by_name: BTreeMap<&str, &DeploymentFinding> = findings
            .iter()
            .map(|f| (f.deployment.as_str(), f))
            .collect();
        let links = self.link_config();

        for _ in 0..MAX_ALERT_COMMIT_ATTEMPTS {
            let states: BTreeMap<String, AlertState> = self
                .store
                .alert_states()
                .await?
                .into_iter()
                .map(|s| (s.deployment.clone(), s))
                .collect();
            let names: BTreeSet<&str> = by_name
                .keys()
                .copied()
                .chain(states.keys().map(String::as_str))
                .collect();
            let mut changes = Vec::new();
            let mut messages = Vec::new();
            for name in names {
                let finding = by_name.get(name).copied();
                let prev = states.get(name);
                let standing = Standing {
                    finding,
                    last_bad_death: last_bad.get(name).copied(),
                    replaced: finding.is_some_and(|f| alerting::is_replaced(f, &live)),
                };
                let Some(t) = alerting::decide(prev, &standing, &policy, at) else {
                    continue;
                };
                let next = alerting::apply(prev, name, &t, at);
                let key = alerting::dedup_key(name, next.episode, &t);
                let reports: Vec<&InstanceReport> =
                    history.iter().filter(|r| r.deployment == name).collect();
                let expected_deaths: Vec<&ProjectedDeath> = next_deaths
                    .iter()
                    .filter(|p| p.deployment == name)
                    .collect();
                let alert = alert_msg::build(&AlertInput {
                    id: key.clone(),
                    transition: &t,
                    deployment: name,
                    finding,
                    reports: &reports,
                    next_deaths: &expected_deaths,
                    unit: &self.cfg.sources.metrics.unit,
                    links: &links,
                    signatures: &self.signatures,
                    redactor: &self.redactor,
                    now: Utc::now(),
                    as_of: at,
                });
                let alert_json = serde_json::to_string(&alert)
                    .map_err(|e| Error::Store(format!("cannot encode alert: {e}")))?;
                for sink in &sinks {
                    messages.push(OutboxMessage {
                        dedup_key: key.clone(),
                        sink: sink.to_string(),
                        deployment: name.to_string(),
                        kind: t.name().to_string(),
                        alert_json: alert_json.clone(),
                    });
                }
                changes.push(AlertChange {
                    expected_version: prev.map(|p| p.version),
                    state: next,
                });
            }
            if changes.is_empty() {
                return Ok(0);
            }
            if self
                .store
                .commit_alerts(&changes, &messages, Utc::now())
                .await?
            {
                for c in &changes {
                    tracing::info!(deployment = %c.state.deployment, firing = ?c.state.firing, "alert state changed");
                }
                return Ok(messages.len());
            }
            tracing::debug!("alert commit lost a race with another writer; deciding again");
        }
        Err(Error::Store(format!(
            "alert state kept changing under this scan ({MAX_ALERT_COMMIT_ATTEMPTS} attempts); alerts are decided again next scan"
        )))
    }

    fn link_config(&self) -> LinkConfig {
        let logs = &self.cfg.sources.logs;
        let region = self.cfg.aws.region.clone().or_else(|| {
            self.cfg
                .aws
                .targets
                .first()
                .and_then(|t| crate::config::parse_target(t).ok())
                .map(|t| t.region)
        });
        LinkConfig {
            cloudwatch: match (
                logs.kind.as_str(),
                region,
                logs.log_group.as_ref().or(logs.log_groups.first()),
            ) {
                ("aws", Some(r), Some(g)) => Some((r, g.clone(), logs.stream_pattern.clone())),
                _ => None,
            },
            dashboard_template: self.cfg.alerts.dashboard_url_template.clone(),
        }
    }

    /// Fetches series (one batched call) and last words (bounded concurrency) for a chunk, then
    /// analyses each instance. Per-instance failures come back as `Fetched::Failed`.
    async fn fetch_chunk(&self, chunk: &[Termination]) -> Result<Vec<Fetched>> {
        let ids: Vec<String> = chunk.iter().map(|t| t.instance_id.clone()).collect();
        let inventory = self.store.inventory(&ids).await?;
        let evidence = self.fetch_evidence(chunk, &inventory).await;
        Ok(chunk
            .iter()
            .zip(evidence)
            .map(|(t, (s, w))| match (s, w) {
                (Ok(s), Ok(w)) => Fetched::Done(Box::new(self.analyse(
                    t,
                    inventory.get(&t.instance_id),
                    w,
                    s,
                ))),
                (Err(e), _) | (_, Err(e)) => Fetched::Failed(Box::new(t.clone()), e),
            })
            .collect())
    }

    /// The evidence of a chunk of terminations, one entry per termination, before analysis:
    /// the memory series (one batched call) and the last words (bounded concurrency, each
    /// under the fetch timeout), with `inventory` giving launch times and host names.
    async fn fetch_evidence(
        &self,
        chunk: &[Termination],
        inventory: &std::collections::HashMap<String, InstanceInfo>,
    ) -> Vec<Evidence> {
        let timeout = self.cfg.fetch_timeout().to_std().unwrap_or_default();
        let queries: Vec<SeriesQuery> = chunk
            .iter()
            .map(|t| self.series_query(t, inventory.get(&t.instance_id)))
            .collect();

        let series = self.fetch_series(&queries).await;

        // Owned queries: a closure over `&Termination` makes the future's Send-ness depend on
        // a higher-ranked lifetime the compiler cannot prove, and the service spawns scans.
        let queries: Vec<LastWordsQuery> = chunk
            .iter()
            .map(|t| self.last_words_query(t, inventory.get(&t.instance_id)))
            .collect();
        let words: Vec<std::result::Result<LastWords, String>> = stream::iter(queries)
            .map(|q| async move {
                match tokio::time::timeout(timeout, self.sources.logs.last_words(&q)).await {
                    Ok(Ok(lw)) => Ok(lw),
                    Ok(Err(e)) => Err(format!("logs: {e}")),
                    Err(_) => Err(format!("logs: timed out after {}s", timeout.as_secs())),
                }
            })
            .buffered(self.cfg.scan.concurrency.max(1))
            .collect()
            .await;
        series.into_iter().zip(words).collect()
    }

    /// Memory series for a batch (one batched backend call under the fetch timeout), one
    /// result per query; a failure of the whole batch is every query's error.
    async fn fetch_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Vec<std::result::Result<Option<MemorySeries>, String>> {
        let timeout = self.cfg.fetch_timeout().to_std().unwrap_or_default();
        match tokio::time::timeout(timeout, self.sources.metrics.memory_series(queries)).await {
            Ok(Ok(list)) if list.len() == queries.len() => list
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Ok(Ok(list)) => vec![
                Err(format!(
                    "metrics backend returned {} results for {} queries",
                    list.len(),
                    queries.len()
                ));
                queries.len()
            ],
            Ok(Err(e)) => vec![Err(format!("metrics: {e}")); queries.len()],
            Err(_) => {
                vec![Err(format!("metrics: timed out after {}s", timeout.as_secs())); queries.len()]
            }
        }
    }

    /// Early warning (see `analysis::early_warning`): the running instances in scope get their
    /// memory series up to `at`, in batches, and a projected time to their limit when the leak
    /// detector calls the series a leak. A failed fetch is counted, not fatal.
    async fn early_warning(
        &self,
        findings: &[DeploymentFinding],
        history: &[InstanceReport],
        inventory: &[InstanceInfo],
        terminated: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<(Vec<ProjectedDeath>, EarlyWarningSummary)> {
        let scope = self.cfg.analysis.early_warning;
        let mut summary = EarlyWarningSummary {
            scope: scope.as_str().to_string(),
            ..Default::default()
        };
        if scope == EarlyWarningScope::Off {
            return Ok((Vec::new(), summary));
        }
        let live: Vec<String> = inventory
            .iter()
            .filter(|i| i.is_live() && !terminated.contains(&i.instance_id))
            .map(|i| i.instance_id.clone())
            .collect();
        let mut dead: BTreeSet<String> =
            self.store.analysed_ids(&live).await?.into_iter().collect();
        dead.extend(terminated.iter().cloned());
        let identity = self.cfg.deployment_identity();
        let (candidates, over) = early_warning::candidates(
            scope,
            findings,
            inventory,
            &dead,
            &identity,
            self.cfg.analysis.early_warning_max_instances,
        );
        summary.candidates = candidates.len() + over;
        summary.over_cap = over;
        let label = match &identity {
            crate::analysis::correlate::DeploymentIdentity::MetricLabel { label } => {
                Some(label.as_str())
            }
            _ => None,
        };
        let levels = early_warning::death_levels(history);
        let mut out = Vec::new();
        for chunk in candidates.chunks(BATCH_SIZE) {
            let queries: Vec<SeriesQuery> = chunk
                .iter()
                .map(|c| {
                    let (start, end) =
                        early_warning::series_window(&c.info, at, self.cfg.series_lookback());
                    SeriesQuery {
                        instance_id: c.info.instance_id.clone(),
                        origin: c.info.origin.clone(),
                        asg: c.info.asg.clone(),
                        start,
                        end,
                    }
                })
                .collect();
            for (c, r) in chunk.iter().zip(self.fetch_series(&queries).await) {
                match r {
                    Ok(Some(s)) if !s.points.is_empty() => {
                        match early_warning::project(
                            c,
                            &s,
                            label,
                            &self.cfg.sources.metrics.unit,
                            &levels,
                        ) {
                            Ok(p) => out.push(p),
                            Err(NoProjection::NotLeaking) => summary.not_leaking += 1,
                            Err(NoProjection::OutOfScope) => summary.candidates -= 1,
                        }
                    }
                    Ok(_) => summary.no_series += 1,
                    Err(e) => {
                        summary.errors += 1;
                        if summary.error_samples.len() < early_warning::MAX_ERROR_SAMPLES {
                            summary
                                .error_samples
                                .push(format!("{}: {e}", c.info.instance_id));
                        }
                    }
                }
            }
        }
        summary.projected = out.len();
        early_warning::sort(&mut out);
        Ok((out, summary))
    }

    fn series_query(&self, t: &Termination, info: Option<&InstanceInfo>) -> SeriesQuery {
        let lookback_start = t.time - self.cfg.series_lookback();
        let start = info
            .and_then(|i| i.launch_time)
            .filter(|l| *l > lookback_start && *l < t.time)
            .unwrap_or(lookback_start);
        SeriesQuery {
            instance_id: t.instance_id.clone(),
            origin: t.origin.clone(),
            asg: Some(t.asg.clone()),
            start,
            end: t.time + self.after_termination(t),
        }
    }

    /// How long after the termination began the instance's own words still count: until the
    /// activity ended (or, when that is unknown, the drain window), plus the grace for clock
    /// skew and log shipping. Lines written while the load balancer drained the instance are
    /// still its last words.
    fn after_termination(&self, t: &Termination) -> chrono::Duration {
        let ended = t.end_time.unwrap_or(t.time + self.cfg.drain_window());
        (ended - t.time).max(chrono::Duration::zero()) + self.cfg.last_words_grace()
    }

    fn last_words_query(&self, t: &Termination, info: Option<&InstanceInfo>) -> LastWordsQuery {
        LastWordsQuery {
            instance_id: t.instance_id.clone(),
            origin: t.origin.clone(),
            asg: t.asg.clone(),
            terminated_at: t.time,
            window: self.cfg.last_words_window(),
            grace: self.after_termination(t),
            max_bytes: self.cfg.scan.last_words_max_bytes,
            launched_at: info.and_then(|i| i.launch_time).filter(|l| *l < t.time),
            private_dns: info.and_then(|i| i.private_dns.clone()),
            private_ip: info.and_then(|i| i.private_ip.clone()),
        }
    }

    /// Pure analysis of one instance's evidence.
    fn analyse(
        &self,
        t: &Termination,
        info: Option<&InstanceInfo>,
        last_words: LastWords,
        series: Option<MemorySeries>,
    ) -> InstanceReport {
        let mut matches = self.signatures.match_events(&last_words.events);
        // Secrets are masked once matching is done, before anything is stored or shown.
        // As a sequence: a private key logged over several lines is masked whole.
        let last_words = self.masked(last_words);
        for m in &mut matches {
            if let Cow::Owned(masked) = self.redactor.redact(&m.text) {
                m.text = masked;
            }
        }
        let assessment = series
            .as_ref()
            .filter(|s| !s.points.is_empty())
            .map(|s| leak::assess(&s.points, s.limit));
        let (verdict, explanation) = judge_instance(t, &last_words, &matches, assessment.as_ref());
        let deployment = resolve_deployment(
            &self.cfg.deployment_identity(),
            t,
            info,
            &last_words,
            series.as_ref(),
        );
        let mut memory = series.unwrap_or_default();
        memory.points = downsample(&memory.points, MAX_STORED_POINTS);
        InstanceReport {
            instance_id: t.instance_id.clone(),
            deployment,
            asg: t.asg.clone(),
            terminated_at: t.time,
            cause: t.cause,
            cause_text: t.cause_text.clone(),
            launch_time: info.and_then(|i| i.launch_time),
            verdict,
            explanation,
            signatures: matches,
            leak: assessment,
            last_words,
            memory,
        }
    }

    /// Everything known about one instance: from the store, or fetched from the sources (and
    /// then stored) when unknown or when `refresh` is set.
    pub async fn investigate(&self, instance_id: &str, refresh: bool) -> Result<Investigation> {
        if refresh {
            self.sources.begin_scan();
        }
        if !refresh {
            if let Some(report) = self.store.instance(instance_id).await? {
                return Ok(self.terminated("store", report));
            }
        }
        let inventory = self.inventory_logged().await?;
        self.store.save_inventory(&inventory).await?;
        match self
            .sources
            .activities
            .find_termination(instance_id)
            .await?
        {
            Some(t) => {
                let fetched = self.fetch_chunk(std::slice::from_ref(&t)).await?;
                match fetched.into_iter().next() {
                    Some(Fetched::Done(report)) => {
                        self.store
                            .save_instances(std::slice::from_ref(&report))
                            .await?;
                        Ok(self.terminated("sources", *report))
                    }
                    Some(Fetched::Failed(t, error)) => {
                        self.store.save_pending(&t, &error).await?;
                        Err(Error::source(
                            instance_id,
                            format!("fetch failed (kept pending for the next scan): {error}"),
                        ))
                    }
                    None => Err(Error::source(instance_id, "no result from the sources")),
                }
            }
            None => {
                let now = Utc::now();
                let end = match &self.cfg.scan.until {
                    Some(s) => crate::timefmt::parse_since(s, now).unwrap_or(now),
                    None => now,
                };
                let q = SeriesQuery {
                    instance_id: instance_id.to_string(),
                    origin: None,
                    asg: None,
                    start: end - self.cfg.series_lookback(),
                    end,
                };
                let memory = self
                    .sources
                    .metrics
                    .memory_series(std::slice::from_ref(&q))
                    .await?
                    .into_iter()
                    .next()
                    .transpose()?
                    .flatten();
                let listed = inventory.iter().find(|i| i.instance_id == instance_id);
                if listed.is_none() && memory.is_none() {
                    return Err(Error::UnknownInstance(instance_id.to_string()));
                }
                let leak = memory
                    .as_ref()
                    .map(|s| Box::new(leak::assess(&s.points, s.limit)));
                Ok(Investigation::NoTermination {
                    instance_id: instance_id.to_string(),
                    in_service: listed.is_some(),
                    asg: listed.and_then(|i| i.asg.clone()),
                    memory: memory.map(|mut m| {
                        m.points = downsample(&m.points, MAX_STORED_POINTS);
                        m
                    }),
                    leak,
                })
            }
        }
    }

    fn terminated(&self, from: &str, report: InstanceReport) -> Investigation {
        let next_steps = report
            .signatures
            .iter()
            .filter(|m| m.kind.is_death())
            .filter_map(|m| self.signatures.get(&m.signature))
            .map(|s| format!("{}: {}", s.spec.id, s.spec.next_step))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Investigation::Terminated {
            from: from.to_string(),
            report: Box::new(report),
            next_steps,
        }
    }
}

/// Attaches a heap diff to a deployment in the state store (`heap diff … --attach`): the
/// deployment must be one the store has a finding for, so a typo is an error, not a section
/// nobody sees.
pub async fn attach_heap_diff(
    cfg: &Config,
    deployment: &str,
    files: Vec<String>,
    diff: crate::analysis::heap::HeapDiff,
) -> Result<String> {
    let store = crate::store::open(cfg).await?;
    let place = crate::store::describe(cfg);
    let known: Vec<String> = store
        .findings()
        .await?
        .into_iter()
        .map(|f| f.deployment)
        .collect();
    if !known.iter().any(|d| d == deployment) {
        let hint = if known.is_empty() {
            "the state has no deployments yet: run a scan first".to_string()
        } else {
            format!("known: {}", known.join(", "))
        };
        return Err(Error::input(
            "--attach",
            format!("no deployment `{deployment}` in {place} ({hint})"),
        ));
    }
    store
        .attach_heap_diff(&crate::analysis::heap::AttachedHeapDiff {
            deployment: deployment.to_string(),
            attached_at: Utc::now(),
            files,
            diff,
        })
        .await?;
    Ok(place)
}

/// `epitaph doctor`: probes what the configuration points at — the real account for `aws`
/// sources (`sources::aws` probes), the exports for `file` ones (read through the source
/// traits) — and has `analysis::doctor` judge it into a checklist. Opens no store, writes
/// nothing. The window is the configured one (`scan.since`, `scan.until`), from now.
pub async fn doctor(cfg: &Config) -> crate::analysis::doctor::Checklist {
    use crate::analysis::doctor::{self as judge, Check, FileRead};
    use crate::sources::file::{FileActivities, FileLogs, FileMetrics};
    use crate::sources::{ActivitySource, LogSource, MetricSource};
    let now = Utc::now();
    let until = cfg
        .scan
        .until
        .as_deref()
        .and_then(|u| crate::timefmt::parse_since(u, now).ok())
        .unwrap_or(now);
    let since = crate::timefmt::parse_since(&cfg.scan.since, until).unwrap_or(until);
    let window = TimeWindow {
        start: since,
        end: until,
    };
    let mut checks = judge::kind_checks(cfg, cfg!(feature = "aws"));
    let path_problems = cfg.filesystem_problems();
    checks.extend(judge::path_checks(cfg, &path_problems));
    let s = &cfg.sources;
    // A file source is read only when its path exists (a missing one already failed above).
    let readable = |key: &str, src: &crate::config::SourceConfig| {
        src.kind == "file" && !path_problems.iter().any(|p| p.starts_with(key))
    };
    let resolved = |src: &crate::config::SourceConfig| {
        let mut src = src.clone();
        src.path = src.path.as_ref().map(|p| cfg.resolve(p));
        src.inventory = src.inventory.as_ref().map(|p| cfg.resolve(p));
        src
    };
    let failed = |e: Error| FileRead {
        errors: vec![e.to_string()],
        ..Default::default()
    };
    let first_skipped = |(n, first): (usize, Vec<Skipped>)| {
        (
            n,
            first
                .iter()
                .map(|k| format!("{}: {}", k.location, k.reason))
                .collect::<Vec<_>>(),
        )
    };
    let mut terminations: Vec<Termination> = Vec::new();
    let activities = if readable("sources.activities.path", &s.activities) {
        let read = match FileActivities::new(&resolved(&s.activities)) {
            Ok(a) => a.terminations(window).await,
            Err(e) => Err(e),
        };
        Some(match read {
            Ok(batch) => {
                terminations = batch.terminations;
                let (skipped, first) = first_skipped((batch.skipped.len(), batch.skipped));
                FileRead {
                    found: terminations.len(),
                    skipped,
                    first_skipped: first,
                    errors: batch.errors,
                    warnings: batch.warnings,
                    ..Default::default()
                }
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    let samples: Vec<crate::sources::probe::Sample> =
        judge::pick_samples(cfg, window, &terminations, &[], now)
            .into_iter()
            .filter(|x| x.terminated_at.is_some())
            .collect();
    let logs = if readable("sources.logs.path", &s.logs) {
        Some(match FileLogs::new(&resolved(&s.logs)) {
            Ok(l) => {
                let mut read = FileRead {
                    sampled: samples.len(),
                    ..Default::default()
                };
                for x in &samples {
                    let q = sample_last_words_query(cfg, x, None);
                    match l.last_words(&q).await {
                        Ok(w) if !w.events.is_empty() => read.found += 1,
                        Ok(_) => {}
                        Err(e) => read.errors.push(e.to_string()),
                    }
                }
                (read.skipped, read.first_skipped) = first_skipped(l.skipped());
                let problems = l.input_problems();
                read.errors.extend(problems.errors);
                read.warnings = problems.warnings;
                read
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    let metrics = if readable("sources.metrics.path", &s.metrics) {
        Some(match FileMetrics::new(&resolved(&s.metrics)) {
            Ok(m) => {
                let queries: Vec<SeriesQuery> = samples
                    .iter()
                    .map(|x| SeriesQuery {
                        instance_id: x.instance_id.clone(),
                        origin: x.origin.clone(),
                        asg: x.asg.clone(),
                        start: x.terminated_at.unwrap_or(x.until) - cfg.series_lookback(),
                        end: x.until,
                    })
                    .collect();
                let mut read = FileRead {
                    sampled: samples.len(),
                    ..Default::default()
                };
                match m.memory_series(&queries).await {
                    Ok(series) => {
                        for r in series {
                            match r {
                                Ok(Some(_)) => read.found += 1,
                                Ok(None) => {}
                                Err(e) => read.errors.push(e.to_string()),
                            }
                        }
                    }
                    Err(e) => read.errors.push(e.to_string()),
                }
                (read.skipped, read.first_skipped) = first_skipped(m.skipped());
                let problems = m.input_problems();
                read.errors.extend(problems.errors);
                read.warnings = problems.warnings;
                read
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    checks.extend(judge::file_checks(
        activities.as_ref(),
        logs.as_ref(),
        metrics.as_ref(),
        window,
    ));
    // The instances the AWS probe sampled (its own terminations), for the probes of the
    // metrics and log APIs.
    #[allow(unused_mut)]
    let mut aws_samples: Vec<crate::sources::probe::Sample> = Vec::new();
    if [&s.activities, &s.logs, &s.metrics]
        .iter()
        .any(|x| x.kind == "aws")
    {
        #[cfg(feature = "aws")]
        {
            let (aws_checks, sampled) = doctor_aws(cfg, window, &terminations, now).await;
            checks.extend(aws_checks);
            aws_samples = sampled;
        }
    } else {
        checks.push(judge::aws_not_used());
    }
    if s.metrics.kind == "prometheus" {
        let sampled = if s.activities.kind == "aws" {
            &aws_samples
        } else {
            &samples
        };
        checks.extend(doctor_prometheus(cfg, sampled).await);
    }
    if matches!(s.logs.kind.as_str(), "splunk" | "loki") {
        let (sampled, inventory) = if s.activities.kind == "aws" {
            (&aws_samples, Vec::new())
        } else {
            let inventory = match FileActivities::new(&resolved(&s.activities)) {
                Ok(a) => a.inventory().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            (&samples, inventory)
        };
        checks.extend(doctor_log_api(cfg, sampled, &inventory).await);
    }
    #[cfg(feature = "aws")]
    if cfg.sources.events.kind == crate::sources::events::config::EventsKind::Sqs {
        let url = cfg.sources.events.queue_url.clone().unwrap_or_default();
        checks.push(
            match crate::sources::events::sqs::SqsQueue::from_config(&cfg.sources.events, &cfg.aws)
                .await
            {
                Ok(q) => judge::events_check(&url, q.attributes().await.as_ref()),
                Err(e) => Check::fail(
                    "events.queue",
                    judge::Failure::Config,
                    e.to_string(),
                    "fix [sources.events] and [aws]",
                ),
            },
        );
    }
    checks.push(match load_signatures(cfg) {
        Ok(lib) => Check::pass(
            "signatures",
            format!("{} signatures compiled", lib.signatures().len()),
        ),
        Err(e) => Check::fail(
            "signatures",
            judge::Failure::Config,
            e.to_string(),
            "fix the signature file named (signatures.extra)",
        ),
    });
    judge::Checklist::new(checks)
}

/// The Prometheus probe of `epitaph doctor` for the sampled instances, judged.
async fn doctor_prometheus(
    cfg: &Config,
    samples: &[crate::sources::probe::Sample],
) -> Vec<crate::analysis::doctor::Check> {
    use crate::analysis::doctor as judge;
    match crate::sources::prometheus::PrometheusMetrics::from_config(cfg).await {
        Ok(m) => judge::prometheus_checks(cfg, &m.probe(samples).await),
        Err(e) => judge::prometheus_not_configured(&e.to_string()),
    }
}

/// The last-words query for an instance the doctor sampled, with its launch time and host
/// names when the inventory knows them.
fn sample_last_words_query(
    cfg: &Config,
    x: &crate::sources::probe::Sample,
    info: Option<&InstanceInfo>,
) -> LastWordsQuery {
    let at = x.terminated_at.unwrap_or(x.until);
    LastWordsQuery {
        instance_id: x.instance_id.clone(),
        origin: x.origin.clone(),
        asg: x.asg.clone().unwrap_or_default(),
        terminated_at: at,
        window: cfg.last_words_window(),
        grace: x.until - at,
        max_bytes: cfg.scan.last_words_max_bytes,
        launched_at: info.and_then(|i| i.launch_time).filter(|l| *l < at),
        private_dns: info.and_then(|i| i.private_dns.clone()),
        private_ip: info.and_then(|i| i.private_ip.clone()),
    }
}

/// The probe of a log API (`splunk`, `loki`) for the sampled instances (their private DNS
/// names and IPs from `inventory`), judged.
async fn doctor_log_api(
    cfg: &Config,
    samples: &[crate::sources::probe::Sample],
    inventory: &[InstanceInfo],
) -> Vec<crate::analysis::doctor::Check> {
    use crate::analysis::doctor as judge;
    let queries: Vec<LastWordsQuery> = samples
        .iter()
        .map(|x| {
            let info = inventory.iter().find(|i| i.instance_id == x.instance_id);
            sample_last_words_query(cfg, x, info)
        })
        .collect();
    let backend = cfg.sources.logs.kind.as_str();
    let probe = match backend {
        "splunk" => match crate::sources::splunk::SplunkLogs::from_config(cfg) {
            Ok(l) => l.probe(&queries).await,
            Err(e) => return judge::log_api_not_configured(backend, &e.to_string()),
        },
        _ => match crate::sources::loki::LokiLogs::from_config(cfg) {
            Ok(l) => l.probe(&queries).await,
            Err(e) => return judge::log_api_not_configured(backend, &e.to_string()),
        },
    };
    judge::log_api_checks(&probe)
}

/// The AWS probes of `epitaph doctor`, target by target: Auto Scaling first (its first call
/// says whether the account answers at all), then the logs and the metric for the samples it
/// found. A target that cannot be reached is not probed further. Also returns the first
/// target's samples (for a metrics or log backend outside AWS).
#[cfg(feature = "aws")]
async fn doctor_aws(
    cfg: &Config,
    window: TimeWindow,
    file_terminations: &[Termination],
    now: DateTime<Utc>,
) -> (
    Vec<crate::analysis::doctor::Check>,
    Vec<crate::sources::probe::Sample>,
) {
    use crate::analysis::doctor as judge;
    use crate::sources::aws;
    use crate::sources::probe::TargetProbe;
    let ctx = match aws::AwsContext::load(&cfg.aws).await {
        Ok(c) => c,
        Err(e) => return (judge::aws_not_configured(&e.to_string()), Vec::new()),
    };
    let s = &cfg.sources;
    let activities = (s.activities.kind == "aws")
        .then(|| aws::AwsActivities::new(ctx.clone(), &s.activities, cfg.aws.api_concurrency));
    let metrics = match s.metrics.kind.as_str() {
        "aws" => aws::AwsMetrics::new(ctx.clone(), &s.metrics).ok(),
        _ => None,
    };
    let several = ctx.targets.len() > 1;
    let mut out = Vec::new();
    let mut first_samples = Vec::new();
    for (i, t) in ctx.targets.iter().enumerate() {
        let mut probe = TargetProbe {
            target: t.info.clone(),
            activities: None,
            logs: None,
            metrics: None,
        };
        // Exported activities carry no target: they go with the first one.
        let mut terms: Vec<Termination> = file_terminations
            .iter()
            .filter(|x| x.origin.as_deref().map_or(i == 0, |o| o == t.name))
            .cloned()
            .collect();
        let mut running = Vec::new();
        let mut reachable = true;
        if let Some(a) = &activities {
            let p = a.probe(t, window.start).await;
            reachable = !judge::first_call_unreachable(&p.calls);
            if let Ok(found) = &p.activities {
                terms = found.clone();
            }
            if let Ok(l) = &p.listing {
                running = l
                    .items
                    .iter()
                    .filter(|g| p.selected.contains(&g.name))
                    .flat_map(|g| g.instances.iter().map(|id| (id.clone(), g.name.clone())))
                    .collect();
            }
            probe.activities = Some(p);
        }
        let samples = judge::pick_samples(cfg, window, &terms, &running, now);
        if i == 0 {
            first_samples = samples.clone();
        }
        if reachable && s.logs.kind == "aws" {
            let p = aws::probe_logs(t, &s.logs, &samples).await;
            reachable = !judge::first_call_unreachable(&p.calls);
            probe.logs = Some(p);
        }
        if let (true, Some(m)) = (reachable, &metrics) {
            probe.metrics = Some(m.probe(t, samples.first()).await);
        }
        out.extend(judge::aws_checks(
            cfg,
            &probe,
            several.then_some(t.name.as_str()),
        ));
    }
    (out, first_samples)
}

/// The signature library a config asks for: the built-in one, with `signatures.extra` merged.
pub fn load_signatures(cfg: &Config) -> Result<SignatureLibrary> {
    match &cfg.signatures.extra {
        Some(p) => load_signature_file(&cfg.resolve(p)),
        None => SignatureLibrary::default_library(),
    }
}

/// The built-in library with a user signature file merged over it.
pub fn load_signature_file(path: &std::path::Path) -> Result<SignatureLibrary> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    SignatureLibrary::with_overrides(&text, &path.display().to_string())
}

/// Keeps at most `max` points, evenly spaced by index, always keeping the last (the moment
/// closest to death matters most).
pub fn downsample<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)].clone())
        .collect()
}

fn progress_bar(allowed: bool, len: usize) -> indicatif::ProgressBar {
    if !allowed || len < PROGRESS_BAR_MIN_INSTANCES || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} fetching {pos}/{len} instances [{bar:30}] {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsample_keeps_ends() {
        let v: Vec<u32> = (0..1000).collect();
        let d = downsample(&v, 10);
        assert_eq!(d.len(), 10);
        assert_eq!(d[0], 0);
        assert_eq!(d[9], 999);
        assert_eq!(downsample(&v[..5], 10), vec![0, 1, 2, 3, 4]);
    }
}
