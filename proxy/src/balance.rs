//! Choosing one node among the candidates: pure functions of what is known
//! about each candidate, so every strategy is table-tested without I/O.
//!
//! The cost model follows tower's `PeakEwma` and linkerd: a node's cost is
//! its expected wait, `(in-flight ÷ slots + 1) × EWMA(time to first byte)`,
//! divided by its weight (100 = normal) and multiplied by a pressure factor
//! from the CPU and memory use its nodelet last reported (a node at 90 % CPU
//! costs about 3.4× an idle one). `slots` is how many requests the node runs
//! at once (`spec.maxParallel`, Ollama's `OLLAMA_NUM_PARALLEL`): a node with
//! four slots and three requests running still starts a fourth at once, so
//! it is not four times as expensive as an idle one.
//!
//! Latency estimates are noisy, load is not: two nodes whose estimates are
//! within [`TTFB_TOLERANCE`] (or [`TTFB_FLOOR_SECS`]) count as equally
//! fast and are compared on load alone ([`busyness`], where every request
//! in flight counts in full), and loads within
//! [`LOAD_TOLERANCE`] count as equal. Between equals the node with fewer
//! recent picks (a count decaying over [`RECENT_PICKS_TAU_SECS`]) wins, then
//! the one picked least recently: idle, equally fast nodes share sequential
//! traffic evenly instead of by the luck of the draw. A node at least
//! [`SLOWER_CLASS`] times slower does not share that way: a tie of costs
//! goes to the faster node (a busy fast node's queue moves faster than its
//! estimate says; sharing sent ~1 % of the load to a 4× slower node and
//! put the p99 on its service time).

use std::cmp::Ordering;

use crate::config::Strategy;

/// Assumed time to first byte of a node not measured yet (and the fallback
/// when no candidate is measured).
pub const DEFAULT_TTFB_SECS: f64 = 0.1;
/// Relative difference of latency estimates below which two nodes count as
/// equally fast.
pub const TTFB_TOLERANCE: f64 = 0.25;
/// Absolute difference of latency estimates below which two nodes count as
/// equally fast (scheduling noise at millisecond latencies).
pub const TTFB_FLOOR_SECS: f64 = 0.010;
/// Relative difference of load (in-flight, weight, pressure) below which two
/// nodes count as equally loaded: a node at 20 % CPU is as good as an idle
/// one, one at 50 % is not.
pub const LOAD_TOLERANCE: f64 = 0.25;
/// How many times slower a node's first byte must be to lose a tie of
/// costs to the faster node instead of sharing by fairness.
pub const SLOWER_CLASS: f64 = 2.0;
/// Weight of a node that nobody configured: costs are relative to it.
pub const NORMAL_WEIGHT: f64 = 100.0;
/// Time constant of the recent-picks count: a node's old picks stop
/// mattering after a few minutes, so a node that joins late is not flooded
/// while it "catches up".
pub const RECENT_PICKS_TAU_SECS: f64 = 60.0;

/// What a strategy knows about one candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Requests sent to the node whose response body has not ended.
    pub in_flight: u32,
    /// Requests the node runs at once (`spec.maxParallel`; 0 counts as 1).
    pub slots: u32,
    /// EWMA of the time to first byte for this model on this node, in
    /// seconds; `None` until measured.
    pub ttfb_secs: Option<f64>,
    /// Effective weight (> 0; zero-weight nodes are never candidates).
    pub weight: u32,
    /// From the node's last heartbeat, 0–100.
    pub cpu_percent: f64,
    /// From the node's last heartbeat, 0–100.
    pub memory_percent: f64,
    /// Picks of the node, decaying with [`RECENT_PICKS_TAU_SECS`].
    pub recent_picks: f64,
    /// Logical time of the node's last pick; larger is more recent, 0 never.
    pub last_pick: u64,
}

impl Load {
    /// An idle, unmeasured node of normal weight.
    pub fn idle() -> Load {
        Load {
            in_flight: 0,
            slots: 1,
            ttfb_secs: None,
            weight: 100,
            cpu_percent: 0.0,
            memory_percent: 0.0,
            recent_picks: 0.0,
            last_pick: 0,
        }
    }

    fn ttfb(&self, default_ttfb: f64) -> f64 {
        self.ttfb_secs
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(default_ttfb)
            .max(1e-6)
    }

    fn weight(&self) -> f64 {
        f64::from(self.weight.max(1)) / NORMAL_WEIGHT
    }
}

