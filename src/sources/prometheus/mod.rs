//! The `prometheus` metrics backend: memory series from any server speaking the Prometheus
//! HTTP API — Prometheus, Thanos, Mimir, Cortex, VictoriaMetrics, Amazon Managed Service for
//! Prometheus (SigV4, feature `aws`).
//!
//! Each request is a form-encoded POST to `/api/v1/query_range` over the union of its
//! instances' lives, at a step that keeps every series under the server's point limit
//! (`max_points`), naming up to `batch` instances in one escaped regex matcher; the series come
//! back told apart by `instance_label` and are cut to each instance's own window. In bytes, a
//! second query (`limit_query`) gives each instance's limit. An instance without a series is
//! `Ok(None)`; a server that cannot be reached or answers an error is an `Err` naming the
//! backend and the query. NaN, infinite, negative and impossible values are skipped and counted.
//! Requests are bounded (`concurrency`), paced (`rate_limit`: `sources::ratelimit`, backing
//! off for everyone on a 429 or a 503 with Retry-After; throttled attempts counted as
//! `prometheus:query_range (throttled)`), timed out (`timeout`) and retried with backoff and
//! jitter, honouring Retry-After (`max_attempts`).
//!
//! `config.rs` is the `[sources.metrics.prometheus]` table, `query.rs` the pure parts (PromQL
//! escaping, step, batching, the answer's parsing), `probe.rs` what `epitaph doctor` asks,
//! `sigv4.rs` the signer.
//!
//! Length: the backend's request loop (batching, retries, throttling, the answer's checks); its
//! pure parts are already in query.rs, config.rs, probe.rs.

pub mod config;
mod probe;
pub mod query;
#[cfg(feature = "aws")]
mod sigv4;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use rand::Rng;

use self::config::{Auth, Settings, Template, KEY};
use self::query::{AnswerError, Matrix, Plan, RawSeries};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::MemorySeries;
use crate::sources::probe::CallError;
use crate::sources::ratelimit::{RateLimiter, THROTTLED_SUFFIX};
use crate::sources::{CallCounter, MetricSource, SeriesQuery, SkipLog, Skipped};
use crate::timefmt::unix_to_instant;

pub use probe::PROBE_MINUTES;
#[cfg(feature = "aws")]
pub use sigv4::{sign_at, ReadySigner, Sigv4, REFRESH_BEFORE_EXPIRY};

/// Without the `aws` feature there is no signer (asking for `sigv4` is a clear error).
#[cfg(not(feature = "aws"))]
#[derive(Debug)]
pub enum Sigv4 {}

/// The operation name calls are counted under in the scan summary.
pub const QUERY_RANGE: &str = "prometheus:query_range";
/// First retry waits up to this long (doubling per attempt, half of it random).
pub const BASE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest wait between two attempts by backoff.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest Retry-After waited for; a server asking for more fails the request now (its
/// instances are retried by the next run).
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(120);
/// HTTP statuses worth another attempt (rate limits, gateways, an overloaded querier).
const RETRYABLE_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// Memory series from a Prometheus-compatible API.
pub struct PrometheusMetrics {
    settings: Settings,
    client: reqwest::Client,
    signer: Option<Sigv4>,
    calls: CallCounter,
    skipped: Mutex<SkipLog>,
    /// `rate_limit` on query_range, shared by every scan and query of the process.
    limiter: RateLimiter,
}

/// One failed request, as data: whether the server answered, its `errorType` or HTTP status,
/// and a one-line message without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub answered: bool,
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    fn transport(message: String) -> Self {
        Failure {
            answered: false,
            code: None,
            message,
        }
    }

    /// As a probed call for `epitaph doctor`.
    pub fn to_call_error(&self) -> CallError {
        CallError {
            action: QUERY_RANGE.into(),
            code: self.code.clone(),
            answered: self.answered,
            message: self.message.clone(),
        }
    }
}

/// An attempt's outcome: its failure, and whether (and not before when) to try again.
struct AttemptError {
    failure: Failure,
    retry: bool,
    retry_after: Option<std::time::Duration>,
    /// The server said "slow down" (429, or 503 with Retry-After): the limiter backs off.
    throttle: bool,
}

impl PrometheusMetrics {
    /// The backend `[sources.metrics]` asks for; with `sigv4`, credentials from the AWS
    /// default chain (`[aws]`).
    pub async fn from_config(cfg: &Config) -> Result<Self> {
        let mut settings = Settings::resolve(&cfg.sources.metrics).map_err(Error::Config)?;
        if let Auth::BearerFile(p) = &settings.auth {
            settings.auth = Auth::BearerFile(cfg.resolve(p));
        }
        let signer = match &settings.auth {
            #[cfg(feature = "aws")]
            Auth::Sigv4(s) => Some(Sigv4::from_chain(&cfg.aws, s).await?),
            _ => None,
        };
        Self::new(settings, signer)
    }

