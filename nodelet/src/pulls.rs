//! Pulling the models the fleet places on this node.
//!
//! The controller records in each `ModelAssignment`'s `status.nodes` which nodes
//! should hold its model; the nodelet watches assignments (a reflector, so reading
//! them costs nothing) and pulls every model placed on it that its Ollama lacks. When
//! nothing is placed on it, its Ollama holds no model at all and the user did not opt
//! out, it pulls one default model, once. What to do is decided by [`plan_pulls`], a
//! pure function of what is wanted, present, running and failed; the loop around it
//! only carries the actions out.
//!
//! Progress goes three ways: `Node.status.pulls` (through the [`PullBoard`], written
//! by the heartbeat at most every `pull_status_interval`), a local progress bar on a
//! terminal, and a log line every few seconds otherwise. A failed pull is retried with
//! backoff. A pull that is no longer wanted is left to finish.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use herd_api::{ModelAssignment, ModelPull, PullPhase, model_name};
use herd_client::Store;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::install::ProgressDisplay;
use crate::ollama::OllamaClient;
use herd_client::backoff::Backoff;
use herd_client::ollama::PullLine;

/// A model whose last pull failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullFailure {
    /// Failed pulls in a row.
    pub attempts: u32,
    /// When the last one failed.
    pub at: Instant,
    pub message: String,
}

/// Everything [`plan_pulls`] looks at. Model names are as written (`llama3`); sets and
/// maps are keyed by [`model_name::canonical`] names (`llama3:latest`).
#[derive(Clone, Debug)]
pub struct PullInputs<'a> {
    /// Models the assignments place on this node, in assignment order.
    pub assigned: &'a [String],
    /// The assignments have been listed at least once (so "none" is known, not guessed).
    pub assignments_known: bool,
    /// Models Ollama lists.
    pub present: &'a [String],
    /// Pulls running now.
    pub in_progress: &'a BTreeSet<String>,
    /// Pulls that succeeded (Ollama may not list the model yet).
    pub succeeded: &'a BTreeSet<String>,
    pub failures: &'a BTreeMap<String, PullFailure>,
    /// The default model, unless the user opted out or it was already pulled once.
    pub default_model: Option<&'a str>,
    /// Pulls that may run at once.
    pub max_concurrent: usize,
    /// Schedule between failed pulls of one model.
    pub retry: &'a Backoff,
    pub now: Instant,
}

/// One step towards the wanted models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullAction {
    /// Pull this model now.
    Start { model: String, default: bool },
    /// Wanted, but every pull slot is busy.
    Queue { model: String },
    /// Failed before; try again at `at`.
    RetryAt { model: String, at: Instant },
    /// Drop what is remembered about this (canonical) model: no longer wanted, or
    /// present after all.
    Forget { key: String },
}

