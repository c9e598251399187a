-- The PostgreSQL twin of migrations/sqlite/0005_releases.sql.
-- Runner releases published per channel (docs/releases.md). `data` holds the
-- release as JSON (version, size, SHA-256, signature); the artifact lives in
-- `release_chunks`, 1 MiB per row as base64 text, so no step needs the whole
-- file in memory and every replica serves it from the database.
CREATE TABLE releases (
    id      TEXT COLLATE "C" PRIMARY KEY,
    channel TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    data    TEXT NOT NULL,
    UNIQUE (channel, version)
);
CREATE TABLE release_chunks (
    release_id TEXT COLLATE "C" NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (release_id, seq)
);
