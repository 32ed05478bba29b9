//! CLI contract tests: the outputs other tools rely on (`signatures match`, `leak`,
//! `scan --format json`, `simulate`, `demo`), exit codes, and bad input of every kind.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn epitaph() -> Command {
    let mut c = Command::cargo_bin("epitaph").unwrap();
    // Keep the developer's environment out of the tests.
    c.env_remove("EPITAPH_CONFIG")
        .env_remove("EPITAPH_LOG")
        .env("NO_COLOR", "1");
    c
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn simulate_into(dir: &Path, seed: u64) {
    epitaph()
        .args(["simulate", "--out"])
        .arg(dir)
        .args(["--seed", &seed.to_string()])
        .assert()
        .success();
}

fn scan_json(config: &Path, extra: &[&str]) -> (Value, i32) {
    let out = epitaph()
        .arg("--config")
        .arg(config)
        .args(["--format", "json", "scan"])
        .args(extra)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scan JSON: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

// ---------------------------------------------------------------- signatures match ----------

#[test]
fn signatures_match_prints_one_object_per_matching_line() {
    let input = "starting\n\
        FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n\
        GET /healthz 200\n\
        [ 1234.5678] Out of memory: Killed process 4242 (java) total-vm:8000000kB, anon-rss:7000000kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:20000kB oom_score_adj:0\n\
        panic: runtime error: index out of range [3] with length 3\n\
        -XX:+HeapDumpOnOutOfMemoryError\n";
    let out = epitaph()
        .args(["signatures", "match", "-"])
        .write_stdin(input)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json_lines(&out);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(
        v[0],
        serde_json::json!({"line": 2, "signature": "node.heap_oom", "runtime": "node", "kind": "oom"})
    );
    assert_eq!(
        v[1],
        serde_json::json!({"line": 4, "signature": "linux.oom_kill", "runtime": "linux", "kind": "oom"})
    );
    assert_eq!(
        v[2],
        serde_json::json!({"line": 5, "signature": "go.panic", "runtime": "go", "kind": "crash"})
    );
}

#[test]
fn signatures_match_reads_files_and_survives_bad_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.log");
    let mut bytes = b"\xff\xfe garbage \x00\r\n".to_vec();
    bytes.extend_from_slice(b"java.lang.OutOfMemoryError: Java heap space\r\n");
    bytes.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    bytes.extend_from_slice(b" fatal error: runtime: out of memory\n");
    std::fs::write(&p, &bytes).unwrap();
    let out = epitaph()
        .args(["signatures", "match"])
        .arg(&p)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json_lines(&out);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["line"], 2);
    assert_eq!(v[0]["signature"], "jvm.out_of_memory_error");
    assert_eq!(v[1]["line"], 3);
    assert_eq!(v[1]["signature"], "go.out_of_memory");
}

#[test]
fn signatures_match_empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    epitaph()
        .args(["signatures", "match"])
        .arg(&empty)
        .assert()
        .success()
        .stdout("");
    epitaph()
        .args(["signatures", "match"])
        .arg(dir.path().join("nope.log"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nope.log"));
}

#[test]
fn signatures_match_with_a_user_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("sigs.toml");
    std::fs::write(&lib, "[[signature]]\nid = \"acme.died\"\nruntime = \"acme\"\nkind = \"crash\"\nkeywords = [\"acme\"]\npatterns = [\"ACME DIED\"]\nexplanation = \"x\"\nnext_step = \"y\"\n").unwrap();
    let out = epitaph()
        .args(["signatures", "match", "--signatures"])
        .arg(&lib)
        .arg("-")
        .write_stdin("ok\nACME DIED\n")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        json_lines(&out),
        vec![
            serde_json::json!({"line": 2, "signature": "acme.died", "runtime": "acme", "kind": "crash"})
        ]
    );
    std::fs::write(&lib, "[[signature]]\nid = \"broken\"\nkind = \"oom\"\n").unwrap();
    epitaph()
        .args(["signatures", "match", "--signatures"])
        .arg(&lib)
        .arg("-")
        .write_stdin("x\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sigs.toml"));
}

