//! The key the verbs send: `--token` before or after the verb, `HERD_TOKEN`,
//! `herd login`'s file, and the local server's `admin.key`; refusals that say
//! which key was refused. The server is the real API behind a stand-in for the
//! key check that accepts one key, so only the CLI's side is under test here.

use std::process::{Command, Stdio};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_auth::Token;
use serde_json::json;

use crate::verbs::Run;

struct KeyedApi {
    url: String,
    key: Token,
    /// With [`KeyedApi::start_tls`]: the self-signed CA of its certificate.
    ca: Option<herd_tls::SelfSigned>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

async fn check(State(key): State<String>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let message = match bearer {
        None => "this request needs an API key",
        Some(b) if b == key => return next.run(req).await,
        Some(_) => "invalid API key",
    };
    let body = json!({"kind": "Status", "apiVersion": "herd/v1", "code": 401,
        "reason": "Unauthorized", "message": message});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

impl KeyedApi {
    fn start() -> KeyedApi {
        Self::start_with(false)
    }

    /// Over https, with a certificate of a `--tls-self-signed` CA.
    fn start_tls() -> KeyedApi {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> KeyedApi {
        let dir = tempfile::tempdir().expect("tmp");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let stop = tokio_util::sync::CancellationToken::new();
        let key = herd_auth::generate().expect("random").token;
        let ca =
            tls.then(|| herd_tls::SelfSigned::ensure(&dir.path().join("tls"), &[]).expect("CA"));
        let server_tls = ca.as_ref().map(|ca| ca.server_tls().expect("server TLS"));
        let url = runtime.block_on(async {
            let (api, _state) =
                herd_apiserver::build(herd_apiserver::Config::new(dir.path()), stop.clone())
                    .expect("build");
            let app = api.layer(axum::middleware::from_fn_with_state(key.expose(), check));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let until = stop.clone();
            match server_tls {
                Some(server_tls) => {
                    tokio::spawn(serve_tls(listener, server_tls, app, until));
                    format!("https://{addr}")
                }
                None => {
                    tokio::spawn(async move {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async move { until.cancelled().await })
                            .await
                    });
                    format!("http://{addr}")
                }
            }
        });
        let ca_cert = ca.as_ref().map(|ca| ca.ca_cert_path());
        let keyed = KeyedApi {
            url,
            key,
            ca,
            runtime: Some(runtime),
            stop,
            _dir: dir,
        };
        let node = json!({"apiVersion": herd_api::API_VERSION, "kind": "Node",
            "metadata": {"name": "gpu-1"}});
        let key = keyed.key.expose();
        let mut args = vec!["--server", &keyed.url, "--token", &key];
        let ca_cert = ca_cert.map(|p| p.display().to_string());
        if let Some(ca) = &ca_cert {
            args.extend(["--ca-cert", ca]);
        }
        args.extend(["apply", "-f", "-"]);
        Isolated::new().run(&args, &node.to_string(), &[]).success();
        keyed
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    server_tls: herd_tls::ServerTls,
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
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
            // A client that refuses the certificate ends the handshake.
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

impl Drop for KeyedApi {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A config file location and a data directory of the test's own, so a
/// login or an admin key of the machine running the tests is never used.
struct Isolated {
    dir: tempfile::TempDir,
}

impl Isolated {
    fn new() -> Isolated {
        Isolated {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    fn config(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join("config")
            .join("herd")
            .join("config.json")
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
        use std::io::Write as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd"));
        cmd.args(args)
            .env("HERD_CONFIG", self.config())
            .env("HERD_DATA_DIR", self.data_dir())
            .env_remove("HERD_SERVER")
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_CA_CERT")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn herd");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("stdin");
        drop(input);
        let out = child.wait_with_output().expect("wait");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[test]
fn token_flag_before_or_after_the_verb_and_from_the_environment() {
    let api = KeyedApi::start();
    let home = Isolated::new();
    let (url, key) = (api.url.as_str(), api.key.expose());
    let cases: [&[&str]; 3] = [
        &[
            "--token", &key, "--server", url, "get", "nodes", "-o", "name",
        ],
        &[
            "get", "nodes", "-o", "name", "--server", url, "--token", &key,
        ],
        &[
            "get",
            &format!("--token={key}"),
            "nodes",
            "-o",
            "name",
            "--server",
            url,
        ],
    ];
    for args in cases {
        let run = home.run(args, "", &[]).success();
        assert_eq!(run.stdout, "node/gpu-1\n", "herd {args:?}");
    }
    let env = home
        .run(
            &["get", "nodes", "-o", "name"],
            "",
            &[("HERD_SERVER", url), ("HERD_TOKEN", &key)],
        )
        .success();
    assert_eq!(env.stdout, "node/gpu-1\n");
    // The flag wins over the environment.
    let other = herd_auth::generate().expect("random").token.expose();
    home.run(
        &["get", "nodes", "--token", &key],
        "",
        &[("HERD_SERVER", url), ("HERD_TOKEN", &other)],
    )
    .success();
}

#[test]
fn refusals_say_which_key_and_what_to_do() {
    let api = KeyedApi::start();
    let home = Isolated::new();
    let url = api.url.as_str();
    let none = home
        .run(&["get", "nodes", "--server", url], "", &[])
        .failure();
    assert!(none.stderr.contains("needs an API key"), "{}", none.stderr);
    assert!(none.stderr.contains("herd login"), "{}", none.stderr);

    let wrong = herd_auth::generate().expect("random").token;
    let run = home
        .run(
            &["get", "nodes"],
            "",
            &[("HERD_SERVER", url), ("HERD_TOKEN", &wrong.expose())],
        )
        .failure();
    assert!(
        run.stderr
            .contains(&format!("refused key {} (from HERD_TOKEN)", wrong.id)),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(wrong.secret.expose()),
        "{}",
        run.stderr
    );

    let malformed = home
        .run(
            &["get", "nodes"],
            "",
            &[("HERD_SERVER", url), ("HERD_TOKEN", "herd_notakey")],
        )
        .failure();
    assert!(
        malformed.stderr.contains("HERD_TOKEN"),
        "{}",
        malformed.stderr
    );
    assert!(
        !malformed.stderr.contains("notakey"),
        "{}",
        malformed.stderr
    );
}

#[test]
fn login_then_get_with_no_flags() {
    let api = KeyedApi::start();
    let home = Isolated::new();
    let (url, key) = (api.url.as_str(), api.key.expose());

    // A key the server refuses is not stored.
    let wrong = herd_auth::generate().expect("random").token.expose();
    let refused = home
        .run(&["login", "--server", url], &format!("{wrong}\n"), &[])
        .failure();
    assert!(refused.stderr.contains("refused"), "{}", refused.stderr);
    assert!(!home.config().exists());

    let run = home
        .run(&["login", "--server", url], &format!("{key}\n"), &[])
        .success();
    assert!(run.stdout.contains("Logged in"), "{}", run.stdout);
    assert!(
        !run.stdout.contains(&key),
        "the key is not echoed: {}",
        run.stdout
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.config())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let get = home.run(&["get", "nodes", "-o", "name"], "", &[]).success();
    assert_eq!(get.stdout, "node/gpu-1\n");

    // The stored key goes only to the server it was stored for.
    let elsewhere = home
        .run(&["get", "nodes", "--server", "http://127.0.0.2:1"], "", &[])
        .failure();
    assert!(
        elsewhere.stderr.contains("127.0.0.2"),
        "{}",
        elsewhere.stderr
    );
}

#[test]
fn on_the_servers_machine_the_local_admin_key_is_found() {
    let api = KeyedApi::start();
    let home = Isolated::new();
    std::fs::create_dir_all(home.data_dir()).expect("mkdir");
    herd_auth::write_key_file(&home.data_dir().join("admin.key"), &api.key).expect("write");
    let local = home
        .run(
            &["get", "nodes", "-o", "name"],
            "",
            &[("HERD_SERVER", &api.url)],
        )
        .success();
    assert_eq!(local.stdout, "node/gpu-1\n");
    let via_localhost = api.url.replace("127.0.0.1", "localhost");
    home.run(&["get", "nodes", "--server", &via_localhost], "", &[])
        .success();
    // Without the file, nothing to send.
    std::fs::remove_file(home.data_dir().join("admin.key")).expect("rm");
    home.run(&["get", "nodes", "--server", &api.url], "", &[])
        .failure();
}

#[test]
fn over_https_with_a_ca_file_or_the_keys_pin() {
    let api = KeyedApi::start_tls();
    let home = Isolated::new();
    let ca = api.ca.as_ref().expect("CA");
    let ca_cert = ca.ca_cert_path().display().to_string();
    let (url, key) = (api.url.as_str(), api.key.expose());

    let run = home
        .run(
            &[
                "get",
                "nodes",
                "-o",
                "name",
                "--server",
                url,
                "--token",
                &key,
                "--ca-cert",
                &ca_cert,
            ],
            "",
            &[],
        )
        .success();
    assert_eq!(run.stdout, "node/gpu-1\n");
    home.run(
        &["get", "nodes", "--server", url, "--token", &key],
        "",
        &[("HERD_CA_CERT", &ca_cert)],
    )
    .success();

    // The public roots do not know a self-signed CA.
    let untrusted = home
        .run(&["get", "nodes", "--server", url, "--token", &key], "", &[])
        .failure();
    assert!(
        untrusted.stderr.contains("certificate"),
        "{}",
        untrusted.stderr
    );

    // A key that carries the CA's fingerprint needs no CA file.
    let sha = ca.ca_sha256();
    let pinned = format!("{key}.{sha}");
    let run = home
        .run(
            &[
                "get", "nodes", "-o", "name", "--server", url, "--token", &pinned,
            ],
            "",
            &[],
        )
        .success();
    assert_eq!(run.stdout, "node/gpu-1\n");
    let wrong = format!("{key}.{}", "0".repeat(64));
    let refused = home
        .run(
            &["get", "nodes", "--server", url, "--token", &wrong],
            "",
            &[],
        )
        .failure();
    assert!(
        refused.stderr.contains("fingerprint mismatch"),
        "{}",
        refused.stderr
    );

    // `herd login` keeps the CA with the key.
    home.run(
        &["login", "--server", url, "--ca-cert", &ca_cert],
        &format!("{key}\n"),
        &[],
    )
    .success();
    let run = home.run(&["get", "nodes", "-o", "name"], "", &[]).success();
    assert_eq!(run.stdout, "node/gpu-1\n");
}
