//! `doctor`'s judgement, tested on what the probes could have seen (tests only: its length is
//! the checks' cases).

use super::*;

#[test]
fn the_event_queue_is_judged_by_its_answer() {
    let url = "https://sqs.us-east-1.amazonaws.com/123456789012/epitaph";
    let mut attrs: BTreeMap<String, String> = [
        ("ApproximateNumberOfMessages".to_string(), "4".to_string()),
        (
            "ApproximateNumberOfMessagesNotVisible".to_string(),
            "1".to_string(),
        ),
    ]
    .into();
    let c = events_check(url, Ok(&attrs));
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.detail.contains("4 message(s) waiting, 1 in flight"),
        "{c:?}"
    );
    attrs.insert(
        "RedrivePolicy".into(),
        r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:epitaph-dlq","maxReceiveCount":5}"#.into(),
    );
    assert_eq!(events_check(url, Ok(&attrs)).status, Status::Pass);
    let err = |code: Option<&str>, answered: bool| CallError {
        action: "sqs:GetQueueAttributes".into(),
        code: code.map(str::to_string),
        answered,
        message: "GetQueueAttributes: HTTP 400: …".into(),
    };
    let denied = events_check(url, Err(&err(Some("AccessDenied"), true)));
    assert_eq!(denied.failure, Some(Failure::Config));
    assert!(denied.fix.unwrap().contains("sqs:ReceiveMessage"));
    let missing = events_check(url, Err(&err(Some("QueueDoesNotExist"), true)));
    assert!(missing.detail.contains("no such queue"), "{missing:?}");
    let down = events_check(url, Err(&err(None, false)));
    assert_eq!(down.failure, Some(Failure::Unreachable));
}
use crate::sources::probe::{ActivitiesProbe, Listing, Lookup, TargetInfo, PLACEHOLDER_INSTANCE};
use chrono::TimeZone;

fn cfg(extra: &str) -> Config {
    let text = format!(
        "[aws]\nregion = \"us-east-1\"\n[sources.activities]\nkind = \"aws\"\n[sources.logs]\nkind = \"aws\"\nlog_group = \"/ec2/app\"\n[sources.metrics]\nkind = \"aws\"\n{extra}"
    );
    Config::parse(&text, "t.toml", std::path::Path::new("/"), &[]).unwrap()
}

fn ok(action: &str) -> CallRecord {
    CallRecord {
        action: action.into(),
        error: None,
    }
}

fn err(action: &str, code: Option<&str>, answered: bool) -> CallError {
    CallError {
        action: action.into(),
        code: code.map(str::to_string),
        answered,
        message: format!("{action}: {}", code.unwrap_or("dispatch failure")),
    }
}

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 4, h, 0, 0).unwrap()
}

fn sample() -> Sample {
    Sample {
        instance_id: "i-0abc1234def567890".into(),
        asg: Some("web".into()),
        origin: Some("us-east-1".into()),
        terminated_at: Some(at(10)),
        until: at(10) + chrono::Duration::minutes(7),
    }
}

