//! The routing table: an immutable snapshot of the fleet built from the
//! `Node` store on each change and swapped in whole (`ArcSwap`), so the
//! request path reads it without a lock. Live counters (in flight, latency
//! EWMA, breaker) survive rebuilds: they are kept by node name in [`Lives`]
//! and shared by `Arc` into every snapshot. So is what each node's object
//! derives to, reused while its `resourceVersion` stays the same: a
//! heartbeat re-derives one node, and a rebuild of 10,000 nodes takes a few
//! milliseconds (the rebuild loop in `state.rs` paces itself by that).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::http::uri::{Authority, Scheme};
use herd_api::model_name::{self, ModelName};
use herd_api::{ConditionStatus, Node, NodeApi, conditions, endpoints, find_condition};

/// Monotonic nanoseconds since the proxy started: what the atomics store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `instant` on this clock (for a time already read for another use:
    /// each reading of the system clock costs tens of nanoseconds).
    pub(crate) fn at(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn after(&self, d: Duration) -> u64 {
        self.now()
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .max(1)
    }
}

/// Per-node counters shared by every snapshot and every request.
#[derive(Debug, Default)]
pub(crate) struct NodeLive {
    /// Requests sent whose response body has not ended.
    pub in_flight: AtomicU32,
    /// Clock nanos until which the node is left out after a connection
    /// failure; 0 when it is not tripped.
    pub tripped_until: AtomicU64,
    /// Logical time of the last pick (see `Shared::picks`).
    pub last_pick: AtomicU64,
    /// Picks, decaying over time (f64 bits), as of `recent_at`.
    recent: AtomicU64,
    recent_at: AtomicU64,
    /// Responses the node sent (any status).
    pub processed: AtomicU64,
    /// Attempts that failed: no connection, no answer in time, a 5xx, or a
    /// stream cut short by the node.
    pub errors: AtomicU64,
    /// A success was reported since the last failure (`Reachable=True`
    /// is written once per recovery).
    pub reachable_seen: AtomicBool,
    /// A connection check after a broken connection is running.
    pub checking: AtomicBool,
    /// From the last heartbeat: CPU and memory use (f64 bits, 0–100) and
    /// `status.usage.inFlight` as the store has it. Updated in place, so a
    /// heartbeat that changes nothing else needs no new table.
    cpu_percent: AtomicU64,
    memory_percent: AtomicU64,
    status_in_flight: AtomicU32,
}

impl NodeLive {
    fn new() -> NodeLive {
        NodeLive::default()
    }

    fn set_usage(&self, usage: Option<&herd_api::NodeUsage>) {
        let (cpu, mem, in_flight) = usage.map_or((0.0, 0.0, 0), |u| {
            (u.cpu_percent, u.memory_percent, u.in_flight)
        });
        self.cpu_percent.store(cpu.to_bits(), Ordering::Relaxed);
        self.memory_percent.store(mem.to_bits(), Ordering::Relaxed);
        self.status_in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// Leaves the node out of routing until clock time `until`.
    pub(crate) fn trip(&self, until: u64) {
        self.tripped_until.store(until, Ordering::Relaxed);
        self.reachable_seen.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_tripped(&self, now: u64) -> bool {
        self.tripped_until.load(Ordering::Relaxed) > now
    }

    /// The decaying count of picks at clock `now`.
    pub(crate) fn recent_picks(&self, now: u64) -> f64 {
        let v = f64::from_bits(self.recent.load(Ordering::Relaxed));
        let at = self.recent_at.load(Ordering::Relaxed);
        crate::balance::decayed(v, nanos_to_secs(now.saturating_sub(at)))
    }

    /// Records a pick at clock `now` and logical time `seq`. Two picks
    /// racing may count once; a tie-breaker can afford that.
    pub(crate) fn note_pick(&self, now: u64, seq: u64) {
        let v = self.recent_picks(now) + 1.0;
        self.recent.store(v.to_bits(), Ordering::Relaxed);
        self.recent_at.store(now, Ordering::Relaxed);
        self.last_pick.store(seq, Ordering::Relaxed);
    }
}

#[allow(clippy::cast_precision_loss)]
fn nanos_to_secs(n: u64) -> f64 {
    n as f64 / 1e9
}

/// Per-(node, model) latency estimates, as f64 bits (0 = not measured)
/// with the clock time of their last sample, and the pair's metric series
/// once first used.
#[derive(Default)]
pub(crate) struct ModelLive {
    /// Time to first byte of streamed requests.
    ttfb_stream: (AtomicU64, AtomicU64),
    /// Time to first byte of non-streamed requests (the whole generation).
    ttfb_full: (AtomicU64, AtomicU64),
    metrics: std::sync::OnceLock<crate::metrics::Pair>,
}

impl std::fmt::Debug for ModelLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelLive").finish_non_exhaustive()
    }
}

impl ModelLive {
    fn slot(&self, stream: bool) -> &(AtomicU64, AtomicU64) {
        if stream {
            &self.ttfb_stream
        } else {
            &self.ttfb_full
        }
    }

