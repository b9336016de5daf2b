//! Restarting the controller changes nothing that is already right.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_api::{
    ConditionStatus, Event, ModelAssignment, ModelAssignmentSpec, Node, Resource, conditions,
};
use herd_client::{ListParams, PostParams};
use serde_json::json;

use crate::*;

const WAIT: Duration = Duration::from_secs(10);

/// Every stored object's resourceVersion, by kind/name, and the event count.
async fn snapshot(server: &TestServer) -> (BTreeMap<String, String>, usize) {
    let lp = ListParams::default();
    let mut rvs = BTreeMap::new();
    for n in server
        .client
        .api::<Node>()
        .list(&lp)
        .await
        .expect("nodes")
        .items
    {
        rvs.insert(
            format!("node/{}", n.metadata.name),
            n.metadata.resource_version.unwrap_or_default(),
        );
    }
    for m in server
        .client
        .api::<ModelAssignment>()
        .list(&lp)
        .await
        .expect("mas")
        .items
    {
        rvs.insert(
            format!("ma/{}", m.metadata.name),
            m.metadata.resource_version.unwrap_or_default(),
        );
    }
    let events = server
        .client
        .api::<Event>()
        .list(&lp)
        .await
        .expect("events")
        .items
        .len();
    (rvs, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_changes_nothing_that_was_right() {
    let server = TestServer::start().await;
    // A long grace, so the nodes can stop heartbeating (and their
    // resourceVersions stand still) without going stale during the test.
    let config = herd_controller::Config {
        heartbeat_grace: Duration::from_secs(30),
        ..fast_config()
    };
    let first = ControllerHandle::start(&server.client, config.clone());
    let api = server.nodes();
    let mut healthy = SimNode::start(&server, "healthy", &[]).await;
    let mut unreachable = SimNode::start(&server, "unreachable", &[]).await;
    let mut cordoned = SimNode::start(&server, "cordoned", &[]).await;
    let mut stopped = SimNode::start(&server, "stopped", &[]).await;
    healthy.add_model("llama3.2:1b");
    for s in [&healthy, &unreachable, &cordoned, &stopped] {
        wait_condition(
            &api,
            &s.name,
            conditions::READY,
            ConditionStatus::True,
            None,
            WAIT,
        )
        .await;
    }
    unreachable.ollama.stop();
    stopped.graceful_stop().await;
    api.patch(
        "cordoned",
        &PostParams::default(),
        &json!({"spec": {"unschedulable": true}}),
    )
    .await
    .expect("cordon");
    let mas = server.client.api::<ModelAssignment>();
    mas.create(
        &PostParams::default(),
        &ModelAssignment::new(
            "llama",
            ModelAssignmentSpec {
                model: "llama3.2:1b".into(),
                replicas: Some(1),
                node_selector: None,
            },
        ),
    )
    .await
    .expect("create");

    wait_condition(
        &api,
        "unreachable",
        conditions::READY,
        ConditionStatus::False,
        Some("Unreachable"),
        WAIT,
    )
    .await;
    wait_condition(
        &api,
        "stopped",
        conditions::READY,
        ConditionStatus::False,
        Some("NodeletStopped"),
        WAIT,
    )
    .await;
    wait_condition(
        &api,
        "cordoned",
        conditions::DRAINED,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    wait_for(WAIT, "placement ready", || async {
        let m = mas.get("llama").await.map_err(|e| e.to_string())?;
        if m.status.ready_replicas == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", m.status))
        }
    })
    .await;

    // Freeze the world: no more heartbeats.
    for s in [&mut healthy, &mut unreachable, &mut cordoned, &mut stopped] {
        s.stop_heartbeats();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = snapshot(&server).await;
    // The first controller has nothing left to do either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(snapshot(&server).await, before, "settled");
    first.stop().await;

    // A new controller, with no memory, over the same store: it probes,
    // resyncs, reconciles everything, and writes nothing.
    let second = ControllerHandle::start(&server.client, config.clone());
    tokio::time::sleep(config.resync + Duration::from_millis(700)).await;
    let after = snapshot(&server).await;
    assert_eq!(after, before, "the restart changed something");

    // And it is alive: it reacts to a change.
    api.patch(
        "healthy",
        &PostParams::default(),
        &json!({"spec": {"unschedulable": true}}),
    )
    .await
    .expect("cordon");
    wait_condition(
        &api,
        "healthy",
        conditions::DRAINED,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    second.stop().await;
}
