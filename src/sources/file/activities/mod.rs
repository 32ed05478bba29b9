//! File activities: `aws autoscaling describe-scaling-activities` output (one file or a folder
//! of pages), and an optional inventory from `describe-auto-scaling-groups` /
//! `aws ec2 describe-instances` output.
//!
//! A file that cannot be used (empty, not JSON, not such an export) is an input error naming
//! it; a pagination token left in one is a warning that it is truncated. Either leaves the
//! scan incomplete; the other files are still read.
//!
//! Activities are deserialised into the fields used (no JSON tree of a file), and an
//! activity's times are parsed only when it is a termination or a launch. What a clean read of
//! a file proves — its latest termination and its launches ([`Proof`]) — is handed to the
//! pipeline with the file's stamp ([`ActivitySource::input_stamps`]) and kept in the state
//! store; while the stamp holds, a scan whose window starts after that termination does not
//! read the file, and the inventory takes its launches from the proof.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::json::{typed_documents, LObj, LSeq, LStr, Tokens};
use super::{list_files, required_path};
use crate::config::ActivitiesConfig;
use crate::error::{Error, Result};
use crate::model::{InputStamp, InstanceInfo, LaunchTemplateRef, Termination, TimeWindow};
use crate::sources::{ActivityBatch, ActivitySource, InputProblems, Skipped};
use crate::timefmt::parse_instant;
use serde::Deserialize;

mod inventory;

use inventory::*;

#[derive(Clone)]
pub struct FileActivities {
    path: PathBuf,
    inventory: Option<PathBuf>,
    /// The inventory files' problems, as of the last [`ActivitySource::inventory`].
    inventory_problems: std::sync::Arc<std::sync::Mutex<InputProblems>>,
    /// The stamps the last run kept, by path ([`ActivitySource::use_input_stamps`]); shared,
    /// not copied, by each read (their proofs hold every launch of the file).
    known: std::sync::Arc<std::sync::Mutex<std::sync::Arc<HashMap<String, InputStamp>>>>,
    /// The stamps of the last [`ActivitySource::terminations`], to keep.
    stamped: std::sync::Arc<std::sync::Mutex<Option<Vec<InputStamp>>>>,
}

/// What a read of the activity files is for, which decides the files a kept proof spares.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// Launches only (the inventory): any unchanged file with a proof.
    Launches,
    /// Terminations in a window: an unchanged file whose proof says its latest termination is
    /// before the window's start.
    Window(TimeWindow),
    /// Every termination (`find_termination`): every file is read.
    All,
}

impl FileActivities {
    pub fn new(cfg: &ActivitiesConfig) -> Result<Self> {
        Ok(FileActivities {
            path: required_path("sources.activities", &cfg.path)?,
            inventory: cfg.inventory.clone(),
            inventory_problems: Default::default(),
            known: Default::default(),
            stamped: Default::default(),
        })
    }

    /// Every termination in every file, with skipped records and unreadable files.
    fn read_all(&self) -> Result<ActivityBatch> {
        Ok(self.read_files(Purpose::All)?.0)
    }

