//! What a node never receives: the client's credentials for herd.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;

use crate::{Herd, bounded};

/// A node that records the headers of every chat request it is sent.
async fn recording_node() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let app = Router::new().route(
        "/api/chat",
        post(move |headers: HeaderMap| {
            let record = Arc::clone(&record);
            async move {
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(headers);
                axum::Json(serde_json::json!({
                    "model": "m", "done": true,
                    "message": {"role": "assistant", "content": "hi"}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

#[tokio::test]
async fn credential_headers_are_never_forwarded_to_nodes() {
    bounded(async {
        let herd = Herd::start().await;
        let (url, seen) = recording_node().await;
        herd.add_node("rec", &url, &["m"]).await;
        let resp = reqwest::Client::new()
            .post(herd.at("/api/chat"))
            .header("authorization", "Bearer ollama")
            .header("x-api-key", "sk-placeholder")
            .header("cookie", "herd_session=abc")
            .header("proxy-authorization", "Basic eDp5")
            .header("x-kept", "1")
            .json(&serde_json::json!({"model": "m", "stream": false, "messages": []}))
            .send()
            .await
            .expect("chat");
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let headers = seen.last().expect("the node was asked");
        for name in [
            "authorization",
            "x-api-key",
            "cookie",
            "proxy-authorization",
        ] {
            assert!(!headers.contains_key(name), "{name} reached the node");
        }
        assert_eq!(headers["x-kept"], "1", "other headers still go through");
    })
    .await;
}
