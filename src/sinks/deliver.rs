//! Delivers the outbox: claims due messages (with a lease, so replicas and restarts never send
//! one message concurrently), renders them per sink, POSTs them with a timeout, and records the
//! outcome. 5xx, timeouts and connection errors retry with exponential backoff and jitter;
//! 429 and 503 wait at least their Retry-After; other 4xx fail at once (the webhook is gone or
//! refuses the body); after `max_attempts` a message is marked failed. Retry times live in the
//! store, so they survive restarts, and a dead webhook only delays its own messages.
//!
//! The webhook URL is a secret: it never appears in logs or errors (reqwest errors are
//! stripped of it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

use crate::config::{AlertsConfig, Secret};
use crate::error::{Error, Result};
use crate::sinks::alert::Alert;
use crate::store::{DeliveryOutcome, OutboxEntry, Store};

/// Longest Retry-After honoured; a longer one is capped so a message is not parked for days.
pub const MAX_RETRY_AFTER: Duration = Duration::hours(1);
/// Characters of a refused response's body kept in the error (Slack answers `invalid_blocks`
/// and the like).
pub const MAX_ERROR_BODY_CHARS: usize = 200;

/// Retry and timeout settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub timeout: Duration,
    pub lease: Duration,
}

impl RetryPolicy {
    pub fn from_config(cfg: &AlertsConfig) -> Self {
        RetryPolicy {
            max_attempts: cfg.max_attempts.max(1),
            base: cfg.base_backoff(),
            max: cfg.max_backoff(),
            timeout: cfg.request_timeout(),
            lease: cfg.lease(),
        }
    }

    /// Backoff before attempt `attempts + 1` with "equal jitter": half of min(max, base·2^n)
    /// fixed, the other half uniform, so retries spread out but never come back at once.
    /// `unit` in [0, 1) is supplied by the caller (random in production, fixed in tests).
    pub fn backoff(&self, attempts: u32, unit: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .num_milliseconds()
            .saturating_mul(1i64 << exp)
            .min(self.max.num_milliseconds())
            .max(0);
        let half = ceiling as f64 / 2.0;
        Duration::milliseconds((half + half * unit.clamp(0.0, 1.0)) as i64)
    }
}

/// What came back from one attempt, before it is judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Timeout, connection refused, TLS failure… (already free of the URL).
    Transport(String),
}

/// Judges one attempt. Pure, so every rule is tested without a network.
pub fn judge(
    resp: &Response,
    attempts: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
) -> DeliveryOutcome {
    let (retryable, floor, error) = match resp {
        Response::Status { code, .. } if (200..300).contains(code) => {
            return DeliveryOutcome::Delivered
        }
        Response::Status {
            code,
            retry_after,
            body,
        } => {
            let body: String = body.chars().take(MAX_ERROR_BODY_CHARS).collect();
            let error = format!("HTTP {code}: {}", body.trim());
            match code {
                429 | 503 => (
                    true,
                    retry_after
                        .as_deref()
                        .and_then(|v| parse_retry_after(v, now))
                        .map(|d| d.min(MAX_RETRY_AFTER)),
                    error,
                ),
                500..=599 | 408 => (true, None, error),
                _ => (false, None, error),
            }
        }
        Response::Transport(e) => (true, None, e.clone()),
    };
    if !retryable {
        return DeliveryOutcome::Failed { error };
    }
    if attempts >= policy.max_attempts {
        return DeliveryOutcome::Failed {
            error: format!("gave up after {attempts} attempts; last: {error}"),
        };
    }
    let wait = policy
        .backoff(attempts, jitter)
        .max(floor.unwrap_or_else(Duration::zero));
    DeliveryOutcome::Retry {
        at: now + wait,
        error,
    }
}

/// Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::seconds(secs.min(i64::MAX as u64 / 1000) as i64));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).max(Duration::zero()))
}

/// What one `deliver_due` pass did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryStats {
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    /// Outcomes not recorded because the lease was lost to another sender.
    pub lost_leases: u64,
}

/// Sends outbox messages to the configured sinks.
pub struct Deliverer {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    sinks: BTreeMap<String, Secret>,
    policy: RetryPolicy,
    owner: String,
}

