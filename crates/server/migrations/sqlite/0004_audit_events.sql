-- The audit trail: one row per state-changing call (and per refused one).
-- Columns for what lists filter by; the whole event as JSON in `data`.
-- `at` is fixed-format RFC 3339 text in UTC, so text order is time order.
CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    at           TEXT NOT NULL,
    actor_id     TEXT,
    actor_kind   TEXT,
    subject_id   TEXT,
    subject_kind TEXT NOT NULL,
    data         TEXT NOT NULL
);
CREATE INDEX audit_events_by_org ON audit_events(org_id, id);
CREATE INDEX audit_events_by_time ON audit_events(at);
