//! The nodelet's key: a join key exchanged once for a node key kept 0600 in the state
//! directory and reused on restart; a refused node key stops the nodelet with a clear
//! message. The router is the real apiserver behind a stand-in for the server's key
//! check (the join exchange and a bearer check of every other request), so only the
//! nodelet's side is under test here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_api::{JoinRequest, JoinResponse, KeySecret};
use herd_auth::{Token, read_key_file};
use herd_nodelet::credentials::NODE_KEY_FILE;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::harness::{LIMIT, Nodelet, bounded, config, eventually, free_port, init_logs};

/// The keys the stand-in knows.
struct Keys {
    join: Token,
    /// Node key (whole token) to (node, disabled).
    nodes: Mutex<HashMap<String, (String, bool)>>,
    joins: AtomicUsize,
}

impl Keys {
    fn set_disabled(&self, node: &str) {
        for (bound, disabled) in self.nodes.lock().expect("lock").values_mut() {
            if bound == node {
                *disabled = true;
            }
        }
    }

    fn forget(&self) {
        self.nodes.lock().expect("lock").clear();
    }
}

fn refused(message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "herd/v1", "code": 401,
        "reason": "Unauthorized", "message": message,
    });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

async fn check(State(keys): State<Arc<Keys>>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(bearer) = bearer else {
        return refused("this request needs an API key");
    };
    if req.uri().path() == herd_api::JOIN_PATH {
        if bearer != keys.join.expose() {
            return refused("invalid API key");
        }
        let body = axum::body::to_bytes(req.into_body(), 1 << 16)
            .await
            .expect("body");
        let join: JoinRequest = serde_json::from_slice(&body).expect("join request");
        let node_key = herd_auth::generate().expect("random").token;
        keys.nodes
            .lock()
            .expect("lock")
            .insert(node_key.expose(), (join.node.clone(), false));
        keys.joins.fetch_add(1, Ordering::SeqCst);
        let answer = JoinResponse {
            key_name: format!("node-{}", join.node),
            node: join.node,
            token: KeySecret::new(node_key.expose()),
        };
        return (StatusCode::CREATED, axum::Json(answer)).into_response();
    }
    let known = keys.nodes.lock().expect("lock").get(&bearer).cloned();
    match known {
        None => refused("invalid API key"),
        Some((node, true)) => refused(&format!("key \"node-{node}\" is disabled")),
        Some((_, false)) => next.run(req).await,
    }
}

struct KeyedRouter {
    url: Url,
    keys: Arc<Keys>,
    stop: CancellationToken,
    /// With [`KeyedRouter::start_tls`]: the CA the server's certificate is signed by.
    ca: Option<herd_tls::SelfSigned>,
    _dir: tempfile::TempDir,
}

impl KeyedRouter {
    async fn start() -> KeyedRouter {
        Self::start_with(false).await
    }

    /// Over https, with a certificate from a `--tls-self-signed` CA.
    async fn start_tls() -> KeyedRouter {
        Self::start_with(true).await
    }

