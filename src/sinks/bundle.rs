//! The evidence bundle `epitaph export` writes: the folder layout the `file` backends read
//! (README, "Offline forensics"), so a scan of the bundle — on another machine, without
//! credentials — judges the same instances from the same evidence as the live scan did.
//!
//! ```text
//! DIR/
//!   activities/activities.json   describe-scaling-activities shape: the window's terminations
//!   inventory/groups.json        describe-auto-scaling-groups shape (group, launch template)
//!   inventory/instances.json     describe-instances shape (launch time, tags, DNS/IP, state)
//!   logs/i-….json                get-log-events shape, one file per instance (its last words)
//!   metrics/memory.csv           CSV timestamp,instance_id,value (each instance's series)
//!   epitaph.toml                 file sources on these folders, the window, the analysis settings
//!   manifest.json                what was exported, from where, and what is missing
//! ```
//!
//! This module only writes: what goes in (and whether it is complete) is decided by the
//! pipeline. The manifest is written last, so a bundle without one was cut short.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Since;
use crate::error::{Error, Result};
use crate::model::{InstanceInfo, LastWords, MemorySeries, Termination, TimeWindow};

/// The manifest's format name; bumped on breaking changes only.
pub const BUNDLE_SCHEMA: &str = "epitaph.bundle.v1";
/// The manifest's file name in the bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The bundle's own configuration (file sources on the bundle's folders).
pub const CONFIG_FILE: &str = "epitaph.toml";
/// The folders, as the `file` backends' `path` keys name them.
pub const ACTIVITIES_DIR: &str = "activities";
pub const INVENTORY_DIR: &str = "inventory";
pub const LOGS_DIR: &str = "logs";
pub const METRICS_DIR: &str = "metrics";

/// One part of the bundle that is missing or may be partial, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompletePart {
    /// `activities`, `inventory`, `logs` or `metrics`.
    pub source: String,
    /// `input_error` (an input the source could not use), `truncated` (an input known to be
    /// cut short), `target_failed` (an AWS target — account/role × region — that could not be
    /// read: its terminations are missing) or `fetch_failed` (one instance's evidence could
    /// not be fetched).
    pub kind: String,
    pub detail: String,
}

/// The names of the sources the bundle was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSources {
    pub activities: String,
    pub logs: String,
    pub metrics: String,
}

/// `manifest.json`: what was exported, the window, the sources, and any incomplete part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub created_at: DateTime<Utc>,
    pub window: TimeWindow,
    pub sources: BundleSources,
    /// Terminations in the window (each in activities/).
    pub terminations: usize,
    /// Instances in the inventory snapshot.
    pub inventory_instances: usize,
    /// Instances whose last words are in logs/ (one file each).
    pub last_words: usize,
    /// Instances whose memory series is in metrics/memory.csv.
    pub memory_series: usize,
    /// Terminated instances the log source had no last words for (evidence, not an error).
    pub no_last_words: Vec<String>,
    /// Terminated instances the metrics source had no memory series for.
    pub no_memory_series: Vec<String>,
    /// A source that gave no evidence for any of the instances (at least
    /// `analysis::coverage::MIN_INSTANCES_FOR_COLLAPSE`): a configuration that reads nothing,
    /// named as the scan names it (`[]` when none).
    pub collapsed: Vec<String>,
    /// Secrets in the last words were masked (`alerts.redact_patterns` and the built-in rules).
    pub redacted: bool,
    /// Every input was read and every instance's evidence fetched.
    pub complete: bool,
    pub incomplete: Vec<IncompletePart>,
    /// The files written, relative to the bundle folder (the manifest excepted).
    pub files: Vec<String>,
}

/// What goes into a bundle.
pub struct BundleContents<'a> {
    pub terminations: &'a [Termination],
    pub inventory: &'a [InstanceInfo],
    /// Instances with last words (an instance without any has no file).
    pub last_words: &'a BTreeMap<String, LastWords>,
    /// Instances with a memory series (an instance without one has no rows).
    pub series: &'a BTreeMap<String, MemorySeries>,
    /// The bundle's `epitaph.toml` ([`config_toml`]).
    pub config_toml: &'a str,
    /// A signature file to copy in as `signatures.toml` (the config's `signatures.extra`).
    pub signatures_extra: Option<&'a [u8]>,
}

/// The name of the copied signature file in the bundle.
pub const SIGNATURES_FILE: &str = "signatures.toml";

