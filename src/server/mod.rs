//! `epitaph serve`: scans on a cron schedule, delivers the alert outbox, and serves the HTTP
//! API (documented in `docs/openapi.yaml`):
//!
//! - `GET /healthz` (no auth), `GET /metrics`, `GET /` (the HTML report);
//! - `GET /v1/instances/{instance_id}` — the on-demand query (fetched from the sources if the
//!   store does not know the instance);
//! - `GET /v1/deployments`, `GET /v1/findings`, `POST /v1/scans`, `GET /v1/scans/latest`.
//!
//! Every route but `/healthz` wants `Authorization: Bearer <serve.token>` (compared in constant
//! time). One scan runs at a time, whoever starts it. On SIGTERM or Ctrl-C the server stops
//! taking requests, lets a running scan finish (up to `serve.shutdown_grace`; an interrupted
//! scan is not recorded, so its window is scanned again next start) and drains the outbox.
//!
//! Length: the router, the authentication and counting middleware, the scheduler and the
//! graceful shutdown share the application state; metrics and events are in their own files;
//! the tests follow.

#[cfg(feature = "aws")]
mod events;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{watch, Mutex, Notify, RwLock};

use crate::config::{Config, Secret};
use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, ScanOptions, ScanReport};
use crate::schedule::Schedule;
use metrics::Metrics;

/// Every route (method, path) the router serves; `docs/openapi.yaml` documents exactly
/// these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/v1/instances/{instance_id}"),
    ("get", "/v1/deployments"),
    ("get", "/v1/next-deaths"),
    ("get", "/v1/findings"),
    ("post", "/v1/scans"),
    ("get", "/v1/scans/latest"),
];

/// Largest request body accepted (the API takes no bodies beyond tiny JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared by the routes, the scheduler and the deliverer.
pub struct AppState {
    pipeline: Arc<Pipeline>,
    token: Option<Secret>,
    /// Held while a scan runs: one at a time.
    scan_lock: Arc<Mutex<()>>,
    metrics: Metrics,
    latest: RwLock<Option<ScanStatus>>,
    /// Wakes the deliverer (after a scan enqueued messages).
    deliver_now: Notify,
    /// On-demand queries fetching from the sources at once (`scan.concurrency`): however many
    /// clients ask, the backends see a bounded number of calls.
    query_slots: tokio::sync::Semaphore,
    /// This process in the store's scan slots.
    owner: String,
}

