//! Ollama's error statuses and messages, byte for byte where it matters.

use serde_json::json;

use crate::helpers::{bounded, client, content_type, fake, get, json_of, post};

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert!(
        content_type(&resp).starts_with("application/json"),
        "{}",
        content_type(&resp)
    );
    let v = json_of(resp).await;
    (
        status,
        v["error"].as_str().expect("error string").to_owned(),
    )
}

#[tokio::test]
async fn missing_models_get_each_endpoints_message() {
    bounded(async {
        let f = fake().start().await;
        let cases = [
            ("/api/generate", json!({"model": "nope", "prompt": "x"}), 404, "model 'nope' not found"),
            ("/api/chat", json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}), 404, "model 'nope' not found"),
            ("/api/embed", json!({"model": "nope", "input": "x"}), 404, "model \"nope\" not found, try pulling it first"),
            ("/api/embeddings", json!({"model": "nope", "prompt": "x"}), 404, "model \"nope\" not found, try pulling it first"),
            ("/api/show", json!({"model": "nope"}), 404, "model 'nope' not found"),
            ("/api/chat", json!({"messages": []}), 400, "model is required"),
            ("/api/generate", json!({"model": "", "prompt": "x"}), 400, "model is required"),
            ("/api/show", json!({}), 400, "model is required"),
            ("/api/copy", json!({"source": "nope", "destination": "b"}), 404, "model \"nope\" not found"),
            ("/api/generate", json!({"model": "nomic-embed-text", "prompt": "x"}), 400, "\"nomic-embed-text\" does not support generate"),
            ("/api/chat", json!({"model": "llama3.2:1b", "think": true, "messages": [{"role": "user", "content": "x"}]}), 400, "\"llama3.2:1b\" does not support thinking"),
            ("/api/generate", json!({"model": "llama3.2:1b", "prompt": "x", "keep_alive": "10"}), 400, "time: missing unit in duration \"10\""),
            ("/api/generate", json!({"model": "llama3.2:1b", "prompt": "x", "top_logprobs": 21}), 400, "top_logprobs must be between 0 and 20"),
        ];
        for (path, body, status, message) in cases {
            let (s, m) = error_of(post(&f, path, body.clone()).await).await;
            assert_eq!((s, m.as_str()), (status, message), "{path} {body}");
        }
        let resp = client()
            .delete(format!("{}/api/delete", f.url()))
            .json(&json!({"model": "nope"}))
            .send()
            .await
            .expect("delete");
        assert_eq!(error_of(resp).await, (404, "model 'nope' not found".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn malformed_bodies_get_go_json_messages() {
    bounded(async {
        let f = fake().start().await;
        let send = |body: &'static str| {
            client()
                .post(format!("{}/api/chat", f.url()))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let cases = [
            ("", "missing request body"),
            ("{\"model\":", "unexpected EOF"),
            ("{model: 1}", "invalid character 'm' looking for beginning of object key string"),
            ("not json", "invalid character 'o' in literal null (expecting 'u')"),
            ("[]", "json: cannot unmarshal array into Go value of type api.ChatRequest"),
            (r#"{"model":"llama3.2:1b","stream":"yes"}"#, "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"),
        ];
        for (body, message) in cases {
            let (s, m) = error_of(send(body).await.expect("send")).await;
            assert_eq!((s, m.as_str()), (400, message), "{body:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_like_gin() {
    bounded(async {
        let f = fake().start().await;
        let resp = get(&f, "/api/nothing").await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.text().await.expect("body"), "404 page not found");

        let resp = get(&f, "/api/generate").await;
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.text().await.expect("body"), "405 method not allowed");

        let resp = client()
            .head(format!("{}/api/ps", f.url()))
            .send()
            .await
            .expect("head");
        assert_eq!(
            resp.status(),
            405,
            "HEAD is only registered for /, /api/version and /api/tags"
        );

        let resp = client()
            .head(format!("{}/api/tags", f.url()))
            .send()
            .await
            .expect("head");
        assert_eq!(resp.status(), 200);

        let root = get(&f, "/").await;
        assert_eq!(root.status(), 200);
        assert_eq!(root.text().await.expect("body"), "Ollama is running");
        let head = client()
            .head(format!("{}/", f.url()))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);

        let v = json_of(get(&f, "/api/version").await).await;
        assert_eq!(v, json!({"version": "0.33.0"}));
    })
    .await;
}
