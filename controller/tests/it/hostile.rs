//! Hostile nodes: a node URL must not steer the probe elsewhere, and what a
//! failed probe writes into the node's conditions must not reveal how the
//! network answered (a port scanner for anyone who can read nodes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use herd_api::{ConditionStatus, conditions};

use crate::{ControllerHandle, SimNode, TestServer, fast_config, wait_for};

const WAIT: Duration = Duration::from_secs(10);

/// The node's `Reachable` message once it is `False` and says `word`.
async fn reachable_message_with(server: &TestServer, name: &str, word: &str) -> String {
    let api = server.nodes();
    wait_for(
        WAIT,
        &format!("{name} Reachable=False mentioning {word:?}"),
        || async {
            let n = api.get(name).await.map_err(|e| e.to_string())?;
            let c = herd_api::find_condition(&n.status.conditions, conditions::REACHABLE)
                .ok_or("no condition")?;
            if c.status == ConditionStatus::False && c.message.contains(word) {
                Ok(c.message.clone())
            } else {
                Err(format!("{:?} {}", c.status, c.message))
            }
        },
    )
    .await
}

async fn point_node_at(server: &TestServer, name: &str, url: String) {
    let api = server.nodes();
    let mut n = api.get(name).await.expect("get");
    n.spec.url = url;
    api.apply(&n).await.expect("apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_do_not_follow_redirects_and_say_what_failed_without_socket_errors() {
    let server = TestServer::start().await;
    let controller = ControllerHandle::start(&server.client, fast_config());
    let _node = SimNode::start(&server, "node-a", &[]).await;

    // A node whose Ollama redirects the probe to an internal path that
    // would pass as Ollama.
    let internal_hits = Arc::new(AtomicUsize::new(0));
    let hits = internal_hits.clone();
    let app = Router::new()
        .route(
            "/api/version",
            get(|| async {
                (StatusCode::FOUND, [(header::LOCATION, "/internal/version")]).into_response()
            }),
        )
        .route(
            "/internal/version",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { r#"{"version":"0.0.0"}"# }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let redirecting = format!("http://{}", listener.local_addr().expect("addr"));
    let served = tokio::spawn(async move { axum::serve(listener, app).await });
    point_node_at(&server, "node-a", redirecting).await;
    let message = reachable_message_with(&server, "node-a", "redirect").await;
    assert!(message.contains("302"), "{message}");
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    served.abort();

    // A closed port: "refused", in the probe's words, not the socket's.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let _other = SimNode::start(&server, "node-b", &[]).await;
    point_node_at(&server, "node-b", closed_url).await;
    let message = reachable_message_with(&server, "node-b", "refused").await;
    for raw in [
        "os error",
        "Connection refused",
        "tcp connect",
        "error trying to connect",
    ] {
        assert!(
            !message.contains(raw),
            "raw socket text {raw:?} in {message:?}"
        );
    }
    controller.stop().await;
}

#[tokio::test]
async fn link_local_and_metadata_node_urls_are_refused_at_validation() {
    let server = TestServer::start().await;
    let api = server.nodes();
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]:11434",
        "http://[fd00:ec2::254]",
        "http://[::ffff:169.254.169.254]:80",
    ] {
        let node = <herd_api::Node as herd_api::Resource>::new(
            "metadata",
            herd_api::NodeSpec {
                url: url.into(),
                ..herd_api::NodeSpec::default()
            },
        );
        let err = api.apply(&node).await.expect_err(url);
        let text = err.to_string();
        assert!(
            text.contains("--allow-node-addresses") && text.contains("spec.url"),
            "{url}: {text}"
        );
    }
}