/// The recent-picks count `secs` after it was `value`.
pub fn decayed(value: f64, secs: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 0.0;
    }
    value * (-secs.max(0.0) / RECENT_PICKS_TAU_SECS).exp()
}

/// How much the node's reported CPU/memory use inflates its cost:
/// `1 + 3p²` with `p` the larger of the two as a fraction (1.0 idle, 1.75
/// at 50 %, 3.43 at 90 %, 4.0 at 100 %). Gentle at low use, where CPU
/// mostly reflects the node's own requests (already counted as in-flight).
pub fn pressure(cpu_percent: f64, memory_percent: f64) -> f64 {
    let clean = |v: f64| {
        if v.is_finite() {
            v.clamp(0.0, 100.0)
        } else {
            0.0
        }
    };
    let p = clean(cpu_percent).max(clean(memory_percent)) / 100.0;
    1.0 + 3.0 * p * p
}

/// The time to first byte assumed for unmeasured candidates: the median of
/// the measured ones, so a new node is neither flooded nor starved.
pub fn default_ttfb(loads: &[Load]) -> f64 {
    let mut measured: Vec<f64> = loads
        .iter()
        .filter_map(|l| l.ttfb_secs)
        .filter(|t| t.is_finite() && *t > 0.0)
        .collect();
    if measured.is_empty() {
        return DEFAULT_TTFB_SECS;
    }
    measured.sort_by(f64::total_cmp);
    measured[measured.len() / 2]
}

/// How busy the node is, latency aside: `(in-flight + 1) ÷ weight ×
/// pressure`. This alone is what `least_busy` compares, and what decides
/// between equally fast nodes: every request running on a node slows the
/// others there, even with slots to spare.
pub fn busyness(load: &Load) -> f64 {
    scaled(load, f64::from(load.in_flight) + 1.0)
}

/// `rounds ÷ weight × pressure`: a count of requests to wait through, made
/// relative to the node's weight and inflated by its reported CPU/memory use.
fn scaled(load: &Load, rounds: f64) -> f64 {
    rounds / load.weight() * pressure(load.cpu_percent, load.memory_percent)
}

/// Expected wait for one more request on this node:
/// `(in-flight ÷ slots + 1) ÷ weight × pressure × EWMA(time to first byte)`.
/// Requests up to the node's slots run at once, so a fast node with three
/// of four slots busy still answers before an idle node four times slower.
pub fn cost(load: &Load, default_ttfb: f64) -> f64 {
    let rounds = f64::from(load.in_flight) / f64::from(load.slots.max(1)) + 1.0;
    scaled(load, rounds) * load.ttfb(default_ttfb)
}

fn within(a: f64, b: f64, tolerance: f64, floor: f64) -> bool {
    (a - b).abs() <= (tolerance * a.min(b)).max(floor)
}

/// Compares the cost of two candidates, `Equal` meaning "as good as each
/// other" (see the module docs). With `use_latency` false only busyness
/// counts (`least_busy`).
fn compare(a: &Load, b: &Load, default_ttfb: f64, use_latency: bool) -> Ordering {
    let (ta, tb) = (a.ttfb(default_ttfb), b.ttfb(default_ttfb));
    let (ca, cb) = if !use_latency || within(ta, tb, TTFB_TOLERANCE, TTFB_FLOOR_SECS) {
        (busyness(a), busyness(b))
    } else {
        (cost(a, default_ttfb), cost(b, default_ttfb))
    };
    if within(ca, cb, LOAD_TOLERANCE, 0.0) {
        Ordering::Equal
    } else {
        ca.total_cmp(&cb)
    }
}

/// Between equals: fewer recent picks (by at least half a pick), then the
/// older last pick. `Less` means `a` is preferred.
fn fairness(a: &Load, b: &Load) -> Ordering {
    if (a.recent_picks - b.recent_picks).abs() >= 0.5 {
        a.recent_picks.total_cmp(&b.recent_picks)
    } else {
        a.last_pick.cmp(&b.last_pick)
    }
}

