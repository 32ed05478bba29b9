//! The event intake (`[sources.events]`, kind `sqs`) against moto: the queue, its dead-letter
//! queue and the EventBridge rule are created from the shipped CloudFormation template
//! (`deploy/aws/event-intake.yaml`), and boto3 (an independent client) puts Auto Scaling's
//! events to EventBridge, which routes them through the rule: "EC2 Instance Terminate
//! Successful" built from the simulated fleet's own scaling activities, one of them twice
//! (delivery is at-least-once), a "Terminate Unsuccessful", a termination too recent to have
//! settled, and a launch (filtered out by the rule). Straight into the queue: one event in an
//! SNS envelope, and a body that is not JSON. `serve` runs with a schedule that does not fire during the test: only events
//! drive it. Then the scheduled scan's safety net must skip what the events stored.

use std::process::Command;

use serde_json::{json, Value};

use crate::aws_moto::{start_moto, REGION};
use crate::common::{self, Fleet};

const TOKEN: &str = "events-token";
/// Never fires while the test runs.
const NEVER: &str = "0 0 1 1 *";
/// Longest the test waits for the intake to have handled every message.
const HANDLED_BOUND: std::time::Duration = std::time::Duration::from_secs(240);
/// Terminations analysed through events.
const EVENTS: usize = 5;

/// The Python of moto's venv, which also has boto3.
fn moto_python() -> std::path::PathBuf {
    common::cached_tool("EPITAPH_MOTO_SERVER", "moto5/bin/moto_server").with_file_name("python")
}

