//! The running fake: accept loop, per-connection serving, and the handle
//! tests hold.
//!
//! It drives hyper directly rather than `axum::serve` because faults need
//! the connection in hand: refusing connects means closing the listener,
//! "node died" means dropping live sockets, and `restart` must rebind the
//! very same port.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, HOST, HeaderValue, ORIGIN,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{self, Body, Killed};
use crate::config::{Api, Config, KeepAlive};
use crate::cors::{self, Cors};
use crate::fault::Fault;
use crate::hostcheck;
use crate::names::normalize_model_name;
use crate::routes;
use crate::sched::Scheduler;
use crate::shared::{Ctx, Faults, Shared};
use crate::stats::{RequestGuard, Stats, StatsHub};
use crate::store::{ModelEntry, ModelStore};
use crate::util::{lock, write};

/// A listener handed to [`FakeOllamaBuilder::listener`]: std's or tokio's.
pub enum ProvidedListener {
    /// A bound `std::net::TcpListener` (switched to non-blocking for you).
    Std(std::net::TcpListener),
    /// A bound `tokio::net::TcpListener`.
    Tokio(TcpListener),
}

impl From<std::net::TcpListener> for ProvidedListener {
    fn from(l: std::net::TcpListener) -> Self {
        ProvidedListener::Std(l)
    }
}

impl From<TcpListener> for ProvidedListener {
    fn from(l: TcpListener) -> Self {
        ProvidedListener::Tokio(l)
    }
}

/// Configures and starts a [`FakeOllama`]. Every knob has a test-friendly
/// default: eight tokens 10 ms apart after 10 ms, one slot, no load time.
#[must_use = "call .start().await to run the fake"]
pub struct FakeOllamaBuilder {
    config: Config,
    models: Vec<String>,
    pullable: Option<Vec<String>>,
    bind: Option<String>,
    listener: Option<ProvidedListener>,
    models_dir: Option<PathBuf>,
    fault: Option<Fault>,
}

impl FakeOllamaBuilder {
    fn new() -> Self {
        FakeOllamaBuilder {
            config: Config::default(),
            models: Vec::new(),
            pullable: None,
            bind: None,
            listener: None,
            models_dir: None,
            fault: None,
        }
    }

