//! Keys, roles and their enforcement, through real HTTP against the whole
//! assembly: the authorization table, a nodelet's key turned against other
//! nodes, inference and metrics access, secrets kept out of every answer
//! and log, bootstrap files, and how fast a disabled key stops working.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use herd_server::{Config, ModelPolicy, Server};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{admin_client, client_with, wait_key};

struct Herd {
    url: String,
    admin: reqwest::Client,
    anon: reqwest::Client,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<Result<(), herd_server::Error>>,
}

impl Herd {
    async fn start(dir: &Path, edit: impl FnOnce(&mut Config)) -> Herd {
        let mut config = Config::new(herd_apiserver::Config::new(dir));
        config.controller = None;
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Server::build(config, listener).expect("build");
        let url = format!("http://{}", server.local_addr());
        let stop = server.shutdown_token();
        let done = tokio::spawn(server.serve(std::future::pending()));
        Herd {
            url,
            admin: admin_client(dir).await,
            anon: reqwest::Client::new(),
            stop,
            done,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("serve returns")
            .expect("join")
            .expect("served");
    }

    fn api(&self, rest: &str) -> String {
        format!("{}/apis/herd/v1/{rest}", self.url)
    }

    /// Creates a key with the admin key; answers its token.
    async fn key(&self, name: &str, spec: Value) -> String {
        let (status, body) = send(
            &self.admin,
            Method::POST,
            &self.api("apikeys"),
            Some(json!({"metadata": {"name": name}, "spec": spec})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["status"]["secret"]
            .as_str()
            .expect("the create answers the secret")
            .to_owned()
    }
}

/// Sends a request; answers the status and the body as JSON (`Null` when
/// it is not JSON).
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, text) = send_text(http, method, url, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn send_text(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (u16, String) {
    let content_type = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "herd/v1", "kind": "Lease", "metadata": {"name": name},
           "spec": {"holder": "c-1", "leaseDurationSeconds": 15}})
}

fn node(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"ollamaUrl": "http://127.0.0.1:1"}})
}

