//! Which nodes may serve a request, and why none can: a pure function of
//! the table, the model, the breaker clock and the nodes already tried.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use crate::balance::Load;
use crate::config::Strategy;
use crate::forward::Need;
use crate::table::{ModelEntry, Table, Unroutable};

/// A node that may serve the request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Candidate {
    /// Index in `Table::nodes`.
    pub node: usize,
    /// Index in the model's `holders`.
    pub holder: usize,
    pub loaded: bool,
}

/// Why no node can serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NoRoute {
    /// The store has not delivered its first list yet.
    NotSynced,
    /// No `Node` exists at all.
    NoNodes,
    /// Nodes exist but none takes requests; counts by reason.
    NoneRoutable {
        registered: usize,
        reasons: Vec<(&'static str, usize)>,
    },
    /// No node (that could take requests or not) holds the model.
    ModelNotFound,
    /// Nodes hold the model, but none of them takes requests now.
    ModelUnavailable { nodes: Vec<(String, &'static str)> },
    /// The nodes holding the model failed to connect moments ago.
    Unreachable { nodes: Vec<String> },
    /// The nodes holding the model cannot answer this endpoint (an
    /// OpenAI-compatible server asked for Ollama's native API, a node
    /// without its own `/v1/messages`).
    Unsupported { nodes: Vec<String> },
}

impl NoRoute {
    /// The message after "no nodes available: " or on its own; the caller
    /// words `ModelNotFound` per endpoint.
    pub(crate) fn message(&self, model: &str) -> String {
        let for_model = if model.is_empty() {
            String::new()
        } else {
            format!(" for model '{model}'")
        };
        match self {
            NoRoute::NotSynced => {
                "no nodes available: the node list has not been loaded yet".to_owned()
            }
            NoRoute::NoNodes => "no nodes available: no nodes are registered".to_owned(),
            NoRoute::NoneRoutable {
                registered,
                reasons,
            } => {
                let mut m = format!(
                    "no nodes available: {registered} node{} registered, none ready and schedulable (",
                    if *registered == 1 { "" } else { "s" }
                );
                for (i, (why, n)) in reasons.iter().enumerate() {
                    if i > 0 {
                        m.push_str(", ");
                    }
                    let _ = write!(m, "{n} {why}");
                }
                m.push(')');
                m
            }
            NoRoute::ModelNotFound => format!("model '{model}' not found"),
            NoRoute::ModelUnavailable { nodes } => {
                let list: Vec<String> = nodes
                    .iter()
                    .map(|(n, why)| format!("{n} ({why})"))
                    .collect();
                format!(
                    "no nodes available{for_model}: the nodes that have it cannot take requests now: {}",
                    list.join(", ")
                )
            }
            NoRoute::Unreachable { nodes } => format!(
                "no nodes available{for_model}: connections to {} failed moments ago",
                nodes.join(", ")
            ),
            NoRoute::Unsupported { nodes } => format!(
                "no nodes available{for_model}: the nodes that have it do not serve this endpoint: {}",
                nodes.join(", ")
            ),
        }
    }
}

/// Counts of unroutable nodes by reason, in a stable order.
fn reasons(table: &Table) -> Vec<(&'static str, usize)> {
    let order = [
        Unroutable::NotReady,
        Unroutable::Cordoned,
        Unroutable::NoUrl,
        Unroutable::ZeroWeight,
    ];
    order
        .iter()
        .filter_map(|r| {
            let n = table
                .nodes
                .iter()
                .filter(|b| b.unroutable() == Some(*r))
                .count();
            (n > 0).then_some((r.as_str(), n))
        })
        .collect()
}

/// Nodes that take requests at all (breaker aside)?
pub(crate) fn fleet_check(table: &Table) -> Result<(), NoRoute> {
    if table.nodes.is_empty() {
        return Err(if table.synced {
            NoRoute::NoNodes
        } else {
            NoRoute::NotSynced
        });
    }
    if !table.any_routable {
        return Err(NoRoute::NoneRoutable {
            registered: table.nodes.len(),
            reasons: reasons(table),
        });
    }
    Ok(())
}

/// A request's candidates, inline for fleets of up to 8 nodes.
pub(crate) type Candidates = SmallVec<[Candidate; 8]>;

/// The candidates for `model` at clock `now`, leaving out `tried` nodes.
/// An empty list means every candidate was tried already.
pub(crate) fn candidates(
    table: &Table,
    model: Option<&ModelEntry>,
    need: Need,
    now: u64,
    tried: &[usize],
) -> Result<Candidates, NoRoute> {
    fleet_check(table)?;
    let Some(model) = model else {
        return Err(NoRoute::ModelNotFound);
    };
    let mut out = Candidates::new();
    let mut unavailable = Vec::new();
    let mut tripped = Vec::new();
    let mut unsupported = Vec::new();
    for (hi, h) in model.holders.iter().enumerate() {
        let b = &table.nodes[h.node];
        if !b.serves(need) {
            unsupported.push(format!("{} ({})", b.name, b.api.as_str()));
        } else if let Some(why) = b.unroutable() {
            unavailable.push((b.name.to_string(), why.as_str()));
        } else if b.live.is_tripped(now) {
            tripped.push(b.name.to_string());
        } else if !tried.contains(&h.node) {
            out.push(Candidate {
                node: h.node,
                holder: hi,
                loaded: h.loaded,
            });
        }
    }
    if out.is_empty() && tried.is_empty() {
        if !tripped.is_empty() {
            return Err(NoRoute::Unreachable { nodes: tripped });
        }
        if unavailable.is_empty() && !unsupported.is_empty() {
            return Err(NoRoute::Unsupported { nodes: unsupported });
        }
        return Err(NoRoute::ModelUnavailable { nodes: unavailable });
    }
    Ok(out)
}

/// The node requests without a model go to when they must all land on the
/// same node (blob uploads, then the `/api/create` that uses them): the
/// first node by name that takes requests and is not tripped.
pub(crate) fn primary(table: &Table, now: u64) -> Result<usize, NoRoute> {
    fleet_check(table)?;
    let routable = || {
        table
            .nodes
            .iter()
            .enumerate()
            // Blobs and creates are Ollama's: never an OpenAI server.
            .filter(|(_, b)| b.unroutable().is_none() && b.serves(Need::Ollama))
    };
    routable()
        .find(|(_, b)| !b.live.is_tripped(now))
        .map(|(i, _)| i)
        .ok_or_else(|| NoRoute::Unreachable {
            nodes: routable().map(|(_, b)| b.name.to_string()).collect(),
        })
}

/// Keeps a model off nodes whose memory serves other models while a node
/// has it loaded with a slot free: loading it there costs seconds and
/// evicts (or crowds) what that node is serving. A cold node (nothing
/// loaded) stays a candidate: it pays one load and then adds its capacity,
/// so a fresh fleet spreads evenly instead of staying on the first nodes
/// that warmed up. A loaded node with no free slot also drops out while a
/// free one exists, except under `p2c`: its cost counts slots and speed,
/// and waiting for a slot on a fast node can beat starting at once on a
/// slow one. When no loaded node has a free slot, every candidate competes
/// on cost, so a busy model spreads to more nodes.
pub(crate) fn prefer_loaded(table: &Table, cands: &mut Candidates, strategy: Strategy) {
    let free_loaded = |c: &Candidate| {
        let b = &table.nodes[c.node];
        c.loaded && b.live.in_flight.load(Ordering::Relaxed) < b.max_parallel
    };
    if !cands.iter().any(free_loaded) {
        return;
    }
    let keep_full = strategy == Strategy::P2c;
    cands.retain(|c| {
        free_loaded(c)
            || (keep_full && c.loaded)
            || (!c.loaded && table.nodes[c.node].loaded_models == 0)
    });
}

/// What the strategies see of each candidate.
pub(crate) fn loads(
    table: &Table,
    model: &ModelEntry,
    cands: &[Candidate],
    stream: bool,
    now: u64,
) -> SmallVec<[Load; 8]> {
    cands
        .iter()
        .map(|c| {
            let b = &table.nodes[c.node];
            Load {
                in_flight: b.live.in_flight.load(Ordering::Relaxed),
                slots: b.max_parallel,
                ttfb_secs: model.holders[c.holder].live.ttfb(stream, now),
                weight: b.weight,
                cpu_percent: b.cpu_percent(),
                memory_percent: b.memory_percent(),
                recent_picks: b.live.recent_picks(now),
                last_pick: b.live.last_pick.load(Ordering::Relaxed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herd_api::{Condition, ConditionStatus, Node, NodeModel, NodeSpec, Resource, conditions};

    use super::*;
    use crate::table::{Lives, Overlay};

    fn node(name: &str, ready: bool, cordoned: bool, models: &[(&str, bool)]) -> Arc<Node> {
        let mut n = Node::new(
            name,
            NodeSpec {
                url: "http://127.0.0.1:11434".into(),
                unschedulable: cordoned,
                max_parallel: 2,
                ..NodeSpec::default()
            },
        );
        let s = if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::Unknown
        };
        n.status
            .conditions
            .push(Condition::new(conditions::READY, s, "T", ""));
        n.status.models = models
            .iter()
            .map(|(m, l)| NodeModel {
                name: (*m).into(),
                loaded: *l,
                ..NodeModel::default()
            })
            .collect();
        Arc::new(n)
    }

    fn table(nodes: &[Arc<Node>]) -> Table {
        Table::build(nodes, true, &Lives::default(), &Overlay::default())
    }

    fn names(t: &Table, c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| t.nodes[c.node].name.to_string()).collect()
    }

    #[test]
    fn candidate_table() {
        let t = table(&[
            node("a", true, false, &[("llama3", true), ("qwen", false)]),
            node("b", true, false, &[("llama3", false)]),
            node("c", false, false, &[("llama3", true), ("phi", false)]),
            node("d", true, true, &[("llama3", true), ("phi", false)]),
        ]);
        let run = |m: &str, tried: &[usize]| candidates(&t, t.model(m), Need::Any, 0, tried);
        assert_eq!(names(&t, &run("llama3", &[]).expect("ok")), ["a", "b"]);
        assert_eq!(names(&t, &run("llama3:latest", &[0]).expect("ok")), ["b"]);
        assert_eq!(run("llama3", &[0, 1]), Ok(Candidates::new()));
        assert_eq!(names(&t, &run("qwen", &[]).expect("ok")), ["a"]);
        assert_eq!(run("mistral", &[]), Err(NoRoute::ModelNotFound));
        assert_eq!(
            run("phi", &[]),
            Err(NoRoute::ModelUnavailable {
                nodes: vec![("c".into(), "not ready"), ("d".into(), "cordoned")]
            })
        );
        // Tripped by a connection failure: out until the cooldown ends.
        t.nodes[0].live.tripped_until.store(100, Ordering::Relaxed);
        assert_eq!(
            candidates(&t, t.model("qwen"), Need::Any, 50, &[]),
            Err(NoRoute::Unreachable {
                nodes: vec!["a".into()]
            })
        );
        assert_eq!(
            names(
                &t,
                &candidates(&t, t.model("qwen"), Need::Any, 100, &[]).expect("ok")
            ),
            ["a"]
        );
    }

    #[test]
    fn fleet_errors_say_which_case() {
        let empty = table(&[]);
        assert_eq!(
            candidates(&empty, None, Need::Any, 0, &[]),
            Err(NoRoute::NoNodes)
        );
        assert_eq!(
            NoRoute::NoNodes.message("x"),
            "no nodes available: no nodes are registered"
        );
        let unsynced = Table::build(&[], false, &Lives::default(), &Overlay::default());
        assert_eq!(fleet_check(&unsynced), Err(NoRoute::NotSynced));

        let t = table(&[
            node("a", false, false, &[("m", true)]),
            node("b", false, false, &[]),
            node("c", true, true, &[]),
        ]);
        let err = candidates(&t, t.model("m"), Need::Any, 0, &[]).expect_err("none routable");
        assert_eq!(
            err.message("m"),
            "no nodes available: 3 nodes registered, none ready and schedulable (2 not ready, 1 cordoned)"
        );
    }

    #[test]
    fn loaded_preference_table() {
        /// A node: name, models with their loaded flag, requests in flight.
        type N = (&'static str, &'static [(&'static str, bool)], u32);
        struct Case {
            name: &'static str,
            nodes: &'static [N],
            /// Only p2c keeps full loaded nodes.
            strategy: Strategy,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "cold fleet: everyone competes",
                nodes: &[
                    ("a", &[("m", false)], 0),
                    ("b", &[("m", false)], 0),
                    ("c", &[("m", false)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "b", "c"],
            },
            Case {
                name: "warming fleet: cold nodes stay candidates",
                nodes: &[
                    ("a", &[("m", true)], 0),
                    ("b", &[("m", false)], 0),
                    ("c", &[("m", false)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "b", "c"],
            },
            Case {
                name: "a node serving another model is not made to load this one",
                nodes: &[
                    ("a", &[("m", true)], 0),
                    ("b", &[("m", false), ("other", true)], 0),
                    ("c", &[("m", false)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "c"],
            },
            Case {
                name: "a full loaded node drops out while another has a free slot",
                nodes: &[
                    ("a", &[("m", true)], 2),
                    ("b", &[("m", true)], 1),
                    ("c", &[("m", false), ("other", true)], 0),
                ],
                strategy: Strategy::RoundRobin,
                want: &["b"],
            },
            Case {
                name: "p2c weighs a full loaded node against a free one itself",
                nodes: &[
                    ("a", &[("m", true)], 2),
                    ("b", &[("m", true)], 1),
                    ("c", &[("m", false), ("other", true)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "b"],
            },
            Case {
                name: "every loaded node full: everyone competes",
                nodes: &[
                    ("a", &[("m", true)], 2),
                    ("b", &[("m", true)], 5),
                    ("c", &[("m", false), ("other", true)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "b", "c"],
            },
            Case {
                name: "loaded nowhere: nodes serving other models compete too",
                nodes: &[
                    ("a", &[("m", false), ("other", true)], 0),
                    ("b", &[("m", false), ("x", true)], 0),
                ],
                strategy: Strategy::P2c,
                want: &["a", "b"],
            },
        ];
        for case in cases {
            let nodes: Vec<_> = case
                .nodes
                .iter()
                .map(|(n, models, _)| node(n, true, false, models))
                .collect();
            let t = table(&nodes);
            for (i, (_, _, in_flight)) in case.nodes.iter().enumerate() {
                t.nodes[i]
                    .live
                    .in_flight
                    .store(*in_flight, Ordering::Relaxed);
            }
            let mut c = candidates(&t, t.model("m"), Need::Any, 0, &[]).expect("ok");
            prefer_loaded(&t, &mut c, case.strategy);
            assert_eq!(names(&t, &c), case.want, "{}", case.name);
        }
    }
}
