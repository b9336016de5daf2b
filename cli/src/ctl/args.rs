//! Flags shared by the verbs that talk to a server.

use clap::{Args, ValueEnum};
use herd_client::Client;

use super::errors;

/// Where the herd server is. Each verb carries it (rather than one global
/// flag on `herd`) so that `herd get no --server URL` and other subcommands'
/// own `--server` flags never collide.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// URL of the herd server.
    #[arg(
        long,
        env = "HERD_SERVER",
        default_value = "http://localhost:8080",
        value_name = "URL"
    )]
    pub server: String,
}

impl ConnectArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.server).map_err(|e| errors::client_error(&e, &self.server))
    }
}

/// How `get` prints what it found.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Columns for people.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The objects as YAML (re-applies cleanly with `herd apply -f -`).
    Yaml,
    /// The objects as JSON (re-applies cleanly with `herd apply -f -`).
    Json,
    /// `kind/name`, one per line, for scripts.
    Name,
}

impl OutputFormat {
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How write verbs (`apply`, `delete`) report what they did.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutput {
    /// Only `kind/name`, one per line.
    Name,
    /// The resulting objects as YAML.
    Yaml,
    /// The resulting objects as JSON.
    Json,
}
