//! State shared between the [`FakeOllama`](crate::FakeOllama) handle and the
//! request handlers, so a test can change behaviour while the server runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::fault::Fault;
use crate::names::ModelRef;
use crate::sched::Scheduler;
use crate::stats::StatsHub;
use crate::store::{ModelEntry, ModelStore};
use crate::util::{lock, read, scale, token_interval};

#[derive(Default)]
pub(crate) struct Faults {
    pub global: Option<Fault>,
    pub by_path: HashMap<String, Fault>,
}

pub(crate) struct Shared {
    pub config: RwLock<Config>,
    pub store: Mutex<ModelStore>,
    pub sched: Scheduler,
    pub stats: Arc<StatsHub>,
    pub faults: Mutex<Faults>,
    /// Digests uploaded through `/api/blobs`.
    pub blobs: Mutex<HashSet<String>>,
    /// OpenAI mode: model ids exactly as given (`/v1/models` lists these
    /// and requests must name one of them).
    pub ids: Mutex<Vec<String>>,
    /// The last JSON body received per path, on the endpoints that keep it
    /// (OpenAI mode, `/v1/messages`, `/v1/responses`).
    pub bodies: Mutex<HashMap<String, bytes::Bytes>>,
    /// Whether the listener is on a loopback address: Ollama only checks
    /// `Host` then.
    pub loopback: bool,
}

impl Shared {
    pub(crate) fn config(&self) -> Config {
        read(&self.config).clone()
    }

    /// The fault for `path`: a path-scoped one wins over the global one.
    pub(crate) fn fault_for(&self, path: &str) -> Option<Fault> {
        let f = lock(&self.faults);
        f.by_path.get(path).cloned().or_else(|| f.global.clone())
    }

    /// Looks a model up by any spelling of its name.
    pub(crate) fn find_model(&self, name: &str) -> Option<ModelEntry> {
        let canonical = ModelRef::parse(name)?.display();
        lock(&self.store).get(&canonical)
    }

    /// Adds (or re-adds) a model and persists the list.
    pub(crate) fn install(&self, entry: ModelEntry) {
        let mut store = lock(&self.store);
        store.insert(entry);
        store.persist();
    }

    pub(crate) fn uninstall(&self, canonical: &str) -> Option<ModelEntry> {
        let removed = {
            let mut store = lock(&self.store);
            let removed = store.remove(canonical);
            store.persist();
            removed
        };
        if removed.is_some() {
            self.sched.forget(canonical);
        }
        removed
    }
}

/// Per-request view: the shared state plus this request's slow-down factor
/// (from a `SlowDown` fault, read once when the request arrives).
#[derive(Clone)]
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub slow: f64,
}

impl Ctx {
    pub(crate) fn cfg(&self) -> Config {
        self.shared.config()
    }

    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        scale(d, self.slow)
    }

    /// Time between tokens now; read per token so `set_tokens_per_sec`
    /// takes effect mid-stream.
    pub(crate) fn interval(&self) -> Duration {
        self.scaled(token_interval(read(&self.shared.config).tokens_per_sec))
    }
}
