//! `herd cordon|uncordon NODE…` and `herd drain NODE`: take nodes out of
//! routing (in-flight requests finish), put them back, and wait for a
//! cordoned node to finish its requests.

use std::time::Duration;

use clap::Args;
use futures_util::StreamExt as _;
use herd_api::Node;
use herd_client::{Client, PostParams, watcher};
use serde_json::json;
use tokio::time::Instant;

use crate::ctl::args::ConnectArgs;
use crate::ctl::{block_on, errors, output};

#[derive(Args, Debug)]
pub struct CordonArgs {
    /// The nodes.
    #[arg(value_name = "NODE", required = true, num_args = 1..)]
    pub nodes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The node.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// How long to wait for in-flight requests to finish (0: forever).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub fn cordon(args: CordonArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    set_all(args, connect, true)
}

pub fn uncordon(args: CordonArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    set_all(args, connect, false)
}

fn set_all(args: CordonArgs, connect: &ConnectArgs, unschedulable: bool) -> anyhow::Result<()> {
    let client = connect.client()?;
    block_on(async {
        for node in &args.nodes {
            let line = set_unschedulable(&client, node, unschedulable)
                .await
                .map_err(|e| errors::client_error(&e, &connect.server))?;
            output::emit(&line)?;
        }
        Ok(())
    })?
}

/// Merge patch of `spec.unschedulable`; says whether anything changed.
pub(crate) async fn set_unschedulable(
    client: &Client,
    node: &str,
    on: bool,
) -> Result<String, herd_client::Error> {
    let api = client.api::<Node>();
    let before = api.get(node).await?;
    if before.spec.unschedulable == on {
        let state = if on { "cordoned" } else { "uncordoned" };
        return Ok(format!("node/{node} already {state}\n"));
    }
    api.patch(
        node,
        &PostParams::default(),
        &json!({"spec": {"unschedulable": on}}),
    )
    .await?;
    let done = if on { "cordoned" } else { "uncordoned" };
    Ok(format!("node/{node} {done}\n"))
}

pub fn drain(args: DrainArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let client = connect.client()?;
    let server = connect.server.clone();
    block_on(async move {
        let line = set_unschedulable(&client, &args.node, true)
            .await
            .map_err(|e| errors::client_error(&e, &server))?;
        output::emit(&line)?;
        let deadline = (!args.timeout.is_zero()).then(|| Instant::now() + args.timeout);
        wait_drained(&client, &server, &args, deadline).await
    })?
}

fn in_flight(node: &Node) -> u32 {
    node.status.usage.as_ref().map_or(0, |u| u.in_flight)
}

/// Follows the node until `status.usage.inFlight` is 0, saying so each
/// time the count changes.
async fn wait_drained(
    client: &Client,
    server: &str,
    args: &DrainArgs,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let name = &args.node;
    let mut stream = std::pin::pin!(watcher::watcher(
        client.api::<Node>(),
        watcher::Config::default()
    ));
    let mut last: Option<u32> = None;
    let mut warned = false;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(next) => next,
                Err(_) => anyhow::bail!(
                    "timed out after {} waiting for node/{name} to drain: {} request(s) still in flight. \
                     The node stays cordoned; `herd uncordon {name}` puts it back in routing.",
                    humantime::format_duration(args.timeout),
                    last.map_or("an unknown number of".to_owned(), |n| n.to_string())
                ),
            },
            None => stream.next().await,
        };
        let node = match next {
            None => anyhow::bail!("the watch of node/{name} ended"),
            Some(Err(e)) => {
                if !warned {
                    eprintln!(
                        "watch interrupted: {}; resuming",
                        errors::describe(&e, server)
                    );
                    warned = true;
                }
                continue;
            }
            Some(Ok(watcher::Event::Restarted(items))) => {
                match items.into_iter().find(|n| &n.metadata.name == name) {
                    Some(n) => n,
                    None => anyhow::bail!("node/{name} was deleted while draining"),
                }
            }
            Some(Ok(watcher::Event::Applied(n))) if &n.metadata.name == name => n,
            Some(Ok(watcher::Event::Deleted(n))) if &n.metadata.name == name => {
                anyhow::bail!("node/{name} was deleted while draining")
            }
            Some(Ok(_)) => continue,
        };
        warned = false;
        let now = in_flight(&node);
        if now == 0 {
            output::emit(&format!("node/{name} drained\n"))?;
            return Ok(());
        }
        if last != Some(now) {
            output::emit(&format!(
                "node/{name}: waiting for {now} in-flight request(s) to finish\n"
            ))?;
            last = Some(now);
        }
    }
}
