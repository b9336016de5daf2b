//! Fleet-wide answers: unions, the lowest version, and fan-outs with one
//! merged answer.

use std::time::Duration;

use herd_testkit::FakeOllama;
use serde_json::{Value, json};

use super::*;

async fn get_json(herd: &Herd, path: &str) -> Value {
    let r = herd.http.get(herd.at(path)).send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn tags_and_ps_are_the_union_over_ready_nodes() {
    bounded(async {
        let herd = Herd::start().await;
        let a = fake(&["llama3", "qwen2.5:0.5b"]).await;
        let b = fake(&["qwen2.5:0.5b", "phi3:mini"]).await;
        let c = fake(&["only-on-c"]).await;
        herd.add_fake("a", &a, &["llama3", "qwen2.5:0.5b"]).await;
        herd.add_fake("b", &b, &["qwen2.5:0.5b", "phi3:mini"]).await;
        herd.add_fake("c", &c, &["only-on-c"]).await;
        herd.status("c", |s| s.conditions = vec![ready_condition(false)])
            .await;
        herd.wait_stats("c not ready", |s| {
            s.nodes.iter().any(|n| n.node == "c" && !n.routable)
        })
        .await;
        let tags = get_json(&herd, "/api/tags").await;
        assert_eq!(names(&tags), ["llama3:latest", "phi3:mini", "qwen2.5:0.5b"]);
        let m = &tags["models"][0];
        for field in ["name", "model", "modified_at", "size", "digest", "details"] {
            assert!(m.get(field).is_some(), "tags entry lacks {field}: {m}");
        }
        let r = herd
            .http
            .head(herd.at("/api/tags"))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 200);
        // Nothing loaded yet; then one model on each of two nodes.
        assert_eq!(
            names(&get_json(&herd, "/api/ps").await),
            Vec::<String>::new()
        );
        let (s1, n1, _) = herd.chat("llama3").await;
        let (s2, n2, _) = herd.chat("phi3:mini").await;
        assert_eq!((s1, n1.as_str(), s2, n2.as_str()), (200, "a", 200, "b"));
        let ps = get_json(&herd, "/api/ps").await;
        assert_eq!(names(&ps), ["llama3:latest", "phi3:mini"]);
        assert!(ps["models"][0].get("expires_at").is_some());
    })
    .await;
}

#[tokio::test]
async fn version_is_the_lowest_among_ready_nodes() {
    bounded(async {
        let herd = Herd::start().await;
        assert_eq!(
            get_json(&herd, "/api/version").await,
            json!({"version": herd_proxy::UNKNOWN_VERSION})
        );
        let a = FakeOllama::builder().version("0.33.0").start().await;
        let b = FakeOllama::builder().version("0.6.2").start().await;
        let c = FakeOllama::builder().version("0.1.0").start().await;
        herd.add_fake("a", &a, &[]).await;
        herd.add_fake("b", &b, &[]).await;
        // c reports its version in status but is not ready: it does not count.
        herd.add_fake("c", &c, &[]).await;
        herd.status("c", |s| {
            s.conditions = vec![ready_condition(false)];
            s.info = Some(info("0.1.0"));
        })
        .await;
        herd.status("a", |s| s.info = Some(info("0.33.0"))).await;
        herd.wait_stats("c not ready", |s| {
            s.nodes.iter().filter(|n| n.routable).count() == 2
        })
        .await;
        // a from its status, b asked live (it reported none).
        assert_eq!(
            get_json(&herd, "/api/version").await,
            json!({"version": "0.6.2"})
        );
        assert_eq!(b.stats().requests_to("/api/version"), 1);
        assert_eq!(a.stats().requests_to("/api/version"), 0);
    })
    .await;
}

/// A fake whose pulls take a while, so progress is visible.
async fn puller(models: &[&str]) -> FakeOllama {
    FakeOllama::builder()
        .models(models.iter().copied())
        .pullable(["newmodel:7b", "m"])
        .pull_duration(Duration::from_millis(150))
        .ttft(Duration::from_millis(2))
        .tokens(3)
        .tokens_per_sec(500.0)
        .start()
        .await
}

