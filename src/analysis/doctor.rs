//! `epitaph doctor`'s judgement: turns what the probes saw (`sources::probe`, and what the file
//! backends read) into a checklist — PASS / WARN / FAIL / SKIP items, each failure with the
//! fix: the IAM action to allow, the nearest existing group or log group name, the stream
//! pattern the streams actually follow, the exact `extra_dimensions` for the dimension sets
//! the metric actually has. Pure: no I/O, tested on data.
//!
//! A FAIL is either a configuration error (exit 2: a name, a pattern, a policy to fix) or an
//! account/API that could not be reached (exit 1: credentials, network, endpoint). SKIP says a
//! check was not made and why; nothing unchecked is ever reported as passing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{edit_distance, Config};
use crate::model::{Termination, TimeWindow};
use crate::sources::probe::{
    ApiLookupResult, CallError, CallRecord, DimensionSet, GroupSeen, LogApiProbe, LogGroupProbe,
    LogsProbe, LookupResult, MetricsProbe, PrometheusProbe, Sample, TargetProbe,
};

/// Names listed in a failure (closest first).
pub const MAX_LISTED_NAMES: usize = 10;
/// Instances whose evidence is looked up (most recent terminations first, then running ones).
pub const SAMPLE_INSTANCES: usize = 3;
/// A name lookup that found no stream is a configuration error only when it failed for at
/// least this many sampled instances (one instance may well have died before its agent ran).
pub const MIN_SAMPLES_FOR_STREAM_FAIL: usize = 2;
/// Exit code when a FAIL is a configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when the account or an API could not be reached (and nothing is misconfigured).
pub const EXIT_UNREACHABLE: u8 = 1;
/// Where the README documents the IAM policy.
pub const IAM_POLICY_DOC: &str =
    "README.md, \"Running against AWS\" (the minimal read-only IAM policy)";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not checked (not applicable, or a prerequisite failed); the detail says why.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What kind of failure a FAIL is (it decides the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Something in the configuration (or the IAM policy) to fix: exit 2.
    Config,
    /// The account or API could not be reached: exit 1.
    Unreachable,
}

/// One checklist item (`--format json`: `{"id", "status", "detail", "fix"}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub id: String,
    pub status: Status,
    pub detail: String,
    /// What to change; present for FAIL and WARN.
    pub fix: Option<String>,
    #[serde(skip)]
    pub failure: Option<Failure>,
}

impl Check {
    pub fn pass(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
            failure: None,
        }
    }
    pub fn skip(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            status: Status::Skip,
            ..Check::pass(id, detail)
        }
    }
    pub fn warn(id: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::pass(id, detail)
        }
    }
    pub fn fail(
        id: impl Into<String>,
        failure: Failure,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            status: Status::Fail,
            fix: Some(fix.into()),
            failure: Some(failure),
            ..Check::pass(id, detail)
        }
    }
}

/// The whole checklist: what `epitaph doctor --format json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checklist {
    pub checks: Vec<Check>,
    /// No FAIL (warnings allowed).
    pub ok: bool,
    /// 0 all pass; 2 a configuration error; 1 the account/API could not be reached.
    pub exit_code: u8,
}

impl Checklist {
    pub fn new(checks: Vec<Check>) -> Self {
        let failures: Vec<Failure> = checks.iter().filter_map(|c| c.failure).collect();
        // A configuration error is what the user can act on; it wins over unreachable.
        let exit_code = if failures.contains(&Failure::Config) {
            EXIT_CONFIG
        } else if failures.is_empty() {
            0
        } else {
            EXIT_UNREACHABLE
        };
        Checklist {
            ok: failures.is_empty(),
            exit_code,
            checks,
        }
    }
}

// ------------------------------------------------------------------ names -----------------

/// The names closest to `wanted` (case-insensitive edit distance, then name), at most
/// `MAX_LISTED_NAMES`, and the nearest one when it is close enough to be a misspelling
/// (distance at most a third of the longer name, or `wanted` within it).
pub fn similar_names(wanted: &str, names: &[String]) -> (Vec<String>, Option<String>) {
    let w = wanted.to_ascii_lowercase();
    let mut ranked: Vec<(usize, &String)> = names
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|n| (edit_distance(&w, &n.to_ascii_lowercase()), n))
        .collect();
    ranked.sort();
    let nearest = ranked
        .first()
        .filter(|(d, n)| *d > 0 && (*d * 3 <= n.len().max(w.len()).max(3)))
        .map(|(_, n)| n.to_string());
    let listed = ranked
        .into_iter()
        .take(MAX_LISTED_NAMES)
        .map(|(_, n)| n.clone())
        .collect();
    (listed, nearest)
}

/// "a, b, c (and more)" for a listing.
fn list(names: &[String], truncated: bool) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let more = if truncated || names.len() >= MAX_LISTED_NAMES {
        ", …"
    } else {
        ""
    };
    let shown: Vec<&str> = names
        .iter()
        .take(MAX_LISTED_NAMES)
        .map(String::as_str)
        .collect();
    format!("{}{more}", shown.join(", "))
}

fn did_you_mean(nearest: &Option<String>) -> String {
    nearest
        .as_ref()
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

// ------------------------------------------------------------------ errors ----------------

/// The error codes AWS services use for a denied action.
pub fn is_access_denied(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedOperation"
                | "UnauthorizedAccess"
                | "NotAuthorized"
        )
    )
}

/// The error codes AWS services use for credentials they do not accept.
pub fn is_credentials_error(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidSignatureException"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "AuthFailure"
                | "RequestExpired"
        )
    )
}

/// The account could not be reached: no answer at all, or credentials it rejected.
pub fn is_unreachable(e: &CallError) -> bool {
    !e.answered || is_credentials_error(e.code.as_deref())
}

/// Whether a probe's first call shows the account cannot be reached (no later probe is
/// worth making then).
pub fn first_call_unreachable(calls: &[CallRecord]) -> bool {
    calls
        .first()
        .and_then(|c| c.error.as_ref())
        .is_some_and(is_unreachable)
}

// ------------------------------------------------------------------ samples ---------------

/// The instances whose evidence the probes look up: the most recent terminations in the
/// window (newest first), then instances running now in the selected groups, at most
/// `SAMPLE_INSTANCES`. Evidence of a terminated instance counts until its activity ended (or
/// the drain window) plus the grace, as in a scan.
pub fn pick_samples(
    cfg: &Config,
    window: TimeWindow,
    terminations: &[Termination],
    running: &[(String, String)],
    now: DateTime<Utc>,
) -> Vec<Sample> {
    let mut terms: Vec<&Termination> = terminations
        .iter()
        .filter(|t| window.contains(t.time))
        .collect();
    terms.sort_by_key(|t| std::cmp::Reverse(t.time));
    let mut out: Vec<Sample> = Vec::new();
    for t in terms {
        if out.iter().any(|s| s.instance_id == t.instance_id) {
            continue;
        }
        let ended = t
            .end_time
            .unwrap_or(t.time + cfg.drain_window())
            .max(t.time);
        out.push(Sample {
            instance_id: t.instance_id.clone(),
            asg: Some(t.asg.clone()),
            origin: t.origin.clone(),
            terminated_at: Some(t.time),
            until: ended + cfg.last_words_grace(),
        });
    }
    for (id, asg) in running {
        out.push(Sample {
            instance_id: id.clone(),
            asg: Some(asg.clone()),
            origin: None,
            terminated_at: None,
            until: now,
        });
    }
    out.truncate(SAMPLE_INSTANCES);
    out
}

fn describe_sample(s: &Sample) -> String {
    match s.terminated_at {
        Some(t) => format!(
            "{} (terminated {})",
            s.instance_id,
            t.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        None => format!("{} (running)", s.instance_id),
    }
}

// ------------------------------------------------------------------ configuration ---------

/// The source kinds this build can read; one FAIL per kind it cannot.
pub fn kind_checks(cfg: &Config, aws_built: bool) -> Vec<Check> {
    let s = &cfg.sources;
    let mut out = Vec::new();
    for (key, kind) in [
        ("sources.activities.kind", &s.activities.kind),
        ("sources.logs.kind", &s.logs.kind),
        ("sources.metrics.kind", &s.metrics.kind),
    ] {
        match kind.as_str() {
            "file" => {}
            "splunk" | "loki" if key == "sources.logs.kind" => {}
            "splunk" | "loki" => out.push(Check::fail(
                key,
                Failure::Config,
                format!("{key} = \"{kind}\": {kind} is a logs backend"),
                format!("set sources.logs.kind = \"{kind}\" instead"),
            )),
            "prometheus" if key == "sources.metrics.kind" => {}
            "prometheus" => out.push(Check::fail(
                key,
                Failure::Config,
                format!("{key} = \"prometheus\": Prometheus is a metrics backend"),
                "set sources.metrics.kind = \"prometheus\" instead",
            )),
            "aws" if aws_built => {}
            "aws" => out.push(Check::fail(
                key,
                Failure::Config,
                format!("{key} = \"aws\": this build has no AWS support, so no AWS check can run"),
                "build with the `aws` feature (it is on by default: drop --no-default-features)",
            )),
            other => out.push(Check::fail(
                key,
                Failure::Config,
                format!("{key} = \"{other}\": only the \"file\" and \"aws\" backends (for logs also \"splunk\" and \"loki\", for metrics \"prometheus\") are built in this version"),
                format!("set {key} to \"file\" or \"aws\""),
            )),
        }
    }
    out
}

/// Input paths (file sources, inventory, extra signatures): one FAIL per missing path, or one
/// PASS when every configured path exists; nothing when no path is configured.
pub fn path_checks(cfg: &Config, problems: &[String]) -> Vec<Check> {
    let s = &cfg.sources;
    let any_path = [&s.activities, &s.logs, &s.metrics]
        .iter()
        .any(|x| x.kind == "file")
        || s.activities.inventory.is_some()
        || cfg.signatures.extra.is_some();
    if !any_path {
        return Vec::new();
    }
    if problems.is_empty() {
        return vec![Check::pass(
            "files.paths",
            "every configured input path exists",
        )];
    }
    problems
        .iter()
        .map(|p| {
            let key = p.split(':').next().unwrap_or("").to_string();
            Check::fail(
                "files.paths",
                Failure::Config,
                p.clone(),
                format!("point {key} at an existing file or folder (relative paths are relative to the config file)"),
            )
        })
        .collect()
}

/// What a file backend read, for the checklist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRead {
    /// Terminations in the window (activities), or instances with evidence (logs, metrics).
    pub found: usize,
    /// Instances looked up (logs, metrics).
    pub sampled: usize,
    /// Records skipped for bad content, and the first few with their location.
    pub skipped: usize,
    pub first_skipped: Vec<String>,
    /// Inputs that could not be read at all (or the backend's error).
    pub errors: Vec<String>,
    /// Inputs read but truncated (a pagination token left in an export).
    pub warnings: Vec<String>,
}

