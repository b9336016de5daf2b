//! `herd login --server URL [--token KEY] [--ca-cert FILE]`: checks the key
//! against the server, then stores server, key and CA in the user's config
//! directory (mode 0600) for every later command, as kubeconfig does. Without
//! `--token` the key is read from standard input, so it need not appear in a
//! process list or shell history.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use clap::Args;
use herd_api::Node;
use herd_auth::Token;
use herd_client::ListParams;

use crate::ctl::args::{
    ConnectArgs, ConnectEnv, ConnectFlags, KeySource, Login, SERVER_ENV, login_path,
};
use crate::ctl::{block_on, errors};

#[derive(Args, Debug)]
pub struct LoginArgs {}

pub fn run(_args: LoginArgs, flags: &ConnectFlags) -> anyhow::Result<()> {
    let env = ConnectEnv::from_process();
    let server =
        flags.server.clone().or(env.server).with_context(|| {
            format!("name the server: herd login --server URL (or {SERVER_ENV})")
        })?;
    let token = match &flags.token {
        Some(token) => token.clone(),
        None => read_token()?,
    };
    let ca_cert = flags
        .ca_cert
        .clone()
        .or(env.ca_cert)
        .map(|path| std::path::absolute(&path).unwrap_or(path));
    let connect = ConnectArgs {
        server: server.clone(),
        token: Some((token.clone(), KeySource::Flag)),
        ca_cert: ca_cert.clone(),
        problem: None,
    };
    let client = connect.client()?;
    let checked = block_on(async {
        client
            .api::<Node>()
            .list(&ListParams::default())
            .await
            .map(drop)
    })?;
    match checked {
        Ok(()) => {}
        // The key is good; its role just may not list nodes.
        Err(e) if e.code() == Some(403) => eprintln!(
            "note: key {} is valid but may not list nodes; `herd get` will be refused what its role does not allow",
            token.id
        ),
        Err(e) => return Err(errors::client_error(&e, &server)),
    }
    let path = login_path().context("no config directory on this platform; set HERD_CONFIG")?;
    Login {
        server: server.clone(),
        token: token.expose(),
        ca_cert,
    }
    .write(&path)
    .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "Logged in to {server} with key {}; stored in {}",
        token.id,
        path.display()
    );
    Ok(())
}

/// The key from standard input, its first non-empty line.
fn read_token() -> anyhow::Result<Token> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("API key: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the key from standard input")?;
    let line = line.trim();
    anyhow::ensure!(
        !line.is_empty(),
        "no key: pass --token KEY or write the key to standard input"
    );
    Token::parse(line).map_err(|e| anyhow::anyhow!("the key read from standard input: {e}"))
}
