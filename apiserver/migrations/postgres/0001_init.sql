-- The revision counter: one row, locked by every commit (SELECT ... FOR
-- UPDATE) so that commits from every server are serialized and revisions
-- become visible in the order they were handed out.
CREATE TABLE herd_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO herd_revision (id, revision) VALUES (1, 0);

-- Objects: the current state of every resource, one row per (kind, name).
CREATE TABLE herd_objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    rv   BIGINT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Events: one row per revision, written in the same transaction as the
-- object change. Servers follow this log to keep their caches current; old
-- rows are deleted past the watch window.
CREATE TABLE herd_events (
    rv   BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    body BYTEA NOT NULL
);
