//! Every proxied request as a [`RequestRecord`] in a bounded ring, served at
//! `GET /apis/herd/v1/requests` (newest first, `?node=&model=&limit=`), as a
//! live NDJSON feed with `?watch=true`, and summarised per node at
//! `GET /apis/herd/v1/requests/stats`.
//!
//! The ring holds a compact form ([`Rec`]) whose strings are shared with
//! the routing table, so recording a request costs no string copies; the
//! wire form is made when someone reads it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::Method;
use herd_api::{RequestRecord, model_name};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::metrics::{Metrics, Observation};
use crate::table::{ModelLive, NodeLive, Table};

/// A finished request as kept in the ring.
#[derive(Debug)]
pub(crate) struct Rec {
    pub id: u64,
    pub time: jiff::Timestamp,
    pub method: Method,
    pub path: Cow<'static, str>,
    /// The fleet's name for the model when it knows it, else as asked.
    pub model: Arc<str>,
    pub node: Option<Arc<str>>,
    pub status: u16,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub retries: u32,
    pub error: String,
    pub affinity: Option<AffinityHit>,
}

/// A request routed by prefix affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AffinityHit {
    /// Bytes of rendered prefix matched; `None` for a session key.
    pub prefix_bytes: Option<u64>,
}

impl Rec {
    pub(crate) fn to_record(&self) -> RequestRecord {
        RequestRecord {
            id: self.id,
            time: Some(self.time),
            method: self.method.as_str().to_owned(),
            path: self.path.to_string(),
            model: self.model.to_string(),
            node: self.node.as_deref().unwrap_or_default().to_owned(),
            status: self.status,
            stream: self.stream,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            retries: self.retries,
            error: self.error.clone(),
            affinity: self.affinity.is_some(),
            prefix_bytes: self.affinity.and_then(|a| a.prefix_bytes),
        }
    }
}

/// The bounded ring of finished requests and the feed of new ones.
pub(crate) struct History {
    cap: usize,
    ring: Mutex<VecDeque<Arc<Rec>>>,
    feed: broadcast::Sender<Arc<Rec>>,
    next_id: AtomicU64,
    /// The model of a request that has not named one yet, shared.
    no_model: Arc<str>,
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        History {
            cap,
            ring: Mutex::new(VecDeque::with_capacity(cap.min(1 << 16))),
            feed: broadcast::Sender::new(1024),
            next_id: AtomicU64::new(1),
            no_model: Arc::from(""),
        }
    }

    fn push(&self, rec: Rec) {
        let rec = Arc::new(rec);
        let old = if self.cap > 0 {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            let old = if ring.len() >= self.cap {
                ring.pop_front()
            } else {
                None
            };
            ring.push_back(rec.clone());
            old
        } else {
            None
        };
        // Freed outside the lock.
        drop(old);
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(rec);
        }
    }

    /// Newest first, filtered, at most `limit`.
    pub(crate) fn list(&self, filter: &Filter, limit: usize) -> Vec<Arc<Rec>> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Rec>> {
        self.feed.subscribe()
    }

    /// Latency and time to first token per node over the records kept.
    fn samples(&self, node: &str) -> (Vec<f64>, Vec<f64>) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lat = Vec::new();
        let mut ttft = Vec::new();
        for r in ring.iter().filter(|r| r.node.as_deref() == Some(node)) {
            lat.push(r.latency_ms);
            if let Some(t) = r.ttft_ms {
                ttft.push(t);
            }
        }
        (lat, ttft)
    }

    pub(crate) fn len(&self) -> usize {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The query of `GET /apis/herd/v1/requests`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    /// Only requests answered by this node.
    pub node: Option<String>,
    /// Only requests for this model (Ollama name equality).
    pub model: Option<String>,
    /// At most this many records (default 100).
    pub limit: Option<usize>,
    /// Stream new records as NDJSON instead of listing.
    pub watch: Option<bool>,
}

/// Default number of records a list returns.
pub const DEFAULT_LIST_LIMIT: usize = 100;

pub(crate) struct Filter {
    node: Option<String>,
    model: Option<String>,
}

impl Filter {
    pub(crate) fn new(q: &HistoryQuery) -> Filter {
        Filter {
            node: q.node.clone().filter(|n| !n.is_empty()),
            model: q
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(model_name::canonical),
        }
    }

    pub(crate) fn matches(&self, r: &Rec) -> bool {
        self.node
            .as_deref()
            .is_none_or(|n| r.node.as_deref() == Some(n))
            && self
                .model
                .as_ref()
                .is_none_or(|m| !r.model.is_empty() && model_name::canonical(&r.model) == *m)
    }
}

