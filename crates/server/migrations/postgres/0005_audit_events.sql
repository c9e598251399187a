-- The PostgreSQL twin of migrations/sqlite/0004_audit_events.sql.
-- The audit trail: one row per state-changing call (and per refused one).
-- Columns for what lists filter by; the whole event as JSON text in `data`.
-- `at` is fixed-format RFC 3339 text in UTC, so bytewise order is time order.
CREATE TABLE audit_events (
    id           TEXT COLLATE "C" PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    at           TEXT COLLATE "C" NOT NULL,
    actor_id     TEXT COLLATE "C",
    actor_kind   TEXT,
    subject_id   TEXT COLLATE "C",
    subject_kind TEXT NOT NULL,
    data         TEXT NOT NULL
);
CREATE INDEX audit_events_by_org ON audit_events(org_id, id);
CREATE INDEX audit_events_by_time ON audit_events(at);
