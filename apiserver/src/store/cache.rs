//! The in-memory side of a store: current objects and a window of recent
//! changes, which answer every read. A backend updates it only with commits
//! that are already durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::{Change, StoreError, StoredObject};

/// Objects a batch of commits changed: `None` for a deleted one.
pub(super) type Overlay = HashMap<(&'static str, String), Option<Arc<StoredObject>>>;

#[derive(Default)]
pub(super) struct Cache {
    pub revision: u64,
    pub objects: HashMap<&'static str, BTreeMap<String, Arc<StoredObject>>>,
    /// Contiguous: each entry's revision is one more than the one before,
    /// and the last is `revision`.
    pub log: VecDeque<Arc<Change>>,
}

impl Cache {
    pub fn get(&self, kind: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.objects.get(kind).and_then(|m| m.get(name)).cloned()
    }

    pub fn list(
        &self,
        kind: &str,
        keep: &dyn Fn(&StoredObject) -> bool,
    ) -> (u64, Vec<Arc<StoredObject>>) {
        let items = self
            .objects
            .get(kind)
            .map(|m| m.values().filter(|o| keep(o)).cloned().collect())
            .unwrap_or_default();
        (self.revision, items)
    }

    pub fn events_after(&self, after: u64, max: usize) -> Result<Vec<Arc<Change>>, StoreError> {
        if after > self.revision {
            return Err(StoreError::TooNew {
                requested: after,
                current: self.revision,
            });
        }
        let first = self.log.front().map_or(self.revision + 1, |e| e.rv);
        if after + 1 < first {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: first - 1,
            });
        }
        let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        Ok(self.log.iter().skip(start).take(max).cloned().collect())
    }

    /// Applies committed changes up to revision `rev`, keeping at most
    /// `window` of them.
    pub fn apply(&mut self, overlay: Overlay, rev: u64, changes: Vec<Arc<Change>>, window: usize) {
        for ((kind, name), obj) in overlay {
            let map = self.objects.entry(kind).or_default();
            match obj {
                Some(o) => {
                    map.insert(name, o);
                }
                None => {
                    map.remove(&name);
                }
            }
        }
        self.revision = rev;
        self.log.extend(changes);
        while self.log.len() > window {
            self.log.pop_front();
        }
    }
}