    /// Reads the activities files, sparing those a kept proof answers for `purpose` (see
    /// [`Proof`]): the terminations, skipped records and problems of the files read, every
    /// file's launches, and every file's stamp with what it proves now.
    fn read_files(&self, purpose: Purpose) -> Result<(ActivityBatch, Launches, Vec<InputStamp>)> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut batch = ActivityBatch::default();
        let mut launches = Launches::default();
        let mut stamps = Vec::new();
        let mut spared = 0usize;
        for file in list_files(&self.path)? {
            let path = file.display().to_string();
            // Stamped before it is read: a write during the read makes the next stamp differ.
            let stamp = std::fs::metadata(&file)
                .map(|m| super::file_stamp(&m))
                .map_err(|e| Error::io(&file, e))?;
            let kept = known
                .get(&path)
                .filter(|k| k.stamp == stamp && super::stamp_trusted(&stamp));
            // Whether the proof spares the file: its latest termination is read first (the
            // launches, most of a proof, only when they are wanted).
            let spares = kept.is_some_and(|k| match (purpose, Latest::deserialize(&k.proved)) {
                (Purpose::Launches, Ok(_)) => true,
                (Purpose::Window(w), Ok(p)) => p.latest.is_none_or(|l| l < w.start),
                _ => false,
            });
            let proof = match kept.filter(|_| spares) {
                Some(k) if purpose.wants_launches() => {
                    Proof::deserialize(&k.proved).ok().map(|p| (k, p.launches))
                }
                Some(k) => Some((k, Launches::default())),
                None => None,
            };
            if let Some((k, kept_launches)) = proof {
                launches.merge(kept_launches);
                stamps.push(k.clone());
                spared += 1;
                continue;
            }
            let read = read_activity_file(&file);
            let proved = read
                .proof()
                .and_then(|p| serde_json::to_value(p).ok())
                .unwrap_or(serde_json::Value::Null);
            launches.merge(read.launches);
            batch.terminations.extend(read.batch.terminations);
            batch.skipped.extend(read.batch.skipped);
            batch.errors.extend(read.batch.errors);
            batch.warnings.extend(read.batch.warnings);
            stamps.push(InputStamp {
                path,
                stamp,
                proved,
            });
        }
        if spared > 0 {
            tracing::debug!(spared, read = stamps.len() - spared, purpose = ?purpose, "activities files unchanged since their proof were not read");
        }
        Ok((batch, launches, stamps))
    }
}

/// What one activities file gave.
#[derive(Debug, Default)]
struct FileRead {
    /// Its terminations (all of them), skipped records, truncation warning, or its error.
    batch: ActivityBatch,
    launches: Launches,
}

/// The part of a [`Proof`] that says whether a window needs the file.
#[derive(serde::Deserialize)]
struct Latest {
    latest: Option<chrono::DateTime<chrono::Utc>>,
}

impl Purpose {
    /// Whether the read's caller uses the launches (the inventory does, a window does not).
    fn wants_launches(self) -> bool {
        !matches!(self, Purpose::Window(_))
    }
}

/// What a clean read of an activities file proves while the file is unchanged (its stamp
/// equal): the latest time of a termination in it, so a scan of a window starting later need
/// not read it, and its launches, which the inventory needs whatever the window. Kept in the
/// state store (`Store::replace_input_stamps`, reader `activities`).
///
/// The launches are kept as one JSON text inside the proof, not as a JSON tree: every scan
/// loads the proofs but reads their launches only when it reads the inventory, and a text
/// costs a fraction of the memory of its tree (a proof of an older format is not used for
/// launches: the file is read again, once).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Proof {
    latest: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(with = "json_text")]
    launches: Launches,
}

/// (De)serialises a value as a JSON string holding its JSON text.
mod json_text {
    use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(v).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

impl FileRead {
    /// The proof of a clean read; None when the file gave an error, a truncation warning or a
    /// skipped record, which each scan reports again (so such a file is always read).
    fn proof(&self) -> Option<Proof> {
        let b = &self.batch;
        if !(b.errors.is_empty() && b.warnings.is_empty() && b.skipped.is_empty()) {
            return None;
        }
        Some(Proof {
            latest: b.terminations.iter().map(|t| t.time).max(),
            launches: self.launches.clone(),
        })
    }
}

/// Reads one activities file: its terminations, skipped records, truncation warning or (the
/// file as a whole) its error, and its launch activities and the instances its termination
/// activities name.
fn read_activity_file(file: &Path) -> FileRead {
    let mut out = FileRead::default();
    let origin = file.display().to_string();
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            out.batch.errors.push(Error::io(file, e).to_string());
            return out;
        }
    };
    let docs = match typed_documents::<ActivitiesDoc>(&bytes, &origin) {
        Ok(docs) => docs,
        Err(e) => {
            out.batch.errors.push(e.to_string());
            return out;
        }
    };
    for (n, doc) in docs.iter().enumerate() {
        let list = match doc {
            ActivitiesDoc::Page { activities, .. } => activities.as_deref(),
            ActivitiesDoc::List(a) => Some(&a[..]),
            ActivitiesDoc::Other => None,
        };
        for act in list.into_iter().flatten().filter_map(|a| a.0.as_ref()) {
            add_launch(act, &mut out.launches);
        }
        let origin = if docs.len() > 1 {
            format!("{origin} (document {})", n + 1)
        } else {
            origin.clone()
        };
        if let ActivitiesDoc::Page { tokens, .. } = doc {
            out.batch.warnings.extend(tokens.warning(&origin));
        }
        parse_activities(doc, &origin, &mut out.batch);
    }
    out
}