/// Decides what to pull:
///
/// 1. Wanted: the assigned models (each once). With none assigned, assignments known,
///    Ollama holding no model and a default model given: that one.
/// 2. A wanted model that Ollama lists, that is being pulled, or whose pull succeeded
///    needs nothing. One that failed waits for the retry schedule (`RetryAt`), unless
///    the schedule allows no more tries. Others start while slots are free, in order,
///    and queue after.
/// 3. A remembered failure or success of a model that is not wanted any more, or a
///    failure of a model that Ollama now lists, is forgotten.
pub fn plan_pulls(inputs: &PullInputs<'_>) -> Vec<PullAction> {
    let canonical = |m: &str| model_name::canonical(m);
    let present: BTreeSet<String> = inputs.present.iter().map(|m| canonical(m)).collect();

    let mut wanted: Vec<(String, String, bool)> = Vec::new();
    for model in inputs.assigned {
        let key = canonical(model);
        if !wanted.iter().any(|(k, _, _)| *k == key) {
            wanted.push((key, model.trim().to_owned(), false));
        }
    }
    if let Some(model) = inputs.default_model
        && wanted.is_empty()
        && inputs.assignments_known
        && present.is_empty()
    {
        wanted.push((canonical(model), model.to_owned(), true));
    }

    let mut actions = Vec::new();
    let mut free = inputs
        .max_concurrent
        .saturating_sub(inputs.in_progress.len());
    for (key, model, default) in &wanted {
        if present.contains(key)
            || inputs.in_progress.contains(key)
            || inputs.succeeded.contains(key)
        {
            continue;
        }
        if let Some(failure) = inputs.failures.get(key) {
            if !inputs.retry.allows_another(failure.attempts) {
                continue;
            }
            let at = failure.at + inputs.retry.delay(failure.attempts);
            if at > inputs.now {
                actions.push(PullAction::RetryAt {
                    model: model.clone(),
                    at,
                });
                continue;
            }
        }
        if free > 0 {
            free -= 1;
            actions.push(PullAction::Start {
                model: model.clone(),
                default: *default,
            });
        } else {
            actions.push(PullAction::Queue {
                model: model.clone(),
            });
        }
    }

    let wanted_keys: BTreeSet<&String> = wanted.iter().map(|(k, _, _)| k).collect();
    let remembered: BTreeSet<&String> = inputs
        .failures
        .keys()
        .chain(inputs.succeeded.iter())
        .collect();
    for key in remembered {
        let failed_but_present = inputs.failures.contains_key(key) && present.contains(key);
        if (!wanted_keys.contains(key) || failed_but_present) && !inputs.in_progress.contains(key) {
            actions.push(PullAction::Forget { key: key.clone() });
        }
    }
    actions
}

/// The models that assignments place on `node`, ordered by assignment name.
pub fn assigned_models(assignments: &[Arc<ModelAssignment>], node: &str) -> Vec<String> {
    assignments
        .iter()
        .filter(|a| a.status.nodes.iter().any(|p| p.node == node))
        .map(|a| a.spec.model.clone())
        .filter(|m| !m.trim().is_empty())
        .collect()
}

/// Bytes of one pull, summed over its layers: Ollama reports each layer (`digest`)
/// with its own `completed` and `total`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullProgress {
    layers: BTreeMap<String, (u64, u64)>,
    /// Ollama's last status line, e.g. `pulling 6a0746a1ec1a`.
    pub status: String,
}

impl PullProgress {
    /// Takes one line into account; `true` when anything changed.
    pub fn apply(&mut self, line: &PullLine) -> bool {
        let mut changed = false;
        if !line.status.is_empty() && line.status != self.status {
            self.status.clone_from(&line.status);
            changed = true;
        }
        if !line.digest.is_empty() && (line.total > 0 || line.completed > 0) {
            let entry = self.layers.entry(line.digest.clone()).or_default();
            let next = (line.completed, line.total.max(line.completed).max(entry.1));
            if *entry != next {
                *entry = next;
                changed = true;
            }
        }
        changed
    }

    pub fn completed(&self) -> u64 {
        self.layers.values().map(|(c, _)| *c).sum()
    }

    pub fn total(&self) -> u64 {
        self.layers.values().map(|(_, t)| *t).sum()
    }
}

/// The pulls shown in `Node.status.pulls`, shared by the pull loop (which writes) and
/// the heartbeat (which reads, and is told of changes).
#[derive(Clone)]
pub struct PullBoard {
    pulls: Arc<Mutex<BTreeMap<String, ModelPull>>>,
    changes: Arc<watch::Sender<u64>>,
    /// Asks the heartbeat for a full report soon (a pull finished: the model list changed).
    refresh: Arc<Notify>,
}

impl Default for PullBoard {
    fn default() -> Self {
        PullBoard {
            pulls: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
            refresh: Arc::new(Notify::new()),
        }
    }
}

impl PullBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, ModelPull>) -> T) -> T {
        let out = f(&mut self.pulls.lock().unwrap_or_else(PoisonError::into_inner));
        self.changes.send_modify(|n| *n += 1);
        out
    }

    fn set(&self, key: &str, pull: ModelPull) {
        self.with(|pulls| {
            pulls.insert(key.to_owned(), pull);
        });
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut ModelPull)) {
        self.with(|pulls| {
            if let Some(p) = pulls.get_mut(key) {
                f(p);
            }
        });
    }

    fn remove(&self, key: &str) {
        self.with(|pulls| {
            pulls.remove(key);
        });
    }

    /// The pulls, ordered by model.
    pub fn snapshot(&self) -> Vec<ModelPull> {
        let mut pulls: Vec<ModelPull> = self
            .pulls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        pulls.sort_by(|a, b| a.model.cmp(&b.model));
        pulls
    }

    /// Changes whenever a pull changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn refresh_requested(&self) -> &Notify {
        &self.refresh
    }
}

