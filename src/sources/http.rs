//! The HTTP plumbing the network log backends (`splunk`, `loki`) share: one reqwest client per
//! backend on the crate's one TLS stack (rustls + ring; certificate verification always on, an
//! extra CA bundle from a file), a timeout on every request, a bound on requests in flight,
//! bounded attempts with exponential backoff and jitter that wait at least the server's
//! `Retry-After` (429, 502, 503, 504, connection failures and timeouts), a client-side rate
//! limit (`sources::ratelimit`; a throttle — 429, a 503 with Retry-After, AWS's 400 codes —
//! slows everyone sharing it), and every request sent counted by operation for the scan
//! summary, throttled ones also as `<op> (throttled)`.
//!
//! A failed request comes back as an [`HttpFailure`]: the status and the start of the body (each
//! backend reads its own error shapes out of it), or the transport failure — never the URL,
//! which may carry credentials.
//!
//! Length: about 360 lines of code; the rest are its unit tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Secret;
use crate::error::{Error, Result};
use crate::sources::ratelimit::{RateLimiter, THROTTLED_SUFFIX};
use crate::sources::CallCounter;

/// The first retry waits up to this long (doubling per attempt; half of each wait is fixed,
/// half random).
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// No backoff wait is longer than this (a Retry-After may be, up to `MAX_RETRY_AFTER`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest Retry-After honoured: a server asking for more fails the request now (the
/// instance stays pending and is retried on the next run) instead of holding the scan.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Answers worth another attempt: rate limited, and the gateway or server briefly unavailable.
pub const RETRYABLE_STATUSES: [u16; 4] = [429, 502, 503, 504];
/// How much of an error answer is kept for the message.
pub const MAX_ERROR_BODY_BYTES: usize = 4096;
/// The header AWS JSON APIs name their error code in (kept in [`HttpFailure::error_type`]).
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";
/// A connection that is not up after this long (or the request timeout, if shorter) fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a backend's requests are made (from its config table).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// One request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Attempts per request (at least 1).
    pub max_attempts: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// PEM certificates trusted beside the built-in roots, and the key that names the file.
    pub ca_file: Option<(String, PathBuf)>,
}

/// A request that failed for good (after its attempts, or at once when not worth retrying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The start of the answer's body, or what went wrong on the way (without the URL).
    pub detail: String,
    /// Requests sent for it.
    pub attempts: u32,
    /// Set when the server asked to wait longer than `MAX_RETRY_AFTER`.
    pub retry_after_too_long: Option<Duration>,
    /// The answer's `x-amzn-ErrorType` header (AWS JSON APIs may name their error code only
    /// there), as sent.
    pub error_type: Option<String>,
}

impl HttpFailure {
    /// One line: "HTTP 503 after 3 attempts: …" or "could not connect: … (after 3 attempts)",
    /// with `body` the message the backend read out of the answer.
    pub fn describe(&self, body: &str) -> String {
        let attempts = if self.attempts > 1 {
            format!(" after {} attempts", self.attempts)
        } else {
            String::new()
        };
        let wait = self
            .retry_after_too_long
            .map(|d| {
                format!(
                    " (the server asks to retry after {}s, more than the {}s epitaph waits)",
                    d.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                )
            })
            .unwrap_or_default();
        match self.status {
            Some(s) => format!("HTTP {s}{attempts}: {body}{wait}"),
            None => format!("{body}{attempts}"),
        }
    }
}

/// A successful answer, holding its place among the requests in flight until its body is
/// read.
pub struct Reply {
    resp: reqwest::Response,
    _permit: OwnedSemaphorePermit,
}

impl Reply {
    /// The next piece of the body as it arrives (None at its end).
    pub async fn chunk(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.resp
            .chunk()
            .await
            .map(|c| c.map(|b| b.to_vec()))
            .map_err(describe_transport)
    }

    /// The whole body, or an error past `max` bytes.
    pub async fn bytes(mut self, max: usize) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
            if out.len() > max {
                return Err(format!("the answer is larger than {max} bytes"));
            }
        }
        Ok(out)
    }
}

