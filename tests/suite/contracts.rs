//! Output contracts, key for key: every JSON output (scan, `instance`, `leak`, `signatures
//! match`, the alert webhook body, every API response) is checked against the schemas in
//! docs/openapi.yaml — no documented field missing, no undocumented field, types and enums
//! as documented — and README.md's descriptions of the same outputs are checked against those
//! schemas, so the two documents cannot drift apart. Also: the projected time to OOM against
//! a known planted growth, and `GET /v1/instances/{id}` answering 502 when a source fails.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Fleet, Receiver};
use serde_json::Value;

// ---------------------------------------------------------------- the schema checker --------

/// The documented schemas (docs/openapi.yaml), and a strict checker for them.
pub struct Schemas {
    doc: Value,
}

impl Schemas {
    pub fn load() -> Schemas {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value = serde_norway::from_str(&text).unwrap();
        Schemas { doc }
    }

    /// `components/schemas/<name>`.
    pub fn named(&self, name: &str) -> &Value {
        let s = &self.doc["components"]["schemas"][name];
        assert!(s.is_object(), "no schema {name} in docs/openapi.yaml");
        s
    }

    /// The JSON schema of a documented response.
    pub fn response(&self, path: &str, method: &str, code: &str) -> &Value {
        let mut r = &self.doc["paths"][path][method]["responses"][code];
        if let Some(reference) = r["$ref"].as_str() {
            r = self.resolve(reference);
        }
        let s = &r["content"]["application/json"]["schema"];
        assert!(
            s.is_object(),
            "{method} {path} {code}: no JSON schema documented"
        );
        s
    }

    fn resolve(&self, reference: &str) -> &Value {
        let mut v = &self.doc;
        for part in reference.trim_start_matches("#/").split('/') {
            v = &v[part];
        }
        assert!(!v.is_null(), "dangling $ref {reference}");
        v
    }

    /// Every problem of `v` against the schema named `name`.
    pub fn problems(&self, name: &str, v: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        self.check(self.named(name), v, name, &mut errs);
        errs
    }

    /// Panics with every problem of `v` against `name`.
    #[track_caller]
    pub fn assert_named(&self, name: &str, v: &Value) {
        self.assert_schema(self.named(name), name, v);
    }

    #[track_caller]
    pub fn assert_schema(&self, schema: &Value, what: &str, v: &Value) {
        let mut errs = Vec::new();
        self.check(schema, v, what, &mut errs);
        assert!(
            errs.is_empty(),
            "{what} does not match docs/openapi.yaml:\n  {}\nvalue: {}",
            errs.join("\n  "),
            serde_json::to_string(v).unwrap_or_default()
        );
    }

