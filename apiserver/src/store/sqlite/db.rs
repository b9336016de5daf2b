//! The SQLite side of the store: schema migrations, loading at start, and the
//! statements the writer runs.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{
    Change, ChangeType, StoreError, StoredObject, event_line, labels_of, migrations_to_run,
};

/// Numbered migrations; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../../migrations/0001_init.sql")];

/// Why opening the database failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("opening the store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Schema(#[from] StoreError),
    #[error("stored object {kind}/{name} is corrupt: {message}")]
    Corrupt {
        kind: String,
        name: String,
        message: String,
    },
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Schema(e) => e,
            e => Self::Backend(e.to_string()),
        }
    }
}

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// WAL with `synchronous=NORMAL`: a commit is in the OS before the caller
    /// hears back, so it survives the process being killed (`kill -9`), but
    /// not a power cut.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; survives power loss too.
    Full,
}

pub(super) struct Loaded {
    pub revision: u64,
    pub objects: Vec<(&'static str, String, StoredObject)>,
    pub changes: Vec<Change>,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn open(
    path: &Path,
    kinds: &[&'static str],
    window: usize,
    sync: SyncMode,
) -> Result<(Connection, Loaded), OpenError> {
    let open_err = |source| OpenError::Open {
        path: path.display().to_string(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    let sync_value = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync_value)
        .map_err(open_err)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(open_err)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(open_err)?;
    // Checkpoints run on their own thread (see `checkpointer`), so the writer
    // never stalls copying WAL pages into the database file.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(open_err)?;
    // When the log is reset after a checkpoint, give the file back down to
    // this size: without it the WAL keeps its high-water size (~100 MiB after
    // a burst of heartbeats) for as long as the server runs.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .map_err(open_err)?;
    migrate(&mut conn)?;

    let mut objects = Vec::new();
    let mut revision = 0u64;
    {
        let mut stmt = conn.prepare("SELECT kind, name, rv, body FROM objects")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let name: String = row.get(1)?;
            let rv = to_u64(row.get(2)?);
            let body: Vec<u8> = row.get(3)?;
            let Some(kind) = kinds.iter().find(|k| **k == kind) else {
                tracing::warn!(%kind, %name, "ignoring stored object of an unknown kind");
                continue;
            };
            let labels = labels_of(&body).map_err(|message| OpenError::Corrupt {
                kind: kind.to_string(),
                name: name.clone(),
                message,
            })?;
            revision = revision.max(rv);
            objects.push((
                *kind,
                name,
                StoredObject {
                    rv,
                    body: body.into(),
                    labels: std::sync::Arc::new(labels),
                },
            ));
        }
    }
    let max_event: Option<i64> = conn
        .query_row("SELECT MAX(rv) FROM events", [], |r| r.get(0))
        .optional()?
        .flatten();
    revision = revision.max(max_event.map_or(0, to_u64));

    let from = revision.saturating_sub(window as u64);
    let mut changes = Vec::new();
    {
        let mut stmt =
            conn.prepare("SELECT rv, kind, type, body FROM events WHERE rv > ?1 ORDER BY rv")?;
        let mut rows = stmt.query(params![to_i64(from)])?;
        while let Some(row) = rows.next()? {
            let rv = to_u64(row.get(0)?);
            let kind: String = row.get(1)?;
            let type_: String = row.get(2)?;
            let body: Vec<u8> = row.get(3)?;
            let (Some(kind), Some(type_)) = (
                kinds.iter().find(|k| **k == kind),
                ChangeType::parse(&type_),
            ) else {
                continue;
            };
            // The in-memory log must be contiguous; start over after a gap.
            if changes.last().is_some_and(|e: &Change| e.rv + 1 != rv) {
                changes.clear();
            }
            let labels = std::sync::Arc::new(labels_of(&body).unwrap_or_default());
            changes.push(Change {
                rv,
                kind,
                type_,
                labels,
                prev_labels: None,
                line: event_line(type_, &body),
            });
        }
    }
    if changes.last().is_some_and(|e| e.rv != revision) {
        changes.clear();
    }
    Ok((
        conn,
        Loaded {
            revision,
            objects,
            changes,
        },
    ))
}

fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let todo = migrations_to_run(u64::try_from(version).unwrap_or(0), MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(todo.start) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
        tracing::info!(migration = i + 1, "applied store migration");
    }
    Ok(())
}

pub(super) fn put(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    name: &str,
    rv: u64,
    body: &[u8],
    type_: ChangeType,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO objects (kind, name, rv, body) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind, name, to_i64(rv), body])?;
    tx.prepare_cached(
        "INSERT INTO events (rv, kind, name, type, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![to_i64(rv), kind, name, type_.as_str(), body])?;
    Ok(())
}

pub(super) fn delete(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    name: &str,
    rv: u64,
    body: &[u8],
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND name = ?2")?
        .execute(params![kind, name])?;
    tx.prepare_cached(
        "INSERT INTO events (rv, kind, name, type, body) VALUES (?1, ?2, ?3, 'DELETED', ?4)",
    )?
    .execute(params![to_i64(rv), kind, name, body])?;
    Ok(())
}

pub(super) fn prune_events(conn: &Connection, keep_after: u64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM events WHERE rv <= ?1")?
        .execute(params![to_i64(keep_after)])?;
    Ok(())
}

/// WAL length (in pages) past which a checkpoint also restarts the log.
const WAL_RESTART_PAGES: i64 = 16_384;
/// Size the WAL file is cut back to when the log restarts (bytes).
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Copies committed WAL pages into the database file every `every`, on a
/// connection of its own, until `stop` is set. PASSIVE checkpoints never block
/// the writer, but under steady writes they never catch up with the end of
/// the log, so SQLite never rewinds it; once the log passes
/// [`WAL_RESTART_PAGES`] a RESTART checkpoint (which briefly holds writers
/// back while it copies the few pages PASSIVE left) makes the next commit
/// start the log over, bounding the WAL file.
pub(super) fn checkpointer(
    path: std::path::PathBuf,
    every: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpointer cannot open the store; WAL will grow until restart");
            return;
        }
    };
    let _ = conn.pragma_update(None, "busy_timeout", 1000);
    let _ = conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(every);
        let pages = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
        match pages {
            Ok(pages) if pages > WAL_RESTART_PAGES => {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL restart checkpoint failed; will retry");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

pub(super) fn close(conn: Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    conn.close().map_err(|(_, e)| e)
}
