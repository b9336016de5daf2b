//! Failures before the first byte move to another node; after it, the
//! stream ends with Ollama's error line. Client disconnects cancel upstream.

use std::time::Duration;

use herd_api::{ConditionStatus, conditions, find_condition};
use herd_proxy::Strategy;
use herd_testkit::{FakeOllama, Fault};
use serde_json::json;

use super::*;

/// The newest record of the history, once there is one.
async fn newest_record(herd: &Herd) -> serde_json::Value {
    eventually("the request recorded", Duration::from_secs(5), || async {
        history(herd).await.into_iter().next()
    })
    .await
}

/// Records of the history, newest first.
async fn history(herd: &Herd) -> Vec<serde_json::Value> {
    let v: serde_json::Value = herd
        .http
        .get(herd.at("/apis/herd/v1/requests?limit=1000"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_refused_connection_is_retried_elsewhere_and_reported() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::RefuseConnections).await;
        for _ in 0..4 {
            let (status, node, body) = herd.chat("m").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(node, "b");
        }
        // Exactly one request paid for finding out: a is left out after that.
        let retried: Vec<_> = history(&herd)
            .await
            .into_iter()
            .filter(|r| r["retries"].as_u64() == Some(1))
            .collect();
        assert!(retried.len() <= 1, "{retried:?}");
        let s = herd.stats().await;
        let node_a = s.nodes.iter().find(|n| n.node == "a").expect("a");
        assert!(!node_a.routable);
        assert_eq!(node_a.reason, "connection failed recently");
        // Reported to the API in the background: Reachable=False, ConnectFailed.
        eventually("Reachable=False on a", Duration::from_secs(5), || async {
            let n = herd.nodes.get("a").await.ok()?;
            let c = find_condition(&n.status.conditions, conditions::REACHABLE)?;
            (c.status == ConditionStatus::False && c.reason == "ConnectFailed")
                .then(|| assert!(c.message.contains("cannot connect"), "{}", c.message))
        })
        .await;
    })
    .await;
}

/// A node that dies with a request on it (the connection breaks before the
/// response head): the request is retried elsewhere, and since a fresh
/// connection is refused too, the node is reported unreachable at once.
#[tokio::test]
async fn a_node_dying_with_a_request_on_it_is_reported_unreachable() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::Hang).await;
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let url = herd.at("/api/chat");
                let http = herd.http.clone();
                tokio::spawn(async move {
                    let r = http
                        .post(url)
                        .json(&json!({"model": "m", "stream": false,
                            "messages": [{"role": "user", "content": "hi"}]}))
                        .send()
                        .await
                        .expect("send");
                    (r.status().as_u16(), node_of(&r))
                })
            })
            .collect();
        eventually("a holds a request", Duration::from_secs(5), || async {
            (a.stats().requests_to("/api/chat") >= 1).then_some(())
        })
        .await;
        // The machine goes away: listener closed, open connections dropped.
        a.set_fault(Fault::RefuseConnections).await;
        for c in clients {
            assert_eq!(c.await.expect("join"), (200, "b".to_owned()));
        }
        eventually("Reachable=False on a", Duration::from_secs(5), || async {
            let n = herd.nodes.get("a").await.ok()?;
            let c = find_condition(&n.status.conditions, conditions::REACHABLE)?;
            (c.status == ConditionStatus::False && c.reason == "ConnectFailed").then_some(())
        })
        .await;
    })
    .await;
}

/// A connection that breaks before the response head while the node still
/// accepts connections is the connection's fault, not the node's: the
/// request is retried, the node is left out only for the cooldown, and
/// nothing is reported.
#[tokio::test]
async fn a_broken_connection_to_a_live_node_is_not_reported_unreachable() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::DieMidStream { after_chunks: 0 }).await;
        for _ in 0..3 {
            let (status, node, body) = herd.chat("m").await;
            assert_eq!((status, node.as_str()), (200, "b"), "{body}");
        }
        assert!(a.stats().requests_to("/api/chat") >= 1, "a was never tried");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = herd.nodes.get("a").await.expect("a");
        assert!(
            find_condition(&n.status.conditions, conditions::REACHABLE)
                .is_none_or(|c| c.status != ConditionStatus::False),
            "{:?}",
            n.status.conditions
        );
    })
    .await;
}

