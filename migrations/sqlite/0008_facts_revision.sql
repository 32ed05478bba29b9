-- The compact rows' revision (issue 15): raised by every write of instance_facts (analysis,
-- re-analysis, the backfill at open), never lowered. With the count and the oldest and newest
-- termination of a lookback it fingerprints the rows a judgement was made from
-- (Store::facts_fingerprint): a scan whose lookback has the same fingerprint keeps the
-- previous judgement (pipeline/kept.rs). Deleting rows does not raise it (the count changes).
-- `backfilled`: the backfill at open (reports stored before 0006) found nothing left to fill
-- once; every report written since comes with its row, so it is not looked for again (the
-- search reads every report's key: ~0.1-0.7 s at 100,000 instances, each open).
CREATE TABLE facts_revision (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    revision   INTEGER NOT NULL,
    backfilled INTEGER NOT NULL
);
INSERT INTO facts_revision (id, revision, backfilled) VALUES (1, 0, 0);