/// Between two candidates of equal cost: the faster one when the other is
/// at least [`SLOWER_CLASS`] times slower (and not within the millisecond
/// noise floor), with `use_latency`; else
/// [`fairness`]. Sharing is for nodes of one speed (whose estimates also
/// carry their queues); a much slower node whose cost comes within the
/// tolerance of a busy fast one would otherwise win on its few recent
/// picks, though the fast node's queue moves faster than the estimate says.
fn tie_break(a: &Load, b: &Load, default_ttfb: f64, use_latency: bool) -> Ordering {
    let (ta, tb) = (a.ttfb(default_ttfb), b.ttfb(default_ttfb));
    let apart =
        !within(ta, tb, TTFB_TOLERANCE, TTFB_FLOOR_SECS) && ta.max(tb) >= SLOWER_CLASS * ta.min(tb);
    if use_latency && apart {
        ta.total_cmp(&tb)
    } else {
        fairness(a, b)
    }
}

/// Whether `a` is strictly preferred to `b`.
fn better(a: &Load, b: &Load, default_ttfb: f64, use_latency: bool) -> bool {
    match compare(a, b, default_ttfb, use_latency) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => tie_break(a, b, default_ttfb, use_latency) == Ordering::Less,
    }
}

/// Two distinct indexes in `0..n` from two random numbers (`n ≥ 2`), the
/// pair power-of-two-choices compares.
pub fn random_pair(n: usize, r1: usize, r2: usize) -> (usize, usize) {
    debug_assert!(n >= 2);
    let i = r1 % n;
    let mut j = r2 % (n - 1);
    if j >= i {
        j += 1;
    }
    (i, j)
}

/// Power of two choices between `pair`: the cheaper wins. When the winner
/// is as good as other candidates (see the module docs), the choice among
/// those equals goes to the fewest recent picks, so idle, equally fast
/// nodes share traffic evenly; under load costs differ and this is plain
/// p2c (a clearly cheaper node outside the pair is not looked for).
pub fn p2c(loads: &[Load], pair: (usize, usize)) -> usize {
    let (i, j) = pair;
    if loads.len() < 2 || i == j || i >= loads.len() || j >= loads.len() {
        return i.min(loads.len().saturating_sub(1));
    }
    let d = default_ttfb(loads);
    let winner = if better(&loads[j], &loads[i], d, true) {
        j
    } else {
        i
    };
    let mut best = winner;
    for (k, l) in loads.iter().enumerate() {
        if k != best
            && compare(l, &loads[winner], d, true) == Ordering::Equal
            && tie_break(l, &loads[best], d, true) == Ordering::Less
        {
            best = k;
        }
    }
    best
}

/// Each candidate in turn: the `counter`-th request goes to candidate
/// `counter mod n`.
pub fn round_robin(n: usize, counter: u64) -> usize {
    if n == 0 {
        return 0;
    }
    // The remainder is below `n`, so it fits a usize.
    usize::try_from(counter % n as u64).unwrap_or(0)
}

/// The candidate with the fewest requests in flight per unit of weight
/// (with the pressure factor); ties go to the fewest recent picks.
pub fn least_busy(loads: &[Load]) -> usize {
    let mut best = 0;
    for i in 1..loads.len() {
        if better(&loads[i], &loads[best], DEFAULT_TTFB_SECS, false) {
            best = i;
        }
    }
    best
}

/// Random inputs a pick may use (drawn by the caller, so picks are pure).
#[derive(Clone, Copy, Debug)]
pub struct Dice {
    pub r1: usize,
    pub r2: usize,
    /// Round-robin position.
    pub counter: u64,
}

/// The index of the chosen candidate (`loads` is not empty).
pub fn pick(strategy: Strategy, loads: &[Load], dice: Dice) -> usize {
    match loads.len() {
        0 | 1 => 0,
        n => match strategy {
            Strategy::P2c => p2c(loads, random_pair(n, dice.r1, dice.r2)),
            Strategy::RoundRobin => round_robin(n, dice.counter),
            Strategy::LeastBusy => least_busy(loads),
        },
    }
}

/// Time constant over which an estimate no sample refreshed fades (toward
/// zero, as tower's `PeakEwma` does): a node that once looked slow and was
/// left alone is tried again after a while, instead of never.
pub const TTFB_DECAY_SECS: f64 = 10.0;

/// An estimate `age_secs` after its last sample.
pub fn ttfb_decayed(value: f64, age_secs: f64) -> f64 {
    value * (-age_secs.max(0.0) / TTFB_DECAY_SECS).exp()
}

