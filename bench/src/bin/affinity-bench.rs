//! Prefix affinity against load-only balancing: multi-turn conversations,
//! each with a long system prompt of its own, several at once, through a
//! herd router in front of two nodes whose servers cache prompt prefixes
//! per slot. Each mode gets fresh nodes (cold caches) and a fresh router.
//!
//! Modes: `affinity` (`--balancer p2c --prefix-affinity on`), `p2c`
//! (`--prefix-affinity off`) and `round_robin` (`--balancer round_robin
//! --prefix-affinity off`).
//!
//! Backends: `llama` runs two real `llama-server`s (from `scripts/llama.sh`,
//! SmolLM2-135M, one thread each, slots sized so every slot holds a whole
//! conversation); `fake` runs two `fake-ollama`s with a per-slot prefix cache
//! evaluating 150 prompt tokens/s (what one core does with SmolLM2 here).
//!
//! ```sh
//! cargo build --release -p herd -p herd-testkit -p herd-bench --bins
//! target/release/affinity-bench --backend fake
//! target/release/affinity-bench --backend llama --llama-dir ~/.cache/herd/llama
//! ```
//!
//! Reports, per mode: time to first token of first and follow-up turns (p50,
//! p90), requests per node, the busiest node's share against the mean, and
//! the fleet's throughput (completion tokens per second over the run).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use herd_bench::Proc;
use herd_bench::load;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// `fake` or `llama`.
    #[arg(long, default_value = "fake")]
    backend: String,
    /// Where `scripts/llama.sh` put `bin/llama-server` and the model.
    #[arg(long)]
    llama_dir: Option<PathBuf>,
    /// Conversations running at once.
    #[arg(long, default_value_t = 8)]
    conversations: usize,
    /// Turns per conversation (the first is cold everywhere).
    #[arg(long, default_value_t = 4)]
    turns: usize,
    /// Words in each conversation's system prompt (~1.3 tokens each).
    #[arg(long, default_value_t = 1150)]
    system_words: usize,
    /// Tokens generated per turn.
    #[arg(long, default_value_t = 16)]
    max_tokens: u32,
    /// Slots per node (each holds one conversation's prefix).
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Modes to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "affinity,p2c,round_robin"
    )]
    modes: Vec<String>,
}

const MODEL: &str = "smollm2";

/// One answered turn.
struct Turn {
    turn: usize,
    node: String,
    ttft: Duration,
    tokens: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "backend {}, {} conversations x {} turns, {} system words, {} tokens per turn, {} slots per node",
        args.backend,
        args.conversations,
        args.turns,
        args.system_words,
        args.max_tokens,
        args.slots
    );
    for mode in &args.modes {
        let flags: &[&str] = match mode.as_str() {
            "affinity" => &["--balancer", "p2c", "--prefix-affinity", "on"],
            "p2c" => &["--balancer", "p2c", "--prefix-affinity", "off"],
            "round_robin" => &["--balancer", "round_robin", "--prefix-affinity", "off"],
            other => bail!("unknown mode {other:?}"),
        };
        let nodes = start_nodes(&args)?;
        let dir = tempfile::tempdir()?;
        let flags: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        let (router, _) = load::start_router(&dir.path().join("data"), &flags)?;
        for (i, n) in nodes.iter().enumerate() {
            load::register_node(
                &router,
                &format!("node-{i}"),
                &n.url,
                &[MODEL],
                args.slots,
                true,
            )
            .await?;
        }
        let started = Instant::now();
        let runs = futures_util::future::join_all(
            (0..args.conversations).map(|c| conversation(&router.url, c, &args)),
        )
        .await;
        let wall = started.elapsed();
        let mut turns = Vec::new();
        for r in runs {
            turns.extend(r?);
        }
        report(mode, &turns, wall, nodes.len());
    }
    Ok(())
}

fn start_nodes(args: &Args) -> anyhow::Result<Vec<Proc>> {
    (0..2)
        .map(|_| match args.backend.as_str() {
            "fake" => load::start_fake_ollama(
                &[
                    "--models",
                    MODEL,
                    "--ttft-ms",
                    "0",
                    "--prompt-tokens-per-sec",
                    "150",
                    "--tokens-per-sec",
                    "60",
                    "--tokens",
                    &args.max_tokens.to_string(),
                    "--num-parallel",
                    &args.slots.to_string(),
                ]
                .map(String::from),
            ),
            "llama" => start_llama(args),
            other => bail!("unknown backend {other:?}"),
        })
        .collect()
}

