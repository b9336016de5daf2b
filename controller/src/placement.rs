//! Model placement: which nodes should hold a `ModelAssignment`'s model
//! (pure decisions; the reconciler that writes them is `placement_worker`).
//!
//! **`replicas: N`** — N nodes that match `nodeSelector`:
//! 1. Keep every node already placed that still exists, matches, is not
//!    cordoned, and has not been not-Ready for `replace_after` or longer.
//!    (A node that just went down keeps its place, and counts, until then:
//!    a reboot should not trigger a multi-gigabyte pull elsewhere.)
//! 2. More than N kept (scale down): drop the least good, where better
//!    means Ready, then already holding the model, then more free memory,
//!    then the name (for determinism).
//! 3. Fewer than N: add Ready, schedulable, matching nodes, preferring
//!    those that already hold the model, then the most free memory
//!    (`capacity.memoryBytes × (1 − usage.memoryPercent/100)`), then name.
//!
//! **No `replicas`** — every matching node that is not cordoned, Ready or
//! not: a node that is down keeps its place and pulls when it is back, and
//! a new node gets the model as soon as its nodelet can pull it.
//!
//! Unmanaged nodes (`spec.managed: false`) are never placed on: no nodelet
//! there pulls. They serve the models they have, and a node that becomes
//! unmanaged loses its places at once.
//!
//! Placement is stable: it only changes when one of the rules above says
//! so, never because free memory moved. Cordoned nodes lose their place at
//! once (cordon means "take traffic off this node", and a replica there
//! would serve nobody); free memory and load only rank new candidates.
//!
//! Per placed node, the phase comes from the node's status: `Ready` when
//! the model is in `status.models`; else from `status.pulls` (`Pulling`,
//! `Failed` with the pull's message, `Pending` when queued); else `Pending`.
//! `readyReplicas` counts placed nodes that hold the model *and* are Ready.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herd_api::{
    Condition, ConditionStatus, LabelSelector, ModelAssignment, ModelAssignmentStatus, Node,
    PlacementPhase, PlacementStatus, PullPhase, Timestamp, conditions, model_name, set_condition,
};

use crate::events::{EventDraft, reasons};
use crate::health::not_ready_for;
use crate::time::human;

/// Reasons of the `Available` condition.
pub mod available {
    pub const REPLICAS_READY: &str = "ReplicasReady";
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    pub const TOO_FEW_NODES: &str = "TooFewNodes";
    pub const NO_MATCHING_NODES: &str = "NoMatchingNodes";
}

/// What to do about one assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementDecision {
    pub status: ModelAssignmentStatus,
    pub events: Vec<EventDraft>,
    /// When a kept, not-Ready node reaches `replace_after`.
    pub requeue_after: Option<Duration>,
}

impl PlacementDecision {
    pub fn changes(&self, ma: &ModelAssignment) -> bool {
        self.status != ma.status
    }
}

/// Why a node lost its place.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unplaced {
    Deleted,
    NoLongerMatches,
    Cordoned,
    Unmanaged,
    NotReadyTooLong(Duration),
    ScaledDown(u32),
}

struct Facts<'a> {
    node: &'a Node,
    ready: bool,
    has_model: bool,
    free_memory: u64,
}

impl<'a> Facts<'a> {
    fn of(node: &'a Node, model: &str) -> Self {
        Self {
            node,
            ready: node.is_ready(),
            has_model: node.model(model).is_some(),
            free_memory: free_memory(node),
        }
    }

    /// Larger is better; the name (reversed) breaks ties.
    fn rank(&self) -> (bool, bool, u64, std::cmp::Reverse<&'a str>) {
        (
            self.ready,
            self.has_model,
            self.free_memory,
            std::cmp::Reverse(self.node.metadata.name.as_str()),
        )
    }
}

/// `capacity.memoryBytes × (1 − usage.memoryPercent/100)`; 0 when unknown.
pub fn free_memory(node: &Node) -> u64 {
    let total = node.status.capacity.as_ref().map_or(0, |c| c.memory_bytes);
    let used = node
        .status
        .usage
        .as_ref()
        .map_or(0.0, |u| u.memory_percent)
        .clamp(0.0, 100.0);
    let used = if used.is_nan() { 0.0 } else { used };
    (total as f64 * (1.0 - used / 100.0)) as u64
}

