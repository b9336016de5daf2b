//! A router (the real apiserver on 127.0.0.1:0), a nodelet running in this process,
//! the `fake-ollama` binary as the Ollama the nodelet installs or starts, and polling
//! helpers bounded in time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use herd_api::{Condition, ConditionStatus, Node, find_condition};
use herd_client::{Api, Client};
use herd_nodelet::install::{InstallLayout, ProgressDisplay, layout};
use herd_nodelet::{DefaultModel, NodeletConfig, Timings};
use reqwest::Url;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything in these tests finishes well within this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs a test body with a hard time limit.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {LIMIT:?}"),
    }
}

/// Logs of the code under test, when `RUST_LOG` asks for them.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// The `fake-ollama` binary of this workspace (`target/<profile>/fake-ollama`),
/// built on first use when it is missing.
pub fn fake_ollama_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    BINARY
        .get_or_init(|| {
            let _guard = BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // tests run from target/<profile>/deps/it-<hash>
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile> directory")
                .to_owned();
            let binary = profile_dir.join("fake-ollama");
            if !binary.exists() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let mut build = std::process::Command::new(cargo);
                build.args(["build", "-p", "herd-testkit", "--bin", "fake-ollama"]);
                if profile_dir.file_name().is_some_and(|n| n == "release") {
                    build.arg("--release");
                }
                let status = build.status().expect("run cargo build for fake-ollama");
                assert!(
                    status.success() && binary.exists(),
                    "{} is missing and `cargo build -p herd-testkit --bin fake-ollama` failed ({status}); build it first",
                    binary.display()
                );
            }
            binary
        })
        .clone()
}

/// The `nodelet` example: the nodelet as its own process (SIGTERM and all). `cargo
/// test` builds examples with the tests; when it is missing, it is built here.
pub fn nodelet_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile> directory")
                .to_owned();
            let binary = profile_dir.join("examples").join("nodelet");
            if !binary.exists() {
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let mut build = std::process::Command::new(cargo);
                build.args(["build", "-p", "herd-nodelet", "--example", "nodelet"]);
                if profile_dir.file_name().is_some_and(|n| n == "release") {
                    build.arg("--release");
                }
                let status = build
                    .status()
                    .expect("run cargo build for the nodelet example");
                assert!(
                    status.success() && binary.exists(),
                    "{} is missing and building it failed ({status})",
                    binary.display()
                );
            }
            binary
        })
        .clone()
}

/// The fake-ollama binary's bytes.
pub fn fake_ollama_bytes() -> Vec<u8> {
    std::fs::read(fake_ollama_binary()).expect("read fake-ollama")
}

/// Puts fake-ollama into `install_dir` as herd's installed `version`, as an earlier
/// install would have left it.
pub fn preinstall(install_dir: &Path, version: &str) -> PathBuf {
    let layout = InstallLayout::new(install_dir);
    let bin = layout.version_dir(version).join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let binary = bin.join("ollama");
    std::fs::copy(fake_ollama_binary(), &binary).expect("copy fake-ollama");
    layout::make_executable(&binary).expect("chmod");
    layout::activate(&layout, version).expect("activate");
    binary
}

/// A port nothing listens on (right now).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The real API server in this process.
pub struct Router {
    pub url: Url,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Router {
    pub async fn start() -> Router {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Router::start_on(listener).await
    }

    /// On a given listener (to bring a router up on a port chosen earlier).
    pub async fn start_on(listener: TcpListener) -> Router {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let config = herd_apiserver::Config::new(dir.path());
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            herd_apiserver::run(config, listener, shutdown)
                .await
                .expect("apiserver");
        });
        let url = Url::parse(&format!("http://{addr}")).expect("url");
        let client = Client::new(url.as_str()).expect("client");
        Router {
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A config for a nodelet named `name` registering with `router`, managing the Ollama
/// at 127.0.0.1:`ollama_port`: millisecond timers, a 100 ms heartbeat, no default
/// model, no progress display, nothing found on `PATH`.
pub fn config(router: &Url, name: &str, install_dir: &Path, ollama_port: u16) -> NodeletConfig {
    let mut c = NodeletConfig::new(router.clone(), name, install_dir);
    c.ollama_url = Url::parse(&format!("http://127.0.0.1:{ollama_port}")).expect("url");
    c.heartbeat_interval = Duration::from_millis(100);
    c.timings = Timings::fast();
    c.display = ProgressDisplay::Hidden;
    c.default_model = DefaultModel::Off;
    c.path_var = Some(std::ffi::OsString::new());
    c
}

/// A nodelet running on this runtime.
pub struct Nodelet {
    stop: Option<oneshot::Sender<()>>,
    /// For [`Nodelet::spawn_skippable`]: the second signal.
    skip: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), herd_nodelet::NodeletError>>,
    pub started: Instant,
}

impl Nodelet {
    pub fn spawn(config: NodeletConfig) -> Nodelet {
        let (tx, rx) = oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(herd_nodelet::run(config, async {
            let _ = rx.await;
        }));
        Nodelet {
            stop: Some(tx),
            skip: None,
            task,
            started,
        }
    }

