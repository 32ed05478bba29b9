//! CloudWatch memory series: `GetMetricData` with up to 500 queries per call (one per instance,
//! the API's maximum), following `NextToken`; a query the service marks `InternalError` or
//! `Forbidden` fails only that instance (it stays pending), `PartialData` pages are followed.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::cloudwatch::{MetricQuery, GET_METRIC_DATA, LIST_METRICS};
use super::{AwsContext, CallCounter};
use crate::config::MetricsConfig;
use crate::error::{Error, Result};
use crate::model::MemorySeries;
use crate::sources::probe::{Call, CallRecord, DimensionSet, Listing, MetricsProbe, Sample};
use crate::sources::{MetricSource, SeriesQuery};

/// Queries per `GetMetricData` call (the API's maximum).
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// Pages per batch before giving up (each page holds up to 100,800 datapoints).
const MAX_PAGES: usize = 50;
/// `epitaph doctor` reads at most this many pages of `ListMetrics` (500 a page) per listing.
const PROBE_LIST_PAGES: usize = 2;
/// How much of a sample's life `epitaph doctor` asks `GetMetricData` for (minutes before its
/// end).
const PROBE_DATA_MINUTES: i64 = 60;
/// The query statuses that fail only that query's instance (it stays pending).
const STATUS_INTERNAL_ERROR: &str = "InternalError";
const STATUS_FORBIDDEN: &str = "Forbidden";

pub struct AwsMetrics {
    ctx: AwsContext,
    namespace: String,
    metric_name: String,
    instance_dimension: String,
    extra_dimensions: Vec<(String, String)>,
    statistic: String,
    period_secs: i32,
    limit: Option<f64>,
    /// `sources.metrics.unit`: what makes a value impossible.
    unit: String,
    calls: Arc<CallCounter>,
    /// Datapoints dropped as impossible (negative, above 100 %, beyond any machine).
    skipped: std::sync::Mutex<crate::sources::SkipLog>,
}

