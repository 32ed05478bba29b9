//! Configuration: a TOML file (documented key by key in `config/epitaph.example.toml`), with
//! environment overrides `EPITAPH_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `EPITAPH_SCAN__CONCURRENCY=8`, `EPITAPH_SOURCES__LOGS__PATH=/data/logs`).
//!
//! Loading validates against a schema of known keys first, so that `epitaph config check`
//! reports every problem at once, each with its key, instead of stopping at the first.
//!
//! Length: the key schema, validation of every problem at once, environment layering and the
//! typed sections live together until the config is typed by serde per source role (issue 14:
//! `SourceConfig` serves three roles whose keys differ, which a derived schema cannot yet
//! express); about 400 lines are its unit tests.

use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::analysis::correlate::{DeploymentIdentity, FindingPolicy};
pub use crate::analysis::early_warning::EarlyWarningScope;
use crate::error::{Error, Result};
use crate::timefmt;

/// Environment variables with this prefix and a `__` override config keys.
pub const ENV_PREFIX: &str = "EPITAPH_";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub scan: ScanConfig,
    pub deployment: DeploymentConfig,
    pub analysis: AnalysisConfig,
    pub state: StateConfig,
    pub signatures: SignaturesConfig,
    pub sources: SourcesConfig,
    pub aws: AwsConfig,
    pub alerts: AlertsConfig,
    pub serve: ServeConfig,
    /// Directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config came from, for messages.
    #[serde(skip)]
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Window start when the store has no previous run: a duration back from now or an instant.
    pub since: String,
    /// Window end: an instant, or a duration back from now; default now.
    pub until: Option<String>,
    pub last_words_window: String,
    pub last_words_grace: String,
    /// How long an instance may still run (and log) after its termination began when the
    /// activity's EndTime is unknown: lifecycle hooks, load-balancer deregistration delay.
    pub drain_window: String,
    pub last_words_max_bytes: usize,
    pub series_lookback: String,
    pub concurrency: usize,
    pub fetch_timeout: String,
    pub finding_lookback: String,
    pub overlap: String,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            since: "24h".into(),
            until: None,
            last_words_window: "60s".into(),
            last_words_grace: "2m".into(),
            drain_window: "5m".into(),
            last_words_max_bytes: 256 * 1024,
            series_lookback: "7d".into(),
            concurrency: 16,
            fetch_timeout: "30s".into(),
            finding_lookback: "7d".into(),
            overlap: "15m".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// asg | launch_template | tag | log_field | metric_label
    pub identity: String,
    pub tag: Option<String>,
    pub log_field: Option<String>,
    pub metric_label: Option<String>,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            identity: "asg".into(),
            tag: None,
            log_field: None,
            metric_label: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    pub min_instances: usize,
    /// Which running instances get a projected time to their memory limit: those of
    /// deployments judged `leaking` (default), every running instance (`all`: a leak is seen
    /// before its first death, at one series per instance per scan), or none (`off`).
    pub early_warning: EarlyWarningScope,
    /// At most this many running instances are projected per scan (oldest launches first:
    /// they are nearest their limit).
    pub early_warning_max_instances: usize,
}

/// Default of `analysis.early_warning_max_instances`.
pub const DEFAULT_EARLY_WARNING_MAX_INSTANCES: usize = 200;

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            min_instances: crate::analysis::correlate::DEFAULT_MIN_INSTANCES,
            early_warning: EarlyWarningScope::Leaking,
            early_warning_max_instances: DEFAULT_EARLY_WARNING_MAX_INSTANCES,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The SQLite file (the default store): one process, or several on one host.
    pub path: PathBuf,
    /// A PostgreSQL database (`postgres://user:password@host:5432/epitaph?sslmode=require`)
    /// shared by several replicas; when set, `path` is not used. Carries a password: never
    /// shown (`EPITAPH_STATE__URL` keeps it out of the file).
    pub url: Option<Secret>,
    /// How long an instance's evidence (its full report: series, last words, matched lines)
    /// is kept after its termination; each scan deletes what is older, as of its window's end.
    pub retention: String,
    /// How long an instance's compact row (what judging needs) is kept: at least `retention`
    /// and `scan.finding_lookback`. An instance whose row is gone would be analysed again if a
    /// scan's window reached back to it.
    pub facts_retention: String,
}

/// Default `state.retention`: four finding lookbacks of evidence.
pub const DEFAULT_EVIDENCE_RETENTION: &str = "30d";
/// Default `state.facts_retention`: past the six weeks of activity history Auto Scaling
/// keeps, so no termination it can still report is analysed twice.
pub const DEFAULT_FACTS_RETENTION: &str = "90d";

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("epitaph.db"),
            url: None,
            retention: DEFAULT_EVIDENCE_RETENTION.into(),
            facts_retention: DEFAULT_FACTS_RETENTION.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignaturesConfig {
    pub extra: Option<PathBuf>,
}

/// Where and how the AWS backends call AWS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Default region (else the SDK's chain: AWS_REGION, the profile).
    pub region: Option<String>,
    /// A named profile from ~/.aws/config (else AWS_PROFILE or the default chain).
    pub profile: Option<String>,
    /// One endpoint for every service (tests, VPC endpoints). AWS_ENDPOINT_URL and
    /// AWS_ENDPOINT_URL_<SERVICE> keep working without it.
    pub endpoint_url: Option<String>,
    /// Regions and accounts to read: "REGION", or "ROLE_ARN@REGION" to assume a role there.
    /// Empty: the default region with the default credentials.
    pub targets: Vec<String>,
    /// Attempts per call (standard retry mode: exponential backoff with jitter on throttling,
    /// 5xx and timeouts).
    pub max_attempts: u32,
    /// A whole call, all attempts included.
    pub call_timeout: String,
    /// One attempt.
    pub attempt_timeout: String,
    /// Calls in flight at once per API (activities and inventory; log fetches follow
    /// scan.concurrency).
    pub api_concurrency: usize,
    /// Requests per second per operation and target (account and region), over the defaults
    /// of `sources::ratelimit::AWS_DEFAULTS` (about 80 % of each documented quota): `{
    /// "logs:GetLogEvents" = 20 }`; 0 lifts a limit. Throttled answers lower the rate for
    /// every caller until successes win it back.
    pub rate_limits: std::collections::BTreeMap<String, f64>,
    /// The `ExternalId` a role's trust policy asks for (the same for every role in
    /// `aws.targets`; a third party's roles usually require one).
    pub external_id: Option<String>,
    /// The session name roles are assumed with: CloudTrail shows it beside every call.
    pub session_name: String,
    /// How long an assumed role's credentials last (15 min to the role's maximum, 1 h by
    /// default); they are fetched again shortly before they expire, however long `serve` runs.
    pub session_duration: String,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            profile: None,
            endpoint_url: None,
            targets: Vec::new(),
            max_attempts: 5,
            call_timeout: "30s".into(),
            attempt_timeout: "10s".into(),
            api_concurrency: 4,
            rate_limits: std::collections::BTreeMap::new(),
            external_id: None,
            session_name: DEFAULT_SESSION_NAME.into(),
            session_duration: "1h".into(),
        }
    }
}

/// The session name roles are assumed with unless `aws.session_name` says otherwise.
pub const DEFAULT_SESSION_NAME: &str = "epitaph";
/// STS's shortest and longest role sessions (the role's own maximum may be lower).
pub const MIN_ROLE_SESSION: std::time::Duration = std::time::Duration::from_secs(15 * 60);
pub const MAX_ROLE_SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

impl AwsConfig {
    pub fn call_timeout(&self) -> Duration {
        dur(&self.call_timeout)
    }
    pub fn session_duration(&self) -> Duration {
        dur(&self.session_duration)
    }
    pub fn attempt_timeout(&self) -> Duration {
        dur(&self.attempt_timeout)
    }
}

