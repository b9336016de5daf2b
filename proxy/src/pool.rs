//! Keep-alive HTTP/1.1 connections to the nodes, driven inside the task of
//! the request that uses them.
//!
//! hyper-util's pooled client runs every connection as a task of its own,
//! so each proxied request crosses tasks (and often threads) three or four
//! times: the request into the connection task, the response head back,
//! then every body frame. Here the request's own task polls the
//! connection while it waits for the head and while it streams the body
//! (it is owned by [`UpstreamBody`]), the way nginx's event loop does the
//! whole exchange in one place. Idle connections wait in a LIFO pool; they
//! are checked before reuse (a node that closed one is noticed then), and
//! a request that a pooled connection failed to send (hyper hands it back)
//! goes once more on a fresh one.
//!
//! A connection's socket belongs to the runtime that opened it. When
//! `herd server` serves on a thread per core (each thread a runtime of its
//! own), each thread keeps its own idle connections: one opened on another
//! thread would only make progress when that thread's event loop runs.
//!
//! Dropping an [`UpstreamBody`] before its end closes the connection, which
//! is how a client's disconnect cancels the node's generation.

use std::collections::HashMap;

/// foldhash, not SipHash: these maps are looked up on every request (SipHash
/// was 2.5 % of the proxy's instructions), and their keys are node addresses
/// from the routing table, not from clients.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use axum::http::uri::Authority;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::{SendError, UpBody, chain};

type Driver = http1::Connection<TokioIo<TcpStream>, UpBody>;

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

/// One connection: the handle to send on and the future that does its I/O.
struct Conn {
    send: http1::SendRequest<UpBody>,
    driver: Pin<Box<Driver>>,
    home: Home,
}

impl Conn {
    /// Lets the connection catch up on what happened while it sat idle
    /// (a close, an error) and waits until it takes a request. `false`: it
    /// is dead.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if self.driver.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            match self.send.poll_ready(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Inner {
    idle: Mutex<Map<Home, Map<String, Vec<Idle>>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_node: usize,
}