impl AwsMetrics {
    pub fn new(ctx: AwsContext, cfg: &MetricsConfig) -> Result<Self> {
        let period = cfg.period.get();
        Ok(AwsMetrics {
            ctx,
            namespace: cfg.namespace.clone(),
            metric_name: cfg.metric_name.clone(),
            instance_dimension: cfg.instance_dimension.clone(),
            extra_dimensions: cfg
                .extra_dimensions
                .iter()
                .filter_map(|d| {
                    d.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect(),
            statistic: cfg.statistic.clone(),
            period_secs: period.num_seconds().clamp(1, i32::MAX as i64) as i32,
            limit: cfg.memory_limit(),
            unit: cfg.unit.as_str().to_string(),
            calls: Arc::new(CallCounter::default()),
            skipped: Default::default(),
        })
    }

    fn query(&self, id: String, q: &SeriesQuery) -> MetricQuery {
        let mut dimensions = vec![(self.instance_dimension.clone(), q.instance_id.clone())];
        for (k, v) in &self.extra_dimensions {
            let v = v.replace("{asg}", q.asg.as_deref().unwrap_or(""));
            dimensions.push((k.clone(), v));
        }
        MetricQuery {
            id,
            namespace: self.namespace.clone(),
            metric_name: self.metric_name.clone(),
            dimensions,
            period_secs: self.period_secs,
            stat: self.statistic.clone(),
        }
    }

    /// One batch (≤ 500 queries, one target): per query, its points or an error.
    async fn batch(
        &self,
        t: &super::Target,
        batch: &[&SeriesQuery],
    ) -> Vec<Result<Option<MemorySeries>>> {
        let start = batch.iter().map(|q| q.start).min().unwrap_or_default();
        let end = batch.iter().map(|q| q.end).max().unwrap_or_default();
        let queries: Vec<MetricQuery> = batch
            .iter()
            .enumerate()
            .map(|(i, q)| self.query(format!("q{i}"), q))
            .collect();
        let mut points: Vec<Vec<(chrono::DateTime<chrono::Utc>, f64)>> =
            vec![Vec::new(); batch.len()];
        let mut failed: HashMap<usize, String> = HashMap::new();
        let mut token = None;
        for _ in 0..MAX_PAGES {
            self.calls.count(GET_METRIC_DATA);
            let resp = t
                .cloudwatch
                .get_metric_data(
                    &queries,
                    start,
                    end + chrono::Duration::seconds(1),
                    token.take().as_deref(),
                )
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    return batch
                        .iter()
                        .map(|_| Err(Error::source(&t.name, e.message.clone())))
                        .collect();
                }
            };
            for r in &resp.items {
                let Some(i) =
                    r.id.as_deref()
                        .and_then(|id| id.strip_prefix('q'))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|i| *i < batch.len())
                else {
                    continue;
                };
                let status = r.status_code.as_deref();
                if matches!(status, Some(STATUS_INTERNAL_ERROR | STATUS_FORBIDDEN)) {
                    let why = r.messages.join("; ");
                    failed.insert(
                        i,
                        format!(
                            "GetMetricData: query {} {}: {why}",
                            batch[i].instance_id,
                            status.unwrap_or("")
                        ),
                    );
                }
                for &(ts, v) in &r.points {
                    match crate::sources::impossible_memory_value(v, &self.unit) {
                        None => points[i].push((ts, v)),
                        Some(why) => self.skip(
                            format!(
                                "{}:{}/{} {} at {}",
                                t.name,
                                self.namespace,
                                self.metric_name,
                                batch[i].instance_id,
                                ts.to_rfc3339()
                            ),
                            why,
                        ),
                    }
                }
            }
            token = resp.next_token;
            if token.is_none() {
                break;
            }
        }
        points
            .into_iter()
            .enumerate()
            .map(|(i, mut pts)| {
                if let Some(why) = failed.remove(&i) {
                    return Err(Error::source(&t.name, why));
                }
                let q = batch[i];
                pts.retain(|p| p.0 >= q.start && p.0 <= q.end);
                pts.sort_by_key(|p| p.0);
                pts.dedup_by_key(|p| p.0);
                Ok((!pts.is_empty()).then(|| MemorySeries {
                    points: pts,
                    limit: self.limit,
                    labels: Default::default(),
                }))
            })
            .collect()
    }

    /// `epitaph doctor`: one `GetMetricData` query for the sample with the dimensions a scan
    /// asks for, then `ListMetrics`, narrowing until something answers: the dimension sets of
    /// the metric for the sample's instance, else of the metric at all, else the metric names
    /// in the namespace, else the namespaces.
    pub async fn probe(&self, t: &super::Target, sample: Option<&Sample>) -> MetricsProbe {
        const DATA: &str = GET_METRIC_DATA;
        let mut calls = Vec::new();
        let (id, asg, end) = match sample {
            Some(s) => (s.instance_id.clone(), s.asg.clone(), s.until),
            None => (
                crate::sources::probe::PLACEHOLDER_INSTANCE.to_string(),
                None,
                chrono::Utc::now(),
            ),
        };
        let q = SeriesQuery {
            instance_id: id.clone(),
            origin: None,
            asg: asg.clone(),
            start: end - chrono::Duration::minutes(PROBE_DATA_MINUTES),
            end,
        };
        let mut queried: DimensionSet = vec![(self.instance_dimension.clone(), id)];
        for (k, v) in &self.extra_dimensions {
            queried.push((k.clone(), v.replace("{asg}", asg.as_deref().unwrap_or(""))));
        }
        self.calls.count(DATA);
        let data: Call<usize> = t
            .cloudwatch
            .get_metric_data(
                &[self.query("q0".into(), &q)],
                q.start,
                q.end + chrono::Duration::seconds(1),
                None,
            )
            .await
            .map(|r| r.items.iter().map(|m| m.points.len()).sum());
        calls.push(CallRecord::of(DATA, &data));
        let (ns, name) = (self.namespace.as_str(), self.metric_name.as_str());
        let for_instance: Option<Call<Vec<DimensionSet>>> = match sample {
            Some(s) => Some(
                self.list_metrics(t, Some(ns), Some(name), Some(&s.instance_id), &mut calls)
                    .await
                    .map(|l| l.items.into_iter().map(|(_, _, d)| d).collect()),
            ),
            None => None,
        };
        let nothing_for_instance = match &for_instance {
            None => true,
            Some(Ok(sets)) => sets.is_empty(),
            Some(Err(_)) => false,
        };
        let for_metric: Option<Call<Listing<DimensionSet>>> = if nothing_for_instance {
            Some(
                self.list_metrics(t, Some(ns), Some(name), None, &mut calls)
                    .await
                    .map(|l| Listing {
                        items: l.items.into_iter().map(|(_, _, d)| d).collect(),
                        truncated: l.truncated,
                    }),
            )
        } else {
            None
        };
        let names_in_namespace: Option<Call<Listing<String>>> = match &for_metric {
            Some(Ok(l)) if l.items.is_empty() => Some(
                self.list_metrics(t, Some(ns), None, None, &mut calls)
                    .await
                    .map(|l| distinct(l, |(_, m, _)| m)),
            ),
            _ => None,
        };
        let namespaces: Option<Call<Listing<String>>> = match &names_in_namespace {
            Some(Ok(l)) if l.items.is_empty() => Some(
                self.list_metrics(t, None, None, None, &mut calls)
                    .await
                    .map(|l| distinct(l, |(n, _, _)| n)),
            ),
            _ => None,
        };
        MetricsProbe {
            sample: sample.cloned(),
            queried,
            data,
            for_instance,
            for_metric,
            names_in_namespace,
            namespaces,
            calls,
        }
    }

    /// `ListMetrics` with the filters given (the instance as `instance_dimension`), first
    /// pages: (namespace, metric name, dimensions) of each metric.
    async fn list_metrics(
        &self,
        t: &super::Target,
        namespace: Option<&str>,
        metric: Option<&str>,
        instance: Option<&str>,
        calls: &mut Vec<CallRecord>,
    ) -> Call<Listing<(String, String, DimensionSet)>> {
        const LIST: &str = LIST_METRICS;
        let mut listing = Listing::default();
        let mut token = None;
        for _ in 0..PROBE_LIST_PAGES {
            self.calls.count(LIST);
            let filter: Vec<(String, String)> = instance
                .map(|id| (self.instance_dimension.clone(), id.to_string()))
                .into_iter()
                .collect();
            let r = t
                .cloudwatch
                .list_metrics(namespace, metric, &filter, token.take().as_deref())
                .await;
            calls.push(CallRecord::of(LIST, &r));
            let r = r?;
            listing.items.extend(r.items.into_iter().map(|m| {
                (
                    m.namespace.unwrap_or_default(),
                    m.metric_name.unwrap_or_default(),
                    m.dimensions,
                )
            }));
            token = r.next_token;
            if token.is_none() {
                break;
            }
        }
        listing.truncated = token.is_some();
        Ok(listing)
    }
}

