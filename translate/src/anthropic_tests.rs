use serde_json::{Value, json};

use crate::reply::{run_stream, sse_of};
use crate::{Dialect, Plan, Timing, request};

fn sent(body: Value) -> (crate::Reply, Value) {
    match request(Dialect::AnthropicMessages, body.to_string().as_bytes()) {
        Ok(Plan::Forward(u, r)) => {
            assert_eq!(u.path, "/v1/chat/completions");
            (r, serde_json::from_slice(&u.body).expect("JSON"))
        }
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn messages_request_maps() {
    let (r, v) = sent(json!({
    "model": "m", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "top_k": 20, "stop_sequences": ["END"],
    "system": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "text", "text": "checking"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}, {"type": "text", "text": "and?"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true}]},
    ]}));
    assert!(!r.stream());
    assert_eq!(
        v,
        json!({
        "model": "m", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "top_k": 20, "stop": ["END"], "stream": false,
        "chat_template_kwargs": {"enable_thinking": true},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": false,
        "messages": [
            {"role": "system", "content": "be brief\nbe kind"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
            {"role": "assistant", "content": "checking", "reasoning_content": "hm", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "user", "content": [{"type": "text", "text": "and?"}]},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        ]})
    );
    for (choice, want) in [
        ("auto", json!("auto")),
        ("any", json!("required")),
        ("none", json!("none")),
    ] {
        let (_, v) = sent(
            json!({"model": "m", "max_tokens": 5, "stream": true, "tool_choice": {"type": choice},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}], "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(v["tool_choice"], want);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }
    // OpenAI refuses tool_choice without tools; without tools it is dropped.
    let (_, v) = sent(
        json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert!(v.get("tool_choice").is_none());
}

#[test]
fn bad_messages_requests_name_the_field() {
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: is required and must be positive",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "messages: must be a non-empty list",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role: must be user or assistant",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}),
            "messages[0].content[0].type: a user message cannot carry a \"tool_use\" block",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]}),
            "messages[0].content[0].source.type: must be base64 or url",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools[0].input_schema: is required (only custom tools can be translated)",
        ),
    ];
    for (body, want) in cases {
        match request(Dialect::AnthropicMessages, body.to_string().as_bytes()) {
            Err(e) => assert_eq!(e.to_string(), want),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn whole_reply_is_a_message() {
    let (r, _) = sent(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    );
    let node = json!({"id": "chatcmpl-abc", "created": 1, "choices": [{"message": {"role": "assistant", "content": "Hi", "reasoning_content": "hm",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}});
    let a = r.complete(200, node.to_string().as_bytes(), Timing::default());
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).expect("JSON"),
        json!({
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "thinking", "thinking": "hm", "signature": ""}, {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 7, "output_tokens": 3}})
    );
    for (finish, want) in [("stop", "end_turn"), ("length", "max_tokens")] {
        let node = json!({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
        let v: Value = serde_json::from_slice(
            &r.complete(200, node.to_string().as_bytes(), Timing::default())
                .body,
        )
        .expect("JSON");
        assert_eq!(v["stop_reason"], want);
    }
    let e = r.complete(
        429,
        br#"{"error":{"message":"slow down"}}"#,
        Timing::default(),
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&e.body).expect("JSON"),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
}

fn events(s: &str) -> Vec<(String, Value)> {
    s.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event").to_owned();
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("JSON");
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

#[test]
fn stream_events_in_order_with_blocks_per_kind() {
    let (r, _) = sent(
        json!({"model": "m", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(r.content_type(), "text/event-stream");
    let c = |delta: Value, finish: Option<&str>| json!({"id": "chatcmpl-9", "created": 1, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let node = sse_of(&[
        c(json!({"role": "assistant", "content": null}), None),
        c(json!({"reasoning_content": "hm"}), None),
        c(json!({"content": "Hi"}), None),
        c(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}),
            None,
        ),
        c(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            None,
        ),
        c(json!({}), Some("tool_calls")),
        json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}}),
    ]);
    let out = events(&run_stream(&r, &node, Timing::default()));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(out[0].1["message"]["id"], "msg_9");
    assert_eq!(out[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        out[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "hm"})
    );
    assert_eq!(out[4].1["index"], 1);
    assert_eq!(
        out[5].1["delta"],
        json!({"type": "text_delta", "text": "Hi"})
    );
    assert_eq!(
        out[7].1["content_block"],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
    );
    assert_eq!(
        out[9].1["delta"],
        json!({"type": "input_json_delta", "partial_json": ":1}"})
    );
    assert_eq!(out[11].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        out[11].1["usage"],
        json!({"input_tokens": 4, "output_tokens": 6})
    );

    let cut = sse_of(&[c(json!({"content": "Hi"}), None)]).replace("data: [DONE]\n\n", "");
    let out = events(&run_stream(&r, &cut, Timing::default()));
    assert_eq!(out.last().expect("events").0, "error");
}
