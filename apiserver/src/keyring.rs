//! Keeps a [`KeyRing`] current from the store, in this process: the host
//! checks keys against memory, never the store, and a key disabled or
//! deleted through the API stops working as soon as the change commits.

use std::sync::Arc;
use std::time::Duration;

use herd_api::{ApiKey, ApiKeyHash, Resource};
use herd_auth::KeyRing;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// Keys the ring accepts that the store does not hold: the server's own
/// credential for its loopback clients, which exists only in memory.
pub type Extra = Vec<(ApiKey, ApiKeyHash)>;

/// How many changes are read from the store at a time.
const BATCH: usize = 1024;

fn decode_all<K: Resource + DeserializeOwned>(store: &dyn Store) -> (u64, Vec<K>) {
    let (revision, items) = store.list(K::PLURAL, &|_| true);
    let objects = items
        .iter()
        .filter_map(|o| match serde_json::from_slice::<K>(&o.body) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(kind = K::KIND, error = %e, "skipping an unreadable stored object");
                None
            }
        })
        .collect();
    (revision, objects)
}

/// Fills `ring` from the store (plus `extra`); returns a revision from
/// which following the store's changes misses none.
pub fn load(store: &dyn Store, ring: &KeyRing, extra: &Extra) -> u64 {
    // Two lists at two revisions: the earlier one is where to follow from,
    // so a write between them is seen as a change and loads again.
    let (revision, mut keys) = decode_all::<ApiKey>(store);
    let (_, mut hashes) = decode_all::<ApiKeyHash>(store);
    for (k, h) in extra {
        keys.push(k.clone());
        hashes.push(h.clone());
    }
    ring.reset(keys, hashes);
    revision
}

/// Loads `ring`, then reloads it whenever a key or a key hash changes,
/// until `stop`. On a gap in the store's change log (compacted), it loads
/// from a fresh list.
pub async fn follow(
    store: Arc<dyn Store>,
    ring: Arc<KeyRing>,
    extra: Extra,
    stop: CancellationToken,
) {
    let mut changed = store.subscribe();
    let mut seen = load(&*store, &ring, &extra);
    loop {
        // Marked before reading, so a commit after the read wakes the wait.
        changed.borrow_and_update();
        match store.events_after(seen, BATCH) {
            Ok(changes) => match changes.last() {
                None => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        r = changed.changed() => if r.is_err() { return },
                    }
                }
                Some(last) => {
                    let last = last.rv;
                    let keys = changes
                        .iter()
                        .any(|c| c.kind == ApiKey::PLURAL || c.kind == ApiKeyHash::PLURAL);
                    seen = if keys {
                        load(&*store, &ring, &extra).max(last)
                    } else {
                        last
                    };
                }
            },
            Err(StoreError::Compacted { .. } | StoreError::TooNew { .. }) => {
                seen = load(&*store, &ring, &extra);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the store's changes for the key ring");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}
