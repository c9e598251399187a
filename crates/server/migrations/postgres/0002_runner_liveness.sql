-- Liveness is checked often: keep the phase and the last report in columns.
-- last_seen is fixed-format RFC 3339 text: bytewise order is time order.
ALTER TABLE runners ADD COLUMN phase TEXT NOT NULL DEFAULT 'Created';
ALTER TABLE runners ADD COLUMN last_seen TEXT COLLATE "C";
UPDATE runners SET phase = data::jsonb #>> '{status,phase}',
                   last_seen = data::jsonb #>> '{status,updated_at}';
CREATE INDEX runners_by_liveness ON runners(phase, last_seen);