// ---------------------------------------------------------------- leak ----------------------

fn leak_csv(n: usize, f: impl Fn(usize) -> f64) -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..n {
        s.push_str(&format!("{},{:.3}\n", 1_767_225_600 + i * 300, f(i)));
    }
    s
}

#[test]
fn leak_contract() {
    let csv = leak_csv(150, |i| {
        30.0 + 0.4 * i as f64 + ((i * 7919) % 13) as f64 * 0.1
    });
    let out = epitaph()
        .args(["leak", "-", "--limit", "100"])
        .write_stdin(csv.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "leak");
    let g = v["growth_per_hour"].as_f64().unwrap();
    assert!((g - 4.8).abs() < 0.5, "growth {g}");
    let p = v["projected_exhaustion"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(p).is_ok(), "{p}");

    // Without a limit there is no projection.
    let out = epitaph()
        .args(["leak", "-"])
        .write_stdin(csv)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "leak");
    assert!(v["projected_exhaustion"].is_null());
}

#[test]
fn leak_no_leak_and_insufficient_data() {
    let flat = leak_csv(150, |i| 50.0 + (i % 6) as f64);
    let out = epitaph()
        .args(["leak", "-", "--limit", "100"])
        .write_stdin(flat)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "no_leak");
    assert!(v["projected_exhaustion"].is_null());

    let rfc = "2026-01-01T00:00:00Z,10\n2026-01-01T00:05:00Z,11\n";
    let out = epitaph()
        .args(["leak", "-"])
        .write_stdin(rfc)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "insufficient_data");
    assert!(v["growth_per_hour"].is_null());

    epitaph()
        .args(["leak", "-"])
        .write_stdin("")
        .assert()
        .success()
        .stdout(predicate::str::contains("insufficient_data"));
}

#[test]
fn leak_skips_gaps_as_exports_write_them() {
    // A leak with every gap spelling exports use, including a long outage: still a leak, the
    // gaps counted, nothing refused.
    let markers = [
        "NaN", "nan", "", "null", "None", "+Inf", "-Inf", "<NA>", "\"\"",
    ];
    let mut csv = String::from("timestamp,value\n");
    for i in 0..300usize {
        let t = 1_767_225_600 + i * 300;
        if i % 17 == 5 || (100..130).contains(&i) {
            csv.push_str(&format!("{t},{}\n", markers[i % markers.len()]));
        } else {
            csv.push_str(&format!("{t},{:.3}\n", 30.0 + 0.2 * i as f64));
        }
    }
    let gaps = (0..300usize)
        .filter(|i| i % 17 == 5 || (100..130).contains(i))
        .count();
    let out = epitaph()
        .args(["leak", "-", "--limit", "100"])
        .write_stdin(csv)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verdict"], "leak", "{v}");
    assert_eq!(v["gaps"], gaps, "{v}");
    assert_eq!(v["points_used"], 300 - gaps, "{v}");
}

#[test]
fn leak_bad_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("series.csv");
    std::fs::write(&p, "timestamp,value\n1767225600,10\n1767225900,lots\n").unwrap();
    epitaph()
        .arg("leak")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("series.csv:3").and(predicate::str::contains("lots")));
    epitaph()
        .args(["leak", "-"])
        .write_stdin("1767225600,10\nnot a time,5\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("<stdin>:2"));
    epitaph()
        .args(["leak", "-"])
        .write_stdin("1,2,3\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("two columns"));
}

// ---------------------------------------------------------------- simulate / scan / demo ----

#[test]
fn simulate_is_deterministic_and_writes_its_config_and_truth() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    simulate_into(a.path(), 9);
    simulate_into(b.path(), 9);
    for f in [
        "truth.json",
        "epitaph.toml",
        "activities/checkout-api.json",
        "logs/catalog-web.filter-log-events.json",
        "metrics/report-renderer.prometheus.json",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs"
        );
    }
    let truth: Value =
        serde_json::from_slice(&std::fs::read(a.path().join("truth.json")).unwrap()).unwrap();
    let verdicts: Vec<&str> = truth["deployments"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_str)
        .collect();
    for v in [
        "leaking",
        "healthy",
        "oom_without_leak",
        "crashing",
        "insufficient_evidence",
    ] {
        assert!(verdicts.contains(&v), "fleet lacks a {v} deployment");
    }
    assert_eq!(truth["instances"].as_object().unwrap().len(), 60);
    epitaph()
        .args(["simulate", "--out"])
        .arg(a.path())
        .args(["--instances", "4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--instances"));
}

