//! The state store's contracts, checked on both implementations — SQLite (two handles on one
//! file, as two processes on one host) and PostgreSQL (two pools on one database of a real
//! PostgreSQL 15, as two replicas): versioned alert commits (a stale writer writes nothing),
//! one outbox message per (dedup key, sink), leases that two claimers cannot both win and that
//! run out at their end, retries at their time, one scheduled scan per slot, records that
//! come back as they went in, compact rows saved with their reports and judged as the reports
//! would be, retention pruning by age in bounded steps, and a store written by the schema
//! before compact rows upgraded in place. Every time is explicit: no wall clock and no
//! interleaving decides an outcome.

use chrono::{DateTime, TimeZone, Utc};
use epitaph::analysis::alerting::AlertState;
use epitaph::analysis::correlate::{judge_deployments, FindingPolicy};
use epitaph::model::{
    CauseCategory, DeploymentVerdict, InstanceFacts, InstanceInfo, InstanceReport, InstanceVerdict,
    LastWords, LeakAssessment, LeakVerdict, LogEvent, MemorySeries, SignatureKind, SignatureMatch,
    Termination, TimeWindow,
};
use epitaph::store::{
    AlertChange, DeliveryOutcome, OutboxEntry, OutboxMessage, PgStore, SqliteStore, Store,
};

/// Two handles on one store, and what must outlive them.
struct Pair {
    _keep: Option<tempfile::TempDir>,
    a: Box<dyn Store>,
    b: Box<dyn Store>,
}

async fn sqlite_pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    Pair {
        _keep: Some(dir),
        a: Box::new(a),
        b: Box::new(b),
    }
}

/// Two pools on a fresh database, opened at once: both run the migrations, which apply once.
async fn postgres_pair() -> Pair {
    let url = crate::pg::postgres().database();
    let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
    Pair {
        _keep: None,
        a: Box::new(a.unwrap()),
        b: Box::new(b.unwrap()),
    }
}

/// Each contract as two tests, `<contract>::sqlite` and `<contract>::postgres`.
macro_rules! on_both_stores {
    ($($contract:ident),* $(,)?) => {$(
        mod $contract {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let p = super::sqlite_pair().await;
                super::$contract(&*p.a, &*p.b).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let p = super::postgres_pair().await;
                super::$contract(&*p.a, &*p.b).await
            }
        }
    )*};
}

on_both_stores!(
    a_second_creation_of_one_state_is_refused_and_writes_nothing,
    a_stale_version_is_refused_and_the_writer_decides_again,
    of_two_writers_committing_on_one_version_exactly_one_wins,
    a_message_is_enqueued_once_per_dedup_key_and_sink,
    of_two_claimers_one_gets_the_message,
    a_lease_runs_out_at_its_end_and_the_old_holder_cannot_finish,
    a_retry_waits_for_its_time_and_a_failure_is_final,
    one_scheduled_scan_per_slot,
    records_come_back_as_they_went_in,
    compact_rows_are_saved_with_their_reports,
    a_lookback_fingerprint_changes_with_its_rows_only,
    retention_prunes_the_oldest_first_in_bounded_steps,
    input_stamps_are_replaced_per_reader,
);

/// A lease as long as the default `alerts.lease`.
const LEASE: chrono::Duration = chrono::Duration::minutes(1);
/// The smallest step the store keeps (times are stored with millisecond precision).
const TICK: chrono::Duration = chrono::Duration::milliseconds(1);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn state(deployment: &str, version: i64, episode: u32) -> AlertState {
    AlertState {
        deployment: deployment.into(),
        firing: Some(DeploymentVerdict::Leaking),
        episode,
        last_sent_at: t0(),
        version,
    }
}

fn change(expected_version: Option<i64>, state: AlertState) -> AlertChange {
    AlertChange {
        expected_version,
        state,
    }
}

fn msg(key: &str, deployment: &str) -> OutboxMessage {
    OutboxMessage {
        dedup_key: key.into(),
        sink: "webhook".into(),
        deployment: deployment.into(),
        kind: "firing".into(),
        alert_json: "{}".into(),
    }
}

async fn keys(store: &dyn Store) -> Vec<String> {
    let mut k: Vec<String> = store
        .outbox(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.dedup_key)
        .collect();
    k.sort();
    k
}

