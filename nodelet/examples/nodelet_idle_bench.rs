//! Resident memory and CPU of an idle nodelet, measured from /proc (Linux).
//!
//! Starts a `herd server` (its API, keys on, no controller, proxy or dashboard) in this
//! process on 127.0.0.1:0, puts the `fake-ollama` binary into a fresh install directory
//! as herd's installed Ollama, and runs the `nodelet` example as a separate process with
//! the server's join key in `HERD_TOKEN`: it exchanges it for a node key, finds that
//! Ollama, starts and supervises it, registers, and heartbeats every 5 s (probing /api/version, /api/tags and
//! /api/ps, sampling CPU and memory, writing the status) while watching
//! ModelAssignments. After a warm-up, the nodelet's VmRSS and CPU time (utime + stime)
//! are sampled every second for the measured period. At the end the nodelet gets
//! SIGTERM and the bench checks the node was marked not ready and Ollama stopped.
//!
//! ```sh
//! cargo build --release -p herd-nodelet --examples -p herd-testkit --bin fake-ollama
//! target/release/examples/nodelet_idle_bench            # 60 s measured, 5 s heartbeat
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use herd_api::{ConditionStatus, Node, conditions, find_condition};
use herd_client::{Api, Client};
use herd_nodelet::install::{InstallLayout, layout};

#[derive(Parser, Debug)]
struct Args {
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between the node being healthy and the start of the measurement.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The nodelet's --heartbeat-interval.
    #[arg(long, default_value = "5s")]
    heartbeat_interval: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

fn beside_me(relative: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/<this>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .context("no target/<profile> directory")?;
    let path = profile.join(relative);
    if !path.exists() {
        bail!(
            "{} not found; build it first: cargo build --release -p herd-nodelet --examples -p herd-testkit --bin fake-ollama",
            path.display()
        );
    }
    Ok(path)
}

/// (VmRSS bytes, CPU time) of a process.
fn sample(pid: u32) -> Option<(u64, Duration)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every common Linux configuration.
    Some((rss_kb * 1024, Duration::from_millis(ticks * 10)))
}

/// CPU time of every thread of a process, in nanoseconds (`/proc/<pid>/task/*/schedstat`):
/// finer than the 10 ms ticks of `stat`, which an idle process barely moves.
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn node(api: &Api<Node>) -> Option<Node> {
    api.get_opt("bench").await.ok().flatten()
}