/// The last scan as `GET /v1/scans/latest` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanStatus {
    /// `schedule` or `api`.
    pub trigger: String,
    pub started_at: chrono::DateTime<Utc>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
    /// `running`, `ok` or `error`.
    pub state: String,
    pub error: Option<String>,
    pub summary: Option<crate::pipeline::ScanSummary>,
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>) -> Arc<AppState> {
        let token = pipeline
            .config()
            .serve
            .token
            .clone()
            .filter(|t| !t.is_empty());
        let slots = pipeline.config().scan.concurrency.max(1);
        Arc::new(AppState {
            query_slots: tokio::sync::Semaphore::new(slots),
            owner: crate::store::process_owner(),
            pipeline,
            token,
            scan_lock: Arc::new(Mutex::new(())),
            metrics: Metrics::default(),
            latest: RwLock::new(None),
            deliver_now: Notify::new(),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs one scan unless one is running; None when busy.
    pub async fn run_scan(self: &Arc<Self>, trigger: &str) -> Option<Result<ScanReport>> {
        let Ok(guard) = self.scan_lock.clone().try_lock_owned() else {
            self.metrics.scan_skipped();
            return None;
        };
        Some(self.scan_locked(trigger, guard).await)
    }

    /// The scheduled scan of `slot`: skipped when this process is still scanning, or when
    /// another replica sharing the state took the slot first (one scan per slot).
    async fn run_scheduled_scan(self: &Arc<Self>, slot: chrono::DateTime<Utc>) {
        let Ok(guard) = self.scan_lock.clone().try_lock_owned() else {
            self.metrics.scan_skipped();
            tracing::info!(%slot, "scheduled scan skipped: a scan is already running");
            return;
        };
        let store = self.pipeline.store();
        match store.claim_scan_slot(slot, &self.owner, Utc::now()).await {
            Ok(true) => {
                tracing::info!(%slot, "scheduled scan: this replica took the slot");
                let _ = self.scan_locked("schedule", guard).await;
            }
            Ok(false) => {
                self.metrics.scan_taken_elsewhere();
                tracing::info!(%slot, "scheduled scan skipped: another replica took this slot");
            }
            Err(e) => {
                // Without the store a scan could not record anything either; the next slot
                // covers the window (only complete runs advance the watermark).
                self.metrics.scan_failed(0.0);
                tracing::error!(%slot, error = %e, "scheduled scan skipped: cannot claim its slot");
            }
        }
    }

    async fn scan_locked(
        self: &Arc<Self>,
        trigger: &str,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<ScanReport> {
        let started_at = Utc::now();
        *self.latest.write().await = Some(ScanStatus {
            trigger: trigger.to_string(),
            started_at,
            finished_at: None,
            state: "running".into(),
            error: None,
            summary: None,
        });
        let clock = Instant::now();
        let result = self.pipeline.scan(&ScanOptions::default()).await;
        let secs = clock.elapsed().as_secs_f64();
        let mut status = ScanStatus {
            trigger: trigger.to_string(),
            started_at,
            finished_at: Some(Utc::now()),
            state: "ok".into(),
            error: None,
            summary: None,
        };
        match &result {
            Ok(report) => {
                self.metrics
                    .scan_finished(report, secs, Utc::now().timestamp() as f64);
                status.summary = Some(report.summary.clone());
                if report.summary.alerts_enqueued > 0 {
                    self.deliver_now.notify_one();
                }
            }
            Err(e) => {
                self.metrics.scan_failed(secs);
                tracing::error!(error = %e, trigger, "scan failed");
                status.state = "error".into();
                status.error = Some(e.to_string());
            }
        }
        *self.latest.write().await = Some(status);
        result
    }

    async fn deliver(&self, deadline: Option<Instant>) {
        match self.pipeline.deliver_alerts(deadline).await {
            Ok(stats) => self.metrics.deliveries(&stats),
            Err(e) => {
                self.metrics.error("delivery");
                tracing::error!(error = %e, "outbox delivery failed");
            }
        }
    }
}

/// The router with every route; used by `serve` and by the API tests.
pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/", get(report_page))
        .route("/metrics", get(metrics_text))
        .route("/v1/instances/{instance_id}", get(instance))
        .route("/v1/deployments", get(deployments))
        .route("/v1/next-deaths", get(next_deaths))
        .route("/v1/findings", get(findings))
        .route("/v1/scans", post(start_scan))
        .route("/v1/scans/latest", get(latest_scan))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(authed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A JSON error body: `{"error": "..."}`.
fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn store_error(state: &AppState, e: Error) -> Response {
    state.metrics.error("store");
    tracing::error!(error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // Label by route template, never by the raw path: ids would explode the series count.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    state.metrics.http(&route, resp.status().as_u16());
    resp
}

async fn auth(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    // The scheme is case-insensitive (RFC 7235 §2.1): "Bearer", "bearer", "BEARER".
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let (msg, challenge) = match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(token.expose().as_bytes())) => {
            return next.run(req).await
        }
        Some(_) => (
            "invalid bearer token",
            "Bearer realm=\"epitaph\", error=\"invalid_token\"",
        ),
        None => (
            "missing `Authorization: Bearer <token>`",
            "Bearer realm=\"epitaph\"",
        ),
    };
    // Both refusals carry the challenge (RFC 6750 §3).
    let mut r = error(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    r
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.pipeline.store().watermark().await {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed for this route (see docs/openapi.yaml)",
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let store = state.pipeline.store();
    let (outbox, next_deaths) = match tokio::try_join!(store.outbox_counts(), store.projections()) {
        Ok(v) => v,
        Err(e) => return store_error(&state, e),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, text) = state.metrics.render(accept, &outbox, &next_deaths);
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn report_page(State(state): State<Arc<AppState>>) -> Response {
    match state.pipeline.html_report(None).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => store_error(&state, e),
    }
}

/// `i-` and 8 or 17 lowercase hex digits.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[derive(Debug, Deserialize)]
struct InstanceQuery {
    #[serde(default)]
    refresh: bool,
}

async fn instance(
    State(state): State<Arc<AppState>>,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<InstanceQuery>, QueryRejection>,
) -> Response {
    let (Path(id), Query(q)) = match (id, q) {
        (Ok(id), Ok(q)) => (id, q),
        (Err(e), _) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !is_instance_id(&id) {
        return error(
            StatusCode::BAD_REQUEST,
            "instance_id must be i- followed by 8 or 17 lowercase hex digits",
        );
    }
    let Ok(_slot) = state.query_slots.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    match state.pipeline.investigate(&id, q.refresh).await {
        Ok(inv) => Json(inv).into_response(),
        Err(e @ Error::Source { .. }) => {
            tracing::warn!(instance_id = %id, error = %e, "on-demand query failed");
            error(StatusCode::BAD_GATEWAY, e.to_string())
        }
        Err(e @ Error::UnknownInstance(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => store_error(&state, e),
    }
}

async fn deployments(State(state): State<Arc<AppState>>) -> Response {
    match state.pipeline.store().findings().await {
        Ok(f) => Json(json!({"schema_version": crate::pipeline::SCHEMA_VERSION, "deployments": f}))
            .into_response(),
        Err(e) => store_error(&state, e),
    }
}

/// Early warning: the running instances projected to reach their memory limit, soonest first.
async fn next_deaths(State(state): State<Arc<AppState>>) -> Response {
    match state.pipeline.store().projections().await {
        Ok(p) => Json(json!({"schema_version": crate::pipeline::SCHEMA_VERSION, "next_deaths": p}))
            .into_response(),
        Err(e) => store_error(&state, e),
    }
}

async fn findings(State(state): State<Arc<AppState>>) -> Response {
    let store = state.pipeline.store();
    let (findings, states, outbox) =
        match tokio::try_join!(store.findings(), store.alert_states(), store.outbox(50)) {
            Ok(v) => v,
            Err(e) => return store_error(&state, e),
        };
    let alerting: std::collections::BTreeSet<String> = state
        .pipeline
        .config()
        .alerts
        .verdicts
        .iter()
        .map(|v| v.as_str().to_string())
        .collect();
    let list: Vec<serde_json::Value> = findings
        .iter()
        .filter(|f| alerting.contains(f.verdict.as_str()))
        .map(|f| {
            let st = states.iter().find(|s| s.deployment == f.deployment);
            json!({
                "finding": f,
                "alert": st.map(|s| json!({
                    "firing": s.firing,
                    "episode": s.episode,
                    "last_sent_at": s.last_sent_at,
                })),
            })
        })
        .collect();
    Json(json!({
        "schema_version": crate::pipeline::SCHEMA_VERSION,
        "findings": list,
        "alert_states": states,
        "recent_messages": outbox,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ScanQuery {
    /// Wait for the scan and return its report instead of 202.
    #[serde(default)]
    wait: bool,
}

async fn start_scan(
    State(state): State<Arc<AppState>>,
    q: std::result::Result<Query<ScanQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Ok(guard) = state.scan_lock.clone().try_lock_owned() else {
        state.metrics.scan_skipped();
        return error(StatusCode::CONFLICT, "a scan is already running");
    };
    if q.wait {
        return match state.scan_locked("api", guard).await {
            Ok(report) => Json(report).into_response(),
            Err(e) if e.is_bad_input() => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let s = state.clone();
    tokio::spawn(async move {
        let _ = s.scan_locked("api", guard).await;
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "started", "poll": "/v1/scans/latest"})),
    )
        .into_response()
}

async fn latest_scan(State(state): State<Arc<AppState>>) -> Response {
    match state.latest.read().await.clone() {
        Some(s) => Json(s).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no scan has run since the service started",
        ),
    }
}

/// Checks that serving this config is safe: a token, or anonymous on loopback only.
pub fn check_auth(cfg: &Config, addr: SocketAddr) -> Result<()> {
    let has_token = cfg.serve.token.as_ref().is_some_and(|t| !t.is_empty());
    if has_token {
        return Ok(());
    }
    if !cfg.serve.allow_anonymous {
        return Err(Error::Config(vec![
            "serve.token: required (set EPITAPH_SERVE__TOKEN), or set serve.allow_anonymous = true on a loopback address".into(),
        ]));
    }
    if !addr.ip().is_loopback() {
        return Err(Error::Config(vec![format!(
            "serve.allow_anonymous: only allowed on a loopback address, not {addr}"
        )]));
    }
    Ok(())
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn serve(pipeline: Pipeline) -> Result<()> {
    let cfg = pipeline.config().clone();
    let addr: SocketAddr = cfg.serve.listen.parse().map_err(|_| {
        Error::Config(vec![format!(
            "serve.listen: `{}` is not an address",
            cfg.serve.listen
        )])
    })?;
    check_auth(&cfg, addr)?;
    let schedule = Schedule::parse(&cfg.serve.schedule)
        .map_err(|e| Error::Config(vec![format!("serve.schedule: {e}")]))?;
    let state = AppState::new(Arc::new(pipeline));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(vec![format!("serve.listen: cannot bind {addr}: {e}")]))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(std::path::Path::new("socket"), e))?;
    tracing::info!(addr = %local, schedule = schedule.as_str(), "serving");
    eprintln!(
        "epitaph: listening on http://{local} (scans: {})",
        schedule.as_str()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler(state.clone(), schedule, stop_rx.clone()));
    let deliverer = tokio::spawn(delivery_loop(
        state.clone(),
        cfg.serve.delivery_interval().to_std().unwrap_or_default(),
        stop_rx.clone(),
    ));

    let events = match start_events(&cfg, &state, stop_rx.clone()).await? {
        Some(task) => task,
        None => tokio::spawn(async {}),
    };

    let mut http_stop = stop_rx.clone();
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });

    shutdown_signal().await;
    tracing::info!("shutting down");
    eprintln!("epitaph: shutting down");
    let _ = stop_tx.send(true);
    let grace = cfg.serve.shutdown_grace().to_std().unwrap_or_default();
    let deadline = Instant::now() + grace;
    // Wait for a running scan (the lock is free once it finished); every wait below is
    // bounded by the grace period, so a stuck scan or webhook cannot hold the shutdown.
    if tokio::time::timeout(grace, state.scan_lock.lock())
        .await
        .is_err()
    {
        tracing::warn!(
            "a scan was still running after the grace period; it is not recorded, so its window is scanned again next start"
        );
        scheduler.abort();
    }
    let _ = tokio::time::timeout(grace, scheduler).await;
    let _ = tokio::time::timeout(grace, events).await;
    let _ = tokio::time::timeout(grace, deliverer).await;
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(left, state.deliver(Some(deadline))).await;
    let _ = tokio::time::timeout(grace, server).await;
    Ok(())
}

/// The event intake's task, when `[sources.events]` names a queue. A queue that cannot be
/// set up (no credentials, a bad URL) stops `serve` with the reason: an intake configured
/// and silently absent would be worse than none.
#[cfg(feature = "aws")]
async fn start_events(
    cfg: &crate::config::Config,
    state: &Arc<AppState>,
    stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    use crate::sources::events::config::EventsKind;
    match cfg.sources.events.kind {
        EventsKind::None => Ok(None),
        EventsKind::Sqs => {
            let queue =
                crate::sources::events::sqs::SqsQueue::from_config(&cfg.sources.events, &cfg.aws)
                    .await?;
            eprintln!("epitaph: event intake from {}", queue.queue_url());
            Ok(Some(tokio::spawn(events::event_loop(
                state.clone(),
                Arc::new(queue),
                stop,
            ))))
        }
    }
}

/// Without the AWS backends there is no queue to read (the config check refuses `sqs`
/// already; this is the same refusal, should anything get past it).
#[cfg(not(feature = "aws"))]
async fn start_events(
    cfg: &crate::config::Config,
    _state: &Arc<AppState>,
    _stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    use crate::sources::events::config::EventsKind;
    match cfg.sources.events.kind {
        EventsKind::None => Ok(None),
        EventsKind::Sqs => Err(Error::Config(vec![
            "sources.events.kind: `sqs` needs the AWS backends, which this build leaves out".into(),
        ])),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn scheduler(state: Arc<AppState>, schedule: Schedule, mut stop: watch::Receiver<bool>) {
    loop {
        let now = Utc::now();
        let Some(next) = schedule.next_after(now) else {
            tracing::error!("the schedule has no next run; scheduled scans stop");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        state.run_scheduled_scan(next).await;
    }
}

async fn delivery_loop(
    state: Arc<AppState>,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let interval = interval.max(std::time::Duration::from_millis(100));
    loop {
        // Bounded by the interval so a slow webhook cannot hold the loop past a shutdown.
        state.deliver(Some(Instant::now() + interval * 4)).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = state.deliver_now.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_exactly_the_routes() {
        let spec = include_str!("../../docs/openapi.yaml");
        let mut documented = Vec::new();
        let mut path: Option<String> = None;
        let mut in_paths = false;
        for line in spec.lines() {
            if line == "paths:" {
                in_paths = true;
                continue;
            }
            if in_paths && !line.starts_with(' ') && !line.is_empty() {
                in_paths = false;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !p.starts_with(' ') {
                    path = Some(p.to_string());
                    continue;
                }
            }
            if let (Some(p), Some(m)) = (
                &path,
                line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')),
            ) {
                if ["get", "post", "put", "delete", "patch"].contains(&m) {
                    documented.push((m.to_string(), p.clone()));
                }
            }
        }
        let mut expected: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        expected.sort();
        assert_eq!(documented, expected);
    }

    #[test]
    fn anonymous_only_on_loopback() {
        let mut cfg = Config::default();
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_auth(&cfg, lo).is_err());
        cfg.serve.allow_anonymous = true;
        assert!(check_auth(&cfg, lo).is_ok());
        assert!(check_auth(&cfg, any).is_err());
        cfg.serve.token = Some(Secret::new("x"));
        assert!(check_auth(&cfg, any).is_ok());
    }

    #[test]
    fn instance_ids() {
        assert!(is_instance_id("i-0123abcd"));
        assert!(is_instance_id("i-0123456789abcdef0"));
        for bad in [
            "i-0123ABCD",
            "i-0123abc",
            "0123abcd",
            "i-0123456789abcdef",
            "",
        ] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }
}
