//! The file backends on what the real AWS CLI (v1) writes: fixtures under
//! tests/fixtures/awscli/, recorded from moto by its `record.sh` (seeded by `seed.py`, whose
//! `manifest.json` says what was seeded). Every accepted format is read as seeded (instances,
//! samples, last lines); truncated exports (`--no-paginate`, `--max-items`) are warnings naming
//! the file and the flag, with the run incomplete; empty files (what a failed `aws … > file`
//! leaves) are input errors naming the file, with the report still printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use epitaph::config::{ActivitiesConfig, SourcesConfig};
use epitaph::model::TimeWindow;
use epitaph::sources::file::{FileActivities, FileLogs, FileMetrics};
use epitaph::sources::{ActivitySource, LastWordsQuery, LogSource, MetricSource, SeriesQuery};
use serde_json::Value;

use crate::common::{bin, output_timeout, CHILD_EXIT_BOUND};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/awscli")
}

/// What seed.py put into moto.
struct Manifest {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    oom: Vec<String>,
    scaled_in: Vec<String>,
    /// Samples seeded per instance.
    points: BTreeMap<String, usize>,
    /// Log events seeded per instance.
    events: BTreeMap<String, usize>,
}

fn manifest() -> Manifest {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let time = |k: &str| {
        DateTime::parse_from_rfc3339(v["window"][k].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let ids = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    Manifest {
        start: time("start"),
        end: time("end"),
        oom: ids("oom"),
        scaled_in: ids("scaled_in"),
        points: counts(&v["memory_points"]),
        events: counts(&v["log_events"]),
    }
}

fn counts(v: &Value) -> BTreeMap<String, usize> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap() as usize))
        .collect()
}

/// The three file sources (kind = "file", the default), each reading `path`.
fn source(path: &Path) -> SourcesConfig {
    let mut s = SourcesConfig::default();
    s.activities.path = Some(path.to_path_buf());
    s.logs.path = Some(path.to_path_buf());
    s.metrics.path = Some(path.to_path_buf());
    s
}

/// Samples per instance read from a metrics export folder, and its problems.
async fn series_counts(path: &Path, m: &Manifest) -> (BTreeMap<String, usize>, Vec<String>) {
    let metrics = FileMetrics::new(&source(path).metrics).unwrap();
    let queries: Vec<SeriesQuery> = m
        .points
        .keys()
        .map(|id| SeriesQuery {
            instance_id: id.clone(),
            origin: None,
            asg: None,
            start: m.start - chrono::Duration::hours(1),
            end: m.end,
        })
        .collect();
    let got = metrics.memory_series(&queries).await.unwrap();
    let counts = queries
        .iter()
        .zip(got)
        .map(|(q, s)| {
            let n = s.unwrap().map_or(0, |s| s.points.len());
            (q.instance_id.clone(), n)
        })
        .collect();
    let p = metrics.input_problems();
    (counts, p.errors.into_iter().chain(p.warnings).collect())
}

/// Every event of each instance in a log export folder, and its problems.
async fn log_lines(path: &Path, m: &Manifest) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let logs = FileLogs::new(&source(path).logs).unwrap();
    let mut out = BTreeMap::new();
    for id in m.points.keys() {
        let q = LastWordsQuery {
            instance_id: id.clone(),
            terminated_at: m.end,
            window: chrono::Duration::days(1),
            grace: chrono::Duration::zero(),
            max_bytes: usize::MAX,
            ..Default::default()
        };
        let words = logs.last_words(&q).await.unwrap();
        out.insert(
            id.clone(),
            words.events.into_iter().map(|e| e.message).collect(),
        );
    }
    let p = logs.input_problems();
    (out, p.errors.into_iter().chain(p.warnings).collect())
}

#[tokio::test]
async fn every_cli_metrics_export_reads_as_seeded() {
    let m = manifest();
    let dir = fixtures().join("complete/metrics");
    // get-metric-data with the queries as a sidecar, with the instance as each query's Label,
    // and get-metric-statistics with one file per instance named after it.
    for variant in [
        "get-metric-data",
        "get-metric-data-labels",
        "get-metric-statistics",
    ] {
        let (counts, problems) = series_counts(&dir.join(variant), &m).await;
        assert_eq!(counts, m.points, "{variant}");
        assert!(problems.is_empty(), "{variant}: {problems:?}");
    }
}

