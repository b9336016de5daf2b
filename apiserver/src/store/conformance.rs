//! What every [`Store`] must do, written against the trait so each
//! implementation runs the same cases.
//!
//! Each case takes an [`Open`]: something that opens a store holding
//! [`KINDS`] and keeping `window` changes for watchers. Most cases want a new,
//! empty store from every call; [`restart_keeps_everything`] and
//! [`kill9_durability`] want every call to open the same one again.
//! A case panics (with what went wrong) when the store misbehaves.
//!
//! A backend's tests call every case; `tests/it/store_conformance.rs` does it
//! for SQLite, including how [`kill9_durability`] re-runs the test binary as
//! the writer process it kills.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Change, ChangeType, Expect, Proposal, REVISION_PLACEHOLDER, Store, StoreError};
use super::{StoredObject, Template, Written};

/// The kinds the cases write; a store under test must hold both.
pub const KINDS: &[&str] = &["nodes", "modelassignments"];
const NODES: &str = "nodes";
const ASSIGNMENTS: &str = "modelassignments";

/// Opens a store for a case, keeping `window` changes for watchers.
pub trait Open {
    fn open(&self, window: usize) -> impl Future<Output = Arc<dyn Store>>;
}

impl<F, Fut> Open for F
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    fn open(&self, window: usize) -> impl Future<Output = Arc<dyn Store>> {
        self(window)
    }
}

/// A window large enough that no case outgrows it.
const WIDE: usize = 10_000;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn template(name: &str, labels: &BTreeMap<String, String>, n: u64) -> Template {
    let body = json!({
        "apiVersion": "herd/v1",
        "kind": "Thing",
        "metadata": {"name": name, "resourceVersion": REVISION_PLACEHOLDER, "labels": labels},
        "spec": {"n": n},
    });
    let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
    Template::new(Bytes::from(bytes)).expect("the body carries the placeholder")
}

fn put(name: &str, labels: &BTreeMap<String, String>, n: u64) -> Proposal {
    Proposal::Put {
        template: template(name, labels, n),
        labels: Arc::new(labels.clone()),
    }
}

