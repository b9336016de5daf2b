//! A watch that survives: list, watch from the list's revision, resume after
//! a dropped stream, relist when the server no longer has the history.
//!
//! The decisions live in `Machine`, a pure state machine fed with the
//! outcome of each request; [`watcher`] is the thin I/O loop around it.
//!
//! | state          | outcome                           | emits               | next                    |
//! |----------------|-----------------------------------|---------------------|-------------------------|
//! | `NeedList`     | list ok at revision R             | `Restarted(items)`  | `NeedWatch{R}`          |
//! | `NeedList`     | list failed                       | `Err`               | `NeedList` (backoff)    |
//! | `NeedWatch{R}` | watch answered 2xx                | —                   | `Watching{R}`           |
//! | `NeedWatch{R}` | watch failed: 410                 | `Err`               | `NeedList` (backoff)    |
//! | `NeedWatch{R}` | watch failed: other               | `Err`               | `NeedWatch{R}` (backoff)|
//! | `Watching{R}`  | ADDED/MODIFIED/DELETED at R'      | `Applied`/`Deleted` | `Watching{R'}`          |
//! | `Watching{R}`  | BOOKMARK at R'                    | —                   | `Watching{R'}`          |
//! | `Watching{R}`  | ERROR 410                         | `Err`               | `NeedList` (backoff)    |
//! | `Watching{R}`  | stream broke, other ERROR, idle   | `Err`               | `NeedWatch{R}` (backoff)|
//! | `Watching{R}`  | stream ended cleanly              | —                   | `NeedWatch{R}` (at once if it delivered anything) |
//!
//! "Backoff" counts consecutive failures; a successful list or any item
//! read from a watch resets it.

use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use herd_api::{ObjectList, Resource, WatchEvent};

use crate::api::{ListParams, WatchParams, WatchStream};
use crate::backoff::Backoff;
use crate::{Api, Error};

/// What a watcher tells its consumer.
///
/// Consumers keep a cache by name: `Restarted` replaces all of it (objects
/// deleted while the watcher was away are simply absent), `Applied` inserts
/// or overwrites, `Deleted` removes. After a resumed watch the same object
/// may be `Applied` again; applying is idempotent.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A (re)list: the complete set of objects at one revision.
    Restarted(Vec<K>),
    /// An object was created or changed.
    Applied(K),
    /// An object was deleted; its last state.
    Deleted(K),
}

/// How a watcher runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub label_selector: Option<String>,
    /// Between failed requests; [`Backoff::WATCH`] unless set. Its `max_tries` is not
    /// read: a watcher never gives up.
    pub backoff: Backoff,
    /// A watch that sends nothing for this long is taken for dead and
    /// resumed. Keep it several times the server's bookmark interval.
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            label_selector: None,
            backoff: Backoff::WATCH,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

impl Config {
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = self.backoff.between(base, cap);
        self
    }
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// The next request the watcher makes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    List,
    /// Open a watch from this revision (empty: from now, with synthetic adds).
    Watch(String),
    /// Read the next item of the open watch.
    Poll,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    NeedList,
    NeedWatch { rv: String },
    Watching { rv: String, got_item: bool },
}

/// The watcher's decisions, without I/O: feed it the outcome of the
/// request [`action`](Self::action) asked for; it answers with what to
/// tell the consumer.
#[derive(Clone, Debug)]
struct Machine {
    phase: Phase,
    failures: u32,
}

impl Machine {
    fn new() -> Self {
        Self {
            phase: Phase::NeedList,
            failures: 0,
        }
    }

    fn action(&self) -> Action {
        match &self.phase {
            Phase::NeedList => Action::List,
            Phase::NeedWatch { rv } => Action::Watch(rv.clone()),
            Phase::Watching { .. } => Action::Poll,
        }
    }

    /// Consecutive failures so far: the backoff before the next request.
    fn failures(&self) -> u32 {
        self.failures
    }

