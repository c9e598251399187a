-- Secrets every replica must share (e.g. the key that signs logs tokens),
-- encrypted with the data key; `value` is base64.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
