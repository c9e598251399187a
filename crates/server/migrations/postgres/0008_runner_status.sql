-- The PostgreSQL twin of migrations/sqlite/0007_runner_status.sql.
-- A runner reports its status every few seconds: the status gets a small row
-- of its own, so a report writes that row and never rewrites the runner
-- record (spec, configuration schema, …) in `runners.data`. `phase` and
-- `last_seen` (fixed-format RFC 3339 text) serve the liveness sweep; `data`
-- is the status as JSON text. The record keeps everything but the status.
CREATE TABLE runner_status (
    runner_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runners(id) ON DELETE CASCADE,
    phase     TEXT NOT NULL,
    last_seen TEXT COLLATE "C",
    data      TEXT NOT NULL
);
CREATE INDEX runner_status_by_liveness ON runner_status(phase, last_seen);
INSERT INTO runner_status (runner_id, phase, last_seen, data)
    SELECT id, phase, last_seen, (data::jsonb -> 'status')::text FROM runners;
UPDATE runners SET data = (data::jsonb - 'status')::text;
DROP INDEX runners_by_liveness;
ALTER TABLE runners DROP COLUMN phase, DROP COLUMN last_seen;
