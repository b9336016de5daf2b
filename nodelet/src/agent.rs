//! [`run`]: the nodelet's tasks wired together.
//!
//! ```text
//!  supervisor ──OllamaState──▶ reporter ──status──▶ router (Node/status)
//!   (find, install,              │  ▲
//!    start, restart)   present   │  │ pulls changed / refresh
//!                      models    ▼  │
//!  router ──ModelAssignments──▶ pull loop ──POST /api/pull──▶ Ollama
//! ```
//!
//! - The supervisor makes Ollama exist and keeps the one herd started running.
//! - The reporter registers the node (retrying forever while the router is away), then
//!   every heartbeat probes Ollama, samples CPU and memory and writes the status; pull
//!   progress in between, at most every `pull_status_interval`.
//! - The pull loop pulls what assignments place on this node.
//!
//! None waits for another: registration does not wait for Ollama (a node being
//! installed is registered and says so), and Ollama is installed and started whether or
//! not the router answers.
//!
//! On shutdown the node is marked `NodeletReady` False first, which takes it out of
//! routing. When herd started the Ollama, the nodelet then drains: it reads the node's
//! `status.usage.inFlight` (the router's count of requests on it) every
//! `drain_poll` until a 0 that can be believed — one read at least `drain_settle` (2.5 s)
//! after the mark, since the router reports counts only every second or so — or
//! `--drain-timeout` (30 s; 0s = no drain) passes, or the router has not answered for
//! `drain_unreachable_grace` (5 s), or a second signal says to hurry
//! ([`run_with_skip_drain`]); see [`crate::drain`]. Only then is that Ollama stopped,
//! so streams it is generating are not cut. An Ollama herd did not start keeps running
//! anyway, so there is nothing to drain.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herd_api::{GpuInfo, ModelAssignment, Node, NodeInfo, Timestamp};
use herd_client::{Api, reflector, watcher};
use reqwest::Url;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::advertise::{self, AdvertiseError};
use crate::config::{ConfigError, DefaultModel, NodeletConfig};
use crate::credentials::{self, CredentialError};
use crate::drain::{DrainPolicy, wait_for_requests};
use crate::install::{
    Accelerator, HttpSettings, InstallOptions, choose_accelerator, probe_accelerator,
};
use crate::metrics::{Sampler, detect_gpus};
use crate::ollama::{OllamaClient, Probe, local_url};
use crate::pulls::{PullBoard, PullConfig, run_pulls};
use crate::register::{Registration, register};
use crate::status::{
    Heartbeat, apply_heartbeat, apply_shutdown, installed_condition, node_models,
    nodelet_ready_condition, running_condition,
};
use crate::supervisor::{OllamaState, SupervisorConfig, supervise};

/// Pulls that run at once.
const MAX_CONCURRENT_PULLS: usize = 2;

/// Why the nodelet could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeletError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot use the router URL: {0}")]
    Client(#[from] herd_client::Error),
    #[error("cannot set up the HTTP client for Ollama: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(
        "the router refused this nodelet's key ({0}); an admin disabled or deleted it, so \
         the nodelet stops. Give it a new key to run it again"
    )]
    KeyRefused(String),
}

