//! Alerts end to end against a local webhook receiver: one message per alerting deployment
//! within Slack's limits, redaction, no duplicates across reruns and racing replicas, resolved
//! messages, 429 with Retry-After, 5xx then success, a dead webhook that blocks nothing and
//! never shows its URL, and a sender killed mid-delivery (delivered exactly once). A commit
//! that loses the race to another writer is forced (a store double lets the other writer in
//! first), so "decide again" runs every time, not only when two scans happen to interleave.

use crate::common;
use crate::store_double::{HookedStore, StoreHooks};

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{ChildGuard, Fleet, Receiver, Reply, PLANTED_AWS_KEY, PLANTED_PASSWORD};
use epitaph::config::Config;
use epitaph::error::Result;
use epitaph::pipeline::{load_signatures, Pipeline, ScanOptions};
use epitaph::sources::Sources;
use epitaph::store::{AlertChange, OutboxEntry, OutboxMessage, SqliteStore, Store};

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
    // The leak that replaced a healthy release names it: the rollback target.
    let checkout = generic
        .iter()
        .find(|g| g.body["deployment"] == "checkout-api:10")
        .expect("checkout-api:10 alerts");
    assert_eq!(
        checkout.body["origin"]["predecessor"]["deployment"], "checkout-api:9",
        "{}",
        checkout.body["origin"]
    );
    assert_eq!(
        checkout.body["origin"]["predecessor"]["same_problem"],
        false
    );
    let slack_checkout = serde_json::to_string(
        &slack
            .iter()
            .find(|g| g.body.to_string().contains("checkout-api:10"))
            .expect("checkout-api:10 on Slack")
            .body,
    )
    .unwrap();
    assert!(
        slack_checkout.contains("checkout-api:9 before it"),
        "Slack says the origin: {slack_checkout}"
    );
    // Early warning: the leaking deployment's running instances, soonest first, each with an
    // interval around its expected death, after the data's end.
    let next = checkout.body["next_expected_deaths"].as_array().unwrap();
    assert_eq!(next.len(), epitaph::simulate::DEFAULT_RUNNING, "{next:?}");
    let expected: Vec<&str> = next
        .iter()
        .map(|p| p["expected"].as_str().unwrap())
        .collect();
    assert!(expected.windows(2).all(|w| w[0] <= w[1]), "{expected:?}");
    for p in next {
        assert_eq!(p["deployment"], "checkout-api:10");
        assert!(p["earliest"].as_str() <= p["expected"].as_str(), "{p}");
        assert!(p["expected"].as_str() > p["as_of"].as_str(), "{p}");
    }
    assert!(
        slack_checkout.contains("Next expected deaths"),
        "Slack lists the next deaths: {slack_checkout}"
    );
    // Only a leaking deployment's running instances are projected (scope `leaking`).
    for g in generic.iter().filter(|g| g.body["verdict"] != "leaking") {
        assert!(g.body.get("next_expected_deaths").is_none(), "{}", g.body);
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
    // … and where its capture method is documented.
    let links = node.body["links"].to_string();
    assert!(links.contains("nodejs.org/api/v8.html"), "{links}");

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

/// The store of a replica that always loses its first alert commit: just before it, another
/// writer (a second handle on the same database, as another replica is) commits the first
/// deployment's transition with its message.
struct LoseFirstRace {
    other: SqliteStore,
    /// Every `commit_alerts` call: the deployments it changed and whether it applied.
    commits: Mutex<Vec<(Vec<String>, bool)>>,
    /// The deployment the other writer took.
    taken: Mutex<Option<String>>,
}

#[async_trait]
impl StoreHooks for LoseFirstRace {
    async fn commit_alerts(
        &self,
        inner: &SqliteStore,
        changes: &[AlertChange],
        messages: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let first = self.commits.lock().unwrap().is_empty();
        if first && !changes.is_empty() {
            let theirs = &changes[0].state.deployment;
            let their_messages: Vec<OutboxMessage> = messages
                .iter()
                .filter(|m| &m.deployment == theirs)
                .cloned()
                .collect();
            assert!(
                self.other
                    .commit_alerts(&changes[..1], &their_messages, now)
                    .await?
            );
            *self.taken.lock().unwrap() = Some(theirs.clone());
        }
        let applied = inner.commit_alerts(changes, messages, now).await?;
        let names = changes.iter().map(|c| c.state.deployment.clone()).collect();
        self.commits.lock().unwrap().push((names, applied));
        Ok(applied)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_lost_the_race_decides_again() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(2, 6, 60);
    fleet.append_config(&alerts_section(&rx, false, ""));
    let expected: BTreeSet<String> = fleet.alerting_deployments().into_iter().collect();
    assert!(expected.len() >= 2, "the fleet has alerting deployments");
    let cfg = Config::load(Some(&fleet.config_path())).unwrap();
    let store = Arc::new(HookedStore {
        inner: SqliteStore::open(&cfg.state_path()).await.unwrap(),
        hooks: LoseFirstRace {
            other: SqliteStore::open(&cfg.state_path()).await.unwrap(),
            commits: Mutex::new(Vec::new()),
            taken: Mutex::new(None),
        },
    });
    let p = Pipeline::new(
        cfg.clone(),
        Sources::from_config(&cfg).await.unwrap(),
        store.clone(),
        Arc::new(load_signatures(&cfg).unwrap()),
    );
    let report = p.scan(&ScanOptions::default()).await.unwrap();

    let taken = store
        .hooks
        .taken
        .lock()
        .unwrap()
        .clone()
        .expect("the other writer went first");
    let commits = store.hooks.commits.lock().unwrap().clone();
    let rest: Vec<String> = expected.iter().filter(|d| **d != taken).cloned().collect();
    assert_eq!(
        commits,
        vec![
            (expected.iter().cloned().collect(), false),
            (rest.clone(), true)
        ],
        "refused on the stale version, then decided again without the taken deployment"
    );
    assert_eq!(report.summary.alerts_enqueued, rest.len());
    let outbox = store.inner.outbox(100).await.unwrap();
    let enqueued: Vec<&str> = outbox.iter().map(|e| e.deployment.as_str()).collect();
    assert_eq!(
        enqueued.len(),
        expected.len(),
        "each transition once: {enqueued:?}"
    );
    assert_eq!(
        enqueued
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
        expected
    );

    let delivered = p.deliver_alerts(None).await.unwrap().delivered as usize;
    assert_eq!(delivered, expected.len());
    let counts = count_by_key(&rx.got());
    assert_eq!(counts.len(), expected.len());
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

/// The rate-limit test's Retry-After, in seconds.
const RETRY_AFTER_SECS: u64 = 2;
/// The rate-limit test's `alerts.base_backoff` and `alerts.max_backoff`, in milliseconds.
const BASE_BACKOFF_MS: u64 = 300;
const MAX_BACKOFF_MS: u64 = 600;
/// How many times longer than its retry schedule needs the rate-limit test waits for every
/// message to be delivered before it fails: a bound on a hang, never the thing that passes.
const SCHEDULE_SLACK: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_honour_retry_after_and_5xx_retries_then_succeeds() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&alerts_section(
        &rx,
        false,
        &format!("base_backoff = \"{BASE_BACKOFF_MS}ms\"\nmax_backoff = \"{MAX_BACKOFF_MS}ms\"\n"),
    ));
    let expected = fleet.alerting_deployments().len();
    assert!(expected >= 3);
    let retry_after = Duration::from_secs(RETRY_AFTER_SECS);
    // The whole schedule: the Retry-After, then at most three backoffs.
    let bound = (retry_after + Duration::from_millis(MAX_BACKOFF_MS) * 3) * SCHEDULE_SLACK;
    // First message: 429 with Retry-After; second: 500, then (below) a 503; the rest: 200.
    rx.plan([
        Reply::Status(429, Some(RETRY_AFTER_SECS.to_string())),
        Reply::Status(500, None),
    ]);
    let p = pipeline(&fleet).await;
    p.scan(&ScanOptions::default()).await.unwrap();
    let t0 = Instant::now();
    let s = p.deliver_alerts(None).await.unwrap();
    // The 500'd message may come due again within this pass (a slow pass) and be delivered.
    assert_eq!((s.retried, s.failed), (2, 0), "{s:?}");
    assert!(s.delivered as usize >= expected - 2, "{s:?}");
    let first_key = rx.got()[0].idempotency_key.clone();
    // The next failure goes to whichever message is retried next.
    rx.plan([Reply::Status(503, None)]);

    while count_by_key(&rx.got()).len() < expected {
        assert!(
            t0.elapsed() < bound,
            "not all delivered within {bound:?}: {:?}",
            count_by_key(&rx.got())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        p.deliver_alerts(None).await.unwrap();
        let tries: Vec<Instant> = rx
            .got()
            .iter()
            .filter(|g| g.idempotency_key == first_key)
            .map(|g| g.at)
            .collect();
        if tries.len() > 1 {
            assert!(
                tries[1] - tries[0] >= retry_after,
                "retried {:?} after a 429 with Retry-After: {RETRY_AFTER_SECS}",
                tries[1] - tries[0]
            );
        }
    }
    let got = rx.got();
    let counts = count_by_key(&got);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // The 503 goes to whichever message is retried next; only a first pass slower than the
    // Retry-After (everything delivered before a retry was left) would leave it unused.
    assert_eq!(
        got.iter().filter(|g| !g.acked).count() + rx.planned(),
        3,
        "the 429, the 500 and the 503 were each answered, and retried"
    );
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
        got.len(),
        "one attempt counted per request sent"
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
    // `epitaph scan` with the dead webhook, in one output format (bounded wait).
    let scan = |args: &'static [&'static str]| {
        let cfg = fleet.config_path();
        let url = secret_url.clone();
        tokio::task::spawn_blocking(move || {
            common::output_timeout(
                std::process::Command::new(common::bin())
                    .args(["scan"])
                    .args(args)
                    .arg("--config")
                    .arg(&cfg)
                    .env("EPITAPH_ALERTS__SLACK_WEBHOOK_URL", url)
                    .env("EPITAPH_ALERTS__FLUSH_TIMEOUT", "2s")
                    .env("EPITAPH_ALERTS__BASE_BACKOFF", "10ms"),
                common::CHILD_EXIT_BOUND,
            )
        })
    };
    let out = scan(&["--format", "json", "--log-level", "debug"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 5: the scan itself is fine, its alerts are not delivered.
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let enqueued = report["summary"]["alerts_enqueued"].as_u64().unwrap();
    assert!(enqueued >= 2);
    assert_eq!(report["summary"]["alerts_delivered"], 0);
    assert_eq!(
        report["summary"]["alerts_undelivered"], enqueued,
        "{stdout}"
    );
    assert!(stderr.contains("alert messages not delivered"), "{stderr}");
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
    // The table says so too (the next run tries again, and still cannot deliver).
    let out = scan(&["--format", "table"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("ALERTS NOT DELIVERED"), "{stdout}");
}

/// The killed-sender test's `alerts.lease`.
const SENDER_LEASE: Duration = Duration::from_secs(2);
/// Longest the killed-sender test waits for the first delivery to reach the receiver.
const FIRST_DELIVERY_BOUND: Duration = Duration::from_secs(120);

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
            .env(
                "EPITAPH_ALERTS__LEASE",
                format!("{}s", SENDER_LEASE.as_secs()),
            )
            .env("EPITAPH_ALERTS__REQUEST_TIMEOUT", "60s")
            .env("EPITAPH_ALERTS__FLUSH_TIMEOUT", "60s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut child = ChildGuard::spawn(&mut run(fleet.config_path(), rx.url("/generic")));
    assert!(
        rx.wait_for(1, FIRST_DELIVERY_BOUND).await,
        "first delivery started"
    );
    // SIGKILL while the receiver holds the request: no response, no chance to record anything.
    child.kill();
    drop(child);
    assert_eq!(rx.got().len(), 1);

    // The dead sender's claim, as the store holds it: wait until its lease has run out (the
    // store's own rule: free once `lease_until <= now`), however long the test took so far.
    let store = SqliteStore::open(&fleet.state_path()).await.unwrap();
    let claimed: Vec<OutboxEntry> = store
        .outbox(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.attempts > 0)
        .collect();
    assert_eq!(claimed.len(), 1, "one message was being sent: {claimed:?}");
    assert_eq!(claimed[0].dedup_key, rx.got()[0].idempotency_key);
    let lease_until = claimed[0]
        .lease_until
        .expect("still leased to the dead sender");
    let left = (lease_until - Utc::now()).to_std().unwrap_or_default();
    assert!(
        left <= SENDER_LEASE,
        "leased for {left:?}, configured {SENDER_LEASE:?}"
    );
    tokio::time::sleep(left).await;
    while Utc::now() < lease_until {
        tokio::time::sleep(common::POLL_INTERVAL).await;
    }

    let again = tokio::task::spawn_blocking({
        let cfg = fleet.config_path();
        let url = rx.url("/generic");
        move || common::output_timeout(&mut run(cfg, url), common::CHILD_EXIT_BOUND)
    })
    .await
    .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
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

    // The group now runs only launch template version 11 (a fixed build was rolled out):
    // the fleet's running instances are gone, one of version 11 serves.
    let ec2 = fleet
        .dir
        .path()
        .join("inventory")
        .join("describe-instances.json");
    let text = std::fs::read_to_string(&ec2).unwrap();
    std::fs::write(
        &ec2,
        text.replace("\"Name\": \"running\"", "\"Name\": \"terminated\""),
    )
    .unwrap();
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

/// `alerts.request_timeout` in the hanging-webhook test: longer than the test could ever wait,
/// so only `alerts.flush_timeout` can end the delivery.
const HANGING_REQUEST_TIMEOUT: &str = "1h";
/// Messages the hanging receiver holds (more than any simulated fleet alerts on).
const HANGING_REPLIES: usize = 50;

/// A webhook that accepts the connection and never answers does not hold a cron job: the
/// scan's delivery ends at `alerts.flush_timeout`, the scan exits 5 (alerts undelivered), and
/// what was not delivered waits in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_is_cut_by_the_flush_timeout() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    rx.plan(std::iter::repeat_n(Reply::Hang, HANGING_REPLIES));
    let out = tokio::task::spawn_blocking({
        let cfg = fleet.config_path();
        let url = rx.url("/generic");
        move || {
            common::output_timeout(
                std::process::Command::new(common::bin())
                    .args(["scan", "--format", "json", "--config"])
                    .arg(&cfg)
                    .env("EPITAPH_ALERTS__WEBHOOK_URL", url)
                    .env("EPITAPH_ALERTS__REQUEST_TIMEOUT", HANGING_REQUEST_TIMEOUT)
                    .env("EPITAPH_ALERTS__FLUSH_TIMEOUT", "3s"),
                common::CHILD_EXIT_BOUND,
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["alerts_delivered"], 0);
    assert!(
        report["summary"]["alerts_undelivered"].as_u64().unwrap() >= 1,
        "{}",
        report["summary"]
    );
    assert!(!rx.got().is_empty(), "the receiver was reached (and held)");
}
