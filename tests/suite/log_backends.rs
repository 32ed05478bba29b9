//! The `splunk` and `loki` log backends against local fakes built from the vendors' documented
//! request and response shapes — no real Splunk or Loki runs here.
//!
//! The Splunk fake answers `POST /services/search/v2/jobs/export` (form fields `search`,
//! `earliest_time`, `latest_time`, `output_mode=json`) by evaluating the little SPL epitaph
//! sends — quoted `field="value"` terms (Splunk's `*` wildcard included), `| where
//! 'field'=="value"`, `| head N` over events newest first — and streams the results one JSON
//! object per line (`{"preview":false,"offset":N,"result":{"_time":…,"_raw":…}}`, a final
//! `"lastrow":true`), as separate pieces with one line cut in two; `| eventcount` and
//! `GET /services/server/info` for the doctor. The Loki fake answers
//! `GET /loki/api/v1/query_range` (`query`, `start` inclusive, `end` exclusive, in
//! nanoseconds, `limit`, `direction=backward`) by parsing the LogQL selector (Go string
//! escapes) and line filter, with `streams` results holding nanosecond `values`; `labels` and
//! label values for the doctor. Both check credentials (401 when wrong), record every request,
//! and answer planned replies first (error bodies, 429 with Retry-After).
//!
//! Nothing here waits on time to synchronise: scans run to completion under a generous bound,
//! and the one timed assertion is a lower bound (a Retry-After of 1 s was waited).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use epitaph::config::Config;
use epitaph::sources::loki::LokiLogs;
use epitaph::sources::splunk::SplunkLogs;
use epitaph::sources::{LastWordsQuery, LogSource};
use serde_json::{json, Value};

use crate::common::{bin, output_timeout, CHILD_EXIT_BOUND};

// ------------------------------------------------------------------ the fleet -------------

/// Instance A died of an OOM; B left no line; C is another host's instance (not terminated).
const A: &str = "i-0aaaaaaaaaaaaaaaa";
const B: &str = "i-0bbbbbbbbbbbbbbbb";
const A_DNS: &str = "ip-10-0-1-23.ec2.internal";
const B_DNS: &str = "ip-10-0-1-24.ec2.internal";
const OTHER_DNS: &str = "ip-10-0-1-99.ec2.internal";
const NODE_OOM: &str =
    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory";
const KERNEL_OOM: &str = "[ 8811.123456] Out of memory: Killed process 4242 (node) total-vm:4194304kB, anon-rss:2097152kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:8192kB oom_score_adj:0";

fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 4, h, m, s).unwrap() + chrono::Duration::milliseconds(ms as i64)
}

/// When A and B were terminated (the activities' StartTime; no EndTime, so their words count
/// until + drain (5 min) + grace (2 min)).
fn terminated() -> DateTime<Utc> {
    at(10, 0, 0, 0)
}

fn launched() -> DateTime<Utc> {
    at(8, 0, 0, 0)
}

/// A's log, oldest first: one line long before the final minute, the final minute ending in
/// the OOM, and one line after the end of the window (never read).
fn a_lines() -> Vec<(DateTime<Utc>, &'static str)> {
    vec![
        (at(9, 30, 0, 0), "boot: checkout-api starting"),
        (at(9, 58, 50, 0), "GET /cart 200 12ms"),
        (at(9, 58, 55, 250), "heap used 1.9 GB of 2.0 GB"),
        (at(9, 59, 10, 0), "<--- Last few GCs --->"),
        (
            at(9, 59, 10, 500),
            "[4242:0x5a1f]  1800 ms: Mark-Compact 2040.1 (2080.0) -> 2039.8 (2080.0) MB",
        ),
        (at(9, 59, 11, 3), NODE_OOM),
        (at(10, 8, 0, 0), "after the end of the window: never read"),
    ]
}

/// The last words a scan must see for A: the final minute, in time order.
fn a_last_words() -> Vec<&'static str> {
    a_lines()[1..6].iter().map(|(_, l)| *l).collect()
}

/// A folder with activity and inventory exports, a metrics file, and `epitaph.toml` whose
/// `[sources.logs]` is `logs` (the backend under test).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(logs: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for sub in ["activities", "inventory", "metrics"] {
            std::fs::create_dir(p.join(sub)).unwrap();
        }
        let activity = |id: &str, n: u32| {
            json!({
                "ActivityId": format!("act-{n}"),
                "AutoScalingGroupName": "checkout-api",
                "Description": format!("Terminating EC2 instance: {id}"),
                "Cause": "At 2026-01-04T09:59:40Z an instance was taken out of service in response to an ELB system health check failure.",
                "StartTime": terminated().to_rfc3339(),
                "StatusCode": "Successful"
            })
        };
        std::fs::write(
            p.join("activities/checkout-api.json"),
            json!({"Activities": [activity(A, 1), activity(B, 2)]}).to_string(),
        )
        .unwrap();
        let instance = |id: &str, dns: &str, ip: &str| {
            json!({
                "InstanceId": id,
                "LaunchTime": launched().to_rfc3339(),
                "PrivateDnsName": dns,
                "PrivateIpAddress": ip,
                "Placement": {"AvailabilityZone": "us-east-1a"},
                "Tags": [{"Key": "aws:autoscaling:groupName", "Value": "checkout-api"}]
            })
        };
        std::fs::write(
            p.join("inventory/describe-instances.json"),
            json!({"Reservations": [{"Instances": [
                instance(A, A_DNS, "10.0.1.23"),
                instance(B, B_DNS, "10.0.1.24")
            ]}]})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            p.join("metrics/memory.csv"),
            format!(
                "timestamp,instance_id,value\n{},{B},41.5\n{},{B},42.0\n",
                at(9, 50, 0, 0).to_rfc3339(),
                at(9, 55, 0, 0).to_rfc3339()
            ),
        )
        .unwrap();
        let site = Site { dir };
        site.write_config(logs);
        site
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.path().join("epitaph.toml")
    }

    fn write_config(&self, logs: &str) {
        std::fs::write(
            self.config_path(),
            format!(
                r#"
[scan]
since = "2026-01-03T00:00:00Z"
until = "2026-01-05T00:00:00Z"

[state]
path = "epitaph.db"

[sources.activities]
path = "activities"
inventory = "inventory"

[sources.metrics]
path = "metrics"

{logs}
"#
            ),
        )
        .unwrap();
    }

    fn config(&self) -> Config {
        Config::load(Some(&self.config_path())).unwrap()
    }
}

/// The query a scan makes for `id` (as the pipeline builds it from the termination and the
/// inventory).
fn query(id: &str, dns: Option<&str>) -> LastWordsQuery {
    LastWordsQuery {
        instance_id: id.into(),
        origin: None,
        asg: "checkout-api".into(),
        terminated_at: terminated(),
        window: chrono::Duration::seconds(60),
        grace: chrono::Duration::minutes(7),
        max_bytes: 256 * 1024,
        launched_at: Some(launched()),
        private_dns: dns.map(str::to_string),
        private_ip: None,
    }
}