/// The checks of the `file` backends: activities parse and hold terminations in the window;
/// the sampled instances have last words and memory series.
pub fn file_checks(
    activities: Option<&FileRead>,
    logs: Option<&FileRead>,
    metrics: Option<&FileRead>,
    window: TimeWindow,
) -> Vec<Check> {
    let mut out = Vec::new();
    let span = format!(
        "{} – {}",
        window.start.format("%Y-%m-%dT%H:%M:%SZ"),
        window.end.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let unreadable = |id: &str, key: &str, r: &FileRead| {
        Check::fail(
            id,
            Failure::Config,
            format!(
                "{} input(s) could not be read: {}",
                r.errors.len(),
                r.errors
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!("fix or remove the files named, or point {key} elsewhere"),
        )
    };
    // A check that would pass or warn, when the exports it read are truncated: a warning
    // naming them and the fix.
    let truncated = |check: Check, r: &FileRead| {
        if r.warnings.is_empty() || matches!(check.status, Status::Fail | Status::Skip) {
            return check;
        }
        Check::warn(
            &check.id,
            format!(
                "{}; {} truncated export(s): {}",
                check.detail,
                r.warnings.len(),
                r.warnings.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
            "export them again without --no-paginate or --max-items: the scan is incomplete until then",
        )
    };
    let skipped_note = |r: &FileRead| {
        if r.skipped == 0 {
            String::new()
        } else {
            format!(
                "; {} record(s) skipped, first: {}",
                r.skipped,
                r.first_skipped.first().cloned().unwrap_or_default()
            )
        }
    };
    if let Some(r) = activities {
        let check = if !r.errors.is_empty() {
            unreadable("files.activities", "sources.activities.path", r)
        } else if r.found == 0 {
            Check::warn(
                "files.activities",
                format!("the activity exports parse, but hold no termination in the window {span}{}", skipped_note(r)),
                "widen scan.since (or export newer activities); nothing else can be checked on data",
            )
        } else if r.skipped > 0 {
            Check::warn(
                "files.activities",
                format!(
                    "{} terminations in the window {span}{}",
                    r.found,
                    skipped_note(r)
                ),
                "the skipped records are listed with their file:line; fix or drop them",
            )
        } else {
            Check::pass(
                "files.activities",
                format!("{} terminations in the window {span}", r.found),
            )
        };
        out.push(truncated(check, r));
    }
    for (id, key, what, r) in [
        ("files.logs", "sources.logs.path", "last words", logs),
        (
            "files.metrics",
            "sources.metrics.path",
            "a memory series",
            metrics,
        ),
    ] {
        let Some(r) = r else { continue };
        let check = if !r.errors.is_empty() {
            unreadable(id, key, r)
        } else if r.sampled == 0 {
            Check::skip(
                id,
                format!("not checked: no terminated instance to look {what} up for"),
            )
        } else if r.found == 0 {
            Check::warn(
                id,
                format!("none of the {} most recent terminated instances has {what} in {key}{}", r.sampled, skipped_note(r)),
                format!("check that {key} holds the instances' data and that the instance ids match (sources.logs.stream_pattern, sources.metrics.instance_label)"),
            )
        } else {
            let c = format!(
                "{} of the {} most recent terminated instances have {what}{}",
                r.found,
                r.sampled,
                skipped_note(r)
            );
            if r.skipped > 0 {
                Check::warn(
                    id,
                    c,
                    "the skipped records are listed with their file:line; fix or drop them",
                )
            } else {
                Check::pass(id, c)
            }
        };
        out.push(truncated(check, r));
    }
    out
}

// ------------------------------------------------------------------ AWS -------------------

/// The AWS checks when the clients could not even be set up (no region): every AWS check
/// fails or is skipped with the reason.
pub fn aws_not_configured(message: &str) -> Vec<Check> {
    let mut out = vec![Check::fail(
        "aws.connection",
        Failure::Config,
        message.to_string(),
        "set aws.region (or aws.targets, AWS_REGION, or a profile with a region)",
    )];
    out.push(Check::skip(
        "aws.checks",
        "not checked: IAM actions, groups, log groups, streams and metrics need a region",
    ));
    out
}

/// The event intake's queue, judged from its `GetQueueAttributes` answer: reachable (with its
/// depth), and with a dead-letter queue — without one, a message epitaph cannot read comes
/// back for ever.
pub fn events_check(
    queue_url: &str,
    attributes: std::result::Result<&BTreeMap<String, String>, &CallError>,
) -> Check {
    const ID: &str = "events.queue";
    match attributes {
        Err(e) if is_access_denied(e.code.as_deref()) => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: {}", e.message),
            "grant sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and sqs:GetQueueAttributes on the queue (deploy/iam/epitaph-events.json)",
        ),
        Err(e) if e.code.as_deref() == Some("QueueDoesNotExist") || e.code.as_deref() == Some("AWS.SimpleQueueService.NonExistentQueue") => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: no such queue ({})", e.message),
            "check sources.events.queue_url (and the region and account in it); deploy/aws/event-intake.yaml creates the queue and its rule",
        ),
        Err(e) if e.answered => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: {}", e.message),
            "check sources.events.queue_url and the credentials' access to it",
        ),
        Err(e) => Check::fail(
            ID,
            Failure::Unreachable,
            format!("{queue_url}: {}", e.message),
            "check the network path to SQS (VPC endpoint, proxy) and aws.endpoint_url",
        ),
        Ok(a) => {
            let n = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let detail = format!(
                "{queue_url}: {} message(s) waiting, {} in flight",
                n("ApproximateNumberOfMessages"),
                n("ApproximateNumberOfMessagesNotVisible")
            );
            if a.get("RedrivePolicy").is_some_and(|r| !r.is_empty()) {
                Check::pass(ID, format!("{detail}; a dead-letter queue takes what cannot be read"))
            } else {
                Check::warn(
                    ID,
                    format!("{detail}; no dead-letter queue"),
                    "give the queue a RedrivePolicy (deploy/aws/event-intake.yaml does): a message epitaph cannot read otherwise comes back for ever",
                )
            }
        }
    }
}

/// The note for configurations without any AWS source: which checks are AWS-only.
pub fn aws_not_used() -> Check {
    Check::skip(
        "aws",
        "no source has kind = \"aws\": the AWS-only checks (credentials and region, IAM actions, Auto Scaling groups, log group and streams, metric dimensions) were not run",
    )
}

/// The actions a configuration makes a scan use, and whether each is used by the doctor only
/// (`deploy/iam/epitaph-read.json` must grant exactly the union over every configuration).
pub fn expected_actions(cfg: &Config) -> Vec<(&'static str, bool)> {
    let s = &cfg.sources;
    let mut out = Vec::new();
    if s.activities.kind == "aws" {
        out.push(("autoscaling:DescribeAutoScalingGroups", false));
        out.push(("autoscaling:DescribeScalingActivities", false));
        if s.activities.describe_instances {
            out.push(("ec2:DescribeInstances", false));
        }
    }
    if s.logs.kind == "aws" {
        out.push(("logs:DescribeLogGroups", false));
        match s.logs.stream_lookup.as_str() {
            "search" => {
                out.push(("logs:DescribeLogStreams", false));
                out.push(("logs:FilterLogEvents", false));
            }
            "text" => out.push(("logs:FilterLogEvents", false)),
            _ => out.push(("logs:GetLogEvents", false)),
        }
    }
    if s.metrics.kind == "aws" {
        out.push(("cloudwatch:GetMetricData", false));
        out.push(("cloudwatch:ListMetrics", true));
    }
    if s.events.kind == crate::sources::events::config::EventsKind::Sqs {
        out.extend(EVENT_ACTIONS.map(|a| (a, false)));
    }
    out
}

/// The IAM actions of the event intake (`sources.events.kind = "sqs"`).
pub const EVENT_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

fn with_label(id: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{id}@{l}"),
        None => id.to_string(),
    }
}

