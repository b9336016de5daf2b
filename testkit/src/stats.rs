//! Request counters for assertions, and the guard that keeps them honest.
//!
//! A request is "in flight" from the moment its head is parsed until its
//! response body ends or is dropped, the same definition the router uses for
//! load (linkerd's pending-until-end-of-stream), so tests can compare the two.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::util::lock;

/// A snapshot of the fake's counters (see [`FakeOllama::stats`]).
///
/// [`FakeOllama::stats`]: crate::FakeOllama::stats
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received per path (query strings stripped), any method.
    pub requests: BTreeMap<String, u64>,
    /// Sum of `requests`.
    pub total_requests: u64,
    /// Requests whose response has not ended yet.
    pub in_flight: usize,
    /// `in_flight` per path; paths with none are absent.
    pub in_flight_by_path: BTreeMap<String, usize>,
    /// Requests waiting for a free slot of their model (Ollama's queue).
    pub queued: usize,
    /// Responses that ended normally (any status code).
    pub completed: u64,
    /// Responses whose client went away first: the body (or the request
    /// before any body existed) was dropped before it ended.
    pub cancelled: u64,
    /// Responses cut by the fake itself: `DieMidStream`, `RefuseConnections`
    /// on a path, or [`FakeOllama::stop`] with requests in flight.
    ///
    /// [`FakeOllama::stop`]: crate::FakeOllama::stop
    pub aborted: u64,
    /// The `Host` header of the most recent request, as sent.
    pub last_host: Option<String>,
}

impl Stats {
    /// Requests received on `path`.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.requests.get(path).copied().unwrap_or(0)
    }

    /// Requests in flight on `path`.
    pub fn in_flight_on(&self, path: &str) -> usize {
        self.in_flight_by_path.get(path).copied().unwrap_or(0)
    }
}

/// How a request ended, decided when its guard drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pending,
    Completed,
    Aborted,
}

/// Owns the counters and wakes anyone waiting on them.
pub(crate) struct StatsHub {
    inner: Mutex<Stats>,
    changed: watch::Sender<u64>,
}

impl StatsHub {
    pub(crate) fn new() -> Arc<StatsHub> {
        Arc::new(StatsHub {
            inner: Mutex::new(Stats::default()),
            changed: watch::Sender::new(0),
        })
    }

    /// Applies `f` and notifies waiters, even when nobody subscribed yet.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        let r = f(&mut lock(&self.inner));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        r
    }

    pub(crate) fn snapshot(&self) -> Stats {
        lock(&self.inner).clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn reset(&self) {
        self.update(|s| {
            // In-flight requests still hold guards that will decrement these.
            let in_flight = s.in_flight;
            let by_path = std::mem::take(&mut s.in_flight_by_path);
            let queued = s.queued;
            *s = Stats {
                in_flight,
                in_flight_by_path: by_path,
                queued,
                ..Stats::default()
            };
        });
    }

    fn request_started(&self, path: &str, host: Option<String>) {
        self.update(|s| {
            *s.requests.entry(path.to_owned()).or_default() += 1;
            s.total_requests += 1;
            s.in_flight += 1;
            *s.in_flight_by_path.entry(path.to_owned()).or_default() += 1;
            s.last_host = host;
        });
    }

    fn request_finished(&self, path: &str, outcome: Outcome) {
        self.update(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if let Some(n) = s.in_flight_by_path.get_mut(path) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.in_flight_by_path.remove(path);
                }
            }
            match outcome {
                Outcome::Completed => s.completed += 1,
                Outcome::Aborted => s.aborted += 1,
                Outcome::Pending => s.cancelled += 1,
            }
        });
    }

    /// Joins the slot queue unless `max` requests already wait there.
    pub(crate) fn try_enqueue(self: &Arc<Self>, max: usize) -> Option<QueueGuard> {
        let joined = self.update(|s| {
            if s.queued >= max {
                false
            } else {
                s.queued += 1;
                true
            }
        });
        joined.then(|| QueueGuard { hub: self.clone() })
    }
}

/// One place in the slot queue; leaving (served or cancelled) frees it.
pub(crate) struct QueueGuard {
    hub: Arc<StatsHub>,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.hub.update(|s| s.queued = s.queued.saturating_sub(1));
    }
}

/// Counts one request from head to end of body. It lives in the handler
/// future until a response exists, then inside the response body, so a drop
/// anywhere before the end means the client (or the fake) cut it short.
pub(crate) struct RequestGuard {
    hub: Arc<StatsHub>,
    path: String,
    outcome: Outcome,
    /// Cancelled when the fake stops serving: drops after that are the fake's
    /// doing, not the client's.
    server: CancellationToken,
}

impl RequestGuard {
    pub(crate) fn start(
        hub: Arc<StatsHub>,
        path: String,
        host: Option<String>,
        server: CancellationToken,
    ) -> RequestGuard {
        hub.request_started(&path, host);
        RequestGuard {
            hub,
            path,
            outcome: Outcome::Pending,
            server,
        }
    }

    pub(crate) fn complete(&mut self) {
        if self.outcome == Outcome::Pending {
            self.outcome = Outcome::Completed;
        }
    }

    pub(crate) fn abort(&mut self) {
        self.outcome = Outcome::Aborted;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let outcome = match self.outcome {
            Outcome::Pending if self.server.is_cancelled() => Outcome::Aborted,
            o => o,
        };
        self.hub.request_finished(&self.path, outcome);
    }
}
