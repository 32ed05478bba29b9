//! The config's unit tests: every problem reported by key, the example configs valid and
//! complete, the rules across keys (the environment's own are in env.rs).

use std::path::{Path, PathBuf};

use chrono::Duration;

use super::*;

pub(super) fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::parse(text, "test.toml", Path::new("/base"), &env)
}

#[test]
fn defaults_are_valid() {
    let c = parse("", &[]).unwrap();
    assert_eq!(c.scan.concurrency, 16);
    assert_eq!(c.state_path(), PathBuf::from("/base/epitaph.db"));
    assert_eq!(c.sources.metrics.memory_limit(), Some(100.0));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
[scan]
concurency = 4
last_words_window = "sixty"
concurrency = 0
[deployment]
identity = "tag"
[sources.logs]
format = "xml"
[bogus]
x = 1
"#;
    let err = parse(text, &[]).unwrap_err().to_string();
    for needle in [
        "scan.concurency: unknown key",
        "scan.last_words_window",
        "scan.concurrency: must be at least 1",
        "sources.logs.format",
        "bogus: unknown section",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
}

#[test]
fn semantic_problem_names_key() {
    let err = parse("[deployment]\nidentity = \"tag\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("deployment.tag: required"), "{err}");
}

#[test]
fn syntax_error_names_line() {
    let err = parse("[scan]\nsince = \n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.toml:2"), "{err}");
}

#[test]
fn example_config_is_valid_and_documents_every_key() {
    let text = include_str!("../../config/epitaph.example.toml");
    parse(text, &[]).unwrap();
    // Uncommenting the optional keys must give a valid config too.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.contains("  ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    parse(&uncommented, &[]).unwrap();
    let keys = schema::keys();
    assert!(
        keys.len() > 100,
        "the derived key list is the whole config: {keys:?}"
    );
    for key in &keys {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf} =")),
            "example config does not document `{key}`"
        );
    }
}

#[test]
fn prometheus_table_is_typed_and_checked_by_key() {
    let ok = r#"
[sources.metrics]
kind = "prometheus"
unit = "bytes"
[sources.metrics.prometheus]
url = "http://127.0.0.1:9090"
query = "node_memory_MemTotal_bytes{{instance_matcher}} - node_memory_MemAvailable_bytes{{instance_matcher}}"
limit_query = "node_memory_MemTotal_bytes{{instance_matcher}}"
headers = { "X-Scope-OrgID" = "tenant-1" }
[sources.metrics.prometheus.sigv4]
region = "us-east-1"
"#;
    let c = parse(ok, &[]).unwrap();
    let p = c.sources.metrics.prometheus.as_ref().unwrap();
    assert_eq!(p.headers["X-Scope-OrgID"].expose(), "tenant-1");
    assert_eq!(p.sigv4.as_ref().unwrap().service, "aps");
    assert!(
        !format!("{p:?}").contains("tenant-1"),
        "header values are secrets"
    );

    let bad = r#"
[sources.metrics]
kind = "prometheus"
unit = "bytes"
[sources.metrics.prometheus]
url = "prometheus:9090"
query = "mem_used_percent"
max_points = 5
step = "soon"
headers = { "X-Scope-OrgID" = 3 }
unit = "bytes"
"#;
    let err = parse(bad, &[]).unwrap_err().to_string();
    for needle in [
        "sources.metrics.prometheus.max_points: must be at least 10",
        "sources.metrics.prometheus.step",
        "sources.metrics.prometheus.headers: `X-Scope-OrgID` must be a non-empty string",
        "sources.metrics.prometheus.unit: unknown key — `unit` is shared by every backend of this source: set sources.metrics.unit in [sources.metrics]",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let err = parse(
        "[sources.metrics]\nkind = \"prometheus\"\nunit = \"bytes\"\n[sources.metrics.prometheus]\nurl = \"prometheus:9090\"\nquery = \"mem_used_percent\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "sources.metrics.prometheus.url: must be an http(s) URL",
        "sources.metrics.prometheus.query: `mem_used_percent` names no instance",
        "sources.metrics.limit: required with unit = \"bytes\"",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let err = parse("[sources.metrics]\nkind = \"prometheus\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.metrics.prometheus.url: required"),
        "{err}"
    );
    // The table is only read for kind = "prometheus"; a prometheus table under another
    // role is unknown.
    assert!(parse("[sources.metrics.prometheus]\nurl = \"x\"\n", &[]).is_ok());
    let err = parse("[sources.logs.prometheus]\nurl = \"x\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.logs.prometheus: unknown section"),
        "{err}"
    );
    // Headers from the environment: a JSON object.
    let c = parse(
        "[sources.metrics]\nkind = \"prometheus\"\n[sources.metrics.prometheus]\nurl = \"http://p:9090\"\n",
        &[(
            "EPITAPH_SOURCES__METRICS__PROMETHEUS__HEADERS",
            r#"{"X-Scope-OrgID":"t2"}"#,
        )],
    )
    .unwrap();
    let p = c.sources.metrics.prometheus.unwrap();
    assert_eq!(p.headers["X-Scope-OrgID"].expose(), "t2");
}

