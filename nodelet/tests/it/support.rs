//! A release-shaped HTTP server, release archives built in memory, and a counting proxy.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use herd_client::backoff::Backoff;
use herd_nodelet::install::checksum::sha256_bytes;
use herd_nodelet::install::{InstallOptions, OllamaVersion, ProgressDisplay};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Runs a test body with a hard time limit.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within 30 s"),
    }
}

/// The script that stands in for `bin/ollama`.
pub fn fake_ollama_script(version: &str) -> String {
    format!("#!/bin/sh\necho \"ollama version is {version}\"\n")
}

/// A release archive in the Linux layout: `./bin/ollama`, `./lib/ollama/libggml-base.so`
/// and a symlink `./lib/ollama/libggml.so -> libggml-base.so`, as tar bytes.
pub fn release_tar(version: &str, binary_mode: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let dir = |path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        (h, path.to_owned())
    };
    let dirs = [
        dir("./"),
        dir("./bin/"),
        dir("./lib/"),
        dir("./lib/ollama/"),
    ];
    for (mut h, path) in dirs {
        builder
            .append_data(&mut h, path, std::io::empty())
            .expect("dir entry");
    }
    let mut file = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        builder.append_data(&mut h, path, data).expect("file entry");
    };
    file(
        "./bin/ollama",
        fake_ollama_script(version).as_bytes(),
        binary_mode,
    );
    file("./lib/ollama/libggml-base.so", &noise(300_000), 0o644);
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_size(0);
    builder
        .append_link(&mut link, "./lib/ollama/libggml.so", "libggml-base.so")
        .expect("symlink entry");
    builder.into_inner().expect("tar")
}

/// Incompressible bytes (xorshift), so archives have a realistic size on the wire.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip finish")
}

/// `sha256sum.txt` as Ollama publishes it (`<hex>  ./<file>`), with an unrelated line.
pub fn sums_file(entries: &[(&str, &[u8])]) -> String {
    let mut text = format!(
        "{}  ./ollama-darwin.tgz\n",
        sha256_bytes(b"some other asset")
    );
    for (name, bytes) in entries {
        text.push_str(&format!("{}  ./{name}\n", sha256_bytes(bytes)));
    }
    text
}

/// The files of one release as the server serves them: the archive and its sums.
pub fn release_files(tag: &str, asset: &str, archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("/download/{tag}/{asset}"), archive.to_vec()),
        (
            format!("/download/{tag}/sha256sum.txt"),
            sums_file(&[(asset, archive)]).into_bytes(),
        ),
    ]
}

