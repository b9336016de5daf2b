//! What every handler shares, and the task that keeps the routing table
//! current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use herd_api::{Node, Secret};
use herd_client::Store;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::affinity::Affinity;
use crate::config::ProxyConfig;
use crate::history::{History, Sink};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::report::{self, Reporter};
use crate::table::{Clock, Lives, Overlay, Table, Tokens};
use crate::upstream::SendError;

/// Time between two routing-table rebuilds, as a multiple of the last
/// rebuild's duration (see the rebuild loop).
const REBUILD_REST_FACTOR: u32 = 3;
/// Rests shorter than this are skipped (a timer costs more than they save).
const MIN_REBUILD_REST: Duration = Duration::from_micros(200);

/// Longest a request waits for the first node list after start.
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// The routing table and what it is built from: the node store, what is
/// cached per node, and the model changes made through the proxy.
pub(crate) struct Tables {
    current: Arc<ArcSwap<Table>>,
    nodes: Store<Node>,
    /// The backends' tokens (`Node.spec.auth.secretRef`).
    secrets: Store<Secret>,
    lives: Lives,
    overlay: Overlay,
    /// How long a model change made through the proxy counts before the
    /// node's own status must show it (`model_overlay_ttl`).
    overlay_ttl: Duration,
    /// One build at a time, so an older snapshot never replaces a newer one.
    building: Mutex<()>,
    /// Which node served each conversation prefix; a node leaving routing
    /// is forgotten here at the rebuild that takes it out.
    pub(crate) affinity: Affinity,
    /// True once a table built from a listed store is in place (requests
    /// that come before wait for it; the value changes with no receiver too).
    synced: tokio::sync::watch::Sender<bool>,
}

impl Tables {
    fn new(
        nodes: Store<Node>,
        secrets: Store<Secret>,
        overlay_ttl: Duration,
        affinity_capacity: usize,
    ) -> Tables {
        let (lives, overlay) = (Lives::default(), Overlay::default());
        lives.set_tokens(secrets.generation(), || tokens(&secrets));
        let first = Table::build(&nodes.list(), nodes.is_ready(), &lives, &overlay);
        let (synced, _) = tokio::sync::watch::channel(first.synced);
        Tables {
            current: Arc::new(ArcSwap::from_pointee(first)),
            nodes,
            secrets,
            lives,
            overlay,
            overlay_ttl,
            building: Mutex::new(()),
            affinity: Affinity::new(affinity_capacity),
            synced,
        }
    }

    /// Brings the table up to date with the store. Heartbeats that change
    /// only CPU, memory or in-flight figures are applied in place: no new
    /// table, unless `force`.
    fn rebuild(&self, force: bool) {
        let _one = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let ready = self.nodes.is_ready();
        let force = force || self.overlay.pending() || ready != self.current.load().synced;
        let secrets = &self.secrets;
        let tokens_changed = self
            .lives
            .set_tokens(secrets.generation(), || tokens(secrets));
        let nodes = self.nodes.list();
        let Some(next) = Table::refresh(
            &nodes,
            ready,
            &self.lives,
            &self.overlay,
            force,
            tokens_changed,
        ) else {
            return;
        };
        tracing::trace!(
            nodes = next.nodes.len(),
            models = next.models.len(),
            "routing table rebuilt"
        );
        let synced = next.synced;
        let previous = self.current.swap(Arc::new(next));
        for gone in previous.left_routing(&self.current.load()) {
            self.affinity.forget_node(gone);
        }
        self.synced
            .send_if_modified(|s| !std::mem::replace(s, synced) && synced);
    }

    /// A model was created, copied, pulled (`present`) or deleted on
    /// `nodes` through the proxy: it routes that way from now on, before the
    /// nodes' own statuses say so (for the overlay TTL at most). The table is
    /// rebuilt once, before this returns, so the client's next request
    /// already sees the change.
    pub(crate) fn set_model<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a str>,
        model: &str,
        present: bool,
    ) {
        for node in nodes {
            self.overlay.set(node, model, present, self.overlay_ttl);
        }
        self.rebuild(true);
    }
}

/// The tokens of every Secret in `secrets`.
fn tokens(secrets: &Store<Secret>) -> Tokens {
    let generation = secrets.generation();
    let by_name = secrets
        .list()
        .iter()
        .map(|s| (s.metadata.name.clone(), Arc::from(s.spec.token.expose())))
        .collect();
    Tokens::new(generation, by_name)
}

pub(crate) struct Shared {
    pub config: ProxyConfig,
    /// The routing table (lock-free reads on the request path) and what
    /// builds it.
    pub tables: Arc<Tables>,
    pub client: Pool,
    pub sink: Arc<Sink>,
    pub reporter: Reporter,
    pub clock: Clock,
    /// Round-robin position.
    pub rr: AtomicU64,
    /// Logical clock of picks (for least-recently-picked tie-breaks).
    pub picks: AtomicU64,
    /// Cancelled at shutdown: ends watch streams and background tasks.
    pub stop: CancellationToken,
    /// Stops the background tasks when the last handle goes away.
    _tasks: DropGuard,
}

