//! The config's rules across keys, which no key's type can express (an identity that needs
//! its tag, the retention keys against each other, a backend's table for its kind, URLs,
//! regexes, cron), and the problems only visible on this machine (missing files). Each
//! problem names its key.

use std::path::PathBuf;

use chrono::Duration;

use super::sections::{Identity, MAX_ROLE_SESSION, MIN_ROLE_SESSION};
use super::sources::SourceKind;
use super::Config;

impl Config {
    /// Cross-key checks that the schema cannot express.
    pub(super) fn semantic_problems(&self) -> Vec<String> {
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
        match d.identity {
            Identity::Tag => need(d.tag.is_some(), "deployment.tag", &mut p),
            Identity::LogField => need(d.log_field.is_some(), "deployment.log_field", &mut p),
            Identity::MetricLabel => {
                need(d.metric_label.is_some(), "deployment.metric_label", &mut p)
            }
            Identity::Asg | Identity::LaunchTemplate => {}
        }
        if !self.sources.logs.stream_pattern.contains("{instance_id}") {
            p.push(
                "sources.logs.stream_pattern: must contain the {instance_id} placeholder".into(),
            );
        }
        let s = &self.sources;
        if s.logs.kind == SourceKind::Aws
            && s.logs.log_group.is_none()
            && s.logs.log_groups.is_empty()
        {
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
        {
            let d = self.aws.session_duration.to_std();
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
        if s.metrics.kind == SourceKind::Prometheus {
            let default = crate::sources::prometheus::config::PrometheusConfig::default();
            p.extend(
                s.metrics
                    .prometheus
                    .as_ref()
                    .unwrap_or(&default)
                    .problems(&s.metrics),
            );
        }
        for (key, kind) in [
            ("sources.activities.kind", s.activities.kind),
            ("sources.metrics.kind", s.metrics.kind),
        ] {
            if kind.is_logs_backend() {
                p.push(format!(
                    "{key}: `{kind}` is a logs backend (set it as sources.logs.kind)"
                ));
            }
        }
        match s.logs.kind {
            SourceKind::Splunk => p.extend(s.logs.splunk.clone().unwrap_or_default().problems()),
            SourceKind::Loki => p.extend(s.logs.loki.clone().unwrap_or_default().problems()),
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
        for (key, kind, path) in [
            ("sources.activities", s.activities.kind, &s.activities.path),
            ("sources.logs", s.logs.kind, &s.logs.path),
            ("sources.metrics", s.metrics.kind, &s.metrics.path),
        ] {
            if kind != SourceKind::File {
                continue;
            }
            match path {
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
            .filter(|_| s.metrics.kind == SourceKind::Prometheus)
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
        match (logs.kind, &logs.splunk, &logs.loki) {
            (SourceKind::Splunk, Some(c), _) => {
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
            (SourceKind::Loki, _, Some(c)) => {
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

    /// The retention keys against each other and the finding lookback.
    fn retention_problems(&self) -> Vec<String> {
        let (evidence, facts, lookback) = (
            self.state.retention.get(),
            self.state.facts_retention.get(),
            self.scan.finding_lookback.get(),
        );
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
