//! `epitaph export`: the evidence bundle, scanned by the file backends, gives the same verdicts
//! per instance and per deployment as the scan of the sources it was exported from — from a
//! simulated fleet on files (deployments by launch template: the inventory goes through the
//! bundle), and from the AWS backends against moto (the issue's "export → file-scan round
//! trip equal to the live scan on the emulator"). A bundle never mixes with old files, never
//! holds a planted secret, and an incomplete one names the missing part in its manifest and
//! exits non-zero.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use crate::common::{Fleet, PLANTED_AWS_KEY, PLANTED_PASSWORD};

/// Runs `epitaph --format json ARGS` with `config`: (stdout as JSON, exit code, stderr).
fn run(config: &Path, args: &[&str]) -> (Value, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .arg("--config")
        .arg(config)
        .args(["--format", "json"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    crate::aws_moto::json_answer(&out)
}

/// Per instance: verdict, deployment, last-words line count, lifetime, leak verdict and
/// signatures; per deployment: verdict.
type Verdicts = (
    BTreeMap<String, (Value, Value, Value, Value, Value, Vec<Value>)>,
    BTreeMap<String, Value>,
);

fn verdicts(scan: &Value) -> Verdicts {
    let instances = scan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap().to_string(),
                (
                    i["verdict"].clone(),
                    i["deployment"].clone(),
                    i["last_words_lines"].clone(),
                    i["lifetime_hours"].clone(),
                    i["leak"]["verdict"].clone(),
                    i["signatures"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["signature"].clone())
                        .collect(),
                ),
            )
        })
        .collect();
    let deployments = scan["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deployment"].as_str().unwrap().to_string(),
                d["verdict"].clone(),
            )
        })
        .collect();
    (instances, deployments)
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn a_bundle_of_a_fleet_scans_to_the_same_verdicts() {
    let fleet = Fleet::new(7, 3, 24);
    fleet.plant_secrets();
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle");

    let (manifest, code, stderr) = run(
        &fleet.config_path(),
        &["export", "--out", bundle.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}\n{manifest}");
    assert_eq!(manifest["schema"], "epitaph.bundle.v1");
    assert_eq!(manifest["complete"], true);
    assert_eq!(manifest["terminations"], 24);
    assert!(manifest["inventory_instances"].as_u64().unwrap() >= 24);
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, manifest, "the manifest printed is the one written");
    for f in [
        "activities/activities.json",
        "inventory/groups.json",
        "inventory/instances.json",
        "metrics/memory.csv",
        "epitaph.toml",
    ] {
        assert!(
            manifest["files"].as_array().unwrap().iter().any(|x| x == f),
            "{f} in {}",
            manifest["files"]
        );
    }
    let text = all_text(&bundle);
    assert!(
        !text.contains(PLANTED_PASSWORD) && !text.contains(PLANTED_AWS_KEY),
        "secrets are masked in the bundle"
    );

    // The live scan and the bundle's scan (each with a fresh state) judge alike.
    let (live, code, stderr) = run(&fleet.config_path(), &["scan"]);
    assert_eq!(code, 0, "{stderr}");
    let (offline, code, stderr) = run(&bundle.join("epitaph.toml"), &["scan"]);
    assert_eq!(code, 0, "{stderr}\n{}", offline["summary"]);
    assert_eq!(offline["summary"]["complete"], true);
    assert_eq!(offline["window"], live["window"], "the bundle's window");
    let (li, ld) = verdicts(&live);
    let (oi, od) = verdicts(&offline);
    assert_eq!(li.len(), 24);
    assert_eq!(oi, li, "per instance");
    assert_eq!(od, ld, "per deployment");
    assert!(
        ld.keys().any(|d| d.contains(':')),
        "deployments are launch templates (from the inventory): {ld:?}"
    );

    // A folder with files in it is refused (two bundles never mix).
    let (_, code, stderr) = run_text(
        &fleet.config_path(),
        &["export", "--out", bundle.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");

    // An unreadable log export makes the bundle incomplete: named in the manifest, exit 2.
    std::fs::write(fleet.dir.path().join("logs/zz-failed-export.json"), "").unwrap();
    let partial = out.path().join("partial");
    let (manifest, code, stderr) = run(
        &fleet.config_path(),
        &["export", "--out", partial.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(manifest["complete"], false);
    let parts = manifest["incomplete"].as_array().unwrap();
    assert!(
        parts.iter().any(|p| p["source"] == "logs"
            && p["kind"] == "input_error"
            && p["detail"]
                .as_str()
                .unwrap()
                .contains("zz-failed-export.json")),
        "{parts:?}"
    );
    assert!(stderr.contains("INCOMPLETE"), "{stderr}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(written["complete"], false);

    // A log source that reads nothing at all: the bundle is complete but says so, exit 4.
    for e in std::fs::read_dir(fleet.dir.path().join("logs")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (manifest, code, stderr) = run(
        &fleet.config_path(),
        &[
            "export",
            "--out",
            out.path().join("silent").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{stderr}\n{manifest}");
    assert_eq!(manifest["last_words"], 0);
    assert_eq!(manifest["no_last_words"].as_array().unwrap().len(), 24);
    let collapsed = manifest["collapsed"].as_array().unwrap();
    assert!(
        collapsed.len() == 1 && collapsed[0].as_str().unwrap().contains("sources.logs"),
        "{collapsed:?}"
    );
}

/// Like [`run`], stdout as text (for commands that fail before printing JSON).
fn run_text(config: &Path, args: &[&str]) -> (String, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Terminated instances in the emulator fleet: moto's GetMetricData cost grows with queries ×
/// datapoints, so a handful.
#[cfg(feature = "aws")]
const MOTO_INSTANCES: usize = 9;

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_aws_scans_offline_to_the_live_verdicts() {
    use crate::aws_moto::{
        epitaph, fleet_activities, load_fleet_into_moto, start_front, start_moto, write_config,
        Faults,
    };
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    // Recent times: moto drops log events older than 14 days.
    let end = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .args(["simulate", "--out"])
        .arg(dir.path())
        .args([
            "--seed",
            "5",
            "--asgs",
            "2",
            "--running",
            "0",
            "--end",
            &end,
        ])
        .args(["--instances", &MOTO_INSTANCES.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    load_fleet_into_moto(&moto.url, dir.path(), None).await;
    let activities = fleet_activities(dir.path());
    let groups: Vec<String> = activities.keys().cloned().collect();
    let faults = Arc::new(Faults::default());
    let front = start_front(&moto.url, activities, faults.clone());
    let config = write_config(dir.path(), &front, &groups);
    let bundle = dir.path().join("bundle");

    let (live, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}\n{}", live["summary"]);
    let (manifest, code, stderr) = tokio::task::spawn_blocking({
        let (c, b) = (config.clone(), bundle.clone());
        move || epitaph(&c, &["export", "--out", b.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}\n{manifest}");
    assert_eq!(manifest["complete"], true, "{manifest}");
    assert_eq!(manifest["terminations"], MOTO_INSTANCES);
    assert!(
        manifest["sources"]["logs"]
            .as_str()
            .unwrap()
            .contains("aws"),
        "{manifest}"
    );
    let (offline, code, stderr) = tokio::task::spawn_blocking({
        let b = bundle.join("epitaph.toml");
        move || run(&b, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}\n{}", offline["summary"]);
    let (li, ld) = verdicts(&live);
    let (oi, od) = verdicts(&offline);
    assert_eq!(li.len(), MOTO_INSTANCES, "{}", live["summary"]);
    assert_eq!(oi, li, "per instance");
    assert_eq!(od, ld, "per deployment");
    assert!(ld.len() >= 2, "one deployment per group: {ld:?}");
    assert!(
        li.values().any(|v| v.2.as_u64().unwrap_or(0) > 0),
        "some last words went through the bundle: {li:?}"
    );
    // The impossible datapoint moto holds is skipped by the live scan and never exported.
    assert_eq!(live["summary"]["skipped_records"], 1, "{}", live["summary"]);
    assert_eq!(offline["summary"]["skipped_records"], 0);

    // One instance's logs fail on every attempt: the export is incomplete, names it, exits 3.
    let victim = li.keys().next().unwrap().clone();
    *faults.fail_logs_for.lock().unwrap() = Some(victim.clone());
    let (manifest, code, stderr) = tokio::task::spawn_blocking({
        let (c, b) = (config.clone(), dir.path().join("partial"));
        move || epitaph(&c, &["export", "--out", b.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{stderr}\n{manifest}");
    assert_eq!(manifest["complete"], false);
    let parts = manifest["incomplete"].as_array().unwrap();
    assert!(
        parts.len() == 1
            && parts[0]["source"] == "logs"
            && parts[0]["kind"] == "fetch_failed"
            && parts[0]["detail"].as_str().unwrap().starts_with(&victim),
        "{parts:?}"
    );
}
