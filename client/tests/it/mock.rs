//! A scripted stand-in for herd's API server: each test says what every
//! request gets, including the edge cases a real server produces rarely
//! (a stream cut mid-line, 410 on resume, error bodies that are not JSON).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use herd_client::Client;
use serde_json::{Value, json};

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Req {
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").is_some_and(|w| w == "true")
    }
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How a streamed answer ends.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// Clean end of the body.
    Close,
    /// The connection breaks: the body ends with an error.
    Abort,
    /// Stays open, sending nothing more.
    Hang,
}

pub enum Reply {
    Json(u16, Value),
    Text(u16, String),
    /// A 200 NDJSON body sent chunk by chunk, a little apart so the client
    /// reads them separately.
    Stream(Vec<String>, End),
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

#[derive(Clone)]
struct MockState {
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Req>>>,
}

pub struct Mock {
    pub url: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Mock {
    pub async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = MockState {
            handler: Arc::new(handler),
            log: log.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, log }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url).expect("client")
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().expect("log").clone()
    }

    /// The `resourceVersion` of each watch request, in order.
    pub fn watch_versions(&self) -> Vec<Option<String>> {
        self.requests()
            .iter()
            .filter(|r| r.is_watch())
            .map(|r| r.q("resourceVersion").map(str::to_owned))
            .collect()
    }

    pub fn list_count(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == Method::GET && !r.is_watch() && r.path == NODES)
            .count()
    }
}

pub const NODES: &str = "/apis/herd/v1/nodes";

async fn handle(
    State(state): State<MockState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().map(url_pairs).unwrap_or_default();
    let req = Req {
        method,
        path: uri.path().to_owned(),
        query,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    };
    state.log.lock().expect("log").push(req.clone());
    match (state.handler)(&req) {
        Reply::Json(code, value) => (http_code(code), axum::Json(value)).into_response(),
        Reply::Text(code, text) => (
            http_code(code),
            [(header::CONTENT_TYPE, "text/plain")],
            text,
        )
            .into_response(),
        Reply::Stream(chunks, end) => {
            let body = stream::iter(chunks)
                .then(|c| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, std::io::Error>(Bytes::from(c))
                })
                .chain(
                    stream::once(async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        end
                    })
                    .flat_map(|end| match end {
                        End::Close => stream::empty().boxed(),
                        End::Abort => {
                            stream::iter([Err(std::io::Error::other("connection cut"))]).boxed()
                        }
                        End::Hang => stream::pending().boxed(),
                    }),
                );
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                Body::from_stream(body),
            )
                .into_response()
        }
    }
}

fn http_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("valid status code")
}

/// Minimal `application/x-www-form-urlencoded` decoding for the query.
fn url_pairs(q: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

// ---- wire fixtures ----

pub fn node(name: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "herd/v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": rv.to_string()},
        "spec": {"ollamaUrl": format!("http://{name}:11434")},
    })
}

pub fn node_list(rv: u64, items: &[Value]) -> Value {
    json!({"apiVersion": "herd/v1", "kind": "NodeList", "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

pub fn line(kind: &str, object: Value) -> String {
    format!("{}\n", json!({"type": kind, "object": object}))
}

pub fn bookmark(rv: u64) -> String {
    line(
        "BOOKMARK",
        json!({"apiVersion": "herd/v1", "kind": "Node", "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

pub fn gone_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Gone", "message": "resourceVersion 5 is too old"})
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason, "message": message})
}

/// Waits for the next item, failing the test instead of hanging it.
pub async fn next<S: futures_util::Stream + Unpin>(s: &mut S) -> S::Item {
    match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("stream ended"),
        Err(_) => panic!("timed out waiting for the next item"),
    }
}
