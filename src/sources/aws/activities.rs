//! Auto Scaling: terminations from `DescribeScalingActivities` (per group, newest first,
//! paginated back to the window's start) and the inventory from `DescribeAutoScalingGroups`.
//!
//! Length: the group selection, the per-target isolation and the activity paging are one
//! source's contract (`ActivitySource`), tested end to end against moto in
//! tests/suite/aws_*.rs.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

use super::autoscaling as api;
use super::{AwsContext, CallCounter, Target};
use crate::config::ActivitiesConfig;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::model::{InstanceInfo, LaunchTemplateRef, Termination, TimeWindow};
use crate::sources::probe::{ActivitiesProbe, Call, CallRecord, GroupSeen, Listing};
use crate::sources::{
    termination_from_activity, ActivityBatch, ActivitySource, InputProblems, RawActivity, Skipped,
    TargetFailure,
};

/// `MaxRecords` for both describe calls (the API's maximum).
const PAGE_SIZE: i32 = 100;
/// A group listing read by `inventory()` is reused by `terminations()` for this long, so a
/// scan lists the groups once, not twice.
const GROUP_LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// `epitaph doctor` lists at most this many pages of groups (for names to suggest).
const PROBE_LISTING_PAGES: usize = 5;
/// `epitaph doctor` reads one page of activities from at most this many selected groups.
const PROBE_ACTIVITY_GROUPS: usize = 3;

pub struct AwsActivities {
    ctx: AwsContext,
    groups: Vec<String>,
    group_tag: Option<(String, String)>,
    concurrency: usize,
    /// Ask EC2 for what the group listing does not say (`describe_instances`).
    describe_instances: bool,
    calls: Arc<CallCounter>,
    /// The last full listing of (target name, group name), and when it was read.
    listing: std::sync::Mutex<Option<GroupListing>>,
    /// Targets the last `inventory()` could not read (their instances are missing from it).
    inventory_failures: std::sync::Mutex<Vec<TargetFailure>>,
}

/// When a listing was read, and its (target name, group name) pairs.
type GroupListing = (std::time::Instant, Vec<(String, String)>);

/// A group as `DescribeAutoScalingGroups` reports it, reduced to what epitaph needs.
struct Group {
    name: String,
    tags: Vec<(String, String)>,
    instances: Vec<InstanceInfo>,
}