/// A secret from the config (webhook URL, API token): never shown by `Debug`, so a logged
/// config or error cannot leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself: only for the place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// Where alerts go, when, and what is masked in them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Slack incoming-webhook URL (Block Kit; Mattermost and Discord's /slack endpoint accept
    /// it too). A secret: prefer EPITAPH_ALERTS__SLACK_WEBHOOK_URL.
    pub slack_webhook_url: Option<Secret>,
    /// Generic JSON webhook URL (schema `epitaph.alert.v1`). A secret as well.
    pub webhook_url: Option<Secret>,
    /// Deployment verdicts that raise an alert.
    pub verdicts: Vec<String>,
    /// Least time between two messages about one deployment, unless its severity rises.
    pub cooldown: String,
    /// A firing deployment with no death for this long is resolved.
    pub resolve_after: String,
    /// Link template per instance (Grafana or similar): {instance_id}, {deployment}, {asg},
    /// {from_ms}, {to_ms}, {from}, {to}.
    pub dashboard_url_template: Option<String>,
    /// Regexes masked in last-words text, beside the built-in secret patterns.
    pub redact_patterns: Vec<String>,
    /// Delivery attempts per message before it is marked failed.
    pub max_attempts: u32,
    /// One delivery request.
    pub request_timeout: String,
    /// Retry delay ceiling for the first retry; doubles per attempt up to `max_backoff`; half of
    /// each wait is fixed, half random.
    pub base_backoff: String,
    pub max_backoff: String,
    /// `epitaph scan` waits at most this long for deliveries after a scan; the rest stay in
    /// the outbox for the next run or the service.
    pub flush_timeout: String,
    /// How long a sender holds a message it is delivering; another sender (a replica, or this
    /// one after a crash) may take it over afterwards.
    pub lease: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            slack_webhook_url: None,
            webhook_url: None,
            verdicts: vec!["leaking".into(), "oom_without_leak".into()],
            cooldown: "1h".into(),
            resolve_after: "24h".into(),
            dashboard_url_template: None,
            redact_patterns: Vec::new(),
            max_attempts: 12,
            request_timeout: "10s".into(),
            base_backoff: "2s".into(),
            max_backoff: "10m".into(),
            flush_timeout: "30s".into(),
            lease: "1m".into(),
        }
    }
}

impl AlertsConfig {
    pub fn cooldown(&self) -> Duration {
        dur(&self.cooldown)
    }
    pub fn resolve_after(&self) -> Duration {
        dur(&self.resolve_after)
    }
    pub fn request_timeout(&self) -> Duration {
        dur(&self.request_timeout)
    }
    pub fn base_backoff(&self) -> Duration {
        dur(&self.base_backoff)
    }
    pub fn max_backoff(&self) -> Duration {
        dur(&self.max_backoff)
    }
    pub fn flush_timeout(&self) -> Duration {
        dur(&self.flush_timeout)
    }
    pub fn lease(&self) -> Duration {
        dur(&self.lease)
    }
    /// The configured sinks, by name.
    pub fn sinks(&self) -> Vec<(&'static str, &Secret)> {
        let mut v = Vec::new();
        if let Some(u) = self.slack_webhook_url.as_ref().filter(|u| !u.is_empty()) {
            v.push(("slack", u));
        }
        if let Some(u) = self.webhook_url.as_ref().filter(|u| !u.is_empty()) {
            v.push(("webhook", u));
        }
        v
    }
}

/// `epitaph serve`: schedule and HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Cron expression for scans, 5 fields (minute first) or 6 (seconds first), UTC.
    pub schedule: String,
    /// Bearer token for every route but /healthz. A secret: prefer EPITAPH_SERVE__TOKEN.
    pub token: Option<Secret>,
    /// Serve without a token (only allowed on a loopback address).
    pub allow_anonymous: bool,
    /// How often the outbox is checked for messages due.
    pub delivery_interval: String,
    /// On SIGTERM: how long to let a running scan finish and the outbox drain.
    pub shutdown_grace: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:9464".into(),
            schedule: "*/15 * * * *".into(),
            token: None,
            allow_anonymous: false,
            delivery_interval: "5s".into(),
            shutdown_grace: "30s".into(),
        }
    }
}

impl ServeConfig {
    pub fn delivery_interval(&self) -> Duration {
        dur(&self.delivery_interval)
    }
    pub fn shutdown_grace(&self) -> Duration {
        dur(&self.shutdown_grace)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    pub activities: SourceConfig,
    pub logs: SourceConfig,
    pub metrics: SourceConfig,
    /// Terminations pushed as they happen (`serve` only); absent: scheduled scans only.
    pub events: crate::sources::events::config::EventsConfig,
}

/// One source's settings. Which keys apply depends on the role; the schema rejects keys that
/// do not apply to a role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: String,
    pub path: Option<PathBuf>,
    /// activities: describe-auto-scaling-groups / describe-instances exports.
    pub inventory: Option<PathBuf>,
    /// logs: auto | jsonl | filter_log_events; metrics: auto | csv | prometheus.
    pub format: String,
    /// logs: how log stream names relate to instance ids.
    pub stream_pattern: String,
    /// metrics: the Prometheus label holding the instance id.
    pub instance_label: String,
    /// metrics: the value at which memory is exhausted (default 100 for percent).
    pub limit: Option<f64>,
    /// metrics: percent | bytes.
    pub unit: String,
    /// activities (aws): the groups to read; empty reads every group in the account/region.
    pub groups: Vec<String>,
    /// activities (aws): with no `groups`, only groups carrying this tag (`key=value`).
    pub group_tag: Option<String>,
    /// activities (aws): also ask EC2 (`ec2:DescribeInstances`) for each listed instance's
    /// private DNS name and IP, launch time, state and tags — what log backends that name
    /// hosts need, and where a memory series starts. Recorded each scan, so an instance that
    /// dies later is still mapped.
    pub describe_instances: bool,
    /// logs (aws): the CloudWatch Logs log group holding the instances' streams.
    pub log_group: Option<String>,
    /// logs (aws): more log groups, read after `log_group` (one per application or log file);
    /// an instance's last words merge what every group holds for it.
    pub log_groups: Vec<String>,
    /// logs (aws): `name` — one stream named by `stream_pattern` (GetLogEvents; a missing
    /// stream means no logs); `search` — every stream whose name starts with the pattern's
    /// text up to and including the instance id (`i-…/app.log`, `i-…/syslog`: DescribeLogStreams
    /// by prefix, then FilterLogEvents on those streams); `text` — events that mention the
    /// instance id, in any stream (FilterLogEvents with the id as the pattern).
    pub stream_lookup: String,
    /// metrics (aws): CloudWatch namespace, metric and the dimension naming the instance (also
    /// read in the file backend's CloudWatch exports).
    pub namespace: String,
    pub metric_name: String,
    pub instance_dimension: String,
    /// metrics (aws): more dimensions, `Name=Value` (`{asg}` is replaced by the group's name).
    pub extra_dimensions: Vec<String>,
    /// metrics (aws): Average | Maximum | Minimum | Sum | SampleCount | pNN (file: preferred in
    /// a get-metric-statistics datapoint).
    pub statistic: String,
    /// metrics (aws): the series' period.
    pub period: String,
    /// metrics (prometheus): `[sources.metrics.prometheus]`, the API and its PromQL.
    pub prometheus: Option<crate::sources::prometheus::config::PrometheusConfig>,
    /// logs (splunk): `[sources.logs.splunk]`, the REST API, the search and the token.
    pub splunk: Option<crate::sources::splunk::config::SplunkConfig>,
    /// logs (loki): `[sources.logs.loki]`, the API, the stream selector and the credentials.
    pub loki: Option<crate::sources::loki::config::LokiConfig>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: "file".into(),
            path: None,
            inventory: None,
            format: "auto".into(),
            stream_pattern: "{instance_id}".into(),
            instance_label: "instance_id".into(),
            limit: None,
            unit: "percent".into(),
            groups: Vec::new(),
            group_tag: None,
            describe_instances: true,
            log_group: None,
            log_groups: Vec::new(),
            stream_lookup: "name".into(),
            namespace: "CWAgent".into(),
            metric_name: "mem_used_percent".into(),
            instance_dimension: "InstanceId".into(),
            extra_dimensions: Vec::new(),
            statistic: "Maximum".into(),
            period: "60s".into(),
            prometheus: None,
            splunk: None,
            loki: None,
        }
    }
}

