//! The CloudWatch memory metric's checks: the metric and namespace exist, the dimension sets
//! it is published with, the exact `extra_dimensions` that would select it, and a sampled
//! instance's series.

use super::*;

/// Dimension names of a set, sorted, as "A, B".
fn names_of(set: &DimensionSet) -> String {
    let mut n: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
    n.sort_unstable();
    format!("{{{}}}", n.join(", "))
}

fn same_names(a: &DimensionSet, b: &DimensionSet) -> bool {
    let na: BTreeSet<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
    let nb: BTreeSet<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
    na == nb
}

/// The group-valued dimensions the CloudWatch agent appends (`{asg}` in extra_dimensions).
const GROUP_DIMENSIONS: &[&str] = &["AutoScalingGroupName"];

/// The `extra_dimensions` that make a scan's query match `set` (every dimension but the
/// instance's; a group-valued one as `{asg}`), and the dimensions whose value is pinned to
/// one instance's (an AMI, an instance type).
pub fn suggest_extra_dimensions(
    set: &DimensionSet,
    instance_dimension: &str,
) -> (String, Vec<String>) {
    let mut items = Vec::new();
    let mut pinned = Vec::new();
    let mut sorted = set.clone();
    sorted.sort();
    for (k, v) in &sorted {
        if k == instance_dimension {
            continue;
        }
        if GROUP_DIMENSIONS.contains(&k.as_str()) {
            items.push(format!("\"{k}={{asg}}\""));
        } else {
            items.push(format!("\"{k}={v}\""));
            pinned.push(k.clone());
        }
    }
    (
        format!("sources.metrics.extra_dimensions = [{}]", items.join(", ")),
        pinned,
    )
}