fn dims(pairs: &[(&str, &str)]) -> DimensionSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn activities(names: &[&str]) -> ActivitiesProbe {
    let groups: Vec<GroupSeen> = names
        .iter()
        .map(|n| GroupSeen {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    ActivitiesProbe {
        named: None,
        listing: Ok(Listing {
            items: groups,
            truncated: false,
        }),
        selected: names.iter().map(|n| n.to_string()).collect(),
        activities: Ok(Vec::new()),
        calls: vec![
            ok("autoscaling:DescribeAutoScalingGroups"),
            ok("autoscaling:DescribeScalingActivities"),
            ok("ec2:DescribeInstances"),
        ],
    }
}

fn logs(found: LookupResult) -> LogsProbe {
    LogsProbe {
        stream_lookup: crate::config::StreamLookup::Name,
        stream_pattern: "{instance_id}".into(),
        groups: vec![LogGroupProbe {
            key: "sources.logs.log_group".into(),
            log_group: "/ec2/app".into(),
            by_prefix: Ok(vec!["/ec2/app".into()]),
            others: None,
            lookups: vec![Lookup {
                instance_id: sample().instance_id,
                placeholder: false,
                looked_for: "stream `i-0abc1234def567890`".into(),
                result: Ok(found),
            }],
            recent_streams: None,
        }],
        calls: vec![ok("logs:DescribeLogGroups"), ok("logs:GetLogEvents")],
    }
}

fn metrics(points: usize) -> MetricsProbe {
    MetricsProbe {
        sample: Some(sample()),
        queried: dims(&[("InstanceId", "i-0abc1234def567890")]),
        data: Ok(points),
        for_instance: Some(Ok(vec![dims(&[("InstanceId", "i-0abc1234def567890")])])),
        for_metric: None,
        names_in_namespace: None,
        namespaces: None,
        calls: vec![ok("cloudwatch:GetMetricData"), ok("cloudwatch:ListMetrics")],
    }
}

fn probe() -> TargetProbe {
    TargetProbe {
        target: TargetInfo {
            name: "us-east-1".into(),
            region: "us-east-1".into(),
            endpoint: None,
        },
        activities: Some(activities(&["web", "checkout-api"])),
        logs: Some(logs(LookupResult::Events(3))),
        metrics: Some(metrics(12)),
    }
}

fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
}

#[test]
fn a_healthy_account_passes_everything_in_order() {
    let checks = aws_checks(&cfg(""), &probe(), None);
    let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "aws.connection",
            "iam.autoscaling:DescribeAutoScalingGroups",
            "iam.autoscaling:DescribeScalingActivities",
            "iam.ec2:DescribeInstances",
            "iam.logs:DescribeLogGroups",
            "iam.logs:GetLogEvents",
            "iam.cloudwatch:GetMetricData",
            "iam.cloudwatch:ListMetrics",
            "activities.groups",
            "activities.terminations",
            "logs.log_group",
            "logs.last_words",
            "metrics.series",
        ]
    );
    // No termination in the window is a warning (running instances are checked instead).
    for c in &checks {
        if c.id != "activities.terminations" {
            assert_eq!(c.status, Status::Pass, "{c:?}");
        }
    }
    let list = Checklist::new(checks);
    assert!(list.ok);
    assert_eq!(list.exit_code, 0);
}

#[test]
fn unreachable_account_fails_first_and_skips_the_rest() {
    let mut p = probe();
    let a = p.activities.as_mut().unwrap();
    a.calls[0].error = Some(err("autoscaling:DescribeAutoScalingGroups", None, false));
    let checks = aws_checks(&cfg(""), &p, None);
    assert_eq!(checks[0].status, Status::Fail);
    assert_eq!(checks[0].failure, Some(Failure::Unreachable));
    assert!(
        checks[0].detail.contains("us-east-1"),
        "{}",
        checks[0].detail
    );
    assert!(checks[1..].iter().all(|c| c.status == Status::Skip));
    assert_eq!(Checklist::new(checks).exit_code, EXIT_UNREACHABLE);
    // Rejected credentials are unreachable too; a denied action is not.
    assert!(is_unreachable(&err(
        "x",
        Some("InvalidClientTokenId"),
        true
    )));
    assert!(!is_unreachable(&err("x", Some("AccessDenied"), true)));
}

#[test]
fn a_denied_action_fails_naming_it_and_the_policy() {
    let mut p = probe();
    p.logs.as_mut().unwrap().calls[1].error = Some(err(
        "logs:GetLogEvents",
        Some("AccessDeniedException"),
        true,
    ));
    p.metrics.as_mut().unwrap().calls[1].error =
        Some(err("cloudwatch:ListMetrics", Some("AccessDenied"), true));
    let checks = aws_checks(&cfg(""), &p, None);
    let c = find(&checks, "iam.logs:GetLogEvents");
    assert_eq!(c.status, Status::Fail);
    assert!(c.fix.as_deref().unwrap().contains("logs:GetLogEvents"));
    assert!(c.fix.as_deref().unwrap().contains("IAM policy"));
    // The doctor's own action is a warning: scans do not need it.
    assert_eq!(
        find(&checks, "iam.cloudwatch:ListMetrics").status,
        Status::Warn
    );
    assert_eq!(Checklist::new(checks).exit_code, EXIT_CONFIG);
    // The search lookup needs other actions; one never called is not passed.
    let mut search = cfg("");
    search.sources.logs.stream_lookup = crate::config::StreamLookup::Search;
    let checks = aws_checks(&search, &probe(), None);
    assert!(checks.iter().all(|c| c.id != "iam.logs:GetLogEvents"));
    assert_eq!(
        find(&checks, "iam.logs:FilterLogEvents").status,
        Status::Skip
    );
    let mut q = probe();
    q.logs.as_mut().unwrap().calls.truncate(1);
    let checks = aws_checks(&cfg(""), &q, None);
    assert_eq!(find(&checks, "iam.logs:GetLogEvents").status, Status::Skip);
}