    /// The backend for typed settings; `signer` is required when they ask for SigV4.
    pub fn new(settings: Settings, signer: Option<Sigv4>) -> Result<Self> {
        if matches!(settings.auth, Auth::Sigv4(_)) && signer.is_none() {
            return Err(if cfg!(feature = "aws") {
                Error::Config(vec![format!("{KEY}.sigv4: no signer was set up")])
            } else {
                Error::NotImplemented(format!(
                    "{KEY}.sigv4: this build has no AWS support, so it cannot sign requests (build with the `aws` feature)"
                ))
            });
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| Error::source(KEY, format!("cannot build the HTTP client: {e}")))?;
        let limiter = RateLimiter::single(QUERY_RANGE, settings.rate_limit);
        Ok(PrometheusMetrics {
            settings,
            client,
            signer,
            calls: CallCounter::default(),
            skipped: Mutex::new(SkipLog::default()),
            limiter,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skip(&self, location: String, reason: String) {
        if let Ok(mut s) = self.skipped.lock() {
            s.push(location, reason);
        }
    }

    /// `query_range` for `promql` over an aligned window, with retries: the matrix, or why not.
    pub async fn query_range(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> std::result::Result<Matrix, Failure> {
        self.calls.count(QUERY_RANGE);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .append_pair("start", &start.to_string())
            .append_pair("end", &end.to_string())
            .append_pair("step", &step.to_string())
            .finish();
        let mut attempt = 1u32;
        loop {
            self.limiter.acquire(QUERY_RANGE).await;
            let result = self.attempt(&body).await;
            match &result {
                Ok(_) => self.limiter.succeeded(QUERY_RANGE),
                Err(e) if e.throttle => {
                    self.calls
                        .count(&format!("{QUERY_RANGE}{THROTTLED_SUFFIX}"));
                    self.limiter.throttled_for(
                        QUERY_RANGE,
                        e.retry_after.filter(|d| *d <= MAX_RETRY_AFTER),
                    );
                }
                Err(_) => {}
            }
            match result {
                Ok(m) => {
                    for w in &m.warnings {
                        tracing::warn!(backend = %self.name(), "the server warns: {w}");
                    }
                    return Ok(m);
                }
                Err(e) if e.retry && attempt < self.settings.max_attempts => {
                    let jitter = rand::thread_rng().gen::<f64>();
                    let Some(wait) = retry_wait(attempt, jitter, e.retry_after) else {
                        return Err(Failure {
                            message: format!(
                                "{} (the server asks to retry after {:?}, more than {MAX_RETRY_AFTER:?})",
                                e.failure.message,
                                e.retry_after.unwrap_or_default()
                            ),
                            ..e.failure
                        });
                    };
                    tracing::debug!(
                        "{}: attempt {attempt} failed ({}); retrying in {wait:?}",
                        self.name(),
                        e.failure.message
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) if attempt > 1 => {
                    return Err(Failure {
                        message: format!(
                            "gave up after {attempt} attempts; last: {}",
                            e.failure.message
                        ),
                        ..e.failure
                    })
                }
                Err(e) => return Err(e.failure),
            }
        }
    }

    async fn attempt(&self, body: &str) -> std::result::Result<Matrix, AttemptError> {
        let fail = |failure: Failure| AttemptError {
            failure,
            retry: false,
            retry_after: None,
            throttle: false,
        };
        let url = format!(
            "{}/api/v1/query_range",
            self.settings.url.as_str().trim_end_matches('/')
        );
        const FORM: &str = "application/x-www-form-urlencoded";
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, FORM)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &self.settings.headers {
            req = req.header(name.clone(), value.expose());
        }
        req = match &self.settings.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::BearerFile(path) => {
                let token = tokio::fs::read_to_string(path).await.map_err(|e| {
                    fail(Failure::transport(format!(
                        "{KEY}.bearer_token_file: cannot read {}: {e}",
                        path.display()
                    )))
                })?;
                req.bearer_auth(token.trim())
            }
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            Auth::Sigv4(_) => {
                let Some(signer) = &self.signer else {
                    return Err(fail(Failure::transport(format!("{KEY}.sigv4: no signer"))));
                };
                let length = body.len().to_string();
                let signed = sign_headers(
                    signer,
                    &url,
                    &[("content-length", &length), ("content-type", FORM)],
                    body.as_bytes(),
                )
                .await
                .map_err(|e| fail(Failure::transport(e.to_string())))?;
                signed
                    .into_iter()
                    .fold(req, |r, (name, value)| r.header(name, value))
            }
        };
        let resp = req.body(body.to_string()).send().await.map_err(|e| {
            let retry = e.is_timeout() || e.is_connect() || e.is_request();
            AttemptError {
                failure: Failure::transport(crate::sources::http::describe_transport(e)),
                retry,
                retry_after: None,
                throttle: false,
            }
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::sinks::deliver::parse_retry_after(v, Utc::now()))
            .and_then(|d| d.to_std().ok());
        let throttle = crate::sources::ratelimit::is_throttle_answer(status, "", retry_after);
        let bytes = resp.bytes().await.map_err(|e| AttemptError {
            failure: Failure::transport(format!(
                "HTTP {status}, then the answer broke off: {}",
                crate::sources::http::describe_transport(e)
            )),
            retry: true,
            retry_after: None,
            throttle,
        })?;
        match query::parse_answer(&bytes) {
            Ok(m) if (200..300).contains(&status) => Ok(m),
            Ok(_) => Err(AttemptError {
                failure: Failure {
                    answered: true,
                    code: Some(status.to_string()),
                    message: format!("HTTP {status}: {}", query::snippet(&bytes)),
                },
                retry: RETRYABLE_STATUSES.contains(&status),
                retry_after,
                throttle,
            }),
            Err(AnswerError::Api { error_type, error }) => Err(AttemptError {
                failure: Failure {
                    answered: true,
                    message: format!("HTTP {status}, {error_type}: {error}"),
                    code: Some(error_type),
                },
                retry: RETRYABLE_STATUSES.contains(&status),
                retry_after,
                throttle,
            }),
            Err(e @ AnswerError::Malformed(_)) => Err(AttemptError {
                failure: Failure {
                    answered: true,
                    code: Some(status.to_string()),
                    message: if (200..300).contains(&status) {
                        format!("HTTP {status}: {e}")
                    } else {
                        format!("HTTP {status}: {}", query::snippet(&bytes))
                    },
                },
                retry: RETRYABLE_STATUSES.contains(&status),
                retry_after,
                throttle,
            }),
        }
    }

    /// The series of each id in a matrix answer (several when the query gives several).
    /// A batched answer whose series lack `instance_label` is an error: the query dropped it.
    fn by_instance<'a>(
        &self,
        template: &Template,
        matrix: &'a Matrix,
        ids: &[&str],
    ) -> std::result::Result<HashMap<String, Vec<&'a RawSeries>>, String> {
        let mut out: HashMap<String, Vec<&RawSeries>> = HashMap::new();
        let label = &self.settings.instance_label;
        for s in &matrix.series {
            let id = match template {
                Template::PerInstance(_) => ids.first().map(|s| s.to_string()),
                Template::Batched(_) => match s.metric.get(label) {
                    Some(v) => Some(v.clone()),
                    None => {
                        return Err(format!(
                            "the answer has a series without the `{label}` label ({}): keep it in the query, e.g. max by ({label}) (…)",
                            describe_labels(&s.metric)
                        ))
                    }
                },
            };
            if let Some(id) = id {
                out.entry(id).or_default().push(s);
            }
        }
        Ok(out)
    }

    /// The points of one series inside `[start, end]`, sorted; unusable values skipped and
    /// counted.
    fn points(
        &self,
        id: &str,
        s: &RawSeries,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, f64)> {
        let mut pts = Vec::with_capacity(s.values.len());
        for (ts, raw) in &s.values {
            let Some(t) = unix_to_instant(*ts) else {
                self.skip(
                    format!("{} {id}", self.name()),
                    format!("bad timestamp `{ts}`"),
                );
                continue;
            };
            if t < start || t > end {
                continue;
            }
            let why = match raw.trim().parse::<f64>() {
                Ok(v) => {
                    match crate::sources::impossible_memory_value(v, self.settings.unit.as_str()) {
                        None => {
                            pts.push((t, v));
                            continue;
                        }
                        Some(why) => why,
                    }
                }
                Err(_) => format!(
                    "value `{}` is not a number",
                    crate::timefmt::truncate(raw, 40)
                ),
            };
            self.skip(format!("{} {id} at {}", self.name(), t.to_rfc3339()), why);
        }
        pts.sort_by_key(|p| p.0);
        pts.dedup_by_key(|p| p.0);
        query::trim_lookback_tail(&mut pts);
        pts
    }

    /// One request (and its limit request): each member's series, or why not.
    async fn fetch(
        &self,
        plan: &Plan,
        queries: &[SeriesQuery],
    ) -> Vec<Result<Option<MemorySeries>>> {
        let ids: Vec<&str> = plan
            .members
            .iter()
            .map(|&m| queries[m].instance_id.as_str())
            .collect();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let label = &self.settings.instance_label;
        let memory_q = query::render(&self.settings.query, label, &distinct);
        let limit_q = self
            .settings
            .limit_query
            .as_ref()
            .map(|t| query::render(t, label, &distinct));
        let (memory, limits) = futures::join!(
            self.query_range(&memory_q, plan.start, plan.end, plan.step),
            async {
                match &limit_q {
                    Some(q) => Some(self.query_range(q, plan.start, plan.end, plan.step).await),
                    None => None,
                }
            }
        );
        let all_fail =
            |key: &str, template: &Template, why: String| -> Vec<Result<Option<MemorySeries>>> {
                let msg = format!(
                    "{KEY}.{key} `{}` for {} instance(s) ({}): {why}",
                    template.text(),
                    distinct.len(),
                    describe_window(plan),
                );
                plan.members
                    .iter()
                    .map(|_| Err(Error::source(self.name(), msg.clone())))
                    .collect()
            };
        let memory = match memory {
            Ok(m) => m,
            Err(f) => return all_fail("query", &self.settings.query, f.message),
        };
        let series = match self.by_instance(&self.settings.query, &memory, &distinct) {
            Ok(s) => s,
            Err(why) => return all_fail("query", &self.settings.query, why),
        };
        let limit_series = match (&self.settings.limit_query, limits) {
            (Some(t), Some(Err(f))) => return all_fail("limit_query", t, f.message),
            (Some(t), Some(Ok(m))) => match self.by_instance(t, &m, &distinct) {
                Ok(by) => Some((t, by_owned(by))),
                Err(why) => return all_fail("limit_query", t, why),
            },
            _ => None,
        };
        plan.members
            .iter()
            .map(|&m| {
                let q = &queries[m];
                let id = q.instance_id.as_str();
                let found = series.get(id).map(Vec::as_slice).unwrap_or_default();
                let s = match found {
                    [] => return Ok(None),
                    [s] => *s,
                    several => {
                        return Err(Error::source(
                            self.name(),
                            several_series("query", &self.settings.query, label, id, several),
                        ))
                    }
                };
                let points = self.points(id, s, q.start, q.end);
                if points.is_empty() {
                    return Ok(None);
                }
                let mut limit = self.settings.limit;
                if let Some((t, by)) = &limit_series {
                    match by.get(id).map(Vec::as_slice).unwrap_or_default() {
                        [] => {}
                        [l] => {
                            limit = self
                                .points(id, l, q.start, q.end)
                                .iter()
                                .rev()
                                .map(|p| p.1)
                                .find(|v| *v > 0.0)
                                .or(limit)
                        }
                        several => {
                            let refs: Vec<&RawSeries> = several.iter().collect();
                            return Err(Error::source(
                                self.name(),
                                several_series("limit_query", t, label, id, &refs),
                            ));
                        }
                    }
                    if limit.is_none() {
                        self.skip(
                            format!("{} {id}", self.name()),
                            format!(
                                "{KEY}.limit_query has no value for it and sources.metrics.limit is not set: its series has no limit"
                            ),
                        );
                    }
                }
                let mut labels = s.metric.clone();
                labels.remove("__name__");
                Ok(Some(MemorySeries {
                    points,
                    limit,
                    labels,
                }))
            })
            .collect()
    }
}

/// Owned copies of a limit answer's series (the matrix it borrows from goes away).
fn by_owned(by: HashMap<String, Vec<&RawSeries>>) -> HashMap<String, Vec<RawSeries>> {
    by.into_iter()
        .map(|(k, v)| (k, v.into_iter().cloned().collect()))
        .collect()
}

/// Several series for one instance: which labels tell them apart, and the fix.
fn several_series(
    key: &str,
    template: &Template,
    label: &str,
    id: &str,
    several: &[&RawSeries],
) -> String {
    let mut differ: Vec<String> = Vec::new();
    for s in several {
        for (k, v) in &s.metric {
            if several.iter().any(|o| o.metric.get(k) != Some(v)) && !differ.contains(k) {
                differ.push(k.clone());
            }
        }
    }
    format!(
        "{KEY}.{key} `{}` gives {} series for {id} (they differ in {}): a scan needs one per instance — aggregate, e.g. max by ({label}) (…)",
        template.text(),
        several.len(),
        if differ.is_empty() { "nothing".into() } else { differ.join(", ") }
    )
}

/// `{a="1", b="2"}` for messages.
fn describe_labels(m: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn describe_window(plan: &Plan) -> String {
    let t = |s: i64| {
        DateTime::<Utc>::from_timestamp(s, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| s.to_string())
    };
    format!("{} – {}, step {}s", t(plan.start), t(plan.end), plan.step)
}

/// This backend's retry bounds (longer than the log backends': a query over many instances
/// is worth waiting for).
pub const RETRY: crate::sources::http::RetryLimits = crate::sources::http::RetryLimits {
    base: BASE_BACKOFF,
    max: MAX_BACKOFF,
    max_retry_after: MAX_RETRY_AFTER,
};

/// Backoff before attempt `attempt + 1`, with this backend's bounds.
pub fn backoff(attempt: u32, unit: f64) -> std::time::Duration {
    RETRY.backoff(attempt, unit)
}

/// The wait before attempt `attempt + 1`, with this backend's bounds: None when the server
/// asks for more than `MAX_RETRY_AFTER` (give up now).
pub fn retry_wait(
    attempt: u32,
    unit: f64,
    retry_after: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    RETRY.retry_wait(attempt, unit, retry_after)
}

#[cfg(feature = "aws")]
async fn sign_headers(
    signer: &Sigv4,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>> {
    signer.headers("POST", url, headers, body).await
}

#[cfg(not(feature = "aws"))]
async fn sign_headers(
    signer: &Sigv4,
    _url: &str,
    _headers: &[(&str, &str)],
    _body: &[u8],
) -> Result<Vec<(String, String)>> {
    match *signer {}
}

#[async_trait]
impl MetricSource for PrometheusMetrics {
    fn name(&self) -> String {
        format!("prometheus:{}", self.settings.display_url())
    }

    async fn memory_series(
        &self,
        queries: &[SeriesQuery],
    ) -> Result<Vec<Result<Option<MemorySeries>>>> {
        let windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = queries
            .iter()
            .map(|q| (q.start, q.end.max(q.start)))
            .collect();
        let plans = query::plan(
            &windows,
            self.settings.batch,
            self.settings.min_step_secs,
            self.settings.max_points,
        );
        let done: Vec<(Plan, Vec<Result<Option<MemorySeries>>>)> = stream::iter(plans)
            .map(|p| async move {
                let r = self.fetch(&p, queries).await;
                (p, r)
            })
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        let mut out: Vec<Option<Result<Option<MemorySeries>>>> =
            queries.iter().map(|_| None).collect();
        for (plan, results) in done {
            for (m, r) in plan.members.into_iter().zip(results) {
                out[m] = Some(r);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::source(
                        self.name(),
                        "no request was planned for this instance",
                    ))
                })
            })
            .collect())
    }

