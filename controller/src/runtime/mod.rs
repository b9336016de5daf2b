//! A small reconcile runtime, shaped after kube-runtime's controller.
//!
//! - Triggers (watch events, resync ticks, probe results) put object keys
//!   into a [`WorkQueue`], which dedups them.
//! - [`run`] takes due keys off the queue and runs the reconciler for each,
//!   at most `concurrency` at a time and never two for one key.
//! - The reconciler answers an [`Action`]: come back after a delay, or only
//!   when something changes. An error is retried with exponential backoff
//!   (per key, reset by the next success).
//!
//! Reconcilers are told only the key, never the event that woke them: they
//! read the current state from a cache, so running one twice, late or after
//! a restart is always safe (level-triggered).

mod queue;

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use herd_client::backoff::Backoff;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use queue::WorkQueue;

/// What a reconciler wants next for the object it reconciled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `after` even if nothing changes (e.g. at the
    /// moment a heartbeat goes stale).
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
        }
    }

    /// Nothing is due until the object (or something it depends on) changes,
    /// or the periodic resync comes round.
    pub fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// `requeue` when `after` is some, `await_change` otherwise.
    pub fn from_requeue(after: Option<Duration>) -> Self {
        Self {
            requeue_after: after,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// How [`run`] runs a reconciler.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Span and log name: the kind reconciled (`Node`).
    pub name: &'static str,
    /// Reconciles running at once (of different keys).
    pub concurrency: usize,
    /// Delay before retrying a key whose reconcile failed.
    pub backoff: Backoff,
}

/// Consecutive failures per key, for the error backoff.
#[derive(Default)]
struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    fn record(&self, key: &str, ok: bool) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ok {
            map.remove(key);
            0
        } else {
            let n = map.entry(key.to_owned()).or_insert(0);
            *n += 1;
            *n
        }
    }
}

/// Runs `reconcile` for every key the queue hands out until `shutdown`;
/// then closes the queue and stops the reconciles still running (they are
/// level-triggered: the next run, or the next process, redoes them).
pub async fn run<F, Fut, E>(
    queue: Arc<WorkQueue>,
    options: RunOptions,
    reconcile: F,
    shutdown: CancellationToken,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let failures = Arc::new(Failures::default());
    let mut tasks = JoinSet::new();
    loop {
        let key = tokio::select! {
            key = queue.next() => match key { Some(k) => k, None => break },
            () = shutdown.cancelled() => break,
        };
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        let span = tracing::debug_span!("reconcile", kind = options.name, name = %key);
        let fut = reconcile(key.clone());
        let (queue, failures, backoff, kind) = (
            queue.clone(),
            failures.clone(),
            options.backoff,
            options.name,
        );
        tasks.spawn(
            async move {
                let result = fut.await;
                let next = match result {
                    Ok(action) => {
                        failures.record(&key, true);
                        action.requeue_after.map(|d| Instant::now() + d)
                    }
                    Err(error) => {
                        let n = failures.record(&key, false);
                        let delay = backoff.jittered(n, rand::random::<f64>());
                        tracing::warn!(kind, name = %key, failures = n, retry_in = ?delay, %error, "reconcile failed");
                        Some(Instant::now() + delay)
                    }
                };
                queue.done(&key, next);
                drop(permit);
            }
            .instrument(span),
        );
        while tasks.try_join_next().is_some() {}
    }
    queue.close();
    tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn options(concurrency: usize) -> RunOptions {
        RunOptions {
            name: "Test",
            concurrency,
            backoff: Backoff::WATCH
                .between(Duration::from_millis(100), Duration::from_secs(1))
                .with_jitter(herd_client::backoff::Jitter::None),
        }
    }

    /// Records (key, start time) of every reconcile; answers with `action`
    /// or fails for keys starting with "bad".
    #[derive(Default)]
    struct Log {
        runs: Mutex<Vec<(String, Duration)>>,
        running: AtomicUsize,
        max_running_same_key: AtomicUsize,
    }

    fn start(
        queue: Arc<WorkQueue>,
        log: Arc<Log>,
        concurrency: usize,
        work: Duration,
        action: Action,
    ) -> CancellationToken {
        let token = CancellationToken::new();
        let t0 = Instant::now();
        let reconcile = move |key: String| {
            let log = log.clone();
            async move {
                let now = log.running.fetch_add(1, Ordering::SeqCst) + 1;
                log.max_running_same_key.fetch_max(now, Ordering::SeqCst);
                log.runs
                    .lock()
                    .expect("lock")
                    .push((key.clone(), t0.elapsed()));
                tokio::time::sleep(work).await;
                log.running.fetch_sub(1, Ordering::SeqCst);
                if key.starts_with("bad") {
                    Err("it broke")
                } else {
                    Ok(action)
                }
            }
        };
        tokio::spawn(run(queue, options(concurrency), reconcile, token.clone()));
        token
    }

    fn runs(log: &Log) -> Vec<(String, u64)> {
        log.runs
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, d)| (k.clone(), d.as_millis() as u64))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_runs_again_after_the_delay() {
        let q = Arc::new(WorkQueue::new());
        let log = Arc::new(Log::default());
        let stop = start(
            q.clone(),
            log.clone(),
            4,
            Duration::ZERO,
            Action::requeue(Duration::from_millis(300)),
        );
        q.add("a");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.cancel();
        assert_eq!(
            runs(&log),
            [
                ("a".into(), 0),
                ("a".into(), 300),
                ("a".into(), 600),
                ("a".into(), 900)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn await_change_runs_once_per_trigger_and_bursts_coalesce() {
        let q = Arc::new(WorkQueue::new());
        let log = Arc::new(Log::default());
        let stop = start(
            q.clone(),
            log.clone(),
            4,
            Duration::from_millis(50),
            Action::await_change(),
        );
        q.add("a");
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Three events while the first reconcile runs: one more run.
        for _ in 0..3 {
            q.add("a");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        assert_eq!(runs(&log), [("a".into(), 0), ("a".into(), 50)]);
        assert_eq!(
            log.max_running_same_key.load(Ordering::SeqCst),
            1,
            "never two at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_exponentially() {
        let q = Arc::new(WorkQueue::new());
        let log = Arc::new(Log::default());
        let stop = start(
            q.clone(),
            log.clone(),
            4,
            Duration::ZERO,
            Action::await_change(),
        );
        q.add("bad");
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.cancel();
        // 100, 200, 400, 800 ms between attempts (capped at 1 s).
        assert_eq!(
            runs(&log).iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [0, 100, 300, 700, 1500]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_across_keys() {
        let q = Arc::new(WorkQueue::new());
        let log = Arc::new(Log::default());
        let stop = start(
            q.clone(),
            log.clone(),
            2,
            Duration::from_millis(100),
            Action::await_change(),
        );
        for k in ["a", "b", "c", "d", "e"] {
            q.add(k);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.cancel();
        let starts: Vec<u64> = runs(&log).iter().map(|(_, t)| *t).collect();
        assert_eq!(starts, [0, 0, 100, 100, 200]);
    }
}
