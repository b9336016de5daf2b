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

use crate::Context;
use crate::probe::{looks_like_version, reachable_condition};
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
    let result = probe(&ctx.http, &url).await;
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
/// ignoring `HTTP_PROXY`: the router talks to its nodes directly.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("herd-controller/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One probe: `GET {ollama_url}/api/version` must answer 2xx with
/// `{"version": "..."}`, as Ollama does.
async fn probe(http: &reqwest::Client, ollama_url: &str) -> Result<(), String> {
    let url = format!("{}/api/version", ollama_url.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let code = resp.status();
    if !code.is_success() {
        return Err(format!("GET {url} answered {code}"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: reading the answer: {}", error_chain(&e)))?;
    if looks_like_version(&body) {
        Ok(())
    } else {
        Err(format!(
            "GET {url} answered {code} but not with Ollama's {{\"version\": ...}}"
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}
