//! Benchmarks the controller against a real `herd server` process, with the
//! controller in a process of its own (this binary re-run as
//! `controller-bench run-controller --server URL`, which is what
//! `herd controller --server URL` runs) and simulated nodes: heartbeat
//! tasks writing through `update_status_with_retry` every `--heartbeat`,
//! and a minimal Ollama answering `/api/version`.
//!
//! cargo build --release -p herd -p herd-bench
//! target/release/controller-bench detect   # death → Ready≠True; proxy signal → Ready=False
//! target/release/controller-bench cpu      # controller CPU with 1,000 heartbeating nodes
//!
//! Both use the controller's default settings (HERD_* variables apply).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use herd_api::{
    Condition, ConditionStatus, Event, ModelAssignment, ModelAssignmentSpec, Node, NodeCapacity,
    NodeInfo, NodeModel, NodeSelector, NodeSpec, NodeUsage, Resource, Timestamp, conditions,
    find_condition, set_condition,
};
use herd_bench::{cpu_time, mib, ms, rss_bytes, start_herd_server, summarize};
use herd_client::watcher::{self, watcher};
use herd_client::{Api, Client, ListParams, PostParams};
use herd_controller::ControllerArgs;
use tokio::task::JoinHandle;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time from a node's death (heartbeats stop and its Ollama port closes)
    /// to Ready≠True, and from a Reachable=False written by another client
    /// (the proxy's connect-failure signal) to Ready=False.
    Detect {
        /// Simulated nodes (each with an Ollama of its own).
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Deaths (and proxy signals) to time.
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// Heartbeat period of the simulated nodelets.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        heartbeat: Duration,
        /// Kill only the nodelet: its Ollama keeps answering, so only the
        /// heartbeat grace can catch it.
        #[arg(long)]
        keep_ollama: bool,
        /// Skip the proxy-signal trials.
        #[arg(long)]
        no_signal: bool,
    },
    /// Controller CPU (% of one core, from /proc) with many nodes heartbeating.
    Cpu {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        heartbeat: Duration,
        /// Time to let things settle after every node is Ready.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        warmup: Duration,
        /// Length of the measured window.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Runs the controller against --server (what `herd controller` runs).
    #[command(hide = true)]
    RunController {
        #[arg(long)]
        server: String,
        #[command(flatten)]
        args: ControllerArgs,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(n) = s.strip_suffix("ms") {
        return n
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("{s}: {e}"));
    }
    let n: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|e| format!("{s}: {e}"))?;
    Ok(Duration::from_secs_f64(n))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::RunController { server, args } => rt.block_on(async move {
            let mut client = Client::builder(&server);
            if let Ok(token) = std::env::var(TOKEN_ENV) {
                client = client.token(token);
            }
            let client = client.build()?;
            herd_controller::run(args.config(), client, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(())
        }),
        Cmd::Detect {
            nodes,
            trials,
            heartbeat,
            keep_ollama,
            no_signal,
        } => rt.block_on(detect(nodes, trials, heartbeat, keep_ollama, no_signal)),
        Cmd::Cpu {
            nodes,
            heartbeat,
            warmup,
            duration,
        } => rt.block_on(cpu(nodes, heartbeat, warmup, duration)),
    }
}

/// Where `run-controller` takes its key from, as `herd controller` does
/// (the environment, so that no process list shows it).
const TOKEN_ENV: &str = "HERD_TOKEN";

/// The controller as a child process, killed on drop.
struct ControllerProc(Child);