    /// The CA's SHA-256 as a join key carries it.
    fn ca_sha256(&self) -> [u8; 32] {
        let hex = self.ca.as_ref().expect("a TLS router").ca_sha256();
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex");
        }
        out
    }

    async fn start_with(tls: bool) -> KeyedRouter {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = CancellationToken::new();
        let (api, _state) =
            herd_apiserver::build(herd_apiserver::Config::new(dir.path()), stop.clone())
                .expect("apiserver");
        let keys = Arc::new(Keys {
            join: herd_auth::generate().expect("random").token,
            nodes: Mutex::default(),
            joins: AtomicUsize::new(0),
        });
        // The stand-in answers the join exchange itself, before any route.
        let app = api.layer(axum::middleware::from_fn_with_state(keys.clone(), check));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let until = stop.clone();
        let ca = if tls {
            let ca = herd_tls::SelfSigned::ensure(&dir.path().join("tls"), &[]).expect("CA");
            let server_tls = ca.server_tls().expect("server TLS");
            tokio::spawn(serve_tls(listener, server_tls, app, until));
            Some(ca)
        } else {
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { until.cancelled().await })
                    .await
            });
            None
        };
        let scheme = if tls { "https" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{addr}")).expect("url");
        KeyedRouter {
            url,
            keys,
            stop,
            ca,
            _dir: dir,
        }
    }

    /// The admin's view, past the key check.
    async fn node_exists(&self, name: &str, key: &Token) -> bool {
        let client = herd_client::Client::builder(self.url.as_str())
            .token(key.expose())
            .build()
            .expect("client");
        client.api::<herd_api::Node>().get(name).await.is_ok()
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    server_tls: herd_tls::ServerTls,
    app: axum::Router,
    stop: CancellationToken,
) {
    use tower::ServiceExt as _;
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        let (server_tls, app) = (server_tls.clone(), app.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate ends the handshake: nothing to serve.
            let Ok(stream) = server_tls.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Drop for KeyedRouter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn keyed_config(
    router: &KeyedRouter,
    name: &str,
    install: &std::path::Path,
    state: &std::path::Path,
    port: u16,
) -> herd_nodelet::NodeletConfig {
    let mut c = config(&router.url, name, install, port);
    c.install = false;
    c.token = Some(router.keys.join.clone());
    c.state_dir = Some(state.to_owned());
    c
}

#[tokio::test]
async fn a_join_key_becomes_a_node_key_kept_0600_and_reused_on_restart() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let cfg = keyed_config(&router, "gpu-1", install.path(), state.path(), port);

        let nodelet = Nodelet::spawn(cfg.clone());
        let key_path = state.path().join(NODE_KEY_FILE);
        let node_key = eventually(
            "node.key is written",
            LIMIT,
            || async { read_key_file(&key_path).ok() },
            |_| true,
        )
        .await;
        assert_ne!(
            node_key, router.keys.join,
            "the join key is not kept as the node key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        eventually(
            "the node registers with its node key",
            LIMIT,
            || async { Some(router.node_exists("gpu-1", &node_key).await) },
            |ok| *ok,
        )
        .await;
        nodelet.shutdown().await;

        // A restart uses the kept key: no second exchange.
        let nodelet = Nodelet::spawn(cfg.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!nodelet.is_finished(), "the restarted nodelet runs");
        nodelet.shutdown().await;
        assert_eq!(router.keys.joins.load(Ordering::SeqCst), 1);
        assert_eq!(read_key_file(&key_path).expect("kept"), node_key);

        // A router that forgot the key (deleted) gets one exchange more, not a loop.
        router.keys.forget();
        let nodelet = Nodelet::spawn(cfg);
        eventually(
            "the nodelet joins again",
            LIMIT,
            || async { Some(router.keys.joins.load(Ordering::SeqCst)) },
            |n| *n == 2,
        )
        .await;
        let renewed = read_key_file(&key_path).expect("renewed");
        assert_ne!(renewed, node_key);
        nodelet.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_disabled_node_key_stops_the_nodelet_with_a_clear_message() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let cfg = keyed_config(&router, "gpu-2", install.path(), state.path(), port);
        let nodelet = Nodelet::spawn(cfg.clone());
        let key_path = state.path().join(NODE_KEY_FILE);
        let node_key = eventually(
            "node.key is written",
            LIMIT,
            || async { read_key_file(&key_path).ok() },
            |_| true,
        )
        .await;
        eventually(
            "registered",
            LIMIT,
            || async { Some(router.node_exists("gpu-2", &node_key).await) },
            |ok| *ok,
        )
        .await;

        router.keys.set_disabled("gpu-2");
        let err = nodelet.failure().await;
        let text = err.to_string();
        assert!(
            text.contains("refused") && text.contains("disabled"),
            "{text}"
        );
        assert!(!text.contains(node_key.secret.expose()), "{text}");

        // Disabled is an admin's decision: a restart with the join key does not
        // re-join past it.
        let err = Nodelet::spawn(cfg).failure().await;
        let text = err.to_string();
        assert!(text.contains("disabled"), "{text}");
        assert_eq!(router.keys.joins.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn a_join_key_with_the_ca_fingerprint_verifies_an_https_router() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start_tls().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let mut cfg = keyed_config(&router, "tls-1", install.path(), state.path(), port);
        let pin = router.ca_sha256();
        cfg.token = Some(router.keys.join.clone().with_ca_sha256(pin));
        let nodelet = Nodelet::spawn(cfg);
        let key_path = state.path().join(NODE_KEY_FILE);
        let node_key = eventually(
            "node.key is written",
            LIMIT,
            || async { read_key_file(&key_path).ok() },
            |_| true,
        )
        .await;
        // The kept node key pins the same CA, so a restart verifies the router too.
        assert_eq!(node_key.ca_sha256, Some(pin));
        let mut plain = node_key.clone();
        plain.ca_sha256 = None;
        let client = herd_client::Client::builder(router.url.as_str())
            .token(plain.expose())
            .trust(herd_client::ClientTrust::CaFile(
                router.ca.as_ref().expect("CA").ca_cert_path(),
            ))
            .build()
            .expect("client");
        eventually(
            "registered over https",
            LIMIT,
            || async { Some(client.api::<herd_api::Node>().get("tls-1").await.is_ok()) },
            |ok| *ok,
        )
        .await;
        nodelet.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_ca_file_also_verifies_an_https_router() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start_tls().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let mut cfg = keyed_config(&router, "tls-2", install.path(), state.path(), port);
        cfg.ca_cert = Some(router.ca.as_ref().expect("CA").ca_cert_path());
        let nodelet = Nodelet::spawn(cfg);
        eventually(
            "node.key is written",
            LIMIT,
            || async { read_key_file(&state.path().join(NODE_KEY_FILE)).ok() },
            |_| true,
        )
        .await;
        nodelet.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_join_key_with_another_fingerprint_refuses_the_router() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start_tls().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let mut cfg = keyed_config(&router, "tls-3", install.path(), state.path(), port);
        cfg.token = Some(router.keys.join.clone().with_ca_sha256([0x11; 32]));
        let err = Nodelet::spawn(cfg).failure().await;
        let text = err.to_string();
        assert!(text.contains("not trusted"), "{text}");
        assert!(text.contains("fingerprint mismatch"), "{text}");
        assert!(!text.contains(router.keys.join.secret.expose()), "{text}");
        assert_eq!(
            router.keys.joins.load(Ordering::SeqCst),
            0,
            "nothing was sent"
        );
        assert!(!state.path().join(NODE_KEY_FILE).exists());
    })
    .await;
}

#[tokio::test]
async fn a_running_nodelet_whose_key_was_deleted_joins_again_once() {
    init_logs();
    bounded(async {
        let router = KeyedRouter::start().await;
        let (install, state) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let port = free_port().await;
        let cfg = keyed_config(&router, "gpu-4", install.path(), state.path(), port);
        let nodelet = Nodelet::spawn(cfg);
        let key_path = state.path().join(NODE_KEY_FILE);
        let first = eventually(
            "node.key is written",
            LIMIT,
            || async { read_key_file(&key_path).ok() },
            |_| true,
        )
        .await;
        router.keys.forget();
        eventually(
            "the nodelet joins again",
            LIMIT,
            || async { Some(router.keys.joins.load(Ordering::SeqCst)) },
            |n| *n == 2,
        )
        .await;
        let second = read_key_file(&key_path).expect("the new node key");
        assert_ne!(second, first);
        // It keeps running and writing its status with the new key.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!nodelet.is_finished(), "the nodelet runs on");
        assert!(router.node_exists("gpu-4", &second).await);
        // A second loss is not mended again: the nodelet stops.
        router.keys.forget();
        let err = nodelet.failure().await;
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(router.keys.joins.load(Ordering::SeqCst), 2);
    })
    .await;
}