    /// Models installed from the start (names are normalised, so `llama3`
    /// is `llama3:latest`).
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models.extend(models.into_iter().map(Into::into));
        self
    }

    /// Restricts what `/api/pull` can fetch; by default any valid name
    /// pulls. Pulling anything else fails like an unknown model does.
    pub fn pullable<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pullable = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Version reported by `/api/version` (default `0.33.0`).
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.config.version = v.into();
        self
    }

    /// Time to first token once a slot is held and the model loaded: the
    /// prompt evaluation (default 10 ms).
    pub fn ttft(mut self, d: Duration) -> Self {
        self.config.ttft = d;
        self
    }

    /// Generation speed after the first token (default 100/s).
    pub fn tokens_per_sec(mut self, r: f64) -> Self {
        self.config.tokens_per_sec = r;
        self
    }

    /// Tokens per reply (default 8); `options.num_predict`/`max_tokens`
    /// shorten it, with `done_reason: "length"`.
    pub fn tokens(mut self, n: usize) -> Self {
        self.config.tokens = n;
        self
    }

    /// Concurrent generations per loaded model (`OLLAMA_NUM_PARALLEL`,
    /// default 1); further requests queue in FIFO order.
    pub fn num_parallel(mut self, n: usize) -> Self {
        self.config.num_parallel = n.max(1);
        self
    }

    /// Requests allowed to wait for a slot (`OLLAMA_MAX_QUEUE`, default
    /// 512); past it Ollama answers 503 at once.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// Time the first request for an unloaded model spends loading it
    /// (default 0).
    pub fn load_time(mut self, d: Duration) -> Self {
        self.config.load_time = d;
        self
    }

    /// How long a pull of a new model takes (default 120 ms).
    pub fn pull_duration(mut self, d: Duration) -> Self {
        self.config.pull_duration = d;
        self
    }

    /// Default `keep_alive` for requests that give none
    /// (`OLLAMA_KEEP_ALIVE`, default 5 minutes).
    pub fn keep_alive(mut self, k: KeepAlive) -> Self {
        self.config.keep_alive = k;
        self
    }

    /// Length of embedding vectors (default 384).
    pub fn embedding_dim(mut self, n: usize) -> Self {
        self.config.embedding_dim = n.max(1);
        self
    }

    /// Address to listen on (default `127.0.0.1:0`, a free port).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = Some(addr.into());
        self
    }

    /// Serve on an already bound listener (std's or tokio's), e.g. one a
    /// test bound before spawning other parts.
    pub fn listener(mut self, l: impl Into<ProvidedListener>) -> Self {
        self.listener = Some(l.into());
        self
    }

    /// Ollama's loopback `Host` check (default on). It only applies when
    /// the fake listens on a loopback address, as in Ollama.
    pub fn host_check(mut self, on: bool) -> Self {
        self.config.host_check = on;
        self
    }

    /// Keeps the installed-model list in `dir` (like `OLLAMA_MODELS`), so
    /// a fake started again on the same directory still has what was pulled.
    pub fn models_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.models_dir = Some(dir.into());
        self
    }

    /// Which server to play: Ollama (default) or an OpenAI-compatible
    /// server like llama.cpp's `llama-server` or vLLM ([`Api::OpenAi`]).
    pub fn api(mut self, api: Api) -> Self {
        self.config.api = api;
        self
    }

    /// OpenAI mode: require this key as `Authorization: Bearer KEY` (or
    /// `x-api-key`) on every request but `/health`; 401 without it.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// OpenAI mode: serve `/v1/messages` natively (default on, as
    /// `llama-server` does; off answers 404 as vLLM may).
    pub fn native_messages(mut self, on: bool) -> Self {
        self.config.native_messages = on;
        self
    }

    /// OpenAI mode: serve `/v1/responses` natively (default on).
    pub fn native_responses(mut self, on: bool) -> Self {
        self.config.native_responses = on;
        self
    }

    /// A fault active from the start.
    pub fn fault(mut self, f: Fault) -> Self {
        self.fault = Some(f);
        self
    }

    /// Starts serving; panics if the address cannot be bound (tests want a
    /// loud failure, the binary uses [`try_start`](Self::try_start)).
    pub async fn start(self) -> FakeOllama {
        match self.try_start().await {
            Ok(f) => f,
            Err(e) => panic!("fake-ollama failed to start: {e}"),
        }
    }

    /// Starts serving, or says why it could not (address in use, bad model
    /// name, unreadable models directory).
    pub async fn try_start(self) -> io::Result<FakeOllama> {
        let listener = match self.listener {
            Some(ProvidedListener::Std(l)) => {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)?
            }
            Some(ProvidedListener::Tokio(l)) => l,
            None => {
                let spec = self.bind.as_deref().unwrap_or("127.0.0.1:0");
                let addr = tokio::net::lookup_host(spec).await?.next().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("no address for {spec}"),
                    )
                })?;
                bind_reusable(addr)?
            }
        };
        let addr = listener.local_addr()?;

        let invalid = |n: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid model name {n:?}"),
            )
        };
        let pullable = match self.pullable {
            Some(p) => Some(
                p.iter()
                    .map(|n| normalize_model_name(n).ok_or_else(|| invalid(n)))
                    .collect::<io::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let mut ids: Vec<String> = Vec::new();
        for m in &self.models {
            if !ids.contains(m) {
                ids.push(m.clone());
            }
        }
        let mut store = ModelStore::new(pullable, self.models_dir);
        store.load()?;
        for m in &self.models {
            let name = normalize_model_name(m).ok_or_else(|| invalid(m))?;
            if store.get(&name).is_none() {
                store.insert(ModelEntry::new(name));
            }
        }
        store.persist();

        let refusing = self.fault == Some(Fault::RefuseConnections);
        let shared = Arc::new(Shared {
            config: RwLock::new(self.config),
            store: Mutex::new(store),
            sched: Scheduler::default(),
            stats: StatsHub::new(),
            faults: Mutex::new(Faults {
                global: self.fault,
                ..Faults::default()
            }),
            blobs: Mutex::new(HashSet::new()),
            ids: Mutex::new(ids),
            bodies: Mutex::new(std::collections::HashMap::new()),
            loopback: addr.ip().is_loopback(),
        });
        let serving = if refusing {
            drop(listener);
            None
        } else {
            Some(Serving::spawn(listener, shared.clone()))
        };
        tracing::debug!(%addr, "fake ollama listening");
        Ok(FakeOllama {
            inner: Arc::new(Inner {
                shared,
                addr,
                control: tokio::sync::Mutex::new(Control {
                    serving,
                    stopped: false,
                    refusing,
                }),
            }),
        })
    }
}

