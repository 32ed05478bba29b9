//! The config's sections other than `[sources]`: `[scan]`, `[deployment]`, `[analysis]`,
//! `[state]`, `[signatures]`, `[aws]`, `[alerts]`, `[serve]`. Each field's doc comment is its
//! description in the derived schema; `#[schemars(range(min = …))]` is its lower bound, which
//! `config check` enforces; durations are [`HumanDuration`]s, kinds enums.

use std::path::PathBuf;

use chrono::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::analysis::early_warning::EarlyWarningScope;

use super::{HumanDuration, Since};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// Window start when the store has no previous run: a duration back from now or an instant.
    pub since: Since,
    /// Window end: an instant, or a duration back from now; default now.
    pub until: Option<Since>,
    pub last_words_window: HumanDuration,
    pub last_words_grace: HumanDuration,
    /// How long an instance may still run (and log) after its termination began when the
    /// activity's EndTime is unknown: lifecycle hooks, load-balancer deregistration delay.
    pub drain_window: HumanDuration,
    /// Stop reading an instance's last words after this many bytes (the newest are kept).
    #[schemars(range(min = 1024))]
    pub last_words_max_bytes: usize,
    pub series_lookback: HumanDuration,
    /// Instances fetched at once from the log backend.
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    pub fetch_timeout: HumanDuration,
    pub finding_lookback: HumanDuration,
    pub overlap: HumanDuration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            since: Since::default_of("24h"),
            until: None,
            last_words_window: HumanDuration::default_of("60s"),
            last_words_grace: HumanDuration::default_of("2m"),
            drain_window: HumanDuration::default_of("5m"),
            last_words_max_bytes: 256 * 1024,
            series_lookback: HumanDuration::default_of("7d"),
            concurrency: 16,
            fetch_timeout: HumanDuration::default_of("30s"),
            finding_lookback: HumanDuration::default_of("7d"),
            overlap: HumanDuration::default_of("15m"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// asg | launch_template | tag | log_field | metric_label
    pub identity: Identity,
    /// The instance tag naming the deployment (`identity = "tag"`).
    pub tag: Option<String>,
    /// The JSON field or key=value pair of the log lines naming the deployment
    /// (`identity = "log_field"`).
    pub log_field: Option<String>,
    /// The memory series' label naming the deployment (`identity = "metric_label"`).
    pub metric_label: Option<String>,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            identity: Identity::Asg,
            tag: None,
            log_field: None,
            metric_label: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Deaths of one kind a deployment needs before it is called leaking, OOM or crashing.
    #[schemars(range(min = 1))]
    pub min_instances: usize,
    /// Which running instances get a projected time to their memory limit: those of
    /// deployments judged `leaking` (default), every running instance (`all`: a leak is seen
    /// before its first death, at one series per instance per scan), or none (`off`).
    pub early_warning: EarlyWarningScope,
    /// At most this many running instances are projected per scan (oldest launches first:
    /// they are nearest their limit).
    #[schemars(range(min = 1))]
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    pub retention: HumanDuration,
    /// How long an instance's compact row (what judging needs) is kept: at least `retention`
    /// and `scan.finding_lookback`. An instance whose row is gone would be analysed again if a
    /// scan's window reached back to it.
    pub facts_retention: HumanDuration,
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
            retention: HumanDuration::default_of(DEFAULT_EVIDENCE_RETENTION),
            facts_retention: HumanDuration::default_of(DEFAULT_FACTS_RETENTION),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SignaturesConfig {
    /// A signature file merged over the built-in library: entries with a known id replace
    /// the built-in entry, new ids are added (format: config/signatures.toml).
    pub extra: Option<PathBuf>,
}

/// Where and how the AWS backends call AWS.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Default region (else the SDK's chain: AWS_REGION, the profile).
    pub region: Option<String>,
    /// A named profile from ~/.aws/config (else AWS_PROFILE or the default chain).
    pub profile: Option<String>,
    /// One endpoint for every service (tests, VPC endpoints). `AWS_ENDPOINT_URL` and
    /// `AWS_ENDPOINT_URL_<SERVICE>` keep working without it.
    pub endpoint_url: Option<String>,
    /// Regions and accounts to read: "REGION", or "ROLE_ARN@REGION" to assume a role there.
    /// Empty: the default region with the default credentials.
    pub targets: Vec<String>,
    /// Attempts per call (standard retry mode: exponential backoff with jitter on throttling,
    /// 5xx and timeouts).
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// A whole call, all attempts included.
    pub call_timeout: HumanDuration,
    /// One attempt.
    pub attempt_timeout: HumanDuration,
    /// Calls in flight at once per API (activities and inventory; log fetches follow
    /// scan.concurrency).
    #[schemars(range(min = 1))]
    pub api_concurrency: usize,
    /// Requests per second per operation and target (account and region), over the defaults
    /// of `sources::ratelimit::AWS_DEFAULTS` (about 80 % of each documented quota): `{
    /// "logs:GetLogEvents" = 20 }`; 0 lifts a limit. Throttled answers lower the rate for
    /// every caller until successes win it back.
    #[schemars(schema_with = "rate_limits_schema")]
    pub rate_limits: std::collections::BTreeMap<String, f64>,
    /// The `ExternalId` a role's trust policy asks for (the same for every role in
    /// `aws.targets`; a third party's roles usually require one).
    pub external_id: Option<String>,
    /// The session name roles are assumed with: CloudTrail shows it beside every call.
    pub session_name: String,
    /// How long an assumed role's credentials last (15 min to the role's maximum, 1 h by
    /// default); they are fetched again shortly before they expire, however long `serve` runs.
    pub session_duration: HumanDuration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            profile: None,
            endpoint_url: None,
            targets: Vec::new(),
            max_attempts: 5,
            call_timeout: HumanDuration::default_of("30s"),
            attempt_timeout: HumanDuration::default_of("10s"),
            api_concurrency: 4,
            rate_limits: std::collections::BTreeMap::new(),
            external_id: None,
            session_name: DEFAULT_SESSION_NAME.into(),
            session_duration: HumanDuration::default_of("1h"),
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
        self.call_timeout.get()
    }
    pub fn session_duration(&self) -> Duration {
        self.session_duration.get()
    }
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout.get()
    }
}

