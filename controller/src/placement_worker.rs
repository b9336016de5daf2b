//! The assignment reconciler's I/O shell around [`crate::placement`]'s pure
//! decision: decide with [`reconcile_placement`] over the cached nodes, write the status if it changed (conditionally,
//! deciding again from a fresh read on a conflict), record the events.

use std::sync::Arc;

use herd_api::Timestamp;
use herd_client::{PostParams, STATUS_UPDATE_ATTEMPTS};

use crate::placement::reconcile_placement;
use crate::runtime::Action;
use crate::{Context, Error};

pub(crate) async fn reconcile(ctx: Arc<Context>, name: String) -> Result<Action, Error> {
    let Some(cached) = ctx.assignments.get(&name) else {
        return Ok(Action::await_change());
    };
    let mut ma = (*cached).clone();
    drop(cached);
    for attempt in 1..=STATUS_UPDATE_ATTEMPTS {
        let nodes = ctx.nodes.list();
        let decision = reconcile_placement(
            &ma,
            nodes.iter().map(AsRef::as_ref),
            Timestamp::now(),
            ctx.config.replace_after,
        );
        let action = Action::from_requeue(decision.requeue_after);
        if !decision.changes(&ma) {
            return Ok(action);
        }
        let mut next = ma.clone();
        next.status = decision.status;
        match ctx
            .assignment_api
            .replace_status(&PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                tracing::debug!(assignment = %name, "status written");
                ctx.recorder.record_all(&decision.events).await;
                return Ok(action);
            }
            Err(e) if e.is_conflict() && attempt < STATUS_UPDATE_ATTEMPTS => {
                match ctx.assignment_api.get_opt(&name).await? {
                    Some(fresh) => ma = fresh,
                    None => return Ok(Action::await_change()),
                }
            }
            Err(e) if e.is_not_found() => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended(name))
}
