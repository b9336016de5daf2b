//! `fake-ollama`: the testkit's fake Ollama as a process.
//!
//! `fake-ollama serve` stands in for `ollama serve` (reads `OLLAMA_HOST`,
//! logs Ollama's startup line, exits cleanly on SIGTERM/SIGINT) and
//! `fake-ollama --version` prints what `ollama --version` prints, so install
//! and supervision tests can use it in place of the real binary.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use herd_testkit::{Api, DEFAULT_VERSION, FakeOllama, Fault, KeepAlive, ollama_host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(
    name = "fake-ollama",
    about = "A faithful fake Ollama server for tests",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Show version information (like `ollama --version`).
    #[arg(short = 'v', long = "version")]
    version: bool,

    #[command(flatten)]
    opts: ServeOpts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server (like `ollama serve`).
    #[command(alias = "start")]
    Serve,
}

#[derive(Args, Debug)]
struct ServeOpts {
    /// Address to listen on: host:port, http://host:port or a bare host
    /// [default: $OLLAMA_HOST, else 127.0.0.1:11434]
    #[arg(long, global = true)]
    listen: Option<String>,

    /// Models installed at start, comma-separated (e.g. llama3.2:1b,qwen2.5:0.5b).
    #[arg(long, value_delimiter = ',', global = true)]
    models: Vec<String>,

    /// Models /api/pull can fetch, comma-separated [default: any]
    #[arg(long, value_delimiter = ',', global = true)]
    pullable: Option<Vec<String>>,

    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 10, global = true)]
    ttft_ms: u64,

    /// Tokens per second after the first.
    #[arg(
        long,
        env = "FAKE_OLLAMA_TOKENS_PER_SEC",
        default_value_t = 100.0,
        global = true
    )]
    tokens_per_sec: f64,

    /// Tokens per reply (as an environment variable it reaches a fake
    /// started by `herd nodelet` as its installed Ollama).
    #[arg(long, env = "FAKE_OLLAMA_TOKENS", default_value_t = 8, global = true)]
    tokens: usize,

    /// Concurrent requests per loaded model [env: OLLAMA_NUM_PARALLEL] [default: 1]
    #[arg(long, global = true)]
    num_parallel: Option<usize>,

    /// Requests that may wait for a slot before 503s [env: OLLAMA_MAX_QUEUE] [default: 512]
    #[arg(long, global = true)]
    max_queue: Option<usize>,

    /// Model load time, in milliseconds.
    #[arg(long, default_value_t = 0, global = true)]
    load_time_ms: u64,

    /// Duration of a pull, in milliseconds.
    #[arg(long, default_value_t = 120, global = true)]
    pull_duration_ms: u64,

    /// Default keep_alive: a Go duration like 5m, or seconds; negative =
    /// forever [env: OLLAMA_KEEP_ALIVE] [default: 5m]
    #[arg(long, global = true)]
    keep_alive: Option<String>,

    /// Version to report, as server and as client [env: FAKE_OLLAMA_VERSION] [default: 0.33.0]
    #[arg(long, global = true)]
    version_string: Option<String>,

    /// Fault from the start: refuse, hang, die-mid-stream:N, slow:FACTOR,
    /// `status:CODE[:BODY]`, garbage.
    #[arg(long, global = true)]
    fault: Option<Fault>,

    /// Turn off the loopback Host check (403 for foreign Host headers).
    #[arg(long, global = true)]
    no_host_check: bool,

    /// Which server to play: `ollama`, or `openai` for an OpenAI-compatible
    /// server like llama.cpp's llama-server or vLLM (/v1 only, /health,
    /// model ids as given).
    #[arg(long, default_value = "ollama", global = true)]
    api: Api,

    /// OpenAI mode: require this key (bearer or x-api-key) on every
    /// request but /health.
    #[arg(
        long,
        env = "FAKE_OPENAI_API_KEY",
        hide_env_values = true,
        global = true
    )]
    api_key: Option<String>,

    /// OpenAI mode: answer 404 on /v1/messages, as a server without the
    /// Anthropic API does.
    #[arg(long, global = true)]
    no_messages: bool,

    /// OpenAI mode: answer 404 on /v1/responses.
    #[arg(long, global = true)]
    no_responses: bool,

    /// Directory that keeps the installed-model list across restarts
    /// [env: OLLAMA_MODELS]
    #[arg(long, global = true)]
    models_dir: Option<PathBuf>,
}

/// An environment variable, unset when empty (Ollama's `envconfig` treats
/// an empty value as unset).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A numeric environment variable; like Ollama, an unparsable value falls
/// back to the default (with a warning).
fn env_number(name: &str) -> Option<usize> {
    let raw = env_var(name)?;
    match raw.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!(
                "time={} level=WARN source=config.go:1 msg=\"invalid setting, ignoring\" {name}={raw}",
                jiff::Timestamp::now()
            );
            None
        }
    }
}

