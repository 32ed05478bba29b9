//! `aws.targets` and `sources.activities.group_tag` against moto: two regions, groups tagged
//! and untagged. Only tagged groups are read, each instance's last words come from its own
//! region (its `origin`), and an instance of an untagged group is never analysed. The second
//! region is read through an assumed role (STS AssumeRole against moto, through the
//! credential providers' HTTP client, `sources/aws/credentials_http.rs`).

use std::collections::BTreeMap;
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
