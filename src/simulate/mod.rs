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

pub mod shapes;

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

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn cause_text(cause: CauseCategory, id: &str, t: DateTime<Utc>, rng: &mut Rng) -> String {
    let at = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let n = rng.int(3, 9);
    match cause {
        CauseCategory::HealthCheck => {
            if rng.unit() < 0.5 {
                format!("At {at} an instance was taken out of service in response to an ELB system health check failure.")
            } else {
                format!("At {at} an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.")
            }
        }
        CauseCategory::ScaleIn => format!(
            "At {at} a monitor alarm TargetTracking-web-AlarmLow-{} in state ALARM triggered policy cpu-target-50 changing the desired capacity from {n} to {}.  At {at} an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {n} to {}.  At {at} instance {id} was selected for termination.",
            rng.hex(8), n - 1, n - 1
        ),
        CauseCategory::InstanceRefresh => format!(
            "At {at} an instance was taken out of service in response to an instance refresh.  At {at} instance {id} was selected for termination."
        ),
        CauseCategory::UserRequest => format!(
            "At {at} instance {id} was taken out of service in response to a user request, shrinking the capacity from {n} to {}.",
            n - 1
        ),
        CauseCategory::MaxLifetime => format!(
            "At {at} an instance was taken out of service in response to the instance reaching its maximum instance lifetime."
        ),
        CauseCategory::Rebalance => format!(
            "At {at} an instance was taken out of service in response to an EC2 instance rebalance recommendation."
        ),
        CauseCategory::SpotInterruption => format!(
            "At {at} an instance was taken out of service in response to an EC2 Spot Instance interruption notice."
        ),
        CauseCategory::Unknown => format!("At {at} an instance was removed."),
    }
}

fn write_activities(out: &mut Output, d: &Deployment, inst: &Instance, rng: &mut Rng) {
    let launch = launch_activity(d, inst, rng);
    let list = out.activities.entry(d.asg.clone()).or_default();
    list.push(launch);
    list.push(json!({
        "ActivityId": format!("{}-{}-{}-{}-{}", rng.hex(8), rng.hex(4), rng.hex(4), rng.hex(4), rng.hex(12)),
        "AutoScalingGroupName": d.asg,
        "Description": format!("Terminating EC2 instance: {}", inst.id),
        "Cause": cause_text(inst.cause, &inst.id, inst.terminated, rng),
        "StartTime": rfc(inst.terminated),
        "EndTime": rfc(inst.terminated + Duration::seconds(rng.int(30, 400))),
        "StatusCode": "Successful",
        "Progress": 100,
        "Details": "{\"Subnet ID\":\"subnet-0a1b2c3d\",\"Availability Zone\":\"us-east-1a\"}",
    }));
}

fn launch_activity(d: &Deployment, inst: &Instance, rng: &mut Rng) -> serde_json::Value {
    let launch_at = inst.launch.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "ActivityId": format!("{}-{}-{}-{}-{}", rng.hex(8), rng.hex(4), rng.hex(4), rng.hex(4), rng.hex(12)),
        "AutoScalingGroupName": d.asg,
        "Description": format!("Launching a new EC2 instance: {}", inst.id),
        "Cause": format!("At {launch_at} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 3 to 4."),
        "StartTime": rfc(inst.launch),
        "EndTime": rfc(inst.launch + Duration::seconds(40)),
        "StatusCode": "Successful",
        "Progress": 100,
        "Details": "{\"Subnet ID\":\"subnet-0a1b2c3d\",\"Availability Zone\":\"us-east-1a\"}",
    })
}