impl Shared {
    pub(crate) fn new(
        config: ProxyConfig,
        nodes: Store<Node>,
        secrets: Store<Secret>,
        client: herd_client::Client,
        shutdown: CancellationToken,
    ) -> Shared {
        let stop = shutdown.child_token();
        let clock = Clock::new();
        let mut changes = nodes.subscribe();
        let mut secret_changes = secrets.subscribe();
        let tables = Arc::new(Tables::new(
            nodes,
            secrets,
            config.model_overlay_ttl,
            config.affinity_capacity,
        ));
        {
            let (tables, stop) = (tables.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        r = changes.changed() => if r.is_err() {
                            tracing::debug!("node store closed: routing table frozen");
                            break;
                        },
                        // A proxy without a Secret store has a closed one:
                        // after that, only nodes wake the loop.
                        r = secret_changes.changed(), if secret_changes.has_changed().is_ok() => {
                            let _ = r;
                        }
                    }
                    let started = std::time::Instant::now();
                    tables.rebuild(false);
                    // A refresh walks every node (a fraction of a millisecond
                    // for 10,000, a few when the table is rebuilt): under a
                    // storm of changes the loop would run back to back and
                    // take a core from the store. Resting for
                    // REBUILD_REST_FACTOR times the last pass caps it at a
                    // quarter of a core, while the changes that arrive
                    // meanwhile are folded into the next pass; a fleet of
                    // hundreds of nodes takes microseconds and so is
                    // current at once.
                    let rest = started.elapsed() * REBUILD_REST_FACTOR;
                    if rest >= MIN_REBUILD_REST {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(rest) => {}
                        }
                    }
                }
            });
        }
        let api = client.api::<Node>();
        let reporter = report::spawn_reachability(
            api.clone(),
            clock,
            config.status_report_interval,
            stop.clone(),
        );
        report::spawn_in_flight_writer(
            api,
            tables.current.clone(),
            config.status_report_interval,
            stop.clone(),
        );
        Shared {
            client: Pool::with_allowed(
                config.connect_timeout,
                config.idle_pool_timeout,
                config.allow_node_addresses.clone(),
            ),
            sink: Arc::new(Sink {
                history: History::new(config.request_history),
                metrics: Metrics::new(),
            }),
            config,
            tables,
            reporter,
            clock,
            rr: AtomicU64::new(0),
            picks: AtomicU64::new(0),
            _tasks: stop.clone().drop_guard(),
            stop,
        }
    }

    /// The routing table; right after start, waits (a few seconds at most)
    /// for the first list of nodes, so early requests are not told "no
    /// nodes" by a proxy that has simply not looked yet.
    pub(crate) async fn current_table(&self) -> Arc<Table> {
        let t = self.tables.current.load_full();
        if t.synced {
            return t;
        }
        let mut rx = self.tables.synced.subscribe();
        let _ = tokio::time::timeout(SYNC_WAIT, rx.wait_for(|s| *s)).await;
        self.tables.current.load_full()
    }

    /// The next logical pick time (starts at 1: 0 means "never picked").
    pub(crate) fn next_pick(&self) -> u64 {
        self.picks.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A node failed before answering: counted, left out for the cooldown,
    /// and reported unreachable when the failure says so (connection
    /// refused or timed out; a broken connection is checked first).
    pub(crate) fn send_failed(&self, b: &crate::table::Backend, e: &SendError) {
        self.sink.metrics.failure(&b.name, e.reason());
        b.live.errors.fetch_add(1, Ordering::Relaxed);
        match e {
            SendError::Request(_) | SendError::ClientBody(_) => {}
            SendError::Connect(_) | SendError::Timeout(_) => {
                self.trip(&b.live);
                self.reporter.unreachable(&b.name, e.reason(), e.message());
            }
            SendError::Broken(_) => {
                self.trip(&b.live);
                self.check_connect(b);
            }
        }
    }

    /// After a connection broke before the response head (the node may have
    /// died with the request on it): one fresh connection attempt, off the
    /// request path. If it fails too, the node is reported unreachable now
    /// rather than at its nodelet's next missed heartbeat; if it works, the
    /// break was the connection's, not the node's, and nothing is reported.
    pub(crate) fn check_connect(&self, backend: &crate::table::Backend) {
        let Some(target) = &backend.target else {
            return;
        };
        if backend.live.checking.swap(true, Ordering::Relaxed) {
            return;
        }
        let (name, live) = (backend.name.clone(), backend.live.clone());
        let addr = target.addr.clone();
        let (timeout, reporter) = (self.config.connect_timeout, self.reporter.clone());
        tokio::spawn(async move {
            let failed =
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(format!(
                        "cannot connect: {}",
                        crate::pool::connect_failure(e.kind())
                    )),
                    Err(_) => Some(format!(
                        "cannot connect: timed out after {}",
                        humantime::format_duration(timeout)
                    )),
                };
            if let Some(message) = failed {
                tracing::warn!(node = %name, error = %message, "node unreachable after a broken connection");
                reporter.unreachable(&name, "ConnectFailed", message);
            }
            live.checking.store(false, Ordering::Relaxed);
        });
    }

    /// Leaves a node out of routing for the failure cooldown.
    pub(crate) fn trip(&self, live: &crate::table::NodeLive) {
        live.trip(self.clock.after(self.config.failure_cooldown));
    }
}