/// Runs epitaph with `args` (and `env`), bounded; returns stdout, stderr and the exit code.
async fn epitaph(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String, i32) {
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("EPITAPH_CONFIG")
        .env_remove("EPITAPH_LOG")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || output_timeout(&mut cmd, CHILD_EXIT_BOUND))
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// `epitaph --format json scan`: the report and the exit code.
async fn scan(site: &Site, env: &[(&str, &str)]) -> (Value, i32, String) {
    let (stdout, stderr, code) =
        epitaph(&site.config_path(), &["--format", "json", "scan"], env).await;
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("scan JSON: {e}\nstdout: {stdout}\nstderr: {stderr}"));
    (v, code, stderr)
}

/// `epitaph --format json doctor`: the checklist and the exit code.
async fn doctor(site: &Site, env: &[(&str, &str)]) -> (Value, i32) {
    let (stdout, stderr, code) =
        epitaph(&site.config_path(), &["--format", "json", "doctor"], env).await;
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}\nstdout: {stdout}\nstderr: {stderr}"));
    (v, code)
}

fn check<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {list:#}"))
}

fn instance<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == id)
        .unwrap_or_else(|| panic!("no instance {id}: {report:#}"))
}

fn signature_ids(inst: &Value) -> Vec<String> {
    inst["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signature"].as_str().unwrap().to_string())
        .collect()
}

fn messages(words: &epitaph::model::LastWords) -> Vec<&str> {
    words.events.iter().map(|e| e.message.as_str()).collect()
}

fn assert_time_order(words: &epitaph::model::LastWords) {
    assert!(
        words
            .events
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp),
        "not in time order: {:?}",
        words.events
    );
}

// ------------------------------------------------------------------ the fake server -------

/// One request the fake got.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Query-string parameters, then form fields, decoded.
    params: Vec<(String, String)>,
    headers: HeaderMap,
    at: Instant,
}

impl Seen {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }
}

/// A reply the test plans for the next request.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    retry_after: Option<&'static str>,
    content_type: &'static str,
    body: String,
}

impl Canned {
    fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Canned {
        Canned {
            status,
            retry_after: None,
            content_type,
            body: body.into(),
        }
    }
    fn retry_after(mut self, v: &'static str) -> Canned {
        self.retry_after = Some(v);
        self
    }
}

/// The vendor's API, answering what was not planned.
trait Api: Send + 'static {
    fn answer(&mut self, req: &Seen) -> Response;
}

struct Shared<A> {
    seen: Vec<Seen>,
    plan: VecDeque<Canned>,
    api: A,
}

struct Fake<A> {
    shared: Arc<Mutex<Shared<A>>>,
    addr: SocketAddr,
}

impl<A: Api> Fake<A> {
    async fn start(api: A) -> Fake<A> {
        let shared = Arc::new(Mutex::new(Shared {
            seen: Vec::new(),
            plan: VecDeque::new(),
            api,
        }));
        let app = axum::Router::new()
            .fallback(handle::<A>)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { shared, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers for the next requests, in order, before the API answers again.
    fn plan(&self, replies: impl IntoIterator<Item = Canned>) {
        self.shared.lock().unwrap().plan.extend(replies);
    }

    fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.shared
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

async fn handle<A: Api>(
    State(shared): State<Arc<Mutex<Shared<A>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = decode_form(uri.query().unwrap_or(""));
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(decode_form(&String::from_utf8_lossy(&body)));
    }
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        params,
        headers,
        at: Instant::now(),
    };
    let mut s = shared.lock().unwrap();
    s.seen.push(seen.clone());
    if let Some(c) = s.plan.pop_front() {
        let mut r = (
            StatusCode::from_u16(c.status).unwrap(),
            [("content-type", c.content_type)],
            c.body,
        )
            .into_response();
        if let Some(ra) = c.retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return r;
    }
    s.api.answer(&seen)
}

/// `application/x-www-form-urlencoded` (and query strings): `+` is a space, `%XX` a byte.
fn decode_form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Reads a double-quoted string at the start of `s` (backslash escapes the next character, as
/// SPL does); returns it and the rest.
fn spl_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        match (escaped, c) {
            (true, c) => {
                out.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '"') => return Some((out, &s[i + 1..])),
            (false, c) => out.push(c),
        }
    }
    None
}

/// Splunk's matching of a search term's value: case-insensitive, `*` any text.
fn spl_matches(pattern: &str, value: &str) -> bool {
    let re = format!(
        "(?i)^{}$",
        pattern
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*")
    );
    regex::Regex::new(&re).unwrap().is_match(value)
}

// ------------------------------------------------------------------ the Splunk fake -------

#[derive(Debug, Clone)]
struct SplunkEvent {
    index: &'static str,
    sourcetype: &'static str,
    host: String,
    fields: Vec<(&'static str, String)>,
    time: DateTime<Utc>,
    raw: String,
}

impl SplunkEvent {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "index" => Some(self.index),
            "sourcetype" => Some(self.sourcetype),
            "host" => Some(&self.host),
            other => self
                .fields
                .iter()
                .find(|(k, _)| *k == other)
                .map(|(_, v)| v.as_str()),
        }
    }
}

/// What the fake understood of a search.
#[derive(Debug, Default)]
struct Spl {
    terms: Vec<(String, String)>,
    wheres: Vec<(String, String)>,
    head: Option<usize>,
}

/// The SPL epitaph sends: `search field="v" … | where 'f'=="v" | head N | fields …`.
fn parse_spl(text: &str) -> Result<Spl, String> {
    let mut rest = text
        .strip_prefix("search ")
        .ok_or_else(|| format!("Unknown search command in `{text}`"))?;
    let mut spl = Spl::default();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(spl);
        }
        if let Some(r) = rest.strip_prefix('|') {
            rest = r.trim_start();
            break;
        }
        let (field, r) = rest.split_once('=').ok_or("expected field=value")?;
        let (value, r) = spl_quoted(r).ok_or("expected a quoted value")?;
        spl.terms.push((field.to_string(), value));
        rest = r;
    }
    loop {
        if let Some(r) = rest.strip_prefix("where '") {
            let (field, r) = r.split_once("'==").ok_or("bad where")?;
            let (value, r) = spl_quoted(r).ok_or("bad where value")?;
            spl.wheres.push((field.to_string(), value));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("head ") {
            let n: String = r.chars().take_while(char::is_ascii_digit).collect();
            spl.head = Some(n.parse().map_err(|_| "bad head")?);
            rest = &r[n.len()..];
        } else if rest.starts_with("fields ") {
            rest = rest.find('|').map_or("", |i| &rest[i..]);
        } else {
            return Err(format!("Unknown search command '{rest}'."));
        }
        rest = rest.trim_start();
        match rest.strip_prefix('|') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => return Ok(spl),
            None => return Err(format!("unexpected `{rest}`")),
        }
    }
}

fn splunk_secs(v: Option<&str>) -> Option<DateTime<Utc>> {
    let f: f64 = v?.parse().ok()?;
    let micros = (f * 1e6).round() as i64;
    Utc.timestamp_micros(micros).single()
}

struct SplunkApi {
    events: Vec<SplunkEvent>,
    /// The Authorization header the fake accepts.
    authorization: String,
}

impl SplunkApi {
    fn with(events: Vec<SplunkEvent>, authorization: &str) -> SplunkApi {
        SplunkApi {
            events,
            authorization: authorization.into(),
        }
    }