impl Inner {
    fn take(&self, key: &str) -> Option<Conn> {
        let home = current_home();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&home)?.get_mut(key)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < self.idle_timeout {
                return Some(i.conn);
            }
        }
        None
    }

    fn put(&self, key: &str, conn: Conn) {
        if conn.send.is_closed() {
            return;
        }
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
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Pool {
        let inner = Arc::new(Inner {
            idle: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
            max_idle_per_node: 1024,
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

    async fn connect(&self, authority: &str) -> Result<Conn, SendError> {
        let stream =
            tokio::time::timeout(self.inner.connect_timeout, TcpStream::connect(authority))
                .await
                .map_err(|_| {
                    SendError::Connect(format!(
                        "timed out after {}",
                        humantime::format_duration(self.inner.connect_timeout)
                    ))
                })?
                .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (send, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(chain(&e)))?;
        Ok(Conn {
            send,
            driver: Box::pin(driver),
            home: current_home(),
        })
    }

    /// A ready connection to `authority`: a pooled one that is still good,
    /// else a new one. Also says whether it was reused.
    async fn checkout(&self, authority: &str) -> Result<(Conn, bool), SendError> {
        while let Some(mut c) = self.inner.take(authority) {
            if c.ready().await {
                return Ok((c, true));
            }
        }
        let mut c = self.connect(authority).await?;
        if c.ready().await {
            Ok((c, false))
        } else {
            Err(SendError::Broken("the connection closed at once".into()))
        }
    }

    /// Sends `req` to the node at `authority` and waits (at most
    /// `first_byte`, connecting included) for the response head. The body
    /// comes with the connection, which goes back to the pool when the body
    /// has been read to its end.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        req: Request<UpBody>,
        first_byte: Duration,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let work = async {
            let (mut conn, reused) = self.checkout(authority.as_str()).await?;
            match self.exchange(&mut conn, req).await {
                Ok(resp) => Ok((conn, resp)),
                // The node closed a pooled connection before the request went
                // out: hyper hands the request back; send it on a new one.
                Err(Failed::Unsent(req, e)) if reused => {
                    tracing::debug!(%authority, error = %e, "pooled connection was closed; using a new one");
                    let mut fresh = self.connect(authority.as_str()).await?;
                    if !fresh.ready().await {
                        return Err(SendError::Broken(e));
                    }
                    match self.exchange(&mut fresh, *req).await {
                        Ok(resp) => Ok((fresh, resp)),
                        Err(Failed::Unsent(_, e) | Failed::Sent(e)) => Err(SendError::Broken(e)),
                    }
                }
                Err(Failed::Unsent(_, e) | Failed::Sent(e)) => Err(SendError::Broken(e)),
            }
        };
        let (conn, resp) = tokio::time::timeout(first_byte, work)
            .await
            .map_err(|_| SendError::Timeout(first_byte))??;
        let (parts, incoming) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            UpstreamBody {
                incoming,
                conn: Some(conn),
                pool: Arc::downgrade(&self.inner),
                key: authority.clone(),
                done: false,
            },
        ))
    }

    /// Sends on `conn`, driving it until the response head is in.
    async fn exchange(
        &self,
        conn: &mut Conn,
        req: Request<UpBody>,
    ) -> Result<Response<Incoming>, Failed> {
        let mut pending = std::pin::pin!(conn.send.try_send_request(req));
        let driver = &mut conn.driver;
        let mut closed = false;
        poll_fn(|cx| {
            if !closed {
                match driver.as_mut().poll(cx) {
                    Poll::Ready(Ok(())) => closed = true,
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %chain(&e), "node connection failed");
                        closed = true;
                    }
                    Poll::Pending => {}
                }
            }
            match pending.as_mut().poll(cx) {
                Poll::Ready(Ok(resp)) => Poll::Ready(Ok(resp)),
                Poll::Ready(Err(mut e)) => {
                    let msg = chain(e.error());
                    Poll::Ready(Err(match e.take_message() {
                        Some(req) => Failed::Unsent(Box::new(req), msg),
                        None => Failed::Sent(msg),
                    }))
                }
                // The connection ended and the request's fate is sealed.
                Poll::Pending if closed => Poll::Ready(Err(Failed::Sent(
                    "the node closed the connection".to_owned(),
                ))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Why an exchange failed: before the request was written (it can go
/// again at no risk) or after.
enum Failed {
    Unsent(Box<Request<UpBody>>, String),
    Sent(String),
}

/// A node's response body, read by driving its connection in the reader's
/// own task; the connection returns to the pool at the end of the body.
///
/// The end is noticed as soon as the last byte of a `Content-Length` body
/// is read (`is_end_stream`), not only at a final `None`: hyper's server
/// stops polling a body once it has written the declared length.
pub(crate) struct UpstreamBody {
    incoming: Incoming,
    conn: Option<Conn>,
    pool: Weak<Inner>,
    key: Authority,
    done: bool,
}

impl UpstreamBody {
    fn end(&mut self) {
        self.done = true;
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.upgrade()) {
            pool.put(self.key.as_str(), conn);
        }
    }

    /// For a response without a body (HEAD, empty 200): marks it ended and
    /// frees the connection now. True when there was nothing to read.
    pub(crate) fn end_if_empty(&mut self) -> bool {
        if !self.done && self.incoming.is_end_stream() {
            self.end();
        }
        self.done
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("node", &self.key)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(c) = &mut this.conn
            && c.driver.as_mut().poll(cx).is_ready()
        {
            // Closed or failed: whatever it read is in `incoming` already.
            this.conn = None;
        }
        let r = Pin::new(&mut this.incoming).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.end(),
            Poll::Ready(Some(Ok(_))) if this.incoming.is_end_stream() => this.end(),
            Poll::Ready(Some(Err(_))) => {
                this.conn = None;
                this.done = true;
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{Method, StatusCode};
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;
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

    fn authority(addr: &str) -> Authority {
        addr.parse().expect("authority")
    }

    fn get(addr: &str, path: &str) -> Request<UpBody> {
        let mut r = Request::new(UpBody::empty());
        *r.method_mut() = Method::GET;
        *r.uri_mut() = format!("http://{addr}{path}").parse().expect("uri");
        r
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
                .send(&authority(&addr), get(&addr, path), Duration::from_secs(5))
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
            .send(
                &authority(&addr),
                get(&addr, "/stream"),
                Duration::from_secs(5),
            )
            .await
            .expect("send");
        drop(r);
        let r = pool
            .send(&authority(&addr), get(&addr, "/"), Duration::from_secs(5))
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
            .send(
                &authority(&addr),
                get(&addr, "/close"),
                Duration::from_secs(5),
            )
            .await
            .expect("send");
        body(r).await;
        // Give the close a moment to arrive; the next request must still work.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = pool
            .send(&authority(&addr), get(&addr, "/"), Duration::from_secs(5))
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
                        .send(&authority(&addr), get(&addr, "/"), Duration::from_secs(2))
                        .await
                        .expect("send");
                    body(r).await;
                    let r = pool
                        .send(&authority(&addr), get(&addr, "/"), Duration::from_secs(2))
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
            .send(&authority(&free), get(&free, "/"), Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(matches!(err, SendError::Connect(_)), "{err:?}");
        // Accepts but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let err = pool
            .send(
                &authority(&addr),
                get(&addr, "/"),
                Duration::from_millis(100),
            )
            .await
            .expect_err("timeout");
        assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
        drop(silent);
    }
}
