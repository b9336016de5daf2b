//! The proxy's settings: command-line flags (flattened into `herd server`)
//! and the plain struct the rest of the crate reads.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// How a node is chosen among the candidates for a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Power of two choices: two random candidates, the cheaper wins, where
    /// cost = (in-flight + 1) × EWMA(time to first byte) ÷ weight, raised by
    /// the node's CPU/memory pressure.
    #[default]
    #[value(name = "p2c")]
    P2c,
    /// Each candidate in turn.
    #[value(name = "round_robin", alias = "round-robin", alias = "rr")]
    RoundRobin,
    /// The candidate with the fewest requests in flight per unit of weight.
    #[value(name = "least_busy", alias = "least-busy")]
    LeastBusy,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::P2c => "p2c",
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastBusy => "least_busy",
        }
    }
}

/// The proxy's flags, for `#[command(flatten)]` in `herd server`.
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// How to choose a node for each request: p2c (load- and latency-aware),
    /// round_robin or least_busy.
    #[arg(long, env = "HERD_BALANCER", value_enum, default_value_t = Strategy::P2c)]
    pub balancer: Strategy,
    /// Longest wait for a TCP connection to a node; past it the node counts
    /// as unreachable and the request moves to another node.
    #[arg(long, env = "HERD_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Longest wait for a node's first response byte. Generous on purpose:
    /// Ollama sends nothing while it loads a model, which can take minutes.
    /// There is no limit once the response has started.
    #[arg(long, env = "HERD_FIRST_BYTE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub first_byte_timeout: Duration,
    /// Retry on another node when a node times out before its first byte
    /// (true or false).
    #[arg(long, env = "HERD_RETRY_ON_TIMEOUT", default_value_t = true, action = clap::ArgAction::Set)]
    pub retry_on_timeout: bool,
    /// How many other nodes a request may be retried on after a connection
    /// failure or a 503 before its first byte.
    #[arg(long, env = "HERD_MAX_RETRIES", default_value_t = 2)]
    pub max_retries: u32,
    /// Largest request body accepted on the Ollama and OpenAI endpoints
    /// (images travel inside it), e.g. 64MiB or 1048576. Larger: 413.
    #[arg(long, env = "HERD_MAX_REQUEST_BODY", default_value = "64MiB", value_parser = parse_size)]
    pub max_request_body: usize,
    /// Proxied requests kept in memory for GET /apis/herd/v1/requests.
    #[arg(long, env = "HERD_REQUEST_HISTORY", default_value_t = 10_000)]
    pub request_history: usize,
    /// Idle keep-alive connections to nodes are closed after this long.
    #[arg(long, env = "HERD_IDLE_POOL_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub idle_pool_timeout: Duration,
    /// A node that refused or timed out a connection is left out of routing
    /// for this long (then tried again), before the controller even notices.
    #[arg(long, env = "HERD_FAILURE_COOLDOWN", default_value = "5s", value_parser = humantime::parse_duration)]
    pub failure_cooldown: Duration,
    /// Least time between two writes of a node's status by the proxy
    /// (in-flight count, reachability).
    #[arg(long, env = "HERD_STATUS_REPORT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub status_report_interval: Duration,
    /// Longest wait for each node when answering /api/tags, /api/ps,
    /// /v1/models and /api/version from the whole fleet.
    #[arg(long, env = "HERD_AGGREGATE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub aggregate_timeout: Duration,
    /// Web-page origins allowed to call the Ollama and OpenAI endpoints from
    /// a browser, besides Ollama's defaults (localhost, 127.0.0.1 and
    /// 0.0.0.0 on any port; app:, file:, tauri:, vscode-webview:,
    /// vscode-file:). Comma-separated, like OLLAMA_ORIGINS; `*` matches any
    /// run of characters, e.g. `https://chat.example.com,chrome-extension://*`.
    #[arg(long, env = "HERD_ORIGINS", value_delimiter = ',')]
    pub origins: Vec<String>,
    /// Send each conversation back to the node that served its earlier turns
    /// (whose cache holds its prefix) while that node's load stays within
    /// 1.25× the mean: `on` or `off`.
    #[arg(long, env = "HERD_PREFIX_AFFINITY", value_enum, default_value_t = Switch::On)]
    pub prefix_affinity: Switch,
}

/// A feature flag's value.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl Default for ProxyArgs {
    fn default() -> Self {
        ProxyConfig::default().into()
    }
}

