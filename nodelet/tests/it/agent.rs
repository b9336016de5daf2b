//! The whole nodelet (`herd_nodelet::run`) against the real apiserver and a fake
//! Ollama: the in-process `FakeOllama` where the test needs to steer it, the
//! `fake-ollama` binary where the nodelet installs, starts and supervises it.

use std::time::{Duration, Instant};

use herd_api::{
    ConditionStatus, ModelAssignment, ModelAssignmentSpec, Node, PlacementStatus, PullPhase,
    Resource, conditions,
};
use herd_client::{Api, PostParams};
use herd_nodelet::DefaultModel;
use herd_nodelet::install::OllamaVersion;
use herd_nodelet::register::MANAGED_LABELS_ANNOTATION;
use herd_testkit::{FakeOllama, Fault};
use reqwest::Url;
use tokio::net::TcpListener;

use crate::harness::{
    Nodelet, Router, bounded, cond, condition, config, eventually, fake_ollama_bytes, free_port,
    init_logs, is_true, listening, node_where, nodelet_binary, pids_of, preinstall,
    record_condition,
};
use crate::support::{Behaviour, ReleaseServer, release_files, zstd};

const ASSET: &str = "ollama-linux-amd64.tar.zst";

/// Ready as far as the nodelet can tell: registered, heartbeating, Ollama answering.
fn healthy(node: &Node) -> bool {
    is_true(node, conditions::NODELET_READY)
        && is_true(node, conditions::OLLAMA_INSTALLED)
        && is_true(node, conditions::OLLAMA_RUNNING)
        && node.status.last_heartbeat_time.is_some()
}

/// Places `model` on `node` the way the controller would: an assignment whose
/// `status.nodes` names the node.
async fn assign(router: &Router, name: &str, model: &str, node: &str) {
    let api: Api<ModelAssignment> = router.client.api();
    let ma = ModelAssignment::new(
        name,
        ModelAssignmentSpec {
            model: model.into(),
            replicas: Some(1),
            ..ModelAssignmentSpec::default()
        },
    );
    api.create(&PostParams::default(), &ma)
        .await
        .expect("create assignment");
    api.update_status_with_retry(name, |s| {
        s.nodes = vec![PlacementStatus {
            node: node.into(),
            ..PlacementStatus::default()
        }];
    })
    .await
    .expect("place it");
}

/// The environment a process was started with.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn has_model(node: &Node, model: &str) -> bool {
    node.model(model).is_some()
}

