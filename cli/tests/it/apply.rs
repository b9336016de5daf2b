//! `herd apply`: the example manifests, stdin, all-or-nothing validation,
//! and merge semantics that keep what others set.

use serde_json::json;

use crate::HerdProcess;
use crate::verbs::{get, herd, herd_stdin, manifests_dir, merge_patch, names};

#[test]
fn every_example_manifest_applies_then_is_unchanged() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let manifests = manifests_dir();
    let path = manifests.to_str().expect("utf-8 path");

    let first = herd(&server.url, &["apply", "-f", path]).success();
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert!(lines.len() >= 4, "{}", first.stdout);
    assert!(
        lines.iter().all(|l| l.ends_with(" created")),
        "{}",
        first.stdout
    );
    for want in [
        "node/gpu-box-1 created",
        "modelassignment/llama-on-gpus created",
        "modelassignment/qwen-pair created",
        "node/mac-studio created",
    ] {
        assert!(
            lines.contains(&want),
            "{want} missing from:\n{}",
            first.stdout
        );
    }

    let second = herd(&server.url, &["apply", "-f", path]).success();
    assert_eq!(second.stdout.lines().count(), lines.len());
    assert!(
        second.stdout.lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        second.stdout
    );

    // Each file on its own applies too (and changes nothing now).
    for entry in std::fs::read_dir(&manifests).expect("manifests") {
        let file = entry.expect("entry").path();
        if file.extension().is_some_and(|e| e == "yaml") {
            let run = herd(&server.url, &["apply", "-f", file.to_str().expect("utf-8")]).success();
            assert!(
                run.stdout.lines().all(|l| l.ends_with(" unchanged")),
                "{}",
                run.stdout
            );
        }
    }
}

#[test]
fn a_node_override_keeps_what_the_nodelet_registered() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let file = manifests_dir().join("node-override.yaml");
    let file = file.to_str().expect("utf-8");
    herd(&server.url, &["apply", "-f", file]).success();
    // The nodelet registers the machine's URL (and heartbeats status).
    merge_patch(
        &server.url,
        "nodes/gpu-box-1",
        json!({"spec": {"ollamaUrl": "http://10.1.2.3:11434"}}),
    );
    let again = herd(&server.url, &["apply", "-f", file]).success();
    assert_eq!(again.stdout, "node/gpu-box-1 unchanged\n");
    let node = get(&server.url, "nodes/gpu-box-1").expect("node");
    assert_eq!(node["spec"]["url"], "http://10.1.2.3:11434");
    assert_eq!(node["spec"]["weight"], 200);
    assert_eq!(node["metadata"]["labels"]["gpu"], "nvidia");
}

#[test]
fn fields_removed_from_the_manifest_are_removed() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let before = "apiVersion: herd/v1\nkind: ModelAssignment\nmetadata:\n  name: m\n  labels: {a: x, b: y}\nspec:\n  model: llama3.2:1b\n  replicas: 2\n";
    herd_stdin(&server.url, &["apply", "-f", "-"], before).success();
    merge_patch(
        &server.url,
        "modelassignments/m",
        json!({"metadata": {"labels": {"set-by": "someone-else"}}}),
    );
    let after = "apiVersion: herd/v1\nkind: ModelAssignment\nmetadata:\n  name: m\n  labels: {a: x}\nspec:\n  model: llama3.2:1b\n  nodeSelector: {matchLabels: {gpu: nvidia}}\n";
    let run = herd_stdin(&server.url, &["apply", "-f", "-"], after).success();
    assert_eq!(run.stdout, "modelassignment/m configured\n");
    let ma = get(&server.url, "modelassignments/m").expect("ma");
    assert!(ma["spec"].get("replicas").is_none(), "{ma}");
    assert_eq!(ma["spec"]["nodeSelector"]["matchLabels"]["gpu"], "nvidia");
    assert_eq!(
        ma["metadata"]["labels"],
        json!({"a": "x", "set-by": "someone-else"})
    );
}

