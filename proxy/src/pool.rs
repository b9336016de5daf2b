//! Keep-alive HTTP/1.1 connections to the nodes, driven inside the task of
//! the request that uses them.
//!
//! The request's own task writes the request, reads the response head and
//! then, as the client's side asks for it, the body: the whole exchange in
//! one place, the way nginx's event loop does it. No connection task, no
//! channels between tasks, one reused buffer for writing and one for
//! reading per connection; [`crate::h1`] holds the wire format.
//!
//! Idle connections wait in a LIFO pool. Before one is reused it is
//! checked for news from the node (a close, stray bytes) without a system
//! call unless the socket became readable. When a reused connection turns
//! out to have been closed by the node anyway (its write fails, or it ends
//! before a byte of response), a request whose body herd still holds goes
//! once more on a fresh connection, so a node that merely closed an idle
//! connection is not taken for a failed one.
//!
//! A connection's socket belongs to the runtime that opened it. When
//! `herd server` serves on a thread per core (each thread a runtime of its
//! own), each thread keeps its own idle connections: one opened on another
//! thread would only make progress when that thread's event loop runs.
//!
//! Dropping an [`UpstreamBody`] before its end closes the connection, which
//! is how a client's disconnect cancels the node's generation.
//!
//! A node with an `https://` URL is reached over rustls ([`Io::Tls`]); the
//! plain TCP path is the same socket it always was, behind one `match`.

use std::collections::HashMap;

/// foldhash, not SipHash: these maps are looked up on every request, where
/// SipHash's cost shows (docs/benchmarks.md), and their keys are node
/// addresses from the routing table, not from clients, so a keyed hash
/// buys nothing.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::future::poll_fn;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use axum::http::uri::Authority;
use axum::http::{HeaderMap, Method, Response, header};
use bytes::{Bytes, BytesMut};
use herd_api::node_address::{self, Cidr};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use crate::h1::{self, BodyLen, Decoder, Step, WireError};
use crate::table::Target;
use crate::upstream::{self, Outgoing, SendError, UpBody};

/// Which idle list a connection belongs to: its thread's, when it was
/// opened on a single-threaded runtime (only that thread drives its
/// socket); the common one on a multi-threaded runtime.
type Home = Option<ThreadId>;

fn current_home() -> Home {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            Some(std::thread::current().id())
        }
        _ => None,
    }
}

/// Bytes asked of the socket per read (hyper's first read size too).
const READ_SIZE: usize = 8 * 1024;
/// A request body up to this size goes out with its head in one write.
const INLINE_BODY: usize = 16 * 1024;
/// A connection keeps a head buffer up to this size for the next request.
const KEEP_OUT: usize = 2 * INLINE_BODY;

