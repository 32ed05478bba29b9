//! The AWS checks: credentials and the IAM actions a target needs, the Auto Scaling groups
//! (names, activity history, launch templates), the event queue, and the log groups and
//! streams the last words come from.

use super::*;
use crate::config::{SourceKind, StreamLookup};

/// The AWS checks when the clients could not even be set up (no region): every AWS check
/// fails or is skipped with the reason.
pub fn aws_not_configured(message: &str) -> Vec<Check> {
    let mut out = vec![Check::fail(
        "aws.connection",
        Failure::Config,
        message.to_string(),
        "set aws.region (or aws.targets, AWS_REGION, or a profile with a region)",
    )];
    out.push(Check::skip(
        "aws.checks",
        "not checked: IAM actions, groups, log groups, streams and metrics need a region",
    ));
    out
}

/// The event intake's queue, judged from its `GetQueueAttributes` answer: reachable (with its
/// depth), and with a dead-letter queue — without one, a message epitaph cannot read comes
/// back for ever.
pub fn events_check(
    queue_url: &str,
    attributes: std::result::Result<&BTreeMap<String, String>, &CallError>,
) -> Check {
    const ID: &str = "events.queue";
    match attributes {
        Err(e) if is_access_denied(e.code.as_deref()) => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: {}", e.message),
            "grant sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and sqs:GetQueueAttributes on the queue (deploy/iam/epitaph-events.json)",
        ),
        Err(e) if e.code.as_deref() == Some("QueueDoesNotExist") || e.code.as_deref() == Some("AWS.SimpleQueueService.NonExistentQueue") => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: no such queue ({})", e.message),
            "check sources.events.queue_url (and the region and account in it); deploy/aws/event-intake.yaml creates the queue and its rule",
        ),
        Err(e) if e.answered => Check::fail(
            ID,
            Failure::Config,
            format!("{queue_url}: {}", e.message),
            "check sources.events.queue_url and the credentials' access to it",
        ),
        Err(e) => Check::fail(
            ID,
            Failure::Unreachable,
            format!("{queue_url}: {}", e.message),
            "check the network path to SQS (VPC endpoint, proxy) and aws.endpoint_url",
        ),
        Ok(a) => {
            let n = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let detail = format!(
                "{queue_url}: {} message(s) waiting, {} in flight",
                n("ApproximateNumberOfMessages"),
                n("ApproximateNumberOfMessagesNotVisible")
            );
            if a.get("RedrivePolicy").is_some_and(|r| !r.is_empty()) {
                Check::pass(ID, format!("{detail}; a dead-letter queue takes what cannot be read"))
            } else {
                Check::warn(
                    ID,
                    format!("{detail}; no dead-letter queue"),
                    "give the queue a RedrivePolicy (deploy/aws/event-intake.yaml does): a message epitaph cannot read otherwise comes back for ever",
                )
            }
        }
    }
}

/// The note for configurations without any AWS source: which checks are AWS-only.
pub fn aws_not_used() -> Check {
    Check::skip(
        "aws",
        "no source has kind = \"aws\": the AWS-only checks (credentials and region, IAM actions, Auto Scaling groups, log group and streams, metric dimensions) were not run",
    )
}

/// The actions a configuration makes a scan use, and whether each is used by the doctor only
/// (`deploy/iam/epitaph-read.json` must grant exactly the union over every configuration).
pub fn expected_actions(cfg: &Config) -> Vec<(&'static str, bool)> {
    let s = &cfg.sources;
    let mut out = Vec::new();
    if s.activities.kind == SourceKind::Aws {
        out.push(("autoscaling:DescribeAutoScalingGroups", false));
        out.push(("autoscaling:DescribeScalingActivities", false));
        if s.activities.describe_instances {
            out.push(("ec2:DescribeInstances", false));
        }
    }
    if s.logs.kind == SourceKind::Aws {
        out.push(("logs:DescribeLogGroups", false));
        match s.logs.stream_lookup {
            StreamLookup::Search => {
                out.push(("logs:DescribeLogStreams", false));
                out.push(("logs:FilterLogEvents", false));
            }
            StreamLookup::Text => out.push(("logs:FilterLogEvents", false)),
            StreamLookup::Name => out.push(("logs:GetLogEvents", false)),
        }
    }
    if s.metrics.kind == SourceKind::Aws {
        out.push(("cloudwatch:GetMetricData", false));
        out.push(("cloudwatch:ListMetrics", true));
    }
    if s.events.kind == crate::sources::events::config::EventsKind::Sqs {
        out.extend(EVENT_ACTIONS.map(|a| (a, false)));
    }
    out
}