    /// The estimate as of clock `now` (faded since its last sample).
    pub(crate) fn ttfb(&self, stream: bool, now: u64) -> Option<f64> {
        let (value, at) = self.slot(stream);
        match value.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(crate::balance::ttfb_decayed(
                f64::from_bits(bits),
                nanos_to_secs(now.saturating_sub(at.load(Ordering::Relaxed))),
            )),
        }
    }

    /// Folds one sample in at clock `now`; `reference` is what the other
    /// candidates take. Races between concurrent updates lose a sample at
    /// worst, which an average can afford.
    pub(crate) fn observe(&self, stream: bool, secs: f64, now: u64, reference: Option<f64>) {
        let next = crate::balance::ewma_update(self.ttfb(stream, now), secs, reference).max(1e-9);
        let (value, at) = self.slot(stream);
        value.store(next.to_bits(), Ordering::Relaxed);
        at.store(now, Ordering::Relaxed);
    }

    /// The pair's metric series (labels given the first time).
    pub(crate) fn metrics(
        &self,
        m: &crate::metrics::Metrics,
        model: &str,
        node: &str,
    ) -> &crate::metrics::Pair {
        self.metrics.get_or_init(|| m.pair(model, node))
    }
}

/// What a rebuild keeps from the last one, by node name (pruned to the
/// nodes that still exist): the live counters, which must survive rebuilds,
/// and everything derived from a node's object, reused while its
/// `resourceVersion` is unchanged. A heartbeat re-derives one node; the
/// rest of a rebuild is pointer copies and one hash lookup per node model.
#[derive(Default)]
pub(crate) struct Lives {
    /// Sorted by node name, as the last table's nodes.
    nodes: Mutex<Vec<Derived>>,
    /// The backend tokens by Secret name, as of the Secret store's
    /// generation (see [`Lives::set_tokens`]).
    tokens: Mutex<Tokens>,
}

/// Secret tokens by name. `Debug` shows names only.
#[derive(Default, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    generation: u64,
    by_name: HashMap<String, Arc<str>>,
}

impl Tokens {
    pub(crate) fn new(generation: u64, by_name: HashMap<String, Arc<str>>) -> Tokens {
        Tokens {
            generation,
            by_name,
        }
    }

    fn get(&self, name: &str) -> Option<Arc<str>> {
        self.by_name.get(name).cloned()
    }
}

impl Lives {
    /// Takes the Secret store's tokens when its generation moved on; true
    /// when they changed (nodes that name a Secret are then derived anew).
    pub(crate) fn set_tokens(&self, generation: u64, load: impl FnOnce() -> Tokens) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.generation == generation {
            return false;
        }
        let fresh = load();
        let changed = fresh.by_name != tokens.by_name;
        *tokens = fresh;
        changed
    }
}

/// One node's part of the table, as of one `resourceVersion`.
struct Derived {
    /// `None` for an object without one (built in tests): never reused.
    resource_version: Option<String>,
    /// What routing reads from the object (all but heartbeat figures).
    key: RoutingKey,
    backend: Arc<Backend>,
    models: Vec<NodeModelRef>,
    /// Models only the overlay lists on this node (pulled through the
    /// proxy, status not caught up yet), kept for their live estimates.
    extra: Vec<NodeModelRef>,
}

/// Everything of a node's object that the table is built from, except
/// the heartbeat figures kept in [`NodeLive`]: when a new version has the
/// same key, the table stays as it is.
#[derive(Clone, Debug, PartialEq)]
struct RoutingKey {
    ready: bool,
    unschedulable: bool,
    spec_weight: u32,
    routing_weight: Option<u32>,
    max_parallel: u32,
    ollama_url: String,
    api: NodeApi,
    ca_cert: String,
    /// Compared, never shown: `Token`'s `Debug` hides it.
    token: Option<Token>,
    endpoints: Option<Vec<String>>,
    ollama_version: Option<String>,
    unreachable: bool,
    models: Vec<(String, bool)>,
}

/// A backend token in a key. `Debug` shows no token.
#[derive(Clone, PartialEq, Eq)]
struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl RoutingKey {
    fn of(node: &Node, tokens: &Tokens) -> RoutingKey {
        let status = &node.status;
        RoutingKey {
            ready: node.is_ready(),
            unschedulable: node.spec.unschedulable,
            spec_weight: node.spec.weight,
            routing_weight: status.routing.as_ref().map(|r| r.weight),
            max_parallel: node.spec.max_parallel,
            ollama_url: node.spec.url.clone(),
            api: node.spec.api,
            ca_cert: node.spec.ca_cert.clone(),
            token: node
                .spec
                .auth
                .as_ref()
                .and_then(|a| tokens.get(&a.secret_ref))
                .map(Token),
            endpoints: status.endpoints.clone(),
            ollama_version: status.info.as_ref().map(|i| i.ollama_version.clone()),
            unreachable: find_condition(&status.conditions, conditions::REACHABLE)
                .is_some_and(|c| c.status == ConditionStatus::False),
            models: status
                .models
                .iter()
                .map(|m| (m.name.clone(), m.loaded))
                .collect(),
        }
    }
}

/// One model on one node, with its spellings worked out once.
#[derive(Clone)]
struct NodeModelRef {
    canonical: Arc<str>,
    /// As the node lists it.
    raw: Arc<str>,
    /// Ollama's short form.
    display: Arc<str>,
    /// Every spelling a request may use (see [`aliases`]).
    aliases: Arc<[Arc<str>]>,
    loaded: bool,
    live: Arc<ModelLive>,
}

