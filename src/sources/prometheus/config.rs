//! `[sources.metrics.prometheus]`: where the Prometheus-compatible API is (Prometheus, Thanos,
//! Mimir, Cortex, VictoriaMetrics, Amazon Managed Service for Prometheus), the PromQL that gives
//! an instance's memory (and, in bytes, its limit), how requests are sized and how they
//! authenticate. The unit (`percent` | `bytes`), the fixed `limit` and the `instance_label`
//! stay in `[sources.metrics]`, shared with the other metrics backends (the analysis and the
//! reports read them there).
//!
//! [`PrometheusConfig::problems`] is the cross-key validation `epitaph config check` runs for
//! `kind = "prometheus"`; [`Settings::resolve`] turns a valid config into typed settings
//! (options as enums) for the backend.
//!
//! Length: about 480 lines of code (every key documented and validated); the rest are its unit
//! tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::config::Unit;
use crate::config::{HumanDuration, MetricsConfig, Secret};

/// The placeholder for one instance id, inside a double-quoted label value:
/// `mem_used_percent{instance_id="{instance_id}"}` (one instance per request).
pub const INSTANCE_ID: &str = "{instance_id}";
/// The placeholder for a label matcher selecting a whole batch of instances, inside a
/// selector's braces: `mem_used_percent{job="node",{instance_matcher}}` becomes
/// `mem_used_percent{job="node",instance_id=~"i-a|i-b"}`.
pub const INSTANCE_MATCHER: &str = "{instance_matcher}";
/// Prometheus's own limit of points per series in one `query_range` answer.
pub const DEFAULT_MAX_POINTS: usize = 11_000;
/// Instances per request by default: a week of one-minute points for 25 instances is about
/// 250,000 points, a few megabytes of JSON.
pub const DEFAULT_BATCH: usize = 25;
/// Key prefix of this table, for messages.
pub const KEY: &str = "sources.metrics.prometheus";
/// `query_range` requests per second (`rate_limit`). Prometheus has no request quota, but a
/// query_range over many series is among the most expensive things it serves, to dashboards
/// and rule evaluation too; hosted ones (Amazon Managed Service for Prometheus, Grafana Cloud,
/// Mimir's per-tenant limits) answer 429 beyond their quotas. 10 a second, each request `batch`
/// instances, reads 1,000 instances in about 4 s. A 429 or 503 with Retry-After halves it.
pub const DEFAULT_RATE_LIMIT: f64 = 10.0;

/// `[sources.metrics.prometheus]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the API, without `/api/v1`: `http://prometheus:9090`,
    /// `http://mimir/prometheus`, `https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-…`.
    pub url: Option<String>,
    /// PromQL for an instance's memory, with `{instance_matcher}` (batched) or
    /// `"{instance_id}"` (one instance per request).
    pub query: String,
    /// PromQL for an instance's memory limit in bytes (`unit = "bytes"` only), with the same
    /// placeholders: `node_memory_MemTotal_bytes{{instance_matcher}}`. Its last value in the
    /// instance's window is the limit; `sources.metrics.limit` is the fallback.
    pub limit_query: Option<String>,
    /// The smallest step (resolution) asked for: the scrape interval. Longer windows get a
    /// longer step so the answer stays within `max_points`.
    pub step: HumanDuration,
    /// The server's limit of points per series in one answer (Prometheus: 11,000;
    /// VictoriaMetrics: -search.maxPointsPerTimeseries, 30,000 by default).
    #[schemars(range(min = MIN_MAX_POINTS))]
    pub max_points: usize,
    /// Instances per request (one regex matcher naming them all) with `{instance_matcher}`.
    #[schemars(range(min = 1))]
    pub batch: usize,
    /// Requests in flight at once.
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    /// `query_range` requests per second, shared by every scan and query of the process (0:
    /// no limit); a throttled answer halves it until successes win it back.
    pub rate_limit: f64,
    /// One request, from connecting to the last byte of the answer.
    pub timeout: HumanDuration,
    /// Attempts per request: connection failures, timeouts, 429 and 502/503/504 are retried
    /// with exponential backoff and jitter, waiting at least the server's Retry-After.
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// `Authorization: Bearer …`. A secret: prefer
    /// EPITAPH_SOURCES__METRICS__PROMETHEUS__BEARER_TOKEN or `bearer_token_file`.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token, read for every request (rotated tokens, Kubernetes
    /// service-account tokens).
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic auth.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra request headers: `{ "X-Scope-OrgID" = "tenant-1" }` for Mimir, Cortex, Loki-style
    /// multi-tenancy. Values are treated as secrets (never logged).
    pub headers: BTreeMap<String, Secret>,
    /// Sign requests with AWS SigV4 (Amazon Managed Service for Prometheus), credentials from
    /// the AWS default chain (`aws.profile`, `aws.region` apply).
    pub sigv4: Option<Sigv4Config>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: None,
            query: format!("mem_used_percent{{{INSTANCE_MATCHER}}}"),
            limit_query: None,
            step: HumanDuration::default_of("60s"),
            max_points: DEFAULT_MAX_POINTS,
            batch: DEFAULT_BATCH,
            concurrency: 4,
            rate_limit: DEFAULT_RATE_LIMIT,
            timeout: HumanDuration::default_of("20s"),
            max_attempts: 3,
            bearer_token: None,
            bearer_token_file: None,
            username: None,
            password: None,
            headers: BTreeMap::new(),
            sigv4: None,
        }
    }
}