/// A running fake Ollama. Cheap to clone; the server stops when the last
/// clone is dropped (or on [`stop`](Self::stop)).
///
/// ```no_run
/// # async fn demo() {
/// use herd_testkit::{FakeOllama, Fault};
/// let fake = FakeOllama::builder().models(["llama3.2:1b"]).start().await;
/// let url = fake.url(); // http://127.0.0.1:PORT
/// fake.set_fault(Fault::status(503, "")).await;
/// fake.clear_fault().await;
/// assert_eq!(fake.stats().requests_to("/api/chat"), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct FakeOllama {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    control: tokio::sync::Mutex<Control>,
}

/// Whether the fake listens: it does unless stopped or refusing.
struct Control {
    serving: Option<Serving>,
    stopped: bool,
    refusing: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.control.get_mut().serving.take() {
            s.token.cancel();
        }
    }
}

impl FakeOllama {
    /// A builder with test-friendly defaults.
    pub fn builder() -> FakeOllamaBuilder {
        FakeOllamaBuilder::new()
    }

    /// The bound address (stable across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT` (loopback even when bound to `0.0.0.0`).
    pub fn url(&self) -> String {
        format!("http://{}", self.host_port())
    }

    /// `127.0.0.1:PORT`, the form `OLLAMA_HOST` takes.
    pub fn host_port(&self) -> String {
        let addr = self.inner.addr;
        let ip = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        SocketAddr::new(ip, addr.port()).to_string()
    }

    /// Sets the fault for every path. `RefuseConnections` closes the
    /// listener and drops open connections before this returns; any other
    /// fault reopens it.
    ///
    /// Panics if the port cannot be bound again (another process took it).
    pub async fn set_fault(&self, fault: Fault) {
        let refusing = fault == Fault::RefuseConnections;
        lock(&self.inner.shared.faults).global = Some(fault);
        let mut control = self.inner.control.lock().await;
        control.refusing = refusing;
        self.reconcile_or_panic(&mut control).await;
    }

    /// Sets a fault for requests to one exact path (e.g. a 500 on
    /// `/api/tags` only). It wins over the global fault for that path.
    pub async fn set_fault_on(&self, path: &str, fault: Fault) {
        lock(&self.inner.shared.faults)
            .by_path
            .insert(path.to_owned(), fault);
    }

    /// Clears every fault, reopening the listener if it was refusing.
    pub async fn clear_fault(&self) {
        *lock(&self.inner.shared.faults) = Faults::default();
        let mut control = self.inner.control.lock().await;
        control.refusing = false;
        self.reconcile_or_panic(&mut control).await;
    }

    /// The global fault, if any.
    pub fn fault(&self) -> Option<Fault> {
        lock(&self.inner.shared.faults).global.clone()
    }

    /// Changes the time to first token for requests that arrive from now on.
    pub fn set_ttft(&self, d: Duration) {
        write(&self.inner.shared.config).ttft = d;
    }

    /// Changes the token rate, also for streams already running.
    pub fn set_tokens_per_sec(&self, r: f64) {
        write(&self.inner.shared.config).tokens_per_sec = r;
    }

    /// Changes the reply length for requests that arrive from now on.
    pub fn set_tokens(&self, n: usize) {
        write(&self.inner.shared.config).tokens = n;
    }

    /// Changes the model load time.
    pub fn set_load_time(&self, d: Duration) {
        write(&self.inner.shared.config).load_time = d;
    }

    /// Changes how long pulls take.
    pub fn set_pull_duration(&self, d: Duration) {
        write(&self.inner.shared.config).pull_duration = d;
    }

    /// Installs a model (as if pulled). Panics on a name Ollama would
    /// reject, which is a bug in the test.
    pub fn add_model(&self, name: &str) {
        let Some(canonical) = normalize_model_name(name) else {
            panic!("fake-ollama: invalid model name {name:?}");
        };
        self.inner.shared.install(ModelEntry::new(canonical));
        let mut ids = lock(&self.inner.shared.ids);
        if !ids.iter().any(|i| i == name) {
            ids.push(name.to_owned());
        }
    }

    /// Removes a model (unloading it); returns whether it was installed.
    pub fn remove_model(&self, name: &str) -> bool {
        lock(&self.inner.shared.ids).retain(|i| i != name);
        normalize_model_name(name).is_some_and(|c| self.inner.shared.uninstall(&c).is_some())
    }

