//! Integration tests: a real server on 127.0.0.1:0 over a real SQLite file,
//! and the store over a real PostgreSQL (`pg_store`).

mod bad_input;
mod crud;
mod durability;
mod hostile;
mod pg_store;
mod store_conformance;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_apiserver::Config;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const BASE: &str = "/apis/herd/v1";

/// A server running in this process until dropped (or `stop`ped).
pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_with(Config::new(&dir)).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: &Path) -> Self {
        Self::start_with(Config::new(dir)).await
    }

    pub async fn start_with(config: Config) -> Self {
        let dir = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            herd_apiserver::run(config, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server ran");
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Self {
            url,
            http,
            stop: Some(tx),
            task: Some(task),
            dir,
            _tmp: None,
        }
    }

    /// Shuts down gracefully and waits until the store is closed.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops")
                .expect("join");
        }
        // Give the writer thread a moment to close SQLite after the channel drops.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self._tmp.take()
    }

    pub fn path(&self, p: &str) -> String {
        format!("{}{BASE}{p}", self.url)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send_raw(
            method,
            path,
            body.map(|b| ("application/json", b.to_string())),
        )
        .await
    }

    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.path(path));
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send_raw(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", body.to_string())),
        )
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn node(name: &str) -> Value {
    json!({"apiVersion":"herd/v1","kind":"Node","metadata":{"name":name},"spec":{"ollamaUrl":"http://127.0.0.1:11434"}})
}

pub fn assignment(name: &str, model: &str) -> Value {
    json!({"apiVersion":"herd/v1","kind":"ModelAssignment","metadata":{"name":name},"spec":{"model":model,"replicas":2}})
}

pub fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}
