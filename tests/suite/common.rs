//! Helpers shared by the alert, API, browser and soak tests: a simulated fleet on disk and a
//! local webhook receiver that records what it gets and answers as a test tells it to
//! (built from Slack's documented incoming-webhook behaviour: 200 `ok`, 429 with Retry-After,
//! 5xx on outages); and child processes that cannot outlive a test: every spawned child is in a
//! guard that kills it on drop (also on panic), every wait on one is bounded, and `serve`
//! binds port 0 and is asked which port it got (its "listening on" line).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
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

    /// Lists `id` as in service in the first group of the inventory export (an instance that
    /// is running: no termination, but known). Returns the group's name.
    pub fn add_running_instance(&self, id: &str) -> String {
        let p = self
            .dir
            .path()
            .join("inventory/describe-auto-scaling-groups.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let group = &mut doc["AutoScalingGroups"][0];
        let name = group["AutoScalingGroupName"].as_str().unwrap().to_string();
        group["Instances"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "AvailabilityZone": "us-east-1a",
                "HealthStatus": "Healthy",
                "InstanceId": id,
                "InstanceType": "m6i.large",
                "LifecycleState": "InService",
                "ProtectedFromScaleIn": false
            }));
        std::fs::write(&p, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        name
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

    /// Planned answers not given yet.
    pub fn planned(&self) -> usize {
        self.inner.lock().unwrap().plan.len()
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
/// A tool the test script installs into the tools cache: `$ENV_VAR` when set, else
/// `~/.cache/epitaph-test-tools/<default>`.
pub fn cached_tool(env_var: &str, default: &str) -> PathBuf {
    std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/epitaph-test-tools").join(default)
        })
}

/// A program from a Debian package the test script installs: `$ENV_VAR` when set, else
/// `default`; a clear failure naming the package when it is missing.
pub fn debian_tool(env_var: &str, default: &str, package: &str) -> PathBuf {
    let p = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        p.exists(),
        "{} not found: install Debian's {package} (scripts/test.sh does) or set {env_var}",
        p.display()
    );
    p
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epitaph"))
}

/// Longest a test waits for a child process it started to exit once it should (a one-shot
/// command finishing, `serve` after SIGTERM, a killed child being reaped). Generous: a passing
/// run never comes near it; it only turns a hang into a failure.
pub const CHILD_EXIT_BOUND: Duration = Duration::from_secs(300);
/// Longest a test waits for `epitaph serve` to report the address it listens on.
pub const SERVE_START_BOUND: Duration = Duration::from_secs(60);
/// How often a bounded wait looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The line `serve` prints on stderr once it listens (`epitaph: listening on http://ADDR …`).
pub const LISTENING_PREFIX: &str = "epitaph: listening on http://";

/// Waits up to `bound` for `child` to exit; None if it is still running then.
pub fn wait_timeout(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A child process that is killed and reaped when dropped — also when the test panics.
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard {
            child: cmd.spawn().unwrap(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.wait_or_panic(CHILD_EXIT_BOUND);
    }

    /// Sends SIGTERM (what systemd and Ctrl-C's cousin send to stop a service).
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .stdin(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.id());
    }

    /// Waits up to `bound` for the exit; panics (and the drop kills the child) if it does not.
    pub fn wait_or_panic(&mut self, bound: Duration) -> ExitStatus {
        wait_timeout(&mut self.child, bound)
            .unwrap_or_else(|| panic!("process {} still running after {bound:?}", self.id()))
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        // Reaping after SIGKILL is immediate; bounded all the same.
        let _ = wait_timeout(&mut self.child, CHILD_EXIT_BOUND);
    }
}

/// Reads a pipe to its end on a thread, keeping everything read.
fn drain<R: std::io::Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// `cmd.output()` with a bound: the output of a command that finished within `bound`. Panics
/// with what it printed so far if it did not (the child is killed).
pub fn output_timeout(cmd: &mut Command, bound: Duration) -> Output {
    let mut guard = ChildGuard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = drain(guard.child.stdout.take().unwrap());
    let err = drain(guard.child.stderr.take().unwrap());
    let status = wait_timeout(&mut guard.child, bound);
    if status.is_none() {
        let _ = guard.child.kill();
        let _ = wait_timeout(&mut guard.child, CHILD_EXIT_BOUND);
    }
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let Some(status) = status else {
        panic!(
            "{cmd:?} still running after {bound:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A free TCP port on loopback. Racy — the port is released before anyone takes it, so
/// another process can take it first; `epitaph serve` binds port 0 instead (`spawn_serve`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `epitaph serve`, killed when dropped. It bound port 0 and said which port it got.
pub struct Serve {
    pub process: ChildGuard,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `bound` for the exit; then everything it printed on stderr.
    pub fn wait_or_panic(&mut self, bound: Duration) -> (ExitStatus, String) {
        let status = self.process.wait_or_panic(bound);
        if let Some(r) = self.reader.take() {
            // The pipe closed with the process (nothing else holds its write end).
            r.join().unwrap();
        }
        (status, self.stderr())
    }
}

/// `epitaph serve` for `fleet` on a port of its own choosing with `token`, `schedule` and
/// extra environment; returns once it said where it listens.
pub fn spawn_serve(fleet: &Fleet, token: &str, schedule: &str, env: &[(&str, &str)]) -> Serve {
    spawn_serve_config(&fleet.config_path(), token, schedule, env)
}

/// [`spawn_serve`] for any config file (the AWS tests write their own).
pub fn spawn_serve_config(
    config: &Path,
    token: &str,
    schedule: &str,
    env: &[(&str, &str)],
) -> Serve {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"])
        .arg(config)
        .env_remove("EPITAPH_CONFIG")
        .env("EPITAPH_SERVE__LISTEN", "127.0.0.1:0")
        .env("EPITAPH_SERVE__TOKEN", token)
        .env("EPITAPH_SERVE__SCHEDULE", schedule)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut process = ChildGuard::spawn(&mut cmd);
    let pipe = process.child_mut().stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn({
        let stderr = stderr.clone();
        move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(LISTENING_PREFIX) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut s = stderr.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
    let addr = rx.recv_timeout(SERVE_START_BOUND).unwrap_or_else(|e| {
        panic!(
            "serve did not say where it listens ({e}); stderr:\n{}",
            stderr.lock().unwrap()
        )
    });
    Serve {
        process,
        base: format!("http://{addr}"),
        stderr,
        reader: Some(reader),
    }
}

/// FNV-1a of a text, from a seeded offset basis: the corpora's held-out splits (seed 0) and
/// the rotations that pick a wrapper or a rendering per line (other seeds).
pub fn fnv1a(text: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The signature library a corpus test scores: the built-in one, or (to tune without a
/// rebuild) the file named by `EPITAPH_SIGNATURES_UNDER_TEST`.
pub fn library_under_test() -> epitaph::analysis::signatures::SignatureLibrary {
    use epitaph::analysis::signatures::SignatureLibrary;
    match std::env::var("EPITAPH_SIGNATURES_UNDER_TEST") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            SignatureLibrary::from_toml(&text, &path).unwrap_or_else(|e| panic!("{path}: {e}"))
        }
        Err(_) => SignatureLibrary::default_library().unwrap(),
    }
}
