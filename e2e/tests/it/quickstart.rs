//! The README's quick start, run as written as far as this machine allows.
//!
//! README: `cargo build --release`, `target/release/herd up`, then
//! `OLLAMA_HOST=http://localhost:8080 ollama run llama3.2:1b` and two `curl`
//! lines. What differs, and why:
//! - the debug build (`target/debug/herd up`), which the suite already built;
//! - the command line is `herd up` verbatim; the environment says what this
//!   machine needs: `HOME` a temporary directory (so herd's data and its
//!   Ollama install go there, not into the real home), `HERD_LISTEN` on a free
//!   port of 127.0.0.1 (8080 may be taken), `OLLAMA_HOST` a free loopback
//!   address (11434 may be taken), and `HERD_DOWNLOAD_BASE_URL` a local
//!   release site, since Ollama cannot be downloaded here: its archive holds
//!   `fake-ollama` as `bin/ollama`, with a real `sha256sum.txt`;
//! - `ollama run` (the Ollama CLI, not installed) is done with ollama-python
//!   the way the CLI does it: pull the model, then chat;
//! - the `curl` lines are read from README.md and run with `localhost:8080`
//!   replaced by the router's port.

use std::process::Command;
use std::time::{Duration, Instant};

use herd_api::Node;
use herd_e2e::{Proc, ReleaseServer, bounded, eventually};

use crate::clients::{python, run_client};
use crate::support::{TEST_LIMIT, figure};

/// The `curl` commands of the README's quick start (continuation lines joined).
fn readme_curl_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(herd_e2e::bins::workspace_dir().join("README.md"))
        .expect("README.md");
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Quick start section");
    let joined = quick.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_herd_up_then_clients_through_the_router() {
    bounded(TEST_LIMIT, async {
        let release = ReleaseServer::start().await;
        let home = tempfile::tempdir().expect("tempdir");
        let ollama = herd_e2e::net::next_host().ollama;
        let mut cmd = Command::new(herd_e2e::bins::herd());
        cmd.arg("up")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("HERD_LISTEN", "127.0.0.1:0")
            .env("OLLAMA_HOST", ollama.to_string())
            .env("HERD_DOWNLOAD_BASE_URL", &release.base)
            .env("RUST_LOG", "info");
        let started = Instant::now();
        let mut up = Proc::spawn("herd up", cmd);
        let line = up
            .wait_for_line("listening", Duration::from_secs(30), |l| l.contains("listening on http://"))
            .await;
        let port = line
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port");
        let url = format!("http://localhost:{port}");

        // This machine registers, with Ollama installed and its default model pulled.
        // The server wrote its admin key into its data directory under HOME.
        let admin = herd_auth::read_key_file(&home.path().join(".local/share/herd/admin.key"))
            .expect("herd up wrote admin.key");
        let nodes = herd_client::Client::builder(&url)
            .token(admin.expose())
            .build()
            .expect("client")
            .api::<Node>();
        let node = eventually(
            "this machine Ready with its default model",
            Duration::from_secs(60),
            || async { nodes.list(&Default::default()).await.ok() },
            |l| l.items.len() == 1 && l.items[0].is_ready() && !l.items[0].status.models.is_empty(),
        )
        .await
        .items
        .remove(0);
        figure("quickstart herd up: node Ready with its default model", format!("{:?}", started.elapsed()));
        assert_eq!(release.downloads(), 1, "Ollama was downloaded and installed");
        let default_model = node.status.models[0].name.clone();
        figure("quickstart herd up: default model pulled", &default_model);
        assert!(home.path().join(".local/share/herd").is_dir(), "herd's data under HOME");

        // `OLLAMA_HOST=http://localhost:8080 ollama run llama3.2:1b`: pull, then chat.
        let program = "import json, ollama\n\
                       ollama.pull('llama3.2:1b')\n\
                       r = ollama.chat(model='llama3.2:1b', messages=[{'role': 'user', 'content': 'hi'}])\n\
                       print(json.dumps({'content': r.message.content, 'done': r.done, 'models': sorted(m.model for m in ollama.list().models)}))";
        let out = run_client(&python(), &["-c", program], &[("OLLAMA_HOST", &url)]).await;
        assert_eq!(out["content"], herd_testkit::reply_text(8), "{out}");
        assert_eq!(out["done"], true);
        assert!(
            out["models"].as_array().is_some_and(|m| m.iter().any(|m| m == "llama3.2:1b")),
            "{out}"
        );

        // The README's curl lines.
        let lines = readme_curl_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in lines {
            let line = line.replace("localhost:8080", &format!("localhost:{port}"));
            let out = tokio::process::Command::new("bash")
                .args(["-c", &format!("{line} --silent --show-error --fail")])
                .output()
                .await
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{line}: {}\n{body}", String::from_utf8_lossy(&out.stderr));
            let last: serde_json::Value = body
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| panic!("{line}: not JSON: {body}"));
            assert!(
                last["done"] == true || last["object"] == "chat.completion",
                "{line}: {last}"
            );
        }

        // Ctrl-C / SIGTERM: everything stops, the Ollama herd started too.
        let install = home.path().join(".local/share/herd/ollama");
        assert_eq!(herd_e2e::process::pids_with_exe_under(&install.canonicalize().expect("install dir")).len(), 1);
        let status = up.terminate(Duration::from_secs(15)).await.expect("herd up exits on SIGTERM");
        assert!(status.success(), "{status}");
        assert!(
            herd_e2e::process::pids_with_exe_under(&install.canonicalize().expect("install dir")).is_empty(),
            "the Ollama herd up started is stopped"
        );
    })
    .await;
}
