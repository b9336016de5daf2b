//! `herd server`, assembled in one place: the store and the resource API,
//! the Ollama/OpenAI proxy, the controller and the dashboard, composed into
//! one router and served on one listener by the [`host`].
//!
//! [`run`] serves until a shutdown future resolves, in the shape of
//! tokio's mini-redis. [`Server::build`] does the same in two steps, for
//! callers that need a handle first (the proxy, the store, the address, the
//! shutdown token), then [`Server::serve`].
//!
//! A layer that concerns every route (authentication) belongs in
//! [`Server::build`]'s composition; one that concerns the connection (a TLS
//! acceptor) in the [`host`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = herd_server::Config::new(herd_apiserver::Config::new("/tmp/herd"));
//! herd_server::run(config, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

pub mod bootstrap;
pub mod dashboard;
pub mod gate;
pub mod host;
pub mod sessions;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_api::{Node, Secret};
use herd_apiserver::AppState;
use herd_client::{Client, reflector, watcher};
use herd_proxy::{Proxy, ProxyConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use bootstrap::{ADMIN_KEY_FILE, JOIN_KEY_FILE};
pub use gate::{Gate, Hosts};
pub use herd_auth::{ModelPolicy, Openness};
pub use host::{App, Workers};

use dashboard::Dashboard;
use sessions::{HostNames, Sessions};

/// How long [`Server::serve`] waits for the controller to finish after the
/// listener has closed.
const CONTROLLER_GRACE: Duration = Duration::from_secs(5);

/// What `herd server` runs, and how it serves it.
#[derive(Clone, Debug)]
pub struct Config {
    /// The store and the resource API.
    pub api: herd_apiserver::Config,
    /// The proxy (`/`, `/api/*`, `/v1/*`, `/metrics`, the request history);
    /// `None` leaves those paths unserved.
    pub proxy: Option<ProxyConfig>,
    /// Whether the proxy's hot paths skip axum's routing (see
    /// `herd_proxy::Proxy::shortcut`). The router serves the same requests
    /// the same way; turning this off is for comparing the two.
    pub proxy_shortcut: bool,
    /// The controller in this process; `None` when it runs elsewhere
    /// (`herd server --no-controller`, `herd controller`).
    pub controller: Option<herd_controller::Config>,
    /// The dashboard at `/dashboard`.
    pub dashboard: bool,
    /// Where connections are served: see [`Workers`].
    pub http_workers: Workers,
    /// Closes client connections quiet for this long (see
    /// [`App::with_idle_timeout`]); `None` keeps them as long as clients do.
    pub client_idle_timeout: Option<Duration>,
    /// What requests without a key may do. The management API always needs
    /// one.
    pub openness: Openness,
    /// `Host` names accepted besides the loopback ones when listening on
    /// loopback (`--allowed-hosts`).
    pub allowed_hosts: Vec<String>,
    /// Replaces the join key at start (`herd server --rotate-join-key`).
    pub rotate_join_key: bool,
    /// HTTPS on the listener; `None` serves plain HTTP.
    pub tls: Option<Tls>,
    /// Client connections served at once; past it new ones are closed at
    /// accept and counted in `/metrics`. `None` sets no limit.
    pub max_connections: Option<usize>,
}

/// Where the server's certificate comes from.
#[derive(Clone, Debug)]
pub enum Tls {
    /// PEM files, reloaded when they change (`--tls-cert`, `--tls-key`).
    /// The server's loopback clients trust the certificates in `cert` as
    /// roots, so the file should hold the chain up to its CA, valid for the
    /// listen address.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and a server certificate kept in `<data-dir>/tls`
    /// (`--tls-self-signed`), for the machine's names and addresses plus
    /// `sans` (`--tls-san`); renewed under the same CA before it expires.
    SelfSigned { sans: Vec<String> },
}

/// How often the self-signed certificate is checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(6 * 3600);

impl Config {
    /// Everything on, with default settings, served on the caller's runtime
    /// and with no idle limit.
    pub fn new(api: herd_apiserver::Config) -> Config {
        Config {
            api,
            proxy: Some(ProxyConfig::default()),
            proxy_shortcut: true,
            controller: Some(herd_controller::Config::default()),
            dashboard: true,
            http_workers: Workers::Shared,
            client_idle_timeout: None,
            openness: Openness {
                inference: true,
                metrics: false,
                registration: false,
                models: ModelPolicy::Pull,
            },
            allowed_hosts: Vec::new(),
            rotate_join_key: false,
            tls: None,
            max_connections: None,
        }
    }
}

/// What stops the server from starting or serving. The message says what
/// was being done; the cause is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the store")]
    Api(#[from] herd_apiserver::Error),
    #[error("reading the listener's address")]
    Listener(#[source] std::io::Error),
    #[error("building the API client")]
    Client(#[from] herd_client::Error),
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    #[error("making the server's keys")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("setting up TLS")]
    Tls(#[from] herd_tls::TlsError),
}

/// Builds everything `config` asks for and serves it on `listener` until
/// `shutdown` resolves; then finishes the requests in flight, ends watches,
/// stops the controller and closes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Server::build(config, listener)?.serve(shutdown).await
}

/// A server built and ready to serve: its parts, for callers that need
/// them before [`Server::serve`] takes it.
pub struct Server {
    app: App,
    listener: TcpListener,
    addr: SocketAddr,
    http_workers: Workers,
    state: AppState,
    proxy: Option<Proxy>,
    nodes: Option<herd_client::Store<Node>>,
    controller: Option<(herd_controller::Config, Client, herd_client::Store<Secret>)>,
    token: CancellationToken,
}

impl Server {
    /// Opens the store and composes the routes; starts the proxy's watch
    /// of nodes. Nothing is served until [`Server::serve`]. Needs a tokio
    /// runtime.
    pub fn build(mut config: Config, listener: TcpListener) -> Result<Server, Error> {
        let addr = listener.local_addr().map_err(Error::Listener)?;
        let token = CancellationToken::new();
        config.api.auth = Some(config.openness);
        let data_dir = config.api.data_dir.clone();
        let (mut router, state) = herd_apiserver::build(config.api, token.clone())?;
        if config.openness.registration {
            tracing::warn!(
                "open registration: any nodelet may register and update a node without a key (--open-registration)"
            );
        }

        // The key ring: the stored keys, plus the loopback clients' key,
        // which exists only in this process.
        let (internal, extra) =
            bootstrap::internal_key().map_err(bootstrap::BootstrapError::Generate)?;
        let (secrets_key, secrets_entry) =
            bootstrap::secrets_key().map_err(bootstrap::BootstrapError::Generate)?;
        let extra = vec![extra, secrets_entry];
        herd_apiserver::keyring::load(&*state.store, &state.keys, &extra);
        tokio::spawn(herd_apiserver::keyring::follow(
            state.store.clone(),
            state.keys.clone(),
            extra,
            token.clone(),
        ));
        let (tls, trust, ca_pin) = match &config.tls {
            None => (None, None, None),
            Some(Tls::Files { cert, key }) => (
                Some(herd_tls::ServerTls::from_files(cert.clone(), key.clone())?),
                Some(herd_tls::ClientTrust::CaFile(cert.clone())),
                None,
            ),
            Some(Tls::SelfSigned { sans }) => {
                let ensured = herd_tls::SelfSigned::ensure(
                    &data_dir.join("tls"),
                    &self_signed_sans(sans, addr),
                )?;
                tracing::info!(
                    ca = %ensured.ca_cert_path().display(),
                    ca_sha256 = %ensured.ca_sha256(),
                    "serving HTTPS with a self-signed certificate"
                );
                ensured.spawn_renewal(RENEWAL_CHECK);
                let fingerprint = ensured.ca_fingerprint();
                (
                    Some(ensured.server_tls()?),
                    Some(herd_tls::ClientTrust::PinnedCa(fingerprint)),
                    hex32(&ensured.ca_sha256()),
                )
            }
        };
        bootstrap::block_on(async {
            bootstrap::ensure(&state, &data_dir, ca_pin).await?;
            if config.rotate_join_key {
                bootstrap::rotate_join_key(&state, &data_dir, ca_pin).await?;
            }
            Ok::<_, bootstrap::BootstrapError>(())
        })??;

        // The proxy and the controller read and write the store through the
        // API, over loopback: the same code runs in this process or on its own.
        let client = loopback_client(addr, &internal.token, trust.as_ref())?;
        // One watch of Secrets, shared by the proxy and the controller.
        let secrets = reflector::spawn(
            loopback_client(addr, &secrets_key.token, trust.as_ref())?.api::<Secret>(),
            watcher::Config::default(),
        );
        let (mut proxy, mut nodes, mut shortcut) = (None, None, None);
        if let Some(proxy_config) = config.proxy {
            let watched = reflector::spawn(client.api::<Node>(), watcher::Config::default());
            let p = Proxy::with_secrets(
                proxy_config,
                watched.clone(),
                secrets.clone(),
                client.clone(),
                token.clone(),
            );
            router = router.merge(p.router());
            if config.proxy_shortcut {
                shortcut = Some(p.shortcut());
            }
            (proxy, nodes) = (Some(p), Some(watched));
        }
        let dashboard = Dashboard {
            sessions: Arc::new(Sessions::new()),
            ring: Arc::clone(&state.keys),
            hosts: Arc::new(HostNames::of_this_machine().with(&config.allowed_hosts)),
            tls: tls.is_some(),
        };
        if config.dashboard {
            router = router
                .merge(herd_ui::router())
                .merge(dashboard::router(dashboard.clone()));
        }

        let limit = config.max_connections.map(host::ConnectionLimit::new);
        if let Some(limit) = &limit {
            router = router.layer(axum::middleware::from_fn_with_state(
                limit.clone(),
                host::metrics_with_connections,
            ));
        }
        let hosts = Hosts {
            loopback_only: addr.ip().is_loopback(),
            allowed: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        };
        let mut gate = Gate::new(Arc::clone(&state.keys), config.openness, hosts);
        if config.dashboard {
            gate = gate.with_sessions(dashboard);
        }
        let mut app = App::from(herd_apiserver::with_common_layers(router))
            .with_gate(gate)
            .with_idle_timeout(config.client_idle_timeout)
            .with_connection_limit(limit);
        if let Some(tls) = tls {
            app = app.with_tls(tls);
        }
        if let Some(shortcut) = shortcut {
            app = app.with_shortcut(shortcut);
        }
        Ok(Server {
            app,
            listener,
            addr,
            http_workers: config.http_workers,
            state,
            proxy,
            nodes,
            controller: config.controller.map(|mut c| {
                c.identity
                    .get_or_insert_with(|| lease_identity(addr, &data_dir));
                (c, client, secrets)
            }),
            token,
        })
    }

    /// The address being listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store and the API's settings.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The proxy, unless the config left it out.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// The proxy's watch cache of nodes, unless the config left the proxy
    /// out: ready once the first list has arrived.
    pub fn nodes(&self) -> Option<&herd_client::Store<Node>> {
        self.nodes.as_ref()
    }

    /// Cancelling it shuts the server down, as the `shutdown` future does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts the controller and serves until `shutdown` resolves or the
    /// [`Server::shutdown_token`] is cancelled; then stops accepting, lets
    /// requests in flight finish (watch streams end), and waits a little
    /// for the controller to stop.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let token = self.token;
        let controller = self.controller.map(|(config, client, secrets)| {
            spawn_controller(config, client, secrets, token.clone())
        });
        let served = host::serve_with(
            self.app,
            self.listener,
            shutdown,
            token.clone(),
            self.http_workers,
        )
        .await;
        // Serving also ends on an error: stop everything else with it.
        token.cancel();
        if let Some(c) = controller {
            let _ = tokio::time::timeout(CONTROLLER_GRACE, c).await;
        }
        served.map_err(Error::Serve)
    }
}

/// Who this server's controller is in the `controller` lease: the same after
/// a restart on the same machine, port and data directory, so a restarted
/// server takes its lease back at once instead of waiting for it to expire;
/// different for every other server sharing the store.
fn lease_identity(addr: std::net::SocketAddr, data_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herd".to_owned());
    let mut h = std::hash::DefaultHasher::new();
    std::fs::canonicalize(data_dir)
        .unwrap_or_else(|_| data_dir.to_owned())
        .hash(&mut h);
    format!("{host}:{}-{:08x}", addr.port(), h.finish() as u32)
}

fn spawn_controller(
    config: herd_controller::Config,
    client: Client,
    secrets: herd_client::Store<Secret>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = stop.cancelled_owned();
        if let Err(e) = herd_controller::run_with_secrets(config, client, secrets, stopped).await {
            tracing::error!(error = %e, "controller stopped");
        }
    })
}