#[test]
fn scan_json_contract_and_idempotence() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 3);
    let cfg = dir.path().join("epitaph.toml");
    let (v, code) = scan_json(&cfg, &[]);
    assert_eq!(code, 0);
    assert_eq!(v["schema_version"], 1);
    let instances = v["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 60);
    for i in instances {
        for key in [
            "instance_id",
            "deployment",
            "cause",
            "verdict",
            "signatures",
            "leak",
        ] {
            assert!(i.get(key).is_some(), "instance lacks {key}: {i}");
        }
    }
    let deployments = v["deployments"].as_array().unwrap();
    for d in deployments {
        for key in ["deployment", "verdict", "evidence"] {
            assert!(d.get(key).is_some(), "deployment lacks {key}: {d}");
        }
        assert!(d["evidence"]["instances"].is_array());
        assert!(d["evidence"]["counts"].is_object());
    }
    assert_eq!(v["summary"]["analysed"], 60);
    assert_eq!(deployments[0]["verdict"], "leaking", "worst first");

    // Same window again: nothing new is fetched, nothing is duplicated, same verdicts.
    let since = v["window"]["start"].as_str().unwrap().to_string();
    let until = v["window"]["end"].as_str().unwrap().to_string();
    let (again, code) = scan_json(&cfg, &["--since", &since, "--until", &until]);
    assert_eq!(code, 0);
    assert_eq!(again["summary"]["analysed"], 0);
    assert_eq!(again["summary"]["cached"], 60);
    assert_eq!(again["instances"], v["instances"]);
    assert_eq!(again["deployments"], v["deployments"]);

    // --refresh fetches again but still does not duplicate.
    let (refreshed, _) = scan_json(&cfg, &["--since", &since, "--until", &until, "--refresh"]);
    assert_eq!(refreshed["summary"]["analysed"], 60);
    assert_eq!(refreshed["instances"].as_array().unwrap().len(), 60);

    // Without --since, the next run starts at the last complete run's end (minus the overlap).
    let (next, _) = scan_json(&cfg, &[]);
    let start =
        chrono::DateTime::parse_from_rfc3339(next["window"]["start"].as_str().unwrap()).unwrap();
    let prev_end = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    assert_eq!(prev_end - start, chrono::Duration::minutes(15));
}

#[test]
fn scan_markdown_and_table() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 4);
    let cfg = dir.path().join("epitaph.toml");
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "markdown", "scan"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("| deployment | verdict |")
                .and(predicate::str::contains("**leaking**")),
        );
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .arg("scan")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("DEPLOYMENTS")
                .and(predicate::str::contains("is leaking"))
                .and(predicate::str::contains("\x1b[").not()),
        );
}

