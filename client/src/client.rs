use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use herd_api::{GROUP, JOIN_PATH, JoinRequest, JoinResponse, Resource, Status, VERSION};
use herd_tls::ClientTrust;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

use crate::error::status_from_body;
use crate::{Api, Error};

/// How long to wait for a TCP (and TLS) connection to the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on a whole non-watch request. Watches have none: they are
/// meant to stay open, and the watcher detects dead ones by their silence.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error bodies are read up to this size; the rest is dropped.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How to reach a herd server: its URL, the key sent with every request and
/// the certificates trusted for `https://`.
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    trust: Option<ClientTrust>,
}

impl ClientBuilder {
    /// Sends `token` as `Authorization: Bearer` on every request, including
    /// those made through [`Client::http`]. The header is marked sensitive, so
    /// no `Debug` of the client or of a request shows it.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Which certificates to accept from an `https://` server (a CA file, a
    /// pinned CA fingerprint, the public roots).
    pub fn trust(mut self, trust: ClientTrust) -> Self {
        self.trust = Some(trust);
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            // Finds dead peers of long idle watches at the TCP level too.
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("herd-client/", env!("CARGO_PKG_VERSION")));
        let auth = self.token.as_deref().map(auth_value).transpose()?;
        if let Some(value) = &auth {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value.clone());
            builder = builder.default_headers(headers);
        }
        if let Some(trust) = &self.trust {
            builder = trust
                .apply(builder)
                .map_err(|e| Error::InvalidRequest(format!("TLS trust: {e}")))?;
        }
        let client = Client::with_http_client(&self.url, builder.build()?)?;
        *client.auth.write().unwrap_or_else(PoisonError::into_inner) = auth;
        Ok(client)
    }
}

// Hand-written so that neither the token nor a part of it is ever printed.
impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("trust", &self.trust)
            .finish()
    }
}

fn auth_value(token: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
        Error::InvalidRequest("the key contains characters a header cannot carry".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A connection to a herd server, or to any of several sharing one store
/// (`http://a:8080,http://b:8080`): a request whose connection fails is sent
/// to the next, which then serves the following requests too. Cheap to
/// clone: clones share the connection pool and the server in use.
#[derive(Clone, Debug)]
pub struct Client {
    bases: Arc<[Url]>,
    /// Index into `bases` of the server in use.
    current: Arc<AtomicUsize>,
    http: reqwest::Client,
    request_timeout: Option<Duration>,
    /// The key the API calls send now, shared by every clone, so that
    /// [`Client::set_token`] reaches watchers and reflectors already running.
    auth: Arc<RwLock<Option<HeaderValue>>>,
}

impl Client {
    /// A client for the server at `url` (`http://host:8080`, optionally with
    /// a path prefix; several separated by commas), with the default
    /// timeouts, no key and the public roots.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    /// A client with a key and the CA to trust; see [`ClientBuilder`].
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            token: None,
            trust: None,
        }
    }

    /// A client using a `reqwest::Client` configured by the caller (proxies,
    /// TLS roots). It should have no total timeout, or watches will be cut.
    pub fn with_http_client(url: &str, http: reqwest::Client) -> Result<Self, Error> {
        let bases = parse_bases(url)?;
        Ok(Self {
            bases: bases.into(),
            current: Arc::default(),
            http,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            auth: Arc::default(),
        })
    }

    /// Replaces the key the API calls of this client and of all its clones
    /// send (a nodelet's new node key). Requests made through
    /// [`Client::http`] keep the key the client was built with.
    pub fn set_token(&self, token: &str) -> Result<(), Error> {
        let value = auth_value(token)?;
        *self.auth.write().unwrap_or_else(PoisonError::into_inner) = Some(value);
        Ok(())
    }

    /// `req` with the current key, when there is one.
    pub(crate) fn with_auth(&self, req: RequestBuilder) -> RequestBuilder {
        let value = self
            .auth
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match value {
            Some(value) => req.header(AUTHORIZATION, value),
            None => req,
        }
    }

    /// Changes the bound on non-watch requests; `None` waits forever.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The URL of the server in use.
    pub fn base_url(&self) -> &Url {
        let at = self.current.load(Ordering::Relaxed);
        &self.bases[at % self.bases.len()]
    }

    /// The underlying HTTP client, for calls outside the resource API
    /// (`/healthz`, the proxy's Ollama endpoints).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The typed API of one kind.
    pub fn api<K: Resource>(&self) -> Api<K> {
        Api::new(self.clone())
    }

    /// `{base}/apis/herd/v1/{plural}[/{name}[/{subresource}]]`, with the
    /// name percent-encoded as one path segment.
    pub(crate) fn resource_url(
        &self,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Url, Error> {
        let mut url = self.base_url().clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                Error::InvalidRequest(format!("server URL {} cannot be a base", self.base_url()))
            })?;
            path.pop_if_empty().extend(["apis", GROUP, VERSION, plural]);
            if let Some(name) = name {
                if name.is_empty() {
                    return Err(Error::InvalidRequest(format!(
                        "{plural}: object name must not be empty"
                    )));
                }
                path.push(name);
            }
            if let Some(sub) = sub {
                path.push(sub);
            }
        }
        Ok(url)
    }

    /// The join exchange: trades the key this client sends (a join key) for
    /// a node key bound to `node`.
    pub async fn join(&self, node: &str) -> Result<JoinResponse, Error> {
        let mut url = self.base_url().clone();
        url.path_segments_mut()
            .map_err(|()| {
                Error::InvalidRequest(format!("server URL {} cannot be a base", self.base_url()))
            })?
            .pop_if_empty()
            .extend(JOIN_PATH.split('/').filter(|s| !s.is_empty()));
        let req = self.request(reqwest::Method::POST, url).json(&JoinRequest {
            node: node.to_owned(),
        });
        self.send_json(req, || "the join answer".to_owned()).await
    }

    /// A request that is bounded by the request timeout.
    pub(crate) fn request(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        let req = self.with_auth(self.http.request(method, url));
        match self.request_timeout {
            Some(t) => req.timeout(t),
            None => req,
        }
    }

    /// Sends `req`; any non-2xx answer becomes [`Error::Api`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, Error> {
        let resp = if self.bases.len() == 1 {
            req.send().await?
        } else {
            self.send_failing_over(req).await?
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Error::from(error_status(resp).await))
    }

    /// Sends `req` and decodes a 2xx body as `T`.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        what: impl FnOnce() -> String,
    ) -> Result<T, Error> {
        let body = self.send(req).await?.bytes().await?;
        decode(&body, what)
    }
}

