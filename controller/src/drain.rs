//! Drain (a pure decision): a cordoned node (`spec.unschedulable`) gets no new
//! requests; the `Drained` condition tells when the ones it had have finished,
//! so an operator (or `herd drain`) knows when the machine can go.

use herd_api::{Condition, ConditionStatus, Node, conditions};

/// Reasons of the `Drained` condition.
pub mod reasons {
    pub const NO_REQUESTS_IN_FLIGHT: &str = "NoRequestsInFlight";
    pub const REQUESTS_IN_FLIGHT: &str = "RequestsInFlight";
}

/// The `Drained` condition the node should have: `None` (no condition at
/// all) unless it is cordoned; then `True` once `status.usage.inFlight`
/// (written by the proxy) is 0, `False` while it is not. A node with no
/// usage reported has had no proxied requests, so it counts as drained.
///
/// The message does not carry the count: `usage.inFlight` shows it, and a
/// count in the message would rewrite the condition on every request.
pub fn drained_condition(node: &Node) -> Option<Condition> {
    if !node.spec.unschedulable {
        return None;
    }
    let in_flight = node.status.usage.as_ref().map_or(0, |u| u.in_flight);
    Some(if in_flight == 0 {
        Condition::new(
            conditions::DRAINED,
            ConditionStatus::True,
            reasons::NO_REQUESTS_IN_FLIGHT,
            "cordoned, and no requests are in flight",
        )
    } else {
        Condition::new(
            conditions::DRAINED,
            ConditionStatus::False,
            reasons::REQUESTS_IN_FLIGHT,
            "cordoned; waiting for the requests in flight to finish",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{NodeSpec, NodeUsage, Resource};

    fn node(unschedulable: bool, in_flight: Option<u32>) -> Node {
        let mut n = Node::new(
            "a",
            NodeSpec {
                unschedulable,
                ..NodeSpec::default()
            },
        );
        n.status.usage = in_flight.map(|in_flight| NodeUsage {
            in_flight,
            ..NodeUsage::default()
        });
        n
    }

    #[test]
    fn drain_table() {
        use ConditionStatus::{False, True};
        let cases = [
            ("schedulable: no condition", node(false, Some(3)), None),
            ("schedulable idle: no condition", node(false, Some(0)), None),
            ("cordoned busy", node(true, Some(2)), Some(False)),
            ("cordoned idle", node(true, Some(0)), Some(True)),
            ("cordoned, never used", node(true, None), Some(True)),
        ];
        for (name, n, want) in cases {
            assert_eq!(drained_condition(&n).map(|c| c.status), want, "{name}");
        }
    }
}
