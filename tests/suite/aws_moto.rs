//! The AWS path against emulated AWS: moto (started here from `$EPITAPH_MOTO_SERVER`, which
//! `scripts/test.sh` installs and sets) holds the groups, the log events and the metrics; moto records no
//! scaling activities, so a small local front serves `DescribeScalingActivities` in the
//! documented Query/XML shape (paginated, real cause texts from the simulator) and forwards
//! every other request to moto. The front also injects faults: throttling on the activity
//! calls, and 5xx on one instance's log fetch; and it can enforce a GetLogEvents quota as AWS
//! does (a token bucket; 400 ThrottlingException beyond it), under which a scan, and a `serve`
//! scheduled scan together with a burst of on-demand queries, must stay. Every request stays
//! on 127.0.0.1.

use epitaph::sources::aws::sdk::{config as aws_config, credential_types as aws_credential_types};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::Region;
use aws_credential_types::Credentials;
use serde_json::{json, Value};

pub(crate) const REGION: &str = "us-east-1";

/// A moto server on a free port, killed on drop.
pub(crate) struct Moto {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Longest wait for moto to say where it listens.
const MOTO_START_BOUND: Duration = Duration::from_secs(60);

/// moto's server script (its venv also holds boto3).
fn moto_bin() -> PathBuf {
    crate::common::cached_tool("EPITAPH_MOTO_SERVER", "moto5/bin/moto_server")
}

/// moto on a port it picks itself (`-p 0`; it prints "Running on http://HOST:PORT" on
/// stderr): no port is chosen here and released for someone else to take first.
pub(crate) fn start_moto() -> Moto {
    let bin = moto_bin();
    assert!(
        bin.exists(),
        "{} not found: set EPITAPH_MOTO_SERVER, or run `bash scripts/test.sh`, which installs moto[server] into ~/.cache/epitaph-test-tools",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads stderr to its end (moto logs every request there; a full pipe would block it).
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.split("Running on ").nth(1) {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let mut moto = Moto {
        child,
        url: String::new(),
    };
    moto.url = rx
        .recv_timeout(MOTO_START_BOUND)
        .unwrap_or_else(|e| panic!("moto did not say where it listens: {e}"));
    let addr = moto.url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + MOTO_START_BOUND;
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// A GetLogEvents quota's token bucket: (requests per second, tokens at most, tokens now,
/// last refill).
type QuotaBucket = (f64, f64, f64, Option<Instant>);

/// What the front does besides forwarding.
#[derive(Default)]
pub(crate) struct Faults {
    /// Answer this many DescribeScalingActivities calls with a Throttling error first.
    throttle_activities: AtomicUsize,
    /// GetLogEvents / FilterLogEvents requests naming this instance get HTTP 503.
    pub(crate) fail_logs_for: Mutex<Option<String>>,
    /// The first GetLogEvents page for this instance's stream is empty (with a token), as AWS
    /// documents it may be while more events remain; the next page is moto's answer.
    empty_page_for: Mutex<Option<String>>,
    /// The first GetLogEvents request naming this instance is never answered: the front
    /// holds the connection until the client gives up (`aws.attempt_timeout`).
    hang_logs_once_for: Mutex<Option<String>>,
    /// Every GetLogEvents attempt naming this instance is held unanswered (only
    /// `aws.call_timeout` ends the call); `hung_attempts` counts them.
    hang_logs_always_for: Mutex<Option<String>>,
    hung_attempts: AtomicUsize,
    /// GetMetricData answers in two pages: the first with every series empty and a NextToken
    /// (`METRIC_PAGE_TOKEN`), the second moto's whole answer.
    page_metric_data: std::sync::atomic::AtomicBool,
    /// Count of requests seen, by action.
    seen: Mutex<BTreeMap<String, usize>>,
    /// A quota on GetLogEvents, as AWS enforces one per account and region: a token bucket
    /// of (requests per second, tokens at most, tokens now, last refill — none before the
    /// first request); a request without a token gets 400 ThrottlingException. None: no quota.
    log_quota: Mutex<Option<QuotaBucket>>,
    /// GetLogEvents requests the quota refused.
    quota_throttled: AtomicUsize,
    /// Every request signed for one of these regions (SigV4 credential scope), STS's
    /// AssumeRole aside, is answered with this (status line, body) in the Query protocol's
    /// error shape: how AWS answers a denied action, a disabled opt-in region, an endpoint down.
    pub(crate) refuse_region: Mutex<BTreeMap<String, (String, String)>>,
    /// STS AssumeRole of these role ARNs is refused (AccessDenied, as STS answers a role whose
    /// trust policy does not name the caller).
    pub(crate) refuse_roles: Mutex<BTreeSet<String>>,
    /// (signing region, access key id) of every signed request seen (STS's AssumeRole aside:
    /// it is signed with the credentials the role is assumed with).
    pub(crate) signed_with: Mutex<BTreeSet<(String, String)>>,
    /// The AssumeRole requests seen: their form fields, and the signing region as `Region`.
    pub(crate) assume_requests: Mutex<Vec<BTreeMap<String, String>>>,
    /// Access key ids STS (moto) issued, by role ARN: read from the AssumeRole answers passing
    /// through.
    pub(crate) issued: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// The (region, access key id) of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20261129/us-east-1/autoscaling/aws4_request, …`.
fn signed_by(head: &str) -> Option<(String, String)> {
    let auth = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    })?;
    let cred = auth.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = cred.split('/');
    let key = parts.next()?.to_string();
    let region = parts.nth(1)?.to_string();
    Some((region, key))
}

/// The NextToken of the front's first GetMetricData page.
const METRIC_PAGE_TOKEN: &str = "epitaph-metric-page-2";

/// The token the front hands out with an injected empty page.
const EMPTY_PAGE_TOKEN: &str = "b/epitaph-empty-page";

/// The activity front: DescribeScalingActivities from `activities` (group → activities JSON,
/// newest first), everything else forwarded to moto.
pub(crate) fn start_front(
    moto: &str,
    activities: BTreeMap<String, Vec<Value>>,
    faults: Arc<Faults>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let moto_addr = moto.trim_start_matches("http://").to_string();
    let activities = Arc::new(activities);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (activities, faults, moto_addr) =
                (activities.clone(), faults.clone(), moto_addr.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &activities, &faults, &moto_addr);
            });
        }
    });
    url
}

fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(conn, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: 0f1e2d3c\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                }
                out.push(b[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).to_string()
        })
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Activities per page (the API's maximum is 100; smaller pages exercise pagination).
const ACTIVITY_PAGE: usize = 50;

fn serve(
    mut conn: TcpStream,
    activities: &BTreeMap<String, Vec<Value>>,
    faults: &Faults,
    moto_addr: &str,
) -> std::io::Result<()> {
    let (head, body) = read_request(&mut conn)?;
    let text = String::from_utf8_lossy(&body).to_string();
    let target = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("X-Amz-Target: ")
                .or_else(|| l.strip_prefix("x-amz-target: "))
        })
        .unwrap_or("")
        .to_string();
    let action = form_value(&text, "Action")
        .unwrap_or_else(|| target.rsplit('.').next().unwrap_or("").to_string());
    if let Ok(mut seen) = faults.seen.lock() {
        *seen.entry(action.clone()).or_insert(0) += 1;
    }
    let signer = signed_by(&head);
    if let (Some(s), false) = (&signer, action == "AssumeRole") {
        faults.signed_with.lock().unwrap().insert(s.clone());
    }
    if action == "AssumeRole" {
        let mut fields: BTreeMap<String, String> = [
            "RoleArn",
            "RoleSessionName",
            "ExternalId",
            "DurationSeconds",
        ]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), form_value(&text, k)?)))
        .collect();
        if let Some((region, _)) = &signer {
            fields.insert("Region".into(), region.clone());
        }
        let role = fields.get("RoleArn").cloned().unwrap_or_default();
        faults.assume_requests.lock().unwrap().push(fields);
        if faults.refuse_roles.lock().unwrap().contains(&role) {
            return respond(&mut conn, "403 Forbidden", "text/xml", &format!("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/epitaph is not authorized to perform: sts:AssumeRole on resource: {}</Message></Error><RequestId>0f1e2d3c</RequestId></ErrorResponse>", xml_escape(&role)));
        }
    } else if let Some((region, _)) = &signer {
        let refusal = faults.refuse_region.lock().unwrap().get(region).cloned();
        if let Some((status, body)) = refusal {
            return respond(&mut conn, &status, "text/xml", &body);
        }
    }
    if action == "GetLogEvents" {
        let refused = match faults.log_quota.lock().unwrap().as_mut() {
            Some((rate, cap, tokens, at)) => {
                let since = at.map_or(0.0, |t| t.elapsed().as_secs_f64());
                *tokens = (*tokens + since * *rate).min(*cap);
                *at = Some(Instant::now());
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    false
                } else {
                    true
                }
            }
            None => false,
        };
        if refused {
            faults.quota_throttled.fetch_add(1, Ordering::SeqCst);
            return respond(
                &mut conn,
                "400 Bad Request",
                "application/x-amz-json-1.1",
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            );
        }
    }
    if action == "DescribeScalingActivities" {
        if faults.throttle_activities.load(Ordering::SeqCst) > 0 {
            faults.throttle_activities.fetch_sub(1, Ordering::SeqCst);
            return respond(&mut conn, "400 Bad Request", "text/xml", "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>0f1e2d3c</RequestId></ErrorResponse>");
        }
        let group = form_value(&text, "AutoScalingGroupName").unwrap_or_default();
        let start: usize = form_value(&text, "NextToken")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let empty = Vec::new();
        let all = activities.get(&group).unwrap_or(&empty);
        let page = &all[start.min(all.len())..(start + ACTIVITY_PAGE).min(all.len())];
        let mut xml = String::from("<DescribeScalingActivitiesResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><DescribeScalingActivitiesResult><Activities>");
        for a in page {
            xml.push_str("<member>");
            for key in [
                "ActivityId",
                "AutoScalingGroupName",
                "Description",
                "Cause",
                "StartTime",
                "EndTime",
                "StatusCode",
                "Details",
            ] {
                if let Some(v) = a.get(key).and_then(Value::as_str) {
                    xml.push_str(&format!("<{key}>{}</{key}>", xml_escape(v)));
                }
            }
            xml.push_str("<Progress>100</Progress></member>");
        }
        xml.push_str("</Activities>");
        if start + ACTIVITY_PAGE < all.len() {
            xml.push_str(&format!("<NextToken>{}</NextToken>", start + ACTIVITY_PAGE));
        }
        xml.push_str("</DescribeScalingActivitiesResult><ResponseMetadata><RequestId>0f1e2d3c</RequestId></ResponseMetadata></DescribeScalingActivitiesResponse>");
        return respond(&mut conn, "200 OK", "text/xml", &xml);
    }
    let hold = |conn: &mut TcpStream| {
        // Until the client closes the connection: no answer, ever.
        let mut buf = [0u8; 1024];
        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
    };
    if action == "GetLogEvents" {
        let always = faults
            .hang_logs_always_for
            .lock()
            .ok()
            .and_then(|g| g.clone());
        if always.is_some_and(|id| text.contains(id.as_str())) {
            faults.hung_attempts.fetch_add(1, Ordering::SeqCst);
            hold(&mut conn);
            return Ok(());
        }
        let hang = faults
            .hang_logs_once_for
            .lock()
            .ok()
            .and_then(|mut g| g.take_if(|id| text.contains(id.as_str())));
        if hang.is_some() {
            hold(&mut conn);
            return Ok(());
        }
    }
    let failing = faults.fail_logs_for.lock().ok().and_then(|g| g.clone());
    if let Some(id) = failing {
        if (action == "GetLogEvents" || action == "FilterLogEvents") && text.contains(&id) {
            return respond(&mut conn, "503 Service Unavailable", "application/x-amz-json-1.1", "{\"__type\":\"ServiceUnavailableException\",\"message\":\"injected by the test front\"}");
        }
    }
    let mut body = body;
    let empty_for = faults.empty_page_for.lock().ok().and_then(|g| g.clone());
    if let Some(id) = empty_for {
        if action == "GetLogEvents" && text.contains(&id) {
            let mut req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match req.get("nextToken").and_then(Value::as_str) {
                None => {
                    let page = format!("{{\"events\":[],\"nextBackwardToken\":\"{EMPTY_PAGE_TOKEN}\",\"nextForwardToken\":\"f/epitaph-empty-page\"}}");
                    return respond(&mut conn, "200 OK", "application/x-amz-json-1.1", &page);
                }
                // Our token: ask moto for the first page, as if the empty one never was.
                Some(EMPTY_PAGE_TOKEN) => {
                    if let Some(o) = req.as_object_mut() {
                        o.remove("nextToken");
                    }
                    body = serde_json::to_vec(&req).unwrap_or(body);
                }
                Some(_) => {}
            }
        }
    }
    // GetMetricData in two pages: the first (no token) comes back with empty series and our
    // token; the second (our token, removed before forwarding) is moto's whole answer.
    let mut first_metric_page = false;
    if action == "GetMetricData" && faults.page_metric_data.load(Ordering::SeqCst) {
        if form_value(&text, "NextToken").as_deref() == Some(METRIC_PAGE_TOKEN) {
            body = text
                .split('&')
                .filter(|kv| !kv.starts_with("NextToken="))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes();
        } else {
            first_metric_page = true;
        }
    }
    // Forward to moto, one request per connection.
    let mut upstream = TcpStream::connect(moto_addr)?;
    let head = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("content-length:")
        })
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\r\n");
    upstream.write_all(
        format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    upstream.write_all(&body)?;
    let mut resp = Vec::new();
    upstream.read_to_end(&mut resp)?;
    if action == "AssumeRole" {
        let text = String::from_utf8_lossy(&resp);
        let key = text
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|r| r.split("</AccessKeyId>").next());
        if let (Some(key), Some(role)) =
            (key, form_value(&String::from_utf8_lossy(&body), "RoleArn"))
        {
            faults
                .issued
                .lock()
                .unwrap()
                .entry(role)
                .or_default()
                .insert(key.to_string());
        }
    }
    if first_metric_page {
        let text = String::from_utf8_lossy(&resp);
        let xml = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let emptied = regex::Regex::new(r"(?s)<(Timestamps|Values)>.*?</(Timestamps|Values)>")
            .unwrap()
            .replace_all(xml, "<$1/>")
            .replace(
                "</GetMetricDataResult>",
                &format!("<NextToken>{METRIC_PAGE_TOKEN}</NextToken></GetMetricDataResult>"),
            );
        return respond(&mut conn, "200 OK", "text/xml", &emptied);
    }
    conn.write_all(&resp)
}

