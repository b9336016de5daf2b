//! One controller at a time: who may reconcile, decided from the
//! `controller` lease. Pure: the elector (`lease_worker`) reads the lease,
//! asks [`decide`], and writes what it says by conditional update.
//!
//! Expiry is timed on each candidate's own monotonic clock, never by
//! comparing another machine's `renewTime` with this one's: a candidate
//! takes the lease over once it has seen the same revision of it, with
//! another holder, for a whole lease duration. The holder in turn stops
//! reconciling [`LeaseTimes::margin`] before a rival could possibly take
//! over, counted from when it *sent* its last successful renewal.

use std::time::Duration;

/// `metadata.name` of the controller's lease.
pub const CONTROLLER_LEASE: &str = "controller";

/// How long a lease lasts unrenewed and how often its holder renews it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    pub duration: Duration,
    pub renew_every: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

impl LeaseTimes {
    /// How long before a rival could take over the holder stops: one
    /// renewal period, so that a holder cut off from the API stops well
    /// before another starts.
    pub fn margin(&self) -> Duration {
        self.renew_every.min(self.duration / 2)
    }

    /// Until when (on the holder's clock) a renewal sent at `sent` lets it
    /// reconcile.
    pub fn valid_until(&self, sent: Duration) -> Duration {
        sent + self.duration.saturating_sub(self.margin())
    }
}

/// The lease as read: its holder (empty: released) and revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView<'a> {
    pub holder: &'a str,
    pub revision: &'a str,
}

/// A revision of the lease and when (on this candidate's monotonic clock)
/// it was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub revision: String,
    pub since: Duration,
}

/// Records having read revision `revision` at `now`: the time of the first
/// sighting is kept while the revision stays the same.
pub fn observe(seen: Option<Seen>, revision: &str, now: Duration) -> Seen {
    match seen {
        Some(s) if s.revision == revision => s,
        _ => Seen {
            revision: revision.to_owned(),
            since: now,
        },
    }
}

/// What the candidate `me` does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no lease: create it, held by `me`.
    Create,
    /// `me` holds it: write a new renew time at the revision read.
    Renew,
    /// It is released, or its holder has not renewed it for a whole
    /// duration: write `me` as holder at the revision read.
    TakeOver,
    /// Someone else holds it: look again later, do not reconcile.
    Wait,
}

/// Decides from the lease as read (`None`: there is none) and what `me`
/// saw of it before (updated with [`observe`] for this read).
pub fn decide(
    me: &str,
    lease: Option<LeaseView<'_>>,
    seen: Option<&Seen>,
    now: Duration,
    times: LeaseTimes,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    if lease.holder == me {
        return Step::Renew;
    }
    if lease.holder.is_empty() {
        return Step::TakeOver;
    }
    match seen {
        Some(s)
            if s.revision == lease.revision && now.saturating_sub(s.since) >= times.duration =>
        {
            Step::TakeOver
        }
        _ => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn decide_table() {
        let times = LeaseTimes::default();
        let held = |holder, revision| Some(LeaseView { holder, revision });
        let seen = |revision: &str, since| {
            Some(Seen {
                revision: revision.into(),
                since: secs(since),
            })
        };
        for (case, lease, seen, now, want) in [
            ("no lease", None, None, 0, Step::Create),
            ("mine", held("me", "7"), seen("7", 0), 100, Step::Renew),
            (
                "released",
                held("", "7"),
                seen("7", 99),
                100,
                Step::TakeOver,
            ),
            (
                "other, just seen",
                held("b", "7"),
                seen("7", 100),
                100,
                Step::Wait,
            ),
            (
                "other, renewing",
                held("b", "8"),
                seen("7", 0),
                100,
                Step::Wait,
            ),
            (
                "other, 14 s unrenewed",
                held("b", "7"),
                seen("7", 86),
                100,
                Step::Wait,
            ),
            (
                "other, 15 s unrenewed",
                held("b", "7"),
                seen("7", 85),
                100,
                Step::TakeOver,
            ),
            (
                "other, never seen before",
                held("b", "7"),
                None,
                100,
                Step::Wait,
            ),
        ] {
            let seen = seen.as_ref();
            assert_eq!(decide("me", lease, seen, secs(now), times), want, "{case}");
        }
    }

    #[test]
    fn a_revision_is_timed_from_its_first_sighting() {
        let s = observe(None, "7", secs(10));
        let s = observe(Some(s), "7", secs(20));
        assert_eq!(s.since, secs(10), "same revision: first sighting kept");
        let s = observe(Some(s), "8", secs(30));
        assert_eq!(
            s,
            Seen {
                revision: "8".into(),
                since: secs(30)
            },
            "a renewal restarts the clock"
        );
    }

    #[test]
    fn the_holder_stops_a_renewal_period_before_a_rival_may_start() {
        let times = LeaseTimes::default();
        assert_eq!(times.valid_until(secs(100)), secs(110));
        // A rival that saw the renewal no earlier than it was sent waits
        // until 115 at the soonest.
        let short = LeaseTimes {
            duration: secs(4),
            renew_every: secs(5),
        };
        assert_eq!(short.margin(), secs(2), "never more than half the duration");
        assert_eq!(short.valid_until(secs(100)), secs(102));
    }
}
