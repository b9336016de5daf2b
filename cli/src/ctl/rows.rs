//! Table rows of each kind: pure functions of an object and the clock.

use std::borrow::Cow;

use herd_api::{
    ApiKey, ConditionStatus, Event, Lease, ModelAssignment, Node, RequestRecord, Resource, Secret,
    SecretToken, Timestamp, conditions, find_condition,
};

use super::human;
#[cfg(test)]
use super::table::Table;

/// Models listed in a node's row before the rest are counted.
const MODELS_SHOWN: usize = 3;
/// Nodes listed in an assignment's row before the rest are counted.
const NODES_SHOWN: usize = 3;

/// Something `herd get` shows as a table row.
pub trait Tabular {
    fn headers(wide: bool) -> Vec<&'static str>;
    fn row(&self, now: Timestamp, wide: bool) -> Vec<String>;
    /// `node/gpu-1`, as `-o name` prints it.
    fn id(&self) -> String;
    /// Puts a list in the order tables show it.
    fn sort(items: &mut [Self])
    where
        Self: Sized,
    {
        let _ = items;
    }
    /// What structured output (`-o yaml`, `-o json`) prints: the object
    /// itself, or for a kind that holds a secret, a copy without it.
    fn for_output(&self) -> Cow<'_, Self>
    where
        Self: Clone,
    {
        Cow::Borrowed(self)
    }
}

fn by_name<K: Resource>(items: &mut [K]) {
    items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
}

/// The table of `items` (the golden tests render these).
#[cfg(test)]
pub fn table<T: Tabular>(items: &[T], now: Timestamp, wide: bool) -> Table {
    let mut t = Table::new(&T::headers(wide));
    for item in items {
        t.push(item.row(now, wide));
    }
    t
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

/// `a,b,c,+2` — the first `shown`, then how many more.
fn list(items: &[String], shown: usize) -> String {
    if items.is_empty() {
        return "<none>".to_owned();
    }
    let mut out = items[..items.len().min(shown)].join(",");
    if items.len() > shown {
        out.push_str(&format!(",+{}", items.len() - shown));
    }
    out
}

/// kubectl's node STATUS: the `Ready` condition (`Ready`, `NotReady`,
/// `Unknown`), plus `SchedulingDisabled` when cordoned.
pub fn node_status(node: &Node) -> String {
    let ready = find_condition(&node.status.conditions, conditions::READY).map(|c| c.status);
    let mut s = match ready {
        Some(ConditionStatus::True) => "Ready",
        Some(ConditionStatus::False) => "NotReady",
        _ => "Unknown",
    }
    .to_owned();
    if node.spec.unschedulable {
        s.push_str(",SchedulingDisabled");
    }
    s
}

/// Model names, loaded ones marked `*`.
fn node_models(node: &Node) -> String {
    let names: Vec<String> = node
        .status
        .models
        .iter()
        .map(|m| {
            if m.loaded {
                format!("{}*", m.name)
            } else {
                m.name.clone()
            }
        })
        .collect();
    list(&names, MODELS_SHOWN)
}

impl Tabular for Node {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "NAME",
            "STATUS",
            "MODELS",
            "IN-FLIGHT",
            "CPU",
            "MEMORY",
            "OLLAMA",
            "AGE",
        ];
        if wide {
            h.extend(["ADDRESS", "API", "MANAGED", "LABELS", "WEIGHT"]);
        }
        h
    }

    fn row(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let usage = self.status.usage.as_ref();
        let in_flight = usage.map_or("-".to_owned(), |u| u.in_flight.to_string());
        let ollama = self
            .status
            .info
            .as_ref()
            .map(|i| i.ollama_version.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or("-");
        let mut row = vec![
            self.metadata.name.clone(),
            node_status(self),
            node_models(self),
            format!("{in_flight}/{}", self.spec.max_parallel),
            usage.map_or("-".to_owned(), |u| human::percent(u.cpu_percent)),
            usage.map_or("-".to_owned(), |u| human::percent(u.memory_percent)),
            ollama.to_owned(),
            human::age(self.metadata.creation_timestamp, now),
        ];
        if wide {
            row.extend([
                or_none(&self.spec.url),
                self.spec.api.as_str().to_owned(),
                self.spec.managed.to_string(),
                human::labels(&self.metadata.labels),
                self.spec.weight.to_string(),
            ]);
        }
        row
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        by_name(items);
    }
}