/// One backend's HTTP client.
pub struct HttpClient {
    client: reqwest::Client,
    max_attempts: u32,
    permits: Arc<Semaphore>,
    calls: CallCounter,
    /// Client-side rate limits per operation, shared with the other clients of the same
    /// target (`sources::ratelimit`); None: unlimited.
    limiter: Option<Arc<RateLimiter>>,
}

impl HttpClient {
    /// `backend` names errors; a CA file that cannot be read or holds no certificate is an
    /// error naming its key.
    pub fn new(backend: &str, s: &HttpSettings) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(CONNECT_TIMEOUT))
            .user_agent(concat!("epitaph/", env!("CARGO_PKG_VERSION")));
        if let Some((key, path)) = &s.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(vec![format!("{key}: cannot read {}: {e}", path.display())])
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(vec![format!(
                    "{key}: {} is not a PEM certificate bundle: {e}",
                    path.display()
                )])
            })?;
            if certs.is_empty() {
                return Err(Error::Config(vec![format!(
                    "{key}: {} holds no PEM certificate",
                    path.display()
                )]));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b
            .build()
            .map_err(|e| Error::source(backend, format!("HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            max_attempts: s.max_attempts.max(1),
            permits: Arc::new(Semaphore::new(s.concurrency.max(1))),
            calls: CallCounter::default(),
            limiter: None,
        })
    }

    /// Holds this client's requests to `limiter`'s rates (for AWS, shared with the other
    /// clients of the same account and region, so that together they stay under its quota;
    /// for an HTTP backend, its `rate_limit` on the query calls).
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Requests sent so far, by operation (retries included: each is a request the server saw).
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.calls.snapshot()
    }

    /// Sends the request `build` makes (again for each attempt) and returns the first 2xx
    /// answer, retrying what is worth retrying; `op` counts it ("loki:query_range").
    pub async fn send(
        &self,
        op: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> std::result::Result<Reply, HttpFailure> {
        self.send_retrying(op, build, |_| false).await
    }

    /// [`send`](Self::send), also retrying the error answers `retry_also` picks (an API that
    /// says "throttled" with HTTP 400, as AWS's do).
    pub async fn send_retrying(
        &self,
        op: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        retry_also: impl Fn(&HttpFailure) -> bool,
    ) -> std::result::Result<Reply, HttpFailure> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| HttpFailure {
                    status: None,
                    detail: "the client is shutting down".into(),
                    attempts: attempt,
                    retry_after_too_long: None,
                    error_type: None,
                })?;
            if let Some(l) = &self.limiter {
                l.acquire(op).await;
            }
            self.calls.count(op);
            let (mut failure, retry, retry_after) = match build(&self.client).send().await {
                Ok(resp) if resp.status().is_success() => {
                    if let Some(l) = &self.limiter {
                        l.succeeded(op);
                    }
                    return Ok(Reply {
                        resp,
                        _permit: permit,
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| crate::sinks::deliver::parse_retry_after(v, Utc::now()))
                        .and_then(|d| d.to_std().ok());
                    let error_type = resp
                        .headers()
                        .get(ERROR_TYPE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = error_body(resp).await;
                    // A throttle (429, or AWS's 400 ThrottlingException and kin, in the body or
                    // the x-amzn-ErrorType header) slows every request of this operation
                    // sharing the limiter, and is retried.
                    // A 503 that says when to come back is a server shedding load: a throttle.
                    let throttle =
                        crate::sources::ratelimit::is_throttle_answer(status, &body, retry_after)
                            || error_type
                                .as_deref()
                                .is_some_and(|t| crate::sources::ratelimit::is_throttle(400, t));
                    if throttle {
                        self.calls.count(&format!("{op}{THROTTLED_SUFFIX}"));
                        if let Some(l) = &self.limiter {
                            l.throttled_for(op, retry_after.filter(|d| *d <= MAX_RETRY_AFTER));
                        }
                    }
                    let failure = HttpFailure {
                        status: Some(status),
                        detail: body,
                        attempts: attempt,
                        retry_after_too_long: None,
                        error_type,
                    };
                    let retry =
                        throttle || RETRYABLE_STATUSES.contains(&status) || retry_also(&failure);
                    (failure, retry, retry_after)
                }
                Err(e) => {
                    let retry = e.is_timeout() || e.is_connect() || e.is_request();
                    (
                        HttpFailure {
                            status: None,
                            detail: describe_transport(e),
                            attempts: attempt,
                            retry_after_too_long: None,
                            error_type: None,
                        },
                        retry,
                        None,
                    )
                }
            };
            drop(permit);
            if !retry || attempt >= self.max_attempts {
                return Err(failure);
            }
            let jitter = rand::thread_rng().gen::<f64>();
            let Some(wait) = retry_wait(attempt, jitter, retry_after) else {
                failure.retry_after_too_long = retry_after;
                return Err(failure);
            };
            tracing::debug!(
                op,
                attempt,
                status = ?failure.status,
                wait_ms = wait.as_millis() as u64,
                "request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The bounds of a retry schedule: the first wait, the longest backoff, and the longest
/// Retry-After honoured. One schedule, several bounds: these HTTP backends use
/// [`HTTP_RETRY`]; the Prometheus backend its own, longer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimits {
    pub base: Duration,
    pub max: Duration,
    pub max_retry_after: Duration,
}

/// The log backends' bounds (`BASE_BACKOFF`, `MAX_BACKOFF`, `MAX_RETRY_AFTER`).
pub const HTTP_RETRY: RetryLimits = RetryLimits {
    base: BASE_BACKOFF,
    max: MAX_BACKOFF,
    max_retry_after: MAX_RETRY_AFTER,
};

impl RetryLimits {
    /// The backoff before attempt `attempt + 1`: `base` doubled per attempt, capped at `max`,
    /// half fixed and half scaled by `jitter` (0..1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// The wait before attempt `attempt + 1`: the backoff, or the server's Retry-After when
    /// that is longer; None when the server asks for more than `max_retry_after` (the request
    /// fails now).
    pub fn retry_wait(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        match retry_after {
            Some(r) if r > self.max_retry_after => None,
            Some(r) => Some(self.backoff(attempt, jitter).max(r)),
            None => Some(self.backoff(attempt, jitter)),
        }
    }
}

/// [`RetryLimits::backoff`] with the log backends' bounds (the tests' view of the schedule).
#[cfg(test)]
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    HTTP_RETRY.backoff(attempt, jitter)
}

/// [`RetryLimits::retry_wait`] with the log backends' bounds.
pub fn retry_wait(attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Option<Duration> {
    HTTP_RETRY.retry_wait(attempt, jitter, retry_after)
}

/// The start of an error answer's body, as text.
async fn error_body(mut resp: reqwest::Response) -> String {
    let mut out = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        out.extend_from_slice(&c);
        if out.len() >= MAX_ERROR_BODY_BYTES {
            out.truncate(MAX_ERROR_BODY_BYTES);
            break;
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// A transport failure in one line, without its URL (it may hold a secret): "timed out: …",
/// "could not connect: …", with the causes (what actually happened: "Connection refused";
/// reqwest's own line is often just "error sending request"). Shared by every HTTP client of
/// the crate (the log and metrics backends, alert delivery).
pub(crate) fn describe_transport(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut msg = e.to_string();
    if msg.is_empty() {
        msg = kind.to_string();
    }
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    format!("{kind}: {msg}")
}

/// `Authorization` (or any secret) as a header value that is never logged.
pub fn secret_header(value: &str) -> std::result::Result<reqwest::header::HeaderValue, String> {
    let mut v = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| "contains characters a header cannot carry".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

/// The base URL of an API for messages: scheme, host, port and path, never a user or password.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string().trim_end_matches('/').to_string()
}

/// Parses a backend's base URL: http(s), with a host; a trailing slash is dropped.
pub fn parse_base_url(text: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim_end_matches('/'))
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` must be an http(s) URL with a host"));
    }
    if url.query().is_some() {
        return Err(format!("`{text}` must not have a query string"));
    }
    Ok(url)
}

/// `base` + `path` (base's own path kept: `https://gw/loki` + `/loki/api/v1/query_range`).
pub fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut u = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    u.set_path(&joined);
    u
}

/// A backend call that failed, as the backend explains it: the message (naming what failed),
/// and for `epitaph doctor` the HTTP status and whether the server answered at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    pub status: Option<u16>,
    pub answered: bool,
    pub message: String,
}

impl CallFailed {
    /// A failed request as a backend explains it: `what` failed, the server's own message
    /// read out of the answer's body by `error_text` (the transport's, when it never
    /// answered), and the backend's `hint` for the status.
    pub fn from_http(
        what: &str,
        f: &HttpFailure,
        hint: &str,
        error_text: impl Fn(&str) -> String,
    ) -> Self {
        let body = match f.status {
            Some(_) => error_text(&f.detail),
            None => f.detail.clone(),
        };
        CallFailed {
            status: f.status,
            answered: f.status.is_some(),
            message: format!("{what}: {}{hint}", f.describe(&body)),
        }
    }

    /// A failure that is not the server's (a token file that cannot be read, an instance that
    /// cannot be mapped).
    pub fn local(message: impl Into<String>) -> Self {
        CallFailed {
            status: None,
            answered: false,
            message: message.into(),
        }
    }

    /// The library error: `backend: message`.
    pub fn into_error(self, backend: &str) -> Error {
        Error::source(backend, self.message)
    }

    /// As `epitaph doctor` records it, under `action` ("GET /loki/api/v1/labels").
    pub fn call_error(&self, action: &str) -> crate::sources::probe::CallError {
        crate::sources::probe::CallError {
            action: action.to_string(),
            code: self.status.map(|s| s.to_string()),
            answered: self.answered,
            message: self.message.clone(),
        }
    }
}

/// Splits a streamed body into lines as its pieces arrive (a line may span pieces).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// The lines `piece` completes (without their `\n` / `\r\n`).
    pub fn push(&mut self, piece: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(piece);
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            out.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            );
        }
        out
    }

    /// The last line, when the body did not end with a newline.
    pub fn finish(self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.pending).trim().to_string();
        (!text.is_empty()).then_some(text)
    }
}

