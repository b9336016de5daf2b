//! `herd describe`, `herd delete`, `herd explain` and `herd completion`.

use serde_json::json;

use crate::HerdProcess;
use crate::verbs::{
    ApiServer, create, herd, herd_stdin, manifests_dir, merge_patch, names, request,
};

fn event(name: &str, kind: &str, object: &str, reason: &str, message: &str) -> serde_json::Value {
    json!({"metadata": {"name": name},
           "spec": {"involvedObject": {"kind": kind, "name": object}, "reason": reason,
                    "message": message, "source": "controller"}})
}

#[test]
fn describe_node_shows_status_events_and_requests() {
    let server = ApiServer::with_requests(vec![
        request(2, "llama3.2:1b", "gpu-1", 200),
        request(1, "qwen2.5:0.5b", "other", 200),
    ]);
    let url = &server.url;
    create(
        url,
        "nodes",
        json!({"metadata": {"name": "gpu-1", "labels": {"gpu": "nvidia"}},
                                "spec": {"ollamaUrl": "http://10.0.0.1:11434"}}),
    );
    merge_patch(
        url,
        "nodes/gpu-1/status",
        json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "NodeReady", "message": "heartbeats are fresh",
                        "lastTransitionTime": herd_api::Timestamp::now().to_string()}],
        "usage": {"cpuPercent": 12.0, "memoryPercent": 40.0, "inFlight": 1},
        "models": [{"name": "llama3.2:1b", "sizeBytes": 1321098329u64, "loaded": true}],
        "pulls": [{"model": "qwen2.5:0.5b", "phase": "Pulling", "completedBytes": 50, "totalBytes": 100}]}}),
    );
    create(
        url,
        "events",
        event("e1", "Node", "gpu-1", "NodeReady", "heartbeats resumed"),
    );
    create(
        url,
        "events",
        event(
            "e2",
            "Node",
            "someone-else",
            "NodeNotReady",
            "not about gpu-1",
        ),
    );

    let out = herd(url, &["describe", "node", "gpu-1"]).success().stdout;
    for want in [
        "Name:            gpu-1",
        "Status:          Ready",
        "Labels:          gpu=nvidia",
        "  URL:            http://10.0.0.1:11434",
        "heartbeats are fresh",
        "  In-Flight:  1/4",
        "llama3.2:1b   1.2Gi   yes",
        "qwen2.5:0.5b   Pulling   50/100 (50%)",
        "Recent Requests:",
        "12/240",
        "NodeReady   controller   heartbeats resumed",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(!out.contains("not about gpu-1"), "{out}");
    assert!(
        !out.contains("qwen2.5:0.5b   200"),
        "only this node's requests:\n{out}"
    );

    let both = herd(url, &["describe", "no"]).success().stdout;
    assert!(both.contains("Name:            gpu-1"), "{both}");
}

#[test]
fn describe_works_without_a_request_history() {
    // The API alone: no proxy, so no request history.
    let server = ApiServer::plain();
    let url = &server.url;
    let path = manifests_dir().join("model-on-every-gpu-node.yaml");
    herd(url, &["apply", "-f", path.to_str().expect("utf-8")]).success();
    create(url, "nodes", json!({"metadata": {"name": "plain"}}));
    let run = herd(url, &["describe", "no", "plain"]).success();
    assert!(!run.stdout.contains("Recent Requests"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    create(
        url,
        "events",
        event(
            "e1",
            "ModelAssignment",
            "llama-on-gpus",
            "Placed",
            "placed on gpu-box-1",
        ),
    );
    let ma = herd(url, &["describe", "ma", "llama-on-gpus"])
        .success()
        .stdout;
    for want in [
        "Name:         llama-on-gpus",
        "Labels:       team=platform",
        "  Model:          llama3.2:1b",
        "  Replicas:       <every matching node>",
        "  Node Selector:  gpu=nvidia",
        "Placed   controller   placed on gpu-box-1",
    ] {
        assert!(ma.contains(want), "{want:?} missing from:\n{ma}");
    }
    let missing = herd(url, &["describe", "ma", "nope"]).failure();
    assert!(
        missing
            .stderr
            .contains("ModelAssignment \"nope\" not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn delete_by_name_by_selector_and_by_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let url = &server.url;
    let fleet = manifests_dir().join("fleet.yaml");
    let fleet = fleet.to_str().expect("utf-8");
    herd(url, &["apply", "-f", fleet]).success();
    let extra = "apiVersion: herd/v1\nkind: Node\nmetadata: {name: x, labels: {temp: \"yes\"}}\n---\napiVersion: herd/v1\nkind: Node\nmetadata: {name: y}\n";
    herd_stdin(url, &["apply", "-f", "-"], extra).success();

    assert_eq!(
        herd(url, &["delete", "no", "y"]).success().stdout,
        "node/y deleted\n"
    );
    assert_eq!(
        herd(url, &["delete", "no", "-l", "temp=yes"])
            .success()
            .stdout,
        "node/x deleted\n"
    );
    let run = herd(url, &["delete", "-f", fleet]).success();
    assert_eq!(
        run.stdout,
        "node/mac-studio deleted\nnode/old-laptop deleted\nmodelassignment/embeddings deleted\nmodelassignment/chat-large deleted\n"
    );
    assert!(names(url, "nodes").is_empty());
    assert!(names(url, "modelassignments").is_empty());

    let missing = herd(url, &["delete", "ma/nope"]).failure();
    assert!(
        missing
            .stderr
            .contains("ModelAssignment \"nope\" not found"),
        "{}",
        missing.stderr
    );
    herd(url, &["delete", "ma/nope", "--ignore-not-found"]).success();
    let bare = herd(url, &["delete", "nodes"]).failure();
    assert!(
        bare.stderr.contains("name what to delete"),
        "{}",
        bare.stderr
    );
}

#[test]
fn explain_a_nested_field_from_the_server_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let url = &server.url;
    let out = herd(url, &["explain", "modelassignment.spec.nodeSelector"])
        .success()
        .stdout;
    assert!(
        out.starts_with("KIND:       ModelAssignment\nVERSION:    herd/v1\n"),
        "{out}"
    );
    assert!(out.contains("FIELD: nodeSelector <NodeSelector>"), "{out}");
    assert!(out.contains("  matchLabels\t<map[string]string>"), "{out}");

    let replicas = herd(url, &["explain", "ma.spec.replicas"]).success().stdout;
    assert!(replicas.contains("FIELD: replicas <integer>"), "{replicas}");
    assert!(
        replicas.contains("How many nodes should hold the model."),
        "{replicas}"
    );

    let tree = herd(url, &["explain", "no", "--recursive"])
        .success()
        .stdout;
    assert!(tree.contains("    unschedulable\t<boolean>"), "{tree}");

    let bad = herd(url, &["explain", "node.spec.olamaUrl"]).failure();
    assert!(
        bad.stderr
            .contains("field \"olamaUrl\" does not exist in Node.spec"),
        "{}",
        bad.stderr
    );
}

#[test]
fn completion_scripts_for_every_shell() {
    for (shell, marker) in [
        ("bash", "_herd()"),
        ("zsh", "#compdef herd"),
        ("fish", "complete -c herd"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = herd("http://127.0.0.1:9", &["completion", shell]).success();
        assert!(run.stdout.contains(marker), "{shell}: {marker} missing");
        assert!(run.stdout.contains("drain"), "{shell}: verbs are completed");
    }
}
