//! `herd get TYPE [NAME…] [-l SELECTOR] [-w]`: list or fetch objects, as a
//! table or in a structured format, and optionally follow their changes.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt as _;
use herd_api::{
    ApiKey, Event, Lease, ModelAssignment, Node, RequestRecord, Resource, Secret, Timestamp,
};
use herd_client::{Client, ListParams, watcher};
use serde::Serialize;

use crate::ctl::args::{ConnectArgs, OutputArgs, OutputFormat};
use crate::ctl::kind::{self, Kind};
use crate::ctl::remote::{self, RequestQuery};
use crate::ctl::rows::Tabular;
use crate::ctl::table::{self, Table};
use crate::ctl::{block_on, errors, output};

/// How often `get requests -w` asks for new requests (they have no watch).
const REQUEST_POLL: Duration = Duration::from_secs(1);
/// Requests shown when no `--limit` is given.
const DEFAULT_REQUEST_LIMIT: u32 = 50;

#[derive(Args, Debug)]
#[command(after_help = "\
Types: nodes (no), modelassignments (ma), events (ev), apikeys (key), secrets, requests.
In the MODELS column of nodes, `*` marks a model loaded in memory.

Examples:
  herd get nodes
  herd get no gpu-1 -o yaml
  herd get ma -w
  herd get nodes -l gpu=nvidia -o wide
  herd get requests --node gpu-1 --limit 20")]
pub struct GetArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// `TYPE [NAME…]` or `TYPE/NAME…`.
    #[arg(value_name = "TYPE[/NAME]", required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// Only objects whose labels match, e.g. `gpu=nvidia,zone!=b`.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// After listing, keep printing objects as they change.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Like --watch, without the initial list.
    #[arg(long)]
    pub watch_only: bool,
    /// With --watch: add an EVENT column (ADDED, MODIFIED, DELETED).
    #[arg(long)]
    pub output_watch_events: bool,
    /// Leave out the header line of tables.
    #[arg(long)]
    pub no_headers: bool,
    /// Requests only: those sent to this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Requests only: those for this model.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Requests only: at most this many, the most recent.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

impl GetArgs {
    fn watching(&self) -> bool {
        self.watch || self.watch_only
    }
}

pub fn run(args: GetArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let targets = kind::parse_targets(&args.targets).map_err(anyhow::Error::msg)?;
    let groups = group(&targets);
    check_flags(&args, &groups)?;
    let client = connect.client()?;
    block_on(get_all(&client, &connect.server, &args, groups))?
}

/// Targets by kind, in the order first named: `(kind, names)`.
fn group(targets: &[(Kind, Option<String>)]) -> Vec<(Kind, Vec<String>)> {
    let mut groups: Vec<(Kind, Vec<String>)> = Vec::new();
    for (kind, name) in targets {
        let i = match groups.iter().position(|(k, _)| k == kind) {
            Some(i) => i,
            None => {
                groups.push((*kind, Vec::new()));
                groups.len() - 1
            }
        };
        groups[i].1.extend(name.clone());
    }
    groups
}

fn check_flags(args: &GetArgs, groups: &[(Kind, Vec<String>)]) -> anyhow::Result<()> {
    let requests_only = args.node.is_some() || args.model.is_some() || args.limit.is_some();
    let has_requests = groups.iter().any(|(k, _)| *k == Kind::Request);
    anyhow::ensure!(
        !requests_only || (has_requests && groups.len() == 1),
        "--node, --model and --limit apply only to `herd get requests`"
    );
    anyhow::ensure!(
        !(has_requests && groups.iter().any(|(_, n)| !n.is_empty())),
        "requests are listed, not fetched by name: filter them with --node, --model and --limit"
    );
    anyhow::ensure!(
        !(args.selector.is_some() && groups.iter().any(|(_, n)| !n.is_empty())),
        "give names or a selector (-l), not both"
    );
    anyhow::ensure!(
        !(has_requests && args.selector.is_some()),
        "requests have no labels: filter them with --node and --model"
    );
    anyhow::ensure!(
        !args.watching() || groups.len() == 1,
        "--watch follows one type at a time"
    );
    Ok(())
}

