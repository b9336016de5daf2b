//! The dashboard's sign-in endpoints, beside the page `herd_ui` serves:
//!
//! | request | answer |
//! |---|---|
//! | `GET /dashboard/session` | who is signed in (`{"name", "role"}`), or 401 |
//! | `POST /dashboard/session` with `{"key": …}` (or `Authorization: Bearer`) | a session cookie |
//! | `DELETE /dashboard/session` | signs out and clears the cookie |
//! | `POST /dashboard/links` (admin) | a one-time sign-in link, valid for 10 minutes |
//! | `GET /dashboard/signin?code=…` | spends the link on a session cookie and goes to the dashboard |
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no
//! other site's page sends it) and `Secure` when the server is served over
//! TLS. Requests that carry it are checked with
//! [`check_cookie_request`](crate::sessions::check_cookie_request).
//! Every answer forbids framing and content sniffing, and is never cached.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use axum::routing::{get, post};
use herd_api::Timestamp;
use herd_auth::{Credential, KeyRing, Principal, SESSION_COOKIE, Token, credential};
use serde::Deserialize;
use serde_json::json;

use crate::sessions::{
    CookieRefusal, HostNames, LINK_TTL, Sessions, SignInError, check_cookie_request, host_allowed,
    request_host, request_origin,
};

/// What the dashboard's endpoints share with the server's authentication.
#[derive(Clone)]
pub struct Dashboard {
    pub sessions: Arc<Sessions>,
    pub ring: Arc<KeyRing>,
    pub hosts: Arc<HostNames>,
    /// Whether the server is served over TLS: the cookie is then `Secure`
    /// and origins are `https://`.
    pub tls: bool,
}

impl Dashboard {
    /// Who a request carrying the session cookie `id` is, after the Host
    /// and Origin checks: what the server's authentication calls for
    /// [`Credential::Session`]. `host` is the `Host` header (or the URI's
    /// authority), `origin` the `Origin` header. `Ok(None)` when the session
    /// is unknown or has ended.
    pub fn resolve_cookie(
        &self,
        id: &herd_auth::SessionId,
        method: &Method,
        host: Option<&str>,
        origin: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Principal>, CookieRefusal> {
        check_cookie_request(method, host, origin, self.tls, &self.hosts)?;
        Ok(self.sessions.resolve(id, &self.ring, now))
    }

    /// The caller of a dashboard endpoint, and the key that stands behind it.
    fn caller(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<(Principal, Token), Refusal> {
        let now = Timestamp::now();
        match credential(headers) {
            Credential::Key(token) => {
                let principal = self
                    .ring
                    .authenticate_token(&token, now)
                    .map_err(|e| Refusal::Unauthorized(e.client_message()))?;
                Ok((principal, token))
            }
            Credential::Malformed(e) => Err(Refusal::Unauthorized(e.to_string())),
            Credential::Session(id) => {
                let principal = self
                    .resolve_cookie(
                        &id,
                        method,
                        request_host(uri, headers),
                        request_origin(headers),
                        now,
                    )
                    .map_err(Refusal::Forbidden)?
                    .ok_or_else(signed_out)?;
                let token = self.sessions.token_of(&id).ok_or_else(signed_out)?;
                Ok((principal, token))
            }
            Credential::None | Credential::Placeholder => Err(signed_out()),
        }
    }

    /// The Host check alone, for endpoints that set a cookie.
    fn check_host(&self, uri: &Uri, headers: &HeaderMap) -> Result<String, Refusal> {
        match request_host(uri, headers) {
            Some(host) if host_allowed(host, &self.hosts) => Ok(host.to_owned()),
            _ => Err(Refusal::Forbidden(CookieRefusal::Host)),
        }
    }

    fn cookie(&self, value: &str) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/{secure}")
    }
}

/// Why a dashboard endpoint said no.
#[derive(Debug)]
enum Refusal {
    Unauthorized(String),
    Forbidden(CookieRefusal),
    SignIn(SignInError),
    BadRequest(String),
}

fn signed_out() -> Refusal {
    Refusal::Unauthorized("sign in with a key".to_owned())
}

impl Refusal {
    fn into_response(self) -> Response<Body> {
        let (status, reason, message) = match self {
            Refusal::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "Unauthorized", m),
            Refusal::Forbidden(e) => (StatusCode::FORBIDDEN, "Forbidden", e.to_string()),
            Refusal::SignIn(e @ SignInError::Random(_)) => {
                tracing::error!(error = %e, "dashboard sign-in");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "the server could not make a session".to_owned(),
                )
            }
            Refusal::SignIn(e @ SignInError::Role(_)) => {
                (StatusCode::FORBIDDEN, "Forbidden", e.to_string())
            }
            Refusal::SignIn(e) => (StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string()),
            Refusal::BadRequest(m) => (StatusCode::BAD_REQUEST, "BadRequest", m),
        };
        json_response(
            status,
            &json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": reason, "code": status.as_u16(),
            }),
        )
    }
}

