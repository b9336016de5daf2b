//! stop/restart on the same port, cancellation, counters.

use std::time::Duration;

use futures_util::StreamExt;
use herd_testkit::FakeOllama;
use serde_json::json;

use crate::helpers::{bounded, client, fake, get, json_of, ndjson, post};

#[tokio::test]
async fn restart_comes_back_on_the_same_port_with_models_but_nothing_loaded() {
    bounded(async {
        let f = fake().start().await;
        let addr = f.addr();
        ndjson(
            post(
                &f,
                "/api/generate",
                json!({"model": "llama3.2:1b", "prompt": "x"}),
            )
            .await,
        )
        .await;
        f.add_model("gemma3:270m");
        assert_eq!(f.loaded_models().len(), 1);

        f.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert!(get_fails(&f).await);

        f.restart().await.expect("restart");
        assert_eq!(f.addr(), addr);
        assert_eq!(get(&f, "/").await.status(), 200);
        assert!(
            f.loaded_models().is_empty(),
            "a restarted Ollama has nothing loaded"
        );
        assert!(f.models().contains(&"gemma3:270m".to_owned()));
        // Restart right after serving works too (SO_REUSEADDR).
        f.restart().await.expect("restart again");
        assert_eq!(get(&f, "/api/version").await.status(), 200);
    })
    .await;
}

async fn get_fails(f: &FakeOllama) -> bool {
    client().get(f.url()).send().await.is_err()
}

#[tokio::test]
async fn stop_aborts_requests_in_flight() {
    bounded(async {
        let f = fake().ttft(Duration::from_secs(5)).start().await;
        let url = format!("{}/api/generate", f.url());
        let pending = tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"model": "llama3.2:1b", "prompt": "x"}))
                .send()
                .await
        });
        f.wait_for_in_flight(1).await;
        f.stop().await;
        assert!(pending.await.expect("task").is_err());
        let s = f.wait_until(|s| s.in_flight == 0).await;
        assert_eq!((s.aborted, s.cancelled), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn a_client_dropping_a_stream_counts_as_cancelled_and_frees_the_slot() {
    bounded(async {
        let f = fake().tokens(50).tokens_per_sec(50.0).start().await;
        let resp = post(&f, "/api/chat", json!({"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]})).await;
        let mut body = resp.bytes_stream();
        let mut lines = 0;
        while lines < 2 {
            let chunk = body.next().await.expect("chunk").expect("ok");
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        assert_eq!(f.in_flight(), 1);
        drop(body);
        let s = f.wait_until(|s| s.cancelled == 1).await;
        assert_eq!((s.in_flight, s.completed), (0, 0));

        // The one slot is free again: a new request starts at once.
        let v = json_of(post(&f, "/api/generate", json!({"model": "llama3.2:1b", "prompt": "x", "stream": false, "options": {"num_predict": 1}})).await).await;
        assert_eq!(v["done"], true);
        assert_eq!(f.completed(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_client_leaving_the_queue_is_cancelled_and_leaves_the_queue() {
    bounded(async {
        let f = fake()
            .ttft(Duration::from_millis(400))
            .tokens(1)
            .start()
            .await;
        let url = format!("{}/api/generate", f.url());
        let body = json!({"model": "llama3.2:1b", "prompt": "x", "stream": false});
        let first = tokio::spawn(client().post(&url).json(&body).send());
        f.wait_for_in_flight(1).await;
        let second = tokio::spawn(client().post(&url).json(&body).send());
        f.wait_for_queued(1).await;
        second.abort();
        let s = f.wait_until(|s| s.cancelled == 1).await;
        assert_eq!(s.queued, 0);
        assert_eq!(first.await.expect("task").expect("first").status(), 200);
        let s = f.wait_until(|s| s.in_flight == 0).await;
        assert_eq!((s.completed, s.cancelled), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn counters_track_paths_and_hosts() {
    bounded(async {
        let f = fake().start().await;
        get(&f, "/api/tags").await;
        get(&f, "/api/tags?x=1").await;
        get(&f, "/").await;
        let s = f.stats();
        assert_eq!(s.requests_to("/api/tags"), 2);
        assert_eq!(s.requests_to("/"), 1);
        assert_eq!(s.total_requests, 3);
        assert_eq!(s.completed, 3);
        assert_eq!(s.last_host.as_deref(), Some(f.host_port().as_str()));
        f.reset_stats();
        assert_eq!(f.total_requests(), 0);
    })
    .await;
}

#[tokio::test]
async fn serves_on_a_listener_the_test_bound() {
    bounded(async {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let f = FakeOllama::builder().listener(std_listener).start().await;
        assert_eq!(f.addr(), addr);
        assert_eq!(get(&f, "/").await.status(), 200);

        let tokio_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let g = FakeOllama::builder().listener(tokio_listener).start().await;
        assert_eq!(get(&g, "/").await.status(), 200);
        g.restart()
            .await
            .expect("restart on a provided listener's port");
        assert_eq!(get(&g, "/").await.status(), 200);
    })
    .await;
}
