//! Integration tests: a real `herd server` assembly (apiserver + proxy)
//! on 127.0.0.1:0 over a temporary SQLite store, nodes registered through
//! `herd_client`, and several fake Ollamas from `herd_testkit`. Every test
//! is bounded in time and talks only to 127.0.0.1.

mod affinity;
mod backends;
mod credentials;
mod errors;
mod failover;
mod fleet;
mod observe;
mod routing;
mod streaming;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use herd_api::{
    Condition, ConditionStatus, Node, NodeInfo, NodeModel, NodeSpec, NodeStatus, Resource,
    conditions,
};
use herd_client::{Api, Client, PostParams};
use herd_proxy::{ProxyConfig, RequestStats, Strategy};
use herd_testkit::FakeOllama;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound on any one test.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a time limit, so a hang fails instead of blocking CI.
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time limit")
}

/// Polls `check` every few milliseconds until it returns `Some`, at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Millisecond-scale timers for tests.
pub fn test_config() -> ProxyConfig {
    ProxyConfig {
        connect_timeout: Duration::from_millis(500),
        first_byte_timeout: Duration::from_secs(5),
        failure_cooldown: Duration::from_secs(2),
        status_report_interval: Duration::from_millis(50),
        aggregate_timeout: Duration::from_secs(2),
        ..ProxyConfig::default()
    }
}

pub fn config_with(strategy: Strategy) -> ProxyConfig {
    ProxyConfig {
        strategy,
        ..test_config()
    }
}

/// A fast fake Ollama: 3 tokens, 2 ms apart, after 2 ms.
pub async fn fake(models: &[&str]) -> FakeOllama {
    FakeOllama::builder()
        .models(models.iter().copied())
        .ttft(Duration::from_millis(2))
        .tokens(3)
        .tokens_per_sec(500.0)
        .num_parallel(4)
        .start()
        .await
}

/// apiserver + proxy assembled by herd-server, as `herd server` is
/// (without the controller and the dashboard).
pub struct Herd {
    pub url: String,
    /// The API as the administrator.
    pub client: Client,
    pub http: reqwest::Client,
    pub nodes: Api<Node>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Herd {
    pub async fn start() -> Herd {
        Herd::with(test_config()).await
    }

    pub async fn with(config: ProxyConfig) -> Herd {
        Herd::composed(config, true, None, None).await
    }

    /// Closing client connections quiet for `limit`, as `herd server` does.
    pub async fn with_idle_timeout(limit: Duration) -> Herd {
        Herd::composed(test_config(), true, Some(limit), None).await
    }

    /// Without the proxy's shortcut: the router alone serves every path.
    pub async fn router_only(config: ProxyConfig) -> Herd {
        Herd::composed(config, false, None, None).await
    }

    /// With the controller, probing every 100 ms: unmanaged nodes become
    /// Ready from its probes.
    pub async fn with_controller() -> Herd {
        let controller = herd_controller::Config {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_secs(1),
            ..herd_controller::Config::default()
        };
        Herd::composed(test_config(), true, None, Some(controller)).await
    }

    async fn composed(
        config: ProxyConfig,
        shortcut: bool,
        idle: Option<Duration>,
        controller: Option<herd_controller::Config>,
    ) -> Herd {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = herd_server::Server::build(
            herd_server::Config {
                proxy: Some(config),
                proxy_shortcut: shortcut,
                controller,
                dashboard: false,
                client_idle_timeout: idle,
                // The server listens on loopback, so it answers only loopback
                // names unless told more; these are the names tests send.
                allowed_hosts: vec!["router.example.com".into(), "x".into()],
                ..herd_server::Config::new(herd_apiserver::Config::new(dir.path()))
            },
            listener,
        )
        .expect("herd server");
        let store = server.nodes().cloned().expect("the proxy's node cache");
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(async move {
            server.serve(std::future::pending()).await.expect("serve");
        });
        // The API always needs a key: the tests act as the administrator,
        // with the key the server wrote at its first start.
        let admin = std::fs::read_to_string(dir.path().join(herd_server::ADMIN_KEY_FILE))
            .expect("the server wrote admin.key");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", admin.trim())
                .parse()
                .expect("header value"),
        );
        let api_http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers.clone())
            .build()
            .expect("http");
        let client = Client::with_http_client(&url, api_http).expect("client");
        store.wait_ready().await.expect("node store");
        Herd {
            client: client.clone(),
            url,
            http: reqwest::Client::builder()
                .no_proxy()
                .default_headers(headers)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http"),
            nodes: client.api::<Node>(),
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Registers a node for `url` and makes it Ready with `models`.
    pub async fn add_node(&self, name: &str, url: &str, models: &[&str]) {
        self.create_node(name, url).await;
        let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
        self.status(name, move |s| {
            s.conditions = vec![ready_condition(true)];
            s.models = models
                .iter()
                .map(|m| NodeModel {
                    name: m.clone(),
                    ..NodeModel::default()
                })
                .collect();
        })
        .await;
        let n = name.to_owned();
        self.wait_stats(&format!("{name} routable"), move |s| {
            s.nodes.iter().any(|x| x.node == n && x.routable)
        })
        .await;
    }

    /// Adds a ready node backed by `fake`, with the fake's models.
    pub async fn add_fake(&self, name: &str, fake: &FakeOllama, models: &[&str]) {
        self.add_node(name, &fake.url(), models).await;
    }

    pub async fn create_node(&self, name: &str, url: &str) {
        let node = Node::new(
            name,
            NodeSpec {
                url: url.to_owned(),
                ..NodeSpec::default()
            },
        );
        self.nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
    }

    /// Read-modify-write of a node's status.
    pub async fn status(&self, name: &str, f: impl FnMut(&mut NodeStatus)) -> Node {
        self.nodes
            .update_status_with_retry(name, f)
            .await
            .expect("status update")
    }

    pub async fn stats(&self) -> RequestStats {
        self.http
            .get(self.at("/apis/herd/v1/requests/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    /// Waits until the proxy's routing view satisfies `pred`.
    pub async fn wait_stats(
        &self,
        what: &str,
        pred: impl Fn(&RequestStats) -> bool,
    ) -> RequestStats {
        eventually(what, Duration::from_secs(10), || async {
            let s = self.stats().await;
            pred(&s).then_some(s)
        })
        .await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.at(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// A non-streamed chat; returns the status, the node that answered and the body.
    pub async fn chat(&self, model: &str) -> (u16, String, serde_json::Value) {
        let r = self
            .post(
                "/api/chat",
                serde_json::json!({"model": model, "stream": false,
                    "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        let status = r.status().as_u16();
        let node = node_of(&r);
        let body = r.json().await.unwrap_or(serde_json::Value::Null);
        (status, node, body)
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn ready_condition(ready: bool) -> Condition {
    Condition::new(
        conditions::READY,
        if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        "Test",
        "set by the test",
    )
}

pub fn info(version: &str) -> NodeInfo {
    NodeInfo {
        ollama_version: version.to_owned(),
        ..NodeInfo::default()
    }
}

/// The `X-Herd-Node` header.
pub fn node_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-herd-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// How many requests each node answered.
pub fn tally<'a>(nodes: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in nodes {
        *m.entry(n.clone()).or_insert(0) += 1;
    }
    m
}

/// Splits an NDJSON body into parsed lines.
pub fn ndjson(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
