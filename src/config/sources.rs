//! `[sources.*]`: one struct per role — `[sources.activities]`, `[sources.logs]`,
//! `[sources.metrics]` — since each role has its own keys (a key of another role is unknown
//! where it is written), and the backend tables under them (`[sources.logs.loki]`,
//! `[sources.logs.splunk]`, `[sources.metrics.prometheus]`) typed by their backend's module.
//! Kinds and options are enums; the allowed values in `config check`'s messages come from them.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `[sources]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    pub activities: ActivitiesConfig,
    pub logs: LogsConfig,
    pub metrics: MetricsConfig,
    /// Terminations pushed as they happen (`serve` only); absent: scheduled scans only.
    pub events: crate::sources::events::config::EventsConfig,
}

impl SourcesConfig {
    /// The roles' kinds, by key.
    pub fn kinds(&self) -> [(&'static str, SourceKind); 3] {
        [
            ("sources.activities.kind", self.activities.kind),
            ("sources.logs.kind", self.logs.kind),
            ("sources.metrics.kind", self.metrics.kind),
        ]
    }

    /// Whether any role reads from `kind`.
    pub fn uses(&self, kind: SourceKind) -> bool {
        self.kinds().iter().any(|(_, k)| *k == kind)
    }

    /// The sources with their file paths (`path`, `inventory`) passed through `resolve`
    /// (relative paths are relative to the config file).
    pub fn with_paths_resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> SourcesConfig {
        let mut s = self.clone();
        let r = |p: &mut Option<PathBuf>| *p = p.as_deref().map(&resolve);
        r(&mut s.activities.path);
        r(&mut s.activities.inventory);
        r(&mut s.logs.path);
        r(&mut s.metrics.path);
        s
    }
}

/// A source's backend. One list for every role (so a logs backend set as a metrics source is
/// named as such); which ones a role supports is checked with the config's other rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    File,
    Aws,
    Prometheus,
    Loki,
    Splunk,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Aws => "aws",
            SourceKind::Prometheus => "prometheus",
            SourceKind::Loki => "loki",
            SourceKind::Splunk => "splunk",
        }
    }
    /// Loki and Splunk: backends of the logs role only.
    pub fn is_logs_backend(self) -> bool {
        matches!(self, SourceKind::Loki | SourceKind::Splunk)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sources.activities]`: terminations and the inventory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActivitiesConfig {
    /// The backend: file | aws.
    pub kind: SourceKind,
    /// file: the directory or file of describe-scaling-activities exports.
    pub path: Option<PathBuf>,
    /// describe-auto-scaling-groups / describe-instances exports.
    pub inventory: Option<PathBuf>,
    /// aws: the groups to read; empty reads every group in the account/region.
    pub groups: Vec<String>,
    /// aws: with no `groups`, only groups carrying this tag (`key=value`).
    pub group_tag: Option<String>,
    /// aws: also ask EC2 (`ec2:DescribeInstances`) for each listed instance's private DNS
    /// name and IP, launch time, state and tags — what log backends that name hosts need, and
    /// where a memory series starts. Recorded each scan, so an instance that dies later is
    /// still mapped.
    pub describe_instances: bool,
}

impl Default for ActivitiesConfig {
    fn default() -> Self {
        ActivitiesConfig {
            kind: SourceKind::File,
            path: None,
            inventory: None,
            groups: Vec::new(),
            group_tag: None,
            describe_instances: true,
        }
    }
}

/// `sources.logs.format`: how log files are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Told from each file's content.
    #[default]
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// `aws logs filter-log-events` output.
    FilterLogEvents,
}

/// `sources.logs.stream_lookup`: how an instance's CloudWatch Logs streams are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamLookup {
    /// One stream named by `stream_pattern` (GetLogEvents; a missing stream means no logs).
    #[default]
    Name,
    /// Every stream whose name starts with the pattern's text up to and including the
    /// instance id (DescribeLogStreams by prefix, then FilterLogEvents on those streams).
    Search,
    /// Events that mention the instance id, in any stream (FilterLogEvents).
    Text,
}

impl StreamLookup {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamLookup::Name => "name",
            StreamLookup::Search => "search",
            StreamLookup::Text => "text",
        }
    }
}

impl std::fmt::Display for StreamLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sources.logs]`: last words.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// The backend: file | aws | splunk | loki.
    pub kind: SourceKind,
    /// file: the directory or file of log exports.
    pub path: Option<PathBuf>,
    /// file: auto | jsonl | filter_log_events.
    pub format: LogFormat,
    /// How log stream names relate to instance ids.
    pub stream_pattern: String,
    /// aws: the CloudWatch Logs log group holding the instances' streams.
    pub log_group: Option<String>,
    /// aws: more log groups, read after `log_group` (one per application or log file); an
    /// instance's last words merge what every group holds for it.
    pub log_groups: Vec<String>,
    /// aws: `name` — one stream named by `stream_pattern` (GetLogEvents; a missing stream
    /// means no logs); `search` — every stream whose name starts with the pattern's text up to
    /// and including the instance id (`i-…/app.log`, `i-…/syslog`: DescribeLogStreams by
    /// prefix, then FilterLogEvents on those streams); `text` — events that mention the
    /// instance id, in any stream (FilterLogEvents with the id as the pattern).
    pub stream_lookup: StreamLookup,
    /// splunk: `[sources.logs.splunk]`, the REST API, the search and the token.
    pub splunk: Option<crate::sources::splunk::config::SplunkConfig>,
    /// loki: `[sources.logs.loki]`, the API, the stream selector and the credentials.
    pub loki: Option<crate::sources::loki::config::LokiConfig>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            kind: SourceKind::File,
            path: None,
            format: LogFormat::Auto,
            stream_pattern: "{instance_id}".into(),
            log_group: None,
            log_groups: Vec::new(),
            stream_lookup: StreamLookup::Name,
            splunk: None,
            loki: None,
        }
    }
}

