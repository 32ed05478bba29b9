//! A scan, as named stages: plan (the window, and the targets to read from further back) →
//! discover (inventory, terminations, what to fetch) → fetch (evidence, analysed and stored in
//! batches) → judge (every deployment with deaths in the lookback, from their compact rows;
//! early warning) → prune (state past its retention, bounded) → alert (transitions into the
//! outbox) → record (the summary, the run and its target backlog).
//! Each stage reads and fills one [`ScanRun`].

use super::*;
use crate::sources::{InputProblems, SkipGroups};

/// A scan in progress: what each stage leaves for the next.
struct ScanRun {
    started_at: DateTime<Utc>,
    clock: Instant,
    window: TimeWindow,
    /// Targets read from before the window's start (an earlier run could not read them).
    earlier: BTreeMap<String, DateTime<Utc>>,
    /// The sources' call counts before the scan (they count over their lifetime).
    calls_before: BTreeMap<String, u64>,
    summary: ScanSummary,
    problems: InputProblems,
    inventory: Vec<InstanceInfo>,
    /// Instances whose termination this scan found.
    terminated: BTreeSet<String>,
    skipped: Vec<Skipped>,
    skipped_records: usize,
    skip_groups: SkipGroups,
}

/// What the judge stage found.
struct Judged {
    /// The compact rows of every instance in the finding lookback (read only if needed).
    history: super::kept::Lookback,
    /// Each deployment's last bad death in the lookback.
    last_bad: BTreeMap<String, DateTime<Utc>>,
    /// The instances the scan report lists: the window's (and those of targets read from
    /// further back), summarised from their full reports a batch at a time.
    listed: Vec<InstanceSummary>,
    findings: Vec<DeploymentFinding>,
    next_deaths: Vec<ProjectedDeath>,
}

impl Pipeline {
    /// Runs one scan.
    pub async fn scan(&self, opts: &ScanOptions) -> Result<ScanReport> {
        let mut run = self.plan(opts).await?;
        let todo = self.discover(&mut run, opts).await?;
        self.fetch_all(&mut run, &todo, opts).await?;
        let judged = self.judge(&mut run).await?;
        self.prune(run.window.end).await?;
        run.summary.alerts_enqueued = self
            .enqueue_alerts(
                &judged.findings,
                &judged.history,
                &judged.last_bad,
                &run.inventory,
                &judged.next_deaths,
                run.window.end,
            )
            .await?;
        let report = self.finish(run, judged, opts);
        self.record(&report.0, report.1).await?;
        Ok(report.0)
    }

    /// Plan: the window (flag, else the watermark, else config), and the targets an earlier
    /// run could not read, read from where their unread window starts (at most six weeks
    /// back); the others from the window's start.
    async fn plan(&self, opts: &ScanOptions) -> Result<ScanRun> {
        let clock = Instant::now();
        let started_at = Utc::now();
        let window = self.window(opts, started_at).await?;
        tracing::info!(start = %window.start, end = %window.end, "scan started");
        self.sources.begin_scan();
        let calls_before = self.sources.calls();
        let oldest = window.end - MAX_TARGET_BACKLOG;
        let earlier = self
            .store
            .target_backlog()
            .await?
            .into_iter()
            .map(|(t, u)| (t, u.since.max(oldest)))
            .filter(|(_, since)| *since < window.start)
            .collect();
        Ok(ScanRun {
            started_at,
            clock,
            window,
            earlier,
            calls_before,
            summary: ScanSummary::default(),
            problems: InputProblems::default(),
            inventory: Vec::new(),
            terminated: BTreeSet::new(),
            skipped: Vec::new(),
            skipped_records: 0,
            skip_groups: SkipGroups::default(),
        })
    }