/// Writes the bundle into `dir` (created; an existing folder must be empty, so two bundles
/// never mix) and the manifest last; returns the manifest with its file list.
pub fn write(
    dir: &Path,
    contents: &BundleContents<'_>,
    mut manifest: Manifest,
) -> Result<Manifest> {
    prepare_dir(dir)?;
    let mut files = Vec::new();
    let mut put = |rel: String, bytes: &[u8]| -> Result<()> {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_file(&path, bytes)?;
        files.push(rel);
        Ok(())
    };
    for sub in [ACTIVITIES_DIR, INVENTORY_DIR, LOGS_DIR, METRICS_DIR] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    put(
        format!("{ACTIVITIES_DIR}/activities.json"),
        &pretty(&activities_document(contents.terminations)),
    )?;
    let (groups, instances) = inventory_documents(contents.inventory);
    if let Some(doc) = groups {
        put(format!("{INVENTORY_DIR}/groups.json"), &pretty(&doc))?;
    }
    if let Some(doc) = instances {
        put(format!("{INVENTORY_DIR}/instances.json"), &pretty(&doc))?;
    }
    for (id, words) in contents.last_words {
        if words.events.is_empty() {
            continue;
        }
        put(
            format!("{LOGS_DIR}/{}.json", file_safe(id)),
            &pretty(&log_events_document(words)),
        )?;
    }
    if contents.series.values().any(|s| !s.points.is_empty()) {
        put(
            format!("{METRICS_DIR}/memory.csv"),
            memory_csv(contents.series).as_bytes(),
        )?;
    }
    if let Some(bytes) = contents.signatures_extra {
        put(SIGNATURES_FILE.to_string(), bytes)?;
    }
    put(CONFIG_FILE.to_string(), contents.config_toml.as_bytes())?;
    manifest.files = files;
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::input(MANIFEST_FILE, format!("cannot encode: {e}")))?;
    write_file(&dir.join(MANIFEST_FILE), &manifest_json)?;
    Ok(manifest)
}

/// Creates `dir`, or accepts it when it exists and is empty.
fn prepare_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::input(
                    "--out",
                    format!(
                        "{} is not empty: export into a new or empty folder (the file backends read every file under it)",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A file name for an instance id (ids are `i-` and hex; anything else is replaced).
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `describe-scaling-activities` output holding the terminations, newest first as AWS lists them.
pub fn activities_document(terminations: &[Termination]) -> Value {
    let mut list: Vec<&Termination> = terminations.iter().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time).then(a.instance_id.cmp(&b.instance_id)));
    let acts: Vec<Value> = list
        .into_iter()
        .map(|t| {
            let mut a = serde_json::Map::new();
            if let Some(id) = &t.activity_id {
                a.insert("ActivityId".into(), json!(id));
            }
            a.insert("AutoScalingGroupName".into(), json!(t.asg));
            a.insert("Description".into(), json!(t.description));
            a.insert("Cause".into(), json!(t.cause_text));
            a.insert("StartTime".into(), json!(instant(t.time)));
            if let Some(end) = t.end_time {
                a.insert("EndTime".into(), json!(instant(end)));
            }
            if let Some(s) = &t.status {
                a.insert("StatusCode".into(), json!(s));
            }
            Value::Object(a)
        })
        .collect();
    json!({ "Activities": acts })
}