#[test]
fn a_group_that_matches_nothing_lists_the_groups_that_exist() {
    let c = cfg("");
    let mut c2 = c.clone();
    c2.sources.activities.groups = vec!["chekout-api".into()];
    let mut p = probe();
    let a = p.activities.as_mut().unwrap();
    a.named = Some(Ok(Vec::new()));
    a.selected.clear();
    let checks = aws_checks(&c2, &p, None);
    let g = find(&checks, "activities.groups");
    assert_eq!(g.status, Status::Fail);
    assert!(
        g.detail.contains("web") && g.detail.contains("checkout-api"),
        "{}",
        g.detail
    );
    assert!(
        g.detail.contains("did you mean `checkout-api`"),
        "{}",
        g.detail
    );
    assert!(g
        .fix
        .as_deref()
        .unwrap()
        .contains("`chekout-api` → `checkout-api`"));
    // A tag nobody carries.
    let mut c3 = c.clone();
    c3.sources.activities.group_tag = Some("epitaph=enabld".into());
    let mut p = probe();
    let a = p.activities.as_mut().unwrap();
    if let Ok(l) = &mut a.listing {
        l.items[0].tags = vec![("epitaph".into(), "enabled".into())];
    }
    a.selected.clear();
    let checks = aws_checks(&c3, &p, None);
    let g = find(&checks, "activities.groups");
    assert_eq!(g.status, Status::Fail);
    assert_eq!(
        g.fix.as_deref(),
        Some("set sources.activities.group_tag = \"epitaph=enabled\"")
    );
}

#[test]
fn a_misspelt_log_group_names_the_key_and_the_nearest_group() {
    let mut p = probe();
    let g = &mut p.logs.as_mut().unwrap().groups[0];
    g.log_group = "/ec2/ap".into();
    g.by_prefix = Ok(vec!["/ec2/app".into()]);
    g.others = Some(Ok(Listing {
        items: vec!["/aws/lambda/x".into(), "/ec2/app".into()],
        truncated: false,
    }));
    g.lookups.clear();
    let checks = aws_checks(&cfg(""), &p, None);
    let c = find(&checks, "logs.log_group");
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail
            .contains("sources.logs.log_group `/ec2/ap` does not exist"),
        "{}",
        c.detail
    );
    assert_eq!(
        c.fix.as_deref(),
        Some("set sources.logs.log_group = \"/ec2/app\"")
    );
    assert_eq!(find(&checks, "logs.last_words").status, Status::Skip);
}

#[test]
fn missing_streams_suggest_the_pattern_the_streams_follow() {
    let mut p = probe();
    let g = &mut p.logs.as_mut().unwrap().groups[0];
    g.lookups[0].result = Ok(LookupResult::NoStream);
    let mut second = g.lookups[0].clone();
    second.instance_id = "i-0123456789abcdef0".into();
    g.lookups.push(second);
    g.recent_streams = Some(Ok(vec!["i-0fedcba9876543210/app.log".into()]));
    let checks = aws_checks(&cfg(""), &p, None);
    let c = find(&checks, "logs.last_words");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(
        c.fix.as_deref(),
        Some("set sources.logs.stream_pattern = \"{instance_id}/app.log\"")
    );
    // One instance alone without a stream is only a warning.
    p.logs.as_mut().unwrap().groups[0].lookups.truncate(1);
    let checks = aws_checks(&cfg(""), &p, None);
    assert_eq!(find(&checks, "logs.last_words").status, Status::Warn);
    // A placeholder lookup is no evidence either way.
    let mut p = probe();
    let x = &mut p.logs.as_mut().unwrap().groups[0].lookups[0];
    x.placeholder = true;
    x.instance_id = PLACEHOLDER_INSTANCE.into();
    let checks = aws_checks(&cfg(""), &p, None);
    assert_eq!(find(&checks, "logs.last_words").status, Status::Warn);
}

#[test]
fn appended_dimensions_are_listed_with_the_exact_extra_dimensions() {
    let mut p = probe();
    let m = p.metrics.as_mut().unwrap();
    m.data = Ok(0);
    m.for_instance = Some(Ok(vec![dims(&[
        ("InstanceId", "i-0abc1234def567890"),
        ("AutoScalingGroupName", "web"),
        ("ImageId", "ami-0123"),
        ("InstanceType", "t3.micro"),
    ])]));
    let checks = aws_checks(&cfg(""), &p, None);
    let c = find(&checks, "metrics.series");
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail
            .contains("{AutoScalingGroupName, ImageId, InstanceId, InstanceType}"),
        "{}",
        c.detail
    );
    let fix = c.fix.as_deref().unwrap();
    assert!(fix.starts_with("set sources.metrics.extra_dimensions = [\"AutoScalingGroupName={asg}\", \"ImageId=ami-0123\", \"InstanceType=t3.micro\"]"), "{fix}");
    assert!(fix.contains("aggregation_dimensions"), "{fix}");
    // Only the group appended: the setting is exact, nothing pinned.
    let (s, pinned) = suggest_extra_dimensions(
        &dims(&[("AutoScalingGroupName", "web"), ("InstanceId", "i-1")]),
        "InstanceId",
    );
    assert_eq!(
        s,
        "sources.metrics.extra_dimensions = [\"AutoScalingGroupName={asg}\"]"
    );
    assert!(pinned.is_empty());
}

