//! The drain at shutdown: after the node left routing (`NodeletReady` False), wait for
//! the requests in flight on it to end before the Ollama herd started is stopped, so
//! streams being generated there are not cut.
//!
//! The nodelet does not see those requests: the router counts them and writes the
//! count to the node's `status.usage.inFlight` — only when it changed, and at most once
//! per its `--status-report-interval` (1 s by default; a count that keeps changing can
//! wait two intervals). The router also keeps sending requests here until it has seen
//! the node leave routing. So a stored 0 read right after `NodeletReady` False may
//! be stale: requests the router started in the last second or two may not be counted
//! yet. [`drain_step`] trusts a 0 only when it was read [`DrainPolicy::settle`] (2.5 s:
//! two default report intervals and half a second for the controller and the router to
//! see the node leave) or more after the node was marked; a non-zero count is waited
//! out, up to [`DrainPolicy::timeout`].
//!
//! When the router does not answer, waiting the whole timeout for a count that cannot
//! be read would only delay the stop: after [`DrainPolicy::unreachable_grace`] (5 s) of
//! failed reads the drain ends. Requests through a router this node cannot reach have
//! that long to finish.
//!
//! [`drain_step`] is the decision, pure; [`wait_for_requests`] is the polling around it.

use std::time::Duration;

use herd_api::Node;
use herd_client::Api;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bound on one read of the node (a read that takes longer counts as failed).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the drain waits, and what it believes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPolicy {
    /// The longest wait (`--drain-timeout`); zero means no drain at all.
    pub timeout: Duration,
    /// A count of 0 is trusted only when read at least this long after the node was
    /// marked not ready.
    pub settle: Duration,
    /// Reads that fail for this long end the drain.
    pub unreachable_grace: Duration,
}

/// What the drain has read so far; times are since the node was marked not ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainObservations {
    /// The last count read, and when the read began.
    pub last: Option<(u32, Duration)>,
    /// When the current run of failed reads began; `None` while reads work.
    pub failing_since: Option<Duration>,
}

impl DrainObservations {
    /// Records a read begun at `at`: the count, or `None` when the router did not answer.
    pub fn record(&mut self, at: Duration, in_flight: Option<u32>) {
        match in_flight {
            Some(n) => {
                self.last = Some((n, at));
                self.failing_since = None;
            }
            None => {
                self.failing_since.get_or_insert(at);
            }
        }
    }
}

/// What the drain does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainStep {
    /// Poll again.
    Wait,
    /// No request in flight, by a count that can be trusted.
    Drained,
    /// The timeout passed; the last count read, if any.
    TimedOut { in_flight: Option<u32> },
    /// The router did not answer for the grace period.
    RouterUnreachable,
}

/// Whether the drain is over, `elapsed` after the node was marked not ready.
pub fn drain_step(policy: &DrainPolicy, seen: &DrainObservations, elapsed: Duration) -> DrainStep {
    if let Some((0, at)) = seen.last
        && at >= policy.settle
    {
        return DrainStep::Drained;
    }
    if elapsed >= policy.timeout {
        return DrainStep::TimedOut {
            in_flight: seen.last.map(|(n, _)| n),
        };
    }
    if let Some(since) = seen.failing_since
        && elapsed.saturating_sub(since) >= policy.unreachable_grace
    {
        return DrainStep::RouterUnreachable;
    }
    DrainStep::Wait
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// [`drain_step`]'s verdict (never [`DrainStep::Wait`]).
    Step(DrainStep),
    /// The node is gone from the API: nothing routes to it.
    NodeGone,
    /// `skip` fired (a second SIGTERM/SIGINT).
    Skipped,
}

/// Polls node `name` every `poll` until [`drain_step`] says the drain is over, or `skip`
/// is cancelled; logs the start and the end. The clock starts now: call it right after
/// the node was marked not ready. `router_failing` says that mark could not be written
/// because the router did not answer (the grace for an unreachable router then starts
/// now, not at the first failed read).
pub async fn wait_for_requests(
    nodes: &Api<Node>,
    name: &str,
    policy: &DrainPolicy,
    poll: Duration,
    router_failing: bool,
    skip: &CancellationToken,
) -> DrainEnd {
    let start = Instant::now();
    let deadline = start + policy.timeout;
    let mut seen = DrainObservations::default();
    if router_failing {
        seen.record(Duration::ZERO, None);
    }
    let mut announced = false;
    let end = loop {
        let at = start.elapsed();
        let read = tokio::select! {
            biased;
            () = skip.cancelled() => break DrainEnd::Skipped,
            read = tokio::time::timeout_at(
                deadline.min(Instant::now() + READ_TIMEOUT),
                nodes.get_opt(name),
            ) => read,
        };
        let in_flight = match read {
            Ok(Ok(Some(node))) => Some(node.status.usage.map_or(0, |u| u.in_flight)),
            Ok(Ok(None)) => break DrainEnd::NodeGone,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "drain: cannot read the node");
                None
            }
            Err(_) => None,
        };
        seen.record(at, in_flight);
        if !announced {
            announced = true;
            let n = in_flight.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
            tracing::info!(
                node = %name,
                in_flight,
                timeout = %humantime::format_duration(policy.timeout),
                "draining: {n} requests in flight, waiting up to {}",
                humantime::format_duration(policy.timeout)
            );
        }
        match drain_step(policy, &seen, start.elapsed()) {
            DrainStep::Wait => {}
            step => break DrainEnd::Step(step),
        }
        tokio::select! {
            biased;
            () = skip.cancelled() => break DrainEnd::Skipped,
            () = tokio::time::sleep(poll) => {}
        }
    };
    log_end(name, end, start.elapsed(), &seen, policy);
    end
}

