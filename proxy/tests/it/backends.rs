//! Nodes that are not Ollamas looked after by a nodelet: unmanaged
//! OpenAI-compatible servers added with a Secret, made Ready by the
//! controller's probes alone, reached over https with their own CA, and
//! the endpoints they do and do not serve.

use std::time::Duration;

use herd_api::{
    ConditionStatus, Node, NodeApi, NodeAuth, NodeSpec, Resource as _, Secret, SecretSpec,
    SecretToken, conditions, endpoints, find_condition,
};
use herd_client::PostParams;
use herd_testkit::{Api, FakeOllama};
use serde_json::json;

use crate::{Herd, bounded, eventually, node_of};

const TOKEN: &str = "sk-node-0123456789";

async fn openai_fake(messages: bool) -> FakeOllama {
    FakeOllama::builder()
        .api(Api::OpenAi)
        .models(["smollm2"])
        .api_key(TOKEN)
        .native_messages(messages)
        .native_responses(false)
        .ttft(Duration::from_millis(2))
        .tokens(3)
        .tokens_per_sec(500.0)
        .start()
        .await
}

fn unmanaged(name: &str, url: &str, secret: Option<&str>) -> Node {
    Node::new(
        name,
        NodeSpec {
            url: url.to_owned(),
            api: NodeApi::OpenAi,
            managed: false,
            auth: secret.map(|s| NodeAuth {
                secret_ref: s.to_owned(),
            }),
            ..NodeSpec::default()
        },
    )
}

