//! The shared store: PostgreSQL, written and followed by every server.
//!
//! All servers commit into one database. A commit locks the single row of
//! `herd_revision` (`SELECT … FOR UPDATE`), so commits from every server are
//! serialized: each takes the next revisions, writes its objects and its
//! events, bumps the counter and notifies `herd_events`, then commits and
//! releases the lock. A later revision is therefore never visible before
//! an earlier one, and a reader of the event log in revision order misses
//! nothing.
//!
//! Each server keeps the same in-memory cache as the SQLite store, which
//! answers every read. It moves forward only in revision order, under
//! [`Shared::advance`]: the writer publishes its own commit (after first
//! applying whatever other servers committed before it, read from the log
//! under the lock), and the follower applies the commits of other servers,
//! woken by `LISTEN herd_events` (and by a timer, should a notification be
//! lost with a connection). A server that fell behind the log's window
//! loads everything again; its watchers then get 410 and list again.
//!
//! While the database cannot be reached, reads go on from the cache,
//! [`Store::writable`] is false and commits fail with
//! [`StoreError::Unavailable`] (503); the follower reconnects and catches up.

mod db;
mod follow;
mod plan;
mod target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, GenericClient, IsolationLevel, Statement};
use tokio_util::sync::CancellationToken;

use super::cache::{Cache, Overlay, WindowLimits};
use super::{
    Change, CommitFuture, DEFAULT_WATCH_WINDOW_BYTES, Expect, Proposal, Store, StoreError,
    StoredObject, WindowUsage, Written,
};
use plan::{EventRow, Op};

pub use target::{PgEnv, PgTarget, is_postgres_url, pgpass_lookup};

#[derive(Clone, Copy, Debug)]
pub struct PgOptions {
    /// Changes kept for watchers to resume from, in memory and in the
    /// database's event log.
    pub watch_window: usize,
    /// Bytes those changes may take in memory (see `Change::weight`).
    pub watch_window_bytes: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            watch_window: 20_000,
            watch_window_bytes: DEFAULT_WATCH_WINDOW_BYTES,
        }
    }
}

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 512;
/// Events read from the log per query when catching up.
const PAGE: i64 = 1000;
/// How long one batch may take from `BEGIN` to `COMMIT` before its callers
/// hear 503 and the connection is dropped.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the follower reads the log without a notification: a safety
/// net, and how soon it notices a dead connection.
const POLL: Duration = Duration::from_secs(1);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Shared {
    cache: RwLock<Cache>,
    revision_tx: watch::Sender<u64>,
    window: WindowLimits,
    kinds: Vec<&'static str>,
    target: PgTarget,
    /// Whether the database answered the follower the last time it asked.
    up: AtomicBool,
    /// Held by whoever moves the cache forward (the writer publishing a
    /// commit, the follower applying those of other servers), so that every
    /// change is applied once, in order.
    advance: tokio::sync::Mutex<()>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wake(&self, revision: u64) {
        self.revision_tx.send_if_modified(|r| {
            let changed = *r != revision;
            *r = revision;
            changed
        });
    }

    /// Applies rows read from the log; `false` when they do not follow on
    /// from the cache (the changes in between are compacted away).
    fn apply_rows(&self, rows: Vec<EventRow>) -> bool {
        let mut cache = self.write();
        let result = follow::apply_events(&mut cache, rows, &self.kinds, self.window);
        let revision = cache.revision;
        drop(cache);
        self.wake(revision);
        match result {
            Ok(_) => true,
            Err(gap) => {
                tracing::warn!(%gap, "this server fell behind the store's event log; loading it again");
                false
            }
        }
    }

    fn replace(&self, snapshot: db::Snapshot) {
        let cache = follow::fresh_cache(
            snapshot.revision,
            snapshot.objects,
            snapshot.events,
            &self.kinds,
            self.window,
        );
        let revision = cache.revision;
        *self.write() = cache;
        self.wake(revision);
    }

    fn publish(&self, overlay: Overlay, rev: u64, changes: Vec<Arc<Change>>) {
        self.write().apply(overlay, rev, changes, self.window);
        self.wake(rev);
    }

    fn set_up(&self, up: bool, why: &StoreError) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was && !up {
            tracing::warn!(error = %why, "the store's database cannot be reached; writes answer 503 until it returns");
        }
    }
}

/// Reads the log after the cache's revision through `client` and applies
/// it, page by page, until it is read to the end; `false` when the cache
/// must be loaded again. The caller holds [`Shared::advance`].
async fn catch_up(
    shared: &Shared,
    client: &impl GenericClient,
    statement: &Statement,
) -> Result<bool, tokio_postgres::Error> {
    loop {
        let after = shared.read().revision;
        let rows = db::events_after(client, statement, after, PAGE).await?;
        let full = rows.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        if !shared.apply_rows(rows) {
            return Ok(false);
        }
        if !full {
            return Ok(true);
        }
    }
}

struct WriteOp {
    op: Op,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// Cancels the store's tasks when the last handle goes.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Cheap to clone; all clones share one store. Its tasks stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteOp>,
    _stop: Arc<StopOnDrop>,
}