#[tokio::test]
async fn authorization_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let (s, b) = send(&h.admin, Method::POST, &h.api("nodes"), Some(node("gpu-1"))).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = send(&h.admin, Method::POST, &h.api("nodes"), Some(node("gpu-2"))).await;
    assert_eq!(s, 201, "{b}");
    let ma = json!({"metadata": {"name": "m"}, "spec": {"model": "llama3"}});
    let (s, b) = send(&h.admin, Method::POST, &h.api("modelassignments"), Some(ma)).await;
    assert_eq!(s, 201, "{b}");

    let viewer = client_with(&h.key("v", json!({"role": "viewer"})).await);
    let controller = client_with(&h.key("c", json!({"role": "controller"})).await);
    let join = client_with(&h.key("j", json!({"role": "join"})).await);
    let nodekey = client_with(&h.key("n", json!({"role": "node", "node": "gpu-1"})).await);
    let inference = client_with(&h.key("i", json!({"role": "inference"})).await);
    let expired = client_with(
        &h.key(
            "old",
            json!({"role": "viewer", "expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await,
    );
    let disabled = client_with(
        &h.key("off", json!({"role": "viewer", "disabled": true}))
            .await,
    );
    let wrong = client_with("herd_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");

    let who: Vec<(&str, &reqwest::Client)> = vec![
        ("admin", &h.admin),
        ("viewer", &viewer),
        ("controller", &controller),
        ("join", &join),
        ("node", &nodekey),
        ("inference", &inference),
        ("none", &h.anon),
        ("expired", &expired),
        ("disabled", &disabled),
        ("wrong", &wrong),
    ];
    let client = |name: &str| {
        who.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
            .expect("client")
    };
    let status_patch = json!({"status": {"inFlight": 1}});
    let label = json!({"metadata": {"labels": {"x": "y"}}});
    let cases: Vec<(&str, Method, String, Option<Value>, u16)> = vec![
        // reads
        ("admin", Method::GET, h.api("nodes"), None, 200),
        ("viewer", Method::GET, h.api("nodes"), None, 200),
        ("viewer", Method::GET, h.api("apikeys"), None, 200),
        (
            "viewer",
            Method::GET,
            h.api("modelassignments/m"),
            None,
            200,
        ),
        ("controller", Method::GET, h.api("nodes"), None, 200),
        ("controller", Method::GET, h.api("apikeys"), None, 403),
        ("join", Method::GET, h.api("nodes"), None, 403),
        ("node", Method::GET, h.api("nodes/gpu-1"), None, 200),
        ("node", Method::GET, h.api("nodes/gpu-2"), None, 403),
        ("node", Method::GET, h.api("nodes"), None, 403),
        ("node", Method::GET, h.api("modelassignments"), None, 200),
        ("node", Method::GET, h.api("apikeys"), None, 403),
        ("inference", Method::GET, h.api("nodes"), None, 403),
        ("none", Method::GET, h.api("nodes"), None, 401),
        ("expired", Method::GET, h.api("nodes"), None, 401),
        ("disabled", Method::GET, h.api("nodes"), None, 401),
        ("wrong", Method::GET, h.api("nodes"), None, 401),
        ("admin", Method::GET, format!("{}/apis", h.url), None, 200),
        ("none", Method::GET, format!("{}/healthz", h.url), None, 200),
        ("none", Method::GET, format!("{}/readyz", h.url), None, 200),
        (
            "wrong",
            Method::GET,
            format!("{}/healthz", h.url),
            None,
            200,
        ),
        // writes
        (
            "viewer",
            Method::PATCH,
            h.api("nodes/gpu-2"),
            Some(label.clone()),
            403,
        ),
        (
            "controller",
            Method::PATCH,
            h.api("nodes/gpu-2"),
            Some(label.clone()),
            403,
        ),
        (
            "controller",
            Method::PATCH,
            h.api("nodes/gpu-2/status"),
            Some(status_patch.clone()),
            200,
        ),
        (
            "admin",
            Method::PATCH,
            h.api("nodes/gpu-2"),
            Some(label.clone()),
            200,
        ),
        ("inference", Method::DELETE, h.api("nodes/gpu-2"), None, 403),
        ("viewer", Method::DELETE, h.api("nodes/gpu-2"), None, 403),
        (
            "node",
            Method::PATCH,
            h.api("nodes/gpu-1/status"),
            Some(status_patch.clone()),
            200,
        ),
        (
            "node",
            Method::PATCH,
            h.api("nodes/gpu-2/status"),
            Some(status_patch),
            403,
        ),
        (
            "node",
            Method::POST,
            h.api("nodes"),
            Some(node("gpu-3")),
            403,
        ),
        (
            "viewer",
            Method::POST,
            h.api("nodes"),
            Some(node("gpu-4")),
            403,
        ),
        (
            "none",
            Method::POST,
            h.api("nodes"),
            Some(node("gpu-4")),
            401,
        ),
        (
            "admin",
            Method::POST,
            h.api("nodes"),
            Some(node("gpu-4")),
            201,
        ),
        (
            "viewer",
            Method::POST,
            h.api("apikeys"),
            Some(json!({"metadata": {"name": "x"}, "spec": {"role": "admin"}})),
            403,
        ),
        // leases: the controller's to write, readable by viewers, no one else's
        (
            "controller",
            Method::POST,
            h.api("leases"),
            Some(lease("controller")),
            201,
        ),
        ("viewer", Method::GET, h.api("leases"), None, 200),
        ("viewer", Method::GET, h.api("leases/controller"), None, 200),
        ("node", Method::GET, h.api("leases/controller"), None, 403),
        ("inference", Method::GET, h.api("leases"), None, 403),
        ("join", Method::GET, h.api("leases"), None, 403),
        (
            "node",
            Method::POST,
            h.api("leases"),
            Some(lease("other")),
            403,
        ),
        (
            "viewer",
            Method::POST,
            h.api("leases"),
            Some(lease("other")),
            403,
        ),
        (
            "viewer",
            Method::DELETE,
            h.api("leases/controller"),
            None,
            403,
        ),
        (
            "node",
            Method::DELETE,
            h.api("leases/controller"),
            None,
            403,
        ),
        (
            "controller",
            Method::DELETE,
            h.api("leases/controller"),
            None,
            200,
        ),
        // inference is open by default; metrics needs a viewer key
        (
            "none",
            Method::GET,
            format!("{}/api/tags", h.url),
            None,
            200,
        ),
        (
            "wrong",
            Method::GET,
            format!("{}/api/tags", h.url),
            None,
            401,
        ),
        (
            "wrong",
            Method::GET,
            format!("{}/v1/models", h.url),
            None,
            401,
        ),
        (
            "disabled",
            Method::GET,
            format!("{}/api/tags", h.url),
            None,
            401,
        ),
        (
            "inference",
            Method::GET,
            format!("{}/api/tags", h.url),
            None,
            200,
        ),
        ("none", Method::GET, format!("{}/metrics", h.url), None, 401),
        (
            "inference",
            Method::GET,
            format!("{}/metrics", h.url),
            None,
            403,
        ),
        (
            "viewer",
            Method::GET,
            format!("{}/metrics", h.url),
            None,
            200,
        ),
        ("join", Method::GET, format!("{}/metrics", h.url), None, 403),
    ];
    assert!(cases.len() >= 30);
    let mut wrong_cells = Vec::new();
    for (name, method, url, body, want) in cases {
        let (got, answer) = send(client(name), method.clone(), &url, body).await;
        if got != want {
            wrong_cells.push(format!(
                "{name} {method} {url}: {got}, want {want}: {answer}"
            ));
        }
    }
    assert!(wrong_cells.is_empty(), "{wrong_cells:#?}");
    h.stop().await;
}

#[tokio::test]
async fn secrets_are_an_admin_s_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let token = "sk-backend-token-0123456789";
    let secret = |name: &str| {
        json!({"apiVersion": "herd/v1", "kind": "Secret", "metadata": {"name": name},
               "spec": {"token": token}})
    };
    let (s, b) = send(
        &h.admin,
        Method::POST,
        &h.api("secrets"),
        Some(secret("hosted")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = send(&h.admin, Method::GET, &h.api("secrets/hosted"), None).await;
    assert_eq!((s, b["spec"]["token"].as_str()), (200, Some(token)), "{b}");

    let others = [
        ("viewer", json!({"role": "viewer"})),
        ("controller", json!({"role": "controller"})),
        ("node", json!({"role": "node", "node": "gpu-1"})),
        ("inference", json!({"role": "inference"})),
        ("join", json!({"role": "join"})),
    ];
    let patch = json!({"spec": {"token": "replaced"}});
    let mut wrong_cells = Vec::new();
    for (role, spec) in others {
        let c = client_with(&h.key(role, spec).await);
        let cases = [
            (Method::GET, h.api("secrets"), None),
            (Method::GET, h.api("secrets?watch=true"), None),
            (Method::GET, h.api("secrets/hosted"), None),
            (Method::GET, h.api("secrets/hosted/status"), None),
            (Method::POST, h.api("secrets"), Some(secret(role))),
            (Method::PATCH, h.api("secrets/hosted"), Some(patch.clone())),
            (Method::PUT, h.api("secrets/hosted"), Some(secret("hosted"))),
            (Method::DELETE, h.api("secrets/hosted"), None),
        ];
        for (method, url, body) in cases {
            let (got, answer) = send_text(&c, method.clone(), &url, body).await;
            if got != 403 || answer.contains(token) {
                wrong_cells.push(format!("{role} {method} {url}: {got}: {answer}"));
            }
        }
    }
    let (got, answer) = send_text(&h.anon, Method::GET, &h.api("secrets/hosted"), None).await;
    if got != 401 || answer.contains(token) {
        wrong_cells.push(format!("no key GET secrets/hosted: {got}: {answer}"));
    }
    assert!(wrong_cells.is_empty(), "{wrong_cells:#?}");
    let (s, b) = send(&h.admin, Method::GET, &h.api("secrets/hosted"), None).await;
    assert_eq!(
        b["spec"]["token"].as_str(),
        Some(token),
        "unchanged: {s} {b}"
    );
    h.stop().await;
}

#[tokio::test]
async fn refusals_answer_in_each_api_s_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.openness.inference = false).await;
    let resp = h.anon.get(h.api("nodes")).send().await.expect("request");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");

    let (s, body) = send(&h.anon, Method::GET, &format!("{}/api/tags", h.url), None).await;
    assert_eq!(s, 401);
    assert!(body["error"].is_string(), "Ollama's shape: {body}");
    let (s, body) = send(&h.anon, Method::GET, &format!("{}/v1/models", h.url), None).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI's shape: {body}"
    );
    assert_eq!(body["error"]["type"], "authentication_error");

    // The placeholder keys SDKs send are no key.
    let sdk = client_with("ollama");
    let (s, _) = send(&sdk, Method::GET, &format!("{}/api/tags", h.url), None).await;
    assert_eq!(s, 401, "inference-auth key needs a key");
    let inference = client_with(&h.key("i", json!({"role": "inference"})).await);
    let (s, _) = send(
        &inference,
        Method::GET,
        &format!("{}/api/tags", h.url),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Anthropic clients send x-api-key.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/models", h.url))
        .header("x-api-key", h.key("a", json!({"role": "inference"})).await)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);

    // API answers are never sniffed, discovery included.
    for rest in [
        "/apis",
        "/apis/herd/v1",
        "/apis/herd/v1/nodes",
        "/apis/herd/v1/schemas/nodes",
    ] {
        let resp = h
            .admin
            .get(format!("{}{rest}", h.url))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{rest}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{rest}"
        );
    }
    // A key is made only by POST, where the server makes its secret.
    let (s, b) = send(
        &h.admin,
        Method::PUT,
        &h.api("apikeys/by-put"),
        Some(json!({"metadata": {"name": "by-put"}, "spec": {"role": "admin"}})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    h.stop().await;
}

#[tokio::test]
async fn a_node_key_cannot_touch_other_nodes_keys_or_assignments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let join_token = wait_key(&dir.path().join(herd_server::JOIN_KEY_FILE)).await;
    let join = client_with(&join_token);
    let (s, b) = send(
        &h.admin,
        Method::POST,
        &h.api("nodes"),
        Some(node("victim")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let ma = json!({"metadata": {"name": "m"}, "spec": {"model": "llama3"}});
    let (s, b) = send(&h.admin, Method::POST, &h.api("modelassignments"), Some(ma)).await;
    assert_eq!(s, 201, "{b}");

    let (s, b) = send(
        &join,
        Method::POST,
        &h.api("join"),
        Some(json!({"node": "gpu-1"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["node"], "gpu-1");
    let node_token = b["token"].as_str().expect("token").to_owned();
    let nodelet = client_with(&node_token);
    // The name is taken now.
    let (s, b) = send(
        &join,
        Method::POST,
        &h.api("join"),
        Some(json!({"node": "gpu-1"})),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    // A join key does nothing else.
    let (s, _) = send(&join, Method::POST, &h.api("nodes"), Some(node("gpu-9"))).await;
    assert_eq!(s, 403);

    let (s, b) = send(&nodelet, Method::POST, &h.api("nodes"), Some(node("gpu-1"))).await;
    assert_eq!(s, 201, "its own node: {b}");
    let refused: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, h.api("nodes"), Some(node("gpu-2"))),
        (Method::PUT, h.api("nodes/victim"), Some(node("victim"))),
        (
            Method::PATCH,
            h.api("nodes/victim/status"),
            Some(json!({"status": {"inFlight": 3}})),
        ),
        (Method::DELETE, h.api("nodes/victim"), None),
        (Method::GET, h.api("apikeys"), None),
        (Method::GET, h.api("apikeys/bootstrap-admin"), None),
        (
            Method::PATCH,
            h.api("modelassignments/m"),
            Some(json!({"spec": {"replicas": 5}})),
        ),
        (Method::DELETE, h.api("modelassignments/m"), None),
        // its own node, but a field that is the administrator's
        (
            Method::PATCH,
            h.api("nodes/gpu-1"),
            Some(json!({"spec": {"unschedulable": true}})),
        ),
        (
            Method::PATCH,
            h.api("nodes/gpu-1"),
            Some(json!({"spec": {"weight": 7}})),
        ),
        (Method::POST, h.api("join"), Some(json!({"node": "gpu-5"}))),
    ];
    for (method, url, body) in refused {
        let (s, b) = send(&nodelet, method.clone(), &url, body).await;
        assert_eq!(s, 403, "{method} {url}: {b}");
    }
    let (s, b) = send(
        &nodelet,
        Method::PATCH,
        &h.api("nodes/gpu-1"),
        Some(json!({"spec": {"maxParallel": 8}})),
    )
    .await;
    assert_eq!(s, 200, "a field the nodelet sets: {b}");

    // An Event's source is who wrote it, whatever it claims.
    let event = json!({
        "metadata": {"name": "e1"},
        "spec": {"involvedObject": {"kind": "Node", "name": "gpu-1"}, "reason": "Hello", "source": "controller"}
    });
    let (s, b) = send(&nodelet, Method::POST, &h.api("events"), Some(event)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["spec"]["source"], "apikey/node-gpu-1");
    let other = json!({
        "metadata": {"name": "e2"},
        "spec": {"involvedObject": {"kind": "Node", "name": "victim"}, "reason": "Hello"}
    });
    let (s, _) = send(&nodelet, Method::POST, &h.api("events"), Some(other)).await;
    assert_eq!(s, 403, "events about another node");
    h.stop().await;
}

#[tokio::test]
async fn management_writes_leave_an_audit_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let (s, _) = send(&h.admin, Method::POST, &h.api("nodes"), Some(node("gpu-1"))).await;
    assert_eq!(s, 201);
    let (s, _) = send(
        &h.admin,
        Method::PATCH,
        &h.api("nodes/gpu-1"),
        Some(json!({"spec": {"unschedulable": true}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        &h.admin,
        Method::PATCH,
        &h.api("nodes/gpu-1/status"),
        Some(json!({"status": {"inFlight": 1}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&h.admin, Method::DELETE, &h.api("nodes/gpu-1"), None).await;
    assert_eq!(s, 200);
    let (_, list) = send(
        &h.admin,
        Method::GET,
        &h.api("events?labelSelector=herd.dev/audit%3Dtrue"),
        None,
    )
    .await;
    let mut items: Vec<&Value> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["spec"]["involvedObject"]["name"] == "gpu-1")
        .collect();
    items.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
    });
    let trail: Vec<(String, String)> = items
        .iter()
        .map(|e| {
            (
                e["spec"]["reason"].as_str().unwrap_or("").to_owned(),
                e["spec"]["source"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let by = "apikey/bootstrap-admin".to_owned();
    assert_eq!(
        trail,
        [
            ("Created".to_owned(), by.clone()),
            ("Patched".to_owned(), by.clone()),
            ("Deleted".to_owned(), by)
        ],
        "status writes are not audited: {list}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_disabled_or_deleted_key_stops_working_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    for how in ["disable", "delete"] {
        let name = format!("k-{how}");
        let viewer = client_with(&h.key(&name, json!({"role": "viewer"})).await);
        let (s, _) = send(&viewer, Method::GET, &h.api("nodes"), None).await;
        assert_eq!(s, 200, "usable at once");
        let (s, b) = if how == "disable" {
            send(
                &h.admin,
                Method::PATCH,
                &h.api(&format!("apikeys/{name}")),
                Some(json!({"spec": {"disabled": true}})),
            )
            .await
        } else {
            send(
                &h.admin,
                Method::DELETE,
                &h.api(&format!("apikeys/{name}")),
                None,
            )
            .await
        };
        assert_eq!(s, 200, "{b}");
        let started = Instant::now();
        loop {
            let (s, _) = send(&viewer, Method::GET, &h.api("nodes"), None).await;
            if s == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{how}: still accepted after a second"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_key_deletes_its_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config::new(herd_apiserver::Config::new(dir.path()));
    config.controller = None;
    let server = Server::build(config, listener).expect("build");
    let url = format!("http://{}/apis/herd/v1/apikeys", server.local_addr());
    let store = server.state().store.clone();
    let stop = server.shutdown_token();
    let done = tokio::spawn(server.serve(std::future::pending()));
    let admin = admin_client(dir.path()).await;
    let (s, b) = send(
        &admin,
        Method::POST,
        &url,
        Some(json!({"metadata": {"name": "gone"}, "spec": {"role": "viewer"}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["status"]["keyId"].as_str().expect("key id").to_owned();
    assert!(store.get("apikeyhashes", &id).is_some());
    let (s, _) = send(&admin, Method::DELETE, &format!("{url}/gone"), None).await;
    assert_eq!(s, 200);
    assert!(store.get("apikeyhashes", &id).is_none());
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
}

/// Everything the server logs, from the first start in this test binary
/// that asked for it.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_answer_stream_or_log_line_holds_a_secret_or_its_hash() {
    let log = captured_log();
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.openness.metrics = false).await;
    let watch = h
        .admin
        .get(h.api("apikeys?watch=true"))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    let mut stream = watch.bytes_stream();

    let token = h.key("ci", json!({"role": "viewer"})).await;
    let hash = herd_auth::Token::parse(&token)
        .expect("a herd key")
        .secret
        .hash()
        .to_hex();
    // The secret is base64url, which may itself hold `_`: take it from the
    // parsed token, not from the text after the last `_`.
    let secret_of = |t: &str| {
        herd_auth::Token::parse(t)
            .expect("a herd key")
            .secret
            .expose()
            .to_owned()
    };
    let secret_part = secret_of(&token);
    let admin_token = wait_key(&dir.path().join(herd_server::ADMIN_KEY_FILE)).await;
    let admin_secret = secret_of(&admin_token);

    let mut seen = String::new();
    for rest in [
        "apikeys",
        "apikeys/ci",
        "apikeys/ci/status",
        "apikeys/bootstrap-admin",
        "events",
        "apikeyhashes",
        "schemas/apikeys",
    ] {
        let (_, text) = send_text(&h.admin, Method::GET, &h.api(rest), None).await;
        seen.push_str(&text);
    }
    for rest in ["/metrics", "/apis/herd/v1", "/api/tags"] {
        let (_, text) = send_text(&h.admin, Method::GET, &format!("{}{rest}", h.url), None).await;
        seen.push_str(&text);
    }
    // Updates never take or give a secret.
    let (s, text) = send_text(
        &h.admin,
        Method::PATCH,
        &h.api("apikeys/ci"),
        Some(json!({"spec": {"description": "ci"}, "status": {"secret": "herd_x"}})),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(!text.contains("secret"), "{text}");
    seen.push_str(&text);
    let (_, text) = send_text(&h.admin, Method::DELETE, &h.api("apikeys/ci"), None).await;
    seen.push_str(&text);
    let watched = tokio::time::timeout(Duration::from_secs(2), async {
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("DELETED") {
                break;
            }
        }
        text
    })
    .await
    .expect("the watch saw the delete");
    assert!(watched.contains("\"ci\""), "{watched}");
    seen.push_str(&watched);
    h.stop().await;
    let logged =
        String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(logged.contains("admin.key"), "the log names the key files");
    for needle in [&secret_part, &hash, &admin_secret] {
        assert!(
            !seen.contains(needle.as_str()),
            "an answer holds a secret or hash"
        );
        assert!(
            !logged.contains(needle.as_str()),
            "the log holds a secret or hash"
        );
    }
    let _ = std::io::stderr().flush();
}

#[cfg(unix)]
#[tokio::test]
async fn bootstrap_files_are_private_kept_and_replaced_when_lost() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.proxy = None).await;
    h.stop().await;
    let admin_path = dir.path().join(herd_server::ADMIN_KEY_FILE);
    let join_path = dir.path().join(herd_server::JOIN_KEY_FILE);
    let admin1 = wait_key(&admin_path).await;
    let join1 = wait_key(&join_path).await;
    for path in [&admin_path, &join_path] {
        let mode = std::fs::metadata(path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", path.display());
    }

    let h = Herd::start(dir.path(), |c| c.proxy = None).await;
    assert_eq!(wait_key(&admin_path).await, admin1, "kept");
    assert_eq!(wait_key(&join_path).await, join1, "kept");
    h.stop().await;

    // Lost: a new admin key replaces the old one, which stops working.
    std::fs::remove_file(&admin_path).expect("remove");
    let h = Herd::start(dir.path(), |c| c.proxy = None).await;
    let admin2 = wait_key(&admin_path).await;
    assert_ne!(admin2, admin1);
    let (s, _) = send(&client_with(&admin1), Method::GET, &h.api("nodes"), None).await;
    assert_eq!(s, 401);
    let (s, _) = send(&h.admin, Method::GET, &h.api("nodes"), None).await;
    assert_eq!(s, 200);
    h.stop().await;

    // Rotating the join key: the old one stops working.
    let h = Herd::start(dir.path(), |c| {
        c.proxy = None;
        c.rotate_join_key = true;
    })
    .await;
    let join2 = wait_key(&join_path).await;
    assert_ne!(join2, join1);
    let (s, _) = send(
        &client_with(&join1),
        Method::POST,
        &h.api("join"),
        Some(json!({"node": "gpu-1"})),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = send(
        &client_with(&join2),
        Method::POST,
        &h.api("join"),
        Some(json!({"node": "gpu-1"})),
    )
    .await;
    assert_eq!(s, 201);
    h.stop().await;
}

#[tokio::test]
async fn open_registration_lets_a_nodelet_register_its_fields_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.openness.registration = true).await;
    let (s, b) = send(&h.anon, Method::POST, &h.api("nodes"), Some(node("gpu-1"))).await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = send(
        &h.anon,
        Method::PATCH,
        &h.api("nodes/gpu-1"),
        Some(json!({"spec": {"unschedulable": true}})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(&h.anon, Method::GET, &h.api("apikeys"), None).await;
    assert_eq!(s, 401);
    h.stop().await;
}

#[tokio::test]
async fn cross_site_and_untyped_api_writes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let form = h
        .admin
        .post(h.api("nodes"))
        .header("content-type", "text/plain")
        .body(node("gpu-1").to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(form.status(), 415);
    let cross = h
        .admin
        .get(h.api("nodes"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(cross.status(), 403);
    let rebound = h
        .admin
        .get(h.api("nodes"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(
        rebound.status(),
        403,
        "a loopback server answers loopback names only"
    );
    h.stop().await;
}

#[tokio::test]
async fn self_signed_tls_with_a_pinned_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config::new(herd_apiserver::Config::new(dir.path()));
    config.controller = None;
    config.tls = Some(herd_server::Tls::SelfSigned { sans: Vec::new() });
    let server = Server::build(config, listener).expect("build");
    let url = format!("https://{}/apis/herd/v1/nodes", server.local_addr());
    let nodes = server.nodes().cloned().expect("the proxy's node cache");
    let stop = server.shutdown_token();
    let done = tokio::spawn(server.serve(std::future::pending()));
    // The server's own clients trust its CA: the proxy lists nodes over TLS.
    tokio::time::timeout(Duration::from_secs(10), nodes.wait_ready())
        .await
        .expect("the proxy lists nodes over TLS")
        .expect("node cache");

    let join =
        herd_auth::Token::parse(&wait_key(&dir.path().join(herd_server::JOIN_KEY_FILE)).await)
            .expect("join key");
    let pin = join
        .ca_sha256
        .expect("the join key carries the CA's fingerprint");
    let hex: String = pin.iter().map(|b| format!("{b:02x}")).collect();
    let trust = herd_tls::ClientTrust::PinnedCa(hex.parse().expect("fingerprint"));
    let admin = wait_key(&dir.path().join(herd_server::ADMIN_KEY_FILE)).await;
    let pinned = trust
        .apply(reqwest::Client::builder())
        .expect("trust")
        .build()
        .expect("client");
    let resp = pinned
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("a client pinning the CA gets through");
    assert_eq!(resp.status(), 200);

    let wrong = herd_tls::ClientTrust::PinnedCa("00".repeat(32).parse().expect("fingerprint"))
        .apply(reqwest::Client::builder())
        .expect("trust")
        .build()
        .expect("client");
    assert!(
        wrong.get(&url).bearer_auth(&admin).send().await.is_err(),
        "another pin refuses the server"
    );
    let plain = reqwest::get(url.replacen("https://", "http://", 1)).await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP is not served"
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
}

#[tokio::test]
async fn tls_from_files_serves_and_its_loopback_clients_trust_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A chain file as an operator would have it: leaf, then its CA.
    let made = herd_tls::SelfSigned::ensure(&dir.path().join("made"), &[]).expect("certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config::new(herd_apiserver::Config::new(dir.path()));
    config.controller = None;
    config.tls = Some(herd_server::Tls::Files {
        cert: made.cert_path(),
        key: made.key_path(),
    });
    let server = Server::build(config, listener).expect("build");
    let url = format!("https://{}/apis/herd/v1/nodes", server.local_addr());
    let nodes = server.nodes().cloned().expect("the proxy's node cache");
    let stop = server.shutdown_token();
    let done = tokio::spawn(server.serve(std::future::pending()));
    tokio::time::timeout(Duration::from_secs(10), nodes.wait_ready())
        .await
        .expect("the proxy lists nodes over TLS")
        .expect("node cache");
    let join =
        herd_auth::Token::parse(&wait_key(&dir.path().join(herd_server::JOIN_KEY_FILE)).await)
            .expect("join key");
    assert_eq!(
        join.ca_sha256, None,
        "only a self-signed server's join key pins a CA"
    );
    let client = herd_tls::ClientTrust::CaFile(made.ca_cert_path())
        .apply(reqwest::Client::builder())
        .expect("trust")
        .build()
        .expect("client");
    let admin = wait_key(&dir.path().join(herd_server::ADMIN_KEY_FILE)).await;
    let resp = client
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
}

/// `--model-management`: by default anyone who may use inference may pull,
/// while deleting, copying, creating and pushing models need an admin key.
/// (No node holds a model here: a request the gate lets through gets the
/// proxy's own answer, never 401 or 403.)
#[tokio::test]
async fn model_management_needs_admin_except_pulls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |_| {}).await;
    let inference = client_with(&h.key("i", json!({"role": "inference"})).await);
    let delete = json!({"model": "llama3.2:1b"});
    let copy = json!({"source": "llama3.2:1b", "destination": "mine"});
    for (who, http) in [("anonymous", &h.anon), ("inference", &inference)] {
        let (s, b) = send(
            http,
            Method::DELETE,
            &at2(&h, "/api/delete"),
            Some(delete.clone()),
        )
        .await;
        assert!(s == 401 || s == 403, "{who} deletes: {s} {b}");
        assert!(
            b["error"].as_str().is_some_and(|e| e.contains("manage")),
            "{b}"
        );
        let (s, b) = send(
            http,
            Method::POST,
            &at2(&h, "/api/copy"),
            Some(copy.clone()),
        )
        .await;
        assert!(s == 401 || s == 403, "{who} copies: {s} {b}");
        let (s, b) = send(
            &http,
            Method::POST,
            &at2(&h, "/api/pull"),
            Some(json!({"model": "llama3.2:1b", "stream": false})),
        )
        .await;
        assert!(s != 401 && s != 403, "{who} pulls: {s} {b}");
    }
    let (s, b) = send(
        &h.admin,
        Method::DELETE,
        &at2(&h, "/api/delete"),
        Some(delete),
    )
    .await;
    assert!(s != 401 && s != 403, "admin deletes: {s} {b}");
    h.stop().await;

    // `admin` reserves pulls too; `open` is Ollama's behaviour.
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.openness.models = ModelPolicy::Admin).await;
    let pull = json!({"model": "llama3.2:1b", "stream": false});
    let (s, _) = send(
        &h.anon,
        Method::POST,
        &at2(&h, "/api/pull"),
        Some(pull.clone()),
    )
    .await;
    assert_eq!(s, 401);
    h.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Herd::start(dir.path(), |c| c.openness.models = ModelPolicy::Open).await;
    let (s, b) = send(
        &h.anon,
        Method::DELETE,
        &at2(&h, "/api/delete"),
        Some(json!({"model": "llama3.2:1b"})),
    )
    .await;
    assert!(s != 401 && s != 403, "open: {s} {b}");
    h.stop().await;
}

fn at2(h: &Herd, p: &str) -> String {
    format!("{}{p}", h.url)
}
