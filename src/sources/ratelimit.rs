//! Client-side rate limits: one token bucket per operation (and per AWS target — account and
//! region — when the limiter is shared by that target's clients), so that epitaph stays under
//! an account's API quota instead of running through it and slowing every other user of the
//! account. Adaptive (AIMD): a throttled answer halves the operation's rate for everyone
//! sharing the limiter, and each success wins a little of it back, up to the configured rate.
//!
//! Time comes from tokio's clock, so tests drive it with a paused clock: no test depends on
//! the machine's speed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::time::{Duration, Instant};

/// How a throttled attempt is counted beside the operation's requests: `<op> (throttled)`.
pub const THROTTLED_SUFFIX: &str = " (throttled)";
/// A throttled answer multiplies the operation's rate by this.
pub const DECREASE_FACTOR: f64 = 0.5;
/// The rate never drops below this fraction of the configured one.
pub const MIN_RATE_FRACTION: f64 = 0.05;
/// Each success adds this fraction of the configured rate back (additive increase).
pub const INCREASE_FRACTION: f64 = 0.02;
/// Burst: a bucket holds at most this many seconds' worth of tokens.
pub const BURST_SECS: f64 = 1.0;

/// Documented per-account, per-region request quotas (requests per second) of the AWS calls
/// epitaph makes, and the defaults it runs at (about 80 %: headroom for the dashboards, agents
/// and scripts that share the quota). Sources: the CloudWatch Logs, CloudWatch, EC2 and Auto
/// Scaling quota pages; the Auto Scaling Describe calls share one bucket, counted here per call.
pub const AWS_DEFAULTS: [(&str, f64, f64); 10] = [
    // (operation, documented quota, default rate)
    ("logs:GetLogEvents", 25.0, 20.0),
    ("logs:FilterLogEvents", 5.0, 4.0),
    ("logs:DescribeLogStreams", 5.0, 4.0),
    ("logs:DescribeLogGroups", 5.0, 4.0),
    ("cloudwatch:GetMetricData", 50.0, 40.0),
    ("cloudwatch:ListMetrics", 25.0, 20.0),
    ("ec2:DescribeInstances", 20.0, 15.0),
    ("autoscaling:DescribeScalingActivities", 20.0, 10.0),
    ("autoscaling:DescribeAutoScalingGroups", 20.0, 10.0),
    ("sqs:ReceiveMessage", 100.0, 50.0),
];

#[derive(Debug)]
struct Bucket {
    /// The configured rate (requests per second).
    ceiling: f64,
    /// The current rate, lowered by throttling.
    rate: f64,
    tokens: f64,
    at: Instant,
    throttled: u64,
    /// No request goes out before this (the server's Retry-After on a throttle).
    hold_until: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            ceiling: rate,
            rate,
            tokens: (rate * BURST_SECS).max(1.0),
            at: now,
            throttled: 0,
            hold_until: None,
        }
    }

    /// Tokens earned since `at` (never before it: a hold moves `at` to its end).
    fn refill(&mut self, now: Instant) {
        if now <= self.at {
            return;
        }
        let secs = (now - self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * self.rate).min((self.rate * BURST_SECS).max(1.0));
        self.at = now;
    }
}

