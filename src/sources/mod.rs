//! Where data comes from: three traits (activities, logs, metrics) and one module per backend.
//!
//! Backends know their API and nothing else: they return domain values ([`Termination`],
//! [`LogEvent`], [`MemorySeries`]) and never judge them. The traits are async so network
//! backends (AWS, Prometheus, Loki, Splunk) fit behind them; the pipeline bounds their
//! concurrency and applies timeouts. The HTTP log backends (`splunk/`, `loki/`) share
//! `http.rs` (client, retries, call counts), `paging.rs` (reading backwards in pages) and
//! `placeholders.rs` (the instance in their templates).
//!
//! Length: the three traits, the query and problem types every backend shares (with their
//! contracts written beside them) and the instance-id helpers read together; about 95 lines
//! are their unit tests.

#[cfg(feature = "aws")]
pub mod aws;
pub mod events;
pub mod file;
pub mod heapsnapshot;
pub(crate) mod http;
pub mod loki;
pub(crate) mod paging;
pub(crate) mod placeholders;
pub mod probe;
pub mod prometheus;
pub mod ratelimit;
pub mod splunk;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::config::{Config, SourceKind};
use crate::error::{Error, Result};
use crate::model::{InstanceInfo, LastWords, LogEvent, MemorySeries, Termination, TimeWindow};

/// A record a backend could not use, with where it was and why. Reported in the scan summary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub location: String,
    pub reason: String,
}

/// Skipped records of one kind in one input, counted: how the scan summary reports thousands
/// of bad lines in a few rows (`summary.skipped_by_input`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedGroup {
    /// The file (or source) the records were in: the location without its line or key.
    pub input: String,
    /// The reason, with the values that differ record to record (quoted text, numbers)
    /// replaced, so one kind of problem is one row.
    pub kind: String,
    pub count: usize,
}

/// The input of a skipped record's location: `path:12` → `path`, `path: events[3]` → `path`.
pub fn skip_input(location: &str) -> String {
    if let Some((input, _)) = location.split_once(": ") {
        return input.to_string();
    }
    match location.rsplit_once(':') {
        Some((input, line)) if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) => {
            input.to_string()
        }
        _ => location.to_string(),
    }
}

/// The kind of a skip reason: text in backquotes becomes `…`, numbers `N`.
pub fn skip_kind(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut quoted = false;
    let mut in_number = false;
    for c in reason.chars() {
        if c == '`' {
            if !quoted {
                out.push_str("`…");
            } else {
                out.push('`');
            }
            quoted = !quoted;
            in_number = false;
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
            continue;
        }
        in_number = false;
        out.push(c);
    }
    out
}

/// At most this many (input, kind) rows are counted apart; the rest share one row.
pub const MAX_SKIP_GROUPS: usize = 200;

/// Counts of skipped records by (input, kind), most first (ties by input and kind).
#[derive(Debug, Default, Clone)]
pub struct SkipGroups(BTreeMap<(String, String), usize>);

impl SkipGroups {
    pub fn add(&mut self, location: &str, reason: &str, n: usize) {
        self.count((skip_input(location), skip_kind(reason)), n);
    }

    pub fn merge(&mut self, other: &SkipGroups) {
        for ((input, kind), n) in &other.0 {
            self.count((input.clone(), kind.clone()), *n);
        }
    }

    /// Adds a row another log counted.
    pub fn add_group(&mut self, g: SkippedGroup) {
        self.count((g.input, g.kind), g.count);
    }

    fn count(&mut self, mut key: (String, String), n: usize) {
        if !self.0.contains_key(&key) && self.0.len() >= MAX_SKIP_GROUPS {
            key = ("(other inputs)".to_string(), "(other kinds)".to_string());
        }
        *self.0.entry(key).or_insert(0) += n;
    }

    /// The rows, most records first.
    pub fn rows(&self) -> Vec<SkippedGroup> {
        let mut rows: Vec<SkippedGroup> = self
            .0
            .iter()
            .map(|((input, kind), n)| SkippedGroup {
                input: input.clone(),
                kind: kind.clone(),
                count: *n,
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.count));
        rows
    }
}