    /// Strict: an object with `properties` must have exactly its documented keys (the
    /// `required` ones always, no other); an object with neither `properties` nor
    /// `additionalProperties` is an undocumented shape.
    fn check(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        if let Some(r) = schema["$ref"].as_str() {
            return self.check(self.resolve(r), v, at, errs);
        }
        if v.is_null() {
            if schema["nullable"] != true && !schema.as_object().is_some_and(|o| o.is_empty()) {
                errs.push(format!("{at}: null, documented as not nullable"));
            }
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.check(s, v, at, errs);
            }
        }
        if let Some(one) = schema["oneOf"].as_array() {
            let results: Vec<Vec<String>> = one
                .iter()
                .map(|s| {
                    let mut e = Vec::new();
                    self.check(s, v, at, &mut e);
                    e
                })
                .collect();
            let ok = results.iter().filter(|e| e.is_empty()).count();
            if ok != 1 {
                errs.push(format!(
                    "{at}: matches {ok} of the oneOf alternatives: {results:?}"
                ));
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(v) {
                errs.push(format!("{at}: {v} is not one of {allowed:?}"));
            }
        }
        let ty = schema["type"].as_str().unwrap_or("");
        match ty {
            "object" => {
                let Some(obj) = v.as_object() else {
                    return errs.push(format!("{at}: expected an object, got {v}"));
                };
                let props = schema["properties"].as_object();
                let extra = schema["additionalProperties"].as_object();
                if props.is_none() && extra.is_none() {
                    errs.push(format!(
                        "{at}: the document does not say which fields it has"
                    ));
                }
                if let Some(props) = props {
                    for k in obj.keys().filter(|k| !props.contains_key(*k)) {
                        errs.push(format!("{at}.{k}: undocumented field"));
                    }
                    for k in schema["required"].as_array().into_iter().flatten() {
                        let k = k.as_str().unwrap();
                        if !obj.contains_key(k) {
                            errs.push(format!("{at}.{k}: documented field missing"));
                        }
                    }
                    for (k, s) in props {
                        if let Some(x) = obj.get(k) {
                            self.check(s, x, &format!("{at}.{k}"), errs);
                        }
                    }
                }
                if let Some(extra) = schema
                    .get("additionalProperties")
                    .filter(|_| props.is_none())
                {
                    for (k, x) in obj {
                        self.check(extra, x, &format!("{at}[{k:?}]"), errs);
                    }
                }
                let _ = extra;
            }
            "array" => {
                let Some(items) = v.as_array() else {
                    return errs.push(format!("{at}: expected an array, got {v}"));
                };
                if let Some(n) = schema["minItems"].as_u64() {
                    if (items.len() as u64) < n {
                        errs.push(format!("{at}: fewer than {n} items"));
                    }
                }
                if let Some(n) = schema["maxItems"].as_u64() {
                    if (items.len() as u64) > n {
                        errs.push(format!("{at}: more than {n} items"));
                    }
                }
                for (i, x) in items.iter().enumerate() {
                    self.check(&schema["items"], x, &format!("{at}[{i}]"), errs);
                }
            }
            "string" => match v.as_str() {
                None => errs.push(format!("{at}: expected a string, got {v}")),
                Some(s) if schema["format"] == "date-time" => {
                    if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                        errs.push(format!("{at}: {s:?} is not an RFC 3339 time"));
                    }
                }
                Some(_) => {}
            },
            "integer" if !(v.is_i64() || v.is_u64()) => {
                errs.push(format!("{at}: expected an integer, got {v}"))
            }
            "number" => match v.as_f64() {
                None => errs.push(format!("{at}: expected a number, got {v}")),
                Some(x) => {
                    if schema["minimum"].as_f64().is_some_and(|m| x < m)
                        || schema["maximum"].as_f64().is_some_and(|m| x > m)
                    {
                        errs.push(format!("{at}: {x} out of the documented range"));
                    }
                }
            },
            "boolean" if !v.is_boolean() => errs.push(format!("{at}: expected a boolean, got {v}")),
            _ => {}
        }
    }

    /// Every property name reachable from the schema named `name`.
    pub fn field_names(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        self.collect_names(self.named(name), &mut out, &mut seen);
        out
    }

    fn collect_names(&self, s: &Value, out: &mut BTreeSet<String>, seen: &mut BTreeSet<String>) {
        if let Some(r) = s["$ref"].as_str() {
            if seen.insert(r.to_string()) {
                self.collect_names(self.resolve(r), out, seen);
            }
            return;
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, p) in props {
                out.insert(k.clone());
                self.collect_names(p, out, seen);
            }
        }
        for key in ["allOf", "oneOf"] {
            for x in s[key].as_array().into_iter().flatten() {
                self.collect_names(x, out, seen);
            }
        }
        for key in ["items", "additionalProperties"] {
            if s[key].is_object() {
                self.collect_names(&s[key], out, seen);
            }
        }
    }
}

#[test]
fn the_checker_rejects_missing_undocumented_and_mistyped_fields() {
    let s = Schemas::load();
    let ok =
        serde_json::json!({"line": 3, "signature": "go.panic", "runtime": "go", "kind": "crash"});
    assert!(s.problems("SignatureLine", &ok).is_empty());
    let mut extra = ok.clone();
    extra["surprise"] = 1.into();
    assert!(s.problems("SignatureLine", &extra)[0].contains("undocumented"));
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("runtime");
    assert!(s.problems("SignatureLine", &missing)[0].contains("missing"));
    let mut wrong = ok.clone();
    wrong["line"] = "3".into();
    assert!(!s.problems("SignatureLine", &wrong).is_empty());
    wrong = ok;
    wrong["kind"] = "context".into();
    assert!(!s.problems("SignatureLine", &wrong).is_empty());
}