/// Where a backend's secret (a token, a password) comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Written in the config (or an `EPITAPH_…` variable).
    Inline(Secret),
    /// A file read for every request (rotated tokens); `key` names it in errors.
    File { key: String, path: PathBuf },
    /// An environment variable, read once when the backend is built.
    Env(Secret),
}

impl SecretSource {
    /// The secret as of now (a file's content, trimmed).
    pub fn get(&self) -> std::result::Result<Secret, String> {
        match self {
            SecretSource::Inline(s) | SecretSource::Env(s) => Ok(s.clone()),
            SecretSource::File { key, path } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!("{key}: {} is empty", path.display()));
                }
                Ok(Secret::new(text))
            }
        }
    }
}

/// The one secret configured among an inline value (`inline_key`), a file and an environment
/// variable's name, or why not: none, or more than one (each error names the keys). `None`
/// when none is set and `required` is false.
pub fn secret_source(
    keys: [&str; 3],
    inline: Option<&Secret>,
    file: Option<PathBuf>,
    env_var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    required: bool,
) -> std::result::Result<Option<SecretSource>, String> {
    let [inline_key, file_key, env_key] = keys;
    let set = usize::from(inline.is_some())
        + usize::from(file.is_some())
        + usize::from(env_var.is_some());
    if set > 1 {
        return Err(format!(
            "{inline_key}, {file_key} and {env_key}: set only one of them"
        ));
    }
    if let Some(s) = inline {
        if s.is_empty() {
            return Err(format!("{inline_key}: must not be empty"));
        }
        return Ok(Some(SecretSource::Inline(s.clone())));
    }
    if let Some(path) = file {
        return Ok(Some(SecretSource::File {
            key: file_key.to_string(),
            path,
        }));
    }
    if let Some(var) = env_var {
        return match env(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => Ok(Some(SecretSource::Env(Secret::new(v.trim())))),
            None => Err(format!(
                "{env_key}: the environment variable {var} is not set (or empty)"
            )),
        };
    }
    if required {
        return Err(format!(
            "{inline_key}: required (or {file_key}, or {env_key} naming an environment variable)"
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.0), BASE_BACKOFF / 2);
        assert_eq!(backoff(1, 1.0), BASE_BACKOFF);
        assert_eq!(backoff(2, 1.0), BASE_BACKOFF * 2);
        assert_eq!(backoff(30, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(30, 0.0), MAX_BACKOFF / 2);
    }

    #[test]
    fn retry_after_is_a_floor_up_to_a_bound() {
        assert_eq!(retry_wait(1, 0.0, None), Some(BASE_BACKOFF / 2));
        assert_eq!(retry_wait(1, 0.0, Some(secs(7))), Some(secs(7)));
        assert_eq!(retry_wait(30, 1.0, Some(secs(1))), Some(MAX_BACKOFF));
        assert_eq!(
            retry_wait(1, 0.0, Some(MAX_RETRY_AFTER)),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_wait(1, 0.0, Some(MAX_RETRY_AFTER + secs(1))), None);
    }

    #[test]
    fn base_urls_keep_their_path_and_hide_credentials() {
        let u = parse_base_url("https://user:pw@gw.example.com/loki/").unwrap();
        assert_eq!(
            join(&u, "/loki/api/v1/query_range").path(),
            "/loki/loki/api/v1/query_range"
        );
        assert_eq!(display_url(&u), "https://gw.example.com/loki");
        assert!(parse_base_url("loki:3100").is_err());
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://x/?a=1").is_err());
        let u = parse_base_url("http://127.0.0.1:3100").unwrap();
        assert_eq!(
            join(&u, "/loki/api/v1/labels").as_str(),
            "http://127.0.0.1:3100/loki/api/v1/labels"
        );
    }

    #[test]
    fn failures_say_what_and_how_often() {
        let f = HttpFailure {
            status: Some(503),
            detail: "busy".into(),
            attempts: 3,
            retry_after_too_long: Some(secs(120)),
            error_type: None,
        };
        let d = f.describe("busy");
        assert!(d.starts_with("HTTP 503 after 3 attempts: busy"), "{d}");
        assert!(d.contains("retry after 120s"), "{d}");
        let f = HttpFailure {
            status: None,
            detail: "could not connect: refused".into(),
            attempts: 1,
            retry_after_too_long: None,
            error_type: None,
        };
        assert_eq!(f.describe(&f.detail), "could not connect: refused");
    }

    #[test]
    fn lines_split_across_pieces() {
        let mut l = LineSplitter::default();
        assert_eq!(l.push(b"{\"a\":"), Vec::<String>::new());
        assert_eq!(
            l.push(b"1}\r\n{\"b\":2}\n{\"c\""),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(l.finish().as_deref(), Some("{\"c\""));
    }

    #[test]
    fn a_ca_file_that_is_not_pem_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let s = HttpSettings {
            timeout: secs(5),
            max_attempts: 1,
            concurrency: 1,
            ca_file: Some(("sources.logs.loki.ca_file".into(), p)),
        };
        let err = HttpClient::new("loki", &s).err().unwrap().to_string();
        assert!(err.contains("sources.logs.loki.ca_file"), "{err}");
        let s = HttpSettings {
            ca_file: Some((
                "sources.logs.loki.ca_file".into(),
                dir.path().join("missing.pem"),
            )),
            ..s
        };
        let err = HttpClient::new("loki", &s).err().unwrap().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
