//! Requests from web pages in a browser (CORS), answered on the Ollama and
//! OpenAI paths the way Ollama answers them: Ollama runs gin-contrib/cors
//! with its own allow-list (`OLLAMA_ORIGINS` plus `localhost`, `127.0.0.1`
//! and `0.0.0.0` on any port, and the `app:`, `file:`, `tauri:`,
//! `vscode-webview:` and `vscode-file:` schemes).
//!
//! - no `Origin`, or the page is on this very host: nothing to do;
//! - an origin not on the list: 403 with an empty body, for the preflight
//!   and for the request itself;
//! - a preflight (`OPTIONS`) from an allowed origin: 204 with the allowed
//!   methods and headers, cached 12 hours;
//! - any other request from an allowed origin: served, with
//!   `Access-Control-Allow-Origin` naming the origin.
//!
//! herd answers for the fleet and does not pass `Origin` on: a node would
//! otherwise judge the page by its own list and add its own
//! `Access-Control-Allow-Origin`, which browsers reject when doubled.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::middleware::Next;
use std::sync::Arc;

/// The origins Ollama allows without `OLLAMA_ORIGINS`.
fn default_origins() -> Vec<String> {
    let mut all = Vec::new();
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for scheme in ["http", "https"] {
            all.push(format!("{scheme}://{host}"));
            all.push(format!("{scheme}://{host}:*"));
        }
    }
    for scheme in ["app", "file", "tauri", "vscode-webview", "vscode-file"] {
        all.push(format!("{scheme}://*"));
    }
    all
}

/// Methods a preflight may ask for (gin-contrib/cors's default list).
const ALLOW_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS";

/// Request headers a page may send (Ollama's list, with the OpenAI SDKs').
const ALLOW_HEADERS: &str = "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,\
OpenAI-Beta,x-stainless-arch,x-stainless-async,x-stainless-custom-poll-interval,\
x-stainless-helper-method,x-stainless-lang,x-stainless-os,x-stainless-package-version,\
x-stainless-poll-helper,x-stainless-retry-count,x-stainless-runtime,\
x-stainless-runtime-version,x-stainless-timeout";

/// How long a browser may cache a preflight answer: 12 hours.
const MAX_AGE: &str = "43200";

/// The allowed origins: exact ones and patterns with one `*`.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    patterns: Vec<String>,
}

impl Origins {
    /// Ollama's defaults plus `extra` (each an origin such as
    /// `https://chat.example.com`, or a pattern with `*` such as
    /// `chrome-extension://*` or `*`).
    pub(crate) fn new(extra: &[String]) -> Origins {
        let mut patterns: Vec<String> = extra
            .iter()
            .map(|o| o.trim().to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        patterns.extend(default_origins());
        Origins { patterns }
    }

    pub(crate) fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.patterns.iter().any(|p| match p.split_once('*') {
            None => *p == origin,
            Some((prefix, suffix)) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix)
                    && origin.ends_with(suffix)
            }
        })
    }
}

/// What to do with a request, by its method, `Origin` and `Host`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not a cross-origin request.
    Pass,
    /// From an origin not on the list.
    Forbidden,
    /// A preflight from an allowed origin.
    Preflight,
    /// A request from an allowed origin.
    Allow,
}

pub(crate) fn decide(
    origins: &Origins,
    method: &Method,
    origin: Option<&str>,
    host: Option<&str>,
) -> Decision {
    let Some(origin) = origin.filter(|o| !o.is_empty()) else {
        return Decision::Pass;
    };
    if let Some(host) = host
        && (origin.strip_prefix("http://") == Some(host)
            || origin.strip_prefix("https://") == Some(host))
    {
        return Decision::Pass;
    }
    if !origins.allows(origin) {
        Decision::Forbidden
    } else if method == Method::OPTIONS {
        Decision::Preflight
    } else {
        Decision::Allow
    }
}

/// Whether `path` is one of Ollama's (and OpenAI's) rather than herd's own.
fn ollama_path(path: &str) -> bool {
    path == "/" || path.starts_with("/api/") || path.starts_with("/v1/")
}

