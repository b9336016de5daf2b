//! The host's `serve_with`: thread per core or the caller's runtime, the
//! same contract.

use std::num::NonZeroUsize;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures_util::StreamExt as _;
use herd_server::Workers;
use herd_server::host::App;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

/// Responses of `/flood` whose body was dropped.
static FLOODS_DROPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Answers with the serving thread's name; `/slow` after a while, `/spawn`
/// from a task it spawns, `/panic` never.
fn router() -> Router {
    fn thread() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }
    Router::new()
        .route("/", get(|| async { thread() }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                thread()
            }),
        )
        .route(
            "/spawn",
            get(|| async {
                let blocking = tokio::task::spawn_blocking(|| 1).await.unwrap_or(0);
                let spawned = tokio::spawn(async move { blocking + 1 }).await.unwrap_or(0);
                spawned.to_string()
            }),
        )
        .route(
            "/drip",
            get(|| async {
                // Two chunks 500 ms apart: a stream that pauses.
                let chunks = futures_util::stream::iter([0u64, 500]).then(|ms| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, std::io::Error>(bytes::Bytes::from(format!("after {ms}\n")))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/upload",
            axum::routing::post(|body: bytes::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/flood",
            get(|| async {
                // Endless, for a client that stops reading; counts its drop.
                struct Dropped;
                impl Drop for Dropped {
                    fn drop(&mut self) {
                        FLOODS_DROPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let guard = Dropped;
                let chunks = futures_util::stream::repeat(()).map(move |()| {
                    let _held = &guard;
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b'x'; 65536]))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("test handler panics");
                }
            }),
        )
}

struct Served {
    url: String,
    token: CancellationToken,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(workers: Workers) -> Served {
    serve_app(workers, herd_apiserver::with_common_layers(router()).into()).await
}

async fn serve_app(workers: Workers, app: App) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let token = CancellationToken::new();
    let done = tokio::spawn(herd_server::host::serve_with(
        app,
        listener,
        std::future::pending(),
        token.clone(),
        workers,
    ));
    Served { url, token, done }
}

async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(url).send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test]
async fn threads_serve_spawn_catch_panics_and_shut_down_gracefully() {
    let two = Workers::Threads(NonZeroUsize::new(2).expect("2"));
    let s = serve(two).await;
    // Many connections: the kernel spreads them over both threads.
    let mut threads = std::collections::BTreeSet::new();
    for _ in 0..32 {
        let http = reqwest::Client::new();
        let (status, thread) = get_text(&http, &s.url).await;
        assert_eq!(status, 200);
        threads.insert(thread);
    }
    assert!(
        threads.iter().all(|t| t.starts_with("herd-http-")),
        "{threads:?}"
    );
    assert_eq!(threads.len(), 2, "{threads:?}");

    let http = reqwest::Client::new();
    assert_eq!(
        get_text(&http, &format!("{}/spawn", s.url)).await,
        (200, "2".into())
    );
    let (status, body) = get_text(&http, &format!("{}/panic", s.url)).await;
    assert_eq!(status, 500);
    assert!(body.contains("\"reason\":\"InternalError\""), "{body}");
    let (status, _) = get_text(&http, &format!("{}/nowhere", s.url)).await;
    assert_eq!(status, 404);

    // A request in flight at shutdown is answered; then serve returns.
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), format!("{}/slow", s.url));
        async move { get_text(&http, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.token.cancel();
    let (status, thread) = slow.await.expect("slow request");
    assert_eq!(status, 200);
    assert!(thread.starts_with("herd-http-"), "{thread}");
    tokio::time::timeout(Duration::from_secs(5), s.done)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("served");
    assert!(reqwest::get(&s.url).await.is_err(), "still accepting");
}

#[tokio::test]
async fn the_shared_runtime_catches_panics_too() {
    let s = serve(Workers::Shared).await;
    let http = reqwest::Client::new();
    let (status, body) = get_text(&http, &format!("{}/panic", s.url)).await;
    assert_eq!(status, 500);
    assert!(body.contains("\"reason\":\"InternalError\""), "{body}");
    assert_eq!(
        get_text(&http, &format!("{}/spawn", s.url)).await,
        (200, "2".into())
    );
    s.token.cancel();
    tokio::time::timeout(Duration::from_secs(5), s.done)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("served");
}

/// Reads until the server closes the connection; what it sent, and when.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> (String, std::time::Instant) {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    (
        String::from_utf8_lossy(&got).into_owned(),
        std::time::Instant::now(),
    )
}

