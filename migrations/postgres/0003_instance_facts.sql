-- Compact per-instance rows, as migrations/sqlite/0006: what judging needs of each analysed
-- instance without its evidence. Written with the report by save_instances; rows of reports
-- stored before this migration are filled in when the store opens (PgStore::open).
CREATE TABLE instance_facts (
    instance_id          TEXT PRIMARY KEY,
    deployment           TEXT NOT NULL,
    asg                  TEXT NOT NULL,
    terminated_at        TIMESTAMPTZ NOT NULL,
    cause                TEXT NOT NULL,
    verdict              TEXT NOT NULL,
    launch_time          TIMESTAMPTZ,
    first_sample_at      TIMESTAMPTZ,
    leak                 TEXT,
    growth_per_hour      DOUBLE PRECISION,
    final_peak           DOUBLE PRECISION,
    leak_basis_start     TIMESTAMPTZ,
    projected_exhaustion TIMESTAMPTZ,
    memory_limit         DOUBLE PRECISION,
    memory_points        INTEGER NOT NULL,
    last_words_lines     INTEGER NOT NULL,
    deciding_signature   TEXT,
    death_signatures     TEXT NOT NULL    -- JSON array of signature ids
);
CREATE INDEX instance_facts_terminated_at ON instance_facts (terminated_at);

-- The evidence, compact (store/codec.rs): rows written from now on carry report_bin and no
-- report_json; older rows keep their JSON and are read as before.
ALTER TABLE instances ALTER COLUMN report_json DROP NOT NULL;
ALTER TABLE instances ADD COLUMN report_bin BYTEA;
DROP INDEX instances_deployment;
