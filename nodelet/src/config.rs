//! How a nodelet is configured: [`NodeletArgs`] are the flags and environment
//! variables of `herd nodelet` (flattened into the `herd` binary's own parser), and
//! [`NodeletConfig`] is what [`crate::run`] takes — built from the args, or directly by
//! tests, which also shorten every timer through [`Timings`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use herd_api::validate;
use herd_auth::{KeyFileError, Token, read_key_file};
use reqwest::Url;

use crate::advertise::{AdvertiseError, parse_ollama_host};
use crate::install::{
    AssetError, DEFAULT_DOWNLOAD_BASE, HttpProxyError, HttpProxySettings, OllamaVersion,
    ProgressDisplay, default_install_dir, parse_base_url,
};
use herd_client::backoff::Backoff;

/// The flags of `herd nodelet` (and of the nodelet half of `herd up`). Every flag can
/// also be set through the environment variable named in its help.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeletArgs {
    /// URL of the herd router this node registers with.
    #[arg(
        long = "server",
        env = "ROUTER_URL",
        default_value = "http://localhost:8080",
        value_name = "URL"
    )]
    pub server: String,

    /// Name of this node. Default: the machine's hostname, lower-cased, with every other
    /// character than a letter or digit turned into '-'.
    #[arg(long, env = "HERD_NODE_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// A label for this node, KEY=VALUE; repeat the flag for more (comma-separated in
    /// the environment variable). Labels an operator added to the node are kept.
    #[arg(
        long = "label",
        env = "HERD_NODE_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,

    /// The local Ollama to manage, in OLLAMA_HOST syntax (host, host:port,
    /// http://host:port). herd starts `ollama serve` there when nothing answers.
    #[arg(
        long,
        env = "OLLAMA_HOST",
        default_value = "127.0.0.1:11434",
        value_name = "ADDR"
    )]
    pub ollama_url: String,

    /// The URL the router should use to reach this node's Ollama. Default: this
    /// machine's address towards the router (loopback when the router runs here), with
    /// the port of --ollama-url.
    #[arg(long, env = "HERD_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,

    /// Concurrent requests this node accepts: sets the node's spec.maxParallel and the
    /// OLLAMA_NUM_PARALLEL of the Ollama herd starts. Default: leave both as they are.
    #[arg(long, env = "HERD_MAX_PARALLEL", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_parallel: Option<u32>,

    /// herd's own directory for Ollama releases it downloads. Default: the platform's
    /// data directory, e.g. ~/.local/share/herd/ollama.
    #[arg(long, env = "HERD_OLLAMA_INSTALL_DIR", value_name = "DIR")]
    pub install_dir: Option<PathBuf>,

    /// Never download Ollama: use one that answers at --ollama-url, one on PATH or one
    /// already in the install directory.
    #[arg(long, env = "HERD_NO_INSTALL")]
    pub no_install: bool,

    /// The Ollama release to install when none is found: "latest" or a release such
    /// as v0.33.0.
    #[arg(
        long,
        env = "HERD_OLLAMA_VERSION",
        default_value = "latest",
        value_name = "VERSION"
    )]
    pub ollama_version: OllamaVersion,

    /// Where Ollama releases are downloaded from: the GitHub releases page or a mirror
    /// laid out like it (…/download/<tag>/<asset> and …/latest/download/<asset>).
    #[arg(long, env = "HERD_DOWNLOAD_BASE_URL", default_value = DEFAULT_DOWNLOAD_BASE, value_name = "URL")]
    pub download_base_url: String,

    /// Skip the SHA-256 check of the downloaded Ollama against the release's
    /// sha256sum.txt (only for mirrors that publish none).
    #[arg(long, env = "HERD_NO_VERIFY_CHECKSUM")]
    pub no_verify_checksum: bool,

    /// How often the node's status (health, load, models) is sent to the router.
    #[arg(long, env = "HERD_HEARTBEAT_INTERVAL", default_value = "5s",
          value_parser = parse_interval, value_name = "DURATION")]
    pub heartbeat_interval: Duration,

    /// The model to pull when nothing is assigned to this node. Default: one sized to
    /// the machine's memory (qwen2.5:0.5b, llama3.2:1b, llama3.2:3b or llama3.1:8b).
    #[arg(long, env = "HERD_DEFAULT_MODEL", value_name = "MODEL")]
    pub default_model: Option<String>,

    /// Pull no default model.
    #[arg(long, env = "HERD_NO_DEFAULT_MODEL", conflicts_with = "default_model")]
    pub no_default_model: bool,

    /// At shutdown, how long to wait for the requests in flight on this node to end
    /// before stopping the Ollama herd started; 0s stops it at once. The node leaves
    /// routing first; the count is the one the router reports in the node's
    /// status.usage.inFlight, and a 0 is believed once read --drain-settle after the
    /// node left routing. If the router does not answer, the wait ends after 5s. A
    /// second SIGTERM/SIGINT ends it at once.
    #[arg(long, env = "HERD_DRAIN_TIMEOUT", default_value = "30s",
          value_parser = parse_timeout, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// While draining, how long after the node left routing an in-flight count of 0
    /// is believed: the router writes the count at most once per its
    /// --status-report-interval (1s by default) and a count that keeps changing can
    /// wait two, so keep this at two of the server's intervals plus half a second.
    #[arg(long, env = "HERD_DRAIN_SETTLE", default_value = "2500ms",
          value_parser = parse_timeout, value_name = "DURATION")]
    pub drain_settle: Duration,

    /// The key this nodelet uses: a join key (exchanged at first start for a node key
    /// kept in --state-dir) or a node key. Prefer --token-file: a flag shows in process
    /// lists.
    #[arg(long, env = "HERD_TOKEN", hide_env_values = true, value_name = "KEY",
          value_parser = parse_token)]
    pub token: Option<Token>,

    /// A file holding the key, as --token (mode 0600 is advisable).
    #[arg(
        long,
        env = "HERD_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,

    /// PEM file with the CA that signed the router's certificate, for an https:// router
    /// whose certificate no public CA signed. A join key of a `--tls-self-signed` router
    /// carries its CA's fingerprint, which is enough without this.
    #[arg(long, env = "HERD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Where the nodelet keeps its node key (node.key). Default: the platform's local
    /// data directory, e.g. ~/.local/share/herd/nodelet/<node name>.
    #[arg(long, env = "HERD_NODELET_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// A key; the error names what is wrong with it, never its content.
