//! Hostile input through real HTTP: requests an attacker on the network can
//! send must neither grow the server without bound nor get a 500.

use std::path::Path;
use std::time::Duration;

use herd_apiserver::{AppState, Config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{BASE, node};

/// A server built with [`herd_apiserver::build`], so the test can read its
/// store's window as well as talk HTTP to it.
struct Built {
    url: String,
    state: AppState,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Built {
    async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let token = CancellationToken::new();
        let (router, state) = herd_apiserver::build(config, token.clone()).expect("build");
        let router = herd_apiserver::with_common_layers(router);
        let stop = token.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .expect("serve");
        });
        Self {
            url,
            state,
            token,
            task,
            http: reqwest::Client::new(),
        }
    }

    async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        drop(self.state);
        // The store's writer closes SQLite once the last handle is gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        ct: &str,
        body: String,
    ) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{BASE}{path}", self.url))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn big_node(name: &str, labels: usize, annotation_bytes: usize) -> Value {
    let labels: serde_json::Map<String, Value> = (0..labels)
        .map(|i| {
            (
                format!("example.com/label-{i:05}"),
                json!(format!("value-{i:05}")),
            )
        })
        .collect();
    let mut n = node(name);
    n["metadata"]["labels"] = Value::Object(labels);
    n["metadata"]["annotations"] = json!({"note": "x".repeat(annotation_bytes)});
    n
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

#[tokio::test]
async fn label_count_and_object_size_are_bounded_and_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Built::start(Config::new(tmp.path())).await;
    let post = |v: Value| {
        s.send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            v.to_string(),
        )
    };

    // The issue's attack: thousands of labels in one body under the body limit.
    let (code, body) = post(big_node("many-labels", 20_000, 0)).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("256 labels")),
        "{body}"
    );

    // Annotations past Kubernetes' 256 KiB total.
    let (code, body) = post(big_node("big-annotations", 0, 300 * 1024)).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string().contains("262144"),
        "names the limit: {body}"
    );

    // An object under every field limit but past the object limit once
    // stored: a patch that grows it is refused too, and nothing is stored.
    let (code, body) = post(big_node("grows", 200, 200 * 1024)).await;
    assert_eq!(code, 201, "{body}");
    let patch = json!({"metadata":{"annotations":{"more": "y".repeat(60 * 1024)}}});
    let (code, body) = s
        .send(
            reqwest::Method::PATCH,
            "/nodes/grows",
            "application/merge-patch+json",
            patch.to_string(),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string().contains("262144"),
        "names the limit: {body}"
    );
    let (code, body) = s
        .send(
            reqwest::Method::GET,
            "/nodes/grows",
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(code, 200);
    assert!(
        body["metadata"]["annotations"].get("more").is_none(),
        "not stored"
    );
    s.stop().await;
}