/// Runs the nodelet until `shutdown` resolves (the caller wires SIGTERM/SIGINT to it),
/// then marks the node not ready, waits for the requests in flight on it (up to
/// `config.drain_timeout`) and stops the Ollama it started. Nothing cuts the wait short:
/// [`run_with_skip_drain`] lets a second signal do that.
///
/// Errors only for a configuration that cannot work at all; a router that does not
/// answer, a missing Ollama or a failing download are retried and reported instead.
pub async fn run(
    config: NodeletConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeletError> {
    run_with_skip_drain(config, shutdown, std::future::pending::<()>).await
}

/// [`run`], where `skip_drain` is called as soon as `shutdown` resolves and the future
/// it returns, when it resolves, ends the wait for requests in flight at once (or
/// skips it, when it resolves before the wait begins). Passing the function that made
/// `shutdown` (`run_with_skip_drain(config, shutdown_signal(), shutdown_signal)`) makes
/// a second SIGTERM/SIGINT skip the drain, as people who press Ctrl-C twice expect.
pub async fn run_with_skip_drain<S, F>(
    config: NodeletConfig,
    shutdown: impl Future<Output = ()> + Send,
    skip_drain: S,
) -> Result<(), NodeletError>
where
    S: FnOnce() -> F + Send,
    F: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let start_time = Timestamp::now();
    let ollama = OllamaClient::new(
        local_url(&config.ollama_url),
        config.timings.probe_timeout,
        config.timings.pull_stall_timeout,
    )?;
    let advertised = resolve_advertised(&config).await?;
    tracing::info!(
        node = %config.name,
        router = %config.server,
        ollama = %config.ollama_url,
        advertise = advertised.as_ref().map(Url::as_str).unwrap_or("(not known yet)"),
        "nodelet starting"
    );

    let stop = CancellationToken::new();
    let stop_ollama = CancellationToken::new();
    let (state_tx, state_rx) = watch::channel(OllamaState::Searching);
    let supervisor = tokio::spawn(supervise(
        supervisor_config(
            &config,
            ollama.clone(),
            bind_addr(&config, advertised.as_ref()),
        ),
        state_tx,
        stop_ollama.clone(),
    ));
    // Ollama is found or installed meanwhile: the key waits for the router, Ollama does not.
    let mut shutdown = std::pin::pin!(shutdown);
    let keyed = tokio::select! {
        keyed = credentials::establish(&config) => keyed,
        () = &mut shutdown => {
            stop_ollama.cancel();
            let _ = supervisor.await;
            return Ok(());
        }
    };
    let client = match keyed {
        Ok(keyed) => {
            tracing::info!(key = ?keyed.source, "nodelet key");
            keyed.client
        }
        Err(e) => {
            stop_ollama.cancel();
            let _ = supervisor.await;
            return Err(e.into());
        }
    };
    // Created now so the first heartbeat's CPU figure covers a whole interval.
    let sampler = Sampler::new();
    let gpus: Arc<OnceLock<Vec<GpuInfo>>> = Arc::default();
    tokio::spawn({
        let gpus = gpus.clone();
        async move {
            let _ = gpus.set(detect_gpus(Duration::from_secs(10)).await);
        }
    });
    let (present_tx, present_rx) = watch::channel(None);
    let board = PullBoard::default();
    let pulls = tokio::spawn(run_pulls(
        pull_config(&config, ollama.clone(), sampler.total_memory()),
        reflector::spawn(
            client.api::<ModelAssignment>(),
            watcher::Config {
                backoff: config.timings.watch_backoff,
                ..watcher::Config::default()
            },
        ),
        present_rx,
        board.clone(),
        stop.clone(),
    ));

    let mut reporter = Reporter {
        config: &config,
        nodes: client.api(),
        ollama,
        state: state_rx.clone(),
        board,
        present: present_tx,
        sampler,
        gpus,
        machine_name: sysinfo::System::host_name().unwrap_or_default(),
        start_time,
        started,
        advertised,
        registered: false,
        last_version: String::new(),
        router_failing: false,
        refused: None,
    };
    // A node key the router forgot (deleted) is replaced once with the join key, when
    // there is one; any other refusal stops the nodelet.
    let mut rejoined = false;
    let refused = loop {
        let message = tokio::select! {
            () = &mut shutdown => break None,
            message = reporter.run() => message,
        };
        let decision = credentials::on_unauthorized(&message, config.token.is_some(), rejoined);
        if decision == credentials::OnUnauthorized::Stop {
            break Some(message);
        }
        rejoined = true;
        tracing::warn!(reason = %message, "the router does not know this nodelet's key; joining again");
        if let Err(e) = credentials::rejoin(&config, &client).await {
            break Some(format!("{message}; joining again failed: {e}"));
        }
    };
    // Listening from now on, so a signal during the last status write counts too.
    let hurry = CancellationToken::new();
    let skip_task = tokio::spawn({
        let (skip, hurry) = (skip_drain(), hurry.clone());
        async move {
            skip.await;
            hurry.cancel();
        }
    });
    stop.cancel();
    tracing::info!("nodelet stopping");
    // Out of routing first, so no request is sent to an Ollama about to stop.
    let stopping_ollama = state_rx.borrow().herd_runs_ollama();
    let marked = mark_stopped(&config, &client.api(), stopping_ollama).await;
    if stopping_ollama {
        drain(&config, &client.api(), marked, &hurry).await;
    }
    skip_task.abort();
    stop_ollama.cancel();
    if let Err(e) = supervisor.await {
        tracing::warn!(error = %e, "the Ollama supervisor failed");
    }
    let _ = pulls.await;
    tracing::info!("nodelet stopped");
    match refused {
        Some(message) => Err(NodeletError::KeyRefused(message)),
        None => Ok(()),
    }
}

