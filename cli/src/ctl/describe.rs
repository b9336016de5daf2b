//! `herd describe`: everything about one object, as text. Pure: the caller
//! fetches the object, its events and (for a node) its recent requests.

use std::collections::BTreeMap;

use herd_api::{
    ApiKey, Condition, Event, ModelAssignment, Node, ObjectMeta, RequestRecord, Timestamp,
};

use super::human;
use super::patch::LAST_APPLIED;
use super::rows;
use super::table::{Table, indent};

/// Events shown at most; older ones are counted.
pub const EVENTS_SHOWN: usize = 20;

/// Text built block by block, with `Key:  value` lines aligned per block.
#[derive(Default)]
struct Doc {
    out: String,
}

impl Doc {
    /// `Key:` lines at `depth` (two spaces each), values aligned. A value
    /// with several lines continues under the first.
    fn fields(&mut self, depth: usize, pairs: &[(&str, String)]) {
        let pad = "  ".repeat(depth);
        let key_width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0) + 2;
        for (key, value) in pairs {
            let label = format!("{key}:");
            let mut lines = value.lines();
            let first = lines.next().unwrap_or("");
            self.out
                .push_str(format!("{pad}{label:<key_width$}{first}").trim_end());
            self.out.push('\n');
            for more in lines {
                self.out
                    .push_str(&format!("{pad}{:key_width$}{more}\n", ""));
            }
        }
    }

    fn section(&mut self, title: &str) {
        self.out.push_str(&format!("{title}:\n"));
    }

    /// `Title:` then the table indented, or `Title:  <none>` without rows.
    fn table(&mut self, title: &str, table: &Table) {
        if table.rows.is_empty() {
            self.out.push_str(&format!("{title}:  <none>\n"));
        } else {
            self.section(title);
            self.out.push_str(&indent(&table.render(), 2));
        }
    }
}

/// Labels or annotations one per line; the last-applied record is apply's
/// bookkeeping and only noise here.
fn pairs(map: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = map
        .iter()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if shown.is_empty() {
        "<none>".to_owned()
    } else {
        shown.join("\n")
    }
}

