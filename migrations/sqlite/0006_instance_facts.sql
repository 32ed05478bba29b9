-- Compact per-instance rows: what judging needs of each analysed instance (deployment
-- verdicts, alert planning, early-warning death levels), without its evidence. Written with
-- the report by save_instances; rows of reports stored before this migration are filled in
-- when the store opens (SqliteStore::open). Kept longer than the evidence (state.retention,
-- state.facts_retention). Without rowid: the primary key is the table.
CREATE TABLE instance_facts (
    instance_id          TEXT PRIMARY KEY,
    deployment           TEXT NOT NULL,
    asg                  TEXT NOT NULL,
    terminated_at        TEXT NOT NULL,   -- RFC 3339 UTC, fixed precision: text order is time order
    cause                TEXT NOT NULL,
    verdict              TEXT NOT NULL,
    launch_time          TEXT,
    first_sample_at      TEXT,
    leak                 TEXT,            -- leak verdict; NULL: no assessment
    growth_per_hour      REAL,
    final_peak           REAL,
    leak_basis_start     TEXT,
    projected_exhaustion TEXT,
    memory_limit         REAL,
    memory_points        INTEGER NOT NULL,
    last_words_lines     INTEGER NOT NULL,
    deciding_signature   TEXT,
    death_signatures     TEXT NOT NULL    -- JSON array of signature ids
) WITHOUT ROWID;
CREATE INDEX instance_facts_terminated_at ON instance_facts (terminated_at);

-- The evidence, compact: deflated JSON with the series packed (store/codec.rs). Rows written
-- from now on leave report_json empty; older rows keep their JSON and are read as before.
ALTER TABLE instances ADD COLUMN report_bin BLOB;
-- No query selects instances by deployment any more (judging reads instance_facts).
DROP INDEX instances_deployment;
