//! herd's controller: the reconcile loops that close the gap between what
//! the store says is wanted and what the nodes report.
//!
//! - **Node health** ([`health`], [`probe`], [`node`]): `Ready` from
//!   heartbeats, the nodelet's own conditions and an active probe of each
//!   node's Ollama; `Reachable` from the probe; events for every transition.
//! - **Drain** ([`drain`]): `Drained` on cordoned nodes once their in-flight
//!   requests are done.
//! - **Routing weights** ([`routing`]): `status.routing` for the proxy.
//! - **Model placement** ([`placement`]): which nodes hold each
//!   `ModelAssignment`'s model, with per-node phases and `readyReplicas`.
//! - **One at a time** ([`lease`]): the loops run only while this
//!   controller holds the `controller` lease, so several servers (or `herd
//!   controller` processes) can run one each and exactly one reconciles.
//!
//! Every decision is a pure function of (object, what the controller
//! observed, now), table-tested without I/O; [`runtime`] is the small
//! reconcile runtime that feeds them from watch caches, and the rest is a
//! thin shell that writes their results through the API.
//!
//! The names say which is which: a module named for what it decides
//! (`node`, `probe`, `placement`, `health`, `drain`, `routing`) is pure; its
//! I/O shell, the function the runtime's workers call per key, is the same
//! name with `_worker` (`node_worker`, `probe_worker`, `placement_worker`).
//!
//! [`run`] talks to the store only through `herd_client`, so the same code
//! runs inside `herd server` (over loopback) and as `herd controller
//! --server URL`. It is safe to restart at any moment: decisions depend on
//! stored state, so a new controller agrees with what its predecessor
//! wrote, writes nothing that is already right and records no event for a
//! state that is already recorded.

pub mod backend;
mod cache;
mod config;
pub mod drain;
pub mod events;
pub mod health;
pub mod lease;
mod lease_worker;
pub mod node;
mod node_worker;
pub mod placement;
mod placement_worker;
pub mod probe;
mod probe_worker;
pub mod routing;
pub mod runtime;
mod time;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use herd_api::{Lease, ModelAssignment, Node, NodeSpec, Secret};
use herd_client::reflector::Store;
use herd_client::{Api, Client, watcher};
use tokio_util::sync::CancellationToken;

pub use cache::placement_facts;
pub use config::{Config, ControllerArgs};
pub use events::EventDraft;
pub use node::{NodeDecision, NodeObservation, reconcile_node};
pub use placement::{PlacementDecision, reconcile_placement};
pub use runtime::{Action, WorkQueue};

use crate::cache::{NodeTrigger, assignment_trigger, spawn_watch};
use crate::events::Recorder;
use crate::node_worker::NodeMemory;
use crate::runtime::RunOptions;

/// What can stop the controller or fail one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error or could not be reached.
    #[error(transparent)]
    Api(#[from] herd_client::Error),
    /// The probe HTTP client could not be built.
    #[error("building the probe HTTP client: {0}")]
    ProbeClient(#[source] reqwest::Error),
    /// Other writers kept changing the object between read and write.
    #[error("{0}: the object kept changing under the status update; will retry")]
    Contended(String),
}

/// Everything the reconcilers share.
pub(crate) struct Context {
    config: Config,
    nodes: Store<Node>,
    assignments: Store<ModelAssignment>,
    node_api: Api<Node>,
    assignment_api: Api<ModelAssignment>,
    recorder: Recorder,
    node_queue: Arc<WorkQueue>,
    assignment_queue: Arc<WorkQueue>,
    probe_queue: Arc<WorkQueue>,
    http: reqwest::Client,
    /// Probe clients that also trust a node's `spec.caCert`, by its text
    /// (or the error it gave).
    ca_clients: Mutex<HashMap<String, Result<reqwest::Client, String>>>,
    /// Secrets, for the nodes' tokens; `None` when this controller's key
    /// may not read them.
    secrets: Option<Store<Secret>>,
    memory: Mutex<HashMap<String, NodeMemory>>,
}

impl Context {
    fn memory(&self) -> MutexGuard<'_, HashMap<String, NodeMemory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bearer token a node's requests carry, and whether it was found.
    fn secret_for(&self, spec: &NodeSpec) -> (backend::SecretLookup, Option<String>) {
        use backend::SecretLookup;
        let Some(auth) = &spec.auth else {
            return (SecretLookup::NotNeeded, None);
        };
        let Some(secrets) = &self.secrets else {
            return (SecretLookup::Unreadable, None);
        };
        match secrets.get(&auth.secret_ref) {
            Some(s) => (SecretLookup::Found, Some(s.spec.token.expose().to_owned())),
            None => (SecretLookup::Missing, None),
        }
    }

    /// The probe client for a node with CA certificate `ca` (`""`: none),
    /// and the error `ca` gave, if any (then the plain client comes back).
    fn http_for(&self, ca: &str) -> (reqwest::Client, Option<String>) {
        if ca.is_empty() {
            return (self.http.clone(), None);
        }
        let mut clients = self
            .ca_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let built = clients.entry(ca.to_owned()).or_insert_with(|| {
            let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| "no certificate in it parses".to_owned())?;
            probe_worker::http_client(
                self.config.probe_timeout,
                self.config.allow_node_addresses.clone(),
                certs,
            )
            .map_err(|_| "the certificates cannot be used".to_owned())
        });
        match built {
            Ok(c) => (c.clone(), None),
            Err(e) => (self.http.clone(), Some(e.clone())),
        }
    }

    /// The node changed since its native endpoints were last found.
    fn endpoints_stale(&self, name: &str, generation: Option<i64>) -> bool {
        self.memory()
            .get(name)
            .is_none_or(|m| m.endpoints_generation != generation)
    }

    fn endpoints_checked(&self, name: &str, generation: Option<i64>) {
        if let Some(m) = self.memory().get_mut(name) {
            m.endpoints_generation = generation;
        }
    }
}

