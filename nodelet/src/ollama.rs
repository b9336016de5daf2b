//! The few calls the nodelet makes to its local Ollama: is it there (`GET /`), what is
//! it (`/api/version`), what does it hold (`/api/tags`), what is loaded (`/api/ps`),
//! and pull a model (`POST /api/pull`, streamed).
//!
//! This is the I/O shell; the wire types it reads are `herd_client::ollama`'s, shared
//! with the proxy. Every answer is checked: a status other than 200 or a body that is not what Ollama
//! sends is an error that says which endpoint misbehaved and how, because that text
//! ends up in the node's `OllamaRunning` condition for an operator to read.

use std::time::Duration;

use futures_util::StreamExt;
use herd_client::ndjson::LineSplitter;

use herd_client::ollama::{ErrorBody, PullLine, VersionResponse};
use reqwest::Url;
use serde::Deserialize;

/// Largest status body read from Ollama; a real `/api/tags` is a few kilobytes.
const MAX_BODY: usize = 4 << 20;
/// Longest line of a pull stream.
const MAX_PULL_LINE: usize = 64 << 10;

/// How a call to the local Ollama failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection (refused, reset, DNS).
    #[error("{method} {path}: cannot connect to Ollama at {url}: {error}")]
    Unreachable {
        method: &'static str,
        path: String,
        url: String,
        error: String,
    },
    /// Connected, but no complete answer in time.
    #[error("{method} {path}: no answer from Ollama within {timeout:?}")]
    TimedOut {
        method: &'static str,
        path: String,
        timeout: Duration,
    },
    /// Answered with an error status.
    #[error("{method} {path} answered {code}{}", detail(.message))]
    Status {
        method: &'static str,
        path: String,
        code: u16,
        message: String,
    },
    /// A stream that had started reported an error (`{"error": "..."}` line).
    #[error("{method} {path} failed: {message}")]
    Stream {
        method: &'static str,
        path: String,
        message: String,
    },
    /// Answered 200 with something Ollama would not send.
    #[error("{method} {path} answered with an unexpected body: {error}")]
    BadBody {
        method: &'static str,
        path: String,
        error: String,
    },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// One model of `/api/tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TagModel {
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: String,
}

/// One model of `/api/ps`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PsModel {
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub digest: String,
}

#[derive(Deserialize)]
struct ModelList<T> {
    models: Vec<T>,
}

/// What one look at Ollama found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub version: Result<String, ProbeError>,
    pub tags: Result<Vec<TagModel>, ProbeError>,
    pub ps: Result<Vec<PsModel>, ProbeError>,
}

impl Probe {
    /// The first failure, if any: Ollama is running only when every call worked.
    pub fn error(&self) -> Option<&ProbeError> {
        self.version
            .as_ref()
            .err()
            .or(self.tags.as_ref().err())
            .or(self.ps.as_ref().err())
    }
}