    /// Discover: the inventory (stored), the window's terminations target by target, and what
    /// to fetch — new terminations (all of them with `--refresh`) and pending retries.
    async fn discover(&self, run: &mut ScanRun, opts: &ScanOptions) -> Result<Vec<Termination>> {
        // What the activity files proved at the last run (unchanged ones are not read again).
        let activities = &self.sources.activities;
        let known = self.store.input_stamps(ACTIVITIES_READER).await?;
        let known_stamps = stamp_keys(&known);
        activities.use_input_stamps(known);
        let inventory = self.scan_inventory().await?;
        if inventory.kept {
            run.summary
                .reused
                .push(super::kept::REUSED_INVENTORY.into());
        }
        run.inventory = inventory.instances;
        run.problems = inventory.problems;

        let batch = self
            .sources
            .activities
            .terminations_since(run.window, &run.earlier)
            .await?;
        // Rewritten only when a file changed (an unchanged file proves the same again).
        if let Some(stamps) = activities.input_stamps() {
            if stamp_keys(&stamps) != known_stamps {
                self.store
                    .replace_input_stamps(ACTIVITIES_READER, &stamps)
                    .await?;
            }
        }
        let summary = &mut run.summary;
        summary.discovered = batch.terminations.len();
        for t in batch
            .terminations
            .iter()
            .filter(|t| t.cause == crate::model::CauseCategory::Unknown)
        {
            let key = crate::analysis::cause::cause_template(&t.cause_text);
            if summary.unrecognised_causes.len() < MAX_LISTED_PROBLEMS
                || summary.unrecognised_causes.contains_key(&key)
            {
                *summary.unrecognised_causes.entry(key).or_insert(0) += 1;
            }
        }
        run.problems.errors.extend(batch.errors.iter().cloned());
        run.problems.warnings.extend(batch.warnings.iter().cloned());
        run.problems
            .failed_targets
            .extend(batch.failed_targets.iter().cloned());
        summary.targets = target_statuses(
            &self.sources.activities.targets(),
            &run.problems.failed_targets,
            &run.earlier,
            run.window.start,
        );
        for t in summary
            .targets
            .iter()
            .filter(|t| t.status == TargetState::Failed)
        {
            tracing::warn!(target = %t.target, error = t.error.as_deref().unwrap_or(""), "target could not be read; its window is read again next run");
        }
        run.skipped_records = batch.skipped.len();
        run.skipped = batch.skipped.clone();
        // Every skipped record by input and kind (the activities' here, the others' later).
        for k in &batch.skipped {
            run.skip_groups.add(&k.location, &k.reason, 1);
        }
        run.terminated = batch
            .terminations
            .iter()
            .map(|t| t.instance_id.clone())
            .collect();
        let ids: Vec<String> = run.terminated.iter().cloned().collect();
        let known = if opts.refresh {
            Default::default()
        } else {
            self.store.analysed_ids(&ids).await?
        };
        run.summary.cached = known.len();
        let mut todo: Vec<Termination> = batch
            .terminations
            .into_iter()
            .filter(|t| !known.contains(&t.instance_id))
            .collect();
        let in_todo: BTreeSet<String> = todo.iter().map(|t| t.instance_id.clone()).collect();
        for p in self.store.pending().await? {
            if !in_todo.contains(&p.termination.instance_id) {
                run.summary.retried += 1;
                todo.push(p.termination);
            }
        }
        Ok(todo)
    }

    /// Stores the reports analysed since the last save, in one transaction, and counts them.
    async fn save_reports(
        &self,
        run: &mut ScanRun,
        coverage: &mut crate::analysis::coverage::Coverage,
        reports: &mut Vec<InstanceReport>,
    ) -> Result<()> {
        run.summary.analysed += reports.len();
        reports.iter().for_each(|r| coverage.add(r));
        self.store.save_instances(reports).await?;
        reports.clear();
        Ok(())
    }

