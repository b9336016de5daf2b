//! Ollama's scheduler in miniature: loaded models, their slots, the queue.
//!
//! Each loaded model has `num_parallel` slots. A request that finds none free
//! waits in FIFO order (tokio's semaphore is fair) unless `max_queue` requests
//! already wait, in which case it gets Ollama's immediate 503. The first
//! request for an unloaded model pays `load_time`; concurrent ones wait for
//! that same load. A model stays loaded for its `keep_alive` after the last
//! request ends, which is what `/api/ps` shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::KeepAlive;
use crate::stats::StatsHub;
use crate::store::ModelEntry;
use crate::util::{forever_from, lock, ts_add};

/// The queue is full.
#[derive(Debug)]
pub(crate) struct Busy;

#[derive(Default)]
pub(crate) struct Scheduler {
    runners: Mutex<HashMap<String, Arc<Runner>>>,
}

struct Runner {
    entry: ModelEntry,
    slots: Arc<Semaphore>,
    /// Serialises loading so concurrent first requests share one load.
    load_lock: tokio::sync::Mutex<()>,
    state: Mutex<RunState>,
    /// The prompts idle slots still hold in their KV cache (at most one per
    /// slot, most recent last): a request takes the slot whose prompt
    /// shares the longest prefix with its own, as llama.cpp's server does.
    cache: Mutex<Vec<Vec<u64>>>,
    slots_n: usize,
}

#[derive(Clone, Copy)]
enum Expiry {
    Never,
    At(Timestamp),
}

struct RunState {
    loaded: bool,
    refs: usize,
    session: KeepAlive,
    expiry: Expiry,
}

impl RunState {
    /// Unloads a model whose keep-alive ran out while idle.
    fn refresh(&mut self, now: Timestamp) {
        if self.loaded
            && self.refs == 0
            && let Expiry::At(t) = self.expiry
            && t <= now
        {
            self.loaded = false;
        }
    }

    fn expires_at(&self, now: Timestamp) -> Timestamp {
        let expiry = if self.refs > 0 {
            expiry_after(now, self.session)
        } else {
            self.expiry
        };
        match expiry {
            Expiry::Never => forever_from(now),
            Expiry::At(t) => t,
        }
    }
}

fn expiry_after(now: Timestamp, keep_alive: KeepAlive) -> Expiry {
    match keep_alive {
        KeepAlive::Forever => Expiry::Never,
        KeepAlive::For(d) => Expiry::At(ts_add(now, d)),
    }
}

/// A loaded model as `/api/ps` reports it.
pub(crate) struct Loaded {
    pub entry: ModelEntry,
    pub expires_at: Timestamp,
}

/// A request's hold on a model (and, for generation, on one of its slots).
/// Dropping it releases the slot and starts the keep-alive clock.
pub(crate) struct Lease {
    runner: Arc<Runner>,
    _permit: Option<OwnedSemaphorePermit>,
    /// The prompt this lease's slot evaluated: cached for later requests
    /// once the slot is free again.
    prompt: Option<Vec<u64>>,
}

