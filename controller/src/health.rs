//! Node health (pure decisions): when is a node `Ready`?
//!
//! `Ready=True` iff the heartbeat is fresh, `NodeletReady=True`,
//! `OllamaRunning=True` and `Reachable` is not `False`. Otherwise, checked
//! in this order (the first that applies names the cause):
//!
//! | cause                                   | Ready     | reason             |
//! |-----------------------------------------|-----------|--------------------|
//! | `NodeletReady=False` (graceful stop)    | `False`   | `NodeletStopped`   |
//! | never heartbeated                       | `Unknown` | `NoHeartbeat`      |
//! | heartbeat older than the grace period   | `Unknown` | `HeartbeatMissed`  |
//! | `NodeletReady` missing or `Unknown`     | `False`   | `NodeletNotReady`  |
//! | `OllamaRunning` not `True`              | `False`   | `OllamaNotRunning` |
//! | `Reachable=False` (probe or proxy)      | `False`   | `Unreachable`      |
//! | none of these                           | `True`    | `Healthy`          |
//!
//! An unmanaged node (`spec.managed: false`) has no nodelet and no
//! heartbeat: [`ready_unmanaged`] takes `Ready` from the probe alone. And
//! any node the router cannot use (no URL, a missing Secret, a CA
//! certificate that does not parse) is `False` with reason `BackendUnusable`
//! and the problem in its message ([`unusable`]), whatever else holds.
//!
//! A graceful stop comes first: it is an explicit statement, more telling
//! than the silence that follows it. Staleness comes before the other
//! conditions because they are only as fresh as the last heartbeat.
//!
//! **Clocks.** A heartbeat carries the nodelet's clock. So that a node whose
//! clock is off still works, the controller also notes *when it saw* each
//! new heartbeat value ([`HeartbeatSeen`]) and counts freshness from that
//! (as Kubernetes' node lifecycle controller does). Only for the value
//! present when the controller first saw the node (after a restart) does
//! it trust the timestamp itself; that keeps a restart from reviving dead
//! nodes for a grace period.

use std::time::Duration;

use herd_api::{Condition, ConditionStatus, Timestamp, conditions, find_condition};

use crate::time::{add, human, since};

/// Reasons of the `Ready` condition.
pub mod reasons {
    pub const HEALTHY: &str = "Healthy";
    pub const NODELET_STOPPED: &str = "NodeletStopped";
    pub const NO_HEARTBEAT: &str = "NoHeartbeat";
    pub const HEARTBEAT_MISSED: &str = "HeartbeatMissed";
    pub const NODELET_NOT_READY: &str = "NodeletNotReady";
    pub const OLLAMA_NOT_RUNNING: &str = "OllamaNotRunning";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const NOT_PROBED: &str = "NotProbed";
    pub const BACKEND_UNUSABLE: &str = "BackendUnusable";
}

/// What the controller knows about a node's current heartbeat value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatSeen {
    /// `status.lastHeartbeatTime` (the nodelet's clock).
    pub value: Timestamp,
    /// When the controller first saw this value (its own clock).
    pub first_seen: Timestamp,
    /// The value replaced an earlier one while the controller watched, so
    /// `first_seen` is (within watch latency) when it was written.
    pub changed: bool,
}

impl HeartbeatSeen {
    /// The time the heartbeat counts from: when it was seen to change, or
    /// for a value found at startup its own timestamp (never in the future).
    pub fn effective(&self) -> Timestamp {
        if self.changed {
            self.first_seen
        } else {
            self.value.min(self.first_seen)
        }
    }
}

/// Updates the controller's note of a node's heartbeat after reading
/// `value` at `now`.
pub fn observe_heartbeat(
    prev: Option<&HeartbeatSeen>,
    value: Option<Timestamp>,
    now: Timestamp,
) -> Option<HeartbeatSeen> {
    let value = value?;
    Some(match prev {
        Some(p) if p.value == value => *p,
        Some(_) => HeartbeatSeen {
            value,
            first_seen: now,
            changed: true,
        },
        None => HeartbeatSeen {
            value,
            first_seen: now,
            changed: false,
        },
    })
}

