//! The embedded store: SQLite in WAL mode behind one writer thread.
//!
//! Every change goes through the writer thread that owns the SQLite
//! connection: it takes all pending writes at once, applies them in order
//! (each sees the ones before it), commits them in one transaction, and only
//! then publishes them and answers the callers. A caller that got an answer
//! therefore has its write on disk (WAL), and one fsync-free commit serves
//! many writers.

mod db;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, mpsc};

use tokio::sync::{oneshot, watch};

use super::cache::{Cache, Overlay, WindowLimits};
use super::{
    Change, ChangeType, CommitFuture, Expect, Labels, Proposal, Store, StoreError, StoredObject,
    Template, WindowUsage, Written, check_expect, event_line,
};

pub use db::SyncMode;

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Changes kept (in memory and on disk) for watchers to resume from.
    pub watch_window: usize,
    /// Bytes those changes may take in memory (see `Change::weight`); the
    /// oldest are dropped first, in memory and on disk.
    pub watch_window_bytes: usize,
    pub sync: SyncMode,
}

/// The default byte bound of the watch window.
pub const DEFAULT_WATCH_WINDOW_BYTES: usize = 64 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            watch_window: 20_000,
            watch_window_bytes: DEFAULT_WATCH_WINDOW_BYTES,
            sync: SyncMode::Normal,
        }
    }
}

struct Shared {
    cache: RwLock<Cache>,
    revision_tx: watch::Sender<u64>,
    window: WindowLimits,
    writer_running: AtomicBool,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct WriteOp {
    kind: &'static str,
    name: String,
    expect: Expect,
    proposal: Proposal,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: mpsc::SyncSender<WriteOp>,
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store's writer has stopped".into())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir/herd.db` and starts its writer.
    pub fn open(
        dir: &Path,
        kinds: &[&'static str],
        opts: StoreOptions,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!(
                "creating the store directory {}: {e}",
                dir.display()
            ))
        })?;
        let window = WindowLimits {
            events: opts.watch_window.max(1),
            bytes: opts.watch_window_bytes,
        };
        let (conn, loaded) = db::open(&dir.join("herd.db"), kinds, window.events, opts.sync)?;
        let mut cache = Cache {
            revision: loaded.revision,
            ..Cache::default()
        };
        for kind in kinds {
            cache.objects.entry(*kind).or_default();
        }
        for (kind, name, obj) in loaded.objects {
            if let Some(map) = cache.objects.get_mut(kind) {
                map.insert(name, Arc::new(obj));
            }
        }
        cache.extend_log(loaded.changes.into_iter().map(Arc::new), window);
        let (revision_tx, _) = watch::channel(cache.revision);
        let shared = Arc::new(Shared {
            cache: RwLock::new(cache),
            revision_tx,
            window,
            writer_running: AtomicBool::new(true),
        });
        let (tx, rx) = mpsc::sync_channel::<WriteOp>(8192);
        let writer_shared = shared.clone();
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        let stop = stop_checkpoints.clone();
        let path = dir.join("herd.db");
        let spawn_failed =
            |e: std::io::Error| StoreError::Backend(format!("starting a store thread: {e}"));
        std::thread::Builder::new()
            .name("herd-store-checkpoint".into())
            .spawn(move || db::checkpointer(path, std::time::Duration::from_millis(500), stop))
            .map_err(spawn_failed)?;
        std::thread::Builder::new()
            .name("herd-store-writer".into())
            .spawn(move || {
                writer_loop(conn, &rx, &writer_shared);
                stop_checkpoints.store(true, Ordering::Relaxed);
            })
            .map_err(spawn_failed)?;
        Ok(Self { shared, writer: tx })
    }

    async fn send(&self, op: WriteOp) -> Result<(), StoreError> {
        // The channel is bounded; a full queue blocks, so hand it to a blocking thread.
        match self.writer.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(op)) => {
                let writer = self.writer.clone();
                // Only whether the send failed matters (the writer is gone).
                tokio::task::spawn_blocking(move || writer.send(op).map_err(drop))
                    .await
                    .map_err(|e| StoreError::Backend(format!("queueing a write: {e}")))?
                    .map_err(|()| writer_gone())
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(writer_gone()),
        }
    }
}

