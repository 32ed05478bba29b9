//! Correlation: turns one instance's evidence (cause, signature matches, leak assessment) into an
//! [`InstanceVerdict`], resolves which deployment it belonged to, and turns a deployment's
//! instances into a [`DeploymentFinding`] — from their compact rows ([`InstanceFacts`]), so
//! judging a lookback never decodes its evidence.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::analysis::leak::median;
use crate::model::{
    DeploymentEvidence, DeploymentFinding, DeploymentVerdict, InstanceFacts, InstanceInfo,
    InstanceVerdict, LastWords, LeakAssessment, LeakVerdict, MemorySeries, PredecessorRecord,
    RegressionOrigin, SignatureKind, SignatureMatch, Termination,
};

/// Default for [`FindingPolicy::min_instances`]: one death is an anecdote, two are a pattern.
pub const DEFAULT_MIN_INSTANCES: usize = 2;
/// A deployment is `leaking` when at least this share of its memory deaths show a leak trend.
pub const LEAK_SHARE_OF_MEMORY_DEATHS: f64 = 0.5;

/// How instances are grouped into deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "identity")]
pub enum DeploymentIdentity {
    /// The Auto Scaling group's name.
    Asg,
    /// Launch template `name:version` (or id:version) from the inventory.
    LaunchTemplate,
    /// The value of an instance tag from the inventory.
    Tag { key: String },
    /// A field in the instance's log lines: a JSON field or a `key=value` pair.
    LogField { field: String },
    /// A label on the memory series (Prometheus label, CloudWatch dimension).
    MetricLabel { label: String },
}

/// Resolves the deployment of one instance. When the configured identity is not available for
/// it (no inventory entry, no such tag), the ASG name stands in, suffixed so it is never
/// mistaken for a resolved identity.
pub fn resolve_deployment(
    identity: &DeploymentIdentity,
    termination: &Termination,
    info: Option<&InstanceInfo>,
    last_words: &LastWords,
    series: Option<&MemorySeries>,
) -> String {
    let found = match identity {
        DeploymentIdentity::Asg => return termination.asg.clone(),
        DeploymentIdentity::LaunchTemplate => info.and_then(|i| {
            i.launch_template
                .as_ref()
                .and_then(|lt| lt.deployment_key())
                .or_else(|| i.launch_configuration.clone())
        }),
        DeploymentIdentity::Tag { key } => info.and_then(|i| i.tags.get(key).cloned()),
        DeploymentIdentity::LogField { field } => log_field(last_words, field),
        DeploymentIdentity::MetricLabel { label } => {
            series.and_then(|s| s.labels.get(label).cloned())
        }
    };
    found.unwrap_or_else(|| format!("{}{UNATTRIBUTED_SUFFIX}", termination.asg))
}

/// Appended to the group's name when an instance's deployment identity is unknown.
pub const UNATTRIBUTED_SUFFIX: &str = " (unattributed)";

/// Whether a deployment name is a group standing in for an unknown identity.
pub fn is_unattributed(deployment: &str) -> bool {
    deployment.ends_with(UNATTRIBUTED_SUFFIX)
}

/// The deployment of a live instance from the inventory, where the identity can tell it
/// without logs or metrics (ASG, launch template, tag).
pub fn live_deployment(identity: &DeploymentIdentity, info: &InstanceInfo) -> Option<String> {
    match identity {
        DeploymentIdentity::Asg => info.asg.clone(),
        DeploymentIdentity::LaunchTemplate => info
            .launch_template
            .as_ref()
            .and_then(|lt| lt.deployment_key())
            .or_else(|| info.launch_configuration.clone()),
        DeploymentIdentity::Tag { key } => info.tags.get(key).cloned(),
        DeploymentIdentity::LogField { .. } | DeploymentIdentity::MetricLabel { .. } => None,
    }
}

/// The most recent value of `field` in the events: a JSON field, or `field=value`.
fn log_field(last_words: &LastWords, field: &str) -> Option<String> {
    let needle = format!("{field}=");
    last_words.events.iter().rev().find_map(|e| {
        let msg = e.message.trim();
        if msg.starts_with('{') {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(msg) {
                match map.get(field) {
                    Some(serde_json::Value::String(s)) => return Some(s.clone()),
                    Some(v @ serde_json::Value::Number(_)) => return Some(v.to_string()),
                    _ => {}
                }
            }
        }
        let start = msg.find(&needle)? + needle.len();
        let value: String = msg[start..]
            .trim_start_matches('"')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
            .collect();
        (!value.is_empty()).then_some(value)
    })
}

