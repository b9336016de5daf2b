use serde_json::{Value, json};

use crate::reply::{run_stream, sse_of};
use crate::{Dialect, Plan, Timing, request};

fn forward(d: Dialect, body: Value) -> (crate::Upstream, crate::Reply, Value) {
    match request(d, body.to_string().as_bytes()) {
        Ok(Plan::Forward(u, r)) => {
            let sent = serde_json::from_slice(&u.body).expect("JSON");
            (u, r, sent)
        }
        other => panic!("{body}: {other:?}"),
    }
}

fn error(d: Dialect, body: Value) -> String {
    match request(d, body.to_string().as_bytes()) {
        Err(e) => e.to_string(),
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn chat_request_fields_map() {
    let cases = [
        (
            json!({}),
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
        (
            json!({"stream": false, "keep_alive": "5m"}),
            json!({"stream": false}),
        ),
        (
            json!({"stream": false, "format": "json"}),
            json!({"stream": false, "response_format": {"type": "json_object"}}),
        ),
        (
            json!({"stream": false, "format": {"type": "object", "properties": {"a": {"type": "string"}}}}),
            json!({"stream": false, "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
        ),
        (
            json!({"stream": false, "format": ""}),
            json!({"stream": false}),
        ),
        (
            json!({"stream": false, "think": true}),
            json!({"stream": false, "chat_template_kwargs": {"enable_thinking": true}}),
        ),
        (
            json!({"stream": false, "think": "high"}),
            json!({"stream": false, "reasoning_effort": "high"}),
        ),
        (
            json!({"stream": false, "options": {"temperature": 0.2, "top_p": 0.9, "seed": 42, "num_predict": 64, "stop": ["\n"], "presence_penalty": 0.1, "frequency_penalty": 0.3, "num_ctx": 8192, "num_gpu": 1}}),
            json!({"stream": false, "temperature": 0.2, "top_p": 0.9, "seed": 42, "max_tokens": 64, "stop": ["\n"], "presence_penalty": 0.1, "frequency_penalty": 0.3}),
        ),
        (
            json!({"stream": false, "options": {"top_k": 40, "min_p": 0.05, "typical_p": 0.7, "repeat_last_n": 64, "repeat_penalty": 1.1}}),
            json!({"stream": false, "top_k": 40, "min_p": 0.05, "typical_p": 0.7, "repeat_last_n": 64, "repeat_penalty": 1.1, "repetition_penalty": 1.1}),
        ),
        (
            json!({"stream": false, "options": {"num_predict": -1, "stop": "END"}}),
            json!({"stream": false, "stop": ["END"]}),
        ),
    ];
    for (extra, want) in cases {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (u, r, sent) = forward(Dialect::OllamaChat, body.clone());
        assert_eq!(u.path, "/v1/chat/completions");
        assert_eq!(u.model, "m");
        let mut expected = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in want.as_object().expect("object") {
            expected[k] = v.clone();
        }
        assert_eq!(sent, expected, "{extra}");
        assert_eq!(u.stream, r.stream());
        assert_eq!(
            r.content_type(),
            if u.stream {
                "application/x-ndjson"
            } else {
                "application/json"
            }
        );
    }
}

#[test]
fn chat_messages_images_and_tools_map() {
    let png = "iVBORw0KGgoAAAANSUhEUg==";
    let body = json!({"model": "m", "stream": false,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [png, "/9j/4AAQ"]},
        {"role": "assistant", "content": "", "thinking": "look first", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "call_x", "function": {"name": "get_time", "arguments": {}}},
        ]},
        {"role": "tool", "tool_name": "get_time", "content": "noon"},
        {"role": "tool", "content": "sunny"},
    ]});
    let (_, _, sent) = forward(Dialect::OllamaChat, body);
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "look first", "tool_calls": [
                {"id": "call_2_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_x", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_x", "content": "noon"},
            {"role": "tool", "tool_call_id": "call_2_0", "content": "sunny"},
        ])
    );
}

