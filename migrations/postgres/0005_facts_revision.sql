-- The compact rows' revision, as migrations/sqlite/0008: raised by every write of
-- instance_facts, never lowered; with a lookback's count and oldest and newest termination it
-- fingerprints the rows a judgement was made from (Store::facts_fingerprint).
-- `backfilled`: the backfill at open found nothing left to fill once (not looked for again).
CREATE TABLE facts_revision (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    revision   BIGINT NOT NULL,
    backfilled BOOLEAN NOT NULL
);
INSERT INTO facts_revision (id, revision, backfilled) VALUES (1, 0, FALSE);