/// `GET /apis/herd/v1/requests/stats`: per node, live counters and
/// latency percentiles over the records kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    pub api_version: String,
    /// Always `RequestStats`.
    pub kind: String,
    /// Records the percentiles are computed over (the history ring).
    pub window: usize,
    pub nodes: Vec<NodeRequestStats>,
}

/// One node in [`RequestStats`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRequestStats {
    pub node: String,
    /// Takes new requests now: Ready, schedulable, weight above 0, not
    /// left out after a connection failure.
    pub routable: bool,
    /// Why not, when `routable` is false ("not ready", "cordoned",
    /// "weight 0", "no usable url", "connection failed recently").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The weight routing uses (`status.routing.weight` or `spec.weight`).
    pub weight: u32,
    /// Models routing believes the node holds.
    pub models: Vec<String>,
    /// Of those, the ones loaded in memory (preferred for routing).
    pub loaded_models: Vec<String>,
    /// From the node's last heartbeat (they bias routing cost).
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// Requests whose response body has not ended yet.
    pub in_flight: u32,
    /// Responses the node sent since the server started (any status).
    pub processed: u64,
    /// Failed attempts since the server started: no connection, timeout,
    /// 5xx, stream cut short.
    pub errors: u64,
    /// Milliseconds from arrival to last byte.
    pub latency_ms: Percentiles,
    /// Milliseconds from arrival to first body byte.
    pub ttft_ms: Percentiles,
}

/// Percentiles in milliseconds; `null` when there are no samples.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            v[i.min(v.len() - 1)]
        };
        Percentiles {
            p50: Some(at(0.50)),
            p95: Some(at(0.95)),
        }
    }
}

pub(crate) fn stats(history: &History, table: &Table, now: u64) -> RequestStats {
    let nodes = table
        .nodes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (lat, ttft) = history.samples(&b.name);
            let reason = match b.unroutable() {
                Some(why) => why.as_str().to_owned(),
                None if b.live.is_tripped(now) => "connection failed recently".to_owned(),
                None => String::new(),
            };
            let mut models = Vec::new();
            let mut loaded_models = Vec::new();
            for m in &table.models {
                if let Some(h) = m.holders.iter().find(|h| h.node == i) {
                    models.push(m.display.to_string());
                    if h.loaded {
                        loaded_models.push(m.display.to_string());
                    }
                }
            }
            NodeRequestStats {
                node: b.name.to_string(),
                routable: reason.is_empty(),
                reason,
                weight: b.weight,
                models,
                loaded_models,
                cpu_percent: b.cpu_percent(),
                memory_percent: b.memory_percent(),
                in_flight: b.live.in_flight.load(Ordering::Relaxed),
                processed: b.live.processed.load(Ordering::Relaxed),
                errors: b.live.errors.load(Ordering::Relaxed),
                latency_ms: Percentiles::of(lat),
                ttft_ms: Percentiles::of(ttft),
            }
        })
        .collect();
    RequestStats {
        api_version: herd_api::API_VERSION.to_owned(),
        kind: "RequestStats".to_owned(),
        window: history.len(),
        nodes,
    }
}

/// Where a record and its metrics go.
pub(crate) struct Sink {
    pub history: History,
    pub metrics: Metrics,
}

/// How a request ended, filled in by whoever answered it.
#[derive(Default)]
pub(crate) struct Outcome {
    pub status: u16,
    pub node: Option<(Arc<str>, Arc<NodeLive>)>,
    /// The (node, model) pair that answered, for its cached metric series.
    pub pair: Option<Arc<ModelLive>>,
    pub ttft: Option<Duration>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub retries: u32,
    pub error: String,
    /// The node is to blame (5xx, stream cut short): counts in its errors.
    pub node_failed: bool,
}

/// A request being handled: started at arrival, finished exactly once: by
/// the handler for errors, by the response body for proxied streams, or,
/// dropped unfinished (the client went away before the response began), as
/// a 499, nginx's code for a request its client closed.
pub(crate) struct Recorder(Option<Started>);

struct Started {
    sink: Arc<Sink>,
    started: Instant,
    time: jiff::Timestamp,
    method: Method,
    path: Cow<'static, str>,
    model: Arc<str>,
    /// The model is one the fleet knows (its name labels metrics).
    known_model: bool,
    stream: bool,
    /// The node the request is waiting on, for the record if the client
    /// goes away meanwhile.
    waiting_on: Option<(Arc<str>, Arc<NodeLive>)>,
    /// Routed to the node that served its prefix before.
    affinity: Option<AffinityHit>,
}

