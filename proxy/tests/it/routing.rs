//! The specification's acceptance scenarios for choosing nodes, and
//! model-aware routing.

use std::time::Duration;

use futures_util::future::join_all;
use herd_api::NodeUsage;
use herd_proxy::Strategy;
use herd_testkit::FakeOllama;

use super::*;

#[tokio::test]
async fn two_nodes_both_answer_chat() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["llama3.2:1b"]).await, fake(&["llama3.2:1b"]).await);
        herd.add_fake("a", &a, &["llama3.2:1b"]).await;
        herd.add_fake("b", &b, &["llama3.2:1b"]).await;
        let mut nodes = Vec::new();
        for _ in 0..10 {
            let (status, node, body) = herd.chat("llama3.2:1b").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["done"], true);
            assert_eq!(body["message"]["role"], "assistant");
            nodes.push(node);
        }
        let t = tally(&nodes);
        assert_eq!(t.keys().cloned().collect::<Vec<_>>(), ["a", "b"], "{t:?}");
        assert_eq!(
            a.stats().requests_to("/api/chat") + b.stats().requests_to("/api/chat"),
            10
        );
    })
    .await;
}

#[tokio::test]
async fn one_node_serves_five_concurrent_requests() {
    bounded(async {
        let herd = Herd::start().await;
        // One slot: the node queues, as Ollama does; all five still succeed.
        let a = FakeOllama::builder()
            .models(["llama3"])
            .ttft(Duration::from_millis(10))
            .tokens(3)
            .tokens_per_sec(300.0)
            .num_parallel(1)
            .start()
            .await;
        herd.add_fake("a", &a, &["llama3"]).await;
        let results = join_all((0..5).map(|_| herd.chat("llama3"))).await;
        for (status, node, body) in &results {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(node, "a");
        }
        assert_eq!(a.stats().requests_to("/api/chat"), 5);
        assert_eq!(a.stats().completed, 5);
    })
    .await;
}

#[tokio::test]
async fn round_robin_gives_three_idle_nodes_three_each_of_nine() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let fakes = [fake(&["m"]).await, fake(&["m"]).await, fake(&["m"]).await];
        for (name, f) in ["a", "b", "c"].iter().zip(&fakes) {
            herd.add_fake(name, f, &["m"]).await;
        }
        for _ in 0..9 {
            let (status, _, body) = herd.chat("m").await;
            assert_eq!(status, 200, "{body}");
        }
        let counts: Vec<u64> = fakes
            .iter()
            .map(|f| f.stats().requests_to("/api/chat"))
            .collect();
        assert_eq!(counts, [3, 3, 3]);
    })
    .await;
}

#[tokio::test]
async fn p2c_spreads_thirty_requests_eight_to_twelve_each() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::P2c)).await;
        let fakes = [fake(&["m"]).await, fake(&["m"]).await, fake(&["m"]).await];
        for (name, f) in ["a", "b", "c"].iter().zip(&fakes) {
            herd.add_fake(name, f, &["m"]).await;
        }
        let mut nodes = Vec::new();
        for _ in 0..30 {
            let (status, node, body) = herd.chat("m").await;
            assert_eq!(status, 200, "{body}");
            nodes.push(node);
        }
        let t = tally(&nodes);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t.values().all(|n| (8..=12).contains(n)), "{t:?}");
    })
    .await;
}

#[tokio::test]
async fn a_node_at_ninety_percent_cpu_loses_to_an_idle_one() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::P2c)).await;
        let (hot, idle) = (fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("hot", &hot, &["m"]).await;
        herd.add_fake("idle", &idle, &["m"]).await;
        herd.status("hot", |s| {
            s.usage = Some(NodeUsage {
                cpu_percent: 90.0,
                memory_percent: 40.0,
                in_flight: 0,
            });
        })
        .await;
        herd.status("idle", |s| {
            s.usage = Some(NodeUsage {
                cpu_percent: 3.0,
                memory_percent: 40.0,
                in_flight: 0,
            });
        })
        .await;
        herd.wait_stats("heartbeats seen", |s| {
            s.nodes
                .iter()
                .any(|n| n.node == "hot" && n.cpu_percent == 90.0)
                && s.nodes
                    .iter()
                    .any(|n| n.node == "idle" && n.cpu_percent == 3.0)
        })
        .await;
        for _ in 0..12 {
            let (status, node, _) = herd.chat("m").await;
            assert_eq!(status, 200);
            assert_eq!(node, "idle");
        }
        assert_eq!(hot.stats().requests_to("/api/chat"), 0);
    })
    .await;
}

