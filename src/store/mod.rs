//! The state store: what epitaph remembers between runs (analysed instances, pending retries,
//! inventory, deployment findings, run watermarks). SQLite is the embedded default; the
//! [`Store`] trait is what a Postgres implementation fills for many replicas.

pub mod sqlite;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{DeploymentFinding, InstanceInfo, InstanceReport, Termination, TimeWindow};

pub use sqlite::SqliteStore;

/// One finished scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub window: TimeWindow,
    /// Every input was read; only complete runs advance the watermark.
    pub complete: bool,
    pub summary: serde_json::Value,
}

/// A termination waiting for a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub termination: Termination,
    pub attempts: u32,
    pub last_error: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// End of the last complete run's window: where the next run without `--since` starts.
    async fn watermark(&self) -> Result<Option<DateTime<Utc>>>;
    async fn record_run(&self, run: &RunRecord) -> Result<()>;
    /// Which of `ids` already have an analysed report.
    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>>;
    /// Saves reports (replacing earlier ones) and clears their pending entries, atomically.
    async fn save_instances(&self, reports: &[InstanceReport]) -> Result<()>;
    /// Records a failed fetch: the termination is retried on the next run.
    async fn save_pending(&self, termination: &Termination, error: &str) -> Result<()>;
    async fn pending(&self) -> Result<Vec<Pending>>;
    async fn instance(&self, id: &str) -> Result<Option<InstanceReport>>;
    /// Reports of instances terminated in the window, oldest first.
    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>>;
    async fn save_inventory(&self, infos: &[InstanceInfo]) -> Result<()>;
    async fn inventory(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>>;
    async fn save_findings(&self, findings: &[DeploymentFinding]) -> Result<()>;
    async fn findings(&self) -> Result<Vec<DeploymentFinding>>;
}
