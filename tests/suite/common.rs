//! Helpers shared by the alert, API, browser and soak tests: a simulated fleet on disk and a
//! local webhook receiver that records what it gets and answers as a test tells it to
//! (built from Slack's documented incoming-webhook behaviour: 200 `ok`, 429 with Retry-After,
//! 5xx on outages).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use epitaph::simulate::{simulate, SimOptions, Truth};

/// A secret planted in the simulated last words; it must never reach a receiver or a report.
pub const PLANTED_PASSWORD: &str = "hunter2SECRET";
pub const PLANTED_AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// A simulated fleet in a temporary folder.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub truth: Truth,
}

impl Fleet {
    pub fn new(seed: u64, asgs: usize, instances: usize) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let truth = simulate(
            dir.path(),
            &SimOptions {
                seed,
                asgs,
                instances,
                ..Default::default()
            },
        )
        .unwrap();
        Fleet { dir, truth }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("epitaph.toml")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("epitaph.db")
    }

    /// Appends TOML (an `[alerts]` section, say) to the fleet's config.
    pub fn append_config(&self, text: &str) {
        let p = self.config_path();
        let mut cfg = std::fs::read_to_string(&p).unwrap();
        cfg.push('\n');
        cfg.push_str(text);
        std::fs::write(&p, cfg).unwrap();
    }

    /// Plants secrets in the line two above every V8 fatal error (inside an alert's context).
    pub fn plant_secrets(&self) {
        let logs = self.dir.path().join("logs");
        for entry in std::fs::read_dir(&logs).unwrap() {
            let p = entry.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let planted = text.replace(
                "<--- JS stacktrace --->",
                &format!(
                    "<--- JS stacktrace ---> db password={PLANTED_PASSWORD} key {PLANTED_AWS_KEY}"
                ),
            );
            std::fs::write(&p, planted).unwrap();
        }
    }

    /// Deployments the truth says should alert with the default `alerts.verdicts`.
    pub fn alerting_deployments(&self) -> Vec<String> {
        self.truth
            .deployments
            .iter()
            .filter(|(_, v)| matches!(v.as_str(), "leaking" | "oom_without_leak"))
            .map(|(d, _)| d.clone())
            .collect()
    }
}

/// How the receiver answers the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    Status(u16, Option<String>),
    /// Never answer (the sender is killed or times out meanwhile).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub idempotency_key: String,
    pub body: serde_json::Value,
    pub at: Instant,
    /// Answered 2xx: the sender was told it was delivered.
    pub acked: bool,
}

#[derive(Default)]
struct Inner {
    plan: VecDeque<Reply>,
    got: Vec<Got>,
}

/// A local webhook receiver.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { inner, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers for the next requests, in order; after them every request gets 200.
    pub fn plan(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().plan.extend(replies);
    }

    pub fn got(&self) -> Vec<Got> {
        self.inner.lock().unwrap().got.clone()
    }

    pub fn got_on(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.got().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut g = inner.lock().unwrap();
        let reply = g.plan.pop_front().unwrap_or(Reply::Ok);
        g.got.push(Got {
            path: uri.path().to_string(),
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            at: Instant::now(),
            acked: matches!(reply, Reply::Ok),
        });
        reply
    };
    match reply {
        Reply::Ok => (StatusCode::OK, "ok").into_response(),
        Reply::Status(code, retry_after) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), "rate_limited").into_response();
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            r
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::OK, "ok").into_response()
        }
    }
}

/// Slack's documented limits, checked independently of epitaph's own truncation code.
pub fn slack_violations(body: &serde_json::Value) -> Vec<String> {
    let mut v = Vec::new();
    let chars = |x: &serde_json::Value| x.as_str().map_or(0, |s| s.chars().count());
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.is_empty() || blocks.len() > 50 {
        v.push(format!("{} blocks", blocks.len()));
    }
    for b in &blocks {
        match b["type"].as_str().unwrap_or("") {
            "header" => {
                if chars(&b["text"]["text"]) > 150 || b["text"]["type"] != "plain_text" {
                    v.push("header".into());
                }
            }
            "section" => {
                if chars(&b["text"]["text"]) > 3000 {
                    v.push("section text".into());
                }
                let f = b["fields"].as_array().cloned().unwrap_or_default();
                if f.len() > 10 || f.iter().any(|x| chars(&x["text"]) > 2000) {
                    v.push("fields".into());
                }
            }
            "context" => {
                let n = b["elements"].as_array().map_or(0, |e| e.len());
                if n == 0 || n > 10 {
                    v.push("context".into());
                }
            }
            other => v.push(format!("unexpected block type {other}")),
        }
    }
    v
}

/// The path of the built binary.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epitaph"))
}

/// A free TCP port on loopback (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `epitaph serve` for `fleet` on a free loopback port with `token` and `schedule`; returns the
/// process and its base URL.
pub fn spawn_serve(
    fleet: &Fleet,
    token: &str,
    schedule: &str,
    stderr: std::process::Stdio,
) -> (std::process::Child, String) {
    let port = free_port();
    let child = std::process::Command::new(bin())
        .args(["serve", "--config"])
        .arg(fleet.config_path())
        .env("EPITAPH_SERVE__LISTEN", format!("127.0.0.1:{port}"))
        .env("EPITAPH_SERVE__TOKEN", token)
        .env("EPITAPH_SERVE__SCHEDULE", schedule)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}
