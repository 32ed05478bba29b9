//! `epitaph doctor`'s judgement: turns what the probes saw (`sources::probe`, and what the file
//! backends read) into a checklist — PASS / WARN / FAIL / SKIP items, each failure with the
//! fix: the IAM action to allow, the nearest existing group or log group name, the stream
//! pattern the streams actually follow, the exact `extra_dimensions` for the dimension sets
//! the metric actually has. Pure: no I/O, tested on data.
//!
//! A FAIL is either a configuration error (exit 2: a name, a pattern, a policy to fix) or an
//! account/API that could not be reached (exit 1: credentials, network, endpoint). SKIP says a
//! check was not made and why; nothing unchecked is ever reported as passing.
//!
//! The shared vocabulary (checks, names, errors, samples, configuration and file checks) lives
//! here; the checks of each backend in its own file.

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
    let any_path = s.uses(crate::config::SourceKind::File)
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

mod aws;
mod aws_metrics;
mod log_api;
mod prometheus;
#[cfg(test)]
mod tests;

pub use aws::*;
pub use aws_metrics::*;
pub use log_api::*;
pub use prometheus::*;
