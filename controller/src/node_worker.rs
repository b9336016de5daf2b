//! The node reconciler's I/O shell around [`crate::node`]'s pure decision:
//! read the cached node, decide with [`reconcile_node`], write the status if
//! it changed, record the events.
//!
//! The write is a conditional `replace_status` on the revision the decision
//! was made from. On a conflict (a heartbeat or the proxy wrote meanwhile)
//! it reads the node again and decides again from the fresh object, so
//! nothing another writer set is ever overwritten and no decision is made
//! from one version and applied to another: the same protocol as
//! `Api::update_status_with_retry`, with the whole object in hand.

use std::sync::Arc;

use herd_api::{Node, Timestamp};
use herd_client::{PostParams, STATUS_UPDATE_ATTEMPTS};
use rand::Rng;

use crate::backend::BackendSeen;
use crate::events::{EventDraft, reasons};
use crate::health::{HeartbeatSeen, observe_heartbeat};
use crate::node::{NodeObservation, reconcile_node};
use crate::probe::ProbeTracker;
use crate::runtime::Action;
use crate::{Context, Error};

/// What the controller remembers about a node between reconciles. Lost on
/// restart, by design: everything here is rebuilt within one probe
/// interval, and until then the stored conditions stand.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeMemory {
    uid: Option<String>,
    heartbeat: Option<HeartbeatSeen>,
    pub probe: ProbeTracker,
    /// What the probe found about the backend.
    pub backend: BackendSeen,
    /// The node's generation when its native endpoints were last found.
    pub endpoints_generation: Option<i64>,
}

enum Sighting {
    /// First time this controller sees the node.
    New,
    /// The name now belongs to a new object (deleted and created again).
    Replaced,
    Known,
}

impl Context {
    /// Notes the node's heartbeat and returns what the controller has seen.
    fn observe(&self, node: &Node, now: Timestamp) -> (NodeObservation, Sighting) {
        let mut memory = self.memory();
        let name = &node.metadata.name;
        let uid = node.metadata.uid.clone();
        let sighting = match memory.get(name) {
            None => Sighting::New,
            Some(m) if m.uid.is_some() && uid.is_some() && m.uid != uid => Sighting::Replaced,
            Some(_) => Sighting::Known,
        };
        let entry = memory.entry(name.clone()).or_default();
        if matches!(sighting, Sighting::Replaced) {
            *entry = NodeMemory::default();
        }
        entry.uid = uid;
        entry.heartbeat = observe_heartbeat(
            entry.heartbeat.as_ref(),
            node.status.last_heartbeat_time,
            now,
        );
        let observed = NodeObservation {
            heartbeat: entry.heartbeat,
            probe: entry.probe.verdict(),
            backend: entry.backend.clone(),
        };
        (observed, sighting)
    }

    fn removed_event(name: &str, why: &str) -> EventDraft {
        EventDraft::normal::<Node>(name, reasons::REMOVED, format!("node {name} {why}"))
    }
}

pub(crate) async fn reconcile(ctx: Arc<Context>, name: String) -> Result<Action, Error> {
    let Some(cached) = ctx.nodes.get(&name) else {
        let known = ctx.memory().remove(&name).is_some();
        if known {
            ctx.recorder
                .record(&Context::removed_event(&name, "was deleted"))
                .await;
        }
        return Ok(Action::await_change());
    };
    let mut node = (*cached).clone();
    drop(cached);
    for attempt in 1..=STATUS_UPDATE_ATTEMPTS {
        let now = Timestamp::now();
        let (observed, sighting) = ctx.observe(&node, now);
        match sighting {
            Sighting::New => {
                // Spread first probes over one interval: 1,000 nodes found
                // at startup must not be probed in the same instant.
                let offset = ctx
                    .config
                    .probe_interval
                    .mul_f64(rand::rng().random::<f64>());
                ctx.probe_queue.add_after(&name, offset);
            }
            Sighting::Replaced => {
                ctx.recorder
                    .record(&Context::removed_event(
                        &name,
                        "was deleted and created again",
                    ))
                    .await;
            }
            Sighting::Known => {}
        }
        let decision = reconcile_node(&node, &observed, now, ctx.config.heartbeat_grace);
        let action = Action::from_requeue(decision.requeue_after);
        if !decision.changes(&node) {
            return Ok(action);
        }
        let mut next = node.clone();
        next.status = decision.status;
        match ctx
            .node_api
            .replace_status(&PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                tracing::debug!(node = %name, "status written");
                ctx.recorder.record_all(&decision.events).await;
                return Ok(action);
            }
            Err(e) if e.is_conflict() && attempt < STATUS_UPDATE_ATTEMPTS => {
                match ctx.node_api.get_opt(&name).await? {
                    Some(fresh) => node = fresh,
                    None => return Ok(Action::await_change()),
                }
            }
            Err(e) if e.is_not_found() => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended(name))
}
