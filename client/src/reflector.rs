//! A local, always-current copy of one kind, fed by a [`watcher()`](crate::watcher()).
//!
//! Readers ([`Store`]) never touch the network: the proxy reads its routing
//! inputs here, and rebuilds when [`Store::subscribe`] says something
//! changed. The single [`Writer`] applies watcher events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use futures_util::stream::{Stream, StreamExt};
use herd_api::Resource;
use tokio::sync::watch;

use crate::watcher::{self, Event, watcher};
use crate::{Api, Error};

type Objects<K> = RwLock<BTreeMap<String, Arc<K>>>;

/// Read handle on the cache. Cheap to clone.
pub struct Store<K> {
    objects: Arc<Objects<K>>,
    changes: watch::Receiver<u64>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            objects: self.objects.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<K> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("generation", &self.generation())
            .finish()
    }
}

/// The writer went away before the first list completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the store's writer stopped before the first list")]
pub struct WriterDropped;

impl<K> Store<K> {
    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every object, ordered by name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many changes have been applied. 0 until the first list.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Whether the first list has been applied.
    pub fn is_ready(&self) -> bool {
        self.generation() > 0
    }

    /// Waits for the first list; an empty store is then known to be empty,
    /// not merely unfilled.
    pub async fn wait_ready(&self) -> Result<(), WriterDropped> {
        let mut rx = self.changes.clone();
        rx.wait_for(|g| *g > 0)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }

    /// A receiver of the generation counter: `changed().await` wakes after
    /// each batch of changes (bursts coalesce), then read the store. Its
    /// `changed()` errs once the writer is gone.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.changes.clone();
        rx.mark_unchanged();
        rx
    }
}

/// The one writer of a [`Store`].
pub struct Writer<K> {
    objects: Arc<Objects<K>>,
    changes: watch::Sender<u64>,
}

impl<K> fmt::Debug for Writer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("generation", &*self.changes.borrow())
            .finish()
    }
}

/// An empty store and its writer.
pub fn store<K>() -> (Writer<K>, Store<K>) {
    let objects = Arc::new(RwLock::new(BTreeMap::new()));
    let (tx, rx) = watch::channel(0);
    (
        Writer {
            objects: objects.clone(),
            changes: tx,
        },
        Store {
            objects,
            changes: rx,
        },
    )
}

impl<K: Resource> Writer<K> {
    /// Another read handle on the same store.
    pub fn store(&self) -> Store<K> {
        Store {
            objects: self.objects.clone(),
            changes: self.changes.subscribe(),
        }
    }

    pub fn apply(&mut self, event: &Event<K>) {
        self.apply_owned(event.clone());
    }

    fn apply_owned(&mut self, event: Event<K>) {
        {
            let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            match event {
                Event::Restarted(items) => {
                    *objects = items
                        .into_iter()
                        .map(|k| (k.meta().name.clone(), Arc::new(k)))
                        .collect();
                }
                Event::Applied(k) => {
                    objects.insert(k.meta().name.clone(), Arc::new(k));
                }
                Event::Deleted(k) => {
                    objects.remove(&k.meta().name);
                }
            }
        }
        // After the write lock is released, so a woken reader sees the change.
        self.changes.send_modify(|g| *g += 1);
    }
}

/// Applies every event of `events` to the writer's store and passes the
/// events on, for consumers that want both the cache and the changes
/// (the dashboard's live view).
pub fn reflector<K, S>(
    mut writer: Writer<K>,
    events: S,
) -> impl Stream<Item = Result<Event<K>, Error>>
where
    K: Resource,
    S: Stream<Item = Result<Event<K>, Error>>,
{
    events.inspect(move |item| {
        if let Ok(event) = item {
            writer.apply(event);
        }
    })
}

/// Starts a watcher on a new task feeding a new store, and returns the
/// store. The task runs until every [`Store`] handle and subscriber is
/// dropped. Needs a tokio runtime.
pub fn spawn<K: Resource>(api: Api<K>, config: watcher::Config) -> Store<K> {
    let (mut writer, store) = store();
    tokio::spawn(async move {
        let events = watcher(api, config);
        tokio::pin!(events);
        loop {
            tokio::select! {
                () = writer.changes.closed() => break,
                item = events.next() => match item {
                    Some(Ok(event)) => writer.apply_owned(event),
                    // The watcher logged it and is already retrying.
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        tracing::debug!(kind = K::KIND, "reflector stopped: no store handles left");
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{Node, NodeSpec};

    fn node(name: &str, weight: u32) -> Node {
        Node::new(
            name,
            NodeSpec {
                weight,
                ..NodeSpec::default()
            },
        )
    }

    fn names(store: &Store<Node>) -> Vec<(String, u32)> {
        store
            .list()
            .iter()
            .map(|n| (n.metadata.name.clone(), n.spec.weight))
            .collect()
    }

    #[tokio::test]
    async fn applies_events_in_order() {
        let (mut w, s) = store::<Node>();
        assert!(!s.is_ready());
        let mut changes = s.subscribe();

        w.apply(&Event::Restarted(vec![node("b", 1), node("a", 1)]));
        s.wait_ready().await.expect("ready");
        assert_eq!(names(&s), [("a".into(), 1), ("b".into(), 1)]);
        assert!(changes.has_changed().expect("writer alive"));
        changes.mark_unchanged();

        w.apply(&Event::Applied(node("a", 2)));
        w.apply(&Event::Applied(node("c", 1)));
        w.apply(&Event::Deleted(node("b", 1)));
        assert_eq!(names(&s), [("a".into(), 2), ("c".into(), 1)]);
        assert_eq!(s.get("a").map(|n| n.spec.weight), Some(2));
        assert!(s.get("b").is_none());
        assert_eq!(s.generation(), 4);
        assert!(changes.has_changed().expect("writer alive"));

        // A relist drops whatever it does not contain.
        w.apply(&Event::Restarted(vec![node("d", 1)]));
        assert_eq!(names(&s), [("d".into(), 1)]);
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn deleting_a_missing_object_is_harmless() {
        let (mut w, s) = store::<Node>();
        w.apply(&Event::Restarted(vec![]));
        w.apply(&Event::Deleted(node("ghost", 1)));
        assert!(s.is_empty() && s.is_ready());
    }

    #[tokio::test]
    async fn wait_ready_fails_when_the_writer_is_dropped_first() {
        let (w, s) = store::<Node>();
        drop(w);
        assert_eq!(s.wait_ready().await, Err(WriterDropped));
    }
}
