//! `GET /metrics`: Prometheus (OpenMetrics) text from `prometheus-client`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `herd_proxy_requests_total` | model, node, code | requests answered (node "" when none was chosen) |
//! | `herd_proxy_request_duration_seconds` | model, node | arrival to last byte |
//! | `herd_proxy_time_to_first_token_seconds` | model, node | arrival to first body byte |
//! | `herd_proxy_tokens_generated_total` | model, node | `eval_count` / `completion_tokens` |
//! | `herd_proxy_prompt_tokens_total` | model, node | `prompt_eval_count` / `prompt_tokens` |
//! | `herd_proxy_upstream_failures_total` | node, reason | attempts that failed (ConnectFailed, FirstByteTimeout, Busy, …) |
//! | `herd_proxy_retries_total` | | attempts moved to another node |
//! | `herd_proxy_node_in_flight` | node | requests in flight to the node now |
//! | `herd_proxy_node_ready` | node | 1 when the node takes requests (Ready, schedulable, not tripped) |
//!
//! Model labels are the models the fleet knows; names no node has are
//! counted under `model=""`, so clients cannot grow the label set at will.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::affinity::Affinity;
use crate::table::{Clock, Table};

/// Seconds, from an embedding's few milliseconds to a cold model load.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    node: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelNode {
    model: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    node: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

type HistogramFamily = Family<ModelNode, Histogram, fn() -> Histogram>;

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    ttft: HistogramFamily,
    tokens_out: Family<ModelNode, Counter>,
    tokens_in: Family<ModelNode, Counter>,
    failures: Family<FailureLabels, Counter>,
    retries: Counter,
    in_flight: Family<NodeLabel, Gauge>,
    ready: Family<NodeLabel, Gauge>,
    affinity: Family<AffinityLabels, Counter>,
    affinity_entries: Gauge,
    affinity_evicted: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AffinityLabels {
    outcome: &'static str,
}

/// The series of one (model, node) pair, resolved once and kept with the
/// pair's live counters: recording a request then takes no label lookups.
pub(crate) struct Pair {
    ok: Counter,
    latency: Histogram,
    ttft: Histogram,
    tokens_out: Counter,
    tokens_in: Counter,
}

/// One finished request, as metrics see it.
pub(crate) struct Observation<'a> {
    pub model: &'a str,
    pub node: &'a str,
    /// The cached series of (model, node), when both are known.
    pub pair: Option<&'a Pair>,
    pub code: u16,
    pub latency_secs: f64,
    pub ttft_secs: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herd_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = HistogramFamily::new_with_constructor(histogram);
        let ttft = HistogramFamily::new_with_constructor(histogram);
        let tokens_out = Family::<ModelNode, Counter>::default();
        let tokens_in = Family::<ModelNode, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let retries = Counter::default();
        let in_flight = Family::<NodeLabel, Gauge>::default();
        let ready = Family::<NodeLabel, Gauge>::default();
        let affinity = Family::<AffinityLabels, Counter>::default();
        let affinity_entries = Gauge::default();
        let affinity_evicted = Gauge::default();
        registry.register(
            "affinity_decisions",
            "Requests with a prompt prefix: sent to the node that held it (hit), \
             held but over the load bound (overloaded), or no node known (miss)",
            affinity.clone(),
        );
        registry.register(
            "affinity_entries",
            "Prefix keys remembered (bounded by the proxy's affinity capacity)",
            affinity_entries.clone(),
        );
        registry.register(
            "affinity_evicted_keys",
            "Prefix keys forgotten, least recently used first, to stay within the bound",
            affinity_evicted.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by model, node and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its last byte",
            latency.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from a request's arrival to the first body byte (first token when streamed)",
            ttft.clone(),
        );
        registry.register(
            "tokens_generated",
            "Tokens generated (eval_count, completion_tokens)",
            tokens_out.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens evaluated (prompt_eval_count, prompt_tokens)",
            tokens_in.clone(),
        );
        registry.register(
            "upstream_failures",
            "Attempts to a node that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "retries",
            "Attempts moved to another node after a failure",
            retries.clone(),
        );
        registry.register(
            "node_in_flight",
            "Requests in flight to a node (until the response body ends)",
            in_flight.clone(),
        );
        registry.register(
            "node_ready",
            "1 when the node takes requests: Ready, schedulable, weight above 0, not tripped",
            ready.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            ttft,
            tokens_out,
            tokens_in,
            failures,
            retries,
            in_flight,
            ready,
            affinity,
            affinity_entries,
            affinity_evicted,
        }
    }

    /// One prefix-affinity decision: `hit`, `overloaded` or `miss`.
    pub(crate) fn affinity(&self, outcome: &'static str) {
        self.affinity
            .get_or_create(&AffinityLabels { outcome })
            .inc();
    }

    /// Resolves the series of one (model, node) pair.
    pub(crate) fn pair(&self, model: &str, node: &str) -> Pair {
        let mn = ModelNode {
            model: model.to_owned(),
            node: node.to_owned(),
        };
        Pair {
            ok: self.requests.get_or_create_owned(&RequestLabels {
                model: model.to_owned(),
                node: node.to_owned(),
                code: 200,
            }),
            latency: self.latency.get_or_create_owned(&mn),
            ttft: self.ttft.get_or_create_owned(&mn),
            tokens_out: self.tokens_out.get_or_create_owned(&mn),
            tokens_in: self.tokens_in.get_or_create_owned(&mn),
        }
    }

    pub(crate) fn observe(&self, o: &Observation<'_>) {
        let resolved;
        let pair = match o.pair {
            Some(p) => p,
            None => {
                resolved = self.pair(o.model, o.node);
                &resolved
            }
        };
        if o.code == 200 {
            pair.ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels {
                    model: o.model.to_owned(),
                    node: o.node.to_owned(),
                    code: o.code,
                })
                .inc();
        }
        pair.latency.observe(o.latency_secs);
        if let Some(t) = o.ttft_secs {
            pair.ttft.observe(t);
        }
        if let Some(n) = o.tokens_out.filter(|n| *n > 0) {
            pair.tokens_out.inc_by(n);
        }
        if let Some(n) = o.tokens_in.filter(|n| *n > 0) {
            pair.tokens_in.inc_by(n);
        }
    }

    pub(crate) fn failure(&self, node: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                node: node.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn retry(&self) {
        self.retries.inc();
    }

    /// The exposition text, with the per-node gauges taken from `table` now.
    pub(crate) fn render(&self, table: &Table, clock: &Clock, affinity: &Affinity) -> String {
        let now = clock.now();
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.affinity_entries.set(as_gauge(affinity.len() as u64));
        self.affinity_evicted.set(as_gauge(affinity.evicted()));
        self.in_flight.clear();
        self.ready.clear();
        for b in &table.nodes {
            let label = NodeLabel {
                node: b.name.to_string(),
            };
            self.in_flight
                .get_or_create(&label)
                .set(i64::from(b.live.in_flight.load(Ordering::Relaxed)));
            let up = b.unroutable().is_none() && !b.live.is_tripped(now);
            self.ready.get_or_create(&label).set(i64::from(up));
        }
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// OpenMetrics' content type, which Prometheus negotiates and reads.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