#[test]
fn log_backend_tables_are_checked_by_key() {
    let err = parse("[sources.logs]\nkind = \"splunk\"\n", &[])
        .unwrap_err()
        .to_string();
    for needle in [
        "sources.logs.splunk.url: required",
        "sources.logs.splunk.index: required",
        "sources.logs.splunk.instance_filter: required",
        "sources.logs.splunk.token: required",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let bad = r#"
[sources.logs]
kind = "loki"
[sources.logs.loki]
url = "http://loki:3100"
selector = '{instance_id="{instance}"}'
limit = 0
auth = "basic"
"#;
    let err = parse(bad, &[]).unwrap_err().to_string();
    for needle in [
        "sources.logs.loki.limit: must be at least 1",
        "sources.logs.loki.auth: unknown key",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let err = parse(
        "[sources.logs]\nkind = \"loki\"\n[sources.logs.loki]\nurl = \"http://l\"\nselector = '{instance_id=\"{instance}\"}'\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "sources.logs.loki.selector: label `instance_id`: unknown placeholder `{instance}`"
        ),
        "{err}"
    );
    let err = parse(
        "[sources.logs.splunk]\nauth_scheme = \"basic\"\n[sources.metrics]\nkind = \"loki\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("sources.logs.splunk.auth_scheme: `basic` is not one of bearer, splunk"),
        "{err}"
    );
    // A token from the environment, as for every key.
    let c = parse(
        "[sources.logs]\nkind = \"splunk\"\n[sources.logs.splunk]\nurl = \"https://s:8089\"\nindex = \"app\"\ninstance_filter = \"host={private_dns}\"\n",
        &[("EPITAPH_SOURCES__LOGS__SPLUNK__TOKEN", "tok")],
    )
    .unwrap();
    let t = c.sources.logs.splunk.unwrap().token.unwrap();
    assert_eq!(t.expose(), "tok");
    // A logs backend elsewhere is named as such.
    let err = parse("[sources.metrics]\nkind = \"loki\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sources.metrics.kind: `loki` is a logs backend"),
        "{err}"
    );
}

#[test]
fn backend_examples_are_valid() {
    for (name, text) in [
        ("splunk", include_str!("../../config/splunk.example.toml")),
        ("loki", include_str!("../../config/loki.example.toml")),
    ] {
        let c = parse(text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.sources.logs.kind.as_str(), name);
    }
    let c = parse(include_str!("../../config/prometheus.example.toml"), &[])
        .unwrap_or_else(|e| panic!("prometheus: {e}"));
    assert_eq!(c.sources.metrics.kind, SourceKind::Prometheus);
}