    fn stream(lines: Vec<String>) -> Response {
        // One piece per line, the first line cut in two: the client reads as it streams.
        let mut pieces: Vec<String> = Vec::new();
        for (i, l) in lines.into_iter().enumerate() {
            if i == 0 && l.len() > 10 {
                let cut = l.char_indices().nth(l.chars().count() / 2).unwrap().0;
                pieces.push(l[..cut].to_string());
                pieces.push(format!("{}\n", &l[cut..]));
            } else {
                pieces.push(format!("{l}\n"));
            }
        }
        let body = Body::from_stream(futures::stream::iter(
            pieces.into_iter().map(Ok::<_, std::io::Error>),
        ));
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    }

    fn export(&self, req: &Seen) -> Response {
        let search = req.param("search").unwrap_or("");
        if req.param("output_mode") != Some("json") {
            return (StatusCode::BAD_REQUEST, "output_mode").into_response();
        }
        if let Some(index) = search.strip_prefix("| eventcount summarize=false index=") {
            let wanted = spl_quoted(index).map_or(index.to_string(), |(v, _)| v);
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for e in &self.events {
                if spl_matches(&wanted, e.index) {
                    *counts.entry(e.index).or_insert(0) += 1;
                }
            }
            let mut lines: Vec<String> = counts
                .iter()
                .enumerate()
                .map(|(i, (index, n))| {
                    json!({"preview": false, "offset": i, "result": {"count": n.to_string(), "index": index, "server": "splunk-1"}})
                        .to_string()
                })
                .collect();
            lines.push(json!({"preview": false, "lastrow": true}).to_string());
            return Self::stream(lines);
        }
        let spl = match parse_spl(search) {
            Ok(s) => s,
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"messages": [{"type": "ERROR", "text": format!("Error in 'search' command: {e}")}]}),
                )
            }
        };
        let earliest = splunk_secs(req.param("earliest_time"));
        let latest = splunk_secs(req.param("latest_time"));
        let mut hits: Vec<&SplunkEvent> = self
            .events
            .iter()
            .filter(|e| earliest.is_none_or(|t| e.time >= t) && latest.is_none_or(|t| e.time < t))
            .filter(|e| {
                spl.terms
                    .iter()
                    .all(|(f, v)| e.field(f).is_some_and(|x| spl_matches(v, x)))
            })
            .filter(|e| {
                spl.wheres
                    .iter()
                    .all(|(f, v)| e.field(f) == Some(v.as_str()))
            })
            .collect();
        hits.sort_by_key(|e| std::cmp::Reverse(e.time));
        if let Some(n) = spl.head {
            hits.truncate(n);
        }
        let mut lines: Vec<String> = hits
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({"preview": false, "offset": i, "result": {
                    "_time": e.time.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string(),
                    "_raw": e.raw,
                }})
                .to_string()
            })
            .collect();
        lines.push(json!({"preview": false, "lastrow": true}).to_string());
        Self::stream(lines)
    }
}

impl Api for SplunkApi {
    fn answer(&mut self, req: &Seen) -> Response {
        if req.header("authorization") != Some(self.authorization.as_str()) {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"messages": [{"type": "WARN", "text": "call not properly authenticated"}]}),
            );
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/services/search/v2/jobs/export") => self.export(req),
            ("GET", "/services/server/info") => json_response(
                StatusCode::OK,
                json!({"entry": [{"name": "server-info", "content": {"version": "9.2.1", "serverName": "splunk-1"}}]}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"messages": [{"type": "ERROR", "text": "Not Found"}]}),
            ),
        }
    }
}

const EXPORT: &str = "/services/search/v2/jobs/export";

/// A's events (and another host's OOM at the same moment, which must not be A's).
fn splunk_events() -> Vec<SplunkEvent> {
    let mut v: Vec<SplunkEvent> = a_lines()
        .into_iter()
        .map(|(time, raw)| SplunkEvent {
            index: "app",
            sourcetype: "app:log",
            host: A_DNS.into(),
            fields: vec![("instance_id", A.into())],
            time,
            raw: raw.into(),
        })
        .collect();
    v.push(SplunkEvent {
        index: "app",
        sourcetype: "app:log",
        host: OTHER_DNS.into(),
        fields: vec![("instance_id", "i-0ccccccccccccccccc".into())],
        time: at(9, 59, 11, 3),
        raw: "another host's OOM: Out of memory: Killed process 1 (java)".into(),
    });
    v
}

fn splunk_table(url: &str, extra: &str) -> String {
    format!(
        r#"[sources.logs]
kind = "splunk"

[sources.logs.splunk]
url = "{url}"
index = "app"
sourcetype = "app:log"
instance_filter = "host={{private_dns}}"
max_attempts = 3
{extra}
"#
    )
}

