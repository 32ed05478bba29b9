//! Alerts end to end against a local webhook receiver: one message per alerting deployment
//! within Slack's limits, redaction, no duplicates across reruns and racing replicas, resolved
//! messages, 429 with Retry-After, 5xx then success, a dead webhook that blocks nothing and
//! never shows its URL, and a sender killed mid-delivery (delivered exactly once).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Fleet, Receiver, Reply, PLANTED_AWS_KEY, PLANTED_PASSWORD};
use epitaph::config::Config;
use epitaph::pipeline::{Pipeline, ScanOptions};
use epitaph::store::{SqliteStore, Store};

fn alerts_section(rx: &Receiver, slack: bool, extra: &str) -> String {
    let mut s = String::from("[alerts]\n");
    if slack {
        s += &format!("slack_webhook_url = \"{}\"\n", rx.url("/slack"));
    }
    s += &format!("webhook_url = \"{}\"\n", rx.url("/generic"));
    s += extra;
    s
}

async fn pipeline(fleet: &Fleet) -> Pipeline {
    let cfg = Config::load(Some(&fleet.config_path())).unwrap();
    Pipeline::open(cfg).await.unwrap()
}

fn count_by_key(got: &[common::Got]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in got.iter().filter(|g| g.acked) {
        *m.entry(format!("{} {}", g.path, g.idempotency_key))
            .or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_alerting_deployment_within_limits_redacted_and_never_twice() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.plant_secrets();
    fleet.append_config(&alerts_section(&rx, true, ""));
    let expected: BTreeSet<String> = fleet.alerting_deployments().into_iter().collect();
    assert!(expected.len() >= 2, "the fleet has alerting deployments");

    let p = pipeline(&fleet).await;
    let report = p.scan(&ScanOptions::default()).await.unwrap();
    assert_eq!(report.summary.alerts_enqueued, expected.len() * 2);
    let stats = p.deliver_alerts(None).await.unwrap();
    assert_eq!(stats.delivered as usize, expected.len() * 2);

    let slack = rx.got_on("/slack");
    let generic = rx.got_on("/generic");
    assert_eq!(slack.len(), expected.len());
    assert_eq!(generic.len(), expected.len());
    let alerted: BTreeSet<String> = generic
        .iter()
        .map(|g| g.body["deployment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alerted, expected);

    for g in &slack {
        let v = common::slack_violations(&g.body);
        assert!(v.is_empty(), "Slack limits broken: {v:?}");
        assert!(g.body["text"].as_str().is_some_and(|t| !t.is_empty()));
    }
    for g in &generic {
        assert_eq!(g.body["schema"], "epitaph.alert.v1");
        assert_eq!(g.body["kind"], "firing");
        assert_eq!(g.body["id"].as_str().unwrap(), g.idempotency_key);
        assert!(g.body["instances"].as_u64().unwrap() >= 2);
        assert!(g.body["first_death"].is_string() && g.body["last_death"].is_string());
        // created_at is when the message was made; as_of the window it describes (the
        // simulated fleet's window ended long before this test ran).
        let created: chrono::DateTime<chrono::Utc> =
            g.body["created_at"].as_str().unwrap().parse().unwrap();
        let as_of: chrono::DateTime<chrono::Utc> =
            g.body["as_of"].as_str().unwrap().parse().unwrap();
        assert!(created > as_of, "created_at {created} after as_of {as_of}");
        assert!((chrono::Utc::now() - created).num_hours() < 1, "{created}");
        if g.body["verdict"] == "leaking" {
            assert!(g.body["growth_per_hour"].as_f64().unwrap() > 0.0);
            assert!(g.body["projected_hours_to_oom"].as_f64().unwrap() > 0.0);
        }
    }
    // The node leak carries its last words, context and next step.
    let node = generic
        .iter()
        .find(|g| g.body["evidence"]["signature"] == "node.heap_oom")
        .expect("an alert quotes the V8 heap OOM");
    let ctx = node.body["evidence"]["context"].as_array().unwrap();
    assert!(ctx.len() >= 3, "a few lines of context: {ctx:?}");
    assert!(node.body["next_steps"][0]
        .as_str()
        .unwrap()
        .contains("heap"));

    // Redaction: the planted secrets never leave the process, the mask does.
    let all = serde_json::to_string(&rx.got().iter().map(|g| &g.body).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains(PLANTED_PASSWORD) && !all.contains(PLANTED_AWS_KEY));
    assert!(all.contains("password=[REDACTED]"), "mask visible");
    let html = p.html_report(Some(report.window)).await.unwrap();
    assert!(!html.contains(PLANTED_PASSWORD) && !html.contains(PLANTED_AWS_KEY));

    // The same window again, and a second process (a replica) on the same state: nothing new.
    let again = p
        .scan(&ScanOptions {
            since: Some(report.window.start),
            refresh: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.summary.alerts_enqueued, 0);
    let replica = pipeline(&fleet).await;
    let r2 = replica
        .scan(&ScanOptions {
            since: Some(report.window.start),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r2.summary.alerts_enqueued, 0);
    replica.deliver_alerts(None).await.unwrap();
    p.deliver_alerts(None).await.unwrap();
    assert_eq!(rx.got().len(), expected.len() * 2, "no message sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_enqueue_each_transition_once() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(2, 6, 60);
    fleet.append_config(&alerts_section(&rx, false, ""));
    let expected = fleet.alerting_deployments().len();
    let a = pipeline(&fleet).await;
    let b = pipeline(&fleet).await;
    let opts = ScanOptions::default();
    let (ra, rb) = tokio::join!(a.scan(&opts), b.scan(&opts));
    let enqueued = ra.unwrap().summary.alerts_enqueued + rb.unwrap().summary.alerts_enqueued;
    assert_eq!(
        enqueued, expected,
        "one of the two enqueued each transition"
    );
    let (da, db) = tokio::join!(a.deliver_alerts(None), b.deliver_alerts(None));
    assert_eq!(
        (da.unwrap().delivered + db.unwrap().delivered) as usize,
        expected
    );
    let counts = count_by_key(&rx.got());
    assert_eq!(counts.len(), expected);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_once_when_deaths_stop() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&alerts_section(&rx, false, "resolve_after = \"24h\"\n"));
    let expected = fleet.alerting_deployments().len();
    let p = pipeline(&fleet).await;
    let first = p.scan(&ScanOptions::default()).await.unwrap();
    p.deliver_alerts(None).await.unwrap();
    assert_eq!(rx.got().len(), expected);

    // Two quiet days later: no deaths for longer than resolve_after.
    let later = ScanOptions {
        until: Some(first.window.end + chrono::Duration::days(2)),
        ..Default::default()
    };
    let r = p.scan(&later).await.unwrap();
    assert_eq!(r.summary.alerts_enqueued, expected);
    p.deliver_alerts(None).await.unwrap();
    let resolved: Vec<_> = rx
        .got()
        .into_iter()
        .filter(|g| g.body["kind"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), expected);
    assert!(resolved
        .iter()
        .all(|g| g.body["resolved_reason"] == "stopped_dying"));
    // And only once.
    let r = p.scan(&later).await.unwrap();
    assert_eq!(r.summary.alerts_enqueued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_honour_retry_after_and_5xx_retries_then_succeeds() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&alerts_section(
        &rx,
        false,
        "base_backoff = \"300ms\"\nmax_backoff = \"600ms\"\n",
    ));
    let expected = fleet.alerting_deployments().len();
    assert!(expected >= 3);
    // First message: 429 with Retry-After 2 s; second: 500, then (below) 503; the rest: 200.
    rx.plan([
        Reply::Status(429, Some("2".into())),
        Reply::Status(500, None),
    ]);
    let p = pipeline(&fleet).await;
    p.scan(&ScanOptions::default()).await.unwrap();
    let t0 = Instant::now();
    let s = p.deliver_alerts(None).await.unwrap();
    assert_eq!((s.delivered as usize, s.retried), (expected - 2, 2));
    rx.plan([Reply::Status(503, None)]);

    // Retry the 5xx (due after 150–300 ms), not the rate-limited one.
    let mut first_key = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_by_key(&rx.got()).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.deliver_alerts(None).await.unwrap();
        if first_key.is_empty() {
            first_key = rx.got()[0].idempotency_key.clone();
        }
        let tries: Vec<Instant> = rx
            .got()
            .iter()
            .filter(|g| g.idempotency_key == first_key)
            .map(|g| g.at)
            .collect();
        if tries.len() > 1 {
            assert!(
                tries[1] - tries[0] >= Duration::from_secs(2),
                "retried {:?} after a 429 with Retry-After: 2",
                tries[1] - tries[0]
            );
        }
    }
    let counts = count_by_key(&rx.got());
    assert_eq!(
        counts.len(),
        expected,
        "all delivered in {:?}",
        t0.elapsed()
    );
    assert!(counts.values().all(|n| *n == 1));
    let store = SqliteStore::open(&fleet.state_path()).await.unwrap();
    let by_status = store.outbox_counts().await.unwrap();
    assert_eq!(by_status.get("delivered").copied(), Some(expected as u64));
    let attempts: u32 = store
        .outbox(100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.attempts)
        .sum();
    assert_eq!(
        attempts as usize,
        expected + 3,
        "one 429, one 500, one 503 retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_webhook_blocks_nothing_and_its_url_is_never_printed() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fleet = Fleet::new(1, 6, 60);
    let secret_url = format!("http://{closed}/services/T0/B0/SeCrEtToKeN");
    let out = tokio::task::spawn_blocking({
        let cfg = fleet.config_path();
        move || {
            std::process::Command::new(common::bin())
                .args([
                    "scan",
                    "--format",
                    "json",
                    "--log-level",
                    "debug",
                    "--config",
                ])
                .arg(&cfg)
                .env("EPITAPH_ALERTS__SLACK_WEBHOOK_URL", &secret_url)
                .env("EPITAPH_ALERTS__FLUSH_TIMEOUT", "2s")
                .env("EPITAPH_ALERTS__BASE_BACKOFF", "10ms")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["summary"]["alerts_enqueued"].as_u64().unwrap() >= 2);
    assert_eq!(report["summary"]["alerts_delivered"], 0);
    assert!(
        stderr.contains("will retry") || stderr.contains("will be retried"),
        "{stderr}"
    );
    assert!(!stderr.contains("SeCrEtToKeN") && !stdout.contains("SeCrEtToKeN"));
    let store = SqliteStore::open(&fleet.state_path()).await.unwrap();
    assert!(
        store.outbox_counts().await.unwrap()["pending"] >= 2,
        "kept for the next run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_killed_mid_delivery_delivers_exactly_once_after_restart() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    let expected = fleet.alerting_deployments().len();
    rx.plan([Reply::Hang]);
    let run = |cfg: std::path::PathBuf, url: String| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["scan", "--format", "json", "--config"])
            .arg(cfg)
            .env("EPITAPH_ALERTS__WEBHOOK_URL", url)
            .env("EPITAPH_ALERTS__LEASE", "2s")
            .env("EPITAPH_ALERTS__REQUEST_TIMEOUT", "60s")
            .env("EPITAPH_ALERTS__FLUSH_TIMEOUT", "60s")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut child = run(fleet.config_path(), rx.url("/generic"))
        .spawn()
        .unwrap();
    assert!(
        rx.wait_for(1, Duration::from_secs(60)).await,
        "first delivery started"
    );
    // SIGKILL while the receiver holds the request: no response, no chance to record anything.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rx.got().len(), 1);

    tokio::time::sleep(Duration::from_millis(2500)).await; // the dead sender's lease runs out
    let status = tokio::task::spawn_blocking({
        let cfg = fleet.config_path();
        let url = rx.url("/generic");
        move || run(cfg, url).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    let got = rx.got();
    let counts = count_by_key(&got);
    assert_eq!(
        counts.len(),
        expected,
        "every alert acknowledged: {counts:?}"
    );
    assert!(counts.values().all(|n| *n == 1), "exactly once: {counts:?}");
    assert_eq!(
        got.len(),
        expected + 1,
        "only the interrupted one was sent again"
    );
    assert_eq!(
        got[0].idempotency_key,
        got.iter()
            .filter(|g| g.acked)
            .find(|g| g.idempotency_key == got[0].idempotency_key)
            .unwrap()
            .idempotency_key,
        "the retry carries the same idempotency key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_deployment_is_resolved() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&alerts_section(&rx, false, "cooldown = \"0s\"\n"));
    let p = pipeline(&fleet).await;
    let first = p.scan(&ScanOptions::default()).await.unwrap();
    p.deliver_alerts(None).await.unwrap();
    let leaking = first
        .deployments
        .iter()
        .find(|f| f.deployment == "checkout-api:10")
        .expect("the demo's leaking deployment");
    assert_eq!(leaking.verdict.as_str(), "leaking");

    // The group now runs only launch template version 11 (a fixed build was rolled out).
    let live = serde_json::json!({"AutoScalingGroups": [{
        "AutoScalingGroupName": "checkout-api",
        "Instances": [{
            "InstanceId": "i-0feedfacecafe0011",
            "AvailabilityZone": "us-east-1a",
            "LifecycleState": "InService",
            "HealthStatus": "Healthy",
            "LaunchTemplate": {"LaunchTemplateId": "lt-0000000009e3779a6",
                               "LaunchTemplateName": "checkout-api", "Version": "11"}
        }]
    }]});
    std::fs::write(
        fleet.dir.path().join("inventory").join("now.json"),
        live.to_string(),
    )
    .unwrap();
    let r = p
        .scan(&ScanOptions {
            since: Some(first.window.start),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        r.summary.alerts_enqueued, 1,
        "only the replaced deployment changes"
    );
    p.deliver_alerts(None).await.unwrap();
    let resolved: Vec<_> = rx
        .got()
        .into_iter()
        .filter(|g| g.body["kind"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].body["deployment"], "checkout-api:10");
    assert_eq!(resolved[0].body["resolved_reason"], "replaced");
}