/// A client of the local Ollama.
#[derive(Clone, Debug)]
pub struct OllamaClient {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl OllamaClient {
    /// `timeout` bounds each status call; a pull is bounded only by `stall_timeout`
    /// of silence. Proxies are never used: Ollama is on this machine.
    pub fn new(
        base: Url,
        timeout: Duration,
        stall_timeout: Duration,
    ) -> Result<OllamaClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .read_timeout(stall_timeout)
            .user_agent(concat!("herd-nodelet/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(2)
            .build()?;
        Ok(OllamaClient {
            base,
            http,
            timeout,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    fn send_error(&self, method: &'static str, path: &str, e: &reqwest::Error) -> ProbeError {
        if e.is_timeout() {
            ProbeError::TimedOut {
                method,
                path: path.to_owned(),
                timeout: self.timeout,
            }
        } else {
            ProbeError::Unreachable {
                method,
                path: path.to_owned(),
                url: self.base.to_string(),
                error: error_chain(e),
            }
        }
    }

    /// GET `path` and return its body when the answer is 200.
    async fn get(&self, path: &str) -> Result<Vec<u8>, ProbeError> {
        let response = self
            .http
            .get(self.url(path))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.send_error("GET", path, &e))?;
        let status = response.status();
        let body = read_limited(response, MAX_BODY)
            .await
            .map_err(|e| self.send_error("GET", path, &e))?;
        if status != reqwest::StatusCode::OK {
            return Err(ProbeError::Status {
                method: "GET",
                path: path.to_owned(),
                code: status.as_u16(),
                message: error_message(&body),
            });
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ProbeError> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).map_err(|e| ProbeError::BadBody {
            method: "GET",
            path: path.to_owned(),
            error: e.to_string(),
        })
    }

    /// `GET /`: answers 200 once `ollama serve` is ready.
    pub async fn root(&self) -> Result<(), ProbeError> {
        self.get("/").await.map(drop)
    }

    pub async fn version(&self) -> Result<String, ProbeError> {
        self.get_json::<VersionResponse>("/api/version")
            .await
            .map(|v| v.version)
    }

    pub async fn tags(&self) -> Result<Vec<TagModel>, ProbeError> {
        self.get_json::<ModelList<TagModel>>("/api/tags")
            .await
            .map(|l| l.models)
    }

    pub async fn ps(&self) -> Result<Vec<PsModel>, ProbeError> {
        self.get_json::<ModelList<PsModel>>("/api/ps")
            .await
            .map(|l| l.models)
    }

    /// Version, tags and loaded models, asked at once.
    pub async fn probe(&self) -> Probe {
        let (version, tags, ps) = tokio::join!(self.version(), self.tags(), self.ps());
        Probe { version, tags, ps }
    }

    /// Pulls `model`, calling `progress` with every line of the stream. Succeeds only
    /// when Ollama says `success`.
    pub async fn pull(
        &self,
        model: &str,
        mut progress: impl FnMut(&PullLine),
    ) -> Result<(), ProbeError> {
        const PATH: &str = "/api/pull";
        let response = self
            .http
            .post(self.url(PATH))
            .json(&serde_json::json!({"model": model, "stream": true}))
            .send()
            .await
            .map_err(|e| self.send_error("POST", PATH, &e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = read_limited(response, MAX_BODY).await.unwrap_or_default();
            return Err(ProbeError::Status {
                method: "POST",
                path: PATH.to_owned(),
                code: status.as_u16(),
                message: error_message(&body),
            });
        }
        let bad = |error: String| ProbeError::BadBody {
            method: "POST",
            path: PATH.to_owned(),
            error,
        };
        let mut stream = response.bytes_stream();
        let mut lines = LineSplitter::new(MAX_PULL_LINE);
        let mut succeeded = false;
        let mut handle = |line: &[u8]| -> Result<(), ProbeError> {
            let parsed: PullLine = serde_json::from_slice(line)
                .map_err(|e| bad(format!("{e} in {:?}", lossy(line))))?;
            if let Some(message) = parsed.error_message() {
                return Err(ProbeError::Stream {
                    method: "POST",
                    path: PATH.to_owned(),
                    message,
                });
            }
            succeeded |= parsed.is_success();
            progress(&parsed);
            Ok(())
        };
        let too_long = |e: herd_client::ndjson::LineTooLong| bad(format!("a {e}"));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.send_error("POST", PATH, &e))?;
            lines.push(&chunk);
            while let Some(line) = lines.next_line().map_err(too_long)? {
                handle(&line)?;
            }
        }
        if let Some(last) = lines.finish().map_err(too_long)? {
            handle(&last)?;
        }
        if succeeded {
            Ok(())
        } else {
            Err(bad("the stream ended before \"success\"".to_owned()))
        }
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// Ollama's `{"error": "..."}`, or the body itself (shortened) when it is not that.
fn error_message(body: &[u8]) -> String {
    match ErrorBody::parse_message(body) {
        Some(message) => message,
        None => {
            let text = lossy(body.trim_ascii());
            if text.chars().count() > 200 {
                format!("{}…", text.chars().take(200).collect::<String>())
            } else {
                text
            }
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The error and its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The URL to reach an Ollama configured at `url` from this machine: an all-interfaces
/// host (`0.0.0.0`, `::`) is reached through loopback.
pub fn local_url(url: &Url) -> Url {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut local = url.clone();
    let loopback = match crate::advertise::url_host(url) {
        Some(crate::advertise::Host::Ip(IpAddr::V4(ip))) if ip.is_unspecified() => {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        Some(crate::advertise::Host::Ip(IpAddr::V6(ip))) if ip.is_unspecified() => {
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        }
        _ => None,
    };
    if let Some(ip) = loopback {
        // Only URLs that cannot carry a host refuse, and these have one.
        let _ = local.set_ip_host(ip);
    }
    local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_table() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"error":"boom"}"#, "boom"),
            (b"plain text\n", "plain text"),
            (b"", ""),
        ];
        for (body, want) in cases {
            assert_eq!(error_message(body), *want);
        }
        let long = "x".repeat(500);
        assert_eq!(error_message(long.as_bytes()).chars().count(), 201);
    }

    #[test]
    fn probe_errors_read_well() {
        let e = ProbeError::Status {
            method: "GET",
            path: "/api/tags".into(),
            code: 500,
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "GET /api/tags answered 500: boom");
        let e = ProbeError::Status {
            method: "GET",
            path: "/api/ps".into(),
            code: 403,
            message: String::new(),
        };
        assert_eq!(e.to_string(), "GET /api/ps answered 403");
    }

    #[test]
    fn local_url_table() {
        let cases = [
            ("http://0.0.0.0:11434/", "http://127.0.0.1:11434/"),
            ("http://[::]:11434/", "http://[::1]:11434/"),
            ("http://127.0.0.1:11434/", "http://127.0.0.1:11434/"),
            ("http://gpu-box:11434/", "http://gpu-box:11434/"),
        ];
        for (input, want) in cases {
            let got = local_url(&Url::parse(input).expect("url"));
            assert_eq!(got.as_str(), want);
        }
    }

    #[test]
    fn urls_keep_a_path_prefix() {
        let c = OllamaClient::new(
            Url::parse("http://127.0.0.1:1/ollama/").expect("url"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client");
        assert_eq!(
            c.url("/api/tags").as_str(),
            "http://127.0.0.1:1/ollama/api/tags"
        );
        assert_eq!(c.url("/").as_str(), "http://127.0.0.1:1/ollama/");
    }

    /// Serves `body` (sent in `chunks`-byte pieces) with `status` for every request.
    async fn serve(status: u16, body: &'static str, chunk: usize) -> OllamaClient {
        use axum::body::Body;
        let app = axum::Router::new().fallback(move || async move {
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
                .as_bytes()
                .chunks(chunk)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            axum::response::Response::builder()
                .status(status)
                .body(Body::from_stream(futures_util::stream::iter(pieces)))
                .expect("response")
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OllamaClient::new(
            Url::parse(&format!("http://{addr}")).expect("url"),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .expect("client")
    }

    #[tokio::test]
    async fn pull_streams_table() {
        const OK: &str = "{\"status\":\"pulling manifest\"}\n{\"status\":\"pulling ab\",\"digest\":\"sha256:ab\",\"total\":10,\"completed\":4}\n{\"status\":\"success\"}\n";
        const NO_NEWLINE_AT_END: &str =
            "{\"status\":\"pulling manifest\"}\n{\"status\":\"success\"}";
        const ERROR_LINE: &str = "{\"status\":\"pulling manifest\"}\n{\"error\":\"pull model manifest: file does not exist\"}\n";
        const CUT: &str = "{\"status\":\"pulling manifest\"}\n{\"status\":\"pulling ab\",\"digest\":\"sha256:ab\",\"total\":10,\"completed\":4}\n";
        const GARBAGE: &str = "<html>\n";
        // (status, body, chunk size, lines seen, error contains)
        let cases: [(u16, &'static str, usize, usize, Option<&str>); 7] = [
            (200, OK, 1000, 3, None),
            (200, OK, 3, 3, None),
            (200, NO_NEWLINE_AT_END, 7, 2, None),
            (
                200,
                ERROR_LINE,
                5,
                1,
                Some("POST /api/pull failed: pull model manifest: file does not exist"),
            ),
            (200, CUT, 1000, 2, Some("ended before \"success\"")),
            (200, GARBAGE, 1000, 0, Some("unexpected body")),
            (
                404,
                "{\"error\":\"model not found\"}",
                1000,
                0,
                Some("answered 404: model not found"),
            ),
        ];
        for (status, body, chunk, want_lines, want_error) in cases {
            let client = serve(status, body, chunk).await;
            let mut lines = Vec::new();
            let result = client.pull("m", |l| lines.push(l.clone())).await;
            assert_eq!(
                lines.len(),
                want_lines,
                "{body:?} in {chunk}-byte chunks: {lines:?}"
            );
            match (result, want_error) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
                (other, want) => panic!("{body:?}: got {other:?}, want error {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn status_calls_check_what_they_get() {
        let tags = serve(
            200,
            "{\"models\":[{\"name\":\"a:1\",\"size\":5,\"digest\":\"d\"}]}",
            4,
        )
        .await;
        let got = tags.tags().await.expect("tags");
        assert_eq!((got[0].name.as_str(), got[0].size), ("a:1", 5));
        let wrong = serve(200, "{\"modelz\":[]}", 100).await;
        let err = wrong.tags().await.expect_err("wrong shape");
        assert!(matches!(err, ProbeError::BadBody { .. }), "{err}");
        let failing = serve(503, "busy", 100).await;
        assert_eq!(
            failing.version().await.expect_err("503").to_string(),
            "GET /api/version answered 503: busy"
        );
        let closed = OllamaClient::new(
            Url::parse("http://127.0.0.1:1").expect("url"),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client");
        let err = closed.root().await.expect_err("nothing listens on port 1");
        assert!(matches!(err, ProbeError::Unreachable { .. }), "{err}");
    }
}
