-- Several `corral serve` replicas on one database: the replica bus
-- (src/bus/postgres.rs). PostgreSQL only; a SQLite server runs alone.

-- Every running replica; it refreshes seen_at every few seconds, and one not
-- seen for a while is dead (the streams it announced no longer count).
CREATE TABLE replicas (
    id         UUID PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which replica holds each runner's WatchRequests stream (the newest wins).
CREATE TABLE runner_connections (
    runner_id     UUID PRIMARY KEY,
    replica_id    UUID NOT NULL REFERENCES replicas(id) ON DELETE CASCADE,
    connection_id BIGINT NOT NULL,
    since         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX runner_connections_by_replica ON runner_connections(replica_id);

-- Messages between replicas about runners (requests to deliver on a stream,
-- answers, undeliverable calls). NOTIFY carries only the id: payloads are
-- limited to 8000 bytes. The target deletes a message as it takes it.
CREATE TABLE runner_messages (
    id         BIGSERIAL PRIMARY KEY,
    channel    TEXT NOT NULL,
    target     UUID NOT NULL,
    runner_id  UUID NOT NULL,
    payload    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX runner_messages_by_target ON runner_messages(target, created_at);
