//! `epitaph doctor`'s probe of the Prometheus backend, as data (`sources::probe`): the scan's
//! own memory query (and limit query) for the sampled instances over the last part of their
//! lives — is the server reachable, is the PromQL valid, does each instance have exactly one
//! series, what do the values look like — and, when no sample has a series, the query widened
//! to any instance (which ids do have it?) and to every series (is `instance_label` on them at
//! all?). `analysis::doctor::prometheus_checks` judges it.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};

use super::config::{Template, INSTANCE_MATCHER, KEY};
use super::query::{self, Matrix};
use super::{Failure, PrometheusMetrics, QUERY_RANGE};
use crate::sources::probe::{
    Call, CallRecord, Listing, PrometheusProbe, Sample, SeriesSeen, PLACEHOLDER_INSTANCE,
};

/// How much of each sample's life the probe reads (minutes before its end).
pub const PROBE_MINUTES: i64 = 60;
/// Instance ids or label names a widened query lists.
pub const PROBE_LISTED: i64 = 10;
/// Label sets kept per sampled instance (enough to say what tells several series apart).
const LABEL_SETS_KEPT: usize = 3;

impl PrometheusMetrics {
    /// Probes the backend for `samples` (the doctor's recent terminations, or none).
    pub async fn probe(&self, samples: &[Sample]) -> PrometheusProbe {
        let mut calls = Vec::new();
        let s = &self.settings;
        let end = samples.first().map(|x| x.until).unwrap_or_else(Utc::now);
        let mut probe = PrometheusProbe {
            url: s.display_url(),
            samples: samples.to_vec(),
            series: Ok(Vec::new()),
            unlabelled: 0,
            limit_query: s.limit_query.is_some(),
            other_instances: None,
            label_names: None,
            calls: Vec::new(),
        };
        let looked_up: Vec<(String, chrono::DateTime<Utc>, chrono::DateTime<Utc>)> =
            if samples.is_empty() {
                // Nothing to look up: the query for a made-up instance still says whether the
                // server answers and the PromQL is valid.
                vec![(
                    PLACEHOLDER_INSTANCE.to_string(),
                    end - Duration::minutes(PROBE_MINUTES),
                    end,
                )]
            } else {
                samples
                    .iter()
                    .map(|x| {
                        (
                            x.instance_id.clone(),
                            x.until - Duration::minutes(PROBE_MINUTES),
                            x.until,
                        )
                    })
                    .collect()
            };
        let windows: Vec<_> = looked_up.iter().map(|(_, a, b)| (*a, *b)).collect();
        let mut seen: Vec<SeriesSeen> = Vec::new();
        for plan in query::plan(&windows, s.batch, s.min_step_secs, s.max_points) {
            let ids: Vec<&str> = plan
                .members
                .iter()
                .map(|&m| looked_up[m].0.as_str())
                .collect();
            let memory = self
                .probe_call(
                    &query::render(&s.query, &s.instance_label, &ids),
                    plan.start,
                    plan.end,
                    plan.step,
                    &mut calls,
                )
                .await;
            let memory = match memory {
                Ok(m) => m,
                Err(mut e) => {
                    e.message = format!("{KEY}.query: {}", e.message);
                    probe.series = Err(e);
                    break;
                }
            };
            let limits = match &s.limit_query {
                Some(t) => {
                    match self
                        .probe_call(
                            &query::render(t, &s.instance_label, &ids),
                            plan.start,
                            plan.end,
                            plan.step,
                            &mut calls,
                        )
                        .await
                    {
                        Ok(m) => Some(m),
                        Err(mut e) => {
                            e.message = format!("{KEY}.limit_query: {}", e.message);
                            probe.series = Err(e);
                            break;
                        }
                    }
                }
                None => None,
            };
            for &m in &plan.members {
                let (id, from, to) = &looked_up[m];
                if samples.is_empty() {
                    continue;
                }
                let mine = |mx: &Matrix| -> Vec<query::RawSeries> {
                    mx.series
                        .iter()
                        .filter(|x| match &s.query {
                            Template::PerInstance(_) => true,
                            Template::Batched(_) => x.metric.get(&s.instance_label) == Some(id),
                        })
                        .cloned()
                        .collect()
                };
                let series = mine(&memory);
                let mut item = SeriesSeen {
                    instance_id: id.clone(),
                    series: series.len(),
                    points: 0,
                    impossible: 0,
                    max: None,
                    label_sets: series
                        .iter()
                        .take(LABEL_SETS_KEPT)
                        .map(|x| x.metric.clone())
                        .collect(),
                    limit: None,
                };
                for x in &series {
                    for (ts, raw) in &x.values {
                        let in_window = crate::timefmt::unix_to_instant(*ts)
                            .is_some_and(|t| t >= *from && t <= *to);
                        if !in_window {
                            continue;
                        }
                        let v = raw.trim().parse::<f64>().unwrap_or(f64::NAN);
                        if v.is_finite() {
                            item.max = Some(item.max.map_or(v, |m: f64| m.max(v)));
                        }
                        match crate::sources::impossible_memory_value(v, s.unit.as_str()) {
                            None => item.points += 1,
                            Some(_) => item.impossible += 1,
                        }
                    }
                }
                if let Some(l) = &limits {
                    item.limit = mine(l)
                        .iter()
                        .flat_map(|x| x.values.iter())
                        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
                        .rfind(|v| v.is_finite() && *v > 0.0);
                }
                seen.push(item);
            }
            if let Template::Batched(_) = s.query {
                probe.unlabelled += memory
                    .series
                    .iter()
                    .filter(|x| !x.metric.contains_key(&s.instance_label))
                    .count();
            }
        }
        if probe.series.is_ok() {
            let nothing = seen.iter().all(|x| x.series == 0);
            probe.series = Ok(seen);
            if let (true, Template::Batched(t)) = (nothing, &s.query) {
                let (from, to) = (end - Duration::minutes(PROBE_MINUTES), end);
                let step = (to - from).num_seconds().max(1);
                let (a, b) = query::align(from, to, step);
                let label = &s.instance_label;
                let any_instance = t.replace(INSTANCE_MATCHER, &format!("{label}=~\".+\""));
                let others = self
                    .probe_call(
                        &format!("topk({PROBE_LISTED}, count by ({label}) ({any_instance}))"),
                        a,
                        b,
                        step,
                        &mut calls,
                    )
                    .await
                    .map(|m| listing(m.series.iter().filter_map(|x| x.metric.get(label).cloned())));
                let none_found = matches!(&others, Ok(l) if l.items.is_empty());
                probe.other_instances = Some(others);
                if none_found {
                    let every = t.replace(INSTANCE_MATCHER, &format!("{label}=~\".*\""));
                    probe.label_names = Some(
                        self.probe_call(&format!("topk(3, {every})"), a, b, step, &mut calls)
                            .await
                            .map(|m| {
                                let names: BTreeSet<String> = m
                                    .series
                                    .iter()
                                    .flat_map(|x| x.metric.keys().cloned())
                                    .filter(|k| k != "__name__")
                                    .collect();
                                listing(names.into_iter())
                            }),
                    );
                }
            }
        }
        probe.calls = calls;
        probe
    }

    async fn probe_call(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step: i64,
        calls: &mut Vec<CallRecord>,
    ) -> Call<Matrix> {
        let r = self
            .query_range(promql, start, end, step)
            .await
            .map_err(|f: Failure| f.to_call_error());
        calls.push(CallRecord::of(QUERY_RANGE, &r));
        r
    }
}

/// The first `PROBE_LISTED` distinct items, in order.
fn listing(items: impl Iterator<Item = String>) -> Listing<String> {
    let mut out: Vec<String> = Vec::new();
    let mut truncated = false;
    for i in items {
        if out.contains(&i) {
            continue;
        }
        if out.len() as i64 >= PROBE_LISTED {
            truncated = true;
            break;
        }
        out.push(i);
    }
    Listing {
        items: out,
        truncated,
    }
}