/// The top block: name, `status` (one-word state), labels, annotations,
/// creation, then `more`.
fn metadata(
    doc: &mut Doc,
    meta: &ObjectMeta,
    status: Option<(&'static str, String)>,
    more: Vec<(&'static str, String)>,
    now: Timestamp,
) {
    let mut fields = vec![("Name", meta.name.clone())];
    fields.extend(status);
    fields.extend([
        ("Labels", pairs(&meta.labels)),
        ("Annotations", pairs(&meta.annotations)),
        (
            "Created",
            human::timestamp_and_age(meta.creation_timestamp, now),
        ),
    ]);
    fields.extend(more);
    doc.fields(0, &fields);
}

fn conditions(doc: &mut Doc, conditions: &[Condition], now: Timestamp) {
    let mut t = Table::new(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]);
    for c in conditions {
        t.push(vec![
            c.type_.clone(),
            format!("{:?}", c.status),
            or_dash(&c.reason),
            human::age(c.last_transition_time, now),
            c.message.clone(),
        ]);
    }
    doc.table("Conditions", &t);
}

/// The events about `kind/name`, newest last, at most [`EVENTS_SHOWN`].
fn events(doc: &mut Doc, events: &[Event], now: Timestamp) {
    let mut t = Table::new(&["LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"]);
    let skip = events.len().saturating_sub(EVENTS_SHOWN);
    for ev in &events[skip..] {
        t.push(vec![
            human::age(rows::event_time(ev), now),
            format!("{:?}", ev.spec.type_),
            ev.spec.reason.clone(),
            or_dash(&ev.spec.source),
            ev.spec.message.clone(),
        ]);
    }
    doc.table("Events", &t);
    if skip > 0 {
        doc.out
            .push_str(&format!("  ({skip} older events not shown)\n"));
    }
}

/// Events whose `involvedObject` is `kind/name`, oldest first.
pub fn events_for(all: &[Event], kind: &str, name: &str) -> Vec<Event> {
    let mut mine: Vec<Event> = all
        .iter()
        .filter(|e| e.spec.involved_object.kind == kind && e.spec.involved_object.name == name)
        .cloned()
        .collect();
    rows::sort_events(&mut mine);
    mine
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

/// `herd describe node NAME`. `requests` is `None` when the server keeps no
/// request history (no proxy): the section is left out.
pub fn node(
    node: &Node,
    node_events: &[Event],
    requests: Option<&[RequestRecord]>,
    now: Timestamp,
) -> String {
    let mut doc = Doc::default();
    let status = &node.status;
    metadata(
        &mut doc,
        &node.metadata,
        Some(("Status", rows::node_status(node))),
        vec![(
            "Last Heartbeat",
            human::timestamp_and_age(status.last_heartbeat_time, now),
        )],
        now,
    );
    doc.section("Spec");
    let mut spec = vec![
        ("URL", or_none(&node.spec.url)),
        ("API", node.spec.api.as_str().to_owned()),
        ("Managed", node.spec.managed.to_string()),
    ];
    if let Some(auth) = &node.spec.auth {
        spec.push(("Auth Secret", auth.secret_ref.clone()));
    }
    if !node.spec.ca_cert.is_empty() {
        spec.push((
            "CA Cert",
            format!("<set, {} bytes>", node.spec.ca_cert.len()),
        ));
    }
    spec.extend([
        ("Unschedulable", node.spec.unschedulable.to_string()),
        ("Max Parallel", node.spec.max_parallel.to_string()),
        ("Weight", node.spec.weight.to_string()),
    ]);
    doc.fields(1, &spec);
    conditions(&mut doc, &status.conditions, now);
    if let Some(endpoints) = &status.endpoints {
        doc.section("Native Endpoints");
        let listed = if endpoints.is_empty() {
            "<none>".to_owned()
        } else {
            endpoints.join(", ")
        };
        doc.fields(1, &[("Served", listed)]);
    }
    node_info(&mut doc, node, now);
    node_resources(&mut doc, node);
    node_models(&mut doc, node);
    match &status.routing {
        Some(r) => {
            doc.section("Routing");
            doc.fields(
                1,
                &[
                    ("Weight", r.weight.to_string()),
                    ("Reason", or_none(&r.reason)),
                ],
            );
        }
        None => doc.out.push_str("Routing:  <none>\n"),
    }
    if let Some(requests) = requests {
        node_requests(&mut doc, requests, now);
    }
    events(&mut doc, node_events, now);
    doc.out
}

fn node_info(doc: &mut Doc, node: &Node, now: Timestamp) {
    let Some(info) = &node.status.info else {
        doc.out.push_str("System Info:  <none>\n");
        return;
    };
    doc.section("System Info");
    let addresses = if info.addresses.is_empty() {
        "<none>".to_owned()
    } else {
        info.addresses.join(", ")
    };
    doc.fields(
        1,
        &[
            ("Machine Name", or_none(&info.machine_name)),
            ("Addresses", addresses),
            (
                "OS/Arch",
                format!("{}/{}", or_dash(&info.os), or_dash(&info.arch)),
            ),
            ("Ollama Version", or_none(&info.ollama_version)),
            ("Nodelet Version", or_none(&info.nodelet_version)),
            ("Started", human::timestamp_and_age(info.start_time, now)),
        ],
    );
}

fn node_resources(doc: &mut Doc, node: &Node) {
    match &node.status.capacity {
        Some(c) => {
            doc.section("Capacity");
            let gpus = if c.gpus.is_empty() {
                "<none>".to_owned()
            } else {
                c.gpus
                    .iter()
                    .map(|g| format!("{} ({})", g.name, human::bytes(g.memory_bytes)))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            doc.fields(
                1,
                &[
                    ("CPUs", c.cpus.to_string()),
                    ("Memory", human::bytes(c.memory_bytes)),
                    ("GPUs", gpus),
                ],
            );
        }
        None => doc.out.push_str("Capacity:  <none>\n"),
    }
    match &node.status.usage {
        Some(u) => {
            doc.section("Usage");
            doc.fields(
                1,
                &[
                    ("CPU", human::percent(u.cpu_percent)),
                    ("Memory", human::percent(u.memory_percent)),
                    (
                        "In-Flight",
                        format!("{}/{}", u.in_flight, node.spec.max_parallel),
                    ),
                ],
            );
        }
        None => doc.out.push_str("Usage:  <none>\n"),
    }
}

fn node_models(doc: &mut Doc, node: &Node) {
    let mut t = Table::new(&["NAME", "SIZE", "LOADED", "DIGEST"]);
    for m in &node.status.models {
        t.push(vec![
            m.name.clone(),
            human::bytes(m.size_bytes),
            if m.loaded { "yes" } else { "no" }.to_owned(),
            or_dash(&short_digest(&m.digest)),
        ]);
    }
    doc.table("Models", &t);
    let mut t = Table::new(&["MODEL", "PHASE", "PROGRESS", "MESSAGE"]);
    for p in &node.status.pulls {
        let progress = if p.total_bytes == 0 {
            "-".to_owned()
        } else {
            format!(
                "{}/{} ({:.0}%)",
                human::bytes(p.completed_bytes),
                human::bytes(p.total_bytes),
                100.0 * p.completed_bytes as f64 / p.total_bytes as f64
            )
        };
        t.push(vec![
            p.model.clone(),
            format!("{:?}", p.phase),
            progress,
            p.message.clone(),
        ]);
    }
    doc.table("Pulls", &t);
}

/// The first 12 hex digits, as `ollama list` shows an ID.
fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn node_requests(doc: &mut Doc, requests: &[RequestRecord], now: Timestamp) {
    let mut t = Table::new(&["TIME", "MODEL", "STATUS", "LATENCY", "TTFT", "TOKENS"]);
    for r in requests {
        let mut row = rows::Tabular::row(r, now, false);
        row.remove(2); // NODE: it is this node
        t.push(row);
    }
    doc.table("Recent Requests", &t);
}

/// `herd describe modelassignment NAME`.
pub fn assignment(ma: &ModelAssignment, ma_events: &[Event], now: Timestamp) -> String {
    let mut doc = Doc::default();
    metadata(&mut doc, &ma.metadata, None, Vec::new(), now);
    doc.section("Spec");
    let replicas = match ma.spec.replicas {
        Some(r) => r.to_string(),
        None => "<every matching node>".to_owned(),
    };
    doc.fields(
        1,
        &[
            ("Model", or_none(&ma.spec.model)),
            ("Replicas", replicas),
            ("Node Selector", rows::selector(ma)),
        ],
    );
    doc.section("Status");
    let generation = ma.metadata.generation.unwrap_or(0);
    let observed = match ma.status.observed_generation {
        Some(g) if g == generation => format!("{g} (current)"),
        Some(g) => {
            format!("{g} (spec is at generation {generation}; the controller has not caught up)")
        }
        None => "<none> (the controller has not seen this assignment yet)".to_owned(),
    };
    doc.fields(
        1,
        &[
            ("Ready Replicas", rows::assignment_replicas(ma)),
            ("Observed Generation", observed),
        ],
    );
    conditions(&mut doc, &ma.status.conditions, now);
    let mut t = Table::new(&["NODE", "PHASE", "MESSAGE"]);
    for p in &ma.status.nodes {
        t.push(vec![
            p.node.clone(),
            format!("{:?}", p.phase),
            p.message.clone(),
        ]);
    }
    doc.table("Placement", &t);
    events(&mut doc, ma_events, now);
    doc.out
}

/// `herd describe secret NAME`: whether the token is set and its length,
/// never the token.
pub fn secret(secret: &herd_api::Secret, secret_events: &[Event], now: Timestamp) -> String {
    let mut doc = Doc::default();
    metadata(&mut doc, &secret.metadata, None, Vec::new(), now);
    doc.section("Spec");
    doc.fields(1, &[("Token", rows::token_shown(&secret.spec.token))]);
    events(&mut doc, secret_events, now);
    doc.out
}

/// `herd describe apikey NAME`. Shows no secret and no hash: the server sends
/// neither after the create.
pub fn api_key(key: &ApiKey, key_events: &[Event], now: Timestamp) -> String {
    let mut doc = Doc::default();
    metadata(&mut doc, &key.metadata, None, Vec::new(), now);
    doc.section("Spec");
    let expires = match key.spec.expires_at {
        Some(at) => format!("{} ({})", human::timestamp(at), rows::key_expiry(key, now)),
        None => "<never>".to_owned(),
    };
    doc.fields(
        1,
        &[
            (
                "Role",
                key.spec
                    .role
                    .map_or_else(|| "<none>".to_owned(), |r| r.to_string()),
            ),
            (
                "Node",
                key.spec.node.clone().unwrap_or_else(|| "<none>".to_owned()),
            ),
            ("Expires", expires),
            ("Disabled", key.spec.disabled.to_string()),
            ("Description", or_none(&key.spec.description)),
        ],
    );
    doc.section("Status");
    doc.fields(
        1,
        &[
            ("Key ID", or_none(&key.status.key_id)),
            ("Created By", or_none(&key.status.created_by)),
        ],
    );
    events(&mut doc, key_events, now);
    doc.out
}