/// Rates per operation; operations without a rate are not limited.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `rates` (operation → requests per second; a rate ≤ 0 means unlimited).
    pub fn new(rates: &BTreeMap<String, f64>) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            buckets: Mutex::new(
                rates
                    .iter()
                    .filter(|(_, r)| r.is_finite() && **r > 0.0)
                    .map(|(op, r)| (op.clone(), Bucket::new(*r, now)))
                    .collect(),
            ),
        }
    }

    /// The AWS defaults ([`AWS_DEFAULTS`]) with `overrides` applied.
    pub fn aws(overrides: &BTreeMap<String, f64>) -> RateLimiter {
        let mut rates: BTreeMap<String, f64> = AWS_DEFAULTS
            .iter()
            .map(|(op, _, rate)| (op.to_string(), *rate))
            .collect();
        rates.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        RateLimiter::new(&rates)
    }

    /// One operation limited to `rate` requests per second (≤ 0: unlimited): an HTTP
    /// backend's query calls.
    pub fn single(op: &str, rate: f64) -> RateLimiter {
        RateLimiter::new(&[(op.to_string(), rate)].into())
    }

    /// Waits for a token of `op` (at once for an unlimited operation).
    pub async fn acquire(&self, op: &str) {
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let Some(bucket) = b.get_mut(op) else {
                    return;
                };
                let now = Instant::now();
                if let Some(until) = bucket.hold_until.filter(|u| *u > now) {
                    until - now
                } else {
                    bucket.refill(now);
                    if bucket.tokens >= 1.0 {
                        bucket.tokens -= 1.0;
                        return;
                    }
                    Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.rate)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The service said "slow down" to `op`: everyone sharing this limiter slows down.
    pub fn throttled(&self, op: &str) {
        self.throttled_for(op, None);
    }

    /// [`throttled`](Self::throttled), and when the server said how long to wait
    /// (`Retry-After`), no request of `op` goes out before that, whoever sends it.
    pub fn throttled_for(&self, op: &str, retry_after: Option<Duration>) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = b.get_mut(op) {
            let now = Instant::now();
            bucket.refill(now);
            bucket.rate = (bucket.rate * DECREASE_FACTOR).max(bucket.ceiling * MIN_RATE_FRACTION);
            bucket.tokens = bucket.tokens.min(0.0);
            bucket.throttled += 1;
            if let Some(wait) = retry_after {
                let until = bucket.hold_until.map_or(now + wait, |u| u.max(now + wait));
                bucket.hold_until = Some(until);
                // No tokens earned while held: the first request after it is alone.
                bucket.at = bucket.at.max(until);
            }
        }
    }

    /// A request of `op` went through: win back some rate.
    pub fn succeeded(&self, op: &str) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = b.get_mut(op) {
            bucket.refill(Instant::now());
            bucket.rate = (bucket.rate + bucket.ceiling * INCREASE_FRACTION).min(bucket.ceiling);
        }
    }

    /// The current rate of `op` (None when unlimited).
    pub fn rate(&self, op: &str) -> Option<f64> {
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.get(op).map(|bucket| bucket.rate)
    }
}

/// Why `rate` cannot be a configured rate (requests per second), if it cannot: negative or
/// not a number. 0 means no limit.
pub fn rate_problem(rate: f64) -> Option<String> {
    (!rate.is_finite() || rate < 0.0)
        .then(|| format!("`{rate}` is not a rate: requests per second, a number ≥ 0 (0: no limit)"))
}

/// Whether an error answer is a throttle: HTTP 429, a 503 that says when to come back
/// (`retry_after`: a server shedding load, as Loki's and Splunk's gateways do), or a 400 whose
/// code says so (AWS answers `ThrottlingException`, `Throttling`, `RequestLimitExceeded`,
/// `TooManyRequestsException`, `Rate exceeded` with 400).
pub fn is_throttle_answer(status: u16, body: &str, retry_after: Option<Duration>) -> bool {
    is_throttle(status, body) || (status == 503 && retry_after.is_some())
}