impl Scheduler {
    fn runner(&self, entry: &ModelEntry, num_parallel: usize) -> Arc<Runner> {
        let mut runners = lock(&self.runners);
        runners
            .entry(entry.name.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(Runner {
                    entry: entry.clone(),
                    slots: Arc::new(Semaphore::new(num_parallel.max(1))),
                    load_lock: tokio::sync::Mutex::new(()),
                    cache: Mutex::new(Vec::new()),
                    slots_n: num_parallel.max(1),
                    state: Mutex::new(RunState {
                        loaded: false,
                        refs: 0,
                        session: KeepAlive::For(Duration::ZERO),
                        expiry: Expiry::At(Timestamp::UNIX_EPOCH),
                    }),
                })
            })
            .clone()
    }

    /// Takes a slot of `entry` (waiting in the queue if needed) or, with
    /// `need_slot == false` (a load-only request), just a reference.
    pub(crate) async fn acquire(
        &self,
        entry: &ModelEntry,
        keep_alive: KeepAlive,
        num_parallel: usize,
        max_queue: usize,
        stats: &Arc<StatsHub>,
        need_slot: bool,
    ) -> Result<Lease, Busy> {
        let runner = self.runner(entry, num_parallel);
        let permit = if need_slot {
            match runner.slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let place = stats.try_enqueue(max_queue).ok_or(Busy)?;
                    let p = runner
                        .slots
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| Busy)?;
                    drop(place);
                    Some(p)
                }
            }
        } else {
            None
        };
        {
            let mut st = lock(&runner.state);
            st.refresh(Timestamp::now());
            st.refs += 1;
            st.session = keep_alive;
        }
        Ok(Lease {
            runner,
            _permit: permit,
            prompt: None,
        })
    }

    /// Ollama's `expireRunner`: unload now, or as soon as the model is idle.
    pub(crate) fn unload(&self, name: &str) {
        if let Some(r) = lock(&self.runners).get(&name.to_ascii_lowercase()) {
            let mut st = lock(&r.state);
            st.session = KeepAlive::For(Duration::ZERO);
            if st.refs == 0 {
                st.loaded = false;
            }
        }
    }

    /// A deleted model: unloads it and, once idle, forgets its runner so a
    /// new model of the same name starts afresh.
    pub(crate) fn forget(&self, name: &str) {
        let key = name.to_ascii_lowercase();
        let mut runners = lock(&self.runners);
        let idle = runners.get(&key).is_some_and(|r| lock(&r.state).refs == 0);
        if idle {
            runners.remove(&key);
        } else if let Some(r) = runners.get(&key) {
            let mut st = lock(&r.state);
            st.session = KeepAlive::For(Duration::ZERO);
        }
    }

    /// Forgets every loaded model (a restarted Ollama starts empty).
    pub(crate) fn clear(&self) {
        lock(&self.runners).clear();
    }

    /// Loaded models, longest remaining keep-alive first.
    pub(crate) fn loaded(&self) -> Vec<Loaded> {
        let now = Timestamp::now();
        let runners: Vec<Arc<Runner>> = lock(&self.runners).values().cloned().collect();
        let mut out: Vec<Loaded> = runners
            .iter()
            .filter_map(|r| {
                let mut st = lock(&r.state);
                st.refresh(now);
                st.loaded.then(|| Loaded {
                    entry: r.entry.clone(),
                    expires_at: st.expires_at(now),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.expires_at
                .cmp(&a.expires_at)
                .then_with(|| a.entry.name.cmp(&b.entry.name))
        });
        out
    }
}

impl Lease {
    /// Loads the model if it is not loaded, taking `load_time`. Returns
    /// whether this call did the loading.
    pub(crate) async fn ensure_loaded(&self, load_time: Duration) -> bool {
        let _loading = self.runner.load_lock.lock().await;
        if lock(&self.runner.state).loaded {
            return false;
        }
        tokio::time::sleep(load_time).await;
        lock(&self.runner.state).loaded = true;
        true
    }
}

/// Tokens two prompts share from their start.
pub(crate) fn common_prefix(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Lease {
    /// Takes the slot whose cached prompt shares the longest prefix with
    /// `prompt` and returns how many tokens of `prompt` it already holds;
    /// the slot holds `prompt` from now on.
    pub(crate) fn take_cached(&mut self, prompt: Vec<u64>) -> usize {
        let mut cache = lock(&self.runner.cache);
        let best = cache
            .iter()
            .enumerate()
            .map(|(i, c)| (i, common_prefix(c, &prompt)))
            .max_by_key(|&(i, n)| (n, i));
        let cached = match best {
            Some((i, n)) if n > 0 => {
                cache.remove(i);
                n
            }
            // Nothing shared: the least recently used slot is overwritten.
            _ => {
                if cache.len() >= self.runner.slots_n {
                    cache.remove(0);
                }
                0
            }
        };
        self.prompt = Some(prompt);
        cached
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(prompt) = self.prompt.take() {
            let mut cache = lock(&self.runner.cache);
            if cache.len() >= self.runner.slots_n {
                cache.remove(0);
            }
            cache.push(prompt);
        }
        let mut st = lock(&self.runner.state);
        st.refs = st.refs.saturating_sub(1);
        if st.refs == 0 {
            if st.session.is_zero() {
                st.loaded = false;
            }
            st.expiry = expiry_after(Timestamp::now(), st.session);
        }
    }
}
