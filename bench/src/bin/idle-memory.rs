//! Resident memory of an idle `herd server` (release build, its defaults,
//! controller included): first with no nodes, then with `--nodes` nodes
//! registered through the API and heartbeating as nodelets do (a ~1 KB
//! status every `--heartbeat`), pointed at one `fake-ollama` when it was
//! built (the controller and the router then find them answering).
//!
//! cargo build --release -p herd -p herd-testkit -p herd-bench
//! target/release/idle-memory                 # defaults: 100 nodes, 30 s windows
//!
//! Each window samples `/proc/<pid>/status` once a second and prints the
//! median, minimum and maximum of `VmRSS`, and the median of its anonymous
//! and file-backed parts (`RssAnon`, `RssFile`) and the thread count.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_bench::{http_with_key, load, mib, nodelet_status, proc_status, start_herd_server};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// Nodes to register for the second window.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Wait this long after each change before sampling.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Length of each sampling window (one sample a second).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// How often each node heartbeats (the nodelet's default is 5 s).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Heartbeats sent as fast as the server takes them before the last
    /// window: a server that has run for a while keeps its last
    /// `--watch-window` changes (20,000 by default; 100 nodes every 5 s
    /// write that many in 17 minutes), so this measures that steady state.
    /// 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    prefill: u64,
    /// Extra flags for `herd server`.
    #[arg(long, allow_hyphen_values = true)]
    server_flag: Vec<String>,
}

/// Medians (and the range of `VmRSS`) over one window.
struct Window {
    rss: (u64, u64, u64),
    anon: u64,
    file: u64,
    threads: u64,
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

async fn sample(pid: u32, window: Duration) -> anyhow::Result<Window> {
    let (mut rss, mut anon, mut file, mut threads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        rss.push(proc_status(pid, "VmRSS").context("VmRSS: is the server running?")?);
        anon.push(proc_status(pid, "RssAnon").unwrap_or(0));
        file.push(proc_status(pid, "RssFile").unwrap_or(0));
        threads.push(proc_status(pid, "Threads").unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (min, max) = (
        rss.iter().copied().min().unwrap_or(0),
        rss.iter().copied().max().unwrap_or(0),
    );
    Ok(Window {
        rss: (median(&mut rss), min, max),
        anon: median(&mut anon),
        file: median(&mut file),
        threads: median(&mut threads),
    })
}

fn print(what: &str, w: &Window) {
    println!(
        "{what}: VmRSS median {} (min {}, max {}); RssAnon {}, RssFile {}; {} threads",
        mib(w.rss.0),
        mib(w.rss.1),
        mib(w.rss.2),
        mib(w.anon),
        mib(w.file),
        w.threads
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let fake =
        load::start_fake_ollama(&["--models".to_owned(), "llama3.2:1b,qwen2.5:0.5b".to_owned()])
            .map_err(|e| eprintln!("no fake-ollama ({e:#}); nodes point at a closed port"))
            .ok();
    let ollama_url = fake
        .as_ref()
        .map_or_else(|| "http://127.0.0.1:9".to_owned(), |f| f.url.clone());
    let flags: Vec<&str> = args.server_flag.iter().map(String::as_str).collect();
    let server = start_herd_server(dir.path(), &flags)?;
    let pid = server.child.id();
    println!(
        "herd server pid {pid} at {} (flags {:?}); nodes' Ollama {ollama_url}",
        server.url, args.server_flag
    );

    tokio::time::sleep(args.settle).await;
    print("idle, no nodes", &sample(pid, args.window).await?);

    let http = http_with_key(server.admin_key()?)?.build()?;
    let base = format!("{}/apis/herd/v1/nodes", server.url);
    for i in 0..args.nodes {
        let node = json!({"metadata": {"name": format!("node-{i}"), "labels": {"gpu": "nvidia"}},
                          "spec": {"ollamaUrl": ollama_url}});
        let r = http.post(&base).json(&node).send().await?;
        anyhow::ensure!(r.status().as_u16() == 201, "create answered {}", r.status());
        heartbeat(&http, &base, i, 0).await?;
    }
    let beats = heartbeats(&http, &base, args.nodes, args.heartbeat, 1);
    tokio::time::sleep(args.settle).await;
    print(
        &format!(
            "idle, {} nodes heartbeating every {}",
            args.nodes,
            humantime::format_duration(args.heartbeat)
        ),
        &sample(pid, args.window).await?,
    );
    beats.abort();
    if args.prefill > 0 && args.nodes > 0 {
        let started = std::time::Instant::now();
        let per_task = args.prefill.div_ceil(8);
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let (http, base, nodes) = (http.clone(), base.clone(), args.nodes as u64);
            tasks.push(tokio::spawn(async move {
                for k in 0..per_task {
                    let n = t * per_task + k;
                    let i = usize::try_from(n % nodes).unwrap_or(0);
                    heartbeat(&http, &base, i, 1_000 + n / nodes).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        println!(
            "sent {} more heartbeats in {:.1} s",
            per_task * 8,
            started.elapsed().as_secs_f64()
        );
        let beats = heartbeats(&http, &base, args.nodes, args.heartbeat, 1_000_000);
        tokio::time::sleep(args.settle).await;
        print(
            &format!(
                "idle, {} nodes heartbeating every {}, after {} more changes",
                args.nodes,
                humantime::format_duration(args.heartbeat),
                per_task * 8
            ),
            &sample(pid, args.window).await?,
        );
        beats.abort();
    }
    drop(server);
    drop(fake);
    Ok(())
}

/// Every node heartbeating every `every`, spread evenly over it as
/// independent nodelets are, from heartbeat number `seq`.
fn heartbeats(
    http: &reqwest::Client,
    base: &str,
    nodes: usize,
    every: Duration,
    mut seq: u64,
) -> tokio::task::JoinHandle<()> {
    let (http, base) = (http.clone(), base.to_owned());
    tokio::spawn(async move {
        if nodes == 0 {
            return;
        }
        let mut tick = tokio::time::interval(every.div_f64(nodes as f64));
        loop {
            for i in 0..nodes {
                tick.tick().await;
                if let Err(e) = heartbeat(&http, &base, i, seq).await {
                    eprintln!("heartbeat of node-{i}: {e:#}");
                }
            }
            seq += 1;
        }
    })
}

/// The status write a nodelet makes each heartbeat. Its conditions go in the
/// first write only: they do not change after it, and a merge patch that
/// carried them would replace the controller's `Ready` each time.
async fn heartbeat(http: &reqwest::Client, base: &str, i: usize, seq: u64) -> anyhow::Result<()> {
    let mut status = nodelet_status(i, seq);
    if seq > 0
        && let Some(s) = status.as_object_mut()
    {
        s.remove("conditions");
    }
    let r = http
        .patch(format!("{base}/node-{i}/status"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "status": status }).to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "status answered {}", r.status());
    Ok(())
}
