//! `herd delete TYPE NAME…`, `herd delete TYPE -l SELECTOR|--all`,
//! `herd delete -f PATH`.

use std::path::PathBuf;

use clap::Args;
use herd_client::Client;

use crate::ctl::args::ConnectArgs;
use crate::ctl::kind::{self, Kind};
use crate::ctl::{block_on, errors, manifest, objects, output};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// `TYPE NAME…` or `TYPE/NAME…`.
    #[arg(value_name = "TYPE[/NAME]", num_args = 0..)]
    pub targets: Vec<String>,
    /// Delete the objects these manifests describe (file, directory, or `-`).
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Delete every object of TYPE whose labels match.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Delete every object of TYPE.
    #[arg(long)]
    pub all: bool,
    /// An object that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub fn run(args: DeleteArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let targets = targets(&args)?;
    let client = connect.client()?;
    block_on(delete_all(&client, &connect.server, &args, targets))?
}

/// What to delete: `(kind, Some(name))`, or `(kind, None)` for "all that
/// match the selector".
fn targets(args: &DeleteArgs) -> anyhow::Result<Vec<(Kind, Option<String>)>> {
    if !args.files.is_empty() {
        anyhow::ensure!(
            args.targets.is_empty() && args.selector.is_none() && !args.all,
            "give either -f or TYPE NAME, not both"
        );
        let parsed = manifest::parse_all(&manifest::read_sources(&args.files)?);
        if !parsed.problems.is_empty() {
            let list: Vec<String> = parsed.problems.iter().map(|p| format!("  {p}")).collect();
            anyhow::bail!(
                "nothing was deleted: the manifests have problems:\n{}",
                list.join("\n")
            );
        }
        return Ok(parsed
            .documents
            .into_iter()
            .map(|d| (d.kind, Some(d.name)))
            .collect());
    }
    let targets = kind::parse_targets(&args.targets).map_err(anyhow::Error::msg)?;
    let bulk = args.selector.is_some() || args.all;
    for (kind, name) in &targets {
        anyhow::ensure!(
            *kind != Kind::Request,
            "requests are the proxy's history and cannot be deleted"
        );
        anyhow::ensure!(
            name.is_some() != bulk,
            "{}",
            if bulk {
                "give names, or -l/--all, not both"
            } else {
                "name what to delete (TYPE NAME), or use -l SELECTOR or --all"
            }
        );
    }
    Ok(targets)
}

async fn delete_all(
    client: &Client,
    server: &str,
    args: &DeleteArgs,
    targets: Vec<(Kind, Option<String>)>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for (kind, name) in targets {
        let names = match name {
            Some(n) => vec![n],
            None => {
                let objects = objects::list(client, kind, args.selector.as_deref())
                    .await
                    .map_err(|e| errors::client_error(&e, server))?;
                let names: Vec<String> = objects
                    .iter()
                    .filter_map(|o| o.pointer("/metadata/name")?.as_str().map(str::to_owned))
                    .collect();
                if names.is_empty() {
                    eprintln!("No {} found.", kind.plural());
                }
                names
            }
        };
        for name in names {
            match objects::delete(client, kind, &name).await {
                Ok(_) => output::emit(&format!("{kind}/{name} deleted\n"))?,
                Err(e) if e.is_not_found() && args.ignore_not_found => {}
                Err(e) if e.is_not_found() => failed.push(errors::describe(&e, server)),
                Err(e) => return Err(errors::client_error(&e, server)),
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(failed.join("\n"))
    }
}