fn parse_token(value: &str) -> Result<Token, String> {
    Token::parse(value.trim()).map_err(|e| e.to_string())
}

/// A duration where 0 means "do not wait".
fn parse_timeout(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| e.to_string())
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_owned());
    }
    Ok(d)
}

/// What to pull when nothing is assigned to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultModel {
    /// The table of [`crate::default_model`], by the machine's total memory.
    BySize,
    /// This model.
    Named(String),
    /// Nothing.
    Off,
}

/// Every timer and retry schedule of the nodelet. [`Timings::default`] is for real
/// machines; tests use [`Timings::fast`].
#[derive(Clone, Debug)]
pub struct Timings {
    /// Between failed registrations (router down, refused): forever, capped.
    pub register_retry: Backoff,
    /// Between restarts of an `ollama serve` that died.
    pub restart_backoff: Backoff,
    /// An `ollama serve` that ran this long before dying restarts without backoff.
    pub stable_after: Duration,
    /// Between failed installs (or finds, under `--no-install`).
    pub install_retry: Backoff,
    /// Between tries of one download (see [`Backoff::DOWNLOAD`]).
    pub download_retry: Backoff,
    /// Between failed pulls of one model.
    pub pull_retry: Backoff,
    /// Bound on each request to the local Ollama's status endpoints.
    pub probe_timeout: Duration,
    /// How often a starting `ollama serve` is asked `GET /`.
    pub ready_poll: Duration,
    /// A started `ollama serve` that does not answer within this is restarted.
    pub ready_timeout: Duration,
    /// How long a stopped `ollama serve` gets after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// Pull progress is written to the node's status at most this often.
    pub pull_status_interval: Duration,
    /// Bound on the last status write (`NodeletReady` False) at shutdown.
    pub final_status_timeout: Duration,
    /// Between failed lists and watches of the ModelAssignment watcher.
    pub watch_backoff: Backoff,
    /// Plain progress log lines (no terminal) come this often.
    pub log_every: Duration,
    /// A pull whose stream stays silent this long has failed.
    pub pull_stall_timeout: Duration,
    /// How often the node is read while draining at shutdown.
    pub drain_poll: Duration,
    /// While draining, an in-flight count of 0 is believed only when read this long
    /// after the node left routing (see [`crate::drain`]).
    pub drain_settle: Duration,
    /// While draining, reads of the node that fail for this long end the drain.
    pub drain_unreachable_grace: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            register_retry: Backoff::FOREVER,
            restart_backoff: Backoff::FOREVER,
            stable_after: Duration::from_secs(60),
            install_retry: Backoff::FOREVER.with_base(Duration::from_secs(30)),
            download_retry: Backoff::DOWNLOAD,
            pull_retry: Backoff::FOREVER.with_base(Duration::from_secs(5)),
            probe_timeout: Duration::from_secs(5),
            ready_poll: Duration::from_millis(100),
            ready_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(10),
            pull_status_interval: Duration::from_secs(1),
            final_status_timeout: Duration::from_secs(5),
            watch_backoff: Backoff::WATCH,
            log_every: Duration::from_secs(5),
            pull_stall_timeout: Duration::from_secs(300),
            drain_poll: Duration::from_millis(250),
            drain_settle: Duration::from_millis(2500),
            drain_unreachable_grace: Duration::from_secs(5),
        }
    }
}