impl ControllerProc {
    /// Runs the controller against `server` with a `controller` key made
    /// for it with the server's admin key.
    async fn start(server: &herd_bench::Proc) -> anyhow::Result<Self> {
        let key = herd_bench::create_key(
            &server.admin_client()?,
            "bench-controller",
            herd_api::Role::Controller,
        )
        .await?;
        let child = Command::new(std::env::current_exe()?)
            .args(["run-controller", "--server", &server.url])
            .env(TOKEN_ENV, key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the controller process")?;
        Ok(Self(child))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `herd server`, without its in-process controller when it has one (the
/// controller under test runs apart).
fn start_server(dir: &std::path::Path) -> anyhow::Result<herd_bench::Proc> {
    let help = Command::new(herd_bench::herd_binary()?)
        .args(["server", "--help"])
        .output()?;
    let flags: &[&str] = if String::from_utf8_lossy(&help.stdout).contains("--no-controller") {
        &["--no-controller"]
    } else {
        &[]
    };
    start_herd_server(dir, flags)
}

/// `/api/version` on a port that can be closed and reopened.
struct FakeOllama {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl FakeOllama {
    async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let app = Router::new().route(
            "/api/version",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"version":"0.33.0"}"#,
                )
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            task: Some(task),
        })
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One simulated nodelet's heartbeat: its own fields only.
async fn heartbeat(api: &Api<Node>, name: &str, cpu: f64, counter: &AtomicU64) {
    let result = api
        .update_status_with_retry(name, |s| {
            let now = Timestamp::now();
            s.last_heartbeat_time = Some(now);
            for ty in [conditions::NODELET_READY, conditions::OLLAMA_RUNNING] {
                set_condition(
                    &mut s.conditions,
                    Condition::new(ty, ConditionStatus::True, "Running", ""),
                    now,
                );
            }
            s.info = Some(NodeInfo {
                machine_name: name.to_owned(),
                os: "linux".into(),
                arch: "amd64".into(),
                ollama_version: "0.33.0".into(),
                nodelet_version: "0.1.0".into(),
                ..NodeInfo::default()
            });
            s.capacity = Some(NodeCapacity {
                cpus: 16,
                memory_bytes: 64 << 30,
                gpus: vec![],
            });
            let in_flight = s.usage.as_ref().map_or(0, |u| u.in_flight);
            s.usage = Some(NodeUsage {
                cpu_percent: cpu,
                memory_percent: 40.0,
                in_flight,
            });
            s.models = vec![NodeModel {
                name: "llama3.2:1b".into(),
                digest: "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878"
                    .into(),
                size_bytes: 1_321_098_329,
                loaded: true,
            }];
        })
        .await;
    match result {
        Ok(_) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => eprintln!("heartbeat of {name} failed: {e}"),
    }
}

/// Heartbeats `name` every `period`, starting after `phase`, with a CPU
/// figure that wanders a little around 20 %.
fn spawn_heartbeats(
    api: Api<Node>,
    name: String,
    period: Duration,
    phase: Duration,
    counter: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(phase).await;
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let cpu = 20.0 + 10.0 * (rand_unit() - 0.5);
            heartbeat(&api, &name, cpu, &counter).await;
        }
    })
}

fn rand_unit() -> f64 {
    // Good enough for jitter; avoids a dependency for one number.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_003) / 1_000_003.0
}

async fn register(api: &Api<Node>, name: &str, url: &str, zone: &str) -> anyhow::Result<()> {
    let mut node = Node::new(
        name,
        NodeSpec {
            url: url.to_owned(),
            ..NodeSpec::default()
        },
    );
    node.metadata.labels.insert("zone".into(), zone.into());
    api.apply(&node).await?;
    Ok(())
}

/// Per node: Ready's status and reason, and when that status was first seen.
type Seen = HashMap<String, (ConditionStatus, String, Instant)>;

/// Node readiness as the watch delivers it, with the time each change was seen.
#[derive(Clone)]
struct Tracker {
    seen: Arc<Mutex<Seen>>,
    /// Watch events that changed a controller-owned field (Ready,
    /// Reachable, Drained, routing): the controller's node writes.
    controller_writes: Arc<AtomicU64>,
    changed: tokio::sync::watch::Receiver<u64>,
}

type Owned = (
    Option<Condition>,
    Option<Condition>,
    Option<Condition>,
    Option<herd_api::RoutingStatus>,
);

fn owned(n: &Node) -> Owned {
    let c = |t| find_condition(&n.status.conditions, t).cloned();
    (
        c(conditions::READY),
        c(conditions::REACHABLE),
        c(conditions::DRAINED),
        n.status.routing.clone(),
    )
}

impl Tracker {
    fn start(api: Api<Node>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::new()));
        let controller_writes = Arc::new(AtomicU64::new(0));
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let (s, w) = (seen.clone(), controller_writes.clone());
        tokio::spawn(async move {
            let mut last: HashMap<String, Owned> = HashMap::new();
            let events = watcher(api, watcher::Config::default());
            tokio::pin!(events);
            while let Some(ev) = events.next().await {
                let now = Instant::now();
                let items = match ev {
                    Ok(watcher::Event::Applied(n)) => vec![n],
                    Ok(watcher::Event::Restarted(ns)) => ns,
                    _ => continue,
                };
                let mut map = s.lock().expect("lock");
                for n in items {
                    let o = owned(&n);
                    if last.get(&n.metadata.name).is_some_and(|prev| *prev != o) {
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                    last.insert(n.metadata.name.clone(), o);
                    let ready = find_condition(&n.status.conditions, conditions::READY)
                        .map_or((ConditionStatus::Unknown, String::new()), |c| {
                            (c.status, c.reason.clone())
                        });
                    let entry = map.entry(n.metadata.name.clone()).or_insert((
                        ready.0,
                        ready.1.clone(),
                        now,
                    ));
                    if entry.0 != ready.0 {
                        *entry = (ready.0, ready.1, now);
                    }
                }
                drop(map);
                tx.send_modify(|g| *g += 1);
            }
        });
        Self {
            seen,
            controller_writes,
            changed: rx,
        }
    }

    fn ready_count(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .values()
            .filter(|(s, _, _)| *s == ConditionStatus::True)
            .count()
    }

    /// Waits until `name`'s Ready status satisfies `want`; returns its
    /// reason and when the change was seen.
    async fn wait(
        &mut self,
        name: &str,
        want: impl Fn(ConditionStatus) -> bool,
        within: Duration,
    ) -> anyhow::Result<(String, Instant)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let current = self.seen.lock().expect("lock").get(name).cloned();
            if let Some((_, reason, at)) = current.filter(|(s, _, _)| want(*s)) {
                return Ok((reason, at));
            }
            tokio::time::timeout_at(deadline, self.changed.changed())
                .await
                .with_context(|| format!("timed out waiting on {name}"))??;
        }
    }
}

