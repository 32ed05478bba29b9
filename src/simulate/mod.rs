//! The fleet simulator: writes a deterministic fleet of dead instances in the file formats the
//! `file` backends read, a config that scans exactly that fleet, and the ground truth.
//!
//! It is epitaph's embedded default (`epitaph demo`) and the accuracy test's data. The same
//! seed and options always produce byte-identical output. Each deployment follows one
//! archetype, and every instance's verdict follows from how it was generated:
//!
//! | archetype      | what happens                                                    | instance verdict(s)                        | deployment         |
//! |----------------|-----------------------------------------------------------------|--------------------------------------------|--------------------|
//! | leak           | memory floor climbs under a GC sawtooth until a runtime OOM     | oom_leak; no-logs ones memory_exhaustion_suspected; a few scaled in early: not_a_crash | leaking |
//! | healthy        | warm-up then flat sawtooth; scale-in / refresh / user requests  | not_a_crash                                | healthy            |
//! | spike          | flat memory, a sudden allocation spike, runtime OOM             | oom_spike                                  | oom_without_leak   |
//! | crash          | flat memory, segfault / panic / uncaught exception              | crash_other                                | crashing           |
//! | kernel_leak    | leak to the limit, killed by the kernel: app logs just stop     | memory_exhaustion_suspected                | leaking            |
//! | silent         | health-check deaths with no logs and little or no metrics       | unknown                                    | insufficient_evidence |
//!
//! The first group also carries a healthy predecessor deployment replaced by an instance
//! refresh: the "which deployment leaks" story.
//!
//! Each current deployment also has instances still running at the end (`running`, listed
//! `InService` in the inventory with their memory so far): a leaking one's are on their way to
//! the limit, and `truth.running` says when each would reach it (the early-warning check).
//!
//! Length: about 570 lines of code; the rest are its unit tests.

mod emit;
pub mod shapes;

use emit::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::model::{CauseCategory, DeploymentVerdict, InstanceVerdict};

/// Default end of the simulated window (fixed so output is deterministic).
pub const DEFAULT_END: &str = "2026-01-05T00:00:00Z";
/// Simulated terminations fall in this many hours before the end.
pub const WINDOW_HOURS: i64 = 48;
/// Memory sample period (seconds), as a CloudWatch agent with a 5-minute interval.
pub const SAMPLE_PERIOD_SECS: i64 = 300;
/// Application log lines are written for this long before death (plus a few at start-up).
pub const LOG_TAIL_SECS: i64 = 240;
/// Mixed into the seed so that seed 0 does not start SplitMix64 at zero.
const SEED_SALT: u64 = 0x5EED_0FE9_17A9;
/// Each deployment needs at least this many instances for its archetype's verdict to hold.
pub const MIN_INSTANCES_PER_DEPLOYMENT: usize = 3;
/// Running instances per current deployment by default.
pub const DEFAULT_RUNNING: usize = 3;
/// A running leaking instance has lived this fraction of its planned life at the end: far
/// enough for a trend, early enough that its death is hours ahead.
pub const RUNNING_AGE_FRACTION: (f64, f64) = (0.35, 0.8);
/// Seeds the running instances' own generator, so adding them leaves the dead fleet's output
/// byte-identical.
const RUNNING_SALT: u64 = 0x0A11_7E00_11FE;

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub asgs: usize,
    pub instances: usize,
    /// Instances still running at `end` in each current deployment.
    pub running: usize,
    pub end: DateTime<Utc>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            asgs: 6,
            instances: 60,
            running: DEFAULT_RUNNING,
            end: Utc
                .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        }
    }
}

/// The ground truth written to `truth.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub instances: BTreeMap<String, InstanceVerdict>,
    pub deployments: BTreeMap<String, DeploymentVerdict>,
    /// For each deployment that replaced another in its group: the one it replaced.
    #[serde(default)]
    pub predecessors: BTreeMap<String, String>,
    /// The instances still running at the end, and when each would die.
    #[serde(default)]
    pub running: BTreeMap<String, RunningTruth>,
}

