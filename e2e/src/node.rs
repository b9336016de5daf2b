//! One node: a `herd nodelet` process and the Ollama it manages, on a
//! machine address of its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::net::{self, Host};
use crate::process::Proc;

/// Where the node's Ollama comes from.
#[derive(Clone, Debug)]
pub enum OllamaSource {
    /// Nothing runs at the node's Ollama address and nothing is installed:
    /// the nodelet downloads the release from this base URL (a
    /// [`crate::ReleaseServer`]), checks its SHA-256, unpacks it into its
    /// install directory, starts `ollama serve` (fake-ollama) and pulls
    /// [`crate::MODEL`] as its default model.
    Install { base_url: String },
    /// A `fake-ollama serve` process started beside the nodelet with
    /// [`crate::MODEL`] and these extra flags; the nodelet finds it running.
    Beside { args: Vec<String> },
    /// An Ollama that already answers at this URL (e.g. an in-process
    /// `FakeOllama`); the nodelet only manages it.
    External { url: String },
}

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub name: String,
    pub source: OllamaSource,
    /// `--heartbeat-interval`.
    pub heartbeat: String,
    /// `--advertise-url`: where the router should reach this Ollama.
    pub advertise_url: Option<String>,
    /// The router URL given as `ROUTER_URL` (the server's URL when `None`).
    pub router_url: Option<String>,
    /// `--ollama-url` (this machine's Ollama address when `None`).
    pub ollama_url: Option<String>,
    /// Extra nodelet flags.
    pub extra: Vec<String>,
    /// Extra environment of the nodelet, which an Ollama it installs and
    /// starts inherits (e.g. `FAKE_OLLAMA_TOKENS`).
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    /// A node whose Ollama the nodelet installs from `release`.
    pub fn install(name: &str, release: &crate::ReleaseServer) -> NodeOptions {
        NodeOptions::new(
            name,
            OllamaSource::Install {
                base_url: release.base.clone(),
            },
        )
    }

    /// A node with a `fake-ollama` process beside its nodelet.
    pub fn beside(name: &str) -> NodeOptions {
        NodeOptions::new(name, OllamaSource::Beside { args: Vec::new() })
    }

    /// A node managing the Ollama at `url`.
    pub fn external(name: &str, url: &str) -> NodeOptions {
        NodeOptions::new(
            name,
            OllamaSource::External {
                url: url.to_owned(),
            },
        )
    }

    pub fn new(name: &str, source: OllamaSource) -> NodeOptions {
        NodeOptions {
            name: name.to_owned(),
            source,
            heartbeat: "200ms".to_owned(),
            advertise_url: None,
            router_url: None,
            ollama_url: None,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// An environment variable for the nodelet and the Ollama it starts.
    pub fn env(mut self, key: &str, value: &str) -> NodeOptions {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Extra `fake-ollama serve` flags (for [`OllamaSource::Beside`]).
    pub fn fake_args(mut self, args: &[&str]) -> NodeOptions {
        if let OllamaSource::Beside { args: a } = &mut self.source {
            a.extend(args.iter().map(|s| (*s).to_owned()));
        }
        self
    }
}

/// A running node.
pub struct Node {
    pub name: String,
    pub host: Host,
    /// The URL the nodelet is told its Ollama is at (`--ollama-url`).
    pub ollama_url: String,
    nodelet: Option<Proc>,
    /// The `fake-ollama` process beside the nodelet ([`OllamaSource::Beside`]).
    pub ollama: Option<Proc>,
    dir: tempfile::TempDir,
    router_url: String,
    /// The join key of the server the node was started for, given as `HERD_TOKEN`.
    join_key: Option<herd_auth::Token>,
    options: NodeOptions,
    starts: u32,
}

impl Node {
    /// Starts the node (its Ollama first when it runs beside the nodelet),
    /// registering with the router at `router_url`. Does not wait for
    /// registration.
    pub async fn start(router_url: &str, options: NodeOptions) -> Node {
        let host = net::next_host();
        let dir = tempfile::tempdir().expect("tempdir");
        let ollama_url = match (&options.ollama_url, &options.source) {
            (Some(u), _) => u.clone(),
            (None, OllamaSource::External { url }) => url.clone(),
            (None, _) => host.ollama_url(),
        };
        let mut node = Node {
            name: options.name.clone(),
            host,
            ollama_url,
            nodelet: None,
            ollama: None,
            join_key: crate::server::key_of(router_url, crate::server::JOIN_KEY_FILE),
            dir,
            router_url: options
                .router_url
                .clone()
                .unwrap_or_else(|| router_url.to_owned()),
            options,
            starts: 0,
        };
        node.spawn().await;
        node
    }

    /// Where the nodelet keeps its node key (`--state-dir`): the node's own
    /// directory, so no two test nodes of one name share a key.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("nodelet-state")
    }

    fn install_dir(&self) -> PathBuf {
        self.dir.path().join("herd-ollama")
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        if let OllamaSource::Beside { args } = &self.options.source
            && self.ollama.as_mut().is_none_or(|p| p.try_exit().is_some())
        {
            self.ollama = Some(start_fake(&self.name, self.host, args, self.starts).await);
        }
        let install_dir = self.install_dir();
        std::fs::create_dir_all(&install_dir).expect("install dir");
        let mut cmd = Command::new(crate::bins::herd());
        cmd.arg("nodelet")
            .arg("--name")
            .arg(&self.name)
            .arg("--ollama-url")
            .arg(&self.ollama_url)
            .arg("--install-dir")
            .arg(&install_dir)
            .arg("--heartbeat-interval")
            .arg(&self.options.heartbeat)
            .arg("--state-dir")
            .arg(self.state_dir());
        match &self.options.source {
            OllamaSource::Install { base_url } => {
                cmd.args([
                    "--download-base-url",
                    base_url,
                    "--ollama-version",
                    "latest",
                ])
                .args(["--default-model", crate::MODEL]);
            }
            OllamaSource::Beside { .. } | OllamaSource::External { .. } => {
                cmd.args(["--no-install", "--no-default-model"]);
            }
        }
        if let Some(a) = &self.options.advertise_url {
            cmd.args(["--advertise-url", a]);
        }
        cmd.args(&self.options.extra);
        for var in [
            "OLLAMA_HOST",
            "HERD_NODE_NAME",
            "HERD_ADVERTISE_URL",
            "HERD_LISTEN",
            "HERD_TOKEN",
            "HERD_TOKEN_FILE",
            "HERD_CA_CERT",
        ] {
            cmd.env_remove(var);
        }
        if let Some(key) = &self.join_key {
            cmd.env("HERD_TOKEN", key.expose());
        }
        cmd.env("ROUTER_URL", &self.router_url)
            .env("HOME", self.dir.path())
            // The installed Ollama inherits this: pulled models survive its restarts.
            .env("OLLAMA_MODELS", self.dir.path().join("models"))
            .env("PATH", "/usr/bin:/bin")
            .env(
                "RUST_LOG",
                std::env::var("HERD_E2E_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("NO_COLOR", "1")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn(format!("nodelet {} #{}", self.name, self.starts), cmd)
            .with_companions(&install_dir);
        if let Some(old) = self.nodelet.replace(proc)
            && std::thread::panicking()
        {
            old.dump();
        }
    }

    /// The (latest) nodelet process.
    pub fn nodelet(&mut self) -> &mut Proc {
        self.nodelet.as_mut().expect("nodelet started")
    }

    /// `kill -9` of the nodelet and of its Ollama (installed or beside).
    pub fn kill9(&mut self) {
        self.nodelet().kill9();
        if let Some(o) = &mut self.ollama {
            o.kill9();
        }
    }

    /// SIGTERM to the nodelet, as Ctrl-C or systemd would stop it; waits
    /// (bounded) for it to exit.
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.nodelet().terminate(Duration::from_secs(40)).await
    }

    /// Starts the nodelet again (and the Ollama beside it, if it is dead),
    /// with the same name, address and install directory.
    pub async fn restart(&mut self) {
        self.nodelet().kill9();
        self.spawn().await;
    }

    /// Pids of the Ollama the nodelet installed and started.
    pub fn installed_ollama_pids(&self) -> Vec<u32> {
        self.nodelet
            .as_ref()
            .map(Proc::companion_pids)
            .unwrap_or_default()
    }

    /// The nodelet's log line saying it registered, once there is one.
    pub async fn wait_registered(&mut self, limit: Duration) -> String {
        self.nodelet()
            .wait_for_line("registration", limit, |l| {
                l.contains("registered with the router")
            })
            .await
    }
}

/// A `fake-ollama serve` process on `host`'s Ollama address with [`crate::MODEL`].
pub async fn start_fake(name: &str, host: Host, args: &[String], n: u32) -> Proc {
    let home = std::env::temp_dir();
    let mut cmd = Command::new(crate::bins::fake_ollama());
    cmd.arg("serve")
        .args(["--models", crate::MODEL])
        .args(args)
        .env("OLLAMA_HOST", host.ollama.to_string())
        .env("HOME", home);
    let mut proc = Proc::spawn(format!("ollama of {name} #{n} ({})", host.ollama), cmd);
    proc.wait_for_line("Ollama listening", Duration::from_secs(15), |l| {
        l.contains("Listening on")
    })
    .await;
    proc
}
