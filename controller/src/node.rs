//! The node reconciler's decision (pure; its I/O is `node_worker`): every
//! controller-owned part of a node's status in one function, so one
//! reconcile makes at most one write.
//!
//! Owned here: the `Ready`, `Reachable` (from the probe) and `Drained`
//! conditions and `status.routing`; for an unmanaged node (no nodelet),
//! also `status.models`, `status.endpoints` and `status.info.ollamaVersion`,
//! from the probe. Everything else in the status belongs to the nodelet or
//! the proxy and is passed through untouched.

use std::time::Duration;

use herd_api::{
    ConditionStatus, Node, NodeStatus, Timestamp, conditions, find_condition, set_condition,
};

use crate::backend::BackendSeen;
use crate::drain::drained_condition;
use crate::events::{EventDraft, reasons};
use crate::health::{HeartbeatSeen, ready_condition, ready_unmanaged, unusable};
use crate::probe::{ProbeVerdict, reachable_condition};
use crate::routing::{routing_for, routing_update};
use crate::time::since;

/// Re-check this long after the heartbeat deadline, so the check lands
/// after it even if the timer fires a little early.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);

/// What the controller itself has seen of a node (not stored in the API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeObservation {
    /// The controller's note of the heartbeat; `None` means "take
    /// `status.lastHeartbeatTime` at face value" (it is then clamped to now).
    pub heartbeat: Option<HeartbeatSeen>,
    /// The settled probe verdict, if there is one.
    pub probe: Option<ProbeVerdict>,
    /// What the probe found about the backend.
    pub backend: BackendSeen,
}

/// What to do about one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeDecision {
    /// The status to store; equal to the current one when nothing changes.
    pub status: NodeStatus,
    /// Events for the transitions this status makes.
    pub events: Vec<EventDraft>,
    /// When to look again even if nothing changes (the heartbeat deadline).
    pub requeue_after: Option<Duration>,
}

impl NodeDecision {
    pub fn changes(&self, node: &Node) -> bool {
        self.status != node.status
    }
}

/// Decides the controller-owned status of `node` at `now`.
pub fn reconcile_node(
    node: &Node,
    observed: &NodeObservation,
    now: Timestamp,
    grace: Duration,
) -> NodeDecision {
    let name = node.metadata.name.as_str();
    let before = &node.status.conditions;
    let mut status = node.status.clone();

    if let Some(reachable) = reachable_condition(&status.conditions, observed.probe.as_ref()) {
        set_condition(&mut status.conditions, reachable, now);
    }

    let heartbeat = observed.heartbeat.or_else(|| {
        node.status.last_heartbeat_time.map(|value| HeartbeatSeen {
            value,
            first_seen: now,
            changed: false,
        })
    });
    let ready = match (&observed.backend.problem, node.spec.managed) {
        (Some(problem), _) => unusable(problem),
        (None, true) => ready_condition(&status.conditions, heartbeat, now, grace),
        (None, false) => ready_unmanaged(&status.conditions),
    };
    if !node.spec.managed {
        seen_by_probe(&mut status, &observed.backend);
    }
    let ready_now = ready.condition.clone();
    set_condition(&mut status.conditions, ready.condition, now);

    match drained_condition(node) {
        Some(c) => {
            set_condition(&mut status.conditions, c, now);
        }
        None => status.conditions.retain(|c| c.type_ != conditions::DRAINED),
    }

    if let Some(routing) =
        routing_update(status.routing.as_ref(), routing_for(node, ready_now.status))
    {
        status.routing = Some(routing);
    }

    let mut events = Vec::new();
    let was_ready = find_condition(before, conditions::READY);
    if was_ready.is_none() {
        let backend = match node.spec.api {
            herd_api::NodeApi::Ollama => "Ollama",
            herd_api::NodeApi::OpenAi => "OpenAI-compatible server",
        };
        let url = if node.spec.url.is_empty() {
            format!("no {backend} URL")
        } else {
            format!("{backend} at {}", node.spec.url)
        };
        events.push(EventDraft::normal::<Node>(
            name,
            reasons::REGISTERED,
            format!("node {name} registered ({url})"),
        ));
    }
    if was_ready.map(|c| c.status) != Some(ready_now.status) {
        let describe = format!(
            "Ready={:?} ({}): {}",
            ready_now.status, ready_now.reason, ready_now.message
        );
        match ready_now.status {
            ConditionStatus::True => events.push(EventDraft::normal::<Node>(
                name,
                reasons::READY,
                format!("node {name} is Ready"),
            )),
            // A new node waiting for its first heartbeat is not news.
            ConditionStatus::Unknown if was_ready.is_none() => {}
            _ => events.push(EventDraft::warning::<Node>(
                name,
                reasons::NOT_READY,
                format!("node {name} is not Ready: {describe}"),
            )),
        }
    }
    let drained = |conds: &[herd_api::Condition]| {
        find_condition(conds, conditions::DRAINED)
            .is_some_and(|c| c.status == ConditionStatus::True)
    };
    if drained(&status.conditions) && !drained(before) {
        events.push(EventDraft::normal::<Node>(
            name,
            reasons::DRAINED,
            format!("node {name} is cordoned and has no requests in flight"),
        ));
    }

    NodeDecision {
        status,
        events,
        requeue_after: ready.deadline.map(|d| since(d, now) + DEADLINE_SLACK),
    }
}

