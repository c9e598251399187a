-- The PostgreSQL twin of migrations/sqlite/0009_oauth_sign_ins.sql.
-- OAuth sign-ins already completed, so that a sealed `state` works once.
-- Rows past `expires_at` (fixed-format RFC 3339 text in UTC) are dropped
-- whenever a new sign-in is claimed.
CREATE TABLE oauth_sign_ins (
    id         TEXT COLLATE "C" PRIMARY KEY,
    expires_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX oauth_sign_ins_by_expiry ON oauth_sign_ins(expires_at);