/// A crash line decides only when the process did not carry on after it: the last event of the
/// last words is at most this long after the crash line (a stack trace and the runtime's exit
/// lines print within it), or everything later is a shutdown line. A handled exception followed
/// by minutes of normal serving is not a death.
pub const TERMINAL_CRASH_WINDOW_SECS: i64 = 30;
/// A clean shutdown counts as the ending when its line is among the last this many events
/// (a few closing lines such as "closed N idle connections" may follow it), or written at most
/// [`SHUTDOWN_TAIL_SECS`] before the last event, and no OOM or terminal crash came before.
pub const SHUTDOWN_TAIL_EVENTS: usize = 5;
/// A server's stop prints its steps within seconds (mongod, etcd and Prometheus write a dozen
/// lines or more after the signal): a shutdown line this close to the last event ends the
/// last words however many lines follow it.
pub const SHUTDOWN_TAIL_SECS: i64 = 30;

/// The instance verdict and a one-sentence explanation.
///
/// `matches` index into `last_words.events` (`SignatureMatch::line`).
pub fn judge_instance(
    termination: &Termination,
    last_words: &LastWords,
    matches: &[SignatureMatch],
    leak: Option<&LeakAssessment>,
) -> (InstanceVerdict, String) {
    let oom = matches.iter().find(|m| m.kind == SignatureKind::Oom);
    // A kill without a cause that ended the process outranks the crash lines after it, which
    // report it (torchrun's traceback after "failed (exitcode: -9)", a platform's "crashed"
    // state after "exited with status 137"); a crash line before the kill is its cause
    // (Heroku's boot timeout, then its SIGKILL) and decides, and so does a crash after a kill
    // the process lived on from.
    let reports_a_kill = |c: &SignatureMatch| {
        matches.iter().any(|k| {
            k.kind == SignatureKind::Kill
                && k.line <= c.line
                && crash_is_terminal(k, last_words, matches)
        })
    };
    let crash = matches.iter().find(|m| {
        m.kind == SignatureKind::Crash
            && crash_is_terminal(m, last_words, matches)
            && !reports_a_kill(m)
    });
    let kill = match crash {
        Some(_) => None,
        None => matches
            .iter()
            .rev()
            .find(|m| m.kind == SignatureKind::Kill && crash_is_terminal(m, last_words, matches)),
    };
    let handled_crash = matches
        .iter()
        .find(|m| m.kind == SignatureKind::Crash && crash.is_none() && kill.is_none());
    let leak_verdict = leak.map(|l| l.verdict);
    let growth = leak
        .and_then(|l| l.growth_per_hour)
        .map(|g| format!("{g:+.2}/h"))
        .unwrap_or_default();

    if let Some(m) = oom {
        return match leak_verdict {
            Some(LeakVerdict::Leak) => (
                InstanceVerdict::OomLeak,
                format!(
                    "died of OOM ({}) after its memory floor rose {growth} until death",
                    m.signature
                ),
            ),
            Some(LeakVerdict::NoLeak) => (
                InstanceVerdict::OomSpike,
                format!(
                    "died of OOM ({}) without a leak trend: a spike or an undersized limit",
                    m.signature
                ),
            ),
            _ => (
                InstanceVerdict::Oom,
                format!(
                    "died of OOM ({}); no usable memory series to tell leak from spike",
                    m.signature
                ),
            ),
        };
    }
    if let Some(m) = crash {
        return (
            InstanceVerdict::CrashOther,
            format!("crashed for a non-memory reason ({})", m.signature),
        );
    }
    if let Some(l) = leak {
        if l.verdict == LeakVerdict::Leak && l.reached_limit {
            return (
                InstanceVerdict::MemoryExhaustionSuspected,
                format!(
                    "no OOM line, but memory leaked {growth} up to the limit before it went silent"
                ),
            );
        }
    }
    let handled = handled_crash
        .map(|m| {
            format!(
                "; a {} earlier was handled (the process kept logging)",
                m.signature
            )
        })
        .unwrap_or_default();
    if termination.cause.is_planned() {
        return (
            InstanceVerdict::NotACrash,
            format!(
                "terminated by the group ({}) with no crash evidence{handled}",
                termination.cause
            ),
        );
    }
    if let Some(m) = clean_shutdown_ending(last_words, matches) {
        return (
            InstanceVerdict::NotACrash,
            format!(
                "terminated ({}) but its last words end in an orderly shutdown ({}): \
                 stopped from outside (e.g. a Spot interruption seen as a health check), not a crash{handled}",
                termination.cause, m.signature
            ),
        );
    }
    if let Some(k) = kill {
        if leak_verdict == Some(LeakVerdict::Leak) {
            return (
                InstanceVerdict::MemoryExhaustionSuspected,
                format!(
                    "terminated ({}); killed without a cause written ({}) while its memory \
                     floor rose {growth}: the kernel's OOM killer is the likely killer",
                    termination.cause, k.signature
                ),
            );
        }
        return (
            InstanceVerdict::Unknown,
            format!(
                "terminated ({}); its last words end in a kill with no cause written ({}): \
                 most often the kernel's OOM killer, also a stop timeout or a supervisor — \
                 the host's kernel log and the memory series decide",
                termination.cause, k.signature
            ),
        );
    }
    (
        InstanceVerdict::Unknown,
        format!(
            "terminated ({}) with no crash signature and no conclusive memory series{handled}",
            termination.cause
        ),
    )
}