impl Timings {
    /// Millisecond-scale timers, for tests.
    pub fn fast() -> Timings {
        let ms = Duration::from_millis;
        Timings {
            register_retry: Backoff::FOREVER.with_base(ms(20)),
            restart_backoff: Backoff::FOREVER.with_base(ms(20)),
            stable_after: Duration::from_secs(2),
            install_retry: Backoff::FOREVER.with_base(ms(50)),
            download_retry: Backoff::DOWNLOAD.with_base(ms(1)),
            pull_retry: Backoff::FOREVER.with_base(ms(50)),
            probe_timeout: Duration::from_secs(2),
            ready_poll: ms(10),
            ready_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            pull_status_interval: ms(20),
            final_status_timeout: Duration::from_secs(5),
            watch_backoff: Backoff::WATCH.between(ms(20), ms(200)),
            log_every: Duration::from_secs(1),
            pull_stall_timeout: Duration::from_secs(10),
            drain_poll: ms(20),
            drain_settle: ms(300),
            drain_unreachable_grace: Duration::from_secs(1),
        }
    }
}

/// Everything [`crate::run`] needs.
#[derive(Clone, Debug)]
pub struct NodeletConfig {
    /// The router.
    pub server: Url,
    /// The node's name; a valid object name.
    pub name: String,
    /// Labels from `--label`.
    pub labels: BTreeMap<String, String>,
    /// The local Ollama (parsed `--ollama-url`).
    pub ollama_url: Url,
    /// `--advertise-url`.
    pub advertise_url: Option<Url>,
    /// `--max-parallel`.
    pub max_parallel: Option<u32>,
    /// herd's Ollama install directory.
    pub install_dir: PathBuf,
    /// Download Ollama when none is found (no `--no-install`).
    pub install: bool,
    pub ollama_version: OllamaVersion,
    pub download_base_url: Url,
    pub verify_checksum: bool,
    /// Proxies for downloads (the process environment's, by default).
    pub proxy: HttpProxySettings,
    pub heartbeat_interval: Duration,
    pub default_model: DefaultModel,
    /// Progress bars or log lines for downloads and pulls.
    pub display: ProgressDisplay,
    /// The `PATH` searched for an `ollama` (the process's, by default).
    pub path_var: Option<OsString>,
    /// `--drain-timeout`: at shutdown, the longest wait for requests in flight before
    /// the Ollama herd started is stopped; zero stops it at once.
    pub drain_timeout: Duration,
    /// The key given by `--token` or `--token-file`: a join key or a node key.
    pub token: Option<Token>,
    /// `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
    /// Where `node.key` is kept; without one, a join key cannot be used.
    pub state_dir: Option<PathBuf>,
    pub timings: Timings,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --server / ROUTER_URL {value:?}: {reason}")]
    Server { value: String, reason: String },
    #[error("invalid --name {value:?}: {reason} (for example {suggestion:?})")]
    Name {
        value: String,
        reason: String,
        suggestion: String,
    },
    #[error("invalid --label {value:?}: {reason}")]
    Label { value: String, reason: String },
    #[error("invalid --default-model {value:?}: {reason}")]
    DefaultModel { value: String, reason: String },
    #[error(transparent)]
    Advertise(#[from] AdvertiseError),
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error(transparent)]
    Proxy(#[from] HttpProxyError),
    #[error("no install directory: the platform has no data directory; pass --install-dir")]
    NoInstallDir,
    #[error("no state directory: the platform has no data directory; pass --state-dir")]
    NoStateDir,
    #[error("--token-file: {0}")]
    TokenFile(KeyFileError),
}

impl NodeletConfig {
    /// Defaults for a nodelet named `name` registering with `server`; everything else
    /// as the flags' defaults, with no proxy and the process's `PATH`.
    pub fn new(server: Url, name: impl Into<String>, install_dir: impl Into<PathBuf>) -> Self {
        NodeletConfig {
            server,
            name: name.into(),
            labels: BTreeMap::new(),
            ollama_url: parse_ollama_host("").expect("the default Ollama address parses"),
            advertise_url: None,
            max_parallel: None,
            install_dir: install_dir.into(),
            install: true,
            ollama_version: OllamaVersion::Latest,
            download_base_url: Url::parse(DEFAULT_DOWNLOAD_BASE)
                .expect("the default base URL is valid"),
            verify_checksum: true,
            proxy: HttpProxySettings::none(),
            heartbeat_interval: Duration::from_secs(5),
            default_model: DefaultModel::BySize,
            display: ProgressDisplay::Auto,
            path_var: std::env::var_os("PATH"),
            drain_timeout: Duration::from_secs(30),
            token: None,
            ca_cert: None,
            state_dir: None,
            timings: Timings::default(),
        }
    }

