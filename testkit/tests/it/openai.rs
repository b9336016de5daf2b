//! The OpenAI-compatible endpoints.

use herd_testkit::reply_text;
use serde_json::{Value, json};

use crate::helpers::{bounded, content_type, fake, get, json_of, post, sse_data};

fn parse(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

#[tokio::test]
async fn chat_completions_whole_and_streamed() {
    bounded(async {
        let f = fake().tokens(3).start().await;
        let body = json!({"model": "llama3.2:1b", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]});
        let resp = post(&f, "/v1/chat/completions", body.clone()).await;
        assert_eq!(content_type(&resp), "application/json");
        let v = json_of(resp).await;
        assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "llama3.2:1b");
        assert_eq!(v["system_fingerprint"], "fp_ollama");
        assert!(v["created"].as_i64().expect("created") > 1_600_000_000);
        assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": reply_text(3)}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        assert_eq!(v["usage"]["total_tokens"], 5);

        let mut streamed = body;
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        streamed["max_tokens"] = json!(2);
        let resp = post(&f, "/v1/chat/completions", streamed).await;
        assert_eq!(content_type(&resp), "text/event-stream");
        let events = sse_data(resp).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks = parse(&events);
        assert_eq!(chunks.len(), 4, "2 tokens, finish, usage: {chunks:?}");
        let id = chunks[0]["id"].clone();
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], id);
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
        let text: String = chunks[..3].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().expect("content")).collect();
        assert_eq!(text, reply_text(2));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 2);
        assert!(chunks[..3].iter().all(|c| c.get("usage").is_none()));
    })
    .await;
}

#[tokio::test]
async fn completions_and_embeddings_and_models() {
    bounded(async {
        let f = fake().tokens(2).start().await;
        let v = json_of(
            post(
                &f,
                "/v1/completions",
                json!({"model": "llama3.2:1b", "prompt": "once upon"}),
            )
            .await,
        )
        .await;
        assert!(v["id"].as_str().expect("id").starts_with("cmpl-"));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], reply_text(2));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");

        let events = sse_data(
            post(
                &f,
                "/v1/completions",
                json!({"model": "llama3.2:1b", "prompt": "x", "stream": true}),
            )
            .await,
        )
        .await;
        assert_eq!(events.len(), 4);
        assert_eq!(events[3], "[DONE]");
        assert_eq!(parse(&events)[2]["choices"][0]["finish_reason"], "stop");

        let v = json_of(
            post(
                &f,
                "/v1/embeddings",
                json!({"model": "nomic-embed-text", "input": ["a", "b"]}),
            )
            .await,
        )
        .await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "nomic-embed-text");
        assert_eq!(v["data"][1]["object"], "embedding");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(
            v["data"][0]["embedding"].as_array().expect("floats").len(),
            384
        );
        assert!(v["usage"]["prompt_tokens"].as_u64().is_some());
        let b64 = json_of(
            post(
                &f,
                "/v1/embeddings",
                json!({"model": "nomic-embed-text", "input": "a", "encoding_format": "base64"}),
            )
            .await,
        )
        .await;
        // 384 little-endian f32s = 1536 bytes = 2048 base64 characters.
        assert_eq!(
            b64["data"][0]["embedding"].as_str().expect("base64").len(),
            2048
        );

        let list = json_of(get(&f, "/v1/models").await).await;
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["id"].as_str().expect("id"))
            .collect();
        assert!(ids.contains(&"llama3.2:1b"));
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(list["data"][0]["owned_by"], "library");

        let one = json_of(get(&f, "/v1/models/llama3.2:1b").await).await;
        assert_eq!(one["id"], "llama3.2:1b");
        assert_eq!(one["object"], "model");
    })
    .await;
}

#[tokio::test]
async fn openai_errors_use_the_openai_error_object() {
    bounded(async {
        let f = fake().start().await;
        let resp = post(&f, "/v1/chat/completions", json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(
            json_of(resp).await,
            json!({"error": {"message": "model 'nope' not found", "type": "not_found_error", "param": null, "code": null}})
        );
        let resp = post(&f, "/v1/chat/completions", json!({"model": "llama3.2:1b", "messages": []})).await;
        assert_eq!(resp.status(), 400);
        let v = json_of(resp).await;
        assert_eq!(v["error"]["message"], "[] is too short - 'messages'");
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let resp = get(&f, "/v1/models/nope").await;
        assert_eq!(resp.status(), 404);
        assert_eq!(json_of(resp).await["error"]["type"], "not_found_error");

        let resp = post(&f, "/v1/embeddings", json!({"model": "nomic-embed-text"})).await;
        assert_eq!(json_of(resp).await["error"]["message"], "invalid input");

        // No models: Go marshals the nil slice as null.
        let g = herd_testkit::FakeOllama::builder().start().await;
        assert_eq!(json_of(get(&g, "/v1/models").await).await, json!({"object": "list", "data": null}));
    })
    .await;
}
