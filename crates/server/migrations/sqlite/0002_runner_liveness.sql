-- Liveness is checked often: keep the phase and the last report in columns.
ALTER TABLE runners ADD COLUMN phase TEXT NOT NULL DEFAULT 'Created';
ALTER TABLE runners ADD COLUMN last_seen TEXT;
UPDATE runners SET phase = json_extract(data, '$.status.phase'),
                   last_seen = json_extract(data, '$.status.updated_at');
CREATE INDEX runners_by_liveness ON runners(phase, last_seen);