/// The status recorded for a request whose client closed the connection
/// before the response began.
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl Recorder {
    pub(crate) fn start(sink: Arc<Sink>, method: &Method, path: Cow<'static, str>) -> Recorder {
        Recorder(Some(Started {
            model: sink.history.no_model.clone(),
            sink,
            started: Instant::now(),
            time: jiff::Timestamp::now(),
            method: method.clone(),
            path,
            known_model: false,
            stream: false,
            waiting_on: None,
            affinity: None,
        }))
    }

    pub(crate) fn started(&self) -> Instant {
        self.0.as_ref().map_or_else(Instant::now, |s| s.started)
    }

    /// The model as the fleet names it (`known`), or as the client asked.
    pub(crate) fn set_model(&mut self, model: Arc<str>, known: bool, stream: bool) {
        if let Some(s) = &mut self.0 {
            s.model = model;
            s.known_model = known;
            s.stream = stream;
        }
    }

    /// The request has been sent to this node and waits for its answer.
    pub(crate) fn waiting_on(&mut self, node: &Arc<str>, live: &Arc<NodeLive>) {
        if let Some(s) = &mut self.0 {
            s.waiting_on = Some((node.clone(), live.clone()));
        }
    }

    /// Whether the node about to be tried was chosen by prefix affinity.
    pub(crate) fn routed_by_affinity(&mut self, hit: Option<AffinityHit>) {
        if let Some(s) = &mut self.0 {
            s.affinity = hit;
        }
    }

    pub(crate) fn finish(mut self, o: Outcome) {
        if let Some(s) = self.0.take() {
            s.finish(o);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let Some(mut s) = self.0.take() else { return };
        let (status, error) = if std::thread::panicking() {
            (500, "the request's handler panicked")
        } else {
            (
                CLIENT_CLOSED,
                "client closed the connection before the response began",
            )
        };
        let node = s.waiting_on.take();
        s.finish(Outcome {
            status,
            node,
            error: error.to_owned(),
            ..Outcome::default()
        });
    }
}

impl Started {
    fn finish(self, o: Outcome) {
        let latency = self.started.elapsed();
        let id = self.sink.history.next_id.fetch_add(1, Ordering::Relaxed);
        let node = o.node.as_ref().map(|(name, live)| {
            live.processed.fetch_add(1, Ordering::Relaxed);
            if o.node_failed || o.status >= 500 {
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
            name.clone()
        });
        let label = if self.known_model { &*self.model } else { "" };
        let node_label = node.as_deref().unwrap_or_default();
        let pair = o
            .pair
            .as_ref()
            .filter(|_| self.known_model)
            .map(|p| p.metrics(&self.sink.metrics, label, node_label));
        self.sink.metrics.observe(&Observation {
            model: label,
            node: node_label,
            pair,
            code: o.status,
            latency_secs: latency.as_secs_f64(),
            ttft_secs: o.ttft.map(|t| t.as_secs_f64()),
            tokens_in: o.tokens_in,
            tokens_out: o.tokens_out,
        });
        self.sink.history.push(Rec {
            id,
            time: self.time,
            method: self.method,
            path: self.path,
            model: self.model,
            node,
            status: o.status,
            stream: self.stream,
            latency_ms: latency.as_secs_f64() * 1e3,
            ttft_ms: o.ttft.map(|t| t.as_secs_f64() * 1e3),
            tokens_in: o.tokens_in,
            tokens_out: o.tokens_out,
            retries: o.retries,
            error: o.error,
            affinity: self.affinity,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, model: &str, latency: f64) -> Rec {
        Rec {
            id: 0,
            time: jiff::Timestamp::now(),
            method: Method::POST,
            path: Cow::Borrowed("/api/chat"),
            model: Arc::from(model),
            node: Some(Arc::from(node)),
            status: 200,
            stream: false,
            latency_ms: latency,
            ttft_ms: None,
            tokens_in: None,
            tokens_out: None,
            retries: 0,
            error: String::new(),
            affinity: None,
        }
    }

    #[test]
    fn ring_is_bounded_newest_first_and_filtered() {
        let h = History::new(3);
        for (i, (n, m)) in [
            ("a", "llama3"),
            ("b", "llama3:latest"),
            ("a", "qwen"),
            ("b", "qwen"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = rec(n, m, 1.0);
            r.id = i as u64;
            h.push(r);
        }
        let all = h.list(&Filter::new(&HistoryQuery::default()), 10);
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2, 1]);
        let q = HistoryQuery {
            model: Some("llama3".into()),
            ..HistoryQuery::default()
        };
        assert_eq!(h.list(&Filter::new(&q), 10).len(), 1);
        let q = HistoryQuery {
            node: Some("a".into()),
            ..HistoryQuery::default()
        };
        assert_eq!(h.list(&Filter::new(&q), 10).len(), 1);
        assert_eq!(h.list(&Filter::new(&HistoryQuery::default()), 2).len(), 2);
    }

    #[test]
    fn percentiles() {
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(p.p50, Some(51.0));
        assert_eq!(p.p95, Some(95.0));
    }
}