#[tokio::test]
async fn pull_fans_out_and_merges_progress_into_one_stream() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (puller(&["m"]).await, puller(&["m"]).await);
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        let r = herd
            .post("/api/pull", json!({"model": "newmodel:7b"}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().ok(),
            Some("application/x-ndjson")
        );
        assert_eq!(node_of(&r), "a,b");
        let lines = ndjson(&r.text().await.expect("body"));
        assert_eq!(lines[0], json!({"status": "pulling manifest"}));
        assert_eq!(lines.last(), Some(&json!({"status": "success"})));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l["status"] == "pulling manifest")
                .count(),
            1,
            "each status once"
        );
        assert_eq!(lines.iter().filter(|l| l["status"] == "success").count(), 1);
        // Layer progress: one bar for both nodes, growing to its total.
        let layer: Vec<&Value> = lines.iter().filter(|l| l.get("digest").is_some()).collect();
        assert!(layer.len() > 4, "{lines:?}");
        let digest = layer[0]["digest"].clone();
        let bar: Vec<(u64, u64)> = layer
            .iter()
            .filter(|l| l["digest"] == digest)
            .map(|l| {
                (
                    l["total"].as_u64().unwrap_or(0),
                    l["completed"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let total = bar[0].0;
        assert!(
            bar.iter().all(|(t, _)| *t == total),
            "total is stable: {bar:?}"
        );
        assert!(
            bar.windows(2).all(|w| w[1].1 >= w[0].1),
            "completed never shrinks: {bar:?}"
        );
        assert_eq!(bar.last().map(|b| b.1), Some(total));
        // Twice one node's layer: the sum over two nodes. (A third fake,
        // not in the fleet, says how big the layer is.)
        let c = puller(&[]).await;
        let direct = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}/api/pull", c.url()))
            .json(&json!({"model": "newmodel:7b"}))
            .send()
            .await
            .expect("direct pull")
            .text()
            .await
            .expect("text");
        let single = ndjson(&direct)
            .iter()
            .find(|l| l["digest"] == digest)
            .and_then(|l| l["total"].as_u64())
            .expect("layer total");
        assert_eq!(total, 2 * single);
        // Pulled everywhere, and usable at once (before any heartbeat).
        let (status, _, body) = herd.chat("newmodel:7b").await;
        assert_eq!(status, 200, "{body}");
        for f in [&a, &b] {
            assert_eq!(f.stats().requests_to("/api/pull"), 1);
        }
        let tags = get_json(&herd, "/api/tags").await;
        assert!(names(&tags).contains(&"newmodel:7b".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn pull_failing_on_some_nodes_ends_with_an_error_naming_them() {
    bounded(async {
        let herd = Herd::start().await;
        let a = puller(&["m"]).await;
        let b = FakeOllama::builder()
            .models(["m"])
            .pullable(["something-else"])
            .start()
            .await;
        herd.add_fake("a", &a, &["m"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        let r = herd
            .post("/api/pull", json!({"model": "newmodel:7b"}))
            .await;
        assert_eq!(r.status(), 200);
        let lines = ndjson(&r.text().await.expect("body"));
        let last = lines.last().expect("lines");
        let err = last["error"].as_str().expect("an error line");
        assert!(err.contains("failed on 1 of 2 nodes"), "{err}");
        assert!(
            err.contains("b: pull model manifest: file does not exist"),
            "{err}"
        );
        assert!(!lines.iter().any(|l| l["status"] == "success"));

        // Not streamed: one object, a 500 with the same error.
        let r = herd
            .post(
                "/api/pull",
                json!({"model": "newmodel:7b", "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 500);
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("b: ")),
            "{v}"
        );

        // Unknown everywhere: Ollama's own message, once.
        let r = herd.post("/api/pull", json!({"model": "nothing"})).await;
        let lines = ndjson(&r.text().await.expect("body"));
        assert_eq!(
            lines.last().and_then(|l| l["error"].as_str()),
            Some("pull model manifest: file does not exist (on every node: a, b)")
        );
    })
    .await;
}

#[tokio::test]
async fn pull_without_stream_answers_one_object() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (puller(&[]).await, puller(&[]).await);
        herd.add_fake("a", &a, &[]).await;
        herd.add_fake("b", &b, &[]).await;
        let r = herd
            .post("/api/pull", json!({"name": "m", "stream": false}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.json::<Value>().await.expect("json"),
            json!({"status": "success"})
        );
    })
    .await;
}

#[tokio::test]
async fn delete_and_copy_fan_out() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["m", "x"]).await, fake(&["m"]).await);
        herd.add_fake("a", &a, &["m", "x"]).await;
        herd.add_fake("b", &b, &["m"]).await;
        // Copy where the source exists (a 404 elsewhere is fine).
        let r = herd
            .post("/api/copy", json!({"source": "x", "destination": "y"}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "a");
        let (status, node, _) = herd.chat("y").await;
        assert_eq!((status, node.as_str()), (200, "a"));
        // Delete everywhere.
        let r = herd
            .http
            .delete(herd.at("/api/delete"))
            .json(&json!({"model": "m"}))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "a,b");
        for f in [&a, &b] {
            assert_eq!(f.stats().requests_to("/api/delete"), 1);
        }
        // Gone from routing at once, and gone from the nodes.
        let (status, _, body) = herd.chat("m").await;
        assert_eq!(status, 404, "{body}");
        let tags = get_json(&herd, "/api/tags").await;
        assert!(!names(&tags).iter().any(|n| n == "m:latest"));
        // Deleting it again: every node says 404, so does the router.
        let r = herd
            .http
            .delete(herd.at("/api/delete"))
            .json(&json!({"model": "m"}))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"], "model 'm' not found");
    })
    .await;
}

#[tokio::test]
async fn blobs_and_create_land_on_the_same_node() {
    bounded(async {
        let herd = Herd::start().await;
        let (a, b) = (fake(&["base"]).await, fake(&["base"]).await);
        herd.add_fake("a", &a, &["base"]).await;
        herd.add_fake("b", &b, &["base"]).await;
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = herd
            .http
            .post(herd.at(&format!("/api/blobs/{digest}")))
            .body(vec![7u8; 100_000])
            .send()
            .await
            .expect("blob");
        assert!(r.status().is_success(), "{}", r.status());
        let blob_node = node_of(&r);
        let r = herd
            .http
            .head(herd.at(&format!("/api/blobs/{digest}")))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), blob_node);
        let r = herd
            .post(
                "/api/create",
                json!({"model": "mine", "files": {"model.gguf": digest}, "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        // A create from an existing model; the new one is routable at once.
        let r = herd
            .post("/api/create", json!({"model": "derived", "from": "base"}))
            .await;
        assert_eq!(r.status(), 200);
        let created_on = node_of(&r);
        let lines = ndjson(&r.text().await.expect("body"));
        assert_eq!(lines.last(), Some(&json!({"status": "success"})));
        let (status, node, _) = herd.chat("derived").await;
        assert_eq!((status, node), (200, created_on));
    })
    .await;
}
