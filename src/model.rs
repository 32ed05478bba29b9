//! The domain model: what every layer of epitaph talks about.
//!
//! Sources produce [`Termination`]s, [`LogEvent`]s and [`MemorySeries`]; analysis turns them into
//! [`SignatureMatch`]es, a [`LeakAssessment`], an [`InstanceVerdict`] and, per deployment, a
//! [`DeploymentFinding`]. The serde names here are part of the documented JSON schema
//! (`README.md`, "JSON schema"): renaming a field is a breaking change.
//!
//! Length: one file on purpose — the types of the documented JSON schema read together, in
//! the order the schema presents them; it holds types and their small accessors only.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why the Auto Scaling group terminated an instance, parsed from the texts AWS writes in the
/// `Cause` of a scaling activity. The raw text is always kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseCategory {
    /// EC2, ELB, EBS, VPC Lattice or custom health check failure: the instance looked dead.
    HealthCheck,
    /// Desired capacity went down (a policy, a schedule or a person changed it).
    ScaleIn,
    /// Replaced by an instance refresh (a rolling deployment).
    InstanceRefresh,
    /// EC2 reclaimed a Spot instance.
    SpotInterruption,
    /// Someone called `TerminateInstanceInAutoScalingGroup` or detached it.
    UserRequest,
    /// The group's maximum instance lifetime was reached.
    MaxLifetime,
    /// Capacity rebalancing (Spot rebalance recommendation) or Availability Zone rebalancing.
    Rebalance,
    /// A text epitaph does not recognise.
    Unknown,
}

impl CauseCategory {
    /// The snake_case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseCategory::HealthCheck => "health_check",
            CauseCategory::ScaleIn => "scale_in",
            CauseCategory::InstanceRefresh => "instance_refresh",
            CauseCategory::SpotInterruption => "spot_interruption",
            CauseCategory::UserRequest => "user_request",
            CauseCategory::MaxLifetime => "max_lifetime",
            CauseCategory::Rebalance => "rebalance",
            CauseCategory::Unknown => "unknown",
        }
    }

    pub const ALL: [CauseCategory; 8] = [
        CauseCategory::HealthCheck,
        CauseCategory::ScaleIn,
        CauseCategory::InstanceRefresh,
        CauseCategory::SpotInterruption,
        CauseCategory::UserRequest,
        CauseCategory::MaxLifetime,
        CauseCategory::Rebalance,
        CauseCategory::Unknown,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True when the group removed the instance on purpose, so its death is not by itself
    /// evidence of a crash.
    pub fn is_planned(self) -> bool {
        !matches!(self, CauseCategory::HealthCheck | CauseCategory::Unknown)
    }
}

impl fmt::Display for CauseCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A launch template reference as the Auto Scaling API reports it for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

impl LaunchTemplateRef {
    /// `name:version` when the name is known (readable), otherwise `id:version`.
    pub fn deployment_key(&self) -> Option<String> {
        let who = self.name.as_deref().or(self.id.as_deref())?;
        Some(match &self.version {
            Some(v) => format!("{who}:{v}"),
            None => who.to_string(),
        })
    }
}

/// What is known about an instance while it lived (from an inventory snapshot): used to find
/// its deployment and its lifetime once it has died.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub asg: Option<String>,
    pub launch_time: Option<DateTime<Utc>>,
    pub launch_template: Option<LaunchTemplateRef>,
    pub launch_configuration: Option<String>,
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The private DNS name (`describe-instances` `PrivateDnsName`): what log backends that
    /// name hosts (Splunk's `host`, a Loki `host` label) know the instance by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns: Option<String>,
    /// The private IPv4 address (`describe-instances` `PrivateIpAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// The group's view of the instance (`LifecycleState`: `InService`, `Terminating`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<String>,
    /// EC2's view (`describe-instances` `State.Name`: `running`, `terminated`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_state: Option<String>,
    /// The AWS target (account and region) it was listed in, as `Termination::origin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl InstanceInfo {
    /// Still serving, as far as the inventory says: no state says it is stopping or gone.
    /// (An inventory without states, such as an old export, counts as live.)
    pub fn is_live(&self) -> bool {
        let lifecycle_live = !self.lifecycle_state.as_deref().is_some_and(|s| {
            s.starts_with("Terminat") || s.starts_with("Detach") || s == "Standby"
        });
        let ec2_live = !self
            .ec2_state
            .as_deref()
            .is_some_and(|s| !matches!(s, "pending" | "running"));
        lifecycle_live && ec2_live
    }
}