/// The distinct values of one field of a listing, in first-seen order.
fn distinct<T>(l: Listing<T>, field: impl Fn(T) -> String) -> Listing<String> {
    let mut items: Vec<String> = Vec::new();
    for v in l.items.into_iter().map(field) {
        if !items.contains(&v) {
            items.push(v);
        }
    }
    Listing {
        items,
        truncated: l.truncated,
    }
}

#[async_trait]
impl MetricSource for AwsMetrics {
    fn name(&self) -> String {
        format!("aws:cloudwatch:{}/{}", self.namespace, self.metric_name)
    }

    async fn memory_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Result<Vec<Result<Option<MemorySeries>>>> {
        let mut out: Vec<Option<Result<Option<MemorySeries>>>> =
            queries.iter().map(|_| None).collect();
        // Group by target, then batch.
        let mut by_target: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, q) in queries.iter().enumerate() {
            let t = self
                .ctx
                .target(q.origin.as_deref())
                .ok_or_else(|| Error::source("aws", "no AWS target configured"))?;
            by_target.entry(t.name.clone()).or_default().push(i);
        }
        for (name, idx) in by_target {
            let Some(t) = self.ctx.targets.iter().find(|t| t.name == name) else {
                continue;
            };
            for chunk in idx.chunks(MAX_QUERIES_PER_CALL) {
                let batch: Vec<&SeriesQuery> = chunk.iter().map(|&i| &queries[i]).collect();
                for (&i, r) in chunk.iter().zip(self.batch(t, &batch).await) {
                    out[i] = Some(r);
                }
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect())
    }

    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut calls = self.calls.snapshot();
        for t in self.ctx.targets.iter() {
            for (op, n) in t.cloudwatch.throttled() {
                *calls.entry(op).or_insert(0) += n;
            }
        }
        calls
    }

    /// Each scan counts its own impossible datapoints.
    fn begin_scan(&self) {
        if let Ok(mut s) = self.skipped.lock() {
            *s = Default::default();
        }
    }

    fn skipped(&self) -> (usize, Vec<crate::sources::Skipped>) {
        self.skipped
            .lock()
            .map(|s| (s.count, s.report()))
            .unwrap_or_default()
    }

    fn skipped_by_input(&self) -> Vec<crate::sources::SkippedGroup> {
        self.skipped
            .lock()
            .map(|s| s.groups.rows())
            .unwrap_or_default()
    }
}

impl AwsMetrics {
    /// Records a datapoint dropped as impossible.
    fn skip(&self, location: String, why: String) {
        if let Ok(mut s) = self.skipped.lock() {
            s.push(location, why);
        }
    }
}
