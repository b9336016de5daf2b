//! The in-memory side of a store: current objects and a window of recent
//! changes, which answer every read. A backend updates it only with commits
//! that are already durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::{Change, StoreError, StoredObject, WindowUsage};

/// Objects a batch of commits changed: `None` for a deleted one.
pub(super) type Overlay = HashMap<(&'static str, String), Option<Arc<StoredObject>>>;

#[derive(Default)]
pub(super) struct Cache {
    pub revision: u64,
    pub objects: HashMap<&'static str, BTreeMap<String, Arc<StoredObject>>>,
    /// Contiguous: each entry's revision is one more than the one before,
    /// and the last is `revision`.
    pub log: VecDeque<Arc<Change>>,
    /// The sum of the log's [`Change::weight`]s.
    pub log_bytes: usize,
}

/// How much of the recent changes a store keeps: at most `events` changes
/// and at most `bytes` of them, whichever is reached first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimits {
    pub events: usize,
    pub bytes: usize,
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

    pub fn window_usage(&self) -> WindowUsage {
        WindowUsage {
            events: self.log.len(),
            bytes: self.log_bytes,
        }
    }

    /// Appends changes to the log, then drops the oldest until it is within
    /// `limits`. Dropping them all is allowed: watchers behind get 410 and
    /// relist, which costs them a list, never the server its memory.
    pub fn extend_log(
        &mut self,
        changes: impl IntoIterator<Item = Arc<Change>>,
        limits: WindowLimits,
    ) {
        for c in changes {
            self.log_bytes += c.weight();
            self.log.push_back(c);
        }
        while self.log.len() > limits.events || self.log_bytes > limits.bytes {
            let Some(old) = self.log.pop_front() else {
                break;
            };
            self.log_bytes = self.log_bytes.saturating_sub(old.weight());
        }
    }

    /// The newest revision no longer in the log: what the backend may
    /// delete up to.
    pub fn compacted_through(&self) -> u64 {
        self.log
            .front()
            .map_or(self.revision, |c| c.rv.saturating_sub(1))
    }

    /// Applies committed changes up to revision `rev`, keeping at most
    /// `limits` of them.
    pub fn apply(
        &mut self,
        overlay: Overlay,
        rev: u64,
        changes: Vec<Arc<Change>>,
        limits: WindowLimits,
    ) {
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
        self.extend_log(changes, limits);
    }
}
