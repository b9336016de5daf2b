use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::Method;
use herd_api::{Node, NodeSpec, Resource, WatchEvent};
use herd_client::{Error, ListParams, PostParams, WatchParams};
use serde_json::json;

use crate::mock::{self, End, Mock, NODES, Reply, bookmark, line, next, node, status};

fn a_node(name: &str) -> Node {
    Node::new(
        name,
        NodeSpec {
            url: format!("http://{name}:11434"),
            ..NodeSpec::default()
        },
    )
}

#[tokio::test]
async fn requests_follow_the_rest_contract() {
    let mock = Mock::start(|req| {
        if req.method == Method::GET && req.path == NODES {
            Reply::Json(200, mock::node_list(7, &[node("a", 3)]))
        } else {
            Reply::Json(
                if req.method == Method::POST { 201 } else { 200 },
                node("a", 8),
            )
        }
    })
    .await;
    let api = mock.client().api::<Node>();
    let mut obj = a_node("a");
    obj.metadata.resource_version = Some("3".into());

    let list = api
        .list(&ListParams::default().labels("gpu=nvidia,zone in (a,b)"))
        .await
        .expect("list");
    assert_eq!(list.metadata.resource_version, "7");
    assert_eq!(list.items[0].metadata.name, "a");
    assert_eq!(
        api.get("a")
            .await
            .expect("get")
            .metadata
            .resource_version
            .as_deref(),
        Some("8")
    );
    api.create(&PostParams::dry_run(), &obj)
        .await
        .expect("create");
    api.replace(&PostParams::default(), &obj)
        .await
        .expect("replace");
    api.patch("a", &PostParams::default(), &json!({"spec": {"weight": 5}}))
        .await
        .expect("patch");
    api.replace_status(&PostParams::default(), &obj)
        .await
        .expect("replace_status");
    api.patch_status(
        "a",
        &PostParams::dry_run(),
        &json!({"status": {"models": []}}),
    )
    .await
    .expect("patch_status");
    api.delete("a").await.expect("delete");

    let reqs = mock.requests();
    let seen: Vec<(String, String, Option<&str>, Option<&str>)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.clone(),
                r.q("dryRun"),
                r.content_type.as_deref(),
            )
        })
        .collect();
    let json_ct = Some("application/json");
    let merge_ct = Some("application/merge-patch+json");
    assert_eq!(
        seen,
        [
            ("GET".into(), NODES.into(), None, None),
            ("GET".into(), format!("{NODES}/a"), None, None),
            ("POST".into(), NODES.into(), Some("All"), json_ct),
            ("PUT".into(), format!("{NODES}/a"), None, json_ct),
            ("PATCH".into(), format!("{NODES}/a"), None, merge_ct),
            ("PUT".into(), format!("{NODES}/a/status"), None, json_ct),
            (
                "PATCH".into(),
                format!("{NODES}/a/status"),
                Some("All"),
                merge_ct
            ),
            ("DELETE".into(), format!("{NODES}/a"), None, None),
        ]
    );
    assert_eq!(reqs[0].q("labelSelector"), Some("gpu=nvidia,zone in (a,b)"));
    assert_eq!(
        reqs[3].json()["metadata"]["resourceVersion"],
        "3",
        "replace is conditional when the object has a version"
    );
    assert_eq!(reqs[4].json(), json!({"spec": {"weight": 5}}));
}

#[tokio::test]
async fn names_are_one_encoded_path_segment() {
    let mock = Mock::start(|_| Reply::Json(404, status(404, "NotFound", "nope"))).await;
    let api = mock.client().api::<Node>();
    let _ = api.get("a/b c").await;
    assert_eq!(mock.requests()[0].path, format!("{NODES}/a%2Fb%20c"));
    assert!(
        matches!(api.get("").await, Err(Error::InvalidRequest(_))),
        "an empty name must not turn a get into a list"
    );
}