fn delete(name: &str, n: u64) -> Proposal {
    Proposal::Delete {
        template: template(name, &BTreeMap::new(), n),
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("stored bodies are JSON")
}

/// `spec.n` and `metadata.resourceVersion` of a stored body.
fn n_and_rv(obj: &StoredObject) -> (u64, String) {
    let v = json_of(&obj.body);
    (
        v["spec"]["n"].as_u64().expect("spec.n"),
        v["metadata"]["resourceVersion"]
            .as_str()
            .expect("resourceVersion")
            .to_owned(),
    )
}

fn name_of(obj: &StoredObject) -> String {
    json_of(&obj.body)["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_owned()
}

async fn must_commit(
    store: &dyn Store,
    kind: &'static str,
    name: &str,
    expect: Expect,
    proposal: Proposal,
) -> Written {
    store
        .commit(kind, name.to_owned(), expect, proposal)
        .await
        .unwrap_or_else(|e| panic!("committing {kind}/{name}: {e}"))
}

async fn create_one(store: &dyn Store, kind: &'static str, name: &str, n: u64) -> Written {
    must_commit(
        store,
        kind,
        name,
        Expect::Absent,
        put(name, &labels(&[]), n),
    )
    .await
}

/// A create is stored at the next revision, with that revision in its body,
/// and wakes subscribers.
pub async fn create(new: impl Open) {
    let store = new.open(WIDE).await;
    let before = store.revision();
    let mut revisions = store.subscribe();
    revisions.borrow_and_update();
    let w = create_one(&*store, NODES, "a", 1).await;
    assert!(w.created && !w.deleted && !w.unchanged, "{w:?}");
    assert_eq!(w.object.rv, before + 1, "a create takes the next revision");
    assert_eq!(store.revision(), before + 1);
    assert_eq!(n_and_rv(&w.object), (1, (before + 1).to_string()));
    let got = store
        .get(NODES, "a")
        .expect("the created object is readable");
    assert_eq!(got.rv, w.object.rv);
    assert_eq!(got.body, w.object.body);
    assert!(store.get(ASSIGNMENTS, "a").is_none(), "kinds are separate");
    assert!(
        revisions.has_changed().unwrap_or(false),
        "subscribers woken"
    );
    assert_eq!(*revisions.borrow(), before + 1);
}

/// Creating an object that exists fails and changes nothing.
pub async fn create_when_exists(new: impl Open) {
    let store = new.open(WIDE).await;
    let first = create_one(&*store, NODES, "a", 1).await;
    let revision = store.revision();
    let err = store
        .commit(NODES, "a".into(), Expect::Absent, put("a", &labels(&[]), 2))
        .await
        .expect_err("a second create must fail");
    assert_eq!(
        err,
        StoreError::AlreadyExists {
            kind: NODES,
            name: "a".into()
        }
    );
    assert_eq!(
        store.revision(),
        revision,
        "a refused write takes no revision"
    );
    let got = store.get(NODES, "a").expect("still there");
    assert_eq!(got.body, first.object.body);
}

/// An update computed against an old revision is refused with both
/// revisions, and the object stays as it was.
pub async fn update_stale(new: impl Open) {
    let store = new.open(WIDE).await;
    let v1 = create_one(&*store, NODES, "a", 1).await;
    let v2 = must_commit(
        &*store,
        NODES,
        "a",
        Expect::At(v1.object.rv),
        put("a", &labels(&[]), 2),
    )
    .await;
    let err = store
        .commit(
            NODES,
            "a".into(),
            Expect::At(v1.object.rv),
            put("a", &labels(&[]), 3),
        )
        .await
        .expect_err("a stale update must fail");
    assert_eq!(
        err,
        StoreError::Conflict {
            kind: NODES,
            name: "a".into(),
            expected: v1.object.rv,
            current: v2.object.rv,
        }
    );
    assert_eq!(store.revision(), v2.object.rv);
    let got = store.get(NODES, "a").expect("still there");
    assert_eq!(n_and_rv(&got), (2, v2.object.rv.to_string()));
}

/// An update at the current revision replaces the object. Unconditional
/// updates (read, compute, commit at what was read, retry on conflict) from
/// many tasks at once lose none of their increments.
pub async fn update_unconditional(new: impl Open) {
    let store = new.open(WIDE).await;
    let v1 = create_one(&*store, NODES, "a", 0).await;
    let v2 = must_commit(
        &*store,
        NODES,
        "a",
        Expect::At(v1.object.rv),
        put("a", &labels(&[]), 1),
    )
    .await;
    assert!(!v2.created && !v2.deleted, "{v2:?}");
    assert!(v2.object.rv > v1.object.rv);
    assert_eq!(n_and_rv(&v2.object), (1, v2.object.rv.to_string()));

    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let cur = store.get(NODES, "a").expect("exists");
                    let (n, _) = n_and_rv(&cur);
                    let proposal = put("a", &labels(&[]), n + 1);
                    match store
                        .commit(NODES, "a".into(), Expect::At(cur.rv), proposal)
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.expect("updater task");
    }
    let got = store.get(NODES, "a").expect("exists");
    assert_eq!(n_and_rv(&got).0, 1 + TASKS * EACH, "no update was lost");
}

/// A delete removes the object and reports its final state at the delete's
/// revision; deleting what is not there is `NotFound`.
pub async fn delete_and_delete_missing(new: impl Open) {
    let store = new.open(WIDE).await;
    let a = create_one(&*store, NODES, "a", 1).await;
    let w = must_commit(&*store, NODES, "a", Expect::At(a.object.rv), delete("a", 1)).await;
    assert!(w.deleted && !w.created, "{w:?}");
    assert_eq!(w.object.rv, a.object.rv + 1);
    assert_eq!(n_and_rv(&w.object).1, w.object.rv.to_string());
    assert!(store.get(NODES, "a").is_none(), "deleted objects are gone");
    assert!(store.list(NODES, &|_| true).1.is_empty());
    let revision = store.revision();
    for expect in [Expect::At(w.object.rv), Expect::Absent] {
        let err = store
            .commit(NODES, "a".into(), expect, delete("a", 1))
            .await
            .expect_err("deleting a missing object must fail");
        assert_eq!(
            err,
            StoreError::NotFound {
                kind: NODES,
                name: "a".into()
            },
            "{expect:?}"
        );
    }
    assert_eq!(
        store.revision(),
        revision,
        "a refused delete takes no revision"
    );
    // The name is free again.
    let again = create_one(&*store, NODES, "a", 2).await;
    assert!(again.created);
}

/// A list holds one kind, sorted by name, filtered, at the current revision.
pub async fn list(new: impl Open) {
    let store = new.open(WIDE).await;
    let gpu = labels(&[("gpu", "nvidia")]);
    for (name, l) in [("c", &gpu), ("a", &labels(&[])), ("b", &gpu)] {
        must_commit(&*store, NODES, name, Expect::Absent, put(name, l, 0)).await;
    }
    create_one(&*store, ASSIGNMENTS, "z", 0).await;
    let (rv, all) = store.list(NODES, &|_| true);
    assert_eq!(rv, store.revision());
    let names: Vec<String> = all.iter().map(|o| name_of(o)).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let (_, picked) = store.list(NODES, &|o| o.labels.contains_key("gpu"));
    let names: Vec<String> = picked.iter().map(|o| name_of(o)).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(*picked[0].labels, gpu, "labels are kept for selectors");
    let (_, other) = store.list(ASSIGNMENTS, &|_| true);
    assert_eq!(other.len(), 1);
}

/// A change as a watcher reads it: revision, kind, type, and its line's
/// type, object name and object resourceVersion.
type Seen<'a> = (u64, &'a str, ChangeType, (String, String, String));