#[test]
fn bad_ollama_requests_name_the_field() {
    let m = |msgs: Value| json!({"model": "m", "messages": msgs});
    let cases = [
        (
            Dialect::OllamaChat,
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model: is required",
        ),
        (
            Dialect::OllamaChat,
            m(json!([{"role": "robot", "content": "x"}])),
            "messages[0].role: must be system, user, assistant or tool",
        ),
        (
            Dialect::OllamaChat,
            m(json!([{"role": "user", "content": 3}])),
            "messages[0].content: must be a string",
        ),
        (
            Dialect::OllamaChat,
            m(json!([{"role": "user", "content": "x", "images": ["not base64!"]}])),
            "messages[0].images[0]: must be base64-encoded image data",
        ),
        (
            Dialect::OllamaChat,
            m(json!([{"role": "assistant", "tool_calls": [{"function": {}}]}])),
            "messages[0].tool_calls[0].function.name: is required",
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}),
            "options.temperature: must be a number",
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"seed": 1.5}}),
            "options.seed: must be an integer",
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "format": "yaml"}),
            "format: must be \"json\" or a JSON Schema object",
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "think": "max"}),
            "think: must be true, false, \"low\", \"medium\" or \"high\"",
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
            "tools[0].function: is required",
        ),
        (
            Dialect::OllamaGenerate,
            json!({"model": "m", "prompt": "x", "raw": true, "images": ["iVBOR"]}),
            "images: cannot be sent with raw or suffix",
        ),
        (
            Dialect::OllamaEmbed,
            json!({"model": "m", "input": [1, 2]}),
            "input: must be a string or a list of strings",
        ),
        (
            Dialect::OllamaEmbeddings,
            json!({"model": "m", "prompt": ["x"]}),
            "prompt: must be a string",
        ),
    ];
    for (d, body, want) in cases {
        assert_eq!(error(d, body.clone()), want, "{body}");
    }
    assert!(matches!(
        request(Dialect::OllamaChat, b"{nope"),
        Err(crate::TranslateError::Body(_))
    ));
}

#[test]
fn generate_goes_to_chat_unless_raw() {
    let (u, _, sent) = forward(
        Dialect::OllamaGenerate,
        json!({"model": "m", "prompt": "why?", "system": "be brief", "images": ["R0lGODlh"], "stream": false, "template": "{{ .Prompt }}", "context": [1, 2]}),
    );
    assert_eq!(u.path, "/v1/chat/completions");
    assert_eq!(
        sent,
        json!({"model": "m", "stream": false, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "why?"}, {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh"}}]},
        ]})
    );
    let (u, _, sent) = forward(
        Dialect::OllamaGenerate,
        json!({"model": "m", "prompt": "<s>once", "raw": true, "options": {"num_predict": 5}}),
    );
    assert_eq!(u.path, "/v1/completions");
    assert_eq!(
        sent,
        json!({"model": "m", "prompt": "<s>once", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}})
    );
    let (u, _, sent) = forward(
        Dialect::OllamaGenerate,
        json!({"model": "m", "prompt": "def f(", "suffix": "return x", "stream": false}),
    );
    assert_eq!(u.path, "/v1/completions");
    assert_eq!(sent["suffix"], "return x");
}

