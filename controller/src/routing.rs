//! Routing weights (pure decisions): `Node.status.routing {weight, reason}`,
//! what share of traffic the proxy should give a node.
//!
//! ```text
//! weight = 0                                      not Ready, cordoned, or spec.weight 0
//! weight = max(1, round(spec.weight × (1 − cpu/200)))   otherwise
//! ```
//!
//! `spec.weight` is the operator's statement of the machine's capacity
//! (a node of weight 200 takes about twice what one of 100 takes); `cpu`
//! is the node's last reported `usage.cpuPercent`, clamped to 0–100. A
//! busy node loses at most half its share: it still serves, it is just no
//! longer first choice. In-flight requests and latency are left to the
//! proxy, which sees them per request (`cost = (inFlight + 1) × ewma /
//! weight`); counting them here too would count them twice.
//!
//! To keep writes down, a new weight is only written when the reason
//! changes, the weight goes to or from 0, or it moves by at least 10 %
//! of the written one ([`routing_update`]).

use herd_api::{ConditionStatus, Node, RoutingStatus};

/// Reasons of `status.routing`.
pub mod reasons {
    /// Ready and schedulable: weight from `spec.weight` and load.
    pub const READY: &str = "Ready";
    pub const NOT_READY: &str = "NotReady";
    pub const CORDONED: &str = "Cordoned";
    pub const ZERO_WEIGHT: &str = "ZeroWeight";
}

/// The routing a node should have, given its (new) `Ready` status.
pub fn routing_for(node: &Node, ready: ConditionStatus) -> RoutingStatus {
    let zero = |reason: &str| RoutingStatus {
        weight: 0,
        reason: reason.to_owned(),
    };
    if ready != ConditionStatus::True {
        return zero(reasons::NOT_READY);
    }
    if node.spec.unschedulable {
        return zero(reasons::CORDONED);
    }
    if node.spec.weight == 0 {
        return zero(reasons::ZERO_WEIGHT);
    }
    let cpu = node
        .status
        .usage
        .as_ref()
        .map_or(0.0, |u| u.cpu_percent)
        .clamp(0.0, 100.0);
    let cpu = if cpu.is_nan() { 0.0 } else { cpu };
    let scaled = (f64::from(node.spec.weight) * (1.0 - cpu / 200.0)).round();
    RoutingStatus {
        weight: (scaled as u32).max(1),
        reason: reasons::READY.to_owned(),
    }
}

/// The routing to write, or `None` when the current one is close enough.
pub fn routing_update(
    current: Option<&RoutingStatus>,
    want: RoutingStatus,
) -> Option<RoutingStatus> {
    let Some(cur) = current else {
        return Some(want);
    };
    let meaningful = cur.reason != want.reason
        || (cur.weight == 0) != (want.weight == 0)
        || u64::from(cur.weight.abs_diff(want.weight)) * 10 >= u64::from(cur.weight).max(1);
    meaningful.then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionStatus::{False, True, Unknown};
    use herd_api::{NodeSpec, NodeUsage, Resource};

    fn node(weight: u32, unschedulable: bool, cpu: Option<f64>) -> Node {
        let mut n = Node::new(
            "a",
            NodeSpec {
                weight,
                unschedulable,
                ..NodeSpec::default()
            },
        );
        n.status.usage = cpu.map(|cpu_percent| NodeUsage {
            cpu_percent,
            ..NodeUsage::default()
        });
        n
    }

    #[test]
    fn weight_table() {
        let cases = [
            (
                "idle",
                node(100, false, Some(0.0)),
                True,
                100,
                reasons::READY,
            ),
            (
                "no usage yet",
                node(100, false, None),
                True,
                100,
                reasons::READY,
            ),
            (
                "half busy",
                node(100, false, Some(50.0)),
                True,
                75,
                reasons::READY,
            ),
            (
                "saturated",
                node(100, false, Some(100.0)),
                True,
                50,
                reasons::READY,
            ),
            (
                "over 100 % is clamped",
                node(100, false, Some(350.0)),
                True,
                50,
                reasons::READY,
            ),
            (
                "bigger machine",
                node(200, false, Some(50.0)),
                True,
                150,
                reasons::READY,
            ),
            (
                "tiny weight never rounds to 0",
                node(1, false, Some(100.0)),
                True,
                1,
                reasons::READY,
            ),
            (
                "not ready",
                node(100, false, Some(0.0)),
                False,
                0,
                reasons::NOT_READY,
            ),
            (
                "unknown",
                node(100, false, Some(0.0)),
                Unknown,
                0,
                reasons::NOT_READY,
            ),
            (
                "cordoned",
                node(100, true, Some(0.0)),
                True,
                0,
                reasons::CORDONED,
            ),
            (
                "not ready and cordoned",
                node(100, true, Some(0.0)),
                False,
                0,
                reasons::NOT_READY,
            ),
            (
                "operator weight 0",
                node(0, false, Some(0.0)),
                True,
                0,
                reasons::ZERO_WEIGHT,
            ),
            (
                "nan cpu",
                node(100, false, Some(f64::NAN)),
                True,
                100,
                reasons::READY,
            ),
        ];
        for (name, n, ready, weight, reason) in cases {
            let r = routing_for(&n, ready);
            assert_eq!((r.weight, r.reason.as_str()), (weight, reason), "{name}");
        }
    }

    fn rs(weight: u32, reason: &str) -> RoutingStatus {
        RoutingStatus {
            weight,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn update_table() {
        let ready = reasons::READY;
        let cases = [
            ("first write", None, rs(100, ready), true),
            ("same", Some(rs(100, ready)), rs(100, ready), false),
            (
                "small drift is ignored",
                Some(rs(100, ready)),
                rs(91, ready),
                false,
            ),
            ("10 % moves it", Some(rs(100, ready)), rs(90, ready), true),
            ("up by 10 %", Some(rs(80, ready)), rs(88, ready), true),
            (
                "to zero",
                Some(rs(100, ready)),
                rs(0, reasons::NOT_READY),
                true,
            ),
            (
                "from zero",
                Some(rs(0, reasons::NOT_READY)),
                rs(100, ready),
                true,
            ),
            (
                "reason change at zero",
                Some(rs(0, reasons::NOT_READY)),
                rs(0, reasons::CORDONED),
                true,
            ),
            ("weight 1 to 2", Some(rs(1, ready)), rs(2, ready), true),
        ];
        for (name, cur, want, write) in cases {
            assert_eq!(
                routing_update(cur.as_ref(), want.clone()).is_some(),
                write,
                "{name}"
            );
        }
    }
}