/// What the pull loop needs.
#[derive(Clone, Debug)]
pub(crate) struct PullConfig {
    pub node: String,
    pub ollama: OllamaClient,
    /// `None`: opted out.
    pub default_model: Option<String>,
    pub max_concurrent: usize,
    pub retry: Backoff,
    pub display: ProgressDisplay,
    pub log_every: Duration,
}

#[derive(Clone, Debug)]
enum Record {
    /// Running, after this many failed pulls in a row.
    Pulling {
        failures: u32,
    },
    Succeeded,
    Failed(PullFailure),
}

/// A pull that ended.
struct PullDone {
    key: String,
    model: String,
    default: bool,
    result: Result<(), String>,
}

/// The state of the pull loop between rounds.
struct PullLoop {
    config: PullConfig,
    board: PullBoard,
    /// By canonical model name.
    records: BTreeMap<String, Record>,
    /// Wanted models waiting for a slot, shown as `Pending`.
    queued: BTreeSet<String>,
    default_done: bool,
    tasks: JoinSet<()>,
    done: mpsc::Sender<PullDone>,
}

/// Runs until `stop`; pulls still running then are abandoned (Ollama cancels a pull
/// whose client hung up).
pub(crate) async fn run_pulls(
    config: PullConfig,
    assignments: Store<ModelAssignment>,
    mut present: watch::Receiver<Option<Vec<String>>>,
    board: PullBoard,
    stop: CancellationToken,
) {
    let (done, mut finished) = mpsc::channel::<PullDone>(16);
    let mut pulls = PullLoop {
        config,
        board,
        records: BTreeMap::new(),
        queued: BTreeSet::new(),
        default_done: false,
        tasks: JoinSet::new(),
        done,
    };
    let mut changes = assignments.subscribe();
    loop {
        // Nothing is planned while Ollama cannot say what it holds.
        let present_now = present.borrow_and_update().clone();
        let wake = match present_now {
            Some(present_now) => pulls.plan_round(&assignments, &present_now),
            None => None,
        };
        let retry = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The reflector is gone: nothing more will be assigned.
                    stop.cancelled().await;
                    break;
                }
            }
            changed = present.changed() => {
                if changed.is_err() {
                    stop.cancelled().await;
                    break;
                }
            }
            Some(done) = finished.recv() => pulls.finished(done),
            () = retry => {}
            () = stop.cancelled() => break,
        }
    }
    pulls.tasks.abort_all();
}