/// A store's state read from the database, ready for [`PgStore::start`].
pub struct PgLoaded {
    target: PgTarget,
    kinds: Vec<&'static str>,
    window: WindowLimits,
    cache: Cache,
}

impl PgLoaded {
    pub fn revision(&self) -> u64 {
        self.cache.revision
    }
}

impl PgStore {
    /// Connects, brings the schema up to date, loads the store and starts
    /// following it.
    pub async fn open(
        target: PgTarget,
        kinds: &[&'static str],
        opts: PgOptions,
    ) -> Result<Self, StoreError> {
        Ok(Self::start(Self::load(target, kinds, opts).await?))
    }

    /// The part of [`PgStore::open`] that talks to the database, on a
    /// connection of its own that is closed afterwards: it may run on
    /// another runtime than the store's.
    pub async fn load(
        target: PgTarget,
        kinds: &[&'static str],
        opts: PgOptions,
    ) -> Result<PgLoaded, StoreError> {
        let window = WindowLimits {
            events: opts.watch_window.max(1),
            bytes: opts.watch_window_bytes,
        };
        let (mut client, connection) = db::connect(&target).await?;
        let driver = tokio::spawn(connection.map(|_| ()));
        let loaded = async {
            db::migrate(&mut client).await?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| db::store_error("loading the store", &e))?;
            let snapshot = db::snapshot(&tx, window.events).await?;
            tx.commit()
                .await
                .map_err(|e| db::store_error("loading the store", &e))?;
            Ok::<_, StoreError>(snapshot)
        }
        .await;
        drop(client);
        let _ = driver.await;
        let s = loaded?;
        let cache = follow::fresh_cache(s.revision, s.objects, s.events, kinds, window);
        Ok(PgLoaded {
            target,
            kinds: kinds.to_vec(),
            window,
            cache,
        })
    }

    /// Starts the writer and the follower on the current runtime.
    pub fn start(loaded: PgLoaded) -> Self {
        let (revision_tx, _) = watch::channel(loaded.cache.revision);
        let shared = Arc::new(Shared {
            cache: RwLock::new(loaded.cache),
            revision_tx,
            window: loaded.window,
            kinds: loaded.kinds,
            target: loaded.target,
            up: AtomicBool::new(true),
            advance: tokio::sync::Mutex::new(()),
        });
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(writer(shared.clone(), rx));
        tokio::spawn(follower(shared.clone(), stop.clone()));
        Self {
            shared,
            writer: tx,
            _stop: Arc::new(StopOnDrop(stop)),
        }
    }

    /// Copies every object of `kinds` in `from` (another store, say a
    /// single server's SQLite) into the empty database at `target`, keeping
    /// their revisions and the store's revision, so that clients' cached
    /// revisions stay meaningful. The change history is not copied:
    /// watchers list again. Returns how many objects were copied.
    pub async fn import(
        target: &PgTarget,
        kinds: &[&'static str],
        from: &dyn Store,
    ) -> Result<usize, StoreError> {
        let (mut client, connection) = db::connect(target).await?;
        let driver = tokio::spawn(connection.map(|_| ()));
        let result = async {
            db::migrate(&mut client).await?;
            let revision = from.revision();
            let mut objects = Vec::new();
            for kind in kinds {
                let (_, items) = from.list(kind, &|_| true);
                for o in items {
                    let name = name_of(&o.body).ok_or_else(|| {
                        StoreError::Backend(format!("a stored {kind} object has no readable name"))
                    })?;
                    objects.push((*kind, name, o));
                }
            }
            let rows: Vec<(&str, &str, u64, &[u8])> = objects
                .iter()
                .map(|(kind, name, o)| (*kind, name.as_str(), o.rv, &o.body[..]))
                .collect();
            db::import(&mut client, &rows, revision).await?;
            Ok(rows.len())
        }
        .await;
        drop(client);
        let _ = driver.await;
        result
    }

    /// Where the store is, without the password.
    pub fn describe(&self) -> String {
        self.shared.target.describe()
    }
}

impl Store for PgStore {
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
            if !self.writable() {
                return Err(StoreError::Unavailable(
                    "the database cannot be reached".into(),
                ));
            }
            let (reply, rx) = oneshot::channel();
            let op = Op {
                kind,
                name,
                expect,
                proposal,
            };
            self.writer
                .send(WriteOp { op, reply })
                .await
                .map_err(|_| writer_gone())?;
            rx.await.map_err(|_| writer_gone())?
        })
    }

    fn writable(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }
}

/// `metadata.name` of a stored body.
fn name_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        metadata: Meta,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.metadata.name)
        .filter(|n| !n.is_empty())
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the store's writer has stopped".into())
}

/// The writer's connection and its statements.
struct WriterConn {
    client: Client,
    st: db::Writes,
}

async fn connect_writer(shared: &Shared) -> Result<WriterConn, StoreError> {
    let (client, connection) = db::connect(&shared.target).await?;
    tokio::spawn(connection.map(|_| ()));
    let st = db::Writes::prepare(&client)
        .await
        .map_err(|e| db::store_error("preparing the store's statements", &e))?;
    Ok(WriterConn { client, st })
}

