//! The state store: what epitaph remembers between runs (analysed instances, pending retries,
//! inventory, deployment findings, run watermarks, alert state and outbox, scan slots). SQLite
//! (`state.path`) is the embedded default; PostgreSQL (`state.url`) is for several replicas.
//! Both fill the one [`Store`] trait with the same contracts, checked by the same tests
//! (`tests/suite/store_contract.rs`).

pub mod codec;
pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::alerting::AlertState;
use crate::analysis::heap::AttachedHeapDiff;
use crate::error::Result;
use crate::model::{
    CauseCategory, DeploymentFinding, InputStamp, InstanceFacts, InstanceInfo, InstanceReport,
    InstanceVerdict, LeakVerdict, ProjectedDeath, Termination, TimeWindow,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store a config names: PostgreSQL when `state.url` is set, else the SQLite file
/// at `state.path`.
pub async fn open(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match cfg.state.url.as_ref().filter(|u| !u.is_empty()) {
        Some(url) => std::sync::Arc::new(PgStore::open(url.expose()).await?),
        None => std::sync::Arc::new(SqliteStore::open(&cfg.state_path()).await?),
    })
}

/// This process's name in leases and scan slots: host, process id and a random part (a
/// restarted process with the same pid is someone else).
pub fn process_owner() -> String {
    use rand::Rng;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    )
}

/// Where the state lives, for messages (a URL without its password, or the file).
pub fn describe(cfg: &crate::config::Config) -> String {
    match cfg.state.url.as_ref().filter(|u| !u.is_empty()) {
        Some(url) => postgres::redacted_url(url.expose()),
        None => cfg.state_path().display().to_string(),
    }
}

/// Reads a stored JSON record, naming it by `what` and its key when it is corrupt.
fn decode<T: serde::de::DeserializeOwned>(what: &str, key: &str, json: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| crate::error::Error::Store(format!("corrupt {what} record `{key}`: {e}")))
}

/// Decodes each row's JSON column (selected as text), naming the row by its key column in
/// errors. Any sqlx database.
fn decode_rows<R, T>(rows: &[R], what: &str, key: &str, json: &str) -> Result<Vec<T>>
where
    R: sqlx::Row,
    T: serde::de::DeserializeOwned,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .map(|r| {
            let k: String = r.try_get(key)?;
            let j: String = r.try_get(json)?;
            decode(what, &k, &j)
        })
        .collect()
}

/// A stored report: compact evidence (`report_bin`, [`codec`]) when the row has it, else the
/// JSON rows written before it.
fn stored_report(key: &str, json: Option<&str>, bin: Option<&[u8]>) -> Result<InstanceReport> {
    match (bin, json) {
        (Some(b), _) => codec::decode_report(key, b),
        (None, Some(j)) => decode("instance", key, j),
        (None, None) => Err(crate::error::Error::Store(format!(
            "corrupt instance record `{key}`: no report"
        ))),
    }
}

/// Reports whose compact rows the backfill at open reads per batch.
const BACKFILL_BATCH: usize = 500;

/// The text columns of a compact row read back into their types, naming the row when a
/// value is unknown.
fn facts_enums(
    key: &str,
    cause: &str,
    verdict: &str,
    leak: Option<&str>,
    death_signatures: &str,
) -> Result<(
    CauseCategory,
    InstanceVerdict,
    Option<LeakVerdict>,
    Vec<String>,
)> {
    let corrupt = |what: &str, v: &str| {
        crate::error::Error::Store(format!("corrupt instance facts `{key}`: {what} `{v}`"))
    };
    Ok((
        CauseCategory::parse(cause).ok_or_else(|| corrupt("cause", cause))?,
        InstanceVerdict::parse(verdict).ok_or_else(|| corrupt("verdict", verdict))?,
        leak.map(|l| LeakVerdict::parse(l).ok_or_else(|| corrupt("leak verdict", l)))
            .transpose()?,
        decode("instance facts", key, death_signatures)?,
    ))
}