/// Runs the controller against the API behind `client` until `shutdown`
/// resolves. Errors talking to the API are retried (watches relist,
/// reconciles back off); only a setup failure ends it early. Secrets (the
/// nodes' backend tokens) are watched when the client's key may read them;
/// otherwise nodes that name one are reported unusable, saying so.
pub async fn run(
    config: Config,
    client: Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let secrets = match client
        .api::<Secret>()
        .list(&herd_client::ListParams::default())
        .await
    {
        Err(e) if matches!(e.code(), Some(401 | 403)) => {
            tracing::info!(
                "this controller's key may not read Secrets: nodes with spec.auth are reported unusable"
            );
            None
        }
        _ => Some(herd_client::reflector::spawn(
            client.api::<Secret>(),
            watcher::Config::default(),
        )),
    };
    run_inner(config, client, secrets, shutdown).await
}

/// [`run`] with a watch of Secrets the caller keeps (`herd server` shares
/// one between its proxy and its controller).
pub async fn run_with_secrets(
    config: Config,
    client: Client,
    secrets: Store<Secret>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    run_inner(config, client, Some(secrets), shutdown).await
}

async fn run_inner(
    config: Config,
    client: Client,
    secrets: Option<Store<Secret>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let http = probe_worker::http_client(
        config.probe_timeout,
        config.allow_node_addresses.clone(),
        Vec::new(),
    )
    .map_err(Error::ProbeClient)?;
    let token = CancellationToken::new();
    let node_queue = Arc::new(WorkQueue::new());
    let assignment_queue = Arc::new(WorkQueue::new());
    let probe_queue = Arc::new(WorkQueue::new());
    let watch_config = watcher::Config {
        backoff: config.watch_backoff,
        ..watcher::Config::default()
    };

    let assignments = spawn_watch(
        client.api::<ModelAssignment>(),
        watch_config.clone(),
        token.clone(),
        assignment_trigger(assignment_queue.clone()),
    );
    let mut trigger = NodeTrigger::new(
        node_queue.clone(),
        assignment_queue.clone(),
        assignments.clone(),
    );
    let nodes = spawn_watch(
        client.api::<Node>(),
        watch_config,
        token.clone(),
        move |event| trigger.on_event(event),
    );

    let ctx = Arc::new(Context {
        config: config.clone(),
        nodes: nodes.clone(),
        assignments: assignments.clone(),
        node_api: client.api(),
        assignment_api: client.api(),
        recorder: Recorder::new(&client),
        node_queue: node_queue.clone(),
        assignment_queue: assignment_queue.clone(),
        probe_queue: probe_queue.clone(),
        http,
        ca_clients: Mutex::new(HashMap::new()),
        secrets,
        memory: Mutex::new(HashMap::new()),
    });

    tokio::pin!(shutdown);
    // Reconcile only from complete caches: placement over half a node list
    // would move models for no reason.
    let ready = async {
        let _ = nodes.wait_ready().await;
        let _ = assignments.wait_ready().await;
    };
    tokio::select! {
        () = ready => {}
        () = &mut shutdown => {
            token.cancel();
            return Ok(());
        }
    }
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    tracing::info!(
        nodes = nodes.len(),
        assignments = assignments.len(),
        heartbeat_grace = ?config.heartbeat_grace,
        probe_interval = ?config.probe_interval,
        %identity,
        "controller started; reconciling while it holds the controller lease"
    );
    let (valid_tx, mut valid) = tokio::sync::watch::channel(None);
    // The elector runs inside this future rather than as a task of its own,
    // so that dropping the controller stops its renewals as a kill would.
    let elector = lease_worker::run(
        client.api::<Lease>(),
        identity,
        config.lease,
        valid_tx,
        token.clone(),
    );
    let supervise = async {
        // Reconcile while the lease is ours: start the loops when it is
        // taken, stop them when it is lost or runs out unrenewed.
        let mut term: Option<(CancellationToken, tokio::task::JoinSet<()>)> = None;
        loop {
            let until = *valid.borrow_and_update();
            let leading = until.is_some_and(|u| u > tokio::time::Instant::now());
            if leading && term.is_none() {
                term = Some(start_loops(&ctx, &config, &token));
            } else if !leading && let Some((stop, mut tasks)) = term.take() {
                tracing::info!("not holding the controller lease: reconcile loops stopped");
                stop.cancel();
                while tasks.join_next().await.is_some() {}
            }
            let expiry = async {
                match until {
                    Some(u) if leading => tokio::time::sleep_until(u).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                changed = valid.changed() => if changed.is_err() { break },
                () = expiry => {}
            }
        }
        tracing::info!("controller stopping");
        if let Some((stop, mut tasks)) = term.take() {
            stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        // The elector releases the lease once the loops have stopped.
        token.cancel();
    };
    tokio::join!(elector, supervise);
    Ok(())
}

/// `HOSTNAME-xxxxxxxx`: unique per process, and says which machine holds
/// the lease.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herd".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Starts the reconcile loops and the resync; they stop on the returned
/// token (a child of `token`).
fn start_loops(
    ctx: &Arc<Context>,
    config: &Config,
    token: &CancellationToken,
) -> (CancellationToken, tokio::task::JoinSet<()>) {
    let token = token.child_token();
    for q in [&ctx.node_queue, &ctx.assignment_queue, &ctx.probe_queue] {
        q.reopen();
    }
    // Everything once now: what changed while another controller held the
    // lease is caught up at once rather than at the next resync.
    for n in ctx.nodes.list() {
        ctx.node_queue.add(&n.metadata.name);
    }
    for m in ctx.assignments.list() {
        ctx.assignment_queue.add(&m.metadata.name);
    }
    let options = |name| RunOptions {
        name,
        concurrency: config.workers,
        backoff: config.error_backoff,
    };
    let mut tasks = tokio::task::JoinSet::new();
    {
        let ctx = ctx.clone();
        tasks.spawn(runtime::run(
            ctx.node_queue.clone(),
            options("Node"),
            move |name| node_worker::reconcile(ctx.clone(), name),
            token.clone(),
        ));
    }
    {
        let ctx = ctx.clone();
        tasks.spawn(runtime::run(
            ctx.assignment_queue.clone(),
            options("ModelAssignment"),
            move |name| placement_worker::reconcile(ctx.clone(), name),
            token.clone(),
        ));
    }
    {
        let ctx = ctx.clone();
        tasks.spawn(runtime::run(
            ctx.probe_queue.clone(),
            RunOptions {
                concurrency: config.probe_concurrency,
                ..options("probe")
            },
            move |name| probe_worker::probe_node(ctx.clone(), name),
            token.clone(),
        ));
    }
    tasks.spawn(resync(
        config.resync,
        ctx.nodes.clone(),
        ctx.assignments.clone(),
        ctx.node_queue.clone(),
        ctx.assignment_queue.clone(),
        token.clone(),
    ));
    (token, tasks)
}

/// Queues every object once per `period`, so anything a trigger missed (or
/// a decision that depends on time alone) is caught up.
async fn resync(
    period: std::time::Duration,
    nodes: Store<Node>,
    assignments: Store<ModelAssignment>,
    node_queue: Arc<WorkQueue>,
    assignment_queue: Arc<WorkQueue>,
    shutdown: CancellationToken,
) {
    let start = tokio::time::Instant::now() + period;
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        for n in nodes.list() {
            node_queue.add(&n.metadata.name);
        }
        for m in assignments.list() {
            assignment_queue.add(&m.metadata.name);
        }
    }
}
