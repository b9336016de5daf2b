//! The fake's behaviour knobs, shared with the running server so a test can
//! change them mid-run.

use std::time::Duration;

/// How long a model stays loaded after its last request (`keep_alive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload this long after the last request ends; zero unloads at once.
    For(Duration),
    /// Never unload (a negative `keep_alive`).
    Forever,
}

impl KeepAlive {
    pub(crate) fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    /// Parses `OLLAMA_KEEP_ALIVE` / a `keep_alive` string the way Ollama
    /// does: a Go duration (`5m`, `1h30m`, `-1s`) or a number of seconds;
    /// negative means forever. Errors carry Go's message.
    pub fn parse(s: &str) -> Result<KeepAlive, String> {
        let s = s.trim();
        let value = match s.parse::<f64>() {
            Ok(n) if n.is_finite() => serde_json::Value::from(n),
            _ => serde_json::Value::from(s),
        };
        crate::json::keep_alive(Some(&value))?
            .ok_or_else(|| format!("time: invalid duration \"{s}\""))
    }
}

/// Ollama's default `OLLAMA_KEEP_ALIVE`.
pub(crate) const DEFAULT_KEEP_ALIVE: KeepAlive = KeepAlive::For(Duration::from_secs(300));

/// The version the fake claims by default: the Ollama release the design
/// docs were checked against.
pub const DEFAULT_VERSION: &str = "0.33.0";

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub version: String,
    pub ttft: Duration,
    pub tokens_per_sec: f64,
    pub tokens: usize,
    pub num_parallel: usize,
    pub max_queue: usize,
    pub load_time: Duration,
    pub pull_duration: Duration,
    pub keep_alive: KeepAlive,
    pub host_check: bool,
    pub embedding_dim: usize,
}

impl Default for Config {
    /// Fast but not instant: tests in other crates see real streaming (eight
    /// tokens 10 ms apart) without slowing the suite down.
    fn default() -> Self {
        Config {
            version: DEFAULT_VERSION.to_owned(),
            ttft: Duration::from_millis(10),
            tokens_per_sec: 100.0,
            tokens: 8,
            num_parallel: 1,
            max_queue: 512,
            load_time: Duration::ZERO,
            pull_duration: Duration::from_millis(120),
            keep_alive: DEFAULT_KEEP_ALIVE,
            host_check: true,
            embedding_dim: 384,
        }
    }
}