impl NodeModelRef {
    fn new(raw: &str, loaded: bool, live: Arc<ModelLive>) -> NodeModelRef {
        let canonical = model_name::canonical(raw);
        let display = ModelName::parse(raw).map_or_else(|_| raw.to_owned(), |n| n.short());
        NodeModelRef {
            aliases: aliases(raw, &canonical)
                .into_iter()
                .map(Arc::from)
                .collect(),
            canonical: Arc::from(canonical),
            raw: Arc::from(raw),
            display: Arc::from(display),
            loaded,
            live,
        }
    }
}

impl Derived {
    /// Derives a node's part, keeping the live counters of `prev` (the
    /// same node at an older version), if any.
    fn new(node: &Node, prev: Option<Derived>, tokens: &Tokens) -> Derived {
        let (live, mut old_models) = match prev {
            Some(p) => {
                let mut old = p.models;
                old.extend(p.extra);
                (p.backend.live.clone(), old)
            }
            None => (Arc::new(NodeLive::new()), Vec::new()),
        };
        let mut models: Vec<NodeModelRef> = Vec::with_capacity(node.status.models.len());
        for m in &node.status.models {
            let canonical = model_name::canonical(&m.name);
            if models.iter().any(|r| *r.canonical == *canonical) {
                continue; // the same model listed twice under two spellings
            }
            let live = old_models
                .iter()
                .position(|r| *r.canonical == *canonical)
                .map_or_else(Arc::default, |i| old_models.swap_remove(i).live);
            models.push(NodeModelRef::new(&m.name, m.loaded, live));
        }
        let key = RoutingKey::of(node, tokens);
        Derived {
            resource_version: node.metadata.resource_version.clone(),
            backend: Arc::new(backend(node, &key, live)),
            key,
            models,
            extra: Vec::new(),
        }
    }

    /// This node's part for `node`, a newer version of it: the same part
    /// with the heartbeat figures updated when routing reads nothing else
    /// that changed (`false`), else derived anew (`true`).
    fn update(self, node: &Node, tokens: &Tokens) -> (Derived, bool) {
        let key = RoutingKey::of(node, tokens);
        if key == self.key {
            self.backend.live.set_usage(node.status.usage.as_ref());
            let resource_version = node.metadata.resource_version.clone();
            (
                Derived {
                    resource_version,
                    ..self
                },
                false,
            )
        } else {
            (Derived::new(node, Some(self), tokens), true)
        }
    }

    /// The node's models with the overlay's pending changes applied.
    fn models_with(&mut self, overlay: &[((String, String), OverlayEntry)]) -> Vec<NodeModelRef> {
        let mut out = self.models.clone();
        for ((node, canonical), e) in overlay {
            if **node != *self.backend.name {
                continue;
            }
            let have = out.iter().position(|r| *r.canonical == **canonical);
            match (e.present, have) {
                (true, None) => {
                    let r = match self.extra.iter().find(|r| *r.canonical == **canonical) {
                        Some(r) => r.clone(),
                        None => {
                            let r = NodeModelRef::new(&e.display, false, Arc::default());
                            self.extra.push(r.clone());
                            r
                        }
                    };
                    out.push(r);
                }
                (false, Some(i)) => {
                    out.remove(i);
                }
                _ => {}
            }
        }
        out
    }
}

/// Where a node's requests go, pre-parsed from `spec.url`, with what
/// every request to it carries.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub authority: Authority,
    /// `host:port` to connect to (port 80, or 443 for https, when the URL
    /// has none).
    pub addr: String,
    /// Path prefix of the URL without its trailing slash ("" usually).
    pub prefix: String,
    /// The `Host` header the node expects: its own authority.
    pub host: HeaderValue,
    /// `Authorization: Bearer <token>` from the node's Secret, marked
    /// sensitive (never shown by `Debug`). Clients' own credentials never
    /// reach a node.
    pub auth: Option<HeaderValue>,
    /// TLS for an `https://` URL.
    pub tls: Option<Tls>,
}

/// How to speak TLS to one node: the public roots plus its `spec.caCert`.
#[derive(Clone)]
pub(crate) struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The TLS configuration of nodes without a CA of their own, made once.
fn public_roots() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| herd_tls::backend_client_config("").map(Arc::new))
        .clone()
}

impl Target {
    /// A target for `url`, without credentials or a CA of its own.
    #[cfg(test)]
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        Target::with(url, None, "")
    }

    /// A target for `url`, sending `token` as a bearer token and trusting
    /// `ca` (PEM; `""` for none) besides the public roots for `https://`.
    pub(crate) fn with(url: &str, token: Option<&str>, ca: &str) -> Result<Target, String> {
        let uri: axum::http::Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("invalid url {url:?}: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("url {url:?} has no scheme"))?;
        let https = if scheme == Scheme::HTTP {
            false
        } else if scheme == Scheme::HTTPS {
            true
        } else {
            return Err(format!(
                "url {url:?}: only http:// and https:// are supported"
            ));
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("url {url:?} has no host"))?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("url {url:?}: {e}"))?;
        let addr = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:{}", authority.host(), if https { 443 } else { 80 }),
        };
        let tls = if https {
            let config = if ca.is_empty() {
                public_roots()?
            } else {
                Arc::new(
                    herd_tls::backend_client_config(ca).map_err(|e| format!("spec.caCert: {e}"))?,
                )
            };
            let bare = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|_| format!("url {url:?}: the host is not a TLS server name"))?;
            Some(Tls {
                connector: tokio_rustls::TlsConnector::from(config),
                name,
            })
        } else {
            None
        };
        let auth = match token {
            None => None,
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    // Never the token itself in the message.
                    .map_err(|_| "the Secret's token is not a valid header value".to_owned())?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Target {
            addr,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            host,
            auth,
            tls,
        })
    }
}

