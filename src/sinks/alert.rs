//! The alert message: what one deployment transition tells a human (schema `epitaph.alert.v1`,
//! also the generic webhook's body), built from a finding, the compact rows of the instances
//! behind it, and the one full report its evidence quotes ([`evidence_instance`]).
//! Every piece of last-words text passes through the [`Redactor`] here, before it is stored in
//! the outbox or sent anywhere.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::alerting::{ResolveReason, Transition};
use crate::analysis::signatures::SignatureLibrary;
use crate::model::{
    DeploymentFinding, DeploymentVerdict, InstanceFacts, InstanceReport, LeakVerdict,
};
use crate::sinks::redact::Redactor;

/// Schema name carried in every alert; bumped on incompatible change.
pub const ALERT_SCHEMA: &str = "epitaph.alert.v1";
/// Log lines shown before the matched line.
pub const CONTEXT_BEFORE: usize = 3;
/// Log lines shown after the matched line.
pub const CONTEXT_AFTER: usize = 2;
/// Longest log line kept in an alert; longer ones are cut with an ellipsis.
pub const MAX_CONTEXT_LINE_CHARS: usize = 300;
/// Instances listed by id in an alert.
pub const MAX_LISTED_INSTANCES: usize = 10;

/// One alert: a deployment's transition with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub schema: String,
    /// Unique per message and stable across retries: receivers can deduplicate on it.
    pub id: String,
    /// `firing`, `changed` or `resolved`.
    pub kind: String,
    pub deployment: String,
    pub asgs: Vec<String>,
    /// The verdict now (for `resolved`: the verdict that was firing).
    pub verdict: DeploymentVerdict,
    pub previous_verdict: Option<DeploymentVerdict>,
    /// For `resolved`: why.
    pub resolved_reason: Option<ResolveReason>,
    pub summary: String,
    pub instances: usize,
    pub memory_deaths: usize,
    pub first_death: Option<DateTime<Utc>>,
    pub last_death: Option<DateTime<Utc>>,
    /// Median growth of the memory floor per hour over leaking instances, in `unit`.
    pub growth_per_hour: Option<f64>,
    /// `percent` or `bytes`.
    pub unit: String,
    /// Median launch-to-exhaustion time of leaking instances, from the floor's trend: how
    /// long a fresh instance of this deployment lives.
    pub projected_hours_to_oom: Option<f64>,
    pub median_lifetime_hours: Option<f64>,
    /// The most telling last words, redacted.
    pub evidence: Option<Evidence>,
    /// Runtime-specific next steps for the signatures seen.
    pub next_steps: Vec<String>,
    pub links: Vec<Link>,
    /// Since when the deployment has its problem, and the deployment it replaced with that
    /// one's record: the rollback target (absent for `resolved` and healthy verdicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::model::RegressionOrigin>,
    /// Early warning: the deployment's running instances projected to reach their memory
    /// limit, soonest first (at most [`MAX_LISTED_INSTANCES`]; absent for `resolved`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_expected_deaths: Vec<crate::model::ProjectedDeath>,
    /// Some instance ids (at most [`MAX_LISTED_INSTANCES`]).
    pub instance_ids: Vec<String>,
    /// When the message was made (wall clock).
    pub created_at: DateTime<Utc>,
    /// The end of the scanned window the finding describes (data time; for a backfill it is
    /// long before `created_at`).
    #[serde(default)]
    pub as_of: DateTime<Utc>,
}

/// A matched last-words line with the lines around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub instance_id: String,
    pub terminated_at: DateTime<Utc>,
    pub signature: String,
    pub runtime: String,
    pub matched_line: String,
    /// The context lines in order, the matched one included.
    pub context: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// What building links needs from the configuration.
#[derive(Debug, Clone, Default)]
pub struct LinkConfig {
    /// CloudWatch Logs: region, log group and stream pattern, when logs come from AWS.
    pub cloudwatch: Option<(String, String, String)>,
    /// Per-instance dashboard URL template.
    pub dashboard_template: Option<String>,
}

/// Everything an alert is built from.
pub struct AlertInput<'a> {
    pub id: String,
    pub transition: &'a Transition,
    pub deployment: &'a str,
    pub finding: Option<&'a DeploymentFinding>,
    /// The compact rows of the deployment's instances in the finding lookback.
    pub reports: &'a [&'a InstanceFacts],
    /// The full report of [`evidence_instance`]`(reports)`, whose last words the alert quotes
    /// (None: no instance died with a signature, or its evidence is no longer kept).
    pub evidence: Option<&'a InstanceReport>,
    /// The deployment's running instances projected to reach their limit, soonest first.
    pub next_deaths: &'a [&'a crate::model::ProjectedDeath],
    pub unit: &'a str,
    pub links: &'a LinkConfig,
    pub signatures: &'a SignatureLibrary,
    pub redactor: &'a Redactor,
    /// Wall-clock time of the message.
    pub now: DateTime<Utc>,
    /// The end of the scanned window.
    pub as_of: DateTime<Utc>,
}