#[test]
fn demo_names_the_leaking_deployment() {
    epitaph().arg("demo").assert().success().stdout(
        predicate::str::contains("checkout-api:10 is leaking")
            .and(predicate::str::contains("node.heap_oom")),
    );
    let out = epitaph()
        .args(["--format", "json", "demo"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let leaking: Vec<&str> = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"] == "leaking")
        .filter_map(|d| d["deployment"].as_str())
        .collect();
    assert!(leaking.contains(&"checkout-api:10"), "{leaking:?}");
}

// ---------------------------------------------------------------- instance ------------------

#[test]
fn instance_from_store_and_from_sources() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 1);
    let cfg = dir.path().join("epitaph.toml");
    let truth: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
    let oom_leaker = truth["instances"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| *v == "oom_leak")
        .map(|(k, _)| k.clone())
        .unwrap();

    // Not scanned yet: fetched from the sources.
    let out = epitaph()
        .arg("--config")
        .arg(&cfg)
        .args(["instance", &oom_leaker])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("oom_leak"), "{text}");
    assert!(text.contains(">> "), "matched line marked: {text}");
    assert!(text.contains("[node.heap_oom oom]"), "{text}");
    assert!(text.contains("source       sources"), "{text}");
    assert!(text.contains("Next steps"), "{text}");

    // Now it is in the store.
    let out = epitaph()
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "json", "instance", &oom_leaker])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["status"], "terminated");
    assert_eq!(v["from"], "store");
    assert_eq!(v["report"]["verdict"], "oom_leak");

    // Unknown to every source: an error naming it (exit 2), never "no termination" (which
    // reads as "still running").
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .args(["instance", "i-0123456789abcdef0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "i-0123456789abcdef0: unknown instance",
        ));
    // Malformed ids are bad input.
    for bad in [
        "i-xyz",
        "0123456789abcdef0",
        "i-0123456789ABCDEF0",
        "i-0123;rm",
    ] {
        epitaph()
            .arg("--config")
            .arg(&cfg)
            .args(["instance", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("not an EC2 instance id"));
    }
}

/// Instances whose deployment identity cannot be found (here: a tag no instance carries, as
/// on a first run where the dead are gone from the inventory) are counted and said, with the
/// fix, in the JSON, the table and the HTML — never silently grouped.
#[test]
fn unattributed_instances_are_counted_and_said() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 2);
    let cfg = dir.path().join("epitaph.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "identity = \"launch_template\"",
        "identity = \"tag\"\ntag = \"release\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let (v, code) = scan_json(&cfg, &[]);
    assert_eq!(code, 0);
    let analysed = v["summary"]["analysed"].as_u64().unwrap();
    assert!(analysed > 0);
    assert_eq!(
        v["summary"]["coverage"]["unattributed"], analysed,
        "{}",
        v["summary"]
    );
    assert!(v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["deployment"]
            .as_str()
            .unwrap()
            .ends_with(" (unattributed)")));
    for (format, marker) in [
        ("table", "UNATTRIBUTED — "),
        ("html", "<b>Unattributed:</b>"),
    ] {
        // A fresh state each time: the instances are analysed (not already known) again.
        for f in ["epitaph.db", "epitaph.db-wal", "epitaph.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let out = epitaph()
            .arg("--config")
            .arg(&cfg)
            .args(["--format", format, "scan"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{format}: {text}");
        assert!(
            text.contains("log_field"),
            "{format}: the fix is named: {text}"
        );
    }
}

// ---------------------------------------------------------------- config --------------------

fn config_check(cfg: &Path) -> assert_cmd::assert::Assert {
    epitaph()
        .arg("--config")
        .arg(cfg)
        .args(["config", "check"])
        .assert()
}

/// `config schema` prints the schema `config check` enforces (the same derived document), as
/// JSON Schema 2020-12, each section described — without reading a config.
#[test]
fn config_schema_prints_the_checked_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = epitaph()
        .current_dir(dir.path())
        .env_remove("EPITAPH_CONFIG")
        .args(["config", "schema"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(&printed, epitaph::config::schema::json_schema());
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // Every section the example config uses is described at the top of the printed schema.
    let example: toml::Table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/epitaph.example.toml"
    ))
    .unwrap()
    .parse()
    .unwrap();
    assert!(
        example.len() >= 5,
        "{:?}",
        example.keys().collect::<Vec<_>>()
    );
    for section in example.keys() {
        let node = &printed["properties"][section.as_str()];
        assert!(
            node["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{section}: no description in the printed schema: {node}"
        );
    }
}

/// A reader that went away (`epitaph config schema | head`) ends the command quietly with a
/// shell's SIGPIPE status, not an error message. The pipe's read end is closed before the
/// process starts, so the first write fails whatever the machine's speed.
#[test]
fn a_closed_stdout_ends_quietly_with_the_sigpipe_status() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_epitaph"))
        .args(["config", "schema"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[scan]\nconcurency = 3\nlast_words_window = \"a while\"\n[deployment]\nidentity = \"colour\"\n[sources.logs]\nkind = \"file\"\nformat = \"xml\"\n").unwrap();
    config_check(&cfg).code(2).stderr(
        predicate::str::contains("scan.concurency: unknown key")
            .and(predicate::str::contains("scan.last_words_window"))
            .and(predicate::str::contains("deployment.identity"))
            .and(predicate::str::contains("sources.logs.format")),
    );
    std::fs::write(&cfg, "[sources.activities]\npath = \"missing\"\n").unwrap();
    config_check(&cfg).code(2).stderr(
        predicate::str::contains("sources.activities.path")
            .and(predicate::str::contains("does not exist"))
            .and(predicate::str::contains("sources.logs.path: required")),
    );
    std::fs::write(&cfg, "[scan\n").unwrap();
    config_check(&cfg)
        .code(2)
        .stderr(predicate::str::contains("bad.toml:1"));

    let good = tempfile::tempdir().unwrap();
    simulate_into(good.path(), 1);
    epitaph()
        .arg("--config")
        .arg(good.path().join("epitaph.toml"))
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok"));
    // Environment overrides are checked too.
    epitaph()
        .arg("--config")
        .arg(good.path().join("epitaph.toml"))
        .args(["config", "check"])
        .env("EPITAPH_SCAN__CONCURRENCY", "0")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "scan.concurrency: must be at least 1",
        ));
}

