//! Tests of deployment judgement: attribution, verdicts, evidence, finding policy.

use super::*;
use crate::model::{CauseCategory, InstanceReport, LogEvent};

/// The compact rows judging reads, of these reports.
fn facts(reports: &[InstanceReport]) -> Vec<InstanceFacts> {
    reports.iter().map(InstanceFacts::of).collect()
}
use chrono::{TimeZone, Utc};

fn term(cause: CauseCategory) -> Termination {
    Termination {
        instance_id: "i-0abc".into(),
        asg: "web".into(),
        time: Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap(),
        end_time: None,
        cause,
        cause_text: String::new(),
        description: String::new(),
        activity_id: None,
        status: None,
        origin: None,
    }
}

fn sig(kind: SignatureKind) -> SignatureMatch {
    SignatureMatch {
        signature: "x".into(),
        runtime: "node".into(),
        kind,
        line: 0,
        text: String::new(),
        details: BTreeMap::new(),
    }
}

fn leak(verdict: LeakVerdict, reached_limit: bool) -> LeakAssessment {
    LeakAssessment {
        verdict,
        growth_per_hour: Some(2.0),
        growth_fraction_of_limit_per_hour: Some(0.02),
        confidence: 0.99,
        projected_exhaustion: None,
        reached_limit,
        final_peak: None,
        basis_start: None,
        basis_end: None,
        points_used: 100,
        reason: String::new(),
        gaps: 0,
        segments: Vec::new(),
    }
}

#[test]
fn instance_verdict_table() {
    use InstanceVerdict::*;
    let hc = term(CauseCategory::HealthCheck);
    let oom = [sig(SignatureKind::Oom)];
    let crash = [sig(SignatureKind::Crash)];
    let l = leak(LeakVerdict::Leak, true);
    let nl = leak(LeakVerdict::NoLeak, false);
    let none = LastWords::default();
    assert_eq!(judge_instance(&hc, &none, &oom, Some(&l)).0, OomLeak);
    assert_eq!(judge_instance(&hc, &none, &oom, Some(&nl)).0, OomSpike);
    assert_eq!(judge_instance(&hc, &none, &oom, None).0, Oom);
    assert_eq!(judge_instance(&hc, &none, &crash, Some(&nl)).0, CrashOther);
    assert_eq!(
        judge_instance(&hc, &none, &[], Some(&l)).0,
        MemoryExhaustionSuspected
    );
    assert_eq!(
        judge_instance(&hc, &none, &[], Some(&leak(LeakVerdict::Leak, false))).0,
        Unknown
    );
    assert_eq!(
        judge_instance(&term(CauseCategory::ScaleIn), &none, &[], Some(&nl)).0,
        NotACrash
    );
    assert_eq!(judge_instance(&hc, &none, &[], None).0, Unknown);
}

fn words(lines: &[(i64, &str)]) -> LastWords {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 9, 50, 0).unwrap();
    LastWords {
        last_event_at: lines
            .last()
            .map(|(s, _)| t0 + chrono::Duration::seconds(*s)),
        events: lines
            .iter()
            .map(|(s, m)| crate::model::LogEvent {
                timestamp: t0 + chrono::Duration::seconds(*s),
                message: m.to_string(),
            })
            .collect(),
        truncated: false,
    }
}

fn at(kind: SignatureKind, line: usize) -> SignatureMatch {
    SignatureMatch { line, ..sig(kind) }
}

#[test]
fn a_handled_exception_followed_by_serving_is_not_a_crash() {
    use InstanceVerdict::*;
    let hc = term(CauseCategory::HealthCheck);
    let lw = words(&[
        (0, "Traceback (most recent call last):"),
        (0, "ValueError: bad input"),
        (5, "GET /api 200"),
        (400, "GET /api 200"),
    ]);
    let crash = [at(SignatureKind::Crash, 0)];
    let (v, why) = judge_instance(&hc, &lw, &crash, None);
    assert_eq!(v, Unknown, "{why}");
    assert!(why.contains("handled"), "{why}");
    // The same crash as the final words decides.
    let lw = words(&[
        (0, "GET /api 200"),
        (400, "Traceback (most recent call last):"),
        (400, "ValueError: bad input"),
    ]);
    let crash = [at(SignatureKind::Crash, 1)];
    assert_eq!(judge_instance(&hc, &lw, &crash, None).0, CrashOther);
    // Followed only by shutdown lines long after: still the ending.
    let lw = words(&[(0, "panic: boom"), (100, "Received SIGTERM, shutting down")]);
    let m = [at(SignatureKind::Crash, 0), at(SignatureKind::Shutdown, 1)];
    assert_eq!(judge_instance(&hc, &lw, &m, None).0, CrashOther);
}

