//! The response body passed from a node to the client frame by frame.
//!
//! It never buffers: each frame is handed on as it arrives. Alongside it
//! keeps the last couple of kilobytes (by reference, no copy) so that when
//! the stream ends the token counts can be read from the final `done:true`
//! chunk or the OpenAI `usage` object without parsing every chunk. It holds
//! the node's in-flight count until the body ends or the client goes away
//! (dropping it closes the node connection, which cancels the generation),
//! and it writes the request's record exactly once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::error::stream_error_line;
use crate::history::{Outcome, Recorder};
use crate::pool::UpstreamBody;
use crate::table::{Clock, NodeLive};
use crate::upstream::chain;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts one request in a node's in-flight total while it lives.
pub(crate) struct InFlight(Arc<NodeLive>);

impl InFlight {
    pub(crate) fn new(live: Arc<NodeLive>) -> InFlight {
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(live)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a failure mid-body is told to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` was sent: the only honest signal is a cut connection.
    Sized,
    /// NDJSON (or any chunked body): one `{"error":"..."}` line, then the end.
    Ndjson,
    /// Server-sent events (`/v1` streams): one `data: {"error":...}` event.
    Sse,
}

impl Framing {
    pub(crate) fn of(headers: &axum::http::HeaderMap) -> Framing {
        if headers.contains_key(axum::http::header::CONTENT_LENGTH) {
            return Framing::Sized;
        }
        let sse = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if sse { Framing::Sse } else { Framing::Ndjson }
    }
}

/// Whether a response's `Content-Type` promises JSON (one document, NDJSON
/// or server-sent events of JSON): then a 2xx body that does not end like
/// JSON is the node's failure (a broken Ollama, something else on its port).
pub(crate) fn promises_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start();
            ct.starts_with("application/json")
                || ct.starts_with("application/x-ndjson")
                || ct.starts_with("text/event-stream")
        })
}

/// Whether the end of a body promised to be JSON looks like it: the last
/// non-blank line ends a JSON value (`}` or `]`), or is a server-sent
/// `data:` line. Only the end is checked (the tail may not hold a long
/// last line's start): enough to tell an HTML page, binary noise or a
/// truncated document from Ollama's answers. An empty body passes (Ollama
/// answers some 200s with nothing).
pub(crate) fn ends_like_json(tail: &[u8]) -> bool {
    let Some(line) = last_line(tail) else {
        return true;
    };
    line.starts_with(b"data:") || matches!(line.last(), Some(b'}' | b']'))
}

/// The last line with something besides whitespace in it, trimmed.
/// (`memrchr`: a one-frame answer like `/api/show`'s is a single line of a
/// kilobyte or more, scanned on every request.)
fn last_line(tail: &[u8]) -> Option<&[u8]> {
    let mut end = tail.len();
    loop {
        let start = memchr::memrchr(b'\n', &tail[..end]).map_or(0, |i| i + 1);
        let line = tail[start..end].trim_ascii();
        if !line.is_empty() {
            return Some(line);
        }
        end = start.checked_sub(1)?;
    }
}

/// The last bytes of a body, kept as shared slices of the frames (no copy,
/// and no allocation at all for a body of one frame).
#[derive(Default)]
pub(crate) struct Tail {
    last: Option<Bytes>,
    older: VecDeque<Bytes>,
    older_len: usize,
}

/// Enough for the final chunk's counters, which Ollama writes last.
const TAIL_KEEP: usize = 2048;

impl Tail {
    pub(crate) fn push(&mut self, b: &Bytes) {
        if let Some(prev) = self.last.replace(b.clone()) {
            if b.len() >= TAIL_KEEP {
                self.older.clear();
                self.older_len = 0;
            } else {
                self.older_len += prev.len();
                self.older.push_back(prev);
                while let Some(front) = self.older.front() {
                    if self.older_len - front.len() + b.len() >= TAIL_KEEP {
                        self.older_len -= front.len();
                        self.older.pop_front();
                    } else {
                        break;
                    }
                }
            }
        }
    }

    /// The kept bytes in one piece: borrowed when they are one frame.
    pub(crate) fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.last {
            None => std::borrow::Cow::Borrowed(&[]),
            Some(l) if self.older.is_empty() => std::borrow::Cow::Borrowed(&l[..]),
            Some(l) => {
                let mut v = Vec::with_capacity(self.older_len + l.len());
                for f in &self.older {
                    v.extend_from_slice(f);
                }
                v.extend_from_slice(l);
                std::borrow::Cow::Owned(v)
            }
        }
    }

    fn ends_with_newline(&self) -> bool {
        self.last
            .as_ref()
            .and_then(|b| b.last())
            .is_none_or(|c| *c == b'\n')
    }
}

/// The last occurrence of `needle`, jumping between occurrences of its
/// first byte (cheap: a JSON tail has a few hundred quotes, not thousands
/// of candidate positions).
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut end = hay.len().checked_sub(needle.len())? + 1;
    while let Some(i) = memchr::memrchr(first, &hay[..end]) {
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        end = i;
    }
    None
}

/// The unsigned number right after `key` (at the start of `hay`).
fn number_at(hay: &[u8]) -> Option<u64> {
    let start = hay.iter().position(|c| !c.is_ascii_whitespace())?;
    let digits = &hay[start..];
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Tokens in and out from the end of a response: Ollama's
/// `prompt_eval_count`/`eval_count` or OpenAI's `usage`. One backward
/// pass over the colons of the tail (one per JSON member: half as many
/// stops as quotes); the last occurrence of each key wins.
pub(crate) fn tokens(tail: &[u8]) -> (Option<u64>, Option<u64>) {
    const KEYS: [&[u8]; 4] = [
        b"\"prompt_eval_count\"",
        b"\"eval_count\"",
        b"\"prompt_tokens\"",
        b"\"completion_tokens\"",
    ];
    let mut found: [Option<u64>; 4] = [None; 4];
    let mut end = tail.len();
    while let Some(i) = memchr::memrchr(b':', &tail[..end]) {
        let key = &tail[..i];
        // The keys end `count"` or `tokens"`: most members are ruled out by
        // two bytes, without comparing strings.
        let candidates: &[usize] = match key.last_chunk::<2>() {
            Some(b"t\"") => &[0, 1],
            Some(b"s\"") => &[2, 3],
            _ => &[],
        };
        for &k in candidates {
            if found[k].is_none() && key.ends_with(KEYS[k]) {
                found[k] = number_at(&tail[i + 1..]);
            }
        }
        // Ollama's pair sits together at the very end: stop once both are in.
        if found[0].is_some() && found[1].is_some() {
            break;
        }
        end = i;
    }
    if found[0].is_some() || found[1].is_some() {
        (found[0], found[1])
    } else {
        (found[2], found[3])
    }
}

/// The last non-empty line says `"status":"success"` (create, push, pull).
pub(crate) fn ends_in_success(tail: &[u8]) -> bool {
    last_line(tail).is_some_and(|l| rfind(l, b"\"status\":\"success\"").is_some())
}

/// What to do once the body ends, and the record to complete.
pub(crate) struct Finisher {
    pub rec: Recorder,
    pub outcome: Outcome,
    pub in_flight: Option<InFlight>,
    /// Run when the response ends normally with a 2xx status (and, when
    /// `needs_success_line`, a final `"status":"success"`).
    pub on_success: Option<Box<dyn FnOnce() + Send>>,
    pub needs_success_line: bool,
    /// Look for token counts in the tail ([`tokens`]).
    pub counts_tokens: bool,
    /// Set when a 2xx body must end like JSON ([`promises_json`]): if it
    /// does not, the node is tripped until this clock's `now + cooldown`.
    pub garbage_trips: Option<(Clock, Duration)>,
}

#[derive(PartialEq, Eq)]
enum State {
    Streaming,
    Done,
}

/// See the module docs.
pub(crate) struct ProxyBody {
    inner: UpstreamBody,
    framing: Framing,
    tail: Tail,
    first_byte: Option<Duration>,
    state: State,
    node: Arc<str>,
    fin: Option<Finisher>,
}

enum Ended {
    Complete,
    NodeFailed(String),
    ClientGone,
}

impl ProxyBody {
    pub(crate) fn new(
        mut inner: UpstreamBody,
        framing: Framing,
        node: Arc<str>,
        fin: Finisher,
    ) -> ProxyBody {
        let empty = inner.end_if_empty();
        let mut body = ProxyBody {
            inner,
            framing,
            tail: Tail::default(),
            first_byte: None,
            state: State::Streaming,
            node,
            fin: Some(fin),
        };
        if empty {
            // Nothing to stream (HEAD, an empty 200): hyper's server may
            // never poll the body, so the request ends here.
            body.state = State::Done;
            body.finish(Ended::Complete);
        }
        body
    }

    fn finish(&mut self, how: Ended) {
        let Some(mut fin) = self.fin.take() else {
            return;
        };
        drop(fin.in_flight.take());
        let tail = self.tail.bytes();
        let (tin, tout) = if fin.counts_tokens {
            tokens(&tail)
        } else {
            (None, None)
        };
        let o = &mut fin.outcome;
        o.ttft = self.first_byte;
        o.tokens_in = tin;
        o.tokens_out = tout;
        match how {
            Ended::Complete => {
                let success = (200..300).contains(&o.status);
                if success
                    && let Some((clock, cooldown)) = fin.garbage_trips
                    && !ends_like_json(&tail)
                {
                    o.error = format!(
                        "node {} answered {} with a body that is not the JSON it announced",
                        self.node, o.status
                    );
                    tracing::warn!(node = %self.node, "node answered garbage: left out for the failure cooldown");
                    o.node_failed = true;
                    if let Some((_, live)) = &o.node {
                        live.trip(clock.after(cooldown));
                    }
                } else if success
                    && (!fin.needs_success_line || ends_in_success(&tail))
                    && let Some(f) = fin.on_success.take()
                {
                    f();
                }
            }
            Ended::NodeFailed(msg) => {
                o.error = msg;
                o.node_failed = true;
            }
            Ended::ClientGone => {
                o.error = "client closed the connection before the response ended".to_owned();
            }
        }
        let outcome = std::mem::take(&mut fin.outcome);
        fin.rec.finish(outcome);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.state == State::Done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    if this.first_byte.is_none()
                        && let Some(fin) = &this.fin
                    {
                        this.first_byte = Some(fin.rec.started().elapsed());
                    }
                    this.tail.push(data);
                }
                if this.inner.is_end_stream() {
                    // The last byte of a sized body: hyper's server will not
                    // poll again, so this is the end.
                    this.state = State::Done;
                    this.finish(Ended::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let msg = format!(
                    "node {} failed in the middle of the response: {}",
                    this.node,
                    chain(&e)
                );
                tracing::warn!(node = %this.node, error = %msg, "upstream stream broke");
                let framing = this.framing;
                let newline = this.tail.ends_with_newline();
                this.finish(Ended::NodeFailed(msg.clone()));
                this.state = State::Done;
                match framing {
                    Framing::Sized => Poll::Ready(Some(Err(e.into()))),
                    Framing::Ndjson | Framing::Sse => {
                        let line = stream_error_line(framing == Framing::Sse, &msg);
                        let line = if newline || framing == Framing::Sse {
                            line
                        } else {
                            // Never glue the error onto a half-written line.
                            let mut v = Vec::with_capacity(line.len() + 1);
                            v.push(b'\n');
                            v.extend_from_slice(&line);
                            Bytes::from(v)
                        };
                        Poll::Ready(Some(Ok(Frame::data(line))))
                    }
                }
            }
            None => {
                this.state = State::Done;
                this.finish(Ended::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.state, self.framing) {
            (State::Streaming, Framing::Sized) => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if self.fin.is_some() {
            self.finish(Ended::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_final_chunks() {
        let ollama = br#"{"model":"m","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":5,"prompt_eval_count":12,"prompt_eval_duration":3,"eval_count":34,"eval_duration":9}
"#;
        assert_eq!(tokens(ollama), (Some(12), Some(34)));
        let only_out = br#"{"done":true,"eval_count": 7}"#;
        assert_eq!(tokens(only_out), (None, Some(7)));
        let oai = br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}"#;
        assert_eq!(tokens(oai), (Some(5), Some(8)));
        let sse = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
        assert_eq!(tokens(sse), (Some(3), Some(4)));
        assert_eq!(
            tokens(b"{\"response\":\"tok\",\"done\":false}\n"),
            (None, None)
        );
    }

    #[test]
    fn tail_keeps_the_end_without_copying_everything() {
        let mut t = Tail::default();
        for i in 0..1000 {
            t.push(&Bytes::from(format!("{{\"n\":{i}}}\n")));
        }
        let b = t.bytes();
        assert!(
            b.len() >= TAIL_KEEP && b.len() < TAIL_KEEP + 64,
            "{}",
            b.len()
        );
        assert!(b.ends_with(b"{\"n\":999}\n"));
        let mut big = Tail::default();
        big.push(&Bytes::from(vec![b'x'; 10_000]));
        big.push(&Bytes::from_static(b"{\"eval_count\":3}"));
        assert_eq!(tokens(&big.bytes()), (None, Some(3)));
    }

    #[test]
    fn json_endings() {
        for (tail, want) in [
            (&b""[..], true),
            (b"\n\n", true),
            (b"{\"model\":\"m\",\"done\":true}\n", true),
            (b"{\"a\":1}", true),
            (b"{\"embeddings\":[[0.1,0.2]]}  \r\n", true),
            (b"[1,2]", true),
            (b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n", true),
            (b"\xde\xad\xbe\xef<html>not json {{{\x00\n", false),
            (b"<html><body>502 Bad Gateway</body></html>\n", false),
            (b"{\"model\":\"m\",\"response\":\"he", false),
            (b"{\"done\":true}\nnot json\n", false),
        ] {
            assert_eq!(
                ends_like_json(tail),
                want,
                "{:?}",
                String::from_utf8_lossy(tail)
            );
        }
        let mut h = axum::http::HeaderMap::new();
        assert!(!promises_json(&h));
        for (ct, want) in [
            ("application/json; charset=utf-8", true),
            ("application/x-ndjson", true),
            ("text/event-stream", true),
            ("text/plain; charset=utf-8", false),
            ("application/octet-stream", false),
        ] {
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(ct),
            );
            assert_eq!(promises_json(&h), want, "{ct}");
        }
    }

    #[test]
    fn success_line() {
        assert!(ends_in_success(
            b"{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n\n"
        ));
        assert!(!ends_in_success(
            b"{\"status\":\"success\"}\n{\"error\":\"boom\"}\n"
        ));
        assert!(!ends_in_success(b""));
    }
}
