//! `herd_server::run` and `Server::build`: what each config serves, and
//! that shutdown ends watches and returns.

use std::time::Duration;

use futures_util::StreamExt as _;
use herd_server::{Config, Server, Workers};
use tokio::sync::oneshot;

struct Running {
    url: String,
    /// A client with the bootstrap admin key.
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), herd_server::Error>>,
    _dir: tempfile::TempDir,
}

async fn start(edit: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(herd_apiserver::Config::new(dir.path()));
    edit(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(herd_server::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let http = crate::admin_client(dir.path()).await;
    Running {
        url,
        http,
        stop,
        done,
        _dir: dir,
    }
}

async fn status_of(http: &reqwest::Client, method: reqwest::Method, url: &str) -> (u16, String) {
    let r = http
        .request(method, url)
        .header("content-type", "application/json")
        .body(r#"{"model":"m","stream":false,"messages":[]}"#)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn stop(s: Running) {
    let _ = s.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), s.done)
        .await
        .expect("run returns after shutdown")
        .expect("join")
        .expect("served");
}

#[tokio::test]
async fn every_part_is_served_on_one_listener() {
    for workers in [Workers::Shared, Workers::per_core()] {
        let s = start(|c| c.http_workers = workers).await;
        let http = s.http.clone();
        let get = reqwest::Method::GET;
        let cases = [
            // The API, the proxy (through the router, then through the
            // shortcut), the dashboard, and the common 404.
            (get.clone(), "/apis/herd/v1/nodes", 200, "NodeList"),
            (get.clone(), "/", 200, "Ollama is running"),
            (reqwest::Method::POST, "/api/chat", 503, "no nodes"),
            (get.clone(), "/metrics", 200, ""),
            (get.clone(), "/dashboard", 200, ""),
            (get.clone(), "/nowhere", 404, "NotFound"),
        ];
        for (method, path, want, has) in cases {
            let (status, body) = status_of(&http, method, &format!("{}{path}", s.url)).await;
            assert_eq!(status, want, "{workers}: {path}: {body}");
            assert!(body.contains(has), "{workers}: {path}: {body}");
        }
        stop(s).await;
    }
}

#[tokio::test]
async fn the_parts_left_out_are_not_served() {
    let s = start(|c| {
        c.proxy = None;
        c.dashboard = false;
        c.controller = None;
    })
    .await;
    let http = s.http.clone();
    for path in ["/", "/api/chat", "/metrics", "/dashboard"] {
        let method = if path == "/api/chat" {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (status, body) = status_of(&http, method, &format!("{}{path}", s.url)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = status_of(
        &http,
        reqwest::Method::GET,
        &format!("{}/apis/herd/v1/nodes", s.url),
    )
    .await;
    assert_eq!(status, 200);
    stop(s).await;
}

#[tokio::test]
async fn shutdown_ends_watches_and_returns() {
    let s = start(|_| {}).await;
    let watch = s
        .http
        .get(format!("{}/apis/herd/v1/nodes?watch=true", s.url))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    let mut body = watch.bytes_stream();
    stop(s).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived the server");
}

#[tokio::test]
async fn build_hands_out_the_parts_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::build(
        Config::new(herd_apiserver::Config::new(dir.path())),
        listener,
    )
    .expect("build");
    assert_eq!(server.local_addr(), addr);
    assert!(server.proxy().is_some());
    let nodes = server.nodes().cloned().expect("the proxy's node cache");
    let token = server.shutdown_token();
    let done = tokio::spawn(server.serve(std::future::pending()));
    tokio::time::timeout(Duration::from_secs(10), nodes.wait_ready())
        .await
        .expect("the proxy lists nodes through the served API")
        .expect("node cache");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("serve returns once the token is cancelled")
        .expect("join")
        .expect("served");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_at_once_and_counted() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for workers in [Workers::Shared, Workers::per_core()] {
        let s = start(|c| {
            c.http_workers = workers;
            // Two of them are the server's own loopback watches (the
            // proxy's of nodes and of Secrets), one is for the test.
            c.max_connections = Some(3);
            c.controller = None;
            // The counts are read from /metrics without a key.
            c.openness.metrics = true;
        })
        .await;
        let addr = s.url.trim_start_matches("http://").to_owned();
        let held_a = tokio::net::TcpStream::connect(&addr).await.expect("a");
        let held_b = tokio::net::TcpStream::connect(&addr).await.expect("b");
        // Let the accept loops take both before the third arrives.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = tokio::net::TcpStream::connect(&addr).await.expect("c");
        let _ = third
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
            .await
            .expect("the third connection is closed at once, not left waiting");
        assert!(
            read.is_err() || buf.is_empty(),
            "{workers:?}: nothing is answered past the limit: {:?}",
            String::from_utf8_lossy(&buf)
        );
        drop((held_a, held_b));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let http = reqwest::Client::new();
        let text = http
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        // The proxy's own watches over loopback hold connections too, so
        // more than the third may have been refused.
        let refused: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("herd_server_connections_refused_total "))
            .and_then(|n| n.parse().ok())
            .expect("the refusal counter");
        assert!(refused >= 1, "{workers:?}: {text}");
        assert!(text.contains("herd_server_connections_max 3\n"), "{text}");
        assert!(
            text.trim_end().ends_with("# EOF"),
            "still OpenMetrics: {text}"
        );
        stop(s).await;
    }
}
