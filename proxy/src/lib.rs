//! herd's Ollama- and OpenAI-compatible proxy: one address for the whole
//! fleet.
//!
//! Clients (the `ollama` CLI with `OLLAMA_HOST`, ollama-python, ollama-js,
//! OpenAI SDKs, Open WebUI) talk to the router exactly as to one Ollama;
//! each request goes to a Ready, schedulable node that holds its model,
//! chosen by load and latency, and is streamed back frame by frame.
//!
//! # Composing
//!
//! `herd-server` composes the proxy with the apiserver and the dashboard
//! (`herd_server::run`); by hand:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use herd_api::Node;
//! use herd_client::{Client, reflector, watcher};
//! use herd_proxy::{Proxy, ProxyConfig};
//!
//! // The proxy reads nodes from a watch cache of the API server at `url`.
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let nodes = reflector::spawn(client.api::<Node>(), watcher::Config::default());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let proxy = Proxy::with_shutdown(ProxyConfig::default(), nodes, client, shutdown);
//! let (router, shortcut) = (proxy.router(), proxy.shortcut());
//! # drop((router, shortcut));
//! # Ok(()) }
//! ```
//!
//! [`Proxy::router`] has no fallback (the composer adds the one 404) and
//! no body-size layer (it enforces `--max-request-body` itself, and blob
//! uploads are unbounded). Its paths (`/`, `/api/*`, `/v1/*`, `/metrics`,
//! `/apis/herd/v1/requests[/stats]`) do not overlap the apiserver's.
//! Pass the server's shutdown token ([`Proxy::with_shutdown`]) so the
//! request-history watch streams end and graceful shutdown can finish.
//!
//! # Endpoints
//!
//! | path | behaviour |
//! |---|---|
//! | `GET\|HEAD /` | `Ollama is running` |
//! | `GET\|HEAD /api/version` | lowest Ollama version among ready nodes; `0.0.0` when none can say |
//! | `GET\|HEAD /api/tags`, `GET /api/ps`, `GET /v1/models` | union over the nodes taking requests, one entry per model |
//! | `POST /api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`, `/api/show`, `/api/push`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/messages`, `/v1/responses`; `GET /v1/models/{model}` | to one node holding the model (translated where the node does not serve the client's API: see *Other backends*) |
//! | `POST /api/create` | to a node holding `from`, else the primary node |
//! | `HEAD\|POST /api/blobs/{digest}` | streamed to the primary node (first schedulable node by name) |
//! | `POST /api/pull` | every ready, schedulable node; progress merged into one stream |
//! | `DELETE /api/delete`, `POST /api/copy` | every ready, schedulable node; one answer |
//! | `GET /metrics` | Prometheus text (see the `metrics` table in the source docs) |
//! | `GET /apis/herd/v1/requests` | history, newest first: `{"apiVersion":"herd/v1","kind":"RequestList","items":[RequestRecord…]}`; `?node=`, `?model=`, `?limit=` (default 100) |
//! | `GET /apis/herd/v1/requests?watch=true` | NDJSON, one `RequestRecord` per line as requests finish (same filters) |
//! | `GET /apis/herd/v1/requests/stats` | [`RequestStats`]: per node `inFlight`, `processed`, `errors`, `latencyMs{p50,p95}`, `ttftMs{p50,p95}` |
//!
//! Every response from a node carries `X-Herd-Node: <node name>` (a
//! comma-separated list for fan-outs).
//!
//! # Choosing a node
//!
//! Candidates are nodes whose `Ready` condition is `True`, not cordoned
//! (`spec.unschedulable`), with a usable `spec.url`, a weight above 0
//! (`status.routing.weight` if the controller set it, else `spec.weight`),
//! that hold the model in `status.models` (Ollama's name equality:
//! `llama3` = `llama3:latest`), and that have not refused a connection in
//! the last `--failure-cooldown`. Nodes with the model loaded and a free
//! slot (`in-flight < spec.maxParallel`) are preferred (under `p2c` a full
//! loaded node stays a candidate: its cost, which counts slots and speed,
//! decides). Then the `--balancer` strategy picks: see [`balance`].
//!
//! # Failures
//!
//! A refused or timed-out connection, a broken connection before the
//! response head, a 503 (Ollama's full queue), a first-byte timeout
//! (`--retry-on-timeout`), or a 404 from a node the table believed had the
//! model: the request moves to another candidate, at most `--max-retries`
//! times. Connection failures leave the node out of routing for the
//! cooldown and set its `Reachable` condition to `False` (reason
//! `ConnectFailed` or `FirstByteTimeout`) in a background task, at most
//! once per second per node; a later success sets it back to `True`. After
//! the first byte nothing is retried: a node dying mid-stream ends the
//! response with Ollama's `{"error":"..."}` line (an SSE `data:` error event
//! on `/v1`). A client that disconnects drops the node connection, which
//! cancels the generation.
//!
//! No node registered: 503 `no nodes available: no nodes are registered`.
//! Nodes but none ready and schedulable: 503 saying how many are not ready,
//! cordoned, etc. No node has the model: 404 in Ollama's words for the
//! endpoint. Every candidate failed: 503 if all were busy, else 502, naming
//! each node and what happened. `/v1/*` errors use OpenAI's shape.
//!
//! # Other backends
//!
//! A node's `spec.api` says what its backend speaks. `ollama` nodes get
//! every request as the client wrote it, except `/v1/messages` and
//! `/v1/responses` on an Ollama older than 0.14.0 and 0.13.3. `openai`
//! nodes (`llama-server`, vLLM, hosted endpoints) get `/v1/chat/completions`,
//! `/v1/completions` and `/v1/embeddings` as they are, and the rest through
//! `herd-translate` (the `translated` module): Ollama's native API onto
//! chat completions and embeddings (SSE turned into NDJSON), `/api/show`
//! from the node's model list, and `/v1/messages` and `/v1/responses` onto
//! chat completions unless the probe found the node serves them
//! (`status.endpoints`). Model management (pull, copy, delete, push,
//! create, blobs) skips them. A node's `spec.auth` Secret is sent as
//! `Authorization: Bearer`; clients' own credentials never are. `https://`
//! URLs use rustls with the public roots plus the node's `spec.caCert`.
//!
//! # Not an Ollama
//!
//! - Model changes made through the proxy (pull, copy, create, delete)
//!   count at once on the nodes they happened on, for `model_overlay_ttl`,
//!   until the nodes' own status (from their nodelets) agrees.
//! - Read-only fleet views (`/`, `/api/version`, `/api/tags`, `/api/ps`,
//!   `/v1/models`) are not recorded in the request history.