/// Why a node takes no requests right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unroutable {
    NotReady,
    Cordoned,
    NoUrl,
    ZeroWeight,
}

impl Unroutable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unroutable::NotReady => "not ready",
            Unroutable::Cordoned => "cordoned",
            Unroutable::NoUrl => "no usable url",
            Unroutable::ZeroWeight => "weight 0",
        }
    }
}

/// One node as routing sees it.
#[derive(Debug)]
pub(crate) struct Backend {
    pub name: Arc<str>,
    /// `X-Herd-Node: <name>`, made once.
    pub header: HeaderValue,
    pub target: Option<Target>,
    pub ready: bool,
    pub unschedulable: bool,
    /// `status.routing.weight` when the controller set it, else `spec.weight`.
    pub weight: u32,
    pub max_parallel: u32,
    /// `status.info.ollamaVersion` ("" when not reported).
    pub ollama_version: String,
    /// The `Reachable` condition is `False` in the store.
    pub reported_unreachable: bool,
    /// The API the node's backend speaks.
    pub api: NodeApi,
    /// The backend serves Anthropic's `/v1/messages` itself (an Ollama by
    /// its version, an OpenAI server as its probe found).
    pub native_messages: bool,
    /// The same for OpenAI's `/v1/responses`.
    pub native_responses: bool,
    /// How many models the node reports loaded in memory (`/api/ps`).
    pub loaded_models: u32,
    pub live: Arc<NodeLive>,
}

impl Backend {
    /// CPU use from the node's last heartbeat, 0–100.
    pub(crate) fn cpu_percent(&self) -> f64 {
        f64::from_bits(self.live.cpu_percent.load(Ordering::Relaxed))
    }

    /// Memory use from the node's last heartbeat, 0–100.
    pub(crate) fn memory_percent(&self) -> f64 {
        f64::from_bits(self.live.memory_percent.load(Ordering::Relaxed))
    }

    /// `status.usage.inFlight` as the store has it.
    pub(crate) fn status_in_flight(&self) -> u32 {
        self.live.status_in_flight.load(Ordering::Relaxed)
    }

    /// Why the node takes no requests (breaker aside), or `None`.
    pub(crate) fn unroutable(&self) -> Option<Unroutable> {
        if !self.ready {
            Some(Unroutable::NotReady)
        } else if self.unschedulable {
            Some(Unroutable::Cordoned)
        } else if self.target.is_none() {
            Some(Unroutable::NoUrl)
        } else if self.weight == 0 {
            Some(Unroutable::ZeroWeight)
        } else {
            None
        }
    }

    /// Ready and schedulable with a URL: fan-outs (pull, delete) go here,
    /// whatever the weight. Only Ollamas: an OpenAI-compatible server
    /// has no pull, copy or delete.
    pub(crate) fn fanout_target(&self) -> bool {
        self.ready && !self.unschedulable && self.target.is_some() && self.api == NodeApi::Ollama
    }

    /// Whether this node can answer an endpoint that needs `need`.
    pub(crate) fn serves(&self, need: crate::forward::Need) -> bool {
        use crate::forward::Need;
        match need {
            Need::Any => true,
            Need::Ollama => self.api == NodeApi::Ollama,
        }
    }
}

/// One node holding one model.
#[derive(Clone, Debug)]
pub(crate) struct Holder {
    pub node: usize,
    pub loaded: bool,
    pub live: Arc<ModelLive>,
}

/// A model known on at least one node.
#[derive(Debug)]
pub(crate) struct ModelEntry {
    /// Ollama's short form (`llama3:latest`): metric labels, messages.
    pub display: Arc<str>,
    /// As the first node that has it lists it (an OpenAI server's model id).
    pub raw: Arc<str>,
    pub holders: Vec<Holder>,
}

/// A change to a node's models made through the proxy, applied on top of
/// the store until the node's own status catches up.
#[derive(Clone, Debug)]
pub(crate) struct OverlayEntry {
    pub present: bool,
    pub display: String,
    pub until: Instant,
}

/// Pending model changes by (node, canonical model).
#[derive(Default)]
pub(crate) struct Overlay {
    entries: Mutex<HashMap<(String, String), OverlayEntry>>,
}

impl Overlay {
    pub(crate) fn set(&self, node: &str, model: &str, present: bool, ttl: Duration) {
        let display = ModelName::parse(model).map_or_else(|_| model.to_owned(), |n| n.short());
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (node.to_owned(), model_name::canonical(model)),
                OverlayEntry {
                    present,
                    display,
                    until: Instant::now() + ttl,
                },
            );
    }

    /// Entries are pending (they may expire: tables must be rebuilt).
    pub(crate) fn pending(&self) -> bool {
        !self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn live_entries(&self, now: Instant) -> Vec<((String, String), OverlayEntry)> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, e| e.until > now);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A snapshot of the fleet for routing.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Every registered node, by name.
    pub nodes: Vec<Arc<Backend>>,
    pub models: Vec<ModelEntry>,
    /// Raw, short and canonical spellings of each model → index in `models`.
    /// (foldhash: looked up on every request.)
    aliases: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// The store has completed its first list (before that, "no nodes"
    /// means "not known yet").
    pub synced: bool,
    /// Some node takes requests (breaker aside).
    pub any_routable: bool,
}