// ------------------------------------------------------------------ Splunk tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_last_words_stream_back_complete_and_in_time_order() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer tok-1")).await;
    let site = Site::new(&splunk_table(&fake.url(), "token = \"tok-1\""));
    let logs = SplunkLogs::from_config(&site.config()).unwrap();

    let words = logs.last_words(&query(A, Some(A_DNS))).await.unwrap();
    assert_eq!(messages(&words), a_last_words());
    assert_time_order(&words);
    assert_eq!(words.last_event_at, Some(at(9, 59, 11, 3)));
    assert!(!words.truncated);

    // One search: the index, sourcetype and host quoted, the newest events first, from the
    // launch to just after the end (termination + drain + grace), as Splunk's documented form.
    let seen = fake.seen_on(EXPORT);
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(
        s.param("search"),
        Some(
            r#"search index="app" sourcetype="app:log" host="ip-10-0-1-23.ec2.internal" | head 500 | fields _time, _raw"#
        )
    );
    assert_eq!(s.param("output_mode"), Some("json"));
    assert_eq!(
        splunk_secs(s.param("earliest_time")),
        Some(launched()),
        "{s:?}"
    );
    assert_eq!(
        splunk_secs(s.param("latest_time")),
        Some(at(10, 7, 0, 0) + chrono::Duration::microseconds(1)),
        "{s:?}"
    );
    assert_eq!(
        logs.calls(),
        BTreeMap::from([("splunk:search/v2/jobs/export".to_string(), 1)])
    );

    // No event for B: an instance without logs, not an error.
    let none = logs.last_words(&query(B, Some(B_DNS))).await.unwrap();
    assert!(none.events.is_empty() && none.last_event_at.is_none());
    // Without its DNS name in the inventory, B cannot be mapped: an error saying so, and
    // nothing is asked of Splunk.
    let err = logs
        .last_words(&query(B, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("splunk: ")
            && err.contains("cannot be mapped")
            && err.contains("{private_dns}"),
        "{err}"
    );
    assert_eq!(fake.seen_on(EXPORT).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_scan_finds_the_oom_with_one_search_per_instance() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer env-token")).await;
    let site = Site::new(&splunk_table(
        &fake.url(),
        "token_env = \"TEST_SPLUNK_TOKEN\"",
    ));
    let (report, code, stderr) = scan(&site, &[("TEST_SPLUNK_TOKEN", "env-token")]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");

    let a = instance(&report, A);
    assert_eq!(a["verdict"], "oom", "{a:#}");
    assert!(
        signature_ids(a).contains(&"node.heap_oom".to_string()),
        "{a:#}"
    );
    assert_eq!(a["last_words_lines"], a_last_words().len());
    // B said nothing: no evidence, never an error, never healthy by silence.
    let b = instance(&report, B);
    assert_eq!(b["last_words_lines"], 0);
    assert_eq!(b["verdict"], "unknown", "{b:#}");

    // Calls per operation, as for the AWS backends: one search per instance.
    assert_eq!(
        report["summary"]["api_calls"],
        json!({"splunk:search/v2/jobs/export": 2}),
        "{:#}",
        report["summary"]
    );
    assert_eq!(report["summary"]["api_calls_per_instance"], 1.0);
    // The token came from the environment variable the config names, sent as a bearer token.
    for s in fake.seen_on(EXPORT) {
        assert_eq!(s.header("authorization"), Some("Bearer env-token"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_instance_id_injection_reaches_the_server_as_a_literal() {
    const EVIL: &str = r#"i-1" OR index=* ""#;
    let mut events = splunk_events();
    // An event whose instance_id field holds the attempt itself, literally; and one a
    // wildcard reading of it would also match.
    for (id, raw) in [
        (EVIL, "the literal id's line"),
        (
            r#"i-1" OR index=main ""#,
            "matched only if * were a wildcard",
        ),
    ] {
        events.push(SplunkEvent {
            index: "app",
            sourcetype: "app:log",
            host: "weird".into(),
            fields: vec![("instance_id", id.into())],
            time: at(9, 59, 0, 0),
            raw: raw.into(),
        });
    }
    let fake = Fake::start(SplunkApi::with(events, "Bearer t")).await;
    let site = Site::new(
        &splunk_table(&fake.url(), "token = \"t\"")
            .replace("host={private_dns}", "instance_id={instance_id}"),
    );
    let logs = SplunkLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(EVIL, None)).await.unwrap();
    assert_eq!(messages(&words), ["the literal id's line"]);
    let seen = fake.seen_on(EXPORT);
    assert_eq!(
        seen[0].param("search"),
        Some(
            r#"search index="app" sourcetype="app:log" instance_id="i-1\" OR index=* \"" | where 'instance_id'=="i-1\" OR index=* \"" | head 500 | fields _time, _raw"#
        )
    );
    // An id that would end the quoted string with a backslash cannot either.
    let words = logs
        .last_words(&query(r#"i-1\" | delete"#, None))
        .await
        .unwrap();
    assert!(words.events.is_empty());
    assert_eq!(
        seen_search(&fake, 1),
        r#"search index="app" sourcetype="app:log" instance_id="i-1\\\" | delete" | head 500 | fields _time, _raw"#
    );
}

fn seen_search(fake: &Fake<SplunkApi>, i: usize) -> String {
    fake.seen_on(EXPORT)[i].param("search").unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_429_with_retry_after_is_waited_out_and_retried() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer t")).await;
    fake.plan([Canned::new(
        429,
        "application/json",
        json!({"messages": [{"type": "ERROR", "text": "Too many search jobs"}]}).to_string(),
    )
    .retry_after("1")]);
    let site = Site::new(&splunk_table(&fake.url(), "token = \"t\""));
    let logs = SplunkLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, Some(A_DNS))).await.unwrap();
    assert_eq!(messages(&words), a_last_words());
    let seen = fake.seen_on(EXPORT);
    assert_eq!(seen.len(), 2);
    // The second attempt came after the server's Retry-After (a lower bound: a busy machine
    // only makes the gap longer).
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1),
        "{:?}",
        seen[1].at.duration_since(seen[0].at)
    );
    // Both requests were made and counted, the refused one also as throttled (it halved the
    // searches' rate for everyone and held them for the Retry-After).
    assert_eq!(logs.calls()["splunk:search/v2/jobs/export"], 2);
    assert_eq!(logs.calls()["splunk:search/v2/jobs/export (throttled)"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_errors_name_splunk_and_what_failed() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer t")).await;
    let site = Site::new(
        &splunk_table(&fake.url(), "token = \"t\"\nmax_attempts = 2")
            .replace("max_attempts = 3\n", ""),
    );
    let logs = SplunkLogs::from_config(&site.config()).unwrap();
    let q = query(A, Some(A_DNS));

    // A search Splunk rejects: HTTP 400 with its messages[].
    fake.plan([Canned::new(
        400,
        "application/json",
        json!({"messages": [{"type": "ERROR", "text": "Unknown search command 'hed'."}]})
            .to_string(),
    )]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "splunk: search for {A}: HTTP 400: Unknown search command 'hed'."
        )),
        "{err}"
    );

    // A search that fails while it streams: results, then an ERROR message.
    fake.plan([Canned::new(
        200,
        "application/json",
        format!(
            "{}\n{}\n",
            json!({"preview": false, "offset": 0, "result": {"_time": "2026-01-04T09:59:11.003+00:00", "_raw": "x"}}),
            json!({"messages": [{"type": "ERROR", "text": "Search process did not exit cleanly"}]})
        ),
    )]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(
        err.contains("the search failed: Search process did not exit cleanly"),
        "{err}"
    );

    // Unavailable on every attempt (max_attempts = 2): the error says so.
    fake.plan([
        Canned::new(503, "text/plain", "Service Unavailable").retry_after("0"),
        Canned::new(503, "text/plain", "Service Unavailable").retry_after("0"),
    ]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 503 after 2 attempts: Service Unavailable"),
        "{err}"
    );
    // A 503 that says when to come back is the server shedding load: a throttle, counted (and
    // fed to the rate limiter) like a 429.
    assert_eq!(logs.calls()["splunk:search/v2/jobs/export (throttled)"], 2);

    // A refused token: 401, named as such.
    let wrong = Site::new(&splunk_table(&fake.url(), "token = \"wrong\""));
    let err = SplunkLogs::from_config(&wrong.config())
        .unwrap()
        .last_words(&q)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401: call not properly authenticated")
            && err.contains("token was refused"),
        "{err}"
    );

    // Through a scan: every instance stays pending with the error, exit 3 — never a fleet
    // without last words.
    fake.plan([
        Canned::new(
            500,
            "application/json",
            json!({"messages": [{"type": "ERROR", "text": "internal error"}]}).to_string(),
        ),
        Canned::new(
            500,
            "application/json",
            json!({"messages": [{"type": "ERROR", "text": "internal error"}]}).to_string(),
        ),
    ]);
    let (report, code, stderr) = scan(&site, &[]).await;
    assert_eq!(code, 3, "{report:#}\n{stderr}");
    let pending = report["summary"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 2, "{:#}", report["summary"]);
    for p in pending {
        let e = p["error"].as_str().unwrap();
        assert!(
            e.starts_with("logs: splunk: search for i-") && e.contains("HTTP 500: internal error"),
            "{e}"
        );
    }
    assert_eq!(report["summary"]["analysed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_searches_again_when_max_events_do_not_reach_over_the_final_minute() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer t")).await;
    let site = Site::new(&splunk_table(&fake.url(), "token = \"t\"\nmax_events = 2"));
    let logs = SplunkLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, Some(A_DNS))).await.unwrap();
    // Every line of the final minute once, in order, though each search returned two.
    assert_eq!(messages(&words), a_last_words());
    assert!(!words.truncated);
    // Each search ends one microsecond after the oldest event the previous one returned (the
    // end is exclusive; the repeated event is dropped), until one reaches past the window.
    let latest: Vec<DateTime<Utc>> = fake
        .seen_on(EXPORT)
        .iter()
        .map(|s| {
            assert!(s.param("search").unwrap().contains("| head 2 |"), "{s:?}");
            splunk_secs(s.param("latest_time")).unwrap()
        })
        .collect();
    let us = chrono::Duration::microseconds(1);
    assert_eq!(
        latest,
        vec![
            at(10, 7, 0, 0) + us,
            at(9, 59, 10, 500) + us,
            at(9, 59, 10, 0) + us,
            at(9, 58, 55, 250) + us,
            at(9, 58, 50, 0) + us,
        ]
    );
    assert_eq!(logs.calls()["splunk:search/v2/jobs/export"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_auth_is_sent_as_configured() {
    // `Authorization: Splunk <token>`, the token read from a file (for every request).
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Splunk from-file")).await;
    let site = Site::new(&splunk_table(
        &fake.url(),
        "auth_scheme = \"splunk\"\ntoken_file = \"splunk.token\"",
    ));
    std::fs::write(site.path().join("splunk.token"), "from-file\n").unwrap();
    let logs = SplunkLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, Some(A_DNS))).await.unwrap();
    assert_eq!(words.events.len(), a_last_words().len());
    assert_eq!(
        fake.seen_on(EXPORT)[0].header("authorization"),
        Some("Splunk from-file")
    );
    // A rotated token is used from the next request on.
    std::fs::write(site.path().join("splunk.token"), "rotated").unwrap();
    let _ = logs.last_words(&query(A, Some(A_DNS))).await;
    assert_eq!(
        fake.seen_on(EXPORT)[1].header("authorization"),
        Some("Splunk rotated")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_doctor_checks_server_index_and_last_words() {
    let fake = Fake::start(SplunkApi::with(splunk_events(), "Bearer t")).await;
    let site = Site::new(&splunk_table(&fake.url(), "token = \"t\""));
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 0, "{list:#}");
    assert_eq!(check(&list, "splunk.connection")["status"], "pass");
    assert!(
        check(&list, "splunk.connection")["detail"]
            .as_str()
            .unwrap()
            .contains("Splunk 9.2.1"),
        "{list:#}"
    );
    assert_eq!(check(&list, "splunk.scope")["status"], "pass", "{list:#}");
    // A has last words, B has none: a warning naming B, not a failure.
    let lw = check(&list, "splunk.last_words");
    assert_eq!(lw["status"], "warn", "{lw:#}");
    assert!(lw["detail"].as_str().unwrap().contains(A), "{lw:#}");

    // A misspelt index: FAIL naming the key and the index that exists.
    site.write_config(
        &splunk_table(&fake.url(), "token = \"t\"").replace("index = \"app\"", "index = \"ap\""),
    );
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 2, "{list:#}");
    let scope = check(&list, "splunk.scope");
    assert_eq!(scope["status"], "fail");
    let detail = scope["detail"].as_str().unwrap();
    assert!(
        detail.contains("index `ap`") && detail.contains("did you mean `app`"),
        "{detail}"
    );
    assert!(scope["fix"]
        .as_str()
        .unwrap()
        .contains("sources.logs.splunk.index"));

    // A refused token: FAIL on the connection, exit 2 (configuration).
    site.write_config(&splunk_table(&fake.url(), "token = \"nope\""));
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 2, "{list:#}");
    assert_eq!(check(&list, "splunk.connection")["status"], "fail");
}

// ------------------------------------------------------------------ the Loki fake ---------

#[derive(Debug, Clone)]
struct LokiStream {
    labels: BTreeMap<String, String>,
    /// (nanoseconds, line)
    entries: Vec<(i64, String)>,
}

fn stream(labels: &[(&str, &str)], entries: Vec<(i64, String)>) -> LokiStream {
    LokiStream {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        entries,
    }
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap()
}

/// A LogQL string at the start of `s` (Go syntax: `\\`, `\"`, `\n`, `\r`, `\t`, `\uXXXX`;
/// or a backtick raw string); the value and the rest.
fn logql_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices().peekable();
    let (_, q) = chars.next()?;
    if q == '`' {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].to_string(), &s[end + 1..]));
    }
    if q != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other if other.is_ascii_punctuation() => {
                    // Go accepts no other escape in a string; regexes escape their
                    // punctuation with a doubled backslash.
                    return None;
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

type Matcher = (String, String, String);

/// `{label op "value", …}` and an optional `|= "text"`; Loki's parse error otherwise.
fn parse_logql(q: &str) -> Result<(Vec<Matcher>, Option<String>), String> {
    let err = |at: &str| {
        format!(
            "parse error at line 1, col {}: syntax error: unexpected input",
            q.len() - at.len() + 1
        )
    };
    let mut rest = q.trim().strip_prefix('{').ok_or_else(|| err(q))?;
    let mut matchers = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
            break;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return Err(err(rest));
        }
        rest = rest[name.len()..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| err(rest))?;
        rest = rest[op.len()..].trim_start();
        let (value, r) = logql_string(rest).ok_or_else(|| err(rest))?;
        matchers.push((name, op.to_string(), value));
        rest = r.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        }
    }
    rest = rest.trim_start();
    if rest.is_empty() {
        return Ok((matchers, None));
    }
    let r = rest
        .strip_prefix("|=")
        .ok_or_else(|| err(rest))?
        .trim_start();
    let (text, r) = logql_string(r).ok_or_else(|| err(r))?;
    if !r.trim().is_empty() {
        return Err(err(r));
    }
    Ok((matchers, Some(text)))
}