/// The IAM actions of the event intake (`sources.events.kind = "sqs"`).
pub const EVENT_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];

fn with_label(id: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{id}@{l}"),
        None => id.to_string(),
    }
}

/// The checks of one AWS target, in order: connection, IAM actions, groups, terminations,
/// log groups, last words, memory metric. `label` (the target's name) suffixes every id when
/// several targets are probed.
pub fn aws_checks(cfg: &Config, p: &TargetProbe, label: Option<&str>) -> Vec<Check> {
    let id = |s: &str| with_label(s, label);
    let mut out = Vec::new();
    let calls: Vec<&CallRecord> = p
        .activities
        .iter()
        .flat_map(|a| &a.calls)
        .chain(p.logs.iter().flat_map(|l| &l.calls))
        .chain(p.metrics.iter().flat_map(|m| &m.calls))
        .collect();
    let region = if p.target.region.is_empty() {
        "(no region)".to_string()
    } else {
        p.target.region.clone()
    };
    let endpoint = match &p.target.endpoint {
        Some(e) => format!("endpoint {e} (aws.endpoint_url or AWS_ENDPOINT_URL)"),
        None => "the default AWS endpoints".to_string(),
    };
    let Some(first) = calls.first() else {
        out.push(Check::skip(
            id("aws.connection"),
            "not checked: no AWS call was made",
        ));
        return out;
    };
    if let Some(e) = first.error.as_ref().filter(|e| is_unreachable(e)) {
        let why = if e.answered {
            "the credentials were rejected"
        } else {
            "no answer (credentials, network or endpoint)"
        };
        out.push(Check::fail(
            id("aws.connection"),
            Failure::Unreachable,
            format!("target {}: region {region}, {endpoint}: {} — {why}: {}", p.target.name, first.action, e.message),
            "check the credentials (AWS_PROFILE or aws.profile, `aws sts get-caller-identity`), aws.region / aws.targets, and that the endpoint is reachable",
        ));
        out.push(Check::skip(
            id("aws.checks"),
            "not checked: IAM actions, groups, log groups, streams and metrics (AWS could not be reached)",
        ));
        return out;
    }
    out.push(Check::pass(
        id("aws.connection"),
        format!(
            "target {}: region {region}, {endpoint}; credentials accepted ({} answered)",
            p.target.name, first.action
        ),
    ));

    // IAM actions, each from the calls made with it.
    for (action, doctor_only) in expected_actions(cfg) {
        let made: Vec<&&CallRecord> = calls.iter().filter(|c| c.action == action).collect();
        let check_id = id(&format!("iam.{action}"));
        let denied = made
            .iter()
            .filter_map(|c| c.error.as_ref())
            .find(|e| is_access_denied(e.code.as_deref()));
        let failed = made.iter().filter_map(|c| c.error.as_ref()).next();
        out.push(match (denied, failed) {
            (Some(e), _) if doctor_only => Check::warn(
                check_id,
                format!("{action} is denied ({}); scans do not need it, but the doctor cannot list what exists without it", e.message),
                format!("allow {action} to let `epitaph doctor` diagnose (see {IAM_POLICY_DOC})"),
            ),
            (Some(e), _) => Check::fail(
                check_id,
                Failure::Config,
                format!("{action} is denied: {}", e.message),
                format!("allow {action} in the IAM policy of these credentials (see {IAM_POLICY_DOC})"),
            ),
            (None, Some(e)) => Check::fail(
                check_id,
                Failure::Unreachable,
                format!("{action} failed: {}", e.message),
                "retry; if it persists, check the endpoint and the service's health".to_string(),
            ),
            (None, None) if made.is_empty() => {
                Check::skip(check_id, format!("not checked: {action} was not called"))
            }
            (None, None) => Check::pass(check_id, format!("{action} allowed")),
        });
    }

    if let Some(a) = &p.activities {
        out.extend(group_checks(cfg, a, &region, &id));
    }
    if let Some(l) = &p.logs {
        out.extend(log_checks(l, &region, &id));
    }
    if let Some(m) = &p.metrics {
        out.push(metric_check(cfg, m, &region, &id("metrics.series")));
    }
    out
}

