//! The `prometheus` metrics backend against real servers: Prometheus 2.42 (data written as
//! TSDB blocks by `promtool tsdb create-blocks-from openmetrics`) and VictoriaMetrics (data
//! through its `/api/v1/import/prometheus` endpoint), both from Debian packages (`bash
//! scripts/test.sh` installs them), started here on 127.0.0.1 and killed on drop.
//!
//! Covered, on both servers: a batch of instances comes back complete and in order, one
//! request for the batch, and the leak detector tells the leaking one from the flat one; an
//! instance id holding regex or PromQL metacharacters cannot select another instance's series;
//! a three-week window gets a step that keeps every series under `max_points`; bytes take their
//! limit from `limit_query`, impossible values are skipped and counted; a query the server
//! rejects is an error naming the backend and the query; a simulated fleet scans to the same
//! verdicts as through the file backend. Against Prometheus: `epitaph doctor`'s probe and
//! judgement. Without a server: an unreachable URL is an error (never "no data"), and SigV4
//! signing (a local listener records the request and re-checks its signature).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use epitaph::config::{MetricsConfig, SourceKind, Unit};
use epitaph::model::{LeakVerdict, MemorySeries};
use epitaph::sources::prometheus::config::{PrometheusConfig, Settings};
use epitaph::sources::prometheus::PrometheusMetrics;
use epitaph::sources::{MetricSource, SeriesQuery};

use crate::common::{ChildGuard, Fleet};

/// Longest wait for a server to become ready (generous: it only turns a hang into a failure).
const READY_BOUND: Duration = Duration::from_secs(180);
/// Ports tried before giving up when another process takes the one picked first.
const PORT_ATTEMPTS: usize = 5;
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);
/// The test data's first sample: 2025-06-01T00:00:00Z, a multiple of every step used.
const T0: i64 = 1_748_736_000;

/// The two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Prometheus,
    VictoriaMetrics,
}

const BOTH: [Backend; 2] = [Backend::Prometheus, Backend::VictoriaMetrics];

/// One series to load: metric name, labels, (unix seconds, value) points in time order.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    points: Vec<(i64, f64)>,
}

fn series(name: &str, instance: &str, points: Vec<(i64, f64)>) -> Series {
    Series {
        name: name.into(),
        labels: vec![("instance_id".into(), instance.into())],
        points,
    }
}

/// A label value escaped for the text exposition and OpenMetrics formats.
fn label_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn selector(s: &Series) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label_value(v)))
        .collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

/// A running server, killed (and its data removed) on drop.
struct Server {
    backend: Backend,
    url: String,
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(backend: Backend, data: &[Series]) -> Server {
        Server::start_with(backend, data, "").await
    }

