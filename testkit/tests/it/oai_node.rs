//! OpenAI mode (a `llama-server`/vLLM stand-in) and the Anthropic and
//! Responses endpoints of both modes.

use herd_testkit::{Api, FakeOllama, FakeOllamaBuilder, Fault, reply_text};
use serde_json::{Value, json};

use crate::helpers::{bounded, client, content_type, get, json_of, post};

fn openai() -> FakeOllamaBuilder {
    FakeOllama::builder()
        .api(Api::OpenAi)
        .models(["smollm2", "nomic-embed-text"])
        .tokens(4)
}

/// SSE events as (event name or "", data), `[DONE]` kept as data.
async fn sse(resp: reqwest::Response) -> Vec<(String, String)> {
    let text = resp.text().await.expect("SSE body");
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

fn datas(events: &[(String, String)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test]
async fn serves_v1_only_with_ids_as_given() {
    bounded(async {
        let f = openai().start().await;
        assert_eq!(json_of(get(&f, "/health").await).await, json!({"status": "ok"}));
        let list = json_of(get(&f, "/v1/models").await).await;
        let ids: Vec<&str> = list["data"].as_array().expect("data").iter().map(|m| m["id"].as_str().expect("id")).collect();
        assert_eq!(ids, ["smollm2", "nomic-embed-text"]);
        let resp = get(&f, "/api/tags").await;
        assert_eq!(resp.status(), 404);
        assert_eq!(json_of(resp).await, json!({"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}));
        // No Host check: a proxy's own Host header is fine.
        let resp = client().get(format!("{}/v1/models", f.url())).header("Host", "node-a.example:8080").send().await.expect("send");
        assert_eq!(resp.status(), 200);
        let resp = post(&f, "/v1/chat/completions", json!({"model": "smollm2:latest", "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(json_of(resp).await["error"], json!({"message": "The model `smollm2:latest` does not exist.", "type": "not_found_error", "code": 404}));
        f.add_model("qwen2.5-0.5b-instruct");
        let resp = post(&f, "/v1/chat/completions", json!({"model": "qwen2.5-0.5b-instruct", "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(resp.status(), 200);
        // No model: the first, as llama-server serves its one model.
        let v = json_of(post(&f, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi"}]})).await).await;
        assert_eq!(v["model"], "smollm2");
    })
    .await;
}

#[tokio::test]
async fn api_key_is_required_except_on_health() {
    bounded(async {
        let f = openai().api_key("sk-node").start().await;
        let body = json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]});
        let resp = post(&f, "/v1/chat/completions", body.clone()).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(json_of(resp).await, json!({"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}}));
        assert_eq!(get(&f, "/v1/models").await.status(), 401);
        assert_eq!(get(&f, "/health").await.status(), 200);
        let url = format!("{}/v1/chat/completions", f.url());
        let resp = client().post(&url).bearer_auth("sk-wrong").json(&body).send().await.expect("send");
        assert_eq!(resp.status(), 401);
        let resp = client().post(&url).bearer_auth("sk-node").json(&body).send().await.expect("send");
        assert_eq!(resp.status(), 200);
        let resp = client().post(&url).header("x-api-key", "sk-node").json(&body).send().await.expect("send");
        assert_eq!(resp.status(), 200);
        let resp = post(&f, "/v1/messages", json!({"model": "smollm2", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(json_of(resp).await, json!({"type": "error", "error": {"type": "authentication_error", "message": "Invalid API Key"}}));
    })
    .await;
}

#[tokio::test]
async fn chat_completions_like_llama_server() {
    bounded(async {
        let f = openai().start().await;
        let body = json!({"model": "smollm2", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]});
        let resp = post(&f, "/v1/chat/completions", body.clone()).await;
        assert_eq!(content_type(&resp), "application/json");
        let v = json_of(resp).await;
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": reply_text(4)}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"], json!({"completion_tokens": 4, "prompt_tokens": 4, "total_tokens": 8}));
        assert_eq!(f.last_body("/v1/chat/completions"), Some(body.clone()));

        let mut streamed = body;
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        streamed["max_tokens"] = json!(2);
        let resp = post(&f, "/v1/chat/completions", streamed).await;
        assert_eq!(content_type(&resp), "text/event-stream");
        let events = sse(resp).await;
        assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
        let chunks = datas(&events);
        assert_eq!(chunks.len(), 5, "role, 2 tokens, finish, usage: {chunks:?}");
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": null}));
        let text: String = chunks[1..3].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().expect("text")).collect();
        assert_eq!(text, reply_text(2));
        assert_eq!(chunks[3]["choices"][0], json!({"finish_reason": "length", "index": 0, "delta": {}}));
        assert_eq!(chunks[4]["choices"], json!([]));
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 2);
        assert_eq!(f.requests("/v1/chat/completions"), 2);
    })
    .await;
}

#[tokio::test]
async fn tool_calls_then_text_after_the_result() {
    bounded(async {
        let f = openai().start().await;
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
        let ask = json!({"model": "smollm2", "tools": tools, "messages": [{"role": "user", "content": "weather in Paris?"}]});
        let v = json_of(post(&f, "/v1/chat/completions", ask.clone()).await).await;
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{\"city\":\"fake\"}"}));
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);

        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let chunks = datas(&sse(post(&f, "/v1/chat/completions", streamed).await).await);
        let args: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
        assert_eq!(args, "{\"city\":\"fake\"}");
        assert!(chunks.iter().filter(|c| c["choices"][0]["delta"]["tool_calls"].is_array()).count() >= 3, "arguments come in pieces");
        assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "tool_calls");

        let mut answered = ask;
        answered["messages"] = json!([
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": call["id"], "type": "function", "function": call["function"]}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ]);
        let v = json_of(post(&f, "/v1/chat/completions", answered.clone()).await).await;
        assert_eq!(v["choices"][0]["message"]["content"], reply_text(4));

        // Strict: arguments as an object (Ollama's shape) is refused.
        answered["messages"][1]["tool_calls"][0]["function"]["arguments"] = json!({"city": "Paris"});
        let resp = post(&f, "/v1/chat/completions", answered).await;
        assert_eq!(resp.status(), 400);
        let e = json_of(resp).await;
        assert_eq!(e["error"]["code"], 400);
        assert_eq!(e["error"]["message"], "messages[1].tool_calls[0].function.arguments must be a string of JSON");
    })
    .await;
}

#[tokio::test]
async fn json_mode_and_validation() {
    bounded(async {
        let f = openai().start().await;
        let v = json_of(post(&f, "/v1/chat/completions", json!({"model": "smollm2", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "x"}]})).await).await;
        let reply: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().expect("text")).expect("JSON reply");
        assert_eq!(reply, json!({"reply": reply_text(4)}));
        for (body, want) in [
            (json!({"model": "smollm2", "messages": []}), "'messages' must be a non-empty array"),
            (json!({"model": "smollm2", "messages": [{"role": "tool", "content": "x"}]}), "messages[0]: a tool message needs tool_call_id"),
            (json!({"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "AAAA"}}]}]}), "messages[0].content[0]: image_url.url must be a data: or http(s) URL"),
            (json!({"model": "smollm2", "response_format": {"type": "json_schema"}, "messages": [{"role": "user", "content": "x"}]}), "response_format: type must be text, json_object or json_schema with json_schema.schema"),
        ] {
            let resp = post(&f, "/v1/chat/completions", body).await;
            assert_eq!(resp.status(), 400);
            assert_eq!(json_of(resp).await["error"]["message"], want);
        }
    })
    .await;
}

#[tokio::test]
async fn completions_embeddings_and_faults() {
    bounded(async {
        let f = openai().start().await;
        let v = json_of(post(&f, "/v1/completions", json!({"model": "smollm2", "prompt": "once upon", "max_tokens": 3})).await).await;
        assert_eq!(v["choices"][0]["text"], reply_text(3));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        let events = sse(post(&f, "/v1/completions", json!({"model": "smollm2", "prompt": "x", "stream": true, "stream_options": {"include_usage": true}})).await).await;
        let chunks = datas(&events);
        assert_eq!(chunks.len(), 6, "4 tokens, finish, usage");
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 4);

        let v = json_of(post(&f, "/v1/embeddings", json!({"model": "nomic-embed-text", "input": ["a", "b"]})).await).await;
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"].as_array().expect("floats").len(), 384);
        assert_eq!(v["usage"]["prompt_tokens"], 2);

        f.set_fault(Fault::busy()).await;
        assert_eq!(post(&f, "/v1/chat/completions", json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}]})).await.status(), 503);
        f.clear_fault().await;
        f.set_fault(Fault::DieMidStream { after_chunks: 2 }).await;
        let resp = post(&f, "/v1/chat/completions", json!({"model": "smollm2", "stream": true, "messages": [{"role": "user", "content": "x"}]})).await;
        assert!(resp.text().await.is_err(), "the stream is cut");
        assert_eq!(f.aborted(), 1);
    })
    .await;
}

#[tokio::test]
async fn anthropic_messages_whole_streamed_and_tools() {
    bounded(async {
        let f = openai().start().await;
        let body = json!({"model": "smollm2", "max_tokens": 100, "system": "be brief", "messages": [{"role": "user", "content": "hello"}]});
        let v = json_of(post(&f, "/v1/messages", body.clone()).await).await;
        assert!(v["id"].as_str().expect("id").starts_with("msg_"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"], json!([{"type": "text", "text": reply_text(4)}]));
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"], json!({"input_tokens": 3, "output_tokens": 4}));

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        streamed["max_tokens"] = json!(2);
        let events = sse(post(&f, "/v1/messages", streamed).await).await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]);
        let data = datas(&events);
        for (name, d) in names.iter().zip(&data) {
            assert_eq!(d["type"], *name);
        }
        assert_eq!(data[6]["delta"]["stop_reason"], "max_tokens");
        assert_eq!(data[6]["usage"]["output_tokens"], 2);

        let mut with_tools = body;
        with_tools["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
        let v = json_of(post(&f, "/v1/messages", with_tools.clone()).await).await;
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][0]["input"], json!({"city": "fake"}));
        with_tools["stream"] = json!(true);
        let data = datas(&sse(post(&f, "/v1/messages", with_tools).await).await);
        let partial: String = data.iter().filter_map(|d| d["delta"]["partial_json"].as_str()).collect();
        assert_eq!(partial, "{\"city\":\"fake\"}");

        let resp = post(&f, "/v1/messages", json!({"model": "smollm2", "messages": [{"role": "user", "content": "x"}]})).await;
        assert_eq!(resp.status(), 400);
        let e = json_of(resp).await;
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "invalid_request_error");

        let off = openai().native_messages(false).native_responses(false).start().await;
        assert_eq!(post(&off, "/v1/messages", json!({})).await.status(), 404);
        assert_eq!(post(&off, "/v1/responses", json!({})).await.status(), 404);
    })
    .await;
}

#[tokio::test]
async fn responses_whole_and_streamed() {
    bounded(async {
        let f = openai().start().await;
        let body = json!({"model": "smollm2", "instructions": "be brief", "input": "hello"});
        let v = json_of(post(&f, "/v1/responses", body.clone()).await).await;
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"][0]["content"][0], json!({"type": "output_text", "text": reply_text(4), "annotations": []}));
        assert_eq!(v["usage"]["output_tokens"], 4);

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let events = sse(post(&f, "/v1/responses", streamed).await).await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"response.created"));
        assert_eq!(names.last(), Some(&"response.completed"));
        assert_eq!(names.iter().filter(|n| **n == "response.output_text.delta").count(), 4);
        let data = datas(&events);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["sequence_number"], i);
        }
        assert_eq!(data.last().expect("last")["response"]["usage"]["output_tokens"], 4);

        let mut tools = body.clone();
        tools["tools"] = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]);
        let v = json_of(post(&f, "/v1/responses", tools).await).await;
        assert_eq!(v["output"][0]["type"], "function_call");
        assert_eq!(v["output"][0]["arguments"], "{}");

        let mut cut = body.clone();
        cut["max_output_tokens"] = json!(1);
        let v = json_of(post(&f, "/v1/responses", cut).await).await;
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");

        let mut stateful = body;
        stateful["previous_response_id"] = json!("resp_1");
        let resp = post(&f, "/v1/responses", stateful).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(json_of(resp).await["error"]["code"], 400);
    })
    .await;
}