/// The checks of one AWS target, in order: connection, IAM actions, groups, terminations,
/// log groups, last words, memory metric. `label` (the target's name) suffixes every id when
/// several targets are probed.
pub fn aws_checks(cfg: &Config, p: &TargetProbe, label: Option<&str>) -> Vec<Check> {
    let id = |s: &str| with_label(s, label);
    let mut out = Vec::new();
    let calls: Vec<&CallRecord> = p
        .activities
        .iter()
        .flat_map(|a| &a.calls)
        .chain(p.logs.iter().flat_map(|l| &l.calls))
        .chain(p.metrics.iter().flat_map(|m| &m.calls))
        .collect();
    let region = if p.target.region.is_empty() {
        "(no region)".to_string()
    } else {
        p.target.region.clone()
    };
    let endpoint = match &p.target.endpoint {
        Some(e) => format!("endpoint {e} (aws.endpoint_url or AWS_ENDPOINT_URL)"),
        None => "the default AWS endpoints".to_string(),
    };
    let Some(first) = calls.first() else {
        out.push(Check::skip(
            id("aws.connection"),
            "not checked: no AWS call was made",
        ));
        return out;
    };
    if let Some(e) = first.error.as_ref().filter(|e| is_unreachable(e)) {
        let why = if e.answered {
            "the credentials were rejected"
        } else {
            "no answer (credentials, network or endpoint)"
        };
        out.push(Check::fail(
            id("aws.connection"),
            Failure::Unreachable,
            format!("target {}: region {region}, {endpoint}: {} — {why}: {}", p.target.name, first.action, e.message),
            "check the credentials (AWS_PROFILE or aws.profile, `aws sts get-caller-identity`), aws.region / aws.targets, and that the endpoint is reachable",
        ));
        out.push(Check::skip(
            id("aws.checks"),
            "not checked: IAM actions, groups, log groups, streams and metrics (AWS could not be reached)",
        ));
        return out;
    }
    out.push(Check::pass(
        id("aws.connection"),
        format!(
            "target {}: region {region}, {endpoint}; credentials accepted ({} answered)",
            p.target.name, first.action
        ),
    ));

    // IAM actions, each from the calls made with it.
    for (action, doctor_only) in expected_actions(cfg) {
        let made: Vec<&&CallRecord> = calls.iter().filter(|c| c.action == action).collect();
        let check_id = id(&format!("iam.{action}"));
        let denied = made
            .iter()
            .filter_map(|c| c.error.as_ref())
            .find(|e| is_access_denied(e.code.as_deref()));
        let failed = made.iter().filter_map(|c| c.error.as_ref()).next();
        out.push(match (denied, failed) {
            (Some(e), _) if doctor_only => Check::warn(
                check_id,
                format!("{action} is denied ({}); scans do not need it, but the doctor cannot list what exists without it", e.message),
                format!("allow {action} to let `epitaph doctor` diagnose (see {IAM_POLICY_DOC})"),
            ),
            (Some(e), _) => Check::fail(
                check_id,
                Failure::Config,
                format!("{action} is denied: {}", e.message),
                format!("allow {action} in the IAM policy of these credentials (see {IAM_POLICY_DOC})"),
            ),
            (None, Some(e)) => Check::fail(
                check_id,
                Failure::Unreachable,
                format!("{action} failed: {}", e.message),
                "retry; if it persists, check the endpoint and the service's health".to_string(),
            ),
            (None, None) if made.is_empty() => {
                Check::skip(check_id, format!("not checked: {action} was not called"))
            }
            (None, None) => Check::pass(check_id, format!("{action} allowed")),
        });
    }

    if let Some(a) = &p.activities {
        out.extend(group_checks(cfg, a, &region, &id));
    }
    if let Some(l) = &p.logs {
        out.extend(log_checks(l, &region, &id));
    }
    if let Some(m) = &p.metrics {
        out.push(metric_check(cfg, m, &region, &id("metrics.series")));
    }
    out
}