#[test]
fn aws_targets_are_regions_or_role_at_region() {
    assert_eq!(
        parse_target("eu-west-1").unwrap(),
        AwsTarget {
            region: "eu-west-1".into(),
            role_arn: None
        }
    );
    let t = parse_target("arn:aws:iam::210987654321:role/epitaph-read@us-east-2").unwrap();
    assert_eq!(t.region, "us-east-2");
    assert_eq!(
        t.role_arn.as_deref(),
        Some("arn:aws:iam::210987654321:role/epitaph-read")
    );
    assert!(parse_target("EU West").is_err());
    assert!(parse_target("epitaph-read@us-east-1").is_err());
    assert!(parse_target("arn:aws:iam::1:role/x@").is_err());
    let err = parse("[aws]\ntargets = [\"us-east-1\", \"nope@Mars\"]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("aws.targets[1]"), "{err}");
}

#[test]
fn a_role_is_assumed_in_its_own_partition() {
    let cn = parse_target("arn:aws-cn:iam::210987654321:role/epitaph-read@cn-north-1").unwrap();
    assert_eq!(cn.region, "cn-north-1");
    assert!(
        parse_target("arn:aws-us-gov:iam::210987654321:role/r@us-gov-west-1").is_ok(),
        "GovCloud role in a GovCloud region"
    );
    let err = parse_target("arn:aws:iam::210987654321:role/r@cn-north-1").unwrap_err();
    assert!(
        err.contains("partition `aws`") && err.contains("`aws-cn`"),
        "{err}"
    );
    assert!(parse_target("arn:aws-cn:iam::210987654321:role/r@us-east-1").is_err());
}

#[test]
fn assume_role_settings_are_checked_by_key() {
    let err = parse(
        "[aws]\nsession_duration = \"5m\"\nsession_name = \"no spaces allowed\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("aws.session_duration"), "{err}");
    assert!(err.contains("aws.session_name"), "{err}");
    let ok = parse(
        "[aws]\nexternal_id = \"x-1\"\nsession_name = \"epitaph-prod\"\nsession_duration = \"2h\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(ok.aws.external_id.as_deref(), Some("x-1"));
    assert_eq!(ok.aws.session_duration(), Duration::hours(2));
}

#[test]
fn retention_is_a_duration_and_compact_rows_outlive_evidence() {
    let c = parse("", &[]).unwrap();
    assert_eq!(c.evidence_retention(), Duration::days(30));
    assert_eq!(c.facts_retention(), Duration::days(90));
    let c = parse(
        "[state]\nretention = \"14d\"\n",
        &[("EPITAPH_STATE__FACTS_RETENTION", "14d")],
    )
    .unwrap();
    assert_eq!(c.facts_retention(), Duration::days(14));
    let err = parse("[state]\nretention = \"a month\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("state.retention"), "{err}");
    let err = parse(
        "[state]\nretention = \"60d\"\nfacts_retention = \"30d\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("state.facts_retention: `30d` is shorter than state.retention `60d`"),
        "{err}"
    );
    let err = parse(
        "[scan]\nfinding_lookback = \"14d\"\n[state]\nretention = \"7d\"\nfacts_retention = \"10d\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("state.facts_retention: `10d` is shorter than scan.finding_lookback `14d`"),
        "{err}"
    );
    let err = parse("[state]\nretention = \"0s\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.retention: `0s` must be longer than zero"),
        "{err}"
    );
}

#[test]
fn state_url_must_be_postgres_and_never_shows_its_password() {
    let err = parse("[state]\nurl = \"mysql://root:hunter2@db/epitaph\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.url: must be a postgres:// or postgresql:// URL, not `mysql`"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let c = parse(
        "",
        &[(
            "EPITAPH_STATE__URL",
            "postgres://epitaph:hunter2@db:5432/epitaph",
        )],
    )
    .unwrap();
    assert_eq!(
        crate::store::describe(&c),
        "postgres://epitaph:[redacted]@db:5432/epitaph"
    );
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn kinds_are_enums_whose_values_come_from_the_types() {
    let err = parse(
        "[sources.logs]\nstream_lookup = \"grep\"\n[alerts]\nverdicts = [\"leaking\", \"doomed\"]\n[analysis]\nearly_warning = \"some\"\n",
        &[("EPITAPH_SOURCES__METRICS__UNIT", "kb")],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "sources.logs.stream_lookup: `grep` is not one of name, search, text",
        "alerts.verdicts: item 1: `doomed` is not one of leaking, oom_without_leak, crashing, healthy, insufficient_evidence",
        "analysis.early_warning: `some` is not one of leaking, all, off",
        "sources.metrics.unit: `kb` is not one of percent, bytes",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let c = parse(
        "[sources.logs]\nkind = \"aws\"\nlog_group = \"/app\"\nstream_lookup = \"search\"\nformat = \"jsonl\"\n[deployment]\nidentity = \"launch_template\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.sources.logs.kind, SourceKind::Aws);
    assert_eq!(c.sources.logs.stream_lookup, StreamLookup::Search);
    assert_eq!(c.sources.logs.format, LogFormat::Jsonl);
    assert_eq!(
        c.deployment_identity(),
        crate::analysis::correlate::DeploymentIdentity::LaunchTemplate
    );
}

#[test]
fn each_source_role_has_its_own_keys() {
    // A key of another role is unknown where it is written, and the hint names its role.
    let err = parse(
        "[sources.logs]\nunit = \"bytes\"\n[sources.activities]\nlog_group = \"/app\"\n[sources.metrics]\nlog_group = \"/app\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "sources.logs.unit: unknown key (did you mean sources.metrics.unit?)",
        "sources.activities.log_group: unknown key (did you mean sources.logs.log_group?)",
        "sources.metrics.log_group: unknown key",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
    let keys = schema::keys();
    for (present, absent) in [
        ("sources.activities.inventory", "sources.logs.inventory"),
        (
            "sources.logs.stream_lookup",
            "sources.metrics.stream_lookup",
        ),
        ("sources.metrics.period", "sources.activities.period"),
        (
            "sources.logs.loki.selector",
            "sources.metrics.loki.selector",
        ),
    ] {
        assert!(keys.iter().any(|k| k == present), "{present} missing");
        assert!(!keys.iter().any(|k| k == absent), "{absent} present");
    }
}

#[test]
fn durations_are_parsed_once_at_load_in_every_accepted_spelling() {
    let c = parse(
        "[scan]\noverlap = \"1.5h\"\nfetch_timeout = \"45\"\nseries_lookback = \"2w\"\n[sources.logs.loki]\nlookback = \"3 days\"\n",
        &[("EPITAPH_ALERTS__COOLDOWN", "90 mins")],
    )
    .unwrap();
    assert_eq!(c.overlap(), Duration::minutes(90));
    assert_eq!(c.fetch_timeout(), Duration::seconds(45));
    assert_eq!(c.series_lookback(), Duration::weeks(2));
    assert_eq!(c.alerts.cooldown(), Duration::minutes(90));
    assert_eq!(
        c.sources.logs.loki.unwrap().lookback.get(),
        Duration::days(3)
    );
    // The text as written is kept for messages.
    assert_eq!(c.scan.overlap.to_string(), "1.5h");
    let err = parse(
        "[scan]\nsince = \"last week\"\n[sources.events]\nsettle = \"soon\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "scan.since: `last week` is not a duration",
        "nor is it a timestamp",
        "sources.events.settle: `soon` is not a duration",
    ] {
        assert!(err.contains(needle), "missing {needle} in {err}");
    }
}

#[test]
fn the_derived_schema_describes_keys_from_their_doc_comments() {
    let schema = schema::json_schema();
    let scan = &schema["properties"]["scan"]["properties"];
    assert!(
        scan["drain_window"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("EndTime is unknown")),
        "{}",
        scan["drain_window"]
    );
    assert_eq!(scan["drain_window"]["format"], "duration");
    assert_eq!(scan["concurrency"]["minimum"], 1);
}

#[test]
fn every_key_is_described_by_its_doc_comment() {
    let undocumented: Vec<String> = schema::keys()
        .into_iter()
        .filter(|k| !matches!(schema::description(k), Some(d) if !d.trim().is_empty()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "keys without a doc comment (their description in the derived schema): {undocumented:?}"
    );
}