impl Client {
    /// Sends `req` to the server in use; when the connection cannot be made
    /// (the request never reached a server, so sending it again is safe),
    /// moves on to the next server, each tried once.
    async fn send_failing_over(&self, req: RequestBuilder) -> Result<Response, reqwest::Error> {
        let (http, req) = req.build_split();
        let mut req = req?;
        let mut last = None;
        for _ in 0..self.bases.len() {
            let at = self.current.load(Ordering::Relaxed) % self.bases.len();
            let base = &self.bases[at];
            if let Some(url) = rebase(req.url(), &self.bases, base) {
                *req.url_mut() = url;
            }
            let Some(attempt) = req.try_clone() else {
                return http.execute(req).await;
            };
            match http.execute(attempt).await {
                Err(e) if e.is_connect() => {
                    let next = (at + 1) % self.bases.len();
                    let _ = self.current.compare_exchange(
                        at,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tracing::warn!(server = %base, next = %self.bases[next], "cannot reach the server; trying the next");
                    last = Some(e);
                }
                r => return r,
            }
        }
        match last {
            Some(e) => Err(e),
            None => http.execute(req).await,
        }
    }
}

/// `url`, made from one of `bases`, moved onto `to`.
fn rebase(url: &Url, bases: &[Url], to: &Url) -> Option<Url> {
    let s = url.as_str();
    let rest = bases
        .iter()
        .map(|b| b.as_str().trim_end_matches('/'))
        .filter(|b| s.starts_with(b))
        .max_by_key(|b| b.len())
        .map(|b| &s[b.len()..])?;
    Url::parse(&format!("{}{rest}", to.as_str().trim_end_matches('/'))).ok()
}

/// The server URLs of `list` (comma-separated), each an http(s) URL with
/// no query or fragment.
fn parse_bases(list: &str) -> Result<Vec<Url>, Error> {
    let mut bases = Vec::new();
    for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let base = Url::parse(url)
            .map_err(|e| Error::InvalidRequest(format!("server URL {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::InvalidRequest(format!(
                "server URL {url:?} must be an http:// or https:// URL"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::InvalidRequest(format!(
                "server URL {url:?} must not have a query or fragment"
            )));
        }
        bases.push(base);
    }
    if bases.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "server URL {list:?}: no URL given"
        )));
    }
    Ok(bases)
}