fn group_checks(
    cfg: &Config,
    a: &crate::sources::probe::ActivitiesProbe,
    region: &str,
    id: &dyn Fn(&str) -> String,
) -> Vec<Check> {
    let s = &cfg.sources.activities;
    let existing: Vec<String> = match &a.listing {
        Ok(l) => l.items.iter().map(|g| g.name.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let truncated = a.listing.as_ref().is_ok_and(|l| l.truncated);
    let mut out = Vec::new();
    let groups_check = match (&a.named, &a.listing) {
        (Some(Err(_)), _) | (None, Err(_)) => Check::skip(
            id("activities.groups"),
            "not checked: DescribeAutoScalingGroups failed (see iam.autoscaling:DescribeAutoScalingGroups)",
        ),
        (Some(Ok(found)), _) => {
            let found: BTreeSet<&str> = found.iter().map(|g| g.name.as_str()).collect();
            let missing: Vec<&String> = s
                .groups
                .iter()
                .filter(|g| !found.contains(g.as_str()))
                .collect();
            if missing.is_empty() {
                Check::pass(
                    id("activities.groups"),
                    format!("every group in sources.activities.groups exists: {}", list(&s.groups, false)),
                )
            } else {
                let mut detail = Vec::new();
                let mut fixes = Vec::new();
                for m in &missing {
                    let (_, nearest) = similar_names(m, &existing);
                    detail.push(format!("`{m}`{}", did_you_mean(&nearest)));
                    if let Some(n) = nearest {
                        fixes.push(format!("`{m}` → `{n}`"));
                    }
                }
                let (listed, _) = similar_names(missing[0], &existing);
                Check::fail(
                    id("activities.groups"),
                    Failure::Config,
                    format!(
                        "sources.activities.groups: no Auto Scaling group named {} in {region}; groups that exist: {}",
                        detail.join(", "),
                        list(&listed, truncated || existing.len() > listed.len())
                    ),
                    if fixes.is_empty() {
                        "set sources.activities.groups to existing group names (or check aws.region / aws.targets)".to_string()
                    } else {
                        format!("in sources.activities.groups: {}", fixes.join(", "))
                    },
                )
            }
        }
        (None, Ok(l)) => match &s.group_tag {
            Some(tag) if a.selected.is_empty() => {
                let key = tag.split_once('=').map_or(tag.as_str(), |(k, _)| k);
                let values: BTreeSet<String> = l
                    .items
                    .iter()
                    .flat_map(|g: &GroupSeen| &g.tags)
                    .filter(|(k, _)| k == key)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let values: Vec<String> = values.into_iter().collect();
                let (_, nearest) = similar_names(tag, &values);
                Check::fail(
                    id("activities.groups"),
                    Failure::Config,
                    format!(
                        "sources.activities.group_tag: no group in {region} carries the tag `{tag}`{}; tags with key `{key}`: {}; groups: {}",
                        did_you_mean(&nearest),
                        list(&values, false),
                        list(&existing, truncated)
                    ),
                    match nearest {
                        Some(n) => format!("set sources.activities.group_tag = \"{n}\""),
                        None => format!("tag the groups to read with `{tag}`, or name them in sources.activities.groups"),
                    },
                )
            }
            Some(tag) => Check::pass(
                id("activities.groups"),
                format!("{} group(s) tagged `{tag}`: {}", a.selected.len(), list(&a.selected, false)),
            ),
            None if existing.is_empty() => Check::fail(
                id("activities.groups"),
                Failure::Config,
                format!("no Auto Scaling group in {region}"),
                "check aws.region / aws.targets (and the account the credentials belong to)",
            ),
            None => Check::pass(
                id("activities.groups"),
                format!(
                    "every group in {region} is read ({}{}): {}",
                    existing.len(),
                    if truncated { "+" } else { "" },
                    list(&existing, truncated)
                ),
            ),
        },
    };
    out.push(groups_check);
    out.push(match &a.activities {
        Err(_) => Check::skip(
            id("activities.terminations"),
            "not checked: DescribeScalingActivities failed (see iam.autoscaling:DescribeScalingActivities)",
        ),
        Ok(_) if a.selected.is_empty() => Check::skip(
            id("activities.terminations"),
            "not checked: no group selected",
        ),
        Ok(terms) if terms.is_empty() => Check::warn(
            id("activities.terminations"),
            format!(
                "no termination since scan.since in the latest activities of {}",
                list(&a.selected, false)
            ),
            "nothing to fault; to check last words and memory of a terminated instance, widen scan.since (running instances are checked instead)",
        ),
        Ok(terms) => Check::pass(
            id("activities.terminations"),
            format!(
                "{} termination(s) since scan.since, the latest {} of {}",
                terms.len(),
                terms[0].instance_id,
                terms[0].asg
            ),
        ),
    });
    out
}

/// `{instance_id}` in place of the instance id a stream name holds, if any.
fn pattern_of(stream: &str) -> Option<String> {
    let id = crate::sources::file::find_instance_id(stream)?;
    Some(stream.replacen(id, "{instance_id}", 1))
}

fn log_checks(l: &LogsProbe, region: &str, id: &dyn Fn(&str) -> String) -> Vec<Check> {
    let mut out = Vec::new();
    let mut existing: Vec<&LogGroupProbe> = Vec::new();
    for g in &l.groups {
        let check_id = id(&format!(
            "logs.{}",
            g.key.trim_start_matches("sources.logs.")
        ));
        out.push(match &g.by_prefix {
            Err(_) => Check::skip(
                check_id,
                "not checked: DescribeLogGroups failed (see iam.logs:DescribeLogGroups)",
            ),
            Ok(names) if names.contains(&g.log_group) => {
                existing.push(g);
                Check::pass(check_id, format!("{} `{}` exists", g.key, g.log_group))
            }
            Ok(names) => {
                let mut candidates = names.clone();
                let mut truncated = false;
                if let Some(Ok(o)) = &g.others {
                    candidates.extend(o.items.iter().cloned());
                    truncated = o.truncated;
                }
                let (listed, nearest) = similar_names(&g.log_group, &candidates);
                Check::fail(
                    check_id,
                    Failure::Config,
                    format!(
                        "{} `{}` does not exist in {region}{}; log groups there: {}",
                        g.key,
                        g.log_group,
                        did_you_mean(&nearest),
                        list(&listed, truncated || candidates.len() > listed.len())
                    ),
                    match nearest {
                        Some(n) => format!("set {} = \"{n}\"", g.key),
                        None => format!(
                            "set {} to the log group the CloudWatch agent writes to (its `log_group_name`)",
                            g.key
                        ),
                    },
                )
            }
        });
    }
    let check_id = id("logs.last_words");
    if existing.is_empty() {
        out.push(Check::skip(
            check_id,
            "not checked: no configured log group exists",
        ));
        return out;
    }
    let lookups: Vec<(&LogGroupProbe, &crate::sources::probe::Lookup)> = existing
        .iter()
        .flat_map(|g| g.lookups.iter().map(move |x| (*g, x)))
        .collect();
    if lookups.iter().all(|(_, x)| x.placeholder) {
        out.push(Check::warn(
            check_id,
            "not checked on data: no terminated or running instance to look up",
            "widen scan.since to include a termination",
        ));
        return out;
    }
    if let Some((_, x)) = lookups.iter().find(|(_, x)| x.result.is_err()) {
        let e = x
            .result
            .as_ref()
            .err()
            .cloned()
            .unwrap_or_else(|| CallError {
                action: String::new(),
                code: None,
                answered: false,
                message: String::new(),
            });
        out.push(if is_access_denied(e.code.as_deref()) {
            Check::skip(check_id, format!("not checked: {} is denied", e.action))
        } else {
            Check::fail(
                check_id,
                Failure::Unreachable,
                format!("looking up {}: {}", x.looked_for, e.message),
                "retry; if it persists, check the endpoint and the service's health",
            )
        });
        return out;
    }
    let instances: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for (_, x) in &lookups {
            if !v.contains(&x.instance_id.as_str()) {
                v.push(&x.instance_id);
            }
        }
        v
    };
    let found: Vec<(&LogGroupProbe, &crate::sources::probe::Lookup)> = lookups
        .iter()
        .filter(|(_, x)| matches!(x.result, Ok(LookupResult::Events(_))))
        .copied()
        .collect();
    let with_words: BTreeSet<&str> = found.iter().map(|(_, x)| x.instance_id.as_str()).collect();
    if let Some((g, x)) = found.first() {
        let mut c = Check::pass(
            check_id,
            format!(
                "last words found for {} of the {} most recent instances ({} in {})",
                with_words.len(),
                instances.len(),
                x.looked_for,
                g.log_group
            ),
        );
        if with_words.len() < instances.len() {
            c = Check::warn(
                c.id,
                format!("{} — none for {}", c.detail, instances.iter().filter(|i| !with_words.contains(*i)).cloned().collect::<Vec<_>>().join(", ")),
                "usually an instance that died before its agent flushed; if it is every new instance, check the agent",
            );
        }
        out.push(c);
        return out;
    }
    let looked: Vec<String> = lookups
        .iter()
        .map(|(g, x)| format!("{} in {}", x.looked_for, g.log_group))
        .collect();
    let no_stream = lookups
        .iter()
        .all(|(_, x)| x.result == Ok(LookupResult::NoStream));
    if !no_stream || l.stream_lookup == "text" {
        out.push(Check::warn(
            check_id,
            format!("no event before the end for the {} most recent instances; looked for {}", instances.len(), looked.join("; ")),
            "check that the agent ships the application's log to this group and flushes it before the instance stops",
        ));
        return out;
    }
    let recent: Vec<String> = existing
        .iter()
        .filter_map(|g| g.recent_streams.as_ref())
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let listing_denied = existing
        .iter()
        .filter_map(|g| g.recent_streams.as_ref())
        .find_map(|r| r.as_ref().err())
        .map(|e| format!(" (streams could not be listed: {})", e.message))
        .unwrap_or_default();
    let suggestion = recent.iter().find_map(|s| pattern_of(s));
    let detail = format!(
        "no stream for the {} most recent instance(s) (sources.logs.stream_pattern = `{}`, stream_lookup = \"{}\"); looked for {}; newest streams in the group: {}{listing_denied}",
        instances.len(),
        l.stream_pattern,
        l.stream_lookup,
        looked.join("; "),
        list(&recent, false)
    );
    let fix = match (&suggestion, recent.is_empty()) {
        (Some(p), _) if *p != l.stream_pattern => format!("set sources.logs.stream_pattern = \"{p}\""),
        (_, true) => "the group has no streams: check that the CloudWatch agent ships logs to it".to_string(),
        _ => "the streams are not named by instance id: set sources.logs.stream_lookup = \"text\" to find events that mention the instance id".to_string(),
    };
    out.push(if instances.len() >= MIN_SAMPLES_FOR_STREAM_FAIL {
        Check::fail(check_id, Failure::Config, detail, fix)
    } else {
        Check::warn(check_id, detail, fix)
    });
    out
}

/// Dimension names of a set, sorted, as "A, B".
fn names_of(set: &DimensionSet) -> String {
    let mut n: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
    n.sort_unstable();
    format!("{{{}}}", n.join(", "))
}

fn same_names(a: &DimensionSet, b: &DimensionSet) -> bool {
    let na: BTreeSet<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
    let nb: BTreeSet<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
    na == nb
}

/// The group-valued dimensions the CloudWatch agent appends (`{asg}` in extra_dimensions).
const GROUP_DIMENSIONS: &[&str] = &["AutoScalingGroupName"];

/// The `extra_dimensions` that make a scan's query match `set` (every dimension but the
/// instance's; a group-valued one as `{asg}`), and the dimensions whose value is pinned to
/// one instance's (an AMI, an instance type).
pub fn suggest_extra_dimensions(
    set: &DimensionSet,
    instance_dimension: &str,
) -> (String, Vec<String>) {
    let mut items = Vec::new();
    let mut pinned = Vec::new();
    let mut sorted = set.clone();
    sorted.sort();
    for (k, v) in &sorted {
        if k == instance_dimension {
            continue;
        }
        if GROUP_DIMENSIONS.contains(&k.as_str()) {
            items.push(format!("\"{k}={{asg}}\""));
        } else {
            items.push(format!("\"{k}={v}\""));
            pinned.push(k.clone());
        }
    }
    (
        format!("sources.metrics.extra_dimensions = [{}]", items.join(", ")),
        pinned,
    )
}

fn metric_check(cfg: &Config, m: &MetricsProbe, region: &str, check_id: &str) -> Check {
    let s = &cfg.sources.metrics;
    let metric = format!("{}/{}", s.namespace, s.metric_name);
    let queried = names_of(&m.queried);
    match &m.data {
        Err(e) if is_access_denied(e.code.as_deref()) => {
            return Check::skip(check_id, "not checked: cloudwatch:GetMetricData is denied");
        }
        Err(e) => {
            return Check::fail(
                check_id,
                Failure::Unreachable,
                format!("GetMetricData for {metric} failed: {}", e.message),
                "retry; if it persists, check the endpoint and the service's health",
            )
        }
        // CloudWatch matches dimension sets exactly, so points mean the set exists; the
        // listing still has the last word when it answered (an emulator may match subsets).
        Ok(n) if *n > 0 => {
            let listed_exactly = match &m.for_instance {
                Some(Ok(sets)) => sets.iter().any(|c| same_names(c, &m.queried)),
                _ => true,
            };
            if let (Some(sample), true) = (&m.sample, listed_exactly) {
                return Check::pass(
                    check_id,
                    format!(
                        "{n} point(s) of {metric} {queried} for {} in the last hour of its life",
                        describe_sample(sample)
                    ),
                );
            }
        }
        Ok(_) => {}
    }
    let who = m
        .sample
        .as_ref()
        .map(describe_sample)
        .unwrap_or_else(|| "no instance (none terminated in the window, none running)".into());
    let list_denied = [
        m.for_instance.as_ref().and_then(|r| r.as_ref().err()),
        m.for_metric.as_ref().and_then(|r| r.as_ref().err()),
        m.names_in_namespace.as_ref().and_then(|r| r.as_ref().err()),
        m.namespaces.as_ref().and_then(|r| r.as_ref().err()),
    ]
    .into_iter()
    .flatten()
    .next();
    if let Some(e) = list_denied {
        return Check::warn(
            check_id,
            format!("no point of {metric} {queried} for {who}; the metrics that exist could not be listed: {}", e.message),
            format!("allow cloudwatch:ListMetrics so the doctor can say what exists (see {IAM_POLICY_DOC})"),
        );
    }
    // The dimension sets that name an instance: the sample's own, else any instance's.
    let candidates: Vec<&DimensionSet> = match (&m.for_instance, &m.for_metric) {
        (Some(Ok(sets)), _) if !sets.is_empty() => sets.iter().collect(),
        (_, Some(Ok(l))) => l
            .items
            .iter()
            .filter(|set| set.iter().any(|(k, _)| *k == s.instance_dimension))
            .collect(),
        _ => Vec::new(),
    };
    let all_sets: Vec<&DimensionSet> = match (&m.for_instance, &m.for_metric) {
        (Some(Ok(sets)), _) if !sets.is_empty() => sets.iter().collect(),
        (_, Some(Ok(l))) => l.items.iter().collect(),
        _ => Vec::new(),
    };
    let distinct_sets = |sets: &[&DimensionSet]| {
        let names: BTreeSet<String> = sets.iter().map(|d| names_of(d)).collect();
        names
            .into_iter()
            .take(MAX_LISTED_NAMES)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !candidates.is_empty() {
        if candidates.iter().any(|c| same_names(c, &m.queried)) {
            let own = matches!(&m.for_instance, Some(Ok(sets)) if !sets.is_empty());
            return Check::warn(
                check_id,
                if own {
                    format!("{metric} {queried} exists for {who} but had no point in the last hour of its life")
                } else if m.sample.is_some() {
                    format!("{metric} {queried} exists for other instances but not for {who}")
                } else {
                    format!("{metric} {queried} exists; {who} to fetch it for")
                },
                "check that the CloudWatch agent runs (and publishes this metric) on every instance",
            );
        }
        // The smallest set that names the instance: the fewest extra dimensions to pin.
        let best = candidates
            .iter()
            .min_by_key(|c| (c.len(), names_of(c)))
            .copied()
            .cloned()
            .unwrap_or_default();
        let (setting, pinned) = suggest_extra_dimensions(&best, &s.instance_dimension);
        let pinned_note = if pinned.is_empty() {
            String::new()
        } else {
            format!(
                "; {} pin(s) one value for every instance — better, make the agent also publish an instance-only series (\"aggregation_dimensions\": [[\"{}\"]]) or drop {} from its append_dimensions",
                pinned.join(", "),
                s.instance_dimension,
                pinned.join(", ")
            )
        };
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "no series of {metric} with the dimensions a scan asks for, {queried}, for {who}; the metric exists with the dimension set(s): {}",
                distinct_sets(&candidates)
            ),
            format!("set {setting}{pinned_note}"),
        );
    }
    if !all_sets.is_empty() {
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "sources.metrics.instance_dimension `{}` is in none of the dimension sets of {metric}: {}",
                s.instance_dimension,
                distinct_sets(&all_sets)
            ),
            "make the CloudWatch agent append the instance id (\"append_dimensions\": {\"InstanceId\": \"${aws:InstanceId}\"}), or set sources.metrics.instance_dimension to the dimension that holds it"
                .to_string(),
        );
    }
    if let Some(Ok(names)) = &m.names_in_namespace {
        if !names.items.is_empty() {
            let (listed, nearest) = similar_names(&s.metric_name, &names.items);
            return Check::fail(
                check_id,
                Failure::Config,
                format!(
                    "sources.metrics.metric_name `{}` has no series in the namespace {} in {region}{}; metrics there: {}",
                    s.metric_name,
                    s.namespace,
                    did_you_mean(&nearest),
                    list(&listed, names.truncated || names.items.len() > listed.len())
                ),
                match nearest {
                    Some(n) => format!("set sources.metrics.metric_name = \"{n}\""),
                    None => "set sources.metrics.metric_name to the memory metric the agent publishes (mem_used_percent by default)".into(),
                },
            );
        }
    }
    if let Some(Ok(spaces)) = &m.namespaces {
        let (listed, nearest) = similar_names(&s.namespace, &spaces.items);
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "sources.metrics.namespace `{}` has no metric in {region}{}; namespaces: {}",
                s.namespace,
                did_you_mean(&nearest),
                list(&listed, spaces.truncated)
            ),
            match nearest {
                Some(n) => format!("set sources.metrics.namespace = \"{n}\""),
                None => "install the CloudWatch agent with the mem metrics (it publishes CWAgent/mem_used_percent), or set sources.metrics.namespace".into(),
            },
        );
    }
    Check::warn(
        check_id,
        format!("no point of {metric} {queried} for {who}"),
        "check the CloudWatch agent publishes the memory metric",
    )
}

