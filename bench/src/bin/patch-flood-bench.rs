//! The memory bound under the hardening issue's attack: one node as large
//! as the server accepts, then many one-field merge patches, each of which
//! makes the server keep a whole copy of the node for watchers. Reports the
//! server's resident memory and database size as the patches go, against
//! the watch window's byte bound.
//!
//! cargo build --release -p herd -p herd-bench
//! target/release/patch-flood-bench          # 10,000 patches, default bound (64 MiB)

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use herd_bench::{mib, rss_bytes, start_herd_server};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Merge patches to send.
    #[arg(long, default_value_t = 10_000)]
    patches: usize,
    /// `--watch-window-bytes` for the server (default: the server's default).
    #[arg(long)]
    window_bytes: Option<usize>,
    /// Print a sample every this many patches.
    #[arg(long, default_value_t = 1_000)]
    every: usize,
}

/// A node just under the 256 KiB object limit: 256 labels (the most
/// allowed) and a large annotation.
fn largest_node() -> Value {
    let labels: serde_json::Map<String, Value> = (0..256)
        .map(|i| {
            (
                format!("bench.example.com/label-{i:04}"),
                json!(format!("value-{i:04}")),
            )
        })
        .collect();
    json!({
        "apiVersion": "herd/v1",
        "kind": "Node",
        "metadata": {
            "name": "flood",
            "labels": labels,
            "annotations": {"bench.example.com/filler": "x".repeat(200 * 1024)},
        },
        "spec": {"ollamaUrl": "http://127.0.0.1:11434"},
    })
}

/// Sizes of `herd.db` and its write-ahead log, as text.
fn db_sizes(dir: &Path) -> String {
    let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    format!("{} | {}", mib(size("herd.db")), mib(size("herd.db-wal")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let bound = args.window_bytes.map(|b| b.to_string());
    let mut extra = vec![];
    if let Some(b) = &bound {
        extra.extend(["--watch-window-bytes", b.as_str()]);
    }
    extra.push("--no-controller");
    let server = start_herd_server(dir.path(), &extra)?;
    let pid = server.child.id();
    let http = reqwest::Client::new();
    let nodes = format!("{}/apis/herd/v1/nodes", server.url);
    let rss0 = rss_bytes(pid).unwrap_or(0);
    let node = largest_node();
    let resp = http.post(&nodes).json(&node).send().await?;
    let code = resp.status();
    let body = resp.bytes().await?;
    anyhow::ensure!(
        code.is_success(),
        "creating the node: {code} {}",
        String::from_utf8_lossy(&body)
    );
    println!(
        "node: {} bytes stored; watch window bound: {}",
        body.len(),
        bound.as_deref().unwrap_or("default (64 MiB)")
    );
    println!("| patches | RSS | herd.db | herd.db-wal | patches/s |");
    println!("|---:|---:|---:|---:|---:|");
    println!("| 0 | {} | {} | |", mib(rss0), db_sizes(dir.path()));
    let started = Instant::now();
    let mut peak_rss = rss0;
    for i in 1..=args.patches {
        let patch = json!({"spec": {"weight": i % 100 + 1}});
        let resp = http
            .patch(format!("{nodes}/flood"))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .context("patch")?;
        anyhow::ensure!(resp.status().is_success(), "patch {i}: {}", resp.status());
        if i % args.every == 0 || i == args.patches {
            let rss = rss_bytes(pid).unwrap_or(0);
            peak_rss = peak_rss.max(rss);
            let rate = i as f64 / started.elapsed().as_secs_f64();
            println!(
                "| {i} | {} | {} | {rate:.0} |",
                mib(rss),
                db_sizes(dir.path())
            );
        }
    }
    println!(
        "peak RSS {}; {} patches of about {} KiB each ({}) went through the window",
        mib(peak_rss),
        args.patches,
        body.len() / 1024,
        mib((args.patches * body.len()) as u64)
    );
    Ok(())
}
