//! CloudWatch memory series: `GetMetricData` with up to 500 queries per call (one per instance,
//! the API's maximum), following `NextToken`; a query the service marks `InternalError` or
//! `Forbidden` fails only that instance (it stays pending), `PartialData` pages are followed.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StatusCode};

use super::{describe, to_chrono, to_smithy, AwsContext, CallCounter};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::MemorySeries;
use crate::sources::{MetricSource, SeriesQuery};
use crate::timefmt::parse_duration;

/// Queries per `GetMetricData` call (the API's maximum).
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// Pages per batch before giving up (each page holds up to 100,800 datapoints).
const MAX_PAGES: usize = 50;

pub struct AwsMetrics {
    ctx: AwsContext,
    namespace: String,
    metric_name: String,
    instance_dimension: String,
    extra_dimensions: Vec<(String, String)>,
    statistic: String,
    period_secs: i32,
    limit: Option<f64>,
    calls: Arc<CallCounter>,
}

impl AwsMetrics {
    pub fn new(ctx: AwsContext, cfg: &SourceConfig) -> Result<Self> {
        let period = parse_duration(&cfg.period)
            .map_err(|e| Error::Config(vec![format!("sources.metrics.period: {e}")]))?;
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
            calls: Arc::new(CallCounter::default()),
        })
    }

    fn query(&self, id: String, q: &SeriesQuery) -> MetricDataQuery {
        let mut metric = Metric::builder()
            .namespace(&self.namespace)
            .metric_name(&self.metric_name)
            .dimensions(
                Dimension::builder()
                    .name(&self.instance_dimension)
                    .value(&q.instance_id)
                    .build(),
            );
        for (k, v) in &self.extra_dimensions {
            let v = v.replace("{asg}", q.asg.as_deref().unwrap_or(""));
            metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
        }
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(metric.build())
                    .period(self.period_secs)
                    .stat(&self.statistic)
                    .build(),
            )
            .return_data(true)
            .build()
    }

    /// One batch (≤ 500 queries, one target): per query, its points or an error.
    async fn batch(
        &self,
        t: &super::Target,
        batch: &[&SeriesQuery],
    ) -> Vec<Result<Option<MemorySeries>>> {
        let start = batch.iter().map(|q| q.start).min().unwrap_or_default();
        let end = batch.iter().map(|q| q.end).max().unwrap_or_default();
        let queries: Vec<MetricDataQuery> = batch
            .iter()
            .enumerate()
            .map(|(i, q)| self.query(format!("q{i}"), q))
            .collect();
        let mut points: Vec<Vec<(chrono::DateTime<chrono::Utc>, f64)>> =
            vec![Vec::new(); batch.len()];
        let mut failed: HashMap<usize, String> = HashMap::new();
        let mut token = None;
        for _ in 0..MAX_PAGES {
            self.calls.count("cloudwatch:GetMetricData");
            let resp = t
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(to_smithy(start))
                .end_time(to_smithy(end + chrono::Duration::seconds(1)))
                .set_next_token(token.take())
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    let msg = describe("GetMetricData", &e);
                    return batch
                        .iter()
                        .map(|_| Err(Error::source(&t.name, msg.clone())))
                        .collect();
                }
            };
            for r in resp.metric_data_results() {
                let Some(i) = r
                    .id()
                    .and_then(|id| id.strip_prefix('q'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|i| *i < batch.len())
                else {
                    continue;
                };
                if matches!(
                    r.status_code(),
                    Some(StatusCode::InternalError) | Some(StatusCode::Forbidden)
                ) {
                    let why = r
                        .messages()
                        .iter()
                        .filter_map(|m| m.value())
                        .collect::<Vec<_>>()
                        .join("; ");
                    failed.insert(
                        i,
                        format!(
                            "GetMetricData: query {} {}: {why}",
                            batch[i].instance_id,
                            r.status_code().map(|s| s.as_str()).unwrap_or("")
                        ),
                    );
                }
                for (ts, v) in r.timestamps().iter().zip(r.values()) {
                    if let Some(ts) = to_chrono(ts) {
                        points[i].push((ts, *v));
                    }
                }
            }
            token = resp.next_token().map(str::to_string);
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
        self.calls.snapshot()
    }
}