#[test]
fn an_unknown_metric_name_lists_the_names_in_the_namespace() {
    let mut p = probe();
    let m = p.metrics.as_mut().unwrap();
    m.data = Ok(0);
    m.for_instance = Some(Ok(Vec::new()));
    m.for_metric = Some(Ok(Listing::default()));
    m.names_in_namespace = Some(Ok(Listing {
        items: vec!["disk_used_percent".into(), "mem_used_percent".into()],
        truncated: false,
    }));
    let checks = aws_checks(&cfg("metric_name = \"mem_used_precent\"\n"), &p, None);
    let c = find(&checks, "metrics.series");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("mem_used_percent"), "{}", c.detail);
    assert_eq!(
        c.fix.as_deref(),
        Some("set sources.metrics.metric_name = \"mem_used_percent\"")
    );
    // The instance dimension named wrong: the sets that exist are listed.
    let m = p.metrics.as_mut().unwrap();
    m.for_metric = Some(Ok(Listing {
        items: vec![dims(&[("host", "ip-10-0-0-1")])],
        truncated: false,
    }));
    let checks = aws_checks(&cfg(""), &p, None);
    let c = find(&checks, "metrics.series");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("{host}"), "{}", c.detail);
}

#[test]
fn similar_names_rank_and_hint() {
    let names: Vec<String> = ["catalog-web", "checkout-api", "checkout-worker"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (listed, nearest) = similar_names("checkout-apj", &names);
    assert_eq!(listed[0], "checkout-api");
    assert_eq!(nearest.as_deref(), Some("checkout-api"));
    let (_, nearest) = similar_names("billing", &names);
    assert_eq!(nearest, None);
}

#[test]
fn samples_are_recent_terminations_then_running_instances() {
    let c = cfg("");
    let term = |id: &str, h: u32| Termination {
        instance_id: id.into(),
        asg: "web".into(),
        time: at(h),
        end_time: None,
        cause: crate::model::CauseCategory::HealthCheck,
        cause_text: String::new(),
        description: String::new(),
        activity_id: None,
        status: None,
        origin: None,
    };
    let window = TimeWindow {
        start: at(6),
        end: at(12),
    };
    let s = pick_samples(
        &c,
        window,
        &[
            term("i-00000001", 7),
            term("i-00000002", 9),
            term("i-00000003", 3),
        ],
        &[("i-00000009".into(), "web".into())],
        at(12),
    );
    let ids: Vec<&str> = s.iter().map(|s| s.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-00000002", "i-00000001", "i-00000009"]);
    // Evidence counts through the drain window and the grace.
    assert_eq!(s[0].until, at(9) + c.drain_window() + c.last_words_grace());
}

#[test]
fn file_checks_and_exit_codes() {
    let w = TimeWindow {
        start: at(0),
        end: at(12),
    };
    let good = FileRead {
        found: 4,
        sampled: 3,
        ..Default::default()
    };
    let checks = file_checks(Some(&good), Some(&good), Some(&good), w);
    assert!(
        checks.iter().all(|c| c.status == Status::Pass),
        "{checks:?}"
    );
    let broken = FileRead {
        errors: vec!["a.json:3:1: invalid JSON".into()],
        ..Default::default()
    };
    let checks = file_checks(Some(&broken), None, None, w);
    assert_eq!(checks[0].status, Status::Fail);
    assert_eq!(Checklist::new(checks).exit_code, EXIT_CONFIG);
    let truncated = FileRead {
        warnings: vec!["a.json: truncated export: … --no-paginate".into()],
        ..good.clone()
    };
    let checks = file_checks(Some(&truncated), None, Some(&truncated), w);
    assert!(
        checks.iter().all(|c| c.status == Status::Warn),
        "{checks:?}"
    );
    assert!(checks[1].detail.contains("a.json: truncated"), "{checks:?}");
    let c = cfg("");
    let kinds = kind_checks(&c, false);
    assert_eq!(kinds.len(), 3);
    assert!(kinds[0].detail.contains("no AWS support"));
    assert!(kind_checks(&c, true).is_empty());
}

fn api_probe() -> LogApiProbe {
    use crate::sources::probe::{ApiLookup, Listing, ScopeSeen};
    LogApiProbe {
        backend: "splunk".into(),
        key: "sources.logs.splunk".into(),
        url: "https://splunk:8089".into(),
        connection: Ok("Splunk 9.2.1".into()),
        scopes: vec![ScopeSeen {
            key: "sources.logs.splunk.index".into(),
            what: "index `app`".into(),
            name: "app".into(),
            exists: Ok(true),
            others: Listing::default(),
        }],
        lookups: ["i-0a", "i-0b"]
            .iter()
            .map(|id| ApiLookup {
                instance_id: id.to_string(),
                looked_for: format!("search index=\"app\" instance_id=\"{id}\""),
                result: Ok(ApiLookupResult::Events(5)),
            })
            .collect(),
        instance_values: None,
        calls: vec![ok("GET /services/server/info")],
    }
}

#[test]
fn log_api_checks_pass_fail_and_say_why() {
    let all = log_api_checks(&api_probe());
    assert_eq!(
        all.iter()
            .map(|c| (c.id.as_str(), c.status))
            .collect::<Vec<_>>(),
        [
            ("splunk.connection", Status::Pass),
            ("splunk.scope", Status::Pass),
            ("splunk.last_words", Status::Pass)
        ]
    );

    // No answer: unreachable (exit 1), nothing else claimed.
    let mut p = api_probe();
    p.connection = Err(err("GET /services/server/info", None, false));
    let c = log_api_checks(&p);
    assert_eq!(c[0].failure, Some(Failure::Unreachable));
    assert_eq!(c[1].status, Status::Skip);
    assert_eq!(Checklist::new(c).exit_code, EXIT_UNREACHABLE);

    // A refused token: configuration, naming the keys.
    p.connection = Err(err("GET /services/server/info", Some("401"), true));
    let c = log_api_checks(&p);
    assert_eq!(c[0].failure, Some(Failure::Config));
    assert!(c[0]
        .fix
        .as_deref()
        .unwrap()
        .contains("sources.logs.splunk.token"));

    // A misspelt index: the nearest one.
    let mut p = api_probe();
    p.scopes[0].name = "ap".into();
    p.scopes[0].what = "index `ap`".into();
    p.scopes[0].exists = Ok(false);
    p.scopes[0].others.items = vec!["app".into(), "main".into()];
    let c = log_api_checks(&p);
    let scope = c.iter().find(|c| c.id == "splunk.scope").unwrap();
    assert_eq!(scope.failure, Some(Failure::Config));
    assert!(
        scope.detail.contains("did you mean `app`"),
        "{}",
        scope.detail
    );

    // Nothing found for two instances: the filter is wrong (config); for one: a warning.
    let mut p = api_probe();
    for l in &mut p.lookups {
        l.result = Ok(ApiLookupResult::NoEvents);
    }
    let lw = log_api_checks(&p).pop().unwrap();
    assert_eq!(lw.failure, Some(Failure::Config));
    assert!(lw.detail.contains("instance_id=\"i-0a\""), "{}", lw.detail);
    assert!(lw
        .fix
        .unwrap()
        .contains("sources.logs.splunk.instance_filter"));
    p.lookups.truncate(1);
    assert_eq!(log_api_checks(&p).pop().unwrap().status, Status::Warn);

    // Instances the inventory cannot map: configuration, pointing at the inventory.
    let mut p = api_probe();
    for l in &mut p.lookups {
        l.result = Ok(ApiLookupResult::Unmapped("i-0a cannot be mapped".into()));
    }
    let lw = log_api_checks(&p).pop().unwrap();
    assert_eq!(lw.failure, Some(Failure::Config));
    assert!(lw.fix.unwrap().contains("describe-instances"));

    // A query the server rejected is configuration; a 5xx is the server's.
    let mut p = api_probe();
    p.lookups[0].result = Err(err(
        "POST /services/search/v2/jobs/export",
        Some("400"),
        true,
    ));
    assert_eq!(
        log_api_checks(&p).pop().unwrap().failure,
        Some(Failure::Config)
    );
    p.lookups[0].result = Err(err(
        "POST /services/search/v2/jobs/export",
        Some("503"),
        true,
    ));
    assert_eq!(
        log_api_checks(&p).pop().unwrap().failure,
        Some(Failure::Unreachable)
    );

    // Not set up at all.
    let c = log_api_not_configured("loki", "sources.logs.loki.url: required");
    assert_eq!(c[0].id, "loki.connection");
    assert_eq!(c[1].status, Status::Skip);
}
