//! Shared pieces of herd's benchmarks: latency summaries, process memory,
//! and starting the `herd` binary that sits next to the benchmark binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use herd_api::Resource as _;

pub mod load;

/// Percentiles of a set of latencies.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort_unstable();
    let at = |q: f64| {
        if samples.is_empty() {
            Duration::ZERO
        } else {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i.min(samples.len() - 1)]
        }
    };
    Summary {
        count: samples.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Resident memory of a process, from /proc (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `/proc/<pid>/status` figure given in kB (`VmRSS`, `RssAnon`,
/// `RssFile`, ...), in bytes; `Threads` as a count.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let n: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(if line.ends_with("kB") { n * 1024 } else { n })
}

/// The status a nodelet writes for node `i` (heartbeat `seq`): only the
/// fields the nodelet owns (its three conditions, `lastHeartbeatTime`,
/// `info`, `capacity`, `usage.cpuPercent` and `usage.memoryPercent`,
/// `models`), about 1 KB. `Ready`, `Reachable`, `usage.inFlight` and
/// `routing` belong to the controller and the router; a write that set them
/// would make them write back, and a watcher would see events the writer
/// did not cause. As a merge patch this replaces the whole list of
/// conditions, which the nodelet does not do (it reads, sets its own and
/// writes back); benchmarks that send it make sure nothing else writes
/// conditions, or send the conditions only once.
pub fn nodelet_status(i: usize, seq: u64) -> serde_json::Value {
    let now = jiff::Timestamp::now();
    serde_json::json!({
        "conditions": [
            {"type":"NodeletReady","status":"True","reason":"NodeletRunning","message":"the nodelet is running","lastTransitionTime":"2026-01-01T00:00:00Z"},
            {"type":"OllamaInstalled","status":"True","reason":"Found","message":"v0.33.0 at /var/lib/herd/versions/v0.33.0/bin/ollama (herd's install directory)","lastTransitionTime":"2026-01-01T00:00:00Z"},
            {"type":"OllamaRunning","status":"True","reason":"Answering","message":"Ollama 0.33.0 answers at http://127.0.0.1:11434/","lastTransitionTime":"2026-01-01T00:00:00Z"}
        ],
        "lastHeartbeatTime": now.to_string(),
        "info": {"machineName": format!("gpu-box-{i}"), "addresses": [format!("127.0.{}.{}", i / 250, 1 + i % 250)],
                 "os":"linux","arch":"x86_64","ollamaVersion":"0.33.0","nodeletVersion":"0.1.0","startTime":"2026-01-01T00:00:00Z"},
        "capacity": {"cpus": 16, "memoryBytes": 68_719_476_736u64, "gpus":[{"name":"NVIDIA RTX 4090","memoryBytes": 25_769_803_776u64}]},
        "usage": {"cpuPercent": (seq % 100) as f64, "memoryPercent": 41.5},
        "models": [
            {"name":"llama3.2:1b","digest":"sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878","sizeBytes":1_321_098_329u64,"loaded":true},
            {"name":"qwen2.5:0.5b","digest":"sha256:a8b0c51577010a279d933d14c2a8ab4b268079d44c5c8830c0a93900f1827c67","sizeBytes":397_821_319u64,"loaded":false}
        ]
    })
}

/// CPU time (user + system) a process has used, from /proc (Linux).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks; 100 per second on every common configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The `herd` binary built beside this benchmark (same profile).
pub fn herd_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("benchmark binary has no directory")?;
    let herd = dir.join("herd");
    if !herd.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p herd`",
            herd.display()
        );
    }
    Ok(herd)
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub url: String,
    /// For a herd server: the admin key it wrote to `<data-dir>/admin.key`
    /// (the management API always needs a key).
    pub admin_key: Option<String>,
}

impl Proc {
    /// The admin key of this herd server.
    pub fn admin_key(&self) -> anyhow::Result<&str> {
        self.admin_key
            .as_deref()
            .context("this process is not a herd server (no admin key)")
    }

    /// A typed client for this herd server's API, with its admin key.
    pub fn admin_client(&self) -> anyhow::Result<herd_client::Client> {
        Ok(herd_client::Client::builder(&self.url)
            .token(self.admin_key()?)
            .build()?)
    }
}

/// The admin key a herd server (or `bench-router`) wrote to its data
/// directory before it started listening.
pub fn read_admin_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin.key");
    Ok(herd_auth::read_key_file(&path)
        .with_context(|| format!("reading the server's admin key {}", path.display()))?
        .expose())
}

/// A reqwest client builder that sends `key` as `Authorization: Bearer` on
/// every request (marked sensitive, so no `Debug` shows it).
pub fn http_with_key(key: &str) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {key}"))
        .context("the key is not a valid header value")?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(reqwest::Client::builder().default_headers(headers))
}

/// Creates an API key with `role` through the API (as `herd create apikey`
/// does) and returns its secret, which the create response carries once.
pub async fn create_key(
    client: &herd_client::Client,
    name: &str,
    role: herd_api::Role,
) -> anyhow::Result<String> {
    let key = herd_api::ApiKey::new(
        name,
        herd_api::ApiKeySpec {
            role: Some(role),
            description: "made by a benchmark".to_owned(),
            ..herd_api::ApiKeySpec::default()
        },
    );
    let created = client
        .api::<herd_api::ApiKey>()
        .create(&herd_client::PostParams::default(), &key)
        .await
        .with_context(|| format!("creating apikey/{name}"))?;
    created
        .status
        .secret
        .map(|s| s.expose().to_owned())
        .with_context(|| format!("apikey/{name} was created without a secret in the response"))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `herd server` on a free loopback port and waits for its address.
pub fn start_herd_server(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut child = Command::new(herd_binary()?)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn,herd=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting herd server")?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let Some(line) = lines.next() else {
            bail!("herd server exited before listening")
        };
        let line = line?;
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on ".len()..];
            break rest.split_whitespace().next().unwrap_or(rest).to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let admin_key = Some(read_admin_key(data_dir)?);
    Ok(Proc {
        child,
        url,
        admin_key,
    })
}