/// A running instance's truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningTruth {
    pub deployment: String,
    /// When its memory reaches the host's limit: a leaking instance's planned death; null for
    /// the others (nothing in their memory foretells a death).
    pub dies_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archetype {
    Leak,
    Healthy,
    Spike,
    Crash,
    KernelLeak,
    Silent,
}

const ARCHETYPES: [Archetype; 6] = [
    Archetype::Leak,
    Archetype::Healthy,
    Archetype::Spike,
    Archetype::Crash,
    Archetype::KernelLeak,
    Archetype::Silent,
];

const GROUP_NAMES: [&str; 6] = [
    "checkout-api",
    "catalog-web",
    "report-renderer",
    "payments-gateway",
    "search-indexer",
    "legacy-batch",
];

/// SplitMix64: tiny, fast and stable across platforms and crate versions.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit((self.next_u64() % 16) as u32, 16).unwrap_or('0'))
            .collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

struct Deployment {
    asg: String,
    template_id: String,
    version: u32,
    archetype: Archetype,
    runtime: &'static str,
    /// Fraction of the window in which this deployment's instances die.
    span: (f64, f64),
}

impl Deployment {
    fn key(&self) -> String {
        format!("{}:{}", self.asg, self.version)
    }
}

/// One simulated instance, fully decided before anything is written.
struct Instance {
    id: String,
    deployment: usize,
    launch: DateTime<Utc>,
    /// When the process stopped (crash) or began shutting down (planned).
    death: DateTime<Utc>,
    terminated: DateTime<Utc>,
    cause: CauseCategory,
    verdict: InstanceVerdict,
    has_logs: bool,
    has_metrics: bool,
    /// Scaled in before a leak could kill it.
    early_exit: bool,
}

/// A memory series as (time, percent) pairs.
type Points = Vec<(DateTime<Utc>, f64)>;

/// Everything that will be written, in memory.
#[derive(Default)]
struct Output {
    activities: BTreeMap<String, Vec<serde_json::Value>>,
    logs: BTreeMap<String, Vec<(String, DateTime<Utc>, String)>>,
    metrics: BTreeMap<String, Vec<(String, Points)>>,
}

