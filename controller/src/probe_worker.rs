//! The probe loop's I/O: each node has a key in the probe queue, due at its
//! next probe. Probing a key records the result in the node's memory and,
//! when that should change the `Reachable` condition, queues the node for
//! its reconciler (the only writer of the controller's node conditions).

use std::convert::Infallible;
use std::sync::Arc;

use herd_api::Timestamp;

use crate::Context;
use crate::probe::{probe, reachable_condition};
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
