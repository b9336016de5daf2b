//! Events are ordinary stored objects; this keeps their number bounded.

use std::time::Duration;

use herd_api::{Event, Resource};

use super::AppState;
use crate::store::Outcome;

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
    let (_, mut events) = state.store.list(Event::PLURAL, |_| true);
    let max = state.config.max_events;
    if events.len() <= max {
        return;
    }
    // Events are written once and rarely touched again, so revision order is age order.
    events.sort_by_key(|e| e.rv);
    let excess = events.len() - max;
    for old in events.into_iter().take(excess) {
        let Some(name) = name_of(&old.body) else {
            continue;
        };
        let rv = old.rv;
        let result = state
            .store
            .write(
                Event::PLURAL,
                name,
                Box::new(move |current, next_rv| match current {
                    Some(c) if c.rv == rv => {
                        let mut obj: serde_json::Value = serde_json::from_slice(&c.body)
                            .map_err(|e| crate::ApiError::Internal(e.to_string()))?;
                        obj["metadata"]["resourceVersion"] =
                            serde_json::Value::String(next_rv.to_string());
                        let body = serde_json::to_vec(&obj)
                            .map_err(|e| crate::ApiError::Internal(e.to_string()))?;
                        Ok(Outcome::Delete { body: body.into() })
                    }
                    _ => Ok(Outcome::Unchanged),
                }),
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "event already gone while pruning");
        }
    }
}

fn name_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["metadata"]["name"].as_str().map(str::to_owned)
}