impl SourceConfig {
    /// The memory limit: the configured one, or 100 for percentages.
    pub fn memory_limit(&self) -> Option<f64> {
        self.limit
            .or_else(|| (self.unit == "percent").then_some(100.0))
    }
}

/// The type a key must have.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Path,
    Int {
        min: i64,
    },
    Float,
    Duration,
    Since,
    OneOf(&'static [&'static str]),
    StrList,
    /// A table of strings (`headers = { "X-Scope-OrgID" = "tenant-1" }`); from the
    /// environment, a JSON object.
    StrMap,
    /// A table of non-negative numbers (`rate_limits = { "logs:GetLogEvents" = 20 }`); from
    /// the environment, a JSON object.
    NumMap,
    Bool,
}

const LOG_FORMATS: &[&str] = &["auto", "jsonl", "filter_log_events"];
const METRIC_FORMATS: &[&str] = &["auto", "csv", "prometheus"];
const IDENTITIES: &[&str] = &["asg", "launch_template", "tag", "log_field", "metric_label"];
const SOURCE_KINDS: &[&str] = &["file", "aws", "prometheus", "loki", "splunk"];

/// Every key the config accepts, with its type.
const SCHEMA: &[(&str, Kind)] = &[
    ("scan.since", Kind::Since),
    ("scan.until", Kind::Since),
    ("scan.last_words_window", Kind::Duration),
    ("scan.last_words_grace", Kind::Duration),
    ("scan.drain_window", Kind::Duration),
    ("scan.last_words_max_bytes", Kind::Int { min: 1024 }),
    ("scan.series_lookback", Kind::Duration),
    ("scan.concurrency", Kind::Int { min: 1 }),
    ("scan.fetch_timeout", Kind::Duration),
    ("scan.finding_lookback", Kind::Duration),
    ("scan.overlap", Kind::Duration),
    ("deployment.identity", Kind::OneOf(IDENTITIES)),
    ("deployment.tag", Kind::Str),
    ("deployment.log_field", Kind::Str),
    ("deployment.metric_label", Kind::Str),
    ("analysis.min_instances", Kind::Int { min: 1 }),
    (
        "analysis.early_warning",
        Kind::OneOf(&["leaking", "all", "off"]),
    ),
    ("analysis.early_warning_max_instances", Kind::Int { min: 1 }),
    ("state.path", Kind::Path),
    ("state.url", Kind::Str),
    ("state.retention", Kind::Duration),
    ("state.facts_retention", Kind::Duration),
    ("signatures.extra", Kind::Path),
    ("sources.events.kind", Kind::OneOf(&["none", "sqs"])),
    ("sources.events.queue_url", Kind::Str),
    ("sources.events.settle", Kind::Duration),
    ("sources.events.wait_time", Kind::Duration),
    ("sources.events.max_messages", Kind::Int { min: 1 }),
    ("sources.events.visibility_timeout", Kind::Duration),
    ("sources.events.retry_after", Kind::Duration),
    ("sources.activities.kind", Kind::OneOf(SOURCE_KINDS)),
    ("sources.activities.path", Kind::Path),
    ("sources.activities.inventory", Kind::Path),
    ("sources.logs.kind", Kind::OneOf(SOURCE_KINDS)),
    ("sources.logs.path", Kind::Path),
    ("sources.logs.format", Kind::OneOf(LOG_FORMATS)),
    ("sources.logs.stream_pattern", Kind::Str),
    ("sources.metrics.kind", Kind::OneOf(SOURCE_KINDS)),
    ("sources.metrics.path", Kind::Path),
    ("sources.metrics.format", Kind::OneOf(METRIC_FORMATS)),
    ("sources.metrics.instance_label", Kind::Str),
    ("sources.metrics.limit", Kind::Float),
    ("sources.metrics.unit", Kind::OneOf(&["percent", "bytes"])),
    ("sources.activities.groups", Kind::StrList),
    ("sources.activities.group_tag", Kind::Str),
    ("sources.activities.describe_instances", Kind::Bool),
    ("sources.logs.log_group", Kind::Str),
    ("sources.logs.log_groups", Kind::StrList),
    (
        "sources.logs.stream_lookup",
        Kind::OneOf(&["name", "search", "text"]),
    ),
    ("sources.metrics.namespace", Kind::Str),
    ("sources.metrics.metric_name", Kind::Str),
    ("sources.metrics.instance_dimension", Kind::Str),
    ("sources.metrics.extra_dimensions", Kind::StrList),
    ("sources.metrics.statistic", Kind::Str),
    ("sources.metrics.period", Kind::Duration),
    ("sources.metrics.prometheus.url", Kind::Str),
    ("sources.metrics.prometheus.query", Kind::Str),
    ("sources.metrics.prometheus.limit_query", Kind::Str),
    ("sources.metrics.prometheus.step", Kind::Duration),
    (
        "sources.metrics.prometheus.max_points",
        Kind::Int {
            min: crate::sources::prometheus::config::MIN_MAX_POINTS as i64,
        },
    ),
    ("sources.metrics.prometheus.batch", Kind::Int { min: 1 }),
    (
        "sources.metrics.prometheus.concurrency",
        Kind::Int { min: 1 },
    ),
    ("sources.metrics.prometheus.rate_limit", Kind::Float),
    ("sources.metrics.prometheus.timeout", Kind::Duration),
    (
        "sources.metrics.prometheus.max_attempts",
        Kind::Int { min: 1 },
    ),
    ("sources.metrics.prometheus.bearer_token", Kind::Str),
    ("sources.metrics.prometheus.bearer_token_file", Kind::Path),
    ("sources.metrics.prometheus.username", Kind::Str),
    ("sources.metrics.prometheus.password", Kind::Str),
    ("sources.metrics.prometheus.headers", Kind::StrMap),
    ("sources.metrics.prometheus.sigv4.region", Kind::Str),
    ("sources.metrics.prometheus.sigv4.service", Kind::Str),
    ("sources.logs.splunk.url", Kind::Str),
    ("sources.logs.splunk.index", Kind::Str),
    ("sources.logs.splunk.sourcetype", Kind::Str),
    ("sources.logs.splunk.instance_filter", Kind::Str),
    (
        "sources.logs.splunk.auth_scheme",
        Kind::OneOf(&["bearer", "splunk"]),
    ),
    ("sources.logs.splunk.token", Kind::Str),
    ("sources.logs.splunk.token_file", Kind::Path),
    ("sources.logs.splunk.token_env", Kind::Str),
    ("sources.logs.splunk.max_events", Kind::Int { min: 1 }),
    ("sources.logs.splunk.lookback", Kind::Duration),
    ("sources.logs.splunk.timeout", Kind::Duration),
    ("sources.logs.splunk.max_attempts", Kind::Int { min: 1 }),
    ("sources.logs.splunk.concurrency", Kind::Int { min: 1 }),
    ("sources.logs.splunk.rate_limit", Kind::Float),
    ("sources.logs.splunk.ca_file", Kind::Path),
    ("sources.logs.loki.url", Kind::Str),
    ("sources.logs.loki.selector", Kind::Str),
    ("sources.logs.loki.line_filter", Kind::Str),
    ("sources.logs.loki.tenant_id", Kind::Str),
    ("sources.logs.loki.username", Kind::Str),
    ("sources.logs.loki.password", Kind::Str),
    ("sources.logs.loki.password_file", Kind::Path),
    ("sources.logs.loki.bearer_token", Kind::Str),
    ("sources.logs.loki.bearer_token_file", Kind::Path),
    ("sources.logs.loki.limit", Kind::Int { min: 1 }),
    ("sources.logs.loki.lookback", Kind::Duration),
    ("sources.logs.loki.timeout", Kind::Duration),
    ("sources.logs.loki.max_attempts", Kind::Int { min: 1 }),
    ("sources.logs.loki.concurrency", Kind::Int { min: 1 }),
    ("sources.logs.loki.rate_limit", Kind::Float),
    ("sources.logs.loki.ca_file", Kind::Path),
    ("aws.region", Kind::Str),
    ("aws.profile", Kind::Str),
    ("aws.endpoint_url", Kind::Str),
    ("aws.targets", Kind::StrList),
    ("aws.max_attempts", Kind::Int { min: 1 }),
    ("aws.call_timeout", Kind::Duration),
    ("aws.attempt_timeout", Kind::Duration),
    ("aws.api_concurrency", Kind::Int { min: 1 }),
    ("aws.rate_limits", Kind::NumMap),
    ("aws.external_id", Kind::Str),
    ("aws.session_name", Kind::Str),
    ("aws.session_duration", Kind::Duration),
    ("alerts.slack_webhook_url", Kind::Str),
    ("alerts.webhook_url", Kind::Str),
    ("alerts.verdicts", Kind::StrList),
    ("alerts.cooldown", Kind::Duration),
    ("alerts.resolve_after", Kind::Duration),
    ("alerts.dashboard_url_template", Kind::Str),
    ("alerts.redact_patterns", Kind::StrList),
    ("alerts.max_attempts", Kind::Int { min: 1 }),
    ("alerts.request_timeout", Kind::Duration),
    ("alerts.base_backoff", Kind::Duration),
    ("alerts.max_backoff", Kind::Duration),
    ("alerts.flush_timeout", Kind::Duration),
    ("alerts.lease", Kind::Duration),
    ("serve.listen", Kind::Str),
    ("serve.schedule", Kind::Str),
    ("serve.token", Kind::Str),
    ("serve.allow_anonymous", Kind::Bool),
    ("serve.delivery_interval", Kind::Duration),
    ("serve.shutdown_grace", Kind::Duration),
];

