//! The resource store.
//!
//! The current objects and a window of recent events live in memory, so reads,
//! lists and watches never touch the disk. Every change goes through one writer
//! thread that owns the SQLite connection: it takes all pending writes at once,
//! applies them in order (each sees the ones before it), commits them in one
//! transaction, and only then publishes them and answers the callers. A caller
//! that got an answer therefore has its write on disk (WAL), and one fsync-free
//! commit serves many writers.

mod sqlite;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, RwLock, mpsc};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch};

use crate::error::ApiError;

pub use sqlite::SyncMode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("opening the store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("stored object {kind}/{name} is corrupt: {message}")]
    Corrupt {
        kind: String,
        name: String,
        message: String,
    },
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("a proposed object carries no resourceVersion placeholder")]
    NoPlaceholder,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One object as stored: its serialized JSON (with `resourceVersion` set), and
/// its labels for selector matching without parsing.
#[derive(Debug)]
pub struct StoredObject {
    pub rv: u64,
    pub body: Bytes,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One change, pre-serialized as the NDJSON line every watcher sends, so a
/// hundred watchers cost one serialization.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: &'static str,
    pub type_: EventType,
    pub labels: BTreeMap<String, String>,
    /// For a `MODIFIED` event that changed the labels, the labels before:
    /// a watch with a selector then sees the object enter (`ADDED`) or
    /// leave (`DELETED`) its selection. `None` when they did not change (or
    /// are unknown: events reloaded from disk after a restart).
    pub prev_labels: Option<BTreeMap<String, String>>,
    pub line: Bytes,
}

impl Event {
    /// The line a watch with `selector` is sent for this event, if any:
    /// Kubernetes' rule, where an object whose change moves it into the
    /// selection is `ADDED` and one that moves out is `DELETED` (with its
    /// new state).
    pub fn line_for(&self, selector: &herd_api::LabelSelector) -> Option<Bytes> {
        let now = selector.matches(&self.labels);
        let before = match (&self.prev_labels, self.type_) {
            (Some(prev), EventType::Modified) => selector.matches(prev),
            _ => now,
        };
        match (before, now) {
            (true, true) => Some(self.line.clone()),
            (false, true) => Some(retype(&self.line, self.type_, EventType::Added)),
            (true, false) => Some(retype(&self.line, self.type_, EventType::Deleted)),
            (false, false) => None,
        }
    }
}

/// `line` (of type `from`, as [`event_line`] writes it) as type `to`.
fn retype(line: &Bytes, from: EventType, to: EventType) -> Bytes {
    let head = b"{\"type\":\"".len() + from.as_str().len() + b"\",\"object\":".len();
    let Some(rest) = line.get(head..) else {
        return line.clone();
    };
    let mut b = BytesMut::with_capacity(line.len() + 8);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(to.as_str().as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(rest);
    b.freeze()
}

/// `{"type":"ADDED","object":<body>}\n`
pub fn event_line(type_: EventType, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 32);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(type_.as_str().as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(body);
    b.extend_from_slice(b"}\n");
    b.freeze()
}

/// The placeholder a proposed body carries where the store writes the new
/// revision. Bodies are serialized before the writer thread assigns the
/// revision, so all JSON work happens on the request's own task and the one
/// writer thread only splices bytes and talks to SQLite.
pub const REVISION_PLACEHOLDER: &str = "@@herd-resource-version@@";
const PLACEHOLDER_FIELD: &[u8] = b"\"resourceVersion\":\"@@herd-resource-version@@\"";

/// A serialized object with a hole for its revision.
#[derive(Clone, Debug)]
pub struct Template {
    prefix: Bytes,
    suffix: Bytes,
}

impl Template {
    /// Splits a body at its `metadata.resourceVersion` placeholder: the first
    /// `resourceVersion` key in herd's serialization order (`apiVersion`,
    /// `kind`, then `metadata.name`, `uid`, `resourceVersion`).
    pub fn new(body: Bytes) -> Result<Self, StoreError> {
        let at = body
            .windows(PLACEHOLDER_FIELD.len())
            .position(|w| w == PLACEHOLDER_FIELD)
            .ok_or(StoreError::NoPlaceholder)?;
        let split = at + "\"resourceVersion\":\"".len();
        Ok(Self {
            prefix: body.slice(..split),
            suffix: body.slice(split + REVISION_PLACEHOLDER.len()..),
        })
    }

    pub fn render(&self, rv: u64) -> Bytes {
        let rv = rv.to_string();
        let mut b = BytesMut::with_capacity(self.prefix.len() + rv.len() + self.suffix.len());
        b.extend_from_slice(&self.prefix);
        b.extend_from_slice(rv.as_bytes());
        b.extend_from_slice(&self.suffix);
        b.freeze()
    }
}

/// What must hold for a proposal to commit: the state it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Absent,
    At(u64),
}