impl AwsActivities {
    pub fn new(ctx: AwsContext, cfg: &ActivitiesConfig, concurrency: usize) -> Self {
        AwsActivities {
            ctx,
            groups: cfg.groups.clone(),
            group_tag: cfg
                .group_tag
                .as_deref()
                .and_then(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string())),
            concurrency: concurrency.max(1),
            describe_instances: cfg.describe_instances,
            calls: Arc::new(CallCounter::default()),
            listing: std::sync::Mutex::new(None),
            inventory_failures: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The configured groups (or all, filtered by tag) of one target, with their instances.
    async fn groups(&self, t: &Target) -> Result<Vec<Group>> {
        let mut out = Vec::new();
        // Named groups are asked for in batches; otherwise every group is listed.
        let batches: Vec<Option<Vec<String>>> = if self.groups.is_empty() {
            vec![None]
        } else {
            self.groups
                .chunks(PAGE_SIZE as usize)
                .map(|c| Some(c.to_vec()))
                .collect()
        };
        for names in batches {
            let mut token = None;
            loop {
                self.calls.count("autoscaling:DescribeAutoScalingGroups");
                let resp = t
                    .autoscaling
                    .describe_groups(names.as_deref(), PAGE_SIZE, token.as_deref())
                    .await
                    .map_err(|e| Error::source(&t.name, e.message))?;
                out.extend(resp.items.iter().map(group_from_api));
                token = resp.next_token;
                if token.is_none() {
                    break;
                }
            }
        }
        if let (true, Some((k, v))) = (self.groups.is_empty(), &self.group_tag) {
            out.retain(|g| g.tags.iter().any(|(gk, gv)| gk == k && gv == v));
        }
        Ok(out)
    }

    /// Terminations of one group whose activity started at or after `since` (all history when
    /// None), newest first as the API returns them; stops paging once past `since`.
    async fn group_terminations(
        &self,
        t: &Target,
        group: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(Vec<Termination>, Vec<Skipped>)> {
        let (mut terms, mut skipped) = (Vec::new(), Vec::new());
        let mut token = None;
        loop {
            self.calls.count("autoscaling:DescribeScalingActivities");
            let resp = t
                .autoscaling
                .describe_activities(Some(group), PAGE_SIZE, token.as_deref())
                .await
                .map_err(|e| Error::source(&t.name, e.message))?;
            let older_than_window =
                page_terminations(t, group, &resp.items, since, &mut terms, &mut skipped);
            token = resp.next_token;
            if token.is_none() || older_than_window {
                break;
            }
        }
        Ok((terms, skipped))
    }

    /// `epitaph doctor`: the groups as a scan would select them in `t`, a bounded listing of
    /// every group (for names to suggest), and one page of activities of a few selected groups
    /// (terminations since `since`, newest first). Every call is made once, cheaply.
    pub async fn probe(&self, t: &Target, since: chrono::DateTime<chrono::Utc>) -> ActivitiesProbe {
        const LIST: &str = api::DESCRIBE_GROUPS;
        const ACTIVITIES: &str = api::DESCRIBE_ACTIVITIES;
        let mut calls = Vec::new();
        let named = if self.groups.is_empty() {
            None
        } else {
            let mut found: Call<Vec<GroupSeen>> = Ok(Vec::new());
            for chunk in self.groups.chunks(PAGE_SIZE as usize) {
                self.calls.count(LIST);
                let r = t
                    .autoscaling
                    .describe_groups(Some(chunk), PAGE_SIZE, None)
                    .await;
                calls.push(CallRecord::of(LIST, &r));
                match (r, &mut found) {
                    (Ok(r), Ok(found)) => found.extend(r.items.iter().map(group_seen)),
                    (Err(e), _) => {
                        found = Err(e);
                        break;
                    }
                    _ => {}
                }
            }
            Some(found)
        };
        let mut listing: Call<Listing<GroupSeen>> = Ok(Listing::default());
        let mut token = None;
        for _ in 0..PROBE_LISTING_PAGES {
            self.calls.count(LIST);
            let r = t
                .autoscaling
                .describe_groups(None, PAGE_SIZE, token.take().as_deref())
                .await;
            calls.push(CallRecord::of(LIST, &r));
            match (r, &mut listing) {
                (Ok(r), Ok(l)) => {
                    l.items.extend(r.items.iter().map(group_seen));
                    token = r.next_token;
                }
                (Err(e), _) => {
                    listing = Err(e);
                    break;
                }
                _ => {}
            }
            if token.is_none() {
                break;
            }
        }
        if let Ok(l) = &mut listing {
            l.truncated = token.is_some();
        }
        let selected: Vec<String> = match (&named, &listing) {
            (Some(Ok(found)), _) => found.iter().map(|g| g.name.clone()).collect(),
            (None, Ok(l)) => l
                .items
                .iter()
                .filter(|g| match &self.group_tag {
                    Some((k, v)) => g.tags.iter().any(|(gk, gv)| gk == k && gv == v),
                    None => true,
                })
                .map(|g| g.name.clone())
                .collect(),
            _ => Vec::new(),
        };
        let mut activities: Call<Vec<Termination>> = Ok(Vec::new());
        let mut skipped = Vec::new();
        if selected.is_empty() {
            // Nothing to read: one call still shows whether the action is allowed.
            self.calls.count(ACTIVITIES);
            let r = t.autoscaling.describe_activities(None, 1, None).await;
            calls.push(CallRecord::of(ACTIVITIES, &r));
            if let Err(e) = r {
                activities = Err(e);
            }
        }
        for g in selected.iter().take(PROBE_ACTIVITY_GROUPS) {
            self.calls.count(ACTIVITIES);
            let r = t
                .autoscaling
                .describe_activities(Some(g), PAGE_SIZE, None)
                .await;
            calls.push(CallRecord::of(ACTIVITIES, &r));
            match (r, &mut activities) {
                (Ok(r), Ok(terms)) => {
                    page_terminations(t, g, &r.items, Some(since), terms, &mut skipped);
                }
                (Err(e), _) => {
                    activities = Err(e);
                    break;
                }
                _ => {}
            }
        }
        if let Ok(terms) = &mut activities {
            terms.sort_by_key(|t| std::cmp::Reverse(t.time));
        }
        if self.describe_instances {
            // Whether EC2 answers for this target: the listed instances of the selected
            // groups (a made-up id when there are none — an id filter matching nothing is
            // still an authorised call).
            let ids: Vec<String> = match &listing {
                Ok(l) => l
                    .items
                    .iter()
                    .filter(|g| selected.contains(&g.name))
                    .flat_map(|g| g.instances.iter().cloned())
                    .take(super::ec2::IDS_PER_CALL)
                    .collect(),
                Err(_) => Vec::new(),
            };
            let ids = if ids.is_empty() {
                vec![crate::sources::probe::PLACEHOLDER_INSTANCE.to_string()]
            } else {
                ids
            };
            let r: Call<Vec<super::ec2::Ec2Instance>> = match &t.ec2 {
                Some(ec2) => ec2.describe_calls(&ids).await,
                None => Err(crate::sources::probe::CallError {
                    action: super::ec2::ACTION.to_string(),
                    code: None,
                    answered: false,
                    message: "no AWS credentials provider to sign EC2 requests with".into(),
                }),
            };
            calls.push(CallRecord::of(super::ec2::ACTION, &r));
        }
        ActivitiesProbe {
            named,
            listing,
            selected,
            activities,
            calls,
        }
    }

    /// Every (target, group) pair to read, and the targets whose groups could not be listed
    /// (the others are read all the same).
    async fn all_groups(&self) -> (Vec<(Target, String)>, Vec<TargetFailure>) {
        if !self.groups.is_empty() {
            let pairs = self
                .ctx
                .targets
                .iter()
                .flat_map(|t| self.groups.iter().map(move |g| (t.clone(), g.clone())))
                .collect();
            return (pairs, Vec::new());
        }
        let cached = self.listing.lock().ok().and_then(|l| {
            l.as_ref()
                .filter(|(at, _)| at.elapsed() < GROUP_LISTING_TTL)
                .map(|(_, pairs)| pairs.clone())
        });
        let mut failures = Vec::new();
        let names = match cached {
            Some(pairs) => pairs,
            None => {
                let mut pairs = Vec::new();
                for t in self.ctx.targets.iter() {
                    match self.groups(t).await {
                        Ok(groups) => {
                            pairs.extend(groups.into_iter().map(|g| (t.name.clone(), g.name)))
                        }
                        Err(e) => failures.push(target_failure(t, &e)),
                    }
                }
                // A listing with a target missing is not remembered: the next read lists
                // again, so a target that recovers is read.
                if failures.is_empty() {
                    self.remember(&pairs);
                }
                pairs
            }
        };
        let pairs = names
            .into_iter()
            .filter_map(|(t, g)| Some((self.ctx.targets.iter().find(|x| x.name == t)?.clone(), g)))
            .collect();
        (pairs, failures)
    }

    fn remember(&self, pairs: &[(String, String)]) {
        if let Ok(mut l) = self.listing.lock() {
            *l = Some((std::time::Instant::now(), pairs.to_vec()));
        }
    }
}

/// A group as the API lists it, reduced to what epitaph needs.
fn group_from_api(g: &api::Group) -> Group {
    let name = g.name.clone().unwrap_or_default();
    let tags = g
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    let instances = g
        .instances
        .iter()
        .filter_map(|i| {
            Some(InstanceInfo {
                instance_id: i.instance_id.clone()?,
                asg: Some(name.clone()),
                launch_time: None,
                launch_template: i.launch_template.as_ref().map(|lt| LaunchTemplateRef {
                    id: lt.id.clone(),
                    name: lt.name.clone(),
                    version: lt.version.clone(),
                }),
                launch_configuration: i.launch_configuration_name.clone(),
                availability_zone: i.availability_zone.clone(),
                tags: Default::default(),
                // DescribeAutoScalingGroups does not say; EC2 (not in the build) would.
                private_dns: None,
                private_ip: None,
                lifecycle_state: i.lifecycle_state.clone(),
                ec2_state: None,
                origin: None,
            })
        })
        .collect();
    Group {
        name,
        tags,
        instances,
    }
}

/// A group as the doctor's probe reports it.
fn group_seen(g: &api::Group) -> GroupSeen {
    let g = group_from_api(g);
    GroupSeen {
        name: g.name,
        tags: g.tags,
        instances: g.instances.into_iter().map(|i| i.instance_id).collect(),
    }
}

/// Takes the terminations out of one page of activities (those that started at or after
/// `since`); returns whether the page reached past `since`.
fn page_terminations(
    t: &Target,
    group: &str,
    activities: &[api::Activity],
    since: Option<chrono::DateTime<chrono::Utc>>,
    terms: &mut Vec<Termination>,
    skipped: &mut Vec<Skipped>,
) -> bool {
    let mut older_than_window = false;
    for a in activities {
        let start = a
            .start_time
            .as_deref()
            .map(|s| activity_time("StartTime", s));
        if let (Some(Ok(s)), Some(since)) = (&start, since) {
            if *s < since {
                older_than_window = true;
                continue;
            }
        }
        let raw = RawActivity {
            activity_id: a.activity_id.as_deref(),
            asg: a.auto_scaling_group_name.as_deref().or(Some(group)),
            description: a.description.as_deref(),
            cause: a.cause.as_deref(),
            start_time: start,
            end_time: a.end_time.as_deref().map(|e| activity_time("EndTime", e)),
            status: a.status_code.as_deref(),
        };
        match termination_from_activity(&raw) {
            Ok(Some(mut term)) => {
                term.origin = Some(t.name.clone());
                terms.push(term);
            }
            Ok(None) => {}
            Err(reason) => skipped.push(Skipped {
                location: format!(
                    "{}: {group}: activity {}",
                    t.name,
                    a.activity_id.as_deref().unwrap_or("?")
                ),
                reason,
            }),
        }
    }
    older_than_window
}

/// An activity's time as the API sends it (ISO 8601, `2012-04-12T17:32:07.882Z`), or why it
/// cannot be used (`field` names it).
fn activity_time(
    field: &str,
    text: &str,
) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{field} `{text}` is not an ISO 8601 time: {e}"))
}

#[async_trait]
impl ActivitySource for AwsActivities {
    fn name(&self) -> String {
        "aws:autoscaling".into()
    }