    /// Installed models, as `/api/tags` lists them (newest first).
    pub fn models(&self) -> Vec<String> {
        lock(&self.inner.shared.store)
            .list()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    /// Loaded models, as `/api/ps` lists them.
    pub fn loaded_models(&self) -> Vec<String> {
        self.inner
            .shared
            .sched
            .loaded()
            .into_iter()
            .map(|l| l.entry.name)
            .collect()
    }

    /// Stops listening and drops every connection (requests in flight count
    /// as aborted), like a killed Ollama. Connects are refused afterwards.
    pub async fn stop(&self) {
        let mut control = self.inner.control.lock().await;
        control.stopped = true;
        self.reconcile_or_panic(&mut control).await;
    }

    /// Stops (if running) and serves again on the same port, with loaded
    /// models forgotten but installed ones kept, as after an Ollama
    /// restart. A `RefuseConnections` fault is cleared; others stay.
    pub async fn restart(&self) -> io::Result<()> {
        let mut control = self.inner.control.lock().await;
        control.stopped = true;
        self.reconcile(&mut control).await?;
        self.inner.shared.sched.clear();
        {
            let mut faults = lock(&self.inner.shared.faults);
            if faults.global == Some(Fault::RefuseConnections) {
                faults.global = None;
            }
        }
        control.stopped = false;
        control.refusing = false;
        self.reconcile(&mut control).await
    }

    /// Whether the fake accepts connections right now.
    pub async fn is_serving(&self) -> bool {
        self.inner.control.lock().await.serving.is_some()
    }

    async fn reconcile_or_panic(&self, control: &mut Control) {
        if let Err(e) = self.reconcile(control).await {
            panic!(
                "fake-ollama could not listen on {} again: {e}",
                self.inner.addr
            );
        }
    }

    async fn reconcile(&self, control: &mut Control) -> io::Result<()> {
        let want = !control.stopped && !control.refusing;
        if want && control.serving.is_none() {
            let listener = bind_reusable(self.inner.addr)?;
            control.serving = Some(Serving::spawn(listener, self.inner.shared.clone()));
        } else if !want && let Some(s) = control.serving.take() {
            s.shutdown().await;
        }
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats.snapshot()
    }

    /// The last JSON body received on `path`, kept by the endpoints of
    /// OpenAI mode and by `/v1/messages` and `/v1/responses` in both modes:
    /// what a proxy in front of the fake actually sent.
    pub fn last_body(&self, path: &str) -> Option<serde_json::Value> {
        let bytes = lock(&self.inner.shared.bodies).get(path).cloned()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Requests received on `path` so far.
    pub fn requests(&self, path: &str) -> u64 {
        self.stats().requests_to(path)
    }

    /// Requests received on any path.
    pub fn total_requests(&self) -> u64 {
        self.stats().total_requests
    }

    /// Requests whose response has not ended.
    pub fn in_flight(&self) -> usize {
        self.stats().in_flight
    }

    /// Responses that ended normally.
    pub fn completed(&self) -> u64 {
        self.stats().completed
    }

    /// Responses the client abandoned before their end.
    pub fn cancelled(&self) -> u64 {
        self.stats().cancelled
    }

    /// Responses the fake cut (faults, stop).
    pub fn aborted(&self) -> u64 {
        self.stats().aborted
    }

    /// The `Host` header of the last request.
    pub fn last_host(&self) -> Option<String> {
        self.stats().last_host
    }

    /// Zeroes the counters (requests in flight stay counted as in flight).
    pub fn reset_stats(&self) {
        self.inner.shared.stats.reset();
    }

    /// Waits until `pred` holds for the counters, without polling: it wakes
    /// on every change. Bound it with `tokio::time::timeout` in tests.
    pub async fn wait_until(&self, mut pred: impl FnMut(&Stats) -> bool) -> Stats {
        let mut changes = self.inner.shared.stats.subscribe();
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            // The sender lives in `shared`, which `self` keeps alive.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until at least `n` requests are in flight.
    pub async fn wait_for_in_flight(&self, n: usize) -> Stats {
        self.wait_until(|s| s.in_flight >= n).await
    }

    /// Waits until `path` has received at least `n` requests.
    pub async fn wait_for_requests(&self, path: &str, n: u64) -> Stats {
        self.wait_until(|s| s.requests_to(path) >= n).await
    }

    /// Waits until at least `n` requests wait for a slot.
    pub async fn wait_for_queued(&self, n: usize) -> Stats {
        self.wait_until(|s| s.queued >= n).await
    }
}

impl std::fmt::Debug for FakeOllama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOllama")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// Binds with `SO_REUSEADDR`, so the port can be bound again right after
/// the fake closed connections itself (which leaves them in TIME_WAIT).
fn bind_reusable(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// One period of listening: the accept loop and its connections.
struct Serving {
    token: CancellationToken,
    tracker: TaskTracker,
    accept: JoinHandle<()>,
}

impl Serving {
    fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Serving {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            shared,
            token.clone(),
            tracker.clone(),
        ));
        Serving {
            token,
            tracker,
            accept,
        }
    }

    /// Closes the listener and every connection, and waits until they are.
    async fn shutdown(self) {
        self.token.cancel();
        let _ = self.accept.await;
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = token.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tracker.spawn(serve_connection(stream, shared.clone(), token.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "fake ollama: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, token: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let svc_token = token.clone();
    let service = service_fn(move |req| handle(shared.clone(), svc_token.clone(), req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "fake ollama: connection ended with an error");
        },
        () = token.cancelled() => {}
    }
}

/// One request: count it, check its origin (CORS) and `Host`, apply
/// faults, route.
async fn handle(
    shared: Arc<Shared>,
    token: CancellationToken,
    req: Request<Incoming>,
) -> Result<Response<Body>, Killed> {
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    tracing::debug!(method = %req.method(), %path, host = ?host, "fake ollama request");
    let guard = RequestGuard::start(shared.stats.clone(), path.clone(), host.clone(), token);
    let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    // llama-server and vLLM check neither `Origin` nor `Host`.
    let ollama = shared.config().api == Api::Ollama;
    let checked = if ollama {
        cors::check(req.method(), origin, host.as_deref())
    } else {
        Cors::None
    };
    let allow = match checked {
        Cors::None => None,
        Cors::Forbidden => {
            return Ok(body::empty(StatusCode::FORBIDDEN).map(|b| b.with_guard(guard)));
        }
        Cors::Preflight(o) => {
            let mut r = body::empty(StatusCode::NO_CONTENT).map(|b| b.with_guard(guard));
            let h = r.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, header_value(&o));
            h.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"),
            );
            return Ok(r);
        }
        Cors::Allow(o) => Some(header_value(&o)),
    };
    let mut answer = route(shared, req, path, host, guard).await;
    if let (Ok(r), Some(o)) = (&mut answer, allow) {
        r.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    answer
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("null"))
}

/// The rest of [`handle`]: `Host`, faults, the endpoint.
async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    path: String,
    host: Option<String>,
    mut guard: RequestGuard,
) -> Result<Response<Body>, Killed> {
    if shared.config().api == Api::Ollama
        && shared.config().host_check
        && shared.loopback
        && !hostcheck::allowed(host.as_deref())
    {
        return Ok(body::empty(StatusCode::FORBIDDEN).map(|b| b.with_guard(guard)));
    }

    let mut slow = 1.0;
    let mut die_after = None;
    match shared.fault_for(&path) {
        None => {}
        Some(Fault::RefuseConnections | Fault::DieMidStream { after_chunks: 0 }) => {
            guard.abort();
            return Err(Killed);
        }
        Some(Fault::Hang) => {
            // Held until the client goes away or the fake stops.
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Some(Fault::Status { code, body: text }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ct = if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
                body::JSON
            } else {
                "text/plain; charset=utf-8"
            };
            let r = body::response(status, (!text.is_empty()).then_some(ct), Body::full(text));
            return Ok(r.map(|b| b.with_guard(guard)));
        }
        Some(Fault::Garbage) => {
            let r = body::response(
                StatusCode::OK,
                Some(body::JSON),
                Body::full(&b"\xde\xad\xbe\xef<html>not json {{{\x00\n"[..]),
            );
            return Ok(r.map(|b| b.with_guard(guard)));
        }
        Some(Fault::DieMidStream { after_chunks }) => die_after = Some(after_chunks),
        Some(Fault::SlowDown { factor }) => slow = factor,
    }

    let ctx = Ctx { shared, slow };
    let mut resp = routes::dispatch(ctx, req).await;
    if let Some(n) = die_after {
        resp = resp.map(|b| b.die_after(n));
    }
    tracing::debug!(status = %resp.status(), %path, "fake ollama response");
    Ok(resp.map(|b| b.with_guard(guard)))
}