async fn a_second_creation_of_one_state_is_refused_and_writes_nothing(
    a: &dyn Store,
    b: &dyn Store,
) {
    let first = [change(None, state("web:1", 1, 1))];
    assert!(a
        .commit_alerts(&first, &[msg("web:1/1", "web:1")], t0())
        .await
        .unwrap());
    // B read "no state" before A's commit: its creation is stale, and nothing of its
    // commit is written — not even the change and message for a deployment nobody else
    // touched, which come first.
    let late = [
        change(None, state("api:1", 1, 1)),
        change(None, state("web:1", 1, 7)),
    ];
    let enqueued = [msg("api:1/1", "api:1"), msg("web:1/7", "web:1")];
    assert!(!b.commit_alerts(&late, &enqueued, t0()).await.unwrap());
    let states = b.alert_states().await.unwrap();
    assert_eq!(states, vec![state("web:1", 1, 1)]);
    assert_eq!(keys(b).await, vec!["web:1/1"]);
}

async fn a_stale_version_is_refused_and_the_writer_decides_again(a: &dyn Store, b: &dyn Store) {
    assert!(a
        .commit_alerts(&[change(None, state("web:1", 1, 1))], &[], t0())
        .await
        .unwrap());
    // Both writers read version 1.
    let read_a = a.alert_states().await.unwrap();
    let read_b = b.alert_states().await.unwrap();
    assert_eq!(read_a, read_b);
    let v = read_a[0].version;
    assert!(a
        .commit_alerts(
            &[change(Some(v), state("web:1", v + 1, 2))],
            &[msg("web:1/2", "web:1")],
            t0()
        )
        .await
        .unwrap());
    // B commits on the version it read: refused, nothing written (not even its fresh
    // change, which comes first).
    let stale = [
        change(None, state("api:1", 1, 1)),
        change(Some(v), state("web:1", v + 1, 3)),
    ];
    assert!(!b
        .commit_alerts(
            &stale,
            &[msg("api:1/1", "api:1"), msg("web:1/3", "web:1")],
            t0()
        )
        .await
        .unwrap());
    assert_eq!(b.alert_states().await.unwrap(), vec![state("web:1", 2, 2)]);
    assert_eq!(keys(b).await, vec!["web:1/2"]);
    // Deciding again on what it re-reads: B's commit goes through.
    let now_at = b.alert_states().await.unwrap()[0].version;
    assert_eq!(now_at, v + 1);
    assert!(b
        .commit_alerts(
            &[
                change(Some(now_at), state("web:1", now_at + 1, 3)),
                change(None, state("api:1", 1, 1)),
            ],
            &[msg("web:1/3", "web:1"), msg("api:1/1", "api:1")],
            t0()
        )
        .await
        .unwrap());
    assert_eq!(
        a.alert_states().await.unwrap(),
        vec![state("api:1", 1, 1), state("web:1", 3, 3)]
    );
    assert_eq!(keys(a).await, vec!["api:1/1", "web:1/2", "web:1/3"]);
}

async fn of_two_writers_committing_on_one_version_exactly_one_wins(a: &dyn Store, b: &dyn Store) {
    assert!(a
        .commit_alerts(&[change(None, state("web:1", 1, 1))], &[], t0())
        .await
        .unwrap());
    // However the two interleave, exactly one applies on version 1.
    let (change_a, change_b) = (
        [change(Some(1), state("web:1", 2, 2))],
        [change(Some(1), state("web:1", 2, 3))],
    );
    let (msg_a, msg_b) = ([msg("a", "web:1")], [msg("b", "web:1")]);
    let (ra, rb) = tokio::join!(
        a.commit_alerts(&change_a, &msg_a, t0()),
        b.commit_alerts(&change_b, &msg_b, t0()),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra != rb, "exactly one wins: a {ra}, b {rb}");
    let winner = if ra { "a" } else { "b" };
    assert_eq!(keys(a).await, vec![winner]);
    let episode = a.alert_states().await.unwrap()[0].episode;
    assert_eq!(episode, if ra { 2 } else { 3 });
}

async fn a_message_is_enqueued_once_per_dedup_key_and_sink(store: &dyn Store, _: &dyn Store) {
    let mut slack = msg("web:1/1", "web:1");
    slack.sink = "slack".into();
    for _ in 0..2 {
        assert!(store
            .commit_alerts(&[], &[msg("web:1/1", "web:1"), slack.clone()], t0())
            .await
            .unwrap());
    }
    let sinks: Vec<String> = store
        .outbox(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.sink)
        .collect();
    assert_eq!(sinks, vec!["slack", "webhook"]);
}

