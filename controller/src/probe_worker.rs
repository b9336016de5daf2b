//! The probe loop's I/O shell around [`crate::probe`]'s decisions: each node
//! has a key in the probe queue, due at its next probe. Probing a key sends
//! `GET {spec.ollamaUrl}/api/version`, records the result in the node's
//! memory and, when that should change the `Reachable` condition, queues the
//! node for its reconciler (the only writer of the controller's node
//! conditions).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use herd_api::Timestamp;

use std::net::SocketAddr;

use herd_api::node_address::{self, Cidr};

use crate::Context;
use crate::probe::{
    ErrorFacts, ProbeFailure, classify_answer, classify_error, reachable_condition,
};
use crate::runtime::Action;

pub(crate) async fn probe_node(ctx: Arc<Context>, name: String) -> Result<Action, Infallible> {
    let Some(node) = ctx.nodes.get(&name) else {
        // Deleted. If it comes back, its reconciler schedules a new probe.
        return Ok(Action::await_change());
    };
    if node.spec.ollama_url.is_empty() {
        return Ok(Action::requeue(ctx.config.probe_interval));
    }
    let url = node.spec.ollama_url.clone();
    drop(node);
    let result = probe(&ctx.http, &url, &ctx.config.allow_node_addresses).await;
    if let Err(e) = &result {
        tracing::debug!(node = %name, error = %e, "probe failed");
    }
    let at = Timestamp::now();
    let recorded = {
        let mut memory = ctx.memory();
        memory.get_mut(&name).map(|m| {
            let changed = m.probe.record(result, at, ctx.config.probe);
            (changed, m.probe.verdict(), m.probe.failing())
        })
    };
    let Some((changed, verdict, failing)) = recorded else {
        return Ok(Action::await_change());
    };
    let disagrees = ctx
        .nodes
        .get(&name)
        .is_some_and(|n| reachable_condition(&n.status.conditions, verdict.as_ref()).is_some());
    if changed || disagrees {
        ctx.node_queue.add(&name);
    }
    Ok(Action::requeue(if failing {
        ctx.config.probe_recheck()
    } else {
        ctx.config.probe_interval
    }))
}

/// The HTTP client for probes: bounded by `timeout`, connecting afresh
/// each time (a probe checks that a new connection works, as the proxy's
/// next request would need; and 1,000 nodes cost no idle sockets), and
/// ignoring `HTTP_PROXY`: the router talks to its nodes directly. It follows
/// no redirect (a node URL must not steer the router to another address),
/// and resolves host names only to addresses `allowed` by the node address
/// policy.
pub(crate) fn http_client(
    timeout: Duration,
    allowed: Vec<Cidr>,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver { allowed }))
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("herd-controller/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Every resolved address of a node's host was refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("every address of the node's host is refused by the node address policy")]
struct AddressRefused;

/// The system resolver, keeping only the addresses the node address policy
/// allows: a host name cannot lead a probe where an IP literal may not.
struct PolicyResolver {
    allowed: Vec<Cidr>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = addrs
                .filter(|a| node_address::check(a.ip(), &allowed).is_ok())
                .collect();
            if kept.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One probe: `GET {ollama_url}/api/version` must answer 2xx with
/// `{"version": "..."}`, as Ollama does. The error says which kind of
/// failure it was ([`ProbeFailure`]), never the socket's words.
async fn probe(http: &reqwest::Client, ollama_url: &str, allowed: &[Cidr]) -> Result<(), String> {
    // IP literals skip the resolver, so they are checked here.
    if let Some(ip) = node_address::ip_literal_host(ollama_url)
        && node_address::check(ip, allowed).is_err()
    {
        return Err(ProbeFailure::AddressNotAllowed.message());
    }
    let url = format!("{}/api/version", ollama_url.trim_end_matches('/'));
    let failed = |f: ProbeFailure| format!("GET /api/version: {}", f.message());
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(classify_error(facts(&e))))?;
    let code = resp.status().as_u16();
    let body = if resp.status().is_success() {
        resp.bytes()
            .await
            .map_err(|e| failed(classify_error(facts(&e))))?
    } else {
        Default::default()
    };
    match classify_answer(code, &body) {
        None => Ok(()),
        Some(f) => Err(failed(f)),
    }
}

/// What classifying `e` needs, read from reqwest's error and its sources.
fn facts(e: &reqwest::Error) -> ErrorFacts {
    let mut f = ErrorFacts {
        timeout: e.is_timeout(),
        connect: e.is_connect(),
        ..ErrorFacts::default()
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<AddressRefused>() {
            f.policy = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            f.io_kind = Some(io.kind());
        }
        source = s.source();
    }
    f
}
