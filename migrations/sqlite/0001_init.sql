-- epitaph state, version 1.
-- Instances are keyed by id; the full report is kept as JSON beside the columns queries need.

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at      TEXT NOT NULL,
    finished_at     TEXT NOT NULL,
    window_start    TEXT NOT NULL,
    window_end      TEXT NOT NULL,
    -- 1 when every input was read: only complete runs advance the watermark.
    complete        INTEGER NOT NULL,
    summary_json    TEXT NOT NULL
);

CREATE TABLE instances (
    instance_id     TEXT PRIMARY KEY,
    deployment      TEXT NOT NULL,
    asg             TEXT NOT NULL,
    terminated_at   TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    report_json     TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX instances_terminated_at ON instances (terminated_at);
CREATE INDEX instances_deployment ON instances (deployment, terminated_at);

-- Terminations whose fetch failed: retried on the next run until they succeed.
CREATE TABLE pending (
    instance_id       TEXT PRIMARY KEY,
    termination_json  TEXT NOT NULL,
    attempts          INTEGER NOT NULL,
    last_error        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

CREATE TABLE inventory (
    instance_id     TEXT PRIMARY KEY,
    info_json       TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE findings (
    deployment      TEXT PRIMARY KEY,
    verdict         TEXT NOT NULL,
    finding_json    TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