async fn of_two_claimers_one_gets_the_message(a: &dyn Store, b: &dyn Store) {
    assert!(a
        .commit_alerts(&[], &[msg("web:1/1", "web:1")], t0())
        .await
        .unwrap());
    let (ca, cb) = tokio::join!(
        a.claim_outbox("a", t0(), t0() + LEASE),
        b.claim_outbox("b", t0(), t0() + LEASE),
    );
    let got: Vec<OutboxEntry> = [ca.unwrap(), cb.unwrap()].into_iter().flatten().collect();
    assert_eq!(got.len(), 1, "one claimer wins: {got:?}");
    assert_eq!(got[0].attempts, 1);
    assert_eq!(got[0].lease_until, Some(t0() + LEASE));
    // Nor does the holder take it twice.
    for s in [a, b] {
        assert!(s
            .claim_outbox("a", t0(), t0() + LEASE)
            .await
            .unwrap()
            .is_none());
    }
}

async fn a_lease_runs_out_at_its_end_and_the_old_holder_cannot_finish(
    a: &dyn Store,
    b: &dyn Store,
) {
    assert!(a
        .commit_alerts(&[], &[msg("web:1/1", "web:1")], t0())
        .await
        .unwrap());
    let held = a
        .claim_outbox("a", t0(), t0() + LEASE)
        .await
        .unwrap()
        .unwrap();
    let end = t0() + LEASE;
    // Held until the lease's last millisecond…
    assert!(b
        .claim_outbox("b", end - TICK, end - TICK + LEASE)
        .await
        .unwrap()
        .is_none());
    // …free at its end: A died (or is slow); B takes over, counting a second attempt.
    let taken = b
        .claim_outbox("b", end, end + LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.attempts), (held.id, 2));
    assert_eq!(taken.lease_until, Some(end + LEASE));
    // A's late outcome is not recorded; B's is, and clears the lease.
    assert!(!a
        .finish_outbox(held.id, "a", &DeliveryOutcome::Delivered, end)
        .await
        .unwrap());
    assert_eq!(a.outbox(1).await.unwrap()[0].status, "pending");
    let done = end + TICK;
    assert!(b
        .finish_outbox(taken.id, "b", &DeliveryOutcome::Delivered, done)
        .await
        .unwrap());
    let e = &a.outbox(1).await.unwrap()[0];
    assert_eq!(e.status, "delivered");
    assert_eq!(e.delivered_at, Some(done));
    assert_eq!(e.lease_until, None);
    // Delivered: never claimed again, whatever the time.
    assert!(a
        .claim_outbox("a", done + LEASE * 10, done + LEASE * 11)
        .await
        .unwrap()
        .is_none());
}