/// A release archive whose `bin/ollama` is the real fake-ollama binary.
fn fake_ollama_release() -> Vec<u8> {
    let binary = fake_ollama_bytes();
    let mut builder = tar::Builder::new(Vec::new());
    for dir in ["./", "./bin/", "./lib/", "./lib/ollama/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        builder
            .append_data(&mut h, dir, std::io::empty())
            .expect("dir");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(binary.len() as u64);
    builder
        .append_data(&mut h, "./bin/ollama", binary.as_slice())
        .expect("binary");
    let lib = b"not really a library";
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(lib.len() as u64);
    builder
        .append_data(&mut h, "./lib/ollama/libggml-base.so", &lib[..])
        .expect("lib");
    zstd(&builder.into_inner().expect("tar"))
}

#[tokio::test]
async fn installs_starts_registers_heartbeats_and_pulls_end_to_end() {
    init_logs();
    bounded(async {
        let archive = fake_ollama_release();
        let releases = ReleaseServer::start(
            release_files("v0.33.0", ASSET, &archive),
            Behaviour {
                latest_tag: Some("v0.33.0".into()),
                ..Behaviour::default()
            },
        )
        .await;
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let install_dir = dir.path().join("herd-ollama");
        let port = free_port().await;
        let mut c = config(&router.url, "e2e", &install_dir, port);
        c.download_base_url = releases.base.clone();
        c.ollama_version = OllamaVersion::Latest;
        let nodelet = Nodelet::spawn(c);
        let nodes = router.nodes();

        let node = node_where(
            &nodes,
            "e2e",
            "installed, started and heartbeating",
            healthy,
        )
        .await;
        eprintln!(
            "install + start + register took {:?}",
            nodelet.started.elapsed()
        );
        let installed = condition(&node, conditions::OLLAMA_INSTALLED).expect("installed");
        assert_eq!(installed.reason, "Installed", "{installed:?}");
        assert!(installed.message.contains("v0.33.0"), "{installed:?}");
        assert_eq!(cond(&node, conditions::OLLAMA_RUNNING).1, "Answering");
        let binary = install_dir.join("versions/v0.33.0/bin/ollama");
        assert!(binary.is_file(), "installed into herd's directory");
        assert_eq!(pids_of(&binary).len(), 1, "exactly one ollama serve runs");
        assert_eq!(node.spec.url, format!("http://127.0.0.1:{port}"));
        let info = node.status.info.clone().expect("info");
        assert_eq!(info.ollama_version, "0.33.0");
        assert_eq!(info.nodelet_version, herd_nodelet::NODELET_VERSION);
        assert_eq!(info.os, std::env::consts::OS);
        assert!(
            info.start_time.is_some() && !info.machine_name.is_empty(),
            "{info:?}"
        );
        let capacity = node.status.capacity.clone().expect("capacity");
        assert!(
            capacity.cpus >= 1 && capacity.memory_bytes > 0,
            "{capacity:?}"
        );
        let usage = node.status.usage.clone().expect("usage");
        assert!(usage.memory_percent > 0.0, "{usage:?}");
        assert!(node.status.models.is_empty());
        // Heartbeats keep coming.
        let first = node.status.last_heartbeat_time.expect("heartbeat");
        node_where(&nodes, "e2e", "a later heartbeat", |n| {
            n.status.last_heartbeat_time.is_some_and(|t| t > first)
        })
        .await;

        assign(&router, "tiny", "qwen2.5:0.5b", "e2e").await;
        let node = node_where(&nodes, "e2e", "the assigned model pulled", |n| {
            has_model(n, "qwen2.5:0.5b")
                && n.status
                    .pulls
                    .iter()
                    .any(|p| p.phase == PullPhase::Succeeded)
        })
        .await;
        let pull = &node.status.pulls[0];
        assert_eq!(pull.model, "qwen2.5:0.5b");
        assert!(
            pull.total_bytes > 0 && pull.completed_bytes == pull.total_bytes,
            "{pull:?}"
        );

        nodelet.shutdown().await;
        let node = nodes.get("e2e").await.expect("node");
        assert_eq!(
            cond(&node, conditions::NODELET_READY),
            (ConditionStatus::False, "NodeletStopped".to_owned())
        );
        assert_eq!(
            cond(&node, conditions::OLLAMA_RUNNING),
            (ConditionStatus::False, "Stopped".to_owned()),
            "reported before it was stopped"
        );
        assert!(!listening(port).await, "the Ollama herd started is stopped");
        assert!(pids_of(&binary).is_empty());
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn restarts_the_ollama_it_started_when_it_dies() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = preinstall(dir.path(), "v0.33.0");
        let port = free_port().await;
        let mut c = config(&router.url, "phoenix", dir.path(), port);
        c.max_parallel = Some(3);
        // A restart delay long enough for the report of the death to be seen.
        c.timings.restart_backoff =
            herd_client::backoff::Backoff::FOREVER.with_base(Duration::from_millis(400));
        let nodelet = Nodelet::spawn(c);
        let nodes = router.nodes();
        let node = node_where(&nodes, "phoenix", "running", healthy).await;
        assert_eq!(cond(&node, conditions::OLLAMA_INSTALLED).1, "Found");
        assert_eq!(node.spec.max_parallel, 3);
        let pids = pids_of(&binary);
        assert_eq!(pids.len(), 1, "{pids:?}");
        let env = environ(pids[0]);
        assert!(
            env.contains(&format!("OLLAMA_HOST=127.0.0.1:{port}")),
            "{env:?}"
        );
        assert!(env.contains(&"OLLAMA_NUM_PARALLEL=3".to_owned()), "{env:?}");

        let seen = record_condition(&nodes, "phoenix", conditions::OLLAMA_RUNNING).await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pids[0].to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let died = Instant::now();
        let restarted = eventually(
            "a new ollama serve",
            Duration::from_secs(20),
            || async {
                let now = pids_of(&binary);
                (now.len() == 1 && now[0] != pids[0] && listening(port).await).then_some(now)
            },
            |_| true,
        )
        .await;
        eprintln!(
            "restarted as pid {} after {:?}",
            restarted[0],
            died.elapsed()
        );
        node_where(&nodes, "phoenix", "healthy again", healthy).await;
        // The death was reported at once (not at the next heartbeat), with its cause.
        let seen = seen.lock().expect("lock").clone();
        assert!(
            seen.iter().any(
                |(status, reason, message)| *status == ConditionStatus::False
                    && reason == "Restarting"
                    && message.contains("killed by signal 9")
            ),
            "{seen:#?}"
        );
        assert_eq!(
            seen.last().map(|s| s.1.as_str()),
            Some("Answering"),
            "{seen:#?}"
        );
        nodelet.shutdown().await;
        assert!(!listening(port).await);
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn registers_quickly_and_again_without_duplicating_or_losing_operator_fields() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder().models(["llama3.2:1b"]).start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();

        let mut c = config(&router.url, "box", dir.path(), fake.addr().port());
        c.labels = [("gpu", "nvidia"), ("zone", "a")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let nodelet = Nodelet::spawn(c.clone());
        let node = node_where(&nodes, "box", "registered", |n| {
            is_true(n, conditions::NODELET_READY)
        })
        .await;
        // The design's bar is 5 s; logged, not asserted, so a loaded machine does not flake.
        eprintln!(
            "registration (NodeletReady True) {:?} after start",
            nodelet.started.elapsed()
        );
        assert_eq!(
            node.metadata.labels.get("gpu").map(String::as_str),
            Some("nvidia")
        );
        let node = node_where(&nodes, "box", "models reported", |n| {
            healthy(n) && has_model(n, "llama3.2:1b")
        })
        .await;
        assert_eq!(cond(&node, conditions::OLLAMA_INSTALLED).1, "External");
        nodelet.shutdown().await;

        // The operator cordons it, reweighs it and adds a label of their own.
        let mut edited = nodes.get("box").await.expect("node");
        edited.spec.unschedulable = true;
        edited.spec.weight = 7;
        edited.metadata.labels.insert("owner".into(), "ops".into());
        nodes
            .replace(&PostParams::default(), &edited)
            .await
            .expect("operator edit");

        // Restarted with other flags: the same node is updated.
        c.labels = [("gpu", "amd")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        c.max_parallel = Some(3);
        let again = Nodelet::spawn(c);
        let node = node_where(&nodes, "box", "registered again", |n| {
            n.spec.max_parallel == 3 && is_true(n, conditions::NODELET_READY)
        })
        .await;
        eprintln!("re-registration {:?} after start", again.started.elapsed());
        let all = nodes.list(&Default::default()).await.expect("list");
        assert_eq!(all.items.len(), 1, "one node per machine");
        assert!(node.spec.unschedulable, "cordon kept");
        assert_eq!(node.spec.weight, 7, "weight kept");
        let labels: Vec<String> = node
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            labels,
            ["gpu=amd", "owner=ops"],
            "zone was the nodelet's; owner is the operator's"
        );
        assert_eq!(
            node.metadata
                .annotations
                .get(MANAGED_LABELS_ANNOTATION)
                .map(String::as_str),
            Some("gpu")
        );
        again.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_marks_the_node_not_ready_and_leaves_a_foreign_ollama_running() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder().start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();
        let nodelet = Nodelet::spawn(config(
            &router.url,
            "leaving",
            dir.path(),
            fake.addr().port(),
        ));
        node_where(&nodes, "leaving", "healthy", healthy).await;

        let before = Instant::now();
        nodelet.shutdown().await;
        eprintln!("shutdown took {:?}", before.elapsed());
        let node = nodes.get("leaving").await.expect("node");
        let ready = condition(&node, conditions::NODELET_READY).expect("NodeletReady");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "NodeletStopped")
        );
        assert!(
            is_true(&node, conditions::OLLAMA_RUNNING),
            "an Ollama herd did not start is not stopped (nor reported stopped)"
        );
        assert!(fake.is_serving().await, "the foreign Ollama still runs");
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ollama_answering_errors_is_reported_not_running_with_the_reason() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder().start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();
        let nodelet = Nodelet::spawn(config(&router.url, "sick", dir.path(), fake.addr().port()));
        node_where(&nodes, "sick", "healthy", healthy).await;

        fake.set_fault_on(
            "/api/tags",
            Fault::status(500, r#"{"error":"disk on fire"}"#),
        )
        .await;
        let node = node_where(&nodes, "sick", "OllamaRunning False", |n| {
            cond(n, conditions::OLLAMA_RUNNING).0 == ConditionStatus::False
        })
        .await;
        let running = condition(&node, conditions::OLLAMA_RUNNING).expect("OllamaRunning");
        assert_eq!(running.reason, "ErrorStatus");
        assert_eq!(running.message, "GET /api/tags answered 500: disk on fire");
        assert!(
            is_true(&node, conditions::NODELET_READY),
            "the nodelet itself is fine"
        );

        fake.set_fault_on("/api/version", Fault::Garbage).await;
        fake.clear_fault().await;
        node_where(&nodes, "sick", "healthy again", healthy).await;

        fake.set_fault(Fault::RefuseConnections).await;
        let node = node_where(&nodes, "sick", "Ollama gone", |n| {
            cond(n, conditions::OLLAMA_RUNNING).1 == "Unreachable"
        })
        .await;
        let running = condition(&node, conditions::OLLAMA_RUNNING).expect("OllamaRunning");
        assert!(running.message.contains("cannot connect"), "{running:?}");
        fake.clear_fault().await;
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn registers_once_a_router_that_was_down_comes_up() {
    init_logs();
    bounded(async {
        let port = free_port().await;
        let router_url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        let fake = FakeOllama::builder().start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodelet = Nodelet::spawn(config(
            &router_url,
            "patient",
            dir.path(),
            fake.addr().port(),
        ));
        // Several registration attempts fail (20 ms doubling) before the router exists.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind the port");
        let router = Router::start_on(listener).await;
        let came_up = Instant::now();
        node_where(&router.nodes(), "patient", "registered", healthy).await;
        eprintln!(
            "registered {:?} after the router came up",
            came_up.elapsed()
        );
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pull_progress_shows_in_status() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder()
            .pull_duration(Duration::from_millis(1500))
            .start()
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();
        let nodelet = Nodelet::spawn(config(
            &router.url,
            "puller",
            dir.path(),
            fake.addr().port(),
        ));
        node_where(&nodes, "puller", "healthy", healthy).await;

        assign(&router, "llama", "llama3.2:1b", "puller").await;
        let midway = node_where(&nodes, "puller", "a pull part way", |n| {
            n.status.pulls.iter().any(|p| {
                p.phase == PullPhase::Pulling
                    && p.completed_bytes > 0
                    && p.completed_bytes < p.total_bytes
            })
        })
        .await;
        eprintln!("midway: {:?}", midway.status.pulls);
        let done = node_where(&nodes, "puller", "pulled", |n| has_model(n, "llama3.2:1b")).await;
        let pull = done
            .status
            .pulls
            .iter()
            .find(|p| p.model == "llama3.2:1b")
            .expect("pull entry");
        assert_eq!(pull.phase, PullPhase::Succeeded, "{pull:?}");
        assert_eq!(fake.requests("/api/pull"), 1, "pulled once");
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn failed_pulls_are_reported_and_retried() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder()
            .pullable(["llama3.2:1b"])
            .start()
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();
        let nodelet = Nodelet::spawn(config(
            &router.url,
            "unlucky",
            dir.path(),
            fake.addr().port(),
        ));
        node_where(&nodes, "unlucky", "healthy", healthy).await;

        assign(&router, "nope", "no-such-model:1b", "unlucky").await;
        let node = node_where(&nodes, "unlucky", "pull failed", |n| {
            n.status.pulls.iter().any(|p| p.phase == PullPhase::Failed)
        })
        .await;
        let pull = &node.status.pulls[0];
        assert!(pull.message.contains("file does not exist"), "{pull:?}");
        eventually(
            "retries",
            Duration::from_secs(20),
            || async { Some(fake.requests("/api/pull")) },
            |n| *n >= 3,
        )
        .await;
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pulls_a_default_model_only_when_nothing_is_assigned_and_not_opted_out() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let nodes = router.nodes();
        let dir = tempfile::tempdir().expect("tempdir");

        let fake = FakeOllama::builder().start().await;
        let mut c = config(&router.url, "fresh", dir.path(), fake.addr().port());
        c.default_model = DefaultModel::BySize;
        let nodelet = Nodelet::spawn(c);
        let node = node_where(&nodes, "fresh", "a model pulled", |n| {
            !n.status.models.is_empty()
        })
        .await;
        let memory = node
            .status
            .capacity
            .as_ref()
            .expect("capacity")
            .memory_bytes;
        let expected = herd_nodelet::default_model::default_model(memory);
        assert!(
            has_model(&node, expected),
            "{expected} for {memory} bytes: {:?}",
            node.status.models
        );
        assert_eq!(node.status.models.len(), 1);
        nodelet.shutdown().await;

        let opted_out = FakeOllama::builder().start().await;
        let mut c = config(&router.url, "bare", dir.path(), opted_out.addr().port());
        c.default_model = DefaultModel::Off;
        let nodelet = Nodelet::spawn(c);
        let node = node_where(&nodes, "bare", "healthy", healthy).await;
        let first = node.status.last_heartbeat_time.expect("heartbeat");
        // Several heartbeats later (each one re-plans the pulls), still nothing pulled.
        node_where(&nodes, "bare", "more heartbeats", |n| {
            n.status
                .last_heartbeat_time
                .is_some_and(|t| t.duration_since(first) > jiff::SignedDuration::from_millis(500))
        })
        .await;
        assert_eq!(opted_out.requests("/api/pull"), 0);
        nodelet.shutdown().await;

        // A named default model instead of the table's.
        let named = FakeOllama::builder().start().await;
        let mut c = config(&router.url, "named", dir.path(), named.addr().port());
        c.default_model = DefaultModel::Named("qwen2.5:0.5b".into());
        let nodelet = Nodelet::spawn(c);
        node_where(&nodes, "named", "the named default pulled", |n| {
            has_model(n, "qwen2.5:0.5b")
        })
        .await;
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_node_is_registered_again() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let fake = FakeOllama::builder().start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = router.nodes();
        let nodelet = Nodelet::spawn(config(
            &router.url,
            "stubborn",
            dir.path(),
            fake.addr().port(),
        ));
        let first = node_where(&nodes, "stubborn", "healthy", healthy).await;
        nodes.delete("stubborn").await.expect("delete");
        let again = node_where(&nodes, "stubborn", "back", |n| {
            healthy(n) && n.metadata.uid != first.metadata.uid
        })
        .await;
        assert_eq!(again.spec.url, first.spec.url);
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn no_ollama_and_no_install_is_reported() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().await;
        let mut c = config(&router.url, "empty", dir.path(), port);
        c.install = false;
        let nodelet = Nodelet::spawn(c);
        let node = node_where(&router.nodes(), "empty", "reported", |n| {
            cond(n, conditions::OLLAMA_INSTALLED).1 == "NotFound"
        })
        .await;
        assert_eq!(
            cond(&node, conditions::OLLAMA_INSTALLED).0,
            ConditionStatus::False
        );
        assert_eq!(
            cond(&node, conditions::OLLAMA_RUNNING),
            (ConditionStatus::False, "NotInstalled".to_owned())
        );
        assert!(
            condition(&node, conditions::OLLAMA_INSTALLED)
                .expect("condition")
                .message
                .contains("--no-install")
        );
        assert!(is_true(&node, conditions::NODELET_READY));
        nodelet.shutdown().await;
        router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn sigterm_takes_the_node_out_of_routing_and_stops_ollama() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ollama = preinstall(dir.path(), "v0.33.0");
        let port = free_port().await;
        let mut child = tokio::process::Command::new(nodelet_binary())
            .args(["--server", router.url.as_str(), "--name", "signalled"])
            .args(["--ollama-url", &format!("127.0.0.1:{port}")])
            .args(["--heartbeat-interval", "100ms", "--no-default-model"])
            .arg("--install-dir")
            .arg(dir.path())
            .env("PATH", "")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the nodelet example");
        let nodes = router.nodes();
        node_where(&nodes, "signalled", "healthy", healthy).await;
        assert_eq!(pids_of(&ollama).len(), 1);

        let pid = child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        assert!(status.success(), "{status}");
        let node = nodes.get("signalled").await.expect("node");
        assert_eq!(
            cond(&node, conditions::NODELET_READY),
            (ConditionStatus::False, "NodeletStopped".to_owned())
        );
        assert!(pids_of(&ollama).is_empty(), "the Ollama it started is gone");
        assert!(!listening(port).await);
        router.stop().await;
    })
    .await;
}
