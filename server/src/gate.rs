//! Authentication and authorization of every request, before the router and
//! before the proxy's shortcut: [`Gate::decide`] is a pure function of the
//! request head and the key ring; [`Gate::admit`] is its thin HTTP shell.
//!
//! The proxy's hot path with open inference and no herd key costs a few
//! comparisons of the path and the headers: no allocation, no lookup.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use herd_apiserver::ApiError;
use herd_auth::{Action, Classified, Credential, KeyRing, Openness, Principal};
use herd_proxy::{Dialect, ProxyError};

use crate::dashboard::Dashboard;

/// What the gate knows: the keys, what is open, and which `Host` names
/// this server answers as.
#[derive(Clone)]
pub struct Gate {
    ring: Arc<KeyRing>,
    openness: Openness,
    hosts: Hosts,
    /// The dashboard's sessions, when it is served.
    dashboard: Option<Dashboard>,
}

/// The `Host` names accepted. A server listening on loopback only answers
/// loopback names (and those `--allowed-hosts` adds), so a web page on
/// another name that resolves to 127.0.0.1 (DNS rebinding) is refused.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    /// Whether the check applies: the server listens on loopback only.
    pub loopback_only: bool,
    /// More names, lowercase, without a port.
    pub allowed: Vec<String>,
}

impl Hosts {
    fn accepts(&self, headers: &HeaderMap) -> bool {
        if !self.loopback_only {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            // HTTP/1.0 without a Host: nothing a browser sends.
            return true;
        };
        let name = host_name(host);
        is_loopback_name(name) || self.allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The name of a `Host` value, without its port (and an IPv6 literal
/// without its brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .get(name.len().saturating_sub(".localhost".len())..)
            .is_some_and(|t| t.eq_ignore_ascii_case(".localhost"))
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused, before its dialect shapes the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no key where one is needed, or a herd key not accepted.
    Unauthorized(String),
    /// 403: the key may not do this, or the request came from elsewhere.
    Forbidden(String),
    /// 415: an API write whose body type is not exactly JSON.
    MediaType(String),
}

/// What the gate lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Serve it; routes that read the caller find it in the extensions.
    With(Principal),
    /// Serve it; nobody downstream asks who called (open inference and
    /// metrics without a key, health checks).
    Plain,
}

/// Which error shape a path's clients read.
fn dialect(path: &str) -> Option<Dialect> {
    if path.starts_with("/v1/") {
        Some(Dialect::OpenAi)
    } else if path == "/" || path.starts_with("/api/") {
        Some(Dialect::Ollama)
    } else {
        None
    }
}

impl Gate {
    pub fn new(ring: Arc<KeyRing>, openness: Openness, hosts: Hosts) -> Gate {
        Gate {
            ring,
            openness,
            hosts,
            dashboard: None,
        }
    }

    /// Accepts the dashboard's session cookie as a credential.
    pub fn with_sessions(mut self, dashboard: Dashboard) -> Gate {
        self.dashboard = Some(dashboard);
        self
    }