/// What an activity source found in a window.
#[derive(Debug, Clone, Default)]
pub struct ActivityBatch {
    pub terminations: Vec<Termination>,
    /// Individual records that could not be used (the rest of the batch is fine).
    pub skipped: Vec<Skipped>,
    /// Inputs that could not be read at all (a whole file): terminations may be missing, so the
    /// scan must not advance its watermark past this window.
    pub errors: Vec<String>,
    /// Inputs read but known to be incomplete (an export with a pagination token left in it):
    /// the scan is incomplete, like for `errors`, but what was read is used.
    pub warnings: Vec<String>,
    /// Targets (account/role × region) that could not be read: their terminations are
    /// missing from this batch, the other targets' are whole.
    pub failed_targets: Vec<TargetFailure>,
}

/// A target (an account or role × a region) a source could not read — the role could not be
/// assumed, access was denied, the region is not enabled, the endpoint kept failing — named,
/// with the error. One target's failure never stops the others: the scan reads every other
/// target, reports this one, and reads its window again next run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetFailure {
    /// The target as `aws.targets` names it ("us-west-2", "arn:aws:iam::…:role/…@eu-west-1").
    pub target: String,
    /// What failed, in one line: the operation, the service's error code and message.
    pub error: String,
}

/// Whole inputs a backend could not use (`errors`: empty, unparsable or unrecognised files) or
/// knows to be incomplete (`warnings`: truncated exports), each naming the input, as of its
/// last read. Either makes the scan incomplete; records skipped inside a usable input are
/// [`Skipped`] instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputProblems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Whole targets that could not be read (the AWS backend's inventory of one account or
    /// region); the other targets' data is whole.
    pub failed_targets: Vec<TargetFailure>,
}

impl InputProblems {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty() && self.failed_targets.is_empty()
    }

    /// Adds `other`'s problems after this one's.
    pub fn extend(&mut self, other: InputProblems) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
        self.failed_targets.extend(other.failed_targets);
    }
}

