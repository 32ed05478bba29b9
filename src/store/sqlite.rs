//! SQLite implementation of [`Store`]: one file, created on first use, WAL journal, versioned
//! migrations embedded from `migrations/sqlite`. Its contracts are tested with the PostgreSQL
//! store's, in `tests/suite/store_contract.rs`. Times are stored as RFC 3339 UTC text with
//! fixed precision so that text order is time order.
//!
//! Length: one backend's implementation of every `Store` method, its SQL beside the Rust that
//! binds it; the methods mirror `postgres.rs` one for one (the shared row helpers are in
//! `mod.rs`), so the two files are read side by side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    codec, decode, decode_rows, encode, facts_enums, stamp_rows, stored_report, AlertChange,
    DeliveryOutcome, FactsFingerprint, OutboxEntry, OutboxMessage, Pending, Pruned, RunRecord,
    Store, TargetBacklog, BACKFILL_BATCH,
};
use crate::analysis::alerting::AlertState;
use crate::analysis::heap::AttachedHeapDiff;
use crate::error::{Error, Result};
use crate::model::{
    DeploymentFinding, InputStamp, InstanceFacts, InstanceInfo, InstanceReport, ProjectedDeath,
    Termination, TimeWindow,
};

/// How long a writer waits for another process holding the database lock.
const BUSY_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// SQLite allows 32766 bound parameters; stay well below for `IN (...)` lists.
const MAX_IN_LIST: usize = 500;
/// Page size of a new state file. Stored reports are ~1.3–1.5 KB each: 4 KiB pages hold two
/// with a third of the page left over; 8 KiB pages hold five (7 % smaller files on the
/// simulated fleet). An existing file keeps the size it was created with.
const PAGE_SIZE: u32 = 8192;
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

fn parse_ts(what: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Store(format!("corrupt {what} time `{s}`: {e}")))
}

const OUTBOX_COLUMNS: &str = "id, dedup_key, sink, deployment, kind, alert_json, status, attempts, next_attempt_at, lease_until, last_error, created_at, delivered_at";

fn outbox_entry(r: &sqlx::sqlite::SqliteRow) -> Result<OutboxEntry> {
    let delivered: Option<String> = r.try_get("delivered_at")?;
    let lease_until: Option<String> = r.try_get("lease_until")?;
    Ok(OutboxEntry {
        id: r.try_get("id")?,
        dedup_key: r.try_get("dedup_key")?,
        sink: r.try_get("sink")?,
        deployment: r.try_get("deployment")?,
        kind: r.try_get("kind")?,
        alert_json: r.try_get("alert_json")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
        next_attempt_at: parse_ts("outbox", &r.try_get::<String, _>("next_attempt_at")?)?,
        lease_until: lease_until.map(|l| parse_ts("outbox", &l)).transpose()?,
        last_error: r.try_get("last_error")?,
        created_at: parse_ts("outbox", &r.try_get::<String, _>("created_at")?)?,
        delivered_at: delivered.map(|d| parse_ts("outbox", &d)).transpose()?,
    })
}

/// `(?,?,?),(?,?,?)…` for `rows` rows of `cols` columns.
fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
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
            .page_size(PAGE_SIZE)
            // Statement journals in memory: a multi-row upsert inside a transaction journals
            // the pages it changes, and past 64 KiB SQLite spilled that to a file in /var/tmp —
            // two thirds of a full scan's page writes (`benches/cost.sh`, strace).
            .pragma("temp_store", "memory")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        MIGRATOR.run(&pool).await?;
        let store = SqliteStore { pool };
        store.backfill_facts().await?;
        Ok(store)
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

    /// Reports of rows selected with `instance_id, report_json, report_bin`.
    async fn decode_reports(
        &self,
        rows: Vec<sqlx::sqlite::SqliteRow>,
    ) -> Result<Vec<InstanceReport>> {
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("instance_id")?;
                let json: String = r.try_get("report_json")?;
                let bin: Option<Vec<u8>> = r.try_get("report_bin")?;
                stored_report(&id, Some(json.as_str()), bin.as_deref())
            })
            .collect()
    }

    /// Fills in the compact rows of reports stored before they existed (migration 0006), a
    /// batch at a time. A store written by this version has none to fill: once a search found
    /// nothing, it is marked done (migration 0008) and not searched again.
    async fn backfill_facts(&self) -> Result<()> {
        let done: i64 = sqlx::query_scalar("SELECT backfilled FROM facts_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        if done != 0 {
            return Ok(());
        }
        loop {
            let rows = sqlx::query(
                "SELECT instance_id, report_json, report_bin FROM instances i
                 WHERE NOT EXISTS (SELECT 1 FROM instance_facts f WHERE f.instance_id = i.instance_id)
                 LIMIT ?",
            )
            .bind(BACKFILL_BATCH as i64)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                sqlx::query("UPDATE facts_revision SET backfilled = 1 WHERE id = 1")
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
            let facts: Vec<InstanceFacts> = self
                .decode_reports(rows)
                .await?
                .iter()
                .map(InstanceFacts::of)
                .collect();
            let mut tx = self.pool.begin().await?;
            insert_facts(&mut tx, &facts).await?;
            tx.commit().await?;
        }
    }
}