pub(super) fn metric_check(cfg: &Config, m: &MetricsProbe, region: &str, check_id: &str) -> Check {
    let s = &cfg.sources.metrics;
    let metric = format!("{}/{}", s.namespace, s.metric_name);
    let queried = names_of(&m.queried);
    match &m.data {
        Err(e) if is_access_denied(e.code.as_deref()) => {
            return Check::skip(check_id, "not checked: cloudwatch:GetMetricData is denied");
        }
        Err(e) => {
            return Check::fail(
                check_id,
                Failure::Unreachable,
                format!("GetMetricData for {metric} failed: {}", e.message),
                "retry; if it persists, check the endpoint and the service's health",
            )
        }
        // CloudWatch matches dimension sets exactly, so points mean the set exists; the
        // listing still has the last word when it answered (an emulator may match subsets).
        Ok(n) if *n > 0 => {
            let listed_exactly = match &m.for_instance {
                Some(Ok(sets)) => sets.iter().any(|c| same_names(c, &m.queried)),
                _ => true,
            };
            if let (Some(sample), true) = (&m.sample, listed_exactly) {
                return Check::pass(
                    check_id,
                    format!(
                        "{n} point(s) of {metric} {queried} for {} in the last hour of its life",
                        describe_sample(sample)
                    ),
                );
            }
        }
        Ok(_) => {}
    }
    let who = m
        .sample
        .as_ref()
        .map(describe_sample)
        .unwrap_or_else(|| "no instance (none terminated in the window, none running)".into());
    let list_denied = [
        m.for_instance.as_ref().and_then(|r| r.as_ref().err()),
        m.for_metric.as_ref().and_then(|r| r.as_ref().err()),
        m.names_in_namespace.as_ref().and_then(|r| r.as_ref().err()),
        m.namespaces.as_ref().and_then(|r| r.as_ref().err()),
    ]
    .into_iter()
    .flatten()
    .next();
    if let Some(e) = list_denied {
        return Check::warn(
            check_id,
            format!("no point of {metric} {queried} for {who}; the metrics that exist could not be listed: {}", e.message),
            format!("allow cloudwatch:ListMetrics so the doctor can say what exists (see {IAM_POLICY_DOC})"),
        );
    }
    // The dimension sets that name an instance: the sample's own, else any instance's.
    let candidates: Vec<&DimensionSet> = match (&m.for_instance, &m.for_metric) {
        (Some(Ok(sets)), _) if !sets.is_empty() => sets.iter().collect(),
        (_, Some(Ok(l))) => l
            .items
            .iter()
            .filter(|set| set.iter().any(|(k, _)| *k == s.instance_dimension))
            .collect(),
        _ => Vec::new(),
    };
    let all_sets: Vec<&DimensionSet> = match (&m.for_instance, &m.for_metric) {
        (Some(Ok(sets)), _) if !sets.is_empty() => sets.iter().collect(),
        (_, Some(Ok(l))) => l.items.iter().collect(),
        _ => Vec::new(),
    };
    let distinct_sets = |sets: &[&DimensionSet]| {
        let names: BTreeSet<String> = sets.iter().map(|d| names_of(d)).collect();
        names
            .into_iter()
            .take(MAX_LISTED_NAMES)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !candidates.is_empty() {
        if candidates.iter().any(|c| same_names(c, &m.queried)) {
            let own = matches!(&m.for_instance, Some(Ok(sets)) if !sets.is_empty());
            return Check::warn(
                check_id,
                if own {
                    format!("{metric} {queried} exists for {who} but had no point in the last hour of its life")
                } else if m.sample.is_some() {
                    format!("{metric} {queried} exists for other instances but not for {who}")
                } else {
                    format!("{metric} {queried} exists; {who} to fetch it for")
                },
                "check that the CloudWatch agent runs (and publishes this metric) on every instance",
            );
        }
        // The smallest set that names the instance: the fewest extra dimensions to pin.
        let best = candidates
            .iter()
            .min_by_key(|c| (c.len(), names_of(c)))
            .copied()
            .cloned()
            .unwrap_or_default();
        let (setting, pinned) = suggest_extra_dimensions(&best, &s.instance_dimension);
        let pinned_note = if pinned.is_empty() {
            String::new()
        } else {
            format!(
                "; {} pin(s) one value for every instance — better, make the agent also publish an instance-only series (\"aggregation_dimensions\": [[\"{}\"]]) or drop {} from its append_dimensions",
                pinned.join(", "),
                s.instance_dimension,
                pinned.join(", ")
            )
        };
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "no series of {metric} with the dimensions a scan asks for, {queried}, for {who}; the metric exists with the dimension set(s): {}",
                distinct_sets(&candidates)
            ),
            format!("set {setting}{pinned_note}"),
        );
    }
    if !all_sets.is_empty() {
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "sources.metrics.instance_dimension `{}` is in none of the dimension sets of {metric}: {}",
                s.instance_dimension,
                distinct_sets(&all_sets)
            ),
            "make the CloudWatch agent append the instance id (\"append_dimensions\": {\"InstanceId\": \"${aws:InstanceId}\"}), or set sources.metrics.instance_dimension to the dimension that holds it"
                .to_string(),
        );
    }
    if let Some(Ok(names)) = &m.names_in_namespace {
        if !names.items.is_empty() {
            let (listed, nearest) = similar_names(&s.metric_name, &names.items);
            return Check::fail(
                check_id,
                Failure::Config,
                format!(
                    "sources.metrics.metric_name `{}` has no series in the namespace {} in {region}{}; metrics there: {}",
                    s.metric_name,
                    s.namespace,
                    did_you_mean(&nearest),
                    list(&listed, names.truncated || names.items.len() > listed.len())
                ),
                match nearest {
                    Some(n) => format!("set sources.metrics.metric_name = \"{n}\""),
                    None => "set sources.metrics.metric_name to the memory metric the agent publishes (mem_used_percent by default)".into(),
                },
            );
        }
    }
    if let Some(Ok(spaces)) = &m.namespaces {
        let (listed, nearest) = similar_names(&s.namespace, &spaces.items);
        return Check::fail(
            check_id,
            Failure::Config,
            format!(
                "sources.metrics.namespace `{}` has no metric in {region}{}; namespaces: {}",
                s.namespace,
                did_you_mean(&nearest),
                list(&listed, spaces.truncated)
            ),
            match nearest {
                Some(n) => format!("set sources.metrics.namespace = \"{n}\""),
                None => "install the CloudWatch agent with the mem metrics (it publishes CWAgent/mem_used_percent), or set sources.metrics.namespace".into(),
            },
        );
    }
    Check::warn(
        check_id,
        format!("no point of {metric} {queried} for {who}"),
        "check the CloudWatch agent publishes the memory metric",
    )
}
