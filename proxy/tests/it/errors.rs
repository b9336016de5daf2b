//! The proxy's own errors: which case, in whose words, in which shape.

use serde_json::{Value, json};

use super::*;

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    (status, r.json().await.expect("json error body"))
}

#[tokio::test]
async fn no_nodes_registered_is_a_503_that_says_so() {
    bounded(async {
        let herd = Herd::start().await;
        let (status, body) = error_of(
            herd.post("/api/chat", json!({"model": "llama3", "messages": []}))
                .await,
        )
        .await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "no nodes available: no nodes are registered");
        // The same in OpenAI's shape on /v1.
        let (status, body) = error_of(
            herd.post(
                "/v1/chat/completions",
                json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"]["message"],
            "no nodes available: no nodes are registered"
        );
        assert_eq!(body["error"]["type"], "api_error");
        assert!(body["error"]["param"].is_null() && body["error"]["code"].is_null());
    })
    .await;
}

#[tokio::test]
async fn nodes_that_are_not_ready_or_cordoned_are_counted_in_the_503() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.create_node("a", &a.url()).await; // never Ready
        herd.create_node("b", &a.url()).await;
        herd.status("b", |s| s.conditions = vec![ready_condition(false)])
            .await;
        herd.create_node("c", &a.url()).await;
        herd.status("c", |s| s.conditions = vec![ready_condition(true)])
            .await;
        herd.nodes
            .patch(
                "c",
                &PostParams::default(),
                &json!({"spec": {"unschedulable": true}}),
            )
            .await
            .expect("cordon");
        herd.wait_stats("three nodes, c cordoned", |s| {
            s.nodes.len() == 3 && s.nodes.iter().any(|n| n.reason == "cordoned")
        })
        .await;
        let (status, body) = error_of(herd.post("/api/generate", json!({"model": "m"})).await).await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"],
            "no nodes available: 3 nodes registered, none ready and schedulable (2 not ready, 1 cordoned)"
        );
    })
    .await;
}

#[tokio::test]
async fn a_model_only_on_unavailable_nodes_is_a_503_naming_them() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["other"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["other"]).await;
        herd.status("a", |s| s.conditions = vec![ready_condition(false)])
            .await;
        herd.wait_stats("a not ready", |s| {
            s.nodes.iter().any(|n| n.node == "a" && !n.routable)
        })
        .await;
        let (status, body) = error_of(herd.post("/api/generate", json!({"model": "m"})).await).await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"],
            "no nodes available for model 'm': the nodes that have it cannot take requests now: a (not ready)"
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_models_get_ollamas_words_per_endpoint() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        for (path, body, want) in [
            ("/api/chat", json!({"model": "nope"}), "model 'nope' not found"),
            ("/api/generate", json!({"model": "nope", "prompt": "x"}), "model 'nope' not found"),
            ("/api/show", json!({"model": "nope"}), "model 'nope' not found"),
            ("/api/show", json!({"name": "nope"}), "model 'nope' not found"),
            (
                "/api/embed",
                json!({"model": "nope", "input": "x"}),
                "model \"nope\" not found, try pulling it first",
            ),
            (
                "/api/embeddings",
                json!({"model": "nope", "prompt": "x"}),
                "model \"nope\" not found, try pulling it first",
            ),
        ] {
            let (status, err) = error_of(herd.post(path, body).await).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(err["error"], want, "{path}");
        }
        let (status, err) = error_of(
            herd.post(
                "/v1/chat/completions",
                json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(
            err,
            json!({"error": {"message": "model 'nope' not found", "type": "not_found_error", "param": null, "code": null}})
        );
        let r = herd.http.get(herd.at("/v1/models/nope")).send().await.expect("get");
        let (status, err) = error_of(r).await;
        assert_eq!(status, 404);
        assert_eq!(err["error"]["type"], "not_found_error");
        // No fake was bothered.
        assert_eq!(a.stats().total_requests, 0);
    })
    .await;
}

#[tokio::test]
async fn bad_requests_get_a_400_never_a_500() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        let raw = |path: &'static str, body: &'static str| {
            let method = if path == "/api/delete" {
                reqwest::Method::DELETE
            } else {
                reqwest::Method::POST
            };
            herd.http
                .request(method, herd.at(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        for (path, body, want) in [
            ("/api/chat", "{not json", "invalid request body"),
            ("/api/chat", "", "missing request body"),
            ("/api/chat", "{}", "model is required"),
            ("/api/generate", r#"{"model": ""}"#, "model is required"),
            ("/api/generate", r#"{"model": 42}"#, "invalid request body"),
            ("/api/chat", "[1,2]", "invalid request body"),
            ("/api/pull", "{oops", "invalid request body"),
            ("/api/delete", "", "missing request body"),
        ] {
            let r = raw(path, body).await.expect("send");
            let (status, err) = error_of(r).await;
            assert_eq!(status, 400, "{path} {body:?}: {err}");
            let msg = err["error"].as_str().unwrap_or_default();
            assert!(msg.starts_with(want), "{path} {body:?}: {msg}");
        }
        let r = raw("/v1/chat/completions", "{bad").await.expect("send");
        let (status, err) = error_of(r).await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(a.stats().total_requests, 0);
    })
    .await;
}

#[tokio::test]
async fn oversized_bodies_get_a_413() {
    bounded(async {
        let herd = Herd::with(ProxyConfig {
            max_request_body: 1024,
            ..test_config()
        })
        .await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        let big = json!({"model": "m", "prompt": "x".repeat(4096)});
        let (status, err) = error_of(herd.post("/api/generate", big.clone()).await).await;
        assert_eq!(status, 413);
        assert_eq!(
            err["error"],
            "request body too large: the limit is 1024 bytes"
        );
        // Without Content-Length (chunked) the limit holds too.
        let bytes = serde_json::to_vec(&big).expect("json");
        let stream = futures_util::stream::iter(
            bytes
                .chunks(100)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        let r = herd
            .http
            .post(herd.at("/v1/completions"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .expect("send");
        let (status, err) = error_of(r).await;
        assert_eq!(status, 413);
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(a.stats().total_requests, 0);
        // Just under the limit passes.
        let (status, _, _) = herd.chat("m").await;
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test]
async fn wrong_methods_get_a_405() {
    bounded(async {
        let herd = Herd::start().await;
        for (method, path) in [
            (reqwest::Method::GET, "/api/chat"),
            (reqwest::Method::POST, "/api/tags"),
            (reqwest::Method::GET, "/api/delete"),
            (reqwest::Method::PUT, "/v1/chat/completions"),
        ] {
            let r = herd
                .http
                .request(method.clone(), herd.at(path))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 405, "{method} {path}");
        }
        // Unknown paths fall to the composer's fallback (the apiserver's 404).
        let r = herd
            .http
            .get(herd.at("/api/nope"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
    })
    .await;
}
