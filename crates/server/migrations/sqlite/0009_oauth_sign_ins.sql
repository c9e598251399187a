-- OAuth sign-ins already completed, so that a sealed `state` works once.
-- Rows past `expires_at` (fixed-format RFC 3339 text in UTC) are dropped
-- whenever a new sign-in is claimed.
CREATE TABLE oauth_sign_ins (
    id         TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX oauth_sign_ins_by_expiry ON oauth_sign_ins(expires_at);