fn log_end(
    name: &str,
    end: DrainEnd,
    elapsed: Duration,
    seen: &DrainObservations,
    policy: &DrainPolicy,
) {
    // Whole milliseconds read better than humantime's nanoseconds.
    let after = humantime::format_duration(Duration::from_millis(
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    ));
    let last = seen.last.map(|(n, _)| n);
    match end {
        DrainEnd::Step(DrainStep::Drained | DrainStep::Wait) => {
            tracing::info!(node = %name, "drained after {after}: no requests in flight");
        }
        DrainEnd::Step(DrainStep::TimedOut { in_flight: Some(0) }) => tracing::info!(
            node = %name,
            "drain timed out after {after}; the router last reported no requests in flight, but too early to be sure"
        ),
        DrainEnd::Step(DrainStep::TimedOut { in_flight }) => {
            let n = in_flight.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
            tracing::warn!(node = %name, in_flight, "drain timed out after {after} with {n} requests still in flight");
        }
        DrainEnd::Step(DrainStep::RouterUnreachable) => tracing::warn!(
            node = %name,
            last_in_flight = last,
            "drain ended after {after}: the router did not answer for {}",
            humantime::format_duration(policy.unreachable_grace)
        ),
        DrainEnd::NodeGone => {
            tracing::info!(node = %name, "drain ended after {after}: the node was deleted");
        }
        DrainEnd::Skipped => tracing::warn!(
            node = %name,
            last_in_flight = last,
            "drain skipped after {after}: asked again to stop"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: DrainPolicy = DrainPolicy {
        timeout: Duration::from_secs(30),
        settle: Duration::from_millis(2500),
        unreachable_grace: Duration::from_secs(5),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A read: began at (ms), the count or `None` for a failed read.
    type Read = (u64, Option<u32>);

    fn observed(reads: &[Read]) -> DrainObservations {
        let mut seen = DrainObservations::default();
        for &(at, n) in reads {
            seen.record(ms(at), n);
        }
        seen
    }

    #[test]
    fn decides_from_what_was_read_and_when() {
        use DrainStep::*;
        let cases: &[(&str, &[Read], u64, DrainStep)] = &[
            ("nothing read yet", &[], 0, Wait),
            ("a 0 read too early may be stale", &[(0, Some(0))], 10, Wait),
            (
                "a 0 read just before the settle time",
                &[(2499, Some(0))],
                2510,
                Wait,
            ),
            (
                "a 0 read at the settle time",
                &[(2500, Some(0))],
                2510,
                Drained,
            ),
            (
                "requests in flight",
                &[(0, Some(2)), (2500, Some(2))],
                2510,
                Wait,
            ),
            (
                "they ended, read after the settle time",
                &[(0, Some(2)), (2600, Some(0))],
                2610,
                Drained,
            ),
            (
                "they ended early, trusted once settled",
                &[(300, Some(0)), (2600, Some(0))],
                2610,
                Drained,
            ),
            (
                "a new count after a 0 is waited out",
                &[(2600, Some(0)), (2900, Some(1))],
                2910,
                Wait,
            ),
            (
                "the timeout with requests in flight",
                &[(29_900, Some(2))],
                30_000,
                TimedOut { in_flight: Some(2) },
            ),
            (
                "a settled 0 wins over the timeout",
                &[(29_900, Some(0))],
                30_000,
                Drained,
            ),
            (
                "the timeout with nothing ever read",
                &[(0, None)],
                30_000,
                TimedOut { in_flight: None },
            ),
            (
                "the router fails briefly",
                &[(0, Some(2)), (1000, None), (5000, None)],
                5010,
                Wait,
            ),
            (
                "the router fails for the grace period",
                &[(0, Some(2)), (1000, None), (6000, None)],
                6000,
                RouterUnreachable,
            ),
            (
                "failures that stopped do not count",
                &[(0, None), (4000, None), (4250, Some(2)), (6000, None)],
                9000,
                Wait,
            ),
            (
                "the router never answered",
                &[(0, None), (4000, None)],
                5000,
                RouterUnreachable,
            ),
        ];
        for (what, reads, now, expected) in cases {
            let seen = observed(reads);
            assert_eq!(
                drain_step(&POLICY, &seen, ms(*now)),
                *expected,
                "{what}: {seen:?} at {now} ms"
            );
        }
    }

    #[test]
    fn a_timeout_shorter_than_the_settle_time_still_ends() {
        let policy = DrainPolicy {
            timeout: ms(1000),
            ..POLICY
        };
        let seen = observed(&[(900, Some(0))]);
        assert_eq!(drain_step(&policy, &seen, ms(950)), DrainStep::Wait);
        assert_eq!(
            drain_step(&policy, &seen, ms(1000)),
            DrainStep::TimedOut { in_flight: Some(0) }
        );
    }
}
