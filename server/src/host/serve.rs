//! Serving a router on a listener, with herd's shutdown behaviour: on the
//! caller's runtime, or on a thread per core.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use herd_apiserver::ApiError;
use herd_proxy::Shortcut;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service as _;

use crate::gate::Gate;
use herd_tls::ServerTls;

use super::idle::{Activity, Counted, Tracked, Upload, Watched, quiet_for};
use super::limit::ConnectionLimit;

/// Where [`serve_with`] runs connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// On the caller's tokio runtime, whose work-stealing scheduler moves
    /// tasks between its threads.
    Shared,
    /// On this many threads, each with a single-threaded runtime and an
    /// accept loop of its own, like nginx's worker processes: a connection
    /// and everything its requests do stay on one thread, with no hand-offs
    /// between threads. On Linux each thread has its own
    /// `SO_REUSEPORT` socket on the address and the kernel spreads new
    /// connections over them; elsewhere the threads accept from the one
    /// listener. Background tasks stay on the caller's runtime. (As with
    /// nginx's `reuseport`, another process of the same user could then
    /// join the group on that port.)
    Threads(NonZeroUsize),
}

impl Workers {
    /// One thread per available core.
    pub fn per_core() -> Workers {
        Workers::Threads(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Shared => f.write_str("0"),
            Workers::Threads(n) => write!(f, "{n}"),
        }
    }
}

/// `auto` (one thread per core), `0` (the shared runtime) or a number of
/// threads.
impl FromStr for Workers {
    type Err = String;

    fn from_str(s: &str) -> Result<Workers, String> {
        match s.trim() {
            "auto" => Ok(Workers::per_core()),
            n => match n.parse::<usize>() {
                Ok(0) => Ok(Workers::Shared),
                Ok(n) => Ok(Workers::Threads(
                    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
                )),
                Err(_) => Err(format!(
                    "{s:?}: expected `auto`, 0 (the shared runtime) or a number of threads"
                )),
            },
        }
    }
}

/// What [`serve_with`] serves: a router, and a [`Shortcut`] tried first.
#[derive(Clone)]
pub struct App {
    router: Router,
    tls: Option<Arc<ServerTls>>,
    gate: Option<Gate>,
    shortcut: Option<Shortcut>,
    idle_timeout: Option<Duration>,
    limit: Option<Arc<ConnectionLimit>>,
}