/// Whether a crash (or kill) match ended the process: nothing but shutdown lines, context lines and
/// lines within [`TERMINAL_CRASH_WINDOW_SECS`] of it follow. Without usable timestamps (a
/// match with no event) the crash counts.
fn crash_is_terminal(
    m: &SignatureMatch,
    last_words: &LastWords,
    matches: &[SignatureMatch],
) -> bool {
    let events = &last_words.events;
    let Some(at) = events.get(m.line).map(|e| e.timestamp) else {
        return true;
    };
    let limit = at + chrono::Duration::seconds(TERMINAL_CRASH_WINDOW_SECS);
    events
        .iter()
        .enumerate()
        .skip(m.line + 1)
        .filter(|(_, e)| e.timestamp > limit)
        .all(|(i, _)| {
            matches.iter().any(|x| {
                x.line == i && matches!(x.kind, SignatureKind::Shutdown | SignatureKind::Context)
            })
        })
}

/// A shutdown match among the final [`SHUTDOWN_TAIL_EVENTS`] events or the final
/// [`SHUTDOWN_TAIL_SECS`], if any.
fn clean_shutdown_ending<'a>(
    last_words: &LastWords,
    matches: &'a [SignatureMatch],
) -> Option<&'a SignatureMatch> {
    let events = &last_words.events;
    let tail_start = events.len().saturating_sub(SHUTDOWN_TAIL_EVENTS);
    let since = events
        .last()
        .map(|e| e.timestamp - chrono::Duration::seconds(SHUTDOWN_TAIL_SECS));
    let near_the_end = |line: usize| {
        line >= tail_start
            || events
                .get(line)
                .zip(since)
                .is_some_and(|(e, since)| e.timestamp >= since)
    };
    matches
        .iter()
        .rev()
        .find(|m| m.kind == SignatureKind::Shutdown && near_the_end(m.line))
}

/// Thresholds for deployment verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FindingPolicy {
    /// Deaths of one kind needed before a deployment is called leaking / OOM / crashing.
    pub min_instances: usize,
}

impl Default for FindingPolicy {
    fn default() -> Self {
        FindingPolicy {
            min_instances: DEFAULT_MIN_INSTANCES,
        }
    }
}

