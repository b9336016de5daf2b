//! Against the real apiserver on 127.0.0.1:0 over a real SQLite file.

use std::net::SocketAddr;
use std::time::Duration;

use herd_api::{
    Condition, ConditionStatus, ModelAssignment, ModelAssignmentSpec, Node, NodeSpec, NodeUsage,
    Resource, WatchEvent, conditions,
};
use herd_apiserver::Config;
use herd_client::reflector::{self, Store};
use herd_client::watcher::{Event, watcher};
use herd_client::{Api, Client, ListParams, PostParams, WatchParams};
use serde_json::json;
use tokio::sync::oneshot;

use crate::mock::next;
use crate::watcher::fast;

struct Server {
    url: String,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: Config) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), config).await
    }

    async fn start_on(addr: SocketAddr, config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            herd_apiserver::run(config, listener, shutdown)
                .await
                .expect("server ran");
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn api<K: Resource>(&self) -> Api<K> {
        Client::new(&self.url).expect("client").api::<K>()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .expect("join");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn config(dir: &tempfile::TempDir) -> Config {
    let mut c = Config::new(dir.path());
    c.bookmark_interval = Duration::from_millis(100);
    c
}

fn a_node(name: &str) -> Node {
    Node::new(
        name,
        NodeSpec {
            url: format!("http://{name}.lan:11434"),
            ..NodeSpec::default()
        },
    )
}

fn ready(status: ConditionStatus) -> Condition {
    Condition::new(conditions::READY, status, "Test", "")
}

/// Polls `store` until `check` holds, waking on each change.
async fn until<K: Resource>(store: &Store<K>, what: &str, check: impl Fn(&Store<K>) -> bool) {
    let mut changes = store.subscribe();
    let wait = async {
        while !check(store) {
            changes.changed().await.expect("reflector alive");
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        panic!("store never got to: {what}; it holds {store:?}");
    }
}

fn names<K: Resource>(store: &Store<K>) -> Vec<String> {
    store.list().iter().map(|o| o.meta().name.clone()).collect()
}

#[tokio::test]
async fn crud_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir)).await;
    let nodes = server.api::<Node>();

    let dry = nodes
        .create(&PostParams::dry_run(), &a_node("gpu-1"))
        .await
        .expect("dry run");
    assert_eq!(dry.metadata.name, "gpu-1");
    assert_eq!(
        nodes.get_opt("gpu-1").await.expect("get_opt"),
        None,
        "a dry run stores nothing"
    );

    let created = nodes
        .create(&PostParams::default(), &a_node("gpu-1"))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let e = nodes
        .create(&PostParams::default(), &a_node("gpu-1"))
        .await
        .expect_err("taken");
    assert!(e.is_already_exists(), "{e}");

    let got = nodes.get("gpu-1").await.expect("get");
    assert_eq!(got, created);
    let mut labelled = got.clone();
    labelled
        .metadata
        .labels
        .insert("gpu".into(), "nvidia".into());
    labelled.spec.weight = 200;
    let replaced = nodes
        .replace(&PostParams::default(), &labelled)
        .await
        .expect("replace");
    assert_eq!(
        (replaced.spec.weight, replaced.metadata.generation),
        (200, Some(2))
    );

    let list = nodes
        .list(&ListParams::default().labels("gpu=nvidia"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert!(
        list.metadata
            .resource_version
            .parse::<u64>()
            .expect("numeric rv")
            >= 2
    );
    assert!(
        nodes
            .list(&ListParams::default().labels("gpu=amd"))
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let patched = nodes
        .patch(
            "gpu-1",
            &PostParams::default(),
            &json!({"spec": {"unschedulable": true}}),
        )
        .await
        .expect("patch");
    assert!(patched.spec.unschedulable);
    assert_eq!(
        patched.spec.weight, 200,
        "a merge patch keeps what it does not name"
    );

    let mut with_status = patched.clone();
    with_status
        .status
        .conditions
        .push(ready(ConditionStatus::True));
    with_status.spec.weight = 1; // ignored by a status write
    let after = nodes
        .replace_status(&PostParams::default(), &with_status)
        .await
        .expect("replace_status");
    assert_eq!(after.status.conditions.len(), 1);
    assert_eq!(
        after.spec, patched.spec,
        "a status write never changes the spec"
    );
    assert_eq!(after.metadata.generation, patched.metadata.generation);

    let after = nodes
        .patch_status(
            "gpu-1",
            &PostParams::default(),
            &json!({"status": {"usage": {"inFlight": 2}}}),
        )
        .await
        .expect("patch_status");
    assert_eq!(after.status.usage.as_ref().map(|u| u.in_flight), Some(2));
    assert_eq!(after.status.conditions.len(), 1);

    let deleted = nodes.delete("gpu-1").await.expect("delete");
    assert_eq!(deleted.metadata.name, "gpu-1");
    assert!(nodes.get("gpu-1").await.expect_err("gone").is_not_found());
    assert!(
        nodes
            .delete("gpu-1")
            .await
            .expect_err("gone")
            .is_not_found()
    );

    // The other kind goes through the same code.
    let mas = server.api::<ModelAssignment>();
    let spec = ModelAssignmentSpec {
        model: "llama3.2:1b".into(),
        replicas: Some(2),
        node_selector: None,
    };
    mas.create(&PostParams::default(), &ModelAssignment::new("llama", spec))
        .await
        .expect("create ma");
    let e = mas
        .create(
            &PostParams::default(),
            &ModelAssignment::new("bad", ModelAssignmentSpec::default()),
        )
        .await
        .expect_err("invalid");
    assert_eq!(e.code(), Some(422));
    assert!(e.to_string().contains("spec.model"), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn stale_writes_conflict_and_retry_helpers_cope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir)).await;
    let nodes = server.api::<Node>();
    let first = nodes
        .create(&PostParams::default(), &a_node("n1"))
        .await
        .expect("create");

    let mut mine = first.clone();
    mine.spec.weight = 50;
    nodes
        .replace(&PostParams::default(), &mine)
        .await
        .expect("fresh write");
    mine.spec.weight = 60;
    let e = nodes
        .replace(&PostParams::default(), &mine)
        .await
        .expect_err("stale");
    assert!(e.is_conflict(), "{e}");
    let e = nodes
        .replace_status(&PostParams::default(), &first)
        .await
        .expect_err("stale status");
    assert!(e.is_conflict(), "{e}");

    // Without a version the replace is unconditional.
    mine.metadata.resource_version = None;
    assert_eq!(
        nodes
            .replace(&PostParams::default(), &mine)
            .await
            .expect("unconditional")
            .spec
            .weight,
        60
    );

    // Writers racing on the status all land, each through its own retries.
    let mut tasks = Vec::new();
    for i in 0..4u32 {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            nodes
                .update_status_with_retry("n1", |s| {
                    let usage = s.usage.get_or_insert_with(NodeUsage::default);
                    usage.in_flight += 1;
                    s.conditions.push(Condition::new(
                        &format!("Writer{i}"),
                        ConditionStatus::True,
                        "",
                        "",
                    ));
                })
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("status update");
    }
    let end = nodes.get("n1").await.expect("get");
    assert_eq!(
        end.status.usage.map(|u| u.in_flight),
        Some(4),
        "no update was lost"
    );
    assert_eq!(end.status.conditions.len(), 4);
    assert_eq!(end.spec.weight, 60);
    server.stop().await;
}

#[tokio::test]
async fn apply_keeps_the_servers_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir)).await;
    let nodes = server.api::<Node>();
    let created = nodes.apply(&a_node("n1")).await.expect("apply creates");
    let mut s = created.clone();
    s.status.conditions.push(ready(ConditionStatus::True));
    nodes
        .replace_status(&PostParams::default(), &s)
        .await
        .expect("status");

    let mut again = a_node("n1");
    again.spec.max_parallel = 8;
    again.metadata.resource_version = Some("1".into()); // stale, and ignored by apply
    let applied = nodes.apply(&again).await.expect("apply replaces");
    assert_eq!(applied.spec.max_parallel, 8);
    assert_eq!(
        applied.status.conditions.len(),
        1,
        "apply never clobbers status"
    );
    assert_eq!(
        applied.metadata.uid, created.metadata.uid,
        "re-registration updates, never duplicates"
    );
    server.stop().await;
}

