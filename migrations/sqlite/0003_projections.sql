-- Early warning: the latest projected time to the memory limit of each running instance of a
-- leaking deployment. Each scan replaces the whole set (an instance that died or stopped
-- leaking drops out).
CREATE TABLE projections (
    instance_id     TEXT PRIMARY KEY,
    deployment      TEXT NOT NULL,
    expected        TEXT NOT NULL,   -- RFC 3339 UTC: text order is time order
    projection_json TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Heap-snapshot diffs attached to a deployment (`epitaph heap diff … --attach DEPLOYMENT`):
-- the HTML report shows the latest one in the deployment's section.
CREATE TABLE heap_diffs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment  TEXT NOT NULL,
    attached_at TEXT NOT NULL,
    diff_json   TEXT NOT NULL
);
CREATE INDEX heap_diffs_by_deployment ON heap_diffs (deployment, attached_at);
