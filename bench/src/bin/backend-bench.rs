//! What herd adds in front of a real OpenAI-compatible server: time to first
//! token and generation speed with SmolLM2 on `llama-server`, asked directly
//! (`/v1/chat/completions`) and through herd (`/v1/chat/completions` passed
//! through, and Ollama's `/api/chat` translated), one request at a time, the
//! three targets alternating within every round so the machine's drift
//! falls on all of them alike.
//!
//! ```sh
//! ./scripts/llama.sh
//! cargo build --release -p herd -p herd-bench --bins
//! target/release/backend-bench --rounds 30
//! ```
//!
//! Reports medians per target and herd's added time to first token and
//! tokens/s ratio against direct (median of per-round differences).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use herd_bench::{Proc, load};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Where `scripts/llama.sh` put `bin/llama-server` and the model.
    #[arg(long)]
    llama_dir: Option<PathBuf>,
    /// Rounds; each asks every target once.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Threads for llama-server.
    #[arg(long, default_value_t = 1)]
    threads: u32,
}

const MODEL: &str = "smollm2";

#[derive(Clone, Copy)]
enum Api {
    OpenAi,
    Ollama,
}

struct Sample {
    ttft: Duration,
    /// Tokens after the first, per second of streaming after the first.
    tokens_per_sec: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = args
        .llama_dir
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/herd/llama")))
        .context("--llama-dir")?;
    let llama = start_llama(&dir, args.threads)?;
    let data = tempfile::tempdir()?;
    let (router, _) = load::start_router(&data.path().join("data"), &[])?;
    let spec = json!({"url": llama.url, "api": "openai", "managed": false, "maxParallel": 1});
    load::register_node_spec(&router, "llama", spec, &[MODEL], true).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let targets: [(&str, String, Api); 3] = [
        (
            "direct /v1",
            format!("{}/v1/chat/completions", llama.url),
            Api::OpenAi,
        ),
        (
            "herd /v1",
            format!("{}/v1/chat/completions", router.url),
            Api::OpenAi,
        ),
        (
            "herd /api/chat",
            format!("{}/api/chat", router.url),
            Api::Ollama,
        ),
    ];
    println!(
        "llama-server ({} thread), SmolLM2-135M, {} tokens per answer, {} rounds",
        args.threads, args.max_tokens, args.rounds
    );
    // Warm-up: the model's first request pays for allocations.
    for (_, url, api) in &targets {
        ask(&http, url, *api, args.max_tokens, 0).await?;
    }
    let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        // Rotate the order so no target always goes first.
        for i in 0..targets.len() {
            let t = (i + round) % targets.len();
            let (_, url, api) = &targets[t];
            samples[t].push(ask(&http, url, *api, args.max_tokens, round).await?);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (t, (name, _, _)) in targets.iter().enumerate() {
        let ttft = median(
            samples[t]
                .iter()
                .map(|s| s.ttft.as_secs_f64() * 1e3)
                .collect(),
        );
        let tps = median(samples[t].iter().map(|s| s.tokens_per_sec).collect());
        if t == 0 {
            println!("{name:<16} TTFT p50 {ttft:>7.2} ms   {tps:>6.1} tokens/s");
            continue;
        }
        let added = median(
            samples[t]
                .iter()
                .zip(&samples[0])
                .map(|(h, d)| (h.ttft.as_secs_f64() - d.ttft.as_secs_f64()) * 1e3)
                .collect(),
        );
        let ratio = median(
            samples[t]
                .iter()
                .zip(&samples[0])
                .map(|(h, d)| h.tokens_per_sec / d.tokens_per_sec)
                .collect(),
        );
        println!(
            "{name:<16} TTFT p50 {ttft:>7.2} ms   {tps:>6.1} tokens/s   added TTFT (median of pairs) {added:+.2} ms   tokens/s x{ratio:.3}"
        );
    }
    drop(router);
    drop(llama);
    Ok(())
}

fn start_llama(dir: &std::path::Path, threads: u32) -> anyhow::Result<Proc> {
    let port = load::free_port()?;
    let child = Command::new(dir.join("bin/llama-server"))
        .arg("-m")
        .arg(dir.join("models/smollm2-135m.gguf"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", &threads.to_string(), "-c", "4096", "-np", "1"])
        .args(["--alias", MODEL])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting llama-server")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !load::llama_healthy(port) {
        if Instant::now() > deadline {
            bail!("llama-server on {port} did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Proc {
        child,
        url: format!("http://127.0.0.1:{port}"),
        admin_key: None,
    })
}

/// One streamed chat; the question varies by round so no answer is cached
/// whole, while the short prompt keeps prompt evaluation small.
async fn ask(
    http: &reqwest::Client,
    url: &str,
    api: Api,
    max_tokens: u32,
    round: usize,
) -> anyhow::Result<Sample> {
    let messages = json!([{"role": "user", "content": format!("Count from {round} upward, one number per line.")}]);
    let body = match api {
        Api::OpenAi => json!({"model": MODEL, "messages": messages, "stream": true,
            "max_tokens": max_tokens, "temperature": 0, "seed": 1}),
        Api::Ollama => json!({"model": MODEL, "messages": messages, "stream": true,
            "options": {"num_predict": max_tokens, "temperature": 0, "seed": 1}}),
    };
    let sent = Instant::now();
    let resp = http.post(url).json(&body).send().await?;
    if !resp.status().is_success() {
        bail!("{url}: {}", resp.status());
    }
    let mut stream = resp.bytes_stream();
    let mut pending = Vec::new();
    let (mut first, mut last, mut chunks) = (None, None, 0u32);
    let sep: &[u8] = match api {
        Api::OpenAi => b"\n\n",
        Api::Ollama => b"\n",
    };
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(i) = pending.windows(sep.len()).position(|w| w == sep) {
            let event: Vec<u8> = pending.drain(..i + sep.len()).collect();
            let text = String::from_utf8_lossy(&event);
            let json = match api {
                Api::OpenAi => text.trim().strip_prefix("data: ").map(str::to_owned),
                Api::Ollama => Some(text.trim().to_owned()),
            };
            let Some(v) = json.and_then(|j| serde_json::from_str::<Value>(&j).ok()) else {
                continue;
            };
            let content = match api {
                Api::OpenAi => v["choices"][0]["delta"]["content"].as_str(),
                Api::Ollama => v["message"]["content"].as_str(),
            };
            if content.is_some_and(|c| !c.is_empty()) {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                chunks += 1;
            }
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("{url}: no tokens");
    };
    let streaming = last.duration_since(first).as_secs_f64();
    Ok(Sample {
        ttft: first.duration_since(sent),
        tokens_per_sec: if streaming > 0.0 {
            f64::from(chunks.saturating_sub(1)) / streaming
        } else {
            0.0
        },
    })
}