#[tokio::test]
async fn least_busy_avoids_the_node_with_requests_in_flight() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::LeastBusy)).await;
        let slow = |m: &'static str| {
            FakeOllama::builder()
                .models([m])
                .ttft(Duration::from_millis(1))
                .tokens(40)
                .tokens_per_sec(40.0)
                .num_parallel(8)
                .start()
        };
        let (a, b) = (slow("m").await, slow("m").await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        // Hold one long stream open, then the next request must go elsewhere.
        let first = herd
            .post(
                "/api/generate",
                serde_json::json!({"model": "m", "prompt": "x"}),
            )
            .await;
        let busy = node_of(&first);
        for _ in 0..3 {
            // One token: done long before the 1 s stream above.
            let r = herd
                .post(
                    "/api/chat",
                    serde_json::json!({"model": "m", "stream": false, "options": {"num_predict": 1},
                        "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            assert_eq!(r.status(), 200);
            assert_ne!(
                node_of(&r),
                busy,
                "least_busy sent a request to the busy node"
            );
        }
        drop(first);
    })
    .await;
}

#[tokio::test]
async fn requests_go_only_to_nodes_holding_the_model() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["llama3", "phi3:mini"]).await;
        let b = fake(&["qwen2.5:0.5b"]).await;
        let c = fake(&["llama3", "qwen2.5:0.5b"]).await;
        herd.add_fake("a", &a, &["llama3:latest", "phi3:mini"])
            .await;
        herd.add_fake("b", &b, &["qwen2.5:0.5b"]).await;
        herd.add_fake("c", &c, &["llama3", "qwen2.5:0.5b"]).await;
        let mut seen = std::collections::BTreeMap::<&str, Vec<String>>::new();
        for model in ["llama3", "llama3:latest", "qwen2.5:0.5b", "phi3:mini"] {
            for _ in 0..6 {
                let (status, node, body) = herd.chat(model).await;
                assert_eq!(status, 200, "{model}: {body}");
                seen.entry(model).or_default().push(node);
            }
        }
        let set = |m: &str| {
            let mut v = seen[m].clone();
            v.sort();
            v.dedup();
            v
        };
        assert!(set("llama3").iter().all(|n| n == "a" || n == "c"));
        assert!(set("llama3:latest").iter().all(|n| n == "a" || n == "c"));
        assert!(set("qwen2.5:0.5b").iter().all(|n| n == "b" || n == "c"));
        assert_eq!(set("phi3:mini"), ["a"]);
        // Nobody has it: Ollama's 404.
        let (status, node, body) = herd.chat("mistral").await;
        assert_eq!(status, 404);
        assert_eq!(node, "");
        assert_eq!(body["error"], "model 'mistral' not found");
    })
    .await;
}

