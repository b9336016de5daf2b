//! Streaming, resumable, retrying HTTP downloads.
//!
//! A try fails *retryably* on a connection error, a timeout, a 5xx, 408 or 429, or a
//! body cut short; anything else (404, 403, a full disk) fails at once. Between tries
//! the [`Backoff`] schedule is slept. The file is written to `<dest>.part` and renamed
//! to `<dest>` only when complete; a retry after a cut asks for the rest with
//! `Range: bytes=N-` and appends when the server answers 206, or starts over when it
//! answers 200.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncWriteExt;

use super::progress::Reporter;
use super::proxy::HttpProxySettings;
use herd_client::backoff::Backoff;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server refused in a way retrying will not fix (404, 403, …).
    #[error("{url} answered {status}{hint}")]
    Status {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    /// Every try failed.
    #[error("GET {url} failed {attempts} times; giving up. Last error: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A small file (like `sha256sum.txt`) was unreasonably large.
    #[error("GET {url} returned more than {limit} bytes; is --download-base-url right?")]
    TooLarge { url: String, limit: usize },
    /// The HTTP client could not be set up.
    #[error("could not set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Settings shared by every request of an install.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub proxy: HttpProxySettings,
    pub connect_timeout: Duration,
    /// How long a response may stay silent before the try counts as failed.
    pub read_timeout: Duration,
    pub retry: Backoff,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            proxy: HttpProxySettings::none(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retry: Backoff::DOWNLOAD,
        }
    }
}

/// Builds a client that uses exactly the proxies of `settings.proxy` (the process
/// environment is not consulted) and follows redirects or not.
pub fn http_client(
    settings: &HttpSettings,
    follow_redirects: bool,
) -> Result<reqwest::Client, DownloadError> {
    let proxy = settings.proxy.clone();
    let redirect = if follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .user_agent(concat!("herd-nodelet/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .proxy(reqwest::Proxy::custom(move |url| {
            proxy.proxy_for(url).cloned()
        }))
        .redirect(redirect)
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .build()
        .map_err(DownloadError::Client)
}

/// What one try of a request came to.
enum TryError {
    /// Worth another try, for this reason.
    Retry(String),
    /// Final.
    Fatal(DownloadError),
}

/// Counts tries and sleeps between them.
struct Tries<'a> {
    url: &'a Url,
    policy: &'a Backoff,
    attempt: u32,
}

