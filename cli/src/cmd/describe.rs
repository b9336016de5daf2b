//! `herd describe node|modelassignment [NAME…]`: everything about objects,
//! with their recent events (and for a node, its recent requests).

use clap::Args;
use herd_api::{ApiKey, Event, ModelAssignment, Node, RequestRecord, Resource, Secret, Timestamp};
use herd_client::{Client, ListParams};

use crate::ctl::args::ConnectArgs;
use crate::ctl::kind::{self, Kind};
use crate::ctl::remote::{self, RequestQuery};
use crate::ctl::{block_on, describe, errors, output};

/// Requests shown in a node's description.
const RECENT_REQUESTS: u32 = 10;

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// `TYPE [NAME…]` or `TYPE/NAME…`; types: node (no), modelassignment (ma),
    /// apikey (key), secret.
    /// Without names, every object of the type.
    #[arg(value_name = "TYPE[/NAME]", required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// Without names: only objects whose labels match.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
}

pub fn run(args: DescribeArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let targets = kind::parse_targets(&args.targets).map_err(anyhow::Error::msg)?;
    for (kind, _) in &targets {
        anyhow::ensure!(
            matches!(
                kind,
                Kind::Node | Kind::ModelAssignment | Kind::ApiKey | Kind::Secret
            ),
            "herd describe shows nodes, modelassignments, apikeys and secrets; for {} use `herd get {} -o yaml`",
            kind.plural(),
            kind.plural()
        );
    }
    let client = connect.client()?;
    block_on(describe_all(&client, &connect.server, &args, targets))?
}

async fn describe_all(
    client: &Client,
    server: &str,
    args: &DescribeArgs,
    targets: Vec<(Kind, Option<String>)>,
) -> anyhow::Result<()> {
    let events = client
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .map_err(|e| errors::client_error(&e, server))?
        .items;
    let mut failed = Vec::new();
    let mut first = true;
    for (kind, name) in targets {
        let names = match name {
            Some(n) => vec![n],
            None => {
                let names = all_names(client, kind, args.selector.as_deref())
                    .await
                    .map_err(|e| errors::client_error(&e, server))?;
                if names.is_empty() {
                    eprintln!("No {} found.", kind.plural());
                }
                names
            }
        };
        for name in names {
            let text = match kind {
                Kind::Node => describe_node(client, &name, &events).await,
                Kind::ApiKey => describe_key(client, &name, &events).await,
                Kind::Secret => describe_secret(client, &name, &events).await,
                _ => describe_assignment(client, &name, &events).await,
            };
            match text {
                Ok(text) => {
                    if !first {
                        output::emit("\n\n")?;
                    }
                    first = false;
                    output::emit(&text)?;
                }
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

async fn all_names(
    client: &Client,
    kind: Kind,
    selector: Option<&str>,
) -> Result<Vec<String>, herd_client::Error> {
    let lp = ListParams {
        label_selector: selector.map(str::to_owned),
    };
    let mut names: Vec<String> = match kind {
        Kind::Node => client
            .api::<Node>()
            .list(&lp)
            .await?
            .items
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect(),
        Kind::Secret => client
            .api::<Secret>()
            .list(&lp)
            .await?
            .items
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect(),
        Kind::ApiKey => client
            .api::<ApiKey>()
            .list(&lp)
            .await?
            .items
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect(),
        _ => client
            .api::<ModelAssignment>()
            .list(&lp)
            .await?
            .items
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect(),
    };
    names.sort();
    Ok(names)
}

async fn describe_node(
    client: &Client,
    name: &str,
    events: &[Event],
) -> Result<String, herd_client::Error> {
    let node = client.api::<Node>().get(name).await?;
    let requests = recent_requests(client, name).await;
    let mine = describe::events_for(events, Node::KIND, name);
    Ok(describe::node(
        &node,
        &mine,
        requests.as_deref(),
        Timestamp::now(),
    ))
}

/// The node's recent requests, oldest first; `None` when the server keeps
/// no history (no proxy) or cannot give it now.
async fn recent_requests(client: &Client, node: &str) -> Option<Vec<RequestRecord>> {
    let query = RequestQuery {
        node: Some(node.to_owned()),
        model: None,
        limit: Some(RECENT_REQUESTS),
    };
    match remote::requests(client, &query).await {
        Ok(mut items) => {
            items.reverse();
            Some(items)
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            eprintln!("warning: leaving out recent requests of node/{node}: {e}");
            None
        }
    }
}

async fn describe_assignment(
    client: &Client,
    name: &str,
    events: &[Event],
) -> Result<String, herd_client::Error> {
    let ma = client.api::<ModelAssignment>().get(name).await?;
    let mine = describe::events_for(events, ModelAssignment::KIND, name);
    Ok(describe::assignment(&ma, &mine, Timestamp::now()))
}

async fn describe_secret(
    client: &Client,
    name: &str,
    events: &[Event],
) -> Result<String, herd_client::Error> {
    let secret = client.api::<Secret>().get(name).await?;
    let mine = describe::events_for(events, Secret::KIND, name);
    Ok(describe::secret(&secret, &mine, Timestamp::now()))
}

async fn describe_key(
    client: &Client,
    name: &str,
    events: &[Event],
) -> Result<String, herd_client::Error> {
    let key = client.api::<ApiKey>().get(name).await?.without_secret();
    let mine = describe::events_for(events, ApiKey::KIND, name);
    Ok(describe::api_key(&key, &mine, Timestamp::now()))
}