#[test]
fn scan_without_config_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    epitaph()
        .current_dir(dir.path())
        .arg("scan")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--config").and(predicate::str::contains("epitaph demo")));
}

#[test]
fn unbuilt_backends_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 1);
    let cfg = dir.path().join("epitaph.toml");
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .arg("scan")
        .env("EPITAPH_SOURCES__LOGS__KIND", "prometheus")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("not implemented")
                .and(predicate::str::contains("sources.logs.kind")),
        );
    // A built backend without its table is a configuration error naming the keys.
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .arg("scan")
        .env("EPITAPH_SOURCES__LOGS__KIND", "loki")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("sources.logs.loki.url: required").and(
                predicate::str::contains("sources.logs.loki.selector: required"),
            ),
        );
}

// ---------------------------------------------------------------- bad input in a scan -------

#[test]
fn bad_files_are_reported_and_everything_else_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 2);
    let cfg = dir.path().join("epitaph.toml");
    // A truncated activities file, garbage log lines, and bad metric rows.
    let acts = dir.path().join("activities/catalog-web.json");
    let text = std::fs::read_to_string(&acts).unwrap();
    std::fs::write(&acts, &text[..text.len() / 2]).unwrap();
    let mut logs = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("logs/checkout-api.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut logs, b"{\"truncated\": \n\xff\xfe\n{\"timestamp\": \"2026-01-04T00:00:00Z\", \"message\": \"no instance\"}\n").unwrap();
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("metrics/checkout-api.csv"))
        .unwrap();
    std::io::Write::write_all(
        &mut metrics,
        b"2026-01-04T00:00:00Z,i-0123456789abcdef0,lots\nnot,a\n",
    )
    .unwrap();

    let (v, code) = scan_json(&cfg, &[]);
    assert_eq!(code, 2, "unreadable input → exit 2");
    let errors = v["summary"]["input_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].as_str().unwrap().contains("catalog-web.json:"),
        "{errors:?}"
    );
    assert_eq!(v["summary"]["skipped_records"], 5, "{}", v["summary"]);
    let skipped = v["summary"]["skipped"].to_string();
    assert!(skipped.contains("checkout-api.jsonl:"), "{skipped}");
    assert!(skipped.contains("checkout-api.csv:"), "{skipped}");
    // Every other group's instances were still analysed.
    let n = v["instances"].as_array().unwrap().len();
    assert!((50..60).contains(&n), "{n}");
    assert_eq!(v["summary"]["complete"], false);

    // The window was not marked complete: after the file is fixed, a plain rerun covers it again.
    std::fs::write(&acts, &text).unwrap();
    let (again, code) = scan_json(&cfg, &[]);
    assert_eq!(code, 0);
    assert_eq!(again["instances"].as_array().unwrap().len(), 60);
    assert_eq!(
        again["summary"]["analysed"].as_u64().unwrap() as usize,
        60 - n
    );
}