    /// The revision a resumed watch would start from.
    fn resource_version(&self) -> Option<&str> {
        match &self.phase {
            Phase::NeedList => None,
            Phase::NeedWatch { rv } | Phase::Watching { rv, .. } => Some(rv),
        }
    }

    fn listed<K: Resource>(
        &mut self,
        result: Result<ObjectList<K>, Error>,
    ) -> Result<Event<K>, Error> {
        match result {
            Ok(list) => {
                self.failures = 0;
                self.phase = Phase::NeedWatch {
                    rv: list.metadata.resource_version,
                };
                Ok(Event::Restarted(list.items))
            }
            Err(e) => {
                self.failures += 1;
                Err(e)
            }
        }
    }

    /// The watch request was answered 2xx.
    fn watch_opened(&mut self) {
        if let Phase::NeedWatch { rv } = &mut self.phase {
            self.phase = Phase::Watching {
                rv: std::mem::take(rv),
                got_item: false,
            };
        }
    }

    /// The watch request failed.
    fn watch_failed(&mut self, error: Error) -> Error {
        self.fail(&error);
        error
    }

    /// The next item of the open watch, `None` when it ended.
    fn polled<K: Resource>(
        &mut self,
        item: Option<Result<WatchEvent<K>, Error>>,
    ) -> Option<Result<Event<K>, Error>> {
        let Phase::Watching { rv, got_item } = &mut self.phase else {
            return None;
        };
        let event = match item {
            None => {
                // A stream that closes without a single item, over and over,
                // must not become a tight reconnect loop.
                if !*got_item {
                    self.failures += 1;
                }
                self.phase = Phase::NeedWatch {
                    rv: std::mem::take(rv),
                };
                return None;
            }
            Some(Err(e)) => return Some(Err(self.watch_failed(e))),
            Some(Ok(WatchEvent::Error(status))) => {
                return Some(Err(self.watch_failed(Error::from(status))));
            }
            Some(Ok(event)) => event,
        };
        *got_item = true;
        self.failures = 0;
        let (rv_now, out) = match event {
            WatchEvent::Added(obj) | WatchEvent::Modified(obj) => (
                obj.meta().resource_version.clone(),
                Some(Event::Applied(obj)),
            ),
            WatchEvent::Deleted(obj) => (
                obj.meta().resource_version.clone(),
                Some(Event::Deleted(obj)),
            ),
            WatchEvent::Bookmark(b) => (Some(b.metadata.resource_version), None),
            WatchEvent::Error(_) => (None, None),
        };
        if let Some(new) = rv_now.filter(|v| !v.is_empty()) {
            *rv = new;
        }
        out.map(Ok)
    }

    fn fail(&mut self, error: &Error) {
        self.failures += 1;
        self.phase = match std::mem::replace(&mut self.phase, Phase::NeedList) {
            _ if error.is_gone() => Phase::NeedList,
            Phase::NeedWatch { rv } | Phase::Watching { rv, .. } => Phase::NeedWatch { rv },
            Phase::NeedList => Phase::NeedList,
        };
    }
}

/// Lists and watches `K` forever, relisting and resuming as needed (see
/// the module docs). Errors are yielded for the consumer to log and the
/// stream goes on after them; it never ends by itself.
pub fn watcher<K: Resource>(
    api: Api<K>,
    config: Config,
) -> impl Stream<Item = Result<Event<K>, Error>> + Send + 'static {
    let shell = Shell {
        api,
        config,
        machine: Machine::new(),
        stream: None,
    };
    stream::unfold(shell, |mut shell| async move {
        loop {
            if let Some(item) = shell.step().await {
                return Some((item, shell));
            }
        }
    })
}

struct Shell<K> {
    api: Api<K>,
    config: Config,
    machine: Machine,
    stream: Option<WatchStream<K>>,
}

