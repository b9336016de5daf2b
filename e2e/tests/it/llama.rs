//! A real model behind herd: two llama.cpp `llama-server` processes serving
//! SmolLM2-135M (and a third serving its embeddings), added to a real
//! `herd server` as unmanaged OpenAI-compatible nodes with `herd apply`
//! alone, driven by the official ollama, openai and anthropic Python
//! libraries; requests spread over both nodes, and killing one under load
//! fails no non-streaming request.
//!
//! `llama-server` and the model are built and cached by `scripts/llama.sh`
//! (`scripts/test.sh` runs it and passes its directory as `HERD_LLAMA_DIR`;
//! without it the default cache, `~/.cache/herd/llama`, is used).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use herd_e2e::process::Proc;
use herd_e2e::{Server, bounded, net};

use crate::clients::{clients_dir, python, run_client};
use crate::support::herd_cli;

const MODEL: &str = "smollm2";
const EMBED_MODEL: &str = "smollm2-embed";
/// Long enough for the first build of the Python clients and three model
/// loads on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(300);

/// Where `scripts/llama.sh` left `bin/llama-server` and the model.
fn llama_dir() -> PathBuf {
    let dir = std::env::var_os("HERD_LLAMA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/herd/llama")))
        .expect("HERD_LLAMA_DIR or HOME");
    for need in ["bin/llama-server", "models/smollm2-135m.gguf"] {
        assert!(
            dir.join(need).is_file(),
            "{} is missing: run scripts/llama.sh (scripts/test.sh does) and set HERD_LLAMA_DIR to the directory it prints",
            dir.join(need).display()
        );
    }
    dir
}

/// One `llama-server` on a machine address of its own.
struct Llama {
    proc: Proc,
    url: String,
}