/// `[sources.metrics.prometheus.sigv4]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Sigv4Config {
    /// The workspace's region; default `aws.region`, else the AWS chain's region.
    pub region: Option<String>,
    /// The signing name: `aps` for Amazon Managed Service for Prometheus.
    pub service: String,
}

impl Default for Sigv4Config {
    fn default() -> Self {
        Sigv4Config {
            region: None,
            service: "aps".into(),
        }
    }
}

/// How a query template names the instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// `{instance_matcher}`: many instances per request, told apart by `instance_label`.
    Batched(String),
    /// `"{instance_id}"`: one instance per request; every series answered is that instance's.
    PerInstance(String),
}

impl Template {
    pub fn text(&self) -> &str {
        match self {
            Template::Batched(t) | Template::PerInstance(t) => t,
        }
    }
}

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(Secret),
    BearerFile(PathBuf),
    Basic { username: String, password: Secret },
    Sigv4(Sigv4Config),
}

/// The typed settings of a valid config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base URL, without a trailing slash.
    pub url: reqwest::Url,
    pub query: Template,
    pub limit_query: Option<Template>,
    pub instance_label: String,
    pub unit: Unit,
    /// The fixed limit (`sources.metrics.limit`; 100 for percent).
    pub limit: Option<f64>,
    pub min_step_secs: i64,
    pub max_points: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// `query_range` requests per second (≤ 0: no limit).
    pub rate_limit: f64,
    pub timeout: std::time::Duration,
    pub max_attempts: u32,
    pub auth: Auth,
    pub headers: Vec<(reqwest::header::HeaderName, Secret)>,
}

