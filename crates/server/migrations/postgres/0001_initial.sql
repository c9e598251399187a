-- The PostgreSQL twin of migrations/sqlite/0001_initial.sql: the same tables,
-- columns and constraints, so one set of queries serves both.
-- Each table keeps the columns it is looked up, filtered or constrained by,
-- and the rest of the record as JSON text in `data` (the domain type, serialized).
-- Ids are time-ordered UUIDv7 strings, so ORDER BY id is creation order; id
-- columns compare bytewise (COLLATE "C"), as in SQLite, whatever the
-- database's default collation.

CREATE TABLE organizations (
    id   TEXT COLLATE "C" PRIMARY KEY,
    data TEXT NOT NULL
);

CREATE TABLE users (
    id     TEXT COLLATE "C" PRIMARY KEY,
    org_id TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
    email  TEXT NOT NULL,
    data   TEXT NOT NULL,
    UNIQUE (org_id, email)
);

CREATE TABLE groups (
    id     TEXT COLLATE "C" PRIMARY KEY,
    org_id TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
    name   TEXT NOT NULL,
    system TEXT,
    data   TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE memberships (
    id       TEXT COLLATE "C" PRIMARY KEY,
    group_id TEXT COLLATE "C" NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    data     TEXT NOT NULL,
    UNIQUE (group_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE api_tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    subject_id TEXT COLLATE "C" NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX api_tokens_by_subject ON api_tokens(subject_id);

CREATE TABLE runners (
    id         TEXT COLLATE "C" PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
    creator_id TEXT COLLATE "C" NOT NULL,
    kind       TEXT NOT NULL,
    provider   TEXT,
    data       TEXT NOT NULL
);
CREATE INDEX runners_by_org ON runners(org_id, id);

CREATE TABLE runner_policies (
    runner_id TEXT COLLATE "C" NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
    group_id  TEXT COLLATE "C" NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    PRIMARY KEY (runner_id, group_id)
);
CREATE INDEX runner_policies_by_group ON runner_policies(group_id);

CREATE TABLE host_tokens (
    id        TEXT COLLATE "C" PRIMARY KEY,
    org_id    TEXT COLLATE "C" NOT NULL,
    runner_id TEXT COLLATE "C" NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
    user_id   TEXT COLLATE "C" NOT NULL,
    host      TEXT NOT NULL,
    data      TEXT NOT NULL,
    UNIQUE (runner_id, user_id, host)
);

CREATE TABLE scm_integrations (
    id        TEXT COLLATE "C" PRIMARY KEY,
    org_id    TEXT COLLATE "C" NOT NULL,
    runner_id TEXT COLLATE "C" NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
    host      TEXT NOT NULL,
    data      TEXT NOT NULL,
    UNIQUE (runner_id, host)
);

CREATE TABLE environment_classes (
    id        TEXT COLLATE "C" PRIMARY KEY,
    org_id    TEXT COLLATE "C" NOT NULL,
    runner_id TEXT COLLATE "C" NOT NULL REFERENCES runners(id) ON DELETE CASCADE,
    enabled   INTEGER NOT NULL,
    data      TEXT NOT NULL
);
