//! `herd cordon`, `uncordon` and `drain` against a real server.

use serde_json::json;

use crate::HerdProcess;
use crate::verbs::{ApiServer, Streaming, create, get, herd, merge_patch};

fn unschedulable(url: &str, node: &str) -> bool {
    get(url, &format!("nodes/{node}")).expect("node")["spec"]["unschedulable"] == true
}

#[test]
fn cordon_and_uncordon_flip_unschedulable() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let url = &server.url;
    create(
        url,
        "nodes",
        json!({"metadata": {"name": "a"}, "spec": {"ollamaUrl": "http://127.0.0.1:11434"}}),
    );

    assert_eq!(
        herd(url, &["cordon", "a"]).success().stdout,
        "node/a cordoned\n"
    );
    assert!(unschedulable(url, "a"));
    assert_eq!(
        herd(url, &["cordon", "a"]).success().stdout,
        "node/a already cordoned\n"
    );
    let table = herd(url, &["get", "no", "a"]).success().stdout;
    assert!(table.contains(",SchedulingDisabled"), "{table}");
    assert_eq!(
        herd(url, &["uncordon", "a"]).success().stdout,
        "node/a uncordoned\n"
    );
    assert!(!unschedulable(url, "a"));
    let node = get(url, "nodes/a").expect("node");
    assert_eq!(
        node["spec"]["url"], "http://127.0.0.1:11434",
        "only unschedulable changes"
    );

    let missing = herd(url, &["cordon", "nope"]).failure();
    assert!(
        missing.stderr.contains("Node \"nope\" not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn drain_waits_until_nothing_is_in_flight() {
    // Only this test writes the node's usage.
    let server = ApiServer::plain();
    let url = &server.url;
    create(url, "nodes", json!({"metadata": {"name": "busy"}}));
    merge_patch(
        url,
        "nodes/busy/status",
        json!({"status": {"usage": {"inFlight": 3}}}),
    );

    let mut drain = Streaming::start(url, &["drain", "busy", "--timeout", "30s"]);
    drain.expect_line(|l| l == "node/busy cordoned");
    drain.expect_line(|l| l == "node/busy: waiting for 3 in-flight request(s) to finish");
    assert!(unschedulable(url, "busy"));
    merge_patch(
        url,
        "nodes/busy/status",
        json!({"status": {"usage": {"inFlight": 1}}}),
    );
    drain.expect_line(|l| l == "node/busy: waiting for 1 in-flight request(s) to finish");
    merge_patch(
        url,
        "nodes/busy/status",
        json!({"status": {"usage": {"inFlight": 0}}}),
    );
    drain.expect_line(|l| l == "node/busy drained");
    assert!(drain.wait(), "{}", drain.seen.join("\n"));
}

#[test]
fn drain_times_out_with_a_clear_message() {
    // Only this test writes the node's usage.
    let server = ApiServer::plain();
    let url = &server.url;
    create(url, "nodes", json!({"metadata": {"name": "stuck"}}));
    merge_patch(
        url,
        "nodes/stuck/status",
        json!({"status": {"usage": {"inFlight": 2}}}),
    );
    let run = herd(url, &["drain", "stuck", "--timeout", "300ms"]).failure();
    assert!(run.stdout.contains("node/stuck cordoned"), "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "timed out after 300ms waiting for node/stuck to drain: 2 request(s) still in flight"
        ),
        "{}",
        run.stderr
    );
    assert!(
        unschedulable(url, "stuck"),
        "a timed-out drain leaves the node cordoned"
    );
}

#[test]
fn drain_of_an_idle_node_finishes_at_once() {
    // Only this test writes the node's usage.
    let server = ApiServer::plain();
    create(&server.url, "nodes", json!({"metadata": {"name": "idle"}}));
    let run = herd(&server.url, &["drain", "idle"]).success();
    assert_eq!(run.stdout, "node/idle cordoned\nnode/idle drained\n");
}