fn condition_is(node: &Node, type_: &str, status: ConditionStatus) -> bool {
    find_condition(&node.status.conditions, type_).is_some_and(|c| c.status == status)
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let nodelet_bin = beside_me("examples/nodelet")?;
    let fake_ollama = beside_me("fake-ollama")?;
    let dir = tempfile::tempdir()?;

    // The server: only what the nodelet talks to, with keys as `herd server` has them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let router = format!("http://{}", listener.local_addr()?);
    let store = dir.path().join("store");
    let server = herd_server::Server::build(
        herd_server::Config {
            proxy: None,
            controller: None,
            dashboard: false,
            ..herd_server::Config::new(herd_apiserver::Config::new(&store))
        },
        listener,
    )?;
    tokio::spawn(server.serve(std::future::pending()));
    let admin_key = herd_auth::read_key_file(&store.join(herd_server::ADMIN_KEY_FILE))?;
    let join_key = herd_auth::read_key_file(&store.join(herd_server::JOIN_KEY_FILE))?;
    let nodes: Api<Node> = Client::builder(&router)
        .token(admin_key.expose())
        .build()?
        .api();

    // herd's install directory with fake-ollama as its current Ollama.
    let install_dir = dir.path().join("ollama");
    let layout_ = InstallLayout::new(&install_dir);
    let bin = layout_.version_dir("v0.33.0").join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(&fake_ollama, bin.join("ollama"))?;
    layout::make_executable(&bin.join("ollama"))?;
    layout::activate(&layout_, "v0.33.0")?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };

    let mut child = Command::new(&nodelet_bin)
        .args(["--server", &router, "--name", "bench", "--no-default-model"])
        .args(["--ollama-url", &format!("127.0.0.1:{port}")])
        .args(["--heartbeat-interval", &args.heartbeat_interval])
        .arg("--install-dir")
        .arg(&install_dir)
        .arg("--state-dir")
        .arg(dir.path().join("nodelet-state"))
        .env("HERD_TOKEN", join_key.expose())
        .env("RUST_LOG", "warn")
        .env("PATH", "")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the nodelet")?;
    let pid = child.id();
    let started = Instant::now();

    let healthy = |n: &Node| {
        condition_is(n, conditions::NODELET_READY, ConditionStatus::True)
            && condition_is(n, conditions::OLLAMA_RUNNING, ConditionStatus::True)
    };
    loop {
        if node(&nodes).await.is_some_and(|n| healthy(&n)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("the nodelet did not get healthy within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let registered_after = started.elapsed();
    eprintln!(
        "healthy after {registered_after:?}; warming up for {:?}",
        args.warmup
    );
    tokio::time::sleep(args.warmup).await;

    let first_heartbeat = node(&nodes)
        .await
        .and_then(|n| n.status.last_heartbeat_time);
    let (_, cpu_start) = sample(pid).context("read /proc")?;
    let ns_start = cpu_ns(pid).context("read schedstat")?;
    let t0 = Instant::now();
    let mut rss = Vec::new();
    let mut heartbeats = 0u32;
    let mut last_heartbeat = first_heartbeat;
    while t0.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (r, _) = sample(pid).context("the nodelet exited")?;
        rss.push(r);
        let hb = node(&nodes)
            .await
            .and_then(|n| n.status.last_heartbeat_time);
        if hb != last_heartbeat {
            heartbeats += 1;
            last_heartbeat = hb;
        }
    }
    let wall = t0.elapsed();
    let (_, cpu_end) = sample(pid).context("read /proc")?;
    let ns = cpu_ns(pid)
        .context("read schedstat")?
        .saturating_sub(ns_start);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))?.count();
    let cpu = cpu_end.saturating_sub(cpu_start);
    let cpu_percent = cpu.as_secs_f64() * 100.0 / wall.as_secs_f64();
    let max = rss.iter().copied().max().unwrap_or(0);
    let min = rss.iter().copied().min().unwrap_or(0);
    let avg = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    let ollama_pid = std::fs::read_dir("/proc")?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|exe| exe == bin.join("ollama"))
        });

    // SIGTERM: the node must be marked not ready and Ollama stopped.
    let stop = Instant::now();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = child.wait()?;
    let stopped_in = stop.elapsed();
    let after = node(&nodes).await.context("node gone")?;
    let not_ready = condition_is(&after, conditions::NODELET_READY, ConditionStatus::False);
    let ollama_gone = ollama_pid.is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists());

    println!(
        "nodelet idle: heartbeat {}, measured {:.1} s after {:?} warm-up",
        args.heartbeat_interval,
        wall.as_secs_f64(),
        args.warmup
    );
    println!("  healthy (registered, Ollama started) after {registered_after:.2?}");
    println!("  heartbeats written while measured: {heartbeats}");
    println!(
        "  RSS: min {:.1} MiB, avg {:.1} MiB, max {:.1} MiB",
        mib(min),
        mib(avg),
        mib(max)
    );
    println!(
        "  CPU: {:.1} ms over {:.1} s = {:.3}% of one core (schedstat, all threads); \
         utime+stime {:.2?} = {cpu_percent:.3}% (10 ms ticks); {threads} threads",
        ns as f64 / 1e6,
        wall.as_secs_f64(),
        ns as f64 / 1e9 * 100.0 / wall.as_secs_f64(),
        cpu,
    );
    if heartbeats > 0 {
        println!(
            "  per heartbeat: {:.2} ms of CPU",
            ns as f64 / 1e6 / f64::from(heartbeats)
        );
    }
    println!(
        "  SIGTERM: exited {status} in {stopped_in:.2?}; NodeletReady False: {not_ready}; Ollama stopped: {ollama_gone}"
    );
    if !(not_ready && ollama_gone && status.success()) {
        bail!("the shutdown did not go as it should");
    }
    Ok(())
}