    async fn terminations(&self, window: TimeWindow) -> Result<ActivityBatch> {
        self.terminations_since(window, &BTreeMap::new()).await
    }

    async fn terminations_since(
        &self,
        window: TimeWindow,
        earlier: &BTreeMap<String, DateTime<Utc>>,
    ) -> Result<ActivityBatch> {
        let (pairs, failures) = self.all_groups().await;
        // Each target from its own start: the window's, or earlier for a target an earlier
        // run could not read.
        let start_of = |t: &Target| {
            earlier
                .get(&t.name)
                .map_or(window.start, |s| (*s).min(window.start))
        };
        let results: Vec<(Target, String, Result<(Vec<Termination>, Vec<Skipped>)>)> =
            stream::iter(pairs)
                .map(|(t, g)| async move {
                    let r = self.group_terminations(&t, &g, Some(start_of(&t))).await;
                    (t, g, r)
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut batch = ActivityBatch {
            failed_targets: failures,
            ..ActivityBatch::default()
        };
        for (t, g, r) in results {
            match r {
                Ok((terms, skipped)) => {
                    let read = TimeWindow {
                        start: start_of(&t),
                        end: window.end,
                    };
                    batch
                        .terminations
                        .extend(terms.into_iter().filter(|x| read.contains(x.time)));
                    batch.skipped.extend(skipped);
                }
                // A group that could not be read (access denied, the endpoint failing after
                // its retries): the target's terminations may be missing, so the target is
                // reported and its window read again next run; the other targets are whole.
                Err(e) => batch.failed_targets.push(TargetFailure {
                    target: t.name.clone(),
                    error: format!("group {g}: {}", error_text(&t, &e)),
                }),
            }
        }
        batch.failed_targets = merge_failures(std::mem::take(&mut batch.failed_targets));
        batch.terminations.sort_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then_with(|| a.instance_id.cmp(&b.instance_id))
        });
        batch
            .terminations
            .dedup_by(|a, b| a.instance_id == b.instance_id);
        Ok(batch)
    }

