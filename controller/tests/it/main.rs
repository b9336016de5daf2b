//! Integration tests: a real apiserver on 127.0.0.1:0 over SQLite, the
//! controller in-process talking to it over loopback, and simulated nodes
//! (a heartbeat task writing through `update_status_with_retry`, and a
//! tiny Ollama stand-in answering `/api/version`). Timers are milliseconds.

mod drain;
mod health;
mod hostile;
mod lease;
mod placement;
mod restart;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_api::{
    Condition, ConditionStatus, Event, Node, NodeCapacity, NodeModel, NodeSpec, NodeUsage,
    Resource, Timestamp, conditions, find_condition, set_condition,
};
use herd_client::backoff::Backoff;
use herd_client::{Api, Client, ListParams};
use herd_controller::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Settings at millisecond scale.
pub fn fast_config() -> Config {
    let quick = Backoff::WATCH.between(Duration::from_millis(20), Duration::from_millis(500));
    Config {
        heartbeat_grace: Duration::from_millis(400),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(200),
        replace_after: Duration::from_millis(800),
        resync: Duration::from_secs(1),
        error_backoff: quick,
        watch_backoff: quick,
        ..Config::default()
    }
}

pub const HEARTBEAT: Duration = Duration::from_millis(50);

/// An apiserver in this process, on a port of its own.
pub struct TestServer {
    pub url: String,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let config = herd_apiserver::Config::new(dir.path());
        let task = tokio::spawn(async move {
            herd_apiserver::run(config, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server ran");
        });
        let client = Client::new(&url).expect("client");
        Self {
            url,
            client,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn nodes(&self) -> Api<Node> {
        self.client.api()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A controller running in this process until stopped or dropped.
pub struct ControllerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ControllerHandle {
    pub fn start(client: &Client, config: Config) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let client = client.clone();
        let task = tokio::spawn(async move {
            herd_controller::run(config, client, async {
                let _ = rx.await;
            })
            .await
            .expect("controller ran");
        });
        Self {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops it and waits until every task of it has ended.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("controller stops")
                .expect("join");
        }
    }
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Ollama's `/api/version`, answering or failing on demand, on a port
/// that can be closed and reopened.
pub struct FakeOllama {
    pub addr: SocketAddr,
    broken: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl FakeOllama {
    pub async fn start() -> Self {
        let mut f = Self {
            addr: "127.0.0.1:0".parse().expect("addr"),
            broken: Arc::new(AtomicBool::new(false)),
            task: None,
        };
        f.listen().await;
        f
    }

    async fn listen(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(self.addr).expect("bind fake ollama");
        let listener = socket.listen(128).expect("listen");
        self.addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/api/version", get(version))
            .route("/", get(|| async { "Ollama is running" }))
            .with_state(self.broken.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the port: connections are refused.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Opens the same port again.
    pub async fn restart(&mut self) {
        self.stop();
        self.listen().await;
    }

    /// Answers 500 instead of the version.
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn version(State(broken): State<Arc<AtomicBool>>) -> Response {
    if broken.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"boom"}"#).into_response()
    } else {
        (
            [("content-type", "application/json; charset=utf-8")],
            r#"{"version":"0.33.0"}"#,
        )
            .into_response()
    }
}

/// What a simulated nodelet reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub models: Vec<String>,
    pub cpu_percent: f64,
}

/// A simulated machine: a registered node, its Ollama, and a nodelet that
/// heartbeats every [`HEARTBEAT`].
pub struct SimNode {
    pub name: String,
    pub ollama: FakeOllama,
    api: Api<Node>,
    report: Arc<Mutex<Report>>,
    beat: Option<JoinHandle<()>>,
}

impl SimNode {
    pub async fn start(server: &TestServer, name: &str, labels: &[(&str, &str)]) -> Self {
        let ollama = FakeOllama::start().await;
        let api = server.nodes();
        let mut node = Node::new(
            name,
            NodeSpec {
                url: ollama.url(),
                ..NodeSpec::default()
            },
        );
        node.metadata.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        api.apply(&node).await.expect("register");
        let mut sim = Self {
            name: name.to_owned(),
            ollama,
            api,
            report: Arc::new(Mutex::new(Report {
                models: vec![],
                cpu_percent: 0.0,
            })),
            beat: None,
        };
        sim.heartbeat_once().await;
        sim.resume_heartbeats();
        sim
    }

    async fn heartbeat_once(&self) {
        let report = self.report.lock().expect("lock").clone();
        heartbeat(&self.api, &self.name, &report).await;
    }

    pub fn resume_heartbeats(&mut self) {
        self.stop_heartbeats();
        let (api, name, report) = (self.api.clone(), self.name.clone(), self.report.clone());
        self.beat = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let r = report.lock().expect("lock").clone();
                heartbeat(&api, &name, &r).await;
            }
        }));
    }

    pub fn stop_heartbeats(&mut self) {
        if let Some(t) = self.beat.take() {
            t.abort();
        }
    }

    /// The machine dies: heartbeats stop and its Ollama port closes.
    pub fn kill(&mut self) {
        self.stop_heartbeats();
        self.ollama.stop();
    }

    /// What a nodelet does on SIGTERM: say so, then stop.
    pub async fn graceful_stop(&mut self) {
        self.stop_heartbeats();
        self.api
            .update_status_with_retry(&self.name, |s| {
                set_condition(
                    &mut s.conditions,
                    Condition::new(
                        conditions::NODELET_READY,
                        ConditionStatus::False,
                        "NodeletStopped",
                        "the nodelet received SIGTERM",
                    ),
                    Timestamp::now(),
                );
            })
            .await
            .expect("graceful stop");
    }

    pub fn add_model(&self, model: &str) {
        self.report
            .lock()
            .expect("lock")
            .models
            .push(model.to_owned());
    }

    pub fn set_cpu(&self, cpu: f64) {
        self.report.lock().expect("lock").cpu_percent = cpu;
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop_heartbeats();
    }
}

/// One heartbeat: only the nodelet's own fields (the proxy's `inFlight`
/// and the controller's conditions are left as they are).
async fn heartbeat(api: &Api<Node>, name: &str, report: &Report) {
    let result = api
        .update_status_with_retry(name, |s| {
            let now = Timestamp::now();
            s.last_heartbeat_time = Some(now);
            for ty in [conditions::NODELET_READY, conditions::OLLAMA_RUNNING] {
                set_condition(
                    &mut s.conditions,
                    Condition::new(ty, ConditionStatus::True, "Running", ""),
                    now,
                );
            }
            s.capacity = Some(NodeCapacity {
                cpus: 8,
                memory_bytes: 16 << 30,
                gpus: vec![],
            });
            let in_flight = s.usage.as_ref().map_or(0, |u| u.in_flight);
            s.usage = Some(NodeUsage {
                cpu_percent: report.cpu_percent,
                memory_percent: 40.0,
                in_flight,
            });
            s.models = report
                .models
                .iter()
                .map(|m| NodeModel {
                    name: m.clone(),
                    ..NodeModel::default()
                })
                .collect();
        })
        .await;
    if let Err(e) = result {
        eprintln!("heartbeat of {name} failed: {e}");
    }
}

/// Polls `check` until it gives `Some`, or panics after `within` with the
/// last thing `describe` said.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(status, reason)` of a condition.
pub fn cond(node: &Node, ty: &str) -> Option<(ConditionStatus, String)> {
    find_condition(&node.status.conditions, ty).map(|c| (c.status, c.reason.clone()))
}

/// Waits until the node's `ty` condition has this status (and reason, if given).
pub async fn wait_condition(
    api: &Api<Node>,
    name: &str,
    ty: &str,
    status: ConditionStatus,
    reason: Option<&str>,
    within: Duration,
) -> Node {
    wait_for(
        within,
        &format!("{name} {ty}={status:?} {reason:?}"),
        || async {
            let n = api.get(name).await.map_err(|e| e.to_string())?;
            match cond(&n, ty) {
                Some((s, r)) if s == status && reason.is_none_or(|want| want == r) => Ok(n),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Events about `name`, oldest first, as `(reason, message)`.
pub async fn events_for(client: &Client, name: &str) -> Vec<(String, String)> {
    let mut list: Vec<Event> = client
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.spec.involved_object.name == name)
        .collect();
    list.sort_by_key(|e| e.metadata.revision());
    for e in &list {
        herd_api::validate::dns1123_label(&e.metadata.name).expect("event name is a DNS label");
        assert_eq!(e.spec.source, "controller");
    }
    list.into_iter()
        .map(|e| (e.spec.reason, e.spec.message))
        .collect()
}

/// Waits until the events about `name` have exactly these reasons (events
/// are recorded just after the status write they describe).
pub async fn wait_events(client: &Client, name: &str, want: &[&str]) -> Vec<(String, String)> {
    wait_for(
        Duration::from_secs(10),
        &format!("events {want:?} for {name}"),
        || async {
            let ev = events_for(client, name).await;
            if reasons(&ev) == want {
                Ok(ev)
            } else {
                Err(format!("{ev:?}"))
            }
        },
    )
    .await
}

pub fn reasons(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(r, _)| r.as_str()).collect()
}

pub fn ms(a: Timestamp, b: Timestamp) -> i64 {
    a.duration_since(b).as_millis() as i64
}

pub fn transition_time(node: &Node, ty: &str) -> Timestamp {
    find_condition(&node.status.conditions, ty)
        .and_then(|c| c.last_transition_time)
        .expect("transition time")
}
