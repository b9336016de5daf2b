//! The `fake-ollama` binary: `--version` and `serve` as Ollama does them.

use std::process::Stdio;
use std::time::Duration;

use herd_testkit::FakeOllama;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{bounded, client, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_fake-ollama");

fn fake_ollama() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("OLLAMA_MODELS")
        .env_remove("OLLAMA_NUM_PARALLEL")
        .env_remove("OLLAMA_MAX_QUEUE")
        .env_remove("OLLAMA_KEEP_ALIVE")
        .env_remove("FAKE_OLLAMA_VERSION")
        .kill_on_drop(true);
    c
}

async fn version_output(ollama_host: &str, flag: &str) -> String {
    let out = fake_ollama()
        .arg(flag)
        .env("OLLAMA_HOST", ollama_host)
        .output()
        .await
        .expect("run fake-ollama --version");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8")
}

#[tokio::test]
async fn version_prints_like_the_ollama_cli() {
    bounded(async {
        let nobody = format!("127.0.0.1:{}", free_port());
        assert_eq!(
            version_output(&nobody, "--version").await,
            "Warning: could not connect to a running Ollama instance\nWarning: client version is 0.33.0\n"
        );
        let server = FakeOllama::builder().start().await;
        assert_eq!(version_output(&server.host_port(), "--version").await, "ollama version is 0.33.0\n");
        assert_eq!(version_output(&server.url(), "-v").await, "ollama version is 0.33.0\n");
        let old = FakeOllama::builder().version("0.32.1").start().await;
        assert_eq!(
            version_output(&old.host_port(), "--version").await,
            "ollama version is 0.32.1\nWarning: client version is 0.33.0\n"
        );
        let out = fake_ollama()
            .arg("-v")
            .env("OLLAMA_HOST", &nobody)
            .env("FAKE_OLLAMA_VERSION", "0.30.0")
            .output()
            .await
            .expect("run");
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("Warning: client version is 0.30.0\n"));

        // Empty or bad settings fall back to defaults, as Ollama's do.
        let out = fake_ollama()
            .arg("--version")
            .env("OLLAMA_HOST", &nobody)
            .env("OLLAMA_NUM_PARALLEL", "")
            .env("OLLAMA_MAX_QUEUE", "lots")
            .output()
            .await
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    })
    .await;
}

/// Starts `fake-ollama serve` and waits for Ollama's "Listening on" line.
async fn serve(envs: &[(&str, &str)], args: &[&str]) -> (Child, String) {
    let mut child = fake_ollama()
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fake-ollama serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    while let Some(line) = lines.next_line().await.expect("read stderr") {
        log.push_str(&line);
        log.push('\n');
        if line.contains("msg=\"Listening on ") {
            // Keep draining so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, log);
        }
    }
    panic!("fake-ollama serve exited before listening:\n{log}");
}

async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits promptly on SIGTERM")
        .expect("wait")
}

#[tokio::test]
async fn serve_reads_ollama_host_and_stops_cleanly_on_sigterm() {
    bounded(async {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let (child, log) = serve(
            &[
                ("OLLAMA_HOST", &format!("http://{host}")),
                ("OLLAMA_NUM_PARALLEL", "3"),
            ],
            &["--models", "llama3.2:1b,qwen2.5:0.5b"],
        )
        .await;
        assert!(
            log.contains(&format!("Listening on {host} (version 0.33.0)")),
            "{log}"
        );
        assert!(log.contains("level=INFO"), "{log}");
        assert!(
            log.contains("OLLAMA_NUM_PARALLEL:3"),
            "env settings are read: {log}"
        );

        let c = client();
        let root = c
            .get(format!("http://{host}/"))
            .send()
            .await
            .expect("GET /");
        assert_eq!(root.text().await.expect("text"), "Ollama is running");
        let tags: serde_json::Value = c
            .get(format!("http://{host}/api/tags"))
            .send()
            .await
            .expect("tags")
            .json()
            .await
            .expect("json");
        assert_eq!(tags["models"].as_array().expect("models").len(), 2);

        let status = terminate(child).await;
        assert!(status.success(), "{status:?}");
        assert!(
            tokio::net::TcpStream::connect(&host).await.is_err(),
            "port closed after exit"
        );
    })
    .await;
}

#[tokio::test]
async fn serve_keeps_pulled_models_in_ollama_models_across_restarts() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = dir.path().to_str().expect("utf8 path");
        let host = format!("127.0.0.1:{}", free_port());
        let env = [("OLLAMA_HOST", host.as_str()), ("OLLAMA_MODELS", models)];

        let (child, _) = serve(&env, &["--pull-duration-ms", "20"]).await;
        let pulled = client()
            .post(format!("http://{host}/api/pull"))
            .json(&json!({"model": "gemma3:270m", "stream": false}))
            .send()
            .await
            .expect("pull");
        assert_eq!(pulled.status(), 200);
        assert!(terminate(child).await.success());

        let (child, _) = serve(&env, &[]).await;
        let tags: serde_json::Value = client()
            .get(format!("http://{host}/api/tags"))
            .send()
            .await
            .expect("tags")
            .json()
            .await
            .expect("json");
        assert_eq!(tags["models"][0]["name"], "gemma3:270m");
        assert!(terminate(child).await.success());
    })
    .await;
}

#[tokio::test]
async fn serve_reports_a_busy_port_like_ollama() {
    bounded(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let out = fake_ollama()
            .arg("serve")
            .env("OLLAMA_HOST", &addr)
            .output()
            .await
            .expect("run");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "Error: listen tcp {addr}: bind: address already in use"
            )),
            "{stderr}"
        );
    })
    .await;
}