#[tokio::test]
async fn watch_sees_another_clients_create_and_bookmarks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir)).await;
    let reader = server.api::<Node>();
    let writer = server.api::<Node>();
    let rv = reader
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version;
    let mut events = reader
        .watch(&WatchParams::from_version(rv))
        .await
        .expect("watch");

    let created = writer
        .create(&PostParams::default(), &a_node("n1"))
        .await
        .expect("create");
    match next(&mut events).await.expect("event") {
        WatchEvent::Added(n) => assert_eq!(n, created),
        other => panic!("want ADDED, got {other:?}"),
    }
    // Idle now: a bookmark comes, at least as new as the create.
    match next(&mut events).await.expect("event") {
        WatchEvent::Bookmark(b) => {
            let at: u64 = b.metadata.resource_version.parse().expect("numeric");
            assert!(at >= created.metadata.revision().expect("rv"));
        }
        other => panic!("want BOOKMARK, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn watch_from_before_the_window_is_gone_and_the_watcher_relists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.watch_window = 3;
    let server = Server::start(cfg).await;
    let nodes = server.api::<Node>();
    let old = nodes
        .create(&PostParams::default(), &a_node("n0"))
        .await
        .expect("create");
    for i in 1..=6 {
        nodes
            .create(&PostParams::default(), &a_node(&format!("n{i}")))
            .await
            .expect("create");
    }
    let mut events = nodes
        .watch(&WatchParams::from_version(
            old.metadata.resource_version.clone().expect("rv"),
        ))
        .await
        .expect("watch");
    let e = next(&mut events).await.expect_err("410");
    assert!(e.is_gone(), "{e}");

    // The watcher lists first, so it starts inside the window and goes live.
    let mut events = Box::pin(watcher(nodes.clone(), fast()));
    match next(&mut events).await.expect("list") {
        Event::Restarted(items) => assert_eq!(items.len(), 7),
        other => panic!("want Restarted, got {other:?}"),
    }
    nodes.delete("n0").await.expect("delete");
    match next(&mut events).await.expect("event") {
        Event::Deleted(n) => assert_eq!(n.metadata.name, "n0"),
        other => panic!("want Deleted, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn reflector_follows_creates_updates_deletes_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir)).await;
    let nodes = server.api::<Node>();
    nodes
        .create(&PostParams::default(), &a_node("before"))
        .await
        .expect("create");

    let store = reflector::spawn(server.api::<Node>(), fast());
    tokio::time::timeout(Duration::from_secs(10), store.wait_ready())
        .await
        .expect("in time")
        .expect("ready");
    assert_eq!(names(&store), ["before"]);

    nodes
        .create(&PostParams::default(), &a_node("a"))
        .await
        .expect("create");
    nodes
        .create(&PostParams::default(), &a_node("b"))
        .await
        .expect("create");
    until(&store, "a, b and before", |s| {
        names(s) == ["a", "b", "before"]
    })
    .await;
    nodes
        .patch("a", &PostParams::default(), &json!({"spec": {"weight": 7}}))
        .await
        .expect("patch");
    until(&store, "a weighs 7", |s| {
        s.get("a").is_some_and(|n| n.spec.weight == 7)
    })
    .await;
    nodes.delete("before").await.expect("delete");
    until(&store, "before deleted", |s| s.get("before").is_none()).await;

    // Restart on the same data dir and port: the reflector reconnects by itself.
    let addr = server.addr;
    server.stop().await;
    let server = Server::start_on(addr, config(&dir)).await;
    let nodes = server.api::<Node>();
    nodes
        .create(&PostParams::default(), &a_node("after"))
        .await
        .expect("create after restart");
    nodes.delete("b").await.expect("delete after restart");
    until(&store, "after restart", |s| names(s) == ["a", "after"]).await;
    assert_eq!(store.get("a").map(|n| n.spec.weight), Some(7));
    server.stop().await;
}

/// With several server URLs, a client whose server is gone moves on to the
/// next for plain requests and watches alike, and stays there.
#[tokio::test]
async fn several_urls_fail_over_to_a_server_that_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(Config::new(dir.path())).await;
    // A port nothing listens on: connections to it are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let client = Client::new(&format!("http://{dead}, {}", server.url)).expect("client");
    assert_eq!(client.base_url().as_str(), format!("http://{dead}/"));
    let nodes = client.api::<Node>();
    let node = Node::new(
        "a",
        NodeSpec {
            url: "http://127.0.0.1:1".into(),
            ..NodeSpec::default()
        },
    );
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("created through the second server");
    assert_eq!(client.base_url().as_str(), format!("{}/", server.url));
    let mut stream = nodes
        .watch(&WatchParams::default())
        .await
        .expect("a watch through the server in use");
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    .expect("an event");
    assert!(first.is_some());
    assert!(Client::new(" , ").is_err(), "no URL at all");
    assert!(
        Client::new("http://a:1,ftp://b").is_err(),
        "every URL is checked"
    );
    server.stop().await;
}