/// The `Ready` condition, and when it would turn stale if nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyDecision {
    pub condition: Condition,
    /// When the heartbeat stops being fresh; `None` when it already is not.
    pub deadline: Option<Timestamp>,
}

/// Computes `Ready` from the node's conditions (with `Reachable` already
/// updated), the effective heartbeat time and the raw heartbeat value.
pub fn ready_condition(
    conds: &[Condition],
    heartbeat: Option<HeartbeatSeen>,
    now: Timestamp,
    grace: Duration,
) -> ReadyDecision {
    use ConditionStatus::{False, True, Unknown};
    let status_of = |t: &str| find_condition(conds, t);
    let said = |c: Option<&Condition>, fallback: &str| -> String {
        c.map(|c| c.message.trim())
            .filter(|m| !m.is_empty())
            .map_or_else(|| fallback.to_owned(), str::to_owned)
    };
    let decided = |status, reason: &str, message: String, deadline| ReadyDecision {
        condition: Condition::new(conditions::READY, status, reason, message),
        deadline,
    };

    let nodelet = status_of(conditions::NODELET_READY);
    if nodelet.is_some_and(|c| c.status == False) {
        return decided(
            False,
            reasons::NODELET_STOPPED,
            said(nodelet, "the nodelet stopped"),
            None,
        );
    }
    let Some(hb) = heartbeat else {
        return decided(
            Unknown,
            reasons::NO_HEARTBEAT,
            "the nodelet has not posted a heartbeat yet".into(),
            None,
        );
    };
    let deadline = add(hb.effective(), grace);
    if now > deadline {
        return decided(
            Unknown,
            reasons::HEARTBEAT_MISSED,
            format!(
                "no heartbeat for more than {} (last at {})",
                human(grace),
                hb.value
            ),
            None,
        );
    }
    let fresh = Some(deadline);
    if !nodelet.is_some_and(|c| c.status == True) {
        return decided(
            False,
            reasons::NODELET_NOT_READY,
            said(nodelet, "the nodelet has not reported NodeletReady"),
            fresh,
        );
    }
    let ollama = status_of(conditions::OLLAMA_RUNNING);
    if !ollama.is_some_and(|c| c.status == True) {
        return decided(
            False,
            reasons::OLLAMA_NOT_RUNNING,
            said(ollama, "the nodelet does not report Ollama running"),
            fresh,
        );
    }
    let reachable = status_of(conditions::REACHABLE);
    if reachable.is_some_and(|c| c.status == False) {
        return decided(
            False,
            reasons::UNREACHABLE,
            said(reachable, "the router cannot reach the node's Ollama"),
            fresh,
        );
    }
    decided(
        True,
        reasons::HEALTHY,
        "heartbeat fresh, nodelet ready, Ollama running and reachable".into(),
        fresh,
    )
}

/// `Ready` of a node the router cannot use: `False`, saying why.
pub fn unusable(problem: &str) -> ReadyDecision {
    ReadyDecision {
        condition: Condition::new(
            conditions::READY,
            ConditionStatus::False,
            reasons::BACKEND_UNUSABLE,
            problem,
        ),
        deadline: None,
    }
}

/// `Ready` of an unmanaged node, from its `Reachable` condition alone (the
/// probe's verdict, or the proxy's report of a failed connection): no
/// heartbeat is expected, so there is no deadline.
pub fn ready_unmanaged(conds: &[Condition]) -> ReadyDecision {
    use ConditionStatus::{False, True, Unknown};
    let reachable = find_condition(conds, conditions::REACHABLE);
    let (status, reason, message) = match reachable.map(|c| c.status) {
        Some(True) => (
            True,
            reasons::HEALTHY,
            "unmanaged: the router's probes of the backend succeed".to_owned(),
        ),
        Some(False) => (
            False,
            reasons::UNREACHABLE,
            reachable
                .map(|c| c.message.trim())
                .filter(|m| !m.is_empty())
                .unwrap_or("the router cannot reach the backend")
                .to_owned(),
        ),
        Some(Unknown) | None => (
            Unknown,
            reasons::NOT_PROBED,
            "unmanaged: waiting for the first probe of the backend".to_owned(),
        ),
    };
    ReadyDecision {
        condition: Condition::new(conditions::READY, status, reason, message),
        deadline: None,
    }
}

