//! PostgreSQL implementation of [`Store`], for several `serve` replicas on one database
//! (`state.url = "postgres://…"`). The same contracts as [`super::SqliteStore`]: versioned
//! alert commits (a stale writer writes nothing), outbox messages unique per (dedup key, sink),
//! outbox leases (`FOR UPDATE SKIP LOCKED`: two claimers never take one message), and one
//! scheduled scan per slot. Migrations are embedded from `migrations/postgres` and applied
//! under sqlx's advisory lock, so replicas starting together migrate once.
//!
//! Length: one backend's implementation of every `Store` method, its SQL beside the Rust that
//! binds it; the methods mirror `sqlite.rs` one for one (the shared row helpers are in
//! `mod.rs`), so the two files are read side by side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

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

/// Connections per process: a scan's batched writes, the API's reads and the deliverer.
const MAX_CONNECTIONS: u32 = 8;
/// How long opening the store (and each later checkout) waits for a connection.
const ACQUIRE_TIMEOUT: StdDuration = StdDuration::from_secs(30);
/// Rows per `UNNEST` insert: one statement per chunk, arrays as parameters.
const ROWS_PER_INSERT: usize = 1000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

const OUTBOX_COLUMNS: &str = "id, dedup_key, sink, deployment, kind, alert_json, status, attempts, next_attempt_at, lease_until, last_error, created_at, delivered_at";

fn outbox_entry(r: &PgRow) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: r.try_get("id")?,
        dedup_key: r.try_get("dedup_key")?,
        sink: r.try_get("sink")?,
        deployment: r.try_get("deployment")?,
        kind: r.try_get("kind")?,
        alert_json: r.try_get("alert_json")?,
        status: r.try_get("status")?,
        attempts: r.try_get::<i32, _>("attempts")?.max(0) as u32,
        next_attempt_at: r.try_get("next_attempt_at")?,
        lease_until: r.try_get("lease_until")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

/// PostgreSQL's text types cannot hold a NUL byte; an error message quoting a log line can.
/// It is kept as U+FFFD (records are JSON, where it is escaped, and keep it).
fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