/// Auto Scaling activity: terminations, and an inventory of instances while they live.
#[async_trait]
pub trait ActivitySource: Send + Sync {
    /// A short name for messages ("file:activities/").
    fn name(&self) -> String;
    /// Terminations whose activity started inside `window`.
    async fn terminations(&self, window: TimeWindow) -> Result<ActivityBatch>;
    /// Terminations inside `window`, and for the targets named in `earlier` from that earlier
    /// start on: targets an earlier run could not read, whose window is read again. Backends
    /// without targets (files) have nothing to read earlier: `earlier` is always empty for
    /// them (a scan fills it only with targets that failed), so they read `window`.
    async fn terminations_since(
        &self,
        window: TimeWindow,
        earlier: &BTreeMap<String, DateTime<Utc>>,
    ) -> Result<ActivityBatch> {
        debug_assert!(earlier.is_empty() || !self.targets().is_empty());
        self.terminations(window).await
    }
    /// The targets this source reads, by name (`aws.targets`, or the default region); empty
    /// for backends without targets.
    fn targets(&self) -> Vec<String> {
        Vec::new()
    }
    /// Instances known to the groups (launch time, launch template, tags), to attribute
    /// deployments. Backends without an inventory return an empty list.
    async fn inventory(&self) -> Result<Vec<InstanceInfo>>;
    /// The termination of one instance, searching as far back as the backend can.
    async fn find_termination(&self, instance_id: &str) -> Result<Option<Termination>>;
    /// The stamps this source kept at the last run (the `file` backend's: see
    /// `sources::file::file_stamp`): an input unchanged since then whose kept proof answers a
    /// read is not read again. Backends that keep none ignore them.
    fn use_input_stamps(&self, _known: Vec<crate::model::InputStamp>) {}
    /// The stamps of every input [`ActivitySource::inventory`] reads, as they are now (without
    /// reading them); None for a backend whose data cannot be stamped.
    async fn inventory_stamps(&self) -> Result<Option<Vec<crate::model::InputStamp>>> {
        Ok(None)
    }
    /// The stamps of the inputs behind the last [`ActivitySource::terminations`], to keep for
    /// the next run (taken: a second call gives None). None: this backend keeps none.
    fn input_stamps(&self) -> Option<Vec<crate::model::InputStamp>> {
        None
    }
    /// Inventory inputs that could not be used or are truncated, as of the last
    /// [`ActivitySource::inventory`] (the activities' own are in [`ActivityBatch`]).
    fn inventory_problems(&self) -> InputProblems {
        InputProblems::default()
    }
    /// Remote API calls made so far, by operation (empty for local backends).
    fn calls(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

/// What to fetch as an instance's last words.
#[derive(Debug, Clone, Default)]
pub struct LastWordsQuery {
    pub instance_id: String,
    /// The AWS target the instance lived in (see `Termination::origin`).
    pub origin: Option<String>,
    pub asg: String,
    pub terminated_at: DateTime<Utc>,
    /// Length of the window that ends at the final event.
    pub window: Duration,
    /// Events up to this long after the termination time still count (clock skew, flushing).
    pub grace: Duration,
    /// Stop fetching after this many bytes of messages.
    pub max_bytes: usize,
    /// When the instance was launched (from the inventory), if known: no word of it is older.
    pub launched_at: Option<DateTime<Utc>>,
    /// Its private DNS name and IPv4 address (from the inventory: `describe-instances`), if
    /// known — how backends that name hosts (Splunk's `host`, a Loki label) find it.
    pub private_dns: Option<String>,
    pub private_ip: Option<String>,
}

/// The log backend.
#[async_trait]
pub trait LogSource: Send + Sync {
    fn name(&self) -> String;
    /// Called at the start of every scan: a backend that caches what it read (the file
    /// indexes) checks whether its data changed since.
    fn begin_scan(&self) {}
    /// The instance's last words. No logs is `Ok` with no events, never an error.
    async fn last_words(&self, query: &LastWordsQuery) -> Result<LastWords>;
    /// Records the backend skipped so far (count, and the first few with their location).
    fn skipped(&self) -> (usize, Vec<Skipped>) {
        (0, Vec::new())
    }
    /// Every record skipped so far, counted by input and kind (most first).
    fn skipped_by_input(&self) -> Vec<SkippedGroup> {
        Vec::new()
    }
    /// Whole inputs it could not use or knows to be truncated, as of its last read.
    fn input_problems(&self) -> InputProblems {
        InputProblems::default()
    }
    /// Remote API calls made so far, by operation (empty for local backends).
    fn calls(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

/// One memory series to fetch.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub instance_id: String,
    pub origin: Option<String>,
    /// The instance's group, for `{asg}` in extra dimensions.
    pub asg: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The metrics backend.
#[async_trait]
pub trait MetricSource: Send + Sync {
    fn name(&self) -> String;
    /// Called at the start of every scan: a backend that caches what it read (the file
    /// indexes) checks whether its data changed since.
    fn begin_scan(&self) {}
    /// Memory series for many instances at once (backends batch them), one result per query in
    /// the same order: `Ok(None)` when the backend has no data for that instance. The outer
    /// error is for a failure of the whole batch.
    async fn memory_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Result<Vec<Result<Option<MemorySeries>>>>;
    /// Records the backend skipped so far (count, and the first few with their location).
    fn skipped(&self) -> (usize, Vec<Skipped>) {
        (0, Vec::new())
    }
    /// Every record skipped so far, counted by input and kind (most first).
    fn skipped_by_input(&self) -> Vec<SkippedGroup> {
        Vec::new()
    }
    /// Whole inputs it could not use or knows to be truncated, as of its last read.
    fn input_problems(&self) -> InputProblems {
        InputProblems::default()
    }
    /// Remote API calls made so far, by operation (empty for local backends).
    fn calls(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    /// The stamps of its inputs as they are now, without reading them (the `file` backend:
    /// `sources::file::file_stamp`); None for a backend whose data cannot be stamped (a
    /// server's answer may change at any time), so nothing derived from it is kept.
    async fn input_stamps(&self) -> Result<Option<Vec<crate::model::InputStamp>>> {
        Ok(None)
    }
    /// The stamps of the inputs its series of this scan came from (taken before they were
    /// read), if it read any and can stamp them.
    fn read_stamps(&self) -> Option<Vec<crate::model::InputStamp>> {
        None
    }
}

/// The three sources a scan reads from.
#[derive(Clone)]
pub struct Sources {
    pub activities: Arc<dyn ActivitySource>,
    pub logs: Arc<dyn LogSource>,
    pub metrics: Arc<dyn MetricSource>,
}

impl Sources {
    /// Builds the configured backends. Kinds that are planned but not built yet are a clear
    /// error, never a backend that silently does nothing.
    pub async fn from_config(cfg: &Config) -> Result<Self> {
        let s = &cfg.sources;
        for (key, kind) in s.kinds() {
            check_kind(key, kind)?;
        }
        // File paths in the config are relative to the config file.
        let files = s.with_paths_resolved(|p| cfg.resolve(p));
        let (aws_activities, aws_logs, aws_metrics) = aws_backends(cfg).await?;
        let activities: Arc<dyn ActivitySource> = match aws_activities {
            Some(a) => a,
            None => Arc::new(file::FileActivities::new(&files.activities)?),
        };
        let logs: Arc<dyn LogSource> = match (aws_logs, s.logs.kind) {
            (Some(l), _) => l,
            (None, SourceKind::Splunk) => Arc::new(splunk::SplunkLogs::from_config(cfg)?),
            (None, SourceKind::Loki) => Arc::new(loki::LokiLogs::from_config(cfg)?),
            (None, _) => Arc::new(file::FileLogs::new(&files.logs)?),
        };
        let metrics: Arc<dyn MetricSource> = match (aws_metrics, s.metrics.kind) {
            (Some(m), _) => m,
            (None, SourceKind::Prometheus) => {
                Arc::new(prometheus::PrometheusMetrics::from_config(cfg).await?)
            }
            (None, _) => Arc::new(file::FileMetrics::new(&files.metrics)?),
        };
        Ok(Sources {
            activities,
            logs,
            metrics,
        })
    }

    /// API calls made by all three sources, by operation.
    /// See [`LogSource::begin_scan`].
    pub fn begin_scan(&self) {
        self.logs.begin_scan();
        self.metrics.begin_scan();
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        let mut all = self.activities.calls();
        for (k, v) in self.logs.calls().into_iter().chain(self.metrics.calls()) {
            *all.entry(k).or_insert(0) += v;
        }
        all
    }
}

type Backends = (
    Option<Arc<dyn ActivitySource>>,
    Option<Arc<dyn LogSource>>,
    Option<Arc<dyn MetricSource>>,
);

/// The AWS-backed sources for the roles configured with kind = "aws" (one shared context).
#[cfg(feature = "aws")]
async fn aws_backends(cfg: &Config) -> Result<Backends> {
    let s = &cfg.sources;
    if !s.uses(SourceKind::Aws) {
        return Ok((None, None, None));
    }
    let ctx = aws::AwsContext::load(&cfg.aws).await?;
    let activities: Option<Arc<dyn ActivitySource>> =
        (s.activities.kind == SourceKind::Aws).then(|| {
            Arc::new(aws::AwsActivities::new(
                ctx.clone(),
                &s.activities,
                cfg.aws.api_concurrency,
            )) as _
        });
    let logs: Option<Arc<dyn LogSource>> = match s.logs.kind {
        SourceKind::Aws => Some(Arc::new(aws::AwsLogs::new(ctx.clone(), &s.logs)?)),
        _ => None,
    };
    let metrics: Option<Arc<dyn MetricSource>> = match s.metrics.kind {
        SourceKind::Aws => Some(Arc::new(aws::AwsMetrics::new(ctx, &s.metrics)?)),
        _ => None,
    };
    Ok((activities, logs, metrics))
}

#[cfg(not(feature = "aws"))]
async fn aws_backends(_cfg: &Config) -> Result<Backends> {
    Ok((None, None, None))
}

fn check_kind(key: &str, kind: SourceKind) -> Result<()> {
    match kind {
        SourceKind::File => Ok(()),
        SourceKind::Prometheus if key == "sources.metrics.kind" => Ok(()),
        SourceKind::Prometheus => Err(Error::NotImplemented(format!(
            "{key} = \"prometheus\": Prometheus is a metrics backend (sources.metrics.kind)"
        ))),
        SourceKind::Splunk | SourceKind::Loki if key == "sources.logs.kind" => Ok(()),
        SourceKind::Splunk | SourceKind::Loki => Err(Error::Config(vec![format!(
            "{key} = \"{kind}\": a logs backend (set it as sources.logs.kind)"
        )])),
        SourceKind::Aws if cfg!(feature = "aws") => Ok(()),
        SourceKind::Aws => Err(Error::NotImplemented(format!(
            "{key} = \"aws\": this build has no AWS support (build with the `aws` feature)"
        ))),
    }
}

/// Calls made, by operation ("autoscaling:DescribeScalingActivities", "prometheus:query_range"),
/// for the scan summary.
#[derive(Debug, Default)]
pub struct CallCounter(std::sync::Mutex<BTreeMap<String, u64>>);

impl CallCounter {
    pub fn count(&self, op: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// At most this many skipped-record locations are kept per source (the count is exact).
pub const MAX_SKIPPED_KEPT: usize = 50;

/// Counts skipped records and keeps the first few locations.
#[derive(Debug, Default, Clone)]
pub(crate) struct SkipLog {
    pub count: usize,
    pub kept: Vec<Skipped>,
    /// Every record counted by input and kind.
    pub groups: SkipGroups,
}

impl SkipLog {
    pub fn push(&mut self, location: String, reason: impl Into<String>) {
        let reason = reason.into();
        self.count += 1;
        self.groups.add(&location, &reason, 1);
        if self.kept.len() < MAX_SKIPPED_KEPT {
            self.kept.push(Skipped { location, reason });
        }
    }

    /// Adds another log's records after this one's (the count stays exact).
    pub fn merge(&mut self, other: SkipLog) {
        let room = MAX_SKIPPED_KEPT.saturating_sub(self.kept.len());
        self.kept.extend(other.kept.into_iter().take(room));
        self.count += other.count;
        self.groups.merge(&other.groups);
    }

    /// The kept records, plus one line saying how many more there were.
    pub fn report(&self) -> Vec<Skipped> {
        let mut out = self.kept.clone();
        if self.count > self.kept.len() {
            out.push(Skipped {
                location: "…".into(),
                reason: format!(
                    "{} more skipped record(s) not listed",
                    self.count - self.kept.len()
                ),
            });
        }
        out
    }
}

/// A memory percentage above this is impossible (a little over 100 is rounding by agents).
pub const MAX_MEMORY_PERCENT: f64 = 101.0;
/// A memory value in bytes above this (1 PiB) is impossible for one instance.
pub const MAX_MEMORY_BYTES: f64 = (1u64 << 50) as f64;

/// Why a memory sample cannot be real (negative, above 100 % of a percent series, more than
/// any instance has), or `None` when it can. `unit` is `sources.metrics.unit`.
pub fn impossible_memory_value(v: f64, unit: &str) -> Option<String> {
    if !v.is_finite() {
        return Some(format!("value `{v}` is not a number"));
    }
    if v < 0.0 {
        return Some(format!("negative memory value `{v}`"));
    }
    let max = if unit == "percent" {
        MAX_MEMORY_PERCENT
    } else {
        MAX_MEMORY_BYTES
    };
    (v > max).then(|| format!("impossible value `{v}` for a {unit} series (above {max})"))
}

/// Statuses of a termination activity that did not terminate anything.
const NON_TERMINAL_STATUSES: [&str; 2] = ["Failed", "Cancelled"];

/// A scaling activity as any backend reads it (JSON export or API), before judgement.
#[derive(Debug, Clone, Default)]
pub struct RawActivity<'a> {
    pub activity_id: Option<&'a str>,
    pub asg: Option<&'a str>,
    pub description: Option<&'a str>,
    pub cause: Option<&'a str>,
    /// The parsed `StartTime`, or why it could not be parsed.
    pub start_time: Option<std::result::Result<DateTime<Utc>, String>>,
    /// The parsed `EndTime` (absent while the activity is in progress), or why not.
    pub end_time: Option<std::result::Result<DateTime<Utc>, String>>,
    pub status: Option<&'a str>,
}

/// A termination from a scaling activity: `Ok(None)` for activities that are not terminations
/// (launches, failed or cancelled ones), `Err` with the reason for a termination that cannot be
/// used.
pub fn termination_from_activity(
    a: &RawActivity<'_>,
) -> std::result::Result<Option<Termination>, String> {
    let description = a.description.unwrap_or("");
    if !description.to_ascii_lowercase().starts_with("terminating") {
        return Ok(None);
    }
    if a.status.is_some_and(|s| NON_TERMINAL_STATUSES.contains(&s)) {
        return Ok(None);
    }
    let cause_text = a.cause.unwrap_or("");
    let instance_id = file::find_instance_id(description)
        .or_else(|| file::find_instance_id(cause_text))
        .ok_or_else(|| {
            format!(
                "no instance id in Description `{}`",
                crate::timefmt::truncate(description, 80)
            )
        })?;
    let time = a.start_time.clone().ok_or("missing StartTime")??;
    let end_time = a.end_time.clone().transpose()?.filter(|e| *e >= time);
    let asg = a.asg.ok_or("missing AutoScalingGroupName")?;
    Ok(Some(Termination {
        instance_id: instance_id.to_string(),
        asg: asg.to_string(),
        time,
        end_time,
        cause: crate::analysis::cause::classify_cause(cause_text),
        cause_text: cause_text.to_string(),
        description: description.to_string(),
        activity_id: a.activity_id.map(str::to_string),
        status: a.status.map(str::to_string),
        origin: None,
    }))
}

/// Picks last words from an instance's events sorted by time: the final event at or before
/// `terminated_at + grace`, and every event in the `window` before it (inclusive).
pub fn select_last_words(sorted: &[LogEvent], query: &LastWordsQuery) -> LastWords {
    let cutoff = query.terminated_at + query.grace;
    let end = sorted.partition_point(|e| e.timestamp <= cutoff);
    let Some(last) = end.checked_sub(1).map(|i| &sorted[i]) else {
        return LastWords::default();
    };
    let from = last.timestamp - query.window;
    let begin = sorted[..end].partition_point(|e| e.timestamp < from);
    let mut events: Vec<LogEvent> = sorted[begin..end].to_vec();
    // Keep the newest lines when the window holds more than the byte cap.
    let mut bytes = 0usize;
    let mut keep_from = events.len();
    for (i, e) in events.iter().enumerate().rev() {
        bytes += e.message.len();
        if bytes > query.max_bytes {
            break;
        }
        keep_from = i;
    }
    let truncated = keep_from > 0;
    events.drain(..keep_from);
    LastWords {
        last_event_at: Some(last.timestamp),
        events,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_memory_values_are_named() {
        assert!(impossible_memory_value(55.0, "percent").is_none());
        assert!(impossible_memory_value(100.4, "percent").is_none());
        assert!(impossible_memory_value(99999.0, "percent")
            .unwrap()
            .contains("percent"));
        assert!(impossible_memory_value(-1.0, "bytes")
            .unwrap()
            .contains("negative"));
        assert!(impossible_memory_value(1e308, "bytes").is_some());
        assert!(impossible_memory_value(8e9, "bytes").is_none());
    }
    use chrono::TimeZone;

    fn ev(secs: i64, msg: &str) -> LogEvent {
        LogEvent {
            timestamp: Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap()
                + Duration::seconds(secs),
            message: msg.into(),
        }
    }

    fn q(max_bytes: usize) -> LastWordsQuery {
        LastWordsQuery {
            instance_id: "i-1".into(),
            origin: None,
            asg: "web".into(),
            terminated_at: Utc.with_ymd_and_hms(2026, 1, 5, 10, 5, 0).unwrap(),
            window: Duration::seconds(60),
            grace: Duration::seconds(30),
            max_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn window_ends_at_the_final_event_before_termination_plus_grace() {
        let events = vec![
            ev(0, "boot"),
            ev(100, "before the window"),
            ev(120, "a"),
            ev(150, "b"),
            ev(170, "c"),
            ev(400, "after grace: ignored"),
        ];
        let lw = select_last_words(&events, &q(1 << 20));
        let msgs: Vec<&str> = lw.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["a", "b", "c"]);
        assert_eq!(lw.last_event_at, Some(events[4].timestamp));
        assert!(!lw.truncated);
    }

    #[test]
    fn skipped_records_group_by_input_and_kind() {
        assert_eq!(skip_input("logs/a.json:12"), "logs/a.json");
        assert_eq!(skip_input("logs/a.json: events[3]"), "logs/a.json");
        assert_eq!(skip_input("prometheus"), "prometheus");
        assert_eq!(
            skip_kind("bad value `abc` in row 12"),
            "bad value `…` in row N"
        );
        let mut log = SkipLog::default();
        for i in 0..3000 {
            log.push(format!("m.csv:{i}"), format!("bad value `{i}`"));
        }
        log.push("n.csv:1".into(), "empty instance_id");
        let rows = log.groups.rows();
        assert_eq!(log.count, 3001);
        assert_eq!(log.kept.len(), MAX_SKIPPED_KEPT);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (rows[0].input.as_str(), rows[0].kind.as_str(), rows[0].count),
            ("m.csv", "bad value `…`", 3000)
        );
        assert_eq!(rows[1].count, 1);
    }

    #[test]
    fn no_events_is_no_evidence() {
        assert_eq!(select_last_words(&[], &q(100)), LastWords::default());
    }

    #[test]
    fn byte_cap_keeps_newest() {
        let events = vec![ev(100, "aaaa"), ev(110, "bbbb"), ev(120, "cccc")];
        let lw = select_last_words(&events, &q(8));
        let msgs: Vec<&str> = lw.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["bbbb", "cccc"]);
        assert!(lw.truncated);
    }
}