#[tokio::test]
async fn idle_client_connections_are_closed_and_busy_ones_are_not() {
    let limit = Duration::from_millis(300);
    for workers in [Workers::Shared, Workers::Threads(NonZeroUsize::MIN)] {
        let app =
            App::from(herd_apiserver::with_common_layers(router())).with_idle_timeout(Some(limit));
        let s = serve_app(workers, app).await;
        let addr = s.url.trim_start_matches("http://").to_owned();
        let connect = || tokio::net::TcpStream::connect(addr.clone());

        // Connected and silent; stalled in the middle of a head; idle after
        // a kept-alive answer: all closed, none before the limit.
        let mut silent = connect().await.expect("connect");
        let mut stalled = connect().await.expect("connect");
        stalled
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let mut kept = connect().await.expect("connect");
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let t0 = std::time::Instant::now();
        for (name, tcp, answered) in [
            ("silent", &mut silent, false),
            ("stalled", &mut stalled, false),
            ("kept alive", &mut kept, true),
        ] {
            let (got, at) = read_until_closed(tcp).await;
            assert_eq!(
                got.starts_with("HTTP/1.1 200"),
                answered,
                "{workers}, {name}: {got:?}"
            );
            assert!(
                at - t0 >= limit,
                "{workers}, {name}: closed after {:?}",
                at - t0
            );
        }

        // A request that outlasts the limit before its answer, and a stream
        // that pauses longer than the limit, are answered in full.
        let mut slow = connect().await.expect("connect");
        slow.write_all(
            b"GET /drip HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .expect("write");
        let t0 = std::time::Instant::now();
        let (got, at) = read_until_closed(&mut slow).await;
        assert!(
            got.contains("after 0\n") && got.contains("after 500\n"),
            "{workers}: {got:?}"
        );
        assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{workers}: {got:?}");
        assert!(
            at - t0 >= Duration::from_millis(800) + limit,
            "{workers}: {:?}",
            at - t0
        );

        // A client that stops reading: its response is dropped, and so is
        // the connection, once its writes have been stuck for the limit.
        let floods = FLOODS_DROPPED.load(std::sync::atomic::Ordering::SeqCst);
        let mut hung = connect().await.expect("connect");
        hung.write_all(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let t0 = std::time::Instant::now();
        while FLOODS_DROPPED.load(std::sync::atomic::Ordering::SeqCst) == floods {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{workers}: still sending to a hung client"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            t0.elapsed() >= limit,
            "{workers}: cut after {:?}",
            t0.elapsed()
        );
        let mut sink = vec![0u8; 1 << 20];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match hung.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{workers}: the hung client's connection stays open"
        );

        // A body that stops coming is cut off; one that comes slowly, a
        // piece every third of the limit, is read to the end.
        let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
        let mut unsent = connect().await.expect("connect");
        unsent.write_all(head).await.expect("write");
        unsent.write_all(&[b'x'; 100]).await.expect("write");
        let t0 = std::time::Instant::now();
        let (got, at) = read_until_closed(&mut unsent).await;
        assert_eq!(got, "", "{workers}: a stalled upload");
        assert!(at - t0 >= limit, "{workers}: cut after {:?}", at - t0);
        let mut slow = connect().await.expect("connect");
        slow.write_all(head).await.expect("write");
        for _ in 0..10 {
            tokio::time::sleep(limit / 3).await;
            slow.write_all(&[b'x'; 100]).await.expect("write");
        }
        let (got, _) = read_until_closed(&mut slow).await;
        assert!(
            got.starts_with("HTTP/1.1 200") && got.ends_with("1000"),
            "{workers}: {got:?}"
        );

        // Without the limit a silent connection stays open.
        s.token.cancel();
        let _ = s.done.await;
    }
    let s = serve(Workers::Shared).await;
    let mut silent = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://"))
        .await
        .expect("connect");
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(700), silent.read(&mut byte)).await;
    assert!(waited.is_err(), "closed without a limit: {waited:?}");
    s.token.cancel();
}

#[test]
fn workers_parse() {
    assert_eq!("0".parse::<Workers>(), Ok(Workers::Shared));
    assert_eq!(
        "3".parse::<Workers>(),
        Ok(Workers::Threads(NonZeroUsize::new(3).expect("3")))
    );
    assert_eq!("auto".parse::<Workers>(), Ok(Workers::per_core()));
    assert!("many".parse::<Workers>().is_err());
    assert_eq!(Workers::Shared.to_string(), "0");
}