async fn add_secret(h: &Herd, name: &str, token: &str) {
    let secret = Secret::new(
        name,
        SecretSpec {
            token: SecretToken::new(token),
        },
    );
    h.client
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// Waits until the node's `Ready` has `status`; answers the node.
async fn wait_ready(h: &Herd, name: &str, status: ConditionStatus) -> Node {
    eventually(
        &format!("{name} Ready={status:?}"),
        Duration::from_secs(15),
        || async {
            let n = h.nodes.get(name).await.ok()?;
            let ready = find_condition(&n.status.conditions, conditions::READY)?;
            (ready.status == status).then_some(n)
        },
    )
    .await
}

#[tokio::test]
async fn an_unmanaged_openai_node_is_ready_from_probes_and_serves_v1_with_its_token() {
    bounded(async {
        let h = Herd::with_controller().await;
        let fake = openai_fake(true).await;
        add_secret(&h, "vllm-key", TOKEN).await;
        h.nodes
            .create(
                &PostParams::default(),
                &unmanaged("vllm", &format!("{}/v1", fake.url()), Some("vllm-key")),
            )
            .await
            .expect("create node");
        let node = wait_ready(&h, "vllm", ConditionStatus::True).await;
        assert!(
            node.status.last_heartbeat_time.is_none(),
            "no nodelet, no heartbeat"
        );
        let names: Vec<&str> = node.status.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["smollm2"]);
        let node = eventually("endpoints probed", Duration::from_secs(10), || async {
            let n = h.nodes.get("vllm").await.ok()?;
            n.status.endpoints.is_some().then_some(n)
        })
        .await;
        assert!(
            node.serves(endpoints::MESSAGES),
            "{:?}",
            node.status.endpoints
        );
        assert!(
            !node.serves(endpoints::RESPONSES),
            "{:?}",
            node.status.endpoints
        );
        h.wait_stats("vllm routable", |s| {
            s.nodes.iter().any(|x| x.node == "vllm" && x.routable)
        })
        .await;

        // The client's own key (herd's admin key here) never reaches the
        // node, which would refuse it: the node's token goes instead.
        let r = h
            .post(
                "/v1/chat/completions",
                json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(node_of(&r), "vllm");
        let status = r.status();
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        assert!(
            body["choices"][0]["message"]["content"].is_string(),
            "{body}"
        );

        let r = h
            .post(
                "/v1/embeddings",
                json!({"model": "smollm2", "input": "hello"}),
            )
            .await;
        assert_eq!(r.status(), 200);

        // Served natively: passed through as it is.
        let r = h
            .http
            .post(h.at("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "smollm2", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("messages");
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["type"], "message", "{body}");

        let models: serde_json::Value = h
            .http
            .get(h.at("/v1/models"))
            .send()
            .await
            .expect("models")
            .json()
            .await
            .expect("json");
        assert_eq!(models["data"][0]["id"], "smollm2", "{models}");
        let tags: serde_json::Value = h
            .http
            .get(h.at("/api/tags"))
            .send()
            .await
            .expect("tags")
            .json()
            .await
            .expect("json");
        assert_eq!(tags["models"][0]["name"], "smollm2", "{tags}");

        // Nothing to pull onto an OpenAI-compatible server: skipped, and said.
        let r = h.post("/api/pull", json!({"model": "smollm2"})).await;
        assert_eq!(r.status(), 503);
        let text = r.text().await.expect("text");
        assert!(text.contains("skipped vllm"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_node_whose_secret_is_missing_is_not_ready_and_says_why() {
    bounded(async {
        let h = Herd::with_controller().await;
        let fake = openai_fake(false).await;
        h.nodes
            .create(
                &PostParams::default(),
                &unmanaged("hosted", &fake.url(), Some("hosted-key")),
            )
            .await
            .expect("create node");
        let node = wait_ready(&h, "hosted", ConditionStatus::False).await;
        let ready = find_condition(&node.status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.reason, "BackendUnusable");
        assert!(
            ready.message.contains("Secret hosted-key does not exist"),
            "{}",
            ready.message
        );

        // A wrong token: the backend refuses it, and the node says so.
        add_secret(&h, "hosted-key", "sk-wrong").await;
        let node = eventually("refused credentials", Duration::from_secs(15), || async {
            let n = h.nodes.get("hosted").await.ok()?;
            let ready = find_condition(&n.status.conditions, conditions::READY)?;
            ready
                .message
                .contains("refused the router's credentials")
                .then_some(n)
        })
        .await;
        let ready = find_condition(&node.status.conditions, conditions::READY).expect("Ready");
        assert_eq!(ready.status, ConditionStatus::False);
        let wrong = serde_json::to_string(&node).expect("json");
        assert!(
            !wrong.contains("sk-wrong"),
            "the token is in the node: {wrong}"
        );

        let mut secret = h
            .client
            .api::<Secret>()
            .get("hosted-key")
            .await
            .expect("secret");
        secret.spec.token = SecretToken::new(TOKEN);
        h.client
            .api::<Secret>()
            .replace(&PostParams::default(), &secret)
            .await
            .expect("replace secret");
        wait_ready(&h, "hosted", ConditionStatus::True).await;
        h.wait_stats("hosted routable", |s| {
            s.nodes.iter().any(|x| x.node == "hosted" && x.routable)
        })
        .await;
        let r = h
            .post(
                "/v1/chat/completions",
                json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
    })
    .await;
}

/// A TLS front for `backend` with a self-signed certificate; answers its
/// address and the CA's PEM.
async fn tls_front(backend: String, dir: &std::path::Path) -> (std::net::SocketAddr, String) {
    let ca = herd_tls::SelfSigned::ensure(dir, &["127.0.0.1".to_owned()]).expect("self-signed");
    let acceptor = ca.server_tls().expect("server tls").acceptor();
    let pem = std::fs::read_to_string(ca.ca_cert_path()).expect("ca pem");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, pem)
}

#[tokio::test]
async fn https_nodes_are_reached_with_their_own_ca() {
    bounded(async {
        let h = Herd::with_controller().await;
        let fake = openai_fake(false).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = fake.url().trim_start_matches("http://").to_owned();
        let (addr, ca) = tls_front(backend, dir.path()).await;
        add_secret(&h, "tls-key", TOKEN).await;
        let mut node = unmanaged(
            "tls",
            &format!("https://localhost:{}", addr.port()),
            Some("tls-key"),
        );
        node.spec.ca_cert = ca;
        h.nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        wait_ready(&h, "tls", ConditionStatus::True).await;
        h.wait_stats("tls routable", |s| {
            s.nodes.iter().any(|x| x.node == "tls" && x.routable)
        })
        .await;
        for stream in [false, true] {
            let r = h
                .post(
                    "/v1/chat/completions",
                    json!({"model": "smollm2", "stream": stream,
                           "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            assert_eq!(r.status(), 200, "stream {stream}");
            let text = r.text().await.expect("body");
            assert!(text.contains("chat.completion"), "{text}");
        }

        // Without the CA the certificate is not trusted: never Ready.
        let untrusted = unmanaged(
            "untrusted",
            &format!("https://localhost:{}", addr.port()),
            Some("tls-key"),
        );
        h.nodes
            .create(&PostParams::default(), &untrusted)
            .await
            .expect("create node");
        let n = wait_ready(&h, "untrusted", ConditionStatus::False).await;
        assert_eq!(
            find_condition(&n.status.conditions, conditions::READY).map(|c| c.reason.as_str()),
            Some("Unreachable")
        );
    })
    .await;
}

/// An unmanaged OpenAI node behind herd, Ready and routable.
async fn openai_node(h: &Herd, name: &str, fake: &FakeOllama) {
    if h.client
        .api::<Secret>()
        .get_opt("node-key")
        .await
        .ok()
        .flatten()
        .is_none()
    {
        add_secret(h, "node-key", TOKEN).await;
    }
    h.nodes
        .create(
            &PostParams::default(),
            &unmanaged(name, &fake.url(), Some("node-key")),
        )
        .await
        .expect("create node");
    wait_ready(h, name, ConditionStatus::True).await;
    let n = name.to_owned();
    h.wait_stats(&format!("{name} routable"), move |s| {
        s.nodes.iter().any(|x| x.node == n && x.routable)
    })
    .await;
}

#[tokio::test]
async fn ollama_clients_reach_openai_nodes_through_translation() {
    bounded(async {
        let h = Herd::with_controller().await;
        let fake = openai_fake(false).await;
        openai_node(&h, "llama-cpp", &fake).await;

        let r = h
            .post(
                "/api/chat",
                json!({"model": "smollm2", "stream": false, "options": {"temperature": 0.2, "num_predict": 8},
                       "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(node_of(&r), "llama-cpp");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["model"], "smollm2", "{v}");
        assert_eq!(v["done"], true, "{v}");
        assert!(v["message"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
        assert!(v["eval_count"].as_u64().is_some(), "{v}");
        let sent = fake.last_body("/v1/chat/completions").expect("the node got a chat completion");
        assert_eq!(sent["max_tokens"], 8, "{sent}");
        assert_eq!(sent["temperature"], 0.2, "{sent}");

        // Streamed: SSE from the node, NDJSON to the client, done last.
        let r = h
            .post(
                "/api/chat",
                json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-ndjson")
        );
        let lines = crate::ndjson(&r.text().await.expect("text"));
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines.last().map(|l| l["done"].clone()), Some(json!(true)), "{lines:?}");
        assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

        let r = h
            .post(
                "/api/generate",
                json!({"model": "smollm2", "prompt": "Once", "stream": false}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert!(v["response"].as_str().is_some_and(|c| !c.is_empty()), "{v}");

        let r = h
            .post("/api/embed", json!({"model": "smollm2", "input": ["a", "b"]}))
            .await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2), "{v}");

        let r = h.post("/api/show", json!({"model": "smollm2"})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(node_of(&r), "llama-cpp");

        // A client mistake the translation finds: 400 in Ollama's shape.
        let r = h
            .post("/api/chat", json!({"model": "smollm2", "messages": "nope"}))
            .await;
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.expect("json");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("messages")), "{v}");
    })
    .await;
}

#[tokio::test]
async fn messages_and_responses_are_translated_for_nodes_without_them() {
    bounded(async {
        let h = Herd::with_controller().await;
        let fake = openai_fake(false).await;
        openai_node(&h, "vllm", &fake).await;
        let before = fake.requests("/v1/chat/completions");

        // The client's key (herd's here) goes no further than herd.
        let r = h
            .http
            .post(h.at("/v1/messages"))
            .header("x-api-key", "sk-ant-client")
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "smollm2", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("messages");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["content"][0]["type"], "text", "{v}");

        let r = h
            .http
            .post(h.at("/v1/messages"))
            .json(
                &json!({"model": "smollm2", "max_tokens": 16, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
            .await
            .expect("messages stream");
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("text");
        assert!(
            text.contains("event: message_start") && text.contains("event: message_stop"),
            "{text}"
        );

        for stream in [false, true] {
            let r = h
                .post(
                    "/v1/responses",
                    json!({"model": "smollm2", "input": "hi", "stream": stream}),
                )
                .await;
            assert_eq!(r.status(), 200, "stream {stream}");
            let text = r.text().await.expect("text");
            assert!(
                text.contains("output_text") || text.contains("response.completed"),
                "{text}"
            );
        }
        assert_eq!(
            fake.requests("/v1/chat/completions"),
            before + 4,
            "all four went onto chat completions"
        );
    })
    .await;
}