/// The URL without its password, for errors and logs.
pub fn redacted_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=…`) and applies
    /// pending migrations. Errors name the URL without its password.
    pub async fn open(url: &str) -> Result<Self> {
        let shown = redacted_url(url);
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e| Error::Store(format!("state.url `{shown}`: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.application_name("epitaph"))
            .await
            .map_err(|e| Error::Store(format!("state.url `{shown}`: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::Store(format!("state.url `{shown}`: migration: {e}")))?;
        let store = PgStore { pool };
        store.backfill_facts().await?;
        Ok(store)
    }

    /// Fills in the compact rows of reports stored before they existed (migration 0003), a
    /// batch at a time; replicas opening together may both fill a row (the same values).
    async fn backfill_facts(&self) -> Result<()> {
        let done: bool = sqlx::query_scalar("SELECT backfilled FROM facts_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        if done {
            return Ok(());
        }
        loop {
            let rows = sqlx::query(
                "SELECT instance_id, report_json::text AS report_json, report_bin FROM instances i
                 WHERE NOT EXISTS (SELECT 1 FROM instance_facts f WHERE f.instance_id = i.instance_id)
                 LIMIT $1",
            )
            .bind(BACKFILL_BATCH as i64)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                sqlx::query("UPDATE facts_revision SET backfilled = TRUE WHERE id = 1")
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
            let facts: Vec<InstanceFacts> = decode_reports(&rows)?
                .iter()
                .map(InstanceFacts::of)
                .collect();
            let mut tx = self.pool.begin().await?;
            insert_facts(&mut tx, &facts).await?;
            tx.commit().await?;
        }
    }
}

/// Reports of rows selected with `instance_id, report_json::text AS report_json, report_bin`.
fn decode_reports(rows: &[PgRow]) -> Result<Vec<InstanceReport>> {
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("instance_id")?;
            let json: Option<String> = r.try_get("report_json")?;
            let bin: Option<Vec<u8>> = r.try_get("report_bin")?;
            stored_report(&id, json.as_deref(), bin.as_deref())
        })
        .collect()
}

/// Columns of `instance_facts`, in the order [`insert_facts`] binds them.
const FACTS_COLUMNS: &str = "instance_id, deployment, asg, terminated_at, cause, verdict, launch_time, first_sample_at, leak, growth_per_hour, final_peak, leak_basis_start, projected_exhaustion, memory_limit, memory_points, last_words_lines, deciding_signature, death_signatures";

async fn insert_facts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    facts: &[InstanceFacts],
) -> Result<()> {
    if !facts.is_empty() {
        sqlx::query("UPDATE facts_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
    }
    for chunk in facts.chunks(ROWS_PER_INSERT) {
        let col = |f: &dyn Fn(&InstanceFacts) -> Option<String>| -> Vec<Option<String>> {
            chunk.iter().map(f).collect()
        };
        let time =
            |f: &dyn Fn(&InstanceFacts) -> Option<DateTime<Utc>>| -> Vec<Option<DateTime<Utc>>> {
                chunk.iter().map(f).collect()
            };
        let num = |f: &dyn Fn(&InstanceFacts) -> Option<f64>| -> Vec<Option<f64>> {
            chunk.iter().map(f).collect()
        };
        let signatures = chunk
            .iter()
            .map(|f| encode(&f.death_signatures))
            .collect::<Result<Vec<String>>>()?;
        sqlx::query(&format!(
            "INSERT INTO instance_facts ({FACTS_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
               $7::timestamptz[], $8::timestamptz[], $9::text[], $10::float8[], $11::float8[],
               $12::timestamptz[], $13::timestamptz[], $14::float8[], $15::int4[], $16::int4[], $17::text[], $18::text[])
             ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment, asg = excluded.asg,
               terminated_at = excluded.terminated_at, cause = excluded.cause, verdict = excluded.verdict,
               launch_time = excluded.launch_time, first_sample_at = excluded.first_sample_at,
               leak = excluded.leak, growth_per_hour = excluded.growth_per_hour,
               final_peak = excluded.final_peak, leak_basis_start = excluded.leak_basis_start,
               projected_exhaustion = excluded.projected_exhaustion, memory_limit = excluded.memory_limit,
               memory_points = excluded.memory_points, last_words_lines = excluded.last_words_lines,
               deciding_signature = excluded.deciding_signature, death_signatures = excluded.death_signatures"
        ))
        .bind(col(&|f| Some(f.instance_id.clone())))
        .bind(col(&|f| Some(f.deployment.clone())))
        .bind(col(&|f| Some(f.asg.clone())))
        .bind(chunk.iter().map(|f| f.terminated_at).collect::<Vec<_>>())
        .bind(col(&|f| Some(f.cause.as_str().to_string())))
        .bind(col(&|f| Some(f.verdict.as_str().to_string())))
        .bind(time(&|f| f.launch_time))
        .bind(time(&|f| f.first_sample_at))
        .bind(col(&|f| f.leak.map(|l| l.as_str().to_string())))
        .bind(num(&|f| f.growth_per_hour))
        .bind(num(&|f| f.final_peak))
        .bind(time(&|f| f.leak_basis_start))
        .bind(time(&|f| f.projected_exhaustion))
        .bind(num(&|f| f.memory_limit))
        .bind(chunk.iter().map(|f| f.memory_points.min(i32::MAX as usize) as i32).collect::<Vec<_>>())
        .bind(chunk.iter().map(|f| f.last_words_lines.min(i32::MAX as usize) as i32).collect::<Vec<_>>())
        .bind(col(&|f| f.deciding_signature.clone()))
        .bind(&signatures)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn facts_row(r: &PgRow) -> Result<InstanceFacts> {
    let id: String = r.try_get("instance_id")?;
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
        terminated_at: r.try_get("terminated_at")?,
        cause,
        verdict,
        launch_time: r.try_get("launch_time")?,
        first_sample_at: r.try_get("first_sample_at")?,
        leak,
        growth_per_hour: r.try_get("growth_per_hour")?,
        final_peak: r.try_get("final_peak")?,
        leak_basis_start: r.try_get("leak_basis_start")?,
        projected_exhaustion: r.try_get("projected_exhaustion")?,
        memory_limit: r.try_get("memory_limit")?,
        memory_points: r.try_get::<i32, _>("memory_points")?.max(0) as usize,
        last_words_lines: r.try_get::<i32, _>("last_words_lines")?.max(0) as usize,
        deciding_signature: r.try_get("deciding_signature")?,
        death_signatures,
        instance_id: id,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn watermark(&self) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT MAX(window_end) AS w FROM runs WHERE complete")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("w")?)
    }

    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        sqlx::query("INSERT INTO runs (started_at, finished_at, window_start, window_end, complete, summary_json, target_backlog) VALUES ($1, $2, $3, $4, $5, $6::json, $7::json)")
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(run.window.start)
            .bind(run.window.end)
            .bind(run.complete)
            .bind(encode(&run.summary)?)
            .bind(encode(&run.target_backlog)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn target_backlog(&self) -> Result<TargetBacklog> {
        let row =
            sqlx::query("SELECT target_backlog::text AS b FROM runs ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(r) => decode("run", "target_backlog", &r.try_get::<String, _>("b")?),
            None => Ok(TargetBacklog::new()),
        }
    }

    async fn analysed_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let rows =
            sqlx::query("SELECT instance_id FROM instance_facts WHERE instance_id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("instance_id")?))
            .collect()
    }

    async fn save_instances(&self, reports: &[InstanceReport]) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        for chunk in reports.chunks(ROWS_PER_INSERT) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.instance_id.as_str()).collect();
            let deployments: Vec<&str> = chunk.iter().map(|r| r.deployment.as_str()).collect();
            let asgs: Vec<&str> = chunk.iter().map(|r| r.asg.as_str()).collect();
            let terminated: Vec<DateTime<Utc>> = chunk.iter().map(|r| r.terminated_at).collect();
            let verdicts: Vec<&str> = chunk.iter().map(|r| r.verdict.as_str()).collect();
            let bins = chunk
                .iter()
                .map(codec::encode_report)
                .collect::<Result<Vec<Vec<u8>>>>()?;
            // The evidence goes compact in report_bin; report_json stays NULL.
            sqlx::query(
                "INSERT INTO instances (instance_id, deployment, asg, terminated_at, verdict, report_json, report_bin, updated_at)
                 SELECT i, d, a, t, v, NULL, b, $7 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::bytea[]) AS u(i, d, a, t, v, b)
                 ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment, asg = excluded.asg,
                   terminated_at = excluded.terminated_at, verdict = excluded.verdict,
                   report_json = excluded.report_json, report_bin = excluded.report_bin,
                   updated_at = excluded.updated_at",
            )
            .bind(&ids)
            .bind(&deployments)
            .bind(&asgs)
            .bind(&terminated)
            .bind(&verdicts)
            .bind(&bins)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let facts: Vec<InstanceFacts> = chunk.iter().map(InstanceFacts::of).collect();
            insert_facts(&mut tx, &facts).await?;
            sqlx::query("DELETE FROM pending WHERE instance_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn save_pending(&self, t: &Termination, error: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pending (instance_id, termination_json, attempts, last_error, updated_at) VALUES ($1, $2::json, 1, $3, $4)
             ON CONFLICT (instance_id) DO UPDATE SET attempts = pending.attempts + 1,
               last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(&t.instance_id)
        .bind(encode(t)?)
        .bind(pg_text(error).as_ref())
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        let rows = sqlx::query("SELECT instance_id, termination_json::text AS termination_json, attempts, last_error FROM pending ORDER BY instance_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("instance_id")?;
                let json: String = r.try_get("termination_json")?;
                Ok(Pending {
                    termination: decode("pending", &id, &json)?,
                    attempts: r.try_get::<i32, _>("attempts")?.max(0) as u32,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn instance(&self, id: &str) -> Result<Option<InstanceReport>> {
        let rows = sqlx::query(
            "SELECT instance_id, report_json::text AS report_json, report_bin FROM instances WHERE instance_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_reports(&rows)?.pop())
    }

    async fn instances_in(&self, window: TimeWindow) -> Result<Vec<InstanceReport>> {
        let rows = sqlx::query(
            "SELECT instance_id, report_json::text AS report_json, report_bin FROM instances
             WHERE terminated_at >= $1 AND terminated_at < $2 ORDER BY terminated_at, instance_id",
        )
        .bind(window.start)
        .bind(window.end)
        .fetch_all(&self.pool)
        .await?;
        decode_reports(&rows)
    }

    async fn facts_in(&self, window: TimeWindow) -> Result<Vec<InstanceFacts>> {
        let sql = format!(
            "SELECT {FACTS_COLUMNS} FROM instance_facts WHERE terminated_at >= $1 AND terminated_at < $2
             ORDER BY terminated_at, instance_id"
        );
        // Row by row: 100,000 rows are never held beside the facts made of them.
        let mut rows = sqlx::query(&sql)
            .bind(window.start)
            .bind(window.end)
            .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            out.push(facts_row(&row)?);
        }
        Ok(out)
    }

    async fn facts_fingerprint(&self, window: TimeWindow) -> Result<FactsFingerprint> {
        // One statement: the count and the revision of the same snapshot.
        let row = sqlx::query(
            "SELECT count(*) AS n, min(terminated_at) AS oldest, max(terminated_at) AS newest,
               (SELECT revision FROM facts_revision WHERE id = 1) AS revision
             FROM instance_facts WHERE terminated_at >= $1 AND terminated_at < $2",
        )
        .bind(window.start)
        .bind(window.end)
        .fetch_one(&self.pool)
        .await?;
        Ok(FactsFingerprint {
            count: row.try_get::<i64, _>("n")? as u64,
            oldest: row.try_get("oldest")?,
            newest: row.try_get("newest")?,
            revision: row.try_get("revision")?,
        })
    }

    async fn facts_of(&self, ids: &[String]) -> Result<Vec<InstanceFacts>> {
        let rows = sqlx::query(&format!(
            "SELECT {FACTS_COLUMNS} FROM instance_facts WHERE instance_id = ANY($1)
             ORDER BY terminated_at, instance_id"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(facts_row).collect()
    }

    async fn reports(&self, ids: &[String]) -> Result<Vec<InstanceReport>> {
        let rows = sqlx::query(
            "SELECT instance_id, report_json::text AS report_json, report_bin FROM instances
             WHERE instance_id = ANY($1) ORDER BY terminated_at, instance_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        decode_reports(&rows)
    }

    async fn prune(
        &self,
        evidence_before: DateTime<Utc>,
        facts_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Pruned> {
        let evidence = sqlx::query(
            "DELETE FROM instances WHERE instance_id IN (SELECT instance_id FROM instances
             WHERE terminated_at < $1 ORDER BY terminated_at LIMIT $2)",
        )
        .bind(evidence_before)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let facts = sqlx::query(
            "DELETE FROM instance_facts WHERE instance_id IN (SELECT instance_id FROM instance_facts
             WHERE terminated_at < $1 ORDER BY terminated_at LIMIT $2)",
        )
        .bind(facts_before)
        .bind(limit as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Pruned { evidence, facts })
    }

    async fn save_inventory(&self, infos: &[InstanceInfo]) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        for chunk in infos.chunks(ROWS_PER_INSERT) {
            let ids: Vec<&str> = chunk.iter().map(|i| i.instance_id.as_str()).collect();
            let json = chunk.iter().map(encode).collect::<Result<Vec<String>>>()?;
            sqlx::query(
                "INSERT INTO inventory (instance_id, info_json, updated_at)
                 SELECT i, j::json, $3 FROM UNNEST($1::text[], $2::text[]) AS u(i, j)
                 ON CONFLICT (instance_id) DO UPDATE SET info_json = excluded.info_json, updated_at = excluded.updated_at",
            )
            .bind(&ids)
            .bind(&json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn inventory(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>> {
        let rows = sqlx::query(
            "SELECT instance_id, info_json::text AS info_json FROM inventory WHERE instance_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let infos: Vec<InstanceInfo> = decode_rows(&rows, "inventory", "instance_id", "info_json")?;
        Ok(infos
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect())
    }

    async fn save_findings(&self, findings: &[DeploymentFinding]) -> Result<()> {
        let now = Utc::now();
        let deployments: Vec<&str> = findings.iter().map(|f| f.deployment.as_str()).collect();
        let verdicts: Vec<&str> = findings.iter().map(|f| f.verdict.as_str()).collect();
        let json = findings
            .iter()
            .map(encode)
            .collect::<Result<Vec<String>>>()?;
        sqlx::query(
            "INSERT INTO findings (deployment, verdict, finding_json, updated_at)
             SELECT d, v, j::json, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(d, v, j)
             ON CONFLICT (deployment) DO UPDATE SET verdict = excluded.verdict,
               finding_json = excluded.finding_json, updated_at = excluded.updated_at",
        )
        .bind(&deployments)
        .bind(&verdicts)
        .bind(&json)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn findings(&self) -> Result<Vec<DeploymentFinding>> {
        let rows = sqlx::query(
            "SELECT deployment, finding_json::text AS finding_json FROM findings ORDER BY deployment",
        )
        .fetch_all(&self.pool)
        .await?;
        decode_rows(&rows, "finding", "deployment", "finding_json")
    }

    async fn replace_projections(&self, projections: &[ProjectedDeath]) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM projections")
            .execute(&mut *tx)
            .await?;
        for chunk in projections.chunks(ROWS_PER_INSERT) {
            let ids: Vec<&str> = chunk.iter().map(|p| p.instance_id.as_str()).collect();
            let deployments: Vec<&str> = chunk.iter().map(|p| p.deployment.as_str()).collect();
            let expected: Vec<DateTime<Utc>> = chunk.iter().map(|p| p.expected).collect();
            let json = chunk.iter().map(encode).collect::<Result<Vec<String>>>()?;
            sqlx::query(
                "INSERT INTO projections (instance_id, deployment, expected, projection_json, updated_at)
                 SELECT i, d, e, j::json, $5 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(i, d, e, j)
                 ON CONFLICT (instance_id) DO UPDATE SET deployment = excluded.deployment,
                   expected = excluded.expected, projection_json = excluded.projection_json,
                   updated_at = excluded.updated_at",
            )
            .bind(&ids)
            .bind(&deployments)
            .bind(&expected)
            .bind(&json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn projections(&self) -> Result<Vec<ProjectedDeath>> {
        let rows = sqlx::query(
            "SELECT instance_id, projection_json::text AS projection_json FROM projections ORDER BY expected, instance_id",
        )
        .fetch_all(&self.pool)
        .await?;
        decode_rows(&rows, "projection", "instance_id", "projection_json")
    }

    async fn input_stamps(&self, reader: &str) -> Result<Vec<InputStamp>> {
        let rows = sqlx::query(
            "SELECT path, stamp, proved::text AS proved FROM input_stamps WHERE reader = $1 ORDER BY path",
        )
        .bind(reader)
        .fetch_all(&self.pool)
        .await?;
        stamp_rows(&rows)
    }

    async fn replace_input_stamps(&self, reader: &str, stamps: &[InputStamp]) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM input_stamps WHERE reader = $1")
            .bind(reader)
            .execute(&mut *tx)
            .await?;
        for chunk in stamps.chunks(ROWS_PER_INSERT) {
            let paths: Vec<&str> = chunk.iter().map(|s| s.path.as_str()).collect();
            let marks: Vec<&str> = chunk.iter().map(|s| s.stamp.as_str()).collect();
            let proved = chunk
                .iter()
                .map(|s| encode(&s.proved))
                .collect::<Result<Vec<String>>>()?;
            sqlx::query(
                "INSERT INTO input_stamps (reader, path, stamp, proved, recorded_at)
                 SELECT $1, p, s, j::json, $5 FROM UNNEST($2::text[], $3::text[], $4::text[]) AS u(p, s, j)
                 ON CONFLICT (reader, path) DO UPDATE SET stamp = excluded.stamp,
                   proved = excluded.proved, recorded_at = excluded.recorded_at",
            )
            .bind(reader)
            .bind(&paths)
            .bind(&marks)
            .bind(&proved)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn attach_heap_diff(&self, diff: &AttachedHeapDiff) -> Result<()> {
        sqlx::query(
            "INSERT INTO heap_diffs (deployment, attached_at, diff_json) VALUES ($1, $2, $3::json)",
        )
        .bind(&diff.deployment)
        .bind(diff.attached_at)
        .bind(encode(diff)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn heap_diffs(&self) -> Result<Vec<AttachedHeapDiff>> {
        // The latest per deployment: the highest id among those with the latest time.
        let rows = sqlx::query(
            "SELECT DISTINCT ON (deployment) deployment, diff_json::text AS diff_json FROM heap_diffs
             ORDER BY deployment, attached_at DESC, id DESC",
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
            "INSERT INTO scan_slots (slot, owner, claimed_at) VALUES ($1, $2, $3) ON CONFLICT (slot) DO NOTHING",
        )
        .bind(slot)
        .bind(owner)
        .bind(now)
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
                    episode: r.try_get::<i32, _>("episode")?.max(0) as u32,
                    last_sent_at: r.try_get("last_sent_at")?,
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
        // Read committed is enough: a concurrent writer's INSERT or UPDATE of the same row
        // makes this one wait, then find the row taken (or at another version) and touch
        // nothing — so the stale commit is rolled back whole.
        let mut tx = self.pool.begin().await?;
        for c in changes {
            let s = &c.state;
            let firing = s.firing.map(|v| v.as_str().to_string());
            let done = match c.expected_version {
                None => sqlx::query(
                    "INSERT INTO alert_state (deployment, firing, episode, last_sent_at, version) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (deployment) DO NOTHING",
                )
                .bind(&s.deployment)
                .bind(&firing)
                .bind(s.episode as i32)
                .bind(s.last_sent_at)
                .bind(s.version)
                .execute(&mut *tx)
                .await?,
                Some(v) => sqlx::query(
                    "UPDATE alert_state SET firing = $1, episode = $2, last_sent_at = $3, version = $4 WHERE deployment = $5 AND version = $6",
                )
                .bind(&firing)
                .bind(s.episode as i32)
                .bind(s.last_sent_at)
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
                "INSERT INTO outbox (dedup_key, sink, deployment, kind, alert_json, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (dedup_key, sink) DO NOTHING",
            )
            .bind(&m.dedup_key)
            .bind(&m.sink)
            .bind(&m.deployment)
            .bind(&m.kind)
            .bind(&m.alert_json)
            .bind(now)
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
        // SKIP LOCKED: a message another claimer is taking right now is passed over, not
        // waited for; the WHERE is checked again on the locked row.
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {OUTBOX_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
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
            DeliveryOutcome::Delivered => ("delivered", now, None, Some(now)),
            DeliveryOutcome::Retry { at, error } => ("pending", *at, Some(pg_text(error)), None),
            DeliveryOutcome::Failed { error } => ("failed", now, Some(pg_text(error)), None),
        };
        let done = sqlx::query(
            "UPDATE outbox SET status = $1, next_attempt_at = $2, last_error = COALESCE($3, last_error), delivered_at = $4, lease_owner = NULL, lease_until = NULL WHERE id = $5 AND lease_owner = $6",
        )
        .bind(status)
        .bind(next)
        .bind(error.as_deref())
        .bind(delivered)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(outbox_entry).collect()
    }

    async fn close(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        assert_eq!(
            redacted_url("postgres://epitaph:s3cr%40t@db.internal:5432/epitaph?sslmode=require"),
            "postgres://epitaph:[redacted]@db.internal:5432/epitaph?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgresql://db.internal/epitaph"),
            "postgresql://db.internal/epitaph"
        );
        assert_eq!(
            redacted_url("postgres://epitaph@db.internal/epitaph"),
            "postgres://epitaph@db.internal/epitaph"
        );
        assert_eq!(
            redacted_url("postgres://a:b@c@h/d"),
            "postgres://a:[redacted]@h/d"
        );
    }
}
