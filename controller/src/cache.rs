//! Watch-fed caches (I/O) and the triggers that turn their changes into queued
//! keys.
//!
//! Each kind has one watcher feeding a [`Store`] (the reconcilers read
//! only from there) and, for every change, a trigger that queues keys:
//!
//! | change                          | queued                                   |
//! |---------------------------------|------------------------------------------|
//! | a node added, changed, deleted  | that node                                |
//! | …and its placement facts moved  | every assignment (see [`placement_facts`]) |
//! | an assignment added/changed/deleted | that assignment                      |
//! | a relist                        | every object in it, and every one that vanished |
//!
//! Heartbeats change a node every few seconds, but only its usage and
//! timestamps: the assignments are not woken for those.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures_util::StreamExt;
use herd_api::{ConditionStatus, ModelAssignment, Node, Resource, model_name};
use herd_client::Api;
use herd_client::reflector::{self, Store};
use herd_client::watcher::{self, Event, watcher};
use tokio_util::sync::CancellationToken;

use crate::runtime::WorkQueue;

/// Starts a watcher feeding a new store; `on_event` sees every change after
/// the store has applied it. Runs until `shutdown`.
pub(crate) fn spawn_watch<K: Resource>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: CancellationToken,
    mut on_event: impl FnMut(&Event<K>) + Send + 'static,
) -> Store<K> {
    let (writer, store) = reflector::store::<K>();
    tokio::spawn(async move {
        let events = reflector::reflector(writer, watcher(api, config));
        tokio::pin!(events);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                item = events.next() => match item {
                    Some(Ok(event)) => on_event(&event),
                    // The watcher logged it and is already retrying.
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        tracing::debug!(kind = K::KIND, "cache stopped");
    });
    store
}

/// A digest of what placement reads from a node, other than free memory
/// (which only ranks candidates and must not cause churn): labels, cordon,
/// readiness, the models it holds and its pulls' phases.
pub fn placement_facts(node: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    node.metadata.labels.hash(&mut h);
    node.spec.unschedulable.hash(&mut h);
    let ready = herd_api::find_condition(&node.status.conditions, herd_api::conditions::READY)
        .map(|c| c.status);
    match ready {
        Some(ConditionStatus::True) => 1u8,
        Some(ConditionStatus::False) => 2,
        Some(ConditionStatus::Unknown) => 3,
        None => 0,
    }
    .hash(&mut h);
    let mut models: Vec<String> = node
        .status
        .models
        .iter()
        .map(|m| model_name::canonical(&m.name))
        .collect();
    models.sort();
    models.hash(&mut h);
    for p in &node.status.pulls {
        model_name::canonical(&p.model).hash(&mut h);
        format!("{:?}", p.phase).hash(&mut h);
        p.message.hash(&mut h);
    }
    h.finish()
}

/// The node trigger: queues the node, and every assignment when the
/// node's placement facts changed.
pub(crate) struct NodeTrigger {
    pub nodes: Arc<WorkQueue>,
    pub assignments: Arc<WorkQueue>,
    pub assignment_store: Store<ModelAssignment>,
    facts: HashMap<String, u64>,
}

impl NodeTrigger {
    pub fn new(
        nodes: Arc<WorkQueue>,
        assignments: Arc<WorkQueue>,
        assignment_store: Store<ModelAssignment>,
    ) -> Self {
        Self {
            nodes,
            assignments,
            assignment_store,
            facts: HashMap::new(),
        }
    }

    pub fn on_event(&mut self, event: &Event<Node>) {
        let placement_moved = match event {
            Event::Applied(n) => {
                self.nodes.add(&n.metadata.name);
                let f = placement_facts(n);
                self.facts.insert(n.metadata.name.clone(), f) != Some(f)
            }
            Event::Deleted(n) => {
                self.nodes.add(&n.metadata.name);
                self.facts.remove(&n.metadata.name);
                true
            }
            Event::Restarted(items) => {
                let before = std::mem::take(&mut self.facts);
                for n in items {
                    self.nodes.add(&n.metadata.name);
                    self.facts
                        .insert(n.metadata.name.clone(), placement_facts(n));
                }
                for gone in before.keys().filter(|k| !self.facts.contains_key(*k)) {
                    self.nodes.add(gone);
                }
                before != self.facts
            }
        };
        if placement_moved {
            for ma in self.assignment_store.list() {
                self.assignments.add(&ma.metadata.name);
            }
        }
    }
}

/// The assignment trigger: queues the assignment (on a relist, all of them).
pub(crate) fn assignment_trigger(queue: Arc<WorkQueue>) -> impl FnMut(&Event<ModelAssignment>) {
    move |event| match event {
        Event::Applied(m) | Event::Deleted(m) => queue.add(&m.metadata.name),
        Event::Restarted(items) => {
            for m in items {
                queue.add(&m.metadata.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{
        Condition, ModelAssignmentSpec, NodeModel, NodeSpec, NodeUsage, Resource, conditions,
    };

    fn node(name: &str) -> Node {
        Node::new(name, NodeSpec::default())
    }

    #[test]
    fn facts_ignore_heartbeats_and_load() {
        let a = node("a");
        let mut b = a.clone();
        b.status.last_heartbeat_time = Some(herd_api::Timestamp::now());
        b.status.usage = Some(NodeUsage {
            cpu_percent: 90.0,
            memory_percent: 80.0,
            in_flight: 3,
        });
        b.metadata.resource_version = Some("99".into());
        assert_eq!(placement_facts(&a), placement_facts(&b));

        let mut c = a.clone();
        c.status.models.push(NodeModel {
            name: "llama3".into(),
            ..NodeModel::default()
        });
        assert_ne!(placement_facts(&a), placement_facts(&c));
        let mut d = a.clone();
        d.status.conditions.push(Condition::new(
            conditions::READY,
            ConditionStatus::True,
            "Healthy",
            "",
        ));
        assert_ne!(placement_facts(&a), placement_facts(&d));
        let mut e = a.clone();
        e.spec.unschedulable = true;
        assert_ne!(placement_facts(&a), placement_facts(&e));
    }

    #[tokio::test]
    async fn node_changes_queue_assignments_only_when_placement_facts_move() {
        let (nq, aq) = (Arc::new(WorkQueue::new()), Arc::new(WorkQueue::new()));
        let (mut w, store) = reflector::store::<ModelAssignment>();
        w.apply(&Event::Restarted(vec![ModelAssignment::new(
            "m",
            ModelAssignmentSpec::default(),
        )]));
        let mut trigger = NodeTrigger::new(nq.clone(), aq.clone(), store);

        trigger.on_event(&Event::Restarted(vec![node("a"), node("b")]));
        assert_eq!((nq.len(), aq.len()), (2, 1));
        let drain = |q: &WorkQueue| {
            while !q.is_empty() {
                let k = futures_util::FutureExt::now_or_never(q.next())
                    .flatten()
                    .expect("due");
                q.done(&k, None);
            }
        };
        drain(&nq);
        drain(&aq);

        // A heartbeat: the node is queued, the assignments are not.
        let mut hb = node("a");
        hb.status.last_heartbeat_time = Some(herd_api::Timestamp::now());
        trigger.on_event(&Event::Applied(hb.clone()));
        assert_eq!((nq.len(), aq.len()), (1, 0));

        // It becomes Ready: both.
        hb.status.conditions.push(Condition::new(
            conditions::READY,
            ConditionStatus::True,
            "Healthy",
            "",
        ));
        trigger.on_event(&Event::Applied(hb));
        assert_eq!(aq.len(), 1);
        drain(&nq);
        drain(&aq);

        // A relist without b: b is queued (to notice it is gone), and so
        // are the assignments.
        trigger.on_event(&Event::Restarted(vec![node("a")]));
        assert_eq!(nq.len(), 2);
        assert_eq!(aq.len(), 1);
    }
}
