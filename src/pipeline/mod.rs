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
//!
//! One folder, each file a part of the wiring: `scan.rs` (the scan's stages: plan → discover →
//! fetch → judge → alert → record), `alerts.rs` (transitions into the outbox), `early.rs`
//! (early warning), `investigate.rs` (one instance on demand), `export.rs` (`epitaph export`),
//! `doctor.rs` (`epitaph doctor`'s probes), `kept.rs` (what a scan keeps while its inputs are
//! unchanged: the inventory's live instances, the deployments' judgement); this file holds the
//! pipeline itself, its fetch and analysis of one instance, the event intake's analysis and the
//! HTML report.
//!
//! Length: the fetch and analysis of one instance are shared by scans, queries, events and
//! export, and read best in one place with the pipeline they belong to.

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
    DeploymentFinding, InstanceFacts, InstanceInfo, InstanceReport, LastWords, MemorySeries,
    ProjectedDeath, Termination, TimeWindow,
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
/// Reports a scan stores per transaction (a multiple of [`BATCH_SIZE`]). Every transaction
/// rewrites each ids-keyed B-tree page it touches, and ids arrive in no order, so 500 rows
/// touched most leaves of a 100,000-instance index — writes grew with the store, not with the
/// new rows (`benches/cost.sh`: the SQLite worker's share grew 4.7× for 3.3× the fleet).
/// Reports wait in memory until saved (peak RSS of a 100,000-instance scan unchanged); a
/// failing fetch saves those already analysed before the error ends the scan.
pub const STORE_BATCH: usize = 2_500;
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

mod alerts;
mod doctor;
mod early;
mod export;
mod investigate;
mod kept;
mod scan;

pub use doctor::doctor;
pub use scan::MAX_TARGET_BACKLOG;

/// The state store's reader name for the stamps of the files the stored inventory was read
/// from.
pub const INVENTORY_READER: &str = "inventory";

impl Pipeline {
    /// Stores the inventory, unless it was read from the very files (by their stamps, taken
    /// before the read: `inputs`) the stored one was read from, which give the same inventory
    /// again. Without stamps (a backend that has none, or an inventory read outside a scan)
    /// it is stored, and the stamps of the stored one forgotten.
    pub(crate) async fn save_inventory(
        &self,
        inventory: &[InstanceInfo],
        inputs: Option<Vec<crate::model::InputStamp>>,
    ) -> Result<()> {
        let inputs = inputs.filter(|now| {
            now.iter()
                .all(|s| crate::sources::file::stamp_trusted(&s.stamp))
        });
        if let Some(now) = &inputs {
            let mut stored = self.store.input_stamps(INVENTORY_READER).await?;
            stored.sort_by(|a, b| a.path.cmp(&b.path));
            if stored == *now {
                return Ok(());
            }
        }
        self.store
            .replace_input_stamps(INVENTORY_READER, &[])
            .await?;
        self.store.save_inventory(inventory).await?;
        if let Some(now) = inputs {
            self.store
                .replace_input_stamps(INVENTORY_READER, &now)
                .await?;
        }
        Ok(())
    }

    /// Closes the state store (a one-off command's last step: `Store::close`).
    pub async fn close(&self) -> Result<()> {
        self.store.close().await
    }

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
    /// `window` (or now): every deployment with deaths in the finding lookback, from their
    /// compact rows, and the full reports of the instances the page shows.
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
        let facts = self.store.facts_in(lookback).await?;
        let reports = self
            .store
            .reports(&crate::sinks::html::cited(&findings, &facts))
            .await?;
        let next_deaths = self.store.projections().await?;
        let heap_diffs = self.store.heap_diffs().await?;
        let unread_targets = self.store.target_backlog().await?;
        Ok(crate::sinks::html::render(
            &findings,
            &facts,
            &reports,
            &crate::sinks::html::HtmlContext {
                generated_at: Utc::now(),
                window,
                unit: self.cfg.sources.metrics.unit.as_str(),
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

    /// Where a window ends: `until` (a flag), else `scan.until`, else `now`.
    fn window_end(
        &self,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        Ok(match (until, &self.cfg.scan.until) {
            (Some(u), _) => u,
            (None, Some(s)) => s.resolve(now),
            (None, None) => now,
        })
    }

    /// The window a scan covers.
    pub async fn window(&self, opts: &ScanOptions, now: DateTime<Utc>) -> Result<TimeWindow> {
        let until = self.window_end(opts.until, now)?;
        let since = match opts.since {
            Some(s) => s,
            None => match self.store.watermark().await? {
                Some(w) => w - self.cfg.overlap(),
                None => self.cfg.scan.since.resolve(until),
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
            self.save_inventory(&inventory, None).await?;
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

    /// Fetches series (one batched call) and last words (bounded concurrency) for a chunk, then
    /// analyses each instance. Per-instance failures come back as `Fetched::Failed`.
    async fn fetch_chunk(&self, chunk: &[Termination]) -> Result<Vec<Fetched>> {
        // The library's automata are built for the first instance analysed (a scan with
        // nothing to analyse never builds them); a failure is an error, not a panic.
        self.signatures.compile()?;
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
