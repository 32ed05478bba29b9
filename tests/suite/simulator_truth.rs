//! Accuracy on simulated fleets: for several seeds and fleet shapes, a scan must match the
//! simulator's `truth.json` for at least 95 % of instances and for every deployment.

use epitaph::config::Config;
use epitaph::model::DeploymentVerdict;
use epitaph::pipeline::{Pipeline, ScanOptions};
use epitaph::simulate::{simulate, SimOptions, Truth};

/// The bar for instance verdicts.
const MIN_INSTANCE_ACCURACY: f64 = 0.95;

async fn scan_fleet(
    seed: u64,
    asgs: usize,
    instances: usize,
) -> (Truth, epitaph::pipeline::ScanReport) {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        seed,
        asgs,
        instances,
        ..Default::default()
    };
    let truth = simulate(dir.path(), &opts).unwrap();
    // Every running instance looked at, so that early warning is judged on the healthy ones
    // too (it changes nothing for the dead instances).
    let path = dir.path().join("epitaph.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[analysis]\nearly_warning = \"all\"\n");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(Some(&path)).unwrap();
    let pipeline = Pipeline::open(cfg).await.unwrap();
    let report = pipeline.scan(&ScanOptions::default()).await.unwrap();
    (truth, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_match_truth_for_several_seeds() {
    let mut total = 0usize;
    let mut correct = 0usize;
    let mut origins = 0usize;
    let mut early = EarlyWarning::default();
    for (seed, asgs, instances) in [
        (1, 6, 60),
        (2, 6, 60),
        (3, 12, 150),
        (4, 7, 80),
        (5, 6, 120),
        (6, 18, 200),
    ] {
        let (truth, report) = scan_fleet(seed, asgs, instances).await;
        early.check(seed, &truth, &report);
        assert_eq!(
            report.instances.len(),
            truth.instances.len(),
            "seed {seed}: every termination reported"
        );
        let mut wrong = Vec::new();
        for i in &report.instances {
            let expected = truth.instances[&i.instance_id];
            total += 1;
            if i.verdict == expected {
                correct += 1;
            } else {
                wrong.push(format!(
                    "{} ({}): expected {expected}, got {} — {}",
                    i.instance_id, i.deployment, i.verdict, i.explanation
                ));
            }
        }
        let acc = 1.0 - wrong.len() as f64 / report.instances.len() as f64;
        println!("seed {seed} ({asgs} groups, {instances} instances): instance accuracy {acc:.3}");
        for w in &wrong {
            println!("  {w}");
        }
        assert!(
            acc >= MIN_INSTANCE_ACCURACY,
            "seed {seed}: instance accuracy {acc:.3} < {MIN_INSTANCE_ACCURACY}"
        );

        assert_eq!(
            report.deployments.len(),
            truth.deployments.len(),
            "seed {seed}: deployment count"
        );
        for d in &report.deployments {
            assert_eq!(
                Some(&d.verdict),
                truth.deployments.get(&d.deployment),
                "seed {seed}: deployment {} — {}",
                d.deployment,
                d.summary
            );
            // Regression origin: a problem deployment that replaced another names it.
            let named = d
                .origin
                .as_ref()
                .and_then(|o| o.predecessor.as_ref())
                .map(|p| p.deployment.as_str());
            let problem = !matches!(
                d.verdict,
                DeploymentVerdict::Healthy | DeploymentVerdict::InsufficientEvidence
            );
            if problem {
                assert_eq!(
                    named,
                    truth.predecessors.get(&d.deployment).map(String::as_str),
                    "seed {seed}: origin of {}: {:?}",
                    d.deployment,
                    d.origin
                );
                origins += usize::from(named.is_some());
            } else {
                assert!(
                    d.origin.is_none(),
                    "no origin for a {} deployment",
                    d.verdict
                );
            }
        }
    }
    println!(
        "overall instance accuracy: {correct}/{total} = {:.4}",
        correct as f64 / total as f64
    );
    assert!(
        origins >= 6,
        "every seed's first group replaced a deployment: {origins} origins named"
    );
    early.judge();
}

/// The early-warning bar: median absolute error of the projected time to the limit, as a
/// fraction of the time that was left (a projection 12 h ahead may be off by more than one
/// 2 h ahead).
const MAX_MEDIAN_RELATIVE_ERROR: f64 = 0.10;
/// The interval is a 90 % one: it must hold the simulated death at least this often.
const MIN_INTERVAL_COVERAGE: f64 = 0.8;

/// Early warning on the simulated running instances, every one looked at (`early_warning =
/// "all"`): each running instance of a leaking deployment is projected, its projection is
/// compared with the simulated death, and no other running instance gets a death date.
#[derive(Default)]
struct EarlyWarning {
    abs_err_h: Vec<f64>,
    rel_err: Vec<f64>,
    inside: usize,
    quiet: usize,
}

impl EarlyWarning {
    fn check(&mut self, seed: u64, truth: &Truth, report: &epitaph::pipeline::ScanReport) {
        let ew = &report.summary.early_warning;
        assert_eq!(ew.candidates, truth.running.len(), "seed {seed}: {ew:?}");
        assert_eq!((ew.errors, ew.no_series, ew.over_cap), (0, 0, 0), "{ew:?}");
        let projected: std::collections::BTreeMap<&str, &epitaph::model::ProjectedDeath> = report
            .next_deaths
            .iter()
            .map(|p| (p.instance_id.as_str(), p))
            .collect();
        assert_eq!(projected.len(), report.next_deaths.len());
        for (id, t) in &truth.running {
            match (t.dies_at, projected.get(id.as_str())) {
                (Some(dies), Some(p)) => {
                    assert_eq!(p.deployment, t.deployment, "{id}");
                    let left_h = (dies - p.as_of).num_seconds() as f64 / 3600.0;
                    let err_h = (p.expected - dies).num_seconds().abs() as f64 / 3600.0;
                    self.abs_err_h.push(err_h);
                    self.rel_err.push(err_h / left_h.max(1.0));
                    let latest = p.latest.unwrap_or(dies + chrono::Duration::days(365));
                    self.inside += usize::from(p.earliest <= dies && dies <= latest);
                }
                (Some(_), None) => panic!(
                    "seed {seed}: running instance {id} of leaking {} was not projected",
                    t.deployment
                ),
                (None, Some(p)) => panic!(
                    "seed {seed}: {id} of {} does not leak but was projected to die at {}",
                    t.deployment, p.expected
                ),
                (None, None) => self.quiet += 1,
            }
        }
    }

    fn judge(&self) {
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v
        };
        let abs = sorted(&self.abs_err_h);
        let rel = sorted(&self.rel_err);
        let n = abs.len();
        assert!(
            n >= 20 && self.quiet >= 40,
            "{n} projected, {} quiet",
            self.quiet
        );
        let med_rel = rel[n / 2];
        println!(
            "early warning: {n} running leaking instances projected (none missed), {} others left alone; median |projected − simulated death| = {:.2} h ({:.1} % of the time left); p90 {:.2} h; interval holds the death for {}/{n}",
            self.quiet,
            abs[n / 2],
            100.0 * med_rel,
            abs[(n * 9 / 10).min(n - 1)],
            self.inside
        );
        assert!(
            med_rel <= MAX_MEDIAN_RELATIVE_ERROR,
            "median relative error {med_rel:.3} > {MAX_MEDIAN_RELATIVE_ERROR}"
        );
        assert!(
            self.inside as f64 / n as f64 >= MIN_INTERVAL_COVERAGE,
            "the interval held {}/{n} deaths",
            self.inside
        );
    }
}