/// Columns of `instance_facts`, in the order [`insert_facts`] binds them.
const FACTS_COLUMNS: &str = "instance_id, deployment, asg, terminated_at, cause, verdict, launch_time, first_sample_at, leak, growth_per_hour, final_peak, leak_basis_start, projected_exhaustion, memory_limit, memory_points, last_words_lines, deciding_signature, death_signatures";
/// Rows per facts INSERT (18 columns each, well under SQLite's bound-parameter limit).
const FACTS_PER_INSERT: usize = 100;

async fn insert_facts(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    facts: &[InstanceFacts],
) -> Result<()> {
    if !facts.is_empty() {
        sqlx::query("UPDATE facts_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
    }
    for chunk in facts.chunks(FACTS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO instance_facts ({FACTS_COLUMNS}) VALUES {}
             ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment, asg = excluded.asg,
               terminated_at = excluded.terminated_at, cause = excluded.cause, verdict = excluded.verdict,
               launch_time = excluded.launch_time, first_sample_at = excluded.first_sample_at,
               leak = excluded.leak, growth_per_hour = excluded.growth_per_hour,
               final_peak = excluded.final_peak, leak_basis_start = excluded.leak_basis_start,
               projected_exhaustion = excluded.projected_exhaustion, memory_limit = excluded.memory_limit,
               memory_points = excluded.memory_points, last_words_lines = excluded.last_words_lines,
               deciding_signature = excluded.deciding_signature, death_signatures = excluded.death_signatures",
            placeholders(chunk.len(), 18)
        );
        let mut q = sqlx::query(&sql);
        for f in chunk {
            q = q
                .bind(&f.instance_id)
                .bind(&f.deployment)
                .bind(&f.asg)
                .bind(ts(f.terminated_at))
                .bind(f.cause.as_str())
                .bind(f.verdict.as_str())
                .bind(f.launch_time.map(ts))
                .bind(f.first_sample_at.map(ts))
                .bind(f.leak.map(|l| l.as_str()))
                .bind(f.growth_per_hour)
                .bind(f.final_peak)
                .bind(f.leak_basis_start.map(ts))
                .bind(f.projected_exhaustion.map(ts))
                .bind(f.memory_limit)
                .bind(f.memory_points as i64)
                .bind(f.last_words_lines as i64)
                .bind(&f.deciding_signature)
                .bind(encode(&f.death_signatures)?);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

fn facts_row(r: &sqlx::sqlite::SqliteRow) -> Result<InstanceFacts> {
    let id: String = r.try_get("instance_id")?;
    let time = |col: &str| -> Result<Option<DateTime<Utc>>> {
        r.try_get::<Option<String>, _>(col)?
            .map(|t| parse_ts("instance facts", &t))
            .transpose()
    };
    let leak: Option<String> = r.try_get("leak")?;
    let (cause, verdict, leak, death_signatures) = facts_enums(
        &id,
        &r.try_get::<String, _>("cause")?,
        &r.try_get::<String, _>("verdict")?,
        leak.as_deref(),
        &r.try_get::<String, _>("death_signatures")?,
    )?;
    Ok(InstanceFacts {
        deployment: r.try_get("deployment")?,
        asg: r.try_get("asg")?,
        terminated_at: parse_ts("instance facts", &r.try_get::<String, _>("terminated_at")?)?,
        cause,
        verdict,
        launch_time: time("launch_time")?,
        first_sample_at: time("first_sample_at")?,
        leak,
        growth_per_hour: r.try_get("growth_per_hour")?,
        final_peak: r.try_get("final_peak")?,
        leak_basis_start: time("leak_basis_start")?,
        projected_exhaustion: time("projected_exhaustion")?,
        memory_limit: r.try_get("memory_limit")?,
        memory_points: r.try_get::<i64, _>("memory_points")?.max(0) as usize,
        last_words_lines: r.try_get::<i64, _>("last_words_lines")?.max(0) as usize,
        deciding_signature: r.try_get("deciding_signature")?,
        death_signatures,
        instance_id: id,
    })
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
        sqlx::query("INSERT INTO runs (started_at, finished_at, window_start, window_end, complete, summary_json, target_backlog) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(ts(run.started_at))
            .bind(ts(run.finished_at))
            .bind(ts(run.window.start))
            .bind(ts(run.window.end))
            .bind(run.complete as i64)
            .bind(encode(&run.summary)?)
            .bind(encode(&run.target_backlog)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn target_backlog(&self) -> Result<TargetBacklog> {
        let row = sqlx::query("SELECT target_backlog FROM runs ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => decode(
                "run",
                "target_backlog",
                &r.try_get::<String, _>("target_backlog")?,
            ),
            None => Ok(TargetBacklog::new()),
        }
    }

    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "SELECT instance_id FROM instance_facts WHERE instance_id IN ({})",
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
            // The evidence goes compact in report_bin; report_json stays empty (NOT NULL).
            let sql = format!(
                "INSERT INTO instances (instance_id, deployment, asg, terminated_at, verdict, report_json, report_bin, updated_at)
                 VALUES {}
                 ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment, asg = excluded.asg,
                   terminated_at = excluded.terminated_at, verdict = excluded.verdict,
                   report_json = excluded.report_json, report_bin = excluded.report_bin,
                   updated_at = excluded.updated_at",
                placeholders(chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.instance_id)
                    .bind(&r.deployment)
                    .bind(&r.asg)
                    .bind(ts(r.terminated_at))
                    .bind(r.verdict.as_str())
                    .bind("")
                    .bind(codec::encode_report(r)?)
                    .bind(&now);
            }
            q.execute(&mut *tx).await?;
            let facts: Vec<InstanceFacts> = chunk.iter().map(InstanceFacts::of).collect();
            insert_facts(&mut tx, &facts).await?;
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
        let row = sqlx::query(
            "SELECT instance_id, report_json, report_bin FROM instances WHERE instance_id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(self.decode_reports(row.into_iter().collect()).await?.pop())
    }

    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>> {
        let rows = sqlx::query(
            "SELECT instance_id, report_json, report_bin FROM instances WHERE terminated_at >= ? AND terminated_at < ?
             ORDER BY terminated_at, instance_id",
        )
        .bind(ts(window.start))
        .bind(ts(window.end))
        .fetch_all(&self.pool)
        .await?;
        self.decode_reports(rows).await
    }

    async fn facts_in(&self, window: TimeWindow) -> Result<Vec<InstanceFacts>> {
        let sql = format!(
            "SELECT {FACTS_COLUMNS} FROM instance_facts WHERE terminated_at >= ? AND terminated_at < ?
             ORDER BY terminated_at, instance_id"
        );
        // Row by row: 100,000 rows are never held beside the facts made of them.
        let mut rows = sqlx::query(&sql)
            .bind(ts(window.start))
            .bind(ts(window.end))
            .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            out.push(facts_row(&row)?);
        }
        Ok(out)
    }

    async fn facts_fingerprint(&self, window: TimeWindow) -> Result<FactsFingerprint> {
        // One transaction: the count and the revision of the same state.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT count(*) AS n, min(terminated_at) AS oldest, max(terminated_at) AS newest
             FROM instance_facts WHERE terminated_at >= ? AND terminated_at < ?",
        )
        .bind(ts(window.start))
        .bind(ts(window.end))
        .fetch_one(&mut *tx)
        .await?;
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM facts_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let time = |col: &str| -> Result<Option<DateTime<Utc>>> {
            row.try_get::<Option<String>, _>(col)?
                .map(|t| parse_ts("instance facts", &t))
                .transpose()
        };
        Ok(FactsFingerprint {
            count: row.try_get::<i64, _>("n")? as u64,
            oldest: time("oldest")?,
            newest: time("newest")?,
            revision,
        })
    }

    async fn facts_of(&self, ids: &[String]) -> Result<Vec<InstanceFacts>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "SELECT {FACTS_COLUMNS} FROM instance_facts WHERE instance_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push(facts_row(&row)?);
            }
        }
        out.sort_by(|a, b| {
            (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id))
        });
        Ok(out)
    }

    async fn reports(&self, ids: &[String]) -> Result<Vec<InstanceReport>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_IN_LIST) {
            let sql = format!(
                "SELECT instance_id, report_json, report_bin FROM instances WHERE instance_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(self.decode_reports(q.fetch_all(&self.pool).await?).await?);
        }
        out.sort_by(|a, b| {
            (a.terminated_at, &a.instance_id).cmp(&(b.terminated_at, &b.instance_id))
        });
        Ok(out)
    }

    async fn prune(
        &self,
        evidence_before: DateTime<Utc>,
        facts_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Pruned> {
        let evidence = sqlx::query(
            "DELETE FROM instances WHERE instance_id IN (SELECT instance_id FROM instances
             WHERE terminated_at < ? ORDER BY terminated_at LIMIT ?)",
        )
        .bind(ts(evidence_before))
        .bind(limit as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let facts = sqlx::query(
            "DELETE FROM instance_facts WHERE instance_id IN (SELECT instance_id FROM instance_facts
             WHERE terminated_at < ? ORDER BY terminated_at LIMIT ?)",
        )
        .bind(ts(facts_before))
        .bind(limit as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Pruned { evidence, facts })
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
        decode_rows(&rows, "finding", "deployment", "finding_json")
    }

    async fn replace_projections(&self, projections: &[ProjectedDeath]) -> Result<()> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM projections")
            .execute(&mut *tx)
            .await?;
        for chunk in projections.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO projections (instance_id, deployment, expected, projection_json, updated_at) VALUES {}
                 ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment,
                   expected = excluded.expected, projection_json = excluded.projection_json,
                   updated_at = excluded.updated_at",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for p in chunk {
                q = q
                    .bind(&p.instance_id)
                    .bind(&p.deployment)
                    .bind(ts(p.expected))
                    .bind(encode(p)?)
                    .bind(&now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn projections(&self) -> Result<Vec<ProjectedDeath>> {
        let rows = sqlx::query(
            "SELECT instance_id, projection_json FROM projections ORDER BY expected, instance_id",
        )
        .fetch_all(&self.pool)
        .await?;
        decode_rows(&rows, "projection", "instance_id", "projection_json")
    }

    async fn input_stamps(&self, reader: &str) -> Result<Vec<InputStamp>> {
        let rows = sqlx::query(
            "SELECT path, stamp, proved FROM input_stamps WHERE reader = ? ORDER BY path",
        )
        .bind(reader)
        .fetch_all(&self.pool)
        .await?;
        stamp_rows(&rows)
    }

    async fn replace_input_stamps(&self, reader: &str, stamps: &[InputStamp]) -> Result<()> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM input_stamps WHERE reader = ?")
            .bind(reader)
            .execute(&mut *tx)
            .await?;
        for chunk in stamps.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO input_stamps (reader, path, stamp, proved, recorded_at) VALUES {}
                 ON CONFLICT (reader, path) DO UPDATE SET stamp = excluded.stamp,
                   proved = excluded.proved, recorded_at = excluded.recorded_at",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for s in chunk {
                q = q
                    .bind(reader)
                    .bind(&s.path)
                    .bind(&s.stamp)
                    .bind(encode(&s.proved)?)
                    .bind(&now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn attach_heap_diff(&self, diff: &AttachedHeapDiff) -> Result<()> {
        sqlx::query("INSERT INTO heap_diffs (deployment, attached_at, diff_json) VALUES (?, ?, ?)")
            .bind(&diff.deployment)
            .bind(ts(diff.attached_at))
            .bind(encode(diff)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn heap_diffs(&self) -> Result<Vec<AttachedHeapDiff>> {
        // The latest per deployment: the highest id among those with the latest time.
        let rows = sqlx::query(
            "SELECT h.deployment, h.diff_json FROM heap_diffs h
             WHERE h.id = (SELECT id FROM heap_diffs x WHERE x.deployment = h.deployment
                           ORDER BY attached_at DESC, id DESC LIMIT 1)
             ORDER BY h.deployment",
        )
        .fetch_all(&self.pool)
        .await?;
        decode_rows(&rows, "heap diff", "deployment", "diff_json")
    }

    async fn claim_scan_slot(
        &self,
        slot: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO scan_slots (slot, owner, claimed_at) VALUES (?, ?, ?) ON CONFLICT (slot) DO NOTHING",
        )
        .bind(ts(slot))
        .bind(owner)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        let rows = sqlx::query(
            "SELECT deployment, firing, episode, last_sent_at, version FROM alert_state ORDER BY deployment",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let deployment: String = r.try_get("deployment")?;
                let firing: Option<String> = r.try_get("firing")?;
                Ok(AlertState {
                    firing: super::parse_firing(&deployment, firing)?,
                    episode: r.try_get::<i64, _>("episode")?.max(0) as u32,
                    last_sent_at: parse_ts(
                        "alert state",
                        &r.try_get::<String, _>("last_sent_at")?,
                    )?,
                    version: r.try_get("version")?,
                    deployment,
                })
            })
            .collect()
    }

    async fn commit_alerts(
        &self,
        changes: &[AlertChange],
        messages: &[OutboxMessage],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for c in changes {
            let s = &c.state;
            let firing = s.firing.map(|v| v.as_str().to_string());
            let done = match c.expected_version {
                None => sqlx::query(
                    "INSERT INTO alert_state (deployment, firing, episode, last_sent_at, version) VALUES (?, ?, ?, ?, ?) ON CONFLICT (deployment) DO NOTHING",
                )
                .bind(&s.deployment)
                .bind(&firing)
                .bind(s.episode as i64)
                .bind(ts(s.last_sent_at))
                .bind(s.version)
                .execute(&mut *tx)
                .await?,
                Some(v) => sqlx::query(
                    "UPDATE alert_state SET firing = ?, episode = ?, last_sent_at = ?, version = ? WHERE deployment = ? AND version = ?",
                )
                .bind(&firing)
                .bind(s.episode as i64)
                .bind(ts(s.last_sent_at))
                .bind(s.version)
                .bind(&s.deployment)
                .bind(v)
                .execute(&mut *tx)
                .await?,
            };
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for m in messages {
            sqlx::query(
                "INSERT INTO outbox (dedup_key, sink, deployment, kind, alert_json, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key, sink) DO NOTHING",
            )
            .bind(&m.dedup_key)
            .bind(&m.sink)
            .bind(&m.deployment)
            .bind(&m.kind)
            .bind(&m.alert_json)
            .bind(ts(now))
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>> {
        let sql = format!(
            "UPDATE outbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? \
             AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT 1) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(ts(lease_until))
            .bind(ts(now))
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(outbox_entry).transpose()
    }

    async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (status, next, error, delivered) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", now, None, Some(ts(now))),
            DeliveryOutcome::Retry { at, error } => ("pending", *at, Some(error.as_str()), None),
            DeliveryOutcome::Failed { error } => ("failed", now, Some(error.as_str()), None),
        };
        let done = sqlx::query(
            "UPDATE outbox SET status = ?, next_attempt_at = ?, last_error = COALESCE(?, last_error), delivered_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
        )
        .bind(status)
        .bind(ts(next))
        .bind(error)
        .bind(delivered)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn close(&self) -> Result<()> {
        // The WAL checkpointed into the database file, then every connection closed (the
        // last one removes the WAL): a finished scan leaves one file behind.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        self.pool.close().await;
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<BTreeMap<String, u64>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(
                r.try_get("status")?,
                r.try_get::<i64, _>("n")?.max(0) as u64,
            );
        }
        Ok(out)
    }
}
