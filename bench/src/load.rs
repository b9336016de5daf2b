//! Load generation and fleet set-up for the proxy benchmarks: a lean
//! hyper client (the same HTTP stack the proxy uses, so the generator adds
//! as little as possible), closed- and open-loop drivers, the `fake-ollama`
//! and `nginx` processes, and registering fake nodes with a herd server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Proc;

pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client with room for every connection the benchmark opens.
pub fn http_client() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(120))
        .build(c)
}

/// `Authorization: Bearer KEY`, marked sensitive; built once and cloned
/// into each request so that a run with a key costs the generator no more
/// than one without.
pub fn bearer(key: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {key}"))
        .context("the key is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// A JSON POST, with `Authorization` when `auth` is given.
pub fn post_json(
    url: &str,
    body: &Bytes,
    auth: Option<&HeaderValue>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Some(auth) = auth {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    Ok(req.body(Full::new(body.clone()))?)
}

/// Sends and reads the whole body; errors on a non-2xx status.
pub async fn fetch(
    http: &Http,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(Response<()>, Bytes)> {
    let resp = http.request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    anyhow::ensure!(
        parts.status.is_success(),
        "answered {}: {}",
        parts.status,
        String::from_utf8_lossy(&bytes)
    );
    Ok((Response::from_parts(parts, ()), bytes))
}

/// What a run measured.
pub struct Run {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Run {
    pub fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` clients each sending `body` to `url` (with `auth` as
/// `Authorization` when given) back to back for `duration` (after `warmup`,
/// not measured).
pub async fn closed_loop(
    http: &Http,
    url: &str,
    auth: Option<&HeaderValue>,
    body: Bytes,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
        let auth = auth.cloned();
        let (stop, measuring, errors) = (stop.clone(), measuring.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) {
                let Ok(req) = post_json(&url, &body, auth.as_ref()) else {
                    break;
                };
                let t = Instant::now();
                let ok = fetch(&http, req).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        mine.push(t.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            mine
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await {
            latencies.extend(v);
        }
    }
    Run {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
    }
}

/// A binary built beside the running benchmark (same profile).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("benchmark binary has no directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (see the benchmark's docs)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts a child and waits for a stderr line containing `marker`; returns
/// the text after the marker up to the next space, and keeps draining
/// stderr so the child never blocks on it.
fn spawn_and_read(mut cmd: Command, marker: &str, what: &str) -> anyhow::Result<(Proc, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let found = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            bail!("{what} exited before it was ready")
        };
        let line = line?;
        if let Some(i) = line.find(marker) {
            let rest = &line[i + marker.len()..];
            break rest.split_whitespace().next().unwrap_or(rest).to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((
        Proc {
            child,
            url: String::new(),
            admin_key: None,
        },
        found,
    ))
}

/// Starts `fake-ollama serve` on a free loopback port with `flags`.
pub fn start_fake_ollama(flags: &[String]) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(sibling_binary("fake-ollama")?);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(flags);
    let (mut p, addr) = spawn_and_read(cmd, "Listening on ", "fake-ollama")?;
    p.url = format!("http://{addr}");
    Ok(p)
}

/// Starts a herd router: the release `herd server` (its controller off:
/// the benchmark plays nodelet and controller itself), or with
/// `HERD_BENCH_ROUTER=bench-router` the bench-only binary that composes the
/// same pieces. Returns the process and which one it is.
pub fn start_router(data_dir: &Path, flags: &[String]) -> anyhow::Result<(Proc, &'static str)> {
    start_router_from(None, data_dir, flags)
}

/// [`start_router`], with `herd` taken from `herd_binary` when given (to
/// compare two builds in one run).
pub fn start_router_from(
    herd_binary: Option<&Path>,
    data_dir: &Path,
    flags: &[String],
) -> anyhow::Result<(Proc, &'static str)> {
    let (mut cmd, name) = match (herd_binary, std::env::var("HERD_BENCH_ROUTER").as_deref()) {
        (None, Ok("bench-router")) => (
            Command::new(sibling_binary("bench-router")?),
            "bench-router",
        ),
        (bin, _) => {
            let mut c = match bin {
                Some(b) => Command::new(b),
                None => Command::new(sibling_binary("herd")?),
            };
            c.args(["server", "--no-controller"]);
            (c, "herd server")
        }
    };
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .env("RUST_LOG", "warn,herd=info");
    let (mut p, url) = spawn_and_read(cmd, "listening on ", name)?;
    p.url = url;
    p.admin_key = Some(crate::read_admin_key(data_dir)?);
    Ok((p, name))
}

/// Registers `name` at `router` (with its admin key) as a Ready node
/// serving `models` from `ollama_url` (what a nodelet and the controller
/// would do), with `spec.maxParallel` and the models' `loaded` flag as
/// given, and waits until the proxy routes to it.
pub async fn register_node(
    router: &Proc,
    name: &str,
    ollama_url: &str,
    models: &[&str],
    max_parallel: u32,
    loaded: bool,
) -> anyhow::Result<()> {
    // The URL under its older name, which every build accepts, so a run can
    // measure an older `herd` (`--variant old=@PATH`) beside this one.
    let spec = serde_json::json!({"ollamaUrl": ollama_url, "maxParallel": max_parallel});
    register_node_spec(router, name, spec, models, loaded).await
}

/// [`register_node`] with a whole spec as JSON (an OpenAI-compatible node,
/// say).
pub async fn register_node_spec(
    router: &Proc,
    name: &str,
    spec: serde_json::Value,
    models: &[&str],
    loaded: bool,
) -> anyhow::Result<()> {
    let client = router.admin_client()?;
    let nodes_url = format!("{}/apis/herd/v1/nodes", router.url);
    client
        .http()
        .post(&nodes_url)
        .json(&serde_json::json!({"apiVersion": "herd/v1", "kind": "Node",
            "metadata": {"name": name}, "spec": spec}))
        .send()
        .await?
        .error_for_status()?;
    let models: Vec<serde_json::Value> = models
        .iter()
        .map(|m| serde_json::json!({"name": m, "loaded": loaded}))
        .collect();
    client
        .http()
        .patch(format!("{nodes_url}/{name}/status"))
        .header("content-type", "application/merge-patch+json")
        .body(
            serde_json::json!({"status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "Benchmark",
                                "message": "registered by the benchmark"}],
                "models": models}})
            .to_string(),
        )
        .send()
        .await?
        .error_for_status()?;
    let stats_url = format!("{}/apis/herd/v1/requests/stats", router.url);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: serde_json::Value = client
            .http()
            .get(&stats_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let routable = v["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["node"] == name && n["routable"] == true)
        });
        if routable {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {name} never became routable: {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running nginx: on drop its master is asked to stop (SIGTERM), which
/// also stops its workers (a SIGKILL would orphan them).
pub struct Nginx {
    pub proc: Proc,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.proc.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts nginx as a plain reverse proxy (keep-alive upstream, no
/// buffering) from `listen` to `upstream`, in the foreground, with its
/// files in `dir`. Installs the Debian package first when nginx is missing.
pub fn start_nginx(dir: &Path, listen: &str, upstream: &str) -> anyhow::Result<Nginx> {
    let nginx = which("nginx").or_else(|| {
        eprintln!("nginx not found: installing the Debian package (apt-get update && apt-get install -y nginx-light or nginx)");
        let _ = Command::new("apt-get").arg("update").status();
        let ok = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if ok { which("nginx") } else { None }
    });
    let nginx = nginx.context("nginx is not installed and could not be installed")?;
    let upstream_host = upstream.trim_start_matches("http://");
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream ollama {{
        server {upstream_host};
        keepalive 1024;
    }}
    server {{
        listen {listen};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream_host};
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut child = Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting nginx")?;
    // Ready when it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(listen).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("nginx exited: {status} (see {d}/error.log)");
        }
        if Instant::now() > deadline {
            bail!("nginx did not start listening on {listen}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Nginx {
        proc: Proc {
            child,
            url: format!("http://{listen}"),
            admin_key: None,
        },
    })
}

/// The nginx version line, for the report.
pub fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// CPU time of a process and all its children (nginx's master and
/// workers), from /proc.
pub fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let mut total = crate::cpu_time(pid)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += crate::cpu_time(child).unwrap_or_default();
        }
    }
    Some(total)
}

/// Whether `llama-server` on `port` answers `/health` with 200 (once the
/// model is loaded).
pub fn llama_healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    s.read(&mut buf)
        .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// A free loopback port (bound and released; fine for a benchmark).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads a streamed NDJSON response, calling `line` with each line and
/// the instant its frame arrived.
pub async fn read_lines(
    resp: Response<Incoming>,
    mut line: impl FnMut(&[u8], jiff::Timestamp),
) -> anyhow::Result<()> {
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let now = jiff::Timestamp::now();
        if let Some(d) = frame.data_ref() {
            pending.extend_from_slice(d);
            while let Some(i) = pending.iter().position(|c| *c == b'\n') {
                let l: Vec<u8> = pending.drain(..=i).collect();
                line(&l, now);
            }
        }
    }
    Ok(())
}