async fn get_all(
    client: &Client,
    server: &str,
    args: &GetArgs,
    groups: Vec<(Kind, Vec<String>)>,
) -> anyhow::Result<()> {
    let several = groups.len() > 1;
    let mut failed = Vec::new();
    for (i, (kind, names)) in groups.into_iter().enumerate() {
        if several && i > 0 && args.output.output.is_table() {
            output::emit("\n")?;
        }
        let result = match kind {
            Kind::Node => get_kind::<Node>(client, server, args, &names).await,
            Kind::ModelAssignment => {
                get_kind::<ModelAssignment>(client, server, args, &names).await
            }
            Kind::Event => get_kind::<Event>(client, server, args, &names).await,
            Kind::ApiKey => get_kind::<ApiKey>(client, server, args, &names).await,
            Kind::Secret => get_kind::<Secret>(client, server, args, &names).await,
            Kind::Lease => get_kind::<Lease>(client, server, args, &names).await,
            Kind::Request => get_requests(client, server, args).await,
        };
        match result {
            Ok(missing) => failed.extend(missing),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(failed.join("\n"))
    }
}

/// Prints the objects (by name, or all matching the selector), then
/// follows them with `-w`. Returns the errors of names that failed, so the
/// others still print.
async fn get_kind<K>(
    client: &Client,
    server: &str,
    args: &GetArgs,
    names: &[String],
) -> anyhow::Result<Vec<String>>
where
    K: Resource + Tabular,
{
    let api = client.api::<K>();
    let mut items: Vec<K> = Vec::new();
    let mut missing = Vec::new();
    if names.is_empty() {
        let lp = ListParams {
            label_selector: args.selector.clone(),
        };
        items = api
            .list(&lp)
            .await
            .map_err(|e| errors::client_error(&e, server))?
            .items;
        K::sort(&mut items);
    } else {
        for name in names {
            match api.get(name).await {
                Ok(obj) => items.push(obj),
                Err(e) if e.is_not_found() => missing.push(errors::describe(&e, server)),
                Err(e) => return Err(errors::client_error(&e, server)),
            }
        }
    }
    let mut printer = Printer::new(args);
    if !args.watch_only {
        if items.is_empty() && names.is_empty() && args.output.output.is_table() {
            eprintln!("No {} found.", K::PLURAL);
        }
        output::emit(&printer.initial(&items, names.len() == 1)?)?;
    } else {
        output::emit(&printer.header::<K>())?;
    }
    if args.watching() {
        follow::<K>(client, server, args, names, &items, &mut printer).await?;
    }
    Ok(missing)
}

/// Streams changes from the watch API until interrupted.
async fn follow<K>(
    client: &Client,
    server: &str,
    args: &GetArgs,
    names: &[String],
    initial: &[K],
    printer: &mut Printer,
) -> anyhow::Result<()>
where
    K: Resource + Tabular,
{
    let wanted = |obj: &K| names.is_empty() || names.contains(&obj.meta().name);
    // Revision last printed per name: a relist after a dropped watch
    // reprints only what changed meanwhile.
    let mut seen: HashMap<String, Option<String>> = initial
        .iter()
        .map(|o| (o.meta().name.clone(), o.meta().resource_version.clone()))
        .collect();
    let config = watcher::Config {
        label_selector: args.selector.clone(),
        ..watcher::Config::default()
    };
    let mut stream = std::pin::pin!(watcher::watcher(client.api::<K>(), config));
    let mut interrupted = false;
    while let Some(event) = stream.next().await {
        let changes: Vec<(&str, K)> = match event {
            Ok(watcher::Event::Restarted(items)) => {
                interrupted = false;
                items.into_iter().map(|o| ("MODIFIED", o)).collect()
            }
            Ok(watcher::Event::Applied(obj)) => {
                interrupted = false;
                let verb = if seen.contains_key(&obj.meta().name) {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                vec![(verb, obj)]
            }
            Ok(watcher::Event::Deleted(obj)) => {
                seen.remove(&obj.meta().name);
                // Old events are pruned all the time; their rows would only
                // look like new events.
                let pruned_event = K::KIND == Event::KIND && !printer.watch_events;
                if wanted(&obj) && !pruned_event {
                    output::emit(&printer.change(&obj, "DELETED")?)?;
                }
                continue;
            }
            Err(e) => {
                if !interrupted {
                    eprintln!(
                        "watch interrupted: {}; resuming",
                        errors::describe(&e, server)
                    );
                    interrupted = true;
                }
                continue;
            }
        };
        for (verb, obj) in changes {
            let rv = obj.meta().resource_version.clone();
            let name = obj.meta().name.clone();
            if !wanted(&obj) || seen.get(&name) == Some(&rv) {
                continue;
            }
            let verb = if seen.contains_key(&name) {
                verb
            } else {
                "ADDED"
            };
            seen.insert(name, rv);
            output::emit(&printer.change(&obj, verb)?)?;
        }
    }
    Ok(())
}

async fn get_requests(
    client: &Client,
    server: &str,
    args: &GetArgs,
) -> anyhow::Result<Vec<String>> {
    let query = RequestQuery {
        node: args.node.clone(),
        model: args.model.clone(),
        limit: Some(args.limit.unwrap_or(DEFAULT_REQUEST_LIMIT)),
    };
    // Opened before the list, so nothing finished in between is missed.
    let mut feed = if args.watching() {
        remote::request_feed(client, &query).await.ok().flatten()
    } else {
        None
    };
    let mut items = remote::requests(client, &query)
        .await
        .map_err(|e| requests_error(&e, server))?;
    // The server sends newest first; the newest goes last, by the prompt.
    items.reverse();
    let mut printer = Printer::new(args);
    if args.watch_only {
        output::emit(&printer.header::<RequestRecord>())?;
    } else {
        if items.is_empty() && args.output.output.is_table() {
            eprintln!("No requests found.");
        }
        output::emit(&printer.initial(&items, false)?)?;
    }
    if !args.watching() {
        return Ok(Vec::new());
    }
    let mut last_id = items.iter().map(|r| r.id).max().unwrap_or(0);
    let has_feed = feed.is_some();
    loop {
        match feed.take() {
            // Streams until the server ends the feed, then catches up below.
            Some(mut records) => {
                while let Some(Ok(r)) = records.next().await {
                    if r.id > last_id {
                        last_id = r.id;
                        output::emit(&printer.change(&r, "ADDED")?)?;
                    }
                }
                tokio::time::sleep(REQUEST_POLL).await;
                feed = remote::request_feed(client, &query).await.ok().flatten();
            }
            // A server without a feed: poll.
            None => {
                tokio::time::sleep(REQUEST_POLL).await;
                if has_feed {
                    feed = remote::request_feed(client, &query).await.ok().flatten();
                }
            }
        }
        match remote::requests(client, &query).await {
            Ok(mut fresh) => {
                fresh.retain(|r| r.id > last_id);
                fresh.sort_by_key(|r| r.id);
                for r in &fresh {
                    output::emit(&printer.change(r, "ADDED")?)?;
                }
                last_id = fresh.last().map_or(last_id, |r| r.id);
            }
            Err(e) => eprintln!("reading requests: {}", errors::describe(&e, server)),
        }
    }
}

fn requests_error(e: &herd_client::Error, server: &str) -> anyhow::Error {
    if e.is_not_found() {
        anyhow::anyhow!(
            "the server at {server} keeps no request history (GET /apis/herd/v1/requests answered 404): is its proxy enabled?"
        )
    } else {
        errors::client_error(e, server)
    }
}

/// Prints a first batch, then single changes in the same format (for a
/// table, with the columns sized by the first batch).
struct Printer {
    format: OutputFormat,
    no_headers: bool,
    watch_events: bool,
    /// Watching: structured output is one object at a time.
    streaming: bool,
    widths: Vec<usize>,
}

impl Printer {
    fn new(args: &GetArgs) -> Self {
        Self {
            format: args.output.output,
            no_headers: args.no_headers,
            watch_events: args.output_watch_events && args.watching(),
            streaming: args.watching(),
            widths: Vec::new(),
        }
    }

    fn table<T: Tabular>(&self, items: &[(&str, &T)]) -> Table {
        let now = Timestamp::now();
        let wide = self.format == OutputFormat::Wide;
        let mut headers = T::headers(wide);
        if self.watch_events {
            headers.insert(0, "EVENT");
        }
        let mut t = Table::new(&headers);
        for (verb, item) in items {
            let mut row = item.row(now, wide);
            if self.watch_events {
                row.insert(0, (*verb).to_owned());
            }
            t.push(row);
        }
        t
    }

    fn header<T: Tabular>(&mut self) -> String {
        if !self.format.is_table() || self.no_headers {
            return String::new();
        }
        let t = self.table::<T>(&[]);
        self.widths = t.widths();
        t.render()
    }

    fn initial<T: Tabular + Serialize + Clone>(
        &mut self,
        items: &[T],
        single: bool,
    ) -> anyhow::Result<String> {
        match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                let listed: Vec<(&str, &T)> = items.iter().map(|i| ("ADDED", i)).collect();
                if items.is_empty() {
                    // The header comes with the first row, if one comes.
                    return Ok(String::new());
                }
                let t = self.table(&listed);
                self.widths = t.widths();
                Ok(if self.no_headers {
                    t.render_rows()
                } else {
                    t.render()
                })
            }
            OutputFormat::Name => Ok(items.iter().map(|i| format!("{}\n", i.id())).collect()),
            // A stream of single objects from the start, as the changes come.
            format if self.streaming => items
                .iter()
                .map(|i| output::streamed(format, &output::to_value(&*i.for_output())?))
                .collect(),
            format => {
                let values = items
                    .iter()
                    .map(|i| output::to_value(&*i.for_output()))
                    .collect::<Result<Vec<_>, _>>()?;
                output::structured(format, values, single)
            }
        }
    }

    fn change<T: Tabular + Serialize + Clone>(
        &mut self,
        item: &T,
        verb: &str,
    ) -> anyhow::Result<String> {
        match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                let t = self.table(&[(verb, item)]);
                if self.widths.is_empty() {
                    self.widths = t.widths();
                    if !self.no_headers {
                        return Ok(t.render());
                    }
                }
                Ok(t.rows
                    .iter()
                    .map(|r| table::line(r, &self.widths))
                    .collect())
            }
            OutputFormat::Name => Ok(format!("{}\n", item.id())),
            format => output::streamed(format, &output::to_value(&*item.for_output())?),
        }
    }
}
