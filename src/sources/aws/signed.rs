//! The transport of the AWS APIs spoken by hand instead of through SDK crates (CloudWatch
//! Logs, Auto Scaling): one `POST` per call to the service's endpoint, signed with SigV4 (the
//! target's own credentials, signed again for every attempt), sent through
//! `sources::http::HttpClient` — attempts under `aws.attempt_timeout`,
//! retried with backoff and jitter up to `aws.max_attempts` — and the whole call under
//! `aws.call_timeout`.
//!
//! What is retried is what the SDK's standard retry mode retried: HTTP 429, 500, 502, 503,
//! 504, connection failures and timed-out attempts, and the error codes AWS uses for throttling
//! and transient failures whatever the status (`ThrottlingException` comes as HTTP 400).
//!
//! A failure comes back as a [`CallError`]: the IAM action, the service's error code (each
//! protocol reads its own error shape, [`ErrorReader`]), whether the service answered, and one
//! line naming the operation, the code and the message — never credentials or the URL.

use std::time::Duration;

use aws_config::SdkConfig;

use crate::config::AwsConfig;
use crate::error::Result;
use crate::sources::http::{HttpClient, HttpFailure, HttpSettings};
use crate::sources::probe::CallError;
use crate::sources::prometheus::Sigv4;

/// Error codes AWS answers when a caller is throttled (the SDK's list, `aws-runtime`'s
/// `THROTTLING_ERRORS`): retried whatever the HTTP status.
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];
pub use crate::sources::ratelimit::THROTTLED_SUFFIX;
/// Error codes of transient failures (the SDK's `TRANSIENT_ERRORS`): retried too.
pub const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];
/// HTTP statuses retried besides those `HttpClient` retries (429, 502, 503, 504): the SDK's
/// transient statuses also hold 500 (`InternalFailure`).
pub const EXTRA_RETRYABLE_STATUSES: [u16; 1] = [500];
/// Largest answer read (a page of 100 Auto Scaling groups with their instances and tags, or of
/// log events up to 1 MB, is well below).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Calls in flight at once on one endpoint: not bounded here — callers bound their own
/// (`scan.concurrency` for log fetches, `aws.api_concurrency` for activities), as the SDK
/// clients left them.
pub const UNBOUNDED: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Reads `(code, message)` out of a failed call's answer, per protocol.
pub type ErrorReader = fn(&HttpFailure) -> Option<(String, String)>;

/// One service's endpoint in one target.
pub struct Endpoint {
    url: String,
    signer: Option<Sigv4>,
    http: HttpClient,
    call_timeout: Duration,
}

/// One call: its IAM action ("logs:GetLogEvents", also what it is counted as), the headers it
/// is sent and signed with besides the signature's own, and its body.
pub struct Request<'a> {
    pub action: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Vec<u8>,
    pub read_error: ErrorReader,
}

impl Endpoint {
    /// The endpoint of `service` (its SigV4 signing name, also its host's first label) for a
    /// target whose configuration is `conf`. `service_id` is the SDK's name of the service
    /// ("CloudWatch Logs"), which `AWS_ENDPOINT_URL_<SERVICE_ID>` and a profile's `services`
    /// section use: the endpoint is `aws.endpoint_url` when set, else the service's own
    /// override, else `AWS_ENDPOINT_URL` (or the profile's), else the regional one — the order
    /// the SDK clients follow.
    pub fn new(service: &str, service_id: &str, conf: &SdkConfig, aws: &AwsConfig) -> Result<Self> {
        let region = conf.region().map(|r| r.to_string()).unwrap_or_default();
        let signer = conf
            .credentials_provider()
            .map(|p| Sigv4::new(p, &region, service, "aws"));
        // Each service's operations have their own buckets: a limiter per endpoint is the
        // target's limiter for those operations, shared by every scan and query of the process.
        let http = HttpClient::new(
            service,
            &HttpSettings {
                timeout: aws.attempt_timeout().to_std().unwrap_or_default(),
                max_attempts: aws.max_attempts,
                concurrency: UNBOUNDED,
                ca_file: None,
            },
        )?
        .with_limiter(std::sync::Arc::new(
            crate::sources::ratelimit::RateLimiter::aws(&aws.rate_limits),
        ));
        Ok(Endpoint {
            url: endpoint_url(
                service,
                &region,
                endpoint_override(conf, service_id).as_deref(),
            ),
            signer,
            http,
            call_timeout: aws.call_timeout().to_std().unwrap_or_default(),
        })
    }

    /// Attempts the rate limits' quota refused so far, by operation (`<op> (throttled)`): the
    /// sources' call counts are of logical calls, which do not show them.
    pub fn throttled(&self) -> std::collections::BTreeMap<String, u64> {
        self.http
            .calls()
            .into_iter()
            .filter(|(op, _)| op.ends_with(THROTTLED_SUFFIX))
            .collect()
    }