/// A node answering 200 with a body that is not the JSON it announced (a
/// captive portal, something else on Ollama's port) is left out for the
/// failure cooldown after its first such answer, which is recorded as the
/// node's failure; it does not attract traffic by answering fast.
#[tokio::test]
async fn a_node_answering_garbage_is_left_out_after_one_answer() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::Garbage).await;
        let mut by_a = 0;
        for _ in 0..10 {
            let r = herd
                .post(
                    "/api/chat",
                    json!({"model": "m", "stream": false,
                        "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            assert_eq!(r.status(), 200);
            if node_of(&r) == "a" {
                by_a += 1;
            }
        }
        assert_eq!(by_a, 1, "a kept getting requests after answering garbage");
        let s = herd.stats().await;
        let node_a = s.nodes.iter().find(|n| n.node == "a").expect("a");
        assert!(!node_a.routable);
        let rec = history(&herd)
            .await
            .into_iter()
            .find(|r| r["node"] == "a")
            .expect("a's record");
        assert!(
            rec["error"]
                .as_str()
                .is_some_and(|e| e.contains("not the JSON it announced")),
            "{rec}"
        );
        // Healed: back after the cooldown.
        a.clear_fault().await;
        eventually("a back in routing", Duration::from_secs(10), || async {
            let (status, node, _) = herd.chat("m").await;
            (status == 200 && node == "a").then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_503_before_the_first_byte_is_retried_on_another_node() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::busy()).await;
        for _ in 0..4 {
            let (status, node, body) = herd.chat("m").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(node, "b");
        }
        assert!(a.stats().requests_to("/api/chat") >= 1, "a was never tried");
        assert!(
            history(&herd).await.iter().any(|r| r["retries"] == 1),
            "no record shows the retry"
        );
        // Busy is not down: a stays routable.
        let s = herd.stats().await;
        assert!(s.nodes.iter().all(|n| n.routable));
    })
    .await;
}

#[tokio::test]
async fn when_every_node_is_busy_the_nodes_503_is_passed_on() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::busy()).await;
        b.set_fault(Fault::busy()).await;
        let (status, _, body) = herd.chat("m").await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], herd_testkit::BUSY_MESSAGE);
    })
    .await;
}