fn schema_kind(key: &str) -> Option<Kind> {
    SCHEMA
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
}

fn is_section(key: &str) -> bool {
    SCHEMA
        .iter()
        .any(|(k, _)| k.starts_with(key) && k[key.len()..].starts_with('.'))
}

impl Config {
    /// Loads `path`, or with no path the built-in defaults; applies `EPITAPH_…__…` overrides
    /// from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                Config::parse(&text, &p.display().to_string(), &base, &env)
            }
            None => {
                let base = std::env::current_dir().unwrap_or_default();
                Config::parse("", "(defaults)", &base, &env)
            }
        }
    }

    /// Parses config text, applies overrides from `env`, validates every key (all problems
    /// reported together), and resolves relative paths against `base_dir`.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Config> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", crate::analysis::signatures::line_of(text, s.start)))
                .unwrap_or_default();
            Error::input(format!("{origin}{line}"), e.message().to_string())
        })?;
        let mut problems = Vec::new();
        apply_env(&mut table, env, &mut problems);
        validate_table(&table, "", &mut problems);
        if !problems.is_empty() {
            return Err(Error::Config(
                problems
                    .into_iter()
                    .map(|p| format!("{origin}: {p}"))
                    .collect(),
            ));
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::Config(vec![format!("{origin}: {}", e.message())])
                })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.origin = origin.to_string();
        let problems = cfg.semantic_problems();
        if !problems.is_empty() {
            return Err(Error::Config(
                problems
                    .into_iter()
                    .map(|p| format!("{origin}: {p}"))
                    .collect(),
            ));
        }
        Ok(cfg)
    }

    /// Cross-key checks that the schema cannot express.
    fn semantic_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let d = &self.deployment;
        let need = |set: bool, key: &str, p: &mut Vec<String>| {
            if !set {
                p.push(format!(
                    "{key}: required when deployment.identity = \"{}\"",
                    d.identity
                ));
            }
        };
        match d.identity.as_str() {
            "tag" => need(d.tag.is_some(), "deployment.tag", &mut p),
            "log_field" => need(d.log_field.is_some(), "deployment.log_field", &mut p),
            "metric_label" => need(d.metric_label.is_some(), "deployment.metric_label", &mut p),
            _ => {}
        }
        if !self.sources.logs.stream_pattern.contains("{instance_id}") {
            p.push(
                "sources.logs.stream_pattern: must contain the {instance_id} placeholder".into(),
            );
        }
        let s = &self.sources;
        if s.logs.kind == "aws" && s.logs.log_group.is_none() && s.logs.log_groups.is_empty() {
            p.push(
                "sources.logs.log_group: required for kind = \"aws\" (or sources.logs.log_groups)"
                    .into(),
            );
        }
        if let Some(tag) = &s.activities.group_tag {
            if !tag.contains('=') {
                p.push(format!(
                    "sources.activities.group_tag: `{tag}` must be key=value"
                ));
            }
        }
        for (i, d) in s.metrics.extra_dimensions.iter().enumerate() {
            if !d.contains('=') {
                p.push(format!(
                    "sources.metrics.extra_dimensions[{i}]: `{d}` must be Name=Value"
                ));
            }
        }
        let stat = s.metrics.statistic.as_str();
        let percentile = stat
            .strip_prefix('p')
            .is_some_and(|n| n.parse::<f64>().is_ok_and(|v| v > 0.0 && v < 100.0));
        if !percentile && !["Average", "Maximum", "Minimum", "Sum", "SampleCount"].contains(&stat) {
            p.push(format!("sources.metrics.statistic: `{stat}` is not Average, Maximum, Minimum, Sum, SampleCount or pNN"));
        }
        for (i, t) in self.aws.targets.iter().enumerate() {
            if let Err(e) = parse_target(t) {
                p.push(format!("aws.targets[{i}]: {e}"));
            }
        }
        if let Ok(d) = self.aws.session_duration().to_std() {
            if !(MIN_ROLE_SESSION..=MAX_ROLE_SESSION).contains(&d) {
                p.push(format!(
                    "aws.session_duration: `{}` is outside what STS allows (15m to 12h)",
                    self.aws.session_duration
                ));
            }
        }
        // STS: 2–64 characters of [\w+=,.@-].
        let name = &self.aws.session_name;
        let name_ok = (2..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !name_ok {
            p.push(format!(
                "aws.session_name: `{name}` must be 2 to 64 characters of letters, digits and _+=,.@-"
            ));
        }
        for (key, url) in [
            ("alerts.slack_webhook_url", &self.alerts.slack_webhook_url),
            ("alerts.webhook_url", &self.alerts.webhook_url),
        ] {
            if let Some(u) = url.as_ref().filter(|u| !u.is_empty()) {
                let u = u.expose();
                // Never echo the URL: it is the secret.
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    p.push(format!("{key}: must be an http(s) URL (value not shown)"));
                }
            }
        }
        p.extend(self.retention_problems());
        if let Some(u) = self.state.url.as_ref().filter(|u| !u.is_empty()) {
            let u = u.expose();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                p.push(format!(
                    "state.url: must be a postgres:// or postgresql:// URL, not `{}` (for SQLite set state.path)",
                    u.split("://").next().unwrap_or("")
                ));
            }
        }
        for (i, v) in self.alerts.verdicts.iter().enumerate() {
            if crate::model::DeploymentVerdict::parse(v).is_none() {
                p.push(format!(
                    "alerts.verdicts[{i}]: `{v}` is not one of leaking, oom_without_leak, crashing, insufficient_evidence, healthy"
                ));
            }
        }
        for (i, r) in self.alerts.redact_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(r) {
                p.push(format!("alerts.redact_patterns[{i}]: {e}"));
            }
        }
        if let Err(e) = crate::schedule::Schedule::parse(&self.serve.schedule) {
            p.push(format!("serve.schedule: {e}"));
        }
        if self.serve.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "serve.listen: `{}` is not an address like 127.0.0.1:9464",
                self.serve.listen
            ));
        }
        if s.metrics.kind == "prometheus" {
            let default = crate::sources::prometheus::config::PrometheusConfig::default();
            p.extend(
                s.metrics
                    .prometheus
                    .as_ref()
                    .unwrap_or(&default)
                    .problems(&s.metrics),
            );
        }
        for (key, src) in [
            ("sources.activities.kind", &s.activities),
            ("sources.metrics.kind", &s.metrics),
        ] {
            if matches!(src.kind.as_str(), "splunk" | "loki") {
                p.push(format!(
                    "{key}: `{}` is a logs backend (set it as sources.logs.kind)",
                    src.kind
                ));
            }
        }
        match s.logs.kind.as_str() {
            "splunk" => p.extend(s.logs.splunk.clone().unwrap_or_default().problems()),
            "loki" => p.extend(s.logs.loki.clone().unwrap_or_default().problems()),
            _ => {}
        }
        p.extend(s.events.problems());
        for op in self.aws.rate_limits.keys() {
            if !crate::sources::ratelimit::AWS_DEFAULTS
                .iter()
                .any(|(known, _, _)| known == op)
            {
                let known: Vec<&str> = crate::sources::ratelimit::AWS_DEFAULTS
                    .iter()
                    .map(|(o, _, _)| *o)
                    .collect();
                p.push(format!(
                    "aws.rate_limits: `{op}` is not an operation epitaph calls ({})",
                    known.join(", ")
                ));
            }
        }
        if cfg!(not(feature = "aws"))
            && s.events.kind != crate::sources::events::config::EventsKind::None
        {
            p.push("sources.events.kind: `sqs` needs the AWS backends, which this build leaves out (build with the default features)".into());
        }
        if let Some(l) = self.sources.metrics.limit {
            if !(l.is_finite() && l > 0.0) {
                p.push(format!(
                    "sources.metrics.limit: must be a positive number, got {l}"
                ));
            }
        }
        p
    }

    /// Problems only visible on this machine: missing input paths. Used by `config check`
    /// (a scan reports them when it opens the sources).
    pub fn filesystem_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let s = &self.sources;
        for (key, src) in [
            ("sources.activities", &s.activities),
            ("sources.logs", &s.logs),
            ("sources.metrics", &s.metrics),
        ] {
            if src.kind != "file" {
                continue;
            }
            match &src.path {
                None => p.push(format!("{key}.path: required for kind = \"file\"")),
                Some(path) => {
                    let full = self.resolve(path);
                    if !full.exists() {
                        p.push(format!("{key}.path: {} does not exist", full.display()));
                    }
                }
            }
        }
        if let Some(inv) = &s.activities.inventory {
            let full = self.resolve(inv);
            if !full.exists() {
                p.push(format!(
                    "sources.activities.inventory: {} does not exist",
                    full.display()
                ));
            }
        }
        if let Some(f) = s
            .metrics
            .prometheus
            .as_ref()
            .filter(|_| s.metrics.kind == "prometheus")
            .and_then(|p| p.bearer_token_file.as_ref())
        {
            let full = self.resolve(f);
            if !full.is_file() {
                p.push(format!(
                    "sources.metrics.prometheus.bearer_token_file: {} is not a readable file",
                    full.display()
                ));
            }
        }
        p.extend(self.log_backend_machine_problems());
        if let Some(extra) = &self.signatures.extra {
            let full = self.resolve(extra);
            if !full.exists() {
                p.push(format!(
                    "signatures.extra: {} does not exist",
                    full.display()
                ));
            }
        }
        p
    }

    /// The log backend's files (token, password, CA) that do not exist here, and a token's
    /// environment variable that is not set.
    fn log_backend_machine_problems(&self) -> Vec<String> {
        let logs = &self.sources.logs;
        let mut files: Vec<(String, &PathBuf)> = Vec::new();
        let mut p = Vec::new();
        match (logs.kind.as_str(), &logs.splunk, &logs.loki) {
            ("splunk", Some(c), _) => {
                let key = crate::sources::splunk::config::KEY;
                files.extend(
                    c.token_file
                        .iter()
                        .map(|f| (format!("{key}.token_file"), f)),
                );
                files.extend(c.ca_file.iter().map(|f| (format!("{key}.ca_file"), f)));
                if let Some(var) = &c.token_env {
                    if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                        p.push(format!(
                            "{key}.token_env: the environment variable {var} is not set (or empty)"
                        ));
                    }
                }
            }
            ("loki", _, Some(c)) => {
                let key = crate::sources::loki::config::KEY;
                for (leaf, f) in [
                    ("password_file", &c.password_file),
                    ("bearer_token_file", &c.bearer_token_file),
                    ("ca_file", &c.ca_file),
                ] {
                    files.extend(f.iter().map(|f| (format!("{key}.{leaf}"), f)));
                }
            }
            _ => {}
        }
        for (key, f) in files {
            let full = self.resolve(f);
            if !full.is_file() {
                p.push(format!("{key}: {} is not a readable file", full.display()));
            }
        }
        p
    }

    /// A path from the config, relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.resolve(&self.state.path)
    }

    pub fn last_words_window(&self) -> Duration {
        dur(&self.scan.last_words_window)
    }
    pub fn last_words_grace(&self) -> Duration {
        dur(&self.scan.last_words_grace)
    }
    pub fn drain_window(&self) -> Duration {
        dur(&self.scan.drain_window)
    }
    pub fn series_lookback(&self) -> Duration {
        dur(&self.scan.series_lookback)
    }
    pub fn fetch_timeout(&self) -> Duration {
        dur(&self.scan.fetch_timeout)
    }
    /// `state.retention`: how long evidence is kept.
    pub fn evidence_retention(&self) -> Duration {
        dur(&self.state.retention)
    }

    /// `state.facts_retention`: how long compact rows are kept.
    pub fn facts_retention(&self) -> Duration {
        dur(&self.state.facts_retention)
    }

    /// The retention keys against each other and the finding lookback (their syntax is
    /// checked with every duration key).
    fn retention_problems(&self) -> Vec<String> {
        let (Ok(evidence), Ok(facts), Ok(lookback)) = (
            timefmt::parse_duration(&self.state.retention),
            timefmt::parse_duration(&self.state.facts_retention),
            timefmt::parse_duration(&self.scan.finding_lookback),
        ) else {
            return Vec::new();
        };
        let mut p = Vec::new();
        if evidence <= Duration::zero() {
            p.push(format!(
                "state.retention: `{}` must be longer than zero",
                self.state.retention
            ));
        }
        if facts < evidence {
            p.push(format!(
                "state.facts_retention: `{}` is shorter than state.retention `{}`: compact rows are kept at least as long as the evidence",
                self.state.facts_retention, self.state.retention
            ));
        }
        if facts < lookback {
            p.push(format!(
                "state.facts_retention: `{}` is shorter than scan.finding_lookback `{}`: deployments are judged from the compact rows of the whole lookback",
                self.state.facts_retention, self.scan.finding_lookback
            ));
        }
        p
    }

    pub fn finding_lookback(&self) -> Duration {
        dur(&self.scan.finding_lookback)
    }
    pub fn overlap(&self) -> Duration {
        dur(&self.scan.overlap)
    }

    pub fn deployment_identity(&self) -> DeploymentIdentity {
        let d = &self.deployment;
        match d.identity.as_str() {
            "launch_template" => DeploymentIdentity::LaunchTemplate,
            "tag" => DeploymentIdentity::Tag {
                key: d.tag.clone().unwrap_or_default(),
            },
            "log_field" => DeploymentIdentity::LogField {
                field: d.log_field.clone().unwrap_or_default(),
            },
            "metric_label" => DeploymentIdentity::MetricLabel {
                label: d.metric_label.clone().unwrap_or_default(),
            },
            _ => DeploymentIdentity::Asg,
        }
    }

    pub fn finding_policy(&self) -> FindingPolicy {
        FindingPolicy {
            min_instances: self.analysis.min_instances,
        }
    }
}

