//! Round trips through the testkit's fake OpenAI-compatible node: a client
//! request is translated, sent to the fake (which refuses malformed
//! requests), and its answer translated back and checked as the client
//! would see it.

use std::time::{Duration, Instant};

use herd_testkit::{Api, FakeOllama, reply_text};
use herd_translate::{Dialect, Plan, Timing, parse_models, request, tags_from_models};
use serde_json::{Value, json};

async fn node() -> FakeOllama {
    FakeOllama::builder()
        .api(Api::OpenAi)
        .models(["smollm2", "nomic-embed-text"])
        .tokens(4)
        .ttft(Duration::from_millis(1))
        .tokens_per_sec(2000.0)
        .start()
        .await
}

/// What the client gets: status, content type and body.
async fn exchange(node: &FakeOllama, d: Dialect, body: Value) -> (u16, &'static str, Vec<u8>) {
    let plan = request(d, body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
    let (up, reply) = match plan {
        Plan::Forward(up, reply) => (up, reply),
        Plan::Answer(a) => return (a.status, a.content_type, a.body),
    };
    let start = Instant::now();
    let mut resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}{}", node.url(), up.path))
        .header("content-type", "application/json")
        .body(up.body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if !up.stream || status != 200 {
        let bytes = resp.bytes().await.expect("body");
        let a = reply.complete(
            status,
            &bytes,
            Timing {
                total_ns: nanos(start.elapsed()),
                first_token_ns: None,
            },
        );
        return (a.status, a.content_type, a.body);
    }
    let content_type = reply.content_type();
    let mut s = reply.into_stream();
    let mut out = Vec::new();
    let mut first = None;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        first.get_or_insert_with(|| nanos(start.elapsed()));
        out.extend(s.feed(&chunk));
    }
    assert!(s.is_done(), "the node's stream ended");
    out.extend(s.finish(Timing {
        total_ns: nanos(start.elapsed()),
        first_token_ns: first,
    }));
    (200, content_type, out)
}

fn json_body(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

fn ndjson(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect()
}

fn sse_data(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.split_once("data: ").expect("data").1).expect("JSON"))
        .collect()
}

#[tokio::test]
async fn ollama_chat_whole_streamed_and_with_tools() {
    let node = node().await;
    let ask = json!({"model": "smollm2", "stream": false, "messages": [{"role": "user", "content": "hello there"}], "options": {"temperature": 0.1, "top_k": 5}});
    let (status, ct, body) = exchange(&node, Dialect::OllamaChat, ask.clone()).await;
    assert_eq!((status, ct), (200, "application/json"));
    let v = json_body(&body);
    assert_eq!(v["message"]["content"], reply_text(4));
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["eval_count"], 4);
    assert_eq!(v["prompt_eval_count"], 2);
    assert!(v["total_duration"].as_u64().expect("total") > 0);
    assert_eq!(
        node.last_body("/v1/chat/completions").expect("sent")["top_k"],
        5
    );

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["options"] = json!({"num_predict": 3});
    let (_, ct, body) = exchange(&node, Dialect::OllamaChat, streamed).await;
    assert_eq!(ct, "application/x-ndjson");
    let lines = ndjson(&body);
    let text: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(text, reply_text(3));
    let last = lines.last().expect("lines");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 3);
    assert!(last["eval_duration"].as_u64().expect("eval") > 0);

    let mut tools = ask;
    tools["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let (_, _, body) = exchange(&node, Dialect::OllamaChat, tools.clone()).await;
    let v = json_body(&body);
    let call = &v["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], json!({"city": "fake"}));
    // The Ollama way back: the call as it came, a tool message by name.
    tools["messages"] = json!([
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "fake"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
    ]);
    let (status, _, body) = exchange(&node, Dialect::OllamaChat, tools.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["message"]["content"], reply_text(4));
    tools["stream"] = json!(true);
    tools["messages"] = json!([{"role": "user", "content": "hello there"}]);
    let (_, _, body) = exchange(&node, Dialect::OllamaChat, tools).await;
    let lines = ndjson(&body);
    assert_eq!(
        lines[0]["message"]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "fake"})
    );
}

