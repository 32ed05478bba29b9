//! `aws.targets` and `sources.activities.group_tag` against moto: two regions, groups tagged
//! and untagged. Only tagged groups are read, each instance's last words come from its own
//! region (its `origin`), and an instance of an untagged group is never analysed. The second
//! region is read through an assumed role (STS AssumeRole against moto, through the
//! credential providers' HTTP client, `sources/aws/credentials_http.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::aws_moto::{boto3, epitaph, put_log_events_calls, start_front, start_moto, Faults};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const LOG_GROUP: &str = "/targets/app";
const TAG: (&str, &str) = ("epitaph", "enabled");

/// A group in `region`, tagged with [`TAG`] when `tagged`.
async fn group(url: &str, region: &str, name: &str, tagged: bool) {
    let mut create = json!({"AutoScalingGroupName": name,
                            "LaunchConfigurationName": format!("{name}-v1"),
                            "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0,
                            "AvailabilityZones": [format!("{region}a")]});
    if tagged {
        create["Tags"] = json!([{"Key": TAG.0, "Value": TAG.1, "ResourceId": name,
                                 "ResourceType": "auto-scaling-group",
                                 "PropagateAtLaunch": false}]);
    }
    boto3(
        url,
        region,
        vec![
            json!({"service": "autoscaling", "op": "create_launch_configuration",
                   "args": {"LaunchConfigurationName": format!("{name}-v1"),
                            "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}}),
            json!({"service": "autoscaling", "op": "create_auto_scaling_group", "args": create}),
        ],
    );
}

/// The instance's last words, in its region's log group.
async fn last_words(url: &str, region: &str, id: &str, at: chrono::DateTime<Utc>) {
    let events = [(
        (at - Duration::seconds(5)).timestamp_millis(),
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"
            .to_string(),
    )];
    boto3(url, region, put_log_events_calls(LOG_GROUP, id, &events));
}

fn termination(group: &str, id: &str, at: chrono::DateTime<Utc>) -> Value {
    let t = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    json!({
        "ActivityId": format!("a-{id}"),
        "AutoScalingGroupName": group,
        "Cause": format!("At {t} an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped."),
        "Description": format!("Terminating EC2 instance: {id}"),
        "StartTime": t,
        "EndTime": t,
        "StatusCode": "Successful",
    })
}

/// The second target is read through an assumed role: its credentials come from STS
/// (AssumeRole, through the credential providers' HTTP client), not from the environment.
const ROLE: &str = "arn:aws:iam::123456789012:role/epitaph-read";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_groups_in_every_target_region_are_read_from_their_own_region() {
    let moto = start_moto();
    let died = Utc::now() - Duration::minutes(30);
    // (region, group, tagged, the instance that died)
    let fleet = [
        (EAST, "web", true, "i-0e000000000000001"),
        (EAST, "batch", false, "i-0e000000000000002"),
        (WEST, "api", true, "i-0a000000000000003"),
    ];
    let mut activities: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (region, name, tagged, id) in fleet {
        group(&moto.url, region, name, tagged).await;
        last_words(&moto.url, region, id, died).await;
        activities.insert(name.into(), vec![termination(name, id, died)]);
    }
    let faults = Arc::new(Faults::default());
    let front = start_front(&moto.url, activities, faults);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("targets.toml");
    std::fs::write(
        &config,
        format!(
            "[scan]\nsince = \"3h\"\n[deployment]\nidentity = \"asg\"\n[state]\npath = \"s.db\"\n\
             [aws]\nendpoint_url = \"{front}\"\ntargets = [\"{EAST}\", \"{ROLE}@{WEST}\"]\n\
             [sources.activities]\nkind = \"aws\"\ngroup_tag = \"{}={}\"\n\
             [sources.logs]\nkind = \"aws\"\nlog_group = \"{LOG_GROUP}\"\n\
             [sources.metrics]\nkind = \"aws\"\n",
            TAG.0, TAG.1
        ),
    )
    .unwrap();
    let (report, code, stderr) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || epitaph(&c, &["scan"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}\n{}", report["summary"]);
    let analysed: BTreeMap<String, &Value> = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instance_id"].as_str().unwrap().to_string(), i))
        .collect();
    let ids: Vec<&str> = analysed.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        vec!["i-0a000000000000003", "i-0e000000000000001"],
        "the tagged groups' instances, in both regions, and not the untagged group's"
    );
    for (id, r) in &analysed {
        assert!(
            r["last_words_lines"].as_u64().unwrap() > 0,
            "{id}: last words read in its own region: {r}"
        );
        assert_eq!(r["verdict"], "oom", "{id}: {r}");
    }
    let calls = &report["summary"]["api_calls"];
    assert_eq!(
        calls["autoscaling:DescribeScalingActivities"], 2,
        "activities read for the two tagged groups only: {calls}"
    );
}

/// A role STS refuses to let epitaph assume (its trust policy changed).
const UNTRUSTED_ROLE: &str = "arn:aws:iam::123456789012:role/epitaph-untrusted";
/// The ExternalId, session name and session length the roles are assumed with.
const EXTERNAL_ID: &str = "epitaph-suite-4c1d";
const SESSION_NAME: &str = "epitaph-suite";
const SESSION_SECONDS: &str = "900";

/// A Query API error as AWS writes it (Auto Scaling's namespace).
fn query_error(code: &str, message: &str) -> String {
    format!("<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>0f1e2d3c</RequestId></ErrorResponse>")
}

/// Six targets, four of them failing each in its own way — a role that cannot be assumed,
/// access denied under an assumed role, a region not enabled, an endpoint that keeps
/// failing — and two healthy ones (the default credentials, and an assumed role whose
/// credentials are the ones the emulator sees). The healthy targets' instances are all
/// analysed and the failing ones are named with their errors (exit 6); the next run, with
/// the faults gone, reads only the failed targets' windows; the run after reads no window
/// but its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_target_never_blinds_the_others() {
    let moto = start_moto();
    let died = Utc::now() - Duration::minutes(30);
    // (target, region, group, instance, fault)
    let fleet = [
        (EAST.to_string(), EAST, "web", "i-0e000000000000011", None),
        (
            format!("{ROLE}@{WEST}"),
            WEST,
            "api",
            "i-0a000000000000012",
            None,
        ),
        (
            format!("{UNTRUSTED_ROLE}@us-east-2"),
            "us-east-2",
            "jobs",
            "i-0b000000000000013",
            Some("sts:AssumeRole"),
        ),
        (
            format!("{ROLE}@eu-central-1"),
            "eu-central-1",
            "feed",
            "i-0c000000000000014",
            Some("AccessDenied"),
        ),
        (
            "ap-east-1".to_string(),
            "ap-east-1",
            "edge",
            "i-0d000000000000015",
            Some("InvalidClientTokenId"),
        ),
        (
            "us-west-1".to_string(),
            "us-west-1",
            "cron",
            "i-0f000000000000016",
            Some("ServiceUnavailable"),
        ),
    ];
    let mut activities: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (_, region, name, id, _) in &fleet {
        group(&moto.url, region, name, false).await;
        last_words(&moto.url, region, id, died).await;
        activities.insert(name.to_string(), vec![termination(name, id, died)]);
    }
    let faults = Arc::new(Faults::default());
    faults
        .refuse_roles
        .lock()
        .unwrap()
        .insert(UNTRUSTED_ROLE.to_string());
    faults.refuse_region.lock().unwrap().extend([
        (
            "eu-central-1".to_string(),
            ("403 Forbidden".to_string(), query_error("AccessDenied", "User: arn:aws:sts::123456789012:assumed-role/epitaph-read/epitaph-suite is not authorized to perform: autoscaling:DescribeAutoScalingGroups because no identity-based policy allows the autoscaling:DescribeAutoScalingGroups action")),
        ),
        (
            "ap-east-1".to_string(),
            ("403 Forbidden".to_string(), query_error("InvalidClientTokenId", "The security token included in the request is invalid.")),
        ),
        (
            "us-west-1".to_string(),
            ("503 Service Unavailable".to_string(), query_error("ServiceUnavailable", "Service is unavailable.")),
        ),
    ]);
    let front = start_front(&moto.url, activities, faults.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("targets.toml");
    let targets: Vec<String> = fleet.iter().map(|f| format!("\"{}\"", f.0)).collect();
    std::fs::write(
        &config,
        format!(
            "[scan]\nsince = \"3h\"\noverlap = \"1m\"\n[deployment]\nidentity = \"asg\"\n[state]\npath = \"s.db\"\n\
             [aws]\nendpoint_url = \"{front}\"\ntargets = [{}]\nmax_attempts = 2\n\
             external_id = \"{EXTERNAL_ID}\"\nsession_name = \"{SESSION_NAME}\"\nsession_duration = \"15m\"\n\
             [sources.activities]\nkind = \"aws\"\n\
             [sources.logs]\nkind = \"aws\"\nlog_group = \"{LOG_GROUP}\"\n\
             [sources.metrics]\nkind = \"aws\"\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let scan = |config: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || epitaph(&config, &["scan"]))
    };

    // Run 1: four targets fail, two are read.
    let (first, code, stderr) = scan(config.clone()).await.unwrap();
    assert_eq!(
        code, 6,
        "some targets failed: {stderr}\n{}",
        first["summary"]
    );
    let status: BTreeMap<String, &Value> = first["summary"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap().to_string(), t))
        .collect();
    assert_eq!(
        status.len(),
        fleet.len(),
        "every target reported: {status:?}"
    );
    for (target, _, _, _, fault) in &fleet {
        let s = status[target];
        match fault {
            None => assert_eq!(s["status"], "ok", "{target}: {s}"),
            Some(code) => {
                assert_eq!(s["status"], "failed", "{target}: {s}");
                let error = s["error"].as_str().unwrap();
                assert!(
                    error.contains(code),
                    "{target}: the error names `{code}`: {error}"
                );
                assert!(
                    stderr.contains(&format!("target {target} could not be read")),
                    "{target} named on stderr: {stderr}"
                );
            }
        }
    }
    assert_eq!(first["summary"]["complete"], false);
    let analysed: Vec<&str> = first["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        analysed,
        vec!["i-0a000000000000012", "i-0e000000000000011"],
        "the healthy targets' instances, all of them"
    );
    for i in first["instances"].as_array().unwrap() {
        assert_eq!(i["verdict"], "oom", "{i}");
    }
    // The assumed role's credentials are what the emulator saw for its region, and the role
    // was assumed once for all its clients, with the configured ExternalId, session name
    // and length.
    let issued = faults.issued.lock().unwrap().clone();
    let signed = faults.signed_with.lock().unwrap().clone();
    let west_keys: BTreeSet<&String> = signed
        .iter()
        .filter(|(r, _)| r == WEST)
        .map(|(_, k)| k)
        .collect();
    assert!(!west_keys.is_empty());
    assert!(
        west_keys.iter().all(|k| issued[ROLE].contains(*k)),
        "{WEST} was read with the assumed role's keys only: {west_keys:?} vs {issued:?}"
    );
    assert!(
        signed.iter().any(|(r, k)| r == EAST && k == "testing"),
        "{EAST} read with the default credentials"
    );
    let assumed = faults.assume_requests.lock().unwrap().clone();
    let west_assumes: Vec<_> = assumed
        .iter()
        .filter(|a| a.get("Region").map(String::as_str) == Some(WEST))
        .collect();
    assert_eq!(
        west_assumes.len(),
        1,
        "assumed once for every client: {assumed:?}"
    );
    for a in &assumed {
        assert_eq!(
            a.get("ExternalId").map(String::as_str),
            Some(EXTERNAL_ID),
            "{a:?}"
        );
        assert_eq!(
            a.get("RoleSessionName").map(String::as_str),
            Some(SESSION_NAME),
            "{a:?}"
        );
        assert_eq!(
            a.get("DurationSeconds").map(String::as_str),
            Some(SESSION_SECONDS),
            "{a:?}"
        );
    }
    let first_start = first["window"]["start"].as_str().unwrap().to_string();

    // Run 2: the faults are gone. Only the failed targets' windows are read again: their
    // instances (older than this run's own window) are analysed, nothing else.
    faults.refuse_roles.lock().unwrap().clear();
    faults.refuse_region.lock().unwrap().clear();
    let (second, code, stderr) = scan(config.clone()).await.unwrap();
    assert_eq!(code, 0, "{stderr}\n{}", second["summary"]);
    assert_eq!(second["summary"]["complete"], true, "{}", second["summary"]);
    let start = second["window"]["start"].as_str().unwrap();
    assert!(start > first_start.as_str());
    for t in second["summary"]["targets"].as_array().unwrap() {
        let target = t["target"].as_str().unwrap();
        assert_eq!(t["status"], "ok", "{t}");
        let failed_before = fleet.iter().any(|f| f.0 == target && f.4.is_some());
        let since = t["read_since"].as_str().unwrap();
        let expected = if failed_before {
            first_start.as_str()
        } else {
            start
        };
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(since).unwrap(),
            chrono::DateTime::parse_from_rfc3339(expected).unwrap(),
            "{target}: read from its unread window's start when it failed before, else the window's: {t}"
        );
    }
    let mut analysed: Vec<&str> = second["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    analysed.sort();
    let mut expected: Vec<&str> = fleet
        .iter()
        .filter(|f| f.4.is_some())
        .map(|f| f.3)
        .collect();
    expected.sort();
    assert_eq!(
        analysed, expected,
        "the failed targets' instances, and only them"
    );
    assert_eq!(second["summary"]["analysed"], expected.len());
    for i in second["instances"].as_array().unwrap() {
        assert_eq!(i["verdict"], "oom", "{i}");
    }

    // Run 3: nothing left unread; every target from the window's start.
    let (third, code, stderr) = scan(config.clone()).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let start = third["window"]["start"].as_str().unwrap();
    for t in third["summary"]["targets"].as_array().unwrap() {
        assert_eq!(t["read_since"].as_str().unwrap(), start, "{t}");
    }
    assert_eq!(third["summary"]["discovered"], 0, "{}", third["summary"]);
}
