//! `epitaph doctor`: the checklist and its exit codes. With the `file` backends, against a
//! simulated fleet (files checked, AWS checks said to be not run); with the `aws` backends,
//! against moto plus the activity front of `aws_moto.rs`, loaded with a tiny account — two
//! groups, two terminated instances with their log streams and a few memory points, once by
//! `InstanceId` alone and once with the CloudWatch agent's appended dimensions — and then
//! configured right, and wrong in each way the doctor must name.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{bin, Fleet};

/// Runs `epitaph --format json doctor`; returns the checklist and the exit code.
fn doctor_json(config: &Path) -> (Value, i32) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(["--format", "json", "doctor"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

/// The check with this id.
fn check<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {list:#}"))
}

#[test]
fn doctor_checks_the_files_and_says_aws_checks_were_not_run() {
    let fleet = Fleet::new(5, 2, 10);
    let (list, code) = doctor_json(&fleet.config_path());
    assert_eq!(code, 0, "{list:#}");
    assert_eq!(list["ok"], true);
    for id in [
        "files.paths",
        "files.activities",
        "files.logs",
        "files.metrics",
        "signatures",
    ] {
        assert_eq!(check(&list, id)["status"], "pass", "{list:#}");
    }
    // Nothing AWS is claimed: one SKIP says which checks are AWS-only.
    let aws = check(&list, "aws");
    assert_eq!(aws["status"], "skip");
    assert!(
        aws["detail"].as_str().unwrap().contains("AWS-only"),
        "{aws}"
    );
    assert!(
        list["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["id"].as_str().unwrap().starts_with("iam.")),
        "{list:#}"
    );

    // A missing input: FAIL naming the key, exit 2, and the human form prints the fix.
    let text = std::fs::read_to_string(fleet.config_path()).unwrap();
    let broken = fleet.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        text.replacen("path = \"metrics\"", "path = \"metricz\"", 1),
    )
    .unwrap();
    let (list, code) = doctor_json(&broken);
    assert_eq!(code, 2, "{list:#}");
    let paths = check(&list, "files.paths");
    assert_eq!(paths["status"], "fail");
    assert!(
        paths["detail"]
            .as_str()
            .unwrap()
            .contains("sources.metrics.path"),
        "{paths}"
    );
    let out = Command::new(bin())
        .arg("--config")
        .arg(&broken)
        .arg("doctor")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("FAIL files.paths: sources.metrics.path"),
        "{human}"
    );
    assert!(
        human.contains("     fix: point sources.metrics.path"),
        "{human}"
    );
}

#[cfg(feature = "aws")]
mod against_moto {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use chrono::{DateTime, Duration, Utc};
    use serde_json::{json, Value};

    use super::check;
    use crate::aws_moto::{
        boto3, epitaph, memory_datum, put_log_events_calls, start_front, start_moto, Faults, REGION,
    };

    const LOG_GROUP: &str = "/epitaph/app";
    const AMI: &str = "ami-12c6146b";
    /// The namespace holding the memory metric with the agent's appended dimensions.
    const APPENDED_NAMESPACE: &str = "CWAgentAppended";

    /// Two groups, one terminated instance each: (group, instance, termination time).
    fn instances(now: DateTime<Utc>) -> Vec<(&'static str, &'static str, DateTime<Utc>)> {
        vec![
            (
                "checkout-api",
                "i-0a1b2c3d4e5f60001",
                now - Duration::hours(3),
            ),
            (
                "catalog-web",
                "i-0a1b2c3d4e5f60002",
                now - Duration::hours(2),
            ),
        ]
    }

    fn iso(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    async fn load_account(moto: &str, now: DateTime<Utc>) -> BTreeMap<String, Vec<Value>> {
        let mut seed = vec![
            json!({"service": "autoscaling", "op": "create_launch_configuration",
                                   "args": {"LaunchConfigurationName": "lc", "ImageId": AMI,
                                            "InstanceType": "t3.micro"}}),
        ];
        let mut activities = BTreeMap::new();
        for (group, id, t) in instances(now) {
            seed.push(json!({"service": "autoscaling", "op": "create_auto_scaling_group",
                             "args": {"AutoScalingGroupName": group, "LaunchConfigurationName": "lc",
                                      "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0,
                                      "AvailabilityZones": ["us-east-1a"]}}));
            activities.insert(
                group.to_string(),
                vec![json!({
                    "ActivityId": format!("act-{id}"),
                    "AutoScalingGroupName": group,
                    "Description": format!("Terminating EC2 instance: {id}"),
                    "Cause": format!("At {} an instance was taken out of service in response to an ELB system health check failure.", iso(t)),
                    "StartTime": iso(t),
                    "EndTime": iso(t + Duration::minutes(1)),
                    "StatusCode": "Successful",
                })],
            );
            let events: Vec<(i64, String)> = [60, 30, 5]
                .iter()
                .map(|s| {
                    (
                        (t - Duration::seconds(*s)).timestamp_millis(),
                        format!("serving, {s}s before the end"),
                    )
                })
                .collect();
            seed.extend(put_log_events_calls(LOG_GROUP, id, &events));
            // Six points before the end, by InstanceId alone and, in another namespace, with
            // what the agent's append_dimensions adds.
            for (namespace, dims) in [
                ("CWAgent", vec![("InstanceId", id)]),
                (
                    APPENDED_NAMESPACE,
                    vec![
                        ("InstanceId", id),
                        ("AutoScalingGroupName", group),
                        ("ImageId", AMI),
                        ("InstanceType", "t3.micro"),
                    ],
                ),
            ] {
                let data: Vec<Value> = (0..6)
                    .map(|k| {
                        memory_datum(
                            (t - Duration::minutes(5 * k)).timestamp(),
                            40.0 + k as f64,
                            &dims,
                        )
                    })
                    .collect();
                seed.push(json!({"service": "cloudwatch", "op": "put_metric_data",
                                 "args": {"Namespace": namespace, "MetricData": data}}));
            }
        }
        boto3(moto, REGION, seed);
        activities
    }

    /// A config against `endpoint`; `activities` and `metrics` are extra lines for those
    /// sections; `log_group` the group to read.
    fn config(dir: &Path, name: &str, endpoint: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = format!(
            "[scan]\nsince = \"6h\"\n\n[state]\npath = \"never-opened.db\"\n\n\
             [aws]\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\nmax_attempts = 2\nattempt_timeout = \"20s\"\ncall_timeout = \"40s\"\n\n\
             [sources.activities]\nkind = \"aws\"\ngroups = [\"checkout-api\", \"catalog-web\"]\n\n\
             [sources.logs]\nkind = \"aws\"\nlog_group = \"{LOG_GROUP}\"\n\n\
             [sources.metrics]\nkind = \"aws\"\n"
        );
        for (from, to) in edits {
            assert!(text.contains(from), "{from} not in the config");
            text = text.replacen(from, to, 1);
        }
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn run(config: PathBuf) -> (Value, i32, String) {
        tokio::task::spawn_blocking(move || epitaph(&config, &["doctor"]))
            .await
            .unwrap()
    }

    fn text(v: &Value) -> String {
        format!(
            "{} / fix: {}",
            v["detail"].as_str().unwrap_or(""),
            v["fix"].as_str().unwrap_or("")
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn doctor_against_moto_passes_a_good_config_and_names_each_mistake() {
        let moto = start_moto();
        let now = Utc::now();
        let activities = load_account(&moto.url, now).await;
        let front = start_front(&moto.url, activities, Arc::new(Faults::default()));
        let dir = tempfile::tempdir().unwrap();

        // Right: every check passes, exit 0.
        let (list, code, stderr) = run(config(dir.path(), "good.toml", &front, &[])).await;
        assert_eq!(code, 0, "{list:#}\n{stderr}");
        assert_eq!(list["ok"], true);
        for c in list["checks"].as_array().unwrap() {
            assert_eq!(c["status"], "pass", "{c}");
        }
        let connection = check(&list, "aws.connection");
        assert!(
            text(connection).contains(&front) && text(connection).contains(REGION),
            "{connection}"
        );
        for id in [
            "iam.autoscaling:DescribeAutoScalingGroups",
            "iam.autoscaling:DescribeScalingActivities",
            "iam.logs:DescribeLogGroups",
            "iam.logs:GetLogEvents",
            "iam.cloudwatch:GetMetricData",
            "iam.cloudwatch:ListMetrics",
            "activities.groups",
            "activities.terminations",
            "logs.log_group",
            "logs.last_words",
            "metrics.series",
        ] {
            check(&list, id);
        }
        assert!(
            text(check(&list, "logs.last_words")).contains("2 of the 2"),
            "{list:#}"
        );
        assert!(!dir.path().join("never-opened.db").exists(), "no store");

        // A misspelt log group: FAIL naming the key and the group that exists, exit 2.
        let (list, code, _) = run(config(
            dir.path(),
            "log-group.toml",
            &front,
            &[(LOG_GROUP, "/epitaph/ap")],
        ))
        .await;
        assert_eq!(code, 2, "{list:#}");
        let c = check(&list, "logs.log_group");
        assert_eq!(c["status"], "fail", "{c}");
        assert!(
            text(c).contains("sources.logs.log_group `/epitaph/ap` does not exist"),
            "{c}"
        );
        assert_eq!(c["fix"], "set sources.logs.log_group = \"/epitaph/app\"");
        assert_eq!(check(&list, "logs.last_words")["status"], "skip");

        // The agent appends dimensions the config does not ask for: FAIL listing the set that
        // exists, with the exact extra_dimensions.
        let appended = [(
            "[sources.metrics]\nkind = \"aws\"\n",
            "[sources.metrics]\nkind = \"aws\"\nnamespace = \"CWAgentAppended\"\n",
        )];
        let (list, code, _) = run(config(dir.path(), "appended.toml", &front, &appended)).await;
        assert_eq!(code, 2, "{list:#}");
        let c = check(&list, "metrics.series");
        assert_eq!(c["status"], "fail", "{c}");
        assert!(
            text(c).contains("{AutoScalingGroupName, ImageId, InstanceId, InstanceType}"),
            "{c}"
        );
        let setting = format!(
            "extra_dimensions = [\"AutoScalingGroupName={{asg}}\", \"ImageId={AMI}\", \"InstanceType=t3.micro\"]"
        );
        assert!(text(c).contains(&setting), "{c}");
        // The suggestion is right: with it, the series is found.
        let fixed = [(
            "[sources.metrics]\nkind = \"aws\"\n",
            &*format!(
                "[sources.metrics]\nkind = \"aws\"\nnamespace = \"CWAgentAppended\"\n{setting}\n"
            ),
        )];
        let (list, code, _) = run(config(dir.path(), "fixed.toml", &front, &fixed)).await;
        assert_eq!(code, 0, "{list:#}");
        assert_eq!(check(&list, "metrics.series")["status"], "pass");

        // A misspelt metric name: FAIL listing the metrics in the namespace, nearest first.
        let (list, code, _) = run(config(
            dir.path(),
            "metric.toml",
            &front,
            &[(
                "[sources.metrics]\nkind = \"aws\"\n",
                "[sources.metrics]\nkind = \"aws\"\nmetric_name = \"mem_used_precent\"\n",
            )],
        ))
        .await;
        assert_eq!(code, 2, "{list:#}");
        let c = check(&list, "metrics.series");
        assert_eq!(c["status"], "fail", "{c}");
        assert_eq!(
            c["fix"], "set sources.metrics.metric_name = \"mem_used_percent\"",
            "{c}"
        );

        // A group that matches nothing: FAIL with the groups that exist and the nearest one.
        let (list, code, _) = run(config(
            dir.path(),
            "groups.toml",
            &front,
            &[("\"checkout-api\", \"catalog-web\"", "\"chekout-api\"")],
        ))
        .await;
        assert_eq!(code, 2, "{list:#}");
        let c = check(&list, "activities.groups");
        assert_eq!(c["status"], "fail", "{c}");
        for name in ["checkout-api", "catalog-web", "did you mean `checkout-api`"] {
            assert!(text(c).contains(name), "{name}: {c}");
        }

        // Nothing answers: the connection fails (exit 1) and nothing else is claimed.
        let closed = format!("http://127.0.0.1:{}", crate::common::free_port());
        let (list, code, _) = run(config(dir.path(), "closed.toml", &closed, &[])).await;
        assert_eq!(code, 1, "{list:#}");
        assert_eq!(check(&list, "aws.connection")["status"], "fail");
        assert!(list["checks"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|c| c["status"] != "pass" || c["id"] == "signatures"));
    }
}
