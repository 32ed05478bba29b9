-- Targets (account/role × region) a run could not read, with where their unread window starts
-- and why: a JSON object {target: {since, error}}, as migrations/sqlite/0005. The next run
-- reads each of them from its `since`, the other targets from the watermark; the latest run's
-- object is the backlog.
ALTER TABLE runs ADD COLUMN target_backlog JSON NOT NULL DEFAULT '{}';
