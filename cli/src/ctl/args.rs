//! Flags shared by the verbs that talk to a server.

use clap::{Args, ValueEnum};
use herd_client::Client;

use super::errors;

/// Where the herd server is: the connection flags every verb that talks to a
/// server shares.
///
/// They are global, so they go before or after the verb, as kubectl users
/// write them (`herd --server URL get nodes`, `herd get nodes --server URL`).
/// A subcommand with a `--server` of its own (`herd nodelet`, whose
/// `--server` reads `ROUTER_URL`) keeps it: clap does not hand a global flag
/// to a subcommand that defines one with the same name.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// URL of the herd server (for the verbs and `herd controller`).
    #[arg(
        long,
        global = true,
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
