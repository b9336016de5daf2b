//! One `herd server` process: API, store, proxy and the controller in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use std::sync::Mutex;

use herd_api::Node;
use herd_auth::Token;
use herd_client::{Api, Client, ClientTrust};

use crate::net::{self, Host};
use crate::process::Proc;

/// Controller and proxy timings for tests: a node that stops heartbeating
/// leaves routing within a second or two instead of the default 15 s.
pub const FAST_FLAGS: &[&str] = &[
    "--heartbeat-grace",
    "1s",
    "--probe-interval",
    "250ms",
    "--probe-timeout",
    "500ms",
    "--connect-timeout",
    "500ms",
    "--failure-cooldown",
    "2s",
    "--status-report-interval",
    "200ms",
    "--bookmark-interval",
    "2s",
    "--resync",
    "2s",
];

/// The data directory of every server started, by URL, so a node started
/// with only the router's URL finds the join key the server wrote.
static DATA_DIRS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The key the server at `url` wrote to `file` in its data directory, when
/// this process started it and it wrote one.
pub fn key_of(url: &str, file: &str) -> Option<Token> {
    let dirs = DATA_DIRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_, dir) = dirs.iter().find(|(u, _)| u == url)?;
    herd_auth::read_key_file(&dir.join(file)).ok()
}

/// The server's admin key file, in its data directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// The server's join key file, in its data directory.
pub const JOIN_KEY_FILE: &str = "join.key";

/// How to run the server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--balancer` (p2c when `None`).
    pub balancer: Option<String>,
    /// Leave out [`FAST_FLAGS`] (measure the defaults).
    pub default_timings: bool,
    /// More flags, after the fast ones (so they win).
    pub extra: Vec<String>,
    /// Listen on this address instead of a machine address of its own
    /// (127.0.0.1 for "the router's own machine" through `localhost`).
    pub listen_ip: Option<std::net::IpAddr>,
    /// `--tls-self-signed`: HTTPS with a CA the server makes in its data
    /// directory (its certificate names the address it listens on).
    pub tls_self_signed: bool,
}

impl ServerOptions {
    pub fn balancer(b: &str) -> ServerOptions {
        ServerOptions {
            balancer: Some(b.to_owned()),
            ..ServerOptions::default()
        }
    }

    /// HTTPS with a self-signed CA in the data directory.
    pub fn tls_self_signed() -> ServerOptions {
        ServerOptions {
            tls_self_signed: true,
            ..ServerOptions::default()
        }
    }

    /// Adds flags (after the fast ones, so they win).
    pub fn flags(mut self, flags: &[&str]) -> ServerOptions {
        self.extra.extend(flags.iter().map(|s| (*s).to_owned()));
        self
    }
}

/// A running `herd server`.
pub struct Server {
    pub proc: Proc,
    /// `http://IP:PORT`, or `https://IP:PORT` when it serves TLS.
    pub url: String,
    pub addr: SocketAddr,
    pub host: Host,
    data_dir: tempfile::TempDir,
    options: ServerOptions,
    starts: u32,
}

impl Server {
    /// Starts a server on a machine address of its own, with fast timings.
    pub async fn start() -> Server {
        Server::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> Server {
        let host = net::next_host();
        let data_dir = tempfile::tempdir().expect("tempdir");
        let listen = SocketAddr::new(options.listen_ip.unwrap_or(host.ip), 0);
        let (proc, scheme, addr) = spawn(&options, listen, &data_dir.path().to_owned(), 1).await;
        let url = format!("{scheme}://{addr}");
        DATA_DIRS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((url.clone(), data_dir.path().to_owned()));
        Server {
            proc,
            url,
            addr,
            host,
            data_dir,
            options,
            starts: 1,
        }
    }

    /// `kill -9` of the server process.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts the server again on the same address and data directory
    /// (after [`Server::kill9`] or a crash).
    pub async fn restart(&mut self) {
        self.proc.kill9();
        self.starts += 1;
        let (proc, _, _) = spawn(
            &self.options,
            self.addr,
            &self.data_dir.path().to_owned(),
            self.starts,
        )
        .await;
        let old = std::mem::replace(&mut self.proc, proc);
        // Keep the dead process's log lines for a failure dump.
        if std::thread::panicking() {
            old.dump();
        }
    }

    /// A client with the server's admin key (when it wrote one).
    pub fn client(&self) -> Client {
        let mut builder = Client::builder(&self.url);
        if let Some(ca) = self.ca_cert() {
            builder = builder.trust(ClientTrust::CaFile(ca));
        }
        if let Some(key) = self.admin_key() {
            builder = builder.token(key.expose());
        }
        builder
            .build()
            .expect("client")
            .with_request_timeout(Some(Duration::from_secs(10)))
    }

    /// The admin key the server wrote at its first start.
    pub fn admin_key(&self) -> Option<Token> {
        herd_auth::read_key_file(&self.data_dir.path().join(ADMIN_KEY_FILE)).ok()
    }

    /// The join key the server wrote at its first start.
    pub fn join_key(&self) -> Option<Token> {
        herd_auth::read_key_file(&self.data_dir.path().join(JOIN_KEY_FILE)).ok()
    }

    /// An HTTP client sending the admin key on every request, for the
    /// management API; bounded by `timeout` when given.
    pub fn authed_client(&self, timeout: Option<Duration>) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = self.admin_key() {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", key.expose()))
                    .expect("a key is a header value");
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = self.trusting(reqwest::Client::builder().default_headers(headers));
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        builder.build().expect("http client")
    }

    /// The CA a `--tls-self-signed` server made (`<data-dir>/tls/ca.crt`).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        let path = self.data_dir.path().join("tls").join("ca.crt");
        path.is_file().then_some(path)
    }

