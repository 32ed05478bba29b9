//! File activities: `aws autoscaling describe-scaling-activities` output (one file or a folder
//! of pages), and an optional inventory from `describe-auto-scaling-groups` /
//! `aws ec2 describe-instances` output.
//!
//! A file that cannot be used (empty, not JSON, not such an export) is an input error naming
//! it; a pagination token left in one is a warning that it is truncated. Either leaves the
//! scan incomplete; the other files are still read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;

use super::{array_items, list_files, read_json_documents, required_path, truncation_warning};
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::model::{InstanceInfo, LaunchTemplateRef, Termination, TimeWindow};
use crate::sources::{ActivityBatch, ActivitySource, InputProblems, Skipped};
use crate::timefmt::parse_instant;

#[derive(Clone)]
pub struct FileActivities {
    path: PathBuf,
    inventory: Option<PathBuf>,
    /// The inventory files' problems, as of the last [`ActivitySource::inventory`].
    inventory_problems: std::sync::Arc<std::sync::Mutex<InputProblems>>,
}

impl FileActivities {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        Ok(FileActivities {
            path: required_path("sources.activities", &cfg.path)?,
            inventory: cfg.inventory.clone(),
            inventory_problems: Default::default(),
        })
    }

    /// Every termination in every file, with skipped records and unreadable files.
    fn read_all(&self) -> Result<ActivityBatch> {
        let mut batch = ActivityBatch::default();
        for file in list_files(&self.path)? {
            let origin = file.display().to_string();
            match read_json_documents(&file) {
                Ok(docs) => {
                    for (n, doc) in docs.iter().enumerate() {
                        let origin = if docs.len() > 1 {
                            format!("{origin} (document {})", n + 1)
                        } else {
                            origin.clone()
                        };
                        batch.warnings.extend(truncation_warning(doc, &origin));
                        parse_activities(doc, &origin, &mut batch);
                    }
                }
                Err(e) => batch.errors.push(e.to_string()),
            }
        }
        Ok(batch)
    }
}

impl FileActivities {
    /// Every instance's launch from the activities files ("Launching a new EC2 instance: i-…",
    /// not failed or cancelled) and whether a termination activity names it. Files that
    /// cannot be used are skipped here: [`ActivitySource::terminations`] reports them.
    fn launches(&self) -> Result<Launches> {
        let mut out = Launches::default();
        for file in list_files(&self.path)? {
            let Ok(docs) = read_json_documents(&file) else {
                continue;
            };
            for doc in &docs {
                let list = match doc {
                    Value::Object(m) => m.get("Activities").and_then(Value::as_array),
                    Value::Array(a) => Some(a),
                    _ => None,
                };
                for act in list.into_iter().flatten() {
                    let description = str_field(act, "Description").unwrap_or("");
                    let Some(id) = super::find_instance_id(description) else {
                        continue;
                    };
                    if description.starts_with(TERMINATING) {
                        out.terminated.insert(id.to_string());
                        continue;
                    }
                    if !description.starts_with(LAUNCHING)
                        || str_field(act, "StatusCode")
                            .is_some_and(|s| s == "Failed" || s == "Cancelled")
                    {
                        continue;
                    }
                    let Some(at) = str_field(act, "StartTime").and_then(|t| parse_instant(t).ok())
                    else {
                        continue;
                    };
                    let asg = str_field(act, "AutoScalingGroupName").map(str::to_string);
                    let e = out.launched.entry(id.to_string()).or_insert((asg, at));
                    // Two launch activities for one id cannot both be right: the earliest.
                    e.1 = e.1.min(at);
                }
            }
        }
        Ok(out)
    }
}

/// How an Auto Scaling launch activity's description starts.
const LAUNCHING: &str = "Launching a new EC2 instance";
/// How a termination activity's description starts.
const TERMINATING: &str = "Terminating EC2 instance";

/// Launch activities by instance (its group and the activity's start), and the instances a
/// termination activity names.
#[derive(Debug, Default)]
struct Launches {
    launched: BTreeMap<String, (Option<String>, chrono::DateTime<chrono::Utc>)>,
    terminated: std::collections::BTreeSet<String>,
}