async fn a_retry_waits_for_its_time_and_a_failure_is_final(store: &dyn Store, _: &dyn Store) {
    assert!(store
        .commit_alerts(
            &[],
            &[msg("web:1/1", "web:1"), msg("api:1/1", "api:1")],
            t0()
        )
        .await
        .unwrap());
    let first = store
        .claim_outbox("a", t0(), t0() + LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.dedup_key, "web:1/1", "oldest first");
    let at = t0() + chrono::Duration::seconds(30);
    let retry = DeliveryOutcome::Retry {
        at,
        error: "HTTP 500: oops".into(),
    };
    assert!(store
        .finish_outbox(first.id, "a", &retry, t0())
        .await
        .unwrap());
    let e = store.outbox(10).await.unwrap().pop().unwrap();
    assert_eq!(
        (e.status.as_str(), e.next_attempt_at, e.lease_until),
        ("pending", at, None)
    );
    assert_eq!(e.last_error.as_deref(), Some("HTTP 500: oops"));

    // Before its retry time only the other message is due.
    let second = store
        .claim_outbox("a", at - TICK, at - TICK + LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.dedup_key, "api:1/1");
    let failed = DeliveryOutcome::Failed {
        error: "HTTP 404: no_service".into(),
    };
    assert!(store
        .finish_outbox(second.id, "a", &failed, at - TICK)
        .await
        .unwrap());
    assert!(store
        .claim_outbox("a", at - TICK, at + LEASE)
        .await
        .unwrap()
        .is_none());
    // At its time the retry is due, with its attempts counted; the failure never is.
    let again = store
        .claim_outbox("a", at, at + LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(store
        .finish_outbox(again.id, "a", &DeliveryOutcome::Delivered, at)
        .await
        .unwrap());
    assert!(store
        .claim_outbox("a", at + LEASE * 10, at + LEASE * 11)
        .await
        .unwrap()
        .is_none());
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!(
        counts,
        [("delivered".to_string(), 1), ("failed".to_string(), 1)].into()
    );
    let failed = store
        .outbox(10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.status == "failed")
        .unwrap();
    assert_eq!(failed.last_error.as_deref(), Some("HTTP 404: no_service"));
    assert_eq!(failed.delivered_at, None);
}

async fn one_scheduled_scan_per_slot(a: &dyn Store, b: &dyn Store) {
    let slot = t0();
    let next = t0() + chrono::Duration::minutes(5);
    // Both replicas wake for the same slot at once: one takes it.
    let (ra, rb) = tokio::join!(
        a.claim_scan_slot(slot, "a", t0()),
        b.claim_scan_slot(slot, "b", t0()),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra != rb, "exactly one takes the slot: a {ra}, b {rb}");
    // Nor does anyone take it later (a replica whose clock is behind, a restart).
    for (s, owner) in [(a, "a"), (b, "b")] {
        assert!(!s.claim_scan_slot(slot, owner, t0() + LEASE).await.unwrap());
    }
    // The next slot is free again, whoever took the last one.
    assert!(b.claim_scan_slot(next, "b", next).await.unwrap());
    assert!(!a.claim_scan_slot(next, "a", next).await.unwrap());
}

/// What a log line can carry comes back unchanged: a NUL (PostgreSQL's text types refuse the
/// byte, and jsonb the `\u0000` escape), other controls, astral-plane characters, quotes.
async fn records_come_back_as_they_went_in(a: &dyn Store, b: &dyn Store) {
    let odd = "FATAL\u{0}: heap \"out\" of memory \u{1b}[31m 💥 \\ \u{7f}";
    let termination = Termination {
        instance_id: "i-0123456789abcdef0".into(),
        asg: "web-asg".into(),
        time: t0(),
        end_time: Some(t0() + chrono::Duration::milliseconds(1500)),
        cause: CauseCategory::HealthCheck,
        cause_text: odd.into(),
        description: "Terminating EC2 instance: i-0123456789abcdef0".into(),
        activity_id: Some("a1".into()),
        status: None,
        origin: Some("123456789012/eu-west-1".into()),
    };
    a.save_pending(&termination, odd).await.unwrap();
    a.save_pending(&termination, "second").await.unwrap();
    let pending = b.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].termination, termination);
    assert_eq!(
        (pending[0].attempts, pending[0].last_error.as_str()),
        (2, "second")
    );

    let info = InstanceInfo {
        instance_id: termination.instance_id.clone(),
        asg: Some("web-asg".into()),
        launch_time: Some(t0() - chrono::Duration::hours(3)),
        launch_template: None,
        launch_configuration: None,
        availability_zone: Some("eu-west-1a".into()),
        tags: [("Name".to_string(), odd.to_string())].into(),
        private_dns: None,
        private_ip: None,
        lifecycle_state: Some("Terminating".into()),
        ec2_state: Some("shutting-down".into()),
        origin: None,
    };
    a.save_inventory(std::slice::from_ref(&info)).await.unwrap();
    let ids = [info.instance_id.clone(), "i-unknown".to_string()];
    let got = b.inventory(&ids).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[&info.instance_id].tags, info.tags);
    assert_eq!(got[&info.instance_id].launch_time, info.launch_time);

    let mut message = msg("web:1/1", "web:1");
    message.alert_json = serde_json::json!({ "text": odd }).to_string();
    assert!(a
        .commit_alerts(&[], &[message.clone()], t0())
        .await
        .unwrap());
    let entry: OutboxEntry = b.outbox(1).await.unwrap().pop().unwrap();
    assert_eq!(entry.alert_json, message.alert_json, "kept byte for byte");
    assert_eq!(entry.created_at, t0());
    assert_eq!(
        b.outbox_counts().await.unwrap(),
        [("pending".to_string(), 1)].into()
    );
    assert_eq!(a.watermark().await.unwrap(), None);
}