impl App {
    /// Serves TLS on the listener: every connection's handshake first.
    pub fn with_tls(mut self, tls: ServerTls) -> App {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Authenticates and authorizes every request before the shortcut and
    /// the router.
    pub fn with_gate(mut self, gate: Gate) -> App {
        self.gate = Some(gate);
        self
    }

    /// Serves at most the limit's maximum of client connections at once
    /// (over every worker thread); a connection past it is closed as soon
    /// as it is accepted. `None` (the default) sets no limit.
    pub fn with_connection_limit(mut self, limit: Option<Arc<ConnectionLimit>>) -> App {
        self.limit = limit;
        self
    }

    /// The connection limit, for its counts.
    pub fn connection_limit(&self) -> Option<Arc<ConnectionLimit>> {
        self.limit.clone()
    }

    /// Tries `shortcut` on every request before the router.
    pub fn with_shortcut(mut self, shortcut: Shortcut) -> App {
        self.shortcut = Some(shortcut);
        self
    }

    /// Closes a client connection that has been quiet for `limit`: no
    /// request in flight and none begun (keep-alive connections left idle,
    /// clients that vanished without closing, request heads that stall), a
    /// request body that stopped coming, or a response the client has not
    /// read a byte of (a hung client). A request whose answer is slow to
    /// come or a stream that pauses is never cut. Checked every quarter of
    /// `limit`, so a quiet connection closes between `limit` and 1¼ ×
    /// `limit`. `None` (the default) keeps connections for as long as the
    /// client does, as Ollama does.
    pub fn with_idle_timeout(mut self, limit: Option<Duration>) -> App {
        self.idle_timeout = limit.filter(|l| !l.is_zero());
        self
    }
}

impl From<Router> for App {
    fn from(router: Router) -> App {
        App {
            router,
            tls: None,
            gate: None,
            shortcut: None,
            idle_timeout: None,
            limit: None,
        }
    }
}

/// Serves any router (or [`App`]) with herd's shutdown behaviour, on the caller's
/// runtime ([`Workers::Shared`]).
pub async fn serve(
    app: impl Into<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    token: CancellationToken,
) -> io::Result<()> {
    serve_with(app, listener, shutdown, token, Workers::Shared).await
}

/// Serves `router` on `listener` until `shutdown` resolves or `token` is
/// cancelled; then stops accepting, lets requests in flight finish (watch
/// streams end on `token`), and returns once every connection has closed.
pub async fn serve_with(
    app: impl Into<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    token: CancellationToken,
    workers: Workers,
) -> io::Result<()> {
    let app = app.into();
    let stop = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    match workers {
        Workers::Shared => serve_here(app, listener, token).await,
        Workers::Threads(n) => serve_on_threads(app, listener, token, n.get()).await,
    }
}

/// The accept loop and the connections, on the current runtime.
///
/// hyper's HTTP/1 connection serves the router directly (no protocol
/// sniffing, no upgrades: herd has no WebSocket or HTTP/2 routes). A
/// handler that panics is answered with a 500 `Status`.
async fn serve_here(app: App, listener: TcpListener, token: CancellationToken) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait, as axum does.
                tracing::error!(error = %e, "cannot accept connections");
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let permit = match app.limit.as_ref().map(ConnectionLimit::try_acquire) {
            Some(None) => {
                // Closing at once costs less than a 503: no read, no parse.
                drop(tcp);
                continue;
            }
            Some(permit) => permit,
            None => None,
        };
        // TCP_NODELAY: streamed tokens and watch events are small writes that
        // Nagle's algorithm would otherwise hold back until the client's
        // delayed ACK (~40 ms) whenever a previous write is still unacknowledged.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let activity = app.idle_timeout.map(|_| Arc::new(Activity::default()));
        // `stop`: finish what is in flight, then close (the server stops, or
        // the connection went quiet); `hard`: close now (still quiet after
        // another limit); `gone`: the connection has ended.
        let stop = token.child_token();
        let (hard, gone) = (CancellationToken::new(), CancellationToken::new());
        if let (Some(activity), Some(limit)) = (activity.clone(), app.idle_timeout) {
            // In a task of its own, so that the connection's many wake-ups
            // do not poll its timer.
            let (stop, hard, gone) = (stop.clone(), hard.clone(), gone.clone());
            connections.spawn(async move {
                let watch = async {
                    tokio::select! {
                        () = quiet_for(&activity, limit) => stop.cancel(),
                        () = stop.cancelled() => {}
                    }
                    quiet_for(&activity, limit).await;
                    hard.cancel();
                };
                tokio::select! {
                    () = gone.cancelled() => {}
                    () = watch => {}
                }
            });
        }
        let service = AppService {
            app: app.clone(),
            activity: activity.clone(),
        };
        let tls = app.tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _gone = gone.drop_guard();
            match tls {
                None => drive(Watched { tcp, activity }, service, stop, hard).await,
                Some(tls) => {
                    let accepted = tokio::select! {
                        r = tls.accept(tcp) => r,
                        () = stop.cancelled() => return,
                    };
                    match accepted {
                        Ok(stream) => {
                            let io = Watched {
                                tcp: stream,
                                activity,
                            };
                            drive(io, service, stop, hard).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one client connection until it ends, or `stop` (finish what is in
/// flight, then close) or `hard` (close now).
async fn drive<S>(
    io: Watched<S>,
    service: AppService,
    stop: CancellationToken,
    hard: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let given_up = service.activity.clone();
    let conn = http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            if given_up.as_deref().is_some_and(Activity::given_up) {
                // Nothing in flight (perhaps half a head), or a
                // client not reading: dropping the connection closes
                // it and cancels what it was waiting on.
                tracing::trace!("closing a quiet client connection");
                Ok(())
            } else {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    () = hard.cancelled() => Ok(()),
                }
            }
        }
    };
    if let Err(e) = ended {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The app as hyper's service, for one connection.
#[derive(Clone)]
struct AppService {
    app: App,
    activity: Option<Arc<Activity>>,
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = axum::http::Response<Tracked>;
    type Error = Infallible;
    type Future = Counted<CatchPanic<Answer>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if let Some(a) = &self.activity {
            a.begin();
        }
        Counted {
            answer: self.answer(req),
            activity: self.activity.clone(),
        }
    }
}

impl AppService {
    fn answer(&self, req: Request<Incoming>) -> CatchPanic<Answer> {
        let app = &self.app;
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut req = match &self.activity {
                Some(a) => req.map(|body| Body::new(Upload::new(body, a.clone()))),
                None => req.map(Body::new),
            };
            if let Some(gate) = &app.gate {
                match gate.admit(req) {
                    Ok(admitted) => req = admitted,
                    Err(refused) => {
                        return Answer::Short(Box::pin(std::future::ready(refused)));
                    }
                }
            }
            if let Some(shortcut) = &app.shortcut {
                match shortcut(req) {
                    Ok(answer) => return Answer::Short(answer),
                    Err(back) => req = back,
                }
            }
            Answer::Routed(app.router.clone().call(req))
        }));
        match started {
            Ok(inner) => CatchPanic::Running(AssertUnwindSafe(inner).catch_unwind()),
            Err(_) => CatchPanic::Panicked,
        }
    }
}

/// The future of a request's answer: from the router or the shortcut.
/// (It lives inside the connection's state; boxing the router's variant
/// to even the sizes would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Answer {
    Routed(RouteFuture<Infallible>),
    Short(BoxFuture<'static, Response>),
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Routed(f) => Pin::new(f).poll(cx),
            Answer::Short(f) => f.as_mut().poll(cx).map(Ok),
        }
    }
}