    /// Fetch: each batch's evidence, analysed and stored; a failed fetch stays pending. Then
    /// the records the log and metric sources skipped.
    async fn fetch_all(
        &self,
        run: &mut ScanRun,
        todo: &[Termination],
        opts: &ScanOptions,
    ) -> Result<()> {
        let bar = progress_bar(opts.progress, todo.len());
        let mut coverage = crate::analysis::coverage::Coverage::default();
        let mut reports = Vec::new();
        for chunk in todo.chunks(BATCH_SIZE) {
            let fetched = match self.fetch_chunk(chunk).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    // What was analysed before the failure is kept, not analysed again.
                    self.save_reports(run, &mut coverage, &mut reports).await?;
                    return Err(e);
                }
            };
            for f in fetched {
                match f {
                    Fetched::Done(r) => reports.push(*r),
                    Fetched::Failed(t, error) => {
                        tracing::warn!(instance_id = %t.instance_id, %error, "fetch failed; kept pending");
                        self.store.save_pending(&t, &error).await?;
                        run.summary.pending.push(PendingInstance {
                            instance_id: t.instance_id.clone(),
                            error,
                        });
                    }
                }
            }
            if reports.len() >= STORE_BATCH {
                self.save_reports(run, &mut coverage, &mut reports).await?;
            }
            bar.inc(chunk.len() as u64);
        }
        self.save_reports(run, &mut coverage, &mut reports).await?;
        bar.finish_and_clear();
        run.summary.coverage = coverage.finish();
        for c in &run.summary.coverage.collapsed {
            tracing::warn!("evidence collapsed: {c}");
        }

        for (count, list) in [self.sources.logs.skipped(), self.sources.metrics.skipped()] {
            run.skipped_records += count;
            run.skipped.extend(list);
        }
        for g in self
            .sources
            .logs
            .skipped_by_input()
            .into_iter()
            .chain(self.sources.metrics.skipped_by_input())
        {
            run.skip_groups.add_group(g);
        }
        Ok(())
    }

    /// Judge: the standing of every deployment with deaths in the finding lookback (not only
    /// those touched now: a quiet window changes no verdict), and early warning's projections,
    /// from the lookback's compact rows. The lookback contains the window (and any target read
    /// from further back): its rows name the instances the report lists, whose full reports
    /// are the only ones read.
    async fn judge(&self, run: &mut ScanRun) -> Result<Judged> {
        let read = TimeWindow {
            start: run
                .earlier
                .values()
                .copied()
                .fold(run.window.start, DateTime::min),
            end: run.window.end,
        };
        let lookback = TimeWindow {
            start: read.start.min(run.window.end - self.cfg.finding_lookback()),
            end: run.window.end,
        };
        // Kept from the previous scan while the lookback's rows are the same (kept.rs).
        let (judgement, history, stamp) = self.judgement(lookback).await?;
        let listed_ids = history
            .listed(self.store.as_ref(), run.window, read, &run.terminated)
            .await?;
        // Their series and last words are not listed: each batch of reports is summarised and
        // dropped, so a full scan never holds every report at once.
        let mut listed = Vec::with_capacity(listed_ids.len());
        for chunk in listed_ids.chunks(LISTED_BATCH) {
            let reports = self.store.reports(chunk).await?;
            listed.extend(reports.iter().map(InstanceSummary::from));
        }
        if judgement.kept {
            run.summary
                .reused
                .push(super::kept::REUSED_DEPLOYMENTS.into());
        } else {
            self.store.save_findings(&judgement.findings).await?;
            self.keep_judgement(&judgement, stamp).await?;
        }
        let early = self
            .early_warning(
                &judgement.findings,
                &judgement.levels,
                &run.inventory,
                &run.terminated,
                run.window.end,
            )
            .await?;
        if early.kept {
            run.summary
                .reused
                .push(super::kept::REUSED_EARLY_WARNING.into());
        }
        self.store.replace_projections(&early.projections).await?;
        if let Some(proof) = &early.proof {
            self.store
                .replace_input_stamps(
                    super::early::EARLY_WARNING_READER,
                    std::slice::from_ref(proof),
                )
                .await?;
        }
        let next_deaths = early.projections;
        run.summary.early_warning = early.summary;
        Ok(Judged {
            history,
            last_bad: judgement.last_bad,
            listed,
            findings: judgement.findings,
            next_deaths,
        })
    }

    /// Retention: evidence older than `state.retention` and compact rows older than
    /// `state.facts_retention`, as of the data (`at`, the window's end), at most
    /// [`MAX_PRUNED_PER_SCAN`] of each per scan — a store that fell behind catches up over
    /// several scans instead of stalling one.
    async fn prune(&self, at: DateTime<Utc>) -> Result<()> {
        let pruned = self
            .store
            .prune(
                at - self.cfg.evidence_retention(),
                at - self.cfg.facts_retention(),
                MAX_PRUNED_PER_SCAN,
            )
            .await?;
        if pruned.evidence + pruned.facts > 0 {
            tracing::info!(
                evidence = pruned.evidence,
                facts = pruned.facts,
                "pruned state past its retention"
            );
        }
        Ok(())
    }

    /// The report: the window's instances (and those of targets read from further back), the
    /// deployments, the summary's counts, problems and calls. Also whether the run may
    /// advance the watermark.
    fn finish(&self, run: ScanRun, judged: Judged, opts: &ScanOptions) -> (ScanReport, RunFacts) {
        let ScanRun {
            started_at,
            clock,
            window,
            calls_before,
            mut summary,
            mut problems,
            mut skipped,
            skipped_records,
            skip_groups,
            ..
        } = run;
        summary.skipped_by_input = skip_groups.rows();
        summary.skipped_by_input.truncate(MAX_LISTED_PROBLEMS);
        summary.skipped_records = skipped_records;
        skipped.truncate(MAX_LISTED_PROBLEMS);
        summary.skipped = skipped;

        // The listed instances are those of the lookback's rows in the window (or of a target
        // read from further back), oldest first: as the lookback's own order.
        let reports = judged.listed;
        for r in &reports {
            *summary
                .verdicts
                .entry(r.verdict.as_str().to_string())
                .or_insert(0) += 1;
        }
        for f in &judged.findings {
            *summary
                .deployment_verdicts
                .entry(f.verdict.as_str().to_string())
                .or_insert(0) += 1;
        }
        // Whole files refused or truncated, as of this scan's reads (a log or metrics index is
        // built when an instance is first fetched from it, early warning's series included).
        problems.extend(self.sources.logs.input_problems());
        problems.extend(self.sources.metrics.input_problems());
        if opts.strict {
            let truncated = std::mem::take(&mut problems.warnings);
            problems
                .errors
                .extend(truncated.into_iter().map(|w| format!("{w} [--strict]")));
        }
        summary.input_errors = problems.errors;
        summary.input_warnings = problems.warnings;
        summary.complete = summary.input_errors.is_empty()
            && summary.input_warnings.is_empty()
            && summary.pending.is_empty()
            && summary.targets.iter().all(|t| t.status == TargetState::Ok);
        summary.api_calls = self
            .sources
            .calls()
            .into_iter()
            .map(|(op, n)| {
                let d = n.saturating_sub(calls_before.get(&op).copied().unwrap_or(0));
                (op, d)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let fetched = summary.analysed + summary.pending.len();
        let total: u64 = summary.api_calls.values().sum();
        summary.api_calls_per_instance =
            (fetched > 0 && total > 0).then(|| total as f64 / fetched as f64);
        summary.duration_ms = clock.elapsed().as_millis() as u64;
        let report = ScanReport {
            schema_version: SCHEMA_VERSION,
            window,
            instances: reports,
            deployments: judged.findings,
            next_deaths: judged.next_deaths,
            summary,
        };
        (report, RunFacts { started_at })
    }

    /// Record: the run, whether it advances the watermark, and the targets it could not read
    /// (with where their unread window starts, for the next run).
    async fn record(&self, report: &ScanReport, facts: RunFacts) -> Result<()> {
        let s = &report.summary;
        self.store
            .record_run(&RunRecord {
                started_at: facts.started_at,
                finished_at: Utc::now(),
                window: report.window,
                // Unreadable or truncated inputs may hide terminations: rescan this window
                // next time. A target that could not be read does not hold the others back:
                // the watermark advances, and the backlog names where its window starts.
                complete: s.input_errors.is_empty() && s.input_warnings.is_empty(),
                summary: serde_json::to_value(s).unwrap_or_default(),
                target_backlog: s
                    .targets
                    .iter()
                    .filter(|t| t.status == TargetState::Failed)
                    .map(|t| {
                        let unread = crate::store::UnreadTarget {
                            since: t.read_since,
                            error: t.error.clone().unwrap_or_default(),
                        };
                        (t.target.clone(), unread)
                    })
                    .collect(),
            })
            .await?;
        tracing::info!(
            analysed = s.analysed,
            cached = s.cached,
            pending = s.pending.len(),
            "scan finished"
        );
        Ok(())
    }
}

/// The state store's reader name for the activity files' stamps and proofs.
pub const ACTIVITIES_READER: &str = "activities";

/// The files and stamps of a reader's proofs, by path: equal when no file changed.
fn stamp_keys(stamps: &[crate::model::InputStamp]) -> BTreeMap<String, String> {
    stamps
        .iter()
        .map(|s| (s.path.clone(), s.stamp.clone()))
        .collect()
}

/// What `record` needs besides the report.
struct RunFacts {
    started_at: DateTime<Utc>,
}

/// Reports read (and summarised) at a time for the scan report's instance list.
const LISTED_BATCH: usize = 1_000;

/// Rows of each kind (evidence, compact rows) one scan deletes at most when pruning.
pub const MAX_PRUNED_PER_SCAN: usize = 5_000;

/// A target's unread window reaches back at most this far: Auto Scaling keeps six weeks of
/// activity history, so nothing older can be read again.
pub const MAX_TARGET_BACKLOG: chrono::Duration = chrono::Duration::days(42);

/// Each target's standing in a scan: `failed` with its (first) error when a source could not
/// read it, else `ok`; read from its earlier start when it had one, else `start`.
fn target_statuses(
    targets: &[String],
    failures: &[crate::sources::TargetFailure],
    earlier: &BTreeMap<String, DateTime<Utc>>,
    start: DateTime<Utc>,
) -> Vec<TargetStatus> {
    targets
        .iter()
        .map(|name| {
            let error = failures
                .iter()
                .find(|f| &f.target == name)
                .map(|f| f.error.clone());
            TargetStatus {
                target: name.clone(),
                status: if error.is_some() {
                    TargetState::Failed
                } else {
                    TargetState::Ok
                },
                read_since: earlier.get(name).copied().unwrap_or(start).min(start),
                error,
            }
        })
        .collect()
}
