//! Shared test plumbing: a proxy-free client, time bounds, stream readers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use herd_testkit::{FakeOllama, FakeOllamaBuilder};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Every test's ceiling: a hung fake must fail the test, not the suite.
pub const LIMIT: Duration = Duration::from_secs(15);

pub async fn bounded<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("test exceeded {LIMIT:?}"),
    }
}

/// A client that never goes through an HTTP proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

pub fn fake() -> FakeOllamaBuilder {
    FakeOllama::builder().models(["llama3.2:1b", "qwen2.5:0.5b", "nomic-embed-text"])
}

pub async fn post(fake: &FakeOllama, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", fake.url()))
        .json(&body)
        .send()
        .await
        .expect("request")
}

pub async fn get(fake: &FakeOllama, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", fake.url()))
        .send()
        .await
        .expect("request")
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    let bytes = resp.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// NDJSON lines with the time each arrived, measured from `since`.
pub async fn ndjson_timed(resp: reqwest::Response, since: Instant) -> Vec<(Duration, Value)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("stream chunk");
        let at = since.elapsed();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v = serde_json::from_slice(&line).unwrap_or_else(|e| {
                panic!("bad NDJSON line ({e}): {}", String::from_utf8_lossy(&line))
            });
            out.push((at, v));
        }
    }
    assert!(
        buf.is_empty(),
        "trailing bytes without newline: {}",
        String::from_utf8_lossy(&buf)
    );
    out
}

pub async fn ndjson(resp: reqwest::Response) -> Vec<Value> {
    ndjson_timed(resp, Instant::now())
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// SSE `data:` payloads, in order (`[DONE]` included verbatim).
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("SSE body");
    assert!(
        text.ends_with("\n\n"),
        "SSE must end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without data: {e:?}"))
                .to_owned()
        })
        .collect()
}

/// Sends raw bytes and reads the whole answer (the request should carry
/// `Connection: close`). For exact control over headers such as `Host`.
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
