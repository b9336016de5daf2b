//! Benchmarks the API server as a separate process over loopback:
//! status-update throughput and latency, list of N objects, watch delivery lag
//! to many watchers under a steady heartbeat load, and resident memory.
//!
//! Watch lag is per write: the time from a writer stamping
//! `lastHeartbeatTime` to the first delivery of that write to each watcher;
//! deliveries that carry no new write are counted apart.
//!
//! cargo build --release -p herd -p herd-bench
//! target/release/apiserver-bench            # defaults: 10,000 nodes, 100 watchers

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use herd_bench::{
    Proc, Summary, cpu_time, http_with_key, mib, ms, nodelet_status, rss_bytes, start_herd_server,
    summarize,
};
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Nodes to create (each with a realistic ~1 KB status).
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Concurrent writers in the throughput phase.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Length of each timed phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Target heartbeat rate of the watch phase (10,000 nodes every 5 s = 2,000/s).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Concurrent watchers in the watch phase.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Fixed rate of the open-loop phase without watchers (the goal: 5,000/s, p99 < 25 ms).
    #[arg(long, default_value_t = 5000)]
    peak_rate: u64,
    /// Extra flags for `herd server` (e.g. --fsync).
    #[arg(long, allow_hyphen_values = true)]
    server_flag: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let n: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|e| format!("{s}: {e}"))?;
    Ok(Duration::from_secs_f64(n))
}

/// A nodelet's heartbeat as a merge patch. It replaces the node's list of
/// conditions, which is safe here: no controller runs and no node fails, so
/// nothing else writes conditions.
fn status_patch(i: usize, seq: u64) -> String {
    json!({ "status": nodelet_status(i, seq) }).to_string()
}

async fn patch_status(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    seq: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let resp = http
        .patch(format!("{base}/node-{i}/status"))
        .header("content-type", "application/merge-patch+json")
        .body(status_patch(i, seq))
        .send()
        .await?;
    let code = resp.status();
    resp.bytes().await?;
    anyhow::ensure!(code.is_success(), "status update answered {code}");
    Ok(started.elapsed())
}

fn report(name: &str, s: &Summary, elapsed: Duration) {
    println!(
        "{name}: {} ops in {:.1} s = {:.0}/s; latency p50 {} p90 {} p99 {} max {}",
        s.count,
        elapsed.as_secs_f64(),
        s.count as f64 / elapsed.as_secs_f64(),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    // The store is what is measured: no controller probing 10,000 simulated
    // nodes (their URLs are loopback addresses nothing listens on).
    let mut flags: Vec<&str> = vec!["--no-controller"];
    flags.extend(args.server_flag.iter().map(String::as_str));
    let server = start_herd_server(dir.path(), &flags)?;
    let pid = server.child.id();
    let base = format!("{}/apis/herd/v1/nodes", server.url);
    let http = http_with_key(server.admin_key()?)?
        .pool_max_idle_per_host(1024)
        .build()?;
    println!(
        "herd server pid {pid} at {} (flags {:?})",
        server.url, args.server_flag
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("RSS empty: {}", mib(rss_bytes(pid).unwrap_or(0)));

    // Populate.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let (http, base, next, n) = (http.clone(), base.clone(), next.clone(), args.nodes);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = json!({"metadata":{"name":format!("node-{i}"),"labels":{"gpu":"nvidia","zone":format!("z{}", i % 4)}},
                                   "spec":{"ollamaUrl":format!("http://127.0.{}.{}:11434", i / 250, 1 + i % 250)}});
                let r = http.post(&base).json(&body).send().await?;
                anyhow::ensure!(r.status().as_u16() == 201, "create answered {}", r.status());
                patch_status(&http, &base, i, 0).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "populated {} nodes (create + status) in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "RSS idle with {} nodes: {}",
        args.nodes,
        mib(rss_bytes(pid).unwrap_or(0))
    );

    // List.
    let mut lists = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let body = http.get(&base).send().await?.bytes().await?;
        lists.push(t.elapsed());
        size = body.len();
    }
    let s = summarize(&mut lists);
    println!(
        "list of {} nodes ({}): p50 {} p90 {} max {}",
        args.nodes,
        mib(size as u64),
        ms(s.p50),
        ms(s.p90),
        ms(s.max)
    );

    // Throughput: closed loop, as fast as the server answers.
    let cpu_before = cpu_time(pid);
    let (s, elapsed, peak) = closed_loop(&http, &base, &args, pid).await?;
    report(
        &format!(
            "status updates, {} concurrent writers, no watchers",
            args.writers
        ),
        &s,
        elapsed,
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_time(pid)) {
        println!(
            "  server CPU {:.0}% of one core; peak RSS {}",
            (b - a).as_secs_f64() / elapsed.as_secs_f64() * 100.0,
            mib(peak)
        );
    }

    // Fixed rates: the goal rate without watchers, then the heartbeat rate with watchers.
    open_loop(&http, &server, &base, &args, pid, args.peak_rate, 0).await?;
    open_loop(&http, &server, &base, &args, pid, args.rate, args.watchers).await?;
    println!("RSS after load: {}", mib(rss_bytes(pid).unwrap_or(0)));
    let size = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    println!(
        "on disk: herd.db {}, herd.db-wal {}",
        mib(size("herd.db")),
        mib(size("herd.db-wal"))
    );
    drop(server);
    Ok(())
}

