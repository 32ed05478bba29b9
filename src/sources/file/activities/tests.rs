//! Tests of the file activities: exports, skipped records, launches, stamps and proofs.

use super::*;

#[test]
fn parses_terminations_and_skips_bad_records() {
    let doc: ActivitiesDoc = serde_json::from_str(r#"{"Activities": [
      {"ActivityId": "a1", "AutoScalingGroupName": "web", "Description": "Terminating EC2 instance: i-0123456789abcdef0",
       "Cause": "At 2026-01-05T10:00:00Z an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.",
       "StartTime": "2026-01-05T10:00:05.123Z", "StatusCode": "Successful"},
      {"AutoScalingGroupName": "web", "Description": "Launching a new EC2 instance: i-0aaaaaaaaaaaaaaaa", "StartTime": "2026-01-05T10:01:00Z"},
      {"AutoScalingGroupName": "web", "Description": "Terminating EC2 instance: i-0bbbbbbbbbbbbbbbb", "StartTime": "yesterday"},
      {"AutoScalingGroupName": "web", "Description": "Terminating EC2 instance: i-0cccccccccccccccc", "StartTime": "2026-01-05T10:00:00Z", "StatusCode": "Failed"},
      42
    ]}"#).unwrap();
    let mut b = ActivityBatch::default();
    parse_activities(&doc, "a.json", &mut b);
    assert_eq!(b.terminations.len(), 1);
    assert_eq!(
        b.terminations[0].cause,
        crate::model::CauseCategory::HealthCheck
    );
    assert_eq!(b.skipped.len(), 2);
    assert!(b.skipped[0].location.contains("Activities[2]"));
    assert!(b.skipped[0].reason.contains("StartTime"));
}

#[test]
fn describe_instances_gives_private_dns_and_ip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("instances.json"),
        r#"{"Reservations": [{"Instances": [
          {"InstanceId": "i-0aaaaaaaaaaaaaaaa", "PrivateDnsName": "ip-10-0-1-23.ec2.internal",
           "PrivateIpAddress": "10.0.1.23", "LaunchTime": "2026-01-04T08:00:00Z"},
          {"InstanceId": "i-0bbbbbbbbbbbbbbbb", "PrivateDnsName": "", "State": {"Name": "terminated"}}
        ]}]}"#,
    )
    .unwrap();
    let (inv, problems) = read_inventory(dir.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(inv.len(), 2);
    assert_eq!(
        inv[0].private_dns.as_deref(),
        Some("ip-10-0-1-23.ec2.internal")
    );
    assert_eq!(inv[0].private_ip.as_deref(), Some("10.0.1.23"));
    assert_eq!(inv[1].private_dns, None, "an empty name is no name");
}

#[test]
fn empty_unparsable_and_truncated_exports() {
    let dir = tempfile::tempdir().unwrap();
    let acts = dir.path().join("activities");
    let inv = dir.path().join("inventory");
    std::fs::create_dir_all(&acts).unwrap();
    std::fs::create_dir_all(&inv).unwrap();
    std::fs::write(acts.join("empty.json"), "").unwrap();
    std::fs::write(
        acts.join("page.json"),
        r#"{"Activities": [{"ActivityId": "a1", "AutoScalingGroupName": "web",
          "Description": "Terminating EC2 instance: i-0123456789abcdef0", "Cause": "x",
          "StartTime": "2026-01-05T10:00:05Z", "StatusCode": "Successful"}], "NextToken": "abc"}"#,
    )
    .unwrap();
    std::fs::write(inv.join("empty.json"), "\n").unwrap();
    std::fs::write(inv.join("cut.json"), "{\"Reservations\": [").unwrap();
    std::fs::write(
        inv.join("groups.json"),
        r#"{"AutoScalingGroups": [{"AutoScalingGroupName": "web", "Instances": [{"InstanceId": "i-0aaaaaaaaaaaaaaaa"}]}], "NextToken": "t"}"#,
    )
    .unwrap();
    let src = FileActivities {
        path: acts,
        inventory: None,
        inventory_problems: Default::default(),
        known: Default::default(),
        stamped: Default::default(),
    };
    let b = src.read_all().unwrap();
    assert_eq!(b.terminations.len(), 1, "a truncated page is still read");
    assert_eq!(b.errors.len(), 1, "{:?}", b.errors);
    assert!(
        b.errors[0].contains("empty.json: empty file"),
        "{:?}",
        b.errors
    );
    assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
    assert!(
        b.warnings[0].contains("page.json") && b.warnings[0].contains("without --no-paginate"),
        "{:?}",
        b.warnings
    );

    let (instances, p) = read_inventory(&inv).unwrap();
    assert_eq!(instances.len(), 1, "the readable file is still read");
    assert_eq!(p.errors.len(), 2, "{p:?}");
    assert!(p.errors[0].contains("cut.json:1:"), "{p:?}");
    assert!(p.errors[1].contains("empty.json: empty file"), "{p:?}");
    assert!(
        p.warnings.len() == 1 && p.warnings[0].contains("groups.json"),
        "{p:?}"
    );
}