/// One instance terminated by an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    pub instance_id: String,
    pub asg: String,
    /// When the termination activity started: the moment the group gave up on the instance.
    pub time: DateTime<Utc>,
    /// When the activity ended (the instance was gone), when the source says. Lifecycle hooks
    /// and load-balancer draining (300 s by default) keep the instance running, and logging,
    /// between `time` and this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    pub cause: CauseCategory,
    /// The `Cause` text exactly as AWS wrote it.
    pub cause_text: String,
    /// The activity `Description` (e.g. "Terminating EC2 instance: i-…").
    pub description: String,
    pub activity_id: Option<String>,
    pub status: Option<String>,
    /// Which AWS target (region, or role@region) reported it; None for file exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// One log line from the log backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    pub timestamp: DateTime<Utc>,
    pub message: String,
}

/// The instance's last words: its final log event at or before termination (plus a grace), and
/// the events in the window before it. Empty `events` means "no evidence", never an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastWords {
    pub events: Vec<LogEvent>,
    /// Timestamp of the final event, if any.
    pub last_event_at: Option<DateTime<Utc>>,
    /// True when the backend cut the fetch at its byte cap, so older lines may be missing.
    #[serde(default)]
    pub truncated: bool,
}

/// What a signature's line says about how the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureKind {
    /// The process died (or was killed) because memory ran out.
    Oom,
    /// It died of something else (panic, segfault, uncaught exception).
    Crash,
    /// Evidence only next to a fatal line (V8's GC trace and banners): shown, never decisive.
    Context,
    /// An orderly stop (SIGTERM handled, "shutting down gracefully").
    Shutdown,
    /// Killed by a signal with no cause written (SIGKILL, exit code 137, `exitcode: -9`): the
    /// process died, but the line alone does not say why — most often the kernel's OOM killer,
    /// also stop timeouts and supervisors. Decides no cause by itself.
    Kill,
}

impl SignatureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureKind::Oom => "oom",
            SignatureKind::Crash => "crash",
            SignatureKind::Context => "context",
            SignatureKind::Shutdown => "shutdown",
            SignatureKind::Kill => "kill",
        }
    }

    /// True for the kinds that say the process died (OOM, another crash, a kill without cause).
    pub fn is_death(self) -> bool {
        matches!(
            self,
            SignatureKind::Oom | SignatureKind::Crash | SignatureKind::Kill
        )
    }
}

/// A log line recognised by a signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureMatch {
    pub signature: String,
    pub runtime: String,
    pub kind: SignatureKind,
    /// Index into the last-words events (0-based) or 1-based line number for file matching.
    pub line: usize,
    pub text: String,
    /// Extracted details (pid, process, heap sizes, …) by name; `{}` when none (always
    /// present: it is a documented field of the scan JSON).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// A memory time series for one instance, values in `unit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemorySeries {
    pub points: Vec<(DateTime<Utc>, f64)>,
    /// The value at which memory is exhausted (100 for percentages, bytes otherwise).
    pub limit: Option<f64>,
    /// Labels the backend attached (Prometheus labels, CloudWatch dimensions); `{}` when none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The leak detector's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakVerdict {
    Leak,
    NoLeak,
    InsufficientData,
}