impl Store for SqliteStore {
    fn revision(&self) -> u64 {
        self.shared.read().revision
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.revision_tx.subscribe()
    }

    fn get(&self, kind: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.shared.read().get(kind, name)
    }

    fn list(
        &self,
        kind: &str,
        keep: &dyn Fn(&StoredObject) -> bool,
    ) -> (u64, Vec<Arc<StoredObject>>) {
        self.shared.read().list(kind, keep)
    }

    fn events_after(&self, after: u64, max: usize) -> Result<Vec<Arc<Change>>, StoreError> {
        self.shared.read().events_after(after, max)
    }

    fn window_usage(&self) -> WindowUsage {
        self.shared.read().window_usage()
    }

    fn commit(
        &self,
        kind: &'static str,
        name: String,
        expect: Expect,
        proposal: Proposal,
    ) -> CommitFuture<'_> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.send(WriteOp {
                kind,
                name,
                expect,
                proposal,
                reply,
            })
            .await?;
            rx.await.map_err(|_| writer_gone())?
        })
    }

    fn writable(&self) -> bool {
        self.shared.writer_running.load(Ordering::Relaxed)
    }
}

const MAX_BATCH: usize = 512;

fn writer_loop(mut conn: rusqlite::Connection, rx: &mpsc::Receiver<WriteOp>, shared: &Shared) {
    // Events on disk are deleted as the in-memory window drops them, every
    // 1024 changes or every eighth of the byte bound written, whichever
    // comes first, so the database holds about one window of events.
    let prune_every_bytes = (shared.window.bytes / 8).max(1);
    let (mut since_prune, mut bytes_since_prune) = (0usize, 0usize);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (changes, bytes) = commit_batch(&mut conn, batch, shared);
        since_prune += changes;
        bytes_since_prune += bytes;
        if since_prune >= 1024 || bytes_since_prune >= prune_every_bytes {
            (since_prune, bytes_since_prune) = (0, 0);
            let keep_after = shared.read().compacted_through();
            if let Err(e) = db::prune_events(&conn, keep_after) {
                tracing::warn!(error = %e, "pruning old events failed; will retry");
            }
        }
    }
    shared.writer_running.store(false, Ordering::Relaxed);
    if let Err(e) = db::close(conn) {
        tracing::warn!(error = %e, "closing the store");
    }
}

/// What a caller hears when its write was fine but the batch it rode in
/// failed on the way to disk.
fn batch_failed(what: &str) -> StoreError {
    StoreError::Backend(format!("store {what} failed"))
}

/// Applies a batch in one transaction; returns how many changes it wrote
/// and their weight in bytes.
fn commit_batch(
    conn: &mut rusqlite::Connection,
    ops: Vec<WriteOp>,
    shared: &Shared,
) -> (usize, usize) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let message = format!("starting a store transaction: {e}");
            for op in ops {
                let _ = op.reply.send(Err(StoreError::Backend(message.clone())));
            }
            return (0, 0);
        }
    };
    let mut batch = Batch::new(shared);
    let mut replies = Vec::with_capacity(ops.len());
    for op in ops {
        let result = batch.apply(&tx, op.kind, op.name, op.expect, op.proposal);
        replies.push((op.reply, result));
    }
    if !batch.finish(tx) {
        for (reply, result) in replies {
            let _ = reply.send(result.and(Err(batch_failed("commit"))));
        }
        return (0, 0);
    }
    let written = batch.publish();
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
    written
}

/// One batch on its way to disk: the revision reached so far, the objects
/// it changed (later writes in the batch see earlier ones), and the changes
/// to publish once it is committed.
struct Batch<'s> {
    shared: &'s Shared,
    rev: u64,
    overlay: Overlay,
    changes: Vec<Arc<Change>>,
    /// After a statement fails the transaction is rolled back, so later
    /// writes in the batch are refused rather than applied.
    failed: Option<rusqlite::Error>,
}