/// The advertised URL, when it can be known now. Invalid flags cannot get better and
/// fail the start; a failed lookup of the router's name may, and is retried when
/// registering.
async fn resolve_advertised(config: &NodeletConfig) -> Result<Option<Url>, NodeletError> {
    let resolved = advertise::resolve_advertise_url(
        &config.ollama_url,
        &config.server,
        config.advertise_url.as_ref(),
    )
    .await;
    match resolved {
        Ok(url) => Ok(Some(url)),
        Err(
            e @ (AdvertiseError::InvalidOverride { .. }
            | AdvertiseError::RouterWithoutHost { .. }
            | AdvertiseError::InvalidOllamaHost { .. }),
        ) => Err(ConfigError::Advertise(e).into()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell this machine's address towards the router yet; will try again when registering");
            Ok(None)
        }
    }
}

/// How the last status write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marked {
    /// The node is out of routing.
    Written,
    /// There is no such node (never registered, or deleted): nothing routes to it.
    NoNode,
    /// The router refused it or did not answer in time (the drain then gives an
    /// unreachable router its grace from the start).
    Failed,
}

/// The last status write: `NodeletReady` False, bounded in time.
async fn mark_stopped(config: &NodeletConfig, nodes: &Api<Node>, stopping_ollama: bool) -> Marked {
    let write = nodes.update_status_with_retry(&config.name, |status| {
        apply_shutdown(status, Timestamp::now(), stopping_ollama);
    });
    match tokio::time::timeout(config.timings.final_status_timeout, write).await {
        Ok(Ok(_)) => {
            tracing::info!(node = %config.name, "marked the node not ready (NodeletStopped)");
            Marked::Written
        }
        Ok(Err(e)) if e.is_not_found() => Marked::NoNode,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not mark the node not ready");
            Marked::Failed
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?config.timings.final_status_timeout,
                "the router did not take the last status in time"
            );
            Marked::Failed
        }
    }
}

/// Waits for the requests in flight on the node to end (see [`crate::drain`]), unless
/// there is no drain to do.
async fn drain(
    config: &NodeletConfig,
    nodes: &Api<Node>,
    marked: Marked,
    hurry: &CancellationToken,
) {
    if config.drain_timeout.is_zero() || marked == Marked::NoNode {
        return;
    }
    if hurry.is_cancelled() {
        tracing::warn!(node = %config.name, "drain skipped: asked again to stop");
        return;
    }
    let policy = DrainPolicy {
        timeout: config.drain_timeout,
        settle: config.timings.drain_settle,
        unreachable_grace: config.timings.drain_unreachable_grace,
    };
    wait_for_requests(
        nodes,
        &config.name,
        &policy,
        config.timings.drain_poll,
        marked == Marked::Failed,
        hurry,
    )
    .await;
}

fn pull_config(config: &NodeletConfig, ollama: OllamaClient, total_memory: u64) -> PullConfig {
    let default_model = match &config.default_model {
        DefaultModel::Off => None,
        DefaultModel::Named(m) => Some(m.clone()),
        DefaultModel::BySize => Some(crate::default_model::default_model(total_memory).to_owned()),
    };
    PullConfig {
        node: config.name.clone(),
        ollama,
        default_model,
        max_concurrent: MAX_CONCURRENT_PULLS,
        retry: config.timings.pull_retry,
        display: config.display,
        log_every: config.timings.log_every,
    }
}

/// `OLLAMA_HOST` for the Ollama herd starts. Without the advertised URL (the router's
/// name did not resolve yet), a router elsewhere means Ollama must listen beyond
/// loopback.
fn bind_addr(config: &NodeletConfig, advertised: Option<&Url>) -> String {
    let advertised = match advertised {
        Some(url) => url.clone(),
        None if advertise::is_loopback(&config.server) => config.ollama_url.clone(),
        // Any address that is not loopback (this one is reserved for documentation).
        None => Url::parse("http://192.0.2.1/").expect("a valid URL"),
    };
    advertise::ollama_bind_addr(&config.ollama_url, &advertised)
}

