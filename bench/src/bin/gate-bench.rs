//! The key check alone: `Gate::admit` on a model-routed request, as the
//! server's host calls it before the proxy, with `--inference-auth open` and
//! no key against `--inference-auth key` with a valid inference key, in one
//! process, alternating in rounds. A key ring of 1,000 keys, as a large
//! team's server might hold.
//!
//! ```sh
//! cargo build --release -p herd-bench --bin gate-bench
//! target/release/gate-bench --rounds 15 --calls 200000
//! ```
//!
//! Reports ns per call for each (median of rounds) and the difference, the
//! key check's CPU cost per request; `docs/benchmarks.md` sets it against the
//! proxy's CPU per request.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use clap::Parser;
use herd_api::{ApiKeySpec, Role, WatchEvent};
use herd_auth::{KeyRing, Openness};
use herd_server::{Gate, Hosts};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    #[arg(long, default_value_t = 200_000)]
    calls: usize,
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Only this side (`open` or `key`), for counting instructions with
    /// callgrind one side at a time.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ring = Arc::new(KeyRing::new());
    let mut token = String::new();
    for i in 0..args.keys {
        let issued = herd_auth::issue(
            &format!("key-{i}"),
            ApiKeySpec {
                role: Some(Role::Inference),
                ..ApiKeySpec::default()
            },
            "bench",
        )?;
        ring.apply_hash(&WatchEvent::Added(issued.hash.clone()));
        ring.apply_key(&WatchEvent::Added(issued.stored()));
        token = issued.token.expose();
    }
    let hosts = Hosts {
        loopback_only: true,
        allowed: Vec::new(),
    };
    let open = Gate::new(
        ring.clone(),
        Openness {
            inference: true,
            ..Openness::default()
        },
        hosts.clone(),
    );
    let keyed = Gate::new(ring, Openness::default(), hosts);
    let bearer = HeaderValue::try_from(format!("Bearer {token}"))?;
    let request = |auth: Option<&HeaderValue>| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/api/chat")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "ollama-python/0.4.7");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a.clone());
        }
        b.body(Body::empty())
    };
    // Each call admits a fresh request (as the host does), built outside the
    // timed part; the time is the gate's alone.
    let run = |gate: &Gate, auth: Option<&HeaderValue>| -> anyhow::Result<f64> {
        let mut reqs = Vec::with_capacity(args.calls);
        for _ in 0..args.calls {
            reqs.push(request(auth)?);
        }
        let start = Instant::now();
        for req in reqs {
            let admitted = gate.admit(black_box(req));
            assert!(admitted.is_ok(), "the gate refused the benchmark's request");
            black_box(admitted.ok());
        }
        Ok(start.elapsed().as_nanos() as f64 / args.calls as f64)
    };
    match args.only.as_deref() {
        Some("open") => {
            println!("open, no key: {:.0} ns", run(&open, None)?);
            return Ok(());
        }
        Some("key") => {
            println!("key mode with a key: {:.0} ns", run(&keyed, Some(&bearer))?);
            return Ok(());
        }
        Some(other) => anyhow::bail!("--only {other:?}: open or key"),
        None => {}
    }
    let (mut o, mut k, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (a, b) = if round % 2 == 0 {
            let a = run(&open, None)?;
            (a, run(&keyed, Some(&bearer))?)
        } else {
            let b = run(&keyed, Some(&bearer))?;
            (run(&open, None)?, b)
        };
        o.push(a);
        k.push(b);
        d.push(b - a);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} keys in the ring, {} calls x {} rounds: open, no key {:.0} ns; key mode with a key {:.0} ns; the key check adds {:.0} ns per request (median of per-round differences)",
        args.keys,
        args.calls,
        args.rounds,
        median(o),
        median(k),
        median(d)
    );
    Ok(())
}