/// A report with everything the store keeps: signatures, a leak assessment, last words with
/// an odd line, a series at millisecond times.
fn report(
    id: &str,
    deployment: &str,
    hours_after_t0: i64,
    verdict: InstanceVerdict,
) -> InstanceReport {
    let terminated_at = t0() + chrono::Duration::hours(hours_after_t0);
    let launch = terminated_at - chrono::Duration::hours(10);
    let oom = verdict.is_memory_death();
    InstanceReport {
        instance_id: id.into(),
        deployment: deployment.into(),
        asg: "web-asg".into(),
        terminated_at,
        cause: CauseCategory::HealthCheck,
        cause_text: "At 2026-01-01T12:00:00Z an instance was taken out of service".into(),
        launch_time: (hours_after_t0 % 2 == 0).then_some(launch),
        verdict,
        explanation: "died".into(),
        signatures: if oom {
            vec![
                SignatureMatch {
                    signature: "node.heap_oom".into(),
                    runtime: "node".into(),
                    kind: SignatureKind::Oom,
                    line: 1,
                    text: "FATAL ERROR: heap out of memory \u{0}".into(),
                    details: Default::default(),
                },
                SignatureMatch {
                    signature: "linux.oom_killer".into(),
                    runtime: "linux".into(),
                    kind: SignatureKind::Oom,
                    line: 1,
                    text: "Out of memory: Killed process".into(),
                    details: [("pid".to_string(), "42".to_string())].into(),
                },
            ]
        } else {
            vec![]
        },
        leak: oom.then(|| LeakAssessment {
            verdict: LeakVerdict::Leak,
            growth_per_hour: Some(2.5 + hours_after_t0 as f64),
            growth_fraction_of_limit_per_hour: Some(0.025),
            confidence: 0.99,
            projected_exhaustion: Some(terminated_at + chrono::Duration::minutes(30)),
            reached_limit: true,
            final_peak: Some(97.5),
            basis_start: Some(launch),
            basis_end: Some(terminated_at),
            points_used: 120,
            reason: "floor rose".into(),
            gaps: 0,
            segments: vec![],
        }),
        last_words: LastWords {
            events: vec![
                LogEvent {
                    timestamp: terminated_at - chrono::Duration::seconds(5),
                    message: "GET / 200 💥".into(),
                },
                LogEvent {
                    timestamp: terminated_at - chrono::Duration::milliseconds(1),
                    message: "FATAL ERROR: heap out of memory \u{0}".into(),
                },
            ],
            last_event_at: Some(terminated_at - chrono::Duration::milliseconds(1)),
            truncated: false,
        },
        memory: MemorySeries {
            points: (0..120)
                .map(|i| {
                    (
                        launch + chrono::Duration::seconds(300 * i + 1) + TICK * (i as i32 % 3),
                        // Exact in binary: JSON (the old rows, and the packed series) keeps a
                        // decimal that is not to the last bit.
                        40.0 + i as f64 * 0.25,
                    )
                })
                .collect(),
            limit: Some(100.0),
            labels: [("InstanceId".to_string(), id.to_string())].into(),
        },
    }
}

fn fleet() -> Vec<InstanceReport> {
    vec![
        report("i-a", "web:1", 1, InstanceVerdict::OomLeak),
        report("i-b", "web:1", 2, InstanceVerdict::OomLeak),
        report("i-c", "web:0", -20, InstanceVerdict::NotACrash),
        report("i-d", "web:1", 3, InstanceVerdict::Unknown),
    ]
}

fn all_time() -> TimeWindow {
    TimeWindow {
        start: t0() - chrono::Duration::days(365),
        end: t0() + chrono::Duration::days(365),
    }
}

fn facts_of(reports: &[InstanceReport]) -> Vec<InstanceFacts> {
    let mut facts: Vec<InstanceFacts> = reports.iter().map(InstanceFacts::of).collect();
    facts.sort_by(|a, b| (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id)));
    facts
}

