//! When to send an alert about a deployment: the state machine behind "one message per
//! finding until its severity changes, then a resolved message". Pure; the store keeps the
//! state and applies the transitions atomically (see `store::Store::commit_alerts`).
//!
//! A deployment *fires* when its verdict is one the user alerts on and it died that way
//! within `resolve_after`. A firing deployment is *resolved* when it stops qualifying: no
//! such death for `resolve_after`, its verdict drops out of the alerting set, or its groups
//! now run only other deployments (it was replaced). Rising severity is sent at once; any
//! other message waits for `cooldown` since the last one, so a flapping verdict cannot spam.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{DeploymentFinding, DeploymentVerdict, InstanceFacts};

/// What the store remembers per deployment between scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub deployment: String,
    /// The verdict last announced; None once resolved.
    pub firing: Option<DeploymentVerdict>,
    /// Counts firings: a new firing after a resolve is a new episode (and a new message).
    pub episode: u32,
    pub last_sent_at: DateTime<Utc>,
    /// Optimistic-concurrency version: a commit only applies on the version it read.
    pub version: i64,
}

/// What alerting is configured to do.
#[derive(Debug, Clone)]
pub struct AlertPolicy {
    pub verdicts: BTreeSet<DeploymentVerdict>,
    pub cooldown: Duration,
    pub resolve_after: Duration,
}

/// Why a firing deployment was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// Its groups now run only other deployments.
    Replaced,
    /// No death of the alerting kind for `resolve_after`.
    StoppedDying,
    /// Its verdict is no longer one that alerts (e.g. leaking → healthy).
    VerdictCleared,
}

impl ResolveReason {
    pub fn sentence(self) -> &'static str {
        match self {
            ResolveReason::Replaced => "its groups now run a different deployment",
            ResolveReason::StoppedDying => "no instance of it has died of this cause recently",
            ResolveReason::VerdictCleared => "its verdict no longer raises an alert",
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    Firing {
        verdict: DeploymentVerdict,
    },
    /// Severity changed while firing (up or down).
    Changed {
        from: DeploymentVerdict,
        to: DeploymentVerdict,
    },
    Resolved {
        from: DeploymentVerdict,
        reason: ResolveReason,
    },
}

impl Transition {
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Firing { .. } => "firing",
            Transition::Changed { .. } => "changed",
            Transition::Resolved { .. } => "resolved",
        }
    }
}

/// What one deployment looks like now, as far as alerting cares.
#[derive(Debug, Clone)]
pub struct Standing<'a> {
    pub finding: Option<&'a DeploymentFinding>,
    /// The last death that counts against it (memory death or crash), if any.
    pub last_bad_death: Option<DateTime<Utc>>,
    pub replaced: bool,
}

/// The transition for one deployment, if any.
pub fn decide(
    prev: Option<&AlertState>,
    now: &Standing<'_>,
    policy: &AlertPolicy,
    at: DateTime<Utc>,
) -> Option<Transition> {
    let recent = now
        .last_bad_death
        .is_some_and(|d| at - d <= policy.resolve_after);
    let qualifying = now
        .finding
        .map(|f| f.verdict)
        .filter(|v| policy.verdicts.contains(v));
    let cooled = prev.is_none_or(|p| at - p.last_sent_at >= policy.cooldown);
    let firing = prev.and_then(|p| p.firing);
    match (firing, qualifying) {
        (None, Some(v)) if recent && !now.replaced && cooled => {
            Some(Transition::Firing { verdict: v })
        }
        (None, _) => None,
        (Some(from), Some(to)) if recent && !now.replaced => {
            if to == from {
                None
            } else if to.severity() > from.severity() || cooled {
                Some(Transition::Changed { from, to })
            } else {
                None
            }
        }
        (Some(from), q) if cooled => {
            let reason = if now.replaced {
                ResolveReason::Replaced
            } else if q.is_none() {
                ResolveReason::VerdictCleared
            } else {
                ResolveReason::StoppedDying
            };
            Some(Transition::Resolved { from, reason })
        }
        (Some(_), _) => None,
    }
}