#[tokio::test]
async fn every_cli_log_export_reads_as_seeded_and_overlaps_count_once() {
    let m = manifest();
    let dir = fixtures().join("complete/logs");
    let (per_stream, problems) = log_lines(&dir.join("get-log-events"), &m).await;
    assert!(problems.is_empty(), "{problems:?}");
    for id in &m.oom {
        assert_eq!(
            per_stream[id].last().map(String::as_str),
            Some(
                "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
            ),
            "{id}"
        );
    }
    for id in &m.scaled_in {
        assert_eq!(
            per_stream[id].last().map(String::as_str),
            Some("received SIGTERM, shutting down gracefully")
        );
    }
    let read: BTreeMap<String, usize> = per_stream
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    assert_eq!(read, m.events);
    let (filtered, problems) = log_lines(&dir.join("filter-log-events"), &m).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(filtered == per_stream, "filter-log-events = get-log-events");
    // Both exports at once: every event is in two files, and is read once.
    let (both, problems) = log_lines(&dir, &m).await;
    assert!(problems.is_empty(), "{problems:?}");
    let lens = |m: &BTreeMap<String, Vec<String>>| -> BTreeMap<String, usize> {
        m.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    };
    assert_eq!(lens(&both), m.events, "each event once");
    assert!(both == per_stream, "the same events in the same order");
}

fn epitaph() -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.env_remove("EPITAPH_CONFIG")
        .env_remove("EPITAPH_LOG")
        .env("NO_COLOR", "1");
    c
}

/// Writes a config reading these folders (activities, inventory, logs, metrics) into `dir`.
fn config(dir: &Path, paths: [&Path; 4]) -> PathBuf {
    let [activities, inventory, logs, metrics] = paths.map(|p| p.display().to_string());
    let cfg = dir.join("epitaph.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\npath = \"state.db\"\n\n[sources.activities]\nkind = \"file\"\npath = {activities:?}\ninventory = {inventory:?}\n\n[sources.logs]\nkind = \"file\"\npath = {logs:?}\n\n[sources.metrics]\nkind = \"file\"\npath = {metrics:?}\n"
        ),
    )
    .unwrap();
    cfg
}

/// `epitaph scan --format json` over the manifest's window: the report, the exit code, stderr.
fn scan(cfg: &Path, m: &Manifest) -> (Value, i32, String) {
    scan_with(cfg, m, &[])
}

/// [`scan`] with more flags (`--strict`).
fn scan_with(cfg: &Path, m: &Manifest, flags: &[&str]) -> (Value, i32, String) {
    let out = output_timeout(
        epitaph()
            .arg("--config")
            .arg(cfg)
            .args(["--format", "json", "scan", "--since"])
            .arg(m.start.to_rfc3339())
            .arg("--until")
            .arg(m.end.to_rfc3339())
            .args(flags),
        CHILD_EXIT_BOUND,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("scan JSON: {e}\nstderr: {stderr}"));
    (v, out.status.code().unwrap_or(-1), stderr)
}