/// The next EWMA of a latency after `sample_secs`: `α = 0.3` per sample,
/// and one sample can at most double the estimate (a first sample at most
/// twice `reference`, the other candidates' median, when known). A lasting
/// slowdown shows within a few requests; one outlier (a scheduling hiccup,
/// a cold connection) cannot make a node look slow enough to be avoided
/// from then on.
pub fn ewma_update(prev: Option<f64>, sample_secs: f64, reference: Option<f64>) -> f64 {
    const ALPHA: f64 = 0.3;
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !sample_secs.is_finite() {
        return prev.filter(|p| ok(*p)).unwrap_or(DEFAULT_TTFB_SECS);
    }
    let s = sample_secs.max(0.0);
    match prev.filter(|p| ok(*p)) {
        Some(p) => p + ALPHA * (s.min(2.0 * p) - p),
        None => match reference.filter(|r| ok(*r)) {
            Some(r) => s.min(2.0 * r),
            None => s,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(in_flight: u32, ttfb: Option<f64>, weight: u32, cpu: f64) -> Load {
        Load {
            in_flight,
            slots: 1,
            ttfb_secs: ttfb,
            weight,
            cpu_percent: cpu,
            memory_percent: 0.0,
            recent_picks: 0.0,
            last_pick: 0,
        }
    }

    fn slots(l: Load, slots: u32) -> Load {
        Load { slots, ..l }
    }

    #[test]
    fn pressure_table() {
        for (cpu, mem, want) in [
            (0.0, 0.0, 1.0),
            (50.0, 10.0, 1.75),
            (10.0, 50.0, 1.75),
            (90.0, 0.0, 3.43),
            (100.0, 0.0, 4.0),
            (250.0, 0.0, 4.0),
            (f64::NAN, -5.0, 1.0),
        ] {
            let got = pressure(cpu, mem);
            assert!(
                (got - want).abs() < 1e-9,
                "({cpu},{mem}) → {got}, want {want}"
            );
        }
    }

    #[test]
    fn cost_table() {
        let d = 0.1;
        for (l, want) in [
            (load(0, Some(0.1), 100, 0.0), 0.1),
            (load(3, Some(0.1), 100, 0.0), 0.4),
            (load(0, Some(0.4), 100, 0.0), 0.4),
            (load(0, Some(0.1), 200, 0.0), 0.05),
            (load(0, None, 100, 0.0), 0.1),
            (load(0, Some(f64::NAN), 100, 0.0), 0.1),
            (load(1, Some(0.1), 50, 50.0), 0.2 / 0.5 * 1.75),
            // Four slots: three running cost less than one waiting behind
            // one slot; beyond the slots every four more add a round.
            (slots(load(3, Some(0.1), 100, 0.0), 4), 0.175),
            (slots(load(8, Some(0.1), 100, 0.0), 4), 0.3),
            (slots(load(3, Some(0.1), 100, 0.0), 0), 0.4),
        ] {
            let got = cost(&l, d);
            assert!((got - want).abs() < 1e-9, "{l:?} → {got}, want {want}");
        }
    }

    #[test]
    fn default_ttfb_is_the_median_of_measured() {
        assert_eq!(
            default_ttfb(&[Load::idle(), Load::idle()]),
            DEFAULT_TTFB_SECS
        );
        let loads = [
            load(0, Some(0.3), 100, 0.0),
            load(0, None, 100, 0.0),
            load(0, Some(0.1), 100, 0.0),
            load(0, Some(0.2), 100, 0.0),
        ];
        assert_eq!(default_ttfb(&loads), 0.2);
    }

    #[test]
    fn p2c_table() {
        let idle = load(0, Some(0.1), 100, 0.0);
        struct Case {
            name: &'static str,
            a: Load,
            b: Load,
            want: usize,
        }
        let cases = [
            Case {
                name: "fewer in flight wins",
                a: load(3, Some(0.1), 100, 0.0),
                b: idle,
                want: 1,
            },
            Case {
                name: "faster first byte wins",
                a: load(0, Some(0.1), 100, 0.0),
                b: load(0, Some(0.4), 100, 0.0),
                want: 0,
            },
            Case {
                name: "90% CPU loses to idle",
                a: load(0, Some(0.1), 100, 90.0),
                b: idle,
                want: 1,
            },
            Case {
                name: "90% memory loses to idle",
                a: Load {
                    memory_percent: 90.0,
                    ..idle
                },
                b: idle,
                want: 1,
            },
            Case {
                name: "double weight takes a second request",
                a: load(1, Some(0.1), 200, 0.0),
                b: load(0, Some(0.11), 100, 0.0),
                want: 0,
            },
            Case {
                name: "4 slots, 3 running: beats an idle node 4x slower",
                a: slots(load(0, Some(0.4), 100, 0.0), 4),
                b: slots(load(3, Some(0.1), 100, 0.0), 4),
                want: 1,
            },
            Case {
                name: "1 slot, 5 in flight: an idle node 4x slower wins",
                a: load(0, Some(0.4), 100, 0.0),
                b: load(5, Some(0.1), 100, 0.0),
                want: 0,
            },
            Case {
                name: "4x slower node loses even when idle against 2 in flight",
                a: load(0, Some(0.4), 100, 0.0),
                b: load(2, Some(0.1), 100, 0.0),
                want: 1,
            },
            Case {
                name: "a 4x slower idle node within the tolerance of a busy fast one loses the tie",
                a: Load {
                    recent_picks: 0.0,
                    ..slots(load(0, Some(0.4), 100, 0.0), 4)
                },
                b: Load {
                    recent_picks: 10.0,
                    ..slots(load(9, Some(0.1), 100, 0.0), 4)
                },
                want: 1,
            },
            Case {
                name: "small latency noise is a tie: least recently picked wins",
                a: Load {
                    last_pick: 7,
                    ..load(0, Some(0.010), 100, 0.0)
                },
                b: Load {
                    last_pick: 3,
                    ..load(0, Some(0.011), 100, 0.0)
                },
                want: 1,
            },
            Case {
                name: "unmeasured node is judged by the median",
                a: load(0, None, 100, 0.0),
                b: Load {
                    last_pick: 1,
                    ..load(0, Some(0.5), 100, 0.0)
                },
                want: 0,
            },
        ];
        for c in cases {
            assert_eq!(p2c(&[c.a, c.b], (0, 1)), c.want, "{}", c.name);
            // Order of the pair must not matter.
            assert_eq!(p2c(&[c.b, c.a], (1, 0)), 1 - c.want, "{} (swapped)", c.name);
        }
    }

    #[test]
    fn equals_outside_the_pair_share_but_cheaper_ones_are_not_scanned_for() {
        let idle = |recent| Load {
            recent_picks: recent,
            ..load(0, Some(0.1), 100, 0.0)
        };
        // Pair (0, 1) both picked often; node 2 ties on cost with fewer picks.
        assert_eq!(p2c(&[idle(5.0), idle(4.0), idle(1.0)], (0, 1)), 2);
        // Node 2 is clearly cheaper but outside the pair: p2c does not look.
        let busy = |n| load(n, Some(0.1), 100, 0.0);
        assert_eq!(p2c(&[busy(3), busy(2), busy(0)], (0, 1)), 1);
        // A node at 90% CPU never wins against an idle one, whatever the pair.
        let hot = load(0, Some(0.1), 100, 90.0);
        for pair in [(0, 1), (1, 0)] {
            assert_eq!(p2c(&[hot, idle(50.0)], pair), 1);
        }
    }

    #[test]
    fn random_pair_is_distinct_and_covers_all_pairs() {
        let mut seen = std::collections::BTreeSet::new();
        for r1 in 0..10 {
            for r2 in 0..10 {
                let (i, j) = random_pair(3, r1, r2);
                assert_ne!(i, j);
                assert!(i < 3 && j < 3);
                seen.insert((i, j));
            }
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn round_robin_nine_over_three_is_three_each() {
        let mut counts = [0; 3];
        for k in 0..9 {
            counts[pick(
                Strategy::RoundRobin,
                &[Load::idle(); 3],
                Dice {
                    r1: 0,
                    r2: 0,
                    counter: 1000 + k,
                },
            )] += 1;
        }
        assert_eq!(counts, [3, 3, 3]);
    }

    #[test]
    fn least_busy_table() {
        let busy = |n| load(n, Some(0.1), 100, 0.0);
        assert_eq!(least_busy(&[busy(2), busy(0), busy(1)]), 1);
        assert_eq!(least_busy(&[busy(1), busy(1), busy(0)]), 2);
        // Double weight: (1+1)/2 = 1 in flight per unit of weight, as (0+1)/1: a tie.
        let heavy = load(1, None, 200, 0.0);
        let light = Load {
            last_pick: 5,
            ..busy(0)
        };
        assert_eq!(
            least_busy(&[light, heavy]),
            1,
            "tie → least recently picked"
        );
        // Idle nodes in a tie rotate by last pick.
        let l = |p| Load {
            last_pick: p,
            ..busy(0)
        };
        assert_eq!(least_busy(&[l(9), l(4), l(6)]), 1);
        assert_eq!(
            least_busy(&[
                busy(0),
                Load {
                    cpu_percent: 90.0,
                    ..busy(0)
                }
            ]),
            0
        );
    }

    /// Sequential requests to idle, equally fast nodes: p2c with ties
    /// settled by recent picks spreads them evenly, whatever the random
    /// pairs (the acceptance test asks 8–12 of 30 on each of 3).
    #[test]
    fn p2c_sequential_spread_is_even() {
        // A small deterministic generator: the spread must hold for any seed.
        for seed in 1..500u64 {
            // splitmix64
            let mut x = seed;
            let mut next = || {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                usize::try_from((z ^ (z >> 31)) >> 33).unwrap_or(0)
            };
            let mut loads = [Load::idle(); 3];
            let mut counts = [0; 3];
            for t in 1..=30 {
                let i = pick(
                    Strategy::P2c,
                    &loads,
                    Dice {
                        r1: next(),
                        r2: next(),
                        counter: 0,
                    },
                );
                counts[i] += 1;
                loads[i].last_pick = t;
                loads[i].recent_picks += 1.0;
            }
            assert_eq!(counts, [10, 10, 10], "seed {seed}");
        }
    }

    #[test]
    fn recent_picks_break_ties_before_last_pick() {
        let l = |recent, last| Load {
            recent_picks: recent,
            last_pick: last,
            ..load(0, Some(0.1), 100, 0.0)
        };
        // Fewer recent picks wins even if picked more recently.
        assert_eq!(p2c(&[l(5.0, 9), l(3.0, 10)], (0, 1)), 1);
        // Within half a pick: the older pick wins.
        assert_eq!(p2c(&[l(3.2, 9), l(3.0, 10)], (0, 1)), 0);
        // Cost still comes first.
        assert_eq!(
            p2c(
                &[
                    l(0.0, 0),
                    Load {
                        in_flight: 2,
                        ..l(9.0, 9)
                    }
                ],
                (1, 0)
            ),
            0
        );
        // Latency within 10 ms is noise at millisecond scale: load decides.
        let fast = Load {
            ttfb_secs: Some(0.002),
            ..l(3.0, 1)
        };
        let slower = Load {
            ttfb_secs: Some(0.009),
            ..l(0.0, 2)
        };
        assert_eq!(p2c(&[fast, slower], (0, 1)), 1, "equal speed → fewer picks");
        let hot = Load {
            cpu_percent: 90.0,
            ..fast
        };
        assert_eq!(
            p2c(&[hot, slower], (0, 1)),
            1,
            "but 90% CPU is load, not noise"
        );
        assert_eq!(
            p2c(
                &[
                    Load {
                        cpu_percent: 90.0,
                        ..slower
                    },
                    fast
                ],
                (0, 1)
            ),
            1
        );
        assert!((decayed(10.0, RECENT_PICKS_TAU_SECS) - 10.0 / std::f64::consts::E).abs() < 1e-9);
        assert_eq!(decayed(f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn ewma_moves_toward_samples() {
        assert_eq!(ewma_update(None, 0.5, None), 0.5);
        assert_eq!(
            ewma_update(None, 0.5, Some(0.1)),
            0.2,
            "first sample capped at 2× the others"
        );
        let e = ewma_update(Some(1.0), 0.0, None);
        assert!((e - 0.7).abs() < 1e-9);
        let mut e = Some(0.1);
        for _ in 0..20 {
            e = Some(ewma_update(e, 0.4, None));
        }
        assert!((e.unwrap_or(0.0) - 0.4).abs() < 0.01);
        assert_eq!(ewma_update(Some(0.2), f64::NAN, None), 0.2);
        // One outlier moves the estimate by at most 30 %.
        let after = ewma_update(Some(0.005), 0.5, None);
        assert!((after - 0.0065).abs() < 1e-12, "{after}");
        // A node that really got 4x slower shows it within a few samples.
        let mut e = Some(0.1);
        for _ in 0..8 {
            e = Some(ewma_update(e, 0.4, None));
        }
        assert!(e.unwrap_or(0.0) > 0.3, "{e:?}");
        assert!((ttfb_decayed(1.0, TTFB_DECAY_SECS) - 1.0 / std::f64::consts::E).abs() < 1e-12);
    }
}
