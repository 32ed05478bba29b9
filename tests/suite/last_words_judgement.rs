//! Instance judgement on last words shaped like real ones, end to end through the file
//! backends and the pipeline: an OOM line written while the load balancer drained the instance
//! (after the termination began, before the activity ended) is still its last words; a handled
//! exception followed by normal serving is not a crash; a clean shutdown ending an ambiguous
//! health-check termination is not a crash; unrecognised cause texts are counted by wording.

use std::sync::Arc;

use epitaph::config::Config;
use epitaph::model::InstanceVerdict;
use epitaph::pipeline::{load_signatures, Pipeline, ScanOptions};
use epitaph::sources::Sources;
use epitaph::store::{SqliteStore, Store};
use serde_json::json;

const T0: &str = "2026-01-05T10:00:00Z";

fn at(secs: i64) -> String {
    let t0 = chrono::DateTime::parse_from_rfc3339(T0).unwrap();
    (t0 + chrono::Duration::seconds(secs))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Instance {
    id: &'static str,
    cause: &'static str,
    /// Seconds after T0 the activity ended (None: no EndTime in the export).
    end: Option<i64>,
    /// (seconds after T0, message)
    lines: Vec<(i64, &'static str)>,
}

const HEALTH: &str = "At 2026-01-05T10:00:00Z an instance was taken out of service in response to an ELB system health check failure.";

async fn scan(instances: &[Instance], env: &[(&str, &str)]) -> epitaph::pipeline::ScanReport {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["activities", "logs", "metrics"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let activities: Vec<serde_json::Value> = instances
        .iter()
        .map(|i| {
            let mut a = json!({
                "ActivityId": format!("act-{}", i.id),
                "AutoScalingGroupName": "web",
                "Cause": i.cause,
                "Description": format!("Terminating EC2 instance: {}", i.id),
                "StartTime": T0,
                "StatusCode": "Successful",
            });
            if let Some(e) = i.end {
                a["EndTime"] = json!(at(e));
            }
            a
        })
        .collect();
    std::fs::write(
        root.join("activities/web.json"),
        serde_json::to_vec(&json!({ "Activities": activities })).unwrap(),
    )
    .unwrap();
    let mut logs = String::new();
    for i in instances {
        for (s, m) in &i.lines {
            logs.push_str(
                &json!({"timestamp": at(*s), "instance_id": i.id, "message": m}).to_string(),
            );
            logs.push('\n');
        }
    }
    std::fs::write(root.join("logs/web.jsonl"), logs).unwrap();
    std::fs::write(
        root.join("metrics/web.csv"),
        "instance_id,timestamp,value\n",
    )
    .unwrap();
    let text = format!(
        "[scan]\nsince = \"{}\"\nuntil = \"{}\"\n[state]\npath = \"state.db\"\n\
         [sources.activities]\nkind = \"file\"\npath = \"activities\"\n\
         [sources.logs]\nkind = \"file\"\npath = \"logs\"\n\
         [sources.metrics]\nkind = \"file\"\npath = \"metrics\"\nunit = \"percent\"\n",
        at(-3600),
        at(3600)
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = Config::parse(&text, "epitaph.toml", root, &env).unwrap();
    let sources = Sources::from_config(&cfg).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&root.join("state.db")).await.unwrap());
    let pipeline = Pipeline::new(
        cfg.clone(),
        sources,
        store,
        Arc::new(load_signatures(&cfg).unwrap()),
    );
    pipeline.scan(&ScanOptions::default()).await.unwrap()
}

fn verdict(r: &epitaph::pipeline::ScanReport, id: &str) -> (InstanceVerdict, String) {
    let i = r
        .instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("{id} not reported"));
    (i.verdict, i.explanation.clone())
}

fn fleet() -> Vec<Instance> {
    vec![
        // Died of OOM 250 s into a 300 s deregistration delay; the activity ended at 290 s.
        Instance {
            id: "i-0000000000000d001",
            cause: HEALTH,
            end: Some(290),
            lines: vec![
                (100, "GET /api/cart 200 12ms"),
                (
                    250,
                    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                ),
            ],
        },
        // The same without an EndTime: the drain window (5 m by default) covers it.
        Instance {
            id: "i-0000000000000d002",
            cause: HEALTH,
            end: None,
            lines: vec![
                (100, "GET /api/cart 200 12ms"),
                (250, "fatal error: runtime: out of memory"),
            ],
        },
        // A handled exception, then normal serving for most of a minute, then silence.
        Instance {
            id: "i-0000000000000d003",
            cause: HEALTH,
            end: Some(60),
            lines: vec![
                (-55, "Traceback (most recent call last):"),
                (-55, "  File \"/app/api.py\", line 12, in handler"),
                (-55, "ValueError: bad cart id"),
                (-54, "GET /api/cart 400 3ms"),
                (-20, "GET /api/cart 200 12ms"),
                (-5, "GET /api/cart 200 11ms"),
            ],
        },
        // A crash that ends the last words.
        Instance {
            id: "i-0000000000000d004",
            cause: HEALTH,
            end: Some(60),
            lines: vec![
                (-60, "GET /api/cart 200 12ms"),
                (
                    -5,
                    "panic: runtime error: invalid memory address or nil pointer dereference",
                ),
                (-5, "goroutine 1 [running]:"),
            ],
        },
        // A clean shutdown ending an EC2 health-check termination (a Spot interruption
        // without capacity rebalancing looks like this).
        Instance {
            id: "i-0000000000000d005",
            cause: "At 2026-01-05T10:00:00Z an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.",
            end: Some(60),
            lines: vec![
                (-60, "GET /api/cart 200 12ms"),
                (-3, "Received SIGTERM, shutting down gracefully"),
                (-2, "Closed 12 idle connections"),
            ],
        },
        // A cause text nobody has seen.
        Instance {
            id: "i-0000000000000d006",
            cause: "At 2026-01-05T10:00:00Z an instance was removed for a reason AWS invented yesterday.",
            end: Some(60),
            lines: vec![(-60, "GET /api/cart 200 12ms")],
        },
    ]
}

#[tokio::test]
async fn last_words_include_the_drain_and_endings_are_judged() {
    let r = scan(&fleet(), &[]).await;
    let (v, why) = verdict(&r, "i-0000000000000d001");
    assert_eq!(v, InstanceVerdict::Oom, "{why}");
    let (v, why) = verdict(&r, "i-0000000000000d002");
    assert_eq!(v, InstanceVerdict::Oom, "{why}");
    let (v, why) = verdict(&r, "i-0000000000000d003");
    assert_eq!(v, InstanceVerdict::Unknown, "{why}");
    assert!(why.contains("handled"), "{why}");
    let (v, why) = verdict(&r, "i-0000000000000d004");
    assert_eq!(v, InstanceVerdict::CrashOther, "{why}");
    let (v, why) = verdict(&r, "i-0000000000000d005");
    assert_eq!(v, InstanceVerdict::NotACrash, "{why}");
    assert!(why.contains("orderly shutdown"), "{why}");
    assert_eq!(
        r.summary
            .unrecognised_causes
            .get("At <time> an instance was removed for a reason AWS invented yesterday."),
        Some(&1),
        "{:?}",
        r.summary.unrecognised_causes
    );
    // Health-check causes are recognised, so they are not listed.
    assert_eq!(r.summary.unrecognised_causes.len(), 1);
}

#[tokio::test]
async fn without_the_drain_the_late_oom_line_is_not_last_words() {
    // A drain window shorter than the OOM line's delay, and no EndTime: the line falls
    // outside the window (the grace is shortened too), so the verdict cannot be OOM.
    let r = scan(
        &fleet(),
        &[
            ("EPITAPH_SCAN__DRAIN_WINDOW", "10s"),
            ("EPITAPH_SCAN__LAST_WORDS_GRACE", "30s"),
        ],
    )
    .await;
    let (v, why) = verdict(&r, "i-0000000000000d002");
    assert_ne!(v, InstanceVerdict::Oom, "{why}");
    // The activity's EndTime still covers the instance that has one.
    let (v, why) = verdict(&r, "i-0000000000000d001");
    assert_eq!(v, InstanceVerdict::Oom, "{why}");
}