/// One AWS target: a region, optionally through an assumed role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTarget {
    pub region: String,
    pub role_arn: Option<String>,
}

/// The AWS partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`, the ISO ones): its
/// endpoints' domain and the partition of its ARNs.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// Parses "REGION" or "ROLE_ARN@REGION".
pub fn parse_target(t: &str) -> std::result::Result<AwsTarget, String> {
    let (role, region) = match t.rsplit_once('@') {
        Some((role, region)) => (Some(role), region),
        None => (None, t),
    };
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err(format!("`{region}` is not a region name (e.g. us-east-1)"));
    }
    if let Some(r) = role {
        if !(r.starts_with("arn:") && r.contains(":role/")) {
            return Err(format!(
                "`{r}` is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            ));
        }
        let partition = r.split(':').nth(1).unwrap_or_default();
        let expected = partition_of(region);
        if partition != expected {
            return Err(format!(
                "`{r}` is in partition `{partition}` but region `{region}` is in `{expected}`: a role is assumed in its own partition"
            ));
        }
    }
    Ok(AwsTarget {
        region: region.to_string(),
        role_arn: role.map(str::to_string),
    })
}

/// A duration the schema already validated (only a hand-built Config can hold a bad one; it
/// reads as zero).
fn dur(text: &str) -> Duration {
    timefmt::parse_duration(text).unwrap_or_else(|_| Duration::zero())
}

/// Applies `EPITAPH_A__B__C=value` overrides. Values are typed by the schema.
fn apply_env(table: &mut toml::Table, env: &[(String, String)], problems: &mut Vec<String>) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            // EPITAPH_CONFIG, EPITAPH_LOG and friends are not key overrides; but one
            // underscore where the separator needs two (EPITAPH_SCAN_CONCURRENCY) would be
            // silently ignored, so it is an error naming the right spelling.
            if let Some(key) = single_underscore_key(rest) {
                problems.push(format!(
                    "environment {name}: not applied — levels are separated by two underscores: EPITAPH_{}",
                    key.to_ascii_uppercase().replace('.', "__")
                ));
            }
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let Some(kind) = schema_kind(&key) else {
            let hint = nearest_key(&key)
                .map(|k| {
                    format!(
                        " (did you mean EPITAPH_{}?)",
                        k.to_ascii_uppercase().replace('.', "__")
                    )
                })
                .unwrap_or_default();
            problems.push(format!("environment {name}: unknown key `{key}`{hint}"));
            continue;
        };
        let typed = match kind {
            Kind::Int { .. } => value.parse::<i64>().map(toml::Value::Integer).ok(),
            Kind::Float => value.parse::<f64>().map(toml::Value::Float).ok(),
            Kind::Bool => value.parse::<bool>().map(toml::Value::Boolean).ok(),
            Kind::StrList => env_list(value),
            Kind::StrMap => env_map(value),
            Kind::NumMap => env_num_map(value),
            _ => Some(toml::Value::String(value.clone())),
        };
        let Some(typed) = typed else {
            problems.push(format!(
                "environment {name}: `{value}` is not {}",
                kind_name(kind)
            ));
            continue;
        };
        let parts: Vec<&str> = key.split('.').collect();
        insert_path(table, &parts, typed);
    }
}