#[tokio::test]
async fn error_bodies_always_give_a_status_with_the_code() {
    let mock = Mock::start(|req| match req.path.rsplit('/').next().unwrap_or("") {
        "missing" => Reply::Json(404, status(404, "NotFound", "Node \"missing\" not found")),
        "stale" => Reply::Json(409, status(409, "Conflict", "the object has been modified")),
        "taken" => Reply::Json(
            409,
            status(409, "AlreadyExists", "Node \"taken\" already exists"),
        ),
        "proxy" => Reply::Text(502, "upstream connect error".into()),
        "empty" => Reply::Text(500, String::new()),
        "json-not-status" => Reply::Json(503, json!({"error": "no nodes available"})),
        "garbage" => Reply::Text(200, "{not json".into()),
        _ => Reply::Json(200, node("x", 1)),
    })
    .await;
    let api = mock.client().api::<Node>();

    let e = api.get("missing").await.expect_err("404");
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        e.status().map(|s| s.message.as_str()),
        Some("Node \"missing\" not found")
    );
    assert_eq!(api.get_opt("missing").await.expect("get_opt"), None);
    assert!(api.get_opt("x").await.expect("get_opt").is_some());

    let e = api.get("stale").await.expect_err("409");
    assert!(e.is_conflict() && !e.is_already_exists(), "{e}");
    let e = api.get("taken").await.expect_err("409");
    assert!(e.is_already_exists() && !e.is_conflict(), "{e}");

    let e = api.get("proxy").await.expect_err("502");
    assert_eq!(e.code(), Some(502));
    assert!(e.to_string().contains("upstream connect error"), "{e}");
    let e = api.get("empty").await.expect_err("500");
    assert_eq!(e.code(), Some(500));
    let e = api.get("json-not-status").await.expect_err("503");
    assert_eq!(e.code(), Some(503));
    assert!(e.to_string().contains("no nodes available"), "{e}");

    let e = api.get("garbage").await.expect_err("undecodable");
    match &e {
        Error::Decode { what, .. } => assert!(
            what.contains("Node") && what.contains("nodes/garbage"),
            "{what}"
        ),
        other => panic!("want Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn transport_errors_name_their_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let api = herd_client::Client::new(&url)
        .expect("client")
        .api::<Node>();
    let e = api.get("a").await.expect_err("nothing listens");
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    assert_eq!(e.code(), None);
}

#[tokio::test]
async fn apply_creates_or_replaces_unconditionally() {
    let mock = Mock::start(|req| match req.method {
        Method::POST => Reply::Json(
            409,
            status(409, "AlreadyExists", "Node \"a\" already exists"),
        ),
        _ => Reply::Json(200, node("a", 9)),
    })
    .await;
    let api = mock.client().api::<Node>();
    let mut obj = a_node("a");
    obj.metadata.resource_version = Some("2".into());
    let got = api.apply(&obj).await.expect("apply");
    assert_eq!(got.meta().resource_version.as_deref(), Some("9"));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[1].method.clone(), reqs[1].path.as_str()),
        (Method::PUT, &*format!("{NODES}/a"))
    );
    assert!(
        reqs[1].json()["metadata"].get("resourceVersion").is_none(),
        "apply must not be conditional"
    );
}

#[tokio::test]
async fn apply_passes_other_errors_through() {
    let mock =
        Mock::start(|_| Reply::Json(422, status(422, "Invalid", "spec.weight: out of range")))
            .await;
    let e = mock
        .client()
        .api::<Node>()
        .apply(&a_node("a"))
        .await
        .expect_err("invalid");
    assert_eq!(e.code(), Some(422));
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn status_updates_retry_on_conflict_with_a_fresh_read() {
    let gets = Arc::new(AtomicUsize::new(0));
    let puts = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gets.clone(), puts.clone());
    let mock = Mock::start(move |req| match req.method {
        Method::GET => {
            let n = g.fetch_add(1, Ordering::SeqCst) as u64;
            Reply::Json(200, node("a", 10 + n))
        }
        _ if p.fetch_add(1, Ordering::SeqCst) < 2 => {
            Reply::Json(409, status(409, "Conflict", "modified"))
        }
        _ => Reply::Json(200, req.json()),
    })
    .await;
    let api = mock.client().api::<Node>();
    let mut calls = 0;
    let got = api
        .update_status_with_retry("a", |s| {
            calls += 1;
            s.usage = Some(herd_api::NodeUsage {
                in_flight: 3,
                ..Default::default()
            });
        })
        .await
        .expect("third attempt succeeds");
    assert_eq!(calls, 3);
    assert_eq!(got.status.usage.map(|u| u.in_flight), Some(3));
    let writes: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PUT)
        .collect();
    assert_eq!(writes.len(), 3);
    for (i, w) in writes.iter().enumerate() {
        assert_eq!(w.path, format!("{NODES}/a/status"));
        assert_eq!(
            w.json()["metadata"]["resourceVersion"],
            (10 + i).to_string(),
            "each write is conditional on its read"
        );
    }
}