/// The API client of the server's own loopback clients, with their
/// in-memory key on every request.
fn loopback_client(
    addr: SocketAddr,
    token: &herd_auth::Token,
    trust: Option<&herd_tls::ClientTrust>,
) -> Result<Client, Error> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| {
        herd_client::Error::InvalidRequest("a key is not a header value".into())
    })?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("herd-server/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers);
    let mut url = loopback_url(addr);
    if let Some(trust) = trust {
        http = trust.apply(http)?;
        url = url.replacen("http://", "https://", 1);
    }
    let http = http.build().map_err(herd_client::Error::from)?;
    Ok(Client::with_http_client(&url, http)?)
}

/// The extra names of a self-signed certificate: the operator's, and the address
/// the server listens on when it is a specific one. The server's own loopback
/// clients dial that address, and it may be none of the machine's interface
/// addresses the certificate names by itself (a loopback alias, say).
fn self_signed_sans(extra: &[String], listening: SocketAddr) -> Vec<String> {
    let mut sans = extra.to_vec();
    let ip = listening.ip();
    if !ip.is_unspecified() && !sans.iter().any(|s| s.parse() == Ok(ip)) {
        sans.push(ip.to_string());
    }
    sans
}

/// 64 hex digits as bytes.
fn hex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The URL a process uses to talk to its own API: the listen address, with
/// a wildcard host replaced by loopback.
pub fn loopback_url(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        SocketAddr::V4(a) => format!("http://{a}"),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_names_the_listening_address() {
        // (--tls-san values, listening address, names asked for)
        let cases: [(&[&str], &str, &[&str]); 5] = [
            (&[], "0.0.0.0:8080", &[]),
            (&["router.lan"], "[::]:8080", &["router.lan"]),
            (&[], "127.0.0.5:8080", &["127.0.0.5"]),
            (&["router.lan"], "10.0.0.7:443", &["router.lan", "10.0.0.7"]),
            (&["10.0.0.7"], "10.0.0.7:443", &["10.0.0.7"]),
        ];
        for (extra, addr, want) in cases {
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            let addr: SocketAddr = addr.parse().expect("addr");
            assert_eq!(self_signed_sans(&extra, addr), want, "{extra:?} {addr}");
        }
    }

    #[test]
    fn loopback_url_replaces_only_a_wildcard_host() {
        let cases = [
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("[::]:8080", "http://[::1]:8080"),
            ("10.1.2.3:80", "http://10.1.2.3:80"),
            ("127.0.0.1:9", "http://127.0.0.1:9"),
            ("[fe80::1]:8080", "http://[fe80::1]:8080"),
        ];
        for (addr, want) in cases {
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!(loopback_url(addr), want, "{addr}");
        }
    }
}