/// A handler's future whose panic becomes a 500 `Status` instead of a
/// dropped connection.
enum CatchPanic<F> {
    Running(futures_util::future::CatchUnwind<AssertUnwindSafe<F>>),
    Panicked,
}

impl<F> Future for CatchPanic<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            CatchPanic::Running(f) => match ready!(Pin::new(f).poll(cx)) {
                Ok(r) => Poll::Ready(r),
                Err(_) => Poll::Ready(Ok(panicked())),
            },
            CatchPanic::Panicked => Poll::Ready(Ok(panicked())),
        }
    }
}

fn panicked() -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}

async fn serve_on_threads(
    app: App,
    listener: TcpListener,
    token: CancellationToken,
    n: usize,
) -> io::Result<()> {
    let listeners = thread_listeners(listener.into_std()?, n)?;
    // The threads also stop if this future is dropped.
    let stop = token.child_token();
    let _stop_on_drop = stop.clone().drop_guard();
    let mut ends = FuturesUnordered::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (done, end) = tokio::sync::oneshot::channel();
        let (app, thread_stop) = (app.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("herd-http-{i}"))
            .spawn(move || {
                let _ = done.send(serve_thread(app, listener, thread_stop));
            });
        if let Err(e) = spawned {
            stop.cancel();
            return Err(e);
        }
        ends.push(end);
    }
    let mut failed = None;
    while let Some(end) = ends.next().await {
        let result = end.unwrap_or_else(|_| Err(io::Error::other("HTTP thread panicked")));
        if let Err(e) = result {
            // One thread down: stop the others too rather than serve on part.
            stop.cancel();
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// One serving thread: its own runtime, until `stop`. Tasks that handlers
/// spawned and that are still running when the connections have closed end
/// with the runtime.
fn serve_thread(
    app: App,
    listener: std::net::TcpListener,
    stop: CancellationToken,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve_here(app, listener, stop).await
    })
}

/// A listening socket for each of `n` threads on `listener`'s address.
fn thread_listeners(
    listener: std::net::TcpListener,
    n: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    listener.set_nonblocking(true)?;
    #[cfg(target_os = "linux")]
    let reuse = match socket2::SockRef::from(&listener).set_reuse_port(true) {
        Ok(()) => Some(listener.local_addr()?),
        Err(e) => {
            tracing::debug!(error = %e, "no SO_REUSEPORT: the HTTP threads share one listener");
            None
        }
    };
    let mut all = Vec::with_capacity(n);
    for _ in 1..n {
        #[cfg(target_os = "linux")]
        if let Some(addr) = reuse {
            match sibling(addr, &listener) {
                Ok(s) => {
                    all.push(s);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no SO_REUSEPORT socket: this HTTP thread shares the listener");
                }
            }
        }
        all.push(listener.try_clone()?);
    }
    all.insert(0, listener);
    Ok(all)
}

/// Another socket on `addr` in `first`'s `SO_REUSEPORT` group, set up like
/// tokio's `TcpListener::bind` sets up `first`.
#[cfg(target_os = "linux")]
fn sibling(
    addr: std::net::SocketAddr,
    first: &std::net::TcpListener,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, SockRef, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(SockRef::from(first).only_v6()?)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}