pub(crate) fn decode<T: DeserializeOwned>(
    body: &Bytes,
    what: impl FnOnce() -> String,
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|error| Error::Decode {
        what: what(),
        error,
    })
}

async fn error_status(mut resp: Response) -> Status {
    let code = resp.status().as_u16();
    let mut body = Vec::new();
    // A body that breaks off is still worth quoting as far as it got.
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    status_from_body(code, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_move_between_servers_with_their_paths() {
        let bases = parse_bases("http://a:8080, http://b:9090/herd/,https://c").expect("bases");
        assert_eq!(bases.len(), 3);
        for (url, to, want) in [
            (
                "http://a:8080/apis/herd/v1/nodes/x",
                1,
                "http://b:9090/herd/apis/herd/v1/nodes/x",
            ),
            (
                "http://b:9090/herd/apis/herd/v1/nodes?watch=true",
                2,
                "https://c/apis/herd/v1/nodes?watch=true",
            ),
            ("https://c/join", 0, "http://a:8080/join"),
        ] {
            let url = Url::parse(url).expect("url");
            let got = rebase(&url, &bases, &bases[to]).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "{url}");
        }
        let elsewhere = Url::parse("http://other/x").expect("url");
        assert_eq!(rebase(&elsewhere, &bases, &bases[0]), None);
        for bad in ["", " , ", "http://a,ftp://b", "http://a?x=1"] {
            assert!(parse_bases(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_urls() {
        let c = Client::new("http://127.0.0.1:8080").expect("client");
        let url = |name, sub| c.resource_url("nodes", name, sub).expect("url").to_string();
        assert_eq!(url(None, None), "http://127.0.0.1:8080/apis/herd/v1/nodes");
        assert_eq!(
            url(Some("a"), None),
            "http://127.0.0.1:8080/apis/herd/v1/nodes/a"
        );
        assert_eq!(
            url(Some("a"), Some("status")),
            "http://127.0.0.1:8080/apis/herd/v1/nodes/a/status"
        );
        assert_eq!(
            url(Some("a/b?c"), None),
            "http://127.0.0.1:8080/apis/herd/v1/nodes/a%2Fb%3Fc"
        );
        assert!(c.resource_url("nodes", Some(""), None).is_err());

        let prefixed = Client::new("https://example.com/herd/").expect("client");
        let got = prefixed
            .resource_url("modelassignments", Some("m"), None)
            .expect("url");
        assert_eq!(
            got.as_str(),
            "https://example.com/herd/apis/herd/v1/modelassignments/m"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let secret = "herd_abcdefgh1234_SECRETSECRETSECRETSECRETSECRETSECRETSECRE";
        let builder = Client::builder("http://127.0.0.1:1").token(secret);
        assert!(!format!("{builder:?}").contains("SECRET"), "{builder:?}");
        let client = builder.build().expect("client");
        let debug = format!("{client:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        let req = client
            .request(reqwest::Method::GET, client.base_url().clone())
            .build()
            .expect("request");
        assert!(!format!("{req:?}").contains("SECRET"));
        let err = Client::builder("http://x")
            .token("a\nb")
            .build()
            .expect_err("newline");
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    }

    #[tokio::test]
    async fn every_request_carries_the_token() {
        use axum::http::HeaderMap as Headers;
        let app = axum::Router::new().route(
            "/healthz",
            axum::routing::get(|headers: Headers| async move {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}");
        let get = |client: Client| async move {
            let url = client.base_url().join("healthz").expect("url");
            client
                .http()
                .get(url)
                .send()
                .await
                .expect("send")
                .text()
                .await
                .expect("body")
        };
        assert_eq!(get(Client::new(&url).expect("client")).await, "none");
        let with = Client::builder(&url)
            .token("herd_k")
            .build()
            .expect("client");
        assert_eq!(get(with.clone()).await, "Bearer herd_k");

        // API calls of every clone send a replaced key.
        let clone = with.clone();
        with.set_token("herd_new").expect("a header value");
        let req = clone
            .request(
                reqwest::Method::GET,
                clone.base_url().join("healthz").expect("url"),
            )
            .build()
            .expect("request");
        assert_eq!(req.headers()["authorization"], "Bearer herd_new");
        assert!(!format!("{:?}", req.headers()).contains("herd_new"));
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for url in [
            "",
            "localhost:8080",
            "ftp://x",
            "http://x/?a=b",
            "mailto:a@b",
            "http://x/#f",
        ] {
            let err = Client::new(url).expect_err(url);
            assert!(matches!(err, Error::InvalidRequest(_)), "{url}: {err}");
        }
    }
}
