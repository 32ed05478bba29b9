//! The alert promises of README.md ("Alerts") end to end, against a local webhook receiver on
//! simulated fleets whose exports are changed between scans: `changed` is sent at once when
//! the severity rises and only after `alerts.cooldown` when it falls; `verdict_cleared` when the
//! verdict leaves the alerting set; a 4xx reply fails a message at once (no retry); after
//! `max_attempts` a message is `failed` and stays visible in `/v1/findings`. Every body is
//! checked against the documented `AlertV1` schema.

use crate::common;
use crate::contracts::{Schemas, Service};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Fleet, Receiver, Reply};
use epitaph::config::Config;
use epitaph::pipeline::{Pipeline, ScanOptions, ScanReport};

const LEAKING: &str = "checkout-api:10";

async fn pipeline(fleet: &Fleet) -> Pipeline {
    let cfg = Config::load(Some(&fleet.config_path())).unwrap();
    Pipeline::open(cfg).await.unwrap()
}

fn metrics_file(fleet: &Fleet) -> std::path::PathBuf {
    fleet.dir.path().join("metrics/checkout-api.csv")
}

/// Flattens the checkout-api group's memory series at 40 %: no leak left in them.
fn flatten_metrics(fleet: &Fleet) {
    let text = std::fs::read_to_string(metrics_file(fleet)).unwrap();
    let flat: String = text
        .lines()
        .map(|l| match l.rsplit_once(',') {
            Some((head, _)) if !l.starts_with("timestamp") => format!("{head},40.00\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(metrics_file(fleet), flat).unwrap();
}

/// The same window again, re-reading the (changed) exports.
fn rescan(first: &ScanReport, later: chrono::Duration) -> ScanOptions {
    ScanOptions {
        since: Some(first.window.start),
        until: Some(first.window.end + later),
        refresh: true,
        ..Default::default()
    }
}

fn verdict_of(report: &ScanReport, deployment: &str) -> String {
    report
        .deployments
        .iter()
        .find(|f| f.deployment == deployment)
        .map(|f| f.verdict.as_str().to_string())
        .unwrap_or_else(|| panic!("no finding for {deployment}"))
}

fn bodies_for(rx: &Receiver, deployment: &str) -> Vec<serde_json::Value> {
    rx.got()
        .into_iter()
        .filter(|g| g.acked && g.body["deployment"] == deployment)
        .map(|g| {
            assert_eq!(g.body["id"].as_str().unwrap(), g.idempotency_key);
            g.body
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_is_sent_at_once_on_a_rise_and_after_the_cooldown_on_a_fall() {
    let schemas = Schemas::load();
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\ncooldown = \"1h\"\n",
        rx.url("/generic")
    ));
    let leaky_metrics = std::fs::read_to_string(metrics_file(&fleet)).unwrap();
    flatten_metrics(&fleet);
    let p = pipeline(&fleet).await;

    // Without the leak in its series the deployment fires as oom_without_leak.
    let first = p.scan(&ScanOptions::default()).await.unwrap();
    assert_eq!(verdict_of(&first, LEAKING), "oom_without_leak");
    p.deliver_alerts(None).await.unwrap();
    let sent = bodies_for(&rx, LEAKING);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["kind"], "firing");
    assert_eq!(sent[0]["verdict"], "oom_without_leak");

    // The leak shows up (same window, so well within the cooldown): a rise is sent at once.
    std::fs::write(metrics_file(&fleet), &leaky_metrics).unwrap();
    let rise = p
        .scan(&rescan(&first, chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(verdict_of(&rise, LEAKING), "leaking");
    assert_eq!(rise.summary.alerts_enqueued, 1, "only the rise");
    p.deliver_alerts(None).await.unwrap();
    let sent = bodies_for(&rx, LEAKING);
    assert_eq!(sent.len(), 2);
    let changed = &sent[1];
    schemas.assert_named("AlertV1", changed);
    assert_eq!(changed["kind"], "changed");
    assert_eq!(changed["previous_verdict"], "oom_without_leak");
    assert_eq!(changed["verdict"], "leaking");
    assert!(changed["resolved_reason"].is_null());
    assert_eq!(
        changed["id"],
        "checkout-api:10#1#changed#oom_without_leak>leaking"
    );

    // It falls back within the cooldown: nothing is sent...
    flatten_metrics(&fleet);
    let fall = p
        .scan(&rescan(&first, chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(verdict_of(&fall, LEAKING), "oom_without_leak");
    assert_eq!(
        fall.summary.alerts_enqueued, 0,
        "a fall waits for the cooldown"
    );
    p.deliver_alerts(None).await.unwrap();
    assert_eq!(bodies_for(&rx, LEAKING).len(), 2);

    // ...until the cooldown has passed (alerting judges at the window's end: an hour later).
    let later = p
        .scan(&rescan(&first, chrono::Duration::minutes(61)))
        .await
        .unwrap();
    assert_eq!(verdict_of(&later, LEAKING), "oom_without_leak");
    p.deliver_alerts(None).await.unwrap();
    let sent = bodies_for(&rx, LEAKING);
    assert_eq!(sent.len(), 3, "{sent:#?}");
    schemas.assert_named("AlertV1", &sent[2]);
    assert_eq!(sent[2]["kind"], "changed");
    assert_eq!(sent[2]["previous_verdict"], "leaking");
    assert_eq!(sent[2]["verdict"], "oom_without_leak");
    // And not again.
    let again = p
        .scan(&rescan(&first, chrono::Duration::minutes(62)))
        .await
        .unwrap();
    p.deliver_alerts(None).await.unwrap();
    assert_eq!(bodies_for(&rx, LEAKING).len(), 3, "{:?}", again.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_cleared_when_the_verdict_leaves_the_alerting_set() {
    let schemas = Schemas::load();
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\ncooldown = \"0s\"\n",
        rx.url("/generic")
    ));
    let p = pipeline(&fleet).await;
    let first = p.scan(&ScanOptions::default()).await.unwrap();
    assert_eq!(verdict_of(&first, LEAKING), "leaking");
    p.deliver_alerts(None).await.unwrap();
    assert_eq!(bodies_for(&rx, LEAKING)[0]["kind"], "firing");

    // Its instances' last words and leak vanish from the exports: the evidence for an OOM is
    // gone, so the deployment's verdict is no longer one that alerts (it still has deaths in
    // the window, and its group still runs it: neither stopped_dying nor replaced).
    let ids: Vec<String> = first
        .instances
        .iter()
        .filter(|i| i.deployment == LEAKING)
        .map(|i| i.instance_id.clone())
        .collect();
    let logs = fleet.dir.path().join("logs/checkout-api.jsonl");
    let kept: String = std::fs::read_to_string(&logs)
        .unwrap()
        .lines()
        .filter(|l| !ids.iter().any(|id| l.contains(id.as_str())))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&logs, kept).unwrap();
    flatten_metrics(&fleet);

    let r = p
        .scan(&rescan(&first, chrono::Duration::zero()))
        .await
        .unwrap();
    let now = verdict_of(&r, LEAKING);
    assert!(
        !["leaking", "oom_without_leak"].contains(&now.as_str()),
        "{now}"
    );
    p.deliver_alerts(None).await.unwrap();
    let sent = bodies_for(&rx, LEAKING);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let resolved = &sent[1];
    schemas.assert_named("AlertV1", resolved);
    assert_eq!(resolved["kind"], "resolved");
    assert_eq!(resolved["resolved_reason"], "verdict_cleared");
    assert_eq!(
        resolved["verdict"], "leaking",
        "the verdict that was firing"
    );
    // Only once.
    let again = p
        .scan(&rescan(&first, chrono::Duration::zero()))
        .await
        .unwrap();
    assert_eq!(again.summary.alerts_enqueued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_fails_at_once_and_max_attempts_ends_failed_visible_in_findings() {
    let schemas = Schemas::load();
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    let expected = fleet.alerting_deployments().len();
    assert!(expected >= 2);
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nmax_attempts = 3\nbase_backoff = \"10ms\"\nmax_backoff = \"20ms\"\n",
        rx.url("/generic")
    ));
    // The first request is refused (410 Gone: the webhook was deleted); every other one fails
    // with a 500, which is retried until max_attempts.
    rx.plan(
        std::iter::once(Reply::Status(410, None))
            .chain(std::iter::repeat_n(Reply::Status(500, None), 100)),
    );
    let svc = Service::start(&fleet, &[("EPITAPH_SERVE__DELIVERY_INTERVAL", "100ms")]).await;
    let (code, body) = svc.call(reqwest::Method::POST, "/v1/scans?wait=true").await;
    assert_eq!(code, 200, "{body}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let (code, v) = svc.get_json("/v1/findings").await;
        assert_eq!(code, 200);
        let m = v["recent_messages"].as_array().unwrap().clone();
        if m.len() == expected && m.iter().all(|e| e["status"] == "failed") {
            break m;
        }
        assert!(Instant::now() < deadline, "not all failed: {m:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for g in rx.got() {
        *requests.entry(g.idempotency_key).or_insert(0) += 1;
    }
    let refused = rx.got()[0].idempotency_key.clone();
    for m in &messages {
        schemas.assert_named("OutboxEntry", m);
        let key = m["dedup_key"].as_str().unwrap();
        assert!(m["last_error"].is_string(), "{m}");
        assert!(m["delivered_at"].is_null(), "{m}");
        if key == refused {
            assert_eq!(m["attempts"], 1, "a 4xx is not retried: {m}");
            assert_eq!(requests[key], 1, "{requests:?}");
            assert!(m["last_error"].as_str().unwrap().contains("410"), "{m}");
        } else {
            assert_eq!(m["attempts"], 3, "retried until max_attempts: {m}");
            assert_eq!(requests[key], 3, "{requests:?}");
        }
    }
    // The service's metrics agree.
    let (code, text) = svc.call(reqwest::Method::GET, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        text.lines().any(
            |l| l.starts_with("epitaph_outbox_messages{status=\"failed\"}")
                && l.ends_with(&format!(" {expected}"))
        ),
        "{text}"
    );
}