/// save_instances writes the compact rows with the reports; they come back in time order and
/// judge as the reports do; full reports come back whole, by id.
async fn compact_rows_are_saved_with_their_reports(a: &dyn Store, b: &dyn Store) {
    let reports = fleet();
    a.save_instances(&reports).await.unwrap();
    let facts = b.facts_in(all_time()).await.unwrap();
    assert_eq!(facts, facts_of(&reports));
    let deployments = judge_deployments(&facts, FindingPolicy::default());
    assert_eq!(deployments[0].deployment, "web:1");
    assert_eq!(deployments[0].verdict, DeploymentVerdict::Leaking);
    assert_eq!(
        deployments[0].evidence.signatures,
        [
            ("linux.oom_killer".to_string(), 2),
            ("node.heap_oom".to_string(), 2)
        ]
        .into()
    );
    // The window is half-open and selects by termination time.
    let window = TimeWindow {
        start: t0() + chrono::Duration::hours(2),
        end: t0() + chrono::Duration::hours(3),
    };
    let ids: Vec<String> = b
        .facts_in(window)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.instance_id)
        .collect();
    assert_eq!(ids, ["i-b"]);

    // Full reports, oldest first whatever the order asked; unknown ids are left out.
    let asked = ["i-d", "i-nope", "i-a", "i-c"].map(String::from);
    let got = b.reports(&asked).await.unwrap();
    let want: Vec<&InstanceReport> = ["i-c", "i-a", "i-d"]
        .iter()
        .map(|id| reports.iter().find(|r| &r.instance_id == id).unwrap())
        .collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    assert_eq!(b.instance("i-b").await.unwrap().as_ref(), Some(&reports[1]));
    assert_eq!(b.instances_in(all_time()).await.unwrap().len(), 4);

    // A report saved again replaces its compact row too.
    let mut changed = reports[3].clone();
    changed.verdict = InstanceVerdict::CrashOther;
    changed.deployment = "web:2".into();
    a.save_instances(std::slice::from_ref(&changed))
        .await
        .unwrap();
    let facts = b.facts_in(all_time()).await.unwrap();
    let d = facts.iter().find(|f| f.instance_id == "i-d").unwrap();
    assert_eq!(
        (d.verdict, d.deployment.as_str()),
        (InstanceVerdict::CrashOther, "web:2")
    );
    assert_eq!(facts.len(), 4);
}

/// The fingerprint of a window's compact rows (what a kept judgement is checked against):
/// equal while the rows are the same, whichever store reads it; changed by a row added,
/// re-written or deleted in the window; not by a write outside it that leaves its rows alone
/// except through the revision (which every write raises). `facts_of` reads rows by id.
async fn a_lookback_fingerprint_changes_with_its_rows_only(a: &dyn Store, b: &dyn Store) {
    let empty = b.facts_fingerprint(all_time()).await.unwrap();
    assert_eq!((empty.count, empty.oldest, empty.newest), (0, None, None));
    let reports = fleet();
    a.save_instances(&reports).await.unwrap();
    let fp = b.facts_fingerprint(all_time()).await.unwrap();
    assert_eq!(fp, a.facts_fingerprint(all_time()).await.unwrap());
    assert_eq!(fp.count, 4);
    let facts = facts_of(&reports);
    assert_eq!(fp.oldest, Some(facts[0].terminated_at));
    assert_eq!(fp.newest, Some(facts[3].terminated_at));
    assert!(fp.revision > empty.revision);
    // A narrower window: its own rows.
    let window = TimeWindow {
        start: t0(),
        end: t0() + chrono::Duration::hours(3),
    };
    let narrow = b.facts_fingerprint(window).await.unwrap();
    assert_eq!(narrow.count, 2);
    // Read again, nothing written: the same.
    assert_eq!(b.facts_fingerprint(all_time()).await.unwrap(), fp);
    // A row re-written (same id, same time): a new revision.
    a.save_instances(std::slice::from_ref(&reports[1]))
        .await
        .unwrap();
    let rewritten = b.facts_fingerprint(all_time()).await.unwrap();
    assert_eq!(rewritten.count, fp.count);
    assert!(rewritten.revision > fp.revision);
    // A row deleted (retention): one fewer.
    b.prune(t0() - chrono::Duration::days(1), t0(), 10)
        .await
        .unwrap();
    let pruned = a.facts_fingerprint(all_time()).await.unwrap();
    assert_eq!(pruned.count, 3, "i-c, terminated before t0, is gone");
    assert_eq!(pruned.oldest, Some(facts[1].terminated_at));
    // Rows by id, oldest first; unknown and pruned ids left out.
    let ids = ["i-d", "i-c", "i-nope", "i-a"].map(String::from);
    let got: Vec<String> = b
        .facts_of(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.instance_id)
        .collect();
    assert_eq!(got, ["i-a", "i-d"]);
}

