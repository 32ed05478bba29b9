//! Several processes on one PostgreSQL state (`state.url`), against a real PostgreSQL 15: a
//! scan stores what the SQLite store would; two `serve` replicas on the same schedule scan
//! each slot once and announce each alert once; a replica killed (SIGKILL) mid-scan or
//! mid-delivery loses nothing, and what it was sending is sent again only under the same
//! idempotency key. Waits are bounded and end on events (a request arriving, rows appearing),
//! never on elapsed time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::{self, Fleet, Receiver, Reply};

const TOKEN: &str = "replica-token";
/// Every second: slots come often enough for a test, and both replicas fire on each.
const EVERY_SECOND: &str = "* * * * * *";
/// Longest a test waits for what the replicas should do (slots claimed, alerts delivered).
/// Generous: a passing run on a busy machine stays far below it.
const PROGRESS_BOUND: Duration = Duration::from_secs(240);
/// Scheduled slots the two-replica test waits for after the alerts went out.
const SLOTS: usize = 4;
/// The outbox lease of the killed-sender test: how long a dead sender's message stays held.
const LEASE: &str = "2s";

fn count_by_key(got: &[common::Got]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in got.iter().filter(|g| g.acked) {
        *m.entry(g.idempotency_key.clone()).or_insert(0) += 1;
    }
    m
}

/// Environment of a replica on `url`, alerting to `webhook`.
fn replica_env(url: &str, webhook: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EPITAPH_STATE__URL", url.to_string()),
        ("EPITAPH_ALERTS__WEBHOOK_URL", webhook.to_string()),
        ("EPITAPH_ALERTS__LEASE", LEASE.to_string()),
        ("EPITAPH_ALERTS__REQUEST_TIMEOUT", "120s".to_string()),
        ("EPITAPH_LOG", "epitaph=info".to_string()),
    ]
}

fn serve(fleet: &Fleet, env: &[(&'static str, String)]) -> common::Serve {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::spawn_serve(fleet, TOKEN, EVERY_SECOND, &env)
}

/// Polls `what` until it returns Some, up to `PROGRESS_BOUND`.
async fn until<T>(label: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PROGRESS_BOUND;
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: not within {PROGRESS_BOUND:?}"
        );
        tokio::time::sleep(common::POLL_INTERVAL * 5).await;
    }
}

/// Stops a replica with SIGTERM; what it printed.
async fn stop(mut s: common::Serve) -> String {
    s.process.terminate();
    tokio::task::spawn_blocking(move || {
        let (status, stderr) = s.wait_or_panic(common::CHILD_EXIT_BOUND);
        assert!(status.success(), "replica exit {status:?}:\n{stderr}");
        stderr
    })
    .await
    .unwrap()
}