/// Builds the alert for one transition.
pub fn build(input: &AlertInput<'_>) -> Alert {
    let (kind, verdict, previous, reason) = match input.transition {
        Transition::Firing { verdict } => ("firing", *verdict, None, None),
        Transition::Changed { from, to } => ("changed", *to, Some(*from), None),
        Transition::Resolved { from, reason } => ("resolved", *from, None, Some(*reason)),
    };
    let reports = input.reports;
    let memory_deaths = reports
        .iter()
        .filter(|r| r.verdict.is_memory_death())
        .count();
    let summary = match (input.transition, input.finding) {
        (Transition::Resolved { reason, .. }, _) => {
            format!("Resolved: {}.", reason.sentence())
        }
        (_, Some(f)) => f.summary.clone(),
        (_, None) => String::new(),
    };
    let projected: Vec<f64> = reports
        .iter()
        .filter_map(|r| {
            (r.leak == Some(LeakVerdict::Leak)).then_some(())?;
            let start = r.launch_time.or(r.leak_basis_start)?;
            let end = r.projected_exhaustion?;
            let h = (end - start).num_seconds() as f64 / 3600.0;
            (h > 0.0).then_some(h)
        })
        .collect();
    let evidence = input
        .evidence
        .and_then(|r| quote_evidence(r, input.redactor));
    let mut next_steps: Vec<String> = Vec::new();
    let mut doc_links: Vec<Link> = Vec::new();
    for r in reports {
        // Context and shutdown lines explain nothing to fix.
        for id in &r.death_signatures {
            if let Some(s) = input.signatures.get(id) {
                let step = format!("{} ({}): {}", s.spec.id, s.spec.runtime, s.spec.next_step);
                if !next_steps.contains(&step) {
                    next_steps.push(step);
                }
                for d in &s.spec.docs {
                    if !doc_links.iter().any(|l| l.url == d.url) {
                        doc_links.push(Link {
                            label: d.label.clone(),
                            url: d.url.clone(),
                        });
                    }
                }
            }
        }
    }
    let mut ids: Vec<&InstanceFacts> = reports.to_vec();
    ids.sort_by_key(|r| std::cmp::Reverse(r.terminated_at));
    Alert {
        schema: ALERT_SCHEMA.to_string(),
        id: input.id.clone(),
        kind: kind.to_string(),
        deployment: input.deployment.to_string(),
        asgs: input.finding.map(|f| f.asgs.clone()).unwrap_or_default(),
        verdict,
        previous_verdict: previous,
        resolved_reason: reason,
        summary,
        instances: reports.len(),
        memory_deaths,
        first_death: reports.iter().map(|r| r.terminated_at).min(),
        last_death: reports.iter().map(|r| r.terminated_at).max(),
        growth_per_hour: input
            .finding
            .and_then(|f| f.evidence.median_growth_per_hour),
        unit: input.unit.to_string(),
        projected_hours_to_oom: (!projected.is_empty()).then(|| median(projected)),
        median_lifetime_hours: input.finding.and_then(|f| f.evidence.median_lifetime_hours),
        links: evidence
            .as_ref()
            .map(|e| links(e, input.deployment, reports, input.links))
            .unwrap_or_default()
            .into_iter()
            .chain(doc_links)
            .collect(),
        evidence,
        next_steps,
        origin: match input.transition {
            Transition::Resolved { .. } => None,
            _ => input.finding.and_then(|f| f.origin.clone()),
        },
        next_expected_deaths: match input.transition {
            Transition::Resolved { .. } => Vec::new(),
            _ => input
                .next_deaths
                .iter()
                .take(MAX_LISTED_INSTANCES)
                .map(|p| (*p).clone())
                .collect(),
        },
        instance_ids: ids
            .iter()
            .take(MAX_LISTED_INSTANCES)
            .map(|r| r.instance_id.clone())
            .collect(),
        created_at: input.now,
        as_of: input.as_of,
    }
}

/// The most telling death: the latest leak death with a signature, else the latest memory
/// death with one, else the latest with any OOM or crash signature. Its full report is what
/// the alert quotes.
pub fn evidence_instance<'a>(reports: &[&'a InstanceFacts]) -> Option<&'a InstanceFacts> {
    let ranked = |r: &&InstanceFacts| -> u8 {
        match (r.verdict.is_leak_death(), r.verdict.is_memory_death()) {
            (true, _) => 2,
            (_, true) => 1,
            _ => 0,
        }
    };
    reports
        .iter()
        .copied()
        .filter(|r| !r.death_signatures.is_empty())
        .max_by(|a, b| (ranked(a), a.terminated_at).cmp(&(ranked(b), b.terminated_at)))
}