/// What identifies the compact rows of a lookback ([`Store::facts_fingerprint`]): two reads
/// with the same fingerprint read the same rows. Rows are only added or re-written with a
/// higher `revision` (the store's facts revision then), or deleted (the count drops); rows
/// of a time range are the rows between its oldest and newest, so a lookback that moved
/// without a write has the same fingerprint only when it holds the same rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsFingerprint {
    pub count: u64,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    /// The store's facts revision: raised by every write of a compact row, never lowered.
    pub revision: i64,
}

/// What one call to [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Full reports (evidence) deleted.
    pub evidence: u64,
    /// Compact rows deleted.
    pub facts: u64,
}

/// Input stamps from rows of `path`, `stamp` and `proved` (JSON selected as text). Any sqlx
/// database.
fn stamp_rows<R>(rows: &[R]) -> Result<Vec<InputStamp>>
where
    R: sqlx::Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .map(|r| {
            let path: String = r.try_get("path")?;
            let proved: String = r.try_get("proved")?;
            Ok(InputStamp {
                proved: decode("input stamp", &path, &proved)?,
                stamp: r.try_get("stamp")?,
                path,
            })
        })
        .collect()
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| crate::error::Error::Store(format!("cannot encode record: {e}")))
}

/// The stored `firing` column as a verdict; an unknown one is a corrupt record.
fn parse_firing(
    deployment: &str,
    firing: Option<String>,
) -> Result<Option<crate::model::DeploymentVerdict>> {
    firing
        .map(|f| {
            crate::model::DeploymentVerdict::parse(&f).ok_or_else(|| {
                crate::error::Error::Store(format!(
                    "corrupt alert state `{deployment}`: verdict `{f}`"
                ))
            })
        })
        .transpose()
}

/// One finished scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub window: TimeWindow,
    /// Every input was read; only complete runs advance the watermark.
    pub complete: bool,
    pub summary: serde_json::Value,
    /// Targets this run could not read, by name: where their unread window starts (the next
    /// run reads them from there, the others from the watermark) and why.
    pub target_backlog: TargetBacklog,
}

/// Targets whose window is still to be read, by name (see [`RunRecord::target_backlog`]).
pub type TargetBacklog = std::collections::BTreeMap<String, UnreadTarget>;

/// A target a run could not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadTarget {
    /// Its terminations from here on may be missing.
    pub since: DateTime<Utc>,
    /// The last run's error.
    pub error: String,
}

/// A termination waiting for a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub termination: Termination,
    pub attempts: u32,
    pub last_error: String,
}

/// A message to enqueue in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub dedup_key: String,
    /// `slack` or `webhook`.
    pub sink: String,
    pub deployment: String,
    /// `firing`, `changed` or `resolved`.
    pub kind: String,
    /// The alert (`sinks::alert::Alert`) as JSON; rendered per sink at delivery.
    pub alert_json: String,
}

/// A message in the outbox with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub dedup_key: String,
    pub sink: String,
    pub deployment: String,
    pub kind: String,
    #[serde(skip)]
    pub alert_json: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts started so far (a claim counts as one).
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// Until when the sender that claimed it holds it (None: not claimed, or finished). Not
    /// shown by the API; tests wait on it instead of sleeping past a lease.
    #[serde(skip)]
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at this time.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Give up: the message stays in the outbox as `failed`.
    Failed {
        error: String,
    },
}

