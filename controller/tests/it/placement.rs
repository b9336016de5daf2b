//! Model placement against a real server.

use std::time::Duration;

use herd_api::{
    ConditionStatus, Event, ModelAssignment, ModelAssignmentSpec, Node, NodeSelector,
    PlacementPhase, Resource, conditions, find_condition,
};
use herd_client::{Api, ListParams, PostParams};

use crate::*;

const WAIT: Duration = Duration::from_secs(10);
const MODEL: &str = "llama3.2:1b";

fn placed(ma: &ModelAssignment) -> Vec<String> {
    ma.status.nodes.iter().map(|p| p.node.clone()).collect()
}

async fn wait_assignment(
    api: &Api<ModelAssignment>,
    name: &str,
    what: &str,
    check: impl Fn(&ModelAssignment) -> bool,
) -> ModelAssignment {
    wait_for(WAIT, what, || async {
        let ma = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&ma) {
            Ok(ma)
        } else {
            Err(format!("{:?}", ma.status))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_two_over_three_nodes_place_replace_and_count_ready() {
    let server = TestServer::start().await;
    let config = fast_config();
    let controller = ControllerHandle::start(&server.client, config.clone());
    let nodes = server.nodes();
    let mut sims = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        sims.push(SimNode::start(&server, name, &[("gpu", "nvidia")]).await);
    }
    for s in &sims {
        wait_condition(
            &nodes,
            &s.name,
            conditions::READY,
            ConditionStatus::True,
            None,
            WAIT,
        )
        .await;
    }

    let mas = server.client.api::<ModelAssignment>();
    let ma = ModelAssignment::new(
        "llama",
        ModelAssignmentSpec {
            model: MODEL.into(),
            replicas: Some(2),
            node_selector: Some(NodeSelector {
                match_labels: [("gpu".to_owned(), "nvidia".to_owned())].into(),
            }),
        },
    );
    mas.create(&PostParams::default(), &ma)
        .await
        .expect("create");
    let first = wait_assignment(&mas, "llama", "2 nodes placed", |m| {
        m.status.nodes.len() == 2 && m.status.observed_generation == Some(1)
    })
    .await;
    assert!(
        first
            .status
            .nodes
            .iter()
            .all(|p| p.phase == PlacementPhase::Pending)
    );
    assert_eq!(first.status.ready_replicas, 0);
    let chosen = placed(&first);

    // The nodelets pull: the models show up in their heartbeats.
    for s in sims.iter().filter(|s| chosen.contains(&s.name)) {
        s.add_model(MODEL);
    }
    let ready = wait_assignment(&mas, "llama", "readyReplicas 2", |m| {
        m.status.ready_replicas == 2
    })
    .await;
    assert!(
        ready
            .status
            .nodes
            .iter()
            .all(|p| p.phase == PlacementPhase::Ready)
    );
    let available =
        find_condition(&ready.status.conditions, conditions::AVAILABLE).expect("Available");
    assert_eq!(available.status, ConditionStatus::True);
    assert_eq!(
        placed(&ready),
        chosen,
        "models appearing do not move the placement"
    );

    // One placed machine dies.
    let victim = chosen[0].clone();
    let spare = sims
        .iter()
        .map(|s| s.name.clone())
        .find(|n| !chosen.contains(n))
        .expect("a third node");
    sims.iter_mut()
        .find(|s| s.name == victim)
        .expect("victim")
        .kill();
    let down = wait_for(WAIT, "victim not Ready", || async {
        let n = nodes.get(&victim).await.map_err(|e| e.to_string())?;
        if n.is_ready() {
            Err("still Ready".into())
        } else {
            Ok(n)
        }
    })
    .await;
    // Counted as not ready at once, but not replaced before the delay.
    let soon = wait_assignment(&mas, "llama", "readyReplicas 1", |m| {
        m.status.ready_replicas == 1
    })
    .await;
    assert!(
        placed(&soon).contains(&victim),
        "replaced too early: {:?}",
        soon.status
    );

    let moved = wait_assignment(&mas, "llama", "victim replaced by the spare", |m| {
        let p = placed(m);
        !p.contains(&victim) && p.contains(&spare)
    })
    .await;
    assert_eq!(moved.status.nodes.len(), 2);
    assert_eq!(
        moved.status.ready_replicas, 1,
        "the spare has not pulled yet"
    );

    let unscheduled = wait_for(WAIT, "Unscheduled event", || async {
        assignment_events(&server, "llama")
            .await
            .into_iter()
            .find(|e| e.spec.reason == "Unscheduled")
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert!(
        unscheduled.spec.message.contains(&victim),
        "{}",
        unscheduled.spec.message
    );
    let waited = ms(
        unscheduled.spec.event_time.expect("event time"),
        transition_time(&down, conditions::READY),
    );
    eprintln!(
        "victim not Ready → replaced: {waited} ms (replace after {:?})",
        config.replace_after
    );
    assert!(
        waited >= config.replace_after.as_millis() as i64,
        "replaced after {waited} ms, before the delay"
    );

    sims.iter()
        .find(|s| s.name == spare)
        .expect("spare")
        .add_model(MODEL);
    wait_assignment(&mas, "llama", "readyReplicas back to 2", |m| {
        m.status.ready_replicas == 2
    })
    .await;
    let mut reasons: Vec<String> = assignment_events(&server, "llama")
        .await
        .into_iter()
        .map(|e| e.spec.reason)
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["Scheduled", "Scheduled", "Scheduled", "Unscheduled"]
    );
    controller.stop().await;
}

async fn assignment_events(server: &TestServer, name: &str) -> Vec<Event> {
    let mut list: Vec<Event> = server
        .client
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.spec.involved_object.kind == "ModelAssignment" && e.spec.involved_object.name == name
        })
        .collect();
    list.sort_by_key(|e| e.metadata.revision());
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_every_matching_schedulable_node_gets_the_model() {
    let server = TestServer::start().await;
    let controller = ControllerHandle::start(&server.client, fast_config());
    let nodes = server.nodes();
    let _a = SimNode::start(&server, "node-a", &[("gpu", "nvidia")]).await;
    let _b = SimNode::start(&server, "node-b", &[("gpu", "nvidia")]).await;
    let _c = SimNode::start(&server, "node-c", &[("gpu", "amd")]).await;

    let mas = server.client.api::<ModelAssignment>();
    mas.create(
        &PostParams::default(),
        &ModelAssignment::new(
            "everywhere",
            ModelAssignmentSpec {
                model: MODEL.into(),
                replicas: None,
                node_selector: Some(NodeSelector {
                    match_labels: [("gpu".to_owned(), "nvidia".to_owned())].into(),
                }),
            },
        ),
    )
    .await
    .expect("create");
    let want = |names: &'static [&'static str]| {
        move |m: &ModelAssignment| {
            placed(m) == names.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        }
    };
    wait_assignment(&mas, "everywhere", "a and b", want(&["node-a", "node-b"])).await;

    // A new matching machine joins: it gets the model.
    let _d = SimNode::start(&server, "node-d", &[("gpu", "nvidia")]).await;
    wait_assignment(
        &mas,
        "everywhere",
        "a, b and d",
        want(&["node-a", "node-b", "node-d"]),
    )
    .await;

    // a is relabelled, b is cordoned: both lose it.
    let relabel = |name: &'static str, unschedulable: bool, gpu: &'static str| {
        let nodes = nodes.clone();
        async move {
            let mut n: Node = nodes.get(name).await.expect("get");
            n.metadata.labels.insert("gpu".into(), gpu.into());
            n.spec.unschedulable = unschedulable;
            n.metadata.resource_version = None;
            nodes
                .replace(&PostParams::default(), &n)
                .await
                .expect("replace");
        }
    };
    relabel("node-a", false, "amd").await;
    relabel("node-b", true, "nvidia").await;
    wait_assignment(&mas, "everywhere", "only d", want(&["node-d"])).await;
    controller.stop().await;
}