/// A list from the environment: a JSON array of strings (`["a","b"]`), or comma-separated
/// values (`a, b`; empty items dropped). `None` for a malformed JSON array.
fn env_list(value: &str) -> Option<toml::Value> {
    let items: Vec<String> = if value.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(value).ok()?
    } else {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(toml::Value::Array(
        items.into_iter().map(toml::Value::String).collect(),
    ))
}

/// A table from the environment: a JSON object of strings (`{"X-Scope-OrgID":"tenant-1"}`).
/// `None` when it is not one.
fn env_num_map(value: &str) -> Option<toml::Value> {
    let map = serde_json::from_str::<std::collections::BTreeMap<String, f64>>(value).ok()?;
    Some(toml::Value::Table(
        map.into_iter()
            .map(|(k, v)| (k, toml::Value::Float(v)))
            .collect(),
    ))
}

fn env_map(value: &str) -> Option<toml::Value> {
    let map = serde_json::from_str::<std::collections::BTreeMap<String, String>>(value).ok()?;
    Some(toml::Value::Table(
        map.into_iter()
            .map(|(k, v)| (k, toml::Value::String(v)))
            .collect(),
    ))
}

/// The key an `EPITAPH_` name with single underscores spells, when turning its first
/// underscore into a level separator (or each of them) gives a key the schema knows.
fn single_underscore_key(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    let positions: Vec<usize> = lower.match_indices('_').map(|(i, _)| i).collect();
    // Try one separator at each underscore, then two (sources_logs_path).
    for &i in &positions {
        let key = format!("{}.{}", &lower[..i], &lower[i + 1..]);
        if schema_kind(&key).is_some() {
            return Some(key);
        }
    }
    for (a, &i) in positions.iter().enumerate() {
        for &j in &positions[a + 1..] {
            let key = format!("{}.{}.{}", &lower[..i], &lower[i + 1..j], &lower[j + 1..]);
            if schema_kind(&key).is_some() {
                return Some(key);
            }
        }
    }
    None
}

/// The schema key closest to `key` (edit distance at most a third of its length).
fn nearest_key(key: &str) -> Option<&'static str> {
    SCHEMA
        .iter()
        .map(|(k, _)| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d * 3 <= key.len().max(3))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (keys are ASCII; also used for resource names by
/// `analysis::doctor`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Sets `parts` (a dotted key split at the dots) to `value`, creating sections on the way; a
/// scalar where a section belongs is replaced, since the override names a nested key.
fn insert_path(table: &mut toml::Table, parts: &[&str], value: toml::Value) {
    match parts {
        [] => {}
        [leaf] => {
            table.insert(leaf.to_string(), value);
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert_path(t, rest, value);
            }
        }
    }
}

fn validate_table(table: &toml::Table, prefix: &str, problems: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let (toml::Value::Table(_), Some(kind @ (Kind::StrMap | Kind::NumMap))) =
            (v, schema_kind(&key))
        {
            if let Err(msg) = check_value(kind, v) {
                problems.push(format!("{key}: {msg}"));
            }
            continue;
        }
        if let toml::Value::Table(t) = v {
            if is_section(&key) {
                validate_table(t, &key, problems);
            } else {
                problems.push(format!("{key}: unknown section"));
            }
            continue;
        }
        let Some(kind) = schema_kind(&key) else {
            problems.push(format!("{key}: unknown key{}", moved_key_hint(&key)));
            continue;
        };
        if let Err(msg) = check_value(kind, v) {
            problems.push(format!("{key}: {msg}"));
        }
    }
}

/// For a key set in a backend's table that belongs to its role's section
/// (`sources.metrics.prometheus.unit` is `sources.metrics.unit`): where to set it.
fn moved_key_hint(key: &str) -> String {
    let Some((section, leaf)) = key.rsplit_once('.') else {
        return String::new();
    };
    let Some((parent, _)) = section.rsplit_once('.') else {
        return String::new();
    };
    let shared = format!("{parent}.{leaf}");
    if parent.starts_with("sources.") && schema_kind(&shared).is_some() {
        format!(" — `{leaf}` is shared by every backend of this source: set {shared} in [{parent}]")
    } else {
        String::new()
    }
}

