//! Node lifecycle: heartbeats, the active probe, the fast signals, events.

use std::time::Duration;

use herd_api::{Condition, ConditionStatus, Timestamp, conditions, set_condition};

use crate::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stop_unknown_within_grace_plus_one_probe_period_then_recover() {
    let server = TestServer::start().await;
    let config = fast_config();
    let controller = ControllerHandle::start(&server.client, config.clone());
    let api = server.nodes();
    let mut a = SimNode::start(&server, "node-a", &[]).await;
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        Some("Healthy"),
        WAIT,
    )
    .await;

    // Heartbeats stop; Ollama keeps answering.
    a.stop_heartbeats();
    // A heartbeat already on the wire may still land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last_beat = api
        .get("node-a")
        .await
        .expect("get")
        .status
        .last_heartbeat_time
        .expect("heartbeat");
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::Unknown,
        Some("HeartbeatMissed"),
        WAIT,
    )
    .await;
    let took = ms(transition_time(&n, conditions::READY), last_beat);
    let bound = (config.heartbeat_grace + config.probe_interval).as_millis() as i64;
    eprintln!(
        "last heartbeat → Ready=Unknown: {took} ms (grace {:?})",
        config.heartbeat_grace
    );
    assert!(
        took >= config.heartbeat_grace.as_millis() as i64 - 5,
        "not before the grace period: {took} ms"
    );
    assert!(
        took <= bound,
        "{took} ms > grace + one probe period ({bound} ms)"
    );
    assert_eq!(n.status.routing.as_ref().map(|r| r.weight), Some(0));

    // Heartbeats resume.
    a.resume_heartbeats();
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    assert_eq!(n.status.routing.as_ref().map(|r| r.weight), Some(100));

    // Deleted: one Removed event.
    a.stop_heartbeats();
    api.delete("node-a").await.expect("delete");
    let ev = wait_events(
        &server.client,
        "node-a",
        &["Registered", "Ready", "NotReady", "Ready", "Removed"],
    )
    .await;
    assert!(ev[2].1.contains("HeartbeatMissed"), "{}", ev[2].1);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_that_stops_answering_is_not_ready_while_heartbeats_continue() {
    let server = TestServer::start().await;
    let controller = ControllerHandle::start(&server.client, fast_config());
    let api = server.nodes();
    let mut a = SimNode::start(&server, "node-a", &[]).await;
    wait_condition(
        &api,
        "node-a",
        conditions::REACHABLE,
        ConditionStatus::True,
        Some("ProbeSucceeded"),
        WAIT,
    )
    .await;
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    // Its port closes; the nodelet keeps heartbeating (and keeps saying
    // OllamaRunning=True: only the router's view can catch this).
    a.ollama.stop();
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::False,
        Some("Unreachable"),
        WAIT,
    )
    .await;
    assert_eq!(
        cond(&n, conditions::REACHABLE),
        Some((ConditionStatus::False, "ProbeFailed".into()))
    );
    let beat_then = n.status.last_heartbeat_time.expect("heartbeat");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = api.get("node-a").await.expect("get");
    assert!(
        n.status.last_heartbeat_time.expect("hb") > beat_then,
        "heartbeats continued"
    );
    assert_eq!(
        cond(&n, conditions::READY),
        Some((ConditionStatus::False, "Unreachable".into()))
    );

    // Back.
    a.ollama.restart().await;
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    // An Ollama that answers, but with errors, is no better.
    a.ollama.set_broken(true);
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::False,
        Some("Unreachable"),
        WAIT,
    )
    .await;
    let reachable =
        herd_api::find_condition(&n.status.conditions, conditions::REACHABLE).expect("cond");
    assert!(reachable.message.contains("500"), "{}", reachable.message);
    a.ollama.set_broken(false);
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    controller.stop().await;
}

/// With a grace period and probe interval far longer than the test, only
/// the watch-driven path can take the node out.
fn slow_timers() -> herd_controller::Config {
    herd_controller::Config {
        heartbeat_grace: Duration::from_secs(60),
        probe_interval: Duration::from_secs(60),
        ..fast_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_nodelet_stop_leaves_routing_at_once() {
    let server = TestServer::start().await;
    let controller = ControllerHandle::start(&server.client, slow_timers());
    let api = server.nodes();
    let mut a = SimNode::start(&server, "node-a", &[]).await;
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    a.graceful_stop().await;
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::False,
        Some("NodeletStopped"),
        Duration::from_secs(5),
    )
    .await;
    let took = ms(
        transition_time(&n, conditions::READY),
        transition_time(&n, conditions::NODELET_READY),
    );
    eprintln!("NodeletReady=False → Ready=False: {took} ms");
    assert_eq!(
        n.status
            .routing
            .as_ref()
            .map(|r| (r.weight, r.reason.as_str())),
        Some((0, "NotReady"))
    );
    let ev = wait_events(
        &server.client,
        "node-a",
        &["Registered", "Ready", "NotReady"],
    )
    .await;
    assert!(ev[2].1.contains("NodeletStopped"), "{}", ev[2].1);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_connect_failure_leaves_routing_at_once_and_the_probe_brings_it_back() {
    let server = TestServer::start().await;
    let config = herd_controller::Config {
        heartbeat_grace: Duration::from_secs(60),
        probe_interval: Duration::from_millis(500),
        ..fast_config()
    };
    let controller = ControllerHandle::start(&server.client, config);
    let api = server.nodes();
    let _a = SimNode::start(&server, "node-a", &[]).await;
    wait_condition(
        &api,
        "node-a",
        conditions::REACHABLE,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;
    wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    // The proxy failed to connect and says so, as another client.
    api.update_status_with_retry("node-a", |s| {
        set_condition(
            &mut s.conditions,
            Condition::new(
                conditions::REACHABLE,
                ConditionStatus::False,
                "ConnectFailed",
                "connection refused",
            ),
            Timestamp::now(),
        );
    })
    .await
    .expect("proxy write");
    let n = wait_condition(
        &api,
        "node-a",
        conditions::READY,
        ConditionStatus::False,
        Some("Unreachable"),
        Duration::from_secs(5),
    )
    .await;
    let took = ms(
        transition_time(&n, conditions::READY),
        transition_time(&n, conditions::REACHABLE),
    );
    eprintln!("Reachable=False (proxy) → Ready=False: {took} ms");
    assert!(took < 500, "faster than a probe period: {took} ms");

    // The node is in fact fine: the next probe restores it.
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
        cond(&n, conditions::REACHABLE),
        Some((ConditionStatus::True, "ProbeSucceeded".into()))
    );
    controller.stop().await;
}