/// What the probe found about an unmanaged node, written where a nodelet
/// would write it. What it has not (yet) found stays as stored.
fn seen_by_probe(status: &mut NodeStatus, seen: &BackendSeen) {
    if let Some(models) = &seen.models {
        status.models.clone_from(models);
    }
    if let Some(endpoints) = &seen.endpoints {
        status.endpoints = Some(endpoints.clone());
    }
    if let Some(version) = &seen.version {
        status
            .info
            .get_or_insert_with(Default::default)
            .ollama_version
            .clone_from(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionStatus::{False, True, Unknown};
    use herd_api::{Condition, NodeSpec, NodeUsage, Resource, RoutingStatus};

    fn t(secs: f64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + (secs * 1000.0) as i64).expect("valid")
    }

    const GRACE: Duration = Duration::from_secs(15);

    /// A node as its nodelet leaves it: heartbeat at `hb`, nodelet and
    /// Ollama up, nothing the controller owns yet.
    fn fresh_node(hb: f64) -> Node {
        let mut n = Node::new(
            "gpu-1",
            NodeSpec {
                url: "http://10.0.0.1:11434".into(),
                ..NodeSpec::default()
            },
        );
        n.status.last_heartbeat_time = Some(t(hb));
        for ty in [conditions::NODELET_READY, conditions::OLLAMA_RUNNING] {
            set_condition(
                &mut n.status.conditions,
                Condition::new(ty, True, "Up", ""),
                t(0.0),
            );
        }
        n.status.usage = Some(NodeUsage::default());
        n
    }

    fn seen(hb: f64) -> NodeObservation {
        NodeObservation {
            heartbeat: Some(HeartbeatSeen {
                value: t(hb),
                first_seen: t(hb),
                changed: true,
            }),
            probe: None,
            backend: BackendSeen::default(),
        }
    }

    fn cond(status: &NodeStatus, ty: &str) -> Option<(ConditionStatus, String)> {
        find_condition(&status.conditions, ty).map(|c| (c.status, c.reason.clone()))
    }

    fn reasons_of(d: &NodeDecision) -> Vec<&'static str> {
        d.events.iter().map(|e| e.reason).collect()
    }

    /// Applies a decision as a successful write would.
    fn apply(node: &mut Node, d: &NodeDecision) {
        node.status = d.status.clone();
    }

    #[test]
    fn new_healthy_node_is_registered_and_ready() {
        let n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((True, "Healthy".into()))
        );
        assert_eq!(reasons_of(&d), [reasons::REGISTERED, reasons::READY]);
        assert_eq!(
            d.status.routing,
            Some(RoutingStatus {
                weight: 100,
                reason: "Ready".into()
            })
        );
        assert_eq!(
            d.requeue_after,
            Some(Duration::from_secs(14) + DEADLINE_SLACK)
        );
        assert_eq!(cond(&d.status, conditions::DRAINED), None);
    }

    #[test]
    fn new_node_without_heartbeat_is_registered_quietly() {
        let mut n = fresh_node(0.0);
        n.status.last_heartbeat_time = None;
        let d = reconcile_node(&n, &NodeObservation::default(), t(100.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((Unknown, "NoHeartbeat".into()))
        );
        assert_eq!(reasons_of(&d), [reasons::REGISTERED]);
        assert_eq!(d.requeue_after, None);
    }

    #[test]
    fn lifecycle_healthy_late_recovered() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);

        // Steady: nothing to write, no events.
        let d = reconcile_node(&n, &seen(99.0), t(105.0), GRACE);
        assert!(!d.changes(&n), "{:?}", d.status);
        assert!(d.events.is_empty());

        // Late: the heartbeat at 99 is stale after 114.
        for at in [110.0, 113.9] {
            let d = reconcile_node(&n, &seen(99.0), t(at), GRACE);
            assert!(!d.changes(&n), "still fresh at {at}");
        }
        let late = reconcile_node(&n, &seen(99.0), t(114.2), GRACE);
        assert!(late.changes(&n));
        assert_eq!(
            cond(&late.status, conditions::READY),
            Some((Unknown, "HeartbeatMissed".into()))
        );
        assert_eq!(reasons_of(&late), [reasons::NOT_READY]);
        assert_eq!(late.status.routing.as_ref().map(|r| r.weight), Some(0));
        assert_eq!(late.requeue_after, None);
        apply(&mut n, &late);
        let ltt = find_condition(&n.status.conditions, conditions::READY)
            .and_then(|c| c.last_transition_time);
        assert_eq!(ltt, Some(t(114.2)));

        // Still late a minute on: no churn.
        let d = reconcile_node(&n, &seen(99.0), t(175.0), GRACE);
        assert!(!d.changes(&n));

        // Recovered: a new heartbeat.
        n.status.last_heartbeat_time = Some(t(180.0));
        let d = reconcile_node(&n, &seen(180.0), t(180.1), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((True, "Healthy".into()))
        );
        assert_eq!(reasons_of(&d), [reasons::READY]);
        assert_eq!(d.status.routing.as_ref().map(|r| r.weight), Some(100));
    }

    #[test]
    fn restart_changes_nothing_that_is_right() {
        // A node the previous controller marked Ready, one it marked
        // Unknown: a new controller, with no memory, agrees with both.
        let mut up = fresh_node(99.0);
        let d = reconcile_node(&up, &seen(99.0), t(100.0), GRACE);
        apply(&mut up, &d);
        let d = reconcile_node(&up, &NodeObservation::default(), t(101.0), GRACE);
        assert!(!d.changes(&up) && d.events.is_empty());

        let mut dead = fresh_node(10.0);
        let d = reconcile_node(&dead, &seen(10.0), t(100.0), GRACE);
        apply(&mut dead, &d);
        assert!(!dead.is_ready());
        let d = reconcile_node(&dead, &NodeObservation::default(), t(200.0), GRACE);
        assert!(!d.changes(&dead) && d.events.is_empty());
    }

    #[test]
    fn probe_failure_takes_a_heartbeating_node_out() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);
        let mut obs = seen(99.0);
        obs.probe = Some(ProbeVerdict {
            reachable: false,
            at: t(101.0),
            message: "connection refused".into(),
        });
        let d = reconcile_node(&n, &obs, t(101.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::REACHABLE),
            Some((False, "ProbeFailed".into()))
        );
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((False, "Unreachable".into()))
        );
        assert_eq!(reasons_of(&d), [reasons::NOT_READY]);
        assert!(
            d.events[0].message.contains("connection refused"),
            "{:?}",
            d.events
        );
        apply(&mut n, &d);
        // Back.
        obs.probe = Some(ProbeVerdict {
            reachable: true,
            at: t(103.0),
            message: String::new(),
        });
        let d = reconcile_node(&n, &obs, t(103.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((True, "Healthy".into()))
        );
    }

    #[test]
    fn proxy_connect_failure_and_graceful_stop_act_at_once() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);

        let mut by_proxy = n.clone();
        set_condition(
            &mut by_proxy.status.conditions,
            Condition::new(conditions::REACHABLE, False, "ConnectFailed", "refused"),
            t(100.5),
        );
        let d = reconcile_node(&by_proxy, &seen(99.0), t(100.6), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((False, "Unreachable".into()))
        );
        assert_eq!(
            cond(&d.status, conditions::REACHABLE),
            Some((False, "ConnectFailed".into())),
            "the proxy's condition is kept as written"
        );

        let mut stopping = n.clone();
        set_condition(
            &mut stopping.status.conditions,
            Condition::new(
                conditions::NODELET_READY,
                False,
                "NodeletStopped",
                "SIGTERM",
            ),
            t(100.5),
        );
        let d = reconcile_node(&stopping, &seen(99.0), t(100.6), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((False, "NodeletStopped".into()))
        );
        assert_eq!(d.status.routing.as_ref().map(|r| r.weight), Some(0));
    }

    #[test]
    fn cordon_and_drain() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);

        n.spec.unschedulable = true;
        n.status.usage = Some(NodeUsage {
            in_flight: 2,
            ..NodeUsage::default()
        });
        let d = reconcile_node(&n, &seen(99.0), t(101.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::DRAINED),
            Some((False, "RequestsInFlight".into()))
        );
        assert_eq!(
            d.status
                .routing
                .as_ref()
                .map(|r| (r.weight, r.reason.as_str())),
            Some((0, "Cordoned"))
        );
        assert!(d.events.is_empty());
        apply(&mut n, &d);

        n.status.usage = Some(NodeUsage::default());
        let d = reconcile_node(&n, &seen(99.0), t(102.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::DRAINED),
            Some((True, "NoRequestsInFlight".into()))
        );
        assert_eq!(reasons_of(&d), [reasons::DRAINED]);
        apply(&mut n, &d);
        let d = reconcile_node(&n, &seen(99.0), t(103.0), GRACE);
        assert!(!d.changes(&n) && d.events.is_empty());

        n.spec.unschedulable = false;
        let d = reconcile_node(&n, &seen(99.0), t(104.0), GRACE);
        assert_eq!(cond(&d.status, conditions::DRAINED), None);
        assert_eq!(d.status.routing.as_ref().map(|r| r.weight), Some(100));
    }

    #[test]
    fn load_changes_weight_only_meaningfully() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);
        for (cpu, weight) in [(10.0, 100), (19.0, 100), (20.0, 90), (30.0, 90), (60.0, 70)] {
            n.status.usage = Some(NodeUsage {
                cpu_percent: cpu,
                ..NodeUsage::default()
            });
            let d = reconcile_node(&n, &seen(99.0), t(101.0), GRACE);
            apply(&mut n, &d);
            assert_eq!(
                n.status.routing.as_ref().map(|r| r.weight),
                Some(weight),
                "cpu {cpu}"
            );
        }
    }

    #[test]
    fn flapping_reachability_makes_one_event_per_transition() {
        let mut n = fresh_node(99.0);
        let d = reconcile_node(&n, &seen(99.0), t(100.0), GRACE);
        apply(&mut n, &d);
        let mut events = Vec::new();
        for (i, up) in [false, false, true, true, false].into_iter().enumerate() {
            let at = t(101.0 + i as f64);
            let mut obs = seen(99.0);
            obs.probe = Some(ProbeVerdict {
                reachable: up,
                at,
                message: "refused".into(),
            });
            let d = reconcile_node(&n, &obs, at, GRACE);
            events.extend(reasons_of(&d));
            apply(&mut n, &d);
        }
        assert_eq!(
            events,
            [reasons::NOT_READY, reasons::READY, reasons::NOT_READY]
        );
    }

    #[test]
    fn an_unmanaged_node_is_ready_from_its_probe_and_takes_its_models_from_it() {
        let mut n = Node::new(
            "vllm",
            NodeSpec {
                url: "http://10.0.0.7:8000".into(),
                api: herd_api::NodeApi::OpenAi,
                managed: false,
                ..NodeSpec::default()
            },
        );
        // No heartbeat ever; not probed yet.
        let d = reconcile_node(&n, &NodeObservation::default(), t(0.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((Unknown, "NotProbed".into()))
        );
        assert_eq!(d.requeue_after, None, "no heartbeat deadline to wait for");
        apply(&mut n, &d);

        let models = vec![herd_api::NodeModel {
            name: "smollm2".into(),
            loaded: true,
            ..Default::default()
        }];
        let probed = NodeObservation {
            probe: Some(ProbeVerdict {
                reachable: true,
                at: t(1.0),
                message: String::new(),
            }),
            backend: BackendSeen {
                models: Some(models.clone()),
                endpoints: Some(vec!["/v1/messages".into()]),
                ..BackendSeen::default()
            },
            ..NodeObservation::default()
        };
        let d = reconcile_node(&n, &probed, t(1.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((True, "Healthy".into()))
        );
        assert_eq!(d.status.models, models);
        assert_eq!(d.status.endpoints, Some(vec!["/v1/messages".to_owned()]));
        assert!(reasons_of(&d).contains(&reasons::READY));
        apply(&mut n, &d);

        // Long after: still Ready, with no heartbeat.
        let d = reconcile_node(&n, &probed, t(3600.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((True, "Healthy".into()))
        );

        let down = NodeObservation {
            probe: Some(ProbeVerdict {
                reachable: false,
                at: t(3601.0),
                message: "refused: nothing accepts connections at the node URL".into(),
            }),
            ..probed.clone()
        };
        let d = reconcile_node(&n, &down, t(3601.0), GRACE);
        assert_eq!(
            cond(&d.status, conditions::READY),
            Some((False, "Unreachable".into()))
        );
    }

    #[test]
    fn a_node_the_router_cannot_use_is_never_ready_and_says_why() {
        for managed in [true, false] {
            let mut n = fresh_node(0.0);
            n.spec.managed = managed;
            let mut observed = seen(0.0);
            observed.probe = Some(ProbeVerdict {
                reachable: true,
                at: t(0.5),
                message: String::new(),
            });
            observed.backend.problem = Some("spec.auth.secretRef: Secret k does not exist".into());
            let d = reconcile_node(&n, &observed, t(1.0), GRACE);
            let ready = find_condition(&d.status.conditions, conditions::READY).expect("Ready");
            assert_eq!(
                (ready.status, ready.reason.as_str()),
                (False, "BackendUnusable")
            );
            assert!(ready.message.contains("Secret k"), "{}", ready.message);
        }
    }
}
