//! The HTTP API, route by route: auth (missing, wrong, wrong scheme), malformed instance ids,
//! the on-demand query for known and unknown instances, deployments, findings, scans (one at a
//! time), metrics, the HTML report, unknown routes; and `epitaph serve` as a process: refusing
//! unsafe auth settings, scheduled scans, graceful shutdown on SIGTERM.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::Fleet;
use epitaph::config::Config;
use epitaph::error::Result;
use epitaph::model::{InstanceInfo, Termination, TimeWindow};
use epitaph::pipeline::{load_signatures, Pipeline};
use epitaph::server::{router, AppState};
use epitaph::sources::{ActivityBatch, ActivitySource, Sources};
use epitaph::store::SqliteStore;
use reqwest::StatusCode;
use tokio::sync::watch;

const TOKEN: &str = "t0ken-for-tests";

struct Api {
    base: String,
    client: reqwest::Client,
    _fleet: Fleet,
}

impl Api {
    async fn start(fleet: Fleet) -> Api {
        Api::start_with(fleet, |s| s).await
    }

    /// The API over the fleet's sources as `wrap` changes them.
    async fn start_with(fleet: Fleet, wrap: impl FnOnce(Sources) -> Sources) -> Api {
        fleet.append_config(&format!("[serve]\ntoken = \"{TOKEN}\"\n"));
        let cfg = Config::load(Some(&fleet.config_path())).unwrap();
        let sources = wrap(Sources::from_config(&cfg).await.unwrap());
        let store = Arc::new(SqliteStore::open(&cfg.state_path()).await.unwrap());
        let signatures = Arc::new(load_signatures(&cfg).unwrap());
        let pipeline = Pipeline::new(cfg, sources, store, signatures);
        let app = router(AppState::new(Arc::new(pipeline)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            _fleet: fleet,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }
}

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/v1/deployments"),
    ("GET", "/v1/next-deaths"),
    ("GET", "/v1/findings"),
    ("GET", "/v1/scans/latest"),
    ("GET", "/v1/instances/i-0123456789abcdef0"),
    ("POST", "/v1/scans"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_healthz_needs_the_token() {
    let api = Api::start(Fleet::new(1, 6, 60)).await;
    let r = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    for (method, path) in PROTECTED {
        let url = format!("{}{path}", api.base);
        let req = |auth: Option<&str>| {
            let b = if *method == "POST" {
                api.client.post(&url)
            } else {
                api.client.get(&url)
            };
            match auth {
                Some(a) => b.header("authorization", a),
                None => b,
            }
        };
        let none = req(None).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(none.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = none.json().await.unwrap();
        assert!(body["error"].is_string());
        for bad in [
            "Bearer wrong",
            &format!("Basic {TOKEN}"),
            &format!("Bearer {TOKEN}x"),
            "Bearer ",
        ] {
            let r = req(Some(bad)).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {bad:?}"
            );
            assert!(
                r.headers().contains_key("www-authenticate"),
                "{method} {path} with {bad:?}: the challenge on every 401"
            );
        }
    }
    // The scheme is case-insensitive.
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let r = api
            .client
            .get(format!("{}/v1/deployments", api.base))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    // A wrong method answers 405 with a JSON body.
    let r = api
        .client
        .put(format!("{}/v1/deployments", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_with_the_documented_shapes() {
    let fleet = Fleet::new(1, 6, 60);
    let truth = fleet.truth.clone();
    let api = Api::start(fleet).await;

    assert_eq!(
        api.get("/v1/scans/latest").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = api.post("/v1/scans?wait=true").await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        report["summary"]["analysed"].as_u64(),
        Some(truth.instances.len() as u64)
    );
    let latest = api.json("/v1/scans/latest").await;
    assert_eq!(latest["state"], "ok");
    assert_eq!(latest["trigger"], "api");

    let deps = api.json("/v1/deployments").await;
    let list = deps["deployments"].as_array().unwrap();
    assert_eq!(list.len(), truth.deployments.len());
    for d in list {
        let name = d["deployment"].as_str().unwrap();
        assert_eq!(
            d["verdict"].as_str(),
            Some(truth.deployments[name].as_str()),
            "{name}"
        );
    }

    let findings = api.json("/v1/findings").await;
    let leaking: Vec<&str> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["finding"]["verdict"].as_str().unwrap())
        .collect();
    assert!(!leaking.is_empty());
    assert!(leaking
        .iter()
        .all(|v| *v == "leaking" || *v == "oom_without_leak"));

    // The on-demand query: a known instance from the store, an unknown one from the sources.
    let (id, verdict) = truth.instances.iter().next().unwrap();
    let inv = api.json(&format!("/v1/instances/{id}")).await;
    assert_eq!(inv["status"], "terminated");
    assert_eq!(inv["report"]["verdict"].as_str(), Some(verdict.as_str()));
    let inv = api.json(&format!("/v1/instances/{id}?refresh=true")).await;
    assert_eq!(inv["from"], "sources");
    // An id no source knows: 404 naming it, never a "no termination" that reads as running.
    let unknown = api.get("/v1/instances/i-0123456789abcdef0").await;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unknown instance"),
        "{body}"
    );

    let m = api.get("/metrics").await;
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = m.text().await.unwrap();
    assert!(
        text.contains("epitaph_scans_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("epitaph_deployments{verdict=\"leaking\"}"));
    assert!(text.contains(
        "epitaph_http_requests_total{route=\"/v1/instances/{instance_id}\",code=\"200\"}"
    ));
    assert!(text.contains("process_resident_memory_bytes"));

    let page = api.get("/").await;
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg class=\"chart\"") && html.contains("class=\"oom\""));

    let r = api.get("/v1/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_instance_ids_are_rejected() {
    let api = Api::start(Fleet::new(1, 6, 60)).await;
    let long = format!("i-{}", "a".repeat(1000));
    for bad in [
        "xyz",
        "i-123",
        "i-0123456789ABCDEF0",
        "i-0123456789abcdef0x",
        "i-0123456789abcdeg0",
        "%2e%2e%2fetc%2fpasswd",
        "i-01234567%00",
        "%20i-01234567",
        long.as_str(),
    ] {
        let r = api.get(&format!("/v1/instances/{bad}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("instance_id"));
    }
    let r = api
        .get("/v1/instances/i-0123456789abcdef0?refresh=maybe")
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Holds every scan in its first source call until the test opens the gate, and says when a
/// scan is in there: "a scan is running" is a fact the test waits for, not a guess about speed.
struct Gate {
    inner: Arc<dyn ActivitySource>,
    entered: watch::Sender<bool>,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl ActivitySource for Gate {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn terminations(&self, window: TimeWindow) -> Result<ActivityBatch> {
        self.entered.send_replace(true);
        let _ = self.open.clone().wait_for(|open| *open).await;
        self.inner.terminations(window).await
    }
    async fn inventory(&self) -> Result<Vec<InstanceInfo>> {
        self.inner.inventory().await
    }
    async fn find_termination(&self, instance_id: &str) -> Result<Option<Termination>> {
        self.inner.find_termination(instance_id).await
    }
}

/// Longest the scan test waits for a scan to reach its source, or to finish once released.
/// Generous: the outcome never depends on it, it only bounds a hang.
const SCAN_BOUND: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scan_at_a_time() {
    let (entered_tx, mut entered) = watch::channel(false);
    let (open, open_rx) = watch::channel(false);
    let api = Api::start_with(Fleet::new(3, 6, 60), |s| Sources {
        activities: Arc::new(Gate {
            inner: s.activities.clone(),
            entered: entered_tx,
            open: open_rx,
        }),
        ..s
    })
    .await;
    let r = api.post("/v1/scans").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    tokio::time::timeout(SCAN_BOUND, entered.wait_for(|e| *e))
        .await
        .expect("the scan reached its source")
        .unwrap();
    // The first scan is held in its source: the second request certainly lands while it runs.
    assert_eq!(api.json("/v1/scans/latest").await["state"], "running");
    let r = api.post("/v1/scans").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = api.post("/v1/scans?wait=true").await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "waiting changes nothing");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("already running"));

    open.send_replace(true);
    let deadline = Instant::now() + SCAN_BOUND;
    let s = loop {
        let s = api.json("/v1/scans/latest").await;
        if s["state"] != "running" {
            break s;
        }
        assert!(Instant::now() < deadline, "scan never finished");
        tokio::time::sleep(common::POLL_INTERVAL).await;
    };
    assert_eq!(s["state"], "ok", "{s}");
    assert_eq!(s["trigger"], "api");
    assert!(s["summary"]["analysed"].as_u64().unwrap() > 0, "{s}");
    let text = api.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("epitaph_scans_total{result=\"skipped_busy\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("epitaph_scans_total{result=\"ok\"} 1"),
        "{text}"
    );
    // Once it finished, the next one may start.
    let r = api.post("/v1/scans?wait=true").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn serve_refuses_unsafe_auth_settings() {
    let fleet = Fleet::new(1, 6, 60);
    let run = |env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["serve", "--config"]).arg(fleet.config_path());
        for (k, v) in env {
            c.env(k, v);
        }
        common::output_timeout(&mut c, common::CHILD_EXIT_BOUND)
    };
    let out = run(&[("EPITAPH_SERVE__LISTEN", "127.0.0.1:0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.token: required"));
    let out = run(&[
        ("EPITAPH_SERVE__LISTEN", "0.0.0.0:0"),
        ("EPITAPH_SERVE__ALLOW_ANONYMOUS", "true"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only allowed on a loopback address"));
    let out = run(&[("EPITAPH_SERVE__SCHEDULE", "every monday")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve.schedule"));
}

/// The grace the shutdown test configures: far longer than the test allows for the shutdown,
/// so a shutdown that sat out its grace instead of ending when the work did fails the test.
const LONG_GRACE: &str = "10m";
/// How long the shutdown test allows from SIGTERM to exit (nothing runs but a scan of a
/// small fleet); well under `LONG_GRACE`, not equal to any default.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_schedule_and_shuts_down_gracefully() {
    let fleet = Fleet::new(1, 6, 60);
    let mut serve = common::spawn_serve(
        &fleet,
        TOKEN,
        "* * * * * *",
        &[("EPITAPH_SERVE__SHUTDOWN_GRACE", LONG_GRACE)],
    );
    let base = serve.base.clone();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + SCAN_BOUND;
    // Scheduled scans run without anyone asking.
    loop {
        assert!(Instant::now() < deadline, "no scheduled scan");
        let r = client
            .get(format!("{base}/v1/scans/latest"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let s: serde_json::Value = r.json().await.unwrap();
            if s["trigger"] == "schedule" && s["state"] == "ok" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    serve.process.terminate();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let r = serve.wait_or_panic(SHUTDOWN_BOUND);
        drop(serve);
        r
    })
    .await
    .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "stopped listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_service_sees_new_exports_and_never_returns_secrets() {
    let api = Api::start(Fleet::new(1, 6, 60)).await;
    assert_eq!(
        api.post("/v1/scans?wait=true").await.status(),
        StatusCode::OK
    );
    let deps = api.json("/v1/deployments").await;
    let node = deps["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["evidence"]["signatures"]["node.heap_oom"].is_number())
        .expect("a deployment dying of V8 heap OOM");
    let id = node["evidence"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    // The exports change under the running service (a new export replaced the old one).
    api._fleet.plant_secrets();
    let mut saw_mask = false;
    for i in &id {
        let inv = api.json(&format!("/v1/instances/{i}?refresh=true")).await;
        let text = inv.to_string();
        assert!(
            !text.contains(common::PLANTED_PASSWORD) && !text.contains(common::PLANTED_AWS_KEY)
        );
        saw_mask |= text.contains("password=[REDACTED]");
    }
    assert!(
        saw_mask,
        "the refreshed last words come from the new export, masked"
    );
}
