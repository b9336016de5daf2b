//! Response bodies that count themselves and can die on purpose.
//!
//! Every response leaves the fake as a [`Body`] carrying the request's
//! [`RequestGuard`]: a streamed body that is dropped before its last chunk is
//! a cancelled request, which is how the fake sees a client or proxy hang up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::stats::RequestGuard;

/// gin's `c.JSON` content type.
pub(crate) const JSON: &str = "application/json; charset=utf-8";
/// Plain `application/json`, what the OpenAI middleware and pull's
/// non-streamed reply set.
pub(crate) const JSON_PLAIN: &str = "application/json";
pub(crate) const NDJSON: &str = "application/x-ndjson";
pub(crate) const SSE: &str = "text/event-stream";

/// The error a body yields to make hyper drop the connection.
#[derive(Debug)]
pub(crate) struct Killed;

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake-ollama: connection killed mid-stream (DieMidStream fault)")
    }
}

impl std::error::Error for Killed {}

enum Kind {
    Full(Option<Bytes>),
    Stream(BoxStream<'static, Bytes>),
}

struct Die {
    remaining: usize,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

pub(crate) struct Body {
    kind: Kind,
    guard: Option<RequestGuard>,
    die: Option<Die>,
    ended: bool,
}

impl Body {
    pub(crate) fn empty() -> Body {
        Body::full(Bytes::new())
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes: Bytes = bytes.into();
        Body {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            guard: None,
            die: None,
            ended: false,
        }
    }

    pub(crate) fn stream(s: impl Stream<Item = Bytes> + Send + 'static) -> Body {
        Body {
            kind: Kind::Stream(s.boxed()),
            guard: None,
            die: None,
            ended: false,
        }
    }

    /// Hands the request's counter to the body. A complete body (one buffer)
    /// counts as completed when it goes; a stream only once it ran out.
    pub(crate) fn with_guard(mut self, mut guard: RequestGuard) -> Body {
        if matches!(self.kind, Kind::Full(_)) {
            guard.complete();
        }
        self.guard = Some(guard);
        self
    }

    /// Arms `DieMidStream`: after `after_chunks` chunks the body errors and
    /// hyper drops the connection. A complete body is cut in half instead.
    pub(crate) fn die_after(mut self, after_chunks: usize) -> Body {
        let remaining = match std::mem::replace(&mut self.kind, Kind::Full(None)) {
            Kind::Full(Some(b)) => {
                let half = b.slice(..b.len() / 2);
                self.kind = Kind::Stream(futures_util::stream::iter([half]).boxed());
                1
            }
            Kind::Full(None) => {
                self.kind = Kind::Stream(futures_util::stream::empty().boxed());
                0
            }
            k @ Kind::Stream(_) => {
                self.kind = k;
                after_chunks
            }
        };
        self.die = Some(Die {
            remaining,
            wait: None,
        });
        self
    }

    fn finish(&mut self) {
        self.ended = true;
        if let Some(g) = self.guard.as_mut() {
            g.complete();
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Killed;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Killed>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(die) = this.die.as_mut()
            && die.remaining == 0
        {
            // Return Pending once so hyper flushes what was written, then
            // fail: the client sees the chunks, then a dead connection.
            let wait = die
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(10))));
            ready!(wait.as_mut().poll(cx));
            if let Some(g) = this.guard.as_mut() {
                g.abort();
            }
            this.ended = true;
            return Poll::Ready(Some(Err(Killed)));
        }
        let next = match &mut this.kind {
            Kind::Full(slot) => slot.take(),
            Kind::Stream(s) => ready!(s.poll_next_unpin(cx)),
        };
        match next {
            Some(b) => {
                if let Some(die) = this.die.as_mut() {
                    die.remaining = die.remaining.saturating_sub(1);
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (matches!(self.kind, Kind::Full(None)) && self.die.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.kind, &self.die) {
            (Kind::Full(b), None) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

pub(crate) fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Body,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

pub(crate) fn to_json_bytes(value: &impl Serialize) -> Bytes {
    // Our own types always serialise; fall back to an Ollama-shaped error.
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_else(|e| Bytes::from(format!("{{\"error\":\"{e}\"}}")))
}

/// gin's `c.JSON(status, value)`.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    response(status, Some(JSON), Body::full(to_json_bytes(value)))
}

/// `application/json` without charset (OpenAI middleware, pull).
pub(crate) fn json_plain(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let mut bytes = to_json_bytes(value).to_vec();
    bytes.push(b'\n'); // Go's json.Encoder appends a newline.
    response(status, Some(JSON_PLAIN), Body::full(bytes))
}

pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    s: &'static str,
) -> Response<Body> {
    response(
        status,
        Some(content_type),
        Body::full(Bytes::from_static(s.as_bytes())),
    )
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    response(status, None, Body::empty())
}

/// One NDJSON line.
pub(crate) fn ndjson_line(value: &impl Serialize) -> Bytes {
    let mut v = to_json_bytes(value).to_vec();
    v.push(b'\n');
    Bytes::from(v)
}

/// One SSE event, `data: <json>\n\n`.
pub(crate) fn sse_event(value: &impl Serialize) -> Bytes {
    let mut v = b"data: ".to_vec();
    v.extend_from_slice(&to_json_bytes(value));
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

pub(crate) fn streaming(
    content_type: &'static str,
    s: impl Stream<Item = Bytes> + Send + 'static,
) -> Response<Body> {
    response(StatusCode::OK, Some(content_type), Body::stream(s))
}
