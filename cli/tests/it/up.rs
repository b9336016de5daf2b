//! `herd up`: the router and a nodelet in one process, as the README's quick
//! start runs it (with a fake Ollama already answering, since Ollama itself
//! cannot be downloaded here).

use std::time::Duration;

use herd_api::Node;

use crate::{HerdProcess, sigterm, wait_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_up_registers_this_machine_and_routes_chat_to_it() {
    let ollama = herd_testkit::FakeOllama::builder()
        .models(["llama3.2:1b"])
        .start()
        .await;
    let dir = tempfile::tempdir().expect("tmp");
    let ollama_url = ollama.url();
    let mut up = HerdProcess::start(
        "up",
        dir.path(),
        &[
            "--ollama-url",
            &ollama_url,
            "--no-default-model",
            "--name",
            "this-machine",
            "--heartbeat-interval",
            "200ms",
        ],
    );
    let mut client = herd_client::Client::builder(&up.url);
    if let Some(key) = crate::verbs::admin_key(&up.url) {
        client = client.token(key.expose());
    }
    let client = client.build().expect("client");
    let nodes = client.api::<Node>();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(n)) = nodes.get_opt("this-machine").await
            && n.is_ready()
            && n.model("llama3.2:1b").is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node never became Ready with its model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "herd up: node Ready with its model {:?} after start",
        started.elapsed()
    );

    let resp = reqwest::Client::new()
        .post(format!("{}/api/chat", up.url))
        .json(&serde_json::json!({"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}))
        .send()
        .await
        .expect("chat");
    // `llama3.2` names a different model than `llama3.2:1b` (tag latest), so this must be a 404.
    assert_eq!(resp.status(), 404);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/chat", up.url))
        .json(&serde_json::json!({"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}],"stream":false}))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-herd-node"], "this-machine");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["done"], true);

    // SIGTERM: the nodelet says goodbye, then everything stops cleanly.
    sigterm(&up.child);
    let status = tokio::task::spawn_blocking(move || {
        wait_exit(&mut up.child, Duration::from_secs(15), "herd up")
    })
    .await
    .expect("join");
    assert!(status.success(), "{status}");
    // The fake Ollama was not started by herd, so herd must leave it running.
    let r = reqwest::get(format!("{ollama_url}/api/version"))
        .await
        .expect("ollama still up");
    assert!(r.status().is_success());
}