fn parse_line(change: &Change) -> (String, String, String) {
    let v = json_of(&change.line);
    assert_eq!(
        change.line.last(),
        Some(&b'\n'),
        "a line ends with a newline"
    );
    (
        v["type"].as_str().expect("type").to_owned(),
        v["object"]["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned(),
        v["object"]["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_owned(),
    )
}

/// The changes after a revision come in order, of every kind, with their
/// type, labels and watch line; deletes included; `max` is respected.
pub async fn watch_from_revision(new: impl Open) {
    let store = new.open(WIDE).await;
    create_one(&*store, NODES, "before", 0).await;
    let start = store.revision();
    let gpu = labels(&[("gpu", "nvidia")]);
    let a = must_commit(&*store, NODES, "a", Expect::Absent, put("a", &gpu, 1)).await;
    let m = create_one(&*store, ASSIGNMENTS, "m", 1).await;
    let a2 = must_commit(
        &*store,
        NODES,
        "a",
        Expect::At(a.object.rv),
        put("a", &labels(&[]), 2),
    )
    .await;
    must_commit(
        &*store,
        NODES,
        "a",
        Expect::At(a2.object.rv),
        delete("a", 2),
    )
    .await;
    must_commit(
        &*store,
        ASSIGNMENTS,
        "m",
        Expect::At(m.object.rv),
        delete("m", 1),
    )
    .await;

    let changes = store.events_after(start, 100).expect("within the window");
    let seen: Vec<Seen> = changes
        .iter()
        .map(|c| (c.rv, c.kind, c.type_, parse_line(c)))
        .collect();
    let want = |i: u64, kind, type_: ChangeType, name: &str| {
        let rv = start + i;
        (
            rv,
            kind,
            type_,
            (type_.as_str().to_owned(), name.to_owned(), rv.to_string()),
        )
    };
    assert_eq!(
        seen,
        vec![
            want(1, NODES, ChangeType::Added, "a"),
            want(2, ASSIGNMENTS, ChangeType::Added, "m"),
            want(3, NODES, ChangeType::Modified, "a"),
            want(4, NODES, ChangeType::Deleted, "a"),
            want(5, ASSIGNMENTS, ChangeType::Deleted, "m"),
        ]
    );
    assert_eq!(*changes[0].labels, gpu);
    assert_eq!(
        changes[2].prev_labels.as_deref(),
        Some(&gpu),
        "a change that moves labels says what they were"
    );
    assert_eq!(*changes[2].labels, labels(&[]));
    assert_eq!(
        *changes[3].labels,
        labels(&[]),
        "a delete carries the last labels"
    );

    let two = store.events_after(start, 2).expect("within the window");
    assert_eq!(
        two.iter().map(|c| c.rv).collect::<Vec<_>>(),
        [start + 1, start + 2]
    );
    let tail = store
        .events_after(start + 3, 100)
        .expect("within the window");
    assert_eq!(
        tail.iter().map(|c| c.rv).collect::<Vec<_>>(),
        [start + 4, start + 5]
    );
    let none = store.events_after(store.revision(), 100).expect("current");
    assert!(none.is_empty(), "nothing after the current revision");
}

/// Changes older than the window are gone, with the oldest resumable
/// revision in the error; from there on everything is served.
pub async fn compaction(new: impl Open) {
    const WINDOW: usize = 4;
    let store = new.open(WINDOW).await;
    let start = store.revision();
    for i in 0..10 {
        create_one(&*store, NODES, &format!("n{i}"), i).await;
    }
    let revision = store.revision();
    assert_eq!(revision, start + 10);
    let err = store
        .events_after(start, 100)
        .expect_err("changes beyond the window are compacted");
    let StoreError::Compacted { requested, oldest } = err else {
        panic!("expected Compacted, got {err:?}");
    };
    assert_eq!(requested, start);
    assert!(
        oldest > start && oldest <= revision - WINDOW as u64,
        "oldest {oldest} must lie between {start} and {} (window {WINDOW})",
        revision - WINDOW as u64
    );
    let kept = store.events_after(oldest, 100).expect("the oldest is kept");
    let rvs: Vec<u64> = kept.iter().map(|c| c.rv).collect();
    assert_eq!(rvs, ((oldest + 1)..=revision).collect::<Vec<_>>());
    assert!(matches!(
        store.events_after(oldest - 1, 100),
        Err(StoreError::Compacted { .. })
    ));
    // Compaction drops changes, never objects.
    assert_eq!(store.list(NODES, &|_| true).1.len(), 10);
}

/// A revision beyond the store's is refused, naming the current one.
pub async fn too_new(new: impl Open) {
    let store = new.open(WIDE).await;
    create_one(&*store, NODES, "a", 0).await;
    let current = store.revision();
    assert_eq!(
        store.events_after(current + 1, 10).expect_err("too new"),
        StoreError::TooNew {
            requested: current + 1,
            current
        }
    );
}

/// One revision sequence across kinds: concurrent writes of both kinds get
/// distinct revisions, the log holds each once, contiguous and in order.
pub async fn revisions_increase_across_kinds(new: impl Open) {
    let store = new.open(WIDE).await;
    let start = store.revision();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let kind = if t % 2 == 0 { NODES } else { ASSIGNMENTS };
            let mut rvs = Vec::new();
            for i in 0..20 {
                let w = create_one(&*store, kind, &format!("t{t}-{i}"), i).await;
                rvs.push(w.object.rv);
            }
            rvs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let rvs = t.await.expect("writer task");
        assert!(
            rvs.windows(2).all(|w| w[0] < w[1]),
            "one task's writes in order"
        );
        all.extend(rvs);
    }
    all.sort_unstable();
    let want: Vec<u64> = ((start + 1)..=(start + 160)).collect();
    assert_eq!(all, want, "every write got its own revision, with no gap");
    let logged: Vec<u64> = store
        .events_after(start, 1000)
        .expect("within the window")
        .iter()
        .map(|c| c.rv)
        .collect();
    assert_eq!(logged, want);
}

/// Closing and opening the store again keeps every object, the revision and
/// the change log; revisions go on from where they were.
pub async fn restart_keeps_everything(open_same: impl Open) {
    let store = open_same.open(WIDE).await;
    let start = store.revision();
    let a = create_one(&*store, NODES, "a", 1).await;
    create_one(&*store, ASSIGNMENTS, "m", 1).await;
    must_commit(
        &*store,
        NODES,
        "a",
        Expect::At(a.object.rv),
        put("a", &labels(&[("x", "y")]), 2),
    )
    .await;
    create_one(&*store, NODES, "gone", 1).await;
    let gone = store.get(NODES, "gone").expect("created").rv;
    must_commit(&*store, NODES, "gone", Expect::At(gone), delete("gone", 1)).await;
    let revision = store.revision();
    let (_, before) = store.list(NODES, &|_| true);
    let before: Vec<(u64, Bytes)> = before.iter().map(|o| (o.rv, o.body.clone())).collect();
    drop(store);

    let store = open_same.open(WIDE).await;
    assert_eq!(store.revision(), revision);
    let (_, after) = store.list(NODES, &|_| true);
    let after: Vec<(u64, Bytes)> = after.iter().map(|o| (o.rv, o.body.clone())).collect();
    assert_eq!(after, before);
    assert_eq!(
        *store.get(NODES, "a").expect("a").labels,
        labels(&[("x", "y")]),
        "labels are restored"
    );
    let changes = store.events_after(start, 100).expect("the log survives");
    let types: Vec<ChangeType> = changes.iter().map(|c| c.type_).collect();
    use ChangeType::{Added, Deleted, Modified};
    assert_eq!(types, [Added, Added, Modified, Added, Deleted]);
    let next = create_one(&*store, NODES, "after", 1).await;
    assert_eq!(next.object.rv, revision + 1);
}

/// How many acknowledged writes the parent waits for before the kill.
const KILL_AFTER_ACKS: usize = 400;
const ACK: &str = "herd-store-ack ";

/// The child side of [`kill9_durability`]: writes to `store` from several
/// tasks and prints one line to stdout for every acknowledged write, until
/// killed (or a minute passes, so an orphan does not live on).
pub async fn kill9_child(store: Arc<dyn Store>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let kind = if t % 2 == 0 { NODES } else { ASSIGNMENTS };
            let counter = format!("t{t}");
            let mut at = create_one(&*store, kind, &counter, 0).await.object.rv;
            ack(kind, &counter, at, 0);
            for i in 1u64.. {
                if Instant::now() > deadline {
                    return;
                }
                let name = format!("t{t}-{i}");
                let w = create_one(&*store, kind, &name, i).await;
                ack(kind, &name, w.object.rv, i);
                let w = must_commit(
                    &*store,
                    kind,
                    &counter,
                    Expect::At(at),
                    put(&counter, &labels(&[]), i),
                )
                .await;
                at = w.object.rv;
                ack(kind, &counter, at, i);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn ack(kind: &str, name: &str, rv: u64, n: u64) {
    let mut out = std::io::stdout().lock();
    // The parent counts only what reached it; a lost line just means it
    // checks fewer writes.
    let _ = writeln!(out, "{ACK}{kind} {name} {rv} {n}");
    let _ = out.flush();
}

/// An acknowledged write: kind, name, revision and `spec.n`.
type Acked = (String, String, u64, u64);

fn parse_ack(line: &str) -> Option<Acked> {
    let at = line.find(ACK)?;
    let mut parts = line[at + ACK.len()..].split_whitespace();
    let kind = parts.next()?.to_owned();
    let name = parts.next()?.to_owned();
    let rv = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    Some((kind, name, rv, n))
}

/// Every write acknowledged before `kill -9` is there after a reopen.
/// `child` runs [`kill9_child`] in another process against the store
/// `open_same` opens; this waits for a stream of acknowledgements, kills the
/// child with SIGKILL mid-stream, opens the store again and looks for each.
pub async fn kill9_durability(mut child: Command, open_same: impl Open) {
    let mut proc = child
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the writer process");
    let stdout = proc.stdout.take().expect("piped stdout");
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let reader = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = parse_ack(&line) {
                    acked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(a);
                }
            }
        })
    };
    let count = || {
        acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < KILL_AFTER_ACKS && Instant::now() < deadline {
        if let Ok(Some(status)) = proc.try_wait() {
            panic!(
                "the writer process exited ({status}) after {} acks",
                count()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no close.
    proc.kill().expect("kill -9 the writer");
    proc.wait().expect("reap the writer");
    reader.join().expect("the ack reader");
    let acked = Arc::try_unwrap(acked)
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .unwrap_or_default();
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "only {} writes were acknowledged in 30 s",
        acked.len()
    );
    eprintln!("{} writes acknowledged before kill -9", acked.len());

    let store = open_same.open(WIDE).await;
    let mut last: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for (kind, name, rv, n) in &acked {
        let e = last.entry((kind.clone(), name.clone())).or_insert((0, 0));
        *e = (*e).max((*rv, *n));
    }
    let top = acked.iter().map(|a| a.2).max().unwrap_or(0);
    assert!(
        store.revision() >= top,
        "revision {} is behind acknowledged {top}",
        store.revision()
    );
    for ((kind, name), (rv, n)) in &last {
        let obj = store
            .get(kind, name)
            .unwrap_or_else(|| panic!("{kind}/{name} was acknowledged but is gone after kill -9"));
        let (stored_n, _) = n_and_rv(&obj);
        assert!(
            obj.rv >= *rv && stored_n >= *n,
            "{kind}/{name}: acknowledged revision {rv} (n={n}), found {} (n={stored_n})",
            obj.rv
        );
    }
    // The store takes writes again, after everything acknowledged.
    let w = create_one(&*store, NODES, "after-kill", 0).await;
    assert!(w.object.rv > top);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_lines_are_found_after_test_harness_output() {
        assert_eq!(
            parse_ack("test it::x ... herd-store-ack nodes t1-4 17 4"),
            Some(("nodes".into(), "t1-4".into(), 17, 4))
        );
        assert_eq!(parse_ack("running 1 test"), None);
        assert_eq!(parse_ack("herd-store-ack nodes t1 x 4"), None);
    }
}