impl Llama {
    fn start(name: &str, alias: &str, extra: &[&str]) -> Llama {
        let dir = llama_dir();
        let addr = net::next_host().free_addr();
        let mut cmd = Command::new(dir.join("bin/llama-server"));
        cmd.arg("-m")
            .arg(dir.join("models/smollm2-135m.gguf"))
            .args(["--alias", alias, "--host", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(["-c", "4096", "-np", "2", "-t", "1"])
            .args(extra);
        Llama {
            proc: Proc::spawn(name, cmd),
            url: format!("http://{addr}"),
        }
    }

    async fn wait_healthy(&self) {
        let http = herd_e2e::http();
        herd_e2e::eventually(
            &format!("{} healthy", self.proc.name),
            Duration::from_secs(120),
            || async {
                let r = http.get(format!("{}/health", self.url)).send().await.ok()?;
                Some(r.status().as_u16())
            },
            |code| *code == 200,
        )
        .await;
    }
}

fn manifest(nodes: &[(&str, &Llama)]) -> String {
    nodes
        .iter()
        .map(|(name, l)| {
            format!(
                "apiVersion: herd/v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  url: {}/v1\n  api: openai\n  managed: false\n  maxParallel: 2\n",
                l.url
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Requests each node answered, from herd's request stats.
async fn processed(server: &Server, node: &str) -> u64 {
    server
        .node_stats(node)
        .await
        .and_then(|n| n["processed"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_real_model_behind_herd_with_every_client() {
    bounded(LIMIT, async {
        let mut a = Llama::start("llama-a", MODEL, &[]);
        let b = Llama::start("llama-b", MODEL, &[]);
        let e = Llama::start(
            "llama-embed",
            EMBED_MODEL,
            &["--embeddings", "--pooling", "mean"],
        );
        let server = Server::start().await;
        for l in [&a, &b, &e] {
            l.wait_healthy().await;
        }

        // `herd apply` is all a user does.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("llama.yaml");
        std::fs::write(
            &file,
            manifest(&[("llama-a", &a), ("llama-b", &b), ("llama-embed", &e)]),
        )
        .expect("write manifest");
        let applied = herd_cli(&server, &["apply", "-f", file.to_str().expect("path")]);
        assert_eq!(applied.lines().count(), 3, "{applied}");
        for name in ["llama-a", "llama-b", "llama-embed"] {
            herd_e2e::eventually(
                &format!("{name} routable"),
                Duration::from_secs(60),
                || async { server.routable(name).await },
                |r| *r,
            )
            .await;
        }

        let script = clients_dir().join("llama_client.py");
        let out = run_client(
            &python(),
            &[
                script.to_str().expect("path"),
                &server.url,
                MODEL,
                EMBED_MODEL,
            ],
            &[],
        )
        .await;
        let text = |section: &str, field: &str| {
            out[section][field]
                .as_str()
                .unwrap_or_else(|| panic!("{section}.{field} missing: {out}"))
                .to_owned()
        };
        for (section, field) in [
            ("ollama_chat", "content"),
            ("ollama_chat_stream", "content"),
            ("ollama_generate", "response"),
            ("ollama_generate_stream", "response"),
            ("openai_chat", "content"),
            ("openai_chat_stream", "content"),
            ("openai_responses", "text"),
            ("openai_responses_stream", "text"),
            ("anthropic_messages", "text"),
            ("anthropic_stream", "text"),
        ] {
            assert!(
                !text(section, field).trim().is_empty(),
                "{section}: no text: {out}"
            );
        }
        for section in ["ollama_chat", "ollama_chat_stream"] {
            let done = if section == "ollama_chat" {
                "done"
            } else {
                "last_done"
            };
            assert_eq!(out[section][done], true, "{out}");
        }
        assert_eq!(out["openai_embeddings"]["count"], 2, "{out}");
        assert!(
            out["openai_embeddings"]["dim"]
                .as_u64()
                .is_some_and(|d| d > 0),
            "{out}"
        );
        assert_eq!(
            out["openai_responses_stream"]["last"], "response.completed",
            "{out}"
        );
        eprintln!("llama clients: {out}");

        // Requests spread over both chat nodes.
        let http = herd_e2e::http();
        for _ in 0..6 {
            let r = http
                .post(format!("{}/v1/chat/completions", server.url))
                .json(&serde_json::json!({"model": MODEL, "max_tokens": 4,
                    "messages": [{"role": "user", "content": "Hi"}]}))
                .send()
                .await
                .expect("chat");
            assert_eq!(r.status(), 200);
        }
        let (pa, pb) = (
            processed(&server, "llama-a").await,
            processed(&server, "llama-b").await,
        );
        assert!(
            pa > 0 && pb > 0,
            "requests did not spread: llama-a {pa}, llama-b {pb}"
        );

        // Killing one node under load fails no non-streaming request.
        let load: Vec<_> = (0..4)
            .map(|worker| {
                let (http, url) = (http.clone(), server.url.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    for i in 0..6 {
                        let (path, body) = if (worker + i) % 2 == 0 {
                            (
                                "/v1/chat/completions",
                                serde_json::json!({"model": MODEL, "max_tokens": 24,
                                "messages": [{"role": "user", "content": "Tell me a story."}]}),
                            )
                        } else {
                            (
                                "/api/chat",
                                serde_json::json!({"model": MODEL, "stream": false,
                                "options": {"num_predict": 24},
                                "messages": [{"role": "user", "content": "Tell me a story."}]}),
                            )
                        };
                        let r = http.post(format!("{url}{path}")).json(&body).send().await;
                        statuses.push(match r {
                            Ok(r) => {
                                let s = r.status().as_u16();
                                let body = r.text().await.unwrap_or_default();
                                (s, body)
                            }
                            Err(e) => (0, e.to_string()),
                        });
                    }
                    statuses
                })
            })
            .collect();
        herd_e2e::eventually(
            "load on llama-a",
            Duration::from_secs(60),
            || async { Some(processed(&server, "llama-a").await) },
            |n| *n >= pa + 2,
        )
        .await;
        a.proc.kill9();
        let mut failed = Vec::new();
        let mut total = 0;
        for task in load {
            for (status, body) in task.await.expect("load task") {
                total += 1;
                if status != 200 {
                    failed.push(format!("{status}: {body}"));
                }
            }
        }
        assert!(
            failed.is_empty(),
            "{} of {total} failed after a node died: {failed:#?}",
            failed.len()
        );
        assert!(
            processed(&server, "llama-b").await > pb,
            "llama-b took the load"
        );
    })
    .await;
}
