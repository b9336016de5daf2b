use std::time::Duration;

use herd_api::Node;
use herd_client::reflector::{self, Store};
use herd_client::watcher::{Event, watcher};

use crate::mock::{End, Reply, gone_status, line, next, node, node_list};
use crate::watcher::{fast, scripted};

fn names(store: &Store<Node>) -> Vec<String> {
    store
        .list()
        .iter()
        .map(|n| n.metadata.name.clone())
        .collect()
}

#[tokio::test]
async fn store_follows_events_and_relists() {
    let mock = scripted(
        |n| match n {
            0 => Reply::Json(200, node_list(5, &[node("a", 3), node("b", 4)])),
            _ => Reply::Json(200, node_list(20, &[node("d", 19)])),
        },
        |n| match n {
            0 => Reply::Stream(
                vec![
                    line("DELETED", node("a", 6)),
                    line("ADDED", node("c", 7)),
                    line("ERROR", gone_status()),
                ],
                End::Close,
            ),
            _ => Reply::Stream(vec![], End::Hang),
        },
    )
    .await;
    let (writer, store) = reflector::store::<Node>();
    let mut events = Box::pin(reflector::reflector(
        writer,
        watcher(mock.client().api::<Node>(), fast()),
    ));
    assert!(!store.is_ready());

    assert!(matches!(next(&mut events).await, Ok(Event::Restarted(_))));
    store.wait_ready().await.expect("ready");
    assert_eq!(names(&store), ["a", "b"]);
    assert!(matches!(next(&mut events).await, Ok(Event::Deleted(_))));
    assert_eq!(names(&store), ["b"]);
    assert!(matches!(next(&mut events).await, Ok(Event::Applied(_))));
    assert_eq!(names(&store), ["b", "c"]);
    assert!(next(&mut events).await.expect_err("410").is_gone());
    assert_eq!(
        names(&store),
        ["b", "c"],
        "an error leaves the cache as it was"
    );
    assert!(matches!(next(&mut events).await, Ok(Event::Restarted(_))));
    assert_eq!(
        names(&store),
        ["d"],
        "objects gone while away disappear on relist"
    );
}

#[tokio::test]
async fn spawned_store_notifies_subscribers() {
    let mock = scripted(
        |_| Reply::Json(200, node_list(1, &[node("a", 1)])),
        |_| {
            Reply::Stream(
                vec![line("MODIFIED", node("a", 2)), line("ADDED", node("b", 3))],
                End::Hang,
            )
        },
    )
    .await;
    let store = reflector::spawn(mock.client().api::<Node>(), fast());
    let mut changes = store.subscribe();
    tokio::time::timeout(Duration::from_secs(10), store.wait_ready())
        .await
        .expect("in time")
        .expect("ready");
    let done = async {
        while names(&store) != ["a", "b"] {
            changes.changed().await.expect("writer alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("store caught up");
    assert_eq!(
        store
            .get("a")
            .and_then(|n| n.metadata.resource_version.clone())
            .as_deref(),
        Some("2")
    );
    assert!(store.generation() >= 2);
}