/// Slots a replica's log (JSON lines: stderr is not a terminal) says it scanned.
fn slots_scanned(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "scheduled scan: this replica took the slot")
        .map(|v| v["fields"]["slot"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_scan_on_postgres_stores_what_sqlite_stores() {
    let fleet = Fleet::new(11, 4, 40);
    let url = crate::pg::postgres().database();
    let scan = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["scan", "--format", "json", "--config"])
            .arg(fleet.config_path())
            .env_remove("EPITAPH_STATE__URL");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = common::output_timeout(&mut c, common::CHILD_EXIT_BOUND);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let on_pg = scan(&[("EPITAPH_STATE__URL", &url)]);
    let on_sqlite = scan(&[]);
    for key in ["instances", "deployments"] {
        assert_eq!(on_pg[key], on_sqlite[key], "{key} differ");
    }
    let terminations = fleet.truth.instances.len();
    assert!(terminations > 0);
    let pg = crate::pg::postgres();
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM instances"),
        terminations.to_string()
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM runs WHERE complete"),
        "1"
    );
    // A second scan of the same window on Postgres analyses nothing again.
    let again = scan(&[("EPITAPH_STATE__URL", &url)]);
    assert_eq!(again["summary"]["analysed"], 0, "{}", again["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_scan_each_slot_once_and_alert_once() {
    let fleet = Fleet::new(12, 6, 60);
    let expected = fleet.alerting_deployments().len();
    assert!(expected > 0);
    let url = crate::pg::postgres().database();
    let rx = Receiver::start().await;
    let env = replica_env(&url, &rx.url("/generic"));
    let a = serve(&fleet, &env);
    let b = serve(&fleet, &env);
    let pg = crate::pg::postgres();

    until("every alert delivered", || {
        (count_by_key(&rx.got()).len() >= expected).then_some(())
    })
    .await;
    // Some more slots with both replicas up and nothing new to say.
    let claimed_then: usize = pg
        .psql(&url, "SELECT count(*) FROM scan_slots")
        .parse()
        .unwrap();
    until("more slots claimed", || {
        let n: usize = pg
            .psql(&url, "SELECT count(*) FROM scan_slots")
            .parse()
            .unwrap();
        (n >= claimed_then + SLOTS).then_some(())
    })
    .await;
    let (log_a, log_b) = (stop(a).await, stop(b).await);

    let counts = count_by_key(&rx.got());
    assert_eq!(
        counts.len(),
        expected,
        "one alert per deployment: {counts:?}"
    );
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
    let (scanned_a, scanned_b) = (slots_scanned(&log_a), slots_scanned(&log_b));
    assert!(
        scanned_a.is_disjoint(&scanned_b),
        "a slot scanned twice: {:?}",
        scanned_a.intersection(&scanned_b).collect::<Vec<_>>()
    );
    let claimed: usize = pg
        .psql(&url, "SELECT count(*) FROM scan_slots")
        .parse()
        .unwrap();
    assert_eq!(
        scanned_a.len() + scanned_b.len(),
        claimed,
        "every claimed slot scanned by its owner, and only by it"
    );
    // The schedule fired on both: each took slots, yielded them, or was still scanning.
    for (name, log) in [("a", &log_a), ("b", &log_b)] {
        assert!(
            [
                "this replica took the slot",
                "another replica took this slot",
                "a scan is already running"
            ]
            .iter()
            .any(|m| log.contains(m)),
            "replica {name} never fired:\n{log}"
        );
    }
    // A run per scanned slot (a scan interrupted by the stop may not have recorded its own).
    let runs: usize = pg.psql(&url, "SELECT count(*) FROM runs").parse().unwrap();
    assert!(
        runs <= claimed && runs + 2 >= claimed,
        "runs {runs}, slots {claimed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_scan_loses_nothing() {
    let fleet = Fleet::new(13, 6, 60);
    let expected = fleet.alerting_deployments().len();
    let url = crate::pg::postgres().database();
    let rx = Receiver::start().await;
    // Replica A reads memory from a Prometheus that never answers: its scan stops there.
    rx.plan([Reply::Hang]);
    let mut env_a = replica_env(&url, &rx.url("/generic"));
    env_a.extend([
        ("EPITAPH_SOURCES__METRICS__KIND", "prometheus".to_string()),
        (
            "EPITAPH_SOURCES__METRICS__PROMETHEUS__URL",
            rx.url("/prometheus"),
        ),
        (
            "EPITAPH_SOURCES__METRICS__PROMETHEUS__TIMEOUT",
            "600s".to_string(),
        ),
    ]);
    let mut a = serve(&fleet, &env_a);
    until("replica A mid-scan", || {
        rx.got()
            .iter()
            .any(|g| g.path.starts_with("/prometheus/"))
            .then_some(())
    })
    .await;
    let pg = crate::pg::postgres();
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM runs"), "0");
    a.process.kill();
    drop(a);

    // Replica B, reading the exports, takes the next slot and covers the window.
    let b = serve(&fleet, &replica_env(&url, &rx.url("/generic")));
    until("every alert delivered", || {
        (count_by_key(&rx.got_on("/generic")).len() >= expected).then_some(())
    })
    .await;
    let log_b = stop(b).await;
    assert!(!slots_scanned(&log_b).is_empty(), "{log_b}");
    let counts = count_by_key(&rx.got_on("/generic"));
    assert_eq!(counts.len(), expected, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM instances"),
        fleet.truth.instances.len().to_string(),
        "every termination analysed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_delivery_loses_nothing_and_another_finishes() {
    let fleet = Fleet::new(14, 6, 60);
    let expected = fleet.alerting_deployments().len();
    assert!(expected > 1);
    let url = crate::pg::postgres().database();
    let rx = Receiver::start().await;
    // Replica A's first delivery hangs; A is killed while the receiver holds the request (it
    // never learns the outcome). Replica B is started on the same database only then, so that
    // which replica holds the message is known without racing its lease.
    rx.plan([Reply::Hang]);
    let env = replica_env(&url, &rx.url("/generic"));
    let mut a = serve(&fleet, &env);
    until("first delivery started", || {
        (!rx.got().is_empty()).then_some(())
    })
    .await;
    let held = rx.got()[0].idempotency_key.clone();
    a.process.kill();
    drop(a);

    // B finds A's alerts committed (it enqueues nothing again), takes the held message over
    // once A's lease ran out, and sends what A had not.
    let b = serve(&fleet, &env);
    until("every alert acknowledged", || {
        (count_by_key(&rx.got()).len() >= expected).then_some(())
    })
    .await;
    let log = stop(b).await;
    let got = rx.got();
    let counts = count_by_key(&got);
    assert_eq!(counts.len(), expected, "{counts:?}\n{log}");
    assert!(
        counts.values().all(|n| *n == 1),
        "acknowledged once each: {counts:?}"
    );
    assert_eq!(
        got.len(),
        expected + 1,
        "only the interrupted one was sent again: {got:?}"
    );
    assert_eq!(
        counts.get(&held),
        Some(&1),
        "the held one, resent under its key"
    );
    let pg = crate::pg::postgres();
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM outbox WHERE status <> 'delivered'"
        ),
        "0"
    );
}