/// Instance → (verdict, last words lines, signature ids) of a scan report.
fn verdicts(v: &Value) -> BTreeMap<String, (String, u64, String)> {
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap().to_string(),
                (
                    i["verdict"].as_str().unwrap().to_string(),
                    i["last_words_lines"].as_u64().unwrap(),
                    i["signatures"].to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_scan_of_cli_exports_names_the_leak_whichever_formats() {
    let m = manifest();
    let f = fixtures().join("complete");
    let mut seen = Vec::new();
    for (logs, metrics) in [
        ("logs/get-log-events", "metrics/get-metric-data"),
        ("logs/filter-log-events", "metrics/get-metric-statistics"),
        ("logs", "metrics/get-metric-data-labels"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            [
                &f.join("activities"),
                &f.join("inventory"),
                &f.join(logs),
                &f.join(metrics),
            ],
        );
        let (v, code, stderr) = scan(&cfg, &m);
        let s = &v["summary"];
        assert_eq!(code, 0, "{logs} + {metrics}: {s}\n{stderr}");
        assert_eq!(s["complete"], true, "{s}");
        assert_eq!(s["analysed"], 3, "{s}");
        assert_eq!(s["skipped_records"], 0, "{s}");
        assert_eq!(s["coverage"]["memory"]["with_evidence"], 3, "{s}");
        let by_id = verdicts(&v);
        for id in &m.oom {
            assert_eq!(by_id[id].0, "oom_leak", "{id}: {by_id:?}");
        }
        for id in &m.scaled_in {
            assert_eq!(by_id[id].0, "not_a_crash", "{id}: {by_id:?}");
        }
        assert_eq!(
            v["deployments"][0]["verdict"], "leaking",
            "{}",
            v["deployments"]
        );
        seen.push(by_id);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
}

#[test]
fn truncated_cli_exports_are_warnings_naming_file_and_flag() {
    let m = manifest();
    let t = fixtures().join("truncated");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        [
            &t.join("activities-max-items"),
            &t.join("inventory"),
            &t.join("logs-no-paginate"),
            &t.join("metrics"),
        ],
    );
    let (v, code, stderr) = scan(&cfg, &m);
    let s = &v["summary"];
    assert_eq!(code, 0, "warnings only: {s}\n{stderr}");
    assert_eq!(s["complete"], false, "{s}");
    assert_eq!(s["input_errors"].as_array().unwrap().len(), 0, "{s}");
    let warnings: Vec<&str> = s["input_warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for (file, flag) in [
        ("activities-max-items/web.json", "without --max-items"),
        ("inventory/instances.json", "without --max-items"),
        ("logs-no-paginate/app.json", "without --no-paginate"),
        ("metrics/memory.json", "without --max-items"),
    ] {
        let w = warnings
            .iter()
            .find(|w| w.contains(file))
            .unwrap_or_else(|| panic!("no warning names {file}: {warnings:#?}"));
        assert!(w.contains(flag), "{w}");
        assert!(stderr.contains(w), "stderr says it too: {stderr}");
    }
    assert_eq!(warnings.len(), 4, "{warnings:#?}");

    // --strict: each truncation is an input error naming its file; exit 2, report printed.
    let (v, code, stderr) = scan_with(&cfg, &m, &["--strict", "--refresh"]);
    let s = &v["summary"];
    assert_eq!(code, 2, "{s}\n{stderr}");
    assert_eq!(s["input_warnings"].as_array().unwrap().len(), 0, "{s}");
    let errors: Vec<&str> = s["input_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for w in &warnings {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(w) && e.ends_with("[--strict]")),
            "{w} is an error under --strict: {errors:#?}"
        );
    }
    assert!(
        s["analysed"].as_u64().unwrap() > 0,
        "what the files hold is still analysed and reported: {s}"
    );

    // The other two truncations, read directly.
    let acts = FileActivities::new(&source(&t.join("activities-no-paginate")).activities).unwrap();
    let batch = acts
        .terminations(TimeWindow {
            start: m.start,
            end: m.end,
        })
        .await_blocking()
        .unwrap();
    assert_eq!(batch.warnings.len(), 1, "{:?}", batch.warnings);
    assert!(batch.warnings[0].contains("without --no-paginate"));
    let (_, problems) = log_lines(&t.join("logs-max-items"), &m).await_blocking();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("app.json") && problems[0].contains("without --max-items"));
}

