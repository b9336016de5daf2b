//! The controller's settings: [`ControllerArgs`] for the command line (the
//! `herd` binary flattens it into `herd server` and `herd controller`), and
//! [`Config`], which tests build directly with millisecond timers.

use std::time::Duration;

use herd_api::node_address::Cidr;
use herd_client::backoff::Backoff;

use crate::lease::LeaseTimes;
use crate::probe::Hysteresis;

/// Command-line flags of the controller. Every flag also reads a `HERD_*`
/// environment variable; durations are written like `15s`, `500ms`, `1m`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ControllerArgs {
    /// A node whose last heartbeat is older than this becomes Ready=Unknown
    /// (reason HeartbeatMissed) and leaves routing. Nodelets heartbeat every 5s.
    #[arg(long, env = "HERD_HEARTBEAT_GRACE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat_grace: Duration,
    /// How often the controller checks each node's Ollama (GET {url}/api/version, or /v1/models of an OpenAI-compatible server).
    #[arg(long, env = "HERD_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// How long one probe may take (connect included) before it counts as failed.
    #[arg(long, env = "HERD_PROBE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,
    /// Consecutive failed probes before a node is marked Reachable=False.
    #[arg(long, env = "HERD_PROBE_FAILURE_THRESHOLD", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_failure_threshold: u32,
    /// Consecutive successful probes before an unreachable node is marked Reachable=True again.
    #[arg(long, env = "HERD_PROBE_SUCCESS_THRESHOLD", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_success_threshold: u32,
    /// A node holding a replica that stays not Ready this long is replaced by another node.
    #[arg(long, env = "HERD_REPLACE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub replace_after: Duration,
    /// Every object is reconciled at least this often, even when nothing changed.
    #[arg(long, env = "HERD_RESYNC", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Networks node URLs may point at although they are link-local or cloud metadata
    /// addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254), which are refused by
    /// default: comma-separated, like 169.254.10.0/24,fe80::/10.
    #[arg(long, env = "HERD_ALLOW_NODE_ADDRESSES", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_node_addresses: Vec<Cidr>,
    /// Only the holder of the `controller` lease reconciles; another controller
    /// takes it over once it has gone this long unrenewed.
    #[arg(long, env = "HERD_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How often the holder renews the lease (and others check it).
    #[arg(long, env = "HERD_LEASE_RENEW", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_renew: Duration,
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

impl Default for ControllerArgs {
    fn default() -> Self {
        Config::default().into()
    }
}

impl ControllerArgs {
    pub fn config(&self) -> Config {
        Config {
            heartbeat_grace: self.heartbeat_grace,
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            probe: Hysteresis {
                failure_threshold: self.probe_failure_threshold,
                success_threshold: self.probe_success_threshold,
            },
            replace_after: self.replace_after,
            resync: self.resync,
            allow_node_addresses: self.allow_node_addresses.clone(),
            lease: LeaseTimes {
                duration: self.lease_duration,
                renew_every: self.lease_renew,
            },
            ..Config::default()
        }
    }
}

impl From<Config> for ControllerArgs {
    fn from(c: Config) -> Self {
        Self {
            heartbeat_grace: c.heartbeat_grace,
            probe_interval: c.probe_interval,
            probe_timeout: c.probe_timeout,
            probe_failure_threshold: c.probe.failure_threshold,
            probe_success_threshold: c.probe.success_threshold,
            replace_after: c.replace_after,
            resync: c.resync,
            allow_node_addresses: c.allow_node_addresses,
            lease_duration: c.lease.duration,
            lease_renew: c.lease.renew_every,
        }
    }
}

/// Everything [`crate::run`] needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Heartbeats older than this make a node `Ready=Unknown`.
    pub heartbeat_grace: Duration,
    /// Time between two probes of one node while it answers. After a failed
    /// probe the next one comes after a quarter of this, so a dead node is
    /// confirmed quickly; see [`crate::probe`].
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub probe: Hysteresis,
    /// How long a placed node may stay not Ready before it is replaced.
    pub replace_after: Duration,
    /// Period of the full resync.
    pub resync: Duration,
    /// Reconciles running at once, per kind.
    pub workers: usize,
    /// Probes in flight at once.
    pub probe_concurrency: usize,
    /// Retry delay of a failed reconcile.
    pub error_backoff: Backoff,
    /// Retry delay of a failed list or watch.
    pub watch_backoff: Backoff,
    /// Networks probes may reach although refused by default (see
    /// `herd_api::node_address`).
    pub allow_node_addresses: Vec<Cidr>,
    /// The controller lease's timings.
    pub lease: LeaseTimes,
    /// Who this controller is in the lease; `None`: the host name and a
    /// random suffix.
    pub identity: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat_grace: Duration::from_secs(15),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            probe: Hysteresis::default(),
            replace_after: Duration::from_secs(60),
            resync: Duration::from_secs(30),
            workers: 8,
            probe_concurrency: 128,
            error_backoff: Backoff::WATCH
                .between(Duration::from_millis(250), Duration::from_secs(30)),
            watch_backoff: Backoff::WATCH,
            allow_node_addresses: Vec::new(),
            lease: LeaseTimes::default(),
            identity: None,
        }
    }
}

impl Config {
    /// The pause before re-probing a node whose last probe failed.
    pub fn probe_recheck(&self) -> Duration {
        self.probe_interval / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        controller: ControllerArgs,
    }

    #[test]
    fn defaults_match_the_config_defaults() {
        let cli = Cli::try_parse_from(["herd"]).expect("parse");
        assert_eq!(cli.controller.config(), Config::default());
        assert_eq!(ControllerArgs::default(), cli.controller);
    }

    #[test]
    fn flags_parse_human_durations() {
        let cli = Cli::try_parse_from([
            "herd",
            "--heartbeat-grace",
            "500ms",
            "--probe-interval=1s",
            "--probe-timeout",
            "250ms",
            "--probe-failure-threshold",
            "3",
            "--replace-after",
            "2m",
            "--resync",
            "1h",
        ])
        .expect("parse");
        let c = cli.controller.config();
        assert_eq!(c.heartbeat_grace, Duration::from_millis(500));
        assert_eq!(c.probe_interval, Duration::from_secs(1));
        assert_eq!(c.probe_timeout, Duration::from_millis(250));
        assert_eq!(c.probe.failure_threshold, 3);
        assert_eq!(c.replace_after, Duration::from_secs(120));
        assert_eq!(c.resync, Duration::from_secs(3600));
        assert!(Cli::try_parse_from(["herd", "--probe-failure-threshold", "0"]).is_err());
        assert!(Cli::try_parse_from(["herd", "--resync", "soon"]).is_err());
    }
}