/// The middleware on the proxy's routes.
pub(crate) async fn layer(
    State(origins): State<Arc<Origins>>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    if !ollama_path(req.uri().path()) {
        return next.run(req).await;
    }
    // Taken off the request in every case: the fleet answers, not each
    // node (see the module's note).
    let Some(origin) = req.headers_mut().remove(header::ORIGIN) else {
        return next.run(req).await;
    };
    let decision = decide(
        &origins,
        req.method(),
        origin.to_str().ok(),
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    );
    match decision {
        Decision::Pass => next.run(req).await,
        Decision::Forbidden => status(StatusCode::FORBIDDEN),
        Decision::Preflight => {
            let mut r = status(StatusCode::NO_CONTENT);
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
            h.insert(
                header::VARY,
                HeaderValue::from_static(
                    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                ),
            );
            r
        }
        Decision::Allow => {
            let mut r = next.run(req).await;
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.append(header::VARY, HeaderValue::from_static("Origin"));
            r
        }
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollamas_default_origins_and_extra_patterns() {
        let defaults = Origins::new(&[]);
        let extra = Origins::new(&[
            "https://chat.example.com".to_owned(),
            " chrome-extension://* ".to_owned(),
        ]);
        let any = Origins::new(&["*".to_owned()]);
        // (origin, allowed by default, with the extra list, with "*")
        let cases: &[(&str, bool, bool, bool)] = &[
            ("http://localhost", true, true, true),
            ("http://localhost:3000", true, true, true),
            ("https://127.0.0.1:8443", true, true, true),
            ("http://0.0.0.0:8080", true, true, true),
            ("HTTP://LOCALHOST:3000", true, true, true),
            ("app://obsidian.md", true, true, true),
            ("tauri://localhost", true, true, true),
            ("vscode-webview://abc", true, true, true),
            ("http://localhost.evil.com", false, false, true),
            ("http://evil.com", false, false, true),
            ("https://chat.example.com", false, true, true),
            ("https://chat.example.com:444", false, false, true),
            ("chrome-extension://abcdef", false, true, true),
            ("null", false, false, true),
        ];
        for (origin, d, e, a) in cases {
            assert_eq!(defaults.allows(origin), *d, "default: {origin}");
            assert_eq!(extra.allows(origin), *e, "extra: {origin}");
            assert_eq!(any.allows(origin), *a, "any: {origin}");
        }
    }

    #[test]
    fn decisions_follow_gin_contrib_cors() {
        let o = Origins::new(&[]);
        let get = Method::GET;
        let cases: &[(&Method, Option<&str>, Option<&str>, Decision)] = &[
            (&Method::POST, None, Some("router:8080"), Decision::Pass),
            (&Method::POST, Some(""), Some("router:8080"), Decision::Pass),
            // The page is on the router itself.
            (
                &get,
                Some("http://router:8080"),
                Some("router:8080"),
                Decision::Pass,
            ),
            (
                &get,
                Some("https://router:8080"),
                Some("router:8080"),
                Decision::Pass,
            ),
            (
                &Method::OPTIONS,
                Some("http://localhost:3000"),
                Some("router:8080"),
                Decision::Preflight,
            ),
            (
                &Method::POST,
                Some("http://localhost:3000"),
                Some("router:8080"),
                Decision::Allow,
            ),
            (
                &Method::OPTIONS,
                Some("http://evil.com"),
                Some("router:8080"),
                Decision::Forbidden,
            ),
            (
                &Method::POST,
                Some("http://evil.com"),
                None,
                Decision::Forbidden,
            ),
        ];
        for (method, origin, host, want) in cases {
            assert_eq!(
                decide(&o, method, *origin, *host),
                *want,
                "{method} origin {origin:?} host {host:?}"
            );
        }
    }

    #[test]
    fn only_ollama_paths() {
        for (path, want) in [
            ("/", true),
            ("/api/chat", true),
            ("/v1/models", true),
            ("/apis/herd/v1/nodes", false),
            ("/metrics", false),
            ("/ui/", false),
        ] {
            assert_eq!(ollama_path(path), want, "{path}");
        }
    }
}