    /// Who a session cookie stands for. It is checked for forgery first
    /// (the `Host` must name this server, a write must carry its `Origin`);
    /// an unknown or ended session is no credential, so the management API
    /// answers 401 and the page shows its sign-in form.
    fn session(
        &self,
        id: &herd_auth::SessionId,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Principal, Refusal> {
        let Some(dashboard) = &self.dashboard else {
            return Ok(Principal::Anonymous);
        };
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        match dashboard.resolve_cookie(
            id,
            method,
            host,
            crate::sessions::request_origin(headers),
            jiff::Timestamp::now(),
        ) {
            Ok(found) => Ok(found.unwrap_or(Principal::Anonymous)),
            Err(refused) => Err(Refusal::Forbidden(refused.to_string())),
        }
    }

    /// Decides a request from its head.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Admitted, Refusal> {
        if !self.hosts.accepts(headers) {
            return Err(Refusal::Forbidden(
                "this server does not answer to that Host name; add it with --allowed-hosts".into(),
            ));
        }
        let classified = herd_auth::classify(method, path, query);
        if classified == Classified::Public {
            return Ok(Admitted::Plain);
        }
        let credential = herd_auth::credential(headers);
        let principal = match &credential {
            // The dashboard's own paths check their cookie themselves, and
            // its page must load for a browser to sign in at all.
            Credential::Session(_) if classified == Classified::Dashboard => Principal::Anonymous,
            Credential::Session(id) => self.session(id, method, headers)?,
            Credential::None | Credential::Placeholder => Principal::Anonymous,
            _ => match self.ring.resolve(&credential, jiff::Timestamp::now()) {
                Ok(Some(p)) => p,
                Ok(None) => Principal::Anonymous,
                Err(e) => return Err(Refusal::Unauthorized(e.client_message())),
            },
        };
        let is_api = path == "/apis" || path.starts_with("/apis/");
        if is_api || path.starts_with("/dashboard/api/") {
            cross_site(headers)?;
        }
        if is_api && is_write(method) {
            body_type(method, headers)?;
        }
        let refuse = |e: herd_auth::Denied| match principal {
            Principal::Anonymous => Refusal::Unauthorized(format!(
                "this endpoint needs a key ({e}); send it as `Authorization: Bearer <key>`"
            )),
            Principal::Key(_) => Refusal::Forbidden(e.to_string()),
        };
        match classified {
            Classified::Public => Ok(Admitted::Plain),
            Classified::Dashboard => Ok(Admitted::With(principal)),
            Classified::Action(action) => {
                self.openness
                    .authorize(&principal, &action)
                    .map_err(refuse)?;
                // The proxy and /metrics never ask who called: a principal
                // in the extensions there would cost an allocation per
                // request for nothing.
                let plain = matches!(
                    action,
                    Action::Inference
                        | Action::ModelPull
                        | Action::ModelManagement
                        | Action::Metrics
                );
                Ok(if plain {
                    Admitted::Plain
                } else {
                    Admitted::With(principal)
                })
            }
            // The route authorizes once it has read the body; a request
            // without a key gets that far only where registration is open.
            Classified::Deferred(_) => {
                if principal == Principal::Anonymous && !self.openness.registration {
                    return Err(Refusal::Unauthorized(
                        "the API needs a key; send it as `Authorization: Bearer <key>`".into(),
                    ));
                }
                Ok(Admitted::With(principal))
            }
        }
    }

