//! Watch streams: NDJSON `WatchEvent`s read from the store's in-memory event
//! log. Each watcher keeps its own cursor and reads at its own pace, so a slow
//! watcher never holds up writers or other watchers; one that falls behind the
//! kept window gets a 410 and relists, as in Kubernetes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use herd_api::{API_VERSION, LabelSelector, Status};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::store::{ChangeType, Store, StoredObject, event_line};

/// Where a new watch starts.
pub enum Start {
    /// Every current object as `ADDED`, then live changes.
    Snapshot,
    /// Every change after this revision, then live changes.
    After(u64),
}

pub struct WatchParams {
    pub kind: &'static str,
    pub kind_name: &'static str,
    pub selector: LabelSelector,
    pub start: Start,
    pub bookmark_interval: Duration,
    pub timeout: Option<Duration>,
}

struct Watcher {
    store: Arc<dyn Store>,
    params: WatchParams,
    cursor: u64,
    pending: Option<Vec<Arc<StoredObject>>>,
    revisions: watch::Receiver<u64>,
    last_sent: Instant,
    deadline: Option<Instant>,
    shutdown: CancellationToken,
    finished: bool,
}

const EVENTS_PER_CHUNK: usize = 256;

fn bookmark_line(kind: &str, rv: u64) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"BOOKMARK\",\"object\":{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"{kind}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"}}}}}}\n"
    ))
}

fn error_line(status: &Status) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({"type": "ERROR", "object": status}))
        .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl Watcher {
    /// The next chunk to send, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        if let Some(objects) = self.pending.take() {
            let mut chunk = BytesMut::new();
            for o in objects
                .iter()
                .filter(|o| self.params.selector.matches(&o.labels))
            {
                chunk.extend_from_slice(&event_line(ChangeType::Added, &o.body));
            }
            if !chunk.is_empty() {
                self.last_sent = Instant::now();
                return Some(chunk.freeze());
            }
        }
        loop {
            // Mark the current revision as seen before reading, so a commit
            // landing after the read wakes us.
            self.revisions.borrow_and_update();
            match self.store.events_after(self.cursor, EVENTS_PER_CHUNK) {
                Err(e) => {
                    self.finished = true;
                    return Some(error_line(&ApiError::from(e).to_status()));
                }
                Ok(events) if !events.is_empty() => {
                    let mut chunk = BytesMut::new();
                    for e in &events {
                        self.cursor = e.rv;
                        if e.kind == self.params.kind
                            && let Some(line) = e.line_for(&self.params.selector)
                        {
                            chunk.extend_from_slice(&line);
                        }
                    }
                    if !chunk.is_empty() {
                        self.last_sent = Instant::now();
                        return Some(chunk.freeze());
                    }
                    continue;
                }
                Ok(_) => {}
            }
            let bookmark_at = self.last_sent + self.params.bookmark_interval;
            let deadline = self.deadline;
            tokio::select! {
                changed = self.revisions.changed() => {
                    if changed.is_err() {
                        self.finished = true;
                        return None;
                    }
                }
                () = tokio::time::sleep_until(bookmark_at) => {
                    self.last_sent = Instant::now();
                    return Some(bookmark_line(self.params.kind_name, self.cursor));
                }
                () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.finished = true;
                    return None;
                }
                () = self.shutdown.cancelled() => {
                    self.finished = true;
                    return None;
                }
            }
        }
    }
}

/// Starts a watch; the response streams until the client goes away, the
/// server shuts down, or `timeout` passes.
pub fn respond(
    store: Arc<dyn Store>,
    params: WatchParams,
    shutdown: CancellationToken,
) -> Response {
    let revisions = store.subscribe();
    let (cursor, pending) = match params.start {
        Start::Snapshot => {
            let (rv, objects) = store.list(params.kind, &|_| true);
            (rv, Some(objects))
        }
        Start::After(rv) => (rv, None),
    };
    let now = Instant::now();
    let deadline = params.timeout.map(|t| now + t);
    let watcher = Watcher {
        store,
        params,
        cursor,
        pending,
        revisions,
        last_sent: now,
        deadline,
        shutdown,
        finished: false,
    };
    let stream = futures_util::stream::unfold(watcher, |mut w| async move {
        w.next_chunk()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), w))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