#[tokio::test]
async fn many_small_patches_of_a_large_node_stay_within_the_window_bytes() {
    const BOUND: usize = 2 * 1024 * 1024;
    const PATCHES: usize = 300;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = Config::new(tmp.path());
    config.watch_window_bytes = BOUND;
    let s = Built::start(config.clone()).await;
    // As large as accepted: every change to it is kept whole for watchers.
    let (code, body) = s
        .send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            big_node("target", 256, 200 * 1024).to_string(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let mut max_bytes = 0;
    for i in 0..PATCHES {
        let patch = json!({"spec":{"weight": i % 100 + 1}});
        let (code, body) = s
            .send(
                reqwest::Method::PATCH,
                "/nodes/target",
                "application/merge-patch+json",
                patch.to_string(),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        max_bytes = max_bytes.max(s.state.store.window_usage().bytes);
    }
    let usage = s.state.store.window_usage();
    assert!(
        max_bytes <= BOUND,
        "window peaked at {max_bytes} bytes over {BOUND}"
    );
    assert!(usage.events > 0 && usage.events < PATCHES, "{usage:?}");
    s.stop().await;

    // Without pruning by bytes the events table alone would hold
    // 300 x 200 KiB = 60 MB.
    let db = file_size(&tmp.path().join("herd.db")) + file_size(&tmp.path().join("herd.db-wal"));
    assert!(
        db < 16 * 1024 * 1024,
        "database is {db} bytes after {PATCHES} patches"
    );

    // A restart reloads no more than the bound either.
    let s = Built::start(config).await;
    let usage = s.state.store.window_usage();
    assert!(usage.bytes <= BOUND && usage.events > 0, "{usage:?}");
    s.stop().await;
}

#[tokio::test]
async fn malformed_query_values_answer_400_naming_the_parameter_everywhere() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Built::start(Config::new(tmp.path())).await;
    let (code, _) = s
        .send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            node("a").to_string(),
        )
        .await;
    assert_eq!(code, 201);
    let get = reqwest::Method::GET;
    for (method, path, param) in [
        (get.clone(), "/nodes?limit=abc", "limit"),
        (get.clone(), "/nodes?watch=maybe", "watch"),
        (
            get.clone(),
            "/nodes?watch=true&timeoutSeconds=-1",
            "timeoutSeconds",
        ),
        (get.clone(), "/nodes?resourceVersion=x", "resourceVersion"),
        (get.clone(), "/nodes/a?resourceVersion=x", "resourceVersion"),
        (get.clone(), "/nodes/a?limit=abc", "limit"),
        (
            get.clone(),
            "/modelassignments?allowWatchBookmarks=perhaps",
            "allowWatchBookmarks",
        ),
        (get.clone(), "/events?limit=1e3", "limit"),
        (get.clone(), "?limit=abc", "limit"),
        (
            get.clone(),
            "/nodes?labelSelector=gpu+in+(",
            "labelSelector",
        ),
        (reqwest::Method::DELETE, "/nodes/a?limit=x", "limit"),
        (reqwest::Method::DELETE, "/nodes/a?dryRun=maybe", "dryRun"),
    ] {
        let (code, body) = s
            .send(method.clone(), path, "application/json", String::new())
            .await;
        assert_eq!(code, 400, "{method} {path}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(param)),
            "{method} {path} names {param}: {body}"
        );
    }
    // Unknown parameters are ignored, well-formed known ones accepted.
    let (code, body) = s
        .send(
            get,
            "/nodes?limit=5&resourceVersion=0&whatever=x",
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn metadata_node_urls_are_refused_unless_allowed() {
    let metadata = || {
        let mut n = node("metadata");
        n["spec"]["ollamaUrl"] = json!("http://169.254.169.254:80");
        n.to_string()
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Built::start(Config::new(tmp.path())).await;
    let (code, body) = s
        .send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            metadata(),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("spec.url"), "{body}");
    assert!(
        body.to_string().contains("--allow-node-addresses"),
        "{body}"
    );
    s.stop().await;

    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = Config::new(tmp.path());
    config.allow_node_addresses =
        herd_api::node_address::parse_list("169.254.0.0/16").expect("list");
    let s = Built::start(config).await;
    let (code, body) = s
        .send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            metadata(),
        )
        .await;
    assert_eq!(code, 201, "allowed by the operator: {body}");
    s.stop().await;
}

/// serde_json's recursion limit (128) bounds deeply nested bodies: a 400 at
/// once, not a stack overflow or a long parse.
#[tokio::test]
async fn deeply_nested_json_bodies_get_a_400_quickly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Built::start(Config::new(tmp.path())).await;
    let (code, _) = s
        .send(
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            node("a").to_string(),
        )
        .await;
    assert_eq!(code, 201);
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    for (method, path, ct, body) in [
        (
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            "[".repeat(500_000),
        ),
        (
            reqwest::Method::POST,
            "/nodes",
            "application/json",
            deep_object.clone(),
        ),
        (
            reqwest::Method::PATCH,
            "/nodes/a",
            "application/merge-patch+json",
            deep_object,
        ),
    ] {
        let started = std::time::Instant::now();
        let (code, reply) = s.send(method.clone(), path, ct, body).await;
        assert_eq!(code, 400, "{method} {path}: {reply}");
        if method == reqwest::Method::PATCH {
            // Decoded into an untyped value: only the limit stops it.
            assert!(reply.to_string().contains("recursion limit"), "{reply}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{method} {path}"
        );
    }
    s.stop().await;
}