/// Evidence goes first, compact rows later, oldest first and at most `limit` per call; an
/// instance whose evidence is gone still counts as analysed.
async fn retention_prunes_the_oldest_first_in_bounded_steps(a: &dyn Store, b: &dyn Store) {
    a.save_instances(&fleet()).await.unwrap();
    let ids: Vec<String> = ["i-a", "i-b", "i-c", "i-d"].map(String::from).to_vec();
    // Evidence before t0 + 2h (i-c at -20h, i-a at +1h), one per call; no compact row yet.
    let evidence_before = t0() + chrono::Duration::hours(2);
    let facts_before = t0() - chrono::Duration::days(30);
    let p = b.prune(evidence_before, facts_before, 1).await.unwrap();
    assert_eq!((p.evidence, p.facts), (1, 0));
    assert!(
        a.instance("i-c").await.unwrap().is_none(),
        "the oldest goes first"
    );
    assert!(a.instance("i-a").await.unwrap().is_some());
    let p = b.prune(evidence_before, facts_before, 1).await.unwrap();
    assert_eq!((p.evidence, p.facts), (1, 0));
    let p = b.prune(evidence_before, facts_before, 1).await.unwrap();
    assert_eq!((p.evidence, p.facts), (0, 0), "nothing more is old enough");
    let left: Vec<String> = a
        .reports(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.instance_id)
        .collect();
    assert_eq!(left, ["i-b", "i-d"]);
    // Judging still sees all four, and none is analysed again.
    assert_eq!(a.facts_in(all_time()).await.unwrap().len(), 4);
    assert_eq!(a.analysed_ids(&ids).await.unwrap().len(), 4);

    // Compact rows past their own retention go too.
    let p = b
        .prune(evidence_before, t0() + chrono::Duration::hours(2), 10)
        .await
        .unwrap();
    assert_eq!((p.evidence, p.facts), (0, 2));
    let kept: Vec<String> = a
        .facts_in(all_time())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.instance_id)
        .collect();
    assert_eq!(kept, ["i-b", "i-d"]);
}