#[tokio::test]
async fn launch_activities_give_launch_times_the_inventory_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (acts, inv) = (dir.path().join("activities"), dir.path().join("inventory"));
    std::fs::create_dir_all(&acts).unwrap();
    std::fs::create_dir_all(&inv).unwrap();
    std::fs::write(
        acts.join("web.json"),
        r#"{"Activities": [
          {"AutoScalingGroupName": "web", "Description": "Terminating EC2 instance: i-0aaaaaaaaaaaaaaa1",
           "Cause": "x", "StartTime": "2026-01-05T10:00:00Z", "StatusCode": "Successful"},
          {"AutoScalingGroupName": "web", "Description": "Launching a new EC2 instance: i-0aaaaaaaaaaaaaaa1",
           "Cause": "x", "StartTime": "2026-01-05T04:00:00Z", "EndTime": "2026-01-05T04:00:40Z", "StatusCode": "Successful"},
          {"AutoScalingGroupName": "web", "Description": "Launching a new EC2 instance: i-0bbbbbbbbbbbbbbb2",
           "Cause": "x", "StartTime": "2026-01-05T05:00:00Z", "StatusCode": "Successful"},
          {"AutoScalingGroupName": "web", "Description": "Launching a new EC2 instance: i-0ccccccccccccccc3",
           "Cause": "x", "StartTime": "2026-01-05T06:00:00Z", "StatusCode": "Successful"},
          {"AutoScalingGroupName": "web", "Description": "Launching a new EC2 instance: i-0ddddddddddddddd4",
           "Cause": "x", "StartTime": "2026-01-05T06:00:00Z", "StatusCode": "Failed"}
        ]}"#,
    )
    .unwrap();
    // EC2's own launch time for the third instance wins over its activity.
    std::fs::write(
        inv.join("instances.json"),
        r#"{"Reservations": [{"Instances": [
          {"InstanceId": "i-0ccccccccccccccc3", "LaunchTime": "2026-01-05T06:00:07Z"},
          {"InstanceId": "i-0bbbbbbbbbbbbbbb2", "PrivateIpAddress": "10.0.0.2"}]}]}"#,
    )
    .unwrap();
    let t = |s: &str| parse_instant(s).unwrap();
    for inventory in [None, Some(inv.clone())] {
        let src = FileActivities {
            path: acts.clone(),
            inventory: inventory.clone(),
            inventory_problems: Default::default(),
            known: Default::default(),
            stamped: Default::default(),
        };
        let got = src.inventory().await.unwrap();
        let of = |id: &str| got.iter().find(|i| i.instance_id == id).cloned();
        let dead = of("i-0aaaaaaaaaaaaaaa1").unwrap();
        assert_eq!(dead.launch_time, Some(t("2026-01-05T04:00:00Z")));
        assert_eq!(dead.asg.as_deref(), Some("web"));
        assert!(!dead.is_live(), "its termination activity says it is gone");
        assert_eq!(
            of("i-0bbbbbbbbbbbbbbb2").unwrap().launch_time,
            Some(t("2026-01-05T05:00:00Z"))
        );
        assert!(of("i-0bbbbbbbbbbbbbbb2").unwrap().is_live());
        assert!(
            of("i-0ddddddddddddddd4").is_none(),
            "a failed launch launched nothing"
        );
        let ec2 = if inventory.is_some() {
            "2026-01-05T06:00:07Z"
        } else {
            "2026-01-05T06:00:00Z"
        };
        assert_eq!(of("i-0ccccccccccccccc3").unwrap().launch_time, Some(t(ec2)));
    }
}

/// Sets a file's modification time back, out of the racy window.
fn settle(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
}

