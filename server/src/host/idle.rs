//! Closing client connections that went quiet: no request for a while
//! (keep-alive connections left idle, clients that vanished without closing,
//! request heads that stall), a request body the client stopped sending, or
//! a response the client has stopped reading (a hung client: its connection,
//! and the request's claim on a node, would otherwise stay forever).
//!
//! Counted per connection, without a timer or a clock read: requests begun
//! (hyper calls the service) and ended (hyper drops the response body);
//! request body bytes read, with whether a read is waiting for the client;
//! bytes written to the socket, with whether a write is waiting for the
//! client to read. A task per connection looks at the counts every quarter
//! of the limit and decides with [`IdleWatch`]; nothing on the request path
//! touches a timer. (hyper's own `header_read_timeout`, which covers only
//! the first case, arms a timer per request, a cost on the proxy's hot path
//! measured in docs/benchmarks.md.)

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What one client connection is doing.
#[derive(Default)]
pub(crate) struct Activity {
    /// Requests whose head hyper has read.
    begun: AtomicU64,
    /// Requests whose response body hyper is done with (sent, or dropped).
    ended: AtomicU64,
    /// Bytes written to the client.
    written: AtomicU64,
    /// The last write found the client's socket full.
    blocked: AtomicBool,
    /// Request body bytes read.
    uploaded: AtomicU64,
    /// A request body read is waiting for the client to send more.
    uploading: AtomicBool,
    /// The counts when [`quiet_for`] gave up on the connection.
    verdict: Mutex<Option<Counts>>,
}

/// A look at an [`Activity`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    begun: u64,
    ended: u64,
    written: u64,
    blocked: bool,
    uploaded: u64,
    uploading: bool,
}

impl Activity {
    pub(crate) fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> Counts {
        Counts {
            begun: self.begun.load(Ordering::Relaxed),
            ended: self.ended.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
            uploaded: self.uploaded.load(Ordering::Relaxed),
            uploading: self.uploading.load(Ordering::Relaxed),
        }
    }

    /// Whether the connection is as [`quiet_for`] left it when it gave up:
    /// then it can be dropped, with nothing begun or sent since.
    pub(crate) fn given_up(&self) -> bool {
        let verdict = *self.verdict.lock().unwrap_or_else(|e| e.into_inner());
        verdict == Some(self.counts())
    }
}

/// Resolves once the connection behind `activity` has been quiet for
/// `limit` (see [`IdleWatch::check`]), and leaves its verdict there.
pub(crate) async fn quiet_for(activity: &Activity, limit: Duration) {
    let tick = (limit / 4).max(Duration::from_millis(1));
    let mut watch = IdleWatch::default();
    loop {
        tokio::time::sleep(tick).await;
        let counts = activity.counts();
        if watch.check(counts, tick, limit) {
            *activity.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
            return;
        }
    }
}

/// The decision behind [`quiet_for`], one check at a time.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct IdleWatch {
    /// The counts at the previous check.
    seen: Counts,
    /// How long the connection has been quiet, in whole ticks.
    quiet: Duration,
}

impl IdleWatch {
    /// Given the counts `tick` after the previous check: whether the
    /// connection has now been quiet for `limit`. A tick is quiet when no
    /// request began or ended in it and none is in flight (idle); when a
    /// write was blocked at both ends of it with no byte written between (a
    /// client that does not read); or when a request body read was waiting
    /// at both ends with no byte read between (a client that stopped
    /// sending). A request in flight whose answer is slow to come, or a
    /// stream that pauses, is none of these.
    pub(crate) fn check(&mut self, now: Counts, tick: Duration, limit: Duration) -> bool {
        let seen = self.seen;
        let idle = now.begun == now.ended && now.begun == seen.begun && now.ended == seen.ended;
        let unread = now.blocked && seen.blocked && now.written == seen.written;
        let unsent = now.uploading && seen.uploading && now.uploaded == seen.uploaded;
        self.quiet = if idle || unread || unsent {
            self.quiet + tick
        } else {
            Duration::ZERO
        };
        self.seen = now;
        self.quiet >= limit
    }
}

/// A response's future that hands the request's [`Activity`] on to the
/// response body.
pub(crate) struct Counted<F> {
    pub answer: F,
    pub activity: Option<Arc<Activity>>,
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<axum::http::Response<Tracked>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = ready!(Pin::new(&mut this.answer).poll(cx))?;
        let activity = this.activity.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, activity })))
    }
}