/// A state change for `commit_alerts`: the new state, valid only if the stored one is still at
/// `expected_version` (None: no state stored yet).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    pub expected_version: Option<i64>,
    pub state: AlertState,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// End of the last complete run's window: where the next run without `--since` starts.
    async fn watermark(&self) -> Result<Option<DateTime<Utc>>>;
    async fn record_run(&self, run: &RunRecord) -> Result<()>;
    /// The targets the latest run could not read ([`RunRecord::target_backlog`]); empty before
    /// the first run.
    async fn target_backlog(&self) -> Result<TargetBacklog>;
    /// Which of `ids` were analysed already (their compact row is kept, whether or not their
    /// evidence still is).
    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>>;
    /// Saves reports (replacing earlier ones) with their compact rows ([`InstanceFacts`]) and
    /// clears their pending entries, atomically.
    async fn save_instances(&self, reports: &[InstanceReport]) -> Result<()>;
    /// Records a failed fetch: the termination is retried on the next run.
    async fn save_pending(&self, termination: &Termination, error: &str) -> Result<()>;
    async fn pending(&self) -> Result<Vec<Pending>>;
    async fn instance(&self, id: &str) -> Result<Option<InstanceReport>>;
    /// Reports of instances terminated in the window, oldest first.
    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>>;
    /// The compact rows of instances terminated in the window, oldest first (then by id):
    /// what judging reads, without decoding any evidence.
    async fn facts_in(&self, window: TimeWindow) -> Result<Vec<InstanceFacts>>;
    /// The fingerprint of the compact rows of instances terminated in the window
    /// ([`FactsFingerprint`]), without reading them: what a kept judgement is checked against.
    async fn facts_fingerprint(&self, window: TimeWindow) -> Result<FactsFingerprint>;
    /// The compact rows of these instances (those analysed; any time), oldest first (then by
    /// id).
    async fn facts_of(&self, ids: &[String]) -> Result<Vec<InstanceFacts>>;
    /// The reports of these instances whose evidence is still kept, oldest first (then by
    /// id): what a report or an alert shows.
    async fn reports(&self, ids: &[String]) -> Result<Vec<InstanceReport>>;
    /// Retention: deletes the reports (evidence) of instances terminated before
    /// `evidence_before` and the compact rows of those terminated before `facts_before`,
    /// oldest first, at most `limit` of each per call (bounded work; the next call goes on).
    async fn prune(
        &self,
        evidence_before: DateTime<Utc>,
        facts_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Pruned>;
    async fn save_inventory(&self, infos: &[InstanceInfo]) -> Result<()>;
    async fn inventory(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>>;
    async fn save_findings(&self, findings: &[DeploymentFinding]) -> Result<()>;
    async fn findings(&self) -> Result<Vec<DeploymentFinding>>;
    /// Replaces the early-warning projections with this scan's set, atomically.
    async fn replace_projections(&self, projections: &[ProjectedDeath]) -> Result<()>;
    /// The current projections, soonest expected first.
    async fn projections(&self) -> Result<Vec<ProjectedDeath>>;
    /// The stamps `reader` (`activities`, `early_warning`) kept at its last read, by path
    /// order.
    async fn input_stamps(&self, reader: &str) -> Result<Vec<InputStamp>>;
    /// Replaces `reader`'s stamps with these, atomically (an input no longer listed is
    /// forgotten).
    async fn replace_input_stamps(&self, reader: &str, stamps: &[InputStamp]) -> Result<()>;
    /// Keeps a heap diff attached to a deployment (earlier ones stay; the latest is shown).
    async fn attach_heap_diff(&self, diff: &AttachedHeapDiff) -> Result<()>;
    /// The latest attached heap diff of each deployment.
    async fn heap_diffs(&self) -> Result<Vec<AttachedHeapDiff>>;
    /// Takes the scheduled scan at `slot` for `owner`; false when another replica (or an
    /// earlier run of this one) took it already. One scan per schedule slot, however many
    /// replicas share the state.
    async fn claim_scan_slot(
        &self,
        slot: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    async fn alert_states(&self) -> Result<Vec<AlertState>>;
    /// Applies alert-state changes and enqueues their messages in one transaction, only if
    /// every changed state is still at the version it was read at. Returns false, having
    /// written nothing, when another writer got there first (the caller re-reads and
    /// decides again). Messages whose (dedup_key, sink) exists already are skipped.
    async fn commit_alerts(
        &self,
        changes: &[AlertChange],
        messages: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Takes the oldest due pending message for `owner` until `lease_until` and counts the
    /// attempt. A message held by another owner is taken only after its lease ran out.
    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>>;
    /// Records an attempt's outcome; false when `owner` no longer held the message.
    async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// The newest outbox entries, newest first.
    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// Message count per status.
    async fn outbox_counts(&self) -> Result<BTreeMap<String, u64>>;
    /// Ends this process's use of the store: SQLite checkpoints its WAL into the database
    /// file (removed with the last connection), so a finished command leaves one file; the
    /// connections are closed. Nothing may use the store afterwards.
    async fn close(&self) -> Result<()>;
}
