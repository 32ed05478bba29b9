//! The Prometheus backend's checks: the server answers, the memory query finds the sampled
//! instances' series, and the values look like the configured unit.

use super::*;

/// The Prometheus backend could not even be set up (bad settings, no SigV4 credentials).
pub fn prometheus_not_configured(message: &str) -> Vec<Check> {
    vec![
        Check::fail(
            "prometheus.connection",
            Failure::Config,
            message.to_string(),
            "fix [sources.metrics.prometheus] (`epitaph config check` lists every problem)",
        ),
        Check::skip(
            "prometheus.checks",
            "not checked: query, series and unit need a working backend",
        ),
    ]
}

/// The checks of the Prometheus backend, in order: the server answers (and accepts the
/// credentials), the PromQL is valid, the sampled instances have one series each (or what
/// exists instead), the values fit the unit.
pub fn prometheus_checks(cfg: &Config, p: &PrometheusProbe) -> Vec<Check> {
    use crate::sources::prometheus::config::KEY;
    let mut out = Vec::new();
    let first_error = p.calls.first().and_then(|c| c.error.as_ref());
    let code = first_error.and_then(|e| e.code.as_deref());
    match first_error {
        Some(e) if !e.answered => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Unreachable,
                format!("{}: no answer: {}", p.url, e.message),
                format!("check {KEY}.url, the network, and that the server is up"),
            ));
            out.push(Check::skip(
                "prometheus.checks",
                "not checked: query, series and unit (the server could not be reached)",
            ));
            return out;
        }
        Some(e) if matches!(code, Some("401" | "403")) => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Config,
                format!("{}: the credentials were refused: {}", p.url, e.message),
                format!("check {KEY}.bearer_token / bearer_token_file / username and password / sigv4 (aps:QueryMetrics on the workspace) and headers (X-Scope-OrgID)"),
            ));
            return out;
        }
        Some(e) if code == Some("404") => {
            out.push(Check::fail(
                "prometheus.connection",
                Failure::Config,
                format!("{}: no Prometheus API there (/api/v1/query_range not found): {}", p.url, e.message),
                format!("set {KEY}.url to the base the API lives under, without /api/v1 (Mimir: …/prometheus; AMP: …/workspaces/ws-…)"),
            ));
            return out;
        }
        _ => out.push(Check::pass(
            "prometheus.connection",
            format!("{} answers query_range", p.url),
        )),
    }
    let seen = match &p.series {
        Err(e) if code_is(e, "bad_data") || code_is(e, "400") => {
            out.push(Check::fail(
                "prometheus.query",
                Failure::Config,
                format!("the server rejected the query: {}", e.message),
                format!("fix the PromQL in {KEY}.query / limit_query (try it in the server's UI with an instance id in place of the placeholder)"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                "prometheus.query",
                Failure::Unreachable,
                format!("the query failed: {}", e.message),
                "retry; if it persists, check the server's health and whether the query is too expensive",
            ));
            return out;
        }
        Ok(seen) => {
            out.push(Check::pass(
                "prometheus.query",
                format!(
                    "{KEY}.query{} valid",
                    if p.limit_query {
                        " and limit_query are"
                    } else {
                        " is"
                    }
                ),
            ));
            seen
        }
    };
    out.push(prometheus_series_check(cfg, p, seen));
    if let Some(c) = prometheus_unit_check(cfg, p, seen) {
        out.push(c);
    }
    out
}

fn code_is(e: &CallError, code: &str) -> bool {
    e.code.as_deref() == Some(code)
}