    fn skipped(&self) -> (usize, Vec<Skipped>) {
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

    fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.0), BASE_BACKOFF / 2);
        assert_eq!(backoff(1, 1.0), BASE_BACKOFF);
        assert_eq!(backoff(2, 0.0), BASE_BACKOFF);
        assert_eq!(backoff(40, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_is_a_floor_up_to_a_bound() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(retry_wait(1, 0.0, None), Some(BASE_BACKOFF / 2));
        assert_eq!(retry_wait(1, 0.0, Some(secs(7))), Some(secs(7)));
        assert_eq!(retry_wait(9, 1.0, Some(secs(1))), Some(MAX_BACKOFF));
        assert_eq!(
            retry_wait(1, 0.0, Some(MAX_RETRY_AFTER)),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_wait(1, 0.0, Some(MAX_RETRY_AFTER + secs(1))), None);
    }

    #[test]
    fn several_series_name_the_labels_that_differ() {
        let s = |job: &str| RawSeries {
            metric: [
                ("instance_id".to_string(), "i-a".to_string()),
                ("job".to_string(), job.to_string()),
            ]
            .into(),
            values: vec![],
        };
        let (a, b) = (s("node"), s("cadvisor"));
        let msg = several_series(
            "query",
            &Template::Batched("m{{instance_matcher}}".into()),
            "instance_id",
            "i-a",
            &[&a, &b],
        );
        assert!(
            msg.contains("2 series for i-a (they differ in job)"),
            "{msg}"
        );
        assert!(msg.contains("max by (instance_id)"), "{msg}");
    }
}
