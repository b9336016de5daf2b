//! herd's web dashboard: `/dashboard`.
//!
//! The dashboard is plain ES modules (Preact with htm, uPlot for charts,
//! both vendored with their licenses under `web/vendor/`), embedded into the
//! binary with `include_bytes!`, so `cargo build` alone yields a working
//! dashboard with no npm step. It reads the API of the same server: watch
//! streams for nodes, model assignments and events, the proxy's request
//! history feed and per-node stats.
//!
//! # Serving
//!
//! | path | answer |
//! |---|---|
//! | `/dashboard`, `/dashboard/`, `/dashboard/{nodes,models,requests,events}`, `/dashboard/nodes/{name}` | the page (`Cache-Control: no-cache`, ETag) |
//! | `/dashboard/assets/<hash>/<file>` | a file; `<hash>` names this build's files, so they are cached as `immutable` for a year. A stale hash still gets the current file, revalidated (`no-cache`). |
//! | anything else under `/dashboard/` | 404 |
//!
//! Text files are gzipped once per process (at first use) and sent
//! compressed to clients that accept gzip; `If-None-Match` gets a 304.
//! The page carries a strict Content-Security-Policy (same-origin scripts,
//! styles and connections only).
//!
//! # Composing
//!
//! [`router`] has no fallback and no state; merge it beside the API:
//! `api_router.merge(herd_ui::router())`.

mod assets;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::get;

use crate::assets::{ASSETS, Asset};

/// Where the dashboard lives.
pub const BASE: &str = "/dashboard";

/// The views the page answers for (the browser routes between them).
const VIEWS: &[&str] = &["nodes", "models", "requests", "events"];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: `/dashboard` and everything under it.
pub fn router() -> Router {
    Router::new()
        .route(BASE, get(page))
        .route(&format!("{BASE}/"), get(page))
        .route(&format!("{BASE}/{{*path}}"), get(under_base))
        .layer(axum::middleware::map_response(guard_response))
}

/// What every dashboard response carries, whatever route made it: no
/// content sniffing and no framing (clickjacking). A response with a
/// Content-Security-Policy of its own keeps it (the page's also forbids
/// framing).
pub async fn guard_response<B>(mut resp: Response<B>) -> Response<B> {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The directory this build's assets are served from, e.g.
/// `/dashboard/assets/3f9a0c12be41`.
pub fn asset_base() -> String {
    format!("{BASE}/assets/{}", ASSETS.version)
}

#[derive(Clone, Copy)]
enum Caching {
    /// Content-addressed: never changes at this URL.
    Immutable,
    /// Ask the server each time (answered with a 304 when unchanged).
    Revalidate,
}

async fn page(headers: HeaderMap) -> Response<Body> {
    serve(&ASSETS.index, &headers, Caching::Revalidate, true)
}

async fn under_base(Path(path): Path<String>, headers: HeaderMap) -> Response<Body> {
    if let Some(rest) = path.strip_prefix("assets/") {
        let Some((version, file)) = rest.split_once('/') else {
            return not_found();
        };
        return match ASSETS.get(file) {
            Some(asset) => {
                let caching = if version == ASSETS.version {
                    Caching::Immutable
                } else {
                    Caching::Revalidate
                };
                serve(asset, &headers, caching, false)
            }
            None => not_found(),
        };
    }
    if is_view(&path) {
        serve(&ASSETS.index, &headers, Caching::Revalidate, true)
    } else {
        not_found()
    }
}

/// `nodes`, `nodes/gpu-1`, `events/` …: a path the page itself routes.
fn is_view(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path.split_once('/') {
        None => VIEWS.contains(&path),
        Some(("nodes", name)) => !name.is_empty() && !name.contains('/'),
        Some(_) => false,
    }
}

fn serve(
    asset: &'static Asset,
    req: &HeaderMap,
    caching: Caching,
    is_page: bool,
) -> Response<Body> {
    let gzip = asset.gzip.as_deref().filter(|_| accepts_gzip(req));
    let etag = if gzip.is_some() {
        asset.gzip_etag()
    } else {
        asset.etag.clone()
    };
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match caching {
            Caching::Immutable => "public, max-age=31536000, immutable",
            Caching::Revalidate => "no-cache",
        }),
    );
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_page {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if if_none_match(req, &etag) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    match gzip {
        Some(gz) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            *resp.body_mut() = Body::from(gz);
        }
        None => *resp.body_mut() = Body::from(asset.raw.as_slice()),
    }
    resp
}

fn not_found() -> Response<Body> {
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether `Accept-Encoding` allows gzip (`gzip`, `x-gzip` or `*`, with a
/// non-zero q-value).
fn accepts_gzip(req: &HeaderMap) -> bool {
    let mut star = None;
    for value in req.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => return q > 0.0,
                "*" => star = Some(q > 0.0),
                _ => {}
            }
        }
    }
    star.unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` (weak comparison, as for GET).
fn if_none_match(req: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = bare(etag);
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == want)
}

#[cfg(test)]
mod tests;
