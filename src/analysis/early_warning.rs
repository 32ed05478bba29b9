//! Early warning: which running instances to look at, and their projected time to the memory
//! limit ("next expected deaths").
//!
//! Pure: the pipeline fetches the chosen instances' memory series and hands them back here.
//! Running instances are those the inventory lists as live (see [`InstanceInfo::is_live`])
//! and that have no termination on record. With scope `leaking`, only those of deployments
//! judged `leaking` are looked at (an instance whose deployment cannot be told from the
//! inventory, as with `log_field` identity, is looked at when its group hosts a leaking
//! deployment, and kept only if its series' labels place it there). The projection itself is
//! the leak detector's ([`leak::project`]): a series the detector does not call a leak gets
//! none, so a healthy instance is never given a death date.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::correlate::{live_deployment, DeploymentIdentity};
use crate::analysis::leak;
use crate::model::{
    DeploymentFinding, DeploymentVerdict, InstanceFacts, InstanceInfo, MemorySeries, ProjectedDeath,
};

/// `analysis.early_warning`: which running instances are projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EarlyWarningScope {
    Leaking,
    All,
    Off,
}

impl EarlyWarningScope {
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyWarningScope::Leaking => "leaking",
            EarlyWarningScope::All => "all",
            EarlyWarningScope::Off => "off",
        }
    }
}

/// What early warning did in a scan: coverage is a result here too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyWarningSummary {
    /// `leaking`, `all` or `off`.
    pub scope: String,
    /// Running instances in scope.
    pub candidates: usize,
    /// Left out by `analysis.early_warning_max_instances` (the newest launches).
    pub over_cap: usize,
    /// Instances projected to reach their limit.
    pub projected: usize,
    /// Series read that the detector does not call a leak (or that have no limit).
    pub not_leaking: usize,
    /// No memory series from the backend.
    pub no_series: usize,
    /// The series fetch failed (the next scan tries again).
    pub errors: usize,
    /// The first fetch errors, for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
}

/// At most this many fetch errors are listed in the summary.
pub const MAX_ERROR_SAMPLES: usize = 5;
/// A deployment's death level is used once this many of its instances died of a leak with a
/// memory series; below it the projection runs to the limit.
pub const MIN_DEATHS_FOR_LEVEL: usize = 2;

/// Where a deployment's instances died: the median of their series' final peaks (leak deaths
/// only), with how many deaths it rests on. A process often dies below the host's limit (a
/// runtime heap cap, the kernel's reserve, an OOM daemon's threshold); its siblings will too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeathLevel {
    pub level: f64,
    pub deaths: usize,
}

/// Death levels by deployment, from the compact rows of the instances in the lookback.
pub fn death_levels(history: &[InstanceFacts]) -> BTreeMap<String, DeathLevel> {
    let mut peaks: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in history.iter().filter(|r| r.verdict.is_leak_death()) {
        if let Some(peak) = r.final_peak {
            if peak.is_finite() && peak > 0.0 {
                peaks.entry(r.deployment.as_str()).or_default().push(peak);
            }
        }
    }
    peaks
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_DEATHS_FOR_LEVEL)
        .map(|(d, v)| {
            let deaths = v.len();
            (
                d.to_string(),
                DeathLevel {
                    level: leak::median(v),
                    deaths,
                },
            )
        })
        .collect()
}

/// A running instance chosen for a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub info: InstanceInfo,
    /// Its deployment when the inventory tells it.
    pub deployment: Option<String>,
    /// With scope `leaking` and a deployment the inventory cannot tell: the leaking
    /// deployments of its group, one of which its series' labels must name.
    pub must_be_one_of: Option<BTreeSet<String>>,
}