/// `ready/desired`; desired is `replicas`, or for a selector the nodes the
/// controller matched (`?` until it has looked).
pub fn assignment_replicas(ma: &ModelAssignment) -> String {
    let desired = match (ma.spec.replicas, ma.status.observed_generation) {
        (Some(r), _) => r.to_string(),
        (None, Some(_)) => ma.status.nodes.len().to_string(),
        (None, None) => "?".to_owned(),
    };
    format!("{}/{desired}", ma.status.ready_replicas)
}

/// `gpu=nvidia,zone=a`, or `<all>` for a selector without labels, or
/// `<none>` without a selector.
pub fn selector(ma: &ModelAssignment) -> String {
    match &ma.spec.node_selector {
        None => "<none>".to_owned(),
        Some(sel) if sel.match_labels.is_empty() => "<all>".to_owned(),
        Some(sel) => human::labels(&sel.match_labels),
    }
}

impl Tabular for ModelAssignment {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "MODEL", "REPLICAS", "NODES", "AGE"];
        if wide {
            h.push("SELECTOR");
        }
        h
    }

    fn row(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let nodes: Vec<String> = self.status.nodes.iter().map(|p| p.node.clone()).collect();
        let mut row = vec![
            self.metadata.name.clone(),
            or_none(&self.spec.model),
            assignment_replicas(self),
            list(&nodes, NODES_SHOWN),
            human::age(self.metadata.creation_timestamp, now),
        ];
        if wide {
            row.push(selector(self));
        }
        row
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        by_name(items);
    }
}

/// When a key expires: `in 29d`, `expired 2h ago`, or `<never>`.
pub fn key_expiry(key: &ApiKey, now: Timestamp) -> String {
    match key.spec.expires_at {
        None => "<never>".to_owned(),
        Some(at) if at > now => format!("in {}", human::duration(at.as_second() - now.as_second())),
        Some(at) => format!("expired {} ago", human::age(Some(at), now)),
    }
}

/// No column shows a secret: the server sends none after the create, and a
/// table is no place for one even then.
impl Tabular for ApiKey {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "ROLE", "NODE", "EXPIRES", "DISABLED", "AGE"];
        if wide {
            h.extend(["KEY ID", "CREATED BY", "DESCRIPTION"]);
        }
        h
    }

    fn row(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let mut row = vec![
            self.metadata.name.clone(),
            self.spec
                .role
                .map_or_else(|| "<none>".to_owned(), |r| r.to_string()),
            self.spec
                .node
                .clone()
                .unwrap_or_else(|| "<none>".to_owned()),
            key_expiry(self, now),
            self.spec.disabled.to_string(),
            human::age(self.metadata.creation_timestamp, now),
        ];
        if wide {
            row.extend([
                or_none(&self.status.key_id),
                or_none(&self.status.created_by),
                or_none(&self.spec.description),
            ]);
        }
        row
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        by_name(items);
    }
}

impl Tabular for Lease {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["NAME", "HOLDER", "RENEWED", "DURATION", "AGE"]
    }

    fn row(&self, now: Timestamp, _wide: bool) -> Vec<String> {
        vec![
            self.metadata.name.clone(),
            or_none(&self.spec.holder),
            match self.spec.renew_time {
                Some(t) => format!("{} ago", human::age(Some(t), now)),
                None => "<never>".to_owned(),
            },
            format!("{}s", self.spec.lease_duration_seconds),
            human::age(self.metadata.creation_timestamp, now),
        ]
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        by_name(items);
    }
}

/// When an event happened: its `eventTime`, else when it was stored.
pub fn event_time(ev: &Event) -> Option<Timestamp> {
    ev.spec.event_time.or(ev.metadata.creation_timestamp)
}