impl<K: Resource> Shell<K> {
    async fn step(&mut self) -> Option<Result<Event<K>, Error>> {
        match self.machine.action() {
            Action::List => {
                self.pause().await;
                let lp = ListParams {
                    label_selector: self.config.label_selector.clone(),
                };
                let result = self.api.list(&lp).await;
                let out = self.machine.listed(result);
                if let Err(e) = &out {
                    tracing::warn!(kind = K::KIND, error = %e, "list failed; will retry");
                }
                Some(out)
            }
            Action::Watch(rv) => {
                self.pause().await;
                let wp = WatchParams {
                    resource_version: Some(rv).filter(|v| !v.is_empty()),
                    label_selector: self.config.label_selector.clone(),
                    timeout_seconds: None,
                };
                match self.api.watch(&wp).await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.machine.watch_opened();
                        None
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "watch failed; will retry");
                        Some(Err(self.machine.watch_failed(e)))
                    }
                }
            }
            Action::Poll => {
                let item = self.next_item().await;
                let out = self.machine.polled(item);
                if self.machine.action() != Action::Poll {
                    self.stream = None;
                    match &out {
                        Some(Err(e)) => tracing::warn!(
                            kind = K::KIND,
                            error = %e,
                            resume_from = self.machine.resource_version(),
                            "watch stream broke"
                        ),
                        _ => tracing::debug!(
                            kind = K::KIND,
                            resume_from = self.machine.resource_version(),
                            "watch stream ended"
                        ),
                    }
                }
                out
            }
        }
    }

    async fn next_item(&mut self) -> Option<Result<WatchEvent<K>, Error>> {
        let stream = self.stream.as_mut()?;
        match self.config.idle_timeout {
            None => stream.next().await,
            Some(idle) => match tokio::time::timeout(idle, stream.next()).await {
                Ok(item) => item,
                Err(_) => Some(Err(Error::WatchIdle(idle))),
            },
        }
    }

    /// Waits out the backoff before a request. Takes `&mut self` so the
    /// future stays `Send` (the open stream is `Send` but not `Sync`).
    async fn pause(&mut self) {
        let failures = self.machine.failures();
        if failures > 0 {
            let delay = self
                .config
                .backoff
                .jittered(failures, rand::random::<f64>());
            tracing::debug!(kind = K::KIND, failures, ?delay, "backing off");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{Bookmark, BookmarkMeta, ListMeta, Node, NodeSpec, Status};

    fn node(name: &str, rv: &str) -> Node {
        let mut n = Node::new(name, NodeSpec::default());
        n.metadata.resource_version = Some(rv.to_owned());
        n
    }

    fn list(rv: &str, items: Vec<Node>) -> ObjectList<Node> {
        ObjectList {
            api_version: "herd/v1".into(),
            kind: "NodeList".into(),
            metadata: ListMeta {
                resource_version: rv.into(),
            },
            items,
        }
    }

    fn bookmark(rv: &str) -> WatchEvent<Node> {
        WatchEvent::Bookmark(Bookmark {
            api_version: "herd/v1".into(),
            kind: "Node".into(),
            metadata: BookmarkMeta {
                resource_version: rv.into(),
            },
        })
    }

    fn gone() -> Error {
        Error::from(Status::gone("too old"))
    }

    fn transport() -> Error {
        Error::WatchIdle(Duration::from_secs(1))
    }

    fn ok(out: Option<Result<Event<Node>, Error>>) -> Option<Event<Node>> {
        out.map(|r| r.expect("no error"))
    }

    fn watching(rv: &str) -> Machine {
        let mut m = Machine::new();
        m.listed(Ok(list(rv, vec![]))).expect("listed");
        m.watch_opened();
        m
    }

    #[test]
    fn list_then_watch_from_the_list_revision() {
        let mut m = Machine::new();
        assert_eq!(m.action(), Action::List);
        let ev = m
            .listed(Ok(list("5", vec![node("a", "3")])))
            .expect("listed");
        assert_eq!(ev, Event::Restarted(vec![node("a", "3")]));
        assert_eq!(m.action(), Action::Watch("5".into()));
        m.watch_opened();
        assert_eq!(m.action(), Action::Poll);
        assert_eq!(m.failures(), 0);
    }

    #[test]
    fn events_map_and_move_the_revision() {
        let mut m = watching("5");
        assert_eq!(
            ok(m.polled(Some(Ok(WatchEvent::Added(node("a", "6")))))),
            Some(Event::Applied(node("a", "6")))
        );
        assert_eq!(
            ok(m.polled(Some(Ok(WatchEvent::Modified(node("a", "7")))))),
            Some(Event::Applied(node("a", "7")))
        );
        assert_eq!(
            ok(m.polled(Some(Ok(WatchEvent::Deleted(node("a", "8")))))),
            Some(Event::Deleted(node("a", "8")))
        );
        assert_eq!(m.resource_version(), Some("8"));
        assert!(m.polled(Some(Ok(bookmark("12")))).is_none());
        assert_eq!(m.resource_version(), Some("12"));
        assert_eq!(m.action(), Action::Poll);
    }

    #[test]
    fn clean_end_resumes_at_once_from_the_last_revision() {
        let mut m = watching("5");
        m.polled(Some(Ok(bookmark("9"))));
        assert!(m.polled::<Node>(None).is_none());
        assert_eq!(m.action(), Action::Watch("9".into()));
        assert_eq!(m.failures(), 0, "a stream that delivered is no failure");
    }

    #[test]
    fn empty_streams_back_off() {
        let mut m = watching("5");
        m.polled::<Node>(None);
        assert_eq!(m.failures(), 1);
        m.watch_opened();
        m.polled::<Node>(None);
        assert_eq!((m.action(), m.failures()), (Action::Watch("5".into()), 2));
    }

    #[test]
    fn broken_stream_resumes_from_the_last_revision_with_backoff() {
        let mut m = watching("5");
        m.polled(Some(Ok(WatchEvent::Added(node("a", "6")))));
        let out = m.polled::<Node>(Some(Err(transport())));
        assert!(matches!(out, Some(Err(Error::WatchIdle(_)))));
        assert_eq!((m.action(), m.failures()), (Action::Watch("6".into()), 1));
        // The server is down: the watch request fails, the revision is kept.
        m.watch_failed(transport());
        assert_eq!((m.action(), m.failures()), (Action::Watch("6".into()), 2));
        m.watch_opened();
        m.polled(Some(Ok(WatchEvent::Added(node("b", "7")))));
        assert_eq!(m.failures(), 0, "a delivered event resets the backoff");
    }

    #[test]
    fn gone_relists_whether_at_open_or_mid_stream() {
        let mut m = watching("5");
        let out = m.polled::<Node>(Some(Err(gone())));
        assert!(matches!(out, Some(Err(e)) if e.is_gone()));
        assert_eq!(m.action(), Action::List);

        let mut m = watching("5");
        m.polled::<Node>(Some(Ok(WatchEvent::Error(Status::gone("too old")))));
        assert_eq!(m.action(), Action::List);

        let mut m = Machine::new();
        m.listed(Ok(list("5", vec![]))).expect("listed");
        m.watch_failed(gone());
        assert_eq!(m.action(), Action::List);
        assert_eq!(m.failures(), 1);
        m.listed(Ok(list("20", vec![node("b", "19")])))
            .expect("relisted");
        assert_eq!((m.action(), m.failures()), (Action::Watch("20".into()), 0));
    }

    #[test]
    fn failed_lists_count_up() {
        let mut m = Machine::new();
        for n in 1..=3 {
            assert!(m.listed::<Node>(Err(transport())).is_err());
            assert_eq!((m.action(), m.failures()), (Action::List, n));
        }
    }

    #[test]
    fn events_without_a_revision_keep_the_old_one() {
        let mut m = watching("5");
        m.polled(Some(Ok(WatchEvent::Added(Node::new(
            "x",
            NodeSpec::default(),
        )))));
        assert_eq!(m.resource_version(), Some("5"));
    }
}