async fn detect(
    n: usize,
    trials: usize,
    period: Duration,
    keep_ollama: bool,
    no_signal: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path())?;
    let client = server.admin_client()?;
    let api = client.api::<Node>();
    let counter = Arc::new(AtomicU64::new(0));
    let mut ollamas = Vec::new();
    let mut beats: Vec<Option<JoinHandle<()>>> = Vec::new();
    for i in 0..n {
        let o = FakeOllama::start("127.0.0.1:0".parse()?).await?;
        let name = format!("node-{i}");
        register(&api, &name, &o.url(), "a").await?;
        heartbeat(&api, &name, 20.0, &counter).await;
        let phase = period.mul_f64(i as f64 / n as f64);
        beats.push(Some(spawn_heartbeats(
            api.clone(),
            name,
            period,
            phase,
            counter.clone(),
        )));
        ollamas.push(o);
    }
    let mut tracker = Tracker::start(api.clone());
    let controller = ControllerProc::start(&server).await?;
    println!(
        "herd server at {}, controller pid {}, {n} nodes heartbeating every {period:?}; controller defaults",
        server.url,
        controller.pid()
    );
    for i in 0..n {
        tracker
            .wait(
                &format!("node-{i}"),
                |s| s == ConditionStatus::True,
                Duration::from_secs(60),
            )
            .await?;
    }

    let mut deaths = Vec::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for t in 0..trials {
        let i = t % n;
        let name = format!("node-{i}");
        // A random moment relative to the probe and heartbeat schedules.
        tokio::time::sleep(Duration::from_secs_f64(5.0 * rand_unit())).await;
        let started = Instant::now();
        if let Some(b) = beats[i].take() {
            b.abort();
        }
        let addr = ollamas[i].addr;
        if !keep_ollama {
            ollamas[i].stop();
        }
        let (reason, at) = tracker
            .wait(
                &name,
                |s| s != ConditionStatus::True,
                Duration::from_secs(60),
            )
            .await?;
        let took = at.duration_since(started);
        println!("death {t}: {name} Ready≠True after {} ({reason})", ms(took));
        deaths.push(took);
        *reasons.entry(reason).or_default() += 1;
        // Revive it for the next round.
        if !keep_ollama {
            ollamas[i] = FakeOllama::start(addr).await?;
        }
        heartbeat(&api, &name, 20.0, &counter).await;
        beats[i] = Some(spawn_heartbeats(
            api.clone(),
            name.clone(),
            period,
            Duration::ZERO,
            counter.clone(),
        ));
        tracker
            .wait(
                &name,
                |s| s == ConditionStatus::True,
                Duration::from_secs(60),
            )
            .await?;
    }
    let s = summarize(&mut deaths);
    let what = if keep_ollama {
        "nodelet death (Ollama still up)"
    } else {
        "node death"
    };
    println!(
        "{what} → Ready≠True over {} trials: p50 {} p90 {} max {}; reasons {reasons:?}",
        s.count,
        ms(s.p50),
        ms(s.p90),
        ms(s.max)
    );

    if no_signal {
        return Ok(());
    }
    let mut signal = Vec::new();
    let mut acks = Vec::new();
    for t in 0..trials {
        let name = format!("node-{}", t % n);
        tracker
            .wait(
                &name,
                |s| s == ConditionStatus::True,
                Duration::from_secs(60),
            )
            .await?;
        let started = Instant::now();
        api.update_status_with_retry(&name, |s| {
            set_condition(
                &mut s.conditions,
                Condition::new(
                    conditions::REACHABLE,
                    ConditionStatus::False,
                    "ConnectFailed",
                    "connection refused",
                ),
                Timestamp::now(),
            );
        })
        .await?;
        acks.push(started.elapsed());
        let (_, at) = tracker
            .wait(
                &name,
                |s| s == ConditionStatus::False,
                Duration::from_secs(30),
            )
            .await?;
        signal.push(at.duration_since(started));
        // The node is fine: the next probe brings it back.
        tracker
            .wait(
                &name,
                |s| s == ConditionStatus::True,
                Duration::from_secs(30),
            )
            .await?;
    }
    let s = summarize(&mut signal);
    let a = summarize(&mut acks);
    println!(
        "Reachable=False written by another client → Ready=False seen on a watch, {} trials: p50 {} p90 {} max {} (the write itself, GET + PUT: p50 {})",
        s.count,
        ms(s.p50),
        ms(s.p90),
        ms(s.max),
        ms(a.p50)
    );
    drop(controller);
    Ok(())
}