/// The state after sending `t`.
pub fn apply(
    prev: Option<&AlertState>,
    deployment: &str,
    t: &Transition,
    at: DateTime<Utc>,
) -> AlertState {
    let episode = prev.map_or(0, |p| p.episode);
    let version = prev.map_or(0, |p| p.version) + 1;
    let (firing, episode) = match t {
        Transition::Firing { verdict } => (Some(*verdict), episode + 1),
        Transition::Changed { to, .. } => (Some(*to), episode),
        Transition::Resolved { .. } => (None, episode),
    };
    AlertState {
        deployment: deployment.to_string(),
        firing,
        episode,
        last_sent_at: at,
        version,
    }
}

/// The key that makes a message unique: replicas and reruns computing the same transition
/// produce the same key, and the outbox accepts it once.
pub fn dedup_key(deployment: &str, episode: u32, t: &Transition) -> String {
    let verdicts = match t {
        Transition::Firing { verdict } => verdict.as_str().to_string(),
        Transition::Changed { from, to } => format!("{from}>{to}"),
        Transition::Resolved { from, .. } => format!("{from}>resolved"),
    };
    format!("{deployment}#{episode}#{}#{verdicts}", t.name())
}

/// Per deployment, the last death that counts against it (a memory death or a crash).
pub fn last_bad_deaths(history: &[InstanceFacts]) -> BTreeMap<String, DateTime<Utc>> {
    let mut out: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for r in history
        .iter()
        .filter(|r| r.verdict.is_memory_death() || r.verdict.is_crash())
    {
        let e = out.entry(r.deployment.clone()).or_insert(r.terminated_at);
        *e = (*e).max(r.terminated_at);
    }
    out
}

