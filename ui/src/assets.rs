//! The dashboard's files, embedded at build time, and what is derived from
//! them once per process: a content hash for cache busting and ETags, and a
//! gzip copy of every text file.

use std::io::Write;
use std::sync::LazyLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// Every file under `web/`, by its path there. `index.html` is the page
/// template; everything else is served under `/dashboard/assets/<hash>/`.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) as &[u8])),*]
    };
}

pub(crate) const FILES: &[(&str, &[u8])] = embed![
    "index.html",
    "app.css",
    "favicon.svg",
    "js/api.js",
    "js/app.js",
    "js/events.js",
    "js/format.js",
    "js/lib.js",
    "js/models.js",
    "js/nodes.js",
    "js/overview.js",
    "js/requests.js",
    "js/session.js",
    "js/signin.js",
    "js/router.js",
    "js/store.js",
    "js/ui.js",
    "js/watch.js",
    "vendor/README.md",
    "vendor/LICENSE-htm.txt",
    "vendor/LICENSE-preact.txt",
    "vendor/LICENSE-uPlot.txt",
    "vendor/hooks.mjs",
    "vendor/htm.mjs",
    "vendor/preact.mjs",
    "vendor/uPlot.iife.min.js",
    "vendor/uPlot.min.css",
];

/// Where the page template names the asset directory.
const BASE_PLACEHOLDER: &str = "{{BASE}}";

/// One file as served: its bytes, and a gzip copy when that is smaller.
pub(crate) struct Asset {
    pub content_type: &'static str,
    pub raw: Vec<u8>,
    pub gzip: Option<Vec<u8>>,
    /// Quoted strong ETag of `raw`; the gzip copy's is the same with `-gz`.
    pub etag: String,
}

impl Asset {
    fn new(path: &str, raw: Vec<u8>) -> Asset {
        let content_type = content_type(path);
        let digest = Sha256::digest(&raw);
        let etag = format!("\"{}\"", hex(&digest[..12]));
        let gzip = compressible(content_type)
            .then(|| gzip(&raw))
            .filter(|gz| gz.len() + 64 < raw.len());
        Asset {
            content_type,
            raw,
            gzip,
            etag,
        }
    }

    pub(crate) fn gzip_etag(&self) -> String {
        format!("{}-gz\"", self.etag.trim_end_matches('"'))
    }
}

pub(crate) struct Assets {
    /// Hash of every embedded file, naming this build's asset directory.
    pub version: String,
    pub index: Asset,
    files: Vec<(&'static str, Asset)>,
}

impl Assets {
    pub(crate) fn get(&self, path: &str) -> Option<&Asset> {
        self.files
            .binary_search_by(|(p, _)| (*p).cmp(path))
            .ok()
            .map(|i| &self.files[i].1)
    }

    #[cfg(test)]
    pub(crate) fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.files.iter().map(|(p, _)| *p)
    }
}

pub(crate) static ASSETS: LazyLock<Assets> = LazyLock::new(|| build(FILES));

pub(crate) fn build(files: &[(&'static str, &[u8])]) -> Assets {
    let mut hasher = Sha256::new();
    for (path, bytes) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let version = hex(&hasher.finalize()[..6]);
    let base = format!("{}/assets/{version}", crate::BASE);
    let mut index = None;
    let mut assets = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        if *path == "index.html" {
            let page = String::from_utf8_lossy(bytes).replace(BASE_PLACEHOLDER, &base);
            index = Some(Asset::new(path, page.into_bytes()));
        } else {
            assets.push((*path, Asset::new(path, bytes.to_vec())));
        }
    }
    assets.sort_by(|a, b| a.0.cmp(b.0));
    Assets {
        version,
        index: index.unwrap_or_else(|| Asset::new("index.html", Vec::new())),
        files: assets,
    }
}

pub(crate) fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type == "image/svg+xml"
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 3), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(raw);
    enc.finish().unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