    /// Through [`herd_nodelet::run_with_skip_drain`]: [`Nodelet::signal_again`] is a
    /// second SIGTERM.
    pub fn spawn_skippable(config: NodeletConfig) -> Nodelet {
        let (tx, rx) = oneshot::channel::<()>();
        let (skip_tx, skip_rx) = oneshot::channel::<()>();
        let started = Instant::now();
        let skip = move || async move {
            // A dropped sender is no signal.
            if skip_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let task = tokio::spawn(herd_nodelet::run_with_skip_drain(
            config,
            async {
                let _ = rx.await;
            },
            skip,
        ));
        Nodelet {
            stop: Some(tx),
            skip: Some(skip_tx),
            task,
            started,
        }
    }

    /// What SIGTERM does in `herd nodelet`: resolves the shutdown future, then waits
    /// for `run` to return.
    pub async fn shutdown(mut self) {
        self.signal();
        self.join().await;
    }

    /// Resolves the shutdown future (SIGTERM) without waiting.
    pub fn signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// The second SIGTERM (only for [`Nodelet::spawn_skippable`]).
    pub fn signal_again(&mut self) {
        let tx = self.skip.take().expect("spawned with spawn_skippable");
        let _ = tx.send(());
    }

    /// Whether `run` returned.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for `run` to return, which must be with an error; the error.
    pub async fn failure(mut self) -> herd_nodelet::NodeletError {
        match (&mut self.task).await.expect("nodelet task") {
            Ok(()) => panic!("the nodelet should have stopped with an error"),
            Err(e) => e,
        }
    }

    /// Waits for `run` to return, which must be without error.
    pub async fn join(mut self) {
        (&mut self.task)
            .await
            .expect("nodelet task")
            .expect("nodelet run");
    }
}

/// Polls `get` every 20 ms until `pred` holds; panics with the last value after `limit`.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(
    what: &str,
    limit: Duration,
    mut get: F,
    pred: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(v) = get().await {
            if pred(&v) {
                return v;
            }
            last = Some(v);
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {limit:?}; last seen: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the node exists and `pred` holds.
pub async fn node_where(
    nodes: &Api<Node>,
    name: &str,
    what: &str,
    pred: impl Fn(&Node) -> bool,
) -> Node {
    eventually(
        what,
        Duration::from_secs(30),
        || async { nodes.get_opt(name).await.ok().flatten() },
        pred,
    )
    .await
}

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a Condition> {
    find_condition(&node.status.conditions, type_)
}

/// The condition's status and reason, e.g. `("True", "Answering")`.
pub fn cond(node: &Node, type_: &str) -> (ConditionStatus, String) {
    condition(node, type_).map_or((ConditionStatus::Unknown, "<missing>".to_owned()), |c| {
        (c.status, c.reason.clone())
    })
}

pub fn is_true(node: &Node, type_: &str) -> bool {
    cond(node, type_).0 == ConditionStatus::True
}

/// Whether anything accepts connections on 127.0.0.1:`port`.
pub async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Pids of processes whose executable is `binary` (Linux `/proc`).
pub fn pids_of(binary: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .collect()
}

/// Every version of condition `type_` of node `name` written from now on, in order
/// (the apiserver's watch delivers each write).
pub async fn record_condition(
    nodes: &Api<Node>,
    name: &str,
    type_: &'static str,
) -> std::sync::Arc<Mutex<Vec<(ConditionStatus, String, String)>>> {
    use futures_util::StreamExt;
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let mut stream = nodes
        .watch(&herd_client::WatchParams::default())
        .await
        .expect("watch nodes");
    let (name, record) = (name.to_owned(), seen.clone());
    tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            let node = match event {
                herd_api::WatchEvent::Added(n) | herd_api::WatchEvent::Modified(n) => n,
                _ => continue,
            };
            if node.metadata.name != name {
                continue;
            }
            if let Some(c) = condition(&node, type_) {
                let entry = (c.status, c.reason.clone(), c.message.clone());
                let mut seen = record.lock().expect("lock");
                if seen.last() != Some(&entry) {
                    seen.push(entry);
                }
            }
        }
    });
    seen
}