    /// `builder` trusting the server's CA, when it has one.
    pub fn trusting(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match self.ca_cert() {
            Some(ca) => ClientTrust::CaFile(ca)
                .apply(builder)
                .expect("the server's CA file is usable"),
            None => builder,
        }
    }

    /// [`crate::http`], trusting the server's CA.
    pub fn http(&self) -> reqwest::Client {
        self.trusting(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0),
        )
        .build()
        .expect("reqwest client")
    }

    /// `req` with the admin key, for the management API.
    pub fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.admin_key() {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        }
    }

    pub fn nodes(&self) -> Api<Node> {
        self.client().api()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// `GET /apis/herd/v1/requests/stats`, the dashboard's per-node view.
    pub async fn stats(&self) -> serde_json::Value {
        self.authed(
            self.http()
                .get(format!("{}/apis/herd/v1/requests/stats", self.url)),
        )
        .send()
        .await
        .expect("GET requests/stats")
        .json()
        .await
        .expect("stats json")
    }

    /// The stats entry of one node, if listed.
    pub async fn node_stats(&self, name: &str) -> Option<serde_json::Value> {
        let stats = self.stats().await;
        stats["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == name)
            .cloned()
    }

    /// Whether the proxy would route a new request to `name` now.
    pub async fn routable(&self, name: &str) -> Option<bool> {
        self.node_stats(name)
            .await
            .and_then(|n| n["routable"].as_bool())
    }

    /// Waits until every named node is Ready with [`crate::MODEL`] and
    /// routable; returns the time it took.
    pub async fn wait_routable(&self, names: &[&str], limit: Duration) -> Duration {
        let start = std::time::Instant::now();
        for name in names {
            crate::eventually(
                &format!("node {name} routable with {}", crate::MODEL),
                limit.saturating_sub(start.elapsed()),
                || async {
                    let n = self.node_stats(name).await?;
                    Some(n)
                },
                |n| {
                    n["routable"] == true
                        && n["models"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|m| m == crate::MODEL))
                },
            )
            .await;
        }
        start.elapsed()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc.rss_kib()
    }
}

async fn spawn(
    options: &ServerOptions,
    listen: SocketAddr,
    data_dir: &PathBuf,
    start: u32,
) -> (Proc, &'static str, SocketAddr) {
    let mut cmd = Command::new(crate::bins::herd());
    cmd.arg("server")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--data-dir")
        .arg(data_dir);
    if !options.default_timings {
        cmd.args(FAST_FLAGS);
    }
    if let Some(b) = &options.balancer {
        cmd.args(["--balancer", b]);
    }
    if options.tls_self_signed {
        cmd.arg("--tls-self-signed");
    }
    cmd.args(&options.extra);
    cmd.env(
        "RUST_LOG",
        std::env::var("HERD_E2E_LOG").unwrap_or_else(|_| "info".to_owned()),
    )
    .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(format!("herd server #{start} ({listen})"), cmd);
    let line = proc
        .wait_for_line("listening", Duration::from_secs(30), |l| {
            listening_url(l).is_some()
        })
        .await;
    let (scheme, addr) = listening_url(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, scheme, addr)
}

/// The scheme and address of herd's `listening on http[s]://ADDR` log line.
pub fn listening_url(line: &str) -> Option<(&'static str, SocketAddr)> {
    let rest = line.split("listening on ").nth(1)?;
    let (scheme, rest) = if let Some(rest) = rest.strip_prefix("https://") {
        ("https", rest)
    } else {
        ("http", rest.strip_prefix("http://")?)
    };
    let addr = rest
        .split_whitespace()
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((scheme, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        // (line, scheme and address)
        let cases = [
            (
                "INFO herd server listening on http://127.0.0.2:8080 addr=127.0.0.2:8080",
                Some(("http", "127.0.0.2:8080")),
            ),
            (
                "INFO herd server listening on https://127.0.0.1:43210",
                Some(("https", "127.0.0.1:43210")),
            ),
            (
                "herd server listening on https://[::1]:443\"",
                Some(("https", "[::1]:443")),
            ),
            ("herd server listening on ftp://127.0.0.1:21", None),
            ("listening", None),
            ("herd server listening on http://not-an-address", None),
        ];
        for (line, want) in cases {
            let want =
                want.map(|(scheme, addr)| (scheme, addr.parse::<SocketAddr>().expect("addr")));
            assert_eq!(listening_url(line), want, "{line}");
        }
    }
}
