-- epitaph state on PostgreSQL: the same tables and contracts as migrations/sqlite (0001–0004
-- there), for several replicas on one database. Times are timestamptz. Records are json beside
-- the columns queries need — json, not jsonb: it keeps the text as written and accepts the
-- `\u0000` escape a log line can carry, which jsonb rejects.

CREATE TABLE runs (
    id              BIGSERIAL PRIMARY KEY,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ NOT NULL,
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    -- Every input was read: only complete runs advance the watermark.
    complete        BOOLEAN NOT NULL,
    summary_json    JSON NOT NULL
);
CREATE INDEX runs_complete_window_end ON runs (window_end) WHERE complete;

CREATE TABLE instances (
    instance_id     TEXT PRIMARY KEY,
    deployment      TEXT NOT NULL,
    asg             TEXT NOT NULL,
    terminated_at   TIMESTAMPTZ NOT NULL,
    verdict         TEXT NOT NULL,
    report_json     JSON NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX instances_terminated_at ON instances (terminated_at);
CREATE INDEX instances_deployment ON instances (deployment, terminated_at);

-- Terminations whose fetch failed: retried on the next run until they succeed.
CREATE TABLE pending (
    instance_id       TEXT PRIMARY KEY,
    termination_json  JSON NOT NULL,
    attempts          INTEGER NOT NULL,
    last_error        TEXT NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE inventory (
    instance_id     TEXT PRIMARY KEY,
    info_json       JSON NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE findings (
    deployment      TEXT PRIMARY KEY,
    verdict         TEXT NOT NULL,
    finding_json    JSON NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- Alerting: what was last announced per deployment (optimistic concurrency on `version`), and
-- the outbox, unique per (dedup_key, sink) so that replicas cannot enqueue a message twice.
CREATE TABLE alert_state (
    deployment   TEXT PRIMARY KEY,
    firing       TEXT,              -- the verdict announced, NULL once resolved
    episode      INTEGER NOT NULL,
    last_sent_at TIMESTAMPTZ NOT NULL,
    version      BIGINT NOT NULL
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    dedup_key       TEXT NOT NULL,
    sink            TEXT NOT NULL,
    deployment      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    alert_json      TEXT NOT NULL,   -- rendered per sink at delivery, kept byte for byte
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    UNIQUE (dedup_key, sink)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Early warning: the latest projections, replaced as a whole by each scan.
CREATE TABLE projections (
    instance_id     TEXT PRIMARY KEY,
    deployment      TEXT NOT NULL,
    expected        TIMESTAMPTZ NOT NULL,
    projection_json JSON NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- Heap-snapshot diffs attached to a deployment; the latest one is shown.
CREATE TABLE heap_diffs (
    id          BIGSERIAL PRIMARY KEY,
    deployment  TEXT NOT NULL,
    attached_at TIMESTAMPTZ NOT NULL,
    diff_json   JSON NOT NULL
);
CREATE INDEX heap_diffs_by_deployment ON heap_diffs (deployment, attached_at);

-- Scheduled scans: one row per schedule slot, taken by the first replica to claim it; the
-- others skip that slot. A replica that dies mid-scan leaves its slot taken and the watermark
-- where it was: the next slot's scan covers the window again.
CREATE TABLE scan_slots (
    slot        TIMESTAMPTZ PRIMARY KEY,
    owner       TEXT NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL
);