/// [`is_throttle_answer`] without a Retry-After: 429, or a 400 with a throttling code.
pub fn is_throttle(status: u16, body: &str) -> bool {
    const CODES: [&str; 6] = [
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequests",
        "Rate exceeded",
        "SlowDown",
        "RequestThrottled",
    ];
    status == 429 || (status == 400 && CODES.iter().any(|c| body.contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(op: &str, rate: f64) -> RateLimiter {
        RateLimiter::new(&[(op.to_string(), rate)].into())
    }

    #[tokio::test(start_paused = true)]
    async fn requests_go_out_at_the_configured_rate() {
        let l = limiter("logs:GetLogEvents", 20.0);
        let start = Instant::now();
        for _ in 0..220 {
            l.acquire("logs:GetLogEvents").await;
        }
        // A burst of 20 at once, then 20 per second: 200 more take 10 s.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 10.0).abs() < 0.1, "took {took}");
        // Other operations are not held.
        let before = Instant::now();
        l.acquire("logs:DescribeLogGroups").await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_halves_the_rate_and_successes_win_it_back() {
        let l = limiter("cloudwatch:GetMetricData", 40.0);
        l.throttled("cloudwatch:GetMetricData");
        assert_eq!(l.rate("cloudwatch:GetMetricData"), Some(20.0));
        l.throttled("cloudwatch:GetMetricData");
        assert_eq!(l.rate("cloudwatch:GetMetricData"), Some(10.0));
        for _ in 0..100 {
            l.throttled("cloudwatch:GetMetricData");
        }
        assert_eq!(
            l.rate("cloudwatch:GetMetricData"),
            Some(40.0 * MIN_RATE_FRACTION)
        );
        for _ in 0..200 {
            l.succeeded("cloudwatch:GetMetricData");
        }
        assert_eq!(
            l.rate("cloudwatch:GetMetricData"),
            Some(40.0),
            "back to the ceiling"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_sharing_a_limiter_share_its_rate() {
        let l = std::sync::Arc::new(limiter("logs:GetLogEvents", 10.0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    for _ in 0..30 {
                        l.acquire("logs:GetLogEvents").await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 120 requests at 10/s with a burst of 10: 11 s, whatever the number of tasks.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 11.0).abs() < 0.2, "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_everyone_sharing_the_operation() {
        let l = std::sync::Arc::new(limiter("loki:query_range", 10.0));
        l.acquire("loki:query_range").await;
        let start = Instant::now();
        l.throttled_for("loki:query_range", Some(Duration::from_secs(5)));
        assert_eq!(l.rate("loki:query_range"), Some(5.0), "halved");
        // Four tasks, each one request: none goes out before the 5 s, then one per 1/5 s.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.acquire("loki:query_range").await;
                    Instant::now()
                })
            })
            .collect();
        let mut sent = Vec::new();
        for t in tasks {
            sent.push(t.await.unwrap() - start);
        }
        sent.sort();
        assert!(sent[0] >= Duration::from_secs(5), "{sent:?}");
        let last = sent[3].as_secs_f64();
        assert!((last - (5.0 + 4.0 / 5.0)).abs() < 0.05, "{sent:?}");
        // A shorter Retry-After later does not cut a longer hold short.
        let l = limiter("splunk:search/v2/jobs/export", 10.0);
        let start = Instant::now();
        l.throttled_for("splunk:search/v2/jobs/export", Some(Duration::from_secs(8)));
        l.throttled_for("splunk:search/v2/jobs/export", Some(Duration::from_secs(1)));
        l.acquire("splunk:search/v2/jobs/export").await;
        assert!(start.elapsed() >= Duration::from_secs(8));
        // Other operations are never held.
        let before = Instant::now();
        l.acquire("splunk:server/info").await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_503_is_a_throttle_only_when_it_says_when_to_come_back() {
        let wait = Some(Duration::from_secs(2));
        assert!(is_throttle_answer(503, "busy", wait));
        assert!(!is_throttle_answer(503, "busy", None));
        assert!(is_throttle_answer(429, "", None));
        assert!(!is_throttle_answer(502, "", wait));
        let l = RateLimiter::single("prometheus:query_range", 0.0);
        assert_eq!(l.rate("prometheus:query_range"), None, "0 lifts the limit");
    }

    #[test]
    fn throttles_are_recognised_as_aws_writes_them() {
        assert!(is_throttle(429, ""));
        assert!(is_throttle(
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
        ));
        assert!(is_throttle(
            400,
            "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
        ));
        assert!(is_throttle(400, "<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>"));
        assert!(!is_throttle(
            400,
            r#"{"__type":"ResourceNotFoundException"}"#
        ));
        assert!(!is_throttle(500, "Throttling"));
    }

    #[test]
    fn overrides_replace_the_defaults_and_zero_lifts_a_limit() {
        let l = RateLimiter::aws(
            &[
                ("logs:GetLogEvents".to_string(), 5.0),
                ("cloudwatch:GetMetricData".to_string(), 0.0),
            ]
            .into(),
        );
        assert_eq!(l.rate("logs:GetLogEvents"), Some(5.0));
        assert_eq!(l.rate("cloudwatch:GetMetricData"), None);
        assert_eq!(l.rate("logs:FilterLogEvents"), Some(4.0));
    }
}