#[test]
fn a_clean_shutdown_ending_is_not_a_crash_when_the_cause_is_ambiguous() {
    use InstanceVerdict::*;
    let hc = term(CauseCategory::HealthCheck);
    let lw = words(&[
        (0, "GET /api 200"),
        (10, "Received SIGTERM, shutting down gracefully"),
        (11, "Closed 4 idle connections"),
    ]);
    let m = [at(SignatureKind::Shutdown, 1)];
    let (v, why) = judge_instance(&hc, &lw, &m, None);
    assert_eq!(v, NotACrash, "{why}");
    // A shutdown long before the end is not the ending.
    let mut lines: Vec<(i64, &str)> = vec![(0, "Received SIGTERM, shutting down gracefully")];
    lines.extend((1..10).map(|i| (i * 10, "GET /api 200")));
    let lw = words(&lines);
    assert_eq!(
        judge_instance(
            &hc,
            &lw,
            &m[..1].iter().map(|x| at(x.kind, 0)).collect::<Vec<_>>(),
            None
        )
        .0,
        Unknown
    );
    // A server's stop that prints many steps within seconds still ends on the shutdown line.
    let mut lines: Vec<(i64, &str)> = vec![(0, "Received SIGTERM, shutting down")];
    lines.extend((1..=20).map(|i| (i, "Shutting down the LogicalSessionCache")));
    let lw = words(&lines);
    assert_eq!(
        judge_instance(&hc, &lw, &[at(SignatureKind::Shutdown, 0)], None).0,
        NotACrash
    );
    // But not one more than SHUTDOWN_TAIL_SECS and SHUTDOWN_TAIL_EVENTS before the end.
    let mut lines: Vec<(i64, &str)> = vec![(0, "Received SIGTERM, shutting down")];
    lines.extend((1..=6).map(|i| (SHUTDOWN_TAIL_SECS + i, "GET /api 200")));
    let lw = words(&lines);
    assert_eq!(
        judge_instance(&hc, &lw, &[at(SignatureKind::Shutdown, 0)], None).0,
        Unknown
    );
    // OOM evidence wins over a shutdown line.
    let m = [at(SignatureKind::Oom, 0), at(SignatureKind::Shutdown, 1)];
    let lw = words(&[
        (0, "Out of memory: Killed process 1 (node)"),
        (1, "Stopping app.service"),
    ]);
    assert_eq!(judge_instance(&hc, &lw, &m, None).0, Oom);
}

fn report(id: &str, verdict: InstanceVerdict) -> InstanceReport {
    InstanceReport {
        instance_id: id.into(),
        deployment: "web:1".into(),
        asg: "web".into(),
        terminated_at: Utc.with_ymd_and_hms(2026, 1, 5, 10, 0, 0).unwrap(),
        cause: CauseCategory::HealthCheck,
        cause_text: String::new(),
        launch_time: Some(Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap()),
        verdict,
        explanation: String::new(),
        signatures: vec![],
        leak: Some(leak(LeakVerdict::Leak, true)),
        last_words: LastWords {
            events: vec![crate::model::LogEvent {
                timestamp: Utc.with_ymd_and_hms(2026, 1, 5, 9, 59, 0).unwrap(),
                message: "GET / 200".into(),
            }],
            ..Default::default()
        },
        memory: MemorySeries::default(),
    }
}

/// `n` instances of `deployment` in group `web`, launched at `launch_h` hours after
/// midnight and terminated 10 h later.
fn fleet(
    deployment: &str,
    n: usize,
    verdict: InstanceVerdict,
    launch_h: u32,
) -> Vec<InstanceReport> {
    (0..n)
        .map(|i| {
            let mut r = report(&format!("i-{deployment}-{i}"), verdict);
            r.deployment = deployment.into();
            r.launch_time = Some(Utc.with_ymd_and_hms(2026, 1, 5, launch_h, 0, 0).unwrap());
            r.terminated_at = Utc
                .with_ymd_and_hms(2026, 1, 5, launch_h + 10, 0, 0)
                .unwrap();
            r
        })
        .collect()
}

