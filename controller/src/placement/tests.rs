use super::*;
use ConditionStatus::{False, True, Unknown};
use herd_api::{
    ModelAssignmentSpec, ModelPull, NodeCapacity, NodeModel, NodeSelector, NodeSpec, NodeUsage,
    Resource, find_condition,
};

const MODEL: &str = "llama3.2:1b";
const REPLACE: Duration = Duration::from_secs(60);
const GIB: u64 = 1 << 30;

fn t(secs: f64) -> Timestamp {
    Timestamp::from_millisecond(1_800_000_000_000 + (secs * 1000.0) as i64).expect("valid")
}

/// A node, Ready since t=0 unless `down_since` says when it stopped.
struct N {
    node: Node,
}

impl N {
    fn new(name: &str) -> Self {
        let mut node = Node::new(name, NodeSpec::default());
        node.metadata.creation_timestamp = Some(t(0.0));
        node.metadata.labels.insert("gpu".into(), "nvidia".into());
        let mut ready = Condition::new(conditions::READY, True, "Healthy", "");
        ready.last_transition_time = Some(t(0.0));
        node.status.conditions.push(ready);
        node.status.capacity = Some(NodeCapacity {
            cpus: 8,
            memory_bytes: 16 * GIB,
            gpus: vec![],
        });
        node.status.usage = Some(NodeUsage {
            memory_percent: 50.0,
            ..NodeUsage::default()
        });
        Self { node }
    }
    fn down_since(mut self, at: f64, status: ConditionStatus) -> Self {
        let c = &mut self.node.status.conditions[0];
        c.status = status;
        c.reason = "HeartbeatMissed".into();
        c.last_transition_time = Some(t(at));
        self
    }
    fn mem_used(mut self, percent: f64) -> Self {
        if let Some(u) = self.node.status.usage.as_mut() {
            u.memory_percent = percent;
        }
        self
    }
    fn has(mut self, model: &str) -> Self {
        self.node.status.models.push(NodeModel {
            name: model.into(),
            ..NodeModel::default()
        });
        self
    }
    fn pull(mut self, phase: PullPhase, message: &str) -> Self {
        self.node.status.pulls.push(ModelPull {
            model: MODEL.into(),
            phase,
            message: message.into(),
            ..ModelPull::default()
        });
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.node.metadata.labels.insert(k.into(), v.into());
        self
    }
    fn unlabel(mut self, k: &str) -> Self {
        self.node.metadata.labels.remove(k);
        self
    }
    fn cordoned(mut self) -> Self {
        self.node.spec.unschedulable = true;
        self
    }
    fn unmanaged(mut self) -> Self {
        self.node.spec.managed = false;
        self
    }
    fn done(self) -> Node {
        self.node
    }
}

fn ma(replicas: Option<u32>, selector: &[(&str, &str)]) -> ModelAssignment {
    let mut m = ModelAssignment::new(
        "llama",
        ModelAssignmentSpec {
            model: MODEL.into(),
            replicas,
            node_selector: (!selector.is_empty()).then(|| NodeSelector {
                match_labels: selector
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }),
        },
    );
    m.metadata.generation = Some(1);
    m
}

fn placed_on(m: &ModelAssignment, names: &[&str]) -> ModelAssignment {
    let mut m = m.clone();
    m.status.nodes = names
        .iter()
        .map(|n| PlacementStatus {
            node: (*n).into(),
            ..PlacementStatus::default()
        })
        .collect();
    m
}

fn decide(m: &ModelAssignment, nodes: &[Node], now: f64) -> PlacementDecision {
    reconcile_placement(m, nodes, t(now), REPLACE)
}

fn names(d: &PlacementDecision) -> Vec<&str> {
    d.status.nodes.iter().map(|p| p.node.as_str()).collect()
}

fn events(d: &PlacementDecision) -> Vec<String> {
    d.events
        .iter()
        .map(|e| {
            let node = e.message.split("node ").nth(1).unwrap_or("?");
            let node = node.split(':').next().unwrap_or(node);
            format!("{} {}", e.reason, node)
        })
        .collect()
}

fn available(d: &PlacementDecision) -> (ConditionStatus, String) {
    let c = find_condition(&d.status.conditions, conditions::AVAILABLE).expect("Available");
    (c.status, c.reason.clone())
}

/// Applies a decision as a successful write would.
fn applied(m: &ModelAssignment, d: &PlacementDecision) -> ModelAssignment {
    let mut m = m.clone();
    m.status = d.status.clone();
    m
}