/// `sources.metrics.format`: how metric files are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricFormat {
    /// Told from each file's content.
    #[default]
    Auto,
    /// `timestamp,instance_id,value` rows.
    Csv,
    /// A Prometheus `query_range` answer.
    Prometheus,
}

/// `sources.metrics.unit`: what memory values are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Percent of the instance's memory (the limit is 100).
    #[default]
    Percent,
    /// Bytes (the limit is `limit`, or the Prometheus `limit_query`).
    Bytes,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Percent => "percent",
            Unit::Bytes => "bytes",
        }
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sources.metrics]`: memory series.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// The backend: file | aws | prometheus.
    pub kind: SourceKind,
    /// file: the directory or file of metric exports.
    pub path: Option<PathBuf>,
    /// file: auto | csv | prometheus.
    pub format: MetricFormat,
    /// The Prometheus label holding the instance id.
    pub instance_label: String,
    /// The value at which memory is exhausted (default 100 for percent).
    pub limit: Option<f64>,
    /// percent | bytes.
    pub unit: Unit,
    /// aws: the CloudWatch namespace of the memory metric.
    pub namespace: String,
    /// aws: the memory metric (the CloudWatch agent's default).
    pub metric_name: String,
    /// aws: the dimension naming the instance (file: the one naming it in a get-metric-data
    /// queries sidecar).
    pub instance_dimension: String,
    /// aws: more dimensions, `Name=Value` (`{asg}` is replaced by the group's name).
    pub extra_dimensions: Vec<String>,
    /// aws: Average | Maximum | Minimum | Sum | SampleCount | pNN (file: preferred in a
    /// get-metric-statistics datapoint).
    pub statistic: String,
    /// aws: the series' period.
    pub period: HumanDuration,
    /// prometheus: `[sources.metrics.prometheus]`, the API and its PromQL.
    pub prometheus: Option<crate::sources::prometheus::config::PrometheusConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            kind: SourceKind::File,
            path: None,
            format: MetricFormat::Auto,
            instance_label: "instance_id".into(),
            limit: None,
            unit: Unit::Percent,
            namespace: "CWAgent".into(),
            metric_name: "mem_used_percent".into(),
            instance_dimension: "InstanceId".into(),
            extra_dimensions: Vec::new(),
            statistic: "Maximum".into(),
            period: HumanDuration::default_of("60s"),
            prometheus: None,
        }
    }
}

impl MetricsConfig {
    /// The memory limit: the configured one, or 100 for percentages.
    pub fn memory_limit(&self) -> Option<f64> {
        self.limit
            .or_else(|| (self.unit == Unit::Percent).then_some(100.0))
    }
}
