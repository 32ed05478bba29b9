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

/// Reads inventory exports and merges what each says about an instance; a file that cannot be
/// used, or is truncated, is a problem naming it (the others are still read).
fn read_inventory(path: &Path) -> Result<(Vec<InstanceInfo>, InputProblems)> {
    let mut by_id: BTreeMap<String, InstanceInfo> = BTreeMap::new();
    let mut problems = InputProblems::default();
    for file in list_files(path)? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let docs = match typed_documents::<LObj<InventoryDoc>>(&bytes, &file.display().to_string())
        {
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
            if let Some(doc) = &doc.0 {
                problems.warnings.extend(doc.tokens().warning(&origin));
            }
            if let Err(e) = inventory_document(doc.0.as_ref(), &origin, &mut by_id) {
                problems.errors.push(e.to_string());
            }
        }
    }
    Ok((by_id.into_values().collect(), problems))
}

/// An inventory document as far as epitaph reads it: `describe-auto-scaling-groups` or
/// `describe-instances` output.
#[derive(Debug, Default, serde::Deserialize)]
struct InventoryDoc<'a> {
    #[serde(rename = "AutoScalingGroups", default, borrow)]
    groups: LSeq<LObj<Group<'a>>>,
    #[serde(rename = "Reservations", default, borrow)]
    reservations: LSeq<LObj<Reservation<'a>>>,
    #[serde(rename = "NextToken", default, borrow)]
    next_token: LStr<'a>,
    #[serde(rename = "nextToken", default, borrow)]
    next_token_logs: LStr<'a>,
}

impl<'a> InventoryDoc<'a> {
    fn tokens(&self) -> Tokens<'a> {
        Tokens {
            next_token: self.next_token.clone(),
            next_token_logs: self.next_token_logs.clone(),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct Group<'a> {
    #[serde(rename = "AutoScalingGroupName", default, borrow)]
    name: LStr<'a>,
    #[serde(rename = "Instances", default, borrow)]
    instances: LSeq<LObj<GroupInstance<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct GroupInstance<'a> {
    #[serde(rename = "InstanceId", default, borrow)]
    id: LStr<'a>,
    #[serde(rename = "AvailabilityZone", default, borrow)]
    availability_zone: LStr<'a>,
    #[serde(rename = "LifecycleState", default, borrow)]
    lifecycle_state: LStr<'a>,
    #[serde(rename = "LaunchConfigurationName", default, borrow)]
    launch_configuration: LStr<'a>,
    /// Some when the key is there at all (a template reference even if it names nothing).
    #[serde(
        rename = "LaunchTemplate",
        default,
        borrow,
        deserialize_with = "present"
    )]
    launch_template: Option<LObj<TemplateRef<'a>>>,
    #[serde(rename = "LaunchTime", default, borrow)]
    launch_time: LStr<'a>,
}

/// A field that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Default, serde::Deserialize)]
struct TemplateRef<'a> {
    #[serde(rename = "LaunchTemplateId", default, borrow)]
    id: LStr<'a>,
    #[serde(rename = "LaunchTemplateName", default, borrow)]
    name: LStr<'a>,
    #[serde(rename = "Version", default, borrow)]
    version: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Reservation<'a> {
    #[serde(rename = "Instances", default, borrow)]
    instances: LSeq<LObj<Ec2Instance<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Ec2Instance<'a> {
    #[serde(rename = "InstanceId", default, borrow)]
    id: LStr<'a>,
    #[serde(rename = "LaunchTime", default, borrow)]
    launch_time: LStr<'a>,
    #[serde(rename = "PrivateDnsName", default, borrow)]
    private_dns: LStr<'a>,
    #[serde(rename = "PrivateIpAddress", default, borrow)]
    private_ip: LStr<'a>,
    #[serde(rename = "State", default, borrow)]
    state: LObj<Named<'a>>,
    #[serde(rename = "Placement", default, borrow)]
    placement: LObj<Placement<'a>>,
    #[serde(rename = "Tags", default, borrow)]
    tags: LSeq<LObj<Tag<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Named<'a> {
    #[serde(rename = "Name", default, borrow)]
    name: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Placement<'a> {
    #[serde(rename = "AvailabilityZone", default, borrow)]
    availability_zone: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Tag<'a> {
    #[serde(rename = "Key", default, borrow)]
    key: LStr<'a>,
    #[serde(rename = "Value", default, borrow)]
    value: LStr<'a>,
}

/// What one `describe-auto-scaling-groups` or `describe-instances` document says (None: the
/// document is not a JSON object).
fn inventory_document(
    doc: Option<&InventoryDoc<'_>>,
    origin: &str,
    by_id: &mut BTreeMap<String, InstanceInfo>,
) -> Result<()> {
    let owned = |s: &LStr<'_>| s.get().map(str::to_string);
    if let Some(groups) = doc.and_then(|d| d.groups.0.as_ref()) {
        for g in groups.iter().filter_map(|g| g.0.as_ref()) {
            let asg = owned(&g.name);
            for inst in g.instances.items().filter_map(|i| i.0.as_ref()) {
                let Some(id) = inst.id.get() else {
                    continue;
                };
                let e = entry(by_id, id);
                e.asg = e.asg.take().or_else(|| asg.clone());
                e.availability_zone = owned(&inst.availability_zone);
                e.lifecycle_state = owned(&inst.lifecycle_state);
                e.launch_configuration = owned(&inst.launch_configuration);
                if let Some(lt) = &inst.launch_template {
                    let lt = lt.0.as_ref();
                    e.launch_template = Some(LaunchTemplateRef {
                        id: lt.and_then(|l| owned(&l.id)),
                        name: lt.and_then(|l| owned(&l.name)),
                        version: lt.and_then(|l| owned(&l.version)),
                    });
                }
                if let Some(t) = inst.launch_time.get().and_then(|s| parse_instant(s).ok()) {
                    e.launch_time = Some(t);
                }
            }
        }
    } else if let Some(reservations) = doc.and_then(|d| d.reservations.0.as_ref()) {
        for r in reservations.iter().filter_map(|r| r.0.as_ref()) {
            for inst in r.instances.items().filter_map(|i| i.0.as_ref()) {
                let Some(id) = inst.id.get() else {
                    continue;
                };
                let e = entry(by_id, id);
                if let Some(t) = inst.launch_time.get().and_then(|s| parse_instant(s).ok()) {
                    e.launch_time = Some(t);
                }
                // An instance that is gone has an empty PrivateDnsName and no address.
                let non_empty = |v: &LStr<'_>| {
                    v.get()
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                if let Some(dns) = non_empty(&inst.private_dns) {
                    e.private_dns = Some(dns);
                }
                if let Some(ip) = non_empty(&inst.private_ip) {
                    e.private_ip = Some(ip);
                }
                if let Some(state) = inst.state.0.as_ref().and_then(|s| s.name.get()) {
                    e.ec2_state = Some(state.to_string());
                }
                if let Some(az) = inst
                    .placement
                    .0
                    .as_ref()
                    .and_then(|p| p.availability_zone.get())
                {
                    e.availability_zone = Some(az.to_string());
                }
                for tag in inst.tags.items().filter_map(|t| t.0.as_ref()) {
                    if let (Some(k), Some(v)) = (tag.key.get(), tag.value.get()) {
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
}