/// The inventory as `describe-auto-scaling-groups` output (instances that belong to a group)
/// and `describe-instances` output (what EC2 said about each: launch time, tags, private DNS
/// and IP, state, zone). `None` for a document with nothing to say.
pub fn inventory_documents(inventory: &[InstanceInfo]) -> (Option<Value>, Option<Value>) {
    let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut instances = Vec::new();
    for info in inventory {
        if let Some(asg) = &info.asg {
            let mut i = serde_json::Map::new();
            i.insert("InstanceId".into(), json!(info.instance_id));
            if let Some(az) = &info.availability_zone {
                i.insert("AvailabilityZone".into(), json!(az));
            }
            if let Some(s) = &info.lifecycle_state {
                i.insert("LifecycleState".into(), json!(s));
            }
            if let Some(lc) = &info.launch_configuration {
                i.insert("LaunchConfigurationName".into(), json!(lc));
            }
            if let Some(lt) = &info.launch_template {
                let mut t = serde_json::Map::new();
                for (k, v) in [
                    ("LaunchTemplateId", &lt.id),
                    ("LaunchTemplateName", &lt.name),
                    ("Version", &lt.version),
                ] {
                    if let Some(v) = v {
                        t.insert(k.into(), json!(v));
                    }
                }
                i.insert("LaunchTemplate".into(), Value::Object(t));
            }
            groups.entry(asg).or_default().push(Value::Object(i));
        }
        let mut i = serde_json::Map::new();
        i.insert("InstanceId".into(), json!(info.instance_id));
        if let Some(t) = info.launch_time {
            i.insert("LaunchTime".into(), json!(instant(t)));
        }
        if let Some(d) = &info.private_dns {
            i.insert("PrivateDnsName".into(), json!(d));
        }
        if let Some(ip) = &info.private_ip {
            i.insert("PrivateIpAddress".into(), json!(ip));
        }
        if let Some(s) = &info.ec2_state {
            i.insert("State".into(), json!({ "Name": s }));
        }
        if let Some(az) = &info.availability_zone {
            i.insert("Placement".into(), json!({ "AvailabilityZone": az }));
        }
        let mut tags: Vec<Value> = info
            .tags
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        // The group as EC2 tags it, unless a tag already says so: the inventory's group is
        // kept for instances no group document lists.
        if let Some(asg) = info
            .asg
            .as_ref()
            .filter(|_| !info.tags.contains_key(ASG_TAG))
        {
            tags.push(json!({"Key": ASG_TAG, "Value": asg}));
        }
        if !tags.is_empty() {
            i.insert("Tags".into(), Value::Array(tags));
        }
        instances.push(Value::Object(i));
    }
    let groups = (!groups.is_empty()).then(|| {
        json!({ "AutoScalingGroups": groups.into_iter().map(|(name, inst)| json!({
            "AutoScalingGroupName": name, "Instances": inst})).collect::<Vec<_>>() })
    });
    let instances =
        (!instances.is_empty()).then(|| json!({ "Reservations": [ { "Instances": instances } ] }));
    (groups, instances)
}