#[test]
fn apply_from_stdin_and_dry_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let docs = "apiVersion: herd/v1\nkind: Node\nmetadata: {name: a}\n---\napiVersion: herd/v1\nkind: Node\nmetadata: {name: b}\nspec: {weight: 3}\n";
    let dry = herd_stdin(&server.url, &["apply", "-f", "-", "--dry-run"], docs).success();
    assert_eq!(
        dry.stdout,
        "node/a created (dry run)\nnode/b created (dry run)\n"
    );
    assert!(
        names(&server.url, "nodes").is_empty(),
        "a dry run stores nothing"
    );

    let run = herd_stdin(&server.url, &["apply", "-f", "-"], docs).success();
    assert_eq!(run.stdout, "node/a created\nnode/b created\n");
    assert_eq!(names(&server.url, "nodes"), ["a", "b"]);
    let run = herd_stdin(&server.url, &["apply", "-f", "-", "-o", "name"], docs).success();
    assert_eq!(run.stdout, "node/a\nnode/b\n");
}

#[test]
fn one_invalid_document_in_a_directory_applies_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let m = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(m.path().join("sub")).expect("mkdir");
    std::fs::write(
        m.path().join("a-good.yaml"),
        "apiVersion: herd/v1\nkind: Node\nmetadata: {name: fine}\n",
    )
    .expect("write");
    std::fs::write(
        m.path().join("sub/models.yaml"),
        "apiVersion: herd/v1\nkind: ModelAssignment\nmetadata: {name: ok}\nspec: {model: llama3.2:1b}\n---\n\
         apiVersion: herd/v1\nkind: ModelAssignment\nmetadata: {name: too-many}\nspec:\n  model: llama3.2:1b\n  replicas: 20000\n",
    )
    .expect("write");
    std::fs::write(m.path().join("notes.txt"), "not a manifest: ignored").expect("write");

    let run = herd(
        &server.url,
        &["apply", "-f", m.path().to_str().expect("utf-8")],
    )
    .failure();
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("nothing was applied"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("sub/models.yaml, document 2 (modelassignment/too-many): spec.replicas"),
        "{}",
        run.stderr
    );
    assert!(names(&server.url, "nodes").is_empty());
    assert!(names(&server.url, "modelassignments").is_empty());
}

#[test]
fn envelope_and_type_problems_are_all_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let docs = "\
apiVersion: herd/v1
kind: Pod
metadata: {name: a}
---
apiVersion: herd/v2
kind: Node
metadata: {name: b}
---
apiVersion: herd/v1
kind: Node
metadata: {name: c}
spec:
  weight: heavy
---
apiVersion: herd/v1
kind: ModelAssignment
metadata: {name: d}
spec: {}
";
    let run = herd_stdin(&server.url, &["apply", "-f", "-"], docs).failure();
    for want in [
        "<stdin>, document 1: unknown kind \"Pod\"",
        "<stdin>, document 2 (node/b): apiVersion \"herd/v2\" is not supported",
        "<stdin>, document 3 (node/c): spec.weight: invalid type: string \"heavy\", expected u32 (line 13, column",
        "<stdin>, document 4 (modelassignment/d): spec.model: Required value",
    ] {
        assert!(
            run.stderr.contains(want),
            "{want:?} missing from:\n{}",
            run.stderr
        );
    }
    assert!(names(&server.url, "modelassignments").is_empty());
}

#[test]
fn yaml_syntax_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let m = tempfile::tempdir().expect("tmp");
    let file = m.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: herd/v1\nkind: Node\nmetadata: {name: a}\n---\napiVersion: herd/v1\nkind: Node\nmetadata:\n  name: b\n  labels: {gpu: nvidia\n",
    )
    .expect("write");
    let run = herd(&server.url, &["apply", "-f", file.to_str().expect("utf-8")]).failure();
    assert!(
        run.stderr.contains("broken.yaml, document 2: invalid YAML"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 10 column 1"), "{}", run.stderr);
    assert!(
        names(&server.url, "nodes").is_empty(),
        "document 1 was fine but must not be applied"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let run = herd_stdin(
        "http://127.0.0.1:9",
        &["apply", "-f", "-"],
        "apiVersion: herd/v1\nkind: Node\nmetadata: {name: a}\n",
    )
    .failure();
    assert!(
        run.stderr.starts_with("error: nothing was applied"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("cannot reach the herd server at http://127.0.0.1:9"),
        "{}",
        run.stderr
    );
}