/// A connection's byte stream: plain TCP, or TLS over it for an
/// `https://` node.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// One connection to a node.
struct Conn {
    io: Io,
    /// Read from the node and not yet handed on.
    buf: BytesMut,
    /// Where request heads are written (kept for its capacity).
    out: Vec<u8>,
    home: Home,
    /// The first-byte timer, kept from request to request: moving a
    /// pending deadline later is one atomic update, where a new timer per
    /// request is an insertion into the runtime's timer wheel, a removal,
    /// and (when it is the earliest timer) a wake-up of the runtime's
    /// driver through its eventfd.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    /// Boxed: a connection moves between the pool, the request and the
    /// response body, as one pointer.
    fn new(io: Io) -> Box<Conn> {
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            home: current_home(),
            timer: None,
        })
    }

    /// Whether an idle connection is still good: nothing has come from the
    /// node since its last response (a close, a reset, stray bytes). The
    /// runtime knows the socket has been quiet without a system call.
    fn idle_ok(&mut self, cx: &mut Context<'_>) -> bool {
        let tls = matches!(self.io, Io::Tls(_));
        let tcp = self.io.tcp();
        match tcp.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Over TLS, bytes are records that cannot be looked at without
            // consuming them: an idle TLS connection with news is dropped.
            Poll::Ready(Ok(())) if tls => false,
            // Readable, or only marked so since the last read: look.
            Poll::Ready(Ok(())) => {
                matches!(tcp.try_read(&mut [0; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the node sent into `buf`; `Ok(0)` when it closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 8 {
            // Reuses the allocation when the body frames cut from it are gone.
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Writes the request: head and body.
    async fn write_request(&mut self, req: &mut Outgoing<'_>) -> Result<(), Failed> {
        let path = [req.target.prefix.as_str(), req.path_and_query.as_str()];
        let host = &req.target.host;
        let auth = req
            .target
            .auth
            .as_ref()
            .map(|v| (&header::AUTHORIZATION, v));
        let headers = upstream::forwarded(req.headers).chain(auth);
        self.out.clear();
        match &mut req.body {
            UpBody::Full(b) => {
                let b: &[u8] = b.as_deref().unwrap_or_default();
                let len = BodyLen::Known(b.len() as u64);
                h1::write_head(&mut self.out, req.method, path, host, headers, len);
                let r = if b.len() <= INLINE_BODY {
                    self.out.extend_from_slice(b);
                    self.io.write_all(&self.out).await
                } else {
                    match self.io.write_all(&self.out).await {
                        Ok(()) => self.io.write_all(b).await,
                        Err(e) => Err(e),
                    }
                };
                let r = match r {
                    Ok(()) => self.flush_tls().await,
                    e => e,
                };
                r.map_err(|e| Failed::Unsent(e.to_string()))
            }
            UpBody::Stream(s) => {
                let len = content_length(req.headers).map_or(BodyLen::Chunked, BodyLen::Known);
                h1::write_head(&mut self.out, req.method, path, host, headers, len);
                self.io
                    .write_all(&self.out)
                    .await
                    .map_err(|e| Failed::Unsent(e.to_string()))?;
                self.stream_body(s, len).await?;
                self.flush_tls()
                    .await
                    .map_err(|e| Failed::Sent(format!("writing the request body: {e}")))
            }
        }
    }

    /// Sends what TLS holds back (rustls buffers records; TCP writes go
    /// out at once and need no flush).
    async fn flush_tls(&mut self) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(_) => Ok(()),
            Io::Tls(s) => s.flush().await,
        }
    }

    /// Streams the client's body to the node as it arrives.
    async fn stream_body(&mut self, s: &mut axum::body::Body, len: BodyLen) -> Result<(), Failed> {
        let node = |e: std::io::Error| Failed::Sent(format!("writing the request body: {e}"));
        let mut sent: u64 = 0;
        while let Some(frame) = s.frame().await {
            let frame = frame.map_err(|e| Failed::Client(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers are not passed on
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            match len {
                BodyLen::Known(n) if sent > n => {
                    return Err(Failed::Client(format!(
                        "the body is longer than its Content-Length ({n})"
                    )));
                }
                BodyLen::Known(_) => self.io.write_all(&data).await.map_err(node)?,
                BodyLen::Chunked => {
                    self.out.clear();
                    h1::chunk_line(&mut self.out, data.len());
                    self.io.write_all(&self.out).await.map_err(node)?;
                    self.io.write_all(&data).await.map_err(node)?;
                    self.io.write_all(b"\r\n").await.map_err(node)?;
                }
            }
        }
        match len {
            BodyLen::Known(n) if sent < n => Err(Failed::Client(format!(
                "the body ended after {sent} of its {n} bytes (Content-Length)"
            ))),
            BodyLen::Known(_) => Ok(()),
            BodyLen::Chunked => self.io.write_all(b"0\r\n\r\n").await.map_err(node),
        }
    }

    /// Reads until a response head is in. `again`: an end before any byte
    /// means the node had closed this (reused) connection, and the request
    /// may go again.
    async fn read_head(&mut self, head_request: bool, again: bool) -> Result<h1::Head, Failed> {
        loop {
            match h1::parse_head(&mut self.buf, head_request) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Failed::Sent(e.to_string())),
            }
            let nothing_yet = self.buf.is_empty();
            match self.fill().await {
                Ok(0) if again && nothing_yet => {
                    return Err(Failed::Unsent("the node had closed the connection".into()));
                }
                Ok(0) => {
                    return Err(Failed::Sent(
                        "the node closed the connection before answering".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if again && nothing_yet && e.kind() == ErrorKind::ConnectionReset => {
                    return Err(Failed::Unsent(e.to_string()));
                }
                Err(e) => return Err(Failed::Sent(e.to_string())),
            }
        }
    }

    /// [`Conn::exchange`], given up at `deadline` (`Failed::Late`).
    async fn exchange_by(
        &mut self,
        req: &mut Outgoing<'_>,
        reused: bool,
        deadline: tokio::time::Instant,
    ) -> Result<h1::Head, Failed> {
        let mut timer = match self.timer.take() {
            Some(mut t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let result = {
            let mut work = std::pin::pin!(self.exchange(req, reused));
            poll_fn(|cx| match work.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| Err(Failed::Late)),
            })
            .await
        };
        self.timer = Some(timer);
        result
    }

    /// One request and its response head.
    async fn exchange(&mut self, req: &mut Outgoing<'_>, reused: bool) -> Result<h1::Head, Failed> {
        // A streamed body cannot go again once it has been read from.
        let replayable = matches!(req.body, UpBody::Full(_));
        let written = self.write_request(req).await;
        if self.out.capacity() > KEEP_OUT {
            // Idle connections should not each hold a large request.
            self.out = Vec::new();
        }
        match written {
            Ok(()) => {}
            // `Unsent` from writing: the head (or a held body) did not get
            // through, so a streamed body is still untouched too.
            Err(Failed::Unsent(e)) if !reused => return Err(Failed::Sent(e)),
            Err(e) => return Err(e),
        }
        self.read_head(*req.method == Method::HEAD, reused && replayable)
            .await
    }
}

/// The request's `Content-Length`, when it has exactly one valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => h1::decimal(v.as_bytes()),
        _ => None,
    }
}

/// Why an exchange failed.
enum Failed {
    /// Before the node can have acted on the request: a reused connection
    /// it had closed. The request may go again on a new connection.
    Unsent(String),
    /// After the request went out, or on a new connection.
    Sent(String),
    /// The client's own body failed (it went away, or broke its length).
    Client(String),
    /// No response head by the first-byte deadline.
    Late,
}

impl Failed {
    fn into_send_error(self, first_byte: Duration) -> SendError {
        match self {
            Failed::Unsent(e) | Failed::Sent(e) => SendError::Broken(e),
            Failed::Client(e) => SendError::ClientBody(e),
            Failed::Late => SendError::Timeout(first_byte),
        }
    }
}

/// Connects to the first of `addr`'s resolved addresses that the node
/// address policy allows: a node's host name cannot lead the proxy to a
/// cloud metadata address that its URL could not name. (The proxy's own
/// HTTP/1 client never follows redirects: a node's 3xx goes back to the
/// client as it is.)
async fn connect_allowed(addr: &str, allowed: &[Cidr]) -> Result<TcpStream, SendError> {
    let resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(|_| SendError::Connect("the node's host name does not resolve".into()))?;
    let (mut failed, mut refused) = (None, None);
    for a in resolved {
        if let Err(why) = node_address::check(a.ip(), allowed) {
            refused = Some(why);
            continue;
        }
        match TcpStream::connect(a).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failed = Some(e),
        }
    }
    Err(SendError::Connect(match (failed, refused) {
        (Some(e), _) => connect_failure(e.kind()).to_owned(),
        (None, Some(why)) => why,
        (None, None) => format!("{addr} resolves to no address"),
    }))
}

/// A failed connection in the proxy's words, never the socket's own text:
/// these messages reach node conditions, which anyone who may read nodes
/// can see, and raw errors would tell them how each address answered.
pub(crate) fn connect_failure(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::TimedOut => "timed out",
        _ => "the node's address is unreachable",
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

struct Inner {
    idle: Mutex<Map<Home, Map<String, Vec<Idle>>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_node: usize,
    /// Networks node connections may reach although the node address
    /// policy refuses them by default.
    allowed: Vec<Cidr>,
}

impl Inner {
    fn take(&self, key: &str, now: Instant) -> Option<Box<Conn>> {
        let home = current_home();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&home)?.get_mut(key)?;
        while let Some(i) = list.pop() {
            if now.saturating_duration_since(i.since) < self.idle_timeout {
                return Some(i.conn);
            }
        }
        None
    }

    fn put(&self, key: &str, conn: Box<Conn>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let lists = idle.entry(conn.home).or_default();
        let list = match lists.get_mut(key) {
            Some(list) => list,
            None => lists.entry(key.to_owned()).or_default(),
        };
        if list.len() < self.max_idle_per_node {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for lists in idle.values_mut() {
            for list in lists.values_mut() {
                list.retain(|i| i.since.elapsed() < self.idle_timeout);
            }
            lists.retain(|_, l| !l.is_empty());
        }
        idle.retain(|_, l| !l.is_empty());
    }
}

/// The pool of connections to every node.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool; a background task closes connections idle for longer than
    /// `idle_timeout` until the pool is dropped. Needs a tokio runtime.
    #[cfg(test)]
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Pool {
        Pool::with_allowed(connect_timeout, idle_timeout, Vec::new())
    }

    /// A pool whose connections also reach the `allowed` networks (see
    /// [`herd_api::node_address`]).
    pub(crate) fn with_allowed(
        connect_timeout: Duration,
        idle_timeout: Duration,
        allowed: Vec<Cidr>,
    ) -> Pool {
        let inner = Arc::new(Inner {
            idle: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
            max_idle_per_node: 1024,
            allowed,
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let every = (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(i) => i.sweep(),
                    None => break,
                }
            }
        });
        Pool { inner }
    }

    async fn connect(&self, target: &Target) -> Result<Box<Conn>, SendError> {
        let timed_out = || {
            SendError::Connect(format!(
                "timed out after {}",
                humantime::format_duration(self.inner.connect_timeout)
            ))
        };
        let deadline = tokio::time::Instant::now() + self.inner.connect_timeout;
        let stream =
            tokio::time::timeout_at(deadline, connect_allowed(&target.addr, &self.inner.allowed))
                .await
                .map_err(|_| timed_out())??;
        let _ = stream.set_nodelay(true);
        let io = match &target.tls {
            None => Io::Plain(stream),
            Some(tls) => {
                let handshake = tls.connector.connect(tls.name.clone(), stream);
                let stream = tokio::time::timeout_at(deadline, handshake)
                    .await
                    .map_err(|_| timed_out())?
                    // The handshake's own error says which check failed
                    // (the certificate's name, its issuer) and no secret.
                    .map_err(|e| SendError::Connect(format!("TLS handshake failed: {e}")))?;
                Io::Tls(Box::new(stream))
            }
        };
        Ok(Conn::new(io))
    }

    /// An idle connection to `target` that is still good, if there is one.
    async fn checkout(&self, target: &Target, now: Instant) -> Option<Box<Conn>> {
        while let Some(mut c) = self.inner.take(target.authority.as_str(), now) {
            if poll_fn(|cx| Poll::Ready(c.idle_ok(cx))).await {
                return Some(c);
            }
        }
        None
    }

    /// Sends `req` to the node at `authority` and waits (at most
    /// `first_byte`, connecting and writing included) for the response
    /// head. The body comes with the connection, which goes back to the
    /// pool when the body has been read to its end.
    pub(crate) async fn send(
        &self,
        req: Outgoing<'_>,
        first_byte: Duration,
    ) -> Result<Response<UpstreamBody>, SendError> {
        self.send_at(req, first_byte, Instant::now()).await
    }

    /// [`Pool::send`] for a caller that has just read the clock: `now`.
    pub(crate) async fn send_at(
        &self,
        mut req: Outgoing<'_>,
        first_byte: Duration,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let target = req.target;
        let authority = &target.authority;
        // The first-byte timeout covers connecting, writing and waiting.
        let deadline = tokio::time::Instant::from_std(now) + first_byte;
        let connect = |target| async move {
            tokio::time::timeout_at(deadline, self.connect(target))
                .await
                .map_err(|_| SendError::Timeout(first_byte))?
        };
        let (mut conn, reused) = match self.checkout(target, now).await {
            Some(c) => (c, true),
            None => (connect(target).await?, false),
        };
        let head = match conn.exchange_by(&mut req, reused, deadline).await {
            Ok(head) => head,
            Err(Failed::Unsent(e)) => {
                tracing::debug!(%authority, error = %e, "pooled connection was closed; using a new one");
                conn = connect(target).await?;
                conn.exchange_by(&mut req, false, deadline)
                    .await
                    .map_err(|f| f.into_send_error(first_byte))?
            }
            Err(f) => return Err(f.into_send_error(first_byte)),
        };
        let mut resp = Response::new(UpstreamBody {
            conn: Some(conn),
            decoder: head.body,
            keep_alive: head.keep_alive,
            pool: Arc::downgrade(&self.inner),
            key: authority.clone(),
            done: false,
        });
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }
}

/// A node's response body, read from its connection in the reader's own
/// task; the connection returns to the pool at the end of the body.
///
/// The end is noticed as soon as the last byte of a body is read
/// (`is_end_stream`), not only at a final `None`: hyper's server stops
/// polling a body once it has written the declared length.
pub(crate) struct UpstreamBody {
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Weak<Inner>,
    key: Authority,
    done: bool,
}

impl UpstreamBody {
    fn end(&mut self) {
        self.done = true;
        let Some(conn) = self.conn.take() else { return };
        // Bytes beyond the response: the connection is out of step.
        if self.keep_alive
            && conn.buf.is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.put(self.key.as_str(), conn);
        }
    }

    fn fail(&mut self, e: WireError) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        self.conn = None;
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }

    /// For a response without a body (HEAD, empty 200): marks it ended and
    /// frees the connection now. True when there was nothing to read.
    pub(crate) fn end_if_empty(&mut self) -> bool {
        if !self.done && self.decoder == Decoder::Done {
            self.end();
        }
        self.done
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("node", &self.key)
            .field("decoder", &self.decoder)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                this.done = true;
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    this.decoder.settle(&mut conn.buf);
                    if this.decoder == Decoder::Done {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => return this.fail(e),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    if let Err(e) = this.decoder.eof() {
                        return this.fail(e);
                    }
                    this.keep_alive = false;
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connect_failures_are_worded_without_socket_text() {
        for (kind, want) in [
            (ErrorKind::ConnectionRefused, "connection refused"),
            (ErrorKind::TimedOut, "timed out"),
            (
                ErrorKind::HostUnreachable,
                "the node's address is unreachable",
            ),
            (
                ErrorKind::NetworkUnreachable,
                "the node's address is unreachable",
            ),
            (ErrorKind::Other, "the node's address is unreachable"),
        ] {
            assert_eq!(connect_failure(kind), want, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn connections_to_refused_networks_are_not_attempted_unless_allowed() {
        let refused = connect_allowed("169.254.169.254:80", &[]).await;
        match refused {
            Err(SendError::Connect(m)) => assert!(m.contains("--allow-node-addresses"), "{m}"),
            other => panic!("expected a refusal, got {:?}", other.map(drop)),
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        assert!(
            connect_allowed(&addr, &[]).await.is_ok(),
            "loopback is fine"
        );
        let only_loopback: Vec<Cidr> = vec!["127.0.0.0/8".parse().expect("cidr")];
        assert!(connect_allowed(&addr, &only_loopback).await.is_ok());
    }

    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::uri::PathAndQuery;
    use axum::http::{Method, Request, StatusCode};
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::Incoming;
    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A tiny HTTP/1.1 server counting connections; `/stream` answers
    /// chunked, `/close` closes the connection after answering, anything
    /// else a sized body.
    async fn server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let body: http_body_util::combinators::BoxBody<Bytes, Infallible> =
                            match req.uri().path() {
                                "/stream" => StreamBody::new(futures_util::stream::iter(
                                    ["a\n", "b\n", "c\n"]
                                        .map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from(s)))),
                                ))
                                .boxed(),
                                _ => Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed(),
                            };
                        let mut resp = Response::new(body);
                        if req.uri().path() == "/close" {
                            resp.headers_mut()
                                .insert("connection", "close".parse().expect("header"));
                        }
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    /// What a request to a node is made of, owned by the test.
    struct Req {
        method: Method,
        target: Target,
        pq: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Req {
        fn out(&self) -> Outgoing<'_> {
            Outgoing {
                method: &self.method,
                target: &self.target,
                path_and_query: &self.pq,
                headers: &self.headers,
                body: UpBody::full(self.body.clone()),
            }
        }
    }

    fn req(method: Method, addr: &str, path: &str, body: &'static str) -> Req {
        Req {
            method,
            target: Target::parse(&format!("http://{addr}")).expect("target"),
            pq: path.parse().expect("path"),
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn get(addr: &str, path: &str) -> Req {
        req(Method::GET, addr, path, "")
    }

    async fn body(r: Response<UpstreamBody>) -> Bytes {
        r.into_body().collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection_for_sized_and_chunked_bodies() {
        let (addr, accepted) = server().await;
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        for path in ["/", "/stream", "/", "/stream", "/"] {
            let r = pool
                .send(get(&addr, path).out(), Duration::from_secs(5))
                .await
                .expect("send");
            assert_eq!(r.status(), StatusCode::OK);
            let b = body(r).await;
            assert!(!b.is_empty());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_early_closes_its_connection() {
        let (addr, accepted) = server().await;
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        let r = pool
            .send(get(&addr, "/stream").out(), Duration::from_secs(5))
            .await
            .expect("send");
        drop(r);
        let r = pool
            .send(get(&addr, "/").out(), Duration::from_secs(5))
            .await
            .expect("send");
        body(r).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_node_closed_is_not_reused() {
        let (addr, accepted) = server().await;
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        let r = pool
            .send(get(&addr, "/close").out(), Duration::from_secs(5))
            .await
            .expect("send");
        body(r).await;
        // Give the close a moment to arrive; the next request must still work.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = pool
            .send(get(&addr, "/").out(), Duration::from_secs(5))
            .await
            .expect("second request on a new connection");
        assert_eq!(body(r).await, Bytes::from_static(b"{\"ok\":true}"));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Two threads with single-threaded runtimes of their own, as `herd
    /// server` serves: the second must not get the first one's idle
    /// connection, which only the first thread's (now idle) runtime drives.
    #[test]
    fn threads_with_runtimes_of_their_own_keep_their_own_connections() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (addr, accepted) = rt.block_on(server());
        let pool =
            rt.block_on(async { Pool::new(Duration::from_secs(1), Duration::from_secs(30)) });
        let request = {
            let (pool, addr) = (pool.clone(), addr.clone());
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let r = pool
                        .send(get(&addr, "/").out(), Duration::from_secs(2))
                        .await
                        .expect("send");
                    body(r).await;
                    let r = pool
                        .send(get(&addr, "/").out(), Duration::from_secs(2))
                        .await
                        .expect("send again");
                    body(r).await;
                });
                rt
            }
        };
        let (first_done, first_waits) = std::sync::mpsc::channel();
        let (second_done, second_waits) = std::sync::mpsc::channel::<()>();
        let first = std::thread::spawn({
            let request = request.clone();
            move || {
                let runtime = request();
                let _ = first_done.send(());
                // Alive but not running, like a thread busy elsewhere.
                let _ = second_waits.recv();
                drop(runtime);
            }
        });
        first_waits.recv().expect("first thread");
        std::thread::spawn(move || drop(request()))
            .join()
            .expect("second thread");
        let _ = second_done.send(());
        first.join().expect("first thread");
        // One connection per thread, each reused once.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_connections_and_timeouts_are_told_apart() {
        let pool = Pool::new(Duration::from_millis(500), Duration::from_secs(30));
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .to_string();
        // Nothing listens there any more.
        let err = pool
            .send(get(&free, "/").out(), Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(matches!(err, SendError::Connect(_)), "{err:?}");
        // Accepts but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let err = pool
            .send(get(&addr, "/").out(), Duration::from_millis(100))
            .await
            .expect_err("timeout");
        assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
        drop(silent);
    }

    /// Reads one request (head and `Content-Length` body) off `tcp`;
    /// `None` when the client closed.
    async fn read_request(tcp: &mut TcpStream) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt as _;
        let mut got = Vec::new();
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().expect("length"));
                if got.len() >= end + 4 + len {
                    return Some(got);
                }
            }
            let mut b = [0; 4096];
            match tcp.read(&mut b).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
    }

    fn post(addr: &str, body: &'static str) -> Req {
        req(Method::POST, addr, "/api/generate", body)
    }

    /// The node closes a kept-alive connection just as the next request
    /// arrives on it (after the pool checked it): the request goes again
    /// on a new connection, and the caller sees only the answer.
    #[tokio::test]
    async fn a_request_the_node_dropped_with_its_idle_connection_goes_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            let mut n = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                n += 1;
                let first_connection = n == 1;
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut answered = 0;
                    while read_request(&mut tcp).await.is_some() {
                        seen.fetch_add(1, Ordering::SeqCst);
                        if first_connection && answered == 1 {
                            return; // closes without a word
                        }
                        answered += 1;
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..3 {
            let r = pool
                .send(post(&addr, "{}").out(), Duration::from_secs(5))
                .await
                .expect("answered");
            assert_eq!(body(r).await, Bytes::from_static(b"ok"));
        }
        // 1st and 2nd on the first connection (the 2nd dropped), the 2nd
        // again and the 3rd on the second.
        assert_eq!(requests.load(Ordering::SeqCst), 4);
    }

    /// Uploads stream through whole: with the client's length as it is,
    /// without one chunked.
    #[tokio::test]
    async fn streamed_uploads_arrive_whole_with_or_without_a_length() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let chunked = req.headers().contains_key("transfer-encoding");
                        let b = req.into_body().collect().await?.to_bytes();
                        let echo = format!("{chunked} {}", String::from_utf8_lossy(&b));
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(echo))))
                    });
                    let _ = server::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        let upload = |parts: &[&'static str], length: Option<&'static str>| {
            let mut r = req(Method::POST, &addr, "/api/blobs/x", "");
            if let Some(l) = length {
                r.headers
                    .insert("content-length", l.parse().expect("value"));
            }
            let parts: Vec<_> = parts
                .iter()
                .map(|s| Ok::<_, Infallible>(Bytes::from(*s)))
                .collect();
            (
                r,
                axum::body::Body::from_stream(futures_util::stream::iter(parts)),
            )
        };
        for length in [None, Some("11")] {
            let (r, stream) = upload(&["hello", " ", "world"], length);
            let out = Outgoing {
                body: UpBody::Stream(stream),
                ..r.out()
            };
            let resp = pool.send(out, Duration::from_secs(5)).await.expect("send");
            let want = format!("{} hello world", length.is_none());
            assert_eq!(body(resp).await, Bytes::from(want), "length {length:?}");
        }
        // A client body shorter than its length is the client's failure.
        let (r, stream) = upload(&["short"], Some("10"));
        let out = Outgoing {
            body: UpBody::Stream(stream),
            ..r.out()
        };
        let err = pool
            .send(out, Duration::from_secs(5))
            .await
            .expect_err("short body");
        assert!(matches!(err, SendError::ClientBody(_)), "{err:?}");
    }

    /// A body cut off by the node is an error at its end, not a short
    /// success, and its connection is not reused.
    #[tokio::test]
    async fn a_body_the_node_cut_short_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if read_request(&mut tcp).await.is_some() {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
                            .await;
                    }
                });
            }
        });
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        let r = pool
            .send(post(&addr, "{}").out(), Duration::from_secs(5))
            .await
            .expect("head");
        let mut b = r.into_body();
        let first = b.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), Bytes::from_static(b"abc"));
        let err = b.frame().await.expect("an end").expect_err("cut short");
        assert!(
            err.to_string().contains("before the response ended"),
            "{err}"
        );
        assert!(b.is_end_stream());
    }

    /// The first-byte timer is kept on the connection and moved from
    /// request to request: each request still gets the whole timeout from
    /// its own start, whether the previous deadline is pending or passed.
    #[tokio::test]
    async fn every_request_on_a_connection_gets_its_own_first_byte_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Answers two requests, then keeps the third waiting.
                    for _ in 0..2 {
                        if read_request(&mut tcp).await.is_none() {
                            return;
                        }
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                    let _ = read_request(&mut tcp).await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
            }
        });
        let pool = Pool::new(Duration::from_secs(1), Duration::from_secs(30));
        let first_byte = Duration::from_millis(300);
        let r = pool
            .send(post(&addr, "{}").out(), first_byte)
            .await
            .expect("first");
        body(r).await;
        // Idle past the first deadline: the timer has fired meanwhile.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = pool
            .send(post(&addr, "{}").out(), first_byte)
            .await
            .expect("second");
        body(r).await;
        // Back soon, with the second deadline still pending: moved later.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let err = pool
            .send(post(&addr, "{}").out(), first_byte)
            .await
            .expect_err("no answer");
        let waited = started.elapsed();
        assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
        assert!(
            waited >= first_byte && waited < Duration::from_secs(2),
            "gave up after {waited:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