/// `node/gpu-1`.
pub fn involved(ev: &Event) -> String {
    format!(
        "{}/{}",
        ev.spec.involved_object.kind.to_ascii_lowercase(),
        ev.spec.involved_object.name
    )
}

/// Oldest first, so the newest is next to the prompt.
pub fn sort_events(events: &mut [Event]) {
    events.sort_by(|a, b| {
        event_time(a)
            .cmp(&event_time(b))
            .then_with(|| a.metadata.revision().cmp(&b.metadata.revision()))
    });
}

/// How a secret token shows: that it is set and how long it is, never
/// what it is.
pub fn token_shown(token: &SecretToken) -> String {
    if token.is_empty() {
        "<none>".to_owned()
    } else {
        format!("<set, {} bytes>", token.len())
    }
}

/// No output of `herd get` carries the token: the table says whether one is
/// set, and `-o yaml`/`-o json` replace it with a note that does not pass
/// validation, so pasting it back into `herd apply` fails loudly.
impl Tabular for Secret {
    fn headers(_wide: bool) -> Vec<&'static str> {
        vec!["NAME", "TOKEN", "AGE"]
    }

    fn row(&self, now: Timestamp, _wide: bool) -> Vec<String> {
        vec![
            self.metadata.name.clone(),
            if self.spec.token.is_empty() {
                "<none>"
            } else {
                "<set>"
            }
            .to_owned(),
            human::age(self.metadata.creation_timestamp, now),
        ]
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        by_name(items);
    }

    fn for_output(&self) -> Cow<'_, Self> {
        let mut shown = self.clone();
        shown.spec.token =
            SecretToken::new(format!("<redacted: {}>", token_shown(&self.spec.token)));
        Cow::Owned(shown)
    }
}

impl Tabular for Event {
    fn headers(wide: bool) -> Vec<&'static str> {
        if wide {
            vec![
                "LAST SEEN",
                "TYPE",
                "REASON",
                "OBJECT",
                "SOURCE",
                "NAME",
                "MESSAGE",
            ]
        } else {
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        }
    }

    fn row(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let mut row = vec![
            human::age(event_time(self), now),
            format!("{:?}", self.spec.type_),
            self.spec.reason.clone(),
            involved(self),
        ];
        if wide {
            row.push(or_none(&self.spec.source));
            row.push(self.metadata.name.clone());
        }
        row.push(self.spec.message.clone());
        row
    }

    fn id(&self) -> String {
        format!("{}/{}", Self::SINGULAR, self.metadata.name)
    }

    fn sort(items: &mut [Self]) {
        sort_events(items);
    }
}

/// `12/87` (prompt/completion tokens), `-` when unknown.
fn tokens(r: &RequestRecord) -> String {
    match (r.tokens_in, r.tokens_out) {
        (None, None) => "-".to_owned(),
        (i, o) => format!(
            "{}/{}",
            i.map_or("-".to_owned(), |n| n.to_string()),
            o.map_or("-".to_owned(), |n| n.to_string())
        ),
    }
}

impl Tabular for RequestRecord {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "TIME", "MODEL", "NODE", "STATUS", "LATENCY", "TTFT", "TOKENS",
        ];
        if wide {
            h.extend(["ID", "METHOD", "PATH", "RETRIES", "ERROR"]);
        }
        h
    }

    fn row(&self, now: Timestamp, wide: bool) -> Vec<String> {
        let mut row = vec![
            human::age(self.time, now),
            or_none(&self.model),
            or_none(&self.node),
            self.status.to_string(),
            human::millis(self.latency_ms),
            self.ttft_ms.map_or("-".to_owned(), human::millis),
            tokens(self),
        ];
        if wide {
            row.extend([
                self.id.to_string(),
                self.method.clone(),
                self.path.clone(),
                self.retries.to_string(),
                or_none(&self.error),
            ]);
        }
        row
    }

    fn id(&self) -> String {
        format!("request/{}", self.id)
    }
}
