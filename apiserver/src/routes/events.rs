//! Events are ordinary stored objects; this keeps their number bounded.

use std::time::Duration;

use herd_api::{Event, Resource};

use super::AppState;
use crate::store::{Expect, Proposal, REVISION_PLACEHOLDER, Template};

/// Every few seconds, deletes the oldest events beyond `max_events`.
pub async fn prune_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.shutdown.cancelled() => return,
        }
        prune_once(&state).await;
    }
}

pub async fn prune_once(state: &AppState) {
    let (_, mut events) = state.store.list(Event::PLURAL, &|_| true);
    let max = state.config.max_events;
    if events.len() <= max {
        return;
    }
    // Events are written once and rarely touched again, so revision order is age order.
    events.sort_by_key(|e| e.rv);
    let excess = events.len() - max;
    for old in events.into_iter().take(excess) {
        let Ok(mut obj) = serde_json::from_slice::<serde_json::Value>(&old.body) else {
            continue;
        };
        let Some(name) = obj["metadata"]["name"].as_str().map(str::to_owned) else {
            continue;
        };
        obj["metadata"]["resourceVersion"] =
            serde_json::Value::String(REVISION_PLACEHOLDER.to_owned());
        let Ok(body) = serde_json::to_vec(&obj) else {
            continue;
        };
        let Ok(template) = Template::new(body.into()) else {
            continue;
        };
        let result = state
            .store
            .commit(
                Event::PLURAL,
                name,
                Expect::At(old.rv),
                Proposal::Delete { template },
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(error = ?e, "event changed or went away while pruning");
        }
    }
}