#[tokio::test]
async fn status_updates_give_up_after_bounded_conflicts() {
    let mock = Mock::start(|req| match req.method {
        Method::GET => Reply::Json(200, node("a", 1)),
        _ => Reply::Json(409, status(409, "Conflict", "modified")),
    })
    .await;
    let api = mock.client().api::<Node>();
    let e = api
        .update_status_with_retry("a", |s| {
            s.usage = Some(herd_api::NodeUsage {
                in_flight: 1,
                ..Default::default()
            })
        })
        .await
        .expect_err("always conflicts");
    assert!(e.is_conflict());
    let puts = mock
        .requests()
        .iter()
        .filter(|r| r.method == Method::PUT)
        .count();
    assert_eq!(puts as u32, herd_client::STATUS_UPDATE_ATTEMPTS);
}

#[tokio::test]
async fn unchanged_status_is_not_written() {
    let mock = Mock::start(|_| Reply::Json(200, node("a", 1))).await;
    let got = mock
        .client()
        .api::<Node>()
        .update_status_with_retry("a", |_| {})
        .await
        .expect("no-op");
    assert_eq!(got.metadata.name, "a");
    assert_eq!(mock.requests().len(), 1, "only the read");
}

#[tokio::test]
async fn watch_reads_ndjson_across_chunk_boundaries() {
    let mock = Mock::start(|req| {
        assert!(req.is_watch());
        let a = line("ADDED", node("a", 2));
        let (a1, a2) = a.split_at(10);
        let b = line("MODIFIED", node("a", 3));
        let (b1, rest) = b.split_at(b.len() - 3);
        let many = format!("{rest}\n\n{}{}", line("DELETED", node("a", 4)), bookmark(9));
        let chunks = vec![
            a1.into(),
            a2.into(),
            b1.into(),
            many,
            format!("{}", line("ERROR", mock::gone_status())),
        ];
        Reply::Stream(chunks, End::Hang)
    })
    .await;
    let api = mock.client().api::<Node>();
    let mut events = api
        .watch(&WatchParams::from_version("1").labels("gpu"))
        .await
        .expect("watch");
    let req = &mock.requests()[0];
    assert_eq!(
        (req.q("resourceVersion"), req.q("labelSelector")),
        (Some("1"), Some("gpu"))
    );

    let rv = |e: &WatchEvent<Node>| match e {
        WatchEvent::Added(n) | WatchEvent::Modified(n) | WatchEvent::Deleted(n) => {
            n.metadata.resource_version.clone()
        }
        WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
        WatchEvent::Error(_) => None,
    };
    let got: Vec<_> = [
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
        next(&mut events).await,
    ]
    .into_iter()
    .map(|e| e.expect("event"))
    .collect();
    assert!(matches!(got[0], WatchEvent::Added(_)));
    assert!(matches!(got[1], WatchEvent::Modified(_)));
    assert!(matches!(got[2], WatchEvent::Deleted(_)));
    assert!(matches!(got[3], WatchEvent::Bookmark(_)));
    assert_eq!(
        got.iter()
            .map(|e| rv(e).unwrap_or_default())
            .collect::<Vec<_>>(),
        ["2", "3", "4", "9"]
    );
    let e = next(&mut events).await.expect_err("ERROR event");
    assert!(e.is_gone(), "{e}");
    assert!(
        futures_util::StreamExt::next(&mut events).await.is_none(),
        "the stream ends after an error"
    );
}

#[tokio::test]
async fn watch_request_errors_come_back_from_watch() {
    let mock =
        Mock::start(|_| Reply::Json(400, status(400, "BadRequest", "label selector \"=x\": bad")))
            .await;
    let api = mock.client().api::<Node>();
    let e = api
        .watch(&WatchParams::default().labels("=x"))
        .await
        .err()
        .expect("400");
    assert_eq!(e.code(), Some(400));
}

#[tokio::test]
async fn a_cut_watch_ends_with_a_transport_error() {
    let mock = Mock::start(|_| {
        let half = &line("ADDED", node("b", 3))[..20];
        Reply::Stream(vec![line("ADDED", node("a", 2)), half.into()], End::Abort)
    })
    .await;
    let mut events = mock
        .client()
        .api::<Node>()
        .watch(&WatchParams::from_version("1"))
        .await
        .expect("watch");
    assert!(matches!(next(&mut events).await, Ok(WatchEvent::Added(_))));
    let e = next(&mut events).await.expect_err("cut");
    assert!(matches!(e, Error::Http(_)), "{e:?}");
    assert!(futures_util::StreamExt::next(&mut events).await.is_none());
}