/// A response body that counts its request as ended when hyper drops it.
pub(crate) struct Tracked {
    body: Body,
    activity: Option<Arc<Activity>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(a) = &self.activity {
            a.ended.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that counts what is read of it.
pub(crate) struct Upload {
    body: Incoming,
    activity: Arc<Activity>,
}

impl Upload {
    pub(crate) fn new(body: Incoming, activity: Arc<Activity>) -> Upload {
        Upload { body, activity }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        clear(&self.activity.uploading);
    }
}

/// Lowers `flag`, writing only when it is up (the usual case is down).
fn clear(flag: &AtomicBool) {
    if flag.load(Ordering::Relaxed) {
        flag.store(false, Ordering::Relaxed);
    }
}

impl HttpBody for Upload {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        let a = &this.activity;
        match &polled {
            Poll::Pending => a.uploading.store(true, Ordering::Relaxed),
            Poll::Ready(frame) => {
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
                    a.uploaded.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                clear(&a.uploading);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client's socket that counts what is written to it.
pub(crate) struct Watched<S = TcpStream> {
    pub tcp: S,
    pub activity: Option<Arc<Activity>>,
}

impl<S> Watched<S> {
    fn note(&self, written: &Poll<io::Result<usize>>) {
        let Some(a) = &self.activity else { return };
        match written {
            Poll::Ready(Ok(n)) => {
                a.written.fetch_add(*n as u64, Ordering::Relaxed);
                clear(&a.blocked);
            }
            Poll::Pending => a.blocked.store(true, Ordering::Relaxed),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.note(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(begun: u64, ended: u64, written: u64, blocked: bool) -> Counts {
        Counts {
            begun,
            ended,
            written,
            blocked,
            ..Counts::default()
        }
    }

    fn sending(uploaded: u64, uploading: bool) -> Counts {
        Counts {
            begun: 1,
            uploaded,
            uploading,
            ..Counts::default()
        }
    }

    #[test]
    fn a_connection_is_quiet_after_whole_idle_or_stuck_ticks() {
        let (tick, limit) = (Duration::from_secs(1), Duration::from_secs(4));
        let idle = at(0, 0, 0, false);
        let answered = at(1, 1, 500, false);
        // The counts at each check, and whether that check gives up.
        let cases: Vec<(&str, Vec<(Counts, bool)>)> = vec![
            (
                "never a request: closed after the limit",
                vec![(idle, false), (idle, false), (idle, false), (idle, true)],
            ),
            (
                "a request in flight with nothing written yet (a model loading) is never quiet",
                vec![(at(1, 0, 0, false), false); 6],
            ),
            (
                "a stream that pauses, the client keeping up, is never quiet",
                vec![
                    (at(1, 0, 100, false), false),
                    (at(1, 0, 100, false), false),
                    (at(1, 0, 100, false), false),
                    (at(1, 0, 100, false), false),
                    (at(1, 0, 200, false), false),
                    (at(1, 0, 200, false), false),
                ],
            ),
            (
                "the tick in which a request ended does not count",
                vec![
                    (at(1, 0, 0, false), false),
                    (answered, false),
                    (answered, false),
                    (answered, false),
                    (answered, false),
                    (answered, true),
                ],
            ),
            (
                "a request begun and ended between two checks starts the count again",
                vec![
                    (idle, false),
                    (idle, false),
                    (idle, false),
                    (answered, false),
                    (answered, false),
                    (answered, false),
                    (answered, false),
                    (answered, true),
                ],
            ),
            (
                "keep-alive traffic keeps it open",
                vec![
                    (at(1, 1, 10, false), false),
                    (at(2, 2, 20, false), false),
                    (at(3, 3, 30, false), false),
                    (at(4, 4, 40, false), false),
                    (at(5, 5, 50, false), false),
                ],
            ),
            (
                "a client that stopped reading: stuck from the first blocked check on",
                vec![
                    (at(1, 0, 900, false), false),
                    (at(1, 0, 4000, true), false),
                    (at(1, 0, 4000, true), false),
                    (at(1, 0, 4000, true), false),
                    (at(1, 0, 4000, true), false),
                    (at(1, 0, 4000, true), true),
                ],
            ),
            (
                "a slow reader, blocked at every check but reading between them, is kept",
                vec![
                    (at(1, 0, 1000, true), false),
                    (at(1, 0, 2000, true), false),
                    (at(1, 0, 3000, true), false),
                    (at(1, 0, 4000, true), false),
                    (at(1, 0, 5000, true), false),
                    (at(1, 0, 6000, true), false),
                ],
            ),
            (
                "a write that unblocks and blocks again between checks counts as progress",
                vec![
                    (at(1, 0, 1000, true), false),
                    (at(1, 0, 1000, true), false),
                    (at(1, 0, 1000, true), false),
                    (at(1, 0, 1500, true), false),
                    (at(1, 0, 1500, true), false),
                    (at(1, 0, 1500, true), false),
                    (at(1, 0, 1500, true), false),
                    (at(1, 0, 1500, true), true),
                ],
            ),
            (
                "a client that stopped sending its body: stuck from the first waiting check on",
                vec![
                    (sending(4096, false), false),
                    (sending(8192, true), false),
                    (sending(8192, true), false),
                    (sending(8192, true), false),
                    (sending(8192, true), false),
                    (sending(8192, true), true),
                ],
            ),
            (
                "a slow upload, waiting at every check but sending between them, is kept",
                vec![
                    (sending(100, true), false),
                    (sending(200, true), false),
                    (sending(300, true), false),
                    (sending(400, true), false),
                    (sending(500, true), false),
                    (sending(600, true), false),
                ],
            ),
            (
                "a body the handler does not read (herd busy with the node) is not the client's stall",
                vec![(sending(8192, false), false); 6],
            ),
        ];
        for (name, checks) in &cases {
            let mut watch = IdleWatch::default();
            for (i, (counts, gives_up)) in checks.iter().enumerate() {
                assert_eq!(
                    watch.check(*counts, tick, limit),
                    *gives_up,
                    "{name}: check {i}"
                );
            }
        }
    }
}
