use serde_json::json;

use crate::{TestServer, assignment, node, rv};

#[tokio::test]
async fn node_crud_round_trip() {
    let s = TestServer::start().await;
    let (code, created) = s.post("/nodes", node("gpu-1")).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string());
    assert!(created["metadata"]["creationTimestamp"].is_string());

    let (code, again) = s.post("/nodes", node("gpu-1")).await;
    assert_eq!(code, 409);
    assert_eq!(again["reason"], "AlreadyExists");

    let (code, got) = s.get("/nodes/gpu-1").await;
    assert_eq!(code, 200);
    assert_eq!(got, created);

    let mut changed = got.clone();
    changed["spec"]["weight"] = json!(50);
    let (code, replaced) = s.put("/nodes/gpu-1", changed).await;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["spec"]["weight"], 50);
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert!(rv(&replaced) > rv(&created));
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);

    let (code, deleted) = s.delete("/nodes/gpu-1").await;
    assert_eq!(code, 200);
    assert_eq!(deleted["metadata"]["name"], "gpu-1");
    assert!(rv(&deleted) > rv(&replaced));
    let (code, missing) = s.get("/nodes/gpu-1").await;
    assert_eq!(code, 404);
    assert_eq!(missing["reason"], "NotFound");
    let (code, _) = s.delete("/nodes/gpu-1").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn model_assignment_crud_and_put_creates() {
    let s = TestServer::start().await;
    let (code, created) = s
        .put(
            "/modelassignments/llama",
            assignment("llama", "llama3.2:1b"),
        )
        .await;
    assert_eq!(code, 201, "PUT of a missing object creates it: {created}");
    let (code, list) = s.get("/modelassignments").await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "ModelAssignmentList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (code, patched) = s
        .patch("/modelassignments/llama", json!({"spec":{"replicas":3}}))
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["spec"]["replicas"], 3);
    assert_eq!(patched["spec"]["model"], "llama3.2:1b");
    assert_eq!(patched["metadata"]["generation"], 2);
}

#[tokio::test]
async fn stale_resource_version_conflicts_and_none_is_unconditional() {
    let s = TestServer::start().await;
    let (_, created) = s.post("/nodes", node("a")).await;
    let mut first = created.clone();
    first["spec"]["weight"] = json!(10);
    let (code, _) = s.put("/nodes/a", first).await;
    assert_eq!(code, 200);

    // A writer still holding the old resourceVersion loses.
    let mut stale = created.clone();
    stale["spec"]["weight"] = json!(20);
    let (code, status) = s.put("/nodes/a", stale.clone()).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("modified"),
        "{status}"
    );
    let (_, now) = s.get("/nodes/a").await;
    assert_eq!(
        now["spec"]["weight"], 10,
        "a rejected write changes nothing"
    );

    // Without a resourceVersion the replace is unconditional.
    stale["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let (code, _) = s.put("/nodes/a", stale).await;
    assert_eq!(code, 200);
    let (_, now) = s.get("/nodes/a").await;
    assert_eq!(now["spec"]["weight"], 20);

    // Stale status writes conflict too; merge patches can carry the precondition.
    let mut st = created.clone();
    st["status"] = json!({"usage":{"cpuPercent":5.0}});
    let (code, _) = s.put("/nodes/a/status", st).await;
    assert_eq!(code, 409);
    let (code, _) = s
        .patch(
            "/nodes/a",
            json!({"metadata":{"resourceVersion":"1"},"spec":{"weight":1}}),
        )
        .await;
    assert_eq!(code, 409);
}