/// The sign-in endpoints; merge beside `herd_ui::router()`.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route(
            "/dashboard/session",
            get(whoami).post(sign_in).delete(sign_out),
        )
        .route("/dashboard/links", post(mint_link))
        .route("/dashboard/signin", get(redeem_link))
        .with_state(dashboard)
        .layer(axum::middleware::map_response(herd_ui::guard_response))
}

fn who(principal: &Principal) -> serde_json::Value {
    json!({
        "name": principal.key_name(),
        "role": principal.role().map(|r| r.to_string()),
    })
}

async fn whoami(
    State(d): State<Dashboard>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    match d.caller(&method, &uri, &headers) {
        Ok((principal, _)) => json_response(StatusCode::OK, &who(&principal)),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct SignInBody {
    key: String,
}

async fn sign_in(
    State(d): State<Dashboard>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let signed = (|| {
        d.check_host(&uri, &headers)?;
        // A page of another site must not sign the browser in as someone
        // else: an Origin, when sent, must be the dashboard's own.
        if let Some(origin) = request_origin(&headers) {
            let host = request_host(&uri, &headers).unwrap_or_default();
            if !crate::sessions::origin_matches(origin, host, d.tls) {
                return Err(Refusal::Forbidden(CookieRefusal::Origin));
            }
        }
        let token = if body.is_empty() {
            match credential(&headers) {
                Credential::Key(token) => token,
                Credential::Malformed(e) => return Err(Refusal::Unauthorized(e.to_string())),
                _ => return Err(Refusal::BadRequest("send {\"key\": \"herd_…\"}".into())),
            }
        } else {
            let body: SignInBody = serde_json::from_slice(&body)
                .map_err(|_| Refusal::BadRequest("send {\"key\": \"herd_…\"}".into()))?;
            Token::parse(body.key.trim()).map_err(|e| Refusal::Unauthorized(e.to_string()))?
        };
        d.sessions
            .sign_in(&token, &d.ring, Timestamp::now())
            .map_err(Refusal::SignIn)
    })();
    match signed {
        Ok(issued) => with_cookie(
            json_response(StatusCode::OK, &who(&issued.principal)),
            &d.cookie(&issued.secret),
        ),
        Err(e) => e.into_response(),
    }
}

async fn sign_out(
    State(d): State<Dashboard>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    if let Credential::Session(id) = credential(&headers) {
        if let Err(e) = check_cookie_request(
            &method,
            request_host(&uri, &headers),
            request_origin(&headers),
            d.tls,
            &d.hosts,
        ) {
            return Refusal::Forbidden(e).into_response();
        }
        d.sessions.sign_out(&id);
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    with_cookie(resp, &format!("{}; Max-Age=0", d.cookie("")))
}

async fn mint_link(
    State(d): State<Dashboard>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let minted = (|| {
        let host = d.check_host(&uri, &headers)?;
        let (_, token) = d.caller(&method, &uri, &headers)?;
        let issued = d
            .sessions
            .mint_link(&token, &d.ring, Timestamp::now())
            .map_err(Refusal::SignIn)?;
        Ok::<_, Refusal>((host, issued))
    })();
    match minted {
        Ok((host, issued)) => {
            let scheme = if d.tls { "https" } else { "http" };
            let url = format!("{scheme}://{host}/dashboard/signin?code={}", issued.secret);
            json_response(
                StatusCode::CREATED,
                &json!({ "url": url, "expiresInSeconds": LINK_TTL.as_secs() }),
            )
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    code: Option<String>,
}

async fn redeem_link(
    State(d): State<Dashboard>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response<Body> {
    if let Err(e) = d.check_host(&uri, &headers) {
        return e.into_response();
    }
    let redeemed = q
        .code
        .ok_or(SignInError::Link)
        .and_then(|code| d.sessions.redeem_link(&code, &d.ring, Timestamp::now()));
    match redeemed {
        Ok(issued) => with_cookie(redirect("/dashboard/"), &d.cookie(&issued.secret)),
        // The page explains, on its sign-in form.
        Err(_) => redirect("/dashboard/?signin=link"),
    }
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}

fn with_cookie(mut resp: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Why `herd up` could not get a sign-in link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no admin key appeared at {} within {waited:?}", path.display())]
    NoAdminKey {
        path: std::path::PathBuf,
        waited: Duration,
    },
    #[error(transparent)]
    KeyFile(#[from] herd_auth::KeyFileError),
    #[error("asking the server for a sign-in link")]
    Request(#[source] reqwest::Error),
    #[error("the server refused a sign-in link: HTTP {0}")]
    Refused(StatusCode),
    #[error("trusting the server's certificate: {0}")]
    Tls(#[from] herd_tls::TlsError),
}

/// What `herd up` does once its server is listening: prints a one-time
/// sign-in link for the dashboard to standard output (a secret, so never
/// to the log stream). A failure is logged, without the key.
pub async fn print_signin_link(
    server_url: String,
    admin_key_file: std::path::PathBuf,
    trust: Option<herd_tls::ClientTrust>,
) {
    match signin_link(&server_url, &admin_key_file, trust.as_ref()).await {
        Ok(url) => println!(
            "Dashboard: {url}\n  (a one-time sign-in link, valid for {} minutes)",
            LINK_TTL.as_secs() / 60
        ),
        Err(e) => tracing::warn!(error = %e, "could not make a dashboard sign-in link"),
    }
}

/// A one-time sign-in link from the server at `server_url`, asked for with
/// the admin key in `admin_key_file` the way an admin would
/// (`POST /dashboard/links`). Waits a little for the file, which the
/// server writes on its first start. An https server is trusted by `trust`.
pub async fn signin_link(
    server_url: &str,
    admin_key_file: &Path,
    trust: Option<&herd_tls::ClientTrust>,
) -> Result<String, LinkError> {
    const WAIT: Duration = Duration::from_secs(10);
    let start = tokio::time::Instant::now();
    let token = loop {
        match herd_auth::read_key_file(admin_key_file) {
            Ok(token) => break token,
            Err(_) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(herd_auth::KeyFileError::Io { .. }) => {
                return Err(LinkError::NoAdminKey {
                    path: admin_key_file.to_owned(),
                    waited: WAIT,
                });
            }
            Err(e) => return Err(e.into()),
        }
    };
    #[derive(Deserialize)]
    struct Link {
        url: String,
    }
    let mut http = reqwest::Client::builder();
    if let Some(trust) = trust {
        http = trust.apply(http).map_err(LinkError::Tls)?;
    }
    let resp = http
        .build()
        .map_err(LinkError::Request)?
        .post(format!(
            "{}/dashboard/links",
            server_url.trim_end_matches('/')
        ))
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(LinkError::Request)?;
    if !resp.status().is_success() {
        return Err(LinkError::Refused(resp.status()));
    }
    let link: Link = resp.json().await.map_err(LinkError::Request)?;
    Ok(link.url)
}

#[cfg(test)]
mod tests;