/// How the release server misbehaves.
#[derive(Default)]
pub struct Behaviour {
    /// Path → statuses to answer (one per request) before serving it properly.
    pub failures: HashMap<String, VecDeque<u16>>,
    /// Path → cut the next full answer after this many body bytes (once).
    pub cut_after: HashMap<String, usize>,
    /// Answer 200 with the whole file even when asked for a range.
    pub ignore_range: bool,
    /// `/latest/download/<file>` redirects to `/download/<tag>/<file>`.
    pub latest_tag: Option<String>,
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

struct ServerState {
    files: HashMap<String, Bytes>,
    behaviour: Mutex<Behaviour>,
    seen: Mutex<Vec<Seen>>,
}

/// A release site on 127.0.0.1.
pub struct ReleaseServer {
    pub base: Url,
    state: Arc<ServerState>,
}

impl ReleaseServer {
    pub async fn start(files: Vec<(String, Vec<u8>)>, behaviour: Behaviour) -> ReleaseServer {
        let state = Arc::new(ServerState {
            files: files
                .into_iter()
                .map(|(p, b)| (p, Bytes::from(b)))
                .collect(),
            behaviour: Mutex::new(behaviour),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let base = Url::parse(&format!("http://{addr}")).expect("base url");
        ReleaseServer { base, state }
    }

    pub fn addr(&self) -> String {
        format!(
            "{}:{}",
            self.base.host_str().unwrap_or_default(),
            self.base.port().unwrap_or_default()
        )
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Requests (any method) for `path`.
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

async fn serve(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.seen.lock().expect("lock").push(Seen {
        method,
        path: path.clone(),
        range: range.clone(),
    });

    let mut behaviour = state.behaviour.lock().expect("lock");
    if let (Some(tag), Some(file)) = (
        &behaviour.latest_tag,
        path.strip_prefix("/latest/download/"),
    ) {
        let location = format!("/download/{tag}/{file}");
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    let Some(file) = state.files.get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    if let Some(code) = behaviour
        .failures
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
    {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "injected failure").into_response();
    }
    let start = match (&range, behaviour.ignore_range) {
        (Some(r), false) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
        _ => None,
    };
    let total = file.len();
    if let Some(start) = start {
        if start >= total {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
        let mut response = Response::new(Body::from(file.slice(start..)));
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{}/{total}", total - 1)),
        );
        headers.insert(
            header::CONTENT_LENGTH,
            header_value(&(total - start).to_string()),
        );
        return response;
    }
    if let Some(cut) = behaviour.cut_after.remove(&path) {
        // Promise the whole file, send part of it, then break the connection.
        // The pause lets the first part reach the client before the connection breaks.
        let first = file.slice(..cut.min(total));
        let stream = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(first)]).chain(
            futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected cut",
                ))
            }),
        );
        let mut response = Response::new(Body::from_stream(stream));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header_value(&total.to_string()));
        return response;
    }
    drop(behaviour);
    let mut response = Response::new(Body::from(file));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header_value(&total.to_string()));
    response
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header value")
}

/// Install options for tests: linux/amd64, the local server, millisecond retries, no
/// local progress display.
pub fn test_options(install_dir: &Path, base: &Url, version: &str) -> InstallOptions {
    let mut options = InstallOptions::new(install_dir);
    options.os = "linux".into();
    options.arch = "x86_64".into();
    options.version = OllamaVersion::parse(version).expect("version");
    options.download_base_url = base.clone();
    options.display = ProgressDisplay::Hidden;
    options.http.connect_timeout = Duration::from_secs(5);
    options.http.read_timeout = Duration::from_secs(5);
    options.with_retry(Backoff::DOWNLOAD.with_base(Duration::from_millis(1)))
}

/// A plain HTTP forward proxy that also tunnels `CONNECT`, counting both.
pub struct CountingProxy {
    pub url: Url,
    forwarded: Arc<Mutex<Vec<String>>>,
    connects: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicUsize>,
}

impl CountingProxy {
    pub async fn start() -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let connects = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (f, c, a) = (forwarded.clone(), connects.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(proxy_connection(stream, f.clone(), c.clone()));
            }
        });
        CountingProxy {
            url: Url::parse(&format!("http://{addr}")).expect("url"),
            forwarded,
            connects,
            accepted,
        }
    }

    /// Absolute URLs of the plain requests it forwarded.
    pub fn forwarded(&self) -> Vec<String> {
        self.forwarded.lock().expect("lock").clone()
    }

    /// `host:port` of every CONNECT.
    pub fn connects(&self) -> Vec<String> {
        self.connects.lock().expect("lock").clone()
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn proxy_connection(
    mut client: TcpStream,
    forwarded: Arc<Mutex<Vec<String>>>,
    connects: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if method == "CONNECT" {
        connects.lock().expect("lock").push(target.to_owned());
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let _ = upstream.write_all(&rest).await;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    forwarded.lock().expect("lock").push(target.to_owned());
    let Ok(url) = Url::parse(target) else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let Ok(mut upstream) = TcpStream::connect(authority).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let mut origin_form = url.path().to_owned();
    if let Some(q) = url.query() {
        origin_form.push('?');
        origin_form.push_str(q);
    }
    let mut out = format!("{method} {origin_form} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" && name != "keep-alive" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // One request per connection, so every request is seen (and counted) here.
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).await.is_err() || upstream.write_all(&rest).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Names in a directory, sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