// ------------------------------------------------------------------ Prometheus ------------

/// The Prometheus backend could not even be set up (bad settings, no SigV4 credentials).
pub fn prometheus_not_configured(message: &str) -> Vec<Check> {
    vec![
        Check::fail(
            "prometheus.connection",
            Failure::Config,
            message.to_string(),
            "fix [sources.metrics.prometheus] (`epitaph config check` lists every problem)",
        ),
        Check::skip(
            "prometheus.checks",
            "not checked: query, series and unit need a working backend",
        ),
    ]
}

/// The checks of the Prometheus backend, in order: the server answers (and accepts the
/// credentials), the PromQL is valid, the sampled instances have one series each (or what
/// exists instead), the values fit the unit.
pub fn prometheus_checks(cfg: &Config, p: &PrometheusProbe) -> Vec<Check> {
    use crate::sources::prometheus::config::KEY;
    let mut out = Vec::new();
    let first_error = p.calls.first().and_then(|c| c.error.as_ref());
    let code = first_error.and_then(|e| e.code.as_deref());
    match first_error {
        Some(e) if !e.answered => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Unreachable,
                format!("{}: no answer: {}", p.url, e.message),
                format!("check {KEY}.url, the network, and that the server is up"),
            ));
            out.push(Check::skip(
                "prometheus.checks",
                "not checked: query, series and unit (the server could not be reached)",
            ));
            return out;
        }
        Some(e) if matches!(code, Some("401" | "403")) => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Config,
                format!("{}: the credentials were refused: {}", p.url, e.message),
                format!("check {KEY}.bearer_token / bearer_token_file / username and password / sigv4 (aps:QueryMetrics on the workspace) and headers (X-Scope-OrgID)"),
            ));
            return out;
        }
        Some(e) if code == Some("404") => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Config,
                format!("{}: no Prometheus API there (/api/v1/query_range not found): {}", p.url, e.message),
                format!("set {KEY}.url to the base the API lives under, without /api/v1 (Mimir: …/prometheus; AMP: …/workspaces/ws-…)"),
            ));
            return out;
        }
        _ => out.push(Check::pass(
            "prometheus.connection",
            format!("{} answers query_range", p.url),
        )),
    }
    let seen = match &p.series {
        Err(e) if code_is(e, "bad_data") || code_is(e, "400") => {
            out.push(Check::fail(
                "prometheus.query",
                Failure::Config,
                format!("the server rejected the query: {}", e.message),
                format!("fix the PromQL in {KEY}.query / limit_query (try it in the server's UI with an instance id in place of the placeholder)"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                "prometheus.query",
                Failure::Unreachable,
                format!("the query failed: {}", e.message),
                "retry; if it persists, check the server's health and whether the query is too expensive",
            ));
            return out;
        }
        Ok(seen) => {
            out.push(Check::pass(
                "prometheus.query",
                format!(
                    "{KEY}.query{} valid",
                    if p.limit_query {
                        " and limit_query are"
                    } else {
                        " is"
                    }
                ),
            ));
            seen
        }
    };
    out.push(prometheus_series_check(cfg, p, seen));
    if let Some(c) = prometheus_unit_check(cfg, p, seen) {
        out.push(c);
    }
    out
}

fn code_is(e: &CallError, code: &str) -> bool {
    e.code.as_deref() == Some(code)
}