impl<'a> Tries<'a> {
    fn new(url: &'a Url, policy: &'a Backoff) -> Tries<'a> {
        Tries {
            url,
            policy,
            attempt: 0,
        }
    }

    fn next_attempt(&mut self) -> u32 {
        self.attempt += 1;
        self.attempt
    }

    /// After a retryable failure: sleeps and returns `Ok` when another try is allowed.
    async fn after_failure(
        &self,
        reason: String,
        reporter: Option<&mut Reporter>,
    ) -> Result<(), DownloadError> {
        if !self.policy.allows_another(self.attempt) {
            return Err(DownloadError::GaveUp {
                url: self.url.to_string(),
                attempts: self.attempt,
                last: reason,
            });
        }
        let delay = self.policy.jittered_delay(self.attempt, &mut rand::rng());
        match reporter {
            Some(r) => r.retrying(&reason, delay),
            None => {
                tracing::warn!(url = %self.url, attempt = self.attempt, retry_in_ms = delay.as_millis() as u64, error = %reason, "request failed; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The outcome of a completed download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub bytes: u64,
    /// The URL after redirects.
    pub final_url: Url,
    pub attempts: u32,
}

/// `<dest>.part`: where a download in progress lives.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `url` to `dest`, streaming through `<dest>.part`, with retries and resume.
pub(crate) async fn download_file(
    client: &reqwest::Client,
    url: &Url,
    dest: &Path,
    policy: &Backoff,
    reporter: &mut Reporter,
) -> Result<Downloaded, DownloadError> {
    let part = part_path(dest);
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DownloadError::Write { path, source }
    };
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(write_error(parent))?;
    }
    // A .part left by an earlier process may belong to another release; start clean.
    tokio::fs::File::create(&part)
        .await
        .map_err(write_error(&part))?;
    // Shown to people: the name the server knows the file by, not our on-disk name.
    let file_name = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .or_else(|| dest.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut have: u64 = 0;
    let mut tries = Tries::new(url, policy);
    loop {
        let attempt = tries.next_attempt();
        match download_try(client, url, &part, &mut have, &file_name, attempt, reporter).await {
            Ok(final_url) => {
                tokio::fs::rename(&part, dest)
                    .await
                    .map_err(write_error(dest))?;
                reporter.download_finished();
                return Ok(Downloaded {
                    path: dest.to_owned(),
                    bytes: have,
                    final_url,
                    attempts: attempt,
                });
            }
            Err(TryError::Fatal(e)) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
            Err(TryError::Retry(reason)) => {
                if let Err(e) = tries.after_failure(reason, Some(reporter)).await {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(e);
                }
            }
        }
    }
}

/// One try: asks for the rest of the file when `*have > 0`, appends or starts over as
/// the server allows, and keeps `*have` equal to the bytes in `part`.
async fn download_try(
    client: &reqwest::Client,
    url: &Url,
    part: &Path,
    have: &mut u64,
    file_name: &str,
    attempt: u32,
    reporter: &mut Reporter,
) -> Result<Url, TryError> {
    let write_error = |source| {
        TryError::Fatal(DownloadError::Write {
            path: part.to_owned(),
            source,
        })
    };
    let mut request = client.get(url.clone());
    if *have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = request.send().await.map_err(|e| classify(url, e))?;
    let status = response.status();
    let final_url = response.url().clone();
    let content_range = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range);
    let append = match status {
        StatusCode::PARTIAL_CONTENT if *have > 0 => match content_range {
            Some(range) if range.start == Some(*have) => true,
            _ => {
                truncate(part, have).await.map_err(write_error)?;
                return Err(TryError::Retry(format!(
                    "{url} resumed at another offset than the {have} bytes already on disk; starting over"
                )));
            }
        },
        StatusCode::RANGE_NOT_SATISFIABLE if *have > 0 => {
            let complete = content_range.and_then(|r| r.total) == Some(*have);
            if complete {
                return Ok(final_url);
            }
            truncate(part, have).await.map_err(write_error)?;
            return Err(TryError::Retry(format!(
                "{url} cannot resume at byte {have}; starting over"
            )));
        }
        s if s.is_success() => false,
        s => return Err(status_error(url, s)),
    };
    if !append && *have > 0 {
        tracing::info!(%url, discarded = *have, "server does not resume downloads; starting over");
        truncate(part, have).await.map_err(write_error)?;
    }
    let total = match (
        append,
        content_range.and_then(|r| r.total),
        response.content_length(),
    ) {
        (true, Some(total), _) => Some(total),
        (true, None, Some(len)) => Some(*have + len),
        (false, _, len) => len,
        (true, None, None) => None,
    };
    reporter.download_started(file_name, attempt, *have, total);

    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(part)
        .await
        .map_err(write_error)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut body = response.bytes_stream();
    let mut cut: Option<String> = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                out.write_all(&bytes).await.map_err(write_error)?;
                *have += bytes.len() as u64;
                reporter.advance(bytes.len() as u64);
            }
            Err(e) => {
                cut = Some(format!(
                    "the body of {url} was cut short after {have} bytes: {}",
                    chain(&e)
                ));
                break;
            }
        }
    }
    out.flush().await.map_err(write_error)?;
    out.into_inner().sync_all().await.map_err(write_error)?;
    if let Some(reason) = cut {
        return Err(TryError::Retry(reason));
    }
    if let Some(total) = total
        && *have < total
    {
        return Err(TryError::Retry(format!(
            "the connection to {url} closed after {have} of {total} bytes"
        )));
    }
    Ok(final_url)
}

async fn truncate(part: &Path, have: &mut u64) -> std::io::Result<()> {
    tokio::fs::File::create(part).await?;
    *have = 0;
    Ok(())
}

/// Fetches a small text file (at most `limit` bytes) with retries.
pub(crate) async fn fetch_text(
    client: &reqwest::Client,
    url: &Url,
    policy: &Backoff,
    limit: usize,
) -> Result<(String, Url), DownloadError> {
    let mut tries = Tries::new(url, policy);
    loop {
        tries.next_attempt();
        match fetch_text_try(client, url, limit).await {
            Ok(found) => return Ok(found),
            Err(TryError::Fatal(e)) => return Err(e),
            Err(TryError::Retry(reason)) => tries.after_failure(reason, None).await?,
        }
    }
}

