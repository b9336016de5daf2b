//! `kill -9` in the middle of a stream of writes loses nothing that was acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::HerdProcess;

#[derive(Default)]
struct Acked {
    /// node → (highest acknowledged heartbeat counter, its resourceVersion)
    last: HashMap<String, (u64, u64)>,
    total: usize,
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_stream_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = HerdProcess::server(dir.path(), &[]);
    let base = format!("{}/apis/herd/v1/nodes", server.url);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = crate::verbs::admin_key(&server.url) {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", key.expose()).parse().expect("header"),
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    let mut writers = Vec::new();
    for w in 0..16 {
        let (http, base, acked) = (http.clone(), base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let name = format!("node-{w}");
            let body =
                json!({"metadata":{"name":name},"spec":{"ollamaUrl":"http://127.0.0.1:11434"}});
            let Ok(r) = http.post(&base).json(&body).send().await else {
                return;
            };
            if r.status().as_u16() != 201 {
                return;
            }
            let created: Value = r.json().await.unwrap_or_default();
            acked
                .lock()
                .expect("lock")
                .last
                .insert(name.clone(), (0, rv(&created)));
            for counter in 1u64.. {
                // cpuPercent, not inFlight: the restarted server's router
                // owns inFlight and rightly rewrites it to its live count (0).
                let patch = json!({"status":{"usage":{"cpuPercent": counter}}});
                let sent = http
                    .patch(format!("{base}/{name}/status"))
                    .header("content-type", "application/merge-patch+json")
                    .body(patch.to_string())
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if resp.status().as_u16() != 200 {
                    return;
                }
                let Ok(obj) = resp.json::<Value>().await else {
                    return;
                };
                let mut a = acked.lock().expect("lock");
                a.last.insert(name.clone(), (counter, rv(&obj)));
                a.total += 1;
            }
        }));
    }
    // Let writes flow, then kill the server without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").total < 2000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = Arc::try_unwrap(acked)
        .ok()
        .expect("writers done")
        .into_inner()
        .expect("lock");
    assert!(
        acked.total >= 100,
        "only {} writes were acknowledged before the kill",
        acked.total
    );
    eprintln!("{} status writes acknowledged before kill -9", acked.total);

    let server = HerdProcess::server(dir.path(), &[]);
    let list: Value = http
        .get(format!("{}/apis/herd/v1/nodes", server.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let items: HashMap<String, Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                i.clone(),
            )
        })
        .collect();
    for (name, (counter, acked_rv)) in &acked.last {
        let obj = items
            .get(name)
            .unwrap_or_else(|| panic!("{name} was acknowledged but is gone after kill -9"));
        // Counters stay far below 2^53, so the f64 round trip is exact.
        let stored = obj["status"]["usage"]["cpuPercent"].as_f64().unwrap_or(0.0) as u64;
        assert!(
            stored >= *counter,
            "{name}: acknowledged heartbeat {counter} but only {stored} survived"
        );
        assert!(
            rv(obj) >= *acked_rv,
            "{name}: resourceVersion went backwards"
        );
    }
}
