//! The resource store, behind the [`Store`] trait.
//!
//! A store keeps the current objects and a window of recent changes, hands out
//! one revision sequence across all kinds, and commits a write only if the
//! object is still as the writer last saw it ([`Expect`]). Reads (`get`,
//! `list`, `events_after`) are answered from memory and stay synchronous;
//! commits are asynchronous because they wait for the disk or the database.
//! Its errors ([`StoreError`]) say what went wrong in storage terms; turning
//! them into HTTP answers is the API's business (`crate::error`).
//!
//! [`SqliteStore`] is the embedded implementation; [`PgStore`] keeps the
//! same state in PostgreSQL, shared by several servers. `conformance` (with
//! the `conformance` feature) holds the behaviour every implementation must
//! show, as test cases any backend runs.

mod cache;
#[cfg(feature = "conformance")]
pub mod conformance;
mod pg;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

pub use pg::{PgEnv, PgOptions, PgStore, PgTarget, is_postgres_url, pgpass_lookup};
pub use sqlite::{DEFAULT_WATCH_WINDOW_BYTES, SqliteStore, StoreOptions, SyncMode};

/// Why a store operation failed. Nothing here knows about HTTP.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object's revision is not the one the write was computed against.
    #[error("{kind}/{name} is at revision {current}, not {expected}")]
    Conflict {
        kind: &'static str,
        name: String,
        expected: u64,
        current: u64,
    },
    #[error("{kind}/{name} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind}/{name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The changes after `requested` are no longer kept; `oldest` is the
    /// oldest revision a reader can still resume after.
    #[error("changes after revision {requested} are compacted; the oldest kept start is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    /// `requested` is beyond anything this store has committed.
    #[error("revision {requested} is newer than the store's current revision {current}")]
    TooNew { requested: u64, current: u64 },
    /// The backend failed; the message names the operation and the cause,
    /// never a credential.
    #[error("store backend: {0}")]
    Backend(String),
    /// The backend cannot be reached (a database that is down or
    /// restarting): the write did not happen, or its outcome is unknown and
    /// a watch will show it. Worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store was written by a newer herd: its schema version is beyond
    /// the migrations this one knows.
    #[error(
        "the store's schema version {found} is newer than this herd understands ({known}); upgrade herd"
    )]
    SchemaTooNew { found: u64, known: usize },
}

/// The migrations (indexes into a backend's numbered list of `known`) still
/// to run on a store at schema version `found`.
pub(crate) fn migrations_to_run(
    found: u64,
    known: usize,
) -> Result<std::ops::Range<usize>, StoreError> {
    match usize::try_from(found) {
        Ok(done) if done <= known => Ok(done..known),
        _ => Err(StoreError::SchemaTooNew { found, known }),
    }
}

/// Labels of a stored body, for selector matching.
pub(crate) fn labels_of(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        metadata: Meta,
    }
    serde_json::from_slice::<Envelope>(body)
        .map(|e| e.metadata.labels)
        .map_err(|e| e.to_string())
}

/// What a commit resolves to.
pub type CommitFuture<'a> = Pin<Box<dyn Future<Output = Result<Written, StoreError>> + Send + 'a>>;

/// Storage for resources: the operations routes and watches use.
///
/// Implementations keep the current objects and recent changes in memory, so
/// reads never wait; they publish a commit (cache, then [`Store::subscribe`])
/// only once it is durable, and answer the committer after that.
pub trait Store: Send + Sync {
    /// The revision of the latest published commit.
    fn revision(&self) -> u64;

    /// Notified with the new revision after every published commit.
    fn subscribe(&self) -> watch::Receiver<u64>;

    fn get(&self, kind: &str, name: &str) -> Option<Arc<StoredObject>>;

    /// All objects of a kind (sorted by name) passing `keep`, and the
    /// revision they were read at.
    fn list(
        &self,
        kind: &str,
        keep: &dyn Fn(&StoredObject) -> bool,
    ) -> (u64, Vec<Arc<StoredObject>>);

    /// Up to `max` changes (of every kind) after revision `after`, in
    /// revision order, with no gap. [`StoreError::Compacted`] when some of
    /// them are no longer kept, [`StoreError::TooNew`] when `after` is
    /// beyond the current revision.
    fn events_after(&self, after: u64, max: usize) -> Result<Vec<Arc<Change>>, StoreError>;

    /// How many changes the window of recent changes holds, and the bytes
    /// they take (see [`Change::weight`]).
    fn window_usage(&self) -> WindowUsage;

