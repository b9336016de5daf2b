//! A cap on open client connections: past it, a new connection is accepted
//! and closed at once, so a flood of idle connections cannot exhaust the
//! process's file descriptors, and the refusals are counted for `/metrics`.

use std::sync::Arc;

use axum::response::IntoResponse as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Open connections against a maximum, shared by every accept loop.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    refused: AtomicU64,
}

/// Holds one connection's place under the limit until dropped.
#[derive(Debug)]
pub struct ConnectionPermit(Arc<ConnectionLimit>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            max,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for one more connection, or `None` (counted as refused)
    /// when `max` are open.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if admitted {
            Some(ConnectionPermit(self.clone()))
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The limit's series in OpenMetrics text.
    pub fn metrics_text(&self) -> String {
        format!(
            "# HELP herd_server_connections_max Client connections served at once; more are closed at accept.\n\
             # TYPE herd_server_connections_max gauge\n\
             herd_server_connections_max {}\n\
             # HELP herd_server_connections_open Client connections open now.\n\
             # TYPE herd_server_connections_open gauge\n\
             herd_server_connections_open {}\n\
             # HELP herd_server_connections_refused Client connections closed at accept because the limit was reached.\n\
             # TYPE herd_server_connections_refused counter\n\
             herd_server_connections_refused_total {}\n",
            self.max,
            self.open(),
            self.refused()
        )
    }
}

/// `text` (OpenMetrics, ending in `# EOF`) with `extra` series inserted
/// before its end marker; appended when there is none.
pub fn insert_metrics(text: &str, extra: &str) -> String {
    let mut out = String::with_capacity(text.len() + extra.len());
    match text.rfind("# EOF") {
        Some(at) => {
            out.push_str(&text[..at]);
            out.push_str(extra);
            out.push_str(&text[at..]);
        }
        None => {
            out.push_str(text);
            out.push_str(extra);
        }
    }
    out
}

/// Adds the limit's series to `GET /metrics` answers; other requests pass
/// untouched.
pub async fn metrics_with_connections(
    axum::extract::State(limit): axum::extract::State<Arc<ConnectionLimit>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path() != "/metrics" {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // The proxy renders its metrics as one string; this reads it back whole.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let text = insert_metrics(&String::from_utf8_lossy(&bytes), &limit.metrics_text());
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_up_to_max_then_refuses_and_frees_on_drop() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none(), "third is refused");
        assert_eq!((limit.open(), limit.refused()), (2, 1));
        drop(a);
        let c = limit.try_acquire().expect("a place came free");
        assert_eq!((limit.open(), limit.refused()), (2, 1));
        drop((b, c));
        assert_eq!(limit.open(), 0);
        assert!(ConnectionLimit::new(0).try_acquire().is_none());
    }

    #[test]
    fn metrics_go_before_the_end_marker() {
        for (text, want) in [
            ("a 1\n# EOF\n", "a 1\nX\n# EOF\n"),
            ("a 1\n", "a 1\nX\n"),
            ("", "X\n"),
        ] {
            assert_eq!(insert_metrics(text, "X\n"), want, "{text:?}");
        }
    }
}
