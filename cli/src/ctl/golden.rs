//! Golden tests: the fixed objects in `cli/tests/golden/*.yaml`, with the
//! clock fixed, must render exactly as `cli/tests/golden/*.txt`, so the
//! columns people and scripts rely on stay put.
//!
//! After a deliberate change, `HERD_UPDATE_GOLDEN=1 cargo test -p herd golden`
//! rewrites the `.txt` files; review their diff like code.

use herd_api::{Event, Lease, ModelAssignment, Node, RequestRecord, Timestamp};
use serde::de::DeserializeOwned;

use super::describe;
use super::rows::{Tabular, table};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().expect("timestamp")
}

fn items<T: DeserializeOwned>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).expect("read fixture");
    let list: serde_json::Value = serde_yaml::from_str(&text).expect("fixture is YAML");
    serde_json::from_value(list["items"].clone()).expect("fixture items decode")
}

fn sorted<T: Tabular + DeserializeOwned>(file: &str) -> Vec<T> {
    let mut items = items::<T>(file);
    T::sort(&mut items);
    items
}

fn check(file: &str, got: &str) {
    let path = format!("{DIR}/{file}");
    if std::env::var_os("HERD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (HERD_UPDATE_GOLDEN=1 creates it)"));
    assert!(
        got == want,
        "{file} differs from the output.\n--- want\n{want}--- got\n{got}---\n\
         (if the change is deliberate: HERD_UPDATE_GOLDEN=1 cargo test -p herd golden)"
    );
}

#[test]
fn nodes() {
    let nodes = sorted::<Node>("nodes.yaml");
    check("nodes.txt", &table(&nodes, now(), false).render());
    check("nodes-wide.txt", &table(&nodes, now(), true).render());
}

#[test]
fn modelassignments() {
    let mas = sorted::<ModelAssignment>("modelassignments.yaml");
    check("modelassignments.txt", &table(&mas, now(), false).render());
    check(
        "modelassignments-wide.txt",
        &table(&mas, now(), true).render(),
    );
}

#[test]
fn events() {
    let events = sorted::<Event>("events.yaml");
    check("events.txt", &table(&events, now(), false).render());
    check("events-wide.txt", &table(&events, now(), true).render());
}

#[test]
fn leases() {
    let leases = sorted::<Lease>("leases.yaml");
    check("leases.txt", &table(&leases, now(), false).render());
}

#[test]
fn requests() {
    let mut requests = items::<RequestRecord>("requests.yaml");
    requests.reverse();
    check("requests.txt", &table(&requests, now(), false).render());
    check("requests-wide.txt", &table(&requests, now(), true).render());
}

#[test]
fn describe_node() {
    let nodes = items::<Node>("nodes.yaml");
    let events = items::<Event>("events.yaml");
    let mut requests: Vec<RequestRecord> = items::<RequestRecord>("requests.yaml")
        .into_iter()
        .filter(|r| r.node == "gpu-box-1")
        .collect();
    requests.reverse();
    let node = &nodes[0];
    let mine = describe::events_for(&events, "Node", &node.metadata.name);
    check(
        "describe-node.txt",
        &describe::node(node, &mine, Some(&requests), now()),
    );
    // A node that has only just registered, on a server without a proxy.
    let bare = &nodes[3];
    check(
        "describe-node-bare.txt",
        &describe::node(bare, &[], None, now()),
    );
}

#[test]
fn describe_modelassignment() {
    let mas = items::<ModelAssignment>("modelassignments.yaml");
    let events = items::<Event>("events.yaml");
    let ma = &mas[0];
    let mine = describe::events_for(&events, "ModelAssignment", &ma.metadata.name);
    check(
        "describe-modelassignment.txt",
        &describe::assignment(ma, &mine, now()),
    );
}
