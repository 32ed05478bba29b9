-- Alerting: per-deployment alert state (what was last announced) and the outbox of messages
-- to deliver. A message is unique per (dedup_key, sink): replicas and reruns that compute the
-- same transition cannot enqueue it twice.
CREATE TABLE alert_state (
    deployment   TEXT PRIMARY KEY,
    firing       TEXT,              -- the verdict announced, NULL once resolved
    episode      INTEGER NOT NULL,
    last_sent_at TEXT NOT NULL,
    version      INTEGER NOT NULL   -- optimistic concurrency
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key       TEXT NOT NULL,
    sink            TEXT NOT NULL,
    deployment      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    alert_json      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (dedup_key, sink)
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