#[test]
fn picks_model_holders_then_free_memory() {
    let nodes = [
        N::new("a").mem_used(10.0).done(),
        N::new("b").mem_used(90.0).has(MODEL).done(),
        N::new("c").mem_used(20.0).done(),
        N::new("d").mem_used(5.0).has("qwen2.5:0.5b").done(),
    ];
    let d = decide(&ma(Some(2), &[]), &nodes, 100.0);
    // b holds the model; then d has the most free memory.
    assert_eq!(names(&d), ["b", "d"]);
    assert_eq!(events(&d), ["Scheduled b", "Scheduled d"]);
    assert_eq!(d.status.ready_replicas, 1);
    assert_eq!(available(&d), (False, available::REPLICAS_NOT_READY.into()));
    assert_eq!(d.status.observed_generation, Some(1));
    assert_eq!(d.requeue_after, None);
}

#[test]
fn ties_break_by_name() {
    let nodes = [N::new("c").done(), N::new("a").done(), N::new("b").done()];
    let d = decide(&ma(Some(2), &[]), &nodes, 100.0);
    assert_eq!(names(&d), ["a", "b"]);
}

#[test]
fn too_few_nodes() {
    let nodes = [
        N::new("a").done(),
        N::new("b").down_since(50.0, Unknown).done(),
        N::new("c").cordoned().done(),
        N::new("d").unlabel("gpu").done(),
    ];
    let d = decide(&ma(Some(3), &[("gpu", "nvidia")]), &nodes, 100.0);
    assert_eq!(names(&d), ["a"]);
    assert_eq!(available(&d), (False, available::TOO_FEW_NODES.into()));
    let c = find_condition(&d.status.conditions, conditions::AVAILABLE).expect("cond");
    assert!(
        c.message.contains("only 1 could be placed"),
        "{}",
        c.message
    );
}

#[test]
fn stable_when_nothing_changes() {
    let nodes = [
        N::new("a").has(MODEL).done(),
        N::new("b").has(MODEL).done(),
        N::new("c").done(),
    ];
    let m = ma(Some(2), &[]);
    let first = decide(&m, &nodes, 100.0);
    let m = applied(&m, &first);
    let again = decide(&m, &nodes, 200.0);
    assert!(!again.changes(&m), "{:?}", again.status);
    assert!(again.events.is_empty());
    // Free memory moves: a better candidate appears, but the placement
    // stays where it is.
    let nodes = [
        N::new("a").has(MODEL).mem_used(99.0).done(),
        N::new("b").has(MODEL).mem_used(99.0).done(),
        N::new("c").mem_used(0.0).done(),
    ];
    let moved = decide(&m, &nodes, 300.0);
    assert!(!moved.changes(&m));
    assert_eq!(available(&moved), (True, available::REPLICAS_READY.into()));
}

#[test]
fn node_loss_is_replaced_after_the_delay_not_before() {
    let m = placed_on(&ma(Some(2), &[]), &["a", "b"]);
    let nodes = |b_down_at: f64| {
        [
            N::new("a").has(MODEL).done(),
            N::new("b").has(MODEL).down_since(b_down_at, Unknown).done(),
            N::new("c").done(),
        ]
    };
    // Down for 30 s of 60: kept, and counted, but not ready; look again in 30 s.
    let d = decide(&m, &nodes(70.0), 100.0);
    assert_eq!(names(&d), ["a", "b"]);
    assert!(d.events.is_empty());
    assert_eq!(d.status.ready_replicas, 1);
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(30) + Duration::from_millis(5))
    );
    let b = &d.status.nodes[1];
    assert_eq!(
        (b.phase, b.message.as_str()),
        (PlacementPhase::Ready, "the node is not Ready")
    );
    // Just before the delay: still kept.
    let d = decide(&m, &nodes(70.0), 129.9);
    assert_eq!(names(&d), ["a", "b"]);
    // At the delay: replaced by c.
    let d = decide(&m, &nodes(70.0), 130.0);
    assert_eq!(names(&d), ["a", "c"]);
    assert_eq!(events(&d), ["Scheduled c", "Unscheduled b"]);
    assert!(
        d.events[1].message.contains("not been Ready for 1m"),
        "{:?}",
        d.events[1]
    );
    assert_eq!(d.requeue_after, None);
}

#[test]
fn deleted_node_is_replaced_at_once() {
    let m = placed_on(&ma(Some(2), &[]), &["a", "gone"]);
    let nodes = [N::new("a").done(), N::new("c").done()];
    let d = decide(&m, &nodes, 100.0);
    assert_eq!(names(&d), ["a", "c"]);
    assert_eq!(events(&d), ["Scheduled c", "Unscheduled gone"]);
}