/// A node with the model loaded is preferred to nodes busy with another
/// model (loading it there would crowd that model out), but not to cold
/// nodes, which join in so a fresh fleet spreads evenly.
#[tokio::test]
async fn nodes_with_the_model_loaded_are_preferred_to_nodes_serving_others() {
    bounded(async {
        let herd = Herd::with(config_with(Strategy::RoundRobin)).await;
        let (a, b, c) = (
            fake(&["m", "other"]).await,
            fake(&["m"]).await,
            fake(&["m", "other"]).await,
        );
        herd.add_fake("a", &a, &["m", "other"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        herd.add_fake("c", &c, &["m", "other"]).await;
        for n in ["a", "c"] {
            herd.status(n, |s| s.models[1].loaded = true).await;
        }
        herd.status("b", |s| s.models[0].loaded = true).await;
        herd.wait_stats("models loaded", |s| {
            ["a", "b", "c"].iter().all(|name| {
                s.nodes
                    .iter()
                    .any(|n| n.node == *name && !n.loaded_models.is_empty())
            })
        })
        .await;
        for _ in 0..6 {
            let (status, node, _) = herd.chat("m").await;
            assert_eq!(status, 200);
            assert_eq!(node, "b");
        }
        // `other` unloaded on c (Ollama's keep-alive ran out): c is cold and
        // takes its turn.
        herd.status("c", |s| s.models[1].loaded = false).await;
        herd.wait_stats("c cold", |s| {
            s.nodes
                .iter()
                .any(|n| n.node == "c" && n.loaded_models.is_empty())
        })
        .await;
        let mut by = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..6 {
            let (status, node, _) = herd.chat("m").await;
            assert_eq!(status, 200);
            *by.entry(node).or_default() += 1;
        }
        assert_eq!(by, [("b".into(), 3), ("c".into(), 3)].into());
    })
    .await;
}

#[tokio::test]
async fn cordoned_and_zero_weight_nodes_take_no_new_requests() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b, c) = (fake(&["m"]).await, fake(&["m"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        herd.add_fake("c", &c, &["m"]).await;
        herd.nodes
            .patch(
                "a",
                &PostParams::default(),
                &serde_json::json!({"spec": {"unschedulable": true}}),
            )
            .await
            .expect("cordon");
        herd.status("b", |s| {
            s.routing = Some(herd_api::RoutingStatus {
                weight: 0,
                reason: "test".into(),
            });
        })
        .await;
        herd.wait_stats("a cordoned, b weight 0", |s| {
            s.nodes.iter().filter(|n| n.routable).count() == 1
        })
        .await;
        for _ in 0..5 {
            let (status, node, _) = herd.chat("m").await;
            assert_eq!(status, 200);
            assert_eq!(node, "c");
        }
    })
    .await;
}

/// `herd server` answers the model-routed `POST`s through the proxy's
/// shortcut and everything else through the router; the router alone must
/// answer the same requests the same way.
#[tokio::test]
async fn the_shortcut_and_the_router_answer_alike() {
    bounded(async {
        let node = fake(&["llama3.2:1b"]).await;
        let mut seen = Vec::new();
        for herd in [
            Herd::start().await,
            Herd::router_only(test_config()).await,
        ] {
            herd.add_fake("a", &node, &["llama3.2:1b"]).await;
            let mut answers = Vec::new();
            for (method, path, body) in [
                ("POST", "/api/chat", r#"{"model":"llama3.2:1b","stream":false,"messages":[{"role":"user","content":"hi"}]}"#),
                ("POST", "/api/generate", r#"{"model":"llama3.2:1b","prompt":"hi","stream":false}"#),
                ("POST", "/api/show", r#"{"model":"llama3.2:1b"}"#),
                ("POST", "/v1/chat/completions", r#"{"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}]}"#),
                ("POST", "/api/generate", r#"{"model":"nope"}"#),
                ("POST", "/api/generate", "{not json"),
                ("GET", "/api/generate", ""),
                ("POST", "/api/generate/", "{}"),
            ] {
                let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let r = herd
                    .http
                    .request(method.clone(), format!("{}{path}", herd.url))
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let status = r.status().as_u16();
                let node = r
                    .headers()
                    .get("x-herd-node")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                answers.push(format!("{method} {path} {status} {node:?}"));
            }
            seen.push(answers);
        }
        assert_eq!(seen[0], seen[1], "shortcut (left) and router (right) differ");
        assert!(seen[0][0].ends_with("200 Some(\"a\")"), "{:?}", seen[0]);
        assert!(seen[0][4].contains(" 404 "), "{:?}", seen[0]);
        assert!(seen[0][5].contains(" 400 "), "{:?}", seen[0]);
        assert!(seen[0][6].contains(" 405 "), "{:?}", seen[0]);
        assert!(seen[0][7].contains(" 404 "), "{:?}", seen[0]);
    })
    .await;
}

/// A web page in a browser gets Ollama's CORS answers from the router: the
/// preflight, the allowed origin named on the answer (once, not again by
/// the node), and a 403 for an origin not on the list that never reaches a
/// node.
#[tokio::test]
async fn browsers_get_ollamas_cors_answers() {
    bounded(async {
        let node = fake(&["llama3.2:1b"]).await;
        let herd = Herd::with(herd_proxy::ProxyConfig {
            origins: vec!["https://chat.example.com".to_owned()],
            ..test_config()
        })
        .await;
        herd.add_fake("a", &node, &["llama3.2:1b"]).await;
        let chat = serde_json::json!({"model":"llama3.2:1b","stream":false,
            "messages":[{"role":"user","content":"hi"}]});

        let r = herd
            .http
            .request(reqwest::Method::OPTIONS, format!("{}/api/chat", herd.url))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .expect("preflight");
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .expect("str")
                .contains("POST")
        );
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .expect("str")
                .contains("Content-Type")
        );

        for origin in ["http://localhost:3000", "https://chat.example.com"] {
            let r = herd
                .http
                .post(format!("{}/api/chat", herd.url))
                .header("origin", origin)
                .json(&chat)
                .send()
                .await
                .expect("chat");
            assert_eq!(r.status(), 200, "{origin}");
            let allow: Vec<_> = r
                .headers()
                .get_all("access-control-allow-origin")
                .iter()
                .collect();
            assert_eq!(allow, [origin], "exactly one Access-Control-Allow-Origin");
            assert_eq!(r.headers()["x-herd-node"], "a");
        }
        // A path Ollama does not serve: its 404, readable by an allowed page,
        // 403 to any other, and a preflight answered as for any Ollama path.
        for path in ["/api/nope", "/v1/nope/deeper"] {
            let r = herd.http.get(herd.at(path)).send().await.expect("404");
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(r.text().await.expect("body"), "404 page not found");
            let r = herd
                .http
                .get(herd.at(path))
                .header("origin", "https://chat.example.com")
                .send()
                .await
                .expect("404 from a page");
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(
                r.headers()["access-control-allow-origin"],
                "https://chat.example.com"
            );
            let r = herd
                .http
                .get(herd.at(path))
                .header("origin", "https://evil.example.com")
                .send()
                .await
                .expect("403");
            assert_eq!(r.status(), 403, "{path}");
            let r = herd
                .http
                .request(reqwest::Method::OPTIONS, herd.at(path))
                .header("origin", "http://localhost:3000")
                .header("access-control-request-method", "POST")
                .send()
                .await
                .expect("preflight");
            assert_eq!(r.status(), 204, "{path}");
        }
        // herd's own API keeps its Kubernetes-style 404.
        let r = herd
            .http
            .get(herd.at("/apis/herd/v1/nope"))
            .send()
            .await
            .expect("api 404");
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<serde_json::Value>().await.expect("status")["kind"],
            "Status"
        );

        let r = herd
            .http
            .get(format!("{}/api/tags", herd.url))
            .header("origin", "http://127.0.0.1:5173")
            .send()
            .await
            .expect("tags");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://127.0.0.1:5173"
        );

        let before = node.stats().requests_to("/api/chat");
        for method in [reqwest::Method::OPTIONS, reqwest::Method::POST] {
            let r = herd
                .http
                .request(method.clone(), format!("{}/api/chat", herd.url))
                .header("origin", "https://evil.example")
                .json(&chat)
                .send()
                .await
                .expect("evil");
            assert_eq!(r.status(), 403, "{method}");
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
        assert_eq!(
            node.stats().requests_to("/api/chat"),
            before,
            "a forbidden origin reached a node"
        );

        // Not a browser: no CORS headers.
        let r = herd
            .http
            .post(format!("{}/api/chat", herd.url))
            .json(&chat)
            .send()
            .await
            .expect("plain");
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("access-control-allow-origin").is_none());
    })
    .await;
}