/// Writes the fleet into `out` and returns its truth.
pub fn simulate(out: &Path, opts: &SimOptions) -> Result<Truth> {
    if opts.asgs == 0 {
        return Err(Error::input("--asgs", "must be at least 1"));
    }
    let deployments = plan_deployments(opts);
    let needed = deployments.len() * MIN_INSTANCES_PER_DEPLOYMENT;
    if opts.instances < needed {
        return Err(Error::input(
            "--instances",
            format!(
                "{} is too few for {} group(s) ({} deployments need at least {needed}, {MIN_INSTANCES_PER_DEPLOYMENT} each)",
                opts.instances,
                opts.asgs,
                deployments.len()
            ),
        ));
    }
    let mut rng = Rng(opts.seed ^ SEED_SALT);
    let instances = plan_instances(&deployments, opts, &mut rng);

    let mut output = Output::default();
    for inst in &instances {
        let d = &deployments[inst.deployment];
        write_activities(&mut output, d, inst, &mut rng);
        if inst.has_metrics {
            let series = memory_series(d.archetype, inst, inst.death, &mut rng);
            output
                .metrics
                .entry(d.asg.clone())
                .or_default()
                .push((inst.id.clone(), series));
        }
        if inst.has_logs {
            let lines = log_lines(d, inst, &mut rng);
            output
                .logs
                .entry(d.asg.clone())
                .or_default()
                .extend(lines.into_iter().map(|(t, m)| (inst.id.clone(), t, m)));
        }
    }

    let mut run_rng = Rng(opts.seed ^ SEED_SALT ^ RUNNING_SALT);
    let running = plan_running(&deployments, opts, &mut run_rng);
    for inst in &running {
        let d = &deployments[inst.deployment];
        output
            .activities
            .entry(d.asg.clone())
            .or_default()
            .push(launch_activity(d, inst, &mut run_rng));
        let series = memory_series(d.archetype, inst, opts.end, &mut run_rng);
        output
            .metrics
            .entry(d.asg.clone())
            .or_default()
            .push((inst.id.clone(), series));
    }

    for sub in ["activities", "logs", "metrics", "inventory"] {
        let p = out.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    write_files(out, &deployments, &instances, &running, &output)?;

    let truth = Truth {
        instances: instances
            .iter()
            .map(|i| (i.id.clone(), i.verdict))
            .collect(),
        deployments: deployments
            .iter()
            .map(|d| (d.key(), intended_verdict(d.archetype)))
            .collect(),
        predecessors: deployments
            .iter()
            .filter_map(|d| {
                deployments
                    .iter()
                    .filter(|p| p.asg == d.asg && p.span.0 < d.span.0)
                    .max_by(|a, b| a.span.0.total_cmp(&b.span.0))
                    .map(|p| (d.key(), p.key()))
            })
            .collect(),
        running: running
            .iter()
            .map(|i| {
                let d = &deployments[i.deployment];
                let leaks = matches!(d.archetype, Archetype::Leak | Archetype::KernelLeak);
                (
                    i.id.clone(),
                    RunningTruth {
                        deployment: d.key(),
                        dies_at: leaks.then_some(i.death),
                    },
                )
            })
            .collect(),
    };
    write(
        &out.join("truth.json"),
        &serde_json::to_vec_pretty(&truth).map_err(json_err)?,
    )?;
    write(&out.join("epitaph.toml"), config_text(opts).as_bytes())?;
    Ok(truth)
}

fn intended_verdict(a: Archetype) -> DeploymentVerdict {
    match a {
        Archetype::Leak | Archetype::KernelLeak => DeploymentVerdict::Leaking,
        Archetype::Healthy => DeploymentVerdict::Healthy,
        Archetype::Spike => DeploymentVerdict::OomWithoutLeak,
        Archetype::Crash => DeploymentVerdict::Crashing,
        Archetype::Silent => DeploymentVerdict::InsufficientEvidence,
    }
}

fn plan_deployments(opts: &SimOptions) -> Vec<Deployment> {
    let mut out = Vec::new();
    for g in 0..opts.asgs {
        let cycle = g / ARCHETYPES.len();
        let archetype = ARCHETYPES[g % ARCHETYPES.len()];
        let base = GROUP_NAMES[g % GROUP_NAMES.len()];
        let asg = if cycle == 0 {
            base.to_string()
        } else {
            format!("{base}-{}", cycle + 1)
        };
        let runtime = match archetype {
            Archetype::Leak => ["node", "jvm", "dotnet"][cycle % 3],
            Archetype::Healthy => ["node", "jvm", "go"][cycle % 3],
            Archetype::Spike => ["jvm", "python", "node"][cycle % 3],
            Archetype::Crash => ["go", "rust", "node"][cycle % 3],
            Archetype::KernelLeak => ["python", "go", "jvm"][cycle % 3],
            Archetype::Silent => ["go", "python", "node"][cycle % 3],
        };
        let template_id = format!(
            "lt-0{:016x}",
            opts.seed.wrapping_mul(31) ^ (g as u64 + 1).wrapping_mul(0x9E37_79B9)
        );
        let version = 10 + (g as u32 * 7) % 30;
        let mut span = (0.0, 1.0);
        if g == 0 {
            // The previous, healthy release of the first group, replaced by an instance refresh.
            out.push(Deployment {
                asg: asg.clone(),
                template_id: template_id.clone(),
                version: version - 1,
                archetype: Archetype::Healthy,
                runtime,
                span: (0.0, 0.35),
            });
            span = (0.35, 1.0);
        }
        out.push(Deployment {
            asg,
            template_id,
            version,
            archetype,
            runtime,
            span,
        });
    }
    out
}

fn plan_instances(deployments: &[Deployment], opts: &SimOptions, rng: &mut Rng) -> Vec<Instance> {
    let window_start = opts.end - Duration::hours(WINDOW_HOURS);
    let window_secs = (WINDOW_HOURS * 3600) as f64;
    let per = opts.instances / deployments.len();
    let extra = opts.instances % deployments.len();
    let mut out = Vec::with_capacity(opts.instances);
    for (di, d) in deployments.iter().enumerate() {
        let count = per + usize::from(di < extra);
        for k in 0..count {
            let id = format!("i-0{}", rng.hex(16));
            // Keep a margin at both ends so activities and logs stay inside the window.
            let at = rng.range(d.span.0.max(0.01), d.span.1.min(0.99));
            let terminated = window_start + Duration::seconds((at * window_secs) as i64);
            let no_logs = k % 10 == 4;
            let early_exit = d.archetype == Archetype::Leak && k % 10 == 7;
            let (cause, verdict, has_logs, has_metrics, detect_delay) = match d.archetype {
                Archetype::Leak if early_exit => (
                    CauseCategory::ScaleIn,
                    InstanceVerdict::NotACrash,
                    true,
                    true,
                    0,
                ),
                Archetype::Leak if no_logs => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::MemoryExhaustionSuspected,
                    false,
                    true,
                    rng.int(60, 300),
                ),
                Archetype::Leak => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::OomLeak,
                    true,
                    true,
                    rng.int(60, 300),
                ),
                Archetype::Healthy => {
                    let cause = if d.span.1 < 1.0 {
                        CauseCategory::InstanceRefresh
                    } else {
                        *rng.pick(&[
                            CauseCategory::ScaleIn,
                            CauseCategory::ScaleIn,
                            CauseCategory::ScaleIn,
                            CauseCategory::InstanceRefresh,
                            CauseCategory::UserRequest,
                            CauseCategory::MaxLifetime,
                            CauseCategory::Rebalance,
                            CauseCategory::SpotInterruption,
                        ])
                    };
                    (cause, InstanceVerdict::NotACrash, !no_logs, true, 0)
                }
                Archetype::Spike => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::OomSpike,
                    true,
                    true,
                    rng.int(60, 300),
                ),
                Archetype::Crash => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::CrashOther,
                    true,
                    true,
                    rng.int(60, 300),
                ),
                Archetype::KernelLeak => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::MemoryExhaustionSuspected,
                    true,
                    true,
                    rng.int(60, 300),
                ),
                Archetype::Silent => (
                    CauseCategory::HealthCheck,
                    InstanceVerdict::Unknown,
                    false,
                    k % 2 == 0,
                    rng.int(60, 300),
                ),
            };
            let lifetime_h = match d.archetype {
                Archetype::Leak | Archetype::KernelLeak => rng.range(6.0, 20.0),
                Archetype::Healthy => rng.range(4.0, 30.0),
                Archetype::Spike => rng.range(3.0, 20.0),
                Archetype::Crash => rng.range(1.5, 12.0),
                Archetype::Silent => rng.range(2.0, 10.0),
            };
            let death = terminated - Duration::seconds(detect_delay);
            let launch = death - Duration::seconds((lifetime_h * 3600.0) as i64);
            out.push(Instance {
                id,
                deployment: di,
                launch,
                death,
                terminated,
                cause,
                verdict,
                has_logs,
                has_metrics,
                early_exit,
            });
        }
    }
    out
}