/// The migrations of the schema before compact rows (SQLite 0001–0005, PostgreSQL
/// 0001–0002), copied to a folder of their own: a store migrated by them is what an earlier
/// version of epitaph wrote.
fn old_migrations(backend: &str, last: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version <= last {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

/// What the old schema's save_instances wrote: the report as JSON beside its columns.
const OLD_INSERT: &str = "INSERT INTO instances (instance_id, deployment, asg, terminated_at, verdict, report_json, updated_at) VALUES ";

async fn an_old_store_is_read_and_judged_after_upgrade(store: &dyn Store) {
    let reports = fleet();
    // The old rows are read as they were, judged from their (filled-in) compact rows as the
    // reports themselves would be, and count as analysed.
    assert_eq!(store.instances_in(all_time()).await.unwrap(), {
        let mut r = reports.clone();
        r.sort_by(|a, b| (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id)));
        r
    });
    let facts = store.facts_in(all_time()).await.unwrap();
    assert_eq!(facts, facts_of(&reports));
    assert_eq!(
        judge_deployments(&facts, FindingPolicy::default()),
        judge_deployments(&facts_of(&reports), FindingPolicy::default())
    );
    let ids: Vec<String> = reports.iter().map(|r| r.instance_id.clone()).collect();
    assert_eq!(store.analysed_ids(&ids).await.unwrap().len(), reports.len());
    // New rows go compact beside the old ones.
    let new = report("i-e", "web:1", 4, InstanceVerdict::OomLeak);
    store
        .save_instances(std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(store.instance("i-e").await.unwrap(), Some(new));
    assert_eq!(store.facts_in(all_time()).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sqlite_store_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let old = old_migrations("sqlite", 5);
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::migrate::Migrator::new(old.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for r in fleet() {
            sqlx::query(&format!("{OLD_INSERT}(?, ?, ?, ?, ?, ?, ?)"))
                .bind(&r.instance_id)
                .bind(&r.deployment)
                .bind(&r.asg)
                .bind(
                    r.terminated_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                )
                .bind(r.verdict.as_str())
                .bind(serde_json::to_string(&r).unwrap())
                .bind("2026-01-01T00:00:00.000Z")
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    an_old_store_is_read_and_judged_after_upgrade(&store).await;
}

/// A store written before 0009 (compact rows in a WITHOUT ROWID table) keeps its rows and its
/// revision when 0009 rebuilds the table, which then has rowids and reads in time order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_0008_keeps_its_compact_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let before = {
        let store = SqliteStore::open(&path).await.unwrap();
        store.save_instances(&fleet()).await.unwrap();
        let before = (
            store.facts_in(all_time()).await.unwrap(),
            store.facts_fingerprint(all_time()).await.unwrap(),
        );
        store.close().await.unwrap();
        before
    };
    assert_eq!(before.0.len(), fleet().len());
    // Back to the 0008 schema: 0006's table as it was, the same rows, 0009 not applied.
    {
        let old = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite/0006_instance_facts.sql"),
        )
        .unwrap();
        let start = old.find("CREATE TABLE instance_facts").unwrap();
        let end = old[start..].find("WITHOUT ROWID;").unwrap() + start + "WITHOUT ROWID;".len();
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .unwrap();
        for sql in [
            "ALTER TABLE instance_facts RENAME TO facts_0009",
            "DROP INDEX instance_facts_terminated_at",
            &old[start..end],
            "INSERT INTO instance_facts SELECT * FROM facts_0009",
            "DROP TABLE facts_0009",
            "CREATE INDEX instance_facts_terminated_at ON instance_facts (terminated_at)",
            "DELETE FROM _sqlx_migrations WHERE version = 9",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let no_rowid = sqlx::query("SELECT rowid FROM instance_facts")
            .fetch_all(&pool)
            .await;
        assert!(no_rowid.is_err(), "the 0008 table has no rowid");
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.facts_in(all_time()).await.unwrap(), before.0);
    assert_eq!(store.facts_fingerprint(all_time()).await.unwrap(), before.1);
    store.close().await.unwrap();
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
    let rowids = sqlx::query("SELECT rowid FROM instance_facts")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rowids.len(), fleet().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_postgres_store_is_upgraded() {
    let url = crate::pg::postgres().database();
    let old = old_migrations("postgres", 2);
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(old.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for r in fleet() {
            sqlx::query(&format!("{OLD_INSERT}($1, $2, $3, $4, $5, $6::json, $4)"))
                .bind(&r.instance_id)
                .bind(&r.deployment)
                .bind(&r.asg)
                .bind(r.terminated_at)
                .bind(r.verdict.as_str())
                .bind(serde_json::to_string(&r).unwrap())
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    let store = PgStore::open(&url).await.unwrap();
    an_old_store_is_read_and_judged_after_upgrade(&store).await;
}

/// A reader's stamps come back as they went in (by path), a replacement forgets the inputs it
/// no longer lists, and readers do not touch each other's.
async fn input_stamps_are_replaced_per_reader(a: &dyn Store, b: &dyn Store) {
    use epitaph::model::InputStamp;
    let stamp = |path: &str, mark: &str, proved: serde_json::Value| InputStamp {
        path: path.into(),
        stamp: mark.into(),
        proved,
    };
    let odd = "FATAL\u{0}: heap \"out\" of memory 💥 \\";
    let first = vec![
        stamp(
            "/exports/b.json",
            "dev=1 ino=2 size=3 mtime=4 ctime=5",
            serde_json::json!({"latest": "2026-01-05T10:00:00Z", "note": odd, "n": [1, 2.5]}),
        ),
        stamp(
            "/exports/a.json",
            "dev=1 ino=9 size=3 mtime=4 ctime=5",
            serde_json::json!(null),
        ),
    ];
    assert!(b.input_stamps("activities").await.unwrap().is_empty());
    a.replace_input_stamps("activities", &first).await.unwrap();
    let other = [stamp(
        "inputs",
        "x",
        serde_json::json!({"summary": {"projected": 3}}),
    )];
    a.replace_input_stamps("early_warning", &other)
        .await
        .unwrap();
    let got = b.input_stamps("activities").await.unwrap();
    assert_eq!(got, [first[1].clone(), first[0].clone()], "by path");

    let changed = [stamp(
        "/exports/b.json",
        "dev=1 ino=2 size=4 mtime=6 ctime=6",
        serde_json::json!({}),
    )];
    b.replace_input_stamps("activities", &changed)
        .await
        .unwrap();
    assert_eq!(
        a.input_stamps("activities").await.unwrap(),
        changed,
        "a.json forgotten"
    );
    assert_eq!(
        a.input_stamps("early_warning").await.unwrap(),
        other,
        "another reader's kept"
    );
    a.replace_input_stamps("activities", &[]).await.unwrap();
    assert!(b.input_stamps("activities").await.unwrap().is_empty());
    assert_eq!(b.input_stamps("early_warning").await.unwrap(), other);
}
