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
    let cfg = Config::load(Some(&dir.path().join("epitaph.toml"))).unwrap();
    let pipeline = Pipeline::open(cfg).await.unwrap();
    let report = pipeline.scan(&ScanOptions::default()).await.unwrap();
    (truth, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_match_truth_for_several_seeds() {
    let mut total = 0usize;
    let mut correct = 0usize;
    let mut origins = 0usize;
    for (seed, asgs, instances) in [
        (1, 6, 60),
        (2, 6, 60),
        (3, 12, 150),
        (4, 7, 80),
        (5, 6, 120),
        (6, 18, 200),
    ] {
        let (truth, report) = scan_fleet(seed, asgs, instances).await;
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
}
