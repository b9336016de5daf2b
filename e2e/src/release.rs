//! A local release site laid out like Ollama's GitHub releases, whose Linux
//! archive holds `fake-ollama` as `bin/ollama`, with a `sha256sum.txt`, so a
//! nodelet installs "Ollama" through its real download → verify → unpack →
//! start path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The release tag served (and "latest").
pub const TAG: &str = "v0.33.0";

/// The asset name the nodelet asks for on this machine.
pub fn asset_name() -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    format!("ollama-linux-{arch}.tar.zst")
}

/// The archive (`./bin/ollama` = fake-ollama, `./lib/ollama/…`), zstd
/// compressed; built once per test process.
pub fn archive() -> Bytes {
    static ARCHIVE: OnceLock<Bytes> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let binary = std::fs::read(crate::bins::fake_ollama()).expect("read fake-ollama");
            let mut builder = tar::Builder::new(Vec::new());
            for dir in ["./", "./bin/", "./lib/", "./lib/ollama/"] {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder
                    .append_data(&mut h, dir, std::io::empty())
                    .expect("dir entry");
            }
            let mut file = |path: &str, data: &[u8], mode: u32| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, data).expect("file entry");
            };
            file("./bin/ollama", &binary, 0o755);
            file(
                "./lib/ollama/libggml-base.so",
                b"not really a library",
                0o644,
            );
            let tar = builder.into_inner().expect("tar");
            Bytes::from(ruzstd::encoding::compress_to_vec(
                tar.as_slice(),
                ruzstd::encoding::CompressionLevel::Fastest,
            ))
        })
        .clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Site {
    files: HashMap<String, Bytes>,
    downloads: AtomicU64,
}

/// The release site on 127.0.0.1.
pub struct ReleaseServer {
    /// The base to pass as `--download-base-url`.
    pub base: String,
    site: Arc<Site>,
    task: tokio::task::JoinHandle<()>,
}

impl ReleaseServer {
    pub async fn start() -> ReleaseServer {
        let archive = archive();
        let asset = asset_name();
        let sums = format!(
            "{}  ./ollama-darwin.tgz\n{}  ./{asset}\n",
            sha256_hex(b"another asset"),
            sha256_hex(&archive)
        );
        let mut files = HashMap::new();
        files.insert(format!("/download/{TAG}/{asset}"), archive);
        files.insert(format!("/download/{TAG}/sha256sum.txt"), Bytes::from(sums));
        let site = Arc::new(Site {
            files,
            downloads: AtomicU64::new(0),
        });
        let app = axum::Router::new().fallback(serve).with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ReleaseServer {
            base: format!("http://{addr}"),
            site,
            task,
        }
    }

    /// Archives served in full so far.
    pub fn downloads(&self) -> u64 {
        self.site.downloads.load(Ordering::Relaxed)
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(site): State<Arc<Site>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if let Some(file) = path.strip_prefix("/latest/download/") {
        return (
            StatusCode::FOUND,
            [(header::LOCATION, format!("/download/{TAG}/{file}"))],
        )
            .into_response();
    }
    match site.files.get(&path) {
        Some(bytes) => {
            if path.ends_with(".tar.zst") {
                site.downloads.fetch_add(1, Ordering::Relaxed);
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes.clone()))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