    /// Commits `proposal` if the object is still as `expect` says, durably,
    /// then publishes it. [`StoreError::Conflict`], [`StoreError::NotFound`]
    /// and [`StoreError::AlreadyExists`] mean the object is no longer as
    /// expected: read it again, recompute, retry.
    fn commit(
        &self,
        kind: &'static str,
        name: String,
        expect: Expect,
        proposal: Proposal,
    ) -> CommitFuture<'_>;

    /// Whether commits can currently succeed.
    fn writable(&self) -> bool;
}

/// Labels of an object, shared between the stored object and the changes
/// that carry them, so a change does not copy its object's label map.
pub type Labels = Arc<BTreeMap<String, String>>;

/// One object as stored: its serialized JSON (with `resourceVersion` set), and
/// its labels for selector matching without parsing.
#[derive(Debug)]
pub struct StoredObject {
    pub rv: u64,
    pub body: Bytes,
    pub labels: Labels,
}

/// The size of the window of recent changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowUsage {
    pub events: usize,
    pub bytes: usize,
}

/// How a watch reports a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One committed change, pre-serialized as the NDJSON line every watcher
/// sends, so a hundred watchers cost one serialization.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub type_: ChangeType,
    pub labels: Labels,
    /// For a `MODIFIED` change that changed the labels, the labels before:
    /// a watch with a selector then sees the object enter (`ADDED`) or
    /// leave (`DELETED`) its selection. `None` when they did not change (or
    /// are unknown: changes reloaded from disk after a restart).
    pub prev_labels: Option<Labels>,
    pub line: Bytes,
}

/// Bytes a label map is counted as: its text plus the map's per-entry
/// bookkeeping, an estimate that errs on the large side.
pub fn labels_weight(labels: &BTreeMap<String, String>) -> usize {
    const PER_ENTRY: usize = 64;
    labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + PER_ENTRY)
        .sum()
}

impl Change {
    /// Bytes this change holds in memory, counted against the window's byte
    /// bound: its line and both label maps (counted whole even when shared
    /// with the stored object, since the change keeps them alive once the
    /// object moves on).
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 128;
        OVERHEAD
            + self.line.len()
            + labels_weight(&self.labels)
            + self.prev_labels.as_deref().map_or(0, labels_weight)
    }

    /// The line a watch with `selector` is sent for this change, if any:
    /// Kubernetes' rule, where an object whose change moves it into the
    /// selection is `ADDED` and one that moves out is `DELETED` (with its
    /// new state).
    pub fn line_for(&self, selector: &herd_api::LabelSelector) -> Option<Bytes> {
        let now = selector.matches(&self.labels);
        let before = match (&self.prev_labels, self.type_) {
            (Some(prev), ChangeType::Modified) => selector.matches(prev),
            _ => now,
        };
        match (before, now) {
            (true, true) => Some(self.line.clone()),
            (false, true) => Some(retype(&self.line, self.type_, ChangeType::Added)),
            (true, false) => Some(retype(&self.line, self.type_, ChangeType::Deleted)),
            (false, false) => None,
        }
    }
}

/// `line` (of type `from`, as [`event_line`] writes it) as type `to`.
fn retype(line: &Bytes, from: ChangeType, to: ChangeType) -> Bytes {
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
pub fn event_line(type_: ChangeType, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 32);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(type_.as_str().as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(body);
    b.extend_from_slice(b"}\n");
    b.freeze()
}

/// The placeholder a proposed body carries where the store writes the new
/// revision. Bodies are serialized before the store assigns the revision, so
/// all JSON work happens on the request's own task and the store's writer
/// only splices bytes and talks to its backend.
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
    pub fn new(body: Bytes) -> Result<Self, MissingPlaceholder> {
        let at = body
            .windows(PLACEHOLDER_FIELD.len())
            .position(|w| w == PLACEHOLDER_FIELD)
            .ok_or(MissingPlaceholder)?;
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
        labels: Labels,
    },
    /// `template` is the final state of the object, shown to watchers.
    Delete {
        template: Template,
    },
}

/// What a write did.
#[derive(Debug)]
pub struct Written {
    pub object: Arc<StoredObject>,
    pub created: bool,
    pub deleted: bool,
    pub unchanged: bool,
}

/// A proposed body without the [`REVISION_PLACEHOLDER`] where its
/// `resourceVersion` belongs: a bug in the caller, not bad input.
#[derive(Debug, thiserror::Error)]
#[error("a proposed object carries no resourceVersion placeholder")]
pub struct MissingPlaceholder;