async fn closed_loop(
    http: &reqwest::Client,
    base: &str,
    args: &Args,
    pid: u32,
) -> anyhow::Result<(Summary, Duration, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (http, base, stop, samples, nodes) = (
            http.clone(),
            base.to_owned(),
            stop.clone(),
            samples.clone(),
            args.nodes,
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut seq = 0u64;
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                mine.push(patch_status(&http, &base, i % nodes, seq).await?);
                i += 64;
            }
            samples.lock().await.extend(mine);
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut peak = 0;
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_bytes(pid).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let mut samples = samples.lock().await;
    Ok((summarize(&mut samples), elapsed, peak))
}

/// What one watcher received in the watch phase.
#[derive(Default)]
struct Seen {
    /// Node events carrying a heartbeat.
    deliveries: u64,
    /// Deliveries of a heartbeat this watcher had not seen: one per write.
    writes: u64,
    /// Deliveries of a heartbeat already seen: a write by someone else.
    repeats: u64,
}

/// The node index and `lastHeartbeatTime` of one watch event line.
fn delivery(line: &[u8]) -> Option<(usize, jiff::Timestamp)> {
    const NAME: &str = "\"name\":\"node-";
    const HEARTBEAT: &str = "\"lastHeartbeatTime\":\"";
    let text = std::str::from_utf8(line).ok()?;
    let after = |mark: &str| text.find(mark).map(|p| &text[p + mark.len()..]);
    let name = after(NAME)?;
    let node = name[..name.find('"')?].parse().ok()?;
    let rest = after(HEARTBEAT)?;
    let ts = rest[..rest.find('"')?].parse().ok()?;
    Some((node, ts))
}

