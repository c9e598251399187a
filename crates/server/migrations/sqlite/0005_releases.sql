-- Runner releases published per channel (docs/releases.md). `data` holds the
-- release as JSON (version, size, SHA-256, signature); the artifact lives in
-- `release_chunks`, 1 MiB per row as base64 text, so no step needs the whole
-- file in memory and every replica serves it from the database.
CREATE TABLE releases (
    id      TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    data    TEXT NOT NULL,
    UNIQUE (channel, version)
);
CREATE TABLE release_chunks (
    release_id TEXT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (release_id, seq)
);
