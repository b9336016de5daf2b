//! What the proxy tells about the requests it handled: history, its live
//! feed, per-node stats, `/metrics`, and in-flight counts on the nodes.

use std::time::Duration;

use futures_util::StreamExt;
use herd_testkit::FakeOllama;
use serde_json::{Value, json};

use super::*;

async fn list(herd: &Herd, query: &str) -> Value {
    let r = herd
        .http
        .get(herd.at(&format!("/apis/herd/v1/requests{query}")))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn every_request_is_recorded_newest_first_with_tokens() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["e"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["e"]).await;
        let (s, _, _) = herd.chat("m").await;
        assert_eq!(s, 200);
        let r = herd
            .post(
                "/api/generate",
                json!({"model": "m", "prompt": "one two three"}),
            )
            .await;
        let gen_lines = ndjson(&r.text().await.expect("body"));
        let gen_final = gen_lines.last().expect("final chunk").clone();
        let r = herd
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "messages": [{"role": "user", "content": "a b"}]}),
            )
            .await;
        let _ = r.text().await;
        let r = herd
            .post("/api/embed", json!({"model": "e", "input": "x y"}))
            .await;
        let _ = r.text().await;
        let (s, _, _) = herd.chat("missing").await;
        assert_eq!(s, 404);

        let v = list(&herd, "").await;
        assert_eq!(v["apiVersion"], "herd/v1");
        assert_eq!(v["kind"], "RequestList");
        let items = v["items"].as_array().expect("items");
        assert_eq!(items.len(), 5);
        let ids: Vec<u64> = items.iter().filter_map(|r| r["id"].as_u64()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        let missing = &items[0];
        assert_eq!(missing["status"], 404);
        assert_eq!(missing["model"], "missing");
        assert!(missing.get("node").is_none());
        assert_eq!(missing["error"], "model 'missing' not found");
        let embed = &items[1];
        assert_eq!(
            (embed["node"].as_str(), embed["path"].as_str()),
            (Some("b"), Some("/api/embed"))
        );
        assert_eq!(embed["tokensIn"], 2);
        // Finished normally, streamed or not: no error recorded.
        for r in &items[1..] {
            assert!(r.get("error").is_none(), "{r}");
            assert_eq!(r["status"], 200);
        }
        let oai = &items[2];
        assert_eq!(oai["path"], "/v1/chat/completions");
        assert_eq!(oai["tokensOut"], 3);
        assert_eq!(oai["stream"], false);
        let gen_rec = &items[3];
        assert_eq!(gen_rec["stream"], true);
        assert_eq!(gen_rec["tokensIn"], gen_final["prompt_eval_count"]);
        assert_eq!(gen_rec["tokensOut"], gen_final["eval_count"]);
        assert_eq!(gen_rec["tokensOut"], 3);
        assert_eq!(gen_rec["method"], "POST");
        assert!(gen_rec["ttftMs"].as_f64().is_some_and(|t| t > 0.0));
        assert!(gen_rec["latencyMs"].as_f64() >= gen_rec["ttftMs"].as_f64());
        assert!(gen_rec["time"].as_str().is_some_and(|t| t.ends_with('Z')));

        // Filters and limit.
        assert_eq!(
            list(&herd, "?node=b").await["items"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(
            list(&herd, "?model=m:latest").await["items"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(
            list(&herd, "?limit=2").await["items"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let r = herd
            .http
            .get(herd.at("/apis/herd/v1/requests?limit=lots"))
            .send()
            .await
            .expect("bad query");
        assert_eq!(r.status(), 400);
    })
    .await;
}

#[tokio::test]
async fn history_is_bounded() {
    bounded(async {
        let herd = Herd::with(ProxyConfig {
            request_history: 3,
            ..test_config()
        })
        .await;
        let a = fake(&["m"]).await;
        herd.add_fake("a", &a, &["m"]).await;
        for _ in 0..5 {
            herd.chat("m").await;
        }
        let v = list(&herd, "?limit=100").await;
        let ids: Vec<u64> = v["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0] - ids[2], 2);
    })
    .await;
}

#[tokio::test]
async fn watch_streams_new_records_as_they_complete() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        let r = herd
            .http
            .get(herd.at("/apis/herd/v1/requests?watch=true&node=a"))
            .send()
            .await
            .expect("watch");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let mut body = r.bytes_stream();
        // Send until a request lands on a; only a's records come through.
        let mut sent_to_a = 0;
        while sent_to_a == 0 {
            let (_, node, _) = herd.chat("m").await;
            sent_to_a += usize::from(node == "a");
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a record in time")
            .expect("stream open")
            .expect("bytes");
        let line: Value =
            serde_json::from_slice(chunk.split(|c| *c == b'\n').next().unwrap_or_default())
                .expect("record json");
        assert_eq!(line["node"], "a");
        assert_eq!(line["status"], 200);
        assert_eq!(line["path"], "/api/chat");
    })
    .await;
}

#[tokio::test]
async fn stats_and_metrics_count_per_node() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        for _ in 0..6 {
            let (s, _, _) = herd.chat("m").await;
            assert_eq!(s, 200);
        }
        herd.chat("unknown").await;
        let s = herd.stats().await;
        assert_eq!(s.kind, "RequestStats");
        let processed: u64 = s.nodes.iter().map(|n| n.processed).sum();
        assert_eq!(processed, 6);
        for n in &s.nodes {
            assert_eq!(n.errors, 0);
            assert_eq!(n.in_flight, 0);
            assert_eq!(n.models, ["m:latest"]);
            if n.processed > 0 {
                assert!(n.latency_ms.p50.is_some() && n.ttft_ms.p95.is_some());
            }
        }

        let r = herd
            .http
            .get(herd.at("/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.contains("openmetrics-text"))
        );
        let text = r.text().await.expect("text");
        let count = |node: &str| -> u64 {
            text.lines()
                .find(|l| {
                    l.starts_with("herd_proxy_requests_total{")
                        && l.contains(&format!("node=\"{node}\""))
                        && l.contains("code=\"200\"")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(count("a") + count("b"), 6, "{text}");
        for want in [
            "herd_proxy_requests_total{model=\"\",node=\"\",code=\"404\"} 1",
            "herd_proxy_node_ready{node=\"a\"} 1",
            "herd_proxy_node_in_flight{node=\"b\"} 0",
            "# TYPE herd_proxy_request_duration_seconds histogram",
            "# TYPE herd_proxy_time_to_first_token_seconds histogram",
            "herd_proxy_tokens_generated_total{model=\"m:latest\"",
        ] {
            assert!(text.contains(want), "metrics lack {want:?}:\n{text}");
        }
    })
    .await;
}

#[tokio::test]
async fn in_flight_counts_reach_the_node_status() {
    bounded(async {
        let herd = Herd::start().await;
        let a = FakeOllama::builder()
            .models(["m"])
            .ttft(Duration::from_millis(1))
            .tokens(100)
            .tokens_per_sec(50.0)
            .num_parallel(4)
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut r = herd
                .post("/api/generate", json!({"model": "m", "prompt": "x"}))
                .await;
            r.chunk().await.expect("read").expect("first chunk");
            streams.push(r);
        }
        let usage = |n: &herd_api::Node| n.status.usage.as_ref().map_or(0, |u| u.in_flight);
        eventually(
            "status.usage.inFlight = 2",
            Duration::from_secs(5),
            || async {
                let n = herd.nodes.get("a").await.ok()?;
                (usage(&n) == 2).then_some(())
            },
        )
        .await;
        assert_eq!(herd.stats().await.nodes[0].in_flight, 2);
        drop(streams);
        eventually(
            "status.usage.inFlight = 0",
            Duration::from_secs(5),
            || async {
                let n = herd.nodes.get("a").await.ok()?;
                (usage(&n) == 0).then_some(())
            },
        )
        .await;
    })
    .await;
}

/// A writer that replaces the whole `status.usage` with its own figures (as a
/// nodelet written in another language would) leaves the router's in-flight
/// count alone, so the router has nothing to write back: every event on the
/// node is one of that writer's writes.
#[tokio::test]
async fn replacing_usage_starts_no_write_back_loop() {
    bounded(async {
        let herd = Herd::start().await;
        let a = FakeOllama::builder()
            .models(["m"])
            .ttft(Duration::from_millis(1))
            .tokens(500)
            .tokens_per_sec(50.0)
            .num_parallel(4)
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut r = herd
                .post("/api/generate", json!({"model": "m", "prompt": "x"}))
                .await;
            r.chunk().await.expect("read").expect("first chunk");
            streams.push(r);
        }
        let usage = |n: &herd_api::Node| n.status.usage.as_ref().map_or(0, |u| u.in_flight);
        // The router's count is in before the watch starts, and stays.
        eventually("inFlight 2", Duration::from_secs(5), || async {
            let n = herd.nodes.get("a").await.ok()?;
            (usage(&n) == 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let settled = herd.nodes.get("a").await.expect("get");
        assert_eq!(usage(&settled), 2);
        let rv = settled.metadata.resource_version.clone().expect("rv");

        let watch = herd
            .http
            .get(herd.at(&format!(
                "/apis/herd/v1/nodes?watch=true&resourceVersion={rv}&timeoutSeconds=3"
            )))
            .send()
            .await
            .expect("watch");
        assert_eq!(watch.status(), 200);
        let writes = 6;
        for i in 0..writes {
            let cpu = f64::from(10 + i);
            if i % 2 == 0 {
                // PUT of the whole status, `usage` without `inFlight`.
                let mut body =
                    serde_json::to_value(herd.nodes.get("a").await.expect("get")).expect("json");
                body["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("resourceVersion");
                body["status"]["usage"] = json!({"cpuPercent": cpu, "memoryPercent": 5.0});
                let r = herd
                    .http
                    .put(herd.at("/apis/herd/v1/nodes/a/status"))
                    .json(&body)
                    .send()
                    .await
                    .expect("put");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            } else {
                // A merge patch that drops `usage` and sets its own.
                for p in [
                    json!({"status": {"usage": null}}),
                    json!({"status": {"usage": {"cpuPercent": cpu}}}),
                ] {
                    let r = herd
                        .http
                        .patch(herd.at("/apis/herd/v1/nodes/a/status"))
                        .header("content-type", "application/merge-patch+json")
                        .body(p.to_string())
                        .send()
                        .await
                        .expect("patch");
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                }
            }
        }
        // The stream ends 3 s after it began, long after the last write: the
        // router, reporting every 50 ms, would have written back by then.
        let events: Vec<Value> = ndjson(&watch.text().await.expect("events"))
            .into_iter()
            .filter(|e| e["type"] == "MODIFIED")
            .collect();
        let counts: Vec<u64> = events
            .iter()
            .map(|e| {
                e["object"]["status"]["usage"]["inFlight"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        // Each PUT is one event, each pair of patches two; none from the router.
        assert_eq!(events.len(), 9, "in-flight counts per event: {counts:?}");
        assert!(counts.iter().all(|n| *n == 2), "{counts:?}");
        let end = herd.nodes.get("a").await.expect("get");
        assert_eq!(usage(&end), 2);
        assert_eq!(end.status.usage.map(|u| u.cpu_percent), Some(15.0));
        drop(streams);
    })
    .await;
}