impl Deliverer {
    pub fn new(cfg: &AlertsConfig, store: Arc<dyn Store>) -> Result<Deliverer> {
        let policy = RetryPolicy::from_config(cfg);
        let client = reqwest::Client::builder()
            .timeout(policy.timeout.to_std().unwrap_or_default())
            .user_agent(concat!("epitaph/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(vec![format!("alerts: HTTP client: {e}")]))?;
        let sinks = cfg
            .sinks()
            .into_iter()
            .map(|(name, url)| (name.to_string(), url.clone()))
            .collect();
        let owner = crate::store::process_owner();
        Ok(Deliverer {
            store,
            client,
            sinks,
            policy,
            owner,
        })
    }

    pub fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Delivers every message due now, one at a time, until none is due or `deadline` passes.
    pub async fn deliver_due(&self, deadline: Option<Instant>) -> Result<DeliveryStats> {
        let mut stats = DeliveryStats::default();
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let now = Utc::now();
            let Some(entry) = self
                .store
                .claim_outbox(&self.owner, now, now + self.policy.lease)
                .await?
            else {
                break;
            };
            let outcome = self.attempt(&entry, deadline).await;
            match &outcome {
                DeliveryOutcome::Delivered => {
                    stats.delivered += 1;
                    tracing::info!(id = entry.id, sink = %entry.sink, deployment = %entry.deployment, kind = %entry.kind, "alert delivered");
                }
                DeliveryOutcome::Retry { at, error } => {
                    stats.retried += 1;
                    tracing::warn!(id = entry.id, sink = %entry.sink, attempt = entry.attempts, retry_at = %at, %error, "alert delivery failed; will retry");
                }
                DeliveryOutcome::Failed { error } => {
                    stats.failed += 1;
                    tracing::error!(id = entry.id, sink = %entry.sink, attempt = entry.attempts, %error, "alert delivery failed for good");
                }
            }
            if !self
                .store
                .finish_outbox(entry.id, &self.owner, &outcome, Utc::now())
                .await?
            {
                stats.lost_leases += 1;
                tracing::warn!(
                    id = entry.id,
                    "lease expired during delivery; another sender owns the message now"
                );
            }
        }
        Ok(stats)
    }

    /// One POST. With a `deadline` (the CLI's `alerts.flush_timeout`), the request is cut
    /// there even when `alerts.request_timeout` is longer: a sink that accepts and never
    /// answers must not hold a cron job (the cut attempt is retried by a later run).
    async fn attempt(&self, entry: &OutboxEntry, deadline: Option<Instant>) -> DeliveryOutcome {
        let Some(url) = self.sinks.get(&entry.sink) else {
            return DeliveryOutcome::Failed {
                error: format!("sink `{}` is no longer configured", entry.sink),
            };
        };
        let alert: Alert = match serde_json::from_str(&entry.alert_json) {
            Ok(a) => a,
            Err(e) => {
                return DeliveryOutcome::Failed {
                    error: format!("corrupt alert in outbox: {e}"),
                }
            }
        };
        let body = match entry.sink.as_str() {
            "slack" => crate::sinks::slack::render(&alert),
            _ => serde_json::to_value(&alert).unwrap_or_default(),
        };
        let mut request = self
            .client
            .post(url.expose())
            .header("Idempotency-Key", &entry.dedup_key)
            .json(&body);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if self.policy.timeout.to_std().is_ok_and(|t| left < t) {
                request = request.timeout(left);
            }
        }
        let resp = match request.send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.text().await.unwrap_or_default();
                Response::Status {
                    code,
                    retry_after,
                    body,
                }
            }
            Err(e) => Response::Transport(crate::sources::http::describe_transport(e)),
        };
        let jitter = rand::thread_rng().gen::<f64>();
        judge(&resp, entry.attempts, &self.policy, Utc::now(), jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::seconds(2),
            max: Duration::minutes(10),
            timeout: Duration::seconds(10),
            lease: Duration::minutes(1),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn status(code: u16, retry_after: Option<&str>) -> Response {
        Response::Status {
            code,
            retry_after: retry_after.map(str::to_string),
            body: "nope".into(),
        }
    }

    #[test]
    fn success_retry_and_failure() {
        let p = policy();
        assert_eq!(
            judge(&status(200, None), 1, &p, now(), 0.5),
            DeliveryOutcome::Delivered
        );
        assert!(matches!(
            judge(&status(500, None), 1, &p, now(), 0.5),
            DeliveryOutcome::Retry { .. }
        ));
        assert!(matches!(
            judge(&status(404, None), 1, &p, now(), 0.5),
            DeliveryOutcome::Failed { .. }
        ));
        assert!(matches!(
            judge(&status(400, None), 1, &p, now(), 0.5),
            DeliveryOutcome::Failed { .. }
        ));
        assert!(matches!(
            judge(&Response::Transport("timed out".into()), 1, &p, now(), 0.5),
            DeliveryOutcome::Retry { .. }
        ));
        match judge(&status(502, None), 5, &p, now(), 0.5) {
            DeliveryOutcome::Failed { error } => assert!(error.contains("gave up after 5")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_is_a_floor_in_seconds_or_http_date() {
        let p = policy();
        match judge(&status(429, Some("30")), 1, &p, now(), 0.0) {
            DeliveryOutcome::Retry { at, .. } => assert_eq!(at, now() + Duration::seconds(30)),
            other => panic!("{other:?}"),
        }
        let date = (now() + Duration::seconds(90)).to_rfc2822();
        match judge(&status(503, Some(&date)), 1, &p, now(), 0.0) {
            DeliveryOutcome::Retry { at, .. } => assert_eq!(at, now() + Duration::seconds(90)),
            other => panic!("{other:?}"),
        }
        // Absurd values are capped.
        match judge(&status(429, Some("999999999")), 1, &p, now(), 0.0) {
            DeliveryOutcome::Retry { at, .. } => assert_eq!(at, now() + MAX_RETRY_AFTER),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_a_cap() {
        let p = policy();
        assert_eq!(p.backoff(1, 1.0), Duration::seconds(2));
        assert_eq!(p.backoff(2, 1.0), Duration::seconds(4));
        assert_eq!(p.backoff(4, 1.0), Duration::seconds(16));
        assert_eq!(p.backoff(20, 1.0), Duration::minutes(10));
        assert_eq!(p.backoff(3, 0.5), Duration::seconds(6));
        assert_eq!(
            p.backoff(3, 0.0),
            Duration::seconds(4),
            "never less than half"
        );
    }
}