#[test]
fn an_unchanged_file_is_trusted_to_its_proof_and_a_changed_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.json");
    let act = |verb: &str, id: &str, at: &str| {
        format!(
            r#"{{"AutoScalingGroupName": "web", "Description": "{verb} EC2 instance: {id}", "Cause": "x", "StartTime": "{at}", "StatusCode": "Successful"}}"#
        )
    };
    let doc = format!(
        r#"{{"Activities": [{}, {}]}}"#,
        act("Terminating", "i-0aaaaaaaaaaaaaaa1", "2026-01-05T10:00:00Z"),
        act(
            "Launching a new",
            "i-0bbbbbbbbbbbbbbb2",
            "2026-01-05T09:00:00Z"
        )
    );
    std::fs::write(&file, &doc).unwrap();
    let src = FileActivities {
        path: dir.path().to_path_buf(),
        inventory: None,
        inventory_problems: Default::default(),
        known: Default::default(),
        stamped: Default::default(),
    };
    let window = |start: &str| TimeWindow {
        start: parse_instant(start).unwrap(),
        end: parse_instant("2026-01-06T00:00:00Z").unwrap(),
    };
    let after = Purpose::Window(window("2026-01-05T11:00:00Z"));

    // Just written: its stamp is racy, so the proof is never trusted.
    let (_, _, stamps) = src.read_files(after).unwrap();
    assert!(stamps[0].stamp.ends_with(" racy"), "{stamps:?}");
    src.use_input_stamps(stamps);
    let (b, ..) = src.read_files(after).unwrap();
    assert_eq!(b.terminations.len(), 1, "a racy stamp is read again");

    settle(&file);
    let (_, _, mut stamps) = src.read_files(after).unwrap();
    let proof: Proof = serde_json::from_value(stamps[0].proved.clone()).unwrap();
    assert_eq!(
        proof.latest,
        Some(parse_instant("2026-01-05T10:00:00Z").unwrap())
    );
    assert!(proof.launches.launched.contains_key("i-0bbbbbbbbbbbbbbb2"));
    // A proof that differs from the content shows when it is trusted instead of the file.
    let mut planted = Proof {
        latest: proof.latest,
        ..Default::default()
    };
    planted.launches.launched.insert(
        "i-0ccccccccccccccc3".into(),
        (None, parse_instant("2026-01-01T00:00:00Z").unwrap()),
    );
    stamps[0].proved = serde_json::to_value(&planted).unwrap();
    src.use_input_stamps(stamps.clone());
    let (b, launches, kept) = src.read_files(after).unwrap();
    assert!(
        b.terminations.is_empty(),
        "nothing after its latest: not read"
    );
    assert_eq!(kept, stamps, "the proof is kept as it was");
    assert!(
        launches.launched.is_empty(),
        "a window's read leaves the kept launches unread (its caller does not use them)"
    );
    let (_, launches, _) = src.read_files(Purpose::Launches).unwrap();
    assert!(launches.launched.contains_key("i-0ccccccccccccccc3"));
    // A window its latest termination falls in, or every termination: read.
    let (b, ..) = src
        .read_files(Purpose::Window(window("2026-01-05T09:30:00Z")))
        .unwrap();
    assert_eq!(b.terminations.len(), 1);
    assert_eq!(src.read_all().unwrap().terminations.len(), 1);

    // Changed (one more activity): read, whatever the kept proof says.
    let changed = doc.replace(
        "]}",
        &format!(
            ", {}]}}",
            act("Terminating", "i-0ddddddddddddddd4", "2026-01-05T12:00:00Z")
        ),
    );
    std::fs::write(&file, changed).unwrap();
    settle(&file);
    let (b, launches, fresh) = src.read_files(after).unwrap();
    assert_eq!(b.terminations.len(), 2, "{b:?}");
    assert!(!launches.launched.contains_key("i-0ccccccccccccccc3"));
    assert_ne!(fresh[0].stamp, stamps[0].stamp);

    // A file with a skipped record proves nothing: it is reported (so read) every time.
    std::fs::write(&file, doc.replace("]}", ", 42]}")).unwrap();
    settle(&file);
    let (_, _, stamps) = src.read_files(after).unwrap();
    assert_eq!(stamps[0].proved, serde_json::Value::Null);
}

#[test]
fn wrong_document_is_a_file_error() {
    let mut b = ActivityBatch::default();
    let doc: ActivitiesDoc = serde_json::from_str(r#"{"foo": 1, "Activities": {}}"#).unwrap();
    parse_activities(&doc, "x.json", &mut b);
    let doc: ActivitiesDoc = serde_json::from_str("7").unwrap();
    parse_activities(&doc, "y.json", &mut b);
    assert_eq!(b.errors.len(), 2);
    assert!(b.errors[0].starts_with("x.json: not describe-scaling-activities output"));
    assert!(b.errors[1].starts_with("y.json: expected a JSON object or array"));
}