/// The proxy's settings. [`Default`] matches the flags' defaults; tests
/// shorten the timers.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub strategy: Strategy,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub retry_on_timeout: bool,
    pub max_retries: u32,
    pub max_request_body: usize,
    pub request_history: usize,
    pub idle_pool_timeout: Duration,
    pub failure_cooldown: Duration,
    pub status_report_interval: Duration,
    pub aggregate_timeout: Duration,
    /// Extra allowed browser origins (see [`ProxyArgs::origins`]).
    pub origins: Vec<String>,
    /// How long a model pulled, copied, created or deleted through the proxy
    /// counts as present (or absent) on a node before the node's own status
    /// says so, so `ollama pull x && ollama run x` works at once.
    pub model_overlay_ttl: Duration,
    /// Networks node connections may reach although link-local or cloud
    /// metadata (see `herd_api::node_address`); set from the controller's
    /// `--allow-node-addresses`.
    pub allow_node_addresses: Vec<herd_api::node_address::Cidr>,
    /// Prefix affinity (see [`ProxyArgs::prefix_affinity`]).
    pub prefix_affinity: bool,
    /// Prefix keys remembered across all models.
    pub affinity_capacity: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            strategy: Strategy::P2c,
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(600),
            retry_on_timeout: true,
            max_retries: 2,
            max_request_body: 64 << 20,
            request_history: 10_000,
            idle_pool_timeout: Duration::from_secs(90),
            failure_cooldown: Duration::from_secs(5),
            status_report_interval: Duration::from_secs(1),
            aggregate_timeout: Duration::from_secs(5),
            origins: Vec::new(),
            model_overlay_ttl: Duration::from_secs(120),
            allow_node_addresses: Vec::new(),
            prefix_affinity: true,
            affinity_capacity: crate::affinity::DEFAULT_CAPACITY,
        }
    }
}

impl From<&ProxyArgs> for ProxyConfig {
    fn from(a: &ProxyArgs) -> Self {
        ProxyConfig {
            strategy: a.balancer,
            connect_timeout: a.connect_timeout,
            first_byte_timeout: a.first_byte_timeout,
            retry_on_timeout: a.retry_on_timeout,
            max_retries: a.max_retries,
            max_request_body: a.max_request_body,
            request_history: a.request_history,
            idle_pool_timeout: a.idle_pool_timeout,
            failure_cooldown: a.failure_cooldown,
            status_report_interval: a.status_report_interval,
            aggregate_timeout: a.aggregate_timeout,
            origins: a.origins.clone(),
            prefix_affinity: a.prefix_affinity == Switch::On,
            ..ProxyConfig::default()
        }
    }
}

impl From<ProxyArgs> for ProxyConfig {
    fn from(a: ProxyArgs) -> Self {
        ProxyConfig::from(&a)
    }
}

impl From<ProxyConfig> for ProxyArgs {
    fn from(c: ProxyConfig) -> Self {
        ProxyArgs {
            balancer: c.strategy,
            connect_timeout: c.connect_timeout,
            first_byte_timeout: c.first_byte_timeout,
            retry_on_timeout: c.retry_on_timeout,
            max_retries: c.max_retries,
            max_request_body: c.max_request_body,
            request_history: c.request_history,
            idle_pool_timeout: c.idle_pool_timeout,
            failure_cooldown: c.failure_cooldown,
            status_report_interval: c.status_report_interval,
            aggregate_timeout: c.aggregate_timeout,
            origins: c.origins,
            prefix_affinity: if c.prefix_affinity {
                Switch::On
            } else {
                Switch::Off
            },
        }
    }
}

/// Parses a byte size: `1048576`, `512KiB`, `64MiB`, `1GiB`, `10MB`, `64M`
/// (single letters and `KB`/`MB`/`GB` are taken as powers of 1024 too, as
/// nginx's `client_max_body_size` does).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 64MiB or 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("1048576", 1 << 20),
            ("64MiB", 64 << 20),
            ("64M", 64 << 20),
            ("512 KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("10mb", 10 << 20),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        for bad in ["", "MiB", "12XB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_parse_and_default_like_the_config() {
        let cli = Cli::try_parse_from(["x"]).expect("defaults parse");
        let c = ProxyConfig::from(&cli.proxy);
        let d = ProxyConfig::default();
        assert_eq!(c.strategy, d.strategy);
        assert_eq!(c.first_byte_timeout, d.first_byte_timeout);
        assert_eq!(c.max_request_body, d.max_request_body);
        assert_eq!(c.request_history, d.request_history);

        let cli = Cli::try_parse_from([
            "x",
            "--balancer",
            "round_robin",
            "--connect-timeout",
            "150ms",
            "--max-request-body",
            "1MiB",
            "--retry-on-timeout",
            "false",
        ])
        .expect("parse");
        assert_eq!(cli.proxy.balancer, Strategy::RoundRobin);
        assert_eq!(cli.proxy.connect_timeout, Duration::from_millis(150));
        assert_eq!(cli.proxy.max_request_body, 1 << 20);
        assert!(!cli.proxy.retry_on_timeout);
        assert!(Cli::try_parse_from(["x", "--balancer", "random"]).is_err());
    }
}