impl LeakVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            LeakVerdict::Leak => "leak",
            LeakVerdict::NoLeak => "no_leak",
            LeakVerdict::InsufficientData => "insufficient_data",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            LeakVerdict::Leak,
            LeakVerdict::NoLeak,
            LeakVerdict::InsufficientData,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The leak detector's full assessment of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakAssessment {
    pub verdict: LeakVerdict,
    /// Growth of the memory floor per hour, in the series' unit (null when insufficient data).
    pub growth_per_hour: Option<f64>,
    /// `growth_per_hour` as a fraction of the limit (null without a limit).
    pub growth_fraction_of_limit_per_hour: Option<f64>,
    /// 0..1: how sure the detector is of its verdict.
    pub confidence: f64,
    /// When the floor's trend reaches the limit (null without a limit or without a leak).
    pub projected_exhaustion: Option<DateTime<Utc>>,
    /// True when the series itself reached the limit (within a margin) before it ended.
    pub reached_limit: bool,
    /// The highest value in the basis' final stretch: for a dead instance, the level memory
    /// reached as it died (early warning projects its deployment's running instances to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_peak: Option<f64>,
    /// The part of the series the decision rests on (after splitting at restarts).
    pub basis_start: Option<DateTime<Utc>>,
    pub basis_end: Option<DateTime<Utc>>,
    pub points_used: usize,
    /// A short sentence saying why.
    pub reason: String,
    /// Samples that were gaps (NaN, empty, null, ±∞ in the input) and were skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gaps: usize,
    /// The stretches between the series' large drops, and what ended each: what the verdict
    /// was drawn from (empty for a series too short to split).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<LeakSegment>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One stretch of a memory series between large drops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakSegment {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub points: usize,
    /// Its lowest and highest value.
    pub low: f64,
    pub high: f64,
    /// Its memory floor (the trend of its lower envelope) at its start and at its end; absent
    /// for a segment too short to fit one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_end: Option<f64>,
    pub ended_by: SegmentEnd,
}

/// What ended a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEnd {
    /// The process restarted: memory fell to a fresh start and climbed again.
    Restart,
    /// Memory fell back to the level the series rests at (a job ended, a cache was evicted).
    ReturnToBaseline,
    /// The series ended.
    SeriesEnd,
}

/// The verdict on one dead instance. The names are a fixed vocabulary used in JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceVerdict {
    /// OOM signature and the memory floor rose until death.
    OomLeak,
    /// OOM signature without a leak trend: a spike or an undersized instance.
    OomSpike,
    /// OOM signature, no usable memory series.
    Oom,
    /// No OOM line, but the series leaked up to the limit before death.
    MemoryExhaustionSuspected,
    /// A non-OOM crash signature.
    CrashOther,
    /// Planned termination and no crash evidence.
    NotACrash,
    Unknown,
}

impl InstanceVerdict {
    pub const ALL: [InstanceVerdict; 7] = [
        InstanceVerdict::OomLeak,
        InstanceVerdict::OomSpike,
        InstanceVerdict::Oom,
        InstanceVerdict::MemoryExhaustionSuspected,
        InstanceVerdict::CrashOther,
        InstanceVerdict::NotACrash,
        InstanceVerdict::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceVerdict::OomLeak => "oom_leak",
            InstanceVerdict::OomSpike => "oom_spike",
            InstanceVerdict::Oom => "oom",
            InstanceVerdict::MemoryExhaustionSuspected => "memory_exhaustion_suspected",
            InstanceVerdict::CrashOther => "crash_other",
            InstanceVerdict::NotACrash => "not_a_crash",
            InstanceVerdict::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Died of memory, by an OOM line or by a series that hit the limit.
    pub fn is_memory_death(self) -> bool {
        matches!(
            self,
            InstanceVerdict::OomLeak
                | InstanceVerdict::OomSpike
                | InstanceVerdict::Oom
                | InstanceVerdict::MemoryExhaustionSuspected
        )
    }

    /// Died of memory with a leak trend behind it.
    pub fn is_leak_death(self) -> bool {
        matches!(
            self,
            InstanceVerdict::OomLeak | InstanceVerdict::MemoryExhaustionSuspected
        )
    }

    /// Any crash: memory or otherwise.
    pub fn is_crash(self) -> bool {
        self.is_memory_death() || self == InstanceVerdict::CrashOther
    }
}

impl fmt::Display for InstanceVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything epitaph concluded about one dead instance; what the store keeps and reports show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub instance_id: String,
    pub deployment: String,
    pub asg: String,
    pub terminated_at: DateTime<Utc>,
    pub cause: CauseCategory,
    pub cause_text: String,
    pub launch_time: Option<DateTime<Utc>>,
    pub verdict: InstanceVerdict,
    /// One sentence: why this verdict.
    pub explanation: String,
    pub signatures: Vec<SignatureMatch>,
    pub leak: Option<LeakAssessment>,
    pub last_words: LastWords,
    /// The memory series, downsampled for storage and display.
    pub memory: MemorySeries,
}

