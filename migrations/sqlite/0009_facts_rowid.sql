-- instance_facts becomes a rowid table (issue 15, growth of the full scan). As a WITHOUT ROWID
-- table keyed by instance id, every row lived in a B-tree ordered by an id that arrives in no
-- order: each store transaction of a scan rewrote most of the table's leaf pages, so the WAL
-- written per new row grew with the rows already stored (benches/cost.sh: ~8x the page writes
-- for 3.3x the fleet). As a rowid table the rows append in the order they are written (by
-- termination time within a scan) and only the id index, ~1/5 of the bytes, takes the random
-- writes. Same columns, same constraints; the rows and the revision are kept.
CREATE TABLE instance_facts_rowid (
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
);
INSERT INTO instance_facts_rowid SELECT * FROM instance_facts ORDER BY terminated_at, instance_id;
DROP TABLE instance_facts;
ALTER TABLE instance_facts_rowid RENAME TO instance_facts;
-- The lookback reads rows in (terminated_at, instance_id) order: the index gives that order
-- without a sort (a rowid table's index would otherwise end in the rowid).
CREATE INDEX instance_facts_terminated_at ON instance_facts (terminated_at, instance_id);