async fn open_loop(
    http: &reqwest::Client,
    server: &Proc,
    base: &str,
    args: &Args,
    pid: u32,
    rate: u64,
    watcher_count: usize,
) -> anyhow::Result<()> {
    let list: serde_json::Value = http
        .get(format!("{base}?labelSelector=gpu%3Dnothing"))
        .send()
        .await?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list resourceVersion")?
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut watchers = Vec::new();
    let url = &server.url;
    let watch_http = http_with_key(server.admin_key()?)?.build()?;
    for _ in 0..watcher_count {
        let resp = watch_http
            .get(format!(
                "{url}/apis/herd/v1/nodes?watch=true&resourceVersion={rv}"
            ))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "watch answered {}",
            resp.status()
        );
        let (stop, lags, seen, nodes) = (stop.clone(), lags.clone(), seen.clone(), args.nodes);
        watchers.push(tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            let mut mine = Vec::new();
            let mut tally = Seen::default();
            // Per node, the newest heartbeat delivered (ns since the epoch).
            // A node's writes are seconds apart, so its heartbeats arrive in
            // order: one no newer than the last is a repeat.
            let mut newest = vec![i128::MIN; nodes];
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(chunk)) =
                    tokio::time::timeout(Duration::from_millis(500), stream.next()).await
                else {
                    continue;
                };
                let Ok(chunk) = chunk else { break };
                buf.extend_from_slice(&chunk);
                let now = jiff::Timestamp::now();
                let mut start = 0;
                while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
                    let line = &buf[start..start + nl];
                    match delivery(line) {
                        Some((node, ts)) if node < nodes => {
                            tally.deliveries += 1;
                            let ns = ts.as_nanosecond();
                            if ns > newest[node] {
                                newest[node] = ns;
                                tally.writes += 1;
                                let lag = now.duration_since(ts);
                                mine.push(Duration::try_from(lag).unwrap_or_default());
                            } else {
                                tally.repeats += 1;
                            }
                        }
                        Some(_) => tally.deliveries += 1,
                        None => {}
                    }
                    start += nl + 1;
                }
                buf.drain(..start);
            }
            lags.lock().await.extend(mine);
            seen.lock().await.push(tally);
        }));
    }
    // Open loop: each of `writers` tasks sends at rate/writers, on schedule.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let cpu_before = cpu_time(pid);
    let mut tasks = Vec::new();
    let per_task = Duration::from_secs_f64(args.writers as f64 / rate as f64);
    for w in 0..args.writers {
        let (http, base, samples, nodes, duration) = (
            http.clone(),
            base.to_owned(),
            samples.clone(),
            args.nodes,
            args.duration,
        );
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + per_task.mul_f64(w as f64 / 64.0),
                per_task,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut mine = Vec::new();
            let (mut seq, mut i) = (0u64, w);
            while started.elapsed() < duration {
                tick.tick().await;
                seq += 1;
                mine.push(patch_status(&http, &base, i % nodes, seq).await?);
                i += 64;
            }
            samples.lock().await.extend(mine);
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut peak = 0;
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_bytes(pid).unwrap_or(0));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid)
        .zip(cpu_before)
        .map(|(b, a)| (b - a).as_secs_f64() / elapsed.as_secs_f64() * 100.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        let _ = w.await;
    }
    let mut writes = samples.lock().await;
    let s = summarize(&mut writes);
    report(
        &format!("status updates at a fixed {rate}/s with {watcher_count} watchers"),
        &s,
        elapsed,
    );
    let mut lags = lags.lock().await;
    if watcher_count == 0 {
        println!(
            "  server CPU {:.0}% of one core; peak RSS {}",
            cpu.unwrap_or(0.0),
            mib(peak)
        );
        return Ok(());
    }
    let seen = seen.lock().await;
    let sum = |f: fn(&Seen) -> u64| seen.iter().map(f).sum::<u64>();
    let (deliveries, first, repeats) =
        (sum(|s| s.deliveries), sum(|s| s.writes), sum(|s| s.repeats));
    let w = watcher_count.max(1) as u64;
    println!(
        "  {} writes; each watcher saw {} of them in {} deliveries ({} repeats: events the writes did not cause)",
        s.count,
        first / w,
        deliveries / w,
        repeats / w
    );
    let l = summarize(&mut lags);
    println!(
        "watch lag per write (first delivery of each write to each watcher, {} samples): p50 {} p90 {} p99 {} max {}",
        l.count,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max)
    );
    println!(
        "  server CPU {:.0}% of one core; peak RSS {}",
        cpu.unwrap_or(0.0),
        mib(peak)
    );
    Ok(())
}