impl InstanceReport {
    /// Launch to termination, when the launch is known (inventory) or can be bounded by the
    /// first memory sample.
    pub fn lifetime_hours(&self) -> Option<f64> {
        let start = self
            .launch_time
            .or_else(|| self.memory.points.first().map(|p| p.0))?;
        let secs = (self.terminated_at - start).num_seconds();
        (secs > 0).then(|| secs as f64 / 3600.0)
    }

    /// See [`deciding_signature`].
    pub fn deciding_signature(&self) -> Option<&SignatureMatch> {
        deciding_signature(&self.signatures, self.verdict)
    }
}

/// What judging needs of one analysed instance, without its evidence (series, last words,
/// signature texts): the store keeps one such compact row per instance beside its report, and
/// deployments are judged, alerts planned and early-warning levels set from these rows alone
/// (`analysis::correlate::judge_deployments`). Built from a report by
/// [`InstanceFacts::of`]; the full report is read only for what is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub deployment: String,
    pub asg: String,
    pub terminated_at: DateTime<Utc>,
    pub cause: CauseCategory,
    pub verdict: InstanceVerdict,
    pub launch_time: Option<DateTime<Utc>>,
    /// The first sample of the stored memory series.
    pub first_sample_at: Option<DateTime<Utc>>,
    /// The leak detector's verdict (None: no assessment).
    pub leak: Option<LeakVerdict>,
    pub growth_per_hour: Option<f64>,
    /// [`LeakAssessment::final_peak`].
    pub final_peak: Option<f64>,
    /// [`LeakAssessment::basis_start`] and [`LeakAssessment::projected_exhaustion`].
    pub leak_basis_start: Option<DateTime<Utc>>,
    pub projected_exhaustion: Option<DateTime<Utc>>,
    /// The memory series' limit, when the source gave one.
    pub memory_limit: Option<f64>,
    /// Points of the stored memory series.
    pub memory_points: usize,
    /// Events of the last words.
    pub last_words_lines: usize,
    /// [`deciding_signature`]'s id.
    pub deciding_signature: Option<String>,
    /// The ids of the OOM and crash signatures matched, each once, in match order.
    pub death_signatures: Vec<String>,
}