/// A change computed against the state named by [`Expect`].
#[derive(Debug)]
pub enum Proposal {
    Put {
        template: Template,
        labels: BTreeMap<String, String>,
    },
    /// `template` is the final state of the object, shown to watchers.
    Delete { template: Template },
}

/// Why a proposal did not commit.
#[derive(Debug)]
pub enum CommitError {
    /// The object changed since the proposal was computed: recompute and retry.
    Stale,
    Failed(ApiError),
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
    }
}

/// What a write did.
#[derive(Debug)]
pub struct Written {
    pub object: Arc<StoredObject>,
    pub created: bool,
    pub deleted: bool,
    pub unchanged: bool,
}

struct WriteOp {
    kind: &'static str,
    name: String,
    expect: Expect,
    proposal: Proposal,
    reply: oneshot::Sender<Result<Written, CommitError>>,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Events kept (in memory and on disk) for watchers to resume from.
    pub watch_window: usize,
    pub sync: SyncMode,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            watch_window: 20_000,
            sync: SyncMode::Normal,
        }
    }
}

#[derive(Default)]
struct State {
    revision: u64,
    objects: HashMap<&'static str, BTreeMap<String, Arc<StoredObject>>>,
    log: VecDeque<Arc<Event>>,
}

impl State {
    fn get(&self, kind: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.objects.get(kind).and_then(|m| m.get(name)).cloned()
    }
}

struct Shared {
    state: RwLock<State>,
    revision_tx: watch::Sender<u64>,
    window: usize,
    writer_running: std::sync::atomic::AtomicBool,
}

/// Events after a revision could not be served.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchGap {
    /// The revision is older than the kept window: relist.
    TooOld { oldest: u64 },
    /// The revision is newer than anything this store has written.
    TooNew { current: u64 },
}

/// Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::SyncSender<WriteOp>,
}

fn read_state(shared: &Shared) -> std::sync::RwLockReadGuard<'_, State> {
    shared
        .state
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the store in `dir/herd.db` and starts its writer.
    pub fn open(
        dir: &Path,
        kinds: &[&'static str],
        opts: StoreOptions,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let window = opts.watch_window.max(1);
        let (conn, loaded) = sqlite::open(&dir.join("herd.db"), kinds, window, opts.sync)?;
        let mut state = State {
            revision: loaded.revision,
            ..State::default()
        };
        for kind in kinds {
            state.objects.insert(kind, BTreeMap::new());
        }
        for (kind, name, obj) in loaded.objects {
            if let Some(map) = state.objects.get_mut(kind) {
                map.insert(name, Arc::new(obj));
            }
        }
        state.log = loaded.events.into_iter().map(Arc::new).collect();
        let (revision_tx, _) = watch::channel(state.revision);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            revision_tx,
            window,
            writer_running: std::sync::atomic::AtomicBool::new(true),
        });
        let (tx, rx) = mpsc::sync_channel::<WriteOp>(8192);
        let writer_shared = shared.clone();
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = stop_checkpoints.clone();
        let db = dir.join("herd.db");
        std::thread::Builder::new()
            .name("herd-store-checkpoint".into())
            .spawn(move || sqlite::checkpointer(db, std::time::Duration::from_millis(500), stop))?;
        std::thread::Builder::new()
            .name("herd-store-writer".into())
            .spawn(move || {
                writer_loop(conn, &rx, &writer_shared);
                stop_checkpoints.store(true, std::sync::atomic::Ordering::Relaxed);
            })?;
        Ok(Self { shared, writer: tx })
    }

    pub fn revision(&self) -> u64 {
        read_state(&self.shared).revision
    }

    pub fn writer_alive(&self) -> bool {
        self.shared
            .writer_running
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notified with the new revision after every commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.revision_tx.subscribe()
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<Arc<StoredObject>> {
        read_state(&self.shared).get(kind, name)
    }

    /// All objects of a kind (sorted by name) passing `keep`, and the revision
    /// they were read at.
    pub fn list(
        &self,
        kind: &str,
        keep: impl Fn(&StoredObject) -> bool,
    ) -> (u64, Vec<Arc<StoredObject>>) {
        let state = read_state(&self.shared);
        let items = state
            .objects
            .get(kind)
            .map(|m| m.values().filter(|o| keep(o)).cloned().collect())
            .unwrap_or_default();
        (state.revision, items)
    }

    /// Up to `max` events (of every kind) after revision `after`, in order.
    pub fn events_after(&self, after: u64, max: usize) -> Result<Vec<Arc<Event>>, WatchGap> {
        let state = read_state(&self.shared);
        if after > state.revision {
            return Err(WatchGap::TooNew {
                current: state.revision,
            });
        }
        let first = state.log.front().map_or(state.revision + 1, |e| e.rv);
        if after + 1 < first {
            return Err(WatchGap::TooOld { oldest: first });
        }
        let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        Ok(state.log.iter().skip(start).take(max).cloned().collect())
    }

    /// Commits a proposal if the object is still as `expect` says, durably,
    /// and publishes it to watchers.
    pub async fn commit(
        &self,
        kind: &'static str,
        name: String,
        expect: Expect,
        proposal: Proposal,
    ) -> Result<Written, CommitError> {
        let (reply, rx) = oneshot::channel();
        let op = WriteOp {
            kind,
            name,
            expect,
            proposal,
            reply,
        };
        let writer = self.writer.clone();
        let gone = || CommitError::Failed(StoreError::WriterGone.into());
        // The channel is bounded; a full queue blocks, so hand it to a blocking thread.
        match writer.try_send(op) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(op)) => {
                // Only whether the send failed matters (the writer is gone).
                tokio::task::spawn_blocking(move || writer.send(op).map_err(drop))
                    .await
                    .map_err(|e| CommitError::Failed(ApiError::Internal(e.to_string())))?
                    .map_err(|_| gone())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(gone()),
        }
        rx.await.map_err(|_| gone())?
    }
}