fn supervisor_config(
    config: &NodeletConfig,
    ollama: OllamaClient,
    bind_addr: String,
) -> SupervisorConfig {
    let mut install = InstallOptions::new(&config.install_dir);
    install.version = config.ollama_version.clone();
    install.download_base_url = config.download_base_url.clone();
    install.verify_checksum = config.verify_checksum;
    install.display = config.display;
    if install.os == "linux" {
        let facts = probe_accelerator(config.path_var.as_deref());
        install.accelerator = choose_accelerator(&install.arch, &facts);
        if install.accelerator != Accelerator::None {
            tracing::info!(accelerator = ?install.accelerator, "Ollama's archive for this accelerator goes over the main one");
        }
    }
    install.log_every = config.timings.log_every;
    install.http = HttpSettings {
        proxy: config.proxy.clone(),
        retry: config.timings.download_retry,
        ..HttpSettings::default()
    };
    SupervisorConfig {
        ollama,
        bind_addr,
        max_parallel: config.max_parallel,
        install,
        no_install: !config.install,
        path_var: config.path_var.clone(),
        timings: config.timings.clone(),
    }
}

/// Registration and heartbeats.
struct Reporter<'a> {
    config: &'a NodeletConfig,
    nodes: Api<Node>,
    ollama: OllamaClient,
    state: watch::Receiver<OllamaState>,
    board: PullBoard,
    present: watch::Sender<Option<Vec<String>>>,
    sampler: Sampler,
    gpus: Arc<OnceLock<Vec<GpuInfo>>>,
    machine_name: String,
    start_time: Timestamp,
    started: Instant,
    advertised: Option<Url>,
    registered: bool,
    last_version: String,
    /// The last write failed (so the next success is worth a log line).
    router_failing: bool,
    /// The router refused the key (401), with its message: the nodelet stops.
    refused: Option<String>,
}

