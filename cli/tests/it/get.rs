//! `herd get`: every output format, round trips through `apply`, watch,
//! selectors, and the proxy's request history.

use serde_json::{Value, json};

use crate::HerdProcess;
use crate::verbs::{
    ApiServer, Streaming, create, herd, herd_stdin, manifests_dir, merge_patch, request,
};

fn with_examples() -> (tempfile::TempDir, HerdProcess) {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let path = manifests_dir();
    herd(&server.url, &["apply", "-f", path.to_str().expect("utf-8")]).success();
    (dir, server)
}

#[test]
fn get_in_every_output_format() {
    let (_dir, server) = with_examples();
    let url = &server.url;

    let table = herd(url, &["get", "nodes"]).success().stdout;
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "NAME",
            "STATUS",
            "MODELS",
            "IN-FLIGHT",
            "CPU",
            "MEMORY",
            "OLLAMA",
            "AGE"
        ])
    );
    let rows: Vec<&str> = lines
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        rows,
        [
            "gpu-box-1",
            "hosted",
            "llama-cpp-1",
            "mac-studio",
            "old-laptop",
            "vllm-1"
        ]
    );

    let wide = herd(url, &["get", "no", "-o", "wide"]).success().stdout;
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header[header.len() - 5..],
        ["ADDRESS", "API", "MANAGED", "LABELS", "WEIGHT"],
        "{wide}"
    );
    assert!(
        wide.lines().any(|l| l.starts_with("gpu-box-1")
            && l.contains("gpu=nvidia,zone=lab")
            && l.trim_end().ends_with("200")),
        "{wide}"
    );

    let names = herd(url, &["get", "ma", "-o", "name"]).success().stdout;
    assert_eq!(
        names,
        "modelassignment/chat-large\nmodelassignment/embeddings\nmodelassignment/llama-on-gpus\nmodelassignment/qwen-pair\n"
    );

    let one: Value = serde_yaml::from_str(
        &herd(url, &["get", "node/gpu-box-1", "-o", "yaml"])
            .success()
            .stdout,
    )
    .expect("yaml");
    assert_eq!(one["kind"], "Node");
    assert_eq!(one["spec"]["weight"], 200);
    let list: Value = serde_json::from_str(
        &herd(url, &["get", "modelassignments", "-o", "json"])
            .success()
            .stdout,
    )
    .expect("json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4));

    let none = herd(url, &["get", "no", "-l", "gpu=amd"]).success();
    assert_eq!(none.stdout, "");
    assert!(none.stderr.contains("No nodes found."), "{}", none.stderr);
    let gpus = herd(url, &["get", "no", "-l", "gpu=nvidia", "-o", "name"]).success();
    assert_eq!(gpus.stdout, "node/gpu-box-1\nnode/vllm-1\n");

    let missing = herd(url, &["get", "no", "gpu-box-1", "nope"]).failure();
    assert!(
        missing.stdout.contains("gpu-box-1"),
        "found objects still print"
    );
    assert!(
        missing.stderr.contains("Node \"nope\" not found"),
        "{}",
        missing.stderr
    );
    let bad = herd(url, &["get", "pods"]).failure();
    assert!(
        bad.stderr.contains("unknown resource type \"pods\""),
        "{}",
        bad.stderr
    );
}

#[test]
fn yaml_and_json_output_re_apply_cleanly() {
    let (_dir, server) = with_examples();
    let url = &server.url;
    // A nodelet has registered and reported status since.
    merge_patch(
        url,
        "nodes/gpu-box-1/status",
        json!({"status": {"usage": {"inFlight": 2}}}),
    );
    for (args, format) in [
        (vec!["get", "no", "-o", "yaml"], "yaml"),
        (vec!["get", "ma", "-o", "json"], "json"),
        (vec!["get", "no", "gpu-box-1", "-o", "json"], "json"),
        (vec!["get", "ma", "qwen-pair", "-o", "yaml"], "yaml"),
    ] {
        let out = herd(url, &args).success().stdout;
        let first = herd_stdin(url, &["apply", "-f", "-"], &out).success();
        assert!(!first.stdout.is_empty(), "{format}: {args:?}");
        // Applying what `get` printed again is a no-op.
        let again = herd_stdin(
            url,
            &["apply", "-f", "-"],
            &herd(url, &args).success().stdout,
        )
        .success();
        assert!(
            again.stdout.lines().all(|l| l.ends_with(" unchanged")),
            "{args:?}:\n{}",
            again.stdout
        );
    }
    let node = crate::verbs::get(url, "nodes/gpu-box-1").expect("node");
    assert_eq!(
        node["status"]["usage"]["inFlight"], 2,
        "status is not applied"
    );
}

