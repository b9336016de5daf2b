//! What the proxy adds, side by side in one run against the same
//! `fake-ollama` (no time to first token, one token per small request):
//! direct, through herd, and through nginx as a plain reverse proxy.
//!
//! - small non-streamed requests (`/api/generate`, `stream:false`, one
//!   token) from 1, 64 and 256 closed-loop clients: requests/s, p50, p99,
//!   and the latency each proxy adds over direct;
//! - streamed responses (50 tokens, 5 ms apart): for every chunk, the time
//!   from the fake writing it (its `created_at`) to the client reading it;
//!   the proxies' extra is the per-chunk latency they add.
//!
//! Targets are measured in rotating order, several rounds each, so drift
//! on the machine hits all three alike.
//!
//! `--auth-cost` adds a second herd router started with `--inference-auth
//! key`, sent a valid `inference` key (made through the API with the admin
//! key) on every request, beside the first (`--inference-auth open`, no
//! key): the two alternate in the same rounds, and each table ends with the
//! ratio of their median requests/s and the difference of their p50.
//!
//! cargo build --release -p herd -p herd-testkit -p herd-bench
//! target/release/proxy-bench                 # or scripts/bench-proxy.sh
//! target/release/proxy-bench --auth-cost --no-nginx --requests show --streams 1

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use herd_bench::load::{self, Http, Run};
use herd_bench::{Summary, summarize};
use hyper::header::HeaderValue;

#[derive(Parser, Debug)]
struct Args {
    /// Measured time per target, concurrency and round.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time before each measurement (connections, caches).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Rounds over the three targets.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent clients for the small-request phase.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    concurrency: Vec<usize>,
    /// Concurrent streams for the per-chunk phase.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    streams: Vec<usize>,
    /// Kinds of small request: generate (`stream:false`, one token) and
    /// show (no timer in the fake).
    #[arg(long, value_delimiter = ',', default_value = "generate,show")]
    requests: Vec<String>,
    /// Leave nginx out (when it cannot be installed).
    #[arg(long)]
    no_nginx: bool,
    /// Also measure `herd-key`: a router with `--inference-auth key`, sent a
    /// valid inference key, against `herd` (`--inference-auth open`, no key).
    #[arg(long)]
    auth_cost: bool,
    /// Extra flags for the herd router (e.g. --http-workers 0).
    #[arg(long, allow_hyphen_values = true)]
    router_flag: Vec<String>,
    /// Another herd router to measure beside the first, as `NAME=FLAGS`
    /// (e.g. `herd-shared=--http-workers 0`); a flag `@PATH` runs the herd
    /// binary at PATH (another build) instead. Repeatable.
    #[arg(long, allow_hyphen_values = true)]
    variant: Vec<String>,
}

const SMALL: &str = r#"{"model":"bench","prompt":"hi","stream":false,"options":{"num_predict":1}}"#;
const SHOW: &str = r#"{"model":"bench"}"#;
const STREAMED: &str = r#"{"model":"bench","prompt":"hi"}"#;

/// The router measured with a key by `--auth-cost`.
const KEYED: &str = "herd-key";