impl InstanceFacts {
    /// The compact row of a report.
    pub fn of(r: &InstanceReport) -> Self {
        let mut death_signatures: Vec<String> = Vec::new();
        for m in r.signatures.iter().filter(|m| m.kind.is_death()) {
            if !death_signatures.contains(&m.signature) {
                death_signatures.push(m.signature.clone());
            }
        }
        let leak = r.leak.as_ref();
        InstanceFacts {
            instance_id: r.instance_id.clone(),
            deployment: r.deployment.clone(),
            asg: r.asg.clone(),
            terminated_at: r.terminated_at,
            cause: r.cause,
            verdict: r.verdict,
            launch_time: r.launch_time,
            first_sample_at: r.memory.points.first().map(|p| p.0),
            leak: leak.map(|l| l.verdict),
            growth_per_hour: leak.and_then(|l| l.growth_per_hour),
            final_peak: leak.and_then(|l| l.final_peak),
            leak_basis_start: leak.and_then(|l| l.basis_start),
            projected_exhaustion: leak.and_then(|l| l.projected_exhaustion),
            memory_limit: r.memory.limit,
            memory_points: r.memory.points.len(),
            last_words_lines: r.last_words.events.len(),
            deciding_signature: r.deciding_signature().map(|m| m.signature.clone()),
            death_signatures,
        }
    }

    /// As [`InstanceReport::lifetime_hours`].
    pub fn lifetime_hours(&self) -> Option<f64> {
        let start = self.launch_time.or(self.first_sample_at)?;
        let secs = (self.terminated_at - start).num_seconds();
        (secs > 0).then(|| secs as f64 / 3600.0)
    }

    /// The growth of a series the detector called a leak.
    pub fn leak_growth(&self) -> Option<f64> {
        (self.leak == Some(LeakVerdict::Leak))
            .then_some(self.growth_per_hour)
            .flatten()
    }

    /// Some last words were read.
    pub fn heard_from(&self) -> bool {
        self.last_words_lines > 0
    }
}

/// The match that explains the instance's verdict: for a crash verdict the first crash line;
/// otherwise the first OOM line, else the first kill without a cause (a launcher's traceback
/// reporting a SIGKILLed child is not the child's crash), else the first crash line. Context
/// and shutdown lines explain no death.
pub fn deciding_signature(
    matches: &[SignatureMatch],
    verdict: InstanceVerdict,
) -> Option<&SignatureMatch> {
    use SignatureKind::{Crash, Kill, Oom};
    let order: [SignatureKind; 3] = if verdict == InstanceVerdict::CrashOther {
        [Crash, Oom, Kill]
    } else {
        [Oom, Kill, Crash]
    };
    order
        .into_iter()
        .find_map(|k| matches.iter().find(|m| m.kind == k))
}

/// The verdict on one deployment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentVerdict {
    Leaking,
    OomWithoutLeak,
    Crashing,
    Healthy,
    InsufficientEvidence,
}

impl DeploymentVerdict {
    pub const ALL: [DeploymentVerdict; 5] = [
        DeploymentVerdict::Leaking,
        DeploymentVerdict::OomWithoutLeak,
        DeploymentVerdict::Crashing,
        DeploymentVerdict::Healthy,
        DeploymentVerdict::InsufficientEvidence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentVerdict::Leaking => "leaking",
            DeploymentVerdict::OomWithoutLeak => "oom_without_leak",
            DeploymentVerdict::Crashing => "crashing",
            DeploymentVerdict::Healthy => "healthy",
            DeploymentVerdict::InsufficientEvidence => "insufficient_evidence",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Ordering for reports: worst first.
    pub fn severity(self) -> u8 {
        match self {
            DeploymentVerdict::Leaking => 4,
            DeploymentVerdict::OomWithoutLeak => 3,
            DeploymentVerdict::Crashing => 2,
            DeploymentVerdict::InsufficientEvidence => 1,
            DeploymentVerdict::Healthy => 0,
        }
    }
}

impl fmt::Display for DeploymentVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The evidence behind a deployment verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentEvidence {
    /// Instance ids considered, sorted.
    pub instances: Vec<String>,
    /// Instance count per instance verdict name.
    pub counts: BTreeMap<String, usize>,
    /// Median floor growth per hour over the instances whose series leaked.
    pub median_growth_per_hour: Option<f64>,
    /// Median launch-to-termination time over instances whose lifetime is known.
    pub median_lifetime_hours: Option<f64>,
    /// The signatures seen, with how many instances showed each.
    pub signatures: BTreeMap<String, usize>,
    pub first_death: Option<DateTime<Utc>>,
    pub last_death: Option<DateTime<Utc>>,
}

/// One deployment's verdict with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFinding {
    pub deployment: String,
    pub asgs: Vec<String>,
    pub verdict: DeploymentVerdict,
    /// One sentence: why this verdict.
    pub summary: String,
    pub evidence: DeploymentEvidence,
    /// For a leaking, OOM or crashing deployment: since when, and the deployment it replaced
    /// in the same group with that one's record (the rollback target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RegressionOrigin>,
}