impl Settings {
    /// Typed settings from `[sources.metrics]` (kind = "prometheus"), or every problem, each
    /// naming its key.
    pub fn resolve(metrics: &MetricsConfig) -> Result<Settings, Vec<String>> {
        let default = PrometheusConfig::default();
        let p = metrics.prometheus.as_ref().unwrap_or(&default);
        let problems = p.problems(metrics);
        if !problems.is_empty() {
            return Err(problems);
        }
        let bad = |key: &str, e: String| vec![format!("{KEY}.{key}: {e}")];
        let url = parse_url(p.url.as_deref().unwrap_or_default()).map_err(|e| bad("url", e))?;
        let query = template(&p.query).map_err(|e| bad("query", e))?;
        let limit_query = match &p.limit_query {
            Some(q) => Some(template(q).map_err(|e| bad("limit_query", e))?),
            None => None,
        };
        let (step, timeout) = (p.step.get(), p.timeout.to_std());
        let auth = if let Some(s) = &p.sigv4 {
            Auth::Sigv4(s.clone())
        } else if let Some(t) = &p.bearer_token {
            Auth::Bearer(t.clone())
        } else if let Some(f) = &p.bearer_token_file {
            Auth::BearerFile(f.clone())
        } else if let Some(u) = &p.username {
            Auth::Basic {
                username: u.clone(),
                password: p.password.clone().unwrap_or_default(),
            }
        } else {
            Auth::None
        };
        let batch = match &query {
            Template::Batched(_) => p.batch.max(1),
            Template::PerInstance(_) => 1,
        };
        let headers = p
            .headers
            .iter()
            .map(|(k, v)| {
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map(|name| (name, v.clone()))
                    .map_err(|e| bad(&format!("headers.{k}"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Settings {
            url,
            query,
            limit_query,
            instance_label: metrics.instance_label.clone(),
            unit: metrics.unit,
            limit: metrics.memory_limit(),
            min_step_secs: step.num_seconds().max(1),
            max_points: p.max_points,
            batch,
            concurrency: p.concurrency.max(1),
            rate_limit: p.rate_limit,
            timeout,
            max_attempts: p.max_attempts.max(1),
            auth,
            headers,
        })
    }

    /// The URL for messages: scheme, host, port and path, never a user or password.
    pub fn display_url(&self) -> String {
        display_url(&self.url)
    }
}

/// A URL for messages, without credentials.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string().trim_end_matches('/').to_string()
}

/// The smallest `max_points` accepted (the step's alignment takes up to two points).
pub const MIN_MAX_POINTS: usize = 10;

impl PrometheusConfig {
    /// Cross-key problems for `kind = "prometheus"`, each naming its key.
    pub fn problems(&self, metrics: &MetricsConfig) -> Vec<String> {
        let mut p = Vec::new();
        match self.url.as_deref() {
            None => p.push(format!(
                "{KEY}.url: required for sources.metrics.kind = \"prometheus\" (the API's base URL, e.g. http://prometheus:9090)"
            )),
            Some(u) => {
                if let Err(e) = parse_url(u) {
                    p.push(format!("{KEY}.url: {e}"));
                }
            }
        }
        if let Err(e) = template(&self.query) {
            p.push(format!("{KEY}.query: {e}"));
        }
        if let Some(q) = &self.limit_query {
            if let Err(e) = template(q) {
                p.push(format!("{KEY}.limit_query: {e}"));
            }
            if metrics.unit != Unit::Bytes {
                p.push(format!(
                    "{KEY}.limit_query: only used with sources.metrics.unit = \"bytes\" (a percentage's limit is 100)"
                ));
            }
        }
        if metrics.unit == Unit::Bytes && metrics.limit.is_none() && self.limit_query.is_none() {
            p.push(format!(
                "sources.metrics.limit: required with unit = \"bytes\" for kind = \"prometheus\": set it (bytes), or set {KEY}.limit_query (e.g. node_memory_MemTotal_bytes{{{INSTANCE_MATCHER}}})"
            ));
        }
        if !is_label_name(&metrics.instance_label) {
            p.push(format!(
                "sources.metrics.instance_label: `{}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                metrics.instance_label
            ));
        }
        if self.max_points < MIN_MAX_POINTS {
            p.push(format!(
                "{KEY}.max_points: must be at least {MIN_MAX_POINTS}, got {}",
                self.max_points
            ));
        }
        if self.step.get() < Duration::seconds(1) {
            p.push(format!("{KEY}.step: must be at least 1s"));
        }
        if self.timeout.get() <= Duration::zero() {
            p.push(format!("{KEY}.timeout: must be longer than 0s"));
        }
        let mut auths = Vec::new();
        if self.bearer_token.as_ref().is_some_and(|t| !t.is_empty()) {
            auths.push("bearer_token");
        }
        if self.bearer_token_file.is_some() {
            auths.push("bearer_token_file");
        }
        if self.username.is_some() {
            auths.push("username");
        }
        if self.sigv4.is_some() {
            auths.push("sigv4");
        }
        if auths.len() > 1 {
            p.push(format!(
                "{KEY}: {} are exclusive: choose one way to authenticate",
                auths.join(", ")
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            p.push(format!(
                "{KEY}.password: set with username (HTTP basic auth)"
            ));
        }
        if let Some(s) = &self.sigv4 {
            if s.service.trim().is_empty() {
                p.push(format!("{KEY}.sigv4.service: must not be empty (aps)"));
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(format!(
                    "{KEY}.headers: `{name}` is not an HTTP header name"
                ));
            } else if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                // Never echo the value: it may be a credential.
                p.push(format!(
                    "{KEY}.headers.{name}: not a valid header value (value not shown)"
                ));
            }
            if name.eq_ignore_ascii_case("authorization") && !auths.is_empty() {
                p.push(format!(
                    "{KEY}.headers.{name}: conflicts with {}",
                    auths.join(", ")
                ));
            }
        }
        if let Some(e) = crate::sources::ratelimit::rate_problem(self.rate_limit) {
            p.push(format!("{KEY}.rate_limit: {e}"));
        }
        p
    }
}

/// A base URL: http(s), no query string; the message never shows credentials.
fn parse_url(u: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u.trim())
        .map_err(|e| format!("not a URL ({e}); e.g. http://prometheus:9090"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http(s) URL, got scheme `{}`",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{}`: the base URL takes no query string (epitaph appends /api/v1/query_range)",
            display_url(&url)
        ));
    }
    if url.path().trim_end_matches('/').ends_with("/api/v1") {
        return Err(format!(
            "`{}`: give the base URL without /api/v1 (epitaph appends /api/v1/query_range)",
            display_url(&url)
        ));
    }
    Ok(url)
}

/// A Prometheus label name (the classic charset, which 2.x requires unquoted).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a query template: exactly one kind of placeholder; `{instance_id}` only inside a
/// double-quoted label value (`="{instance_id}"` or `=~"{instance_id}"`), so the escaped id is
/// always a string literal; `{instance_matcher}` only where a matcher goes (after `{` or `,`,
/// before `}` or `,`).
pub fn template(t: &str) -> Result<Template, String> {
    let ids = t.matches(INSTANCE_ID).count();
    let matchers = t.matches(INSTANCE_MATCHER).count();
    match (ids, matchers) {
        (0, 0) => Err(format!(
            "`{t}` names no instance: put {INSTANCE_MATCHER} in a selector (mem_used_percent{{{INSTANCE_MATCHER}}}) or \"{INSTANCE_ID}\" in a label value"
        )),
        (_, 0) => {
            for (i, _) in t.match_indices(INSTANCE_ID) {
                let quoted_before = t[..i].ends_with('"');
                let quoted_after = t[i + INSTANCE_ID.len()..].starts_with('"');
                let before = t[..i].trim_end_matches('"').trim_end();
                let in_matcher = ["=", "=~", "!=", "!~"].iter().any(|op| before.ends_with(op));
                if !(quoted_before && quoted_after && in_matcher) {
                    return Err(format!(
                        "`{t}`: {INSTANCE_ID} must be a whole double-quoted label value, e.g. instance_id=\"{INSTANCE_ID}\""
                    ));
                }
            }
            Ok(Template::PerInstance(t.to_string()))
        }
        (0, _) => {
            for (i, _) in t.match_indices(INSTANCE_MATCHER) {
                let before = t[..i].trim_end();
                let after = t[i + INSTANCE_MATCHER.len()..].trim_start();
                if !((before.ends_with('{') || before.ends_with(','))
                    && (after.starts_with('}') || after.starts_with(',')))
                {
                    return Err(format!(
                        "`{t}`: {INSTANCE_MATCHER} must stand alone inside a selector's braces, e.g. mem_used_percent{{job=\"node\",{INSTANCE_MATCHER}}}"
                    ));
                }
            }
            Ok(Template::Batched(t.to_string()))
        }
        _ => Err(format!(
            "`{t}` mixes {INSTANCE_ID} and {INSTANCE_MATCHER}: use one of them"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(unit: Unit, limit: Option<f64>, p: PrometheusConfig) -> MetricsConfig {
        MetricsConfig {
            kind: crate::config::SourceKind::Prometheus,
            unit,
            limit,
            prometheus: Some(p),
            ..Default::default()
        }
    }

    fn with_url() -> PrometheusConfig {
        PrometheusConfig {
            url: Some("http://127.0.0.1:9090".into()),
            ..Default::default()
        }
    }

    #[test]
    fn templates_place_their_placeholders_where_a_value_or_matcher_goes() {
        assert!(template("mem_used_percent{instance_matcher}").is_err());
        assert!(matches!(
            template("mem_used_percent{{instance_matcher}}"),
            Ok(Template::Batched(_))
        ));
        assert!(matches!(
            template(
                "100 * (1 - a{job=\"n\", {instance_matcher}} / b{{instance_matcher},job=\"n\"})"
            ),
            Ok(Template::Batched(_))
        ));
        assert!(matches!(
            template("m{instance_id=\"{instance_id}\"}"),
            Ok(Template::PerInstance(_))
        ));
        assert!(matches!(
            template("m{host=~ \"{instance_id}\"}"),
            Ok(Template::PerInstance(_))
        ));
        for bad in [
            "mem_used_percent",
            "m{instance_id={instance_id}}",
            "m{instance_id=\"x{instance_id}\"}",
            "label_replace(m, \"x\", \"{instance_id}\", \"\", \"\")",
            "m{{instance_matcher}} or n{instance_id=\"{instance_id}\"}",
            "m{a=\"{instance_matcher}\"}",
        ] {
            assert!(template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_name_their_keys() {
        let negative = PrometheusConfig {
            rate_limit: -0.5,
            ..with_url()
        };
        let p = negative.problems(&metrics(Unit::Percent, None, negative.clone()));
        assert!(
            p.iter()
                .any(|x| x
                    .starts_with("sources.metrics.prometheus.rate_limit: `-0.5` is not a rate")),
            "{p:?}"
        );
        assert!(with_url()
            .problems(&metrics(Unit::Percent, None, with_url()))
            .is_empty());
        let no_url = metrics(Unit::Percent, None, PrometheusConfig::default());
        let p = PrometheusConfig::default().problems(&no_url);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sources.metrics.prometheus.url: required")),
            "{p:?}"
        );

        let bytes = metrics(Unit::Bytes, None, with_url());
        let p = with_url().problems(&bytes);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sources.metrics.limit: required")),
            "{p:?}"
        );
        let with_limit_query = PrometheusConfig {
            limit_query: Some("node_memory_MemTotal_bytes{{instance_matcher}}".into()),
            ..with_url()
        };
        assert!(with_limit_query
            .problems(&metrics(Unit::Bytes, None, with_limit_query.clone()))
            .is_empty());
        let p = with_limit_query.problems(&metrics(Unit::Percent, None, with_limit_query.clone()));
        assert!(
            p.iter().any(|x| x.contains("limit_query: only used")),
            "{p:?}"
        );

        let conflicting = PrometheusConfig {
            bearer_token: Some(Secret::new("t")),
            sigv4: Some(Sigv4Config::default()),
            url: Some("https://user:hunter2@prom/api/v1".into()),
            max_points: 3,
            ..Default::default()
        };
        let p = conflicting.problems(&metrics(Unit::Percent, None, conflicting.clone()));
        let all = p.join("\n");
        assert!(all.contains("bearer_token, sigv4 are exclusive"), "{all}");
        assert!(all.contains("max_points: must be at least"), "{all}");
        assert!(all.contains("without /api/v1"), "{all}");
        assert!(
            !all.contains("hunter2"),
            "a URL's password is never echoed: {all}"
        );

        let mut m = metrics(Unit::Percent, None, with_url());
        m.instance_label = "instance-id".into();
        let p = with_url().problems(&m);
        assert!(
            p.iter()
                .any(|x| x.starts_with("sources.metrics.instance_label")),
            "{p:?}"
        );
    }

    #[test]
    fn resolve_types_the_options() {
        let p = PrometheusConfig {
            query: "m{instance_id=\"{instance_id}\"}".into(),
            batch: 50,
            username: Some("u".into()),
            password: Some(Secret::new("p")),
            headers: [("X-Scope-OrgID".to_string(), Secret::new("tenant-1"))].into(),
            ..with_url()
        };
        let s = Settings::resolve(&metrics(Unit::Percent, None, p)).unwrap();
        assert_eq!(s.batch, 1, "one instance per request with {{instance_id}}");
        assert_eq!(s.unit, Unit::Percent);
        assert_eq!(s.limit, Some(100.0));
        assert_eq!(s.min_step_secs, 60);
        assert!(matches!(s.auth, Auth::Basic { .. }));
        assert_eq!(s.headers[0].0.as_str(), "x-scope-orgid");
    }
}