#[test]
fn empty_cli_exports_are_input_errors_and_the_report_is_still_printed() {
    let m = manifest();
    let (c, e) = (fixtures().join("complete"), fixtures().join("empty"));
    let dir = tempfile::tempdir().unwrap();
    // Each source's complete exports, plus the empty file a failed `aws … > file` left.
    let copy = |from: &Path, to: &str| {
        let dest = dir.path().join(to);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap();
    };
    copy(&c.join("activities/web.json"), "activities/web.json");
    copy(&e.join("activities/web.json"), "activities/failed.json");
    copy(&c.join("inventory/groups.json"), "inventory/groups.json");
    copy(
        &e.join("inventory/instances.json"),
        "inventory/instances.json",
    );
    for entry in std::fs::read_dir(c.join("logs/get-log-events")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        copy(&p, &format!("logs/streams/{name}"));
    }
    let failed_log = std::fs::read_dir(e.join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    copy(&failed_log, "logs/again/failed.json");
    for name in ["memory.json", "memory.queries.json"] {
        copy(
            &c.join("metrics/get-metric-data").join(name),
            &format!("metrics/{name}"),
        );
    }
    let failed_metrics = std::fs::read_dir(e.join("metrics"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    copy(&failed_metrics, "metrics/failed.json");
    let d = dir.path();
    let cfg = config(
        d,
        [
            &d.join("activities"),
            &d.join("inventory"),
            &d.join("logs"),
            &d.join("metrics"),
        ],
    );
    let (v, code, stderr) = scan(&cfg, &m);
    let s = &v["summary"];
    assert_eq!(code, 2, "input errors: {s}\n{stderr}");
    assert_eq!(s["complete"], false);
    let errors: Vec<&str> = s["input_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for file in [
        "activities/failed.json",
        "inventory/instances.json",
        "logs/again/failed.json",
        "metrics/failed.json",
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(file) && e.contains("empty file")),
            "{file}: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 4, "{errors:#?}");
    // The readable exports were still analysed.
    assert_eq!(s["analysed"], 3, "{s}");
    assert_eq!(s["skipped_records"], 0, "{s}");
}

/// `aws ec2 describe-instances` as the AWS CLI v1 printed it against moto (recorded by
/// `record.sh`, checked in as `complete/inventory/instances.json`): every instance's launch
/// time, tags (the group from `aws:autoscaling:groupName`), private DNS name and IP and state
/// read as the file says — the file itself read here with serde, independently.
#[tokio::test]
async fn describe_instances_from_the_cli_reads_launch_time_tags_and_addresses() {
    let inv_dir = tempfile::tempdir().unwrap();
    let file = fixtures().join("complete/inventory/instances.json");
    std::fs::copy(&file, inv_dir.path().join("instances.json")).unwrap();
    // No activities (their launch activities would complete the inventory): EC2's word only.
    let no_activities = tempfile::tempdir().unwrap();
    let acts = FileActivities::new(&ActivitiesConfig {
        inventory: Some(inv_dir.path().to_path_buf()),
        ..source(no_activities.path()).activities
    })
    .unwrap();
    let inventory = acts.inventory().await.unwrap();
    assert!(acts.inventory_problems().is_empty());
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut expected = 0;
    for r in doc["Reservations"].as_array().unwrap() {
        for i in r["Instances"].as_array().unwrap() {
            expected += 1;
            let id = i["InstanceId"].as_str().unwrap();
            let got = inventory
                .iter()
                .find(|x| x.instance_id == id)
                .unwrap_or_else(|| panic!("{id} in the inventory"));
            let launch: DateTime<Utc> = i["LaunchTime"].as_str().unwrap().parse().unwrap();
            assert_eq!(got.launch_time, Some(launch), "{id}");
            assert_eq!(
                got.private_dns.as_deref(),
                i["PrivateDnsName"].as_str(),
                "{id}"
            );
            assert_eq!(
                got.private_ip.as_deref(),
                i["PrivateIpAddress"].as_str(),
                "{id}"
            );
            assert_eq!(
                got.ec2_state.as_deref(),
                i["State"]["Name"].as_str(),
                "{id}"
            );
            let tags: BTreeMap<String, String> = i["Tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["Key"].as_str().unwrap().to_string(),
                        t["Value"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(got.tags, tags, "{id}");
            assert_eq!(
                got.asg.as_deref(),
                tags.get("aws:autoscaling:groupName").map(String::as_str),
                "{id}"
            );
        }
    }
    assert_eq!(inventory.len(), expected);
    // What the CLI wrote, spot-checked by hand: a running instance of the group.
    let running_ids = running();
    let running = inventory
        .iter()
        .find(|x| running_ids.contains(&x.instance_id))
        .unwrap();
    assert_eq!(running.asg.as_deref(), Some("web"));
    assert!(running
        .private_dns
        .as_deref()
        .unwrap()
        .ends_with(".ec2.internal"));
    assert!(running.is_live());
    assert!(inventory
        .iter()
        .any(|x| x.ec2_state.as_deref() == Some("terminated") && !x.is_live()));
}

/// The instances `record.sh` left running.
fn running() -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    v["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Runs a future to completion on a runtime of its own (for the `#[test]`s that also spawn
/// processes).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self)
    }
}

impl<F: std::future::Future> AwaitBlocking for F {}