// ---------------------------------------------------------------- loading moto --------------

pub(crate) fn creds() -> Credentials {
    Credentials::new("testing", "testing", None, None, "epitaph-tests")
}

/// The script that seeds moto through boto3 (its venv is moto's).
const SEED_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws/seed.py");

/// Makes `calls` against moto at `url` through boto3 (`tests/aws/seed.py`: each call is
/// `{"service", "op", "args"}`, optionally `"region"` and `"ignore"`: error codes that are
/// fine) and returns their answers.
pub(crate) fn boto3(url: &str, region: &str, calls: Vec<Value>) -> Vec<Value> {
    let spec = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        spec.path(),
        serde_json::to_vec(&json!({"endpoint": url, "region": region, "calls": calls})).unwrap(),
    )
    .unwrap();
    let python = moto_bin().with_file_name("python");
    let out = crate::common::output_timeout(
        Command::new(&python).arg(SEED_SCRIPT).arg(spec.path()),
        crate::common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "boto3 seeding: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The boto3 calls that create a log stream (and its group unless it exists) and put
/// `events` (millis, message) into it, in batches PutLogEvents accepts.
pub(crate) fn put_log_events_calls(
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) -> Vec<Value> {
    let mut calls = vec![
        json!({"service": "logs", "op": "create_log_group",
               "args": {"logGroupName": group}, "ignore": ["ResourceAlreadyExistsException"]}),
        json!({"service": "logs", "op": "create_log_stream",
               "args": {"logGroupName": group, "logStreamName": stream}}),
    ];
    for chunk in events.chunks(LOG_EVENTS_PER_PUT) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": if m.is_empty() { " " } else { m.as_str() }}))
            .collect();
        calls.push(json!({"service": "logs", "op": "put_log_events",
                          "args": {"logGroupName": group, "logStreamName": stream, "logEvents": batch}}));
    }
    calls
}

/// Events per PutLogEvents call when seeding (the API takes up to 10,000 and 1 MB).
const LOG_EVENTS_PER_PUT: usize = 5000;

/// Datums per PutMetricData call when seeding.
pub(crate) const METRIC_DATA_PER_PUT: usize = 1000;

/// A `mem_used_percent` datum (percent) for boto3's PutMetricData: seconds since the epoch,
/// the value, and the dimensions.
pub(crate) fn memory_datum(t: i64, v: f64, dimensions: &[(&str, &str)]) -> Value {
    let dims: Vec<Value> = dimensions
        .iter()
        .map(|(n, v)| json!({"Name": n, "Value": v}))
        .collect();
    json!({"MetricName": "mem_used_percent", "Dimensions": dims, "Timestamp": t,
           "Value": v, "Unit": "Percent"})
}

/// A target on `url` (moto) with the test credentials, built as `AwsContext::load` builds
/// each target.
pub(crate) fn target(url: &str) -> epitaph::sources::aws::Target {
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(creds()),
        )
        .http_client(epitaph::sources::aws::http_client())
        .endpoint_url(url)
        .build();
    epitaph::sources::aws::Target::new(REGION.into(), &conf, &epitaph::config::AwsConfig::default())
        .unwrap()
}