/// Whether `finding`'s groups now run only other deployments: every one of its groups has live
/// instances and none of them belongs to it. `live` maps a group to the deployments of its
/// live instances; a group missing from it proves nothing.
pub fn is_replaced(finding: &DeploymentFinding, live: &BTreeMap<String, BTreeSet<String>>) -> bool {
    !finding.asgs.is_empty()
        && finding.asgs.iter().all(|asg| {
            live.get(asg)
                .is_some_and(|deps| !deps.is_empty() && !deps.contains(&finding.deployment))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn policy() -> AlertPolicy {
        AlertPolicy {
            verdicts: [
                DeploymentVerdict::Leaking,
                DeploymentVerdict::OomWithoutLeak,
            ]
            .into_iter()
            .collect(),
            cooldown: Duration::hours(1),
            resolve_after: Duration::hours(24),
        }
    }

    fn finding(v: DeploymentVerdict) -> DeploymentFinding {
        DeploymentFinding {
            deployment: "api:7".into(),
            asgs: vec!["api".into()],
            verdict: v,
            summary: String::new(),
            evidence: Default::default(),
            origin: None,
        }
    }

    fn standing(f: &DeploymentFinding, death_ago_h: i64) -> Standing<'_> {
        Standing {
            finding: Some(f),
            last_bad_death: Some(t0() - Duration::hours(death_ago_h)),
            replaced: false,
        }
    }

    /// Runs a sequence of (hours since t0, standing) through decide/apply; returns messages.
    fn run(steps: &[(i64, Standing<'_>)]) -> Vec<(i64, Transition)> {
        let mut state: Option<AlertState> = None;
        let mut sent = Vec::new();
        for (h, s) in steps {
            let at = t0() + Duration::hours(*h);
            if let Some(t) = decide(state.as_ref(), s, &policy(), at) {
                state = Some(apply(state.as_ref(), "api:7", &t, at));
                sent.push((*h, t));
            }
        }
        sent
    }

    #[test]
    fn one_message_per_finding_then_resolved() {
        let leaking = finding(DeploymentVerdict::Leaking);
        let sent = run(&[
            (0, standing(&leaking, 0)),
            (1, standing(&leaking, 0)),
            (2, standing(&leaking, 1)),
            // No death for > 24 h.
            (30, standing(&leaking, 30)),
            (31, standing(&leaking, 31)),
        ]);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(matches!(
            sent[0].1,
            Transition::Firing {
                verdict: DeploymentVerdict::Leaking
            }
        ));
        assert!(matches!(
            sent[1].1,
            Transition::Resolved {
                reason: ResolveReason::StoppedDying,
                ..
            }
        ));
    }

    #[test]
    fn escalation_is_immediate_deescalation_waits_for_cooldown() {
        let oom = finding(DeploymentVerdict::OomWithoutLeak);
        let leaking = finding(DeploymentVerdict::Leaking);
        let sent = run(&[
            (0, standing(&oom, 0)),
            (0, standing(&leaking, 0)),
            (0, standing(&oom, 0)),
            (1, standing(&oom, 0)),
        ]);
        let kinds: Vec<String> = sent
            .iter()
            .map(|(h, t)| format!("{h}:{}", t.name()))
            .collect();
        assert_eq!(kinds, vec!["0:firing", "0:changed", "1:changed"]);
    }

    #[test]
    fn replaced_and_cleared_resolve() {
        let leaking = finding(DeploymentVerdict::Leaking);
        let healthy = finding(DeploymentVerdict::Healthy);
        let mut replaced = standing(&leaking, 0);
        replaced.replaced = true;
        let sent = run(&[(0, standing(&leaking, 0)), (2, replaced)]);
        assert!(matches!(
            sent[1].1,
            Transition::Resolved {
                reason: ResolveReason::Replaced,
                ..
            }
        ));
        let sent = run(&[(0, standing(&leaking, 0)), (2, standing(&healthy, 0))]);
        assert!(matches!(
            sent[1].1,
            Transition::Resolved {
                reason: ResolveReason::VerdictCleared,
                ..
            }
        ));
        // Disappearing from the findings (out of the lookback) resolves too.
        let gone = Standing {
            finding: None,
            last_bad_death: None,
            replaced: false,
        };
        let sent = run(&[(0, standing(&leaking, 0)), (2, gone)]);
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn refiring_after_resolve_is_a_new_episode_with_a_new_key() {
        let leaking = finding(DeploymentVerdict::Leaking);
        let p = policy();
        let s1 = standing(&leaking, 0);
        let t1 = decide(None, &s1, &p, t0()).unwrap();
        let st1 = apply(None, "api:7", &t1, t0());
        let gone = Standing {
            finding: None,
            last_bad_death: None,
            replaced: false,
        };
        let at2 = t0() + Duration::hours(2);
        let t2 = decide(Some(&st1), &gone, &p, at2).unwrap();
        let st2 = apply(Some(&st1), "api:7", &t2, at2);
        let at3 = t0() + Duration::hours(4);
        let s3 = Standing {
            finding: Some(&leaking),
            last_bad_death: Some(at3),
            replaced: false,
        };
        let t3 = decide(Some(&st2), &s3, &p, at3).unwrap();
        let st3 = apply(Some(&st2), "api:7", &t3, at3);
        assert_eq!(st3.episode, 2);
        let keys: BTreeSet<String> = [
            dedup_key("api:7", st1.episode, &t1),
            dedup_key("api:7", st2.episode, &t2),
            dedup_key("api:7", st3.episode, &t3),
        ]
        .into_iter()
        .collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(st3.version, 3);
    }

    #[test]
    fn old_deaths_and_unalerted_verdicts_do_not_fire() {
        let leaking = finding(DeploymentVerdict::Leaking);
        let crashing = finding(DeploymentVerdict::Crashing);
        assert!(run(&[(0, standing(&leaking, 48))]).is_empty());
        assert!(run(&[(0, standing(&crashing, 0))]).is_empty());
    }

    #[test]
    fn replaced_needs_every_group_to_run_something_else() {
        let f = finding(DeploymentVerdict::Leaking);
        let mut live = BTreeMap::new();
        assert!(!is_replaced(&f, &live));
        live.insert(
            "api".to_string(),
            BTreeSet::from(["api:7".to_string(), "api:8".to_string()]),
        );
        assert!(!is_replaced(&f, &live));
        live.insert("api".to_string(), BTreeSet::from(["api:8".to_string()]));
        assert!(is_replaced(&f, &live));
    }
}