#[test]
fn watch_prints_changes_made_by_another_client() {
    let server = ApiServer::plain();
    let url = &server.url;
    create(url, "nodes", json!({"metadata": {"name": "first"}}));
    let mut watch = Streaming::start(url, &["get", "nodes", "-w"]);
    watch.expect_line(|l| l.starts_with("NAME "));
    watch.expect_line(|l| l.starts_with("first "));

    create(url, "nodes", json!({"metadata": {"name": "second"}}));
    watch.expect_line(|l| l.starts_with("second ") && l.contains("Unknown"));
    merge_patch(url, "nodes/first", json!({"spec": {"unschedulable": true}}));
    watch.expect_line(|l| l.starts_with("first ") && l.contains("Unknown,SchedulingDisabled"));

    let mut events = Streaming::start(
        url,
        &[
            "get",
            "no",
            "second",
            "-w",
            "--watch-only",
            "-o",
            "name",
            "--output-watch-events",
        ],
    );
    // Give the watch a moment to be established before the change.
    std::thread::sleep(std::time::Duration::from_millis(300));
    merge_patch(url, "nodes/first", json!({"spec": {"weight": 7}}));
    merge_patch(url, "nodes/second", json!({"spec": {"weight": 7}}));
    assert_eq!(events.expect_line(|_| true), "node/second");
}

#[test]
fn get_requests_reads_the_proxy_history() {
    let server = ApiServer::with_requests(vec![
        request(12, "llama3.2:1b", "gpu-1", 200),
        request(11, "qwen2.5:0.5b", "gpu-2", 200),
        request(10, "llama3.2:1b", "gpu-2", 503),
    ]);
    let url = &server.url;
    let out = herd(url, &["get", "requests"]).success().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "TIME", "MODEL", "NODE", "STATUS", "LATENCY", "TTFT", "TOKENS"
        ]
    );
    // Oldest first: the newest ends up next to the prompt.
    assert!(
        lines[1].contains("gpu-2") && lines[1].contains("503"),
        "{out}"
    );
    assert!(
        lines[3].contains("gpu-1")
            && lines[3].contains("1.2s")
            && lines[3].contains("87ms")
            && lines[3].contains("12/240"),
        "{out}"
    );

    let one = herd(
        url,
        &[
            "get",
            "requests",
            "--node",
            "gpu-2",
            "--model",
            "qwen2.5:0.5b",
            "-o",
            "json",
        ],
    )
    .success();
    let list: Value = serde_json::from_str(&one.stdout).expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["id"], 11);

    let bad = herd(url, &["get", "nodes", "--node", "x"]).failure();
    assert!(
        bad.stderr.contains("only to `herd get requests`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn watching_requests_streams_new_ones_from_the_feed() {
    let server = ApiServer::with_requests(vec![request(1, "llama3.2:1b", "gpu-1", 200)]);
    let mut watch = Streaming::start(&server.url, &["get", "requests", "-w", "--node", "gpu-2"]);
    watch.expect_line(|l| l == "No requests found.");
    // The feed is open before the list is read, so requests finished from
    // here on are never missed; only gpu-2's are shown.
    server.push(request(2, "phi3:mini", "gpu-1", 200));
    server.push_to_feed_only(request(3, "qwen2.5:0.5b", "gpu-2", 200));
    let line = watch.expect_line(|l| l.contains("qwen2.5:0.5b"));
    assert!(line.contains("gpu-2"), "{line}");
    assert!(
        !watch.seen.iter().any(|l| l.contains("phi3")),
        "{:?}",
        watch.seen
    );
}

#[test]
fn watching_requests_polls_a_proxy_without_a_feed() {
    let server =
        ApiServer::with_requests_without_feed(vec![request(1, "llama3.2:1b", "gpu-1", 200)]);
    let mut watch = Streaming::start(&server.url, &["get", "requests", "-w", "-o", "wide"]);
    watch.expect_line(|l| l.starts_with("TIME "));
    watch.expect_line(|l| l.contains("llama3.2:1b"));
    server.push(request(2, "qwen2.5:0.5b", "gpu-2", 200));
    let line = watch.expect_line(|l| l.contains("qwen2.5:0.5b"));
    assert!(line.contains("gpu-2"), "{line}");
}

#[test]
fn get_requests_without_a_proxy_says_so() {
    let server = ApiServer::plain();
    let run = herd(&server.url, &["get", "requests"]).failure();
    assert!(
        run.stderr.contains("keeps no request history"),
        "{}",
        run.stderr
    );
}