impl ServeOpts {
    /// Fills unset flags from the environment, then from the defaults.
    fn resolve(&mut self) {
        self.num_parallel = Some(
            self.num_parallel
                .or_else(|| env_number("OLLAMA_NUM_PARALLEL"))
                .unwrap_or(1),
        );
        self.max_queue = Some(
            self.max_queue
                .or_else(|| env_number("OLLAMA_MAX_QUEUE"))
                .unwrap_or(512),
        );
        self.keep_alive = self
            .keep_alive
            .take()
            .or_else(|| env_var("OLLAMA_KEEP_ALIVE"));
        self.version_string = Some(
            self.version_string
                .take()
                .or_else(|| env_var("FAKE_OLLAMA_VERSION"))
                .unwrap_or_else(|| DEFAULT_VERSION.to_owned()),
        );
        self.models_dir = self
            .models_dir
            .take()
            .or_else(|| env_var("OLLAMA_MODELS").map(PathBuf::from));
    }

    fn version(&self) -> &str {
        self.version_string.as_deref().unwrap_or(DEFAULT_VERSION)
    }
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    cli.opts.resolve();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        // A closed stderr drops log lines instead of panicking the task that logged.
        .log_internal_errors(false)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if cli.version {
            print_version(&cli.opts).await;
            return Ok(());
        }
        serve(cli.opts).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `ollama --version`: asks the server at `OLLAMA_HOST` for its version;
/// warns when it cannot, or when server and client differ.
async fn print_version(opts: &ServeOpts) {
    let client_version = opts.version();
    let target = ollama_host::parse(&std::env::var("OLLAMA_HOST").unwrap_or_default());
    match tokio::time::timeout(Duration::from_secs(5), server_version(&target.host_port())).await {
        Ok(Ok(server)) => {
            println!("ollama version is {server}");
            if server != client_version {
                println!("Warning: client version is {client_version}");
            }
        }
        _ => {
            println!("Warning: could not connect to a running Ollama instance");
            println!("Warning: client version is {client_version}");
        }
    }
}

/// A bare HTTP/1.1 GET of `/api/version`: enough for a version probe without
/// pulling an HTTP client into the binary.
async fn server_version(host_port: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(host_port).await?;
    let request = format!(
        "GET /api/version HTTP/1.1\r\nHost: {host_port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "unexpected status: {}",
        head.lines().next().unwrap_or("")
    );
    let json =
        &body[body.find('{').context("no JSON body")?..=body.rfind('}').context("no JSON body")?];
    let v: serde_json::Value = serde_json::from_str(json)?;
    v.get("version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("no version in the reply")
}

async fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    // `ollama serve` refuses to run without a home directory (it keeps its
    // key pair there); the fake checks the same precondition but writes
    // nothing there.
    if std::env::var_os("HOME").is_none_or(|h| h.is_empty()) {
        anyhow::bail!("$HOME is not defined");
    }
    let listen = match &opts.listen {
        Some(l) => ollama_host::parse(l),
        None => ollama_host::parse(&std::env::var("OLLAMA_HOST").unwrap_or_default()),
    };
    let addr = listen.host_port();

    let mut builder = FakeOllama::builder()
        .bind(addr.clone())
        .models(
            opts.models
                .iter()
                .filter(|m| !m.trim().is_empty())
                .map(|m| m.trim().to_owned()),
        )
        .version(opts.version())
        .ttft(Duration::from_millis(opts.ttft_ms))
        .tokens_per_sec(opts.tokens_per_sec)
        .tokens(opts.tokens)
        .num_parallel(opts.num_parallel.unwrap_or(1))
        .max_queue(opts.max_queue.unwrap_or(512))
        .load_time(Duration::from_millis(opts.load_time_ms))
        .pull_duration(Duration::from_millis(opts.pull_duration_ms))
        .host_check(!opts.no_host_check)
        .api(opts.api)
        .native_messages(!opts.no_messages)
        .native_responses(!opts.no_responses);
    if let Some(key) = &opts.api_key {
        builder = builder.api_key(key);
    }
    if let Some(p) = &opts.pullable {
        builder = builder.pullable(p.iter().map(|m| m.trim().to_owned()));
    }
    if let Some(ka) = &opts.keep_alive {
        let ka = KeepAlive::parse(ka)
            .map_err(|e| anyhow::anyhow!("invalid OLLAMA_KEEP_ALIVE {ka:?}: {e}"))?;
        builder = builder.keep_alive(ka);
    }
    if let Some(dir) = &opts.models_dir {
        builder = builder.models_dir(dir);
    }
    if let Some(f) = &opts.fault {
        builder = builder.fault(f.clone());
    }
    let fake = match builder.try_start().await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            anyhow::bail!("listen tcp {addr}: bind: address already in use")
        }
        Err(e) => anyhow::bail!("listen tcp {addr}: {e}"),
    };

    let now = jiff::Timestamp::now();
    let models_dir = opts
        .models_dir
        .as_ref()
        .map_or_else(String::new, |d| d.display().to_string());
    eprintln!(
        "time={now} level=INFO source=routes.go:1 msg=\"server config\" env=\"map[OLLAMA_HOST:{} OLLAMA_KEEP_ALIVE:{} OLLAMA_MAX_QUEUE:{} OLLAMA_MODELS:{models_dir} OLLAMA_NUM_PARALLEL:{}]\"",
        listen.url(),
        opts.keep_alive.as_deref().unwrap_or("5m0s"),
        opts.max_queue.unwrap_or(512),
        opts.num_parallel.unwrap_or(1),
    );
    eprintln!(
        "time={now} level=INFO source=routes.go:1 msg=\"Listening on {} (version {})\"",
        fake.addr(),
        opts.version()
    );

    shutdown_signal().await;
    fake.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
