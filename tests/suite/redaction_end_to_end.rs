//! Secret masking end to end (README.md, "Redaction"): secrets planted in the simulated last
//! words — an AWS access key, a `password=` pair and a token matched only by the user's
//! `alerts.redact_patterns` — never reach the state file (its raw bytes, WAL included), any CLI
//! output (scan and instance, in every format), any API response or any webhook body, while the
//! mask shows where they were.

use crate::common;
use crate::contracts::Service;

use std::time::{Duration, Instant};

use common::{Fleet, Receiver, PLANTED_AWS_KEY, PLANTED_PASSWORD};

/// Masked only because the config says so.
const USER_SECRET: &str = "corp-424242";

fn assert_clean(what: &str, text: &str) {
    for secret in [PLANTED_PASSWORD, PLANTED_AWS_KEY, USER_SECRET] {
        assert!(!text.contains(secret), "{what} shows {secret}");
    }
}

fn run(fleet: &Fleet, args: &[&str]) -> String {
    let out = std::process::Command::new(common::bin())
        .arg("--config")
        .arg(fleet.config_path())
        .args(args)
        .env_remove("EPITAPH_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert_clean(&format!("stderr of {args:?}"), &stderr);
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_reach_no_store_output_response_or_webhook() {
    let rx = Receiver::start().await;
    let fleet = Fleet::new(1, 6, 60);
    fleet.plant_secrets();
    // The user's own secret format, on the same planted line.
    for entry in std::fs::read_dir(fleet.dir.path().join("logs")).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            text.replace(
                PLANTED_AWS_KEY,
                &format!("{PLANTED_AWS_KEY} ticket {USER_SECRET}"),
            ),
        )
        .unwrap();
    }
    let planted =
        std::fs::read_to_string(fleet.dir.path().join("logs/checkout-api.jsonl")).unwrap();
    assert!(planted.contains(USER_SECRET) && planted.contains(PLANTED_PASSWORD));
    fleet.append_config(&format!(
        "[alerts]\nwebhook_url = \"{}\"\nslack_webhook_url = \"{}\"\nredact_patterns = [\"corp-[0-9]{{6}}\"]\n",
        rx.url("/generic"),
        rx.url("/slack")
    ));

    // CLI: the scan (which stores and delivers) in every format.
    let json = run(&fleet, &["--format", "json", "scan"]);
    assert_clean("scan --format json", &json);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let victim = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["signature"] == "node.heap_oom")
        })
        .and_then(|i| i["instance_id"].as_str())
        .expect("a V8 heap OOM death")
        .to_string();
    for format in ["table", "markdown", "html"] {
        let out = run(&fleet, &["--format", format, "scan"]);
        assert_clean(&format!("scan --format {format}"), &out);
    }
    assert!(
        run(&fleet, &["--format", "html", "scan"]).contains("[REDACTED]"),
        "the HTML report quotes the masked last words"
    );
    // CLI: the instance, from the store and fetched again, in every format.
    for refresh in [false, true] {
        for format in ["json", "table", "markdown", "html"] {
            let mut args = vec!["--format", format, "instance", victim.as_str()];
            if refresh {
                args.push("--refresh");
            }
            let out = run(&fleet, &args);
            assert_clean(&format!("{args:?}"), &out);
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                let words = v["report"]["last_words"].to_string();
                assert!(
                    words.contains("password=[REDACTED]"),
                    "the planted line is in the last words, masked: {words}"
                );
                assert!(words.contains("ticket [REDACTED]"), "user pattern: {words}");
            }
        }
    }

    // Webhooks (delivered by `epitaph scan`).
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.got_on("/slack").is_empty() || rx.got_on("/generic").is_empty() {
        assert!(Instant::now() < deadline, "no webhook deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies =
        serde_json::to_string(&rx.got().iter().map(|g| &g.body).collect::<Vec<_>>()).unwrap();
    assert_clean("webhook bodies", &bodies);
    assert!(bodies.contains("password=[REDACTED]"), "mask visible");
    assert!(bodies.contains("ticket [REDACTED]"), "user pattern applied");

    // The API.
    let svc = Service::start(&fleet, &[]).await;
    for (method, path) in [
        (reqwest::Method::POST, "/v1/scans?wait=true".to_string()),
        (reqwest::Method::GET, format!("/v1/instances/{victim}")),
        (
            reqwest::Method::GET,
            format!("/v1/instances/{victim}?refresh=true"),
        ),
        (reqwest::Method::GET, "/".to_string()),
        (reqwest::Method::GET, "/v1/findings".to_string()),
        (reqwest::Method::GET, "/v1/deployments".to_string()),
        (reqwest::Method::GET, "/v1/scans/latest".to_string()),
    ] {
        let (code, body) = svc.call(method.clone(), &path).await;
        assert_eq!(code, 200, "{method} {path}: {body}");
        assert_clean(&format!("{method} {path}"), &body);
        if path.starts_with("/v1/instances/") {
            assert!(body.contains("password=[REDACTED]"), "{body}");
        }
    }
    drop(svc);

    // The state file, byte for byte (the WAL and shared memory too).
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", fleet.state_path().display());
        if let Ok(b) = std::fs::read(&p) {
            bytes.extend(b);
        }
    }
    let raw = String::from_utf8_lossy(&bytes);
    assert_clean("the state file", &raw);
    assert!(
        raw.contains("password=[REDACTED]"),
        "last words are stored, masked"
    );
    assert!(
        raw.contains("ticket [REDACTED]"),
        "user pattern applied before storing"
    );
}
