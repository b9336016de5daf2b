//! One controller at a time: a standby reconciles nothing while another
//! holds the lease, takes over when the holder stops renewing (killed,
//! without releasing), and a controller that stops releases the lease.

use std::time::Duration;

use herd_api::{ConditionStatus, Lease, LeaseSpec, Resource, Timestamp, conditions};
use herd_client::PostParams;
use herd_controller::lease::{CONTROLLER_LEASE, LeaseTimes};

use crate::*;

const TIMES: LeaseTimes = LeaseTimes {
    duration: Duration::from_secs(1),
    renew_every: Duration::from_millis(200),
};
const WAIT: Duration = Duration::from_secs(10);

fn config(identity: &str) -> herd_controller::Config {
    herd_controller::Config {
        identity: Some(identity.to_owned()),
        lease: TIMES,
        ..fast_config()
    }
}

async fn holder(server: &TestServer) -> Option<String> {
    server
        .client
        .api::<Lease>()
        .get_opt(CONTROLLER_LEASE)
        .await
        .expect("get the lease")
        .map(|l| l.spec.holder)
}

async fn wait_holder(server: &TestServer, want: &[&str]) -> String {
    wait_for(
        WAIT,
        &format!("a lease held by one of {want:?}"),
        || async {
            match holder(server).await {
                Some(h) if want.contains(&h.as_str()) => Ok(h),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Holds the lease as `someone-else`, renewing it until aborted.
fn hold_as_someone_else(server: &TestServer) -> tokio::task::JoinHandle<()> {
    let api = server.client.api::<Lease>();
    tokio::spawn(async move {
        let spec = || LeaseSpec {
            holder: "someone-else".into(),
            renew_time: Some(Timestamp::now()),
            lease_duration_seconds: 1,
        };
        api.create(
            &PostParams::default(),
            &Lease::new(CONTROLLER_LEASE, spec()),
        )
        .await
        .expect("create the lease");
        loop {
            tokio::time::sleep(TIMES.renew_every).await;
            let mut lease = api.get(CONTROLLER_LEASE).await.expect("get");
            lease.spec = spec();
            api.replace(&PostParams::default(), &lease)
                .await
                .expect("renew");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_another_takes_over() {
    let server = TestServer::start().await;
    let other = hold_as_someone_else(&server);
    wait_holder(&server, &["someone-else"]).await;
    let a = ControllerHandle::start(&server.client, config("a"));
    let b = ControllerHandle::start(&server.client, config("b"));
    let n1 = SimNode::start(&server, "n1", &[]).await;
    // Several lease durations: neither standby writes the node's Ready.
    tokio::time::sleep(3 * TIMES.duration).await;
    let node = server.nodes().get("n1").await.expect("n1");
    assert_eq!(cond(&node, conditions::READY), None, "a standby reconciled");
    assert_eq!(holder(&server).await.as_deref(), Some("someone-else"));

    // The holder stops renewing: one of the two takes over and reconciles.
    other.abort();
    let first = wait_holder(&server, &["a", "b"]).await;
    wait_condition(
        &server.nodes(),
        &n1.name,
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    // Kill the holder (no release): the other takes over once the lease has
    // gone a whole duration unrenewed, and reconciles.
    let (dead, survivor, survivor_name) = if first == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    drop(dead);
    wait_holder(&server, &[survivor_name]).await;
    let n2 = SimNode::start(&server, "n2", &[]).await;
    wait_condition(
        &server.nodes(),
        &n2.name,
        conditions::READY,
        ConditionStatus::True,
        None,
        WAIT,
    )
    .await;

    // A controller that stops gives the lease up at once.
    survivor.stop().await;
    assert_eq!(holder(&server).await.as_deref(), Some(""));
    let lease = server
        .client
        .api::<Lease>()
        .get(CONTROLLER_LEASE)
        .await
        .expect("lease");
    assert_eq!(lease.spec.renew_time, None);
}