impl Table {
    /// Nodes that took requests in `self` and do not in `next`: gone, no
    /// longer ready, cordoned, or weighted 0.
    pub(crate) fn left_routing<'a>(&'a self, next: &Table) -> Vec<&'a str> {
        self.nodes
            .iter()
            .filter(|b| b.unroutable().is_none())
            .filter(|b| {
                !next
                    .nodes
                    .iter()
                    .any(|n| n.name == b.name && n.unroutable().is_none())
            })
            .map(|b| &*b.name)
            .collect()
    }

    /// The model a request names, by Ollama's name equality.
    pub(crate) fn model(&self, raw: &str) -> Option<&ModelEntry> {
        let i = match self.aliases.get(raw) {
            Some(i) => *i,
            None => *self.aliases.get(model_name::canonical(raw).as_str())?,
        };
        self.models.get(i)
    }

    pub(crate) fn node(&self, name: &str) -> Option<&Backend> {
        self.nodes
            .binary_search_by(|b| (*b.name).cmp(name))
            .ok()
            .map(|i| &*self.nodes[i])
    }

    /// Builds a snapshot from the store's nodes and the overlay, reusing
    /// what `lives` kept of every node whose version has not changed.
    pub(crate) fn build(
        nodes: &[Arc<Node>],
        synced: bool,
        lives: &Lives,
        overlay: &Overlay,
    ) -> Table {
        let mut cache = lives.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let tokens = lives
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        sync(&mut cache, nodes, &tokens, false);
        Table::assemble(&mut cache, synced, overlay)
    }

    /// Brings `lives` up to date with the store's nodes and builds a new
    /// snapshot — or, unless `force`, returns `None` when no node was added,
    /// removed or changed in what routing reads (heartbeats: their CPU,
    /// memory and in-flight figures are updated in place, and the current
    /// snapshot stays right).
    pub(crate) fn refresh(
        nodes: &[Arc<Node>],
        synced: bool,
        lives: &Lives,
        overlay: &Overlay,
        force: bool,
        tokens_changed: bool,
    ) -> Option<Table> {
        let mut cache = lives.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let tokens = lives
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let changed = sync(&mut cache, nodes, &tokens, tokens_changed);
        (changed || force).then(|| Table::assemble(&mut cache, synced, overlay))
    }

    /// The snapshot of `derived` (sorted by name) with the overlay applied.
    fn assemble(derived: &mut [Derived], synced: bool, overlay: &Overlay) -> Table {
        let mut table = Table {
            synced,
            nodes: Vec::with_capacity(derived.len()),
            ..Table::default()
        };
        let mut by_canonical: HashMap<Arc<str>, usize> = HashMap::new();
        let overlay = overlay.live_entries(Instant::now());
        for (idx, d) in derived.iter_mut().enumerate() {
            table.nodes.push(d.backend.clone());
            let with_overlay;
            let models = if overlay.iter().any(|((n, _), _)| **n == *d.backend.name) {
                with_overlay = d.models_with(&overlay);
                &with_overlay
            } else {
                &d.models
            };
            for m in models {
                let mi = match by_canonical.get(&m.canonical) {
                    Some(i) => *i,
                    None => {
                        table.models.push(ModelEntry {
                            display: m.display.clone(),
                            raw: m.raw.clone(),
                            holders: Vec::new(),
                        });
                        by_canonical.insert(m.canonical.clone(), table.models.len() - 1);
                        table.models.len() - 1
                    }
                };
                table.models[mi].holders.push(Holder {
                    node: idx,
                    loaded: m.loaded,
                    live: m.live.clone(),
                });
                if !table.aliases.contains_key(&*m.raw) {
                    for alias in m.aliases.iter() {
                        table.aliases.entry(alias.clone()).or_insert(mi);
                    }
                }
            }
        }
        table.any_routable = table.nodes.iter().any(|b| b.unroutable().is_none());
        table
    }
}

/// Pairs each node with what was derived from it before (both lists
/// sorted by name, one merging pass), re-deriving what changed. True when
/// a node was added, removed or changed in what routing reads. With
/// `tokens_changed`, nodes that name a Secret are looked at again too.
fn sync(
    cache: &mut Vec<Derived>,
    nodes: &[Arc<Node>],
    tokens: &Tokens,
    tokens_changed: bool,
) -> bool {
    let mut sorted: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut changed = cache.len() != sorted.len();
    let mut prev = std::mem::take(cache).into_iter().peekable();
    let mut next: Vec<Derived> = Vec::with_capacity(sorted.len());
    for node in &sorted {
        let name = node.metadata.name.as_str();
        while prev.next_if(|d| *d.backend.name < *name).is_some() {
            changed = true;
        }
        let derived = match prev.next_if(|d| *d.backend.name == *name) {
            Some(d)
                if d.resource_version.is_some()
                    && d.resource_version == node.metadata.resource_version
                    && !(tokens_changed && node.spec.auth.is_some()) =>
            {
                d
            }
            Some(d) => {
                let (d, rederived) = d.update(node, tokens);
                changed |= rederived;
                d
            }
            None => {
                changed = true;
                Derived::new(node, None, tokens)
            }
        };
        next.push(derived);
    }
    changed |= prev.next().is_some();
    *cache = next;
    changed
}