/// Instances still running at the end: `opts.running` per current deployment (one that was not
/// replaced), with a planned death after the end. Silent deployments have none (no metrics).
fn plan_running(deployments: &[Deployment], opts: &SimOptions, rng: &mut Rng) -> Vec<Instance> {
    let mut out = Vec::new();
    for (di, d) in deployments.iter().enumerate() {
        if d.span.1 < 1.0 || d.archetype == Archetype::Silent {
            continue;
        }
        for _ in 0..opts.running {
            let id = format!("i-0{}", rng.hex(16));
            let lifetime_h = match d.archetype {
                Archetype::Leak | Archetype::KernelLeak => rng.range(6.0, 20.0),
                _ => rng.range(6.0, 30.0),
            };
            let age_h = lifetime_h * rng.range(RUNNING_AGE_FRACTION.0, RUNNING_AGE_FRACTION.1);
            let launch = opts.end - Duration::seconds((age_h * 3600.0) as i64);
            let death = launch + Duration::seconds((lifetime_h * 3600.0) as i64);
            out.push(Instance {
                id,
                deployment: di,
                launch,
                death,
                terminated: death,
                cause: CauseCategory::Unknown,
                verdict: InstanceVerdict::Unknown,
                has_logs: false,
                has_metrics: true,
                early_exit: false,
            });
        }
    }
    out
}