/// Log events of a simulated fleet, by instance: (millis, message).
fn fleet_logs(dir: &Path) -> BTreeMap<String, Vec<(i64, String)>> {
    let mut out: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        if text.starts_with("{\"events\"") {
            let doc: Value = serde_json::from_str(&text).unwrap();
            for e in doc["events"].as_array().unwrap() {
                out.entry(e["logStreamName"].as_str().unwrap().to_string())
                    .or_default()
                    .push((
                        e["timestamp"].as_i64().unwrap(),
                        e["message"].as_str().unwrap().to_string(),
                    ));
            }
        } else {
            for line in text.lines() {
                let e: Value = serde_json::from_str(line).unwrap();
                let t = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
                out.entry(e["instance_id"].as_str().unwrap().to_string())
                    .or_default()
                    .push((t, e["message"].as_str().unwrap().to_string()));
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Memory samples of a simulated fleet, by instance: (seconds, value).
fn fleet_metrics(dir: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("metrics")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        if text.starts_with('{') {
            let doc: Value = serde_json::from_str(&text).unwrap();
            for r in doc["data"]["result"].as_array().unwrap() {
                let id = r["metric"]["instance_id"].as_str().unwrap().to_string();
                for v in r["values"].as_array().unwrap() {
                    out.entry(id.clone()).or_default().push((
                        v[0].as_i64().unwrap(),
                        v[1].as_str().unwrap().parse().unwrap(),
                    ));
                }
            }
        } else {
            for line in text.lines().skip(1) {
                let mut c = line.split(',');
                let (t, id, v) = (c.next().unwrap(), c.next().unwrap(), c.next().unwrap());
                out.entry(id.to_string()).or_default().push((
                    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp(),
                    v.parse().unwrap(),
                ));
            }
        }
    }
    out
}

pub(crate) fn fleet_activities(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("activities")).unwrap().flatten() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        let acts = doc["Activities"].as_array().unwrap().clone();
        let group = acts[0]["AutoScalingGroupName"]
            .as_str()
            .unwrap()
            .to_string();
        out.insert(group, acts);
    }
    out
}

/// A memory percentage no machine reports; loaded once into moto (see `load_fleet_into_moto`).
const IMPOSSIBLE_PERCENT: f64 = 99_999.0;
const LOG_GROUP: &str = "/epitaph/app";
/// Fleets at least this large are the calls-per-instance benchmark (benches/aws_calls.sh):
/// moto answers GetMetricData in time proportional to queries × stored datapoints (minutes for
/// 500 queries over 150,000 points), so there each instance's metrics are cut to its final
/// `BENCH_TAIL_POINTS` samples. Call counts depend on batches and pages, not on points; the
/// verdict checks are left to the full-data run.
const BENCH_MIN_INSTANCES: usize = 1000;
/// Test fleet size. moto's GetMetricData loops over every period of the requested range for
/// every query and scans every stored datapoint in the range each time, so its cost grows as
/// queries × periods × datapoints: 60 instances with a 7-day lookback took ~200 s and hit the
/// timeout on a busy machine. 30 instances with a lookback that covers the simulated window
/// (instances live at most ~2 days there) are ~10× cheaper and still hold several deployments
/// of every verdict.
const TEST_INSTANCES: usize = 21;
/// Covers the simulated fleet's longest life with margin; the default 7 days only multiplies
/// moto's periods.
const SERIES_LOOKBACK: &str = "3d";
/// SDK attempts per call: the failing instance's log fetch is tried this many times.
const MAX_ATTEMPTS: usize = 4;
const BENCH_TAIL_POINTS: usize = 12;

pub(crate) async fn load_fleet_into_moto(moto: &str, dir: &Path, metric_tail: Option<usize>) {
    let mut calls = vec![json!({"service": "logs", "op": "create_log_group",
                                "args": {"logGroupName": LOG_GROUP}})];
    for (id, events) in fleet_logs(dir) {
        calls.extend(put_log_events_calls(LOG_GROUP, &id, &events));
    }
    let mut datums = Vec::new();
    for (n, (id, mut pts)) in fleet_metrics(dir).into_iter().enumerate() {
        // One impossible datapoint (99,999 % — an agent bug) in the first series: skipped and
        // counted, never a peak or a restart.
        if n == 0 {
            if let Some(&(t, _)) = pts.last() {
                pts.push((t + 1, IMPOSSIBLE_PERCENT));
            }
        }
        let skip = metric_tail.map_or(0, |k| pts.len().saturating_sub(k));
        for (t, v) in pts.into_iter().skip(skip) {
            datums.push(memory_datum(t, v, &[("InstanceId", &id)]));
        }
    }
    for chunk in datums.chunks(METRIC_DATA_PER_PUT) {
        calls.push(json!({"service": "cloudwatch", "op": "put_metric_data",
                          "args": {"Namespace": "CWAgent", "MetricData": chunk}}));
    }
    boto3(moto, REGION, calls);
}