fn loki_matches(m: &Matcher, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&m.0).map(String::as_str).unwrap_or("");
    let re = |p: &str| regex::Regex::new(&format!("^(?:{p})$")).unwrap();
    match m.1.as_str() {
        "=" => value == m.2,
        "!=" => value != m.2,
        "=~" => re(&m.2).is_match(value),
        _ => !re(&m.2).is_match(value),
    }
}

struct LokiApi {
    streams: Vec<LokiStream>,
    /// The X-Scope-OrgID and Authorization the fake accepts (None: not checked).
    tenant: Option<String>,
    authorization: Option<String>,
}

impl LokiApi {
    fn with(streams: Vec<LokiStream>) -> LokiApi {
        LokiApi {
            streams,
            tenant: None,
            authorization: None,
        }
    }

    fn range(req: &Seen) -> (i64, i64) {
        let p = |k: &str| req.param(k).and_then(|v| v.parse::<i64>().ok());
        (p("start").unwrap_or(i64::MIN), p("end").unwrap_or(i64::MAX))
    }

    fn query_range(&self, req: &Seen) -> Response {
        if req.param("direction") != Some("backward") {
            return (StatusCode::BAD_REQUEST, "direction").into_response();
        }
        let (matchers, filter) = match parse_logql(req.param("query").unwrap_or("")) {
            Ok(x) => x,
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        };
        let limit: usize = req
            .param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100);
        let (start, end) = Self::range(req);
        // Every matching entry, newest first across streams; the first `limit`.
        let mut hits: Vec<(usize, i64, &str)> = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            if !matchers.iter().all(|m| loki_matches(m, &s.labels)) {
                continue;
            }
            for (t, line) in &s.entries {
                if *t >= start && *t < end && filter.as_ref().is_none_or(|f| line.contains(f)) {
                    hits.push((i, *t, line));
                }
            }
        }
        hits.sort_by_key(|h| std::cmp::Reverse(h.1));
        hits.truncate(limit);
        let mut result: Vec<Value> = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            let values: Vec<Value> = hits
                .iter()
                .filter(|h| h.0 == i)
                .map(|h| json!([h.1.to_string(), h.2]))
                .collect();
            if !values.is_empty() {
                result.push(json!({"stream": s.labels, "values": values}));
            }
        }
        json_response(
            StatusCode::OK,
            json!({"status": "success", "data": {"resultType": "streams", "result": result,
                   "stats": {"summary": {"totalEntriesReturned": hits.len()}}}}),
        )
    }
}