fn prometheus_series_check(
    cfg: &Config,
    p: &PrometheusProbe,
    seen: &[crate::sources::probe::SeriesSeen],
) -> Check {
    const ID: &str = "prometheus.series";
    let label = &cfg.sources.metrics.instance_label;
    if p.unlabelled > 0 {
        return Check::fail(
            ID,
            Failure::Config,
            format!("{} series of the answer have no `{label}` label, so a batched query cannot tell the instances apart", p.unlabelled),
            format!("keep the label in sources.metrics.prometheus.query (e.g. max by ({label}) (…)), or set sources.metrics.instance_label to the label that holds the instance id"),
        );
    }
    if p.samples.is_empty() {
        return Check::skip(
            ID,
            "not checked: no terminated instance to look a series up for (the server answers and the query is valid)",
        );
    }
    if let Some(x) = seen.iter().find(|x| x.series > 1) {
        let mut differ: Vec<&str> = Vec::new();
        for set in &x.label_sets {
            for (k, v) in set {
                if x.label_sets.iter().any(|o| o.get(k) != Some(v)) && !differ.contains(&k.as_str())
                {
                    differ.push(k);
                }
            }
        }
        return Check::fail(
            ID,
            Failure::Config,
            format!("the query gives {} series for {} (they differ in {}); a scan needs one per instance", x.series, x.instance_id, differ.join(", ")),
            format!("aggregate in sources.metrics.prometheus.query, e.g. max by ({label}) (…), or add a matcher that picks one"),
        );
    }
    let with: Vec<&crate::sources::probe::SeriesSeen> = seen
        .iter()
        .filter(|x| x.series == 1 && x.points > 0)
        .collect();
    let without: Vec<String> = seen
        .iter()
        .filter(|x| !(x.series == 1 && x.points > 0))
        .map(|x| x.instance_id.clone())
        .collect();
    let minutes = crate::sources::prometheus::PROBE_MINUTES;
    if without.is_empty() {
        let points: usize = with.iter().map(|x| x.points).sum();
        return Check::pass(
            ID,
            format!("{} of the {} sampled instances have a memory series ({points} points in the last {minutes} minutes of their lives)", with.len(), seen.len()),
        );
    }
    if !with.is_empty() {
        return Check::warn(
            ID,
            format!(
                "{} of the {} sampled instances have a memory series; none for {}",
                with.len(),
                seen.len(),
                without.join(", ")
            ),
            "check that the exporter or agent ran on those instances until they died",
        );
    }
    let who = without.join(", ");
    match (&p.other_instances, &p.label_names) {
        (Some(Ok(others)), _) if !others.items.is_empty() => {
            let ids = others
                .items
                .iter()
                .filter(|v| crate::sources::file::find_instance_id(v).is_some())
                .count();
            if ids == 0 {
                Check::fail(
                    ID,
                    Failure::Config,
                    format!("no series for {who}: the label `{label}` holds values such as {}, not instance ids", list(&others.items, others.truncated)),
                    "give the series a label with the instance id (relabel __meta_ec2_instance_id, or the agent's instance_id) and set sources.metrics.instance_label to it".to_string(),
                )
            } else {
                Check::warn(
                    ID,
                    format!("no series for {who} in the last {minutes} minutes of their lives; the query has series for other instances: {}", list(&others.items, others.truncated)),
                    "check that the exporter or agent runs on every instance (and that the server's retention covers them)",
                )
            }
        }
        (_, Some(Ok(names))) if !names.items.is_empty() => {
            let (listed, nearest) = similar_names(label, &names.items);
            Check::fail(
                ID,
                Failure::Config,
                format!("no series of the query carries the label `{label}`{}; its series have the labels: {}", did_you_mean(&nearest), list(&listed, names.truncated)),
                match nearest {
                    Some(n) => format!("set sources.metrics.instance_label = \"{n}\""),
                    None => "set sources.metrics.instance_label to the label holding the instance id (relabel __meta_ec2_instance_id into one)".into(),
                },
            )
        }
        (_, Some(Ok(_))) => Check::fail(
            ID,
            Failure::Config,
            format!("the query has no series at all around {} (no series for {who})", p.samples.first().map(|s| s.until.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()),
            "check the metric name and matchers in sources.metrics.prometheus.query (and the server's retention)",
        ),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Check::warn(
            ID,
            format!("no series for {who}; what exists could not be listed: {}", e.message),
            "check sources.metrics.prometheus.query and sources.metrics.instance_label",
        ),
        _ => Check::warn(
            ID,
            format!("no series for {who} in the last {minutes} minutes of their lives"),
            "check the query's placeholder names the label that holds the instance id, and that the exporter ran",
        ),
    }
}

/// Does what the series hold fit `sources.metrics.unit` (and the limit)? None when no value
/// was seen.
fn prometheus_unit_check(
    cfg: &Config,
    p: &PrometheusProbe,
    seen: &[crate::sources::probe::SeriesSeen],
) -> Option<Check> {
    const ID: &str = "prometheus.unit";
    let m = &cfg.sources.metrics;
    let (id, max) = seen
        .iter()
        .filter_map(|x| x.max.map(|v| (x.instance_id.as_str(), v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let impossible: usize = seen.iter().map(|x| x.impossible).sum();
    if m.unit == "percent" && max > crate::sources::MAX_MEMORY_PERCENT {
        return Some(Check::fail(
            ID,
            Failure::Config,
            format!("values up to {max} (for {id}): not a percentage; {impossible} value(s) would be skipped as impossible"),
            "set sources.metrics.unit = \"bytes\" with sources.metrics.limit or sources.metrics.prometheus.limit_query, or make the query give percent (100 * used / total)",
        ));
    }
    if m.unit == "bytes" && max <= PERCENT_LOOKING_MAX {
        return Some(Check::warn(
            ID,
            format!("values at most {max} (for {id}): that looks like a percentage, not bytes"),
            "set sources.metrics.unit = \"percent\" (and drop limit / limit_query)",
        ));
    }
    if p.limit_query {
        let missing: Vec<&str> = seen
            .iter()
            .filter(|x| x.series > 0 && x.limit.is_none())
            .map(|x| x.instance_id.as_str())
            .collect();
        if !missing.is_empty() {
            return Some(Check::warn(
                ID,
                format!("sources.metrics.prometheus.limit_query has no value for {}", missing.join(", ")),
                "check that limit_query (node_memory_MemTotal_bytes, container_spec_memory_limit_bytes) carries the same instance label as the query; else set sources.metrics.limit",
            ));
        }
        if let Some(x) = seen
            .iter()
            .find(|x| matches!((x.max, x.limit), (Some(v), Some(l)) if v > l * OVER_LIMIT_FACTOR))
        {
            return Some(Check::warn(
                ID,
                format!(
                    "{}'s memory ({}) exceeds its limit from limit_query ({})",
                    x.instance_id,
                    x.max.unwrap_or_default(),
                    x.limit.unwrap_or_default()
                ),
                "check that query and limit_query measure the same thing (container vs node)",
            ));
        }
    }
    Some(Check::pass(
        ID,
        format!("values up to {max} fit unit = \"{}\"", m.unit),
    ))
}

/// A bytes series whose values never exceed this is probably a percentage.
pub const PERCENT_LOOKING_MAX: f64 = 100.0;
/// Memory above its limit by more than this factor means the two queries disagree.
pub const OVER_LIMIT_FACTOR: f64 = 1.05;

// ------------------------------------------------------------------ log APIs --------------

/// A log API backend (`splunk`, `loki`) could not even be set up (bad settings, an unreadable
/// token file): its checks fail with the reason.
pub fn log_api_not_configured(backend: &str, message: &str) -> Vec<Check> {
    vec![
        Check::fail(
            format!("{backend}.connection"),
            Failure::Config,
            message.to_string(),
            format!("fix [sources.logs.{backend}] (`epitaph config check` lists every problem)"),
        ),
        Check::skip(
            format!("{backend}.checks"),
            "not checked: the API, what the configuration names, and last words need a working backend",
        ),
    ]
}

/// The checks of a log API, in order: `<backend>.connection` (the API answers and takes the
/// credentials), `<backend>.scope` (the index, the labels and fixed label values the
/// configuration names exist), `<backend>.last_words` (the sampled instances have events, the
/// way a scan looks for them).
pub fn log_api_checks(p: &LogApiProbe) -> Vec<Check> {
    let b = p.backend.as_str();
    let key = p.key.as_str();
    let id = |what: &str| format!("{b}.{what}");
    let mut out = Vec::new();
    match &p.connection {
        Err(e) if !e.answered => {
            out.push(Check::fail(
                id("connection"),
                Failure::Unreachable,
                format!("{}: no answer: {}", p.url, e.message),
                format!("check {key}.url (and {key}.ca_file for a private CA), the network, and that the server is up"),
            ));
            out.push(Check::skip(
                id("checks"),
                format!(
                    "not checked: what {key} names, and last words (the API could not be reached)"
                ),
            ));
            return out;
        }
        Err(e) if matches!(e.code.as_deref(), Some("401" | "403")) => {
            out.push(Check::fail(
                id("connection"),
                Failure::Config,
                format!("{}: the credentials were refused: {}", p.url, e.message),
                match b {
                    "splunk" => format!("check {key}.token (or token_file / token_env) and {key}.auth_scheme (bearer for authentication tokens, splunk for session keys)"),
                    _ => format!("check {key}.username / password or bearer_token, and {key}.tenant_id (X-Scope-OrgID)"),
                },
            ));
            return out;
        }
        Err(e) if e.code.as_deref() == Some("404") => {
            out.push(Check::fail(
                id("connection"),
                Failure::Config,
                format!("{}: no {b} API there: {}", p.url, e.message),
                format!("set {key}.url to the API's base URL"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                id("connection"),
                Failure::Unreachable,
                format!("{}: {}", p.url, e.message),
                "retry; if it persists, check the server's health",
            ));
            return out;
        }
        Ok(said) => out.push(Check::pass(
            id("connection"),
            format!("{} answers and takes the credentials ({said})", p.url),
        )),
    }
    let missing: Vec<String> = p
        .scopes
        .iter()
        .filter(|s| s.exists == Ok(false))
        .map(|s| {
            let (listed, nearest) = similar_names(&s.name, &s.others.items);
            format!(
                "{} ({}) does not exist{}; there: {}",
                s.what,
                s.key,
                did_you_mean(&nearest),
                list(&listed, s.others.truncated)
            )
        })
        .collect();
    let unlisted: Vec<String> = p
        .scopes
        .iter()
        .filter_map(|s| {
            s.exists
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", s.what, e.message))
        })
        .collect();
    let scope_keys: BTreeSet<&str> = p.scopes.iter().map(|s| s.key.as_str()).collect();
    let scope_keys = scope_keys.into_iter().collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        out.push(Check::fail(
            id("scope"),
            Failure::Config,
            missing.join("; "),
            format!("fix {scope_keys}"),
        ));
    } else if !unlisted.is_empty() {
        out.push(Check::warn(
            id("scope"),
            format!("could not be checked: {}", unlisted.join("; ")),
            "the credentials may not list them; the last-words check below still runs",
        ));
    } else if !p.scopes.is_empty() {
        out.push(Check::pass(
            id("scope"),
            format!(
                "{} exist{}",
                p.scopes
                    .iter()
                    .map(|s| s.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if p.scopes.len() == 1 { "s" } else { "" }
            ),
        ));
    }
    out.push(log_api_last_words(p));
    out
}

fn log_api_last_words(p: &LogApiProbe) -> Check {
    let b = p.backend.as_str();
    let key = p.key.as_str();
    let check_id = format!("{b}.last_words");
    let filter_key = match b {
        "splunk" => format!("{key}.instance_filter"),
        _ => format!("{key}.selector"),
    };
    if p.lookups.is_empty() {
        return Check::skip(
            check_id,
            "not checked: no terminated instance in the window to look last words up for",
        );
    }
    if let Some(e) = p.lookups.iter().find_map(|l| l.result.as_ref().err()) {
        return Check::fail(
            check_id,
            // Rejected (400) or failed in the answer (200 with an error): the query; anything
            // else is the server's.
            if matches!(e.code.as_deref(), Some("400" | "200")) {
                Failure::Config
            } else {
                Failure::Unreachable
            },
            format!("the last-words query failed: {}", e.message),
            format!("check {filter_key} (the query is what a scan sends), or the server's health"),
        );
    }
    let mut found = Vec::new();
    let mut empty = Vec::new();
    let mut unmapped = Vec::new();
    for l in &p.lookups {
        match &l.result {
            Ok(ApiLookupResult::Events(n)) => found.push(format!("{} ({n} lines)", l.instance_id)),
            Ok(ApiLookupResult::NoEvents) => empty.push(l),
            Ok(ApiLookupResult::Unmapped(why)) => unmapped.push(why.clone()),
            Err(_) => {}
        }
    }
    let sampled = p.lookups.len();
    if !unmapped.is_empty() && found.is_empty() && empty.is_empty() {
        return Check::fail(
            check_id,
            Failure::Config,
            format!("none of the {sampled} sampled instances can be looked up: {}", unmapped[0]),
            format!("add `aws ec2 describe-instances` output to sources.activities.inventory (private DNS names and IPs), or name the instance by {{instance_id}} in {filter_key}"),
        );
    }
    let unmapped_note = if unmapped.is_empty() {
        String::new()
    } else {
        format!("; {} could not be mapped ({})", unmapped.len(), unmapped[0])
    };
    if !found.is_empty() {
        let detail = format!(
            "{} of the {sampled} most recent terminated instances have last words: {}{unmapped_note}",
            found.len(),
            found.join(", ")
        );
        return if unmapped.is_empty() && empty.is_empty() {
            Check::pass(check_id, detail)
        } else {
            Check::warn(
                check_id,
                format!(
                    "{detail}; none for {}",
                    empty
                        .iter()
                        .map(|l| l.instance_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "an instance may die before its agent ships anything; if many do, check the agent",
            )
        };
    }
    let looked_for = empty
        .first()
        .map(|l| l.looked_for.clone())
        .unwrap_or_default();
    let values = p
        .instance_values
        .as_ref()
        .map(|v| {
            let wanted = empty.first().map(|l| l.instance_id.as_str()).unwrap_or("");
            let (listed, _) = similar_names(wanted, &v.items);
            format!(
                "; the instance label holds values such as {}",
                list(&listed, v.truncated)
            )
        })
        .unwrap_or_default();
    let detail = format!(
        "none of the {} most recent terminated instances has events for what a scan asks: {looked_for}{values}{unmapped_note}",
        empty.len()
    );
    let fix = format!("check {filter_key}: the field or label that names the instance, and whether it holds the id, the DNS name or the IP");
    if empty.len() >= MIN_SAMPLES_FOR_STREAM_FAIL {
        Check::fail(check_id, Failure::Config, detail, fix)
    } else {
        Check::warn(check_id, detail, fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_queue_is_judged_by_its_answer() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/epitaph";
        let mut attrs: BTreeMap<String, String> = [
            ("ApproximateNumberOfMessages".to_string(), "4".to_string()),
            (
                "ApproximateNumberOfMessagesNotVisible".to_string(),
                "1".to_string(),
            ),
        ]
        .into();
        let c = events_check(url, Ok(&attrs));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.detail.contains("4 message(s) waiting, 1 in flight"),
            "{c:?}"
        );
        attrs.insert(
            "RedrivePolicy".into(),
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:epitaph-dlq","maxReceiveCount":5}"#.into(),
        );
        assert_eq!(events_check(url, Ok(&attrs)).status, Status::Pass);
        let err = |code: Option<&str>, answered: bool| CallError {
            action: "sqs:GetQueueAttributes".into(),
            code: code.map(str::to_string),
            answered,
            message: "GetQueueAttributes: HTTP 400: …".into(),
        };
        let denied = events_check(url, Err(&err(Some("AccessDenied"), true)));
        assert_eq!(denied.failure, Some(Failure::Config));
        assert!(denied.fix.unwrap().contains("sqs:ReceiveMessage"));
        let missing = events_check(url, Err(&err(Some("QueueDoesNotExist"), true)));
        assert!(missing.detail.contains("no such queue"), "{missing:?}");
        let down = events_check(url, Err(&err(None, false)));
        assert_eq!(down.failure, Some(Failure::Unreachable));
    }
    use crate::sources::probe::{
        ActivitiesProbe, Listing, Lookup, TargetInfo, PLACEHOLDER_INSTANCE,
    };
    use chrono::TimeZone;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[aws]\nregion = \"us-east-1\"\n[sources.activities]\nkind = \"aws\"\n[sources.logs]\nkind = \"aws\"\nlog_group = \"/ec2/app\"\n[sources.metrics]\nkind = \"aws\"\n{extra}"
        );
        Config::parse(&text, "t.toml", std::path::Path::new("/"), &[]).unwrap()
    }

    fn ok(action: &str) -> CallRecord {
        CallRecord {
            action: action.into(),
            error: None,
        }
    }

    fn err(action: &str, code: Option<&str>, answered: bool) -> CallError {
        CallError {
            action: action.into(),
            code: code.map(str::to_string),
            answered,
            message: format!("{action}: {}", code.unwrap_or("dispatch failure")),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 4, h, 0, 0).unwrap()
    }

    fn sample() -> Sample {
        Sample {
            instance_id: "i-0abc1234def567890".into(),
            asg: Some("web".into()),
            origin: Some("us-east-1".into()),
            terminated_at: Some(at(10)),
            until: at(10) + chrono::Duration::minutes(7),
        }
    }

    fn dims(pairs: &[(&str, &str)]) -> DimensionSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn activities(names: &[&str]) -> ActivitiesProbe {
        let groups: Vec<GroupSeen> = names
            .iter()
            .map(|n| GroupSeen {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        ActivitiesProbe {
            named: None,
            listing: Ok(Listing {
                items: groups,
                truncated: false,
            }),
            selected: names.iter().map(|n| n.to_string()).collect(),
            activities: Ok(Vec::new()),
            calls: vec![
                ok("autoscaling:DescribeAutoScalingGroups"),
                ok("autoscaling:DescribeScalingActivities"),
                ok("ec2:DescribeInstances"),
            ],
        }
    }

    fn logs(found: LookupResult) -> LogsProbe {
        LogsProbe {
            stream_lookup: "name".into(),
            stream_pattern: "{instance_id}".into(),
            groups: vec![LogGroupProbe {
                key: "sources.logs.log_group".into(),
                log_group: "/ec2/app".into(),
                by_prefix: Ok(vec!["/ec2/app".into()]),
                others: None,
                lookups: vec![Lookup {
                    instance_id: sample().instance_id,
                    placeholder: false,
                    looked_for: "stream `i-0abc1234def567890`".into(),
                    result: Ok(found),
                }],
                recent_streams: None,
            }],
            calls: vec![ok("logs:DescribeLogGroups"), ok("logs:GetLogEvents")],
        }
    }

    fn metrics(points: usize) -> MetricsProbe {
        MetricsProbe {
            sample: Some(sample()),
            queried: dims(&[("InstanceId", "i-0abc1234def567890")]),
            data: Ok(points),
            for_instance: Some(Ok(vec![dims(&[("InstanceId", "i-0abc1234def567890")])])),
            for_metric: None,
            names_in_namespace: None,
            namespaces: None,
            calls: vec![ok("cloudwatch:GetMetricData"), ok("cloudwatch:ListMetrics")],
        }
    }

    fn probe() -> TargetProbe {
        TargetProbe {
            target: TargetInfo {
                name: "us-east-1".into(),
                region: "us-east-1".into(),
                endpoint: None,
            },
            activities: Some(activities(&["web", "checkout-api"])),
            logs: Some(logs(LookupResult::Events(3))),
            metrics: Some(metrics(12)),
        }
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
    }

    #[test]
    fn a_healthy_account_passes_everything_in_order() {
        let checks = aws_checks(&cfg(""), &probe(), None);
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "aws.connection",
                "iam.autoscaling:DescribeAutoScalingGroups",
                "iam.autoscaling:DescribeScalingActivities",
                "iam.ec2:DescribeInstances",
                "iam.logs:DescribeLogGroups",
                "iam.logs:GetLogEvents",
                "iam.cloudwatch:GetMetricData",
                "iam.cloudwatch:ListMetrics",
                "activities.groups",
                "activities.terminations",
                "logs.log_group",
                "logs.last_words",
                "metrics.series",
            ]
        );
        // No termination in the window is a warning (running instances are checked instead).
        for c in &checks {
            if c.id != "activities.terminations" {
                assert_eq!(c.status, Status::Pass, "{c:?}");
            }
        }
        let list = Checklist::new(checks);
        assert!(list.ok);
        assert_eq!(list.exit_code, 0);
    }

    #[test]
    fn unreachable_account_fails_first_and_skips_the_rest() {
        let mut p = probe();
        let a = p.activities.as_mut().unwrap();
        a.calls[0].error = Some(err("autoscaling:DescribeAutoScalingGroups", None, false));
        let checks = aws_checks(&cfg(""), &p, None);
        assert_eq!(checks[0].status, Status::Fail);
        assert_eq!(checks[0].failure, Some(Failure::Unreachable));
        assert!(
            checks[0].detail.contains("us-east-1"),
            "{}",
            checks[0].detail
        );
        assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
        assert_eq!(Checklist::new(checks).exit_code, EXIT_UNREACHABLE);
        // Rejected credentials are unreachable too; a denied action is not.
        assert!(is_unreachable(&err(
            "x",
            Some("InvalidClientTokenId"),
            true
        )));
        assert!(!is_unreachable(&err("x", Some("AccessDenied"), true)));
    }

    #[test]
    fn a_denied_action_fails_naming_it_and_the_policy() {
        let mut p = probe();
        p.logs.as_mut().unwrap().calls[1].error = Some(err(
            "logs:GetLogEvents",
            Some("AccessDeniedException"),
            true,
        ));
        p.metrics.as_mut().unwrap().calls[1].error =
            Some(err("cloudwatch:ListMetrics", Some("AccessDenied"), true));
        let checks = aws_checks(&cfg(""), &p, None);
        let c = find(&checks, "iam.logs:GetLogEvents");
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap().contains("logs:GetLogEvents"));
        assert!(c.fix.as_deref().unwrap().contains("IAM policy"));
        // The doctor's own action is a warning: scans do not need it.
        assert_eq!(
            find(&checks, "iam.cloudwatch:ListMetrics").status,
            Status::Warn
        );
        assert_eq!(Checklist::new(checks).exit_code, EXIT_CONFIG);
        // The search lookup needs other actions; one never called is not passed.
        let mut search = cfg("");
        search.sources.logs.stream_lookup = "search".into();
        let checks = aws_checks(&search, &probe(), None);
        assert!(checks.iter().all(|c| c.id != "iam.logs:GetLogEvents"));
        assert_eq!(
            find(&checks, "iam.logs:FilterLogEvents").status,
            Status::Skip
        );
        let mut q = probe();
        q.logs.as_mut().unwrap().calls.truncate(1);
        let checks = aws_checks(&cfg(""), &q, None);
        assert_eq!(find(&checks, "iam.logs:GetLogEvents").status, Status::Skip);
    }

    #[test]
    fn a_group_that_matches_nothing_lists_the_groups_that_exist() {
        let c = cfg("");
        let mut c2 = c.clone();
        c2.sources.activities.groups = vec!["chekout-api".into()];
        let mut p = probe();
        let a = p.activities.as_mut().unwrap();
        a.named = Some(Ok(Vec::new()));
        a.selected.clear();
        let checks = aws_checks(&c2, &p, None);
        let g = find(&checks, "activities.groups");
        assert_eq!(g.status, Status::Fail);
        assert!(
            g.detail.contains("web") && g.detail.contains("checkout-api"),
            "{}",
            g.detail
        );
        assert!(
            g.detail.contains("did you mean `checkout-api`"),
            "{}",
            g.detail
        );
        assert!(g
            .fix
            .as_deref()
            .unwrap()
            .contains("`chekout-api` → `checkout-api`"));
        // A tag nobody carries.
        let mut c3 = c.clone();
        c3.sources.activities.group_tag = Some("epitaph=enabld".into());
        let mut p = probe();
        let a = p.activities.as_mut().unwrap();
        if let Ok(l) = &mut a.listing {
            l.items[0].tags = vec![("epitaph".into(), "enabled".into())];
        }
        a.selected.clear();
        let checks = aws_checks(&c3, &p, None);
        let g = find(&checks, "activities.groups");
        assert_eq!(g.status, Status::Fail);
        assert_eq!(
            g.fix.as_deref(),
            Some("set sources.activities.group_tag = \"epitaph=enabled\"")
        );
    }

    #[test]
    fn a_misspelt_log_group_names_the_key_and_the_nearest_group() {
        let mut p = probe();
        let g = &mut p.logs.as_mut().unwrap().groups[0];
        g.log_group = "/ec2/ap".into();
        g.by_prefix = Ok(vec!["/ec2/app".into()]);
        g.others = Some(Ok(Listing {
            items: vec!["/aws/lambda/x".into(), "/ec2/app".into()],
            truncated: false,
        }));
        g.lookups.clear();
        let checks = aws_checks(&cfg(""), &p, None);
        let c = find(&checks, "logs.log_group");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail
                .contains("sources.logs.log_group `/ec2/ap` does not exist"),
            "{}",
            c.detail
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("set sources.logs.log_group = \"/ec2/app\"")
        );
        assert_eq!(find(&checks, "logs.last_words").status, Status::Skip);
    }

    #[test]
    fn missing_streams_suggest_the_pattern_the_streams_follow() {
        let mut p = probe();
        let g = &mut p.logs.as_mut().unwrap().groups[0];
        g.lookups[0].result = Ok(LookupResult::NoStream);
        let mut second = g.lookups[0].clone();
        second.instance_id = "i-0123456789abcdef0".into();
        g.lookups.push(second);
        g.recent_streams = Some(Ok(vec!["i-0fedcba9876543210/app.log".into()]));
        let checks = aws_checks(&cfg(""), &p, None);
        let c = find(&checks, "logs.last_words");
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert_eq!(
            c.fix.as_deref(),
            Some("set sources.logs.stream_pattern = \"{instance_id}/app.log\"")
        );
        // One instance alone without a stream is only a warning.
        p.logs.as_mut().unwrap().groups[0].lookups.truncate(1);
        let checks = aws_checks(&cfg(""), &p, None);
        assert_eq!(find(&checks, "logs.last_words").status, Status::Warn);
        // A placeholder lookup is no evidence either way.
        let mut p = probe();
        let x = &mut p.logs.as_mut().unwrap().groups[0].lookups[0];
        x.placeholder = true;
        x.instance_id = PLACEHOLDER_INSTANCE.into();
        let checks = aws_checks(&cfg(""), &p, None);
        assert_eq!(find(&checks, "logs.last_words").status, Status::Warn);
    }

    #[test]
    fn appended_dimensions_are_listed_with_the_exact_extra_dimensions() {
        let mut p = probe();
        let m = p.metrics.as_mut().unwrap();
        m.data = Ok(0);
        m.for_instance = Some(Ok(vec![dims(&[
            ("InstanceId", "i-0abc1234def567890"),
            ("AutoScalingGroupName", "web"),
            ("ImageId", "ami-0123"),
            ("InstanceType", "t3.micro"),
        ])]));
        let checks = aws_checks(&cfg(""), &p, None);
        let c = find(&checks, "metrics.series");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail
                .contains("{AutoScalingGroupName, ImageId, InstanceId, InstanceType}"),
            "{}",
            c.detail
        );
        let fix = c.fix.as_deref().unwrap();
        assert!(fix.starts_with("set sources.metrics.extra_dimensions = [\"AutoScalingGroupName={asg}\", \"ImageId=ami-0123\", \"InstanceType=t3.micro\"]"), "{fix}");
        assert!(fix.contains("aggregation_dimensions"), "{fix}");
        // Only the group appended: the setting is exact, nothing pinned.
        let (s, pinned) = suggest_extra_dimensions(
            &dims(&[("AutoScalingGroupName", "web"), ("InstanceId", "i-1")]),
            "InstanceId",
        );
        assert_eq!(
            s,
            "sources.metrics.extra_dimensions = [\"AutoScalingGroupName={asg}\"]"
        );
        assert!(pinned.is_empty());
    }

    #[test]
    fn an_unknown_metric_name_lists_the_names_in_the_namespace() {
        let mut p = probe();
        let m = p.metrics.as_mut().unwrap();
        m.data = Ok(0);
        m.for_instance = Some(Ok(Vec::new()));
        m.for_metric = Some(Ok(Listing::default()));
        m.names_in_namespace = Some(Ok(Listing {
            items: vec!["disk_used_percent".into(), "mem_used_percent".into()],
            truncated: false,
        }));
        let checks = aws_checks(&cfg("metric_name = \"mem_used_precent\"\n"), &p, None);
        let c = find(&checks, "metrics.series");
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("mem_used_percent"), "{}", c.detail);
        assert_eq!(
            c.fix.as_deref(),
            Some("set sources.metrics.metric_name = \"mem_used_percent\"")
        );
        // The instance dimension named wrong: the sets that exist are listed.
        let m = p.metrics.as_mut().unwrap();
        m.for_metric = Some(Ok(Listing {
            items: vec![dims(&[("host", "ip-10-0-0-1")])],
            truncated: false,
        }));
        let checks = aws_checks(&cfg(""), &p, None);
        let c = find(&checks, "metrics.series");
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("{host}"), "{}", c.detail);
    }

    #[test]
    fn similar_names_rank_and_hint() {
        let names: Vec<String> = ["catalog-web", "checkout-api", "checkout-worker"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (listed, nearest) = similar_names("checkout-apj", &names);
        assert_eq!(listed[0], "checkout-api");
        assert_eq!(nearest.as_deref(), Some("checkout-api"));
        let (_, nearest) = similar_names("billing", &names);
        assert_eq!(nearest, None);
    }

    #[test]
    fn samples_are_recent_terminations_then_running_instances() {
        let c = cfg("");
        let term = |id: &str, h: u32| Termination {
            instance_id: id.into(),
            asg: "web".into(),
            time: at(h),
            end_time: None,
            cause: crate::model::CauseCategory::HealthCheck,
            cause_text: String::new(),
            description: String::new(),
            activity_id: None,
            status: None,
            origin: None,
        };
        let window = TimeWindow {
            start: at(6),
            end: at(12),
        };
        let s = pick_samples(
            &c,
            window,
            &[
                term("i-00000001", 7),
                term("i-00000002", 9),
                term("i-00000003", 3),
            ],
            &[("i-00000009".into(), "web".into())],
            at(12),
        );
        let ids: Vec<&str> = s.iter().map(|s| s.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-00000002", "i-00000001", "i-00000009"]);
        // Evidence counts through the drain window and the grace.
        assert_eq!(s[0].until, at(9) + c.drain_window() + c.last_words_grace());
    }

    #[test]
    fn file_checks_and_exit_codes() {
        let w = TimeWindow {
            start: at(0),
            end: at(12),
        };
        let good = FileRead {
            found: 4,
            sampled: 3,
            ..Default::default()
        };
        let checks = file_checks(Some(&good), Some(&good), Some(&good), w);
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:?}"
        );
        let broken = FileRead {
            errors: vec!["a.json:3:1: invalid JSON".into()],
            ..Default::default()
        };
        let checks = file_checks(Some(&broken), None, None, w);
        assert_eq!(checks[0].status, Status::Fail);
        assert_eq!(Checklist::new(checks).exit_code, EXIT_CONFIG);
        let truncated = FileRead {
            warnings: vec!["a.json: truncated export: … --no-paginate".into()],
            ..good.clone()
        };
        let checks = file_checks(Some(&truncated), None, Some(&truncated), w);
        assert!(
            checks.iter().all(|c| c.status == Status::Warn),
            "{checks:?}"
        );
        assert!(checks[1].detail.contains("a.json: truncated"), "{checks:?}");
        let c = cfg("");
        let kinds = kind_checks(&c, false);
        assert_eq!(kinds.len(), 3);
        assert!(kinds[0].detail.contains("no AWS support"));
        assert!(kind_checks(&c, true).is_empty());
    }

    fn api_probe() -> LogApiProbe {
        use crate::sources::probe::{ApiLookup, Listing, ScopeSeen};
        LogApiProbe {
            backend: "splunk".into(),
            key: "sources.logs.splunk".into(),
            url: "https://splunk:8089".into(),
            connection: Ok("Splunk 9.2.1".into()),
            scopes: vec![ScopeSeen {
                key: "sources.logs.splunk.index".into(),
                what: "index `app`".into(),
                name: "app".into(),
                exists: Ok(true),
                others: Listing::default(),
            }],
            lookups: ["i-0a", "i-0b"]
                .iter()
                .map(|id| ApiLookup {
                    instance_id: id.to_string(),
                    looked_for: format!("search index=\"app\" instance_id=\"{id}\""),
                    result: Ok(ApiLookupResult::Events(5)),
                })
                .collect(),
            instance_values: None,
            calls: vec![ok("GET /services/server/info")],
        }
    }

    #[test]
    fn log_api_checks_pass_fail_and_say_why() {
        let all = log_api_checks(&api_probe());
        assert_eq!(
            all.iter()
                .map(|c| (c.id.as_str(), c.status))
                .collect::<Vec<_>>(),
            [
                ("splunk.connection", Status::Pass),
                ("splunk.scope", Status::Pass),
                ("splunk.last_words", Status::Pass)
            ]
        );

        // No answer: unreachable (exit 1), nothing else claimed.
        let mut p = api_probe();
        p.connection = Err(err("GET /services/server/info", None, false));
        let c = log_api_checks(&p);
        assert_eq!(c[0].failure, Some(Failure::Unreachable));
        assert_eq!(c[1].status, Status::Skip);
        assert_eq!(Checklist::new(c).exit_code, EXIT_UNREACHABLE);

        // A refused token: configuration, naming the keys.
        p.connection = Err(err("GET /services/server/info", Some("401"), true));
        let c = log_api_checks(&p);
        assert_eq!(c[0].failure, Some(Failure::Config));
        assert!(c[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("sources.logs.splunk.token"));

        // A misspelt index: the nearest one.
        let mut p = api_probe();
        p.scopes[0].name = "ap".into();
        p.scopes[0].what = "index `ap`".into();
        p.scopes[0].exists = Ok(false);
        p.scopes[0].others.items = vec!["app".into(), "main".into()];
        let c = log_api_checks(&p);
        let scope = c.iter().find(|c| c.id == "splunk.scope").unwrap();
        assert_eq!(scope.failure, Some(Failure::Config));
        assert!(
            scope.detail.contains("did you mean `app`"),
            "{}",
            scope.detail
        );

        // Nothing found for two instances: the filter is wrong (config); for one: a warning.
        let mut p = api_probe();
        for l in &mut p.lookups {
            l.result = Ok(ApiLookupResult::NoEvents);
        }
        let lw = log_api_checks(&p).pop().unwrap();
        assert_eq!(lw.failure, Some(Failure::Config));
        assert!(lw.detail.contains("instance_id=\"i-0a\""), "{}", lw.detail);
        assert!(lw
            .fix
            .unwrap()
            .contains("sources.logs.splunk.instance_filter"));
        p.lookups.truncate(1);
        assert_eq!(log_api_checks(&p).pop().unwrap().status, Status::Warn);

        // Instances the inventory cannot map: configuration, pointing at the inventory.
        let mut p = api_probe();
        for l in &mut p.lookups {
            l.result = Ok(ApiLookupResult::Unmapped("i-0a cannot be mapped".into()));
        }
        let lw = log_api_checks(&p).pop().unwrap();
        assert_eq!(lw.failure, Some(Failure::Config));
        assert!(lw.fix.unwrap().contains("describe-instances"));

        // A query the server rejected is configuration; a 5xx is the server's.
        let mut p = api_probe();
        p.lookups[0].result = Err(err(
            "POST /services/search/v2/jobs/export",
            Some("400"),
            true,
        ));
        assert_eq!(
            log_api_checks(&p).pop().unwrap().failure,
            Some(Failure::Config)
        );
        p.lookups[0].result = Err(err(
            "POST /services/search/v2/jobs/export",
            Some("503"),
            true,
        ));
        assert_eq!(
            log_api_checks(&p).pop().unwrap().failure,
            Some(Failure::Unreachable)
        );

        // Not set up at all.
        let c = log_api_not_configured("loki", "sources.logs.loki.url: required");
        assert_eq!(c[0].id, "loki.connection");
        assert_eq!(c[1].status, Status::Skip);
    }
}