#[tokio::test]
async fn status_and_spec_writers_never_clobber_each_other() {
    let s = TestServer::start().await;
    let (_, created) = s.post("/nodes", node("a")).await;
    // A status write carrying a different spec changes only status.
    let mut w = created.clone();
    w["spec"]["weight"] = json!(1);
    w["status"] = json!({"usage":{"cpuPercent":90.0,"memoryPercent":10.0,"inFlight":2}});
    w["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let (code, after_status) = s.put("/nodes/a/status", w).await;
    assert_eq!(code, 200, "{after_status}");
    assert_eq!(after_status["spec"]["weight"], 100);
    assert_eq!(after_status["status"]["usage"]["cpuPercent"], 90.0);
    assert_eq!(
        after_status["metadata"]["generation"], 1,
        "status writes leave generation alone"
    );

    // A spec write carrying a status changes only spec.
    let mut w = after_status.clone();
    w["spec"]["unschedulable"] = json!(true);
    w["status"] = json!({});
    let (code, after_spec) = s.put("/nodes/a", w).await;
    assert_eq!(code, 200);
    assert_eq!(after_spec["spec"]["unschedulable"], true);
    assert_eq!(after_spec["status"]["usage"]["cpuPercent"], 90.0);
    assert_eq!(after_spec["metadata"]["generation"], 2);

    // Merge patch of status leaves spec; a main patch leaves status.
    let (_, p) = s
        .patch(
            "/nodes/a/status",
            json!({"spec":{"weight":7},"status":{"usage":{"inFlight":0}}}),
        )
        .await;
    assert_eq!(p["spec"]["weight"], 100);
    assert_eq!(p["status"]["usage"]["inFlight"], 0);
    assert_eq!(p["status"]["usage"]["cpuPercent"], 90.0);
    let (_, p) = s
        .patch(
            "/nodes/a",
            json!({"status":{"usage":null},"metadata":{"labels":{"gpu":"nvidia"}}}),
        )
        .await;
    assert!(p["status"]["usage"].is_object());
    assert_eq!(p["metadata"]["labels"]["gpu"], "nvidia");
    assert_eq!(
        p["metadata"]["generation"], 2,
        "label changes are not spec changes"
    );
}

#[tokio::test]
async fn generation_moves_only_with_spec_and_no_op_writes_keep_revision() {
    let s = TestServer::start().await;
    let (_, created) = s.post("/nodes", node("a")).await;
    let mut same = created.clone();
    same["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let (code, unchanged) = s.put("/nodes/a", same).await;
    assert_eq!(code, 200);
    assert_eq!(
        rv(&unchanged),
        rv(&created),
        "a no-op replace writes nothing"
    );
    let (_, labelled) = s
        .patch("/nodes/a", json!({"metadata":{"labels":{"x":"y"}}}))
        .await;
    assert_eq!(labelled["metadata"]["generation"], 1);
    let (_, spec) = s.patch("/nodes/a", json!({"spec":{"maxParallel":8}})).await;
    assert_eq!(spec["metadata"]["generation"], 2);
    let (_, spec) = s.patch("/nodes/a", json!({"spec":{"maxParallel":9}})).await;
    assert_eq!(spec["metadata"]["generation"], 3);
}

#[tokio::test]
async fn server_fields_cannot_be_overwritten() {
    let s = TestServer::start().await;
    let mut n = node("a");
    n["metadata"]["uid"] = json!("mine");
    n["metadata"]["generation"] = json!(42);
    n["metadata"]["creationTimestamp"] = json!("2001-01-01T00:00:00Z");
    let (_, created) = s.post("/nodes", n).await;
    assert_ne!(created["metadata"]["uid"], "mine");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_ne!(
        created["metadata"]["creationTimestamp"],
        "2001-01-01T00:00:00Z"
    );
    let mut w = created.clone();
    w["metadata"]["uid"] = json!("other");
    w["metadata"]["creationTimestamp"] = json!("2001-01-01T00:00:00Z");
    w["spec"]["weight"] = json!(3);
    let (_, replaced) = s.put("/nodes/a", w).await;
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        replaced["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
}

#[tokio::test]
async fn label_selectors_filter_lists() {
    let s = TestServer::start().await;
    for (name, gpu, zone) in [
        ("a", "nvidia", "x"),
        ("b", "amd", "x"),
        ("c", "nvidia", "y"),
    ] {
        let mut n = node(name);
        n["metadata"]["labels"] = json!({"gpu": gpu, "zone": zone});
        s.post("/nodes", n).await;
    }
    s.post("/nodes", node("d")).await;
    let names = |v: serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let cases = [
        ("gpu%3Dnvidia", vec!["a", "c"]),
        ("gpu%3Dnvidia%2Czone%3Dy", vec!["c"]),
        ("gpu%21%3Dnvidia", vec!["b", "d"]),
        ("%21gpu", vec!["d"]),
        ("zone%20in%20(x)", vec!["a", "b"]),
        ("", vec!["a", "b", "c", "d"]),
    ];
    for (sel, want) in cases {
        let (code, list) = s.get(&format!("/nodes?labelSelector={sel}")).await;
        assert_eq!(code, 200, "{sel}: {list}");
        assert_eq!(names(list), want, "{sel}");
    }
    let (_, list) = s.get("/nodes").await;
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| v != "0")
    );
}

#[tokio::test]
async fn dry_run_validates_without_storing() {
    let s = TestServer::start().await;
    let (code, obj) = s.post("/nodes?dryRun=All", node("a")).await;
    assert_eq!(code, 201, "{obj}");
    let (code, _) = s.get("/nodes/a").await;
    assert_eq!(code, 404);
    let mut bad = node("a");
    bad["spec"]["weight"] = json!(-1);
    let (code, _) = s.post("/nodes?dryRun=All", bad).await;
    assert_eq!(code, 400);
    let (code, _) = s.post("/nodes?dryRun=Sometimes", node("a")).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn discovery_schemas_and_health() {
    let s = TestServer::start().await;
    let (code, list) = s.get("").await;
    assert_eq!(code, 200);
    let kinds: Vec<&str> = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "Node",
            "ModelAssignment",
            "Event",
            "ApiKey",
            "Secret",
            "Lease"
        ]
    );
    for plural in [
        "nodes",
        "modelassignments",
        "events",
        "apikeys",
        "secrets",
        "leases",
    ] {
        let (code, schema) = s.get(&format!("/schemas/{plural}")).await;
        assert_eq!(code, 200);
        assert!(schema["properties"]["spec"].is_object(), "{schema}");
    }
    // Key hashes are never served, not even their schema.
    let (code, _) = s.get("/schemas/apikeyhashes").await;
    assert_eq!(code, 404);
    for p in ["/healthz", "/readyz"] {
        let r = s
            .http
            .get(format!("{}{p}", s.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
    }
}

/// Writes are computed outside the store's writer and committed only if the
/// object did not change meanwhile; concurrent patches of one object must
/// therefore all land, none overwriting another.
#[tokio::test]
async fn concurrent_patches_of_one_object_all_land() {
    let s = std::sync::Arc::new(TestServer::start().await);
    s.post("/nodes", node("hot")).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (code, body) = s
                .patch(
                    "/nodes/hot",
                    json!({"metadata":{"labels":{format!("w{i}"): "x"}}}),
                )
                .await;
            assert_eq!(code, 200, "{body}");
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let (_, obj) = s.get("/nodes/hot").await;
    let labels = obj["metadata"]["labels"].as_object().expect("labels");
    assert_eq!(labels.len(), 40, "lost updates: {labels:?}");
    // 1 create + 40 patches, each its own revision.
    assert_eq!(rv(&obj), 41);
}

#[tokio::test]
async fn the_event_log_is_pruned_to_max_events_oldest_first() {
    let mut config = herd_apiserver::Config::new(tempfile::tempdir().expect("tmp").keep());
    config.max_events = 5;
    let s = TestServer::start_with(config).await;
    for i in 0..12 {
        let ev = json!({"metadata":{"name":format!("ev-{i}")},
                        "spec":{"involvedObject":{"kind":"Node","name":"a"},"reason":"Ready","message":"m"}});
        let (code, body) = s.post("/events", ev).await;
        assert_eq!(code, 201, "{body}");
    }
    // Pruning runs every few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, list) = s.get("/events").await;
        let names: Vec<String> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        if names.len() == 5 {
            let mut want: Vec<String> = (7..12).map(|i| format!("ev-{i}")).collect();
            want.sort();
            assert_eq!(names, want, "the newest five remain");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events never pruned: {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_dir_all(&s.dir);
}