/// Decides the placement and status of `ma` over `nodes` at `now`.
pub fn reconcile_placement<'a>(
    ma: &ModelAssignment,
    nodes: impl IntoIterator<Item = &'a Node>,
    now: Timestamp,
    replace_after: Duration,
) -> PlacementDecision {
    let model = ma.spec.model.as_str();
    let selector = ma
        .spec
        .node_selector
        .as_ref()
        .map(|s| LabelSelector::from_match_labels(&s.match_labels))
        .unwrap_or_default();
    let nodes: BTreeMap<&str, Facts<'a>> = nodes
        .into_iter()
        .map(|n| (n.metadata.name.as_str(), Facts::of(n, model)))
        .collect();
    let matches = |f: &Facts<'_>| selector.matches(&f.node.metadata.labels);
    let schedulable = |f: &Facts<'_>| !f.node.spec.unschedulable && f.node.spec.managed;
    let unplaceable = |f: &Facts<'_>| {
        if f.node.spec.managed {
            Unplaced::Cordoned
        } else {
            Unplaced::Unmanaged
        }
    };

    let previous: BTreeSet<&str> = ma.status.nodes.iter().map(|p| p.node.as_str()).collect();
    let mut removed: Vec<(&str, Unplaced)> = Vec::new();
    let mut requeue: Option<Duration> = None;

    let placed: BTreeSet<&str> = match ma.spec.replicas {
        None => {
            for name in &previous {
                match nodes.get(name) {
                    None => removed.push((name, Unplaced::Deleted)),
                    Some(f) if !matches(f) => removed.push((name, Unplaced::NoLongerMatches)),
                    Some(f) if !schedulable(f) => removed.push((name, unplaceable(f))),
                    Some(_) => {}
                }
            }
            nodes
                .iter()
                .filter(|(_, f)| matches(f) && schedulable(f))
                .map(|(name, _)| *name)
                .collect()
        }
        Some(want) => {
            let mut kept: Vec<&Facts<'_>> = Vec::new();
            for name in &previous {
                let Some(f) = nodes.get(name) else {
                    removed.push((name, Unplaced::Deleted));
                    continue;
                };
                if !matches(f) {
                    removed.push((name, Unplaced::NoLongerMatches));
                    continue;
                }
                if !schedulable(f) {
                    removed.push((name, unplaceable(f)));
                    continue;
                }
                let created = f.node.metadata.creation_timestamp.unwrap_or(now);
                let down = not_ready_for(&f.node.status.conditions, now, created);
                if !f.ready && down >= replace_after {
                    removed.push((name, Unplaced::NotReadyTooLong(down)));
                    continue;
                }
                kept.push(f);
            }
            kept.sort_by(|a, b| b.rank().cmp(&a.rank()));
            let want_n = want as usize;
            if kept.len() > want_n {
                for f in kept.drain(want_n..) {
                    removed.push((f.node.metadata.name.as_str(), Unplaced::ScaledDown(want)));
                }
            }
            // Look again when the first kept, not-Ready node is due for replacement.
            requeue = kept
                .iter()
                .filter(|f| !f.ready)
                .map(|f| {
                    let created = f.node.metadata.creation_timestamp.unwrap_or(now);
                    replace_after.saturating_sub(not_ready_for(
                        &f.node.status.conditions,
                        now,
                        created,
                    ))
                })
                .min();
            let mut chosen: BTreeSet<&str> =
                kept.iter().map(|f| f.node.metadata.name.as_str()).collect();
            if chosen.len() < want_n {
                let mut candidates: Vec<&Facts<'_>> = nodes
                    .values()
                    .filter(|f| {
                        f.ready
                            && matches(f)
                            && schedulable(f)
                            && !chosen.contains(f.node.metadata.name.as_str())
                    })
                    .collect();
                candidates.sort_by(|a, b| b.rank().cmp(&a.rank()));
                let missing = want_n - chosen.len();
                chosen.extend(
                    candidates
                        .into_iter()
                        .take(missing)
                        .map(|f| f.node.metadata.name.as_str()),
                );
            }
            chosen
        }
    };

    let mut status = ma.status.clone();
    status.nodes = placed
        .iter()
        .map(|name| placement_status(name, nodes.get(name).map(|f| f.node), model))
        .collect();
    let ready_replicas = placed
        .iter()
        .filter(|name| nodes.get(*name).is_some_and(|f| f.ready && f.has_model))
        .count() as u32;
    status.ready_replicas = ready_replicas;
    status.observed_generation = ma.metadata.generation;
    let unmanaged = nodes
        .values()
        .filter(|f| !f.node.spec.managed && matches(f))
        .count();
    let mut available = available_condition(ma.spec.replicas, &placed, &nodes, ready_replicas);
    if unmanaged > 0 && available.status != ConditionStatus::True {
        available.message.push_str(&format!(
            "; {unmanaged} matching node{} unmanaged and never placed on (no nodelet there pulls)",
            if unmanaged == 1 { " is" } else { "s are" }
        ));
    }
    set_condition(&mut status.conditions, available, now);

    let ma_name = ma.metadata.name.as_str();
    let mut events: Vec<EventDraft> = placed
        .iter()
        .filter(|n| !previous.contains(*n))
        .map(|n| {
            EventDraft::normal::<ModelAssignment>(
                ma_name,
                reasons::SCHEDULED,
                format!("model {model} scheduled on node {n}"),
            )
        })
        .collect();
    for (name, why) in removed {
        let why = match why {
            Unplaced::Deleted => "the node was deleted".to_owned(),
            Unplaced::NoLongerMatches => "the node no longer matches the node selector".to_owned(),
            Unplaced::Cordoned => "the node is cordoned".to_owned(),
            Unplaced::Unmanaged => {
                "the node is unmanaged: no nodelet there pulls models".to_owned()
            }
            Unplaced::NotReadyTooLong(d) => format!(
                "the node has not been Ready for {} (replace after {})",
                human(d),
                human(replace_after)
            ),
            Unplaced::ScaledDown(n) => format!("scaled down to {n} replicas"),
        };
        events.push(EventDraft::normal::<ModelAssignment>(
            ma_name,
            reasons::UNSCHEDULED,
            format!("model {model} unscheduled from node {name}: {why}"),
        ));
    }

    PlacementDecision {
        status,
        events,
        requeue_after: requeue.map(|d| d + Duration::from_millis(5)),
    }
}