/// Whether a write computed against `expect` may commit over `current`
/// (`deleting` says whether it removes the object).
pub fn check_expect(
    kind: &'static str,
    name: &str,
    expect: Expect,
    current: Option<&StoredObject>,
    deleting: bool,
) -> Result<(), StoreError> {
    match (expect, current) {
        (Expect::Absent, None) if !deleting => Ok(()),
        (Expect::Absent | Expect::At(_), None) => Err(StoreError::NotFound {
            kind,
            name: name.to_owned(),
        }),
        (Expect::Absent, Some(_)) => Err(StoreError::AlreadyExists {
            kind,
            name: name.to_owned(),
        }),
        (Expect::At(rv), Some(c)) if c.rv == rv => Ok(()),
        (Expect::At(rv), Some(c)) => Err(StoreError::Conflict {
            kind,
            name: name.to_owned(),
            expected: rv,
            current: c.rv,
        }),
    }
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
                     prev: Option<&BTreeMap<String, String>>| Change {
            rv: 1,
            kind: "Node",
            type_,
            labels: Arc::new(now.clone()),
            prev_labels: prev.cloned().map(Arc::new),
            line: event_line(type_, b"{\"x\":1}"),
        };
        let line = |e: Change| {
            e.line_for(&sel)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let typed = |t: &str| Some(format!("{{\"type\":\"{t}\",\"object\":{{\"x\":1}}}}\n"));
        for (name, e, want) in [
            (
                "added, matching",
                event(ChangeType::Added, &gpu, None),
                typed("ADDED"),
            ),
            (
                "added, not matching",
                event(ChangeType::Added, &none, None),
                None,
            ),
            (
                "modified inside",
                event(ChangeType::Modified, &gpu, None),
                typed("MODIFIED"),
            ),
            (
                "modified outside",
                event(ChangeType::Modified, &none, None),
                None,
            ),
            (
                "moved in",
                event(ChangeType::Modified, &gpu, Some(&none)),
                typed("ADDED"),
            ),
            (
                "moved out",
                event(ChangeType::Modified, &none, Some(&gpu)),
                typed("DELETED"),
            ),
            (
                "deleted, matching",
                event(ChangeType::Deleted, &gpu, None),
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

    #[test]
    fn migrations_run_from_the_stored_version_and_refuse_a_newer_store() {
        for (found, known, want) in [
            (0, 1, Ok(0..1)),
            (1, 1, Ok(1..1)),
            (1, 3, Ok(1..3)),
            (2, 1, Err(StoreError::SchemaTooNew { found: 2, known: 1 })),
            (
                u64::MAX,
                1,
                Err(StoreError::SchemaTooNew {
                    found: u64::MAX,
                    known: 1,
                }),
            ),
        ] {
            assert_eq!(migrations_to_run(found, known), want, "{found} of {known}");
        }
    }

    #[test]
    fn check_expect_table() {
        let at = |rv| StoredObject {
            rv,
            body: Bytes::new(),
            labels: Labels::default(),
        };
        let (k, n) = ("nodes", "a");
        let not_found = Err(StoreError::NotFound {
            kind: k,
            name: n.into(),
        });
        let exists = Err(StoreError::AlreadyExists {
            kind: k,
            name: n.into(),
        });
        let conflict = Err(StoreError::Conflict {
            kind: k,
            name: n.into(),
            expected: 4,
            current: 5,
        });
        for (case, expect, current, deleting, want) in [
            ("create", Expect::Absent, None, false, Ok(())),
            (
                "create over existing",
                Expect::Absent,
                Some(at(5)),
                false,
                exists.clone(),
            ),
            (
                "delete of missing",
                Expect::Absent,
                None,
                true,
                not_found.clone(),
            ),
            (
                "delete existing, unread",
                Expect::Absent,
                Some(at(5)),
                true,
                exists,
            ),
            (
                "update at current",
                Expect::At(5),
                Some(at(5)),
                false,
                Ok(()),
            ),
            (
                "delete at current",
                Expect::At(5),
                Some(at(5)),
                true,
                Ok(()),
            ),
            (
                "update, stale",
                Expect::At(4),
                Some(at(5)),
                false,
                conflict.clone(),
            ),
            ("delete, stale", Expect::At(4), Some(at(5)), true, conflict),
            (
                "update of missing",
                Expect::At(4),
                None,
                false,
                not_found.clone(),
            ),
            (
                "delete of missing at rv",
                Expect::At(4),
                None,
                true,
                not_found,
            ),
        ] {
            assert_eq!(
                check_expect(k, n, expect, current.as_ref(), deleting),
                want,
                "{case}"
            );
        }
    }
}