pub(crate) fn write_config(dir: &Path, front: &str, groups: &[String]) -> PathBuf {
    let sim = std::fs::read_to_string(dir.join("epitaph.toml")).unwrap();
    let since = sim.lines().find(|l| l.starts_with("since")).unwrap();
    let until = sim.lines().find(|l| l.starts_with("until")).unwrap();
    let groups = groups
        .iter()
        .map(|g| format!("\"{g}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[scan]\n{since}\n{until}\nseries_lookback = \"{SERIES_LOOKBACK}\"\nconcurrency = 8\nfetch_timeout = \"600s\"\n\n[deployment]\nidentity = \"asg\"\n\n[state]\npath = \"aws-state.db\"\n\n\
         [aws]\nregion = \"{REGION}\"\nendpoint_url = \"{front}\"\nmax_attempts = {MAX_ATTEMPTS}\nattempt_timeout = \"300s\"\ncall_timeout = \"600s\"\n\n\
         [sources.activities]\nkind = \"aws\"\ngroups = [{groups}]\n\n[sources.logs]\nkind = \"aws\"\nlog_group = \"{LOG_GROUP}\"\n\n\
         [sources.metrics]\nkind = \"aws\"\nperiod = \"300s\"\n"
    );
    let p = dir.join("aws.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) fn epitaph(config: &Path, args: &[&str]) -> (Value, i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .arg("--config")
        .arg(config)
        .args(["--format", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    json_answer(&out)
}

/// A `--format json` run's answer: (stdout as JSON, exit code, stderr); stdout that is not
/// JSON fails the test with both streams.
pub(crate) fn json_answer(out: &std::process::Output) -> (Value, i32, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (v, out.status.code().unwrap_or(-1), stderr)
}

fn simulate(dir: &Path, instances: usize) -> Value {
    // Recent times: moto drops log events older than 14 days.
    let end = (chrono::Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .args(["simulate", "--out"])
        .arg(dir)
        .args([
            "--seed",
            "21",
            "--instances",
            &instances.to_string(),
            // No running instances: moto's GetMetricData cost grows with every stored
            // datapoint, and the groups' live instances here are moto's own.
            "--running",
            "0",
            "--end",
            &end,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_against_moto_survives_throttling_and_a_failing_instance() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let n: usize = std::env::var("EPITAPH_AWS_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TEST_INSTANCES);
    let truth = simulate(dir.path(), n);
    let bench = n >= BENCH_MIN_INSTANCES;
    load_fleet_into_moto(&moto.url, dir.path(), bench.then_some(BENCH_TAIL_POINTS)).await;
    let activities = fleet_activities(dir.path());
    let groups: Vec<String> = activities.keys().cloned().collect();
    let faults = Arc::new(Faults::default());
    // Throttle the first activity calls (the SDK backs off and retries), and fail one
    // instance's log fetch on every attempt.
    faults.throttle_activities.store(3, Ordering::SeqCst);
    let victim = truth["instances"]
        .as_object()
        .unwrap()
        .keys()
        .nth(7)
        .unwrap()
        .clone();
    *faults.fail_logs_for.lock().unwrap() = Some(victim.clone());
    // Another instance's first GetLogEvents page comes back empty, with a token.
    let late = truth["instances"]
        .as_object()
        .unwrap()
        .keys()
        .nth(11)
        .unwrap()
        .clone();
    *faults.empty_page_for.lock().unwrap() = Some(late.clone());
    let front = start_front(&moto.url, activities, faults.clone());
    let config = write_config(dir.path(), &front, &groups);

    let (first, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "one instance pending → exit 3; stderr: {stderr}");
    let pending: Vec<&str> = first["summary"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["instance_id"].as_str())
        .collect();
    assert_eq!(pending, vec![victim.as_str()], "{}", first["summary"]);
    assert!(
        first["summary"]["pending"][0]["error"]
            .as_str()
            .unwrap()
            .contains("503")
            || first["summary"]["pending"][0]["error"]
                .as_str()
                .unwrap()
                .contains("ServiceUnavailable"),
        "{}",
        first["summary"]["pending"]
    );
    assert_eq!(first["instances"].as_array().unwrap().len(), n - 1);
    let seen = faults.seen.lock().unwrap().clone();
    assert!(
        seen["DescribeScalingActivities"] > groups.len(),
        "throttled calls were retried: {seen:?}"
    );
    // The failing instance's 503 was retried by the SDK (every attempt reached the front),
    // while the summary counts logical calls: one per instance, two for the one whose first
    // page was empty.
    assert!(
        seen["GetLogEvents"] >= n + MAX_ATTEMPTS,
        "the 503 was retried {MAX_ATTEMPTS} times: {seen:?}"
    );
    // Reading went on past the empty page: the instance has its last words.
    let late_report = first["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == late.as_str())
        .unwrap_or_else(|| panic!("{late} analysed"));
    assert!(
        late_report["last_words_lines"].as_u64().unwrap() > 0,
        "an empty first page is not the end of the stream: {late_report}"
    );

    // The impossible datapoint was skipped and counted, with where it came from.
    assert_eq!(
        first["summary"]["skipped_records"], 1,
        "{}",
        first["summary"]
    );
    // Verdicts match the simulator's truth.
    let truth_instances = truth["instances"].as_object().unwrap();
    let correct = first["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| truth_instances[i["instance_id"].as_str().unwrap()] == i["verdict"])
        .count();
    println!(
        "verdicts correct: {correct}/{}; api calls {}",
        n - 1,
        first["summary"]["api_calls"]
    );
    assert!(
        bench || correct as f64 >= 0.95 * (n - 1) as f64,
        "{correct}/{} correct",
        n - 1
    );
    // One log call per instance fetched; metrics batched 500 per call; a page or two of
    // activities per group. On 1,000 instances that is ≤ 1.1 calls per instance
    // (benches/aws_calls.sh runs this test at that size).
    let calls = &first["summary"]["api_calls"];
    assert_eq!(calls["logs:GetLogEvents"], n as u64 + 1, "{calls}");
    assert_eq!(
        calls["cloudwatch:GetMetricData"].as_u64().unwrap(),
        n.div_ceil(500) as u64,
        "{calls}"
    );
    assert!(
        calls["autoscaling:DescribeScalingActivities"]
            .as_u64()
            .unwrap() as usize
            <= groups.len() * (2 * n / groups.len() / ACTIVITY_PAGE + 2),
        "{calls}"
    );
    let per_instance = first["summary"]["api_calls_per_instance"].as_f64().unwrap();
    println!(
        "BENCH instances={n} calls_per_instance={per_instance:.3} scan_ms={}",
        first["summary"]["duration_ms"]
    );
    if n >= 1000 {
        assert!(per_instance <= 1.1, "calls per instance {per_instance}");
    }
    let deployments = first["deployments"].as_array().unwrap();
    assert!(
        bench || deployments.len() >= groups.len(),
        "every group has a finding: {deployments:?}"
    );
    for d in deployments.iter().filter(|_| !bench) {
        let name = d["deployment"].as_str().unwrap();
        let expected: Vec<&str> = truth["deployments"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.split(':').next() == Some(name))
            .map(|(_, v)| v.as_str().unwrap())
            .collect();
        // A group with one deployment must get its verdict; the first group mixes a healthy
        // release with the leaking one that replaced it, and is leaking.
        let want = if expected.len() == 1 {
            expected[0]
        } else {
            "leaking"
        };
        assert_eq!(d["verdict"], want, "{name}: {}", d["summary"]);
    }

    // The failure clears: a plain rerun retries the pending instance and nothing else.
    *faults.fail_logs_for.lock().unwrap() = None;
    let config_path = config.clone();
    let (second, code, stderr) = tokio::task::spawn_blocking(move || epitaph(&config, &["scan"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["summary"]["retried"], 1);
    assert_eq!(second["summary"]["analysed"], 1);
    assert!(second["summary"]["pending"].as_array().unwrap().is_empty());
    if bench {
        return;
    }

    // A misspelt metric name: every series comes back empty. The scan says the evidence
    // collapsed (exit 4, named in the summary) and no deployment is called healthy for it.
    let text = std::fs::read_to_string(&config_path).unwrap();
    let wrong_metric = dir.path().join("wrong-metric.toml");
    std::fs::write(
        &wrong_metric,
        text.replace("aws-state.db", "wrong-metric.db").replace(
            "kind = \"aws\"\nperiod",
            "kind = \"aws\"\nmetric_name = \"mem_used_precent\"\nperiod",
        ),
    )
    .unwrap();
    let (third, code, stderr) = tokio::task::spawn_blocking({
        let c = wrong_metric.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 4, "evidence collapsed → exit 4; stderr: {stderr}");
    let collapsed = third["summary"]["coverage"]["collapsed"]
        .as_array()
        .unwrap();
    assert_eq!(collapsed.len(), 1, "{}", third["summary"]["coverage"]);
    assert!(
        collapsed[0].as_str().unwrap().contains("sources.metrics"),
        "{collapsed:?}"
    );
    assert!(stderr.contains("evidence collapsed"), "{stderr}");
    assert_eq!(third["summary"]["coverage"]["memory"]["with_evidence"], 0);

    // A misspelt log group is an error naming the key, for every instance (all kept pending,
    // exit 3), never a fleet of instances without last words.
    let wrong_group = dir.path().join("wrong-group.toml");
    std::fs::write(
        &wrong_group,
        text.replace("aws-state.db", "wrong-group.db").replace(
            &format!("log_group = \"{LOG_GROUP}\""),
            "log_group = \"/epitaph/ap\"",
        ),
    )
    .unwrap();
    let (fourth, code, stderr) =
        tokio::task::spawn_blocking(move || epitaph(&wrong_group, &["scan"]))
            .await
            .unwrap();
    assert_eq!(code, 3, "{stderr}");
    let pending = fourth["summary"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), n, "{}", fourth["summary"]);
    assert!(
        pending.iter().all(|p| p["error"]
            .as_str()
            .unwrap()
            .contains("sources.logs.log_group")),
        "{pending:?}"
    );
}

/// `aws.attempt_timeout` in the hung-attempt test: healthy calls to moto take milliseconds,
/// so this is generous; the hung attempt never ends by itself.
const HUNG_TEST_ATTEMPT_TIMEOUT: &str = "20s";
/// `aws.call_timeout` there: two attempts and a backoff fit, the attempt budget does not.
const HUNG_TEST_CALL_TIMEOUT: &str = "45s";
/// `aws.max_attempts` there: without the call timeout, the stuck call would run 10 × 20 s.
const HUNG_TEST_MAX_ATTEMPTS: usize = 10;

/// A log fetch whose first attempt hangs forever is cut by `aws.attempt_timeout` and retried
/// (the SDK's standard retry), and the instance gets its last words; one whose every attempt
/// hangs is cut by `aws.call_timeout` and stays pending; memory that comes in two
/// GetMetricData pages is put together. The configured timeouts reach the clients, and a hang
/// costs one instance, not the scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_calls_are_cut_by_their_timeouts_and_metric_pages_are_followed() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let truth = simulate(dir.path(), 21);
    load_fleet_into_moto(&moto.url, dir.path(), Some(BENCH_TAIL_POINTS)).await;
    let activities = fleet_activities(dir.path());
    let groups: Vec<String> = activities.keys().cloned().collect();
    let faults = Arc::new(Faults::default());
    let victim = truth["instances"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    *faults.hang_logs_once_for.lock().unwrap() = Some(victim.clone());
    // Another instance: every attempt hangs; only the call timeout ends it.
    let stuck = truth["instances"]
        .as_object()
        .unwrap()
        .keys()
        .nth(1)
        .unwrap()
        .clone();
    *faults.hang_logs_always_for.lock().unwrap() = Some(stuck.clone());
    // And memory comes in two GetMetricData pages.
    faults.page_metric_data.store(true, Ordering::SeqCst);
    let front = start_front(&moto.url, activities, faults.clone());
    let config = write_config(dir.path(), &front, &groups);
    let text = std::fs::read_to_string(&config).unwrap();
    let attempts = format!("max_attempts = {MAX_ATTEMPTS}");
    for setting in [
        "attempt_timeout = \"300s\"",
        "call_timeout = \"600s\"",
        &attempts,
    ] {
        assert!(text.contains(setting), "{setting}");
    }
    std::fs::write(
        &config,
        text.replace(
            "attempt_timeout = \"300s\"",
            &format!("attempt_timeout = \"{HUNG_TEST_ATTEMPT_TIMEOUT}\""),
        )
        .replace(
            "call_timeout = \"600s\"",
            &format!("call_timeout = \"{HUNG_TEST_CALL_TIMEOUT}\""),
        )
        .replace(
            &attempts,
            &format!("max_attempts = {HUNG_TEST_MAX_ATTEMPTS}"),
        ),
    )
    .unwrap();
    let (report, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert!(
        faults.hang_logs_once_for.lock().unwrap().is_none(),
        "the victim's first attempt was held"
    );
    // The stuck instance: cut by the call timeout after a few attempts (never all of them),
    // kept pending; exit 3.
    let pending: Vec<&str> = report["summary"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["instance_id"].as_str())
        .collect();
    assert_eq!(
        pending,
        vec![stuck.as_str()],
        "{stderr}\n{}",
        report["summary"]
    );
    assert_eq!(code, 3, "{stderr}");
    let hung = faults.hung_attempts.load(Ordering::SeqCst);
    assert!(
        (1..HUNG_TEST_MAX_ATTEMPTS).contains(&hung),
        "{hung} attempts: the call timeout, not the attempt budget, ended the call"
    );
    // Memory came in two pages and was put together: every analysed instance that has a
    // series in the export has one in the report (page 1 alone has none).
    assert_eq!(
        report["summary"]["api_calls"]["cloudwatch:GetMetricData"], 2,
        "{}",
        report["summary"]["api_calls"]
    );
    let with_series = fleet_metrics(dir.path())
        .iter()
        .filter(|(id, pts)| **id != stuck && !pts.is_empty())
        .count();
    assert_eq!(
        report["summary"]["coverage"]["memory"]["with_evidence"], with_series,
        "{}",
        report["summary"]["coverage"]
    );
    let victim_report = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == victim.as_str())
        .unwrap_or_else(|| panic!("{victim} analysed"));
    assert!(
        victim_report["last_words_lines"].as_u64().unwrap() > 0,
        "{victim_report}"
    );
    let seen = faults.seen.lock().unwrap().clone();
    let n = truth["instances"].as_object().unwrap().len();
    assert!(
        seen["GetLogEvents"] > n,
        "the hung attempt was retried: {seen:?}"
    );
    // The summary counts logical calls: one per instance, not the retried attempt.
    assert_eq!(
        report["summary"]["api_calls"]["logs:GetLogEvents"], n as u64,
        "{}",
        report["summary"]["api_calls"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_running_instances_come_from_auto_scaling() {
    let moto = start_moto();
    let answers = boto3(
        &moto.url,
        REGION,
        vec![
            json!({"service": "autoscaling", "op": "create_launch_configuration",
                   "args": {"LaunchConfigurationName": "web-v7", "ImageId": "ami-12c6146b",
                            "InstanceType": "t3.micro"}}),
            json!({"service": "autoscaling", "op": "create_auto_scaling_group",
                   "args": {"AutoScalingGroupName": "web", "LaunchConfigurationName": "web-v7",
                            "MinSize": 2, "MaxSize": 4, "DesiredCapacity": 2,
                            "AvailabilityZones": ["us-east-1a"]}}),
            json!({"service": "autoscaling", "op": "describe_auto_scaling_groups",
                   "args": {"AutoScalingGroupNames": ["web"]}}),
        ],
    );
    let ids: Vec<String> = answers[2]["AutoScalingGroups"][0]["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["InstanceId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    boto3(
        &moto.url,
        REGION,
        vec![json!({"service": "logs", "op": "create_log_group",
                    "args": {"logGroupName": LOG_GROUP}})],
    );
    // No groups configured: every group in the region is listed (and its inventory recorded).
    let text = format!(
        "[deployment]\nidentity = \"launch_template\"\n[state]\npath = \"s.db\"\n[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n\
         [sources.activities]\nkind = \"aws\"\n[sources.logs]\nkind = \"aws\"\nlog_group = \"{LOG_GROUP}\"\n[sources.metrics]\nkind = \"aws\"\n",
        moto.url
    );
    let config = dir.path().join("inv.toml");
    std::fs::write(&config, text).unwrap();
    let (inv, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        let id = ids[0].clone();
        move || epitaph(&c, &["instance", &id])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(inv["status"], "no_termination", "{inv}");
    assert_eq!(inv["in_service"], true, "{inv}");
    assert_eq!(inv["asg"], "web", "{inv}");

    let store = epitaph::store::SqliteStore::open(&dir.path().join("s.db"))
        .await
        .unwrap();
    let known = epitaph::store::Store::inventory(&store, &ids)
        .await
        .unwrap();
    assert_eq!(known.len(), 2);
    let info = &known[&ids[0]];
    assert_eq!(info.asg.as_deref(), Some("web"));
    assert_eq!(info.launch_configuration.as_deref(), Some("web-v7"));
    // What only EC2 says (DescribeInstances over the Query API): the host names log backends
    // know the instance by, its launch time and state — recorded while it lives.
    // The truth from another client: boto3 (moto's own dependency, in its venv).
    let truth = boto3_describe_instance(&moto.url, &ids[0]);
    assert!(
        info.private_dns.as_deref().is_some_and(|d| !d.is_empty()),
        "{info:?}"
    );
    assert_eq!(
        info.private_dns.as_deref(),
        truth["dns"].as_str(),
        "{info:?}"
    );
    assert_eq!(info.private_ip.as_deref(), truth["ip"].as_str(), "{info:?}");
    assert_eq!(info.ec2_state.as_deref(), truth["state"].as_str());
    assert_eq!(info.ec2_state.as_deref(), Some("running"));
    assert_eq!(
        info.launch_time.map(|t| t.timestamp()),
        truth["launch"].as_i64(),
        "{info:?}"
    );
}

/// What boto3 reads from moto's EC2 for one instance: `{dns, ip, state, launch}`.
fn boto3_describe_instance(url: &str, id: &str) -> Value {
    let python = moto_bin().with_file_name("python");
    let script = format!(
        "import boto3, json\n\
         c = boto3.client('ec2', endpoint_url='{url}', region_name='{REGION}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         i = c.describe_instances(InstanceIds=['{id}'])['Reservations'][0]['Instances'][0]\n\
         print(json.dumps({{'dns': i['PrivateDnsName'], 'ip': i['PrivateIpAddress'], 'state': i['State']['Name'], 'launch': int(i['LaunchTime'].timestamp())}}))\n"
    );
    let out = crate::common::output_timeout(
        Command::new(&python).args(["-c", &script]),
        crate::common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The quota-enforcing front's GetLogEvents rate in the quota test (requests per second), and
/// epitaph's own limit under it (its default is 80 % of the documented 25/s).
const QUOTA_PER_SEC: f64 = 10.0;
const LIMIT_PER_SEC: f64 = 8.0;
/// The front's bucket: this many seconds' worth of requests at most (AWS's buckets burst too).
const QUOTA_BURST_SECS: f64 = 3.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_under_an_enforced_quota_analyses_every_instance() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let truth = simulate(dir.path(), TEST_INSTANCES);
    load_fleet_into_moto(&moto.url, dir.path(), None).await;
    let activities = fleet_activities(dir.path());
    let groups: Vec<String> = activities.keys().cloned().collect();
    let faults = Arc::new(Faults::default());
    // The bucket starts empty at the first GetLogEvents: that request is refused whatever the
    // machine's pace, so the throttle path (recognised, slowed, retried, counted) always runs.
    *faults.log_quota.lock().unwrap() =
        Some((QUOTA_PER_SEC, QUOTA_PER_SEC * QUOTA_BURST_SECS, 0.0, None));
    let front = start_front(&moto.url, activities, faults.clone());
    let config = write_config(dir.path(), &front, &groups);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[aws]\n",
        &format!("[aws]\nrate_limits = {{ \"logs:GetLogEvents\" = {LIMIT_PER_SEC} }}\n"),
    );
    std::fs::write(&config, text).unwrap();

    let (report, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}\n{}", report["summary"]);
    // Every termination analysed: whatever the quota refused was retried.
    assert_eq!(
        report["summary"]["analysed"].as_u64().unwrap() as usize,
        truth["instances"].as_object().unwrap().len(),
        "{}",
        report["summary"]
    );
    // What the front refused, epitaph counted as throttled (how many beyond the first depends
    // on the machine's pace, which this test does not judge).
    let calls = &report["summary"]["api_calls"];
    let refused = faults.quota_throttled.load(Ordering::SeqCst) as u64;
    assert!(refused >= 1, "the first request is always refused");
    assert_eq!(
        calls["logs:GetLogEvents (throttled)"].as_u64().unwrap_or(0),
        refused,
        "{calls}"
    );
    let sent = calls["logs:GetLogEvents"].as_u64().unwrap();
    println!("GetLogEvents under a {QUOTA_PER_SEC}/s quota at {LIMIT_PER_SEC}/s: {sent} sent, {refused} throttled");
}

/// The shared-quota test: the front's GetLogEvents quota (requests per second; its bucket
/// holds one second's worth and is full at start, as an idle account's is), epitaph's limit
/// under it, the on-demand queries sent at once while the scheduled scan runs, and the
/// throttled requests tolerated over the whole test. One limiter shared by the scan and the
/// queries never sends more than 8 + 8·t requests by time t against the front's 10 + 10·t:
/// only a request held up on its way (over a quarter of a second) can be refused, and each
/// refusal halves the rate. A limiter per caller (or none) sends up to twice that, and the
/// front refuses the excess.
const SHARED_QUOTA_PER_SEC: f64 = 10.0;
const SHARED_LIMIT_PER_SEC: f64 = 8.0;
const BURST_QUERIES: usize = 12;
const SHARED_MAX_THROTTLED: usize = 2;
/// Safety nets only (nothing here is judged by time): the scheduled scan's start and end.
const SERVE_SCAN_BOUND: Duration = Duration::from_secs(600);
const SERVE_TOKEN: &str = "quota-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_scan_and_an_on_demand_burst_share_one_quota() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let truth = simulate(dir.path(), TEST_INSTANCES);
    load_fleet_into_moto(&moto.url, dir.path(), Some(BENCH_TAIL_POINTS)).await;
    let activities = fleet_activities(dir.path());
    let groups: Vec<String> = activities.keys().cloned().collect();
    let faults = Arc::new(Faults::default());
    *faults.log_quota.lock().unwrap() = Some((
        SHARED_QUOTA_PER_SEC,
        SHARED_QUOTA_PER_SEC,
        SHARED_QUOTA_PER_SEC,
        None,
    ));
    let front = start_front(&moto.url, activities, faults.clone());
    let config = write_config(dir.path(), &front, &groups);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[aws]\n",
        &format!("[aws]\nrate_limits = {{ \"logs:GetLogEvents\" = {SHARED_LIMIT_PER_SEC} }}\n"),
    );
    std::fs::write(&config, text).unwrap();

    // A scan every second: the first starts as soon as serve is up.
    let serve = crate::common::spawn_serve_config(
        &config,
        SERVE_TOKEN,
        "* * * * * *",
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let client = reqwest::Client::new();
    let latest = || async {
        let r = client
            .get(format!("{}/v1/scans/latest", serve.base))
            .bearer_auth(SERVE_TOKEN)
            .send()
            .await
            .unwrap();
        match r.status() {
            reqwest::StatusCode::OK => Some(r.json::<Value>().await.unwrap()),
            _ => None,
        }
    };
    let deadline = Instant::now() + SERVE_SCAN_BOUND;
    while latest().await.is_none() {
        assert!(
            Instant::now() < deadline,
            "no scheduled scan started: {}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The burst, while the scan runs: every query fetches from the sources (refresh).
    let ids: Vec<String> = truth["instances"]
        .as_object()
        .unwrap()
        .keys()
        .take(BURST_QUERIES)
        .cloned()
        .collect();
    let answers = futures::future::join_all(ids.iter().map(|id| {
        client
            .get(format!("{}/v1/instances/{id}?refresh=true", serve.base))
            .bearer_auth(SERVE_TOKEN)
            .send()
    }))
    .await;
    for (id, a) in ids.iter().zip(answers) {
        let a = a.unwrap();
        let status = a.status();
        let body: Value = a.json().await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK, "{id}: {body}");
        assert_eq!(body["status"], "terminated", "{id}: {body}");
        assert_eq!(body["from"], "sources", "{id}: {body}");
        assert_eq!(body["report"]["instance_id"], id.as_str(), "{body}");
    }

    // A scheduled scan finished (the first, at least: scans run one at a time), and every
    // termination is stored as analysed — by it, or by a query (the next scans find nothing
    // new, so their summaries cannot tell).
    loop {
        let s = latest().await.unwrap();
        if s["state"] == "ok" {
            break;
        }
        assert_ne!(s["state"], "error", "{s}");
        assert!(Instant::now() < deadline, "the scan did not end: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in truth["instances"].as_object().unwrap().keys() {
        let a = client
            .get(format!("{}/v1/instances/{id}", serve.base))
            .bearer_auth(SERVE_TOKEN)
            .send()
            .await
            .unwrap();
        let body: Value = a.json().await.unwrap();
        assert_eq!(body["status"], "terminated", "{id}: {body}");
        assert_eq!(body["from"], "store", "{id} was not analysed: {body}");
    }

    // Both went through the quota, and together they stayed within it.
    let sent = faults.seen.lock().unwrap()["GetLogEvents"];
    let refused = faults.quota_throttled.load(Ordering::SeqCst);
    // (Each query fetched its instance's logs — `from: sources` — and the scan fetched those
    // no query had stored before it came to them.)
    assert!(
        sent >= TEST_INSTANCES,
        "{sent} GetLogEvents for {TEST_INSTANCES} instances"
    );
    assert!(
        refused <= SHARED_MAX_THROTTLED,
        "{refused} of {sent} GetLogEvents throttled: the scan and the queries overran the quota together"
    );
    println!("scan + {BURST_QUERIES} on-demand queries under a {SHARED_QUOTA_PER_SEC}/s quota at {SHARED_LIMIT_PER_SEC}/s: {sent} GetLogEvents, {refused} throttled");
}
