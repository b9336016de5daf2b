//! `herd up`: the router and a nodelet for this machine in one process — the
//! one-command start on a single machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use herd_nodelet::NodeletConfig;
use herd_tls::ClientTrust;

use super::server::{self, ServerArgs};

/// How this process's nodelet reaches this process's server: its URL and the CA
/// file it trusts (none for plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loopback {
    url: String,
    ca_cert: Option<PathBuf>,
}

/// The loopback URL of the server on `addr`, https when it serves TLS, and the CA
/// that vouches for it: the certificate file given (as the server's own in-process
/// clients trust it), or the self-signed CA in the data directory.
fn loopback(addr: SocketAddr, args: &ServerArgs, data_dir: &Path) -> Loopback {
    let url = herd_server::loopback_url(addr);
    let ca_cert = match (&args.tls_cert, args.tls_self_signed) {
        (Some(cert), _) => Some(cert.clone()),
        (None, true) => Some(data_dir.join("tls").join(herd_tls::CA_CERT_FILE)),
        (None, false) => None,
    };
    match ca_cert {
        Some(ca) => Loopback {
            url: url.replacen("http://", "https://", 1),
            ca_cert: Some(ca),
        },
        None => Loopback { url, ca_cert: None },
    }
}

/// Waits until the server answers `/healthz`; false when its task ended first
/// (it failed to start: its own error says why).
async fn wait_until_serving(
    url: &str,
    server: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    while !server.is_finished() {
        match client.get(&health).send().await {
            // Any answer, even one in another protocol (TLS), means it serves.
            Ok(_) => return true,
            Err(e) if !e.is_connect() && !e.is_timeout() => return true,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    false
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Nodelet flags. `--server`/`ROUTER_URL` is ignored here: the nodelet
    /// always talks to this process.
    #[command(flatten)]
    pub nodelet: herd_nodelet::NodeletArgs,
}

pub fn run(mut args: UpArgs) -> anyhow::Result<()> {
    crate::logging::init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = server::bind(&args.server.listen).await?;
        let addr = listener.local_addr()?;
        let data_dir = args
            .server
            .data_dir
            .clone()
            .unwrap_or_else(server::default_data_dir);
        let loopback = loopback(addr, &args.server, &data_dir);
        args.nodelet.server = loopback.url.clone();
        if args.nodelet.state_dir.is_none() {
            args.nodelet.state_dir = Some(data_dir.join("nodelet"));
        }
        // The self-signed CA is pinned by the join key read below; a key given by
        // the person may carry no fingerprint, so the CA file backs it.
        let self_signed_pin = args.server.tls_self_signed
            && args.nodelet.token.is_none()
            && args.nodelet.token_file.is_none();
        if args.nodelet.ca_cert.is_none() && !self_signed_pin {
            args.nodelet.ca_cert.clone_from(&loopback.ca_cert);
        }
        let mut nodelet_config = NodeletConfig::from_args(&args.nodelet)?;

        // Ctrl-C stops the nodelet first (it tells the router it is leaving
        // and stops the Ollama it started once the requests in flight on it
        // have ended; a second Ctrl-C skips that wait), then the server.
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_key = data_dir.join(herd_server::ADMIN_KEY_FILE);
        let server = tokio::spawn(server::serve(args.server, listener, async move {
            let _ = server_stopped.await;
        }));
        tokio::spawn(herd_server::dashboard::print_signin_link(
            args.nodelet.server.clone(),
            admin_key,
            loopback.ca_cert.clone().map(ClientTrust::CaFile),
        ));
        // The server writes its join key before it answers; the nodelet here
        // exchanges it for a node key of its own, with no step for the person.
        // The wait speaks plain HTTP even to a TLS server: any answer will do.
        if nodelet_config.token.is_none()
            && wait_until_serving(&herd_server::loopback_url(addr), &server).await
        {
            let join_key = data_dir.join(herd_server::JOIN_KEY_FILE);
            if join_key.exists() {
                nodelet_config.token = Some(
                    herd_auth::read_key_file(&join_key)
                        .with_context(|| "the server's join key for this machine's nodelet")?,
                );
            }
        }
        let result = herd_nodelet::run_with_skip_drain(
            nodelet_config,
            super::shutdown_signal(),
            super::shutdown_signal,
        )
        .await;
        let _ = stop_server.send(());
        server.await.context("server task")??;
        result?;
        tracing::info!("herd stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn the_nodelet_speaks_the_servers_scheme_and_trusts_its_ca() {
        let addr: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let data = Path::new("/data");
        // (flags, URL, CA file)
        let cases: [(&[&str], &str, Option<&str>); 3] = [
            (&[], "http://127.0.0.1:8080", None),
            (
                &["--tls-self-signed"],
                "https://127.0.0.1:8080",
                Some("/data/tls/ca.crt"),
            ),
            (
                &["--tls-cert", "/etc/c.pem", "--tls-key", "/etc/k.pem"],
                "https://127.0.0.1:8080",
                Some("/etc/c.pem"),
            ),
        ];
        for (flags, url, ca) in cases {
            let cli = Cli::try_parse_from(std::iter::once("herd").chain(flags.iter().copied()))
                .expect("flags");
            let got = loopback(addr, &cli.server, data);
            assert_eq!(got.url, url, "{flags:?}");
            assert_eq!(got.ca_cert.as_deref(), ca.map(Path::new), "{flags:?}");
        }
    }
}