impl<'s> Batch<'s> {
    fn new(shared: &'s Shared) -> Self {
        Self {
            shared,
            rev: shared.read().revision,
            overlay: Overlay::new(),
            changes: Vec::new(),
            failed: None,
        }
    }

    fn current(&self, kind: &'static str, name: &str) -> Option<Arc<StoredObject>> {
        match self.overlay.get(&(kind, name.to_owned())) {
            Some(o) => o.clone(),
            None => self.shared.read().get(kind, name),
        }
    }

    fn apply(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        kind: &'static str,
        name: String,
        expect: Expect,
        proposal: Proposal,
    ) -> Result<Written, StoreError> {
        let current = self.current(kind, &name);
        let deleting = matches!(proposal, Proposal::Delete { .. });
        check_expect(kind, &name, expect, current.as_deref(), deleting)?;
        if self.failed.is_some() {
            return Err(batch_failed("write"));
        }
        let result = match proposal {
            Proposal::Put { template, labels } => {
                self.apply_put(tx, kind, name, current, &template, labels)
            }
            Proposal::Delete { template } => self.apply_delete(tx, kind, name, current, &template),
        };
        match result {
            Ok(written) => {
                self.rev = written.object.rv;
                Ok(written)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(batch_failed("write"))
            }
        }
    }

    /// Writes the object at the next revision.
    fn apply_put(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        kind: &'static str,
        name: String,
        current: Option<Arc<StoredObject>>,
        template: &Template,
        labels: Labels,
    ) -> Result<Written, rusqlite::Error> {
        let rev = self.rev + 1;
        let body = template.render(rev);
        let type_ = if current.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        db::put(tx, kind, &name, rev, &body, type_)?;
        let prev_labels = current
            .as_ref()
            .filter(|c| c.labels != labels)
            .map(|c| Arc::clone(&c.labels));
        self.changes.push(Arc::new(Change {
            rv: rev,
            kind,
            type_,
            labels: Arc::clone(&labels),
            prev_labels,
            line: event_line(type_, &body),
        }));
        let object = Arc::new(StoredObject {
            rv: rev,
            body,
            labels,
        });
        self.overlay.insert((kind, name), Some(object.clone()));
        Ok(Written {
            object,
            created: current.is_none(),
            deleted: false,
            unchanged: false,
        })
    }

    /// Removes the object at the next revision; `template` is its final state.
    fn apply_delete(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        kind: &'static str,
        name: String,
        current: Option<Arc<StoredObject>>,
        template: &Template,
    ) -> Result<Written, rusqlite::Error> {
        let rev = self.rev + 1;
        let body = template.render(rev);
        db::delete(tx, kind, &name, rev, &body)?;
        let labels = current.map(|c| c.labels.clone()).unwrap_or_default();
        self.changes.push(Arc::new(Change {
            rv: rev,
            kind,
            type_: ChangeType::Deleted,
            labels: Arc::clone(&labels),
            prev_labels: None,
            line: event_line(ChangeType::Deleted, &body),
        }));
        self.overlay.insert((kind, name), None);
        Ok(Written {
            object: Arc::new(StoredObject {
                rv: rev,
                body,
                labels,
            }),
            created: false,
            deleted: true,
            unchanged: false,
        })
    }

    /// Commits the transaction, or rolls it back if a write failed; whether
    /// the batch is on disk.
    fn finish(&mut self, tx: rusqlite::Transaction<'_>) -> bool {
        if let Some(e) = self.failed.take() {
            tracing::error!(error = %e, "store write failed; batch rolled back");
            drop(tx);
            return false;
        }
        match tx.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; batch rolled back");
                false
            }
        }
    }

    /// Makes a committed batch visible to readers and wakes watchers;
    /// returns how many changes it wrote and their weight.
    fn publish(self) -> (usize, usize) {
        let written = self.changes.len();
        if written == 0 {
            return (0, 0);
        }
        let bytes = self.changes.iter().map(|c| c.weight()).sum();
        self.shared
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(self.overlay, self.rev, self.changes, self.shared.window);
        self.shared.revision_tx.send_replace(self.rev);
        (written, bytes)
    }
}