fn prometheus_series_check(
    cfg: &Config,
    p: &PrometheusProbe,
    seen: &[crate::sources::probe::SeriesSeen],
) -> Check {
    const ID: &str = "prometheus.series";
    let label = &cfg.sources.metrics.instance_label;
    if p.unlabelled > 0 {
        return Check::fail(
            ID,
            Failure::Config,
            format!("{} series of the answer have no `{label}` label, so a batched query cannot tell the instances apart", p.unlabelled),
            format!("keep the label in sources.metrics.prometheus.query (e.g. max by ({label}) (…)), or set sources.metrics.instance_label to the label that holds the instance id"),
        );
    }
    if p.samples.is_empty() {
        return Check::skip(
            ID,
            "not checked: no terminated instance to look a series up for (the server answers and the query is valid)",
        );
    }
    if let Some(x) = seen.iter().find(|x| x.series > 1) {
        let mut differ: Vec<&str> = Vec::new();
        for set in &x.label_sets {
            for (k, v) in set {
                if x.label_sets.iter().any(|o| o.get(k) != Some(v)) && !differ.contains(&k.as_str())
                {
                    differ.push(k);
                }
            }
        }
        return Check::fail(
            ID,
            Failure::Config,
            format!("the query gives {} series for {} (they differ in {}); a scan needs one per instance", x.series, x.instance_id, differ.join(", ")),
            format!("aggregate in sources.metrics.prometheus.query, e.g. max by ({label}) (…), or add a matcher that picks one"),
        );
    }
    let with: Vec<&crate::sources::probe::SeriesSeen> = seen
        .iter()
        .filter(|x| x.series == 1 && x.points > 0)
        .collect();
    let without: Vec<String> = seen
        .iter()
        .filter(|x| !(x.series == 1 && x.points > 0))
        .map(|x| x.instance_id.clone())
        .collect();
    let minutes = crate::sources::prometheus::PROBE_MINUTES;
    if without.is_empty() {
        let points: usize = with.iter().map(|x| x.points).sum();
        return Check::pass(
            ID,
            format!("{} of the {} sampled instances have a memory series ({points} points in the last {minutes} minutes of their lives)", with.len(), seen.len()),
        );
    }
    if !with.is_empty() {
        return Check::warn(
            ID,
            format!(
                "{} of the {} sampled instances have a memory series; none for {}",
                with.len(),
                seen.len(),
                without.join(", ")
            ),
            "check that the exporter or agent ran on those instances until they died",
        );
    }
    let who = without.join(", ");
    match (&p.other_instances, &p.label_names) {
        (Some(Ok(others)), _) if !others.items.is_empty() => {
            let ids = others
                .items
                .iter()
                .filter(|v| crate::sources::file::find_instance_id(v).is_some())
                .count();
            if ids == 0 {
                Check::fail(
                    ID,
                    Failure::Config,
                    format!("no series for {who}: the label `{label}` holds values such as {}, not instance ids", list(&others.items, others.truncated)),
                    "give the series a label with the instance id (relabel __meta_ec2_instance_id, or the agent's instance_id) and set sources.metrics.instance_label to it".to_string(),
                )
            } else {
                Check::warn(
                    ID,
                    format!("no series for {who} in the last {minutes} minutes of their lives; the query has series for other instances: {}", list(&others.items, others.truncated)),
                    "check that the exporter or agent runs on every instance (and that the server's retention covers them)",
                )
            }
        }
        (_, Some(Ok(names))) if !names.items.is_empty() => {
            let (listed, nearest) = similar_names(label, &names.items);
            Check::fail(
                ID,
                Failure::Config,
                format!("no series of the query carries the label `{label}`{}; its series have the labels: {}", did_you_mean(&nearest), list(&listed, names.truncated)),
                match nearest {
                    Some(n) => format!("set sources.metrics.instance_label = \"{n}\""),
                    None => "set sources.metrics.instance_label to the label holding the instance id (relabel __meta_ec2_instance_id into one)".into(),
                },
            )
        }
        (_, Some(Ok(_))) => Check::fail(
            ID,
            Failure::Config,
            format!("the query has no series at all around {} (no series for {who})", p.samples.first().map(|s| s.until.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()),
            "check the metric name and matchers in sources.metrics.prometheus.query (and the server's retention)",
        ),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Check::warn(
            ID,
            format!("no series for {who}; what exists could not be listed: {}", e.message),
            "check sources.metrics.prometheus.query and sources.metrics.instance_label",
        ),
        _ => Check::warn(
            ID,
            format!("no series for {who} in the last {minutes} minutes of their lives"),
            "check the query's placeholder names the label that holds the instance id, and that the exporter ran",
        ),
    }
}

/// Does what the series hold fit `sources.metrics.unit` (and the limit)? None when no value
/// was seen.
fn prometheus_unit_check(
    cfg: &Config,
    p: &PrometheusProbe,
    seen: &[crate::sources::probe::SeriesSeen],
) -> Option<Check> {
    const ID: &str = "prometheus.unit";
    let m = &cfg.sources.metrics;
    let (id, max) = seen
        .iter()
        .filter_map(|x| x.max.map(|v| (x.instance_id.as_str(), v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let impossible: usize = seen.iter().map(|x| x.impossible).sum();
    if m.unit == crate::config::Unit::Percent && max > crate::sources::MAX_MEMORY_PERCENT {
        return Some(Check::fail(
            ID,
            Failure::Config,
            format!("values up to {max} (for {id}): not a percentage; {impossible} value(s) would be skipped as impossible"),
            "set sources.metrics.unit = \"bytes\" with sources.metrics.limit or sources.metrics.prometheus.limit_query, or make the query give percent (100 * used / total)",
        ));
    }
    if m.unit == crate::config::Unit::Bytes && max <= PERCENT_LOOKING_MAX {
        return Some(Check::warn(
            ID,
            format!("values at most {max} (for {id}): that looks like a percentage, not bytes"),
            "set sources.metrics.unit = \"percent\" (and drop limit / limit_query)",
        ));
    }
    if p.limit_query {
        let missing: Vec<&str> = seen
            .iter()
            .filter(|x| x.series > 0 && x.limit.is_none())
            .map(|x| x.instance_id.as_str())
            .collect();
        if !missing.is_empty() {
            return Some(Check::warn(
                ID,
                format!("sources.metrics.prometheus.limit_query has no value for {}", missing.join(", ")),
                "check that limit_query (node_memory_MemTotal_bytes, container_spec_memory_limit_bytes) carries the same instance label as the query; else set sources.metrics.limit",
            ));
        }
        if let Some(x) = seen
            .iter()
            .find(|x| matches!((x.max, x.limit), (Some(v), Some(l)) if v > l * OVER_LIMIT_FACTOR))
        {
            return Some(Check::warn(
                ID,
                format!(
                    "{}'s memory ({}) exceeds its limit from limit_query ({})",
                    x.instance_id,
                    x.max.unwrap_or_default(),
                    x.limit.unwrap_or_default()
                ),
                "check that query and limit_query measure the same thing (container vs node)",
            ));
        }
    }
    Some(Check::pass(
        ID,
        format!("values up to {max} fit unit = \"{}\"", m.unit),
    ))
}

/// A bytes series whose values never exceed this is probably a percentage.
pub const PERCENT_LOOKING_MAX: f64 = 100.0;
/// Memory above its limit by more than this factor means the two queries disagree.
pub const OVER_LIMIT_FACTOR: f64 = 1.05;
