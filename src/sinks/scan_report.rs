//! What a scan and an investigation report — the types `--format json` prints, the service
//! answers and the sinks render (`report.rs`, `html.rs`): a scan's instances, deployments,
//! projections and summary; what `epitaph instance` learns about one instance. They belong to
//! the sinks, so no sink depends on the wiring (`src/pipeline/` fills them in). The JSON shape is
//! a contract: docs/openapi.yaml and README "JSON schema".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::early_warning::EarlyWarningSummary;
use crate::model::{
    CauseCategory, DeploymentFinding, InstanceReport, LeakAssessment, MemorySeries, ProjectedDeath,
    SignatureMatch, TimeWindow,
};
use crate::sources::Skipped;

/// One instance in scan output: the verdict and its evidence, without the raw series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub instance_id: String,
    pub deployment: String,
    pub asg: String,
    pub terminated_at: DateTime<Utc>,
    pub cause: CauseCategory,
    pub cause_text: String,
    pub verdict: crate::model::InstanceVerdict,
    pub explanation: String,
    pub signatures: Vec<SignatureMatch>,
    pub leak: Option<LeakAssessment>,
    pub last_words_lines: usize,
    pub lifetime_hours: Option<f64>,
}

impl From<&InstanceReport> for InstanceSummary {
    fn from(r: &InstanceReport) -> Self {
        InstanceSummary {
            instance_id: r.instance_id.clone(),
            deployment: r.deployment.clone(),
            asg: r.asg.clone(),
            terminated_at: r.terminated_at,
            cause: r.cause,
            cause_text: r.cause_text.clone(),
            verdict: r.verdict,
            explanation: r.explanation.clone(),
            signatures: r.signatures.clone(),
            leak: r.leak.clone(),
            last_words_lines: r.last_words.events.len(),
            lifetime_hours: r.lifetime_hours(),
        }
    }
}

/// An instance whose fetch failed in this scan (it stays pending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingInstance {
    pub instance_id: String,
    pub error: String,
}

/// How one target (an account or role × a region) fared in a scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// As `aws.targets` names it ("us-west-2", "arn:aws:iam::…:role/…@eu-west-1").
    pub target: String,
    pub status: TargetState,
    /// Its terminations were read from here: the window's start, or earlier when an earlier
    /// run could not read it.
    pub read_since: DateTime<Utc>,
    /// Why it could not be read (`failed` only): the next run reads it again from
    /// `read_since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a target was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Ok,
    Failed,
}

/// Counts and problems of one scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Terminations found in the window.
    pub discovered: usize,
    /// Instances fetched and analysed in this scan (new, refreshed or retried).
    pub analysed: usize,
    /// Instances already in the store, not fetched again.
    pub cached: usize,
    /// Earlier failures retried in this scan.
    pub retried: usize,
    /// Instances whose fetch failed: kept pending, retried next run.
    pub pending: Vec<PendingInstance>,
    /// Records skipped for bad content (activities, log lines, metric rows).
    pub skipped_records: usize,
    /// The first skipped records with their location.
    pub skipped: Vec<Skipped>,
    /// Every skipped record counted by input (file) and kind, most first: thousands of bad
    /// lines in a few rows. At most `MAX_LISTED_PROBLEMS` rows (`skipped_records` is exact).
    #[serde(default)]
    pub skipped_by_input: Vec<crate::sources::SkippedGroup>,
    /// Inputs that could not be read at all (unreadable, empty, unparsable or unrecognised
    /// files, each named); the watermark does not advance past them.
    pub input_errors: Vec<String>,
    /// Inputs read but known to be incomplete (an export with a pagination token left in it),
    /// each named with the fix; the scan is incomplete and the watermark does not advance.
    #[serde(default)]
    pub input_warnings: Vec<String>,
    /// Termination causes epitaph could not classify, by wording (timestamps, instance ids and
    /// numbers replaced) with their count: add them to `analysis/cause.rs`.
    #[serde(default)]
    pub unrecognised_causes: BTreeMap<String, usize>,
    /// How many of the instances analysed in this scan got last words and a memory series;
    /// `coverage.collapsed` names a source that gave nothing for any of them (exit code 4).
    #[serde(default)]
    pub coverage: crate::analysis::coverage::Coverage,
    /// Early warning: running instances looked at and projected (`next_deaths`), and why the
    /// others were not.
    #[serde(default)]
    pub early_warning: EarlyWarningSummary,
    /// Instance count per verdict (instances in the window).
    pub verdicts: BTreeMap<String, usize>,
    /// Deployment count per verdict.
    pub deployment_verdicts: BTreeMap<String, usize>,
    /// Every target the activity source reads (AWS: `aws.targets`, or the default region),
    /// each `ok` or `failed` with its error; empty for file exports. A failed target does not
    /// stop the others: its window is read again next run.
    #[serde(default)]
    pub targets: Vec<TargetStatus>,
    /// Every input was read, every target and every instance fetched.
    pub complete: bool,
    /// Remote API calls made by the sources in this scan, by operation (empty for files).
    #[serde(default)]
    pub api_calls: BTreeMap<String, u64>,
    /// API calls per instance fetched (analysed + pending); null when nothing was fetched.
    #[serde(default)]
    pub api_calls_per_instance: Option<f64>,
    /// What this scan took from the previous one's kept results instead of computing it,
    /// their inputs being unchanged (README "Re-scans of unchanged exports"): `inventory`
    /// (the live instances, the inventory files unchanged), `deployments` (the deployments'
    /// judgement, the lookback's compact rows unchanged), `early_warning` (the projections).
    /// Says how the answer was reached, not what it is.
    #[serde(default)]
    pub reused: Vec<String>,
    /// Alert messages this scan put in the outbox (one per transition and sink).
    #[serde(default)]
    pub alerts_enqueued: usize,
    /// Outbox deliveries after the scan (`epitaph scan` only; the service delivers on its own).
    #[serde(default)]
    pub alerts_delivered: u64,
    /// Deliveries that failed for good in this run (a 4xx, or `alerts.max_attempts` spent).
    #[serde(default)]
    pub alerts_failed: u64,
    /// Messages still waiting in the outbox after the run's delivery (a sink that answered
    /// 5xx or timed out, or the flush timeout ran out): the next run retries them.
    #[serde(default)]
    pub alerts_undelivered: u64,
    pub duration_ms: u64,
}

/// The result of a scan: what `--format json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub schema_version: u32,
    pub window: TimeWindow,
    pub instances: Vec<InstanceSummary>,
    pub deployments: Vec<DeploymentFinding>,
    /// Early warning: running instances projected to reach their memory limit, soonest first.
    #[serde(default)]
    pub next_deaths: Vec<ProjectedDeath>,
    pub summary: ScanSummary,
}

/// What `epitaph instance` learns about one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Investigation {
    /// The instance was terminated; this is everything known.
    Terminated {
        /// `store` when it came from an earlier scan, `sources` when fetched now.
        from: String,
        report: Box<InstanceReport>,
        next_steps: Vec<String>,
    },
    /// No termination was found, but the instance is known: listed in a group's inventory now
    /// (`in_service`), or with a memory series (older than the history, or outside a group).
    /// An instance known to neither is [`crate::error::Error::UnknownInstance`].
    NoTermination {
        instance_id: String,
        /// Listed by the inventory (DescribeAutoScalingGroups, or its export) at query time.
        in_service: bool,
        /// The group listing it, when in service.
        asg: Option<String>,
        memory: Option<MemorySeries>,
        leak: Option<Box<LeakAssessment>>,
    },
}