fn group_checks(
    cfg: &Config,
    a: &crate::sources::probe::ActivitiesProbe,
    region: &str,
    id: &dyn Fn(&str) -> String,
) -> Vec<Check> {
    let s = &cfg.sources.activities;
    let existing: Vec<String> = match &a.listing {
        Ok(l) => l.items.iter().map(|g| g.name.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let truncated = a.listing.as_ref().is_ok_and(|l| l.truncated);
    let mut out = Vec::new();
    let groups_check = match (&a.named, &a.listing) {
        (Some(Err(_)), _) | (None, Err(_)) => Check::skip(
            id("activities.groups"),
            "not checked: DescribeAutoScalingGroups failed (see iam.autoscaling:DescribeAutoScalingGroups)",
        ),
        (Some(Ok(found)), _) => {
            let found: BTreeSet<&str> = found.iter().map(|g| g.name.as_str()).collect();
            let missing: Vec<&String> = s
                .groups
                .iter()
                .filter(|g| !found.contains(g.as_str()))
                .collect();
            if missing.is_empty() {
                Check::pass(
                    id("activities.groups"),
                    format!("every group in sources.activities.groups exists: {}", list(&s.groups, false)),
                )
            } else {
                let mut detail = Vec::new();
                let mut fixes = Vec::new();
                for m in &missing {
                    let (_, nearest) = similar_names(m, &existing);
                    detail.push(format!("`{m}`{}", did_you_mean(&nearest)));
                    if let Some(n) = nearest {
                        fixes.push(format!("`{m}` → `{n}`"));
                    }
                }
                let (listed, _) = similar_names(missing[0], &existing);
                Check::fail(
                    id("activities.groups"),
                    Failure::Config,
                    format!(
                        "sources.activities.groups: no Auto Scaling group named {} in {region}; groups that exist: {}",
                        detail.join(", "),
                        list(&listed, truncated || existing.len() > listed.len())
                    ),
                    if fixes.is_empty() {
                        "set sources.activities.groups to existing group names (or check aws.region / aws.targets)".to_string()
                    } else {
                        format!("in sources.activities.groups: {}", fixes.join(", "))
                    },
                )
            }
        }
        (None, Ok(l)) => match &s.group_tag {
            Some(tag) if a.selected.is_empty() => {
                let key = tag.split_once('=').map_or(tag.as_str(), |(k, _)| k);
                let values: BTreeSet<String> = l
                    .items
                    .iter()
                    .flat_map(|g: &GroupSeen| &g.tags)
                    .filter(|(k, _)| k == key)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let values: Vec<String> = values.into_iter().collect();
                let (_, nearest) = similar_names(tag, &values);
                Check::fail(
                    id("activities.groups"),
                    Failure::Config,
                    format!(
                        "sources.activities.group_tag: no group in {region} carries the tag `{tag}`{}; tags with key `{key}`: {}; groups: {}",
                        did_you_mean(&nearest),
                        list(&values, false),
                        list(&existing, truncated)
                    ),
                    match nearest {
                        Some(n) => format!("set sources.activities.group_tag = \"{n}\""),
                        None => format!("tag the groups to read with `{tag}`, or name them in sources.activities.groups"),
                    },
                )
            }
            Some(tag) => Check::pass(
                id("activities.groups"),
                format!("{} group(s) tagged `{tag}`: {}", a.selected.len(), list(&a.selected, false)),
            ),
            None if existing.is_empty() => Check::fail(
                id("activities.groups"),
                Failure::Config,
                format!("no Auto Scaling group in {region}"),
                "check aws.region / aws.targets (and the account the credentials belong to)",
            ),
            None => Check::pass(
                id("activities.groups"),
                format!(
                    "every group in {region} is read ({}{}): {}",
                    existing.len(),
                    if truncated { "+" } else { "" },
                    list(&existing, truncated)
                ),
            ),
        },
    };
    out.push(groups_check);
    out.push(match &a.activities {
        Err(_) => Check::skip(
            id("activities.terminations"),
            "not checked: DescribeScalingActivities failed (see iam.autoscaling:DescribeScalingActivities)",
        ),
        Ok(_) if a.selected.is_empty() => Check::skip(
            id("activities.terminations"),
            "not checked: no group selected",
        ),
        Ok(terms) if terms.is_empty() => Check::warn(
            id("activities.terminations"),
            format!(
                "no termination since scan.since in the latest activities of {}",
                list(&a.selected, false)
            ),
            "nothing to fault; to check last words and memory of a terminated instance, widen scan.since (running instances are checked instead)",
        ),
        Ok(terms) => Check::pass(
            id("activities.terminations"),
            format!(
                "{} termination(s) since scan.since, the latest {} of {}",
                terms.len(),
                terms[0].instance_id,
                terms[0].asg
            ),
        ),
    });
    out
}

/// `{instance_id}` in place of the instance id a stream name holds, if any.
fn pattern_of(stream: &str) -> Option<String> {
    let id = crate::sources::file::find_instance_id(stream)?;
    Some(stream.replacen(id, "{instance_id}", 1))
}

fn log_checks(l: &LogsProbe, region: &str, id: &dyn Fn(&str) -> String) -> Vec<Check> {
    let mut out = Vec::new();
    let mut existing: Vec<&LogGroupProbe> = Vec::new();
    for g in &l.groups {
        let check_id = id(&format!(
            "logs.{}",
            g.key.trim_start_matches("sources.logs.")
        ));
        out.push(match &g.by_prefix {
            Err(_) => Check::skip(
                check_id,
                "not checked: DescribeLogGroups failed (see iam.logs:DescribeLogGroups)",
            ),
            Ok(names) if names.contains(&g.log_group) => {
                existing.push(g);
                Check::pass(check_id, format!("{} `{}` exists", g.key, g.log_group))
            }
            Ok(names) => {
                let mut candidates = names.clone();
                let mut truncated = false;
                if let Some(Ok(o)) = &g.others {
                    candidates.extend(o.items.iter().cloned());
                    truncated = o.truncated;
                }
                let (listed, nearest) = similar_names(&g.log_group, &candidates);
                Check::fail(
                    check_id,
                    Failure::Config,
                    format!(
                        "{} `{}` does not exist in {region}{}; log groups there: {}",
                        g.key,
                        g.log_group,
                        did_you_mean(&nearest),
                        list(&listed, truncated || candidates.len() > listed.len())
                    ),
                    match nearest {
                        Some(n) => format!("set {} = \"{n}\"", g.key),
                        None => format!(
                            "set {} to the log group the CloudWatch agent writes to (its `log_group_name`)",
                            g.key
                        ),
                    },
                )
            }
        });
    }
    let check_id = id("logs.last_words");
    if existing.is_empty() {
        out.push(Check::skip(
            check_id,
            "not checked: no configured log group exists",
        ));
        return out;
    }
    let lookups: Vec<(&LogGroupProbe, &crate::sources::probe::Lookup)> = existing
        .iter()
        .flat_map(|g| g.lookups.iter().map(move |x| (*g, x)))
        .collect();
    if lookups.iter().all(|(_, x)| x.placeholder) {
        out.push(Check::warn(
            check_id,
            "not checked on data: no terminated or running instance to look up",
            "widen scan.since to include a termination",
        ));
        return out;
    }
    if let Some((_, x)) = lookups.iter().find(|(_, x)| x.result.is_err()) {
        let e = x
            .result
            .as_ref()
            .err()
            .cloned()
            .unwrap_or_else(|| CallError {
                action: String::new(),
                code: None,
                answered: false,
                message: String::new(),
            });
        out.push(if is_access_denied(e.code.as_deref()) {
            Check::skip(check_id, format!("not checked: {} is denied", e.action))
        } else {
            Check::fail(
                check_id,
                Failure::Unreachable,
                format!("looking up {}: {}", x.looked_for, e.message),
                "retry; if it persists, check the endpoint and the service's health",
            )
        });
        return out;
    }
    let instances: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for (_, x) in &lookups {
            if !v.contains(&x.instance_id.as_str()) {
                v.push(&x.instance_id);
            }
        }
        v
    };
    let found: Vec<(&LogGroupProbe, &crate::sources::probe::Lookup)> = lookups
        .iter()
        .filter(|(_, x)| matches!(x.result, Ok(LookupResult::Events(_))))
        .copied()
        .collect();
    let with_words: BTreeSet<&str> = found.iter().map(|(_, x)| x.instance_id.as_str()).collect();
    if let Some((g, x)) = found.first() {
        let mut c = Check::pass(
            check_id,
            format!(
                "last words found for {} of the {} most recent instances ({} in {})",
                with_words.len(),
                instances.len(),
                x.looked_for,
                g.log_group
            ),
        );
        if with_words.len() < instances.len() {
            c = Check::warn(
                c.id,
                format!("{} — none for {}", c.detail, instances.iter().filter(|i| !with_words.contains(*i)).cloned().collect::<Vec<_>>().join(", ")),
                "usually an instance that died before its agent flushed; if it is every new instance, check the agent",
            );
        }
        out.push(c);
        return out;
    }
    let looked: Vec<String> = lookups
        .iter()
        .map(|(g, x)| format!("{} in {}", x.looked_for, g.log_group))
        .collect();
    let no_stream = lookups
        .iter()
        .all(|(_, x)| x.result == Ok(LookupResult::NoStream));
    if !no_stream || l.stream_lookup == StreamLookup::Text {
        out.push(Check::warn(
            check_id,
            format!("no event before the end for the {} most recent instances; looked for {}", instances.len(), looked.join("; ")),
            "check that the agent ships the application's log to this group and flushes it before the instance stops",
        ));
        return out;
    }
    let recent: Vec<String> = existing
        .iter()
        .filter_map(|g| g.recent_streams.as_ref())
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let listing_denied = existing
        .iter()
        .filter_map(|g| g.recent_streams.as_ref())
        .find_map(|r| r.as_ref().err())
        .map(|e| format!(" (streams could not be listed: {})", e.message))
        .unwrap_or_default();
    let suggestion = recent.iter().find_map(|s| pattern_of(s));
    let detail = format!(
        "no stream for the {} most recent instance(s) (sources.logs.stream_pattern = `{}`, stream_lookup = \"{}\"); looked for {}; newest streams in the group: {}{listing_denied}",
        instances.len(),
        l.stream_pattern,
        l.stream_lookup,
        looked.join("; "),
        list(&recent, false)
    );
    let fix = match (&suggestion, recent.is_empty()) {
        (Some(p), _) if *p != l.stream_pattern => format!("set sources.logs.stream_pattern = \"{p}\""),
        (_, true) => "the group has no streams: check that the CloudWatch agent ships logs to it".to_string(),
        _ => "the streams are not named by instance id: set sources.logs.stream_lookup = \"text\" to find events that mention the instance id".to_string(),
    };
    out.push(if instances.len() >= MIN_SAMPLES_FOR_STREAM_FAIL {
        Check::fail(check_id, Failure::Config, detail, fix)
    } else {
        Check::warn(check_id, detail, fix)
    });
    out
}
