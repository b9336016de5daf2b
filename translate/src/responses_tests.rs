use serde_json::{Value, json};

use crate::reply::{run_stream, sse_of};
use crate::{Dialect, Plan, Timing, request};

fn sent(body: Value) -> (crate::Reply, Value) {
    match request(Dialect::OpenAiResponses, body.to_string().as_bytes()) {
        Ok(Plan::Forward(u, r)) => (r, serde_json::from_slice(&u.body).expect("JSON")),
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn responses_request_maps() {
    let (_, v) = sent(
        json!({"model": "m", "instructions": "be brief", "input": "hi", "max_output_tokens": 50, "temperature": 0.3,
        "store": false, "reasoning": {"effort": "low"},
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}}}),
    );
    assert_eq!(
        v,
        json!({"model": "m", "max_tokens": 50, "temperature": 0.3, "stream": false, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
    );
    let (r, v) = sent(
        json!({"model": "m", "stream": true, "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": false}],
        "input": [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_2", "name": "f", "arguments": "{\"x\":1}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "one"},
            {"type": "function_call_output", "call_id": "call_2", "output": {"n": 2}},
            {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
        ]}),
    );
    assert!(r.stream());
    assert_eq!(
        v["tools"],
        json!([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": false}}])
    );
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        v["messages"],
        json!([
            {"role": "system", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "{\"n\":2}"},
            {"role": "assistant", "content": "done"},
        ])
    );
    for (body, want) in [
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id: is not supported: responses are not stored, send the whole conversation",
        ),
        (
            json!({"model": "m", "input": []}),
            "input: must be a string or a non-empty list of items",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type: only function tools can be translated",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type: \"item_reference\" items cannot be translated",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type: \"input_file\" parts cannot be translated",
        ),
    ] {
        match request(Dialect::OpenAiResponses, body.to_string().as_bytes()) {
            Err(e) => assert_eq!(e.to_string(), want),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn whole_reply_is_a_response() {
    let (r, _) = sent(json!({"model": "m", "input": "x"}));
    let node = json!({"id": "chatcmpl-7", "created": 5, "choices": [{"message": {"content": "Hi", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3}});
    let v: Value = serde_json::from_slice(
        &r.complete(200, node.to_string().as_bytes(), Timing::default())
            .body,
    )
    .expect("JSON");
    assert_eq!(v["id"], "resp_7");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(
        v["output"],
        json!([
            {"type": "message", "id": "msg_7", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
            {"type": "function_call", "id": "fc_call_1", "call_id": "call_1", "name": "f", "arguments": "{}", "status": "completed"},
        ])
    );
    assert_eq!(v["usage"]["total_tokens"], 5);
}

#[test]
fn stream_events_with_sequence_numbers() {
    let (r, _) = sent(json!({"model": "m", "input": "x", "stream": true}));
    let c = |delta: Value, finish: Option<&str>| json!({"id": "chatcmpl-7", "created": 5, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let node = sse_of(&[
        c(json!({"role": "assistant", "content": null}), None),
        c(json!({"content": "Hel"}), None),
        c(json!({"content": "lo"}), None),
        c(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}),
            None,
        ),
        c(json!({}), Some("tool_calls")),
        json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
    ]);
    let out: Vec<Value> = run_stream(&r, &node, Timing::default())
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.split_once("\ndata: ").expect("data").1;
            serde_json::from_str(data).expect("JSON")
        })
        .collect();
    let kinds: Vec<&str> = out
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    assert_eq!(out[6]["text"], "Hello");
    assert_eq!(out[9]["output_index"], 1);
    let done = &out[13]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().expect("output").len(), 2);
    assert_eq!(done["usage"]["output_tokens"], 2);

    let failed = format!(
        "data: {}\n\ndata: {{\"error\":{{\"message\":\"boom\"}}}}\n\n",
        c(json!({"content": "x"}), None)
    );
    let out = run_stream(&r, &failed, Timing::default());
    assert!(out.contains("event: response.failed\n"), "{out}");
    assert!(out.contains("\"message\":\"boom\""), "{out}");
}