// ---------------------------------------------------------------- README against the schemas

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The fenced block that follows `heading` in the README.
fn block_after(text: &str, heading: &str) -> String {
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("README lacks {heading:?}"));
    let rest = &text[from..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// `"name":` keys in a text.
fn quoted_keys(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r#""([a-z_]+)"\s*:"#).unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn readme_describes_exactly_the_documented_fields() {
    let s = Schemas::load();
    let text = readme();

    // The scan JSON schema and the `instance` JSON, as the README writes them.
    let scan = block_after(&text, "## JSON schema");
    let instance = block_after(&text, "`epitaph instance --format json` prints");
    let in_readme: BTreeSet<String> = quoted_keys(&scan)
        .into_iter()
        .chain(quoted_keys(&instance))
        .collect();
    let documented: BTreeSet<String> = ["ScanReport", "Investigation"]
        .iter()
        .flat_map(|n| s.field_names(n))
        .collect();
    assert_eq!(
        in_readme.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fields in README.md but not in docs/openapi.yaml"
    );
    assert_eq!(
        documented.difference(&in_readme).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fields in docs/openapi.yaml but not in README.md"
    );

    // The generic webhook body example is a valid body, key for key.
    let alert: Value = serde_json::from_str(&block_after(&text, "**Generic webhook body**"))
        .expect("the README's alert example is JSON");
    s.assert_named("AlertV1", &alert);

    // `signatures match` and `leak` in the CLI reference.
    let row = |cmd: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| `{cmd}")))
            .unwrap_or_else(|| panic!("no CLI reference row for {cmd}"))
            .to_string()
    };
    let sig_row = row("signatures match");
    let example = &sig_row[sig_row.find('{').unwrap()..=sig_row.find('}').unwrap()];
    s.assert_named(
        "SignatureLine",
        &serde_json::from_str::<Value>(example).unwrap(),
    );
    let leak_row = row("leak");
    let ticked: BTreeSet<String> = regex::Regex::new(r"`([a-z_]+)`")
        .unwrap()
        .captures_iter(&leak_row)
        .map(|c| c[1].to_string())
        .collect();
    for f in s.field_names("LeakAssessment") {
        assert!(ticked.contains(&f), "README's `leak` row does not name {f}");
    }
}

// ---------------------------------------------------------------- CLI outputs ---------------

fn epitaph() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("epitaph").unwrap();
    c.env_remove("EPITAPH_CONFIG")
        .env_remove("EPITAPH_LOG")
        .env("NO_COLOR", "1");
    c
}

fn json_out(fleet: &Fleet, args: &[&str]) -> (Value, i32) {
    let out = epitaph()
        .arg("--config")
        .arg(fleet.config_path())
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

fn truth_instance(fleet: &Fleet, verdict: &str) -> String {
    fleet
        .truth
        .instances
        .iter()
        .find(|(_, v)| v.as_str() == verdict)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("no {verdict} instance in the fleet"))
}

#[test]
fn scan_json_has_exactly_the_documented_fields() {
    let s = Schemas::load();
    let fleet = Fleet::new(3, 6, 60);
    // Skipped records of two kinds, so `skipped` has entries to check.
    let mut logs = std::fs::OpenOptions::new()
        .append(true)
        .open(fleet.dir.path().join("logs/checkout-api.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut logs, b"{\"truncated\": \n").unwrap();
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(fleet.dir.path().join("metrics/checkout-api.csv"))
        .unwrap();
    std::io::Write::write_all(&mut metrics, b"not,a\n").unwrap();
    // Alerts to a port nothing listens on: the alert counters are there, delivery fails fast.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"http://{closed}/hook\"\nflush_timeout = \"1s\"\n"
    ));
    let (v, _) = json_out(&fleet, &["scan"]);
    s.assert_named("ScanReport", &v);
    // The checked output exercises the optional shapes too.
    let instances = v["instances"].as_array().unwrap();
    assert!(instances.iter().any(|i| i["leak"].is_object()));
    assert!(instances.iter().any(|i| i["lifetime_hours"].is_number()));
    assert!(instances
        .iter()
        .any(|i| !i["signatures"].as_array().unwrap().is_empty()));
    assert!(!v["summary"]["skipped"].as_array().unwrap().is_empty());
    assert!(v["summary"]["alerts_enqueued"].as_u64().unwrap() > 0);

    // A scan whose log source fails (its exports vanish under a running pipeline): every
    // instance pending, same shape, `pending` filled in.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_json_with_pending_instances_has_exactly_the_documented_fields() {
    let s = Schemas::load();
    let fleet = Fleet::new(3, 6, 60);
    let cfg = epitaph::config::Config::load(Some(&fleet.config_path())).unwrap();
    let p = epitaph::pipeline::Pipeline::open(cfg).await.unwrap();
    std::fs::rename(
        fleet.dir.path().join("logs"),
        fleet.dir.path().join("logs.gone"),
    )
    .unwrap();
    let report = p.scan(&Default::default()).await.unwrap();
    // What `scan --format json` prints.
    let v: Value = serde_json::from_str(&epitaph::sinks::report::to_json(&report)).unwrap();
    assert_eq!(
        v["summary"]["pending"].as_array().unwrap().len(),
        60,
        "{}",
        v["summary"]
    );
    s.assert_named("ScanReport", &v);
}

#[test]
fn instance_json_has_exactly_the_documented_fields() {
    let s = Schemas::load();
    let fleet = Fleet::new(1, 6, 60);
    let id = truth_instance(&fleet, "oom_leak");
    let (from_sources, code) = json_out(&fleet, &["instance", &id]);
    assert_eq!(code, 0);
    assert_eq!(from_sources["from"], "sources");
    s.assert_named("Investigation", &from_sources);
    s.assert_named("InvestigationTerminated", &from_sources);
    let (from_store, _) = json_out(&fleet, &["instance", &id]);
    assert_eq!(from_store["from"], "store");
    s.assert_named("Investigation", &from_store);
    assert!(from_store["report"]["leak"].is_object());
    assert!(!from_store["report"]["last_words"]["events"]
        .as_array()
        .unwrap()
        .is_empty());
    // Still running (in a group's inventory, no termination): the other shape.
    let group = fleet.add_running_instance("i-0123456789abcdef0");
    let (running, code) = json_out(&fleet, &["instance", "i-0123456789abcdef0"]);
    assert_eq!(code, 0);
    assert_eq!(running["status"], "no_termination");
    assert_eq!(running["in_service"], true);
    assert_eq!(running["asg"], group.as_str());
    // An id nothing knows: an error naming it (exit 2), not a "no termination".
    let out = epitaph()
        .arg("--config")
        .arg(fleet.config_path())
        .args(["instance", "i-0fedcba9876543210"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("i-0fedcba9876543210: unknown instance"),
        "{stderr}"
    );
    s.assert_named("Investigation", &running);
    s.assert_named("InvestigationNoTermination", &running);
}

fn leak_out(csv: &str, limit: Option<&str>) -> Value {
    let mut c = epitaph();
    c.args(["leak", "-"]);
    if let Some(l) = limit {
        c.args(["--limit", l]);
    }
    let out = c.write_stdin(csv.to_string()).assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

#[test]
fn leak_json_has_exactly_the_documented_fields_and_projects_the_planted_growth() {
    let s = Schemas::load();
    // A floor rising 0.4 per 5 minutes (4.8 an hour) from 30, under a small sawtooth.
    let t0 = 1_767_225_600i64;
    let mut csv = String::from("timestamp,value\n");
    for i in 0..150i64 {
        let v = 30.0 + 0.4 * i as f64 + ((i * 7919) % 13) as f64 * 0.1;
        csv.push_str(&format!("{},{v:.3}\n", t0 + i * 300));
    }
    let v = leak_out(&csv, Some("100"));
    s.assert_named("LeakAssessment", &v);
    assert_eq!(v["verdict"], "leak");
    // The floor reaches 100 when 30 + 4.8 h = 100: 14.58 h after the first sample.
    let planted = t0 + (70.0 / 4.8 * 3600.0) as i64;
    let projected =
        chrono::DateTime::parse_from_rfc3339(v["projected_exhaustion"].as_str().unwrap())
            .unwrap()
            .timestamp();
    assert!(
        (projected - planted).abs() <= 30 * 60,
        "projected exhaustion {}s from the planted one",
        projected - planted
    );
    let fraction = v["growth_fraction_of_limit_per_hour"].as_f64().unwrap();
    assert!((fraction - 0.048).abs() < 0.005, "{fraction}");
    assert_eq!(v["basis_start"], "2026-01-01T00:00:00Z");
    assert!(v["points_used"].as_u64().unwrap() >= 12);

    // A series that hit the limit.
    let mut full = String::new();
    for i in 0..150i64 {
        let v = (40.0 + 0.45 * i as f64).min(100.0);
        full.push_str(&format!("{},{v:.3}\n", t0 + i * 300));
    }
    let v = leak_out(&full, Some("100"));
    s.assert_named("LeakAssessment", &v);
    assert_eq!(v["reached_limit"], true);

    for (csv, limit) in [
        (csv.as_str(), None),
        ("1767225600,10\n1767225900,11\n", None),
        ("", Some("100")),
    ] {
        s.assert_named("LeakAssessment", &leak_out(csv, limit));
    }
}

#[test]
fn signatures_match_lines_have_exactly_the_documented_fields() {
    let s = Schemas::load();
    let out = epitaph()
        .args(["signatures", "match", "-"])
        .write_stdin(
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n\
             panic: runtime error: index out of range [3] with length 3\n\
             [ 12.3] Out of memory: Killed process 4242 (java) total-vm:8000000kB, anon-rss:7000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:20000kB oom_score_adj:0\n",
        )
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let lines: Vec<Value> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        s.assert_named("SignatureLine", l);
    }
}

// ---------------------------------------------------------------- alert body ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_body_has_exactly_the_documented_fields_and_projects_time_to_oom() {
    let s = Schemas::load();
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\n",
        rx.url("/generic")
    ));
    let cfg = epitaph::config::Config::load(Some(&fleet.config_path())).unwrap();
    let p = epitaph::pipeline::Pipeline::open(cfg).await.unwrap();
    let report = p.scan(&Default::default()).await.unwrap();
    p.deliver_alerts(None).await.unwrap();
    let got = rx.got();
    assert!(!got.is_empty());
    for g in &got {
        s.assert_named("AlertV1", &g.body);
    }

    // The projected time from launch to OOM, against the planted growth: the simulator's
    // leakers climb from their launch floor towards ~97 % until they die, so the floor's
    // trend reaches 100 % a little after death — per instance between 1.0 and 1.3 of its
    // lifetime (the ratio (100 − base) / (top − base) over the simulator's ranges).
    let leaking = got
        .iter()
        .find(|g| g.body["deployment"] == "checkout-api:10")
        .expect("an alert for the leaking deployment");
    let hours = leaking.body["projected_hours_to_oom"].as_f64().unwrap();
    let mut per_instance: Vec<f64> = Vec::new();
    let mut died_of_it = 0;
    for i in report
        .instances
        .iter()
        .filter(|i| i.deployment == "checkout-api:10")
    {
        let (Some(l), Some(life)) = (&i.leak, i.lifetime_hours) else {
            continue;
        };
        let Some(end) = l.projected_exhaustion else {
            continue;
        };
        if l.verdict != epitaph::model::LeakVerdict::Leak {
            continue;
        }
        let launch = i.terminated_at - chrono::Duration::seconds((life * 3600.0) as i64);
        let to_oom = (end - launch).num_seconds() as f64 / 3600.0;
        // Those that died of it (not scaled in half way up).
        if i.verdict == epitaph::model::InstanceVerdict::OomLeak {
            let ratio = to_oom / life;
            assert!(
                (0.95..=1.35).contains(&ratio),
                "{}: projected {to_oom:.1} h to OOM for a {life:.1} h life",
                i.instance_id
            );
            died_of_it += 1;
        }
        per_instance.push(to_oom);
    }
    assert!(died_of_it >= 3, "{per_instance:?}");
    per_instance.sort_by(f64::total_cmp);
    let lo = per_instance[(per_instance.len() - 1) / 2];
    let hi = per_instance[per_instance.len() / 2];
    assert!(
        hours >= lo - 0.1 && hours <= hi + 0.1,
        "projected_hours_to_oom {hours} is not the median of {per_instance:?}"
    );
}

// ---------------------------------------------------------------- the API -------------------

/// `epitaph serve` in a guard (killed when the test ends, however it ends), on a port it
/// chose itself (`common::spawn_serve`), with a client and the token.
pub struct Service {
    _serve: common::Serve,
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
}

/// Longest wait for a started service to answer /healthz.
const HEALTHY_BOUND: Duration = Duration::from_secs(60);

impl Service {
    /// `epitaph serve` on `fleet`, scanning only when asked; returns once it answers.
    pub async fn start(fleet: &Fleet, extra_env: &[(&str, &str)]) -> Service {
        let token = "contract-token".to_string();
        let serve = common::spawn_serve(fleet, &token, "0 0 1 1 *", extra_env);
        let svc = Service {
            base: serve.base.clone(),
            _serve: serve,
            client: reqwest::Client::new(),
            token,
        };
        let deadline = Instant::now() + HEALTHY_BOUND;
        loop {
            let r = svc.client.get(format!("{}/healthz", svc.base)).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        svc
    }

    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let (code, body) = self.call(reqwest::Method::GET, path).await;
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_responses_have_exactly_the_documented_fields() {
    let s = Schemas::load();
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\n",
        rx.url("/generic")
    ));
    let svc = Service::start(&fleet, &[]).await;

    let check = |path: &str, method: &str, code: u16, body: &str| {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        let api_path = if path.starts_with("/v1/instances/") {
            "/v1/instances/{instance_id}"
        } else {
            path.split('?').next().unwrap()
        };
        s.assert_schema(
            s.response(api_path, method, &code.to_string()),
            &format!("{method} {path} {code}"),
            &v,
        );
        v
    };

    let (code, body) = svc.call(reqwest::Method::GET, "/v1/scans/latest").await;
    assert_eq!(code, 404);
    check("/v1/scans/latest", "get", code, &body);
    let (code, body) = svc.call(reqwest::Method::GET, "/healthz").await;
    check("/healthz", "get", code, &body);
    let (code, body) = svc.call(reqwest::Method::POST, "/v1/scans?wait=true").await;
    assert_eq!(code, 200, "{body}");
    check("/v1/scans", "post", code, &body);
    let (code, body) = svc.call(reqwest::Method::GET, "/v1/scans/latest").await;
    let latest = check("/v1/scans/latest", "get", code, &body);
    assert!(latest["summary"].is_object());
    let (code, body) = svc.call(reqwest::Method::GET, "/v1/deployments").await;
    check("/v1/deployments", "get", code, &body);
    // The simulated fleet's leaking deployments have running instances: early warning
    // projects them, and the response holds to the documented shape.
    let (code, body) = svc.call(reqwest::Method::GET, "/v1/next-deaths").await;
    let next = check("/v1/next-deaths", "get", code, &body);
    assert!(
        !next["next_deaths"].as_array().unwrap().is_empty(),
        "{body}"
    );

    // Findings once the outbox has been delivered (alert states and messages present).
    let deadline = Instant::now() + Duration::from_secs(60);
    let findings = loop {
        let (code, body) = svc.call(reqwest::Method::GET, "/v1/findings").await;
        let v = check("/v1/findings", "get", code, &body);
        let messages = v["recent_messages"].as_array().unwrap();
        if !messages.is_empty() && messages.iter().all(|m| m["status"] == "delivered") {
            break v;
        }
        assert!(Instant::now() < deadline, "never delivered: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["alert"].is_object()));
    assert!(!findings["alert_states"].as_array().unwrap().is_empty());

    let id = truth_instance(&fleet, "oom_leak");
    for path in [
        format!("/v1/instances/{id}"),
        format!("/v1/instances/{id}?refresh=true"),
        "/v1/instances/i-0123456789abcdef0".to_string(),
        "/v1/instances/i-nothex".to_string(),
    ] {
        let (code, body) = svc.call(reqwest::Method::GET, &path).await;
        check(&path, "get", code, &body);
    }
    let (code, body) = svc.call(reqwest::Method::POST, "/v1/scans").await;
    assert_eq!(code, 202, "{body}");
    check("/v1/scans", "post", code, &body);
    let (code, body) = svc.call(reqwest::Method::GET, "/v1/nope").await;
    assert_eq!(code, 404);
    s.assert_named("Error", &serde_json::from_str(&body).unwrap());
    let r = svc
        .client
        .get(format!("{}/v1/deployments", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    check("/v1/deployments", "get", 401, &r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_query_is_502_and_kept_pending_when_a_source_fails() {
    let s = Schemas::load();
    let fleet = Fleet::new(1, 6, 60);
    let id = truth_instance(&fleet, "oom_leak");
    let svc = Service::start(&fleet, &[]).await;
    // The log exports vanish under the running service: the log source fails.
    std::fs::rename(
        fleet.dir.path().join("logs"),
        fleet.dir.path().join("logs.gone"),
    )
    .unwrap();
    let (code, v) = svc.get_json(&format!("/v1/instances/{id}")).await;
    assert_eq!(code, 502, "{v}");
    s.assert_schema(
        s.response("/v1/instances/{instance_id}", "get", "502"),
        "502",
        &v,
    );
    assert!(v["error"].as_str().unwrap().contains("logs"), "{v}");
    let store = epitaph::store::SqliteStore::open(&fleet.state_path())
        .await
        .unwrap();
    let pending = epitaph::store::Store::pending(&store).await.unwrap();
    assert!(
        pending.iter().any(|p| p.termination.instance_id == id),
        "kept pending for the next scan"
    );
    // Back: the same query answers from the sources.
    std::fs::rename(
        fleet.dir.path().join("logs.gone"),
        fleet.dir.path().join("logs"),
    )
    .unwrap();
    let (code, v) = svc
        .get_json(&format!("/v1/instances/{id}?refresh=true"))
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["from"], "sources");
}