/// Runs a boto3 script against moto with `input` on stdin; its stdout.
fn boto3(moto: &str, script: &str, input: &str) -> String {
    use std::io::Write;
    let prelude = format!(
        "import boto3, json, sys\nsqs = boto3.client('sqs', endpoint_url='{moto}', region_name='{REGION}', aws_access_key_id='testing', aws_secret_access_key='testing')\n"
    );
    let mut child = Command::new(moto_python())
        .args(["-c", &format!("{prelude}{script}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The fleet's termination activities, as the export holds them.
fn terminations(fleet: &Fleet) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(fleet.dir.path().join("activities")).unwrap() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        out.extend(
            doc["Activities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| {
                    a["Description"]
                        .as_str()
                        .unwrap()
                        .starts_with("Terminating")
                })
                .cloned(),
        );
    }
    out.sort_by_key(|a| a["ActivityId"].as_str().unwrap().to_string());
    out
}

fn instance_of(activity: &Value) -> String {
    activity["Description"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The EventBridge event of an activity, as Auto Scaling sends it.
fn event(activity: &Value, detail_type: &str, status: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("ev-{}", activity["ActivityId"].as_str().unwrap()),
        "detail-type": detail_type,
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": activity["EndTime"],
        "region": REGION,
        "resources": ["auto-scaling-group-arn", "instance-arn"],
        "detail": {
            "StatusCode": status,
            "Description": activity["Description"],
            "AutoScalingGroupName": activity["AutoScalingGroupName"],
            "ActivityId": activity["ActivityId"],
            "Details": {"Availability Zone": "us-east-1a", "Subnet ID": "subnet-0a1b2c3d"},
            "RequestId": activity["ActivityId"],
            "StatusMessage": "",
            "EndTime": activity["EndTime"],
            "EC2InstanceId": instance_of(activity),
            "StartTime": activity["StartTime"],
            "Cause": activity["Cause"],
        }
    })
}

/// `epitaph_events_total{outcome}` from the service's metrics.
async fn outcomes(base: &str) -> std::collections::BTreeMap<String, u64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("epitaph_events_total{outcome=\""))
        .filter_map(|l| {
            let (k, v) = l.split_once("\"} ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_analysed_once_stored_acknowledged_and_the_scan_skips_them() {
    let moto = start_moto();
    let fleet = Fleet::new(21, 4, 40);
    let all = terminations(&fleet);
    assert!(all.len() > EVENTS + 1, "{} terminations", all.len());
    let picked = &all[..EVENTS];
    let wrapped = &all[EVENTS];

    // The queue, its dead-letter queue and the EventBridge rule, from the shipped template.
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aws/event-intake.yaml"),
    )
    .unwrap();
    let queue = boto3(
        &moto.url,
        "cf = boto3.client('cloudformation', endpoint_url=sqs.meta.endpoint_url, region_name=sqs.meta.region_name, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         cf.create_stack(StackName='epitaph-event-intake', TemplateBody=sys.stdin.read())\n\
         st = cf.describe_stacks(StackName='epitaph-event-intake')['Stacks'][0]\n\
         assert st['StackStatus'] == 'CREATE_COMPLETE', st['StackStatus']\n\
         print([o['OutputValue'] for o in st['Outputs'] if o['OutputKey'] == 'QueueUrl'][0])\n",
        &template,
    );
    // Through EventBridge (the rule routes them to the queue): each picked termination, the
    // first one twice (EventBridge and SQS are at-least-once), a termination that failed, and
    // one just now, whose evidence has not settled; a launch, which the rule filters out.
    let detail = |e: Value| (e["detail-type"].clone(), e["detail"].to_string());
    let mut entries: Vec<(Value, String)> = picked
        .iter()
        .map(|a| detail(event(a, "EC2 Instance Terminate Successful", "InProgress")))
        .collect();
    entries.push(entries[0].clone());
    entries.push(detail(event(
        &all[EVENTS + 1],
        "EC2 Instance Terminate Unsuccessful",
        "Failed",
    )));
    let mut recent = event(&all[0], "EC2 Instance Terminate Successful", "InProgress");
    let now = chrono::Utc::now().to_rfc3339();
    recent["detail"]["StartTime"] = json!(now);
    recent["detail"]["EndTime"] = json!(now);
    recent["detail"]["EC2InstanceId"] = json!("i-0fffffffffffffff0");
    recent["detail"]["Description"] = json!("Terminating EC2 instance: i-0fffffffffffffff0");
    entries.push(detail(recent));
    entries.push(detail(event(
        &all[0],
        "EC2 Instance Launch Successful",
        "Successful",
    )));
    let put: Vec<Value> = entries
        .iter()
        .map(|(t, d)| json!({"Source": "aws.autoscaling", "DetailType": t, "Detail": d}))
        .collect();
    boto3(
        &moto.url,
        "ev = boto3.client('events', endpoint_url=sqs.meta.endpoint_url, region_name=sqs.meta.region_name, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         r = ev.put_events(Entries=json.load(sys.stdin))\n\
         assert r['FailedEntryCount'] == 0, r\n",
        &serde_json::to_string(&put).unwrap(),
    );
    // Straight into the queue: one through SNS (the event as the envelope's Message string),
    // and a body that is not an event at all.
    let bodies = vec![
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:epitaph",
            "Message": event(wrapped, "EC2 Instance Terminate Successful", "InProgress").to_string(),
        })
        .to_string(),
        "this is not an event".to_string(),
    ];
    boto3(
        &moto.url,
        &format!(
            "for b in json.load(sys.stdin):\n    sqs.send_message(QueueUrl='{queue}', MessageBody=b)\n"
        ),
        &serde_json::to_string(&bodies).unwrap(),
    );

    fleet.append_config(&format!(
        "[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n\n[sources.events]\nkind = \"sqs\"\nqueue_url = \"{queue}\"\nsettle = \"10m\"\nwait_time = \"1s\"\nvisibility_timeout = \"60s\"\n",
        moto.url
    ));
    let creds = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", REGION),
        ("EPITAPH_LOG", "epitaph=info"),
    ];
    let mut serve = common::spawn_serve(&fleet, TOKEN, NEVER, &creds);
    let deadline = std::time::Instant::now() + HANDLED_BOUND;
    let counts = loop {
        let c = outcomes(&serve.base).await;
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        if get("analysed") + get("already_analysed") >= EVENTS as u64 + 2
            && get("ignored") >= 1
            && get("deferred") >= 1
            && get("unreadable") >= 1
        {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every message handled within {HANDLED_BOUND:?}: {c:?}\n{}",
            serve.stderr()
        );
        tokio::time::sleep(common::POLL_INTERVAL * 10).await;
    };
    serve.process.terminate();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let r = serve.wait_or_panic(common::CHILD_EXIT_BOUND);
        drop(serve);
        r
    })
    .await
    .unwrap();
    assert!(status.success(), "{stderr}");
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    // Six distinct instances and one duplicate delivery, each handled once; nothing failed.
    assert_eq!(
        get("analysed") + get("already_analysed"),
        EVENTS as u64 + 2,
        "{counts:?}"
    );
    assert_eq!((get("ignored"), get("failed")), (1, 0), "{counts:?}");

    // Acknowledged messages are gone; the unsettled and the unreadable ones are still there.
    let left = boto3(
        &moto.url,
        &format!(
            "a = sqs.get_queue_attributes(QueueUrl='{queue}', AttributeNames=['All'])['Attributes']\n\
             print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))\n"
        ),
        "",
    );
    assert_eq!(left, "2", "the deferred and the unreadable message remain");

    // Each event's instance is stored with the verdict the truth gives it.
    let store = epitaph::store::SqliteStore::open(&fleet.state_path())
        .await
        .unwrap();
    use epitaph::store::Store;
    for a in picked.iter().chain([wrapped]) {
        let id = instance_of(a);
        let report = store
            .instance(&id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} not stored"));
        assert_eq!(report.verdict, fleet.truth.instances[&id], "{id}");
    }
    assert!(store
        .instance("i-0fffffffffffffff0")
        .await
        .unwrap()
        .is_none());

    // The scheduled scan, the safety net, analyses the rest and none of these again.
    let out = common::output_timeout(
        Command::new(common::bin())
            .args(["scan", "--format", "json", "--config"])
            .arg(fleet.config_path())
            .envs(creds),
        common::CHILD_EXIT_BOUND,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["summary"]["cached"],
        EVENTS + 1,
        "{}",
        report["summary"]
    );
    assert_eq!(
        report["summary"]["analysed"].as_u64().unwrap() as usize,
        fleet.truth.instances.len() - (EVENTS + 1),
        "{}",
        report["summary"]
    );
}
