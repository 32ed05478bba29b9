//! Prometheus `query_range` JSON responses (a matrix, or a bare matrix) read into the index:
//! one run per result.

use super::*;

/// A Prometheus `query_range` response (or a bare matrix), its document starting at `start`.
pub(super) fn ingest_prometheus(
    bytes: &[u8],
    doc: &MetricsDoc<'_>,
    start: usize,
    origin: &str,
    instance_label: &str,
    unit: &str,
    part: &mut Part,
) -> Result<()> {
    if doc.status.get() == Some("error") {
        return Err(Error::input(
            origin,
            "Prometheus response has status \"error\"",
        ));
    }
    let in_data = doc.data != Shape::Absent;
    let (result_type, result) = if in_data {
        (&doc.data_result_type, doc.data_result)
    } else {
        (&doc.result_type, doc.result)
    };
    if let Some(rt) = result_type.get() {
        if rt != "matrix" {
            return Err(Error::input(
                origin,
                format!("resultType `{rt}`: expected a query_range matrix"),
            ));
        }
    }
    if result != Shape::Array {
        return Err(Error::input(
            origin,
            "not a metrics export: expected a Prometheus query_range response (data.result), `aws cloudwatch get-metric-data` output (MetricDataResults) or `aws cloudwatch get-metric-statistics` output (Datapoints)",
        ));
    }
    let object = if in_data {
        spans::last_member(bytes, start, b"data").unwrap_or(start)
    } else {
        start
    };
    for (i, (r, span)) in elements_of(bytes, object, b"result")
        .into_iter()
        .enumerate()
    {
        let at = format!("{origin}: data.result[{i}]");
        let labels: BTreeMap<String, String> = r
            .get("metric")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let instance = labels.get(instance_label).cloned().or_else(|| {
            labels
                .values()
                .find_map(|v| find_instance_id(v).map(str::to_string))
        });
        let Some(instance) = instance else {
            part.skipped.push(
                at,
                format!("no `{instance_label}` label naming an instance"),
            );
            continue;
        };
        let Some(sampled) = prometheus_samples(&r, unit) else {
            part.skipped.push(at, "no values array");
            continue;
        };
        part.series(&instance).labels.extend(labels);
        part.add_run(&instance, RunKind::Prometheus, span, &sampled.samples);
        count_bad_samples(part, &at, sampled.bad, sampled.impossible, unit);
    }
    Ok(())
}

/// One Prometheus matrix result's samples (`None`: it has no `values` array).
pub(super) fn prometheus_samples(r: &Value, unit: &str) -> Option<Sampled> {
    let values = r.get("values").and_then(Value::as_array)?;
    let mut out = Sampled::default();
    for pair in values {
        let t = pair
            .get(0)
            .and_then(Value::as_f64)
            .and_then(unix_to_instant);
        let v = pair
            .get(1)
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .or_else(|| v.as_f64())
            })
            .filter(|v| v.is_finite());
        out.add(t, v, unit);
    }
    Some(out)
}