/// Routine lines a service prints while it works; some are hard negatives on purpose.
fn routine_line(runtime: &str, rng: &mut Rng) -> String {
    let ms = rng.int(2, 180);
    let path = *rng.pick(&[
        "/api/cart",
        "/api/items",
        "/healthz",
        "/api/orders",
        "/api/search",
    ]);
    let status = *rng.pick(&[200, 200, 200, 201, 204, 304, 404]);
    match runtime {
        "node" => match rng.int(0, 9) {
            0 => format!("[{}:0x5f1c2d0]   {} ms: Scavenge 812.3 (845.1) -> 801.7 (846.2) MB, 3.2 / 0.0 ms  (average mu = 0.991, current mu = 0.987) allocation failure;", rng.int(1, 9), rng.int(10000, 99999)),
            _ => json!({"level": "info", "time": 1, "msg": format!("GET {path} {status} {ms}ms"), "pid": 17}).to_string(),
        },
        "jvm" => match rng.int(0, 9) {
            0 => format!("[GC (Allocation Failure) [PSYoungGen: 65536K->10720K(76288K)] 131072K->76256K(251392K), 0.0{} secs]", rng.int(100, 999)),
            1 => "Started with JVM flags -Xmx3g -XX:+ExitOnOutOfMemoryError -XX:+HeapDumpOnOutOfMemoryError".to_string(),
            _ => format!("INFO  [http-nio-8080-exec-{}] c.e.web.RequestLog - GET {path} {status} {ms}ms", rng.int(1, 40)),
        },
        "python" => format!("INFO:     10.0.{}.{}:5{} - \"GET {path} HTTP/1.1\" {status} OK", rng.int(0, 9), rng.int(1, 250), rng.int(1000, 9999)),
        "dotnet" => format!("info: Microsoft.AspNetCore.Hosting.Diagnostics[2] Request finished HTTP/1.1 GET {path} - {status} - {ms}.0 ms"),
        _ => match rng.int(0, 12) {
            0 => "oom_score_adj set to -500 for the agent process".to_string(),
            _ => format!("level=info msg=\"request served\" method=GET path={path} status={status} duration={ms}ms"),
        },
    }
}

/// The lines a runtime prints as it dies of memory.
fn oom_lines(runtime: &str, rng: &mut Rng) -> Vec<String> {
    match runtime {
        "node" => vec![
            "".into(),
            "<--- Last few GCs --->".into(),
            "".into(),
            format!("[1:0x63a2f40] {} ms: Mark-sweep 2042.7 (2083.4) -> 2041.9 (2083.9) MB, 1862.4 / 0.0 ms  (average mu = 0.112, current mu = 0.011) allocation failure; scavenge might not succeed", rng.int(40000, 90000)),
            "".into(),
            "<--- JS stacktrace --->".into(),
            "".into(),
            rng.pick(&[
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                "FATAL ERROR: Ineffective mark-compacts near heap limit Allocation failed - JavaScript heap out of memory",
                "FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory",
            ])
            .to_string(),
            " 1: 0xb7b3e0 node::Abort() [node]".into(),
            " 2: 0xa8c8aa  [node]".into(),
            " 3: 0xd52d20 v8::Utils::ReportOOMFailure(v8::internal::Isolate*, char const*, bool) [node]".into(),
        ],
        "jvm" => vec![
            format!("Exception in thread \"http-nio-8080-exec-{}\" java.lang.OutOfMemoryError: Java heap space", rng.int(1, 40)),
            "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)".into(),
            "\tat java.base/java.lang.AbstractStringBuilder.ensureCapacityInternal(AbstractStringBuilder.java:228)".into(),
        ],
        "python" => vec![
            "Traceback (most recent call last):".into(),
            "  File \"/app/worker/render.py\", line 88, in render_page".into(),
            "    buf = bytearray(size)".into(),
            "MemoryError".into(),
        ],
        "dotnet" => vec![
            "Unhandled exception. System.OutOfMemoryException: Exception of type 'System.OutOfMemoryException' was thrown.".into(),
            "   at System.Collections.Generic.List`1.set_Capacity(Int32 value)".into(),
        ],
        _ => vec![
            "fatal error: runtime: out of memory".into(),
            "".into(),
            "runtime stack:".into(),
            "runtime.throw({0x9b2e1a?, 0x400000?})".into(),
        ],
    }
}