pub mod affinity;
mod aggregate;
pub mod balance;
mod body;
pub mod config;
mod cors;
pub mod error;
mod fanout;
mod forward;
mod h1;
pub mod history;
mod metrics;
mod pool;
mod report;
mod routes;
mod select;
mod state;
mod table;
mod translated;
mod upstream;

use std::sync::Arc;

use axum::Router;
use futures_util::future::BoxFuture;
use herd_api::{Node, Secret};
use herd_client::{Client, Store};
use tokio_util::sync::CancellationToken;

pub use aggregate::UNKNOWN_VERSION;
pub use config::{ProxyArgs, ProxyConfig, Strategy, parse_size};
pub use error::{Dialect, ProxyError};
pub use history::{NodeRequestStats, Percentiles, RequestStats};

/// The model a request body names, as the proxy reads it to route the
/// request (`model`, or `name` for older clients; `""` when neither is set),
/// or the 400 it answers. Public for the fuzz targets, which feed it
/// arbitrary bodies.
pub fn request_model(body: &[u8]) -> Result<String, ProxyError> {
    forward::Probe::parse(body).map(|p| p.model().to_owned())
}

/// The header naming the node that answered.
pub const NODE_HEADER: &str = "x-herd-node";

/// [`NODE_HEADER`] as a header name, made without copying (inserting it by
/// `&str` copies a non-standard name into a new allocation every time).
pub(crate) const NODE_HEADER_NAME: axum::http::HeaderName =
    axum::http::HeaderName::from_static(NODE_HEADER);

/// Requests answered before the router sees them: `Ok` with the answer's
/// future, or `Err` handing the request on to the router. For a few hot
/// paths whose owner finds them faster than axum's routing does; the
/// router should serve the same requests the same way. herd-server's host
/// tries one on every request (see [`Proxy::shortcut`]).
pub type Shortcut = Arc<
    dyn Fn(
            axum::extract::Request,
        ) -> Result<BoxFuture<'static, axum::response::Response>, axum::extract::Request>
        + Send
        + Sync,
>;

/// The proxy: routing table, upstream connection pool, history and
/// metrics. Cheap to clone; background tasks stop when the last clone (and
/// every router made from it) is dropped, or at shutdown.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<state::Shared>,
}

impl Proxy {
    /// A proxy routing over the nodes in `nodes` (a watch cache, e.g.
    /// `herd_client::reflector::spawn`), reporting node health and load
    /// through `api`. Needs a tokio runtime.
    pub fn new(config: impl Into<ProxyConfig>, nodes: Store<Node>, api: Client) -> Proxy {
        Proxy::with_shutdown(config, nodes, api, CancellationToken::new())
    }

    /// Like [`Proxy::new`]; cancelling `shutdown` ends the history watch
    /// streams (so a graceful shutdown is not held open) and stops the
    /// background tasks.
    pub fn with_shutdown(
        config: impl Into<ProxyConfig>,
        nodes: Store<Node>,
        api: Client,
        shutdown: CancellationToken,
    ) -> Proxy {
        let (_, no_secrets) = herd_client::reflector::store::<Secret>();
        Proxy::with_secrets(config, nodes, no_secrets, api, shutdown)
    }

    /// Like [`Proxy::with_shutdown`], sending each node that names a Secret
    /// (`spec.auth.secretRef`) the token from `secrets` (a watch cache the
    /// caller keeps; reading Secrets takes an admin key).
    pub fn with_secrets(
        config: impl Into<ProxyConfig>,
        nodes: Store<Node>,
        secrets: Store<Secret>,
        api: Client,
        shutdown: CancellationToken,
    ) -> Proxy {
        Proxy {
            shared: Arc::new(state::Shared::new(
                config.into(),
                nodes,
                secrets,
                api,
                shutdown,
            )),
        }
    }

    /// The routes, with state applied; merge them beside the API routes.
    pub fn router(&self) -> Router {
        routes::router(self.shared.clone())
    }

    /// The hot paths without the router, for `herd_server::App::with_shortcut`:
    /// `Ok` with the answer's future for a `POST` to a model-routed
    /// endpoint (generate, chat, embed, show, the `/v1` completions and
    /// embeddings), `Err` with the request for anything else.
    /// [`Proxy::router`] serves the same requests the same way; this only
    /// skips axum's routing for them.
    pub fn shortcut(&self) -> Shortcut {
        let shared = self.shared.clone();
        // The request handed back is moved, not boxed: boxing it would
        // allocate on every request the router serves.
        #[allow(clippy::result_large_err)]
        let f = move |req| routes::shortcut(&shared, req);
        Arc::new(f)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }
}
