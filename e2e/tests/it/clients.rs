//! Real client libraries against the router: the official `ollama` Python
//! library, the `openai` Python library and the `ollama` npm package, each
//! run once against the router (two nodes) and once against a single fake
//! Ollama; the answers must be the same.
//!
//! The libraries are installed by `scripts/e2e-clients.sh` (run here once if
//! needed; it fails, and so do these tests, when a registry is unreachable).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use herd_e2e::{MODEL, Node as E2eNode, NodeOptions, Server, bounded};

use crate::support::TEST_LIMIT;

/// Runs `scripts/e2e-clients.sh` once per test process.
pub fn ensure_clients() {
    static DONE: OnceLock<()> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    DONE.get_or_init(|| {
        let root = herd_e2e::bins::workspace_dir();
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/e2e-clients.sh"))
            .current_dir(&root)
            .output()
            .expect("run scripts/e2e-clients.sh");
        assert!(
            out.status.success(),
            "scripts/e2e-clients.sh failed ({}): the client libraries could not be installed\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn python() -> PathBuf {
    herd_e2e::bins::workspace_dir().join("target/e2e-venv/bin/python")
}

pub fn clients_dir() -> PathBuf {
    herd_e2e::bins::workspace_dir().join("e2e/clients")
}

/// Runs a client script (bounded) and parses the JSON it prints.
pub async fn run_client(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Value {
    ensure_clients();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(clients_dir())
        .env_remove("OLLAMA_HOST")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish within 60 s", program.display()))
        .expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} {args:?}: {}\nstdout: {stdout}\nstderr: {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}"))
}

async fn fleet() -> (Server, Vec<E2eNode>) {
    let server = Server::start().await;
    let mut nodes = Vec::new();
    for name in ["c1", "c2"] {
        nodes.push(E2eNode::start(&server.url, NodeOptions::beside(name)).await);
    }
    server
        .wait_routable(&["c1", "c2"], Duration::from_secs(30))
        .await;
    (server, nodes)
}

/// ollama-python: chat, generate (plain and streaming), embed, list, show,
/// ps and a missing model, through `OLLAMA_HOST=<router>` exactly as against
/// one Ollama.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_ollama_python_sees_the_router_as_one_ollama() {
    bounded(TEST_LIMIT, async {
        let (server, nodes) = fleet().await;
        let script = clients_dir().join("ollama_client.py");
        let script = script.to_str().expect("path");
        let direct = run_client(
            &python(),
            &[script, MODEL],
            &[("OLLAMA_HOST", &nodes[0].ollama_url)],
        )
        .await;
        let routed = run_client(&python(), &[script, MODEL], &[("OLLAMA_HOST", &server.url)]).await;
        assert_eq!(routed, direct, "router vs one Ollama");
        assert_eq!(routed["chat"]["content"], herd_testkit::reply_text(8));
        assert_eq!(routed["missing_model"]["status"], 404);
        assert_eq!(routed["list"], serde_json::json!([MODEL]));
    })
    .await;
}

/// openai-python: chat completions (plain and streaming), models, one model,
/// embeddings and a missing model, with `base_url=<router>/v1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_openai_python_sees_the_router_as_one_ollama() {
    bounded(TEST_LIMIT, async {
        let (server, nodes) = fleet().await;
        let script = clients_dir().join("openai_client.py");
        let script = script.to_str().expect("path");
        let direct = run_client(&python(), &[script, &nodes[0].ollama_url, MODEL], &[]).await;
        let routed = run_client(&python(), &[script, &server.url, MODEL], &[]).await;
        assert_eq!(routed, direct, "router vs one Ollama");
        assert_eq!(routed["chat"]["content"], herd_testkit::reply_text(8));
        assert_eq!(
            routed["chat_stream"]["content"],
            herd_testkit::reply_text(8)
        );
        assert_eq!(routed["missing_model"]["status"], 404);
    })
    .await;
}

/// ollama-js: streaming chat, chat, list and a missing model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_ollama_js_sees_the_router_as_one_ollama() {
    bounded(TEST_LIMIT, async {
        let (server, nodes) = fleet().await;
        let node = PathBuf::from("node");
        let direct = run_client(
            &node,
            &["ollama_js_client.mjs", &nodes[0].ollama_url, MODEL],
            &[],
        )
        .await;
        let routed = run_client(&node, &["ollama_js_client.mjs", &server.url, MODEL], &[]).await;
        assert_eq!(routed, direct, "router vs one Ollama");
        assert_eq!(
            routed["chat_stream"]["content"],
            herd_testkit::reply_text(8)
        );
        assert_eq!(routed["chat_stream"]["last_done"], true);
    })
    .await;
}
