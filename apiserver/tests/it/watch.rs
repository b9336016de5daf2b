use std::time::Duration;

use futures_util::StreamExt;
use herd_apiserver::Config;
use serde_json::{Value, json};

use crate::{TestServer, node, rv};

/// Reads NDJSON watch events from a streaming response.
struct Lines {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Lines {
    async fn open(s: &TestServer, query: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(s.path(&format!("/nodes?watch=true{query}")))
            .send()
            .await
            .expect("watch");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
        Self {
            stream: resp.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event, or None when the stream ends; panics after 10 s.
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(serde_json::from_slice(&line).expect("json line"));
                }
                match self.stream.next().await {
                    Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        })
        .await
        .expect("watch event within 10s")
    }

    async fn next_non_bookmark(&mut self) -> Option<Value> {
        loop {
            let ev = self.next().await?;
            if ev["type"] != "BOOKMARK" {
                return Some(ev);
            }
        }
    }
}

#[tokio::test]
async fn watch_replays_then_goes_live() {
    let s = TestServer::start().await;
    let (_, a) = s.post("/nodes", node("a")).await;
    s.patch("/nodes/a", json!({"spec":{"weight":5}})).await;
    s.post("/nodes", node("b")).await;
    s.delete("/nodes/b").await;
    // An event of another kind in between must not appear in a node watch.
    s.post("/modelassignments", crate::assignment("m", "llama3"))
        .await;

    let mut w = Lines::open(&s, &format!("&resourceVersion={}", rv(&a))).await;
    let types: Vec<(String, String)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let e = w.next_non_bookmark().await.expect("event");
            v.push((
                e["type"].as_str().unwrap_or("").to_owned(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ));
        }
        v
    };
    assert_eq!(
        types,
        [
            ("MODIFIED".into(), "a".into()),
            ("ADDED".into(), "b".into()),
            ("DELETED".into(), "b".into())
        ]
    );

    // Live: a write made now arrives on the open stream.
    let (_, c) = s.post("/nodes", node("c")).await;
    let e = w.next_non_bookmark().await.expect("live event");
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "c");
    assert_eq!(rv(&e["object"]), rv(&c));
}

#[tokio::test]
async fn watch_without_version_starts_with_current_objects() {
    let s = TestServer::start().await;
    s.post("/nodes", node("a")).await;
    s.post("/nodes", node("b")).await;
    s.delete("/nodes/b").await;
    let mut w = Lines::open(&s, "").await;
    let e = w.next_non_bookmark().await.expect("event");
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    s.patch("/nodes/a", json!({"spec":{"weight":1}})).await;
    let e = w.next_non_bookmark().await.expect("event");
    assert_eq!(e["type"], "MODIFIED");
}

#[tokio::test]
async fn watch_filters_by_label_selector() {
    let s = TestServer::start().await;
    let mut w = Lines::open(&s, "&labelSelector=gpu%3Dnvidia").await;
    s.post("/nodes", node("plain")).await;
    let mut n = node("gpu");
    n["metadata"]["labels"] = json!({"gpu":"nvidia"});
    s.post("/nodes", n).await;
    let e = w.next_non_bookmark().await.expect("event");
    assert_eq!(e["object"]["metadata"]["name"], "gpu");
}

