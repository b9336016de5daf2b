use reqwest::Method;
use serde_json::json;

use crate::{TestServer, node};

/// Every bad input gets a 4xx `Status` naming the problem, and the store is
/// left exactly as it was.
#[tokio::test]
async fn bad_inputs_get_a_status_naming_the_problem_and_change_nothing() {
    let s = TestServer::start().await;
    s.post("/nodes", node("existing")).await;
    let (_, before) = s.get("/nodes").await;
    let big = format!(
        r#"{{"metadata":{{"name":"big","annotations":{{"a":"{}"}}}}}}"#,
        "x".repeat(3 * 1024 * 1024)
    );

    let json = "application/json";
    // (method, path, (content type, body), expected status, words in the message)
    type Case<'a> = (Method, &'a str, Option<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Method::POST, "/nodes", Some((json, "{not json".into())), 400, "invalid body"),
        (Method::POST, "/nodes", Some((json, String::new())), 400, "EOF"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"spec":{"maxParallel":"four"}}"#.into())), 400, "spec.maxParallel"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"spec":{"weight":-5}}"#.into())), 400, "spec.weight"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"spec":{"olamaUrl":"x"}}"#.into())), 400, "olamaUrl"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a","labls":{}}}"#.into())), 400, "labls"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"sepc":{}}"#.into())), 400, "sepc"),
        (Method::POST, "/nodes", Some((json, r#"[1,2]"#.into())), 400, "invalid"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"Not_A_Label"}}"#.into())), 422, "metadata.name"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{}}"#.into())), 422, "metadata.name"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a","labels":{"bad key":"v"}}}"#.into())), 422, "metadata.labels"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"spec":{"ollamaUrl":"gopher://x"}}"#.into())), 422, "spec.url"),
        (Method::POST, "/nodes", Some((json, r#"{"metadata":{"name":"a"},"spec":{"maxParallel":0}}"#.into())), 422, "spec.maxParallel"),
        (Method::POST, "/nodes", Some((json, r#"{"apiVersion":"herd/v2","metadata":{"name":"a"}}"#.into())), 422, "apiVersion"),
        (Method::POST, "/nodes", Some((json, r#"{"kind":"ModelAssignment","metadata":{"name":"a"}}"#.into())), 422, "kind"),
        (Method::POST, "/modelassignments", Some((json, r#"{"metadata":{"name":"m"},"spec":{"model":"a/b/c/d"}}"#.into())), 422, "spec.model"),
        (Method::POST, "/modelassignments", Some((json, r#"{"metadata":{"name":"m"},"spec":{}}"#.into())), 422, "spec.model"),
        (Method::POST, "/modelassignments", Some((json, r#"{"metadata":{"name":"m"},"spec":{"model":"x","nodeSelector":{"matchExpressions":[]}}}"#.into())), 400, "matchExpressions"),
        (Method::POST, "/nodes", Some((json, big)), 413, "larger than"),
        (Method::POST, "/nodes", Some(("text/plain", r#"{"metadata":{"name":"a"}}"#.into())), 415, "application/json"),
        (Method::POST, "/nodes", Some(("application/x-www-form-urlencoded", "a=b".into())), 415, "Content-Type"),
        (Method::PATCH, "/nodes/existing", Some((json, r#"{"spec":{"weight":1}}"#.into())), 415, "merge-patch"),
        (Method::PATCH, "/nodes/existing", Some(("application/merge-patch+json", r#"[1]"#.into())), 400, "JSON object"),
        (Method::PATCH, "/nodes/existing", Some(("application/merge-patch+json", r#"{"spec":{"weight":"heavy"}}"#.into())), 400, "spec.weight"),
        (Method::PATCH, "/nodes/existing", Some(("application/merge-patch+json", r#"{"metadata":{"name":"other"}}"#.into())), 400, "does not match"),
        (Method::PATCH, "/nodes/missing", Some(("application/merge-patch+json", r#"{"spec":{}}"#.into())), 404, "not found"),
        (Method::PUT, "/nodes/existing", Some((json, r#"{"metadata":{"name":"other"}}"#.into())), 400, "does not match"),
        (Method::PUT, "/nodes/existing/status", Some((json, r#"{"metadata":{"name":"existing"},"status":{"usage":{"cpuPercent":"hot"}}}"#.into())), 400, "status.usage.cpuPercent"),
        (Method::PUT, "/nodes/missing/status", Some((json, r#"{"metadata":{"name":"missing"}}"#.into())), 404, "not found"),
        (Method::GET, "/nodes?labelSelector=gpu%3D%3D%3D", None, 400, "label selector"),
        (Method::GET, "/nodes?labelSelector=a%20in%20b", None, 400, "label selector"),
        (Method::GET, "/nodes?watch=true&resourceVersion=abc", None, 400, "resourceVersion"),
        (Method::GET, "/nodes?watch=maybe", None, 400, "watch"),
        (Method::GET, "/nodes?watch=true&timeoutSeconds=soon", None, 400, "timeoutSeconds"),
        (Method::GET, "/widgets", None, 404, "could not find"),
        (Method::POST, "/nodes/existing", Some((json, "{}".into())), 405, "not allowed"),
        (Method::DELETE, "/nodes", None, 405, "not allowed"),
    ];
    for (method, path, body, want_code, want_text) in cases {
        let label = format!(
            "{method} {path} {:?}",
            body.as_ref()
                .map(|(ct, b)| (ct, b.chars().take(80).collect::<String>()))
        );
        let (code, status) = s.send_raw(method, path, body).await;
        assert_eq!(code, want_code, "{label}: {status}");
        assert_eq!(status["kind"], "Status", "{label}: {status}");
        assert_eq!(status["code"], want_code, "{label}");
        let message = status["message"].as_str().unwrap_or("");
        let causes = status["details"]["causes"].to_string();
        assert!(
            message.contains(want_text) || causes.contains(want_text),
            "{label}: {want_text:?} not in {status}"
        );
    }
    let (_, after) = s.get("/nodes").await;
    assert_eq!(before, after, "bad input must not change the store");
}

#[tokio::test]
async fn oversized_patch_is_refused_without_change() {
    let s = TestServer::start().await;
    s.post("/nodes", node("a")).await;
    let (_, before) = s.get("/nodes/a").await;
    let patch = json!({"metadata":{"annotations":{"a":"x".repeat(3 * 1024 * 1024)}}});
    let (code, status) = s.patch("/nodes/a", patch).await;
    assert_eq!(code, 413, "{status}");
    let (_, after) = s.get("/nodes/a").await;
    assert_eq!(before, after);
}
