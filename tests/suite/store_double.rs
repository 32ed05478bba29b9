//! A store double for the tests that need one call of the store to behave otherwise (lose a
//! race, fail at a chosen moment): every call goes to a real [`SqliteStore`] except those the
//! test's [`StoreHooks`] take over, so the double cannot drift from the real store's behaviour.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use epitaph::analysis::alerting::AlertState;
use epitaph::analysis::heap::AttachedHeapDiff;
use epitaph::error::Result;
use epitaph::model::{
    DeploymentFinding, InputStamp, InstanceFacts, InstanceInfo, InstanceReport, ProjectedDeath,
    Termination, TimeWindow,
};
use epitaph::store::{
    AlertChange, DeliveryOutcome, FactsFingerprint, OutboxEntry, OutboxMessage, Pending, Pruned,
    RunRecord, SqliteStore, Store, TargetBacklog,
};

/// The calls a test may take over; each defaults to the real store's.
#[async_trait]
pub trait StoreHooks: Send + Sync {
    async fn commit_alerts(
        &self,
        inner: &SqliteStore,
        changes: &[AlertChange],
        messages: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        inner.commit_alerts(changes, messages, now).await
    }
    async fn inventory(
        &self,
        inner: &SqliteStore,
        ids: &[String],
    ) -> Result<HashMap<String, InstanceInfo>> {
        inner.inventory(ids).await
    }
}

/// A real SQLite store with some calls taken over by `hooks`.
pub struct HookedStore<H> {
    pub inner: SqliteStore,
    pub hooks: H,
}

#[async_trait]
impl<H: StoreHooks> Store for HookedStore<H> {
    async fn commit_alerts(
        &self,
        changes: &[AlertChange],
        messages: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.hooks
            .commit_alerts(&self.inner, changes, messages, now)
            .await
    }
    async fn inventory(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>> {
        self.hooks.inventory(&self.inner, ids).await
    }

    async fn watermark(&self) -> Result<Option<DateTime<Utc>>> {
        self.inner.watermark().await
    }
    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        self.inner.record_run(run).await
    }
    async fn target_backlog(&self) -> Result<TargetBacklog> {
        self.inner.target_backlog().await
    }
    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        self.inner.analysed_ids(ids).await
    }
    async fn save_instances(&self, reports: &[InstanceReport]) -> Result<()> {
        self.inner.save_instances(reports).await
    }
    async fn save_pending(&self, t: &Termination, error: &str) -> Result<()> {
        self.inner.save_pending(t, error).await
    }
    async fn pending(&self) -> Result<Vec<Pending>> {
        self.inner.pending().await
    }
    async fn instance(&self, id: &str) -> Result<Option<InstanceReport>> {
        self.inner.instance(id).await
    }
    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>> {
        self.inner.instances_in(window).await
    }
    async fn facts_in(&self, window: TimeWindow) -> Result<Vec<InstanceFacts>> {
        self.inner.facts_in(window).await
    }
    async fn facts_fingerprint(&self, window: TimeWindow) -> Result<FactsFingerprint> {
        self.inner.facts_fingerprint(window).await
    }
    async fn facts_of(&self, ids: &[String]) -> Result<Vec<InstanceFacts>> {
        self.inner.facts_of(ids).await
    }
    async fn reports(&self, ids: &[String]) -> Result<Vec<InstanceReport>> {
        self.inner.reports(ids).await
    }
    async fn prune(
        &self,
        evidence_before: DateTime<Utc>,
        facts_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Pruned> {
        self.inner.prune(evidence_before, facts_before, limit).await
    }
    async fn replace_projections(&self, p: &[ProjectedDeath]) -> Result<()> {
        self.inner.replace_projections(p).await
    }
    async fn projections(&self) -> Result<Vec<ProjectedDeath>> {
        self.inner.projections().await
    }
    async fn input_stamps(&self, reader: &str) -> Result<Vec<InputStamp>> {
        self.inner.input_stamps(reader).await
    }
    async fn replace_input_stamps(&self, reader: &str, stamps: &[InputStamp]) -> Result<()> {
        self.inner.replace_input_stamps(reader, stamps).await
    }
    async fn attach_heap_diff(&self, d: &AttachedHeapDiff) -> Result<()> {
        self.inner.attach_heap_diff(d).await
    }
    async fn heap_diffs(&self) -> Result<Vec<AttachedHeapDiff>> {
        self.inner.heap_diffs().await
    }
    async fn claim_scan_slot(
        &self,
        slot: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner.claim_scan_slot(slot, owner, now).await
    }
    async fn save_inventory(&self, infos: &[InstanceInfo]) -> Result<()> {
        self.inner.save_inventory(infos).await
    }
    async fn save_findings(&self, findings: &[DeploymentFinding]) -> Result<()> {
        self.inner.save_findings(findings).await
    }
    async fn findings(&self) -> Result<Vec<DeploymentFinding>> {
        self.inner.findings().await
    }
    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        self.inner.alert_states().await
    }
    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>> {
        self.inner.claim_outbox(owner, now, lease_until).await
    }
    async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner.finish_outbox(id, owner, outcome, now).await
    }
    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox(limit).await
    }
    async fn outbox_counts(&self) -> Result<BTreeMap<String, u64>> {
        self.inner.outbox_counts().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
