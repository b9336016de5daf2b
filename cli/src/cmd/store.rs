//! `herd store copy`: moves a single server's state into a PostgreSQL
//! database that several servers will share.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Copy every object of a SQLite store (`sqlite://DATA-DIR`, the server's
    /// `--data-dir`) into a new, empty PostgreSQL database (`postgres://…`),
    /// with their revisions. Stop the server first: writes made during the copy
    /// are not copied. The change history is not copied (watchers list again).
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
struct CopyArgs {
    /// The SQLite store: `sqlite://` and the data directory holding herd.db.
    #[arg(long, value_parser = parse_sqlite)]
    from: PathBuf,
    /// The PostgreSQL database: `postgres://USER@HOST:PORT/DB` (password as for
    /// `herd server --store`).
    #[arg(long, value_parser = parse_postgres)]
    to: String,
    /// A file holding the PostgreSQL password alone.
    #[arg(long, env = "HERD_STORE_PASSWORD_FILE")]
    to_password_file: Option<PathBuf>,
}

fn parse_sqlite(s: &str) -> Result<PathBuf, String> {
    let path = s
        .strip_prefix("sqlite://")
        .ok_or("expected sqlite://DATA-DIR")?;
    let path = PathBuf::from(path);
    // Either the data directory or herd.db itself.
    let dir = if path.file_name().is_some_and(|n| n == "herd.db") {
        path.parent().map(PathBuf::from).unwrap_or_default()
    } else {
        path
    };
    if !dir.join("herd.db").is_file() {
        return Err(format!("no herd.db in {}", dir.display()));
    }
    Ok(dir)
}

fn parse_postgres(s: &str) -> Result<String, String> {
    if herd_apiserver::store::is_postgres_url(s) {
        Ok(s.to_owned())
    } else {
        Err("expected a postgres://USER@HOST:PORT/DB URL".into())
    }
}

pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let StoreCommand::Copy(args) = args.command;
    let target = herd_apiserver::PgTarget::parse(
        &args.to,
        args.to_password_file.as_deref(),
        &herd_apiserver::PgEnv::from_process(),
    )
    .context("--to")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let from = herd_apiserver::SqliteStore::open(
            &args.from,
            herd_apiserver::KINDS,
            herd_apiserver::StoreOptions::default(),
        )
        .with_context(|| format!("opening {}", args.from.display()))?;
        let copied = herd_apiserver::PgStore::import(&target, herd_apiserver::KINDS, &from)
            .await
            .with_context(|| format!("copying into {}", target.describe()))?;
        println!(
            "copied {copied} objects at revision {} into {}",
            herd_apiserver::Store::revision(&from),
            target.describe()
        );
        Ok(())
    })
}
