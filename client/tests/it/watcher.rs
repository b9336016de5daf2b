use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use futures_util::Stream;
use herd_api::Node;
use herd_client::Error;
use herd_client::watcher::{Config, Event, watcher};

use crate::mock::{End, Mock, Reply, bookmark, gone_status, line, next, node, node_list, status};

/// Millisecond backoff so retries do not slow the tests.
pub fn fast() -> Config {
    Config::default().backoff(Duration::from_millis(1), Duration::from_millis(10))
}

/// A mock whose n-th list and n-th watch (0-based) get the given replies;
/// the last one repeats.
pub async fn scripted(
    lists: impl Fn(usize) -> Reply + Send + Sync + 'static,
    watches: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> Mock {
    let (l, w) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    Mock::start(move |req| {
        assert_eq!(req.method, Method::GET, "a watcher only reads");
        if req.is_watch() {
            watches(w.fetch_add(1, Ordering::SeqCst))
        } else {
            lists(l.fetch_add(1, Ordering::SeqCst))
        }
    })
    .await
}

fn names(items: &[Node]) -> Vec<String> {
    items
        .iter()
        .map(|n| {
            format!(
                "{}@{}",
                n.metadata.name,
                n.metadata.resource_version.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

async fn restarted<S: Stream<Item = Result<Event<Node>, Error>> + Unpin>(s: &mut S) -> Vec<String> {
    match next(s).await {
        Ok(Event::Restarted(items)) => names(&items),
        other => panic!("want Restarted, got {other:?}"),
    }
}

async fn applied<S: Stream<Item = Result<Event<Node>, Error>> + Unpin>(s: &mut S) -> String {
    match next(s).await {
        Ok(Event::Applied(n)) => names(&[n]).remove(0),
        other => panic!("want Applied, got {other:?}"),
    }
}

fn versions(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|s| Some((*s).to_owned())).collect()
}

#[tokio::test]
async fn gone_event_on_watch_relists() {
    let mock = scripted(
        |n| match n {
            0 => Reply::Json(200, node_list(5, &[node("a", 4)])),
            _ => Reply::Json(200, node_list(10, &[node("b", 9)])),
        },
        |n| match n {
            0 => Reply::Stream(vec![line("ERROR", gone_status())], End::Close),
            _ => Reply::Stream(vec![line("ADDED", node("c", 11))], End::Hang),
        },
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(restarted(&mut events).await, ["a@4"]);
    let e = next(&mut events).await.expect_err("410");
    assert!(e.is_gone(), "{e}");
    assert_eq!(restarted(&mut events).await, ["b@9"]);
    assert_eq!(applied(&mut events).await, "c@11");
    assert_eq!(mock.watch_versions(), versions(&["5", "10"]));
    assert_eq!(mock.list_count(), 2);
}

#[tokio::test]
async fn gone_status_on_the_watch_request_relists() {
    let mock = scripted(
        |n| Reply::Json(200, node_list(5 + n as u64 * 10, &[])),
        |n| match n {
            0 => Reply::Json(410, gone_status()),
            _ => Reply::Stream(vec![line("ADDED", node("c", 16))], End::Hang),
        },
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert!(next(&mut events).await.expect_err("410").is_gone());
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert_eq!(applied(&mut events).await, "c@16");
    assert_eq!(mock.watch_versions(), versions(&["5", "15"]));
}

#[tokio::test]
async fn dropped_stream_resumes_from_the_last_revision() {
    let mock = scripted(
        |_| Reply::Json(200, node_list(1, &[])),
        |n| match n {
            0 => {
                let half = line("ADDED", node("lost", 4))[..15].to_owned();
                Reply::Stream(
                    vec![
                        line("ADDED", node("x", 2)),
                        line("MODIFIED", node("x", 3)),
                        half,
                    ],
                    End::Abort,
                )
            }
            _ => Reply::Stream(vec![line("ADDED", node("y", 4))], End::Hang),
        },
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert_eq!(applied(&mut events).await, "x@2");
    assert_eq!(applied(&mut events).await, "x@3");
    let e = next(&mut events).await.expect_err("cut");
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    assert_eq!(applied(&mut events).await, "y@4");
    assert_eq!(mock.watch_versions(), versions(&["1", "3"]));
    assert_eq!(mock.list_count(), 1, "a resumable watch needs no relist");
}

#[tokio::test]
async fn bookmark_moves_the_resume_point() {
    let mock = scripted(
        |_| Reply::Json(200, node_list(1, &[])),
        |n| match n {
            0 => Reply::Stream(vec![line("ADDED", node("a", 2)), bookmark(7)], End::Close),
            _ => Reply::Stream(vec![line("ADDED", node("b", 8))], End::Hang),
        },
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert_eq!(applied(&mut events).await, "a@2");
    // The clean end is no error: the next item is already from the new watch.
    assert_eq!(applied(&mut events).await, "b@8");
    assert_eq!(mock.watch_versions(), versions(&["1", "7"]));
}

#[tokio::test]
async fn resume_that_is_gone_relists() {
    let mock = scripted(
        |n| match n {
            0 => Reply::Json(200, node_list(1, &[node("a", 1)])),
            _ => Reply::Json(200, node_list(30, &[node("z", 29)])),
        },
        |n| match n {
            0 => Reply::Stream(vec![line("ADDED", node("b", 2))], End::Abort),
            1 => Reply::Stream(vec![line("ERROR", gone_status())], End::Close),
            _ => Reply::Stream(vec![], End::Hang),
        },
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(restarted(&mut events).await, ["a@1"]);
    assert_eq!(applied(&mut events).await, "b@2");
    assert!(matches!(next(&mut events).await, Err(Error::Http(_))));
    assert!(next(&mut events).await.expect_err("410").is_gone());
    assert_eq!(restarted(&mut events).await, ["z@29"]);
    // The stream is lazy: poll it so the third watch gets opened.
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut events),
    )
    .await;
    assert!(quiet.is_err(), "nothing more to see: {quiet:?}");
    assert_eq!(mock.watch_versions(), versions(&["1", "2", "30"]));
}

#[tokio::test]
async fn failing_lists_are_retried_and_reported() {
    let mock = scripted(
        |n| match n {
            0 => Reply::Json(503, status(503, "ServiceUnavailable", "starting")),
            1 => Reply::Text(502, "bad gateway".into()),
            _ => Reply::Json(200, node_list(3, &[node("a", 2)])),
        },
        |_| Reply::Stream(vec![], End::Hang),
    )
    .await;
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), fast()));
    assert_eq!(next(&mut events).await.expect_err("503").code(), Some(503));
    assert_eq!(next(&mut events).await.expect_err("502").code(), Some(502));
    assert_eq!(restarted(&mut events).await, ["a@2"]);
}

#[tokio::test]
async fn silent_watch_is_resumed_after_the_idle_timeout() {
    let mock = scripted(
        |_| Reply::Json(200, node_list(4, &[])),
        |n| match n {
            0 => Reply::Stream(vec![], End::Hang),
            _ => Reply::Stream(vec![line("ADDED", node("a", 5))], End::Hang),
        },
    )
    .await;
    let config = fast().idle_timeout(Some(Duration::from_millis(200)));
    let mut events = Box::pin(watcher(mock.client().api::<Node>(), config));
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert!(matches!(next(&mut events).await, Err(Error::WatchIdle(_))));
    assert_eq!(applied(&mut events).await, "a@5");
    assert_eq!(mock.watch_versions(), versions(&["4", "4"]));
}

#[tokio::test]
async fn label_selector_goes_to_list_and_watch() {
    let mock = scripted(
        |_| Reply::Json(200, node_list(1, &[])),
        |_| Reply::Stream(vec![line("DELETED", node("a", 2))], End::Hang),
    )
    .await;
    let mut events = Box::pin(watcher(
        mock.client().api::<Node>(),
        fast().labels("gpu=nvidia"),
    ));
    assert_eq!(restarted(&mut events).await, Vec::<String>::new());
    assert!(matches!(next(&mut events).await, Ok(Event::Deleted(n)) if n.metadata.name == "a"));
    let reqs = mock.requests();
    assert!(
        reqs.iter()
            .all(|r| r.q("labelSelector") == Some("gpu=nvidia")),
        "{reqs:?}"
    );
}