    /// Lets `req` through (with its [`Principal`] in the extensions) or
    /// answers the refusal in the shape the path's clients read.
    #[allow(clippy::result_large_err)]
    pub fn admit(&self, mut req: Request) -> Result<Request, Response> {
        let decided = self.decide(
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        match decided {
            Ok(Admitted::Plain) => Ok(req),
            Ok(Admitted::With(p)) => {
                req.extensions_mut().insert(p);
                Ok(req)
            }
            Err(refusal) => Err(refused(req.uri().path(), refusal)),
        }
    }
}

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// An API write's body is JSON (a merge patch for PATCH), said exactly: a
/// form or `text/plain` is what a cross-site page can send without asking.
fn body_type(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    let ok = if *method == Method::PATCH {
        essence.eq_ignore_ascii_case("application/merge-patch+json")
    } else {
        essence.eq_ignore_ascii_case("application/json")
    };
    if ok {
        Ok(())
    } else {
        let want = if *method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        Err(Refusal::MediaType(format!(
            "Content-Type {essence:?} is not accepted here; send {want}"
        )))
    }
}

/// Refuses what a browser says came from another site.
fn cross_site(headers: &HeaderMap) -> Result<(), Refusal> {
    let refused = || Refusal::Forbidden("cross-site requests are refused".into());
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(refused());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
                Err(refused())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The refusal in the path's dialect: herd's `Status` on the API (and
/// anywhere else), Ollama's or OpenAI's shape on theirs.
fn refused(path: &str, refusal: Refusal) -> Response {
    let unauthorized = matches!(refusal, Refusal::Unauthorized(_));
    let mut resp = match (dialect(path), refusal) {
        (Some(d), Refusal::Unauthorized(m)) => ProxyError::Unauthorized(m).to_response(d),
        (Some(d), Refusal::Forbidden(m)) => ProxyError::Forbidden(m).to_response(d),
        (Some(d), Refusal::MediaType(m)) => ProxyError::BadRequest(m).to_response(d),
        (None, Refusal::Unauthorized(m)) => ApiError::Unauthorized(m).into_response(),
        (None, Refusal::Forbidden(m)) => ApiError::Forbidden(m).into_response(),
        (None, Refusal::MediaType(m)) => ApiError::UnsupportedMediaType(m).into_response(),
    };
    if unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use herd_api::{ApiKeySpec, Role, WatchEvent};

    use super::*;

    fn gate(openness: Openness) -> (Gate, Vec<(Role, String)>) {
        let ring = Arc::new(KeyRing::new());
        let mut tokens = Vec::new();
        for role in [Role::Admin, Role::Viewer, Role::Inference] {
            let issued = herd_auth::issue(
                &format!("{role}-key"),
                ApiKeySpec {
                    role: Some(role),
                    ..ApiKeySpec::default()
                },
                "test",
            )
            .expect("random source");
            ring.apply_hash(&WatchEvent::Added(issued.hash.clone()));
            ring.apply_key(&WatchEvent::Added(issued.stored()));
            tokens.push((role, issued.token.expose()));
        }
        let hosts = Hosts {
            loopback_only: true,
            allowed: vec!["herd.example".into()],
        };
        (Gate::new(ring, openness, hosts), tokens)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn decisions() {
        let open = Openness {
            inference: true,
            ..Openness::default()
        };
        let (g, tokens) = gate(open);
        let token = |r: Role| {
            format!(
                "Bearer {}",
                tokens
                    .iter()
                    .find(|(x, _)| *x == r)
                    .map(|(_, t)| t)
                    .expect("token")
            )
        };
        let (admin, viewer, inference) = (
            token(Role::Admin),
            token(Role::Viewer),
            token(Role::Inference),
        );
        let bad = "Bearer herd_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".to_owned();
        let get = Method::GET;
        let post = Method::POST;
        let json = ("content-type", "application/json");
        type Case<'a> = (&'a Method, &'a str, Vec<(&'static str, &'a str)>, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (&get, "/healthz", vec![], "plain"),
            (&post, "/api/chat", vec![], "plain"),
            (
                &post,
                "/api/chat",
                vec![("authorization", "Bearer ollama")],
                "plain",
            ),
            (
                &post,
                "/v1/chat/completions",
                vec![("authorization", "Bearer sk-x")],
                "plain",
            ),
            (&post, "/api/chat", vec![("authorization", &bad)], "401"),
            // Checked, then let through plain: the proxy never asks who.
            (
                &post,
                "/api/chat",
                vec![("authorization", &inference)],
                "plain",
            ),
            (&get, "/apis/herd/v1/nodes", vec![], "401"),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![("authorization", &viewer)],
                "with",
            ),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![("authorization", &inference)],
                "403",
            ),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![("authorization", &bad)],
                "401",
            ),
            (
                &post,
                "/apis/herd/v1/nodes",
                vec![("authorization", &admin), json],
                "with",
            ),
            (
                &post,
                "/apis/herd/v1/nodes",
                vec![("authorization", &admin)],
                "415",
            ),
            (
                &post,
                "/apis/herd/v1/nodes",
                vec![("authorization", &admin), ("content-type", "text/plain")],
                "415",
            ),
            (&post, "/apis/herd/v1/nodes", vec![json], "401"),
            (&get, "/metrics", vec![], "401"),
            (&get, "/metrics", vec![("authorization", &viewer)], "plain"),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![("authorization", &admin), ("sec-fetch-site", "cross-site")],
                "403",
            ),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![
                    ("authorization", &admin),
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ],
                "403",
            ),
            (
                &get,
                "/apis/herd/v1/nodes",
                vec![
                    ("authorization", &admin),
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080"),
                ],
                "with",
            ),
            (&get, "/healthz", vec![("host", "evil.example")], "403"),
            (
                &get,
                "/healthz",
                vec![("host", "herd.example:8080")],
                "plain",
            ),
            (&get, "/healthz", vec![("host", "[::1]:8080")], "plain"),
            (&get, "/healthz", vec![("host", "localhost")], "plain"),
        ];
        for (method, path, pairs, want) in cases {
            let got = match g.decide(method, path, None, &headers(&pairs)) {
                Ok(Admitted::Plain) => "plain",
                Ok(Admitted::With(_)) => "with",
                Err(Refusal::Unauthorized(_)) => "401",
                Err(Refusal::Forbidden(_)) => "403",
                Err(Refusal::MediaType(_)) => "415",
            };
            assert_eq!(got, want, "{method} {path} {pairs:?}");
        }
    }

    #[test]
    fn inference_by_key_needs_one() {
        let (g, _) = gate(Openness::default());
        let got = g.decide(&Method::POST, "/api/chat", None, &HeaderMap::new());
        assert!(matches!(got, Err(Refusal::Unauthorized(_))), "{got:?}");
    }

    #[test]
    fn refusals_take_the_dialect_of_the_path() {
        let r = refused("/v1/models", Refusal::Unauthorized("no".into()));
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = refused("/apis/herd/v1/nodes", Refusal::Forbidden("no".into()));
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    #[test]
    fn session_cookies() {
        use crate::sessions::{HostNames, Sessions};
        let open = Openness {
            inference: true,
            ..Openness::default()
        };
        let (g, tokens) = gate(open);
        let ring = Arc::clone(&g.ring);
        let dashboard = Dashboard {
            sessions: Arc::new(Sessions::new()),
            ring: Arc::clone(&ring),
            hosts: Arc::new(HostNames::new(["herd.example"])),
            tls: false,
        };
        let g = g.with_sessions(dashboard.clone());
        let cookie = |role: Role| {
            let (_, token) = tokens.iter().find(|(r, _)| *r == role).expect("token");
            let token = herd_auth::Token::parse(token).expect("token");
            let issued = dashboard
                .sessions
                .sign_in(&token, &ring, jiff::Timestamp::now())
                .expect("sign in");
            format!("herd_session={}", issued.secret)
        };
        let (admin, viewer) = (cookie(Role::Admin), cookie(Role::Viewer));
        let (get, patch, post) = (Method::GET, Method::PATCH, Method::POST);
        let local = ("host", "127.0.0.1:8080");
        let same = ("origin", "http://127.0.0.1:8080");
        let merge = ("content-type", "application/merge-patch+json");
        let node = "/apis/herd/v1/nodes/gpu-1";
        type Case<'a> = (&'a Method, &'a str, Vec<(&'static str, &'a str)>, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (&get, node, vec![local, ("cookie", &admin)], "admin"),
            (&get, node, vec![local, ("cookie", &viewer)], "viewer"),
            (
                &patch,
                node,
                vec![local, same, merge, ("cookie", &admin)],
                "admin",
            ),
            // A write without its Origin: a forged request.
            (&patch, node, vec![local, merge, ("cookie", &admin)], "403"),
            (
                &patch,
                node,
                vec![
                    local,
                    ("origin", "http://evil.example"),
                    merge,
                    ("cookie", &admin),
                ],
                "403",
            ),
            // The viewer's session reads but does not write.
            (
                &patch,
                node,
                vec![local, same, merge, ("cookie", &viewer)],
                "403",
            ),
            // An unknown or ended session is no credential.
            (
                &get,
                node,
                vec![local, ("cookie", "herd_session=made-up")],
                "401",
            ),
            (
                &post,
                "/api/chat",
                vec![local, same, ("cookie", "herd_session=made-up")],
                "plain",
            ),
            // Any write with the cookie must say where it came from.
            (
                &post,
                "/api/chat",
                vec![local, ("cookie", "herd_session=made-up")],
                "403",
            ),
            // The dashboard's own paths check their cookie themselves.
            (
                &get,
                "/dashboard/nodes",
                vec![local, ("cookie", "herd_session=x")],
                "anonymous",
            ),
        ];
        for (method, path, pairs, want) in cases {
            let got = g.decide(method, path, None, &headers(&pairs));
            let got = match got {
                Ok(Admitted::Plain) => "plain".to_owned(),
                Ok(Admitted::With(Principal::Anonymous)) => "anonymous".to_owned(),
                Ok(Admitted::With(p)) => p.role().map(|r| r.to_string()).unwrap_or_default(),
                Err(Refusal::Unauthorized(_)) => "401".to_owned(),
                Err(Refusal::Forbidden(_)) => "403".to_owned(),
                Err(Refusal::MediaType(_)) => "415".to_owned(),
            };
            assert_eq!(got, want, "{method} {path} {pairs:?}");
        }
    }
}