/// The running instances to project, oldest launch first (nearest their limit), at most
/// `max`; and how many were left out by the cap.
pub fn candidates(
    scope: EarlyWarningScope,
    findings: &[DeploymentFinding],
    inventory: &[InstanceInfo],
    dead: &BTreeSet<String>,
    identity: &DeploymentIdentity,
    max: usize,
) -> (Vec<Candidate>, usize) {
    if scope == EarlyWarningScope::Off {
        return (Vec::new(), 0);
    }
    let leaking: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.verdict == DeploymentVerdict::Leaking)
        .map(|f| f.deployment.as_str())
        .collect();
    let mut leaking_by_group: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for f in findings
        .iter()
        .filter(|f| f.verdict == DeploymentVerdict::Leaking)
    {
        for g in &f.asgs {
            leaking_by_group
                .entry(g.as_str())
                .or_default()
                .insert(f.deployment.clone());
        }
    }
    let mut out: Vec<Candidate> = inventory
        .iter()
        .filter(|i| i.is_live() && !dead.contains(&i.instance_id))
        .filter_map(|info| {
            let deployment = live_deployment(identity, info);
            let must_be_one_of = match (scope, &deployment) {
                (EarlyWarningScope::All, _) => None,
                (_, Some(d)) if leaking.contains(d.as_str()) => None,
                (_, Some(_)) => return None,
                (_, None) => Some(leaking_by_group.get(info.asg.as_deref()?)?.clone()),
            };
            Some(Candidate {
                info: info.clone(),
                deployment,
                must_be_one_of,
            })
        })
        .collect();
    // Oldest launch first; unknown launch times last; then by id for a stable order.
    out.sort_by(|a, b| {
        let key = |c: &Candidate| (c.info.launch_time.is_none(), c.info.launch_time);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.info.instance_id.cmp(&b.info.instance_id))
    });
    let over = out.len().saturating_sub(max);
    out.truncate(max);
    (out, over)
}

/// The window of memory to read for a running instance: from its launch (or `lookback` before
/// `at` when the launch is unknown or older) to `at`.
pub fn series_window(
    info: &InstanceInfo,
    at: DateTime<Utc>,
    lookback: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let earliest = at - lookback;
    let start = info
        .launch_time
        .filter(|l| *l > earliest && *l < at)
        .unwrap_or(earliest);
    (start, at)
}

/// The projection for one candidate from its series, or why there is none.
pub fn project(
    c: &Candidate,
    series: &MemorySeries,
    metric_label: Option<&str>,
    unit: &str,
    levels: &BTreeMap<String, DeathLevel>,
) -> Result<ProjectedDeath, NoProjection> {
    let labelled = metric_label.and_then(|l| series.labels.get(l).cloned());
    let deployment = c.deployment.clone().or(labelled);
    if let Some(allowed) = &c.must_be_one_of {
        match &deployment {
            Some(d) if allowed.contains(d) => {}
            _ => return Err(NoProjection::OutOfScope),
        }
    }
    let asg = c.info.asg.clone().unwrap_or_default();
    let deployment = deployment.unwrap_or_else(|| format!("{asg} (unattributed)"));
    let limit = series.limit.ok_or(NoProjection::NotLeaking)?;
    let level = levels.get(&deployment).filter(|l| l.level < limit);
    let threshold = level.map_or(limit, |l| l.level);
    let p =
        leak::project(&series.points, Some(limit), threshold).ok_or(NoProjection::NotLeaking)?;
    Ok(ProjectedDeath {
        instance_id: c.info.instance_id.clone(),
        deployment,
        asg,
        launch_time: c.info.launch_time,
        as_of: p.as_of,
        floor: p.floor,
        swing: p.swing,
        limit,
        threshold,
        threshold_basis: if level.is_some() { "deaths" } else { "limit" }.to_string(),
        threshold_deaths: level.map_or(0, |l| l.deaths),
        unit: unit.to_string(),
        growth_per_hour: p.growth_per_hour,
        expected: p.expected,
        earliest: p.earliest,
        latest: p.latest,
        confidence: p.confidence,
    })
}

/// Why a candidate has no projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoProjection {
    /// The detector does not call the series a leak, or it has no limit.
    NotLeaking,
    /// Its series places it outside the leaking deployments.
    OutOfScope,
}