/// Takes the writes queued at once into one transaction, batch after batch.
async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteOp>) {
    // Events in the database are deleted past the window every 1024
    // changes, so the log holds about one window.
    let mut since_prune = 0usize;
    let mut conn: Option<WriterConn> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|w| (w.op, w.reply)).unzip();
        let c = match conn.take() {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => connect_writer(&shared).await,
        };
        let outcome = match c {
            Err(e) => Err(e),
            Ok(mut c) => {
                let r = tokio::time::timeout(COMMIT_TIMEOUT, commit(&shared, &mut c, ops)).await;
                let r = r.unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(
                        "the database did not answer in time; the write's outcome is unknown"
                            .into(),
                    ))
                });
                // A connection that failed or timed out is not used again.
                if r.is_ok() {
                    conn = Some(c);
                }
                r
            }
        };
        match outcome {
            Ok((results, written)) => {
                since_prune += written;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    shared.set_up(false, &e);
                } else {
                    tracing::error!(error = %e, "store write failed; batch rolled back");
                }
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        if since_prune >= 1024
            && let Some(c) = &conn
        {
            since_prune = 0;
            let through = shared
                .read()
                .revision
                .saturating_sub(shared.window.events as u64);
            if let Err(e) = c.st.prune(&c.client, through).await {
                tracing::warn!(error = %db::store_error("pruning old events", &e), "will retry");
            }
        }
    }
}

/// Commits one batch: under the revision lock, brings the cache up to the
/// database, plans the batch against it, writes and commits, then
/// publishes. Returns each write's outcome and how many changes it made.
async fn commit(
    shared: &Shared,
    c: &mut WriterConn,
    ops: Vec<Op>,
) -> Result<(Vec<Result<Written, StoreError>>, usize), StoreError> {
    let err = |what: &'static str| move |e: tokio_postgres::Error| db::store_error(what, &e);
    let tx = c
        .client
        .transaction()
        .await
        .map_err(err("starting a transaction"))?;
    let locked: i64 = tx
        .query_one(&c.st.lock, &[])
        .await
        .map_err(err("locking the revision"))?
        .get(0);
    let locked = u64::try_from(locked).unwrap_or(0);
    let _advance = shared.advance.lock().await;
    // Nothing commits while the lock is held, so what the log holds now is
    // everything up to `locked`.
    let caught_up = catch_up(shared, &tx, &c.st.events_after)
        .await
        .map_err(err("reading the event log"))?;
    if !caught_up {
        let snapshot = db::snapshot(&tx, shared.window.events).await?;
        shared.replace(snapshot);
    }
    let at = shared.read().revision;
    if at != locked {
        return Err(StoreError::Backend(format!(
            "the database is at revision {locked} but this server has seen {at}; was it restored from a backup? restart the server"
        )));
    }
    let plan = plan::plan(&shared.read(), ops);
    if plan.events.is_empty() {
        tx.rollback().await.map_err(err("ending a transaction"))?;
        return Ok((plan.results, 0));
    }
    c.st.write(&tx, &plan).await.map_err(err("writing"))?;
    tx.commit().await.map_err(err("committing"))?;
    let written = plan.events.len();
    shared.publish(plan.overlay, plan.rev, plan.changes);
    Ok((plan.results, written))
}

/// Follows the log for commits of other servers until `stop`, reconnecting
/// whenever the connection is lost.
async fn follower(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = follow_connection(&shared) => r,
        };
        if let Err(e) = result {
            shared.set_up(false, &e);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection's worth of following: `LISTEN`, then catch up on every
/// notification and every [`POLL`]. Returns when the connection fails.
async fn follow_connection(shared: &Shared) -> Result<(), StoreError> {
    let (mut client, mut connection) = db::connect(&shared.target).await?;
    let (notify_tx, mut notified) = mpsc::channel::<()>(1);
    let _driver = AbortOnDrop(tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    // One pending wake-up covers any number of commits.
                    let _ = notify_tx.try_send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }));
    let err = |what: &'static str| move |e: tokio_postgres::Error| db::store_error(what, &e);
    client
        .batch_execute(&format!("LISTEN {}", db::CHANNEL))
        .await
        .map_err(err("listening for commits"))?;
    let statement = client
        .prepare(db::EVENTS_AFTER)
        .await
        .map_err(err("preparing the log query"))?;
    let mut first = true;
    loop {
        {
            let _advance = shared.advance.lock().await;
            let caught_up = catch_up(shared, &client, &statement)
                .await
                .map_err(err("reading the event log"))?;
            if !caught_up {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(err("loading the store"))?;
                let snapshot = db::snapshot(&tx, shared.window.events).await?;
                tx.commit().await.map_err(err("loading the store"))?;
                shared.replace(snapshot);
            }
        }
        if first {
            first = false;
            if !shared.up.swap(true, Ordering::Relaxed) {
                tracing::info!(store = %shared.target.describe(), "the store's database is back; caught up");
            }
        }
        tokio::select! {
            n = notified.recv() => if n.is_none() {
                return Err(StoreError::Unavailable("the connection to the database closed".into()));
            },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
