-- Scheduled scans: one row per schedule slot, taken by the first replica (or process) to claim
-- it; the others skip that slot. A replica that dies mid-scan leaves its slot taken and the
-- watermark where it was: the next slot's scan covers the window again.
CREATE TABLE scan_slots (
    slot        TEXT PRIMARY KEY,   -- RFC 3339 UTC
    owner       TEXT NOT NULL,
    claimed_at  TEXT NOT NULL
);