#[test]
fn cordoned_node_is_replaced_at_once() {
    let m = placed_on(&ma(Some(1), &[]), &["a"]);
    let nodes = [N::new("a").has(MODEL).cordoned().done(), N::new("b").done()];
    let d = decide(&m, &nodes, 100.0);
    assert_eq!(names(&d), ["b"]);
    assert_eq!(events(&d), ["Scheduled b", "Unscheduled a"]);
}

#[test]
fn selector_change_moves_the_model() {
    let nodes = [
        N::new("a").label("zone", "x").done(),
        N::new("b").label("zone", "y").done(),
        N::new("c").label("zone", "y").done(),
    ];
    let m = ma(Some(1), &[("zone", "x")]);
    let d = decide(&m, &nodes, 100.0);
    assert_eq!(names(&d), ["a"]);
    let mut m = applied(&m, &d);
    m.spec.node_selector = Some(NodeSelector {
        match_labels: [("zone".to_owned(), "y".to_owned())].into(),
    });
    m.metadata.generation = Some(2);
    let d = decide(&m, &nodes, 101.0);
    assert_eq!(names(&d), ["b"]);
    assert_eq!(events(&d), ["Scheduled b", "Unscheduled a"]);
    assert_eq!(d.status.observed_generation, Some(2));
}

#[test]
fn scale_up_and_down() {
    let nodes = [
        N::new("a").done(),
        N::new("b").has(MODEL).done(),
        N::new("c").mem_used(10.0).done(),
        N::new("d").down_since(90.0, False).has(MODEL).done(),
    ];
    let m = placed_on(&ma(Some(1), &[]), &["a"]);
    // Up to 3: a stays, b (holds it) and c (most memory) join; d is not Ready.
    let mut up = m.clone();
    up.spec.replicas = Some(3);
    let d = decide(&up, &nodes, 100.0);
    assert_eq!(names(&d), ["a", "b", "c"]);
    assert_eq!(events(&d), ["Scheduled b", "Scheduled c"]);
    let placed = applied(&up, &d);

    // Down to 1 with d also placed (down 10 s): the least good go first:
    // d (not Ready), then a and c (no model); b stays.
    let mut down = placed_on(&placed, &["a", "b", "c", "d"]);
    down.spec.replicas = Some(1);
    let d = decide(&down, &nodes, 100.0);
    assert_eq!(names(&d), ["b"]);
    let mut ev = events(&d);
    ev.sort();
    assert_eq!(ev, ["Unscheduled a", "Unscheduled c", "Unscheduled d"]);
    assert!(
        d.events
            .iter()
            .all(|e| e.message.contains("scaled down to 1"))
    );

    // To zero.
    down.spec.replicas = Some(0);
    let d = decide(&down, &nodes, 100.0);
    assert!(names(&d).is_empty());
    assert_eq!(available(&d), (True, available::REPLICAS_READY.into()));
}

#[test]
fn phases_from_models_and_pulls() {
    let nodes = [
        N::new("a").has("llama3.2:1b").done(),
        N::new("b").pull(PullPhase::Pulling, "").done(),
        N::new("c").pull(PullPhase::Failed, "disk full").done(),
        N::new("d").pull(PullPhase::Pending, "").done(),
        N::new("e").done(),
        N::new("f").pull(PullPhase::Succeeded, "").done(),
        N::new("g")
            .has("llama3.2:1b")
            .down_since(99.0, Unknown)
            .done(),
    ];
    let m = placed_on(&ma(None, &[]), &["a", "b", "c", "d", "e", "f", "g"]);
    let d = decide(&m, &nodes, 100.0);
    let got: Vec<(&str, PlacementPhase, &str)> = d
        .status
        .nodes
        .iter()
        .map(|p| (p.node.as_str(), p.phase, p.message.as_str()))
        .collect();
    use PlacementPhase::{Failed, Pending, Pulling, Ready};
    assert_eq!(
        got,
        [
            ("a", Ready, ""),
            ("b", Pulling, "pulling"),
            ("c", Failed, "disk full"),
            ("d", Pending, "pull queued"),
            ("e", Pending, "waiting for the nodelet to pull the model"),
            (
                "f",
                Pulling,
                "pulled; waiting for the node to list the model"
            ),
            ("g", Ready, "the node is not Ready"),
        ]
    );
    // g holds the model but is down: not a ready replica.
    assert_eq!(d.status.ready_replicas, 1);
    assert_eq!(available(&d), (False, available::REPLICAS_NOT_READY.into()));
}

