//! Every fault mode.

use std::time::Duration;

use futures_util::StreamExt;
use herd_testkit::Fault;
use serde_json::json;
use tokio::time::Instant;

use crate::helpers::{bounded, client, fake, get, json_of, ndjson, post};

fn gen_body() -> serde_json::Value {
    json!({"model": "llama3.2:1b", "prompt": "x"})
}

#[tokio::test]
async fn refuse_connections_closes_the_port_until_cleared() {
    bounded(async {
        let f = fake().start().await;
        // A pooled connection exists before the fault...
        let c = client();
        assert_eq!(c.get(f.url()).send().await.expect("up").status(), 200);

        f.set_fault(Fault::RefuseConnections).await;
        let e = tokio::net::TcpStream::connect(f.addr())
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        // ...and is gone too: the same client cannot get an answer.
        assert!(c.get(f.url()).send().await.is_err());
        assert!(!f.is_serving().await);

        f.clear_fault().await;
        assert_eq!(c.get(f.url()).send().await.expect("back").status(), 200);
    })
    .await;
}

#[tokio::test]
async fn hang_never_answers_and_counts_the_abandoned_request() {
    bounded(async {
        let f = fake().start().await;
        f.set_fault(Fault::Hang).await;
        let r = client()
            .get(format!("{}/api/tags", f.url()))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        assert!(r.expect_err("no answer").is_timeout());
        let s = f.wait_until(|s| s.cancelled == 1).await;
        assert_eq!((s.requests_to("/api/tags"), s.in_flight), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn die_mid_stream_cuts_the_connection_after_n_chunks() {
    bounded(async {
        let f = fake().tokens(8).start().await;
        f.set_fault(Fault::DieMidStream { after_chunks: 2 }).await;
        let resp = post(&f, "/api/generate", gen_body()).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => got.extend_from_slice(&b),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body must end in an error, not cleanly");
        let text = String::from_utf8(got).expect("utf8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        f.wait_until(|s| s.aborted == 1).await;

        // after_chunks: 0 dies before the status line.
        f.set_fault(Fault::DieMidStream { after_chunks: 0 }).await;
        assert!(
            client()
                .get(format!("{}/api/tags", f.url()))
                .send()
                .await
                .is_err()
        );
        f.wait_until(|s| s.aborted == 2).await;

        // A non-streamed reply is cut in half.
        f.set_fault(Fault::DieMidStream { after_chunks: 1 }).await;
        let resp = get(&f, "/api/tags").await;
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn slow_down_multiplies_every_delay() {
    bounded(async {
        let f = fake()
            .ttft(Duration::from_millis(40))
            .tokens(2)
            .tokens_per_sec(50.0)
            .start()
            .await;
        f.set_fault(Fault::SlowDown { factor: 4.0 }).await;
        let t = Instant::now();
        let lines = ndjson(post(&f, "/api/generate", gen_body()).await).await;
        assert!(
            t.elapsed() >= Duration::from_millis(160 + 80),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            lines.last().expect("last")["prompt_eval_duration"],
            160_000_000
        );
        f.clear_fault().await;
        let t = Instant::now();
        ndjson(post(&f, "/api/generate", gen_body()).await).await;
        assert!(t.elapsed() < Duration::from_millis(160));
    })
    .await;
}

#[tokio::test]
async fn status_fault_everywhere_or_on_one_path() {
    bounded(async {
        let f = fake().start().await;
        f.set_fault(Fault::busy()).await;
        let resp = post(&f, "/api/chat", json!({})).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(json_of(resp).await["error"], herd_testkit::BUSY_MESSAGE);
        f.clear_fault().await;

        f.set_fault_on("/api/tags", Fault::status(500, r#"{"error":"boom"}"#))
            .await;
        let resp = get(&f, "/api/tags").await;
        assert_eq!(resp.status(), 500);
        assert_eq!(json_of(resp).await, json!({"error": "boom"}));
        assert_eq!(get(&f, "/api/version").await.status(), 200);
        f.clear_fault().await;
        assert_eq!(get(&f, "/api/tags").await.status(), 200);

        f.set_fault(Fault::status(502, "Bad Gateway")).await;
        let resp = get(&f, "/").await;
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.text().await.expect("text"), "Bad Gateway");
    })
    .await;
}

#[tokio::test]
async fn garbage_answers_200_with_bytes_that_are_not_json() {
    bounded(async {
        let f = fake().start().await;
        f.set_fault(Fault::Garbage).await;
        let resp = post(&f, "/api/chat", json!({"model": "llama3.2:1b"})).await;
        assert_eq!(resp.status(), 200);
        let bytes = resp.bytes().await.expect("body");
        assert!(!bytes.is_empty());
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err());
    })
    .await;
}

#[tokio::test]
async fn hang_on_a_post_also_notices_the_client_leaving() {
    bounded(async {
        let f = fake().start().await;
        f.set_fault(Fault::Hang).await;
        let r = client()
            .post(format!("{}/api/chat", f.url()))
            .json(&json!({"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        assert!(r.expect_err("no answer").is_timeout());
        let s = f.wait_until(|s| s.cancelled == 1).await;
        assert_eq!(s.in_flight, 0);
    })
    .await;
}
