//! The running service against its own OpenAPI document (`docs/openapi.yaml`), fuzzed by
//! schemathesis (installed by scripts/test.sh into ~/.cache/epitaph-test-tools; path in
//! EPITAPH_SCHEMATHESIS): every documented route with generated inputs, every response's
//! status, content type and body checked against the document, and auth enforced.

use crate::common;

use std::time::{Duration, Instant};

use common::Fleet;

const TOKEN: &str = "conformance-token";
/// Longest schemathesis may run (it takes well under a minute here); bounds a hang.
const SCHEMATHESIS_BOUND: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_conforms_to_its_openapi_document() {
    let st = std::env::var_os("EPITAPH_SCHEMATHESIS").expect(
        "EPITAPH_SCHEMATHESIS is not set: run scripts/test.sh, which installs schemathesis",
    );
    let fleet = Fleet::new(1, 6, 60);
    // Yearly: only the scans the fuzzer starts.
    let serve = common::spawn_serve(&fleet, TOKEN, "0 0 1 1 *", &[]);
    let base = serve.base.clone();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .post(format!("{base}/v1/scans?wait=true"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "service did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(st);
        cmd.args([
            "run",
            spec,
            "--url",
            &base,
            "--checks",
            "all",
            "--max-examples",
            "40",
        ])
        .args([
            "--seed",
            "1",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // It keeps a cache folder in its working directory: not in the repository.
        .current_dir(std::env::temp_dir());
        common::output_timeout(&mut cmd, SCHEMATHESIS_BOUND)
    })
    .await
    .unwrap();
    drop(serve);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Tested: {}", epitaph::server::ROUTES.len())),
        "every route exercised:\n{stdout}"
    );
}