#[tokio::test]
async fn all_nodes_down_is_an_error_naming_them() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.stop().await;
        b.stop().await;
        let (status, node, body) = herd.chat("m").await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(node, "");
        let msg = body["error"].as_str().expect("error");
        assert!(
            msg.starts_with("all 2 nodes tried for model 'm' failed: "),
            "{msg}"
        );
        assert!(
            msg.contains("a: cannot connect") && msg.contains("b: cannot connect"),
            "{msg}"
        );
        // Both are now left out: the next answer comes at once and says why.
        let (status, _, body) = herd.chat("m").await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"],
            "no nodes available for model 'm': connections to a, b failed moments ago"
        );
        // Back after the cooldown once a node listens again.
        a.restart().await.expect("restart");
        eventually("a back in routing", Duration::from_secs(10), || async {
            let (status, node, _) = herd.chat("m").await;
            (status == 200 && node == "a").then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_first_byte_timeout_moves_to_another_node() {
    bounded(async {
        let herd = Herd::with(ProxyConfig {
            strategy: Strategy::RoundRobin,
            first_byte_timeout: Duration::from_millis(300),
            ..test_config()
        })
        .await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_fault(Fault::Hang).await;
        for _ in 0..2 {
            let (status, node, body) = herd.chat("m").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(node, "b");
        }
        // The hung request was abandoned: its connection closed.
        eventually("a's request cancelled", Duration::from_secs(5), || async {
            (a.stats().cancelled >= 1 && a.stats().in_flight == 0).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn without_retry_on_timeout_the_client_gets_a_504() {
    bounded(async {
        let herd = Herd::with(ProxyConfig {
            first_byte_timeout: Duration::from_millis(200),
            retry_on_timeout: false,
            ..test_config()
        })
        .await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        a.set_fault(Fault::Hang).await;
        let (status, _, body) = herd.chat("m").await;
        assert_eq!(status, 504);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|m| m.contains("first-byte timeout")),
            "{body}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_node_dying_mid_stream_ends_the_stream_with_an_error_line() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        let b = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        a.set_tokens(10);
        b.set_tokens(10);
        a.set_fault(Fault::DieMidStream { after_chunks: 3 }).await;
        b.set_fault(Fault::DieMidStream { after_chunks: 3 }).await;
        let r = herd
            .post("/api/generate", json!({"model": "m", "prompt": "hello"}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().ok(),
            Some("application/x-ndjson")
        );
        let node = node_of(&r);
        let lines = ndjson(&r.text().await.expect("body"));
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[..3].iter().all(|l| l["done"] == false));
        let err = lines[3]["error"].as_str().expect("error line");
        assert!(err.contains(&format!("node {node}")), "{err}");
        // Never retried after the first byte: exactly one node saw it.
        assert_eq!(
            a.stats().requests_to("/api/generate") + b.stats().requests_to("/api/generate"),
            1
        );
        let rec = &history(&herd).await[0];
        assert_eq!(rec["status"], 200);
        assert!(rec["error"].as_str().is_some_and(|e| e.contains("failed in the middle")));

        // The OpenAI stream ends with an SSE error event instead.
        let r = herd
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("body");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        let last = events.last().expect("events");
        let data: serde_json::Value =
            serde_json::from_str(last.trim_start_matches("data: ")).expect("json event");
        assert_eq!(data["error"]["type"], "api_error", "{text}");
        assert!(!text.contains("[DONE]"));
    })
    .await;
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_request() {
    bounded(async {
        let herd = Herd::start().await;
        let a = FakeOllama::builder()
            .models(["m"])
            .ttft(Duration::from_millis(5))
            .tokens(200)
            .tokens_per_sec(50.0)
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        let mut r = herd
            .post("/api/generate", json!({"model": "m", "prompt": "hello"}))
            .await;
        let first = r.chunk().await.expect("read").expect("a chunk");
        assert!(first.starts_with(b"{"));
        assert_eq!(a.stats().in_flight, 1);
        drop(r);
        eventually("upstream cancelled", Duration::from_secs(5), || async {
            let s = a.stats();
            (s.cancelled == 1 && s.in_flight == 0).then_some(())
        })
        .await;
        // The proxy let go too: nothing in flight, and the record says why it ended.
        herd.wait_stats("in-flight back to 0", |s| {
            s.nodes.iter().all(|n| n.in_flight == 0)
        })
        .await;
        let rec = &history(&herd).await[0];
        assert!(
            rec["error"]
                .as_str()
                .is_some_and(|e| e.contains("client closed")),
            "{rec}"
        );
        assert_eq!(a.stats().completed, 0);
    })
    .await;
}

/// A client that stops reading without closing: once herd's writes to it
/// have been stuck for the idle limit, the connection is dropped and the
/// node's request cancelled, as for a disconnect.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_node_request_cancelled() {
    use tokio::io::AsyncWriteExt as _;
    bounded(async {
        let limit = Duration::from_millis(300);
        let herd = Herd::with_idle_timeout(limit).await;
        // Far more than the sockets between them can buffer.
        let a = FakeOllama::builder()
            .models(["m"])
            .tokens(5_000_000)
            .tokens_per_sec(1_000_000.0)
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        let body = r#"{"model":"m","prompt":"hello"}"#;
        let mut hung = tokio::net::TcpStream::connect(herd.url.trim_start_matches("http://"))
            .await
            .expect("connect");
        hung.write_all(
            format!(
                "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let t0 = std::time::Instant::now();
        eventually("upstream cancelled", Duration::from_secs(10), || async {
            let s = a.stats();
            (s.cancelled == 1 && s.in_flight == 0).then_some(())
        })
        .await;
        assert!(t0.elapsed() >= limit, "cut after {:?}", t0.elapsed());
        herd.wait_stats("in-flight back to 0", |s| {
            s.nodes.iter().all(|n| n.in_flight == 0)
        })
        .await;
        assert_eq!(a.stats().completed, 0);
        drop(hung);
    })
    .await;
}

#[tokio::test]
async fn a_client_disconnect_while_waiting_for_the_first_byte_cancels_too() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        a.set_fault(Fault::Hang).await;
        let req = herd
            .http
            .post(herd.at("/api/generate"))
            .json(&json!({"model": "m", "prompt": "x"}))
            .timeout(Duration::from_millis(200))
            .send();
        assert!(
            req.await.is_err(),
            "the hung request should time out client-side"
        );
        eventually("upstream cancelled", Duration::from_secs(5), || async {
            let s = a.stats();
            (s.cancelled == 1 && s.in_flight == 0).then_some(())
        })
        .await;
        // Recorded, though no response began: nginx's 499, on the node waited on.
        let rec = newest_record(&herd).await;
        assert_eq!(rec["status"], 499, "{rec}");
        assert_eq!(rec["node"], "a", "{rec}");
        assert!(
            rec["error"]
                .as_str()
                .is_some_and(|e| e.contains("before the response began")),
            "{rec}"
        );
        herd.wait_stats("in-flight back to 0", |s| {
            s.nodes.iter().all(|n| n.in_flight == 0)
        })
        .await;
    })
    .await;
}

/// A client that stops sending its request body is cut off at the idle
/// limit; the request, which never reached a node, is recorded as a 499.
#[tokio::test]
async fn a_client_that_stops_sending_its_body_is_cut_off_and_recorded() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    bounded(async {
        let limit = Duration::from_millis(300);
        let herd = Herd::with_idle_timeout(limit).await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        let mut stalled = tokio::net::TcpStream::connect(herd.url.trim_start_matches("http://"))
            .await
            .expect("connect");
        stalled
            .write_all(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"model\":\"m\",")
            .await
            .expect("write");
        let t0 = std::time::Instant::now();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut got))
            .await
            .expect("herd closes the connection")
            .expect("read");
        assert!(t0.elapsed() >= limit, "cut after {:?}", t0.elapsed());
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        let rec = newest_record(&herd).await;
        assert_eq!(rec["status"], 499, "{rec}");
        assert_eq!(rec["path"], "/api/generate", "{rec}");
        assert!(rec["node"].is_null(), "{rec}");
        assert_eq!(a.stats().completed + a.stats().cancelled, 0);
    })
    .await;
}
