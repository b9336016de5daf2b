//! TLS end to end, against `herd server --tls-self-signed` processes: `herd get`
//! with `--ca-cert`, `HERD_CA_CERT` and without a CA; a nodelet joining with only
//! `ROUTER_URL=https://…` and the join key (which pins the CA); a nodelet given
//! another server's join key refusing the server; the official ollama-python and
//! openai clients over https; `herd up --tls-self-signed`; and no secret in any of
//! their logs.

use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use herd_api::Node;
use herd_client::{Client, ClientTrust};
use herd_e2e::{
    MODEL, Node as E2eNode, NodeOptions, Proc, Server, ServerOptions, bounded, eventually,
};

use crate::clients::{clients_dir, python, run_client};
use crate::support::{TEST_LIMIT, assert_no_secret_in_logs};

/// `herd ARGS --server URL` with only `env` (no login file, no local admin key).
fn herd(server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(herd_e2e::bins::herd())
        .args(args)
        .args(["--server", server])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run herd")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (bounded) for `proc` to exit, then a moment for its last lines.
async fn exit_of(proc: &mut Proc, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = proc.try_exit() {
            break status;
        }
        assert!(Instant::now() < deadline, "{} keeps running", proc.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    status
}

async fn wait_ready(nodes: &herd_client::Api<Node>, name: &str) {
    eventually(
        &format!("{name} Ready"),
        Duration::from_secs(30),
        || async { nodes.get(name).await.ok() },
        Node::is_ready,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_herd_get_and_a_nodelet_joining_with_only_the_join_key() {
    bounded(TEST_LIMIT, async {
        let server = Server::start_with(ServerOptions::tls_self_signed()).await;
        assert!(server.url.starts_with("https://"), "{}", server.url);
        let ca = server
            .ca_cert()
            .expect("the server made <data-dir>/tls/ca.crt");
        let ca = ca.to_str().expect("path");
        let admin = server.admin_key().expect("admin.key");
        assert_eq!(admin.ca_sha256, None, "admin.key carries no fingerprint");
        let join = server.join_key().expect("join.key");
        let pin = join
            .ca_sha256
            .expect("a self-signed server's join key carries the CA's SHA-256");

        // ROUTER_URL=https://… and HERD_TOKEN=<join.key>, nothing else.
        let mut node = E2eNode::start(&server.url, NodeOptions::beside("tls-a")).await;
        node.wait_registered(Duration::from_secs(30)).await;
        wait_ready(&server.nodes(), "tls-a").await;
        server
            .wait_routable(&["tls-a"], Duration::from_secs(30))
            .await;
        let node_key =
            herd_auth::read_key_file(&node.state_dir().join("node.key")).expect("node.key");
        assert_eq!(
            node_key.ca_sha256,
            Some(pin),
            "the node key keeps the join key's pin"
        );

        // `herd get nodes` with --ca-cert, then without a CA, then with HERD_CA_CERT.
        let admin_env = [("HERD_TOKEN", admin.expose())];
        let admin_env: Vec<(&str, &str)> =
            admin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = herd(&server.url, &["get", "nodes", "--ca-cert", ca], &admin_env);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("tls-a"),
            "{}",
            text(&out)
        );

        let out = herd(&server.url, &["get", "nodes"], &admin_env);
        assert!(!out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("certificate not trusted; pass --ca-cert"),
            "{}",
            text(&out)
        );
        assert!(!stderr.contains("cannot reach"), "{}", text(&out));

        let mut env = admin_env.clone();
        env.push(("HERD_CA_CERT", ca));
        let out = herd(&server.url, &["get", "nodes"], &env);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("tls-a"),
            "{}",
            text(&out)
        );

        // A key carrying the fingerprint is trust enough for the CLI too: the
        // join key reaches the server and is refused for its role, not its TLS.
        let join_text = join.expose();
        let out = herd(
            &server.url,
            &["get", "nodes"],
            &[("HERD_TOKEN", join_text.as_str())],
        );
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("certificate"),
            "{}",
            text(&out)
        );

        let secrets = [
            ("admin", admin.secret.expose().to_owned()),
            ("join", join.secret.expose().to_owned()),
            ("node", node_key.secret.expose().to_owned()),
        ];
        let logs = [
            ("server", server.proc.lines()),
            ("nodelet", node.nodelet().lines()),
        ];
        assert_no_secret_in_logs(&secrets, &logs);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_nodelet_refuses_a_server_with_another_certificate() {
    bounded(TEST_LIMIT, async {
        let ours = Server::start_with(ServerOptions::tls_self_signed()).await;
        let other = Server::start_with(ServerOptions::tls_self_signed()).await;
        let join = ours.join_key().expect("join.key");
        let pin = hex(&join
            .ca_sha256
            .expect("the join key carries the CA's SHA-256"));

        // Our join key, the other server's URL.
        let mut options = NodeOptions::beside("tls-wrong");
        options.router_url = Some(other.url.clone());
        let mut node = E2eNode::start(&ours.url, options).await;
        let status = exit_of(node.nodelet(), Duration::from_secs(30)).await;
        assert!(!status.success(), "{status}");
        let lines = node.nodelet().lines();
        let refusal = lines
            .iter()
            .find(|l| l.contains("fingerprint mismatch"))
            .unwrap_or_else(|| {
                panic!(
                    "no fingerprint mismatch in the nodelet's output:\n{}",
                    lines.join("\n")
                )
            });
        assert!(refusal.contains("not trusted"), "{refusal}");
        assert!(
            refusal.contains(&pin),
            "the message names the pinned SHA-256: {refusal}"
        );
        eprintln!("the nodelet refused: {refusal}");

        assert!(
            other
                .nodes()
                .list(&Default::default())
                .await
                .expect("list")
                .items
                .is_empty(),
            "nothing registered with the other server"
        );
        let secrets = [("join", join.secret.expose().to_owned())];
        assert_no_secret_in_logs(
            &secrets,
            &[("nodelet", lines), ("other server", other.proc.lines())],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_official_python_clients_over_https() {
    bounded(TEST_LIMIT, async {
        let server = Server::start_with(ServerOptions::tls_self_signed()).await;
        let mut node = E2eNode::start(&server.url, NodeOptions::beside("tls-c1")).await;
        server
            .wait_routable(&["tls-c1"], Duration::from_secs(30))
            .await;
        let ca = server.ca_cert().expect("ca.crt");
        let ca = ca.to_str().expect("path");

        // As users configure them: SSL_CERT_FILE names the CA, the URL is https.
        let script = clients_dir().join("ollama_client.py");
        let script = script.to_str().expect("path");
        let direct = run_client(
            &python(),
            &[script, MODEL],
            &[("OLLAMA_HOST", &node.ollama_url)],
        )
        .await;
        let routed = run_client(
            &python(),
            &[script, MODEL],
            &[("OLLAMA_HOST", &server.url), ("SSL_CERT_FILE", ca)],
        )
        .await;
        assert_eq!(
            routed, direct,
            "ollama-python: router over https vs one Ollama"
        );
        assert_eq!(routed["chat"]["content"], herd_testkit::reply_text(8));
        assert_eq!(routed["generate"]["done"], true);

        let script = clients_dir().join("openai_client.py");
        let script = script.to_str().expect("path");
        let direct = run_client(&python(), &[script, &node.ollama_url, MODEL], &[]).await;
        let routed = run_client(
            &python(),
            &[script, &server.url, MODEL],
            &[("SSL_CERT_FILE", ca)],
        )
        .await;
        assert_eq!(
            routed, direct,
            "openai-python: router over https vs one Ollama"
        );
        assert_eq!(routed["chat"]["content"], herd_testkit::reply_text(8));

        // The CA given in code (httpx verify=, openai's http_client); without it
        // both libraries refuse the server.
        let out = run_client(
            &python(),
            &[
                clients_dir().join("tls_client.py").to_str().expect("path"),
                &server.url,
                ca,
                MODEL,
            ],
            &[],
        )
        .await;
        assert_eq!(
            out["ollama_chat"]["content"],
            herd_testkit::reply_text(8),
            "{out}"
        );
        assert_eq!(out["ollama_chat"]["done"], true, "{out}");
        assert_eq!(out["ollama_generate"]["done"], true, "{out}");
        assert!(
            out["ollama_generate"]["response"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{out}"
        );
        assert_eq!(
            out["openai_chat"]["content"],
            herd_testkit::reply_text(8),
            "{out}"
        );
        assert_eq!(out["ollama_without_ca_refused"], true, "{out}");
        assert_eq!(out["openai_without_ca_refused"], true, "{out}");

        let secrets = [
            (
                "admin",
                server
                    .admin_key()
                    .expect("admin.key")
                    .secret
                    .expose()
                    .to_owned(),
            ),
            (
                "join",
                server
                    .join_key()
                    .expect("join.key")
                    .secret
                    .expose()
                    .to_owned(),
            ),
        ];
        let logs = [
            ("server", server.proc.lines()),
            ("nodelet", node.nodelet().lines()),
        ];
        assert_no_secret_in_logs(&secrets, &logs);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_herd_up_self_signed_nodelet_pins_its_own_server() {
    bounded(TEST_LIMIT, async {
        let home = tempfile::tempdir().expect("tempdir");
        let host = herd_e2e::net::next_host();
        let _ollama = herd_e2e::node::start_fake("herd up", host, &[], 1).await;
        let mut cmd = Command::new(herd_e2e::bins::herd());
        cmd.args([
            "up",
            "--tls-self-signed",
            "--no-install",
            "--no-default-model",
            "--name",
            "up-tls",
        ])
        .args(["--ollama-url", &host.ollama_url()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("HERD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
        let mut up = Proc::spawn("herd up --tls-self-signed", cmd);
        let line = up
            .wait_for_line("listening", Duration::from_secs(30), |l| {
                l.contains("listening on https://")
            })
            .await;
        let (scheme, addr) = herd_e2e::server::listening_url(&line).expect("address");
        assert_eq!(scheme, "https");
        let port = addr.port();
        let url = format!("https://localhost:{port}");
        let data = home.path().join(".local/share/herd");
        let admin = herd_auth::read_key_file(&data.join("admin.key")).expect("admin.key");
        let join = herd_auth::read_key_file(&data.join("join.key")).expect("join.key");
        let client = Client::builder(&url)
            .trust(ClientTrust::CaFile(data.join("tls/ca.crt")))
            .token(admin.expose())
            .build()
            .expect("client");
        wait_ready(&client.api::<Node>(), "up-tls").await;

        // Its nodelet joined over https with the join key's pin, and kept it.
        let node_key = herd_auth::read_key_file(&data.join("nodelet/node.key")).expect("node.key");
        assert!(join.ca_sha256.is_some());
        assert_eq!(node_key.ca_sha256, join.ca_sha256);
        up.wait_for_line("the dashboard sign-in link", Duration::from_secs(15), |l| {
            l.contains("Dashboard: https://")
        })
        .await;

        let secrets = [
            ("admin", admin.secret.expose().to_owned()),
            ("join", join.secret.expose().to_owned()),
            ("node", node_key.secret.expose().to_owned()),
        ];
        assert_no_secret_in_logs(&secrets, &[("herd up", up.lines())]);
        let status = up
            .terminate(Duration::from_secs(15))
            .await
            .expect("herd up exits on SIGTERM");
        assert!(status.success(), "{status}");
    })
    .await;
}