fn start_llama(args: &Args) -> anyhow::Result<Proc> {
    let dir = args
        .llama_dir
        .clone()
        .or_else(|| dirs_home().map(|h| h.join(".cache/herd/llama")))
        .context("--llama-dir")?;
    let port = load::free_port()?;
    // Every slot holds a whole conversation: system prompt, turns, answers.
    let ctx = args.slots * 4096;
    let child = Command::new(dir.join("bin/llama-server"))
        .args(["-m"])
        .arg(dir.join("models/smollm2-135m.gguf"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "-t",
            "1",
            "-c",
            &ctx.to_string(),
            "-np",
            &args.slots.to_string(),
        ])
        .args(["--alias", MODEL])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting llama-server")?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if load::llama_healthy(port) {
            break;
        }
        if Instant::now() > deadline {
            bail!("llama-server on {port} did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Proc {
        child,
        url,
        admin_key: None,
    })
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// A system prompt of `words` words, its own for conversation `c`.
fn system_prompt(c: usize, words: usize) -> String {
    const VOCAB: &[&str] = &[
        "river", "stone", "garden", "lantern", "orbit", "meadow", "copper", "signal", "harbor",
        "violet", "engine", "forest", "glacier", "pepper", "canyon", "marble", "thunder", "willow",
        "saddle", "comet", "bridge", "falcon", "ember", "quartz",
    ];
    let mut s = format!("You are assistant {c}. Remember these notes for the user: ");
    let mut x = (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..words {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(VOCAB[(x % VOCAB.len() as u64) as usize]);
        s.push(' ');
    }
    s
}

async fn conversation(router: &str, c: usize, args: &Args) -> anyhow::Result<Vec<Turn>> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut messages =
        vec![json!({"role": "system", "content": system_prompt(c, args.system_words)})];
    let mut out = Vec::new();
    for turn in 0..args.turns {
        messages.push(
            json!({"role": "user", "content": format!("Question {turn}: which note comes first?")}),
        );
        let body = json!({"model": MODEL, "messages": messages, "stream": true,
            "max_tokens": args.max_tokens, "temperature": 0,
            "stream_options": {"include_usage": true}});
        let sent = Instant::now();
        let resp = http
            .post(format!("{router}/v1/chat/completions"))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("turn {turn} of conversation {c}: {}", resp.status());
        }
        let node = resp
            .headers()
            .get("x-herd-node")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut stream = resp.bytes_stream();
        let mut ttft = None;
        let mut text = String::new();
        let mut tokens = 0;
        let mut pending = Vec::new();
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk?);
            while let Some(i) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..i + 2).collect();
                let Some(data) = std::str::from_utf8(&event)
                    .ok()
                    .and_then(|e| e.trim().strip_prefix("data: "))
                else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    if !t.is_empty() && ttft.is_none() {
                        ttft = Some(sent.elapsed());
                    }
                    text.push_str(t);
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    tokens = n;
                }
            }
        }
        messages.push(json!({"role": "assistant", "content": text}));
        out.push(Turn {
            turn,
            node,
            ttft: ttft.unwrap_or_else(|| sent.elapsed()),
            tokens,
        });
    }
    Ok(out)
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn report(mode: &str, turns: &[Turn], wall: Duration, nodes: usize) {
    let ms = |t: &Turn| t.ttft.as_secs_f64() * 1e3;
    let first: Vec<f64> = turns.iter().filter(|t| t.turn == 0).map(ms).collect();
    let follow: Vec<f64> = turns.iter().filter(|t| t.turn > 0).map(ms).collect();
    let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
    for t in turns {
        *per_node.entry(t.node.as_str()).or_default() += 1;
    }
    let mean = turns.len() as f64 / nodes as f64;
    let busiest = per_node.values().copied().max().unwrap_or(0) as f64 / mean;
    let tokens: u64 = turns.iter().map(|t| t.tokens).sum();
    println!(
        "{mode:<12} first TTFT p50 {:>8.0} ms p90 {:>8.0} ms | follow-up TTFT p50 {:>8.0} ms p90 {:>8.0} ms | \
         per node {per_node:?} busiest {busiest:.2}x mean | {:.1} completion tokens/s over {:.1} s",
        percentile(first.clone(), 0.5),
        percentile(first, 0.9),
        percentile(follow.clone(), 0.5),
        percentile(follow, 0.9),
        tokens as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
    );
}
