-- Objects: the current state of every resource, one row per (kind, name).
CREATE TABLE objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    rv   INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

-- Events: one row per revision, written in the same transaction as the
-- object change, so a watcher resuming at revision N misses nothing that was
-- acknowledged. Old rows are pruned past the configured watch window.
CREATE TABLE events (
    rv   INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL
);