/// Completes the inventory with the launch activities: an instance's launch time is its
/// "Launching a new EC2 instance" activity's start when the inventory exports give none (a
/// `describe-instances` LaunchTime, when present, is EC2's own and wins); an instance no
/// inventory lists is added with its group and launch time, and — when a termination activity
/// names it — as `Terminated`, so it is never taken for a running one.
fn add_launches(instances: &mut Vec<InstanceInfo>, launches: &Launches) {
    let mut by_id: BTreeMap<String, usize> = instances
        .iter()
        .enumerate()
        .map(|(i, x)| (x.instance_id.clone(), i))
        .collect();
    for (id, (asg, at)) in &launches.launched {
        match by_id.get(id) {
            Some(&i) => {
                let info = &mut instances[i];
                info.launch_time = info.launch_time.or(Some(*at));
                if info.asg.is_none() {
                    info.asg = asg.clone();
                }
            }
            None => {
                by_id.insert(id.clone(), instances.len());
                instances.push(InstanceInfo {
                    instance_id: id.clone(),
                    asg: asg.clone(),
                    launch_time: Some(*at),
                    lifecycle_state: launches
                        .terminated
                        .contains(id)
                        .then(|| "Terminated".to_string()),
                    ..Default::default()
                });
            }
        }
    }
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
}

#[async_trait]
impl ActivitySource for FileActivities {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn terminations(&self, window: TimeWindow) -> Result<ActivityBatch> {
        let this = self.clone();
        let mut batch = tokio::task::spawn_blocking(move || this.read_all())
            .await
            .map_err(|e| Error::source(self.name(), e.to_string()))??;
        batch.terminations.retain(|t| window.contains(t.time));
        dedupe(&mut batch.terminations);
        Ok(batch)
    }

    async fn inventory(&self) -> Result<Vec<InstanceInfo>> {
        let this = self.clone();
        let (instances, problems) = tokio::task::spawn_blocking(move || {
            let (mut instances, problems) = match &this.inventory {
                Some(path) => read_inventory(path)?,
                None => Default::default(),
            };
            add_launches(&mut instances, &this.launches()?);
            Ok::<_, Error>((instances, problems))
        })
        .await
        .map_err(|e| Error::source(self.name(), e.to_string()))??;
        *self
            .inventory_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problems;
        Ok(instances)
    }