impl Api for LokiApi {
    fn answer(&mut self, req: &Seen) -> Response {
        if let Some(t) = &self.tenant {
            if req.header("x-scope-orgid") != Some(t.as_str()) {
                return (StatusCode::UNAUTHORIZED, "no org id\n").into_response();
            }
        }
        if let Some(a) = &self.authorization {
            if req.header("authorization") != Some(a.as_str()) {
                return (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
            }
        }
        if req.path == "/loki/api/v1/query_range" {
            return self.query_range(req);
        }
        if req.path == "/loki/api/v1/labels" {
            let mut names: Vec<&String> =
                self.streams.iter().flat_map(|s| s.labels.keys()).collect();
            names.sort();
            names.dedup();
            return json_response(StatusCode::OK, json!({"status": "success", "data": names}));
        }
        if let Some(label) = req
            .path
            .strip_prefix("/loki/api/v1/label/")
            .and_then(|r| r.strip_suffix("/values"))
        {
            let mut values: Vec<&String> = self
                .streams
                .iter()
                .filter_map(|s| s.labels.get(label))
                .collect();
            values.sort();
            values.dedup();
            return json_response(StatusCode::OK, json!({"status": "success", "data": values}));
        }
        (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
    }
}

const QUERY_RANGE: &str = "/loki/api/v1/query_range";

/// A's app stream (the node lines) and its syslog stream, which ends with the kernel's OOM
/// kill; B's stream is empty; another instance's stream has an OOM too.
fn loki_streams() -> Vec<LokiStream> {
    let app: Vec<(i64, String)> = a_lines()
        .into_iter()
        .map(|(t, l)| (ns(t), l.to_string()))
        .collect();
    vec![
        stream(&[("instance_id", A), ("job", "app")], app),
        stream(
            &[("instance_id", A), ("job", "syslog")],
            vec![
                (
                    ns(at(9, 59, 0, 0)),
                    "systemd[1]: Started Session 12.".into(),
                ),
                (ns(at(9, 59, 11, 200)), KERNEL_OOM.into()),
            ],
        ),
        stream(
            &[("instance_id", "i-0ccccccccccccccccc"), ("job", "syslog")],
            vec![(ns(at(9, 59, 11, 300)), KERNEL_OOM.into())],
        ),
    ]
}

fn loki_table(url: &str, extra: &str) -> String {
    format!(
        r#"[sources.logs]
kind = "loki"

[sources.logs.loki]
url = "{url}"
selector = '{{instance_id="{{instance_id}}"}}'
{extra}
"#
    )
}

// ------------------------------------------------------------------ Loki tests ------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_last_words_merge_streams_in_time_order() {
    let fake = Fake::start(LokiApi::with(loki_streams())).await;
    let site = Site::new(&loki_table(&fake.url(), ""));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, Some(A_DNS))).await.unwrap();
    let mut expected: Vec<(DateTime<Utc>, &str)> = a_lines()[1..6].to_vec();
    expected.push((at(9, 59, 0, 0), "systemd[1]: Started Session 12."));
    expected.push((at(9, 59, 11, 200), KERNEL_OOM));
    expected.sort_by_key(|(t, _)| *t);
    let got: Vec<(DateTime<Utc>, &str)> = words
        .events
        .iter()
        .map(|e| (e.timestamp, e.message.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert!(!words.truncated);

    // One request: backwards, the selector with A's id, from the launch to one nanosecond
    // after the end (exclusive), as Loki documents query_range.
    let seen = fake.seen_on(QUERY_RANGE);
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "GET");
    assert_eq!(
        s.param("query"),
        Some(r#"{instance_id="i-0aaaaaaaaaaaaaaaa"}"#)
    );
    assert_eq!(s.param("direction"), Some("backward"));
    assert_eq!(s.param("limit"), Some("1000"));
    assert_eq!(s.param("start"), Some(ns(launched()).to_string().as_str()));
    assert_eq!(
        s.param("end"),
        Some((ns(at(10, 7, 0, 0)) + 1).to_string().as_str())
    );
    assert_eq!(
        logs.calls(),
        BTreeMap::from([("loki:query_range".to_string(), 1)])
    );
    // B has no stream: no last words, no error.
    let none = logs.last_words(&query(B, Some(B_DNS))).await.unwrap();
    assert!(none.events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_scan_finds_the_oom_with_tenant_and_basic_auth() {
    let mut api = LokiApi::with(loki_streams());
    api.tenant = Some("team-a".into());
    // "Basic " + base64("epitaph:s3cret")
    api.authorization = Some("Basic ZXBpdGFwaDpzM2NyZXQ=".into());
    let fake = Fake::start(api).await;
    let site = Site::new(&loki_table(
        &fake.url(),
        "tenant_id = \"team-a\"\nusername = \"epitaph\"\npassword_file = \"loki.password\"",
    ));
    std::fs::write(site.path().join("loki.password"), "s3cret\n").unwrap();
    let (report, code, stderr) = scan(&site, &[]).await;
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let a = instance(&report, A);
    assert_eq!(a["verdict"], "oom", "{a:#}");
    let ids = signature_ids(a);
    assert!(ids.contains(&"linux.oom_kill".to_string()), "{a:#}");
    assert_eq!(a["last_words_lines"], 7);
    assert_eq!(instance(&report, B)["last_words_lines"], 0);
    assert_eq!(
        report["summary"]["api_calls"],
        json!({"loki:query_range": 2}),
        "{:#}",
        report["summary"]
    );
    assert_eq!(report["summary"]["api_calls_per_instance"], 1.0);
    for s in fake.seen_on(QUERY_RANGE) {
        assert_eq!(s.header("x-scope-orgid"), Some("team-a"));
        assert_eq!(
            s.header("authorization"),
            Some("Basic ZXBpdGFwaDpzM2NyZXQ=")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_label_value_injection_reaches_the_server_escaped() {
    // Quotes, a backslash, braces, a pipe and a newline: an attempt to close the selector and
    // widen it to every stream.
    const EVIL: &str = "i-1\"} |= \"\" or {job=~\".+\"}\n\\";
    let mut streams = loki_streams();
    streams.push(stream(
        &[("instance_id", EVIL), ("job", "app")],
        vec![(ns(at(9, 59, 0, 0)), "the literal id's line".into())],
    ));
    let fake = Fake::start(LokiApi::with(streams)).await;
    let site = Site::new(&loki_table(&fake.url(), ""));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(EVIL, None)).await.unwrap();
    // The fake read one selector whose value is the id, literally: only that stream's line.
    assert_eq!(messages(&words), ["the literal id's line"]);
    assert_eq!(
        fake.seen_on(QUERY_RANGE)[0].param("query"),
        Some(r#"{instance_id="i-1\"} |= \"\" or {job=~\".+\"}\n\\"}"#)
    );

    // A regex matcher: the id is regex-escaped as well, so `.` matches only a dot.
    let site = Site::new(&loki_table(&fake.url(), "").replace(
        r#"selector = '{instance_id="{instance_id}"}'"#,
        r#"selector = '{instance_id=~"{instance_id}", job="app"}'"#,
    ));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let words = logs
        .last_words(&query("i-0aaaaaaaaaaaaaaa.", None))
        .await
        .unwrap();
    assert!(words.events.is_empty(), "{words:?}");
    assert_eq!(
        fake.seen_on(QUERY_RANGE)[1].param("query"),
        Some(r#"{instance_id=~"i\\-0aaaaaaaaaaaaaaa\\.", job="app"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_429_with_retry_after_is_waited_out_and_retried() {
    let fake = Fake::start(LokiApi::with(loki_streams())).await;
    fake.plan([Canned::new(429, "text/plain", "Ingestion rate limit exceeded\n").retry_after("1")]);
    let site = Site::new(&loki_table(&fake.url(), ""));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, None)).await.unwrap();
    assert_eq!(words.events.len(), 7);
    let seen = fake.seen_on(QUERY_RANGE);
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
    assert_eq!(logs.calls()["loki:query_range"], 2);
    assert_eq!(logs.calls()["loki:query_range (throttled)"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_errors_name_loki_and_what_failed() {
    let fake = Fake::start(LokiApi::with(loki_streams())).await;
    let site = Site::new(&loki_table(&fake.url(), "max_attempts = 2"));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let q = query(A, None);

    // Loki answers a bad query with 400 and plain text.
    fake.plan([Canned::new(
        400,
        "text/plain; charset=utf-8",
        "parse error at line 1, col 15: syntax error: unexpected IDENTIFIER\n",
    )]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "loki: query_range for {A}: HTTP 400: parse error at line 1, col 15"
        )),
        "{err}"
    );
    assert!(err.contains("sources.logs.loki.selector"), "{err}");

    // A JSON error body (query frontends, gateways).
    fake.plan([Canned::new(
        422,
        "application/json",
        json!({"status": "error", "errorType": "bad_data", "error": "max entries limit per query exceeded, limit > max_entries_limit (6000 > 5000)"}).to_string(),
    )]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 422: max entries limit per query exceeded"),
        "{err}"
    );

    // `status: error` in a 200, and an answer that is not streams.
    fake.plan([
        Canned::new(
            200,
            "application/json",
            json!({"status": "error", "error": "context canceled"}).to_string(),
        ),
        Canned::new(
            200,
            "application/json",
            json!({"status": "success", "data": {"resultType": "matrix", "result": []}})
                .to_string(),
        ),
    ]);
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(err.contains("status `error`: context canceled"), "{err}");
    let err = logs.last_words(&q).await.unwrap_err().to_string();
    assert!(err.contains("not log lines"), "{err}");

    // Unreachable: nothing listens there any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let site_dead = Site::new(&loki_table(&dead, "max_attempts = 1"));
    let err = LokiLogs::from_config(&site_dead.config())
        .unwrap()
        .last_words(&q)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("loki: query_range for") && err.contains("could not connect"),
        "{err}"
    );

    // Through a scan: pending with the error, exit 3.
    fake.plan([
        Canned::new(500, "text/plain", "internal server error\n"),
        Canned::new(500, "text/plain", "internal server error\n"),
    ]);
    let (report, code, stderr) = scan(&site, &[]).await;
    assert_eq!(code, 3, "{report:#}\n{stderr}");
    let pending = report["summary"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 2, "{:#}", report["summary"]);
    for p in pending {
        let e = p["error"].as_str().unwrap();
        assert!(
            e.starts_with("logs: loki: query_range for i-")
                && e.contains("HTTP 500: internal server error"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_pages_back_over_equal_timestamps_and_gives_each_line_once() {
    // Nine lines in A's final minute over two streams, pairs sharing a timestamp at every
    // page edge (limit 3), and one old line before the window.
    let t = |s: i64| ns(at(9, 59, 0, 0)) + s * 1_000_000_000;
    let app = vec![
        (t(-120), "old".to_string()),
        (t(0), "l1".into()),
        (t(10), "l2a".into()),
        (t(20), "l3".into()),
        (t(30), "l4a".into()),
        (t(30), "l4b".into()),
        (t(50), "l6a".into()),
    ];
    let sys = vec![
        (t(10), "l2b".to_string()),
        (t(40), "l5".into()),
        (t(50), "l6b".into()),
    ];
    let fake = Fake::start(LokiApi::with(vec![
        stream(&[("instance_id", A), ("job", "app")], app),
        stream(&[("instance_id", A), ("job", "syslog")], sys),
    ]))
    .await;
    let site = Site::new(&loki_table(&fake.url(), "limit = 3"));
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    let words = logs.last_words(&query(A, None)).await.unwrap();

    let mut got = messages(&words);
    assert_time_order(&words);
    got.sort();
    assert_eq!(
        got,
        ["l1", "l2a", "l2b", "l3", "l4a", "l4b", "l5", "l6a", "l6b"],
        "each line of the final minute once: {:?}",
        words.events
    );
    assert!(!words.truncated);
    // Page after page, each ending one nanosecond after the previous page's oldest line.
    let ends: Vec<i64> = fake
        .seen_on(QUERY_RANGE)
        .iter()
        .map(|s| s.param("end").unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        ends,
        vec![
            ns(at(10, 7, 0, 0)) + 1,
            t(40) + 1,
            t(30) + 1,
            t(20) + 1,
            t(10) + 1,
            t(0) + 1,
        ]
    );
    assert_eq!(logs.calls()["loki:query_range"], ends.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_bearer_token_from_a_file() {
    let mut api = LokiApi::with(loki_streams());
    api.authorization = Some("Bearer file-token".into());
    let fake = Fake::start(api).await;
    let site = Site::new(&loki_table(
        &fake.url(),
        "bearer_token_file = \"loki.token\"",
    ));
    std::fs::write(site.path().join("loki.token"), "file-token\n").unwrap();
    let logs = LokiLogs::from_config(&site.config()).unwrap();
    assert_eq!(
        logs.last_words(&query(A, None)).await.unwrap().events.len(),
        7
    );
    let seen = fake.seen_on(QUERY_RANGE);
    assert_eq!(seen[0].header("authorization"), Some("Bearer file-token"));
    assert_eq!(
        seen[0].header("x-scope-orgid"),
        None,
        "no tenant configured"
    );
    // The wrong token: 401, named as refused credentials.
    std::fs::write(site.path().join("loki.token"), "stale").unwrap();
    let err = logs
        .last_words(&query(A, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401: unauthorized") && err.contains("credentials were refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_doctor_checks_labels_and_last_words() {
    let fake = Fake::start(LokiApi::with(loki_streams())).await;
    let site = Site::new(&loki_table(&fake.url(), ""));
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 0, "{list:#}");
    assert_eq!(check(&list, "loki.connection")["status"], "pass");
    assert_eq!(check(&list, "loki.scope")["status"], "pass", "{list:#}");
    let lw = check(&list, "loki.last_words");
    assert_eq!(lw["status"], "warn", "{lw:#}");
    assert!(lw["detail"].as_str().unwrap().contains(A), "{lw:#}");

    // A misspelt label: FAIL with the label that exists.
    site.write_config(&loki_table(&fake.url(), "").replace("{instance_id=", "{instanceid="));
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 2, "{list:#}");
    let scope = check(&list, "loki.scope");
    assert_eq!(scope["status"], "fail");
    let detail = scope["detail"].as_str().unwrap();
    assert!(
        detail.contains("label `instanceid`") && detail.contains("did you mean `instance_id`"),
        "{detail}"
    );

    // Nothing listens: FAIL unreachable, exit 1.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    site.write_config(&loki_table(&dead, "max_attempts = 1"));
    let (list, code) = doctor(&site, &[]).await;
    assert_eq!(code, 1, "{list:#}");
    assert_eq!(check(&list, "loki.connection")["status"], "fail");
}

// ------------------------------------------------------------------ simulated fleet ---------

/// The simulated fleet's log lines: (instance id, time, message), from both export formats
/// the simulator writes (JSON lines and FilterLogEvents pages).
fn simulated_lines(dir: &Path) -> Vec<(String, DateTime<Utc>, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.to_string_lossy().ends_with(".jsonl") {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap();
                let t: DateTime<Utc> = v["timestamp"].as_str().unwrap().parse().unwrap();
                out.push((
                    v["instance_id"].as_str().unwrap().to_string(),
                    t,
                    v["message"].as_str().unwrap().to_string(),
                ));
            }
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            for e in v["events"].as_array().unwrap() {
                let t = Utc
                    .timestamp_millis_opt(e["timestamp"].as_i64().unwrap())
                    .unwrap();
                out.push((
                    e["logStreamName"].as_str().unwrap().to_string(),
                    t,
                    e["message"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// A simulated fleet, its own config (file backends) and a copy of it without a
/// `[sources.logs]` table and with a state of its own, for [`set_logs`].
fn simulated_fleet() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = output_timeout(
        Command::new(bin())
            .args([
                "simulate",
                "--seed",
                "3",
                "--asgs",
                "6",
                "--instances",
                "60",
                "--out",
            ])
            .arg(dir.path()),
        CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file_config = dir.path().join("epitaph.toml");
    let text = std::fs::read_to_string(&file_config).unwrap();
    let start = text.find("[sources.logs]").unwrap();
    let end = start + text[start..].find("[sources.metrics]").unwrap();
    let backend_config = dir.path().join("backend.toml");
    std::fs::write(
        &backend_config,
        format!("{}{}", &text[..start], &text[end..])
            .replace("path = \"epitaph.db\"", "path = \"backend.db\""),
    )
    .unwrap();
    (dir, file_config, backend_config)
}

/// Puts a `[sources.logs]` table into the copy `simulated_fleet` made.
fn set_logs(backend_config: &Path, logs: &str) {
    let text = std::fs::read_to_string(backend_config).unwrap();
    let at = text.find("[sources.metrics]").unwrap();
    std::fs::write(
        backend_config,
        format!("{}{logs}\n{}", &text[..at], &text[at..]),
    )
    .unwrap();
}

fn verdicts(report: &Value) -> BTreeMap<String, String> {
    report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["instance_id"].as_str().unwrap().to_string(),
                i["verdict"].as_str().unwrap().to_string(),
            )
        })
        .chain(report["deployments"].as_array().unwrap().iter().map(|d| {
            (
                d["deployment"].as_str().unwrap().to_string(),
                d["verdict"].as_str().unwrap().to_string(),
            )
        }))
        .collect()
}

/// A scan through the backend gives every instance and deployment the verdict the file
/// backend gives the same fleet, at about one call per instance.
async fn same_verdicts_as_the_file_backend(
    backend: &str,
    file_config: &Path,
    backend_config: &Path,
) {
    let (stdout, stderr, code) = epitaph(file_config, &["--format", "json", "scan"], &[]).await;
    assert_eq!(code, 0, "file scan: {stderr}");
    let by_file: Value = serde_json::from_str(&stdout).unwrap();
    let (stdout, stderr, code) = epitaph(backend_config, &["--format", "json", "scan"], &[]).await;
    assert_eq!(code, 0, "{backend} scan: {stderr}");
    let by_backend: Value = serde_json::from_str(&stdout).unwrap();
    let (a, b) = (verdicts(&by_file), verdicts(&by_backend));
    assert!(a.len() > 60, "instances and deployments: {}", a.len());
    let differ: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: file {v}, {backend} {:?}", b.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{backend} differs from the file backend: {differ:#?}"
    );
    let calls: u64 = by_backend["summary"]["api_calls"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(op, _)| op.starts_with(backend))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    let analysed = by_backend["summary"]["analysed"].as_u64().unwrap();
    println!(
        "{backend}: {calls} calls for {analysed} instances ({:.2} per instance)",
        calls as f64 / analysed as f64
    );
    assert!(
        analysed >= 60 && calls >= analysed,
        "{calls} calls, {analysed} instances"
    );
    assert!(
        calls as f64 <= 1.5 * analysed as f64,
        "{calls} calls for {analysed} instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_scans_alike_through_splunk() {
    // The fleet first (its lines go into the fake), then the config pointing at the fake.
    let (dir, file_config, backend_config) = simulated_fleet();
    let events: Vec<SplunkEvent> = simulated_lines(dir.path())
        .into_iter()
        .map(|(id, time, raw)| SplunkEvent {
            index: "app",
            sourcetype: "app:log",
            host: format!("host-of-{id}"),
            fields: vec![("instance_id", id)],
            time,
            raw,
        })
        .collect();
    let fake = Fake::start(SplunkApi::with(events, "Bearer tok-1")).await;
    let logs = format!(
        "[sources.logs]\nkind = \"splunk\"\n\n[sources.logs.splunk]\nurl = \"{}\"\nindex = \"app\"\ninstance_filter = \"instance_id={{instance_id}}\"\ntoken = \"tok-1\"\n\n",
        fake.url()
    );
    set_logs(&backend_config, &logs);
    same_verdicts_as_the_file_backend("splunk", &file_config, &backend_config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_scans_alike_through_loki() {
    let (dir, file_config, backend_config) = simulated_fleet();
    let mut by_instance: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (id, t, line) in simulated_lines(dir.path()) {
        by_instance.entry(id).or_default().push((ns(t), line));
    }
    let streams: Vec<LokiStream> = by_instance
        .into_iter()
        .map(|(id, mut entries)| {
            entries.sort();
            stream(&[("instance_id", id.as_str()), ("job", "app")], entries)
        })
        .collect();
    let fake = Fake::start(LokiApi::with(streams)).await;
    let logs = format!(
        "[sources.logs]\nkind = \"loki\"\n\n[sources.logs.loki]\nurl = \"{}\"\nselector = '{{instance_id=\"{{instance_id}}\"}}'\n\n",
        fake.url()
    );
    set_logs(&backend_config, &logs);
    same_verdicts_as_the_file_backend("loki", &file_config, &backend_config).await;
}