    /// Checks and converts the flags. Reads the hostname (for a missing `--name`),
    /// `PATH` and the proxy variables of this process.
    pub fn from_args(args: &NodeletArgs) -> Result<Self, ConfigError> {
        let server = parse_server(&args.server)?;
        let name = match &args.name {
            Some(name) => check_name(name)?,
            None => default_node_name(),
        };
        let install_dir = match &args.install_dir {
            Some(dir) => dir.clone(),
            None => default_install_dir().ok_or(ConfigError::NoInstallDir)?,
        };
        let state_dir = match &args.state_dir {
            Some(dir) => dir.clone(),
            None => default_state_dir(&name).ok_or(ConfigError::NoStateDir)?,
        };
        let mut config = NodeletConfig::new(server, name, install_dir);
        config.state_dir = Some(state_dir);
        config.token = match (&args.token, &args.token_file) {
            (_, Some(path)) => Some(read_key_file(path).map_err(ConfigError::TokenFile)?),
            (Some(token), None) => Some(token.clone()),
            (None, None) => None,
        };
        config.ca_cert.clone_from(&args.ca_cert);
        config.labels = parse_labels(&args.labels)?;
        config.ollama_url = parse_ollama_host(&args.ollama_url)?;
        config.advertise_url = args
            .advertise_url
            .as_deref()
            .map(|raw| {
                Url::parse(raw).map_err(|e| AdvertiseError::InvalidOverride {
                    value: raw.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        config.max_parallel = args.max_parallel;
        config.install = !args.no_install;
        config.ollama_version = args.ollama_version.clone();
        config.download_base_url = parse_base_url(&args.download_base_url)?;
        config.verify_checksum = !args.no_verify_checksum;
        config.proxy = HttpProxySettings::from_process_env()?;
        config.heartbeat_interval = args.heartbeat_interval;
        config.drain_timeout = args.drain_timeout;
        config.timings.drain_settle = args.drain_settle;
        config.default_model = match (&args.default_model, args.no_default_model) {
            (_, true) => DefaultModel::Off,
            (Some(model), false) => DefaultModel::Named(check_model(model)?),
            (None, false) => DefaultModel::BySize,
        };
        Ok(config)
    }
}

fn parse_server(value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Server {
        value: value.to_owned(),
        reason,
    };
    let url = Url::parse(value.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "must be an http:// or https:// URL with a host".to_owned(),
        ));
    }
    Ok(url)
}

fn check_name(name: &str) -> Result<String, ConfigError> {
    validate::dns1123_label(name).map_err(|reason| ConfigError::Name {
        value: name.to_owned(),
        reason,
        suggestion: validate::sanitize_name(name),
    })?;
    Ok(name.to_owned())
}

/// `<local data dir>/herd/nodelet/<name>`: one directory per node name, so nodelets
/// of different names on one machine never share a node key.
pub fn default_state_dir(name: &str) -> Option<PathBuf> {
    dirs::data_local_dir().map(|d| d.join("herd").join("nodelet").join(name))
}

/// This machine's hostname as a valid node name (`GPU-Box.lab` → `gpu-box-lab`).
pub fn default_node_name() -> String {
    let host = sysinfo::System::host_name().unwrap_or_default();
    validate::sanitize_name(&host)
}

/// Parses `KEY=VALUE` labels; a later value for the same key wins.
pub fn parse_labels(raw: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for item in raw {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let invalid = |reason: String| ConfigError::Label {
            value: item.to_owned(),
            reason,
        };
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| invalid("expected KEY=VALUE".to_owned()))?;
        validate::label_key(key).map_err(invalid)?;
        validate::label_value(value).map_err(invalid)?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

fn check_model(model: &str) -> Result<String, ConfigError> {
    herd_api::ModelName::parse(model).map_err(|reason| ConfigError::DefaultModel {
        value: model.to_owned(),
        reason,
    })?;
    Ok(model.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: NodeletArgs,
    }

    fn parse(argv: &[&str]) -> Result<NodeletArgs, clap::Error> {
        let mut all = vec!["nodelet"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    #[test]
    fn flags_become_a_config() {
        let args = parse(&[
            "--server",
            "http://router.lan:8080",
            "--name",
            "gpu-box-1",
            "--label",
            "gpu=nvidia",
            "--label",
            "zone=a,rack=3",
            "--ollama-url",
            "0.0.0.0:11500",
            "--max-parallel",
            "3",
            "--install-dir",
            "/opt/herd/ollama",
            "--no-install",
            "--ollama-version",
            "0.33.0",
            "--download-base-url",
            "http://mirror.lan/ollama/",
            "--heartbeat-interval",
            "250ms",
            "--default-model",
            "qwen2.5:0.5b",
            "--drain-timeout",
            "1m30s",
            "--drain-settle",
            "10500ms",
        ])
        .expect("parse");
        let c = NodeletConfig::from_args(&args).expect("config");
        assert_eq!(c.server.as_str(), "http://router.lan:8080/");
        assert_eq!(c.name, "gpu-box-1");
        let labels: Vec<_> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(labels, ["gpu=nvidia", "rack=3", "zone=a"]);
        assert_eq!(c.ollama_url.as_str(), "http://0.0.0.0:11500/");
        assert_eq!(c.max_parallel, Some(3));
        assert_eq!(c.install_dir, PathBuf::from("/opt/herd/ollama"));
        assert!(!c.install);
        assert_eq!(c.ollama_version.to_string(), "v0.33.0");
        assert_eq!(c.download_base_url.as_str(), "http://mirror.lan/ollama/");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(c.default_model, DefaultModel::Named("qwen2.5:0.5b".into()));
        assert_eq!(c.drain_timeout, Duration::from_secs(90));
        assert_eq!(c.timings.drain_settle, Duration::from_millis(10_500));
        assert!(c.verify_checksum);
    }

    #[test]
    fn defaults() {
        // OLLAMA_HOST or ROUTER_URL set in the test environment would change defaults.
        if std::env::var_os("OLLAMA_HOST").is_some() || std::env::var_os("ROUTER_URL").is_some() {
            return;
        }
        let args = parse(&["--install-dir", "/tmp/x"]).expect("parse");
        let c = NodeletConfig::from_args(&args).expect("config");
        assert_eq!(c.server.as_str(), "http://localhost:8080/");
        assert_eq!(c.ollama_url.as_str(), "http://127.0.0.1:11434/");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.timings.drain_settle, Duration::from_millis(2500));
        assert_eq!(c.default_model, DefaultModel::BySize);
        assert_eq!(c.ollama_version, OllamaVersion::Latest);
        assert!(c.install && c.verify_checksum);
        assert!(validate::dns1123_label(&c.name).is_ok(), "{}", c.name);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--server", "localhost:8080"], "--server"),
            (&["--server", "ftp://x"], "--server"),
            (&["--name", "GPU_Box"], "gpu-box"),
            (&["--label", "novalue"], "--label"),
            (&["--label", "bad key=v"], "--label"),
            (&["--label", "k=bad value"], "--label"),
            (&["--ollama-url", "host:99999"], "host:99999"),
            (&["--advertise-url", "not a url"], "--advertise-url"),
            (&["--download-base-url", "ftp://x"], "ftp://x"),
            (&["--default-model", "a/b/c/d"], "--default-model"),
        ];
        for (argv, expected) in cases {
            let mut all = vec!["--install-dir", "/tmp/x"];
            all.extend_from_slice(argv);
            let args = parse(&all).expect("clap accepts it");
            let err = NodeletConfig::from_args(&args).expect_err(&format!("{argv:?}"));
            assert!(err.to_string().contains(expected), "{argv:?}: {err}");
        }
        for argv in [
            &["--max-parallel", "0"][..],
            &["--heartbeat-interval", "soon"],
            &["--heartbeat-interval", "0s"],
            &["--drain-timeout", "a while"],
            &["--drain-timeout", "-1s"],
            &["--ollama-version", "newest"],
            &["--default-model", "x", "--no-default-model"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn a_zero_drain_timeout_means_no_drain() {
        let args = parse(&["--install-dir", "/tmp/x", "--drain-timeout", "0s"]).expect("parse");
        let c = NodeletConfig::from_args(&args).expect("config");
        assert_eq!(c.drain_timeout, Duration::ZERO);
    }

    #[test]
    fn opting_out_of_the_default_model() {
        let args = parse(&["--install-dir", "/tmp/x", "--no-default-model"]).expect("parse");
        let c = NodeletConfig::from_args(&args).expect("config");
        assert_eq!(c.default_model, DefaultModel::Off);
    }
}