const MAX_BATCH: usize = 512;

fn writer_loop(mut conn: rusqlite::Connection, rx: &mpsc::Receiver<WriteOp>, shared: &Shared) {
    let mut since_prune = 0usize;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        since_prune += commit_batch(&mut conn, batch, shared);
        if since_prune >= 1024 {
            since_prune = 0;
            let keep_after = read_state(shared)
                .revision
                .saturating_sub(shared.window as u64);
            if let Err(e) = sqlite::prune_events(&conn, keep_after) {
                tracing::warn!(error = %e, "pruning old events failed; will retry");
            }
        }
    }
    shared
        .writer_running
        .store(false, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = sqlite::close(conn) {
        tracing::warn!(error = %e, "closing the store");
    }
}

type Reply = (
    oneshot::Sender<Result<Written, CommitError>>,
    Result<Written, CommitError>,
);

/// Applies a batch in one transaction; returns how many events it wrote.
fn commit_batch(conn: &mut rusqlite::Connection, batch: Vec<WriteOp>, shared: &Shared) -> usize {
    let base = read_state(shared).revision;
    let mut rev = base;
    let mut overlay: HashMap<(&'static str, String), Option<Arc<StoredObject>>> = HashMap::new();
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut events: Vec<Arc<Event>> = Vec::new();

    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let message = format!("starting a store transaction: {e}");
            for op in batch {
                let _ = op
                    .reply
                    .send(Err(ApiError::Internal(message.clone()).into()));
            }
            return 0;
        }
    };
    let mut failed: Option<StoreError> = None;
    for op in batch {
        let key = (op.kind, op.name);
        let current = match overlay.get(&key) {
            Some(o) => o.clone(),
            None => read_state(shared).get(key.0, &key.1),
        };
        let fresh = match (op.expect, &current) {
            (Expect::Absent, None) => true,
            (Expect::At(rv), Some(c)) => c.rv == rv,
            _ => false,
        };
        let result = if !fresh {
            Err(CommitError::Stale)
        } else if failed.is_some() {
            Err(ApiError::Internal("store write failed".into()).into())
        } else {
            rev += 1;
            match op.proposal {
                Proposal::Put { template, labels } => {
                    let body = template.render(rev);
                    let type_ = if current.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    match sqlite::put(&tx, key.0, &key.1, rev, &body, type_) {
                        Ok(()) => {
                            let prev_labels = current
                                .as_ref()
                                .filter(|c| c.labels != labels)
                                .map(|c| c.labels.clone());
                            events.push(Arc::new(Event {
                                rv: rev,
                                kind: key.0,
                                type_,
                                labels: labels.clone(),
                                prev_labels,
                                line: event_line(type_, &body),
                            }));
                            let obj = Arc::new(StoredObject {
                                rv: rev,
                                body,
                                labels,
                            });
                            overlay.insert(key.clone(), Some(obj.clone()));
                            Ok(Written {
                                object: obj,
                                created: current.is_none(),
                                deleted: false,
                                unchanged: false,
                            })
                        }
                        Err(e) => {
                            failed = Some(e.into());
                            Err(ApiError::Internal("store write failed".into()).into())
                        }
                    }
                }
                Proposal::Delete { template } => {
                    let body = template.render(rev);
                    match sqlite::delete(&tx, key.0, &key.1, rev, &body) {
                        Ok(()) => {
                            let labels = current
                                .as_ref()
                                .map(|c| c.labels.clone())
                                .unwrap_or_default();
                            events.push(Arc::new(Event {
                                rv: rev,
                                kind: key.0,
                                type_: EventType::Deleted,
                                labels: labels.clone(),
                                prev_labels: None,
                                line: event_line(EventType::Deleted, &body),
                            }));
                            overlay.insert(key.clone(), None);
                            let obj = Arc::new(StoredObject {
                                rv: rev,
                                body,
                                labels,
                            });
                            Ok(Written {
                                object: obj,
                                created: false,
                                deleted: true,
                                unchanged: false,
                            })
                        }
                        Err(e) => {
                            failed = Some(e.into());
                            Err(ApiError::Internal("store write failed".into()).into())
                        }
                    }
                }
            }
        };
        replies.push((op.reply, result));
    }

    let committed = match failed {
        Some(e) => {
            tracing::error!(error = %e, "store write failed; batch rolled back");
            drop(tx);
            false
        }
        None => match tx.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; batch rolled back");
                false
            }
        },
    };
    if !committed {
        for (reply, result) in replies {
            let result = match result {
                Ok(_) => Err(ApiError::Internal("store commit failed".into()).into()),
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        return 0;
    }

    let written = events.len();
    if written > 0 {
        let mut state = shared
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((kind, name), obj) in overlay {
            let map = state.objects.entry(kind).or_default();
            match obj {
                Some(o) => {
                    map.insert(name, o);
                }
                None => {
                    map.remove(&name);
                }
            }
        }
        state.revision = rev;
        state.log.extend(events);
        while state.log.len() > shared.window {
            state.log.pop_front();
        }
        drop(state);
        shared.revision_tx.send_replace(rev);
    }
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_follow_the_selection() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let sel = herd_api::LabelSelector::parse("gpu=nvidia").expect("selector");
        let gpu = labels(&[("gpu", "nvidia")]);
        let none = labels(&[]);
        let event = |type_,
                     now: &BTreeMap<String, String>,
                     prev: Option<&BTreeMap<String, String>>| Event {
            rv: 1,
            kind: "Node",
            type_,
            labels: now.clone(),
            prev_labels: prev.cloned(),
            line: event_line(type_, b"{\"x\":1}"),
        };
        let line = |e: Event| {
            e.line_for(&sel)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let typed = |t: &str| Some(format!("{{\"type\":\"{t}\",\"object\":{{\"x\":1}}}}\n"));
        for (name, e, want) in [
            (
                "added, matching",
                event(EventType::Added, &gpu, None),
                typed("ADDED"),
            ),
            (
                "added, not matching",
                event(EventType::Added, &none, None),
                None,
            ),
            (
                "modified inside",
                event(EventType::Modified, &gpu, None),
                typed("MODIFIED"),
            ),
            (
                "modified outside",
                event(EventType::Modified, &none, None),
                None,
            ),
            (
                "moved in",
                event(EventType::Modified, &gpu, Some(&none)),
                typed("ADDED"),
            ),
            (
                "moved out",
                event(EventType::Modified, &none, Some(&gpu)),
                typed("DELETED"),
            ),
            (
                "deleted, matching",
                event(EventType::Deleted, &gpu, None),
                typed("DELETED"),
            ),
        ] {
            assert_eq!(line(e), want, "{name}");
        }
    }

    #[test]
    fn template_splices_the_revision_into_the_first_resource_version() {
        let body = Bytes::from_static(
            br#"{"apiVersion":"herd/v1","kind":"Node","metadata":{"name":"a","resourceVersion":"@@herd-resource-version@@","annotations":{"x":"\"resourceVersion\":\"@@herd-resource-version@@\""}}}"#,
        );
        let t = Template::new(body).expect("placeholder");
        let out = t.render(42);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert!(
            v["metadata"]["annotations"]["x"]
                .as_str()
                .is_some_and(|s| s.contains("@@herd"))
        );
        assert!(Template::new(Bytes::from_static(b"{}")).is_err());
    }
}
