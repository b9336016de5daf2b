//! Streams pass through chunk by chunk; Host is rewritten; the OpenAI
//! endpoints keep their shapes.

use std::time::{Duration, Instant};

use herd_testkit::FakeOllama;
use serde_json::json;

use super::*;

#[tokio::test]
async fn chunks_reach_the_client_one_by_one_as_the_node_sends_them() {
    bounded(async {
        let herd = Herd::start().await;
        // Six tokens 60 ms apart: buffering anywhere would bunch them up.
        let a = FakeOllama::builder()
            .models(["m"])
            .ttft(Duration::from_millis(20))
            .tokens(6)
            .tokens_per_sec(1000.0 / 60.0)
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        let started = Instant::now();
        let mut r = herd
            .post(
                "/api/chat",
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "a");
        let mut arrivals: Vec<(Duration, serde_json::Value)> = Vec::new();
        let mut pending = Vec::new();
        while let Some(chunk) = r.chunk().await.expect("read") {
            pending.extend_from_slice(&chunk);
            while let Some(i) = pending.iter().position(|c| *c == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).expect("json line");
                arrivals.push((started.elapsed(), v));
            }
        }
        assert_eq!(arrivals.len(), 7, "6 tokens and the final chunk");
        assert_eq!(arrivals[6].1["done"], true);
        assert!(arrivals[6].1["eval_count"].as_u64() == Some(6));
        // Tokens arrive spread out, each about 60 ms after the one before:
        // never two together, and the first long before the last.
        for w in arrivals[..6].windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                gap >= Duration::from_millis(30),
                "tokens bunched: {gap:?} apart"
            );
        }
        assert!(arrivals[5].0 - arrivals[0].0 >= Duration::from_millis(250));
    })
    .await;
}

#[tokio::test]
async fn the_host_header_is_rewritten_for_the_node() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        // Ollama on loopback refuses foreign hosts (the fake checks like Ollama).
        let direct = herd
            .http
            .get(format!("{}/api/tags", a.url()))
            .header("host", "router.example.com")
            .send()
            .await
            .expect("direct");
        assert_eq!(direct.status(), 403);
        let r = herd
            .http
            .post(herd.at("/api/generate"))
            .header("host", "router.example.com:8080")
            .json(&json!({"model": "m", "prompt": "x", "stream": false}))
            .send()
            .await
            .expect("proxied");
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "a");
        assert_eq!(a.stats().last_host.as_deref(), Some(a.host_port().as_str()));
    })
    .await;
}

#[tokio::test]
async fn a_client_expecting_100_continue_is_told_to_go_on_and_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        // As curl sends a large body: the head alone, then the body only
        // once the server says `100 Continue`.
        let body = r#"{"model":"m","prompt":"x","stream":false}"#;
        let addr = herd.url.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /api/generate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        let mut interim = [0u8; 25];
        tcp.read_exact(&mut interim).await.expect("100 Continue");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        tcp.write_all(body.as_bytes()).await.expect("body");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("x-herd-node: a\r\n"), "{answer}");
        assert!(answer.contains(&herd_testkit::reply_text(3)), "{answer}");
        assert_eq!(a.stats().requests.get("/api/generate"), Some(&1));
    })
    .await;
}

#[tokio::test]
async fn generate_embed_and_show_pass_through() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m", "nomic-embed-text"]).await;
        herd.add_fake("a", &a, &["m", "nomic-embed-text"]).await;
        let r = herd
            .post(
                "/api/generate",
                json!({"model": "m", "prompt": "x", "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["response"], herd_testkit::reply_text(3));
        let r = herd
            .post(
                "/api/embed",
                json!({"model": "nomic-embed-text", "input": ["a", "b"]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "a");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2));
        let r = herd.post("/api/show", json!({"model": "m"})).await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert!(
            v.get("modelfile").is_some() && v.get("details").is_some(),
            "{v}"
        );
    })
    .await;
}

#[tokio::test]
async fn openai_endpoints_keep_their_shapes() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["m", "e"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m", "e"]).await;
        let msgs = json!([{"role": "user", "content": "hi"}]);
        // Non-streamed by default on /v1.
        let r = herd
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "messages": msgs}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert!(!node_of(&r).is_empty());
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        // Streamed: SSE ending with [DONE].
        let r = herd
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "messages": msgs, "stream": true,
                       "stream_options": {"include_usage": true}}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/event-stream"))
        );
        let text = r.text().await.expect("body");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert!(text.contains("chat.completion.chunk"));
        let r = herd
            .post("/v1/completions", json!({"model": "m", "prompt": "x"}))
            .await;
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["object"], "text_completion");
        let r = herd
            .post("/v1/embeddings", json!({"model": "e", "input": "x"}))
            .await;
        assert_eq!(node_of(&r), "b");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["object"], "embedding");
        // Models: the union, once each; one model by name.
        let v: serde_json::Value = herd
            .http
            .get(herd.at("/v1/models"))
            .send()
            .await
            .expect("models")
            .json()
            .await
            .expect("json");
        assert_eq!(v["object"], "list");
        let mut ids: Vec<&str> = v["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["e:latest", "m:latest"]);
        let r = herd
            .http
            .get(herd.at("/v1/models/e"))
            .send()
            .await
            .expect("model");
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "b");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(
            (v["id"].as_str(), v["object"].as_str()),
            (Some("e"), Some("model"))
        );
    })
    .await;
}

#[tokio::test]
async fn root_answers_like_ollama() {
    bounded(async {
        let herd = Herd::start().await;
        let r = herd.http.get(herd.at("/")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("text"), "Ollama is running");
        let r = herd.http.head(herd.at("/")).send().await.expect("head");
        assert_eq!(r.status(), 200);
    })
    .await;
}