/// The lines a runtime prints as it crashes for a non-memory reason.
fn crash_lines(runtime: &str, rng: &mut Rng) -> Vec<String> {
    match runtime {
        "go" => vec![
            "panic: runtime error: invalid memory address or nil pointer dereference".into(),
            format!(
                "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x{}]",
                rng.hex(6)
            ),
            "".into(),
            format!("goroutine {} [running]:", rng.int(10, 900)),
            "main.(*PaymentHandler).Authorize(0xc000112000, {0xa1b2c0, 0xc0001a4000})".into(),
        ],
        "rust" => vec![
            "thread 'tokio-runtime-worker' panicked at src/handlers/order.rs:212:37:".into(),
            "called `Option::unwrap()` on a `None` value".into(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".into(),
        ],
        _ => vec![
            "/app/dist/server.js:1187".into(),
            "        const id = req.session.user.id;".into(),
            "                                    ^".into(),
            "".into(),
            "TypeError: Cannot read properties of undefined (reading 'id')".into(),
            "    at authorize (/app/dist/server.js:1187:37)".into(),
            "".into(),
            "Node.js v20.11.1".into(),
        ],
    }
}

fn log_lines(d: &Deployment, inst: &Instance, rng: &mut Rng) -> Vec<(DateTime<Utc>, String)> {
    let mut lines = vec![
        (
            inst.launch + Duration::seconds(20),
            format!("Starting {} version {}", d.asg, d.version),
        ),
        (
            inst.launch + Duration::seconds(22),
            "Listening on 0.0.0.0:8080".to_string(),
        ),
    ];
    // Planned terminations: the service works until the group stops it.
    let end = if inst.cause.is_planned() {
        inst.terminated
    } else {
        inst.death
    };
    let mut t = end - Duration::seconds(LOG_TAIL_SECS);
    while t < end - Duration::seconds(1) {
        lines.push((t, routine_line(d.runtime, rng)));
        t += Duration::milliseconds(rng.int(2000, 12000));
    }
    let closing: Vec<String> = match (d.archetype, inst.cause.is_planned()) {
        (_, true) => vec![
            "Received SIGTERM, shutting down gracefully".into(),
            format!("Closed {} idle connections", rng.int(1, 40)),
        ],
        (Archetype::Leak | Archetype::Spike, _) => oom_lines(d.runtime, rng),
        (Archetype::Crash, _) => crash_lines(d.runtime, rng),
        // Killed by the kernel: the application's logs just stop.
        _ => Vec::new(),
    };
    let at = if inst.cause.is_planned() {
        inst.terminated + Duration::seconds(2)
    } else {
        inst.death
    };
    for (i, l) in closing.into_iter().enumerate() {
        lines.push((at + Duration::milliseconds(i as i64), l));
    }
    lines
}

fn write_files(
    out: &Path,
    deployments: &[Deployment],
    instances: &[Instance],
    running: &[Instance],
    o: &Output,
) -> Result<()> {
    // Activities: one describe-scaling-activities document per group, newest first as AWS returns them.
    for (asg, acts) in &o.activities {
        let mut acts = acts.clone();
        acts.sort_by(|a, b| b["StartTime"].as_str().cmp(&a["StartTime"].as_str()));
        let doc = json!({ "Activities": acts });
        write(
            &out.join("activities").join(format!("{asg}.json")),
            &serde_json::to_vec_pretty(&doc).map_err(json_err)?,
        )?;
    }
    // Logs: JSON lines for even groups, filter-log-events output for odd ones.
    let group_index: BTreeMap<&str, usize> = GROUP_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i))
        .collect();
    for (gi, (asg, lines)) in o.logs.iter().enumerate() {
        let odd = group_index.get(asg.as_str()).copied().unwrap_or(gi) % 2 == 1;
        if odd {
            let events: Vec<serde_json::Value> = lines
                .iter()
                .enumerate()
                .map(|(i, (id, t, m))| json!({"logStreamName": id, "timestamp": t.timestamp_millis(), "message": m, "ingestionTime": t.timestamp_millis() + 1500, "eventId": format!("{:056}", i)}))
                .collect();
            let doc = json!({"events": events, "searchedLogStreams": []});
            write(
                &out.join("logs")
                    .join(format!("{asg}.filter-log-events.json")),
                &serde_json::to_vec(&doc).map_err(json_err)?,
            )?;
        } else {
            let mut buf = Vec::new();
            for (id, t, m) in lines {
                serde_json::to_writer(
                    &mut buf,
                    &json!({"timestamp": rfc(*t), "instance_id": id, "message": m}),
                )
                .map_err(json_err)?;
                buf.push(b'\n');
            }
            write(&out.join("logs").join(format!("{asg}.jsonl")), &buf)?;
        }
    }
    // Metrics: a Prometheus query_range response for every third group, CSV otherwise.
    for (gi, (asg, series)) in o.metrics.iter().enumerate() {
        let prom = group_index.get(asg.as_str()).copied().unwrap_or(gi) % 3 == 2;
        if prom {
            let result: Vec<serde_json::Value> = series
                .iter()
                .map(|(id, pts)| {
                    let values: Vec<serde_json::Value> = pts.iter().map(|(t, v)| json!([t.timestamp(), format!("{v}")])).collect();
                    json!({"metric": {"__name__": "mem_used_percent", "instance_id": id, "asg": asg}, "values": values})
                })
                .collect();
            let doc =
                json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
            write(
                &out.join("metrics").join(format!("{asg}.prometheus.json")),
                &serde_json::to_vec(&doc).map_err(json_err)?,
            )?;
        } else {
            let mut buf = Vec::new();
            writeln!(buf, "timestamp,instance_id,value").map_err(|e| Error::io(out, e))?;
            for (id, pts) in series {
                for (t, v) in pts {
                    writeln!(
                        buf,
                        "{},{id},{v}",
                        t.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )
                    .map_err(|e| Error::io(out, e))?;
                }
            }
            write(&out.join("metrics").join(format!("{asg}.csv")), &buf)?;
        }
    }
    // Inventory as recorded while the instances lived (the group's listing), and EC2's view at
    // the end: the dead ones `terminated`, the others `running`.
    let mut groups: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    let mut reservations = Vec::new();
    let dead = instances.iter().map(|i| (i, "terminated"));
    for (inst, state) in dead.chain(running.iter().map(|i| (i, "running"))) {
        let d = &deployments[inst.deployment];
        groups.entry(d.asg.as_str()).or_default().push(json!({
            "InstanceId": inst.id,
            "InstanceType": "m6i.large",
            "AvailabilityZone": "us-east-1a",
            "LifecycleState": "InService",
            "HealthStatus": "Healthy",
            "LaunchTemplate": {"LaunchTemplateId": d.template_id, "LaunchTemplateName": d.asg, "Version": d.version.to_string()},
            "ProtectedFromScaleIn": false
        }));
        reservations.push(json!({"Instances": [{
            "InstanceId": inst.id,
            "LaunchTime": inst.launch.to_rfc3339_opts(SecondsFormat::Secs, true),
            "State": {"Name": state},
            "Placement": {"AvailabilityZone": "us-east-1a"},
            "Tags": [{"Key": "aws:autoscaling:groupName", "Value": d.asg}, {"Key": "Deployment", "Value": d.key()}]
        }]}));
    }
    let asg_doc = json!({"AutoScalingGroups": groups.into_iter().map(|(name, insts)| json!({
        "AutoScalingGroupName": name, "MinSize": 1, "MaxSize": 20, "DesiredCapacity": 4, "Instances": insts
    })).collect::<Vec<_>>()});
    write(
        &out.join("inventory")
            .join("describe-auto-scaling-groups.json"),
        &serde_json::to_vec_pretty(&asg_doc).map_err(json_err)?,
    )?;
    write(
        &out.join("inventory").join("describe-instances.json"),
        &serde_json::to_vec_pretty(&json!({"Reservations": reservations})).map_err(json_err)?,
    )?;
    Ok(())
}

fn config_text(opts: &SimOptions) -> String {
    let since = opts.end - Duration::hours(WINDOW_HOURS + 1);
    format!(
        r#"# Written by `epitaph simulate --seed {seed} --asgs {asgs} --instances {n}`.
# Scans exactly this simulated fleet with the file backends; paths are relative to this file.

[scan]
since = "{since}"
until = "{until}"

[deployment]
identity = "launch_template"

[state]
path = "epitaph.db"

[sources.activities]
kind = "file"
path = "activities"
inventory = "inventory"

[sources.logs]
kind = "file"
path = "logs"

[sources.metrics]
kind = "file"
path = "metrics"
unit = "percent"
"#,
        seed = opts.seed,
        asgs = opts.asgs,
        n = opts.instances,
        since = since.to_rfc3339_opts(SecondsFormat::Secs, true),
        until = (opts.end + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Store(format!("cannot encode simulator output: {e}"))
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