#[test]
fn a_problem_deployment_names_the_one_it_replaced_and_its_record() {
    use InstanceVerdict::*;
    let p = FindingPolicy::default();
    let mut all = fleet("web:9", 4, NotACrash, 1);
    all.extend(fleet("web:8", 3, NotACrash, 0));
    all.extend(fleet("web:10", 5, OomLeak, 6));
    // An unattributed instance launched later than web:9 is never the predecessor.
    all.extend(fleet("web (unattributed)", 1, NotACrash, 3));
    let findings = judge_deployments(&facts(&all), p);
    let f = findings.iter().find(|f| f.deployment == "web:10").unwrap();
    assert_eq!(f.verdict, DeploymentVerdict::Leaking);
    let o = f
        .origin
        .as_ref()
        .expect("an origin for a leaking deployment");
    let pred = o.predecessor.as_ref().expect("web:9 ran before");
    assert_eq!(pred.deployment, "web:9");
    assert_eq!((pred.instances, pred.memory_deaths), (4, 0));
    assert_eq!(pred.instance_hours, Some(40.0));
    assert!(!pred.same_problem);
    assert_eq!(o.first_death_after_hours, Some(10.0));
    assert!(o.summary.contains("web:9 before it"), "{}", o.summary);
    assert!(o.summary.contains("rollback target"), "{}", o.summary);
    // Healthy deployments carry no origin.
    assert!(findings
        .iter()
        .filter(|f| f.deployment != "web:10")
        .all(|f| f.origin.is_none()));

    // The predecessor leaked too: the problem is older than the release.
    let mut all = fleet("web:9", 4, OomLeak, 1);
    all.extend(fleet("web:10", 5, OomLeak, 6));
    let findings = judge_deployments(&facts(&all), p);
    let f = findings.iter().find(|f| f.deployment == "web:10").unwrap();
    let o = f.origin.as_ref().unwrap();
    assert!(o.predecessor.as_ref().unwrap().same_problem);
    assert!(
        o.summary.contains("older than this release"),
        "{}",
        o.summary
    );
    // The first deployment of the group has none before it.
    let f = findings.iter().find(|f| f.deployment == "web:9").unwrap();
    assert!(f.origin.as_ref().unwrap().predecessor.is_none());
}

#[test]
fn deployment_verdicts() {
    use InstanceVerdict::*;
    let p = FindingPolicy::default();
    let judge = |vs: &[InstanceVerdict]| {
        let rs: Vec<InstanceReport> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| report(&format!("i-{i}"), *v))
            .collect();
        let fs = facts(&rs);
        let refs: Vec<&InstanceFacts> = fs.iter().collect();
        judge_deployment("web:1", &refs, p)
    };
    assert_eq!(
        judge(&[OomLeak, MemoryExhaustionSuspected, NotACrash]).verdict,
        DeploymentVerdict::Leaking
    );
    let f = judge(&[OomLeak, OomLeak]);
    assert_eq!(f.evidence.median_lifetime_hours, Some(10.0));
    assert_eq!(f.evidence.median_growth_per_hour, Some(2.0));
    assert_eq!(
        judge(&[OomSpike, OomSpike, OomLeak]).verdict,
        DeploymentVerdict::OomWithoutLeak
    );
    assert_eq!(
        judge(&[CrashOther, CrashOther, NotACrash]).verdict,
        DeploymentVerdict::Crashing
    );
    assert_eq!(
        judge(&[NotACrash, NotACrash]).verdict,
        DeploymentVerdict::Healthy
    );
    // Without any last words, "no crash evidence" is no evidence: never healthy.
    let silent: Vec<InstanceReport> = [NotACrash, NotACrash]
        .iter()
        .enumerate()
        .map(|(i, v)| InstanceReport {
            last_words: LastWords::default(),
            ..report(&format!("i-{i}"), *v)
        })
        .collect();
    let fs = facts(&silent);
    let refs: Vec<&InstanceFacts> = fs.iter().collect();
    let f = judge_deployment("web:1", &refs, FindingPolicy::default());
    assert_eq!(
        f.verdict,
        DeploymentVerdict::InsufficientEvidence,
        "{}",
        f.summary
    );
    assert_eq!(
        judge(&[OomLeak, NotACrash]).verdict,
        DeploymentVerdict::InsufficientEvidence
    );
    assert_eq!(
        judge(&[Unknown, Unknown]).verdict,
        DeploymentVerdict::InsufficientEvidence
    );
}

