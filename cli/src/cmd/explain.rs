//! `herd explain KIND[.field.path]`: what a field is, from the server's
//! JSON Schemas, the way `kubectl explain` shows it.

use clap::Args;
use herd_api::API_VERSION;

use crate::ctl::args::ConnectArgs;
use crate::ctl::kind::Kind;
use crate::ctl::{block_on, errors, output, remote, schema};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  herd explain node
  herd explain modelassignment.spec.nodeSelector
  herd explain no.status --recursive")]
pub struct ExplainArgs {
    /// A kind (node, modelassignment, event, or their short names), then
    /// optionally a dotted field path.
    #[arg(value_name = "KIND[.FIELD…]")]
    pub target: String,
    /// Show every nested field (names and types only).
    #[arg(long)]
    pub recursive: bool,
}

pub fn run(args: ExplainArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let mut parts = args.target.split('.');
    let kind = Kind::parse(parts.next().unwrap_or("")).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        kind != Kind::Request,
        "requests are the proxy's history, not a resource with a schema"
    );
    let path: Vec<&str> = parts.collect();
    anyhow::ensure!(
        path.iter().all(|p| !p.is_empty()),
        "{:?}: a field path is names separated by single dots, e.g. node.spec.weight",
        args.target
    );
    let client = connect.client()?;
    let schema = block_on(remote::schema(&client, kind.plural()))?
        .map_err(|e| errors::client_error(&e, &connect.server))?;
    let text = schema::explain(
        kind.kind_name(),
        API_VERSION,
        &schema,
        &path,
        args.recursive,
    )
    .map_err(anyhow::Error::msg)?;
    output::emit(&text)
}
