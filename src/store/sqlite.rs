//! SQLite implementation of [`Store`]: one file, created on first use, WAL journal, versioned
//! migrations embedded from `migrations/sqlite`. Times are stored as RFC 3339 UTC text with
//! fixed precision so that text order is time order.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{Pending, RunRecord, Store};
use crate::error::{Error, Result};
use crate::model::{DeploymentFinding, InstanceInfo, InstanceReport, Termination, TimeWindow};

/// How long a writer waits for another process holding the database lock.
const BUSY_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// SQLite allows 32766 bound parameters; stay well below for `IN (...)` lists.
const MAX_IN_LIST: usize = 500;
/// Rows per multi-row INSERT: one statement per chunk instead of one per row, because every
/// statement is a round trip to sqlx's SQLite worker thread.
const ROWS_PER_INSERT: usize = 100;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, json: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| Error::Store(format!("corrupt {what} record `{key}`: {e}")))
}

/// `(?,?,?),(?,?,?)…` for `rows` rows of `cols` columns.
fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Store(format!("cannot encode record: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// An in-memory store (tests, one-off queries).
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn reports(&self, rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<InstanceReport>> {
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("instance_id")?;
                let json: String = r.try_get("report_json")?;
                decode("instance", &id, &json)
            })
            .collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn watermark(&self) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT MAX(window_end) AS w FROM runs WHERE complete = 1")
            .fetch_one(&self.pool)
            .await?;
        let w: Option<String> = row.try_get("w")?;
        w.map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Error::Store(format!("corrupt run watermark `{s}`: {e}")))
        })
        .transpose()
    }

    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        sqlx::query("INSERT INTO runs (started_at, finished_at, window_start, window_end, complete, summary_json) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(ts(run.started_at))
            .bind(ts(run.finished_at))
            .bind(ts(run.window.start))
            .bind(ts(run.window.end))
            .bind(run.complete as i64)
            .bind(encode(&run.summary)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "SELECT instance_id FROM instances WHERE instance_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.insert(row.try_get::<String, _>("instance_id")?);
            }
        }
        Ok(out)
    }

    async fn save_instances(&self, reports: &[InstanceReport]) -> Result<()> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        for chunk in reports.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO instances (instance_id, deployment, asg, terminated_at, verdict, report_json, updated_at)
                 VALUES {}
                 ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment, asg = excluded.asg,
                   terminated_at = excluded.terminated_at, verdict = excluded.verdict,
                   report_json = excluded.report_json, updated_at = excluded.updated_at",
                placeholders(chunk.len(), 7)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.instance_id)
                    .bind(&r.deployment)
                    .bind(&r.asg)
                    .bind(ts(r.terminated_at))
                    .bind(r.verdict.as_str())
                    .bind(encode(r)?)
                    .bind(&now);
            }
            q.execute(&mut *tx).await?;
            let sql = format!(
                "DELETE FROM pending WHERE instance_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(&r.instance_id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn save_pending(&self, t: &Termination, error: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pending (instance_id, termination_json, attempts, last_error, updated_at) VALUES (?, ?, 1, ?, ?)
             ON CONFLICT (instance_id) DO UPDATE SET attempts = pending.attempts + 1,
               last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(&t.instance_id)
        .bind(encode(t)?)
        .bind(error)
        .bind(ts(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        let rows = sqlx::query("SELECT instance_id, termination_json, attempts, last_error FROM pending ORDER BY instance_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("instance_id")?;
                let json: String = r.try_get("termination_json")?;
                Ok(Pending {
                    termination: decode("pending", &id, &json)?,
                    attempts: r.try_get::<i64, _>("attempts")? as u32,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceReport>> {
        let row =
            sqlx::query("SELECT instance_id, report_json FROM instances WHERE instance_id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(self.reports(row.into_iter().collect()).await?.pop())
    }

    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>> {
        let rows = sqlx::query(
            "SELECT instance_id, report_json FROM instances WHERE terminated_at >= ? AND terminated_at < ?
             ORDER BY terminated_at, instance_id",
        )
        .bind(ts(window.start))
        .bind(ts(window.end))
        .fetch_all(&self.pool)
        .await?;
        self.reports(rows).await
    }

    async fn save_inventory(&self, infos: &[InstanceInfo]) -> Result<()> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        for chunk in infos.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO inventory (instance_id, info_json, updated_at) VALUES {}
                 ON CONFLICT (instance_id) DO UPDATE SET info_json = excluded.info_json, updated_at = excluded.updated_at",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for i in chunk {
                q = q.bind(&i.instance_id).bind(encode(i)?).bind(&now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn inventory(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "SELECT instance_id, info_json FROM inventory WHERE instance_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let id: String = row.try_get("instance_id")?;
                let json: String = row.try_get("info_json")?;
                let info = decode("inventory", &id, &json)?;
                out.insert(id, info);
            }
        }
        Ok(out)
    }

    async fn save_findings(&self, findings: &[DeploymentFinding]) -> Result<()> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        for f in findings {
            sqlx::query(
                "INSERT INTO findings (deployment, verdict, finding_json, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (deployment) DO UPDATE SET verdict = excluded.verdict,
                   finding_json = excluded.finding_json, updated_at = excluded.updated_at",
            )
            .bind(&f.deployment)
            .bind(f.verdict.as_str())
            .bind(encode(f)?)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn findings(&self) -> Result<Vec<DeploymentFinding>> {
        let rows = sqlx::query("SELECT deployment, finding_json FROM findings ORDER BY deployment")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let d: String = r.try_get("deployment")?;
                let json: String = r.try_get("finding_json")?;
                decode("finding", &d, &json)
            })
            .collect()
    }
}