impl PullLoop {
    /// Plans with [`plan_pulls`] and carries the actions out; returns when the next
    /// retry is due, if any.
    fn plan_round(
        &mut self,
        assignments: &Store<ModelAssignment>,
        present: &[String],
    ) -> Option<Instant> {
        let assigned = assigned_models(&assignments.list(), &self.config.node);
        let in_progress = keys_where(&self.records, |r| matches!(r, Record::Pulling { .. }));
        let succeeded = keys_where(&self.records, |r| matches!(r, Record::Succeeded));
        let failures: BTreeMap<String, PullFailure> = self
            .records
            .iter()
            .filter_map(|(k, r)| match r {
                Record::Failed(f) => Some((k.clone(), f.clone())),
                _ => None,
            })
            .collect();
        let actions = plan_pulls(&PullInputs {
            assigned: &assigned,
            assignments_known: assignments.is_ready(),
            present,
            in_progress: &in_progress,
            succeeded: &succeeded,
            failures: &failures,
            default_model: self
                .config
                .default_model
                .as_deref()
                .filter(|_| !self.default_done),
            max_concurrent: self.config.max_concurrent,
            retry: &self.config.retry,
            now: Instant::now(),
        });
        let mut wake: Option<Instant> = None;
        let mut queued = BTreeSet::new();
        for action in actions {
            match action {
                PullAction::Start { model, default } => {
                    let failed = failures
                        .get(&model_name::canonical(&model))
                        .map_or(0, |f| f.attempts);
                    self.start(model, default, failed);
                }
                PullAction::Queue { model } => {
                    let key = model_name::canonical(&model);
                    if !self.records.contains_key(&key) && !self.queued.contains(&key) {
                        self.board.set(
                            &key,
                            ModelPull {
                                model,
                                phase: PullPhase::Pending,
                                message: "waiting for a free pull slot".to_owned(),
                                ..ModelPull::default()
                            },
                        );
                    }
                    queued.insert(key);
                }
                PullAction::RetryAt { at, .. } => {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
                PullAction::Forget { key } => {
                    self.records.remove(&key);
                    self.board.remove(&key);
                }
            }
        }
        for key in self.queued.difference(&queued) {
            if !self.records.contains_key(key) {
                self.board.remove(key);
            }
        }
        self.queued = queued;
        wake
    }

    fn start(&mut self, model: String, default: bool, failed: u32) {
        let key = model_name::canonical(&model);
        tracing::info!(%model, attempt = failed + 1, default, "pulling a model");
        self.records
            .insert(key.clone(), Record::Pulling { failures: failed });
        self.board.set(
            &key,
            ModelPull {
                model: model.clone(),
                phase: PullPhase::Pulling,
                message: "starting".to_owned(),
                ..ModelPull::default()
            },
        );
        self.tasks.spawn(pull_one(
            self.config.clone(),
            model,
            key,
            default,
            self.board.clone(),
            self.done.clone(),
        ));
    }

    fn finished(&mut self, done: PullDone) {
        let PullDone {
            key,
            model,
            default,
            result,
        } = done;
        match result {
            Ok(()) => {
                self.default_done |= default;
                self.records.insert(key, Record::Succeeded);
                self.board.refresh_requested().notify_one();
            }
            Err(message) => {
                let attempts = match self.records.get(&key) {
                    Some(Record::Pulling { failures }) => failures + 1,
                    _ => 1,
                };
                let retry_in = self.config.retry.delay(attempts);
                tracing::warn!(
                    %model,
                    attempts,
                    retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    error = %message,
                    "pulling a model failed"
                );
                let times = if attempts == 1 { "time" } else { "times" };
                self.board.update(&key, |p| {
                    p.phase = PullPhase::Failed;
                    p.message = format!("{message} (failed {attempts} {times}; retrying)");
                });
                self.records.insert(
                    key,
                    Record::Failed(PullFailure {
                        attempts,
                        at: Instant::now(),
                        message,
                    }),
                );
            }
        }
    }
}

fn keys_where(
    records: &BTreeMap<String, Record>,
    pred: impl Fn(&Record) -> bool,
) -> BTreeSet<String> {
    records
        .iter()
        .filter(|(_, r)| pred(r))
        .map(|(k, _)| k.clone())
        .collect()
}

/// One pull, its progress on the board and on the local display.
async fn pull_one(
    config: PullConfig,
    model: String,
    key: String,
    default: bool,
    board: PullBoard,
    done: mpsc::Sender<PullDone>,
) {
    let mut progress = PullProgress::default();
    let mut local = LocalDisplay::new(config.display, &model, config.log_every);
    let result = config
        .ollama
        .pull(&model, |line| {
            if progress.apply(line) {
                let (completed, total) = (progress.completed(), progress.total());
                board.update(&key, |p| {
                    p.completed_bytes = completed;
                    p.total_bytes = total;
                    p.message.clone_from(&progress.status);
                });
                local.update(&progress);
            }
        })
        .await
        .map_err(|e| e.to_string());
    local.finish(&progress, result.as_ref().err());
    if result.is_ok() {
        let total = progress.total();
        board.update(&key, |p| {
            p.phase = PullPhase::Succeeded;
            p.completed_bytes = total.max(p.completed_bytes);
            p.total_bytes = total.max(p.total_bytes);
            p.message = "success".to_owned();
        });
    }
    let _ = done
        .send(PullDone {
            key,
            model,
            default,
            result,
        })
        .await;
}

/// A bar on a terminal, a log line every `log_every` otherwise.
struct LocalDisplay {
    model: String,
    bar: Option<ProgressBar>,
    log: bool,
    log_every: Duration,
    last_log: std::time::Instant,
}

impl LocalDisplay {
    fn new(display: ProgressDisplay, model: &str, log_every: Duration) -> LocalDisplay {
        let resolved = match display {
            ProgressDisplay::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
                ProgressDisplay::Bar
            }
            ProgressDisplay::Auto => ProgressDisplay::Log,
            other => other,
        };
        let bar = (resolved == ProgressDisplay::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("pulling {model}"));
            bar
        });
        LocalDisplay {
            model: model.to_owned(),
            bar,
            log: resolved == ProgressDisplay::Log,
            log_every,
            last_log: std::time::Instant::now(),
        }
    }

    fn update(&mut self, progress: &PullProgress) {
        if let Some(bar) = &self.bar {
            bar.set_length(progress.total());
            bar.set_position(progress.completed());
        } else if self.log && self.last_log.elapsed() >= self.log_every {
            self.last_log = std::time::Instant::now();
            let total = progress.total();
            let percent = progress
                .completed()
                .saturating_mul(100)
                .checked_div(total)
                .unwrap_or(0);
            tracing::info!(model = %self.model, percent, completed_bytes = progress.completed(), total_bytes = total, status = %progress.status, "pulling");
        }
    }

    fn finish(&mut self, progress: &PullProgress, error: Option<&String>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if error.is_none() {
            tracing::info!(model = %self.model, bytes = progress.total(), "pulled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|x| model_name::canonical(x)).collect()
    }

    struct Case {
        name: &'static str,
        assigned: Vec<String>,
        known: bool,
        present: Vec<String>,
        in_progress: BTreeSet<String>,
        succeeded: BTreeSet<String>,
        failures: Vec<(&'static str, u32, u64)>,
        default: Option<&'static str>,
        slots: usize,
        want: Vec<PullAction>,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                name: "",
                assigned: vec![],
                known: true,
                present: vec![],
                in_progress: BTreeSet::new(),
                succeeded: BTreeSet::new(),
                failures: vec![],
                default: None,
                slots: 2,
                want: vec![],
            }
        }
    }

    #[test]
    fn plan_table() {
        let base = Instant::now();
        let t = |ms: u64| base + Duration::from_millis(ms);
        let now = t(10_000);
        // 1 s doubling, capped at 8 s.
        let retry = Backoff::FOREVER
            .with_jitter(herd_client::backoff::Jitter::None)
            .with_base(Duration::from_secs(1))
            .with_max_tries(None);
        let retry = Backoff {
            cap: Duration::from_secs(8),
            ..retry
        };
        let start = |m: &str| PullAction::Start {
            model: m.into(),
            default: false,
        };
        let start_default = |m: &str| PullAction::Start {
            model: m.into(),
            default: true,
        };
        let queue = |m: &str| PullAction::Queue { model: m.into() };
        let forget = |m: &str| PullAction::Forget {
            key: model_name::canonical(m),
        };
        let retry_at = |m: &str, at| PullAction::RetryAt {
            model: m.into(),
            at,
        };
        let cases = vec![
            Case {
                name: "nothing at all",
                ..Case::default()
            },
            Case {
                name: "assigned and missing",
                assigned: s(&["llama3.2:1b"]),
                want: vec![start("llama3.2:1b")],
                ..Case::default()
            },
            Case {
                name: "assigned and present (other spelling)",
                assigned: s(&["llama3"]),
                present: s(&["llama3:latest"]),
                ..Case::default()
            },
            Case {
                name: "assigned twice",
                assigned: s(&["llama3", "llama3:latest"]),
                want: vec![start("llama3")],
                ..Case::default()
            },
            Case {
                name: "already pulling",
                assigned: s(&["a:1"]),
                in_progress: set(&["a:1"]),
                ..Case::default()
            },
            Case {
                name: "succeeded, not listed yet",
                assigned: s(&["a:1"]),
                succeeded: set(&["a:1"]),
                ..Case::default()
            },
            Case {
                name: "slots",
                assigned: s(&["a:1", "b:1", "c:1"]),
                slots: 2,
                want: vec![start("a:1"), start("b:1"), queue("c:1")],
                ..Case::default()
            },
            Case {
                name: "slots taken by running pulls",
                assigned: s(&["a:1", "b:1"]),
                in_progress: set(&["x:1", "a:1"]),
                slots: 2,
                want: vec![queue("b:1")],
                ..Case::default()
            },
            // Failed 3 times at t=7s: the next try is 4 s later, at 11 s.
            Case {
                name: "failed, waiting",
                assigned: s(&["a:1"]),
                failures: vec![("a:1", 3, 7_000)],
                want: vec![retry_at("a:1", t(11_000))],
                ..Case::default()
            },
            Case {
                name: "failed, due",
                assigned: s(&["a:1"]),
                failures: vec![("a:1", 1, 8_000)],
                want: vec![start("a:1")],
                ..Case::default()
            },
            Case {
                name: "failed many times: capped",
                assigned: s(&["a:1"]),
                failures: vec![("a:1", 30, 1_000)],
                want: vec![start("a:1")],
                ..Case::default()
            },
            Case {
                name: "failure of an unassigned model is forgotten",
                failures: vec![("a:1", 1, 9_000)],
                want: vec![forget("a:1")],
                ..Case::default()
            },
            Case {
                name: "failure of a model now present is forgotten",
                assigned: s(&["a:1"]),
                present: s(&["a:1"]),
                failures: vec![("a:1", 2, 9_000)],
                want: vec![forget("a:1")],
                ..Case::default()
            },
            Case {
                name: "success of an unassigned model is forgotten",
                assigned: s(&["b:1"]),
                present: s(&["b:1"]),
                succeeded: set(&["a:1"]),
                want: vec![forget("a:1")],
                ..Case::default()
            },
            Case {
                name: "a running pull is not forgotten",
                in_progress: set(&["a:1"]),
                succeeded: set(&["a:1"]),
                ..Case::default()
            },
            Case {
                name: "default when nothing assigned",
                default: Some("llama3.2:3b"),
                want: vec![start_default("llama3.2:3b")],
                ..Case::default()
            },
            Case {
                name: "no default before the assignments are known",
                known: false,
                default: Some("llama3.2:3b"),
                ..Case::default()
            },
            Case {
                name: "no default when opted out (or pulled once)",
                default: None,
                ..Case::default()
            },
            Case {
                name: "no default when something is assigned",
                assigned: s(&["a:1"]),
                present: s(&["a:1"]),
                default: Some("d:1"),
                ..Case::default()
            },
            Case {
                name: "no default when Ollama holds a model",
                present: s(&["mine:latest"]),
                default: Some("d:1"),
                ..Case::default()
            },
            Case {
                name: "default pulling, then an assignment: default left alone",
                assigned: s(&["a:1"]),
                in_progress: set(&["d:1"]),
                default: Some("d:1"),
                want: vec![start("a:1")],
                ..Case::default()
            },
            Case {
                name: "default failed: retried",
                failures: vec![("d:1", 1, 9_500)],
                default: Some("d:1"),
                want: vec![retry_at("d:1", t(10_500))],
                ..Case::default()
            },
        ];
        for case in cases {
            let failures: BTreeMap<String, PullFailure> = case
                .failures
                .iter()
                .map(|(m, attempts, at)| {
                    (
                        model_name::canonical(m),
                        PullFailure {
                            attempts: *attempts,
                            at: t(*at),
                            message: "x".into(),
                        },
                    )
                })
                .collect();
            let inputs = PullInputs {
                assigned: &case.assigned,
                assignments_known: case.known,
                present: &case.present,
                in_progress: &case.in_progress,
                succeeded: &case.succeeded,
                failures: &failures,
                default_model: case.default,
                max_concurrent: case.slots,
                retry: &retry,
                now,
            };
            assert_eq!(plan_pulls(&inputs), case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_schedule_that_gives_up_stops_retrying() {
        let now = Instant::now();
        let retry = Backoff::DOWNLOAD.with_max_tries(Some(2));
        let failures = BTreeMap::from([(
            model_name::canonical("a:1"),
            PullFailure {
                attempts: 2,
                at: now,
                message: "x".into(),
            },
        )]);
        let (empty, assigned) = (BTreeSet::new(), s(&["a:1"]));
        let inputs = PullInputs {
            assigned: &assigned,
            assignments_known: true,
            present: &[],
            in_progress: &empty,
            succeeded: &empty,
            failures: &failures,
            default_model: None,
            max_concurrent: 1,
            retry: &retry,
            now: now + Duration::from_secs(3600),
        };
        assert_eq!(plan_pulls(&inputs), vec![]);
    }

    fn line(status: &str, digest: &str, completed: u64, total: u64) -> PullLine {
        PullLine {
            status: status.into(),
            digest: digest.into(),
            completed,
            total,
            error: None,
        }
    }

    #[test]
    fn progress_sums_layers() {
        let mut p = PullProgress::default();
        assert!(p.apply(&line("pulling manifest", "", 0, 0)));
        assert_eq!((p.completed(), p.total()), (0, 0));
        assert!(p.apply(&line("pulling aaa", "sha256:aaa", 0, 1000)));
        assert!(p.apply(&line("pulling aaa", "sha256:aaa", 400, 1000)));
        assert!(
            !p.apply(&line("pulling aaa", "sha256:aaa", 400, 1000)),
            "same line: no change"
        );
        assert!(p.apply(&line("pulling bbb", "sha256:bbb", 10, 10)));
        assert_eq!((p.completed(), p.total()), (410, 1010));
        assert!(p.apply(&line("pulling aaa", "sha256:aaa", 1000, 1000)));
        assert!(p.apply(&line("verifying sha256 digest", "", 0, 0)));
        assert!(p.apply(&line("success", "", 0, 0)));
        assert_eq!(
            (p.completed(), p.total(), p.status.as_str()),
            (1010, 1010, "success")
        );
        // A layer line that reports more than its total still counts what is on disk.
        let mut odd = PullProgress::default();
        odd.apply(&line("pulling x", "sha256:x", 20, 10));
        assert_eq!((odd.completed(), odd.total()), (20, 20));
    }

    #[test]
    fn assignments_placing_this_node() {
        use herd_api::{ModelAssignmentSpec, PlacementStatus, Resource};
        let ma = |name: &str, model: &str, nodes: &[&str]| {
            let mut a = ModelAssignment::new(
                name,
                ModelAssignmentSpec {
                    model: model.into(),
                    ..Default::default()
                },
            );
            a.status.nodes = nodes
                .iter()
                .map(|n| PlacementStatus {
                    node: (*n).into(),
                    ..Default::default()
                })
                .collect();
            Arc::new(a)
        };
        let list = vec![
            ma("a", "llama3.2:1b", &["box-1", "box-2"]),
            ma("b", "qwen2.5:0.5b", &["box-2"]),
            ma("c", "phi3", &["box-1"]),
            ma("d", "  ", &["box-1"]),
        ];
        assert_eq!(assigned_models(&list, "box-1"), ["llama3.2:1b", "phi3"]);
        assert_eq!(assigned_models(&list, "box-3"), Vec::<String>::new());
    }

    #[test]
    fn board_snapshots_are_ordered_and_changes_are_signalled() {
        let board = PullBoard::default();
        let rx = board.subscribe();
        board.set(
            "b:1",
            ModelPull {
                model: "b:1".into(),
                ..ModelPull::default()
            },
        );
        board.set(
            "a:1",
            ModelPull {
                model: "a:1".into(),
                ..ModelPull::default()
            },
        );
        board.update("a:1", |p| p.completed_bytes = 5);
        board.update("missing", |p| p.completed_bytes = 5);
        let snap = board.snapshot();
        assert_eq!(
            snap.iter().map(|p| p.model.as_str()).collect::<Vec<_>>(),
            ["a:1", "b:1"]
        );
        assert_eq!(snap[0].completed_bytes, 5);
        assert!(rx.has_changed().expect("sender alive"));
        board.remove("a:1");
        assert_eq!(board.snapshot().len(), 1);
    }
}