    /// Sends one call and returns the answer's body (any 2xx).
    pub async fn post(&self, req: Request<'_>) -> std::result::Result<Vec<u8>, CallError> {
        let op = req.action.split_once(':').map_or(req.action, |(_, op)| op);
        let fail = |code: Option<String>, answered: bool, message: String| CallError {
            action: req.action.to_string(),
            code,
            answered,
            message: format!("{op}: {message}"),
        };
        let call = async {
            let signer = self.signer.as_ref().ok_or_else(|| {
                fail(
                    None,
                    false,
                    "no AWS credentials provider to sign requests with".into(),
                )
            })?;
            let ready = signer
                .ready()
                .await
                .map_err(|e| fail(None, false, e.to_string()))?;
            // Signed once now to fail early on a request that cannot be signed; each attempt
            // is signed again (the same request, a fresh date).
            let first = ready
                .headers("POST", &self.url, req.headers, &req.body)
                .map_err(|e| fail(None, false, e))?;
            let sent = self
                .http
                .send_retrying(
                    req.action,
                    |c| {
                        let signed = ready
                            .headers("POST", &self.url, req.headers, &req.body)
                            .unwrap_or_else(|_| first.clone());
                        let mut b = c.post(&self.url).body(req.body.clone());
                        for (k, v) in req.headers {
                            b = b.header(*k, *v);
                        }
                        for (k, v) in &signed {
                            b = b.header(k.as_str(), v.as_str());
                        }
                        b
                    },
                    |f| retryable(f, req.read_error),
                )
                .await;
            match sent {
                Ok(reply) => reply
                    .bytes(MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| fail(None, true, format!("reading the answer: {e}"))),
                Err(failure) => {
                    let parsed = (req.read_error)(&failure);
                    let said = parsed
                        .as_ref()
                        .map(|(code, message)| format!("{code}: {message}"))
                        .unwrap_or_else(|| failure.detail.clone());
                    Err(fail(
                        parsed.map(|(code, _)| code),
                        failure.status.is_some(),
                        failure.describe(&said),
                    ))
                }
            }
        };
        if self.call_timeout.is_zero() {
            return call.await;
        }
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(fail(
                    None,
                    false,
                    format!(
                        "timed out after {}s (aws.call_timeout)",
                        self.call_timeout.as_secs_f64()
                    ),
                ))
            })
    }
}

/// Whether a failed attempt is worth another, beyond what `HttpClient` retries by status.
pub fn retryable(f: &HttpFailure, read_error: ErrorReader) -> bool {
    f.status
        .is_some_and(|s| EXTRA_RETRYABLE_STATUSES.contains(&s))
        || read_error(f).is_some_and(|(code, _)| {
            THROTTLING_CODES.contains(&code.as_str()) || TRANSIENT_CODES.contains(&code.as_str())
        })
}

/// The endpoint override for one service, in the SDK clients' order: `aws.endpoint_url` (set
/// in code), else the service's own (`AWS_ENDPOINT_URL_<SERVICE_ID>` or the profile's
/// `services` section), else the global one (`AWS_ENDPOINT_URL`, the profile's
/// `endpoint_url`).
pub fn endpoint_override(conf: &SdkConfig, service_id: &str) -> Option<String> {
    if conf.get_origin("endpoint_url").is_client_config() {
        return conf.endpoint_url().map(str::to_string);
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    conf.service_config()
        .zip(key)
        .and_then(|(c, key)| c.load_config(key))
        .or_else(|| conf.endpoint_url().map(str::to_string))
}

/// The URL calls are posted to: the override (with one trailing slash), else the service's
/// regional endpoint (`amazonaws.com.cn` in the China regions).
pub fn endpoint_url(service: &str, region: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(e) => format!("{}/", e.trim_end_matches('/')),
        None if region.starts_with("cn-") => {
            format!("https://{service}.{region}.amazonaws.com.cn/")
        }
        None => format!("https://{service}.{region}.amazonaws.com/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, detail: &str) -> HttpFailure {
        HttpFailure {
            status: Some(status),
            detail: detail.into(),
            attempts: 1,
            retry_after_too_long: None,
            error_type: None,
        }
    }

    fn code_is_detail(f: &HttpFailure) -> Option<(String, String)> {
        Some((f.detail.clone(), String::new()))
    }

    #[test]
    fn throttling_and_transient_codes_are_retried_whatever_the_status() {
        assert!(retryable(
            &failure(400, "ThrottlingException"),
            code_is_detail
        ));
        assert!(retryable(&failure(400, "Throttling"), code_is_detail));
        assert!(retryable(
            &failure(400, "RequestTimeoutException"),
            code_is_detail
        ));
        assert!(retryable(&failure(500, "InternalFailure"), code_is_detail));
        assert!(!retryable(
            &failure(400, "ResourceNotFoundException"),
            code_is_detail
        ));
        assert!(!retryable(
            &failure(403, "AccessDeniedException"),
            code_is_detail
        ));
    }

    #[test]
    fn endpoints_are_regional_unless_overridden() {
        assert_eq!(
            endpoint_url("logs", "eu-west-1", None),
            "https://logs.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint_url("autoscaling", "cn-north-1", None),
            "https://autoscaling.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(
            endpoint_url("logs", "us-east-1", Some("http://127.0.0.1:5000/")),
            "http://127.0.0.1:5000/"
        );
    }
}