/// The bundle's own `epitaph.toml`: file sources on its folders, the exported window as
/// `scan.since`/`scan.until`, and the settings that shape verdicts copied from `cfg` (scan
/// windows, deployment identity, analysis, the metrics unit and limit; `signatures_extra`
/// names a signature file copied into the bundle). Nothing secret is copied: no AWS, alert or
/// service settings.
pub fn config_toml(
    cfg: &crate::config::Config,
    window: TimeWindow,
    signatures_extra: Option<&str>,
) -> Result<String> {
    let encode = |what: &str, e: toml::ser::Error| {
        Error::Config(vec![format!(
            "{what}: cannot be written to the bundle: {e}"
        )])
    };
    let mut scan = cfg.scan.clone();
    scan.since = Since::at(window.start);
    scan.until = Some(Since::at(window.end));
    let mut root = toml::Table::new();
    root.insert(
        "scan".into(),
        toml::Value::try_from(&scan).map_err(|e| encode("scan", e))?,
    );
    root.insert(
        "deployment".into(),
        toml::Value::try_from(&cfg.deployment).map_err(|e| encode("deployment", e))?,
    );
    root.insert(
        "analysis".into(),
        toml::Value::try_from(&cfg.analysis).map_err(|e| encode("analysis", e))?,
    );
    let mut state = toml::Table::new();
    state.insert("path".into(), "epitaph.db".into());
    root.insert("state".into(), state.into());
    if let Some(extra) = signatures_extra {
        let mut sig = toml::Table::new();
        sig.insert("extra".into(), extra.into());
        root.insert("signatures".into(), sig.into());
    }
    let m = &cfg.sources.metrics;
    let table = |pairs: Vec<(&str, toml::Value)>| -> toml::Value {
        toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let mut metrics = vec![
        ("kind", "file".into()),
        ("path", METRICS_DIR.into()),
        ("unit", m.unit.as_str().into()),
    ];
    if let Some(limit) = m.limit {
        metrics.push(("limit", limit.into()));
    }
    let sources = table(vec![
        (
            "activities",
            table(vec![
                ("kind", "file".into()),
                ("path", ACTIVITIES_DIR.into()),
                ("inventory", INVENTORY_DIR.into()),
            ]),
        ),
        (
            "logs",
            table(vec![("kind", "file".into()), ("path", LOGS_DIR.into())]),
        ),
        ("metrics", table(metrics)),
    ]);
    root.insert("sources".into(), sources);
    let body = toml::to_string(&root).map_err(|e| encode("configuration", e))?;
    Ok(format!(
        "# Written by `epitaph export`: scans this bundle with the file backends\n# (`epitaph scan --config {CONFIG_FILE}`), over the exported window.\n\n{body}"
    ))
}

/// The tag EC2 puts on an Auto Scaling group's instances.
const ASG_TAG: &str = "aws:autoscaling:groupName";

/// `get-log-events` output for one instance's last words (the file is named after it).
pub fn log_events_document(words: &LastWords) -> Value {
    let events: Vec<Value> = words
        .events
        .iter()
        .map(|e| json!({"timestamp": e.timestamp.timestamp_millis(), "message": e.message}))
        .collect();
    json!({ "events": events })
}

/// CSV `timestamp,instance_id,value`, one row per sample (values printed exactly: Rust's
/// shortest representation that reads back as the same number).
pub fn memory_csv(series: &BTreeMap<String, MemorySeries>) -> String {
    let mut out = String::from("timestamp,instance_id,value\n");
    for (id, s) in series {
        for (t, v) in &s.points {
            out.push_str(&format!("{},{id},{v}\n", instant(*t)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LaunchTemplateRef, LogEvent};
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, h, m, 0).unwrap()
    }

    #[test]
    fn documents_have_the_shapes_the_file_backends_read() {
        let term = Termination {
            instance_id: "i-0aaaaaaaaaaaaaaa1".into(),
            asg: "web".into(),
            time: t(10, 0) + chrono::Duration::milliseconds(123),
            end_time: Some(t(10, 5)),
            cause: crate::model::CauseCategory::Unknown,
            cause_text: "At 2026-01-05T10:00:00Z something".into(),
            description: "Terminating EC2 instance: i-0aaaaaaaaaaaaaaa1".into(),
            activity_id: Some("a1".into()),
            status: Some("Successful".into()),
            origin: None,
        };
        let doc = activities_document(std::slice::from_ref(&term));
        let a = &doc["Activities"][0];
        assert_eq!(a["StartTime"], "2026-01-05T10:00:00.123Z");
        assert_eq!(a["EndTime"], "2026-01-05T10:05:00Z");
        assert_eq!(a["Description"], term.description);

        let info = InstanceInfo {
            instance_id: "i-0aaaaaaaaaaaaaaa1".into(),
            asg: Some("web".into()),
            launch_time: Some(t(8, 0)),
            launch_template: Some(LaunchTemplateRef {
                id: None,
                name: Some("web-lt".into()),
                version: Some("7".into()),
            }),
            private_dns: Some("ip-10-0-0-1.ec2.internal".into()),
            ..Default::default()
        };
        let (groups, instances) = inventory_documents(&[info]);
        let g = groups.unwrap();
        assert_eq!(g["AutoScalingGroups"][0]["AutoScalingGroupName"], "web");
        assert_eq!(
            g["AutoScalingGroups"][0]["Instances"][0]["LaunchTemplate"]["Version"],
            "7"
        );
        let i = &instances.unwrap()["Reservations"][0]["Instances"][0];
        assert_eq!(i["LaunchTime"], "2026-01-05T08:00:00Z");
        assert_eq!(i["Tags"][0]["Key"], ASG_TAG);

        let words = LastWords {
            last_event_at: Some(t(9, 59)),
            events: vec![LogEvent {
                timestamp: t(9, 59),
                message: "FATAL".into(),
            }],
            truncated: false,
        };
        assert_eq!(
            log_events_document(&words)["events"][0]["timestamp"],
            t(9, 59).timestamp_millis()
        );

        let mut series = BTreeMap::new();
        series.insert(
            "i-1".to_string(),
            MemorySeries {
                points: vec![(t(9, 0), 41.25), (t(9, 1), 0.1 + 0.2)],
                ..Default::default()
            },
        );
        let csv = memory_csv(&series);
        assert_eq!(
            csv,
            "timestamp,instance_id,value\n2026-01-05T09:00:00Z,i-1,41.25\n2026-01-05T09:01:00Z,i-1,0.30000000000000004\n"
        );
    }

    #[test]
    fn a_non_empty_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.json"), "{}").unwrap();
        let err = prepare_dir(dir.path()).unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("not empty"),
            "{err}"
        );
        assert!(prepare_dir(&dir.path().join("new/bundle")).is_ok());
    }
}