impl Reporter<'_> {
    /// Returns only when the router refuses the key (401), with its message; dropped
    /// at shutdown.
    async fn run(&mut self) -> String {
        let timings = &self.config.timings;
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut register_failures = 0u32;
        let mut next_registration = Instant::now();
        let mut pulls_changed = self.board.subscribe();
        let mut pulls_dirty = false;
        let mut last_pull_write = Instant::now();
        let board = self.board.clone();
        let mut ollama_changes = self.state.clone();
        let mut ollama_kind = state_kind(&ollama_changes.borrow_and_update());
        let mut supervisor_alive = true;
        loop {
            let pull_write_at = last_pull_write + timings.pull_status_interval;
            // Whether to report everything now (and restart the heartbeat period).
            let report_now = tokio::select! {
                _ = ticker.tick() => true,
                // Also right after the node was found deleted: `next_registration` is past.
                () = tokio::time::sleep_until(next_registration), if !self.registered => {
                    match self.register().await {
                        Ok(()) => {
                            register_failures = 0;
                            true
                        }
                        Err(e) => {
                            register_failures += 1;
                            let delay = timings
                                .register_retry
                                .jittered_delay(register_failures, &mut rand::rng());
                            tracing::warn!(
                                router = %self.config.server,
                                attempt = register_failures,
                                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                error = %e,
                                "could not register with the router; retrying"
                            );
                            next_registration = Instant::now() + delay;
                            false
                        }
                    }
                }
                // Ollama started, died, got installed: tell the router now, not at the
                // next tick. Progress within one state waits for the tick.
                changed = ollama_changes.changed(), if supervisor_alive => {
                    supervisor_alive = changed.is_ok();
                    let kind = state_kind(&ollama_changes.borrow_and_update());
                    let new_kind = kind != ollama_kind;
                    ollama_kind = kind;
                    new_kind
                }
                changed = pulls_changed.changed() => {
                    pulls_dirty |= changed.is_ok();
                    false
                }
                () = tokio::time::sleep_until(pull_write_at), if pulls_dirty => {
                    self.write_pulls().await;
                    (pulls_dirty, last_pull_write) = (false, Instant::now());
                    false
                }
                // A pull finished: the model list changed.
                () = board.refresh_requested().notified() => true,
            };
            if report_now {
                self.heartbeat().await;
                (pulls_dirty, last_pull_write) = (false, Instant::now());
                ticker.reset();
            }
            if let Some(message) = self.refused.take() {
                return message;
            }
        }
    }

    async fn register(&mut self) -> Result<(), String> {
        let advertised = match &self.advertised {
            Some(url) => url.clone(),
            None => {
                let url = advertise::resolve_advertise_url(
                    &self.config.ollama_url,
                    &self.config.server,
                    self.config.advertise_url.as_ref(),
                )
                .await
                .map_err(|e| e.to_string())?;
                self.advertised = Some(url.clone());
                url
            }
        };
        let registration = Registration {
            name: self.config.name.clone(),
            ollama_url: crate::advertise::spec_url(&advertised),
            max_parallel: self.config.max_parallel,
            labels: self.config.labels.clone(),
        };
        register(&self.nodes, &registration).await.map_err(|e| {
            if e.code() == Some(401) {
                self.refused = Some(e.to_string());
            }
            e.to_string()
        })?;
        self.registered = true;
        tracing::info!(
            node = %self.config.name,
            ollama_url = %advertised,
            since_start_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "registered with the router"
        );
        Ok(())
    }

    /// Probes Ollama, samples the machine and, when registered, writes the status.
    async fn heartbeat(&mut self) {
        let probe = self.ollama.probe().await;
        let present = probe
            .tags
            .as_ref()
            .ok()
            .map(|tags| tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        self.present.send_if_modified(|current| {
            let changed = *current != present;
            *current = present;
            changed
        });
        if let Ok(v) = &probe.version {
            self.last_version.clone_from(v);
        }
        if !self.registered {
            return;
        }
        let heartbeat = self.build_heartbeat(&probe);
        let result = self
            .nodes
            .update_status_with_retry(&self.config.name, |status| {
                apply_heartbeat(status, &heartbeat)
            })
            .await;
        self.after_write(result);
    }

    fn build_heartbeat(&mut self, probe: &Probe) -> Heartbeat {
        let state = self.state.borrow().clone();
        let usage = self.sampler.sample();
        let models = match (&probe.tags, &probe.ps) {
            (Ok(tags), Ok(ps)) => Some(node_models(tags, ps)),
            (Ok(tags), Err(_)) => Some(node_models(tags, &[])),
            (Err(_), _) => None,
        };
        let gpus = self.gpus.get().cloned().unwrap_or_default();
        Heartbeat {
            now: Timestamp::now(),
            conditions: vec![
                nodelet_ready_condition(true),
                installed_condition(&state),
                running_condition(&state, Some(probe), self.ollama.base().as_str()),
            ],
            info: self.info(),
            capacity: self.sampler.capacity(&gpus),
            cpu_percent: usage.cpu_percent,
            memory_percent: usage.memory_percent,
            models,
            pulls: self.board.snapshot(),
        }
    }

    fn info(&self) -> NodeInfo {
        let mut addresses: Vec<String> = Vec::new();
        if let Some(host) = self.advertised.as_ref().and_then(advertise_ip) {
            addresses.push(host.to_string());
        }
        NodeInfo {
            machine_name: self.machine_name.clone(),
            addresses,
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            ollama_version: self.last_version.clone(),
            nodelet_version: crate::NODELET_VERSION.to_owned(),
            start_time: Some(self.start_time),
        }
    }

    async fn write_pulls(&mut self) {
        if !self.registered {
            return;
        }
        let pulls = self.board.snapshot();
        let result = self
            .nodes
            .update_status_with_retry(&self.config.name, |status| status.pulls.clone_from(&pulls))
            .await;
        self.after_write(result);
    }

    fn after_write(&mut self, result: Result<Node, herd_client::Error>) {
        match result {
            Ok(_) => {
                if self.router_failing {
                    tracing::info!(router = %self.config.server, "the router takes status updates again");
                }
                self.router_failing = false;
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(node = %self.config.name, "the node was deleted; registering it again");
                self.registered = false;
            }
            Err(e) if e.code() == Some(401) => self.refused = Some(e.to_string()),
            Err(e) => {
                if self.router_failing {
                    tracing::debug!(error = %e, "status update failed again");
                } else {
                    tracing::warn!(router = %self.config.server, error = %e, "could not update the node's status; will keep trying every heartbeat");
                }
                self.router_failing = true;
            }
        }
    }
}

/// Which state, ignoring details such as install progress or a pid.
fn state_kind(state: &OllamaState) -> (u8, u8) {
    use crate::supervisor::ProcessState;
    match state {
        OllamaState::Searching => (0, 0),
        OllamaState::Installing(_) => (1, 0),
        OllamaState::InstallFailed { .. } => (2, 0),
        OllamaState::NotFound { .. } => (3, 0),
        OllamaState::External { .. } => (4, 0),
        OllamaState::Managed { process, .. } => (
            5,
            match process {
                ProcessState::Starting { .. } => 0,
                ProcessState::Running { .. } => 1,
                ProcessState::Exited { .. } => 2,
                ProcessState::Stopped => 3,
            },
        ),
    }
}

fn advertise_ip(url: &Url) -> Option<IpAddr> {
    url.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}