/// Every spelling a request may use for a model, for the lock-free fast
/// path (others go through `canonical`).
fn aliases(raw: &str, canonical: &str) -> Vec<String> {
    let mut out = vec![raw.to_owned(), canonical.to_owned()];
    if let Ok(n) = ModelName::parse(raw) {
        let short = n.short();
        if let Some(untagged) = short.strip_suffix(":latest") {
            out.push(untagged.to_owned());
        }
        out.push(short);
    }
    out
}

fn backend(node: &Node, key: &RoutingKey, live: Arc<NodeLive>) -> Backend {
    let status = &node.status;
    live.set_usage(status.usage.as_ref());
    let token = key.token.as_ref().map(|t| &*t.0);
    let target = if node.spec.url.is_empty() {
        None
    } else if node.spec.auth.is_some() && token.is_none() {
        // The controller's Ready says the same to whoever looks.
        tracing::warn!(node = %node.metadata.name, "node cannot be routed to: its Secret is not known");
        None
    } else {
        match Target::with(node.spec.base_url(), token, &node.spec.ca_cert) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(node = %node.metadata.name, error = %e, "node cannot be routed to");
                None
            }
        }
    };
    let version = status
        .info
        .as_ref()
        .map_or("", |i| i.ollama_version.as_str());
    let native = |path: &str, since: (u64, u64, u64)| match node.spec.api {
        NodeApi::Ollama => version_at_least(version, since),
        NodeApi::OpenAi => node.serves(path),
    };
    Backend {
        name: Arc::from(node.metadata.name.as_str()),
        header: crate::upstream::node_header(&node.metadata.name),
        target,
        ready: node.is_ready(),
        unschedulable: node.spec.unschedulable,
        weight: status
            .routing
            .as_ref()
            .map_or(node.spec.weight, |r| r.weight),
        max_parallel: node.spec.max_parallel.max(1),
        loaded_models: u32::try_from(status.models.iter().filter(|m| m.loaded).count())
            .unwrap_or(u32::MAX),
        ollama_version: status
            .info
            .as_ref()
            .map(|i| i.ollama_version.clone())
            .unwrap_or_default(),
        reported_unreachable: find_condition(&status.conditions, conditions::REACHABLE)
            .is_some_and(|c| c.status == ConditionStatus::False),
        api: node.spec.api,
        native_messages: native(endpoints::MESSAGES, OLLAMA_MESSAGES),
        native_responses: native(endpoints::RESPONSES, OLLAMA_RESPONSES),
        live,
    }
}

/// The first Ollama releases that serve Anthropic's `/v1/messages` (0.14.0)
/// and OpenAI's `/v1/responses` (0.13.3).
const OLLAMA_MESSAGES: (u64, u64, u64) = (0, 14, 0);
const OLLAMA_RESPONSES: (u64, u64, u64) = (0, 13, 3);

