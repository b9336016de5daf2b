//! Helpers for the tests of the kubectl-like verbs: run the real `herd`
//! binary against a server, and write to the server as other clients would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use herd_api::RequestRecord;
use serde_json::Value;

/// The repository's example manifests.
pub fn manifests_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests"))
}

/// What a finished `herd` run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the run succeeded.
    #[track_caller]
    pub fn success(self) -> Self {
        assert!(
            self.ok,
            "herd failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(
            !self.ok,
            "herd should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The data directory of each `herd server` a test started, by URL.
static DATA_DIRS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// Notes where the server at `url` keeps its data, so runs against it send
/// the admin key it wrote there.
pub fn remember_data_dir(url: &str, dir: &std::path::Path) {
    DATA_DIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((url.to_owned(), dir.to_owned()));
}

/// The admin key of the server at `url`, when a test started it and it wrote one.
pub fn admin_key(url: &str) -> Option<herd_auth::Token> {
    let dirs = DATA_DIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_, dir) = dirs.iter().find(|(u, _)| u == url)?;
    herd_auth::read_key_file(&dir.join("admin.key")).ok()
}

fn command(server: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd"));
    cmd.args(args)
        .env("HERD_SERVER", server)
        // Never a login or admin key of the machine running the tests.
        .env(
            "HERD_CONFIG",
            std::env::temp_dir().join("herd-tests-no-login.json"),
        )
        .env(
            "HERD_DATA_DIR",
            std::env::temp_dir().join("herd-tests-no-data-dir"),
        )
        .env_remove("HERD_TOKEN")
        .env_remove("HERD_CA_CERT")
        .env_remove("RUST_LOG");
    if let Some(key) = admin_key(server) {
        cmd.env("HERD_TOKEN", key.expose());
    }
    cmd
}

/// Runs `herd ARGS` against `server` (through `HERD_SERVER`).
pub fn herd(server: &str, args: &[&str]) -> Run {
    herd_stdin(server, args, "")
}

/// Runs `herd ARGS` with `stdin` as its standard input.
pub fn herd_stdin(server: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = command(server, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herd");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("wait for herd");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A long-running `herd` (`get -w`, `drain`) whose output is read line by
/// line as it comes; killed when dropped.
pub struct Streaming {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Streaming {
    pub fn start(server: &str, args: &[&str]) -> Self {
        let mut child = command(server, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herd");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to 15 s) for a line (of stdout or stderr) matching `want`.
    #[track_caller]
    pub fn expect_line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no matching line within 15 s; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (up to 15 s) for the process to end; its success.
    pub fn wait(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Collect what is left to read.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "herd did not finish; saw:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a future to completion on a runtime of its own (for the plain
/// `#[test]`s that talk to the server as another client).
/// A client that sends the admin key of the server at `server`, if it has one.
pub fn http_for(server: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = admin_key(server) {
        let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", key.expose()))
            .expect("a key is a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// `PATCH` with a JSON merge patch, as another client (a nodelet, the
/// proxy) would; `path` is under `/apis/herd/v1/`.
pub fn merge_patch(server: &str, path: &str, patch: Value) -> Value {
    block(async {
        let r = http_for(server)
            .patch(format!("{server}/apis/herd/v1/{path}"))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .expect("patch");
        assert!(r.status().is_success(), "PATCH {path}: {}", r.status());
        r.json().await.expect("json")
    })
}

/// `POST` of a new object under `/apis/herd/v1/{plural}`.
pub fn create(server: &str, plural: &str, obj: Value) -> Value {
    block(async {
        let r = http_for(server)
            .post(format!("{server}/apis/herd/v1/{plural}"))
            .json(&obj)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "POST {plural}: {}", r.status());
        r.json().await.expect("json")
    })
}

/// `GET` under `/apis/herd/v1/`; `None` on 404.
pub fn get(server: &str, path: &str) -> Option<Value> {
    block(async {
        let r = http_for(server)
            .get(format!("{server}/apis/herd/v1/{path}"))
            .send()
            .await
            .expect("get");
        if r.status() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        Some(r.json().await.expect("json"))
    })
}

/// The names in a list (`nodes`, `modelassignments`).
pub fn names(server: &str, plural: &str) -> Vec<String> {
    let list = get(server, plural).expect("list");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// An API server in this process: nothing else (no controller, no proxy)
/// writes to it, so tests of who-changed-what see only their own writes.
/// Optionally with a stand-in for the proxy's request history at
/// `/apis/herd/v1/requests`: filtering by `node` and `model`, newest first,
/// up to `limit`; with `watch=true` (when the feed is on) an NDJSON stream
/// of the records [`push`](Self::push)ed from then on.
pub struct ApiServer {
    pub url: String,
    history: Option<Arc<History>>,
    runtime: Option<tokio::runtime::Runtime>,
    token: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

struct History {
    /// Newest first.
    records: Mutex<Vec<RequestRecord>>,
    feed: Option<tokio::sync::broadcast::Sender<RequestRecord>>,
}

impl ApiServer {
    /// The API alone, as before the proxy is added: no request history.
    pub fn plain() -> Self {
        Self::start(None)
    }

    /// With a request history and its feed of new requests.
    pub fn with_requests(requests: Vec<RequestRecord>) -> Self {
        Self::start(Some((requests, true)))
    }

    /// Like an older proxy: lists only, so `get requests -w` has to poll.
    pub fn with_requests_without_feed(requests: Vec<RequestRecord>) -> Self {
        Self::start(Some((requests, false)))
    }

    /// A request the proxy has just finished.
    pub fn push(&self, record: RequestRecord) {
        let history = self.history.as_ref().expect("a request history");
        history
            .records
            .lock()
            .expect("lock")
            .insert(0, record.clone());
        if let Some(feed) = &history.feed {
            let _ = feed.send(record);
        }
    }

    /// A request sent only to the feed, never listed: a client shows it
    /// only if it streams the feed rather than polling the list.
    pub fn push_to_feed_only(&self, record: RequestRecord) {
        let history = self.history.as_ref().expect("a request history");
        if let Some(feed) = &history.feed {
            let _ = feed.send(record);
        }
    }

    fn start(requests: Option<(Vec<RequestRecord>, bool)>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let token = tokio_util::sync::CancellationToken::new();
        let config = herd_apiserver::Config::new(dir.path());
        let history = requests.map(|(records, feed)| {
            Arc::new(History {
                records: Mutex::new(records),
                feed: feed.then(|| tokio::sync::broadcast::channel(64).0),
            })
        });
        let served = history.clone();
        let url = runtime.block_on(async {
            let (api, _state) = herd_apiserver::build(config, token.clone()).expect("build");
            let router = match served {
                Some(served) => {
                    let handler = move |q: axum::extract::Query<HashMap<String, String>>| {
                        let history = served.clone();
                        async move { history_answer(&history, &q.0) }
                    };
                    api.route("/apis/herd/v1/requests", axum::routing::get(handler))
                }
                None => api,
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let stop = token.clone();
            tokio::spawn(herd_server::host::serve(
                herd_apiserver::with_common_layers(router),
                listener,
                async move { stop.cancelled().await },
                token.clone(),
            ));
            url
        });
        Self {
            url,
            history,
            runtime: Some(runtime),
            token,
            _dir: dir,
        }
    }
}

fn history_answer(history: &History, q: &HashMap<String, String>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use futures_util::StreamExt as _;

    let node = q.get("node").cloned();
    let model = q.get("model").cloned();
    let wanted = move |r: &RequestRecord| {
        node.as_ref().is_none_or(|n| &r.node == n) && model.as_ref().is_none_or(|m| &r.model == m)
    };
    if let (Some("true"), Some(feed)) = (q.get("watch").map(String::as_str), &history.feed) {
        let rx = feed.subscribe();
        let lines = futures_util::stream::unfold(rx, move |mut rx| {
            let wanted = wanted.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(r) if wanted(&r) => {
                            let mut line = serde_json::to_vec(&r).expect("encode");
                            line.push(b'\n');
                            return Some((Ok::<_, std::convert::Infallible>(line), rx));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        return (
            [("content-type", "application/x-ndjson")],
            axum::body::Body::from_stream(lines.boxed()),
        )
            .into_response();
    }
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let records = history.records.lock().expect("lock").clone();
    let items: Vec<&RequestRecord> = records.iter().filter(|r| wanted(r)).take(limit).collect();
    axum::Json(serde_json::json!({"kind": "RequestList", "items": items})).into_response()
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A proxied request as the proxy records it.
pub fn request(id: u64, model: &str, node: &str, status: u16) -> RequestRecord {
    RequestRecord {
        id,
        time: Some(herd_api::Timestamp::now()),
        method: "POST".into(),
        path: "/api/chat".into(),
        model: model.into(),
        node: node.into(),
        status,
        stream: true,
        latency_ms: 1234.0,
        ttft_ms: Some(87.0),
        tokens_in: Some(12),
        tokens_out: Some(240),
        ..RequestRecord::default()
    }
}