    /// [`Server::start`] with more Prometheus configuration (scrape jobs) after `global`.
    async fn start_with(backend: Backend, data: &[Series], more_config: &str) -> Server {
        for bin in match backend {
            Backend::Prometheus => ["prometheus", "promtool"].as_slice(),
            Backend::VictoriaMetrics => ["victoria-metrics"].as_slice(),
        } {
            assert!(
                on_path(bin),
                "{bin} not found: run `bash scripts/test.sh`, which installs the Debian packages prometheus and victoria-metrics"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        if backend == Backend::Prometheus && !data.is_empty() {
            write_blocks(dir.path(), data);
        }
        let mut last_log = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            // Neither server reports a port it picked itself, so one is picked here; another
            // process may take it first, which shows as an early exit: then another port.
            let port = crate::common::free_port();
            let log = dir.path().join(format!("server-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = match backend {
                Backend::Prometheus => {
                    let cfg = dir.path().join("prometheus.yml");
                    std::fs::write(
                        &cfg,
                        format!("global:\n  scrape_interval: 1m\n{more_config}"),
                    )
                    .unwrap();
                    let mut c = Command::new("prometheus");
                    c.arg(format!("--config.file={}", cfg.display()))
                        .arg(format!(
                            "--storage.tsdb.path={}",
                            dir.path().join("tsdb").display()
                        ))
                        .arg("--storage.tsdb.retention.time=100y")
                        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
                    c
                }
                Backend::VictoriaMetrics => {
                    let mut c = Command::new("victoria-metrics");
                    c.arg("-storageDataPath")
                        .arg(dir.path().join("vm"))
                        .arg("-httpListenAddr")
                        .arg(format!("127.0.0.1:{port}"))
                        .arg("-retentionPeriod")
                        .arg("100y");
                    c
                }
            };
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let mut process = ChildGuard::spawn(&mut cmd);
            let url = format!("http://127.0.0.1:{port}");
            let ready = match backend {
                Backend::Prometheus => format!("{url}/-/ready"),
                Backend::VictoriaMetrics => format!("{url}/health"),
            };
            if wait_ready(&mut process, &ready).await {
                let server = Server {
                    backend,
                    url,
                    _process: process,
                    _dir: dir,
                };
                if backend == Backend::VictoriaMetrics {
                    server.import(data).await;
                }
                return server;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("address already in use") {
                break;
            }
        }
        panic!("{backend:?} did not start; its log:\n{last_log}");
    }

    /// VictoriaMetrics: the exposition text with millisecond timestamps, then a flush so the
    /// data is searchable before the first query.
    async fn import(&self, data: &[Series]) {
        let mut text = String::new();
        for s in data {
            let sel = selector(s);
            for (t, v) in &s.points {
                text.push_str(&format!("{sel} {v} {}\n", t * 1000));
            }
        }
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/api/v1/import/prometheus", self.url))
            .body(text)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "import: {}", r.status());
        let r = http
            .get(format!("{}/internal/force_flush", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "force_flush: {}", r.status());
    }

    fn source(&self, unit: &str, limit: Option<f64>, p: PrometheusConfig) -> PrometheusMetrics {
        source(&self.url, unit, limit, p)
    }
}

/// Prometheus: the series as OpenMetrics (seconds, one family after another, each series in
/// time order, `# EOF`), written as TSDB blocks the server loads at start.
fn write_blocks(dir: &Path, data: &[Series]) {
    let mut families: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in data {
        families.entry(&s.name).or_default().push(s);
    }
    let mut text = String::new();
    for (name, list) in families {
        text.push_str(&format!("# TYPE {name} gauge\n"));
        for s in list {
            let sel = selector(s);
            for (t, v) in &s.points {
                text.push_str(&format!("{sel} {v} {t}\n"));
            }
        }
    }
    text.push_str("# EOF\n");
    let file = dir.join("data.om");
    std::fs::write(&file, text).unwrap();
    let out = crate::common::output_timeout(
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(dir.join("tsdb")),
        crate::common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `bin` is an executable file in a folder of PATH.
fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Polls `url` until it answers 200, the process exits (false), or `READY_BOUND` passes.
async fn wait_ready(process: &mut ChildGuard, url: &str) -> bool {
    let http = reqwest::Client::new();
    let until = Instant::now() + READY_BOUND;
    loop {
        if process.child_mut().try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        assert!(
            Instant::now() < until,
            "{url} not ready after {READY_BOUND:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn source(url: &str, unit: &str, limit: Option<f64>, p: PrometheusConfig) -> PrometheusMetrics {
    let unit = match unit {
        "percent" => Unit::Percent,
        "bytes" => Unit::Bytes,
        other => panic!("no unit {other}"),
    };
    let src = MetricsConfig {
        kind: SourceKind::Prometheus,
        unit,
        limit,
        prometheus: Some(PrometheusConfig {
            url: Some(url.into()),
            ..p
        }),
        ..Default::default()
    };
    PrometheusMetrics::new(Settings::resolve(&src).unwrap(), None).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn q(id: &str, start: i64, end: i64) -> SeriesQuery {
    SeriesQuery {
        instance_id: id.into(),
        origin: None,
        asg: None,
        start: at(start),
        end: at(end),
    }
}

fn expected(points: &[(i64, f64)]) -> Vec<(DateTime<Utc>, f64)> {
    points.iter().map(|(t, v)| (at(*t), *v)).collect()
}

fn calls(m: &PrometheusMetrics) -> u64 {
    m.calls()
        .get("prometheus:query_range")
        .copied()
        .unwrap_or(0)
}

/// (unix seconds, value) in time order.
type Points = Vec<(i64, f64)>;

/// Six hours at one minute: a floor climbing from 30 % to 89 % under a GC sawtooth (reaching
/// 98 %), and one flat at 40–49 %. Whole numbers: VictoriaMetrics keeps about 12 significant
/// digits, so these come back exactly from both servers.
fn leak_and_flat() -> (Points, Points) {
    let n = 360;
    let leak = (0..n)
        .map(|k| (T0 + 60 * k, (30 + 60 * k / n + k % 10) as f64))
        .collect();
    let flat = (0..n)
        .map(|k| (T0 + 60 * k, 40.0 + (k % 10) as f64))
        .collect();
    (leak, flat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_comes_back_complete_in_order_and_the_leak_is_found() {
    let (leak, flat) = leak_and_flat();
    let third: Vec<(i64, f64)> = (0..360)
        .map(|k| (T0 + 60 * k, 55.0 + (k % 3) as f64))
        .collect();
    let data = vec![
        series("mem_used_percent", "i-0leak00000000001", leak.clone()),
        series("mem_used_percent", "i-0flat00000000002", flat.clone()),
        series("mem_used_percent", "i-0third0000000003", third.clone()),
        // Another metric for the same instance must not be mixed in.
        series("mem_used_bytes", "i-0leak00000000001", vec![(T0, 1e9)]),
    ];
    let end = T0 + 60 * 359;
    for backend in BOTH {
        let server = Server::start(backend, &data).await;
        let m = server.source(
            "percent",
            None,
            PrometheusConfig {
                batch: 10,
                ..Default::default()
            },
        );
        let got = m
            .memory_series(&[
                q("i-0leak00000000001", T0, end),
                q("i-0flat00000000002", T0, end),
                q("i-0nodata000000004", T0, end),
                q("i-0third0000000003", T0, end),
            ])
            .await
            .unwrap();
        let got: Vec<Option<MemorySeries>> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(calls(&m), 1, "{backend:?}: one request for the batch");
        let leak_s = got[0].as_ref().expect("the leaking instance's series");
        let flat_s = got[1].as_ref().expect("the flat instance's series");
        assert_eq!(leak_s.points, expected(&leak), "{backend:?}: leak series");
        assert_eq!(flat_s.points, expected(&flat), "{backend:?}: flat series");
        assert!(
            got[2].is_none(),
            "{backend:?}: no series is None, not an error"
        );
        assert_eq!(got[3].as_ref().unwrap().points, expected(&third));
        assert_eq!(leak_s.limit, Some(100.0));
        assert_eq!(leak_s.labels["instance_id"], "i-0leak00000000001");
        assert!(!leak_s.labels.contains_key("__name__"));
        let verdict =
            |s: &MemorySeries| epitaph::analysis::leak::assess(&s.points, s.limit).verdict;
        assert_eq!(verdict(leak_s), LeakVerdict::Leak, "{backend:?}");
        assert_eq!(verdict(flat_s), LeakVerdict::NoLeak, "{backend:?}");
        // One request covers both lives; each instance's series is cut to its own.
        let got = m
            .memory_series(&[
                q("i-0leak00000000001", T0 + 600, T0 + 1200),
                q("i-0flat00000000002", T0, end),
            ])
            .await
            .unwrap();
        assert_eq!(calls(&m), 2, "{backend:?}: one more request");
        let short = got[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(short.points, expected(&leak[10..=20]), "{backend:?}");
        let whole = got[1].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(whole.points, expected(&flat), "{backend:?}");
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_ids_cannot_change_the_query() {
    let pts = |v: f64| -> Vec<(i64, f64)> { (0..30).map(|k| (T0 + 60 * k, v)).collect() };
    let quoted = r#"i-"quoted\back"#;
    let data = vec![
        series("mem_used_percent", "i-1", pts(11.0)),
        series("mem_used_percent", "i-10", pts(10.0)),
        series("mem_used_percent", quoted, pts(33.0)),
    ];
    let end = T0 + 60 * 29;
    let value = |r: &epitaph::Result<Option<MemorySeries>>| -> Option<f64> {
        match r {
            Ok(s) => s.as_ref().map(|s| s.points[0].1),
            Err(e) => panic!("an id must never make the query fail: {e}"),
        }
    };
    for backend in BOTH {
        let server = Server::start(backend, &data).await;
        // Batched: every id regex-escaped and string-escaped inside one matcher.
        let m = server.source("percent", None, PrometheusConfig::default());
        let ids = ["i-1|.*", "i-(1", "i-1.", quoted, "i-1", ".*"];
        let queries: Vec<SeriesQuery> = ids.iter().map(|id| q(id, T0, end)).collect();
        let got = m.memory_series(&queries).await.unwrap();
        let values: Vec<Option<f64>> = got.iter().map(value).collect();
        assert_eq!(
            values,
            [None, None, None, Some(33.0), Some(11.0), None],
            "{backend:?}: batched, ids {ids:?}"
        );
        assert_eq!(calls(&m), 1);
        // One instance per request, the id in a regex matcher: regex-escaped too.
        let re = server.source(
            "percent",
            None,
            PrometheusConfig {
                query: "mem_used_percent{instance_id=~\"{instance_id}\"}".into(),
                ..Default::default()
            },
        );
        for (id, want) in [
            ("i-1.", None),
            ("i-1|.*", None),
            (quoted, Some(33.0)),
            ("i-1", Some(11.0)),
        ] {
            let got = re.memory_series(&[q(id, T0, end)]).await.unwrap();
            assert_eq!(
                value(&got[0]),
                want,
                "{backend:?}: =~\"{{instance_id}}\" with {id}"
            );
        }
        // The id as a plain label value: string-escaped only.
        let eq = server.source(
            "percent",
            None,
            PrometheusConfig {
                query: "mem_used_percent{instance_id=\"{instance_id}\"}".into(),
                ..Default::default()
            },
        );
        for (id, want) in [
            (quoted, Some(33.0)),
            ("i-1.*", None),
            ("i-1\"} or vector(1) #", None),
        ] {
            let got = eq.memory_series(&[q(id, T0, end)]).await.unwrap();
            assert_eq!(
                value(&got[0]),
                want,
                "{backend:?}: =\"{{instance_id}}\" with {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_week_window_gets_a_step_under_max_points() {
    // Three weeks at ten minutes: the shortest window both servers refuse at the default
    // step (fewer days also means fewer TSDB blocks for Prometheus to load).
    let days = 21;
    let pts: Vec<(i64, f64)> = (0..days * 144)
        .map(|k| (T0 + 600 * k, 40.0 + (k % 7) as f64))
        .collect();
    let data = vec![series("mem_used_percent", "i-0long000000000001", pts)];
    let end = T0 + days * 86_400;
    for backend in BOTH {
        let server = Server::start(backend, &data).await;
        // The servers' own limits: at the one-minute default step this window would be 30,241
        // points, which Prometheus (11,000) and VictoriaMetrics (30,000) both refuse.
        for max_points in [11_000usize, 500] {
            let m = server.source(
                "percent",
                None,
                PrometheusConfig {
                    max_points,
                    ..Default::default()
                },
            );
            let got = m
                .memory_series(&[q("i-0long000000000001", T0, end)])
                .await
                .unwrap();
            let s = match &got[0] {
                Ok(Some(s)) => s,
                other => panic!("{backend:?} max_points {max_points}: {other:?}"),
            };
            assert!(
                s.points.len() <= max_points,
                "{backend:?}: {} points > {max_points}",
                s.points.len()
            );
            // The whole window is covered, not just its start.
            assert!(
                s.points.len() >= 100,
                "{backend:?}: only {} points",
                s.points.len()
            );
            assert!(s.points[0].0 <= at(T0 + 86_400), "{backend:?}");
            assert!(
                s.points.last().unwrap().0 >= at(end - 86_400),
                "{backend:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_take_their_limit_from_limit_query_and_impossible_values_are_skipped() {
    let gib = 1024.0 * 1024.0 * 1024.0;
    let mut used: Vec<(i64, f64)> = (0..60)
        .map(|k| (T0 + 60 * k, gib * (1.0 + k as f64 / 20.0)))
        .collect();
    used[30].1 = -5.0; // impossible: skipped and counted
    let other: Vec<(i64, f64)> = (0..60).map(|k| (T0 + 60 * k, gib)).collect();
    let data = vec![
        series("mem_used_bytes", "i-0bytes000000001", used.clone()),
        series("mem_used_bytes", "i-0nolimit0000002", other),
        series(
            "node_memory_MemTotal_bytes",
            "i-0bytes000000001",
            (0..60).map(|k| (T0 + 60 * k, 4.0 * gib)).collect(),
        ),
    ];
    let end = T0 + 60 * 59;
    let both = [
        q("i-0bytes000000001", T0, end),
        q("i-0nolimit0000002", T0, end),
    ];
    for backend in BOTH {
        let server = Server::start(backend, &data).await;
        // Bytes with the limit from limit_query, and `limit` as the configured fallback.
        let bytes = |limit: Option<f64>| {
            server.source(
                "bytes",
                limit,
                PrometheusConfig {
                    query: "mem_used_bytes{{instance_matcher}}".into(),
                    limit_query: Some("node_memory_MemTotal_bytes{{instance_matcher}}".into()),
                    ..Default::default()
                },
            )
        };
        let m = bytes(None);
        let got = m.memory_series(&both).await.unwrap();
        let a = got[0].as_ref().unwrap().as_ref().unwrap();
        let b = got[1].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(
            a.limit,
            Some(4.0 * gib),
            "{backend:?}: limit from limit_query"
        );
        let mut want = used.clone();
        want.remove(30);
        assert_eq!(
            a.points,
            expected(&want),
            "{backend:?}: the negative value is skipped"
        );
        assert_eq!(
            b.limit, None,
            "{backend:?}: no limit series and no sources.metrics.limit"
        );
        let (count, kept) = m.skipped();
        assert_eq!(
            count, 2,
            "{backend:?}: the negative value and the missing limit: {kept:?}"
        );
        assert!(
            kept.iter().any(|k| k.reason.contains("negative")),
            "{kept:?}"
        );
        assert!(
            kept.iter()
                .any(|k| k.location.contains("i-0nolimit0000002")
                    && k.reason.contains("limit_query")),
            "{kept:?}"
        );
        assert_eq!(calls(&m), 2, "one memory and one limit request");
        // With a configured limit as the fallback, the second instance gets it.
        let got = bytes(Some(2.0 * gib)).memory_series(&both).await.unwrap();
        assert_eq!(
            got[0].as_ref().unwrap().as_ref().unwrap().limit,
            Some(4.0 * gib)
        );
        assert_eq!(
            got[1].as_ref().unwrap().as_ref().unwrap().limit,
            Some(2.0 * gib)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_the_server_rejects_is_an_error_naming_backend_and_query() {
    let data = vec![series(
        "mem_used_percent",
        "i-1",
        vec![(T0, 10.0), (T0 + 60, 11.0)],
    )];
    for backend in BOTH {
        let server = Server::start(backend, &data).await;
        let template = "mem_used_percent{{instance_matcher}} +";
        let m = server.source(
            "percent",
            None,
            PrometheusConfig {
                query: template.into(),
                ..Default::default()
            },
        );
        let got = m
            .memory_series(&[q("i-1", T0, T0 + 60), q("i-2", T0, T0 + 60)])
            .await
            .unwrap();
        for r in &got {
            let e = r
                .as_ref()
                .expect_err("a rejected query is an error, not missing data")
                .to_string();
            assert!(
                e.contains(&format!("prometheus:{}", server.url)),
                "{backend:?}: {e}"
            );
            assert!(
                e.contains("sources.metrics.prometheus.query"),
                "{backend:?}: {e}"
            );
            assert!(e.contains(template), "{backend:?}: {e}");
            // The server's own reason: Prometheus `bad_data: 1:…: parse error: unexpected end
            // of input`, VictoriaMetrics `422: … unexpected token …`.
            assert!(e.contains("unexpected"), "{backend:?}: {e}");
            if server.backend == Backend::Prometheus {
                assert!(e.contains("bad_data"), "{e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_an_error_not_missing_data() {
    // A port nobody listens on (picked and released: connecting is refused).
    let url = format!("http://127.0.0.1:{}", crate::common::free_port());
    let m = source(
        &url,
        "percent",
        None,
        PrometheusConfig {
            max_attempts: 2,
            ..Default::default()
        },
    );
    let got = m.memory_series(&[q("i-1", T0, T0 + 600)]).await.unwrap();
    let e = got[0]
        .as_ref()
        .expect_err("unreachable is an error")
        .to_string();
    assert!(e.contains("could not connect"), "{e}");
    assert!(e.contains("gave up after 2 attempts"), "{e}");
    assert!(e.contains(&url), "{e}");
}

/// A fake API answering from a plan (status, Retry-After, body), counting the requests.
async fn planned_server(
    plan: Vec<(u16, Option<&'static str>, String)>,
) -> (String, std::sync::Arc<std::sync::Mutex<usize>>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let plan = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        plan,
    )));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let counter = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let plan = plan.clone();
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            let (code, retry_after, body) = plan.lock().unwrap().pop_front().unwrap();
            let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            r
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_outages_are_retried_bad_queries_are_not() {
    let ok = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"instance_id":"i-1"}},"values":[[{T0},"42"]]}}]}}}}"#
    );
    let busy = r#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#;
    // 429 with Retry-After, then a gateway error, then the answer: three attempts, one call.
    let (url, seen) = planned_server(vec![
        (429, Some("1"), busy.into()),
        (502, None, "<html>bad gateway</html>".into()),
        (200, None, ok.clone()),
    ])
    .await;
    let m = source(&url, "percent", None, PrometheusConfig::default());
    let got = m.memory_series(&[q("i-1", T0, T0 + 60)]).await.unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().as_ref().unwrap().points,
        expected(&[(T0, 42.0)])
    );
    assert_eq!(*seen.lock().unwrap(), 3);
    assert_eq!(calls(&m), 1, "calls are counted once, attempts aside");
    // The 429 was a throttle (the rate limiter backed off); the 502 was not.
    assert_eq!(
        m.calls().get("prometheus:query_range (throttled)"),
        Some(&1),
        "{:?}",
        m.calls()
    );
    // A query the server calls bad is not asked again.
    let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
    let (url, seen) = planned_server(vec![(400, None, bad.into()), (200, None, ok)]).await;
    let m = source(&url, "percent", None, PrometheusConfig::default());
    let got = m.memory_series(&[q("i-1", T0, T0 + 60)]).await.unwrap();
    let e = got[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("bad_data: parse error"), "{e}");
    assert_eq!(*seen.lock().unwrap(), 1);
    // A server asking to come back much later fails now (the next run retries).
    let (url, seen) = planned_server(vec![(503, Some("3600"), busy.into())]).await;
    let m = source(&url, "percent", None, PrometheusConfig::default());
    let got = m.memory_series(&[q("i-1", T0, T0 + 60)]).await.unwrap();
    let e = got[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("retry after"), "{e}");
    assert_eq!(*seen.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_probe_finds_the_series_or_says_what_exists() {
    use epitaph::analysis::doctor::{prometheus_checks, Status};
    use epitaph::sources::probe::Sample;
    let (leak, _) = leak_and_flat();
    let mut bytes = series(
        "mem_bytes",
        "i-0leak00000000001",
        leak.iter().map(|(t, v)| (*t, v * 1e8)).collect(),
    );
    bytes.labels.push(("job".into(), "node".into()));
    let data = vec![
        series("mem_used_percent", "i-0leak00000000001", leak.clone()),
        bytes,
    ];
    let server = Server::start(Backend::Prometheus, &data).await;
    let sample = Sample {
        instance_id: "i-0leak00000000001".into(),
        asg: Some("web".into()),
        origin: None,
        terminated_at: Some(at(T0 + 60 * 359)),
        until: at(T0 + 60 * 359),
    };
    let config = |metrics: &str| {
        epitaph::config::Config::parse(
            &format!("[sources.metrics]\nkind = \"prometheus\"\n{metrics}\n[sources.metrics.prometheus]\nurl = \"{}\"\n", server.url),
            "test.toml",
            Path::new("/"),
            &[],
        )
        .unwrap()
    };
    async fn checks_for(
        cfg: epitaph::config::Config,
        sample: &Sample,
    ) -> Vec<epitaph::analysis::doctor::Check> {
        let m = PrometheusMetrics::from_config(&cfg).await.unwrap();
        prometheus_checks(&cfg, &m.probe(std::slice::from_ref(sample)).await)
    }
    let status = |checks: &[epitaph::analysis::doctor::Check], id: &str| {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
            .clone()
    };
    // Right: every check passes.
    let checks = checks_for(config(""), &sample).await;
    for id in [
        "prometheus.connection",
        "prometheus.query",
        "prometheus.series",
        "prometheus.unit",
    ] {
        assert_eq!(status(&checks, id).status, Status::Pass, "{checks:#?}");
    }
    // The label holding the instance id misnamed: the labels that exist, the nearest named.
    let checks = checks_for(config("instance_label = \"instance_ids\""), &sample).await;
    let c = status(&checks, "prometheus.series");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains("instance_id"), "{c:?}");
    assert_eq!(
        c.fix.as_deref(),
        Some("set sources.metrics.instance_label = \"instance_id\"")
    );
    // Bytes read as percent: the unit check says so.
    let mut cfg = config("");
    cfg.sources.metrics.prometheus.as_mut().unwrap().query = "mem_bytes{{instance_matcher}}".into();
    let checks = checks_for(cfg, &sample).await;
    let c = status(&checks, "prometheus.unit");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.fix.as_deref().unwrap_or("").contains("unit = \"bytes\""),
        "{c:?}"
    );
    // Invalid PromQL: a configuration failure naming the key.
    let mut cfg = config("");
    cfg.sources.metrics.prometheus.as_mut().unwrap().query =
        "rate(mem_used_percent{{instance_matcher}})".into();
    let checks = checks_for(cfg, &sample).await;
    let c = status(&checks, "prometheus.query");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("sources.metrics.prometheus.query"),
        "{c:?}"
    );
}

/// The simulated fleet, its metrics loaded into `backend`, scanned through the pipeline like
/// the file backend scans it: the same verdict for every instance, every deployment right.
async fn scan_simulated_fleet(backend: Backend) {
    use epitaph::config::Config;
    use epitaph::pipeline::{Pipeline, ScanOptions};
    let fleet = crate::common::Fleet::new(11, 2, 10);
    let dir = fleet.dir.path();
    // Read the fleet's metrics back through the file backend, as series to load.
    let file_cfg = Config::load(Some(&fleet.config_path())).unwrap();
    let files = epitaph::sources::file::FileMetrics::new(&MetricsConfig {
        path: Some(dir.join("metrics")),
        ..file_cfg.sources.metrics.clone()
    })
    .unwrap();
    let ids: Vec<String> = fleet.truth.instances.keys().cloned().collect();
    let all: Vec<SeriesQuery> = ids.iter().map(|id| q(id, 0, 4_000_000_000)).collect();
    let mut data = Vec::new();
    for (id, s) in ids.iter().zip(files.memory_series(&all).await.unwrap()) {
        if let Some(s) = s.unwrap() {
            data.push(series(
                "mem_used_percent",
                id,
                s.points.iter().map(|(t, v)| (t.timestamp(), *v)).collect(),
            ));
        }
    }
    assert!(data.len() >= 5, "the fleet has memory series");
    let server = Server::start(backend, &data).await;

    let by_file = Pipeline::open(file_cfg).await.unwrap();
    let file_report = by_file.scan(&ScanOptions::default()).await.unwrap();

    let text = std::fs::read_to_string(fleet.config_path()).unwrap();
    let head = &text[..text.find("[sources.metrics]").unwrap()];
    let prom_text = format!(
        "{}\n[sources.metrics]\nkind = \"prometheus\"\nunit = \"percent\"\n[sources.metrics.prometheus]\nurl = \"{}\"\nstep = \"300s\"\nbatch = 4\n",
        head.replace("path = \"epitaph.db\"", "path = \"prometheus.db\""),
        server.url
    );
    let prom_path: PathBuf = dir.join("prometheus.toml");
    std::fs::write(&prom_path, prom_text).unwrap();
    let prom_cfg = Config::load(Some(&prom_path)).unwrap();
    let by_prom = Pipeline::open(prom_cfg.clone()).await.unwrap();
    let report = by_prom.scan(&ScanOptions::default()).await.unwrap();

    assert!(
        report.summary.pending.is_empty(),
        "{backend:?}: {:?}",
        report.summary.pending
    );
    let calls = report
        .summary
        .api_calls
        .get("prometheus:query_range")
        .copied()
        .unwrap_or(0);
    println!(
        "{backend:?}: {calls} query_range calls for {} instances ({:.2} per instance)",
        report.instances.len(),
        calls as f64 / report.instances.len() as f64
    );
    assert!(
        calls >= 1 && calls < report.instances.len() as u64,
        "{backend:?}: {calls} calls for {} instances",
        report.instances.len()
    );
    let file_verdicts: BTreeMap<&str, String> = file_report
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.verdict.as_str().to_string()))
        .collect();
    let verdicts: BTreeMap<&str, String> = report
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.verdict.as_str().to_string()))
        .collect();
    assert_eq!(verdicts, file_verdicts, "{backend:?}: instance verdicts");
    for d in &report.deployments {
        assert_eq!(
            Some(&d.verdict),
            fleet.truth.deployments.get(&d.deployment),
            "{backend:?}: deployment {}",
            d.deployment
        );
    }
    assert!(
        report
            .deployments
            .iter()
            .any(|d| d.verdict.as_str() == "leaking"),
        "{backend:?}: the fleet has a leaking deployment"
    );

    // `epitaph doctor` on the same configuration probes the backend and passes it.
    let list = epitaph::pipeline::doctor(&prom_cfg).await;
    for id in [
        "prometheus.connection",
        "prometheus.query",
        "prometheus.series",
        "prometheus.unit",
    ] {
        let c = list
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id}: {:#?}", list.checks));
        assert_eq!(
            c.status,
            epitaph::analysis::doctor::Status::Pass,
            "{backend:?}: {c:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_scans_alike_through_prometheus() {
    scan_simulated_fleet(Backend::Prometheus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_scans_alike_through_victoriametrics() {
    scan_simulated_fleet(Backend::VictoriaMetrics).await;
}

/// A local listener standing in for Amazon Managed Service for Prometheus: it records each
/// request and answers one matrix.
#[cfg(feature = "aws")]
mod sigv4 {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};

    use super::*;

    /// One request as it arrived.
    type Request = (Method, Uri, HeaderMap, Bytes);

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Request>>>);

    async fn record(
        State(seen): State<Seen>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> String {
        seen.0.lock().unwrap().push((method, uri, headers, body));
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"instance_id":"i-0aps0000000000001"}},"values":[[{T0},"42"]]}}]}}}}"#
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_signed_with_sigv4_for_aps() {
        use epitaph::sources::prometheus::{sign_at, Sigv4};
        let seen = Seen::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://{addr}/workspaces/ws-0123");
        let src = MetricsConfig {
            kind: SourceKind::Prometheus,
            prometheus: Some(PrometheusConfig {
                url: Some(base.clone()),
                headers: [(
                    "X-Scope-OrgID".to_string(),
                    epitaph::config::Secret::new("tenant-1"),
                )]
                .into(),
                sigv4: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (key, secret) = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let m = PrometheusMetrics::new(
            Settings::resolve(&src).unwrap(),
            Some(Sigv4::from_static(key, secret, "us-west-2", "aps")),
        )
        .unwrap();
        let got = m
            .memory_series(&[q("i-0aps0000000000001", T0, T0 + 60)])
            .await
            .unwrap();
        assert_eq!(
            got[0].as_ref().unwrap().as_ref().unwrap().points,
            expected(&[(T0, 42.0)])
        );

        let (method, uri, headers, body) = seen.0.lock().unwrap()[0].clone();
        assert_eq!(method, Method::POST);
        assert_eq!(uri.path(), "/workspaces/ws-0123/api/v1/query_range");
        let header = |n: &str| {
            headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no {n}: {headers:?}"))
        };
        let auth = header("authorization");
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={key}/")),
            "{auth}"
        );
        assert!(auth.contains("/us-west-2/aps/aws4_request"), "{auth}");
        assert!(
            auth.contains(
                "SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date"
            ),
            "{auth}"
        );
        assert_eq!(header("x-amz-content-sha256").len(), 64);
        assert_eq!(header("x-scope-orgid"), "tenant-1");
        assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
        let form: BTreeMap<String, String> = url_form(&body);
        assert_eq!(
            form["query"],
            "mem_used_percent{instance_id=~\"i-0aps0000000000001\"}"
        );
        // The request as it arrived carries the signature of exactly what was sent: signing
        // the received method, URL, headers and body again at its x-amz-date gives the same.
        let date =
            chrono::NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ").unwrap();
        let time = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_secs(date.and_utc().timestamp() as u64);
        let creds = epitaph::sources::aws::sdk::credential_types::Credentials::new(
            key, secret, None, None, "test",
        );
        let again = sign_at(
            &creds,
            "us-west-2",
            "aps",
            time,
            "POST",
            &format!("http://{}{}", header("host"), uri.path()),
            &[
                ("content-length", &header("content-length")),
                ("content-type", &header("content-type")),
            ],
            &body,
        )
        .unwrap();
        let resigned = again
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        assert_eq!(resigned, Some(auth));
    }

    fn url_form(body: &[u8]) -> BTreeMap<String, String> {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

/// The service's own `/metrics`, scraped by a real Prometheus the way a fleet's would: with the
/// bearer token, asking for OpenMetrics first. The scrape succeeds (target up, no error), and
/// the families arrive under their documented names: counters with `_total`, the scan time's
/// histogram with its buckets, the gauges the store knows.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_services_own_metrics() {
    const TOKEN: &str = "scrape-t0ken";
    let fleet = Fleet::new(1, 6, 60);
    let serve = crate::common::spawn_serve(&fleet, TOKEN, "* * * * * *", &[]);
    let target = serve.base.trim_start_matches("http://").to_string();
    let job = format!(
        "scrape_configs:\n  - job_name: epitaph\n    scrape_interval: 1s\n    authorization:\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let server = Server::start_with(Backend::Prometheus, &[], &job).await;
    let api = |path: &str, params: Vec<(&'static str, &'static str)>| {
        let request = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", server.url))
            .query(&params);
        async move {
            let v: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            v
        }
    };
    let query = |q: &'static str| {
        let answer = api("query", vec![("query", q)]);
        async move {
            answer.await["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    // Waits for a scrape that saw a finished scan (the schedule runs one every second) and an
    // earlier scrape (a request is counted once answered).
    let until = Instant::now() + READY_BOUND;
    while query("epitaph_scans_total{result=\"ok\"} > 0")
        .await
        .is_empty()
        || query("epitaph_http_requests_total{route=\"/metrics\"} > 0")
            .await
            .is_empty()
    {
        assert!(Instant::now() < until, "no scrape saw a scan");
        tokio::time::sleep(POLL).await;
    }
    let targets = api("targets", vec![]).await;
    let t = &targets["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "", "{t}");
    for q in [
        "epitaph_scan_duration_seconds_bucket{le=\"+Inf\"}",
        "epitaph_scan_duration_seconds_count",
        "epitaph_errors_total{kind=\"scan\"}",
        "epitaph_deployments{verdict=\"leaking\"}",
        "epitaph_outbox_messages{status=\"pending\"}",
        "epitaph_last_successful_scan_timestamp_seconds > 0",
        "process_resident_memory_bytes > 0",
    ] {
        assert_eq!(query(q).await.len(), 1, "{q}");
    }
    // The scrape was OpenMetrics: Prometheus keeps the counter's family type.
    let meta = api("targets/metadata", vec![("metric", "epitaph_scans")]).await;
    assert_eq!(meta["data"][0]["type"], "counter", "{meta}");
}