fn check_value(kind: Kind, v: &toml::Value) -> std::result::Result<(), String> {
    use toml::Value as V;
    match (kind, v) {
        (Kind::Str | Kind::Path, V::String(s)) if !s.trim().is_empty() => Ok(()),
        (Kind::Str | Kind::Path, V::String(_)) => Err("must not be empty".into()),
        (Kind::Int { min }, V::Integer(i)) if *i >= min => Ok(()),
        (Kind::Int { min }, V::Integer(i)) => Err(format!("must be at least {min}, got {i}")),
        (Kind::Float, V::Integer(_) | V::Float(_)) => Ok(()),
        (Kind::Bool, V::Boolean(_)) => Ok(()),
        (Kind::Duration, V::String(s)) => timefmt::parse_duration(s).map(|_| ()),
        (Kind::Since, V::String(s)) => timefmt::parse_since(s, chrono::Utc::now()).map(|_| ()),
        (Kind::OneOf(options), V::String(s)) if options.contains(&s.as_str()) => Ok(()),
        (Kind::OneOf(options), V::String(s)) => {
            Err(format!("`{s}` is not one of {}", options.join(", ")))
        }
        (Kind::StrList, V::Array(items)) => match items
            .iter()
            .position(|i| !i.as_str().is_some_and(|s| !s.trim().is_empty()))
        {
            None => Ok(()),
            Some(i) => Err(format!("item {i} must be a non-empty string")),
        },
        (Kind::StrMap, V::Table(t)) => match t
            .iter()
            .find(|(_, v)| !v.as_str().is_some_and(|s| !s.trim().is_empty()))
        {
            None => Ok(()),
            Some((k, _)) => Err(format!("`{k}` must be a non-empty string")),
        },
        (Kind::NumMap, V::Table(t)) => match t.iter().find(|(_, v)| !match v {
            V::Integer(i) => *i >= 0,
            V::Float(f) => f.is_finite() && *f >= 0.0,
            _ => false,
        }) {
            None => Ok(()),
            Some((k, _)) => Err(format!("`{k}` must be a number ≥ 0 (0: no limit)")),
        },
        (kind, other) => Err(format!(
            "expected {}, got {}",
            kind_name(kind),
            other.type_str()
        )),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::Path => "a path string",
        Kind::Int { .. } => "an integer",
        Kind::Float => "a number",
        Kind::Duration => "a duration string such as \"60s\"",
        Kind::Since => "a duration or an RFC 3339 time",
        Kind::OneOf(_) => "a string",
        Kind::StrList => "a list of strings",
        Kind::StrMap => "a table of strings (from the environment, a JSON object)",
        Kind::NumMap => "a table of numbers (from the environment, a JSON object)",
        Kind::Bool => "true or false",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::parse(text, "test.toml", Path::new("/base"), &env)
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.scan.concurrency, 16);
        assert_eq!(c.state_path(), PathBuf::from("/base/epitaph.db"));
        assert_eq!(c.sources.metrics.memory_limit(), Some(100.0));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[scan]
concurency = 4
last_words_window = "sixty"
concurrency = 0
[deployment]
identity = "tag"
[sources.logs]
format = "xml"
[bogus]
x = 1
"#;
        let err = parse(text, &[]).unwrap_err().to_string();
        for needle in [
            "scan.concurency: unknown key",
            "scan.last_words_window",
            "scan.concurrency: must be at least 1",
            "sources.logs.format",
            "bogus: unknown section",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
    }

    #[test]
    fn semantic_problem_names_key() {
        let err = parse("[deployment]\nidentity = \"tag\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("deployment.tag: required"), "{err}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = parse("[scan]\nsince = \n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2"), "{err}");
    }

    #[test]
    fn example_config_is_valid_and_documents_every_key() {
        let text = include_str!("../config/epitaph.example.toml");
        parse(text, &[]).unwrap();
        // Uncommenting the optional keys must give a valid config too.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.contains("  ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        parse(&uncommented, &[]).unwrap();
        for (key, _) in SCHEMA {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("{leaf} =")),
                "example config does not document `{key}`"
            );
        }
    }

    #[test]
    fn prometheus_table_is_typed_and_checked_by_key() {
        let ok = r#"
[sources.metrics]
kind = "prometheus"
unit = "bytes"
[sources.metrics.prometheus]
url = "http://127.0.0.1:9090"
query = "node_memory_MemTotal_bytes{{instance_matcher}} - node_memory_MemAvailable_bytes{{instance_matcher}}"
limit_query = "node_memory_MemTotal_bytes{{instance_matcher}}"
headers = { "X-Scope-OrgID" = "tenant-1" }
[sources.metrics.prometheus.sigv4]
region = "us-east-1"
"#;
        let c = parse(ok, &[]).unwrap();
        let p = c.sources.metrics.prometheus.as_ref().unwrap();
        assert_eq!(p.headers["X-Scope-OrgID"].expose(), "tenant-1");
        assert_eq!(p.sigv4.as_ref().unwrap().service, "aps");
        assert!(
            !format!("{p:?}").contains("tenant-1"),
            "header values are secrets"
        );

        let bad = r#"
[sources.metrics]
kind = "prometheus"
unit = "bytes"
[sources.metrics.prometheus]
url = "prometheus:9090"
query = "mem_used_percent"
max_points = 5
step = "soon"
headers = { "X-Scope-OrgID" = 3 }
unit = "bytes"
"#;
        let err = parse(bad, &[]).unwrap_err().to_string();
        for needle in [
            "sources.metrics.prometheus.max_points: must be at least 10",
            "sources.metrics.prometheus.step",
            "sources.metrics.prometheus.headers: `X-Scope-OrgID` must be a non-empty string",
            "sources.metrics.prometheus.unit: unknown key — `unit` is shared by every backend of this source: set sources.metrics.unit in [sources.metrics]",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
        let err = parse(
            "[sources.metrics]\nkind = \"prometheus\"\nunit = \"bytes\"\n[sources.metrics.prometheus]\nurl = \"prometheus:9090\"\nquery = \"mem_used_percent\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "sources.metrics.prometheus.url: must be an http(s) URL",
            "sources.metrics.prometheus.query: `mem_used_percent` names no instance",
            "sources.metrics.limit: required with unit = \"bytes\"",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
        let err = parse("[sources.metrics]\nkind = \"prometheus\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.metrics.prometheus.url: required"),
            "{err}"
        );
        // The table is only read for kind = "prometheus"; a prometheus table under another
        // role is unknown.
        assert!(parse("[sources.metrics.prometheus]\nurl = \"x\"\n", &[]).is_ok());
        let err = parse("[sources.logs.prometheus]\nurl = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.logs.prometheus: unknown section"),
            "{err}"
        );
        // Headers from the environment: a JSON object.
        let c = parse(
            "[sources.metrics]\nkind = \"prometheus\"\n[sources.metrics.prometheus]\nurl = \"http://p:9090\"\n",
            &[(
                "EPITAPH_SOURCES__METRICS__PROMETHEUS__HEADERS",
                r#"{"X-Scope-OrgID":"t2"}"#,
            )],
        )
        .unwrap();
        let p = c.sources.metrics.prometheus.unwrap();
        assert_eq!(p.headers["X-Scope-OrgID"].expose(), "t2");
    }

    #[test]
    fn log_backend_tables_are_checked_by_key() {
        let err = parse("[sources.logs]\nkind = \"splunk\"\n", &[])
            .unwrap_err()
            .to_string();
        for needle in [
            "sources.logs.splunk.url: required",
            "sources.logs.splunk.index: required",
            "sources.logs.splunk.instance_filter: required",
            "sources.logs.splunk.token: required",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
        let bad = r#"
[sources.logs]
kind = "loki"
[sources.logs.loki]
url = "http://loki:3100"
selector = '{instance_id="{instance}"}'
limit = 0
auth = "basic"
"#;
        let err = parse(bad, &[]).unwrap_err().to_string();
        for needle in [
            "sources.logs.loki.limit: must be at least 1",
            "sources.logs.loki.auth: unknown key",
        ] {
            assert!(err.contains(needle), "missing {needle} in {err}");
        }
        let err = parse(
            "[sources.logs]\nkind = \"loki\"\n[sources.logs.loki]\nurl = \"http://l\"\nselector = '{instance_id=\"{instance}\"}'\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "sources.logs.loki.selector: label `instance_id`: unknown placeholder `{instance}`"
            ),
            "{err}"
        );
        let err = parse(
            "[sources.logs.splunk]\nauth_scheme = \"basic\"\n[sources.metrics]\nkind = \"loki\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sources.logs.splunk.auth_scheme: `basic` is not one of bearer, splunk"),
            "{err}"
        );
        // A token from the environment, as for every key.
        let c = parse(
            "[sources.logs]\nkind = \"splunk\"\n[sources.logs.splunk]\nurl = \"https://s:8089\"\nindex = \"app\"\ninstance_filter = \"host={private_dns}\"\n",
            &[("EPITAPH_SOURCES__LOGS__SPLUNK__TOKEN", "tok")],
        )
        .unwrap();
        let t = c.sources.logs.splunk.unwrap().token.unwrap();
        assert_eq!(t.expose(), "tok");
        // A logs backend elsewhere is named as such.
        let err = parse("[sources.metrics]\nkind = \"loki\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.metrics.kind: `loki` is a logs backend"),
            "{err}"
        );
    }

    #[test]
    fn backend_examples_are_valid() {
        for (name, text) in [
            ("splunk", include_str!("../config/splunk.example.toml")),
            ("loki", include_str!("../config/loki.example.toml")),
        ] {
            let c = parse(text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.sources.logs.kind, name);
        }
        let c = parse(include_str!("../config/prometheus.example.toml"), &[])
            .unwrap_or_else(|e| panic!("prometheus: {e}"));
        assert_eq!(c.sources.metrics.kind, "prometheus");
    }

    #[test]
    fn aws_targets_are_regions_or_role_at_region() {
        assert_eq!(
            parse_target("eu-west-1").unwrap(),
            AwsTarget {
                region: "eu-west-1".into(),
                role_arn: None
            }
        );
        let t = parse_target("arn:aws:iam::210987654321:role/epitaph-read@us-east-2").unwrap();
        assert_eq!(t.region, "us-east-2");
        assert_eq!(
            t.role_arn.as_deref(),
            Some("arn:aws:iam::210987654321:role/epitaph-read")
        );
        assert!(parse_target("EU West").is_err());
        assert!(parse_target("epitaph-read@us-east-1").is_err());
        assert!(parse_target("arn:aws:iam::1:role/x@").is_err());
        let err = parse("[aws]\ntargets = [\"us-east-1\", \"nope@Mars\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.targets[1]"), "{err}");
    }

    #[test]
    fn a_role_is_assumed_in_its_own_partition() {
        let cn = parse_target("arn:aws-cn:iam::210987654321:role/epitaph-read@cn-north-1").unwrap();
        assert_eq!(cn.region, "cn-north-1");
        assert!(
            parse_target("arn:aws-us-gov:iam::210987654321:role/r@us-gov-west-1").is_ok(),
            "GovCloud role in a GovCloud region"
        );
        let err = parse_target("arn:aws:iam::210987654321:role/r@cn-north-1").unwrap_err();
        assert!(
            err.contains("partition `aws`") && err.contains("`aws-cn`"),
            "{err}"
        );
        assert!(parse_target("arn:aws-cn:iam::210987654321:role/r@us-east-1").is_err());
    }

    #[test]
    fn assume_role_settings_are_checked_by_key() {
        let err = parse(
            "[aws]\nsession_duration = \"5m\"\nsession_name = \"no spaces allowed\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("aws.session_duration"), "{err}");
        assert!(err.contains("aws.session_name"), "{err}");
        let ok = parse(
            "[aws]\nexternal_id = \"x-1\"\nsession_name = \"epitaph-prod\"\nsession_duration = \"2h\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(ok.aws.external_id.as_deref(), Some("x-1"));
        assert_eq!(ok.aws.session_duration(), Duration::hours(2));
    }

    #[test]
    fn env_overrides() {
        let c = parse(
            "[scan]\nconcurrency = 4\n",
            &[
                ("EPITAPH_SCAN__CONCURRENCY", "8"),
                ("EPITAPH_SOURCES__LOGS__PATH", "/l"),
                ("EPITAPH_CONFIG", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.scan.concurrency, 8);
        assert_eq!(c.sources.logs.path, Some(PathBuf::from("/l")));
        let err = parse("", &[("EPITAPH_SCAN__NOPE", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("EPITAPH_SCAN__NOPE: unknown key `scan.nope`"),
            "{err}"
        );
        let err = parse("", &[("EPITAPH_SCAN__CONCURRENCY", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`many` is not an integer"), "{err}");
    }

    #[test]
    fn retention_is_a_duration_and_compact_rows_outlive_evidence() {
        let c = parse("", &[]).unwrap();
        assert_eq!(c.evidence_retention(), Duration::days(30));
        assert_eq!(c.facts_retention(), Duration::days(90));
        let c = parse(
            "[state]\nretention = \"14d\"\n",
            &[("EPITAPH_STATE__FACTS_RETENTION", "14d")],
        )
        .unwrap();
        assert_eq!(c.facts_retention(), Duration::days(14));
        let err = parse("[state]\nretention = \"a month\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("state.retention"), "{err}");
        let err = parse(
            "[state]\nretention = \"60d\"\nfacts_retention = \"30d\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("state.facts_retention: `30d` is shorter than state.retention `60d`"),
            "{err}"
        );
        let err = parse(
            "[scan]\nfinding_lookback = \"14d\"\n[state]\nretention = \"7d\"\nfacts_retention = \"10d\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "state.facts_retention: `10d` is shorter than scan.finding_lookback `14d`"
            ),
            "{err}"
        );
        let err = parse("[state]\nretention = \"0s\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.retention: `0s` must be longer than zero"),
            "{err}"
        );
    }

    #[test]
    fn state_url_must_be_postgres_and_never_shows_its_password() {
        let err = parse("[state]\nurl = \"mysql://root:hunter2@db/epitaph\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.url: must be a postgres:// or postgresql:// URL, not `mysql`"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let c = parse(
            "",
            &[(
                "EPITAPH_STATE__URL",
                "postgres://epitaph:hunter2@db:5432/epitaph",
            )],
        )
        .unwrap();
        assert_eq!(
            crate::store::describe(&c),
            "postgres://epitaph:[redacted]@db:5432/epitaph"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn env_lists_typos_and_single_underscores() {
        let c = parse(
            "",
            &[
                (
                    "EPITAPH_ALERTS__REDACT_PATTERNS",
                    r#"["corp-[0-9]{6}", "a,b"]"#,
                ),
                ("EPITAPH_AWS__TARGETS", "us-east-1, eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(c.alerts.redact_patterns, vec!["corp-[0-9]{6}", "a,b"]);
        assert_eq!(c.aws.targets, vec!["us-east-1", "eu-west-1"]);
        let err = parse("", &[("EPITAPH_AWS__TARGETS", "[not json")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EPITAPH_AWS__TARGETS"), "{err}");
        let err = parse("", &[("EPITAPH_SCAN_CONCURRENCY", "8")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EPITAPH_SCAN__CONCURRENCY"), "{err}");
        let err = parse("", &[("EPITAPH_SCAN__CONCURENCY", "8")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean EPITAPH_SCAN__CONCURRENCY"),
            "{err}"
        );
        // Variables that are not key overrides stay allowed.
        assert!(parse(
            "",
            &[("EPITAPH_CONFIG", "x"), ("EPITAPH_AWS_INSTANCES", "60")]
        )
        .is_ok());
    }
}