/// The memory series (percent of host memory) from launch to `until` (its death, or the end
/// for a running instance): shaped by the whole planned life.
fn memory_series(
    a: Archetype,
    inst: &Instance,
    until: DateTime<Utc>,
    rng: &mut Rng,
) -> Vec<(DateTime<Utc>, f64)> {
    let life = (inst.death - inst.launch).num_seconds().max(1) as f64;
    let observed = (until.min(inst.death) - inst.launch).num_seconds().max(1);
    let base = rng.range(25.0, 45.0);
    let saw_amp = rng.range(2.0, 7.0);
    let saw_period = rng.range(20.0, 45.0) * 60.0;
    let saw_phase = rng.unit();
    let noise = rng.range(0.3, 1.0);
    let target = rng.range(96.0, 99.5);
    // A leaking instance scaled in early only got part of the way.
    let reach = if inst.early_exit {
        rng.range(0.45, 0.65)
    } else {
        1.0
    };
    let spike_peak = rng.range(93.0, 100.0);
    let n = (life as i64 / SAMPLE_PERIOD_SECS).max(1);
    let observed_n = (observed / SAMPLE_PERIOD_SECS).clamp(1, n);
    (0..=observed_n)
        .map(|k| {
            let s = (k * SAMPLE_PERIOD_SECS) as f64;
            let t = inst.launch + Duration::seconds(s as i64);
            let saw = saw_amp * ((s / saw_period + saw_phase).fract());
            let jitter = noise * rng.normal();
            let warm = -12.0 * (-s / 1200.0).exp();
            let v = match a {
                Archetype::Leak | Archetype::KernelLeak => {
                    let climb = (target - saw_amp - base) * reach * (s / life);
                    base + climb + saw + jitter
                }
                Archetype::Spike if k == n => spike_peak,
                Archetype::Healthy | Archetype::Spike | Archetype::Crash | Archetype::Silent => {
                    base + warm + saw + jitter
                }
            };
            (t, (v.clamp(0.5, 100.0) * 100.0).round() / 100.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let opts = SimOptions {
            seed: 7,
            ..Default::default()
        };
        let ta = simulate(a.path(), &opts).unwrap();
        let tb = simulate(b.path(), &opts).unwrap();
        assert_eq!(ta, tb);
        for f in [
            "activities/checkout-api.json",
            "logs/checkout-api.jsonl",
            "metrics/checkout-api.csv",
            "truth.json",
            "epitaph.toml",
        ] {
            assert_eq!(
                std::fs::read(a.path().join(f)).unwrap(),
                std::fs::read(b.path().join(f)).unwrap(),
                "{f}"
            );
        }
        assert_eq!(ta.instances.len(), 60);
        assert_eq!(ta.deployments.len(), 7);
    }

    #[test]
    fn too_few_instances_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let err = simulate(
            d.path(),
            &SimOptions {
                instances: 5,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--instances"), "{err}");
    }
}
