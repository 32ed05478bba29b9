//! `epitaph heap diff` on REAL heap snapshots: small Node.js programs with known leaks (a
//! growing Map of request objects, closures retained by a never-settling promise, listeners
//! never removed) and a control without one write baseline / target / final snapshots with
//! `v8.writeHeapSnapshot()`; the leaking constructor must rank first, the control must show
//! nothing. Node.js is Debian's `nodejs` (scripts/test.sh installs it; `EPITAPH_NODE`
//! overrides the path).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{bin, output_timeout, Fleet, CHILD_EXIT_BOUND};

fn node() -> PathBuf {
    crate::common::debian_tool("EPITAPH_NODE", "/usr/bin/node", "nodejs")
}

/// Runs `program` with `writeSnapshot(name)` defined and returns the snapshots' folder.
fn snapshots(dir: &Path, program: &str) -> PathBuf {
    let script = dir.join("program.js");
    let text = format!(
        "const v8 = require('v8');\nconst OUT = process.argv[2];\nfunction writeSnapshot(name) {{ v8.writeHeapSnapshot(OUT + '/' + name + '.heapsnapshot'); }}\n{program}\n"
    );
    std::fs::write(&script, text).unwrap();
    let out = output_timeout(Command::new(node()).arg(&script).arg(dir), CHILD_EXIT_BOUND);
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

fn diff(dir: &Path, names: &[&str]) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(bin());
    cmd.args(["--format", "json", "heap", "diff"]);
    for n in names {
        cmd.arg(dir.join(format!("{n}.heapsnapshot")));
    }
    let out = output_timeout(&mut cmd, CHILD_EXIT_BOUND);
    let code = out.status.code().expect("exit code");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

fn top(json: &serde_json::Value) -> (&str, Vec<String>) {
    let s = &json["suspects"][0];
    let path = s["retainer_path"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (s["class"].as_str().unwrap_or("(none)"), path)
}

const MAP_LEAK: &str = r#"
class RequestRecord { constructor(i) { this.id = i; this.body = 'x'.repeat(200) + i; this.headers = { n: i }; } }
const cache = new Map();
function handle(i) { cache.set('req-' + i, new RequestRecord(i)); }
writeSnapshot('baseline');
for (let i = 0; i < 3000; i++) handle(i);
writeSnapshot('target');
for (let i = 3000; i < 6000; i++) handle(i);
writeSnapshot('final');
"#;

#[test]
fn a_growing_map_of_requests_names_the_request_class_and_the_map() {
    let dir = tempfile::tempdir().unwrap();
    snapshots(dir.path(), MAP_LEAK);
    for names in [
        &["baseline", "target", "final"][..],
        &["baseline", "target"][..],
    ] {
        let (code, json) = diff(dir.path(), names);
        assert_eq!(code, 3, "suspects → exit 3: {json}");
        let (class, path) = top(&json);
        assert_eq!(class, "RequestRecord", "{json:#}");
        assert!(
            path.iter().any(|step| step.starts_with("Map")),
            "the retainer path goes through the Map: {path:?}"
        );
        assert_eq!(json["suspects"][0]["origin"], "application");
        let surviving = json["suspects"][0]["surviving"].as_u64().unwrap();
        assert!(surviving >= 3000, "{surviving}");
    }
}

/// `--attach DEPLOYMENT` keeps the diff with a deployment the state knows; the HTML report
/// shows its suspects in that deployment's section. A deployment the state does not know is
/// an error naming the ones it does.
#[test]
fn an_attached_diff_shows_in_its_deployments_section_of_the_html_report() {
    let dir = tempfile::tempdir().unwrap();
    snapshots(dir.path(), MAP_LEAK);
    let fleet = Fleet::new(1, 6, 60);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--config").arg(fleet.config_path());
        output_timeout(&mut cmd, CHILD_EXIT_BOUND)
    };
    let scan = run(&["scan"]);
    assert!(scan.status.code().is_some(), "the scan ran");
    let snaps: Vec<String> = ["baseline", "target", "final"]
        .iter()
        .map(|n| {
            dir.path()
                .join(format!("{n}.heapsnapshot"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["heap", "diff"];
    args.extend(snaps.iter().map(String::as_str));

    let mut typo = args.clone();
    typo.extend(["--attach", "checkout-api:01"]);
    let out = run(&typo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("checkout-api:01") && stderr.contains("checkout-api:10"),
        "names the typo and the known deployments: {stderr}"
    );

    args.extend(["--attach", "checkout-api:10"]);
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(run(&["--format", "html", "scan"]).stdout).unwrap();
    let section = html
        .split("<section class=\"deployment\" id=\"d-checkout-api-10\"")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("checkout-api:10's section");
    assert!(section.contains("Heap snapshot diff"), "{section}");
    assert!(section.contains("RequestRecord"), "{section}");
    assert!(section.contains("final.heapsnapshot"), "{section}");
    let others = html.replace(section, "");
    assert!(
        !others.contains("Heap snapshot diff"),
        "only in its own section"
    );
}

#[test]
fn closures_held_by_a_promise_that_never_settles_name_the_captured_class() {
    let dir = tempfile::tempdir().unwrap();
    snapshots(
        dir.path(),
        r#"
class Session { constructor(i) { this.i = i; this.scratch = new Array(64).fill(i); } }
const never = new Promise(() => {});
function handle(i) { const s = new Session(i); never.then(() => s.i); }
writeSnapshot('baseline');
for (let i = 0; i < 2000; i++) handle(i);
writeSnapshot('target');
for (let i = 2000; i < 4000; i++) handle(i);
writeSnapshot('final');
"#,
    );
    let (code, json) = diff(dir.path(), &["baseline", "target", "final"]);
    assert_eq!(code, 3, "{json}");
    let (class, path) = top(&json);
    assert_eq!(class, "Session", "{json:#}");
    assert!(
        path.iter()
            .any(|s| s.contains("(closure)") || s.contains("Promise")),
        "held through the promise's reactions: {path:?}"
    );
}

#[test]
fn listeners_never_removed_name_the_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    snapshots(
        dir.path(),
        r#"
const EventEmitter = require('events');
const bus = new EventEmitter();
bus.setMaxListeners(0);
class Subscriber {
  constructor(i) { this.i = i; this.state = { seen: [], label: 'sub-' + i + '-'.repeat(100) }; bus.on('tick', () => this.onTick()); }
  onTick() { this.state.seen.push(Date.now()); }
}
writeSnapshot('baseline');
for (let i = 0; i < 2000; i++) new Subscriber(i);
writeSnapshot('target');
for (let i = 2000; i < 4000; i++) new Subscriber(i);
writeSnapshot('final');
"#,
    );
    let (code, json) = diff(dir.path(), &["baseline", "target", "final"]);
    assert_eq!(code, 3, "{json}");
    let (class, path) = top(&json);
    assert_eq!(class, "Subscriber", "{json:#}");
    assert!(
        path.iter().any(|s| s.starts_with("EventEmitter._events")),
        "held by the emitter's listeners: {path:?}"
    );
}

#[test]
fn a_program_that_frees_what_it_allocates_has_no_suspect() {
    let dir = tempfile::tempdir().unwrap();
    snapshots(
        dir.path(),
        r#"
class Temp { constructor(i) { this.i = i; this.body = 'y'.repeat(200) + i; } }
function work(n) { const a = []; for (let i = 0; i < n; i++) a.push(new Temp(i)); return a.reduce((s, t) => s + t.i, 0); }
let total = 0;
writeSnapshot('baseline');
total += work(5000);
writeSnapshot('target');
total += work(5000);
writeSnapshot('final');
if (total < 0) console.log(total);
"#,
    );
    for names in [
        &["baseline", "target", "final"][..],
        &["baseline", "target"][..],
    ] {
        let (code, json) = diff(dir.path(), names);
        assert_eq!(code, 0, "no suspect → exit 0: {json:#}");
        assert_eq!(json["suspects"].as_array().unwrap().len(), 0, "{json:#}");
    }
}

#[test]
fn a_file_that_is_not_a_snapshot_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("baseline.heapsnapshot");
    std::fs::write(&bad, "{\"snapshot\": {\"meta\": 3}}").unwrap();
    std::fs::write(dir.path().join("target.heapsnapshot"), "{}").unwrap();
    let out = output_timeout(
        Command::new(bin())
            .args(["heap", "diff"])
            .arg(&bad)
            .arg(dir.path().join("target.heapsnapshot")),
        CHILD_EXIT_BOUND,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("baseline.heapsnapshot"), "{err}");
    assert!(err.contains("not a V8 heap snapshot"), "{err}");
}