/// Thousands of bad rows are a few counted rows (by file and kind), not thousands of lines;
/// a refused whole file is one line at the top of the table report, before any verdict.
#[test]
fn skipped_records_are_counted_by_file_and_kind_and_refused_files_head_the_report() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 4);
    let cfg = dir.path().join("epitaph.toml");
    let mut bad = String::new();
    for i in 0..3000 {
        bad.push_str(&format!("2026-01-04T00:00:00Z,i-0123456789abcdef0,x{i}\n"));
    }
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("metrics/checkout-api.csv"))
        .unwrap();
    std::io::Write::write_all(&mut metrics, bad.as_bytes()).unwrap();
    // What a failed `aws logs … > file` leaves behind.
    std::fs::write(dir.path().join("logs/failed-export.json"), "").unwrap();

    let (v, code) = scan_json(&cfg, &[]);
    assert_eq!(code, 2, "{}", v["summary"]);
    let s = &v["summary"];
    assert_eq!(s["skipped_records"], 3000, "{s}");
    let groups = s["skipped_by_input"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(groups[0]["input"]
        .as_str()
        .unwrap()
        .ends_with("checkout-api.csv"));
    assert_eq!(groups[0]["kind"], "bad value `…`");
    assert_eq!(groups[0]["count"], 3000);
    let errors = s["input_errors"].as_array().unwrap();
    assert!(
        errors.len() == 1 && errors[0].as_str().unwrap().contains("failed-export.json"),
        "{errors:?}"
    );
    assert!(
        !s["skipped"].to_string().contains("failed-export.json"),
        "a refused file is never a skipped record"
    );

    let out = epitaph()
        .arg("--config")
        .arg(&cfg)
        .args(["scan", "--refresh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let table = String::from_utf8_lossy(&out.stdout);
    let top = &table[..table.find("DEPLOYMENTS").expect("the deployments table")];
    assert!(
        top.contains("UNREADABLE INPUTS") && top.contains("failed-export.json"),
        "the refused file heads the report:\n{top}"
    );
    assert!(
        table.contains("3000 × bad value `…` — ") && table.contains("checkout-api.csv"),
        "{table}"
    );
    assert!(
        table.matches("checkout-api.csv").count() <= 2,
        "one row for 3000 records:\n{table}"
    );
}

#[test]
fn corrupt_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 1);
    std::fs::write(dir.path().join("epitaph.db"), b"this is not a database").unwrap();
    epitaph()
        .arg("--config")
        .arg(dir.path().join("epitaph.toml"))
        .arg("scan")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("state store"));
}

#[cfg(feature = "aws")]
#[test]
fn aws_without_a_region_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aws.toml");
    std::fs::write(&cfg, "[sources.activities]\nkind = \"aws\"\n[sources.logs]\nkind = \"aws\"\nlog_group = \"/app\"\n[sources.metrics]\nkind = \"aws\"\n").unwrap();
    epitaph()
        .arg("--config")
        .arg(&cfg)
        .arg("scan")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("aws.region: no region configured"));
    // A config that forgets the log group names the key.
    std::fs::write(&cfg, "[sources.logs]\nkind = \"aws\"\n").unwrap();
    config_check(&cfg)
        .code(2)
        .stderr(predicate::str::contains("sources.logs.log_group: required"));
}