#[test]
fn nothing_to_generate_is_answered_here() {
    let cases = [
        (
            Dialect::OllamaChat,
            json!({"model": "m"}),
            json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": true}),
        ),
        (
            Dialect::OllamaChat,
            json!({"model": "m", "messages": [], "keep_alive": 0}),
            json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done_reason": "unload", "done": true}),
        ),
        (
            Dialect::OllamaGenerate,
            json!({"model": "m", "prompt": ""}),
            json!({"model": "m", "response": "", "done": true, "done_reason": "load"}),
        ),
        (
            Dialect::OllamaEmbed,
            json!({"model": "m", "input": []}),
            json!({"model": "m", "embeddings": []}),
        ),
        (
            Dialect::OllamaEmbeddings,
            json!({"model": "m"}),
            json!({"embedding": []}),
        ),
    ];
    for (d, body, want) in cases {
        match request(d, body.to_string().as_bytes()) {
            Ok(Plan::Answer(a)) => {
                assert_eq!(a.status, 200);
                assert_eq!(
                    serde_json::from_slice::<Value>(&a.body).expect("JSON"),
                    want,
                    "{body}"
                );
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn embeddings_both_ways() {
    let (u, r, sent) = forward(
        Dialect::OllamaEmbed,
        json!({"model": "e", "input": ["a", "b"], "dimensions": 8, "truncate": true}),
    );
    assert_eq!(u.path, "/v1/embeddings");
    assert_eq!(
        sent,
        json!({"model": "e", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8})
    );
    let node = json!({"object": "list", "model": "e", "usage": {"prompt_tokens": 2, "total_tokens": 2},
        "data": [{"index": 1, "embedding": [0.5, 0.5], "object": "embedding"}, {"index": 0, "embedding": [1.0, 0.0], "object": "embedding"}]});
    let a = r.complete(
        200,
        node.to_string().as_bytes(),
        Timing {
            total_ns: 1000,
            first_token_ns: None,
        },
    );
    let v: Value = serde_json::from_slice(&a.body).expect("JSON");
    assert_eq!(
        v,
        json!({"model": "e", "embeddings": [[1.0, 0.0], [0.5, 0.5]], "total_duration": 1000, "prompt_eval_count": 2})
    );

    let (_, r, sent) = forward(
        Dialect::OllamaEmbeddings,
        json!({"model": "e", "prompt": "a"}),
    );
    assert_eq!(
        sent,
        json!({"model": "e", "input": ["a"], "encoding_format": "float"})
    );
    let a = r.complete(200, node.to_string().as_bytes(), Timing::default());
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).expect("JSON"),
        json!({"embedding": [1.0, 0.0]})
    );
    let bad = r.complete(
        200,
        br#"{"data":[{"embedding":"AAAA"}]}"#,
        Timing::default(),
    );
    assert_eq!(bad.status, 502);
}

fn node_whole(message: Value, finish: &str, timings: Option<Value>) -> Vec<u8> {
    let mut v = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_714_564_800, "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}});
    if let Some(t) = timings {
        v["timings"] = t;
    }
    v.to_string().into_bytes()
}

#[test]
fn whole_replies_carry_ollama_counts_and_durations() {
    let (_, chat, _) = forward(
        Dialect::OllamaChat,
        json!({"model": "m:latest", "stream": false, "messages": [{"role": "user", "content": "x"}]}),
    );
    let t = Timing {
        total_ns: 90_000_000,
        first_token_ns: None,
    };
    let a = chat.complete(
        200,
        &node_whole(
            json!({"role": "assistant", "content": "Hello", "reasoning_content": "hm"}),
            "length",
            None,
        ),
        t,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).expect("JSON"),
        json!({
            "model": "m:latest", "created_at": "2024-05-01T12:00:00Z",
            "message": {"role": "assistant", "content": "Hello", "thinking": "hm"},
            "done": true, "done_reason": "length",
            "total_duration": 90_000_000, "prompt_eval_count": 12, "eval_count": 5, "eval_duration": 90_000_000,
        })
    );
    // llama.cpp's own timings win.
    let a = chat.complete(200, &node_whole(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1]}"}}]}), "tool_calls",
        Some(json!({"prompt_ms": 2.5, "predicted_ms": 40.0}))), t);
    let v: Value = serde_json::from_slice(&a.body).expect("JSON");
    assert_eq!(
        v["message"],
        json!({"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": [1]}}}]})
    );
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["prompt_eval_duration"], 2_500_000);
    assert_eq!(v["eval_duration"], 40_000_000);

    let (_, generate, _) = forward(
        Dialect::OllamaGenerate,
        json!({"model": "m", "prompt": "x", "stream": false}),
    );
    let a = generate.complete(
        200,
        &node_whole(json!({"role": "assistant", "content": "Hi"}), "stop", None),
        t,
    );
    let v: Value = serde_json::from_slice(&a.body).expect("JSON");
    assert_eq!(v["response"], "Hi");
    assert!(v.get("message").is_none());

    let e = chat.complete(
        404,
        br#"{"error":{"message":"no such model","code":404}}"#,
        t,
    );
    assert_eq!(
        (e.status, e.body),
        (404, br#"{"error":"no such model"}"#.to_vec())
    );
    let garbage = chat.complete(200, b"<html>", t);
    assert_eq!(garbage.status, 502);
}

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_714_564_800, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn a_stream_becomes_ndjson_with_a_timed_last_line() {
    let (_, chat, _) = forward(
        Dialect::OllamaChat,
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    );
    let node = sse_of(&[
        chunk(json!({"role": "assistant", "content": null}), None),
        chunk(json!({"reasoning_content": "hm"}), None),
        chunk(json!({"content": "Hé"}), None),
        chunk(json!({"content": "llo"}), None),
        chunk(json!({}), Some("stop")),
        json!({"id": "chatcmpl-1", "created": 1_714_564_800, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ]);
    let t = Timing {
        total_ns: 50_000_000,
        first_token_ns: Some(10_000_000),
    };
    let out = lines(&run_stream(&chat, &node, t));
    let at = "2024-05-01T12:00:00Z";
    assert_eq!(
        out,
        vec![
            json!({"model": "m", "created_at": at, "message": {"role": "assistant", "content": "", "thinking": "hm"}, "done": false}),
            json!({"model": "m", "created_at": at, "message": {"role": "assistant", "content": "Hé"}, "done": false}),
            json!({"model": "m", "created_at": at, "message": {"role": "assistant", "content": "llo"}, "done": false}),
            json!({"model": "m", "created_at": at, "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
            "total_duration": 50_000_000, "prompt_eval_count": 3, "prompt_eval_duration": 10_000_000, "eval_count": 2, "eval_duration": 40_000_000}),
        ]
    );
}

#[test]
fn streamed_tool_calls_are_gathered_and_sent_whole() {
    let (_, chat, _) = forward(
        Dialect::OllamaChat,
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    );
    let node = sse_of(&[
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ]);
    let out = lines(&run_stream(&chat, &node, Timing::default()));
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0]["message"]["tool_calls"],
        json!([
            {"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {"city": "Paris"}}},
            {"id": "call_b", "function": {"index": 1, "name": "g", "arguments": {}}},
        ])
    );
    assert_eq!(out[1]["done"], true);
    assert_eq!(out[1]["done_reason"], "stop");
}

#[test]
fn broken_streams_end_with_an_error_line() {
    let (_, generate, _) = forward(
        Dialect::OllamaGenerate,
        json!({"model": "m", "prompt": "x", "raw": true}),
    );
    let text = |t: &str| json!({"id": "cmpl-1", "object": "text_completion", "created": 1_714_564_800, "choices": [{"index": 0, "text": t, "finish_reason": null}]});
    // Cut off: no finish reason, no [DONE].
    let cut = format!("data: {}\n\n", text("Once"));
    let out = lines(&run_stream(&generate, &cut, Timing::default()));
    assert_eq!(out[0]["response"], "Once");
    assert_eq!(
        out[1],
        json!({"error": "the node's stream ended before the reply was complete"})
    );
    // An error event mid-stream.
    let failed = format!(
        "data: {}\n\ndata: {}\n\n",
        text("Once"),
        json!({"error": {"code": 500, "message": "slot died", "type": "server_error"}})
    );
    let out = lines(&run_stream(&generate, &failed, Timing::default()));
    assert_eq!(out[1], json!({"error": "slot died"}));
    assert_eq!(out.len(), 2);
    let mut s = generate.clone().into_stream();
    assert!(!s.is_done());
    s.feed(failed.as_bytes());
    assert!(s.is_done());
}