#[test]
fn model_names_compare_as_ollama_does() {
    let mut m = ma(Some(1), &[]);
    m.spec.model = "llama3".into();
    let nodes = [N::new("a").has("llama3:latest").done(), N::new("b").done()];
    let d = decide(&m, &nodes, 100.0);
    assert_eq!(names(&d), ["a"]);
    assert_eq!(d.status.ready_replicas, 1);
}

#[test]
fn every_matching_node_without_replicas() {
    let nodes = [
        N::new("a").has(MODEL).done(),
        N::new("b").down_since(0.0, Unknown).done(),
        N::new("c").cordoned().done(),
        N::new("d").unlabel("gpu").done(),
    ];
    let m = ma(None, &[("gpu", "nvidia")]);
    let d = decide(&m, &nodes, 1000.0);
    // b is down (for long): it keeps its place and pulls when back.
    assert_eq!(names(&d), ["a", "b"]);
    assert_eq!(d.requeue_after, None);
    assert_eq!(available(&d), (True, available::REPLICAS_READY.into()));
    let m = applied(&m, &d);

    // A new matching node gets the model; one that loses the label does not keep it.
    let nodes = [
        N::new("a").unlabel("gpu").done(),
        N::new("b").down_since(0.0, Unknown).done(),
        N::new("e").done(),
    ];
    let d = decide(&m, &nodes, 1001.0);
    assert_eq!(names(&d), ["b", "e"]);
    assert_eq!(events(&d), ["Scheduled e", "Unscheduled a"]);
    assert_eq!(available(&d), (False, available::REPLICAS_NOT_READY.into()));

    let none = decide(&ma(None, &[("gpu", "amd")]), &nodes, 1002.0);
    assert_eq!(
        available(&none),
        (False, available::NO_MATCHING_NODES.into())
    );
}

#[test]
fn free_memory_formula() {
    let n = N::new("a").mem_used(25.0).done();
    assert_eq!(free_memory(&n), 12 * GIB);
    let mut bare = Node::new("b", NodeSpec::default());
    assert_eq!(free_memory(&bare), 0);
    bare.status.capacity = Some(NodeCapacity {
        memory_bytes: GIB,
        ..NodeCapacity::default()
    });
    assert_eq!(free_memory(&bare), GIB, "no usage reported: all free");
}

#[test]
fn replacement_counts_from_the_first_sign_of_trouble() {
    // The probe caught it at 30 (Ready=False, Unreachable); the heartbeat
    // grace at 45 turned Ready to Unknown. Down since 30, so replaced at 90.
    let mut dying = N::new("b").has(MODEL).down_since(45.0, Unknown).done();
    let mut unreachable = Condition::new(conditions::REACHABLE, False, "ProbeFailed", "refused");
    unreachable.last_transition_time = Some(t(30.0));
    dying.status.conditions.push(unreachable);
    let nodes = [N::new("a").done(), dying, N::new("c").done()];
    let m = placed_on(&ma(Some(2), &[]), &["a", "b"]);
    let d = decide(&m, &nodes, 89.0);
    assert_eq!(names(&d), ["a", "b"]);
    assert_eq!(d.requeue_after, Some(Duration::from_millis(1005)));
    let d = decide(&m, &nodes, 90.0);
    assert_eq!(names(&d), ["a", "c"]);
}

#[test]
fn unmanaged_nodes_are_never_placed_on_and_the_condition_says_why() {
    // The unmanaged node holds the model and has the most free memory: it
    // would be first in line if anyone could pull there.
    let nodes = [
        N::new("a").mem_used(90.0).done(),
        N::new("vllm").mem_used(1.0).has(MODEL).unmanaged().done(),
    ];
    for replicas in [Some(2), None] {
        let d = decide(&ma(replicas, &[]), &nodes, 100.0);
        assert_eq!(names(&d), ["a"], "{replicas:?}");
        let c = find_condition(&d.status.conditions, conditions::AVAILABLE).expect("Available");
        assert_eq!(c.status, False, "{replicas:?}");
        assert!(
            c.message.contains("1 matching node is unmanaged"),
            "{}",
            c.message
        );
    }
    // A node placed before it became unmanaged loses its place at once.
    let m = placed_on(&ma(Some(1), &[]), &["vllm"]);
    let d = decide(&m, &nodes, 100.0);
    assert_eq!(names(&d), ["a"]);
    assert!(
        d.events
            .iter()
            .any(|e| e.message.contains("vllm: the node is unmanaged")),
        "{:?}",
        d.events
    );
}