/// What one activity says about launches (see [`Launches`]).
fn add_launch(act: &Act<'_>, out: &mut Launches) {
    let description = act.description.get().unwrap_or("");
    let Some(id) = super::find_instance_id(description) else {
        return;
    };
    if description.starts_with(TERMINATING) {
        out.terminated.insert(id.to_string());
        return;
    }
    if !description.starts_with(LAUNCHING)
        || act
            .status
            .get()
            .is_some_and(|s| s == "Failed" || s == "Cancelled")
    {
        return;
    }
    let Some(at) = act.start_time.get().and_then(|t| parse_instant(t).ok()) else {
        return;
    };
    let asg = act.asg.get().map(str::to_string);
    let e = out.launched.entry(id.to_string()).or_insert((asg, at));
    // Two launch activities for one id cannot both be right: the earliest.
    e.1 = e.1.min(at);
}

/// One activity, as far as epitaph reads it.
#[derive(Debug, Default, serde::Deserialize)]
struct Act<'a> {
    #[serde(rename = "ActivityId", default, borrow)]
    activity_id: LStr<'a>,
    #[serde(rename = "AutoScalingGroupName", default, borrow)]
    asg: LStr<'a>,
    #[serde(rename = "Description", default, borrow)]
    description: LStr<'a>,
    #[serde(rename = "Cause", default, borrow)]
    cause: LStr<'a>,
    #[serde(rename = "StartTime", default, borrow)]
    start_time: LStr<'a>,
    #[serde(rename = "EndTime", default, borrow)]
    end_time: LStr<'a>,
    #[serde(rename = "StatusCode", default, borrow)]
    status: LStr<'a>,
}

/// One `describe-scaling-activities` document: an object with an `Activities` array (and
/// maybe a pagination token), a bare array of activities, or something else.
#[derive(Debug)]
enum ActivitiesDoc<'a> {
    Page {
        /// None when the object has no `Activities` array.
        activities: Option<Vec<LObj<Act<'a>>>>,
        tokens: Tokens<'a>,
    },
    List(Vec<LObj<Act<'a>>>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for ActivitiesDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ActivitiesDoc<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut activities = None;
                let mut tokens = Tokens::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "Activities" => activities = map.next_value::<LSeq<_>>()?.0,
                        "NextToken" => tokens.next_token = map.next_value()?,
                        "nextToken" => tokens.next_token_logs = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ActivitiesDoc::Page { activities, tokens })
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element()? {
                    out.push(x);
                }
                Ok(ActivitiesDoc::List(out))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(ActivitiesDoc::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// How an Auto Scaling launch activity's description starts.
const LAUNCHING: &str = "Launching a new EC2 instance";
/// How a termination activity's description starts.
const TERMINATING: &str = "Terminating EC2 instance";

/// Launch activities by instance (its group and the activity's start), and the instances a
/// termination activity names.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Launches {
    launched: BTreeMap<String, (Option<String>, chrono::DateTime<chrono::Utc>)>,
    terminated: std::collections::BTreeSet<String>,
}

