//! Cordon, drain and routing weights.

use std::time::Duration;

use herd_api::{ConditionStatus, NodeUsage, conditions};
use herd_client::PostParams;
use serde_json::json;

use crate::*;

const WAIT: Duration = Duration::from_secs(10);

async fn set_in_flight(server: &TestServer, name: &str, in_flight: u32) {
    // The proxy's write: only usage.inFlight.
    server
        .nodes()
        .update_status_with_retry(name, |s| {
            let mut u = s.usage.clone().unwrap_or_else(NodeUsage::default);
            u.in_flight = in_flight;
            s.usage = Some(u);
        })
        .await
        .expect("in-flight update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_drains_when_in_flight_reaches_zero() {
    let server = TestServer::start().await;
    let controller = ControllerHandle::start(&server.client, fast_config());
    let api = server.nodes();
    let a = SimNode::start(&server, "node-a", &[]).await;
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    assert_eq!(
        n.status
            .routing
            .as_ref()
            .map(|r| (r.weight, r.reason.as_str())),
        Some((100, "Ready"))
    );

    // Load moves the weight: 100 × (1 − 50/200) = 75.
    a.set_cpu(50.0);
    wait_for(WAIT, "weight 75", || async {
        let n = api.get("node-a").await.map_err(|e| e.to_string())?;
        match n.status.routing {
            Some(r) if r.weight == 75 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    set_in_flight(&server, "node-a", 2).await;
    api.patch(
        "node-a",
        &PostParams::default(),
        &json!({"spec": {"unschedulable": true}}),
    )
    .await
    .expect("cordon");
    let n = wait_condition(
        &api,
        "node-a",
        conditions::DRAINED,
        ConditionStatus::False,
        Some("RequestsInFlight"),
        WAIT,
    )
    .await;
    assert_eq!(
        n.status
            .routing
            .as_ref()
            .map(|r| (r.weight, r.reason.as_str())),
        Some((0, "Cordoned"))
    );
    assert!(n.is_ready(), "cordoned is not unhealthy");

    set_in_flight(&server, "node-a", 1).await;
    set_in_flight(&server, "node-a", 0).await;
    wait_condition(
        &api,
        "node-a",
        conditions::DRAINED,
        ConditionStatus::True,
        Some("NoRequestsInFlight"),
        WAIT,
    )
    .await;

    api.patch(
        "node-a",
        &PostParams::default(),
        &json!({"spec": {"unschedulable": false}}),
    )
    .await
    .expect("uncordon");
    let n = wait_for(WAIT, "Drained removed, weight back", || async {
        let n = api.get("node-a").await.map_err(|e| e.to_string())?;
        let w = n.status.routing.as_ref().map(|r| r.weight);
        if cond(&n, conditions::DRAINED).is_none() && w == Some(75) {
            Ok(n)
        } else {
            Err(format!("{:?} {w:?}", cond(&n, conditions::DRAINED)))
        }
    })
    .await;
    assert!(n.is_ready());
    wait_events(
        &server.client,
        "node-a",
        &["Registered", "Ready", "Drained"],
    )
    .await;
    controller.stop().await;
}