struct Target {
    name: String,
    url: String,
    /// `Authorization` sent with every request.
    auth: Option<HeaderValue>,
    /// The process whose CPU time is measured for it (the fake for direct).
    pid: Option<u32>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn signed_us(a: Duration, b: Duration) -> String {
    format!("{:+.0} µs", us(a) - us(b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = load::start_fake_ollama(
        &[
            "--models",
            "bench",
            "--ttft-ms",
            "0",
            "--tokens",
            "50",
            "--tokens-per-sec",
            "200",
            "--num-parallel",
            "4096",
            "--max-queue",
            "100000",
        ]
        .map(String::from),
    )?;
    let dir = tempfile::tempdir()?;
    let mut router_flags = vec!["--balancer".to_owned(), "p2c".to_owned()];
    router_flags.extend(args.router_flag.iter().cloned());
    let mut open_flags = router_flags.clone();
    if args.auth_cost {
        // Explicit, so the comparison does not rest on the default.
        open_flags.extend(["--inference-auth".to_owned(), "open".to_owned()]);
    }
    let (router, router_kind) = load::start_router(&dir.path().join("data"), &open_flags)?;
    load::register_node(&router, "fake", &fake.url, &["bench"], 1024, true).await?;
    let mut targets = vec![
        Target {
            name: "direct".to_owned(),
            url: fake.url.clone(),
            auth: None,
            pid: Some(fake.child.id()),
        },
        Target {
            name: "herd".to_owned(),
            url: router.url.clone(),
            auth: None,
            pid: Some(router.child.id()),
        },
    ];
    let mut variants = Vec::new();
    if args.auth_cost {
        let mut flags = router_flags.clone();
        flags.extend(["--inference-auth".to_owned(), "key".to_owned()]);
        let (r, _) = load::start_router(&dir.path().join("data-key"), &flags)?;
        load::register_node(&r, "fake", &fake.url, &["bench"], 1024, true).await?;
        let key = herd_bench::create_key(
            &r.admin_client()?,
            "bench-inference",
            herd_api::Role::Inference,
        )
        .await?;
        println!(
            "variant {KEYED}: {router_kind} {} pid {} at {}, sent an inference key",
            flags.join(" "),
            r.child.id(),
            r.url
        );
        targets.push(Target {
            name: KEYED.to_owned(),
            url: r.url.clone(),
            auth: Some(load::bearer(&key)?),
            pid: Some(r.child.id()),
        });
        variants.push(r);
    }
    for (i, v) in args.variant.iter().enumerate() {
        let (name, flags) = v
            .split_once('=')
            .with_context(|| format!("--variant {v:?}: expected NAME=FLAGS"))?;
        let mut binary = None;
        let mut flags: Vec<String> = flags
            .split_whitespace()
            .filter(|f| match f.strip_prefix('@') {
                Some(path) => {
                    binary = Some(std::path::PathBuf::from(path));
                    false
                }
                None => true,
            })
            .map(String::from)
            .collect();
        flags.splice(0..0, router_flags.iter().cloned());
        let (r, _) = load::start_router_from(
            binary.as_deref(),
            &dir.path().join(format!("data-{i}")),
            &flags,
        )?;
        load::register_node(&r, "fake", &fake.url, &["bench"], 1024, true).await?;
        println!(
            "variant {name}: {} {} pid {} at {}",
            binary
                .as_ref()
                .map_or(router_kind.to_owned(), |b| b.display().to_string()),
            flags.join(" "),
            r.child.id(),
            r.url
        );
        targets.push(Target {
            name: name.to_owned(),
            url: r.url.clone(),
            auth: None,
            pid: Some(r.child.id()),
        });
        variants.push(r);
    }
    let nginx = if args.no_nginx {
        None
    } else {
        let ndir = dir.path().join("nginx");
        std::fs::create_dir_all(&ndir)?;
        let listen = format!("127.0.0.1:{}", load::free_port()?);
        let n = load::start_nginx(&ndir, &listen, &fake.url).context("nginx")?;
        targets.push(Target {
            name: "nginx".to_owned(),
            url: n.proc.url.clone(),
            auth: None,
            pid: Some(n.proc.child.id()),
        });
        Some(n)
    };
    println!(
        "machine: {} cores; fake-ollama pid {} at {}; {router_kind} pid {} at {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fake.child.id(),
        fake.url,
        router.child.id(),
        router.url,
        nginx.as_ref().map_or_else(
            || "no nginx".to_owned(),
            |n| format!(
                "{} pid {} at {}",
                load::nginx_version(),
                n.proc.child.id(),
                n.proc.url
            )
        ),
    );
    let http = load::http_client();
    // Every target answers before anything is measured.
    for t in &targets {
        let req = load::post_json(
            &format!("{}/api/generate", t.url),
            &Bytes::from_static(SMALL.as_bytes()),
            t.auth.as_ref(),
        )?;
        load::fetch(&http, req)
            .await
            .with_context(|| format!("{} does not answer", t.name))?;
    }

    for kind in &args.requests {
        let (path, body, title) = match kind.as_str() {
            "generate" => (
                "/api/generate",
                SMALL,
                "POST /api/generate, stream:false, 1 token (the fake's 1 ms timer tick is in every request)",
            ),
            "show" => (
                "/api/show",
                SHOW,
                "POST /api/show: model-routed like generate, no timer in the fake (pure proxy overhead)",
            ),
            other => anyhow::bail!("unknown request kind {other:?} (generate, show)"),
        };
        small_requests(&args, &http, &targets, path, body, title).await;
    }

    println!("\n## Streamed responses (50 tokens, 5 ms apart): node-to-client latency per chunk\n");
    println!("| streams | target | chunks | p50 | p99 | added p50 | added p99 |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &sc in &args.streams {
        let mut delays: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for round in 0..args.rounds {
            for k in 0..targets.len() {
                let t = &targets[(k + round) % targets.len()];
                let d = stream_delays(
                    &http,
                    &format!("{}/api/generate", t.url),
                    t.auth.as_ref(),
                    sc,
                    args.duration,
                )
                .await?;
                delays.entry(&t.name).or_default().extend(d);
            }
        }
        let summaries: BTreeMap<&str, Summary> =
            delays.iter_mut().map(|(k, v)| (*k, summarize(v))).collect();
        let direct = summaries["direct"];
        for t in &targets {
            let s = summaries[t.name.as_str()];
            let (a50, a99) = if t.name == "direct" {
                ("—".to_owned(), "—".to_owned())
            } else {
                (signed_us(s.p50, direct.p50), signed_us(s.p99, direct.p99))
            };
            println!(
                "| {sc} | {} | {} | {:.0} µs | {:.0} µs | {a50} | {a99} |",
                t.name,
                s.count,
                us(s.p50),
                us(s.p99)
            );
        }
    }
    drop(nginx);
    drop(variants);
    drop(router);
    drop(fake);
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One table: every concurrency level, every target, `rounds` rounds in
/// rotating order.
async fn small_requests(
    args: &Args,
    http: &Http,
    targets: &[Target],
    path: &str,
    body: &'static str,
    title: &str,
) {
    println!("\n## Small non-streamed requests: {title}\n");
    println!("| clients | target | req/s | p50 | p99 | added p50 | added p99 | errors |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for &c in &args.concurrency {
        let mut samples: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let mut rps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        // CPU time each process spent, and the requests served meanwhile.
        let mut cpu: BTreeMap<&str, (Duration, usize)> = BTreeMap::new();
        for round in 0..args.rounds {
            for k in 0..targets.len() {
                let t = &targets[(k + round) % targets.len()];
                let pid = t.pid;
                let cpu0 = pid.and_then(load::tree_cpu_time);
                let run: Run = load::closed_loop(
                    http,
                    &format!("{}{path}", t.url),
                    t.auth.as_ref(),
                    Bytes::from_static(body.as_bytes()),
                    c,
                    args.warmup,
                    args.duration,
                )
                .await;
                if let (Some(a), Some(b)) = (cpu0, pid.and_then(load::tree_cpu_time)) {
                    let e = cpu.entry(&t.name).or_default();
                    e.0 += b.saturating_sub(a);
                    e.1 += run.latencies.len();
                }
                rps.entry(&t.name).or_default().push(run.rps());
                *errors.entry(&t.name).or_default() += run.errors;
                samples.entry(&t.name).or_default().extend(run.latencies);
            }
        }
        let summaries: BTreeMap<&str, Summary> = samples
            .iter_mut()
            .map(|(k, v)| (*k, summarize(v)))
            .collect();
        let direct = summaries["direct"];
        for t in targets {
            let s = summaries[t.name.as_str()];
            let (ap50, ap99) = if t.name == "direct" {
                ("—".to_owned(), "—".to_owned())
            } else {
                (signed_us(s.p50, direct.p50), signed_us(s.p99, direct.p99))
            };
            println!(
                "| {c} | {} | {:.0} | {:.0} µs | {:.0} µs | {ap50} | {ap99} | {} |",
                t.name,
                median(&rps[t.name.as_str()]),
                us(s.p50),
                us(s.p99),
                errors[t.name.as_str()]
            );
        }
        for h in targets
            .iter()
            .filter(|t| !matches!(t.name.as_str(), "direct" | "nginx"))
        {
            let h = h.name.as_str();
            if let (Some(hr), Some(n)) = (rps.get(h), rps.get("nginx")) {
                println!(
                    "|  | {h} ÷ nginx | {:.2}× req/s | p50 {:.2}× | p99 {:.2}× | | | |",
                    median(hr) / median(n),
                    us(summaries[h].p50) / us(summaries["nginx"].p50),
                    us(summaries[h].p99) / us(summaries["nginx"].p99)
                );
            }
        }
        if let (Some(open), Some(keyed)) = (rps.get("herd"), rps.get(KEYED)) {
            // Each round measures both within seconds of each other, so the
            // per-round ratio cancels most of the machine's drift.
            let per_round: Vec<f64> = open.iter().zip(keyed).map(|(o, k)| k / o).collect();
            let ratio = median(keyed) / median(open);
            println!(
                "|  | {KEYED} ÷ herd | {ratio:.3}× req/s (median of rounds {:.3}×; key check {:+.1} %) | p50 {} | p99 {} | | | |",
                median(&per_round),
                (median(&per_round) - 1.0) * 100.0,
                signed_us(summaries[KEYED].p50, summaries["herd"].p50),
                signed_us(summaries[KEYED].p99, summaries["herd"].p99),
            );
        }
        let per = |name: &str| {
            cpu.get(name).filter(|(_, n)| *n > 0).map_or_else(
                || "—".to_owned(),
                |(d, n)| format!("{:.1} µs", us(*d) / *n as f64),
            )
        };
        let others: String = targets
            .iter()
            .filter(|t| t.name != "direct")
            .map(|t| format!(" {} {} |", t.name, per(&t.name)))
            .collect();
        let pad = "| ".repeat(5usize.saturating_sub(targets.len() - 1));
        println!(
            "|  | CPU per request | fake {} |{others} {pad}",
            per("direct")
        );
    }
}

/// `streams` clients streaming back to back for `duration`; for each chunk,
/// now − its `created_at` (the fake stamps it as it writes it).
async fn stream_delays(
    http: &Http,
    url: &str,
    auth: Option<&HeaderValue>,
    streams: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (http, url, auth) = (http.clone(), url.to_owned(), auth.cloned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while tokio::time::Instant::now() < deadline {
                let req = load::post_json(
                    &url,
                    &Bytes::from_static(STREAMED.as_bytes()),
                    auth.as_ref(),
                )?;
                let resp = http.request(req).await?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "stream answered {}",
                    resp.status()
                );
                load::read_lines(resp, |line, at| {
                    #[derive(serde::Deserialize)]
                    struct Chunk {
                        created_at: jiff::Timestamp,
                    }
                    if let Ok(c) = serde_json::from_slice::<Chunk>(line)
                        && let Ok(d) = Duration::try_from(at.duration_since(c.created_at))
                    {
                        out.push(d);
                    }
                })
                .await?;
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