/// Soonest expected first, then by instance id.
pub fn sort(projections: &mut [ProjectedDeath]) {
    projections.sort_by(|a, b| {
        a.expected
            .cmp(&b.expected)
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeploymentEvidence, LaunchTemplateRef};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap()
    }

    fn info(id: &str, asg: &str, version: &str, launched_h_ago: i64) -> InstanceInfo {
        InstanceInfo {
            instance_id: id.into(),
            asg: Some(asg.into()),
            launch_time: Some(t0() - Duration::hours(launched_h_ago)),
            launch_template: Some(LaunchTemplateRef {
                id: None,
                name: Some(asg.into()),
                version: Some(version.into()),
            }),
            lifecycle_state: Some("InService".into()),
            ..Default::default()
        }
    }

    fn finding(dep: &str, asg: &str, verdict: DeploymentVerdict) -> DeploymentFinding {
        DeploymentFinding {
            deployment: dep.into(),
            asgs: vec![asg.into()],
            verdict,
            summary: String::new(),
            evidence: DeploymentEvidence::default(),
            origin: None,
        }
    }

    #[test]
    fn only_live_instances_of_leaking_deployments_oldest_first() {
        let findings = vec![
            finding("web:10", "web", DeploymentVerdict::Leaking),
            finding("api:3", "api", DeploymentVerdict::Healthy),
        ];
        let mut gone = info("i-gone", "web", "10", 9);
        gone.ec2_state = Some("terminated".into());
        let mut draining = info("i-draining", "web", "10", 9);
        draining.lifecycle_state = Some("Terminating:Wait".into());
        let inventory = vec![
            info("i-young", "web", "10", 2),
            info("i-old", "web", "10", 8),
            info("i-dead", "web", "10", 5),
            info("i-prev", "web", "9", 30),
            info("i-api", "api", "3", 4),
            gone,
            draining,
        ];
        let dead: BTreeSet<String> = ["i-dead".to_string()].into();
        let run = |scope, max| {
            candidates(
                scope,
                &findings,
                &inventory,
                &dead,
                &DeploymentIdentity::LaunchTemplate,
                max,
            )
        };
        let (c, over) = run(EarlyWarningScope::Leaking, 10);
        let ids: Vec<&str> = c.iter().map(|c| c.info.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-old", "i-young"]);
        assert_eq!(over, 0);

        let (all, _) = run(EarlyWarningScope::All, 10);
        assert_eq!(all.len(), 4, "{all:?}");
        let (capped, over) = run(EarlyWarningScope::All, 1);
        assert_eq!(capped[0].info.instance_id, "i-prev");
        assert_eq!(over, 3);
        let (none, _) = run(EarlyWarningScope::Off, 10);
        assert!(none.is_empty());
    }

    #[test]
    fn a_deployment_told_only_by_the_series_must_be_a_leaking_one() {
        let findings = vec![finding("web:10", "web", DeploymentVerdict::Leaking)];
        let inventory = vec![info("i-1", "web", "10", 8), info("i-2", "api", "1", 8)];
        let identity = DeploymentIdentity::MetricLabel {
            label: "release".into(),
        };
        let (c, _) = candidates(
            EarlyWarningScope::Leaking,
            &findings,
            &inventory,
            &BTreeSet::new(),
            &identity,
            10,
        );
        assert_eq!(c.len(), 1, "only the leaking deployment's group: {c:?}");
        let leaking: Vec<(DateTime<Utc>, f64)> = (0..288)
            .map(|i| {
                (
                    t0() - Duration::minutes(5 * (288 - i)),
                    40.0 + 0.1 * i as f64 + (i % 6) as f64,
                )
            })
            .collect();
        let mut series = MemorySeries {
            points: leaking,
            limit: Some(100.0),
            ..Default::default()
        };
        series.labels.insert("release".into(), "web:9".into());
        assert_eq!(
            project(&c[0], &series, Some("release"), "percent", &BTreeMap::new()),
            Err(NoProjection::OutOfScope)
        );
        series.labels.insert("release".into(), "web:10".into());
        let p = project(&c[0], &series, Some("release"), "percent", &BTreeMap::new()).unwrap();
        assert_eq!(p.deployment, "web:10");
        assert!(p.expected > t0(), "{p:?}");
        series.limit = None;
        assert_eq!(
            project(&c[0], &series, Some("release"), "percent", &BTreeMap::new()),
            Err(NoProjection::NotLeaking)
        );
    }

    #[test]
    fn the_series_window_starts_at_launch_within_the_lookback() {
        let i = info("i-1", "web", "10", 5);
        let (s, e) = series_window(&i, t0(), Duration::days(7));
        assert_eq!((s, e), (t0() - Duration::hours(5), t0()));
        let old = info("i-2", "web", "10", 24 * 30);
        assert_eq!(
            series_window(&old, t0(), Duration::days(7)).0,
            t0() - Duration::days(7)
        );
    }
}