    fn inventory_problems(&self) -> InputProblems {
        self.inventory_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn find_termination(&self, instance_id: &str) -> Result<Option<Termination>> {
        let this = self.clone();
        let batch = tokio::task::spawn_blocking(move || this.read_all())
            .await
            .map_err(|e| Error::source(self.name(), e.to_string()))??;
        Ok(batch
            .terminations
            .into_iter()
            .filter(|t| t.instance_id == instance_id)
            .min_by_key(|t| t.time))
    }
}

/// The same instance can appear in overlapping exports: keep its earliest termination activity.
fn dedupe(terms: &mut Vec<Termination>) {
    terms.sort_by(|a, b| a.instance_id.cmp(&b.instance_id).then(a.time.cmp(&b.time)));
    terms.dedup_by(|later, earlier| later.instance_id == earlier.instance_id);
    terms.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
}

/// Takes the terminations out of one `describe-scaling-activities` document.
pub(crate) fn parse_activities(doc: &Value, origin: &str, batch: &mut ActivityBatch) {
    let list = match doc {
        Value::Object(m) => match m.get("Activities") {
            Some(Value::Array(a)) => a,
            _ => {
                batch.errors.push(format!(
                    "{origin}: not describe-scaling-activities output (no \"Activities\" array)"
                ));
                return;
            }
        },
        Value::Array(a) => a,
        _ => {
            batch.errors.push(format!(
                "{origin}: expected a JSON object or array of activities"
            ));
            return;
        }
    };
    for (i, act) in list.iter().enumerate() {
        let at = format!("{origin}: Activities[{i}]");
        match parse_activity(act) {
            Ok(Some(t)) => batch.terminations.push(t),
            Ok(None) => {}
            Err(reason) => batch.skipped.push(Skipped {
                location: at,
                reason,
            }),
        }
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// One activity as JSON (`describe-scaling-activities` output): `Ok(None)` for activities that
/// are not terminations.
fn parse_activity(act: &Value) -> std::result::Result<Option<Termination>, String> {
    if !act.is_object() {
        return Err("not a JSON object".into());
    }
    crate::sources::termination_from_activity(&crate::sources::RawActivity {
        activity_id: str_field(act, "ActivityId"),
        asg: str_field(act, "AutoScalingGroupName"),
        description: str_field(act, "Description"),
        cause: str_field(act, "Cause"),
        start_time: str_field(act, "StartTime")
            .map(|s| parse_instant(s).map_err(|e| format!("StartTime: {e}"))),
        end_time: str_field(act, "EndTime")
            .map(|s| parse_instant(s).map_err(|e| format!("EndTime: {e}"))),
        status: str_field(act, "StatusCode"),
    })
}

/// Reads inventory exports and merges what each says about an instance; a file that cannot be
/// used, or is truncated, is a problem naming it (the others are still read).
fn read_inventory(path: &Path) -> Result<(Vec<InstanceInfo>, InputProblems)> {
    let mut by_id: BTreeMap<String, InstanceInfo> = BTreeMap::new();
    let mut problems = InputProblems::default();
    for file in list_files(path)? {
        let docs = match read_json_documents(&file) {
            Ok(docs) => docs,
            Err(e) => {
                problems.errors.push(e.to_string());
                continue;
            }
        };
        for (n, doc) in docs.iter().enumerate() {
            let origin = if docs.len() > 1 {
                format!("{} (document {})", file.display(), n + 1)
            } else {
                file.display().to_string()
            };
            problems.warnings.extend(truncation_warning(doc, &origin));
            if let Err(e) = inventory_document(doc, &origin, &mut by_id) {
                problems.errors.push(e.to_string());
            }
        }
    }
    Ok((by_id.into_values().collect(), problems))
}

/// What one `describe-auto-scaling-groups` or `describe-instances` document says.
fn inventory_document(
    doc: &Value,
    origin: &str,
    by_id: &mut BTreeMap<String, InstanceInfo>,
) -> Result<()> {
    {
        if let Some(groups) = doc.get("AutoScalingGroups").and_then(Value::as_array) {
            for g in groups {
                let asg = str_field(g, "AutoScalingGroupName").map(str::to_string);
                for inst in array_items(g, "Instances") {
                    let Some(id) = str_field(inst, "InstanceId") else {
                        continue;
                    };
                    let e = entry(by_id, id);
                    e.asg = e.asg.take().or_else(|| asg.clone());
                    e.availability_zone = str_field(inst, "AvailabilityZone").map(str::to_string);
                    e.lifecycle_state = str_field(inst, "LifecycleState").map(str::to_string);
                    e.launch_configuration =
                        str_field(inst, "LaunchConfigurationName").map(str::to_string);
                    if let Some(lt) = inst.get("LaunchTemplate") {
                        e.launch_template = Some(LaunchTemplateRef {
                            id: str_field(lt, "LaunchTemplateId").map(str::to_string),
                            name: str_field(lt, "LaunchTemplateName").map(str::to_string),
                            version: str_field(lt, "Version").map(str::to_string),
                        });
                    }
                    if let Some(t) =
                        str_field(inst, "LaunchTime").and_then(|s| parse_instant(s).ok())
                    {
                        e.launch_time = Some(t);
                    }
                }
            }
        } else if let Some(reservations) = doc.get("Reservations").and_then(Value::as_array) {
            for r in reservations {
                for inst in array_items(r, "Instances") {
                    let Some(id) = str_field(inst, "InstanceId") else {
                        continue;
                    };
                    let e = entry(by_id, id);
                    if let Some(t) =
                        str_field(inst, "LaunchTime").and_then(|s| parse_instant(s).ok())
                    {
                        e.launch_time = Some(t);
                    }
                    // An instance that is gone has an empty PrivateDnsName and no address.
                    let non_empty = |key| {
                        str_field(inst, key)
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(str::to_string)
                    };
                    if let Some(dns) = non_empty("PrivateDnsName") {
                        e.private_dns = Some(dns);
                    }
                    if let Some(ip) = non_empty("PrivateIpAddress") {
                        e.private_ip = Some(ip);
                    }
                    if let Some(state) = inst.get("State").and_then(|s| str_field(s, "Name")) {
                        e.ec2_state = Some(state.to_string());
                    }
                    if let Some(az) = inst
                        .get("Placement")
                        .and_then(|p| str_field(p, "AvailabilityZone"))
                    {
                        e.availability_zone = Some(az.to_string());
                    }
                    for tag in array_items(inst, "Tags") {
                        if let (Some(k), Some(v)) = (str_field(tag, "Key"), str_field(tag, "Value"))
                        {
                            if k == "aws:autoscaling:groupName" {
                                e.asg = Some(v.to_string());
                            }
                            e.tags.insert(k.to_string(), v.to_string());
                        }
                    }
                }
            }
        } else {
            return Err(Error::input(
                origin,
                "not an inventory export: expected describe-auto-scaling-groups (\"AutoScalingGroups\") or describe-instances (\"Reservations\") output",
            ));
        }
    }
    Ok(())
}

fn entry<'a>(map: &'a mut BTreeMap<String, InstanceInfo>, id: &str) -> &'a mut InstanceInfo {
    map.entry(id.to_string()).or_insert_with(|| InstanceInfo {
        instance_id: id.to_string(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terminations_and_skips_bad_records() {
        let doc: Value = serde_json::from_str(r#"{"Activities": [
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

    #[test]
    fn wrong_document_is_a_file_error() {
        let mut b = ActivityBatch::default();
        parse_activities(&serde_json::json!({"foo": 1}), "x.json", &mut b);
        assert_eq!(b.errors.len(), 1);
        assert!(b.errors[0].starts_with("x.json"));
    }
}