/// As in Kubernetes: a change that moves an object into a watch's label
/// selection arrives as `ADDED`, one that moves it out as `DELETED` (with
/// its new state), and changes outside the selection not at all.
#[tokio::test]
async fn objects_entering_and_leaving_the_selection_are_added_and_deleted() {
    let s = TestServer::start().await;
    s.post("/nodes", node("n")).await;
    let mut w = Lines::open(&s, "&labelSelector=gpu%3Dnvidia").await;
    let labels = |v: serde_json::Value| json!({"metadata": {"labels": v}});
    s.patch("/nodes/n", labels(json!({"gpu": "nvidia"}))).await;
    s.patch("/nodes/n", labels(json!({"gpu": "nvidia", "rack": "2"})))
        .await;
    s.patch("/nodes/n", labels(json!({"gpu": null}))).await;
    s.patch("/nodes/n", labels(json!({"rack": "3"}))).await;
    s.patch("/nodes/n", labels(json!({"gpu": "nvidia"}))).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = w.next_non_bookmark().await.expect("event");
        seen.push((
            e["type"].as_str().unwrap_or_default().to_owned(),
            e["object"]["metadata"]["labels"]["rack"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    let want: Vec<(String, String)> = [
        ("ADDED", ""),
        ("MODIFIED", "2"),
        ("DELETED", "2"),
        ("ADDED", "3"),
    ]
    .iter()
    .map(|(t, r)| ((*t).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn too_old_version_gets_410_and_the_stream_closes() {
    let mut config = Config::new(tempfile::tempdir().expect("tmp").keep());
    config.watch_window = 5;
    let s = TestServer::start_with(config).await;
    for i in 0..20 {
        s.post("/nodes", node(&format!("n{i}"))).await;
    }
    let mut w = Lines::open(&s, "&resourceVersion=2").await;
    let e = w.next().await.expect("error event");
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Gone");
    assert!(w.next().await.is_none(), "stream closes after the 410");

    // A version inside the window still replays.
    let mut w = Lines::open(&s, "&resourceVersion=17").await;
    let e = w.next_non_bookmark().await.expect("event");
    assert_eq!(rv(&e["object"]), 18);
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn idle_watch_gets_bookmarks_at_the_current_revision() {
    let mut config = Config::new(tempfile::tempdir().expect("tmp").keep());
    config.bookmark_interval = Duration::from_millis(100);
    let s = TestServer::start_with(config).await;
    let (_, a) = s.post("/nodes", node("a")).await;
    // Changes to another kind move the revision without node events.
    let (_, m) = s
        .post("/modelassignments", crate::assignment("m", "llama3"))
        .await;
    let mut w = Lines::open(&s, &format!("&resourceVersion={}", rv(&a))).await;
    let e = w.next().await.expect("bookmark");
    assert_eq!(e["type"], "BOOKMARK", "{e}");
    assert_eq!(e["object"]["kind"], "Node");
    assert_eq!(
        rv(&e["object"]),
        rv(&m),
        "bookmark carries the latest revision seen"
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn slow_watcher_does_not_slow_writers_or_other_watchers() {
    let s = TestServer::start().await;
    // A watcher that never reads: its socket buffers fill and it stalls.
    let stalled = reqwest::Client::new()
        .get(s.path("/nodes?watch=true"))
        .send()
        .await
        .expect("watch");
    let mut live = Lines::open(&s, "").await;
    let mut big = node("big");
    big["metadata"]["annotations"] = json!({"pad": "x".repeat(100_000)});
    s.post("/nodes", big).await;
    let started = std::time::Instant::now();
    for i in 0..200 {
        let (code, _) = s
            .patch(
                "/nodes/big",
                json!({"metadata":{"labels":{"i": i.to_string()}}}),
            )
            .await;
        assert_eq!(code, 200);
    }
    // 200 events of 100 KB are far more than socket buffers hold, so the
    // stalled watcher is behind; writers and the live watcher must not care.
    let mut seen = 0;
    while seen < 201 {
        let e = live
            .next_non_bookmark()
            .await
            .expect("live watcher keeps receiving");
        assert_ne!(e["type"], "ERROR");
        seen += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(stalled);
}

#[tokio::test]
async fn watches_end_when_the_server_shuts_down() {
    let s = TestServer::start().await;
    let mut w = Lines::open(&s, "").await;
    let stopper = tokio::spawn(async move { s.stop().await });
    assert!(w.next().await.is_none(), "stream ends on shutdown");
    stopper.await.expect("stopped");
}