/// A secret from the config (webhook URL, API token): never shown by `Debug`, so a logged
/// config or error cannot leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Slack incoming-webhook URL (Block Kit; Mattermost and Discord's /slack endpoint accept
    /// it too). A secret: prefer EPITAPH_ALERTS__SLACK_WEBHOOK_URL.
    pub slack_webhook_url: Option<Secret>,
    /// Generic JSON webhook URL (schema `epitaph.alert.v1`). A secret as well.
    pub webhook_url: Option<Secret>,
    /// Deployment verdicts that raise an alert.
    pub verdicts: Vec<crate::model::DeploymentVerdict>,
    /// Least time between two messages about one deployment, unless its severity rises.
    pub cooldown: HumanDuration,
    /// A firing deployment with no death for this long is resolved.
    pub resolve_after: HumanDuration,
    /// Link template per instance (Grafana or similar): {instance_id}, {deployment}, {asg},
    /// {from_ms}, {to_ms}, {from}, {to}.
    pub dashboard_url_template: Option<String>,
    /// Regexes masked in last-words text, beside the built-in secret patterns.
    pub redact_patterns: Vec<String>,
    /// Delivery attempts per message before it is marked failed.
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// One delivery request.
    pub request_timeout: HumanDuration,
    /// Retry delay ceiling for the first retry; doubles per attempt up to `max_backoff`; half of
    /// each wait is fixed, half random.
    pub base_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    /// `epitaph scan` waits at most this long for deliveries after a scan; the rest stay in
    /// the outbox for the next run or the service.
    pub flush_timeout: HumanDuration,
    /// How long a sender holds a message it is delivering; another sender (a replica, or this
    /// one after a crash) may take it over afterwards.
    pub lease: HumanDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            slack_webhook_url: None,
            webhook_url: None,
            verdicts: vec![
                crate::model::DeploymentVerdict::Leaking,
                crate::model::DeploymentVerdict::OomWithoutLeak,
            ],
            cooldown: HumanDuration::default_of("1h"),
            resolve_after: HumanDuration::default_of("24h"),
            dashboard_url_template: None,
            redact_patterns: Vec::new(),
            max_attempts: 12,
            request_timeout: HumanDuration::default_of("10s"),
            base_backoff: HumanDuration::default_of("2s"),
            max_backoff: HumanDuration::default_of("10m"),
            flush_timeout: HumanDuration::default_of("30s"),
            lease: HumanDuration::default_of("1m"),
        }
    }
}

impl AlertsConfig {
    pub fn cooldown(&self) -> Duration {
        self.cooldown.get()
    }
    pub fn resolve_after(&self) -> Duration {
        self.resolve_after.get()
    }
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.get()
    }
    pub fn base_backoff(&self) -> Duration {
        self.base_backoff.get()
    }
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff.get()
    }
    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout.get()
    }
    pub fn lease(&self) -> Duration {
        self.lease.get()
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
    pub delivery_interval: HumanDuration,
    /// On SIGTERM: how long to let a running scan finish and the outbox drain.
    pub shutdown_grace: HumanDuration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:9464".into(),
            schedule: "*/15 * * * *".into(),
            token: None,
            allow_anonymous: false,
            delivery_interval: HumanDuration::default_of("5s"),
            shutdown_grace: HumanDuration::default_of("30s"),
        }
    }
}

impl ServeConfig {
    pub fn delivery_interval(&self) -> Duration {
        self.delivery_interval.get()
    }
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace.get()
    }
}

/// `deployment.identity`: what makes instances one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// The Auto Scaling group.
    #[default]
    Asg,
    /// The launch template and its version.
    LaunchTemplate,
    /// An instance tag (`deployment.tag`).
    Tag,
    /// A field of the log lines (`deployment.log_field`).
    LogField,
    /// A label of the memory series (`deployment.metric_label`).
    MetricLabel,
}

impl Identity {
    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Asg => "asg",
            Identity::LaunchTemplate => "launch_template",
            Identity::Tag => "tag",
            Identity::LogField => "log_field",
            Identity::MetricLabel => "metric_label",
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `aws.rate_limits`: a table of requests per second, each at least 0 (0 lifts a limit).
fn rate_limits_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": "number", "minimum": 0 }
    })
}