impl Launches {
    /// Adds a later file's launches: an instance's group is the first file's, its launch the
    /// earliest.
    fn merge(&mut self, other: Launches) {
        for (id, (asg, at)) in other.launched {
            let e = self.launched.entry(id).or_insert((asg, at));
            e.1 = e.1.min(at);
        }
        self.terminated.extend(other.terminated);
    }
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
        let (mut batch, _, stamps) =
            tokio::task::spawn_blocking(move || this.read_files(Purpose::Window(window)))
                .await
                .map_err(|e| Error::source(self.name(), e.to_string()))??;
        *self.stamped.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamps);
        batch.terminations.retain(|t| window.contains(t.time));
        dedupe(&mut batch.terminations);
        Ok(batch)
    }

    async fn inventory_stamps(&self) -> Result<Option<Vec<InputStamp>>> {
        let (acts, inv) = (self.path.clone(), self.inventory.clone());
        let stamps = tokio::task::spawn_blocking(move || {
            let mut all = super::stamps(&acts)?;
            if let Some(inv) = inv {
                all.extend(super::stamps(&inv)?);
            }
            all.sort_by(|a, b| a.path.cmp(&b.path));
            Ok::<_, Error>(all)
        })
        .await
        .map_err(|e| Error::source(self.name(), e.to_string()))??;
        Ok(Some(stamps))
    }

    fn use_input_stamps(&self, known: Vec<InputStamp>) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) =
            std::sync::Arc::new(known.into_iter().map(|s| (s.path.clone(), s)).collect());
    }

    fn input_stamps(&self) -> Option<Vec<InputStamp>> {
        self.stamped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    async fn inventory(&self) -> Result<Vec<InstanceInfo>> {
        let this = self.clone();
        let (instances, problems) = tokio::task::spawn_blocking(move || {
            let (mut instances, problems) = match &this.inventory {
                Some(path) => read_inventory(path)?,
                None => Default::default(),
            };
            add_launches(&mut instances, &this.read_files(Purpose::Launches)?.1);
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
fn parse_activities(doc: &ActivitiesDoc<'_>, origin: &str, batch: &mut ActivityBatch) {
    let list = match doc {
        ActivitiesDoc::Page {
            activities: Some(a),
            ..
        } => a,
        ActivitiesDoc::Page { .. } => {
            batch.errors.push(format!(
                "{origin}: not describe-scaling-activities output (no \"Activities\" array)"
            ));
            return;
        }
        ActivitiesDoc::List(a) => a,
        ActivitiesDoc::Other => {
            batch.errors.push(format!(
                "{origin}: expected a JSON object or array of activities"
            ));
            return;
        }
    };
    for (i, act) in list.iter().enumerate() {
        let at = format!("{origin}: Activities[{i}]");
        match parse_activity(act.0.as_ref()) {
            Ok(Some(t)) => batch.terminations.push(t),
            Ok(None) => {}
            Err(reason) => batch.skipped.push(Skipped {
                location: at,
                reason,
            }),
        }
    }
}

/// One activity (`describe-scaling-activities` output; None when it is not a JSON object):
/// `Ok(None)` for activities that are not terminations. Its times are parsed only when it is
/// one.
fn parse_activity(act: Option<&Act<'_>>) -> std::result::Result<Option<Termination>, String> {
    let Some(act) = act else {
        return Err("not a JSON object".into());
    };
    let description = act.description.get();
    if !description
        .unwrap_or("")
        .to_ascii_lowercase()
        .starts_with("terminating")
    {
        return Ok(None);
    }
    crate::sources::termination_from_activity(&crate::sources::RawActivity {
        activity_id: act.activity_id.get(),
        asg: act.asg.get(),
        description,
        cause: act.cause.get(),
        start_time: act
            .start_time
            .get()
            .map(|s| parse_instant(s).map_err(|e| format!("StartTime: {e}"))),
        end_time: act
            .end_time
            .get()
            .map(|s| parse_instant(s).map_err(|e| format!("EndTime: {e}"))),
        status: act.status.get(),
    })
}

#[cfg(test)]
mod tests;