#[test]
fn deployment_identity_resolution() {
    let t = term(CauseCategory::HealthCheck);
    let info = InstanceInfo {
        instance_id: "i-0abc".into(),
        launch_template: Some(crate::model::LaunchTemplateRef {
            id: Some("lt-1".into()),
            name: Some("web".into()),
            version: Some("42".into()),
        }),
        tags: [("Deployment".to_string(), "blue".to_string())].into(),
        ..Default::default()
    };
    let lw = LastWords {
        events: vec![LogEvent {
            timestamp: t.time,
            message: r#"{"msg":"ok","version":"v7"}"#.into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        resolve_deployment(&DeploymentIdentity::Asg, &t, None, &lw, None),
        "web"
    );
    assert_eq!(
        resolve_deployment(
            &DeploymentIdentity::LaunchTemplate,
            &t,
            Some(&info),
            &lw,
            None
        ),
        "web:42"
    );
    assert_eq!(
        resolve_deployment(
            &DeploymentIdentity::Tag {
                key: "Deployment".into()
            },
            &t,
            Some(&info),
            &lw,
            None
        ),
        "blue"
    );
    assert_eq!(
        resolve_deployment(
            &DeploymentIdentity::LogField {
                field: "version".into()
            },
            &t,
            None,
            &lw,
            None
        ),
        "v7"
    );
    assert_eq!(
        resolve_deployment(&DeploymentIdentity::LaunchTemplate, &t, None, &lw, None),
        "web (unattributed)"
    );
}

#[test]
fn a_kill_without_a_cause_is_unknown_and_points_at_the_oom_killer() {
    use InstanceVerdict::*;
    let hc = term(CauseCategory::HealthCheck);
    // torchrun: the child's SIGKILL, then the launcher's own traceback reporting it.
    let lw = words(&[
        (
            0,
            "ERROR: failed (exitcode: -9) local_rank: 3 (pid: 812917)",
        ),
        (1, "Traceback (most recent call last):"),
        (
            2,
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        ),
    ]);
    let m = [at(SignatureKind::Kill, 0), at(SignatureKind::Crash, 2)];
    let (v, why) = judge_instance(&hc, &lw, &m, None);
    assert_eq!(v, Unknown, "{why}");
    assert!(why.contains("OOM killer"), "{why}");
    // A crash before the kill is its cause: Heroku's boot timeout, then its SIGKILL.
    let lw = words(&[
        (
            0,
            "heroku[web.1]: Error R10 (Boot timeout) -> Web process failed to bind to $PORT",
        ),
        (0, "heroku[web.1]: Process exited with status 137"),
        (0, "heroku[web.1]: State changed from starting to crashed"),
    ]);
    let r10 = [
        at(SignatureKind::Crash, 0),
        at(SignatureKind::Kill, 1),
        at(SignatureKind::Crash, 2),
    ];
    assert_eq!(judge_instance(&hc, &lw, &r10, None).0, CrashOther);
    // With a leak trend the kill is the OOM killer's, most likely.
    let l = leak(LeakVerdict::Leak, false);
    assert_eq!(
        judge_instance(&hc, &lw, &m, Some(&l)).0,
        MemoryExhaustionSuspected
    );
    // A kill long before the end, followed by normal work, decides nothing; the crash at the
    // end does.
    let lw = words(&[
        (0, "worker 3 died, killed by signal 9"),
        (100, "GET /api 200"),
        (101, "panic: boom"),
    ]);
    let m = [at(SignatureKind::Kill, 0), at(SignatureKind::Crash, 2)];
    assert_eq!(judge_instance(&hc, &lw, &m, None).0, CrashOther);
    // A stop just before the kill explains it (systemd's stop timeout ends in SIGKILL).
    let lw = words(&[
        (0, "Stopping app.service..."),
        (
            90,
            "app.service: Main process exited, code=killed, status=9/KILL",
        ),
    ]);
    let m = [at(SignatureKind::Shutdown, 0), at(SignatureKind::Kill, 1)];
    assert_eq!(judge_instance(&hc, &lw, &m, None).0, NotACrash);
    // A planned termination stays planned, leak trend or not.
    let lw = words(&[(0, "Killed")]);
    let m = [at(SignatureKind::Kill, 0)];
    assert_eq!(
        judge_instance(&term(CauseCategory::ScaleIn), &lw, &m, None).0,
        NotACrash
    );
    assert_eq!(
        judge_instance(&term(CauseCategory::ScaleIn), &lw, &m, Some(&l)).0,
        NotACrash
    );
    // OOM evidence wins over the kill.
    let m = [at(SignatureKind::Oom, 0), at(SignatureKind::Kill, 0)];
    assert_eq!(judge_instance(&hc, &lw, &m, None).0, Oom);
}

#[test]
fn the_deciding_line_is_the_one_the_verdict_rests_on() {
    use crate::model::deciding_signature;
    // Heroku: the boot timeout (a crash) decides, not the SIGKILL it led to.
    let m = [at(SignatureKind::Crash, 0), at(SignatureKind::Kill, 1)];
    assert_eq!(
        deciding_signature(&m, InstanceVerdict::CrashOther).map(|x| x.line),
        Some(0)
    );
    // torchrun: the kill, not the traceback that reports it.
    let m = [at(SignatureKind::Kill, 0), at(SignatureKind::Crash, 1)];
    assert_eq!(
        deciding_signature(&m, InstanceVerdict::Unknown).map(|x| x.line),
        Some(0)
    );
    // An OOM line always explains a memory death.
    let m = [at(SignatureKind::Crash, 0), at(SignatureKind::Oom, 1)];
    assert_eq!(
        deciding_signature(&m, InstanceVerdict::Oom).map(|x| x.line),
        Some(1)
    );
}
