//! Load balancing when one node is slow: four fake nodes, one 4× slower
//! (`--fault slow:4`), under a steady open-loop (Poisson) load at ~70 % of
//! the fleet's capacity, routed by `round_robin` and by `p2c`. Reports the
//! latency percentiles and each node's share of the requests.
//!
//! Each node has 4 slots and a fast node holds a slot 100 ms per request,
//! the slow one 400 ms: fleet capacity = 3 × 40 + 10 = 130 req/s, and the
//! default load is 91 req/s. Round robin sends the slow node a quarter of
//! that (23 req/s) against its 10 req/s: its queue grows without bound.
//!
//! Each strategy runs twice: with the models reported as not loaded (the
//! strategies alone) and as loaded with `spec.maxParallel` = slots (then
//! every strategy first prefers nodes with a free slot).
//!
//! cargo build --release -p herd -p herd-testkit -p herd-bench
//! target/release/balance-bench               # or scripts/bench-proxy.sh

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use herd_bench::load::{self, Http};
use herd_bench::{Proc, summarize};

#[derive(Parser, Debug)]
struct Args {
    /// Measured time per strategy (after the warm-up).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured load before each measurement (latency estimates settle).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Offered load as a fraction of the fleet's capacity.
    #[arg(long, default_value_t = 0.7)]
    load: f64,
    /// Time a fast node holds a slot per request, in ms.
    #[arg(long, default_value_t = 100)]
    service_ms: u64,
    /// Slots per node (OLLAMA_NUM_PARALLEL).
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// How much slower the slow node is.
    #[arg(long, default_value_t = 4.0)]
    slowdown: f64,
    /// Longest wait for requests still queued when the load stops.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    drain: Duration,
}

const BODY: &str = r#"{"model":"bench","prompt":"hi","stream":false,"options":{"num_predict":1}}"#;

/// A small deterministic generator (splitmix64): same arrivals for every run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential inter-arrival time for `rate` per second.
    fn gap(&mut self, rate: f64) -> Duration {
        Duration::from_secs_f64(-(1.0 - self.next_f64()).ln() / rate)
    }
}

struct Outcome {
    latency: Duration,
    node: String,
    ok: bool,
    measured: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fast_cap = f64::from(args.slots) / (args.service_ms as f64 / 1000.0);
    let capacity = 3.0 * fast_cap + fast_cap / args.slowdown;
    let rate = capacity * args.load;
    let mut fakes: Vec<Proc> = Vec::new();
    for i in 0..4 {
        let mut flags: Vec<String> = vec![
            "--models".into(),
            "bench".into(),
            "--tokens".into(),
            "1".into(),
            "--num-parallel".into(),
            args.slots.to_string(),
            "--max-queue".into(),
            "100000".into(),
            "--ttft-ms".into(),
            args.service_ms.to_string(),
        ];
        if i == 3 {
            flags.extend(["--fault".into(), format!("slow:{}", args.slowdown)]);
        }
        fakes.push(load::start_fake_ollama(&flags)?);
    }
    println!(
        "4 nodes × {} slots, {} ms per request ({}× on node-3): capacity {capacity:.0} req/s; offered {rate:.1} req/s ({:.0} %), Poisson arrivals, {:?} measured after {:?} warm-up",
        args.slots,
        args.service_ms,
        args.slowdown,
        args.load * 100.0,
        args.duration,
        args.warmup
    );
    println!(
        "\n| strategy | models reported loaded | requests | p50 | p90 | p99 | max | share per node (node-3 slow) | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|");
    let mut p99s = BTreeMap::new();
    for loaded in [false, true] {
        for strategy in ["round_robin", "p2c"] {
            let dir = tempfile::tempdir()?;
            let (router, _) =
                load::start_router(dir.path(), &["--balancer".into(), strategy.into()])?;
            for (i, f) in fakes.iter().enumerate() {
                load::register_node(
                    &router,
                    &format!("node-{i}"),
                    &f.url,
                    &["bench"],
                    args.slots,
                    loaded,
                )
                .await?;
            }
            let (outcomes, unfinished) = run(&args, &router.url, rate).await;
            let mut lat: Vec<Duration> = outcomes
                .iter()
                .filter(|o| o.measured && o.ok)
                .map(|o| o.latency)
                .collect();
            let errors = outcomes.iter().filter(|o| o.measured && !o.ok).count() + unfinished;
            let s = summarize(&mut lat);
            let mut share: BTreeMap<&str, usize> = BTreeMap::new();
            for o in outcomes.iter().filter(|o| o.measured && o.ok) {
                *share.entry(o.node.as_str()).or_default() += 1;
            }
            let total = share.values().sum::<usize>().max(1) as f64;
            let share: Vec<String> = share
                .iter()
                .map(|(n, c)| {
                    format!(
                        "{} {:.0} %",
                        n.trim_start_matches("node-"),
                        *c as f64 / total * 100.0
                    )
                })
                .collect();
            println!(
                "| {strategy} | {loaded} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} | {errors} |",
                s.count,
                s.p50.as_secs_f64() * 1e3,
                s.p90.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                s.max.as_secs_f64() * 1e3,
                share.join(", "),
            );
            p99s.insert((loaded, strategy), s.p99);
            drop(router);
        }
    }
    for loaded in [false, true] {
        let (rr, p2c) = (p99s[&(loaded, "round_robin")], p99s[&(loaded, "p2c")]);
        println!(
            "\nloaded={loaded}: p99 p2c ÷ round_robin = {:.3} (goal ≤ 0.5)",
            p2c.as_secs_f64() / rr.as_secs_f64()
        );
    }
    drop(fakes);
    Ok(())
}

/// Open-loop Poisson arrivals at `rate` for warm-up + duration; waits for
/// the stragglers up to `drain` (those still queued then are returned as a
/// count and reported with the errors).
async fn run(args: &Args, router: &str, rate: f64) -> (Vec<Outcome>, usize) {
    let http: Http = load::http_client();
    let url = format!("{router}/api/generate");
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut rng = Rng(42);
    let start = tokio::time::Instant::now();
    let end = start + args.warmup + args.duration;
    let measure_from = start + args.warmup;
    let mut next = start;
    let mut tasks = Vec::new();
    let mut measured_sent = 0;
    while next < end {
        tokio::time::sleep_until(next).await;
        let (http, url, out) = (http.clone(), url.clone(), out.clone());
        let measured = next >= measure_from;
        measured_sent += usize::from(measured);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = match load::post_json(&url, &Bytes::from_static(BODY.as_bytes()), None) {
                Ok(req) => load::fetch(&http, req).await,
                Err(e) => Err(e),
            };
            let (ok, node) = match &res {
                Ok((r, _)) => (
                    true,
                    r.headers()
                        .get("x-herd-node")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                        .to_owned(),
                ),
                Err(_) => (false, String::new()),
            };
            if let Ok(mut o) = out.lock() {
                o.push(Outcome {
                    latency: t.elapsed(),
                    node,
                    ok,
                    measured,
                });
            }
        }));
        next += rng.gap(rate);
    }
    let drain = tokio::time::timeout(args.drain, futures_util::future::join_all(tasks)).await;
    if drain.is_err() {
        eprintln!(
            "some requests were still queued after {:?}; they are left out",
            args.drain
        );
    }
    let mut v = out
        .lock()
        .map(|mut o| std::mem::take(&mut *o))
        .unwrap_or_default();
    v.sort_by_key(|o| o.latency);
    let unfinished = measured_sent.saturating_sub(v.iter().filter(|o| o.measured).count());
    (v, unfinished)
}
