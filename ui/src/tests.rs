use std::collections::BTreeSet;
use std::io::Read;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::assets::{FILES, content_type};

struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn fetch(method: Method, uri: &str, headers: &[(header::HeaderName, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = router()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(uri: &str) -> Got {
    fetch(Method::GET, uri, &[]).await
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[tokio::test]
async fn page_is_served_for_every_view_path() {
    for path in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/nodes",
        "/dashboard/nodes/",
        "/dashboard/nodes/gpu-1",
        "/dashboard/models",
        "/dashboard/requests",
        "/dashboard/events/",
    ] {
        let got = get(path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_eq!(
            got.header(header::CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(got.header(header::CACHE_CONTROL), "no-cache", "{path}");
        assert!(got.header(header::ETAG).starts_with('"'), "{path}");
        assert!(
            got.header(header::CONTENT_SECURITY_POLICY)
                .contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(got.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let html = String::from_utf8(got.body).expect("utf-8");
        assert!(!html.contains("{{BASE}}"), "placeholder left in {path}");
        assert!(
            html.contains(&format!("{}/js/app.js", asset_base())),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404() {
    for path in [
        "/dashboard/nope",
        "/dashboard/nodes/a/b",
        "/dashboard/assets",
        "/dashboard/assets/",
        "/dashboard/assets/abc",
        &format!("{}/nope.js", asset_base()),
        &format!("{}/js/nope.js", asset_base()),
        &format!("{}/index.html", asset_base()),
        &format!("{}/../Cargo.toml", asset_base()),
    ] {
        let got = get(path).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(got.header(header::CACHE_CONTROL), "no-store", "{path}");
        assert_eq!(
            got.header(header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
    }
}

#[tokio::test]
async fn every_asset_has_its_content_type_and_is_immutable() {
    let base = asset_base();
    for (path, bytes) in FILES.iter().filter(|(p, _)| *p != "index.html") {
        let got = get(&format!("{base}/{path}")).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_eq!(
            got.header(header::CONTENT_TYPE),
            content_type(path),
            "{path}"
        );
        assert_ne!(content_type(path), "application/octet-stream", "{path}");
        assert_eq!(
            got.header(header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(
            got.body, *bytes,
            "{path}: identity body without Accept-Encoding"
        );
        assert!(got.header(header::CONTENT_ENCODING).is_empty());
    }
    let js = get(&format!("{base}/js/app.js")).await;
    assert_eq!(
        js.header(header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    let css = get(&format!("{base}/app.css")).await;
    assert_eq!(css.header(header::CONTENT_TYPE), "text/css; charset=utf-8");
    let svg = get(&format!("{base}/favicon.svg")).await;
    assert_eq!(svg.header(header::CONTENT_TYPE), "image/svg+xml");
}

#[tokio::test]
async fn a_stale_asset_hash_gets_the_file_but_must_revalidate() {
    let got = get("/dashboard/assets/000000000000/js/app.js").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header(header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn gzip_when_accepted() {
    let url = format!("{}/vendor/uPlot.iife.min.js", asset_base());
    let raw = get(&url).await;
    let gz = fetch(
        Method::GET,
        &url,
        &[(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")],
    )
    .await;
    assert_eq!(gz.status, StatusCode::OK);
    assert_eq!(gz.header(header::CONTENT_ENCODING), "gzip");
    assert_eq!(gz.header(header::VARY), "accept-encoding");
    assert!(
        gz.body.len() * 2 < raw.body.len(),
        "gzip should at least halve minified JS"
    );
    assert_eq!(gunzip(&gz.body), raw.body);
    assert_ne!(gz.header(header::ETAG), raw.header(header::ETAG));

    for refused in ["gzip;q=0", "br", "identity", "*;q=0", "gzip; q=0.0, *"] {
        let got = fetch(Method::GET, &url, &[(header::ACCEPT_ENCODING, refused)]).await;
        assert!(got.header(header::CONTENT_ENCODING).is_empty(), "{refused}");
    }
    for accepted in ["*", "GZIP;q=0.5", "x-gzip"] {
        let got = fetch(Method::GET, &url, &[(header::ACCEPT_ENCODING, accepted)]).await;
        assert_eq!(got.header(header::CONTENT_ENCODING), "gzip", "{accepted}");
    }
}

#[tokio::test]
async fn conditional_get_answers_304() {
    for (url, enc) in [
        ("/dashboard".to_owned(), ""),
        (format!("{}/js/store.js", asset_base()), ""),
        (format!("{}/js/store.js", asset_base()), "gzip"),
    ] {
        let first = fetch(Method::GET, &url, &[(header::ACCEPT_ENCODING, enc)]).await;
        let etag = first.header(header::ETAG).to_owned();
        assert!(!etag.is_empty());
        let again = fetch(
            Method::GET,
            &url,
            &[
                (header::ACCEPT_ENCODING, enc),
                (header::IF_NONE_MATCH, &etag),
            ],
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{url} {enc}");
        assert!(again.body.is_empty());
        assert_eq!(again.header(header::ETAG), etag);
        assert!(!again.header(header::CACHE_CONTROL).is_empty());

        let weak = format!("\"other\", W/{etag}");
        let again = fetch(
            Method::GET,
            &url,
            &[
                (header::ACCEPT_ENCODING, enc),
                (header::IF_NONE_MATCH, &weak),
            ],
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "weak {url}");

        let other = fetch(
            Method::GET,
            &url,
            &[
                (header::ACCEPT_ENCODING, enc),
                (header::IF_NONE_MATCH, "\"other\""),
            ],
        )
        .await;
        assert_eq!(other.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let got = fetch(Method::HEAD, "/dashboard/nodes", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert!(got.body.is_empty());
}

/// Every file under `web/` is embedded, and nothing embedded is missing.
#[test]
fn every_web_file_is_embedded() {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read web/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).expect("under web/");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut on_disk = BTreeSet::new();
    walk(&root, &root, &mut on_disk);
    let embedded: BTreeSet<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
    assert_eq!(
        on_disk, embedded,
        "add new files under web/ to FILES in assets.rs"
    );
}

/// What the page and the modules refer to exists: a typo in an import or a
/// `<link>` would otherwise show only in a browser.
#[test]
fn references_resolve() {
    let known: BTreeSet<&str> = ASSETS.paths().collect();
    let page = String::from_utf8_lossy(&ASSETS.index.raw).into_owned();
    let base = format!("{}/", asset_base());
    let mut refs = 0;
    for piece in page.split(['"', '\'']) {
        if let Some(rel) = piece.strip_prefix(&base) {
            assert!(known.contains(rel), "index.html refers to missing {rel}");
            refs += 1;
        }
    }
    assert!(refs >= 5, "index.html should load the app: {page}");
    for (path, bytes) in FILES.iter().filter(|(p, _)| p.ends_with(".js")) {
        let text = String::from_utf8_lossy(bytes);
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        for line in text.lines() {
            let Some(spec) = line
                .split(" from '")
                .nth(1)
                .and_then(|s| s.split('\'').next())
            else {
                continue;
            };
            let mut parts: Vec<&str> = if dir.is_empty() {
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            for seg in spec.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            let target = parts.join("/");
            assert!(
                known.contains(target.as_str()),
                "{path} imports missing {spec}"
            );
        }
    }
}

#[test]
fn view_paths() {
    for ok in [
        "nodes", "nodes/", "nodes/x", "models", "requests", "events", "events/",
    ] {
        assert!(is_view(ok), "{ok}");
    }
    for bad in ["", "x", "nodes/a/b", "nodes//", "models/x", "assets"] {
        assert!(!is_view(bad), "{bad}");
    }
}