async fn cpu(n: usize, period: Duration, warmup: Duration, window: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path())?;
    let server_pid = server.child.id();
    let client = server.admin_client()?;
    let api = client.api::<Node>();
    let ollama = FakeOllama::start("127.0.0.1:0".parse()?).await?;
    let url = ollama.url();
    let counter = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (api, url, next, counter) = (api.clone(), url.clone(), next.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("node-{i}");
                let zone = ["a", "b", "c", "d"][i % 4];
                register(&api, &name, &url, zone).await?;
                heartbeat(&api, &name, 20.0, &counter).await;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "registered {n} nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut beats = Vec::new();
    for i in 0..n {
        let phase = period.mul_f64(i as f64 / n as f64);
        beats.push(spawn_heartbeats(
            api.clone(),
            format!("node-{i}"),
            period,
            phase,
            counter.clone(),
        ));
    }
    let mas = client.api::<ModelAssignment>();
    for (name, replicas, zone) in [("llama-3", Some(3), None), ("qwen-zone-a", None, Some("a"))] {
        let ma = ModelAssignment::new(
            name,
            ModelAssignmentSpec {
                model: if replicas.is_some() {
                    "llama3.2:1b"
                } else {
                    "qwen2.5:0.5b"
                }
                .into(),
                replicas,
                node_selector: zone.map(|z| NodeSelector {
                    match_labels: [("zone".to_owned(), z.to_owned())].into(),
                }),
            },
        );
        mas.create(&PostParams::default(), &ma).await?;
    }

    let tracker = Tracker::start(api.clone());
    let controller = ControllerProc::start(&server).await?;
    let pid = controller.pid();
    let t0 = Instant::now();
    loop {
        if tracker.ready_count() >= n {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "only {} of {n} nodes Ready after 300 s",
            tracker.ready_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to_ready = t0.elapsed();
    let startup_cpu = cpu_time(pid).unwrap_or_default();
    println!(
        "controller pid {pid}: all {n} nodes Ready {:.2} s after start, using {:.2} s of CPU",
        to_ready.as_secs_f64(),
        startup_cpu.as_secs_f64()
    );

    tokio::time::sleep(warmup).await;
    let (c0, s0, w0, h0) = (
        cpu_time(pid),
        cpu_time(server_pid),
        tracker.controller_writes.load(Ordering::Relaxed),
        counter.load(Ordering::Relaxed),
    );
    let ev0 = client
        .api::<Event>()
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let m0 = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = m0.elapsed();
    let (c1, s1, w1, h1) = (
        cpu_time(pid),
        cpu_time(server_pid),
        tracker.controller_writes.load(Ordering::Relaxed),
        counter.load(Ordering::Relaxed),
    );
    let ev1 = client
        .api::<Event>()
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!(
            "{:.2} %",
            (b - a).as_secs_f64() / elapsed.as_secs_f64() * 100.0
        ),
        _ => "n/a".into(),
    };
    println!(
        "over {:.0} s: {} heartbeats ({:.0}/s); controller CPU {} of one core, RSS {}; herd server CPU {}; controller node writes {} ; events {} → {}",
        elapsed.as_secs_f64(),
        h1 - h0,
        (h1 - h0) as f64 / elapsed.as_secs_f64(),
        pct(c0, c1),
        mib(rss_bytes(pid).unwrap_or(0)),
        pct(s0, s1),
        w1 - w0,
        ev0,
        ev1
    );
    for ma in mas.list(&ListParams::default()).await?.items {
        println!(
            "assignment {}: {} nodes placed, readyReplicas {}",
            ma.metadata.name,
            ma.status.nodes.len(),
            ma.status.ready_replicas
        );
    }
    for b in beats {
        b.abort();
    }
    drop(controller);
    Ok(())
}
