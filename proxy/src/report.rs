//! What the proxy tells the API about nodes, off the request path:
//! `Reachable` when connections fail (or work again), and
//! `status.usage.inFlight` so the controller (drain) and the dashboard see
//! the load. Neither write can clobber what the nodelet or the controller
//! wrote: the condition is a read-modify-write with retry on conflict, the
//! count a merge patch of that one field (the API server keeps it when other
//! writers leave it out). Each node is written at most once per
//! `status_report_interval` by each kind of report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use herd_api::{Condition, ConditionStatus, Node, conditions, set_condition};
use herd_client::{Api, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::table::{Clock, NodeLive, Table};

/// A change of a node's `Reachable` condition.
#[derive(Debug)]
pub(crate) struct Reach {
    pub node: String,
    pub reachable: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The sending side, held by request handlers: never blocks, drops reports
/// past the throttle or when the writer is behind.
#[derive(Clone)]
pub(crate) struct Reporter {
    tx: mpsc::Sender<Reach>,
    clock: Clock,
    interval_nanos: u64,
    last: Arc<Throttle>,
}

/// Per-node time of the last report: a mutex around a map, touched only
/// when a node fails or recovers (rare), never on a normal request.
#[derive(Default)]
struct Throttle(std::sync::Mutex<HashMap<String, u64>>);

impl Throttle {
    /// Sets `node`'s time to `now` and returns true when the previous one
    /// is at least `gap` old.
    fn due(&self, node: &str, now: u64, gap: u64) -> bool {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match m.get_mut(node) {
            Some(t) if now.saturating_sub(*t) < gap => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                m.insert(node.to_owned(), now);
                true
            }
        }
    }
}

impl Reporter {
    /// Reports `node` unreachable (connect failure, first-byte timeout).
    pub(crate) fn unreachable(&self, node: &str, reason: &'static str, message: String) {
        self.send(Reach {
            node: node.to_owned(),
            reachable: false,
            reason,
            message,
        });
    }

    /// Reports that `node` answered again after being reported unreachable.
    pub(crate) fn reachable(&self, node: &str, live: &NodeLive) {
        // One report per recovery is enough; the flag resets on the next trip.
        if live
            .reachable_seen
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        self.send(Reach {
            node: node.to_owned(),
            reachable: true,
            reason: "Connected",
            message: "the router reached the node's Ollama".to_owned(),
        });
    }

    fn send(&self, r: Reach) {
        if !self
            .last
            .due(&r.node, self.clock.now(), self.interval_nanos)
        {
            return;
        }
        if self.tx.try_send(r).is_err() {
            tracing::debug!("reachability report dropped: the writer is behind");
        }
    }
}

/// Starts the reachability writer; returns the reporter for handlers.
pub(crate) fn spawn_reachability(
    api: Api<Node>,
    clock: Clock,
    interval: Duration,
    stop: CancellationToken,
) -> Reporter {
    let (tx, mut rx) = mpsc::channel::<Reach>(256);
    tokio::spawn(async move {
        loop {
            let r = tokio::select! {
                () = stop.cancelled() => break,
                r = rx.recv() => match r { Some(r) => r, None => break },
            };
            let status = if r.reachable {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            let cond = Condition::new(conditions::REACHABLE, status, r.reason, r.message.clone());
            let res = api
                .update_status_with_retry(&r.node, |s| {
                    set_condition(&mut s.conditions, cond.clone(), jiff::Timestamp::now());
                })
                .await;
            match res {
                Ok(_) => {
                    tracing::info!(node = %r.node, reachable = r.reachable, reason = r.reason, message = %r.message, "reported node reachability")
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(node = %r.node, error = %e, "cannot report node reachability")
                }
            }
        }
    });
    Reporter {
        tx,
        clock,
        interval_nanos: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
        last: Arc::new(Throttle::default()),
    }
}

/// Writes `status.usage.inFlight` of nodes whose live count differs from
/// what the store holds, at most once per `interval` per node. Comparing
/// with the store (not with what was last written) repairs a value another
/// writer set explicitly; one that leaves the field out does not change it.
pub(crate) fn spawn_in_flight_writer(
    api: Api<Node>,
    table: Arc<ArcSwap<Table>>,
    interval: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_write: HashMap<String, Instant> = HashMap::new();
        let written = AtomicU64::new(0);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let t = table.load_full();
            last_write.retain(|n, _| t.node(n).is_some());
            for b in &t.nodes {
                let live = b.live.in_flight.load(Ordering::Relaxed);
                if b.status_in_flight() == live {
                    continue;
                }
                if last_write
                    .get(&*b.name)
                    .is_some_and(|at| at.elapsed() < interval)
                {
                    continue;
                }
                last_write.insert(b.name.to_string(), Instant::now());
                let patch = serde_json::json!({"status": {"usage": {"inFlight": live}}});
                let res = api
                    .patch_status(&b.name, &PostParams::default(), &patch)
                    .await;
                match res {
                    Ok(_) => {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        tracing::debug!(node = %b.name, error = %e, "cannot write in-flight count")
                    }
                }
            }
        }
        tracing::debug!(
            writes = written.load(Ordering::Relaxed),
            "in-flight writer stopped"
        );
    });
}
