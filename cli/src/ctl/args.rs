//! Flags shared by the verbs that talk to a server.

use clap::{Args, ValueEnum};
use herd_client::Client;

use super::errors;

/// The server a verb talks to unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://localhost:8080";
/// The variable that names the server when `--server` is not given.
pub const SERVER_ENV: &str = "HERD_SERVER";

/// The connection flags every verb that talks to a server shares, as typed.
///
/// They are global, so they go before or after the verb, as kubectl users
/// write them (`herd --server URL get nodes`, `herd get nodes --server URL`).
/// A subcommand with a `--server` of its own (`herd nodelet`, whose
/// `--server` reads `ROUTER_URL`) keeps it: clap does not hand a global flag
/// to a subcommand that defines one with the same name.
///
/// `HERD_SERVER` is read by [`ConnectArgs::resolve`], not by clap: clap
/// copies a global's value into a subcommand's argument of the same name
/// whenever the global's came from a "stronger" source, so an `env` here
/// would hand `HERD_SERVER` to `herd nodelet` in place of its own default.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectFlags {
    /// URL of the herd server, for the verbs and `herd controller` [env:
    /// HERD_SERVER] [default: http://localhost:8080]
    #[arg(long = "server", global = true, value_name = "URL")]
    pub server: Option<String>,
}

/// Where the herd server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectArgs {
    pub server: String,
}

impl ConnectArgs {
    /// `--server` if given, else a non-empty `HERD_SERVER` (`env`), else
    /// [`DEFAULT_SERVER`].
    pub fn resolve(flags: &ConnectFlags, env: Option<String>) -> ConnectArgs {
        let server = flags
            .server
            .clone()
            .or_else(|| env.filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        ConnectArgs { server }
    }

    /// [`resolve`](Self::resolve) with this process's `HERD_SERVER`.
    pub fn from_flags(flags: &ConnectFlags) -> ConnectArgs {
        Self::resolve(flags, std::env::var(SERVER_ENV).ok())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_resolution_table() {
        // (flag, HERD_SERVER, resolved)
        let cases = [
            (Some("http://flag:1"), Some("http://env:2"), "http://flag:1"),
            (Some("http://flag:1"), None, "http://flag:1"),
            (None, Some("http://env:2"), "http://env:2"),
            (None, Some(""), DEFAULT_SERVER),
            (None, None, DEFAULT_SERVER),
        ];
        for (flag, env, want) in cases {
            let flags = ConnectFlags {
                server: flag.map(str::to_owned),
            };
            let got = ConnectArgs::resolve(&flags, env.map(str::to_owned));
            assert_eq!(got.server, want, "{flag:?} {env:?}");
        }
    }
}