/// `version` (`0.14.2`, `v0.15.0-rc1`) is `since` or later; an unknown or
/// unreadable version is not.
fn version_at_least(version: &str, since: (u64, u64, u64)) -> bool {
    let v = version.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), c) => (a, b, c.flatten().unwrap_or(0)) >= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{Condition, NodeModel, NodeSpec, Resource, RoutingStatus};

    pub(crate) fn node(name: &str, ready: bool, models: &[(&str, bool)]) -> Arc<Node> {
        let mut n = Node::new(
            name,
            NodeSpec {
                url: format!("http://127.0.0.1:1{}", name.len()),
                ..NodeSpec::default()
            },
        );
        n.status.conditions.push(Condition::new(
            conditions::READY,
            if ready {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            "Test",
            "",
        ));
        n.status.models = models
            .iter()
            .map(|(m, loaded)| NodeModel {
                name: (*m).to_owned(),
                loaded: *loaded,
                ..NodeModel::default()
            })
            .collect();
        Arc::new(n)
    }

    #[test]
    fn models_resolve_by_any_spelling() {
        let lives = Lives::default();
        let t = Table::build(
            &[
                node(
                    "b",
                    true,
                    &[("llama3:latest", true), ("qwen2.5:0.5b", false)],
                ),
                node("a", true, &[("llama3", false)]),
            ],
            true,
            &lives,
            &Overlay::default(),
        );
        assert_eq!(
            t.nodes.iter().map(|n| &*n.name).collect::<Vec<_>>(),
            ["a", "b"]
        );
        for spelling in [
            "llama3",
            "llama3:latest",
            "Llama3",
            "library/llama3",
            "registry.ollama.ai/library/llama3:latest",
        ] {
            let m = t.model(spelling).unwrap_or_else(|| panic!("{spelling}"));
            assert_eq!(&*m.display, "llama3:latest");
            assert_eq!(m.holders.len(), 2, "{spelling}");
        }
        assert!(t.model("llama3:8b").is_none());
        assert_eq!(t.model("qwen2.5:0.5b").map(|m| m.holders.len()), Some(1));
        assert!(t.node("b").is_some_and(|b| b.unroutable().is_none()));
    }

    #[test]
    fn lives_survive_rebuilds_and_are_pruned() {
        let lives = Lives::default();
        let o = Overlay::default();
        let t1 = Table::build(&[node("a", true, &[("m", false)])], true, &lives, &o);
        t1.nodes[0].live.in_flight.store(3, Ordering::Relaxed);
        t1.models[0].holders[0].live.observe(true, 0.25, 0, None);
        let t2 = Table::build(
            &[node("a", false, &[("m", false)]), node("c", true, &[])],
            true,
            &lives,
            &o,
        );
        let a = t2.node("a").expect("a");
        assert_eq!(a.live.in_flight.load(Ordering::Relaxed), 3);
        assert_eq!(a.unroutable(), Some(Unroutable::NotReady));
        assert_eq!(t2.models[0].holders[0].live.ttfb(true, 0), Some(0.25));
        let t3 = Table::build(&[node("c", true, &[])], true, &lives, &o);
        assert!(t3.node("a").is_none());
        let t4 = Table::build(&[node("a", true, &[("m", false)])], true, &lives, &o);
        assert_eq!(
            t4.nodes[0].live.in_flight.load(Ordering::Relaxed),
            0,
            "pruned"
        );
    }

    fn at(n: &Arc<Node>, rv: &str) -> Arc<Node> {
        let mut n = (**n).clone();
        n.metadata.resource_version = Some(rv.to_owned());
        Arc::new(n)
    }

    #[test]
    fn unchanged_nodes_are_reused_and_changed_ones_rederived() {
        let lives = Lives::default();
        let o = Overlay::default();
        let a = at(&node("a", true, &[("m", true)]), "1");
        let b = at(&node("b", true, &[("m", false)]), "2");
        let t1 = Table::build(&[a.clone(), b.clone()], true, &lives, &o);
        t1.models[0].holders[1].live.observe(false, 0.5, 0, None);
        // b heartbeats (new version, now at 90 % CPU): a is reused as is,
        // b is derived again and keeps its live counters.
        let mut b2 = (*node("b", true, &[("m", true), ("n", false)])).clone();
        b2.status.usage = Some(herd_api::NodeUsage {
            cpu_percent: 90.0,
            ..herd_api::NodeUsage::default()
        });
        let b2 = at(&Arc::new(b2), "3");
        let t2 = Table::build(&[b2, a.clone()], true, &lives, &o);
        assert!(Arc::ptr_eq(&t1.nodes[0], &t2.nodes[0]), "a reused");
        assert!(!Arc::ptr_eq(&t1.nodes[1], &t2.nodes[1]), "b rederived");
        assert!(Arc::ptr_eq(&t1.nodes[1].live, &t2.nodes[1].live));
        assert!((t2.nodes[1].cpu_percent() - 90.0).abs() < f64::EPSILON);
        let m = t2.model("m").expect("m");
        assert_eq!(
            m.holders.iter().map(|h| h.loaded).collect::<Vec<_>>(),
            [true, true]
        );
        assert_eq!(m.holders[1].live.ttfb(false, 0), Some(0.5));
        assert_eq!(t2.model("n").map(|m| m.holders.len()), Some(1));
        assert_eq!(t2.nodes[1].loaded_models, 1);
    }

    #[test]
    fn heartbeats_update_the_current_table_in_place() {
        let lives = Lives::default();
        let o = Overlay::default();
        let a = at(&node("a", true, &[("m", true)]), "1");
        let t1 = Table::build(std::slice::from_ref(&a), true, &lives, &o);
        assert!(Table::refresh(std::slice::from_ref(&a), true, &lives, &o, false, false).is_none());
        // A heartbeat: new version, new CPU figure, nothing else.
        let mut beat = (*a).clone();
        beat.status.usage = Some(herd_api::NodeUsage {
            cpu_percent: 42.0,
            memory_percent: 7.0,
            in_flight: 3,
        });
        let beat = at(&Arc::new(beat), "2");
        assert!(
            Table::refresh(std::slice::from_ref(&beat), true, &lives, &o, false, false).is_none()
        );
        assert!((t1.nodes[0].cpu_percent() - 42.0).abs() < f64::EPSILON);
        assert!((t1.nodes[0].memory_percent() - 7.0).abs() < f64::EPSILON);
        assert_eq!(t1.nodes[0].status_in_flight(), 3);
        // What routing reads changes: a new table.
        let mut unloaded = (*beat).clone();
        unloaded.status.models[0].loaded = false;
        let t2 = Table::refresh(
            &[at(&Arc::new(unloaded), "3")],
            true,
            &lives,
            &o,
            false,
            false,
        )
        .expect("a new table");
        assert!(!t2.model("m").expect("m").holders[0].loaded);
        assert!((t2.nodes[0].cpu_percent() - 42.0).abs() < f64::EPSILON);
        // A node added or removed: a new table; forced: a new table.
        let b = at(&node("b", true, &[]), "4");
        assert!(Table::refresh(&[a.clone(), b], true, &lives, &o, false, false).is_some());
        assert!(Table::refresh(std::slice::from_ref(&a), true, &lives, &o, false, false).is_some());
        assert!(Table::refresh(&[a], true, &lives, &o, true, false).is_some());
    }

    #[test]
    fn a_model_pulled_through_the_proxy_keeps_its_estimate_when_the_status_catches_up() {
        let lives = Lives::default();
        let o = Overlay::default();
        o.set("a", "fresh", true, Duration::from_secs(60));
        let t1 = Table::build(&[at(&node("a", true, &[]), "1")], true, &lives, &o);
        t1.model("fresh").expect("from the overlay").holders[0]
            .live
            .observe(true, 0.3, 0, None);
        let t2 = Table::build(&[at(&node("a", true, &[]), "1")], true, &lives, &o);
        assert_eq!(
            t2.model("fresh").expect("fresh").holders[0]
                .live
                .ttfb(true, 0),
            Some(0.3)
        );
        let t3 = Table::build(
            &[at(&node("a", true, &[("fresh", true)]), "2")],
            true,
            &lives,
            &o,
        );
        let h = &t3.model("fresh:latest").expect("fresh").holders[0];
        assert!(h.loaded);
        assert_eq!(h.live.ttfb(true, 0), Some(0.3));
    }

    #[test]
    fn routing_weight_overrides_spec_and_overlay_applies() {
        let lives = Lives::default();
        let overlay = Overlay::default();
        let mut n = (*node("a", true, &[("old", false)])).clone();
        n.spec.weight = 100;
        n.status.routing = Some(RoutingStatus {
            weight: 0,
            reason: "slow".into(),
        });
        overlay.set("a", "fresh", true, Duration::from_secs(60));
        overlay.set("a", "old:latest", false, Duration::from_secs(60));
        let t = Table::build(&[Arc::new(n)], true, &lives, &overlay);
        assert_eq!(t.nodes[0].weight, 0);
        assert_eq!(t.nodes[0].unroutable(), Some(Unroutable::ZeroWeight));
        assert!(t.model("fresh").is_some());
        assert!(t.model("old").is_none());
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://10.0.0.5:11434/").expect("parse");
        assert_eq!(t.host, "10.0.0.5:11434");
        assert_eq!(t.authority, "10.0.0.5:11434");
        assert_eq!(t.prefix, "");
        let p = Target::parse("http://gw.local/ollama/").expect("parse");
        assert_eq!(
            (p.authority.as_str(), p.prefix.as_str()),
            ("gw.local", "/ollama")
        );
        assert_eq!(
            (t.addr.as_str(), p.addr.as_str()),
            ("10.0.0.5:11434", "gw.local:80")
        );
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("not a url").is_err());
        let s = Target::parse("https://llm.example.com/openai").expect("https");
        assert_eq!(s.addr, "llm.example.com:443");
        assert!(s.tls.is_some() && t.tls.is_none());
        let bad_ca = Target::with(
            "https://x",
            None,
            "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n",
        );
        assert!(bad_ca.expect_err("bad CA").contains("spec.caCert"));
        let a = Target::with("http://h:1", Some("sk-secret-token"), "").expect("token");
        let auth = a.auth.as_ref().expect("auth");
        assert_eq!(auth.as_bytes(), b"Bearer sk-secret-token");
        assert!(auth.is_sensitive());
        assert!(!format!("{a:?}").contains("sk-secret-token"), "{a:?}");
        assert!(Target::with("http://h:1", Some("bad\ntoken"), "").is_err());
    }

    #[test]
    fn native_endpoints_by_ollama_version_or_probe() {
        for (v, since, want) in [
            ("0.14.0", OLLAMA_MESSAGES, true),
            ("0.14.2", OLLAMA_MESSAGES, true),
            ("v0.15.0-rc1", OLLAMA_MESSAGES, true),
            ("0.13.5", OLLAMA_MESSAGES, false),
            ("0.13.3", OLLAMA_RESPONSES, true),
            ("0.13.2", OLLAMA_RESPONSES, false),
            ("1.0", OLLAMA_MESSAGES, true),
            ("", OLLAMA_MESSAGES, false),
            ("dev", OLLAMA_RESPONSES, false),
        ] {
            assert_eq!(version_at_least(v, since), want, "{v} {since:?}");
        }
        let mut n = (*node("vllm", true, &[("m", true)])).clone();
        n.spec.api = NodeApi::OpenAi;
        n.status.endpoints = Some(vec![endpoints::RESPONSES.to_owned()]);
        let t = Table::build(&[Arc::new(n)], true, &Lives::default(), &Overlay::default());
        assert!(t.nodes[0].native_responses && !t.nodes[0].native_messages);
    }

    #[test]
    fn a_node_naming_a_secret_routes_with_its_token_once_it_is_known() {
        let mut n = (*node("hosted", true, &[("m", true)])).clone();
        n.spec.auth = Some(herd_api::NodeAuth {
            secret_ref: "key".into(),
        });
        n.metadata.resource_version = Some("1".into());
        let nodes = [Arc::new(n)];
        let (lives, overlay) = (Lives::default(), Overlay::default());
        let t = Table::build(&nodes, true, &lives, &overlay);
        assert_eq!(
            t.nodes[0].unroutable(),
            Some(Unroutable::NoUrl),
            "no token yet"
        );
        let tokens = || Tokens::new(1, HashMap::from([("key".to_owned(), Arc::from("t0ken"))]));
        assert!(lives.set_tokens(1, tokens));
        assert!(
            !lives.set_tokens(1, tokens),
            "same generation: nothing to do"
        );
        let t = Table::refresh(&nodes, true, &lives, &overlay, false, true).expect("rebuilt");
        let auth = t.nodes[0].target.as_ref().and_then(|t| t.auth.clone());
        assert_eq!(
            auth.as_ref().map(HeaderValue::as_bytes),
            Some(&b"Bearer t0ken"[..])
        );
    }
}