/// Where a deployment's problem started: its rollout and the deployment before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionOrigin {
    /// The earliest launch of the deployment's instances seen (or its earliest memory sample
    /// or termination when no launch time is known).
    pub rollout: DateTime<Utc>,
    /// Hours from the rollout to the deployment's first death of the finding's kind.
    pub first_death_after_hours: Option<f64>,
    /// The deployment the group ran before this one, when the lookback holds instances of it.
    pub predecessor: Option<PredecessorRecord>,
    /// One sentence: "checkout-api:10 leaks since its rollout at … ; checkout-api:9 before it: …".
    pub summary: String,
}

/// The record of the deployment a problem deployment replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredecessorRecord {
    pub deployment: String,
    pub verdict: DeploymentVerdict,
    pub instances: usize,
    pub memory_deaths: usize,
    pub other_crashes: usize,
    /// Sum of its instances' lifetimes, where known.
    pub instance_hours: Option<f64>,
    /// It died the same way: the problem is older than this release, and rolling back to it
    /// will not fix it.
    pub same_problem: bool,
}

/// Early warning: when a running instance of a leaking deployment is expected to reach its
/// memory limit, projected from its own memory floor by the leak detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedDeath {
    pub instance_id: String,
    pub deployment: String,
    pub asg: String,
    pub launch_time: Option<DateTime<Utc>>,
    /// The last sample the projection rests on.
    pub as_of: DateTime<Utc>,
    /// The memory floor at `as_of` by the fitted trend, in the series' unit.
    pub floor: f64,
    /// The usual swing above the floor (GC sawtooth, caches): death comes when floor + swing
    /// reaches the limit, not the floor alone.
    pub swing: f64,
    pub limit: f64,
    /// The level the projection runs to: the limit, or — when the deployment's own memory
    /// deaths happened lower (a runtime heap cap, the kernel's reserve) — their median final
    /// peak.
    pub threshold: f64,
    /// Where `threshold` comes from: `limit`, or `deaths` (with `threshold_deaths` of them).
    pub threshold_basis: String,
    pub threshold_deaths: usize,
    /// `percent` or `bytes`: the unit of `floor`, `swing`, `limit` and `growth_per_hour`.
    pub unit: String,
    pub growth_per_hour: f64,
    /// The expected time the limit is reached.
    pub expected: DateTime<Utc>,
    /// The interval's ends: the floor slope's 90 % confidence interval, widened by the floor's
    /// own scatter about its trend. `latest` is null when the slope's lower bound is not
    /// positive: the data allow a floor that stops rising.
    pub earliest: DateTime<Utc>,
    pub latest: Option<DateTime<Utc>>,
    /// The leak detector's confidence in the leak itself.
    pub confidence: f64,
}

/// A half-open time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && t < self.end
    }
}

/// What a read of one input proved, kept (in the state store) so that a later run can trust
/// it instead of reading the input again while the input is unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputStamp {
    /// The input: a file's path, or a name for an input derived from several.
    pub path: String,
    /// What the input looked like when it was read (for a file,
    /// `sources::file::file_stamp`'s text: device, inode, size, modification and change
    /// times); a different stamp means the proof no longer holds.
    pub stamp: String,
    /// What the reader learnt from it (its own JSON).
    pub proved: serde_json::Value,
}