/// How long a node has not been Ready; zero while it is Ready. A node
/// never reconciled counts from `fallback`.
///
/// Counted from `Ready`'s `lastTransitionTime`, or from `Reachable=False`'s
/// if that is earlier: a machine that dies is usually caught by the probe
/// first (`Ready=False`, `Unreachable`) and by the heartbeat grace later
/// (`Ready=Unknown`), and that second transition must not restart the
/// count. (Every bad `Reachable` makes `Ready` not True, so it is a safe
/// lower bound; the nodelet's own conditions carry the nodelet's clock and
/// are not used.)
pub fn not_ready_for(conds: &[Condition], now: Timestamp, fallback: Timestamp) -> Duration {
    let down_since = match find_condition(conds, conditions::READY) {
        Some(c) if c.status == ConditionStatus::True => return Duration::ZERO,
        Some(c) => c.last_transition_time.unwrap_or(fallback),
        None => fallback,
    };
    let unreachable_since = find_condition(conds, conditions::REACHABLE)
        .filter(|c| c.status == ConditionStatus::False)
        .and_then(|c| c.last_transition_time);
    since(
        now,
        unreachable_since.map_or(down_since, |u| u.min(down_since)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmanaged_ready_comes_from_the_probe_alone() {
        use herd_api::Condition;
        let reach = |status| {
            vec![Condition::new(
                conditions::REACHABLE,
                status,
                "r",
                "refused: x",
            )]
        };
        let cases = [
            (vec![], ConditionStatus::Unknown, reasons::NOT_PROBED),
            (
                reach(ConditionStatus::Unknown),
                ConditionStatus::Unknown,
                reasons::NOT_PROBED,
            ),
            (
                reach(ConditionStatus::True),
                ConditionStatus::True,
                reasons::HEALTHY,
            ),
            (
                reach(ConditionStatus::False),
                ConditionStatus::False,
                reasons::UNREACHABLE,
            ),
        ];
        for (conds, status, reason) in cases {
            let d = ready_unmanaged(&conds);
            assert_eq!(
                (d.condition.status, d.condition.reason.as_str()),
                (status, reason)
            );
            assert_eq!(d.deadline, None, "no heartbeat, no deadline");
        }
        let d = ready_unmanaged(&reach(ConditionStatus::False));
        assert_eq!(d.condition.message, "refused: x");
        let d = unusable("spec.auth.secretRef: Secret k does not exist");
        assert_eq!(d.condition.status, ConditionStatus::False);
        assert_eq!(d.condition.reason, reasons::BACKEND_UNUSABLE);
        assert!(d.condition.message.contains("Secret k"));
    }

    use super::*;
    use ConditionStatus::{False, True, Unknown};

    fn t(secs: f64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + (secs * 1000.0) as i64).expect("valid")
    }

    fn c(type_: &str, status: ConditionStatus) -> Condition {
        Condition::new(type_, status, "Because", format!("{type_} says so"))
    }

    fn healthy() -> Vec<Condition> {
        vec![
            c(conditions::NODELET_READY, True),
            c(conditions::OLLAMA_RUNNING, True),
        ]
    }

    fn with(mut base: Vec<Condition>, type_: &str, status: ConditionStatus) -> Vec<Condition> {
        base.retain(|x| x.type_ != type_);
        base.push(c(type_, status));
        base
    }

    fn without(mut base: Vec<Condition>, type_: &str) -> Vec<Condition> {
        base.retain(|x| x.type_ != type_);
        base
    }

    /// A heartbeat written `ago` seconds before now (t = 100), seen at once.
    fn hb(ago: f64) -> Option<HeartbeatSeen> {
        Some(HeartbeatSeen {
            value: t(100.0 - ago),
            first_seen: t(100.0 - ago),
            changed: true,
        })
    }

    #[test]
    fn ready_table() {
        let grace = Duration::from_secs(15);
        type Case = (
            &'static str,
            Vec<Condition>,
            Option<HeartbeatSeen>,
            ConditionStatus,
            &'static str,
        );
        let cases: [Case; 12] = [
            ("healthy", healthy(), hb(1.0), True, reasons::HEALTHY),
            (
                "late but within grace",
                healthy(),
                hb(14.9),
                True,
                reasons::HEALTHY,
            ),
            (
                "exactly at grace",
                healthy(),
                hb(15.0),
                True,
                reasons::HEALTHY,
            ),
            (
                "late",
                healthy(),
                hb(15.1),
                Unknown,
                reasons::HEARTBEAT_MISSED,
            ),
            (
                "never heartbeated",
                healthy(),
                None,
                Unknown,
                reasons::NO_HEARTBEAT,
            ),
            (
                "graceful stop wins over staleness",
                with(healthy(), conditions::NODELET_READY, False),
                hb(60.0),
                False,
                reasons::NODELET_STOPPED,
            ),
            (
                "nodelet never said ready",
                without(healthy(), conditions::NODELET_READY),
                hb(1.0),
                False,
                reasons::NODELET_NOT_READY,
            ),
            (
                "ollama down",
                with(healthy(), conditions::OLLAMA_RUNNING, False),
                hb(1.0),
                False,
                reasons::OLLAMA_NOT_RUNNING,
            ),
            (
                "ollama unknown",
                with(healthy(), conditions::OLLAMA_RUNNING, Unknown),
                hb(1.0),
                False,
                reasons::OLLAMA_NOT_RUNNING,
            ),
            (
                "unreachable",
                with(healthy(), conditions::REACHABLE, False),
                hb(1.0),
                False,
                reasons::UNREACHABLE,
            ),
            (
                "reachable unknown is not a failure",
                with(healthy(), conditions::REACHABLE, Unknown),
                hb(1.0),
                True,
                reasons::HEALTHY,
            ),
            (
                "stale data says nothing about ollama",
                with(healthy(), conditions::OLLAMA_RUNNING, False),
                hb(20.0),
                Unknown,
                reasons::HEARTBEAT_MISSED,
            ),
        ];
        for (name, conds, heartbeat, status, reason) in cases {
            let d = ready_condition(&conds, heartbeat, t(100.0), grace);
            assert_eq!(
                (d.condition.status, d.condition.reason.as_str()),
                (status, reason),
                "{name}"
            );
            assert_eq!(d.condition.type_, conditions::READY);
        }
    }

    #[test]
    fn deadline_is_heartbeat_plus_grace_while_fresh() {
        let grace = Duration::from_secs(15);
        let d = ready_condition(&healthy(), hb(5.0), t(100.0), grace);
        assert_eq!(d.deadline, Some(t(110.0)));
        let d = ready_condition(&healthy(), hb(20.0), t(100.0), grace);
        assert_eq!(d.deadline, None);
        // Not ready for another reason: still re-check at the deadline, so
        // the reason turns into HeartbeatMissed on time.
        let down = with(healthy(), conditions::OLLAMA_RUNNING, False);
        let d = ready_condition(&down, hb(5.0), t(100.0), grace);
        assert_eq!(d.deadline, Some(t(110.0)));
    }

    #[test]
    fn messages_are_stable_while_the_state_holds() {
        let grace = Duration::from_secs(15);
        let seen = hb(20.0);
        let a = ready_condition(&healthy(), seen, t(100.0), grace);
        let b = ready_condition(&healthy(), seen, t(130.0), grace);
        assert_eq!(
            a.condition, b.condition,
            "no churn while a node stays stale"
        );
        assert!(
            a.condition.message.contains("15s"),
            "{}",
            a.condition.message
        );
        let down = with(healthy(), conditions::OLLAMA_RUNNING, False);
        let d = ready_condition(&down, hb(1.0), t(100.0), grace);
        assert_eq!(d.condition.message, "OllamaRunning says so");
    }

    #[test]
    fn heartbeat_observation_table() {
        let (a, b) = (t(10.0), t(20.0));
        // First sight (e.g. after a restart): the timestamp itself counts.
        let first = observe_heartbeat(None, Some(a), t(12.0)).expect("seen");
        assert_eq!(
            (first.changed, first.effective()),
            (false, a),
            "first sight"
        );
        // The same value again changes nothing.
        assert_eq!(
            observe_heartbeat(Some(&first), Some(a), t(30.0)),
            Some(first)
        );
        // A new value counts from when it was seen, whatever it says.
        let next = observe_heartbeat(Some(&first), Some(b), t(21.0)).expect("seen");
        assert_eq!((next.changed, next.effective()), (true, t(21.0)));
        // No heartbeat at all.
        assert_eq!(observe_heartbeat(Some(&first), None, t(30.0)), None);
    }

    #[test]
    fn skewed_clocks() {
        let grace = Duration::from_secs(15);
        // The node's clock is an hour behind: its fresh heartbeats look an
        // hour old, but they keep changing, so the node stays Ready.
        let behind = Some(HeartbeatSeen {
            value: t(100.0 - 3600.0),
            first_seen: t(99.0),
            changed: true,
        });
        let d = ready_condition(&healthy(), behind, t(100.0), grace);
        assert_eq!(d.condition.status, True);
        // An hour ahead: a heartbeat "from the future" found at startup
        // counts from when it was seen, so it still goes stale on time.
        let ahead = observe_heartbeat(None, Some(t(100.0 + 3600.0)), t(100.0));
        let d = ready_condition(&healthy(), ahead, t(116.0), grace);
        assert_eq!(d.condition.status, Unknown);
        // A dead node found at startup is not revived by the restart.
        let dead = observe_heartbeat(None, Some(t(40.0)), t(100.0));
        let d = ready_condition(&healthy(), dead, t(100.0), grace);
        assert_eq!(d.condition.status, Unknown);
    }

    #[test]
    fn not_ready_duration() {
        let mut ready = c(conditions::READY, True);
        ready.last_transition_time = Some(t(0.0));
        assert_eq!(not_ready_for(&[ready], t(100.0), t(0.0)), Duration::ZERO);
        let mut down = c(conditions::READY, Unknown);
        down.last_transition_time = Some(t(40.0));
        assert_eq!(
            not_ready_for(&[down], t(100.0), t(0.0)),
            Duration::from_secs(60)
        );
        assert_eq!(
            not_ready_for(&[], t(100.0), t(90.0)),
            Duration::from_secs(10)
        );
        // Probe caught it at 30, heartbeat grace at 45: down since 30.
        let mut unreachable = c(conditions::REACHABLE, False);
        unreachable.last_transition_time = Some(t(30.0));
        let mut unknown = c(conditions::READY, Unknown);
        unknown.last_transition_time = Some(t(45.0));
        assert_eq!(
            not_ready_for(&[unknown.clone(), unreachable.clone()], t(100.0), t(0.0)),
            Duration::from_secs(70)
        );
        // Ready again: nothing counts.
        let mut up = c(conditions::READY, True);
        up.last_transition_time = Some(t(50.0));
        assert_eq!(
            not_ready_for(&[up, unreachable], t(100.0), t(0.0)),
            Duration::ZERO
        );
        // A Reachable=False newer than Ready's transition changes nothing.
        let mut late = c(conditions::REACHABLE, False);
        late.last_transition_time = Some(t(80.0));
        assert_eq!(
            not_ready_for(&[unknown, late], t(100.0), t(0.0)),
            Duration::from_secs(55)
        );
    }
}
