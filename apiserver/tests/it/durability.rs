use serde_json::json;

use crate::{TestServer, node, rv};

#[tokio::test]
async fn restarted_server_serves_everything_it_acknowledged_and_resumes_watches() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = TestServer::start_in(dir.path()).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let (code, obj) = s.post("/nodes", node(&format!("n{i}"))).await;
        assert_eq!(code, 201);
        acked.push(obj);
    }
    let (_, patched) = s
        .patch(
            "/nodes/n7/status",
            json!({"status":{"usage":{"cpuPercent":42.0}}}),
        )
        .await;
    s.delete("/nodes/n9").await;
    let (_, list_before) = s.get("/nodes").await;
    let revision_before = list_before["metadata"]["resourceVersion"].clone();
    s.stop().await;

    let s = TestServer::start_in(dir.path()).await;
    let (_, list_after) = s.get("/nodes").await;
    assert_eq!(
        list_before, list_after,
        "same objects and same revision after restart"
    );
    assert_eq!(list_after["metadata"]["resourceVersion"], revision_before);
    let (_, n7) = s.get("/nodes/n7").await;
    assert_eq!(n7, patched);
    // Revisions keep growing after a restart.
    let (_, next) = s.post("/nodes", node("after")).await;
    assert!(rv(&next) > rv(&patched));
    // A watcher can resume from a revision it saw before the restart.
    let resp = s
        .http
        .get(s.path(&format!(
            "/nodes?watch=true&resourceVersion={}&timeoutSeconds=1",
            rv(&patched)
        )))
        .send()
        .await
        .expect("watch");
    let text = resp.text().await.expect("body");
    let types: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(types[0]["type"], "DELETED");
    assert_eq!(types[1]["type"], "ADDED");
    assert_eq!(types[1]["object"]["metadata"]["name"], "after");
}
