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

/// Which server the fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Api {
    /// Ollama: `/api/*`, Ollama's `/v1/*` compatibility layer, and
    /// `/v1/messages` and `/v1/responses` from the versions that serve them.
    #[default]
    Ollama,
    /// An OpenAI-compatible server as llama.cpp's `llama-server` and vLLM
    /// are: `/v1/*` only (no `/api/*`), `/health`, model ids exactly as
    /// given, an optional API key, and `/v1/messages` and `/v1/responses`
    /// behind switches.
    OpenAi,
}

impl std::str::FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ollama" => Ok(Api::Ollama),
            "openai" => Ok(Api::OpenAi),
            other => Err(format!("unknown api {other:?}; expected ollama or openai")),
        }
    }
}

/// The first Ollama release that serves the OpenAI Responses API.
pub(crate) const OLLAMA_RESPONSES_SINCE: (u64, u64, u64) = (0, 13, 3);
/// The first Ollama release that serves the Anthropic Messages API.
pub(crate) const OLLAMA_MESSAGES_SINCE: (u64, u64, u64) = (0, 14, 0);

/// Whether Ollama `version` is at least `since`. A version that does not
/// parse (a development build such as `0.0.0-dev` parses; `main` does
/// not) counts as the newest.
pub(crate) fn version_at_least(version: &str, since: (u64, u64, u64)) -> bool {
    let core = version
        .trim()
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or("");
    let mut parts = core.split('.').map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => (a, b, c) >= since,
        _ => true,
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub api: Api,
    /// OpenAI mode: the bearer token (or `x-api-key`) every request but
    /// `/health` must carry.
    pub api_key: Option<String>,
    /// OpenAI mode: whether `/v1/messages` is served.
    pub native_messages: bool,
    /// OpenAI mode: whether `/v1/responses` is served.
    pub native_responses: bool,
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

impl Config {
    /// Whether `/v1/messages` answers (else 404 as the server would).
    pub(crate) fn serves_messages(&self) -> bool {
        match self.api {
            Api::Ollama => version_at_least(&self.version, OLLAMA_MESSAGES_SINCE),
            Api::OpenAi => self.native_messages,
        }
    }

    /// Whether `/v1/responses` answers.
    pub(crate) fn serves_responses(&self) -> bool {
        match self.api {
            Api::Ollama => version_at_least(&self.version, OLLAMA_RESPONSES_SINCE),
            Api::OpenAi => self.native_responses,
        }
    }
}

impl Default for Config {
    /// Fast but not instant: tests in other crates see real streaming (eight
    /// tokens 10 ms apart) without slowing the suite down.
    fn default() -> Self {
        Config {
            api: Api::Ollama,
            api_key: None,
            native_messages: true,
            native_responses: true,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_gate_like_ollama_releases() {
        let cases = [
            ("0.13.2", OLLAMA_RESPONSES_SINCE, false),
            ("0.13.3", OLLAMA_RESPONSES_SINCE, true),
            ("v0.13.10", OLLAMA_RESPONSES_SINCE, true),
            ("0.13.5", OLLAMA_MESSAGES_SINCE, false),
            ("0.14.0-rc1", OLLAMA_MESSAGES_SINCE, true),
            ("0.33.0", OLLAMA_MESSAGES_SINCE, true),
            ("1.0.0", OLLAMA_MESSAGES_SINCE, true),
            ("0.0.0", OLLAMA_MESSAGES_SINCE, false),
            ("main", OLLAMA_MESSAGES_SINCE, true),
        ];
        for (v, since, want) in cases {
            assert_eq!(version_at_least(v, since), want, "{v} >= {since:?}");
        }
    }
}