/// Judges one deployment from its instances.
pub fn judge_deployment(
    deployment: &str,
    instances: &[&InstanceFacts],
    policy: FindingPolicy,
) -> DeploymentFinding {
    let count = |pred: &dyn Fn(InstanceVerdict) -> bool| {
        instances.iter().filter(|r| pred(r.verdict)).count()
    };
    let memory_deaths = count(&|v| v.is_memory_death());
    let leak_deaths = count(&|v| v.is_leak_death());
    let other_crashes = count(&|v| v == InstanceVerdict::CrashOther);
    let planned = count(&|v| v == InstanceVerdict::NotACrash);
    let unknown = count(&|v| v == InstanceVerdict::Unknown);
    let min = policy.min_instances.max(1);

    let mut counts = BTreeMap::new();
    for r in instances {
        *counts.entry(r.verdict.as_str().to_string()).or_insert(0) += 1;
    }
    let mut signatures = BTreeMap::new();
    for r in instances {
        let ids: BTreeSet<&str> = r.death_signatures.iter().map(String::as_str).collect();
        for id in ids {
            *signatures.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    let leaking_growth: Vec<f64> = instances.iter().filter_map(|r| r.leak_growth()).collect();
    let lifetimes: Vec<f64> = instances
        .iter()
        .filter_map(|r| r.lifetime_hours())
        .collect();
    let mut ids: Vec<String> = instances.iter().map(|r| r.instance_id.clone()).collect();
    ids.sort();
    let asgs: BTreeSet<String> = instances.iter().map(|r| r.asg.clone()).collect();

    let n = instances.len();
    let heard_from = instances.iter().any(|r| r.heard_from());
    let (verdict, summary) = if leak_deaths >= min
        && leak_deaths as f64 >= LEAK_SHARE_OF_MEMORY_DEATHS * memory_deaths as f64
    {
        (
            DeploymentVerdict::Leaking,
            format!("{leak_deaths} of {n} instances died of memory with a rising floor"),
        )
    } else if memory_deaths >= min && memory_deaths >= other_crashes {
        (
            DeploymentVerdict::OomWithoutLeak,
            format!(
                "{memory_deaths} of {n} instances died of memory without a consistent leak trend"
            ),
        )
    } else if other_crashes >= min {
        (
            DeploymentVerdict::Crashing,
            format!("{other_crashes} of {n} instances crashed for non-memory reasons"),
        )
    } else if memory_deaths + other_crashes == 0
        && planned >= 1
        && unknown <= planned
        && !heard_from
    {
        // "No crash evidence" means nothing when nothing was read: no instance had last words.
        (
            DeploymentVerdict::InsufficientEvidence,
            format!("{planned} of {n} instances were removed by the group, but none has last words to show they did not crash (check the log source)"),
        )
    } else if memory_deaths + other_crashes == 0 && planned >= 1 && unknown <= planned {
        (
            DeploymentVerdict::Healthy,
            format!("{planned} of {n} instances were removed by the group with no crash evidence"),
        )
    } else {
        (
            DeploymentVerdict::InsufficientEvidence,
            format!(
                "{n} instance(s): {memory_deaths} memory death(s), {other_crashes} other crash(es), {unknown} unexplained; need {min} of a kind"
            ),
        )
    };

    DeploymentFinding {
        deployment: deployment.to_string(),
        asgs: asgs.into_iter().collect(),
        verdict,
        summary,
        evidence: DeploymentEvidence {
            instances: ids,
            counts,
            median_growth_per_hour: (!leaking_growth.is_empty()).then(|| median(leaking_growth)),
            median_lifetime_hours: (!lifetimes.is_empty()).then(|| median(lifetimes)),
            signatures,
            first_death: instances.iter().map(|r| r.terminated_at).min(),
            last_death: instances.iter().map(|r| r.terminated_at).max(),
        },
        origin: None,
    }
}

/// When a deployment started running: its earliest instance launch seen, else its earliest
/// memory sample, else its earliest termination.
fn rollout(instances: &[&InstanceFacts]) -> Option<DateTime<Utc>> {
    instances
        .iter()
        .map(|r| {
            r.launch_time
                .or(r.first_sample_at)
                .unwrap_or(r.terminated_at)
                .min(r.terminated_at)
        })
        .min()
}

/// The death that makes a verdict: memory deaths for leaking and OOM, other crashes for
/// crashing.
fn is_verdict_death(verdict: DeploymentVerdict, v: InstanceVerdict) -> bool {
    match verdict {
        DeploymentVerdict::Leaking | DeploymentVerdict::OomWithoutLeak => v.is_memory_death(),
        DeploymentVerdict::Crashing => v == InstanceVerdict::CrashOther,
        _ => false,
    }
}

fn is_problem(verdict: DeploymentVerdict) -> bool {
    matches!(
        verdict,
        DeploymentVerdict::Leaking
            | DeploymentVerdict::OomWithoutLeak
            | DeploymentVerdict::Crashing
    )
}

/// The regression origin of a problem deployment: its rollout, the first death after it, and
/// the deployment the same group ran before (the latest rollout earlier than this one's
/// among the group's other deployments in the lookback; unattributed instances never count).
fn regression_origin(
    finding: &DeploymentFinding,
    groups: &BTreeMap<&str, Vec<&InstanceFacts>>,
    verdicts: &BTreeMap<String, DeploymentVerdict>,
) -> Option<RegressionOrigin> {
    let own = groups.get(finding.deployment.as_str())?;
    let start = rollout(own)?;
    let first_death = own
        .iter()
        .filter(|r| is_verdict_death(finding.verdict, r.verdict))
        .map(|r| r.terminated_at)
        .min();
    let after_hours = first_death
        .map(|t| ((t - start).num_seconds().max(0) as f64 / 3600.0 * 10.0).round() / 10.0);
    let predecessor = groups
        .iter()
        .filter(|(d, rs)| {
            **d != finding.deployment
                && !is_unattributed(d)
                && rs.iter().any(|r| finding.asgs.contains(&r.asg))
        })
        .filter_map(|(d, rs)| Some((*d, rs, rollout(rs)?)))
        .filter(|(_, _, t)| *t < start)
        .max_by_key(|(d, _, t)| (*t, *d))
        .map(|(d, rs, _)| {
            let hours: Vec<f64> = rs.iter().filter_map(|r| r.lifetime_hours()).collect();
            let verdict = verdicts
                .get(d)
                .copied()
                .unwrap_or(DeploymentVerdict::InsufficientEvidence);
            PredecessorRecord {
                deployment: d.to_string(),
                verdict,
                instances: rs.len(),
                memory_deaths: rs.iter().filter(|r| r.verdict.is_memory_death()).count(),
                other_crashes: rs
                    .iter()
                    .filter(|r| r.verdict == InstanceVerdict::CrashOther)
                    .count(),
                instance_hours: (!hours.is_empty())
                    .then(|| (hours.iter().sum::<f64>() * 10.0).round() / 10.0),
                same_problem: verdict == finding.verdict
                    || (is_problem(verdict)
                        && finding.verdict != DeploymentVerdict::Crashing
                        && verdict != DeploymentVerdict::Crashing),
            }
        });
    let what = match finding.verdict {
        DeploymentVerdict::Leaking => "leaks",
        DeploymentVerdict::OomWithoutLeak => "dies of memory",
        _ => "crashes",
    };
    let deaths = match finding.verdict {
        DeploymentVerdict::Crashing => "crash",
        _ => "memory death",
    };
    let mut summary = format!(
        "{} {what} since its rollout at {}",
        finding.deployment,
        start.format("%Y-%m-%d %H:%M UTC")
    );
    if let Some(h) = after_hours {
        summary.push_str(&format!(" (first {deaths} {h:.1} h later)"));
    }
    match &predecessor {
        Some(p) if p.same_problem => summary.push_str(&format!(
            "; {} before it {} too ({} memory deaths, {} other crashes in {} instances): the problem is older than this release",
            p.deployment,
            if p.verdict == DeploymentVerdict::Leaking { "leaked" } else { "died the same way" },
            p.memory_deaths,
            p.other_crashes,
            p.instances
        )),
        Some(p) => {
            let hours = p
                .instance_hours
                .map(|h| format!(" over {h:.0} instance-hours"))
                .unwrap_or_default();
            summary.push_str(&format!(
                "; {} before it: {} memory deaths and {} other crashes in {} instances{hours} ({}) — the rollback target",
                p.deployment, p.memory_deaths, p.other_crashes, p.instances, p.verdict
            ));
        }
        None => summary.push_str("; no earlier deployment of the group in the finding lookback"),
    }
    Some(RegressionOrigin {
        rollout: start,
        first_death_after_hours: after_hours,
        predecessor,
        summary,
    })
}

/// Groups instances by deployment and judges each; worst verdict first, then by name.
pub fn judge_deployments(
    reports: &[InstanceFacts],
    policy: FindingPolicy,
) -> Vec<DeploymentFinding> {
    let mut groups: BTreeMap<&str, Vec<&InstanceFacts>> = BTreeMap::new();
    for r in reports {
        groups.entry(r.deployment.as_str()).or_default().push(r);
    }
    let mut findings: Vec<DeploymentFinding> = groups
        .iter()
        .map(|(d, rs)| judge_deployment(d, rs, policy))
        .collect();
    let verdicts: BTreeMap<String, DeploymentVerdict> = findings
        .iter()
        .map(|f| (f.deployment.clone(), f.verdict))
        .collect();
    for f in &mut findings {
        if is_problem(f.verdict) {
            f.origin = regression_origin(f, &groups, &verdicts);
        }
    }
    findings.sort_by(|a, b| {
        b.verdict
            .severity()
            .cmp(&a.verdict.severity())
            .then_with(|| a.deployment.cmp(&b.deployment))
    });
    findings
}

#[cfg(test)]
mod tests;