    fn targets(&self) -> Vec<String> {
        self.ctx.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// Every target's groups and instances; a target that cannot be read (its role cannot be
    /// assumed, access is denied, the region is not enabled, the endpoint keeps failing) is
    /// left out and named in [`ActivitySource::inventory_problems`], the others are listed.
    async fn inventory(&self) -> Result<Vec<InstanceInfo>> {
        let mut out = Vec::new();
        let mut pairs = Vec::new();
        let mut failures = Vec::new();
        for t in self.ctx.targets.iter() {
            let groups = match self.groups(t).await {
                Ok(g) => g,
                Err(e) => {
                    failures.push(target_failure(t, &e));
                    continue;
                }
            };
            let mut listed = Vec::new();
            for g in groups {
                pairs.push((t.name.clone(), g.name));
                listed.extend(g.instances.into_iter().map(|mut i| {
                    i.origin = Some(t.name.clone());
                    i
                }));
            }
            if self.describe_instances && !listed.is_empty() {
                // The group listing stands without EC2's details; the target is reported.
                if let Err(e) = enrich(t, &mut listed).await {
                    failures.push(target_failure(t, &e));
                }
            }
            out.extend(listed);
        }
        if self.groups.is_empty() && failures.is_empty() {
            self.remember(&pairs);
        }
        if let Ok(mut f) = self.inventory_failures.lock() {
            *f = merge_failures(failures);
        }
        Ok(out)
    }

    fn inventory_problems(&self) -> InputProblems {
        InputProblems {
            failed_targets: self
                .inventory_failures
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default(),
            ..InputProblems::default()
        }
    }

    async fn find_termination(&self, instance_id: &str) -> Result<Option<Termination>> {
        // The activity API cannot filter by instance: read the groups' whole history (AWS
        // keeps six weeks) and pick the instance's termination.
        let (pairs, failures) = self.all_groups().await;
        let mut unread = failures;
        for (t, g) in pairs {
            let terms = match self.group_terminations(&t, &g, None).await {
                Ok((terms, _)) => terms,
                Err(e) => {
                    unread.push(target_failure(&t, &e));
                    continue;
                }
            };
            if let Some(found) = terms.into_iter().find(|x| x.instance_id == instance_id) {
                return Ok(Some(found));
            }
        }
        // Not found where it could be looked for: with a target unread, "not found" would be
        // a guess, so it is an error naming what could not be read.
        let unread = merge_failures(unread);
        if !unread.is_empty() {
            return Err(Error::source(
                "aws:autoscaling",
                format!(
                    "{instance_id} is not in the targets that could be read; not read: {}",
                    unread
                        .iter()
                        .map(|f| format!("{}: {}", f.target, f.error))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        Ok(None)
    }

    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut calls = self.calls.snapshot();
        for t in self.ctx.targets.iter() {
            for (op, n) in t
                .ec2
                .iter()
                .flat_map(|e| e.calls())
                .chain(t.autoscaling.throttled())
            {
                *calls.entry(op).or_insert(0) += n;
            }
        }
        calls
    }
}

/// A target that could not be read, from the error of the call that failed.
fn target_failure(t: &Target, e: &Error) -> TargetFailure {
    TargetFailure {
        target: t.name.clone(),
        error: error_text(t, e),
    }
}

/// An error's text without the target's name in front (the failure names the target).
fn error_text(t: &Target, e: &Error) -> String {
    let text = e.to_string();
    text.strip_prefix(&format!("{}: ", t.name))
        .map(str::to_string)
        .unwrap_or(text)
}

/// One failure per target, in the order the targets first failed: the first error, and how
/// many more calls of that target failed.
fn merge_failures(failures: Vec<TargetFailure>) -> Vec<TargetFailure> {
    let mut out: Vec<(TargetFailure, usize)> = Vec::new();
    for f in failures {
        match out.iter_mut().find(|(o, _)| o.target == f.target) {
            Some((_, more)) => *more += 1,
            None => out.push((f, 0)),
        }
    }
    out.into_iter()
        .map(|(mut f, more)| {
            if more > 0 {
                f.error
                    .push_str(&format!(" (and {more} more failed call(s))"));
            }
            f
        })
        .collect()
}

/// Fills in what EC2 says about the listed instances of one target: private DNS name and IP,
/// launch time, state and tags (the group listing has none of them).
async fn enrich(t: &Target, listed: &mut [InstanceInfo]) -> Result<()> {
    let ec2 = t.ec2.as_ref().ok_or_else(|| {
        Error::source(
            super::ec2::ACTION,
            format!(
                "{}: no AWS credentials provider to sign EC2 requests with (or set {} = false)",
                t.name,
                super::ec2::KEY
            ),
        )
    })?;
    let ids: Vec<String> = listed.iter().map(|i| i.instance_id.clone()).collect();
    let found: std::collections::HashMap<String, super::ec2::Ec2Instance> = ec2
        .describe(&ids)
        .await?
        .into_iter()
        .map(|e| (e.instance_id.clone(), e))
        .collect();
    for info in listed.iter_mut() {
        if let Some(e) = found.get(&info.instance_id) {
            info.private_dns = e.private_dns.clone().or(info.private_dns.take());
            info.private_ip = e.private_ip.clone().or(info.private_ip.take());
            info.launch_time = e.launch_time.or(info.launch_time);
            info.ec2_state = e.state.clone();
            for (k, v) in &e.tags {
                info.tags.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}