#[tokio::test]
async fn ollama_generate_format_images_embeddings_and_errors() {
    let node = node().await;
    let (_, _, body) = exchange(&node, Dialect::OllamaGenerate, json!({"model": "smollm2", "prompt": "why?", "system": "be brief", "images": ["iVBORw0KGgo="], "format": "json", "stream": false})).await;
    let v = json_body(&body);
    let reply: Value =
        serde_json::from_str(v["response"].as_str().expect("response")).expect("JSON reply");
    assert_eq!(reply, json!({"reply": reply_text(4)}));
    assert_eq!(node.requests("/v1/chat/completions"), 1);

    let (_, _, body) = exchange(
        &node,
        Dialect::OllamaGenerate,
        json!({"model": "smollm2", "prompt": "once", "raw": true}),
    )
    .await;
    let lines = ndjson(&body);
    let text: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(text, reply_text(4));
    assert_eq!(node.requests("/v1/completions"), 1);

    let (_, _, body) = exchange(
        &node,
        Dialect::OllamaEmbed,
        json!({"model": "nomic-embed-text", "input": ["a", "b"]}),
    )
    .await;
    let v = json_body(&body);
    assert_eq!(v["embeddings"].as_array().expect("list").len(), 2);
    assert_eq!(v["embeddings"][0].as_array().expect("vector").len(), 384);
    let (_, _, body) = exchange(
        &node,
        Dialect::OllamaEmbeddings,
        json!({"model": "nomic-embed-text", "prompt": "a"}),
    )
    .await;
    assert_eq!(
        json_body(&body)["embedding"]
            .as_array()
            .expect("vector")
            .len(),
        384
    );

    let (status, _, body) = exchange(
        &node,
        Dialect::OllamaChat,
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        json_body(&body),
        json!({"error": "The model `nope` does not exist."})
    );
    // A load request never reaches the node.
    let before = node.total_requests();
    let (status, _, _) = exchange(
        &node,
        Dialect::OllamaChat,
        json!({"model": "smollm2", "messages": []}),
    )
    .await;
    assert_eq!((status, node.total_requests()), (200, before));
}

#[tokio::test]
async fn anthropic_messages_round_trip_with_a_tool() {
    let node = node().await;
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let ask = json!({"model": "smollm2", "max_tokens": 100, "system": "be brief", "tools": tools, "messages": [{"role": "user", "content": "weather?"}]});
    let (_, _, body) = exchange(&node, Dialect::AnthropicMessages, ask.clone()).await;
    let v = json_body(&body);
    assert_eq!(v["stop_reason"], "tool_use");
    let block = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("tool_use")
        .clone();
    assert_eq!(block["input"], json!({"city": "fake"}));
    let mut answered = ask.clone();
    answered["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [block.clone()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "sunny"}]},
    ]);
    answered["stream"] = json!(true);
    let (_, ct, body) = exchange(&node, Dialect::AnthropicMessages, answered).await;
    assert_eq!(ct, "text/event-stream");
    let events = sse_data(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, reply_text(4));
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 4);
    assert_eq!(events.last().expect("events")["type"], "message_stop");
}

#[tokio::test]
async fn responses_round_trip_whole_and_streamed() {
    let node = node().await;
    let (_, _, body) = exchange(&node, Dialect::OpenAiResponses, json!({"model": "smollm2", "instructions": "be brief", "input": "hello", "max_output_tokens": 2})).await;
    let v = json_body(&body);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["output"][0]["content"][0]["text"], reply_text(2));
    let (_, _, body) = exchange(&node, Dialect::OpenAiResponses, json!({"model": "smollm2", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}], "stream": true})).await;
    let events = sse_data(&body);
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(text, reply_text(4));
    let done = events.last().expect("events");
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn tags_from_the_nodes_model_list() {
    let node = node().await;
    let list = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{}/v1/models", node.url()))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    let models = parse_models(&list).expect("models");
    let tags = json_body(&tags_from_models(&models));
    let names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["smollm2", "nomic-embed-text"]);
}