#[tokio::test]
async fn ollama_serves_messages_and_responses_by_version() {
    bounded(async {
        let messages = json!({"model": "llama3.2:1b", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let responses = json!({"model": "llama3.2:1b", "input": "hi"});
        for (version, has_responses, has_messages) in [("0.13.2", false, false), ("0.13.3", true, false), ("0.14.0", true, true)] {
            let f = FakeOllama::builder().models(["llama3.2:1b"]).version(version).start().await;
            let r = post(&f, "/v1/responses", responses.clone()).await;
            assert_eq!(r.status() == 200, has_responses, "{version} responses: {}", r.status());
            let m = post(&f, "/v1/messages", messages.clone()).await;
            assert_eq!(m.status() == 200, has_messages, "{version} messages: {}", m.status());
            if !has_messages {
                assert_eq!(m.text().await.expect("body"), "404 page not found");
            }
        }
        let f = FakeOllama::builder().models(["llama3.2:1b"]).start().await;
        // Ollama names: `llama3.2:1b` and its long forms; Ollama's messages.
        let v = json_of(post(&f, "/v1/messages", messages.clone()).await).await;
        assert_eq!(v["content"][0]["text"], reply_text(8));
        let resp = post(&f, "/v1/messages", json!({"model": "nope", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(json_of(resp).await, json!({"type": "error", "error": {"type": "not_found_error", "message": "model 'nope' not found"}}));
        let resp = post(&f, "/v1/responses", json!({"model": "nope", "input": "hi"})).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(json_of(resp).await["error"], json!({"message": "model 'nope' not found", "type": "not_found_error", "param": null, "code": null}));
        assert_eq!(f.last_body("/v1/responses"), Some(json!({"model": "nope", "input": "hi"})));
    })
    .await;
}