fn placement_status(name: &str, node: Option<&Node>, model: &str) -> PlacementStatus {
    let (phase, message) = match node {
        None => (
            PlacementPhase::Pending,
            "the node does not exist".to_owned(),
        ),
        Some(n) => phase_on(n, model),
    };
    PlacementStatus {
        node: name.to_owned(),
        phase,
        message,
    }
}

/// The phase of `model` on `node`, from the nodelet's report.
fn phase_on(node: &Node, model: &str) -> (PlacementPhase, String) {
    let not_ready = (!node.is_ready()).then_some("the node is not Ready");
    if node.model(model).is_some() {
        return (
            PlacementPhase::Ready,
            not_ready.unwrap_or_default().to_owned(),
        );
    }
    let pull = node
        .status
        .pulls
        .iter()
        .find(|p| model_name::same_model(&p.model, model));
    match pull.map(|p| (p.phase, p.message.as_str())) {
        Some((PullPhase::Failed, m)) => (
            PlacementPhase::Failed,
            if m.is_empty() { "the pull failed" } else { m }.to_owned(),
        ),
        Some((PullPhase::Pulling, _)) => (PlacementPhase::Pulling, "pulling".to_owned()),
        Some((PullPhase::Succeeded, _)) => (
            PlacementPhase::Pulling,
            "pulled; waiting for the node to list the model".to_owned(),
        ),
        Some((PullPhase::Pending, _)) => (PlacementPhase::Pending, "pull queued".to_owned()),
        None => (
            PlacementPhase::Pending,
            not_ready
                .unwrap_or("waiting for the nodelet to pull the model")
                .to_owned(),
        ),
    }
}

fn available_condition(
    replicas: Option<u32>,
    placed: &BTreeSet<&str>,
    nodes: &BTreeMap<&str, Facts<'_>>,
    ready: u32,
) -> Condition {
    use ConditionStatus::{False, True};
    let cond = |status, reason: &str, message: String| {
        Condition::new(conditions::AVAILABLE, status, reason, message)
    };
    match replicas {
        Some(want) if ready >= want => cond(
            True,
            available::REPLICAS_READY,
            format!("{ready} of {want} replicas ready"),
        ),
        Some(want) if (placed.len() as u32) < want => cond(
            False,
            available::TOO_FEW_NODES,
            format!(
                "{ready} of {want} replicas ready; only {} could be placed: too few Ready, schedulable nodes match",
                placed.len()
            ),
        ),
        Some(want) => cond(
            False,
            available::REPLICAS_NOT_READY,
            format!("{ready} of {want} replicas ready"),
        ),
        None if placed.is_empty() => cond(
            False,
            available::NO_MATCHING_NODES,
            "no schedulable node matches the node selector".into(),
        ),
        None => {
            let ready_nodes = placed
                .iter()
                .filter(|n| nodes.get(*n).is_some_and(|f| f.ready))
                .count() as u32;
            let message = format!(
                "{ready} of {ready_nodes} Ready nodes hold the model ({} placed)",
                placed.len()
            );
            if ready > 0 && ready == ready_nodes {
                cond(True, available::REPLICAS_READY, message)
            } else {
                cond(False, available::REPLICAS_NOT_READY, message)
            }
        }
    }
}

#[cfg(test)]
mod tests;
