//! The elector: the I/O shell of [`crate::lease`]. Every renewal period it
//! reads the controller lease, does what [`decide`] says by conditional
//! write, and publishes until when this controller may reconcile (`None`:
//! it may not). On shutdown it releases a lease it holds, so a successor
//! need not wait for it to expire.

use std::time::Duration;

use herd_api::{Lease, LeaseSpec, Resource as _, Timestamp};
use herd_client::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::{CONTROLLER_LEASE, LeaseTimes, LeaseView, Seen, Step, decide, observe};

/// What one attempt found.
enum Outcome {
    /// This controller holds the lease (renewed, created or taken over).
    Held,
    /// Another holds it (the name, for the log).
    Other(String),
}

fn spec(me: &str, times: LeaseTimes) -> LeaseSpec {
    LeaseSpec {
        holder: me.to_owned(),
        renew_time: Some(Timestamp::now()),
        lease_duration_seconds: u32::try_from(times.duration.as_secs().max(1)).unwrap_or(u32::MAX),
    }
}

async fn attempt(
    api: &Api<Lease>,
    me: &str,
    seen: &mut Option<Seen>,
    now: Duration,
    times: LeaseTimes,
) -> Result<Outcome, herd_client::Error> {
    let lease = api.get_opt(CONTROLLER_LEASE).await?;
    let view = lease.as_ref().map(|l| LeaseView {
        holder: &l.spec.holder,
        revision: l.metadata.resource_version.as_deref().unwrap_or_default(),
    });
    if let Some(v) = view {
        *seen = Some(observe(seen.take(), v.revision, now));
    }
    let holder = view.map(|v| v.holder.to_owned()).unwrap_or_default();
    let written = match (decide(me, view, seen.as_ref(), now, times), lease) {
        (Step::Create, _) => {
            let lease = Lease::new(CONTROLLER_LEASE, spec(me, times));
            api.create(&PostParams::default(), &lease).await
        }
        (step @ (Step::Renew | Step::TakeOver), Some(mut lease)) => {
            if step == Step::TakeOver {
                tracing::info!(
                    previous = %holder,
                    "taking over the controller lease"
                );
            }
            // The read revision stays in the object: the write fails with
            // 409 if anyone wrote the lease since.
            lease.spec = spec(me, times);
            api.replace(&PostParams::default(), &lease).await
        }
        _ => return Ok(Outcome::Other(holder)),
    };
    match written {
        Ok(_) => Ok(Outcome::Held),
        // Someone else wrote it first: they hold it.
        Err(e) if e.is_conflict() || e.is_already_exists() => Ok(Outcome::Other(holder)),
        Err(e) => Err(e),
    }
}

/// Runs the elector for candidate `me` until `shutdown`, publishing on
/// `valid` until when this controller may reconcile.
pub(crate) async fn run(
    api: Api<Lease>,
    me: String,
    times: LeaseTimes,
    valid: watch::Sender<Option<Instant>>,
    shutdown: CancellationToken,
) {
    let epoch = Instant::now();
    let mut seen = None;
    let mut holding = false;
    loop {
        let sent = epoch.elapsed();
        let result = tokio::time::timeout(
            times.renew_every,
            attempt(&api, &me, &mut seen, sent, times),
        )
        .await;
        match result {
            Ok(Ok(Outcome::Held)) => {
                valid.send_replace(Some(epoch + times.valid_until(sent)));
                if !holding {
                    tracing::info!(identity = %me, "holding the controller lease: reconciling");
                    holding = true;
                }
            }
            Ok(Ok(Outcome::Other(holder))) => {
                valid.send_replace(None);
                if holding {
                    tracing::warn!(%holder, "lost the controller lease: standing by");
                }
                holding = false;
            }
            // The lease expires by itself on the reconciling side; keep
            // trying.
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the controller lease failed"),
            Err(_) => tracing::warn!("renewing the controller lease timed out"),
        }
        tokio::select! {
            () = tokio::time::sleep(times.renew_every) => {}
            () = shutdown.cancelled() => break,
        }
    }
    valid.send_replace(None);
    if holding {
        let release = release(&api, &me);
        if tokio::time::timeout(Duration::from_secs(2), release)
            .await
            .is_err()
        {
            tracing::warn!("releasing the controller lease timed out; it expires by itself");
        }
    }
}

/// Gives the lease up (best effort): a successor takes it at once.
async fn release(api: &Api<Lease>, me: &str) {
    let Ok(Some(mut lease)) = api.get_opt(CONTROLLER_LEASE).await else {
        return;
    };
    if lease.spec.holder != me {
        return;
    }
    lease.spec.holder.clear();
    lease.spec.renew_time = None;
    match api.replace(&PostParams::default(), &lease).await {
        Ok(_) => tracing::info!("released the controller lease"),
        Err(e) => {
            tracing::warn!(error = %e, "releasing the controller lease failed; it expires by itself")
        }
    }
}