async fn fetch_text_try(
    client: &reqwest::Client,
    url: &Url,
    limit: usize,
) -> Result<(String, Url), TryError> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| classify(url, e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(url, status));
    }
    let final_url = response.url().clone();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            TryError::Retry(format!("the body of {url} was cut short: {}", chain(&e)))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(TryError::Fatal(DownloadError::TooLarge {
                url: url.to_string(),
                limit,
            }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&body).into_owned(), final_url))
}

/// Asks `url` (HEAD) without following redirects and returns where it redirects to (resolved
/// against `url`), or `None` when the server answers it directly. `client` must not
/// follow redirects.
pub(crate) async fn redirect_target(
    client: &reqwest::Client,
    url: &Url,
    policy: &Backoff,
) -> Result<Option<Url>, DownloadError> {
    let mut tries = Tries::new(url, policy);
    loop {
        tries.next_attempt();
        let outcome = async {
            let response = client
                .head(url.clone())
                .send()
                .await
                .map_err(|e| classify(url, e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok());
                return Ok(location.and_then(|l| url.join(l).ok()));
            }
            if status.is_success() || status == StatusCode::METHOD_NOT_ALLOWED {
                return Ok(None);
            }
            Err(status_error(url, status))
        };
        match outcome.await {
            Ok(target) => return Ok(target),
            Err(TryError::Fatal(e)) => return Err(e),
            Err(TryError::Retry(reason)) => tries.after_failure(reason, None).await?,
        }
    }
}

fn status_error(url: &Url, status: StatusCode) -> TryError {
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retryable {
        return TryError::Retry(format!("GET {url} answered {status}"));
    }
    let hint = match status {
        StatusCode::NOT_FOUND => {
            " (no such release file: check --ollama-version and --download-base-url)"
        }
        StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
            " (access denied: check the mirror's and the proxy's credentials)"
        }
        _ => "",
    };
    TryError::Fatal(DownloadError::Status {
        url: url.to_string(),
        status,
        hint,
    })
}

/// Errors while sending or receiving are worth another try, except a request that
/// could not even be built.
fn classify(url: &Url, error: reqwest::Error) -> TryError {
    if error.is_builder() {
        return TryError::Fatal(DownloadError::Client(error));
    }
    TryError::Retry(format!("GET {url} failed: {}", chain(&error)))
}

/// An error and its causes on one line: reqwest's own message rarely says what broke.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A parsed `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: Option<u64>,
    pub total: Option<u64>,
}

/// Parses a `Content-Range` header value.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => {
            let (start, end) = r.split_once('-')?;
            let start: u64 = start.trim().parse().ok()?;
            let end: u64 = end.trim().parse().ok()?;
            if end < start {
                return None;
            }
            Some(start)
        }
    };
    Some(ContentRange { start, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_table() {
        let cases = [
            ("bytes 100-199/200", Some((Some(100), Some(200)))),
            ("bytes 0-0/1", Some((Some(0), Some(1)))),
            ("bytes 5-9/*", Some((Some(5), None))),
            ("bytes */200", Some((None, Some(200)))),
            ("bytes  7-8/9 ", Some((Some(7), Some(9)))),
            ("bytes 9-8/20", None),
            ("items 0-1/2", None),
            ("bytes 0-1", None),
            ("bytes a-b/c", None),
        ];
        for (value, expected) in cases {
            let got = parse_content_range(value).map(|r| (r.start, r.total));
            assert_eq!(got, expected, "{value:?}");
        }
    }

    #[test]
    fn status_classification_table() {
        let url = Url::parse("http://127.0.0.1:1/x").expect("url");
        let cases = [
            (500, true),
            (502, true),
            (503, true),
            (408, true),
            (429, true),
            (404, false),
            (403, false),
            (400, false),
            (410, false),
        ];
        for (code, retry) in cases {
            let status = StatusCode::from_u16(code).expect("status");
            let got = matches!(status_error(&url, status), TryError::Retry(_));
            assert_eq!(got, retry, "{code}");
        }
        match status_error(&url, StatusCode::NOT_FOUND) {
            TryError::Fatal(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("http://127.0.0.1:1/x") && msg.contains("404"),
                    "{msg}"
                );
            }
            TryError::Retry(r) => panic!("404 retried: {r}"),
        }
    }

    #[test]
    fn part_path_appends_a_suffix() {
        assert_eq!(
            part_path(Path::new("/a/b.tar.zst")),
            PathBuf::from("/a/b.tar.zst.part")
        );
    }
}