/// The deciding line of `best` with the lines around it, redacted.
fn quote_evidence(best: &InstanceReport, redactor: &Redactor) -> Option<Evidence> {
    let m = best.deciding_signature()?;
    let events = &best.last_words.events;
    let line = m.line.min(events.len().saturating_sub(1));
    let context = if events.is_empty() {
        vec![clip(&redactor.redact(&m.text))]
    } else {
        events[line.saturating_sub(CONTEXT_BEFORE)..(line + CONTEXT_AFTER + 1).min(events.len())]
            .iter()
            .map(|e| clip(&redactor.redact(&e.message)))
            .collect()
    };
    Some(Evidence {
        instance_id: best.instance_id.clone(),
        terminated_at: best.terminated_at,
        signature: m.signature.clone(),
        runtime: m.runtime.clone(),
        matched_line: clip(&redactor.redact(&m.text)),
        context,
    })
}

fn clip(s: &str) -> String {
    let s = s.trim_end();
    if s.chars().count() <= MAX_CONTEXT_LINE_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_CONTEXT_LINE_CHARS - 1).collect();
        out.push('…');
        out
    }
}

fn links(
    e: &Evidence,
    deployment: &str,
    reports: &[&InstanceFacts],
    cfg: &LinkConfig,
) -> Vec<Link> {
    let mut out = Vec::new();
    let from = e.terminated_at - Duration::minutes(10);
    let to = e.terminated_at + Duration::minutes(2);
    if let Some((region, group, pattern)) = &cfg.cloudwatch {
        let stream = pattern.replace("{instance_id}", &e.instance_id);
        out.push(Link {
            label: format!("Last words of {} (CloudWatch Logs)", e.instance_id),
            url: cloudwatch_logs_url(region, group, &stream, from, to),
        });
    }
    if let Some(t) = &cfg.dashboard_template {
        let asg = reports
            .iter()
            .find(|r| r.instance_id == e.instance_id)
            .map(|r| r.asg.as_str())
            .unwrap_or("");
        let start = reports
            .iter()
            .find(|r| r.instance_id == e.instance_id)
            .and_then(|r| r.launch_time.or(r.first_sample_at))
            .unwrap_or(from);
        let url = t
            .replace("{instance_id}", &encode(&e.instance_id))
            .replace("{deployment}", &encode(deployment))
            .replace("{asg}", &encode(asg))
            .replace("{from_ms}", &start.timestamp_millis().to_string())
            .replace("{to_ms}", &to.timestamp_millis().to_string())
            .replace("{from}", &encode(&start.to_rfc3339()))
            .replace("{to}", &encode(&to.to_rfc3339()));
        out.push(Link {
            label: format!("Memory of {} (dashboard)", e.instance_id),
            url,
        });
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CloudWatch console's deep link to a log stream and time range. The console keeps its
/// state in the fragment, encoded twice with `%` written as `$`.
pub fn cloudwatch_logs_url(
    region: &str,
    group: &str,
    stream: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let twice = |s: &str| encode(&encode(s)).replace('%', "$");
    let query = encode(&format!(
        "?start={}&end={}",
        from.timestamp_millis(),
        to.timestamp_millis()
    ))
    .replace('%', "$");
    format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}{query}",
        twice(group),
        twice(stream)
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "+1.8 %/h" or "+42 MiB/h".
pub fn fmt_growth(v: f64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{:+.0} MiB/h", v / (1024.0 * 1024.0))
    } else {
        format!("{v:+.2} %/h")
    }
}

/// A memory level: "87.5 %" or "3.2 GiB".
pub fn fmt_value(v: f64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{:.1} GiB", v / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{v:.1} %")
    }
}

/// "3.2 h" or "2.1 d".
pub fn fmt_hours(h: f64) -> String {
    if h >= 48.0 {
        format!("{:.1} d", h / 24.0)
    } else {
        format!("{h:.1} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudwatch_link_encodes_like_the_console() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let u = cloudwatch_logs_url("eu-west-1", "/app/api", "i-0abc", t, t);
        assert_eq!(
            u,
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fapp$252Fapi/log-events/i-0abc$3Fstart$3D1700000000000$26end$3D1700000000000"
        );
    }

    #[test]
    fn growth_and_hours_formatting() {
        assert_eq!(fmt_growth(1.5, "percent"), "+1.50 %/h");
        assert_eq!(fmt_growth(42.0 * 1024.0 * 1024.0, "bytes"), "+42 MiB/h");
        assert_eq!(fmt_hours(5.0), "5.0 h");
        assert_eq!(fmt_hours(72.0), "3.0 d");
    }
}
