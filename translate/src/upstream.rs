//! What an OpenAI-compatible node answers, read leniently: whole chat
//! completions and completions, and stream chunks turned into a small set
//! of events every dialect's writer consumes.
//!
//! Servers differ in details this reader absorbs: the reasoning text is
//! `reasoning_content` (llama.cpp, older vLLM) or `reasoning` (newer vLLM,
//! Ollama); `usage` arrives in a chunk of its own with `choices: []`, or on
//! the last chunk; llama.cpp adds `timings` (milliseconds spent on the
//! prompt and on generation); a stream that fails midway sends
//! `data: {"error": ...}`.

use serde_json::Value;

/// Token counts from `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// llama.cpp's `timings`, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NodeTimings {
    pub prompt_ns: u64,
    pub predicted_ns: u64,
}

/// One tool call; `arguments` is JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A whole reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Whole {
    pub id: String,
    pub created: i64,
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: String,
    pub usage: Usage,
    pub timings: Option<NodeTimings>,
}

/// What one stream chunk says, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Up {
    Meta {
        id: String,
        created: i64,
    },
    Text(String),
    Reasoning(String),
    Tool {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(String),
    Usage(Usage),
    Timings(NodeTimings),
    Error(String),
    Done,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt: n("prompt_tokens"),
        completion: n("completion_tokens"),
    })
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn timings(v: &Value) -> Option<NodeTimings> {
    let t = v.get("timings").filter(|t| t.is_object())?;
    let ns = |k: &str| {
        t.get(k)
            .and_then(Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map_or(0, |ms| (ms * 1e6) as u64)
    };
    Some(NodeTimings {
        prompt_ns: ns("prompt_ms"),
        predicted_ns: ns("predicted_ms"),
    })
}

/// The message of an error body or event: `{"error":{"message"}}`,
/// `{"error":"..."}`, `{"message"}`, FastAPI's `{"detail"}`, else the text.
pub(crate) fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        return if text.is_empty() {
            "the node answered with an empty error".to_owned()
        } else {
            text
        };
    };
    let found = v
        .pointer("/error/message")
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .or_else(|| v.get("message"))
        .or_else(|| v.get("detail"));
    match found {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => v.to_string(),
    }
}

fn reasoning_of(m: &Value) -> Option<&str> {
    str_at(m, "reasoning_content").or_else(|| str_at(m, "reasoning"))
}

/// A whole `chat.completion` or `text_completion`.
pub(crate) fn whole(body: &[u8]) -> Result<Whole, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the node's reply is not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("the node's reply has no choices")?;
    let mut w = Whole {
        id: str_at(&v, "id").unwrap_or_default().to_owned(),
        created: v.get("created").and_then(Value::as_i64).unwrap_or(0),
        finish: str_at(choice, "finish_reason").unwrap_or("stop").to_owned(),
        usage: usage(&v).unwrap_or_default(),
        timings: timings(&v),
        ..Whole::default()
    };
    if let Some(text) = str_at(choice, "text") {
        text.clone_into(&mut w.text);
    }
    if let Some(m) = choice.get("message") {
        str_at(m, "content")
            .unwrap_or_default()
            .clone_into(&mut w.text);
        reasoning_of(m)
            .unwrap_or_default()
            .clone_into(&mut w.reasoning);
        for c in m
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            w.tool_calls.push(ToolCall {
                id: str_at(c, "id").unwrap_or_default().to_owned(),
                name: c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                arguments: match c.pointer("/function/arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "{}".to_owned(),
                },
            });
        }
    }
    Ok(w)
}

/// The events of one SSE `data:` payload.
pub(crate) fn chunk(data: &str) -> Vec<Up> {
    let data = data.trim();
    if data == "[DONE]" {
        return vec![Up::Done];
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return vec![Up::Error(format!(
            "the node sent an event that is not JSON: {data}"
        ))];
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return vec![Up::Error(error_message(data.as_bytes()))];
    }
    let mut out = vec![Up::Meta {
        id: str_at(&v, "id").unwrap_or_default().to_owned(),
        created: v.get("created").and_then(Value::as_i64).unwrap_or(0),
    }];
    if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
        if let Some(t) = str_at(choice, "text").filter(|t| !t.is_empty()) {
            out.push(Up::Text(t.to_owned()));
        }
        if let Some(d) = choice.get("delta") {
            if let Some(r) = reasoning_of(d).filter(|r| !r.is_empty()) {
                out.push(Up::Reasoning(r.to_owned()));
            }
            if let Some(t) = str_at(d, "content").filter(|t| !t.is_empty()) {
                out.push(Up::Text(t.to_owned()));
            }
            for (pos, c) in d
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let index = c
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| usize::try_from(i).ok())
                    .unwrap_or(pos);
                out.push(Up::Tool {
                    index,
                    id: str_at(c, "id").map(str::to_owned),
                    name: c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    arguments: c
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        if let Some(f) = str_at(choice, "finish_reason") {
            out.push(Up::Finish(f.to_owned()));
        }
    }
    if let Some(u) = usage(&v) {
        out.push(Up::Usage(u));
    }
    if let Some(t) = timings(&v) {
        out.push(Up::Timings(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_become_events() {
        let cases: Vec<(Value, Vec<Up>)> = vec![
            (
                json!({"id": "c1", "created": 7, "choices": [{"index": 0, "delta": {"role": "assistant", "content": null}}]}),
                vec![Up::Meta {
                    id: "c1".into(),
                    created: 7,
                }],
            ),
            (
                json!({"id": "c1", "created": 7, "choices": [{"delta": {"reasoning_content": "hm", "content": "Hi"}, "finish_reason": null}]}),
                vec![
                    Up::Meta {
                        id: "c1".into(),
                        created: 7,
                    },
                    Up::Reasoning("hm".into()),
                    Up::Text("Hi".into()),
                ],
            ),
            (
                json!({"choices": [{"delta": {"reasoning": "r"}}]}),
                vec![
                    Up::Meta {
                        id: String::new(),
                        created: 0,
                    },
                    Up::Reasoning("r".into()),
                ],
            ),
            (
                json!({"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\""}}]}}]}),
                vec![
                    Up::Meta {
                        id: String::new(),
                        created: 0,
                    },
                    Up::Tool {
                        index: 1,
                        id: Some("call_a".into()),
                        name: Some("f".into()),
                        arguments: "{\"x\"".into(),
                    },
                ],
            ),
            (
                json!({"choices": [{"text": "once", "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 5}, "timings": {"prompt_ms": 1.5, "predicted_ms": 20.0}}),
                vec![
                    Up::Meta {
                        id: String::new(),
                        created: 0,
                    },
                    Up::Text("once".into()),
                    Up::Finish("length".into()),
                    Up::Usage(Usage {
                        prompt: 3,
                        completion: 5,
                    }),
                    Up::Timings(NodeTimings {
                        prompt_ns: 1_500_000,
                        predicted_ns: 20_000_000,
                    }),
                ],
            ),
            (
                json!({"error": {"code": 500, "message": "boom", "type": "server_error"}}),
                vec![Up::Error("boom".into())],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(chunk(&v.to_string()), want, "{v}");
        }
        assert_eq!(chunk(" [DONE]"), vec![Up::Done]);
        assert!(matches!(chunk("<html>").as_slice(), [Up::Error(_)]));
    }

    #[test]
    fn whole_replies_of_both_kinds() {
        let chat = json!({"id": "x", "created": 9, "choices": [{"message": {"role": "assistant", "content": null, "reasoning_content": "think",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
        let w = whole(chat.to_string().as_bytes()).expect("whole");
        assert_eq!(w.text, "");
        assert_eq!(w.reasoning, "think");
        assert_eq!(w.finish, "tool_calls");
        assert_eq!(
            w.usage,
            Usage {
                prompt: 4,
                completion: 2
            }
        );
        assert_eq!(
            w.tool_calls,
            vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into()
            }]
        );
        let text = json!({"choices": [{"text": "abc", "finish_reason": "stop"}]});
        assert_eq!(
            whole(text.to_string().as_bytes()).expect("whole").text,
            "abc"
        );
        assert!(whole(b"{}").is_err());
        assert!(whole(b"nope").is_err());
    }

    #[test]
    fn error_messages_from_every_shape() {
        for (body, want) in [
            (
                &br#"{"error":{"message":"m1","type":"t","code":400}}"#[..],
                "m1",
            ),
            (br#"{"error":"m2"}"#, "m2"),
            (br#"{"object":"error","message":"m3","code":404}"#, "m3"),
            (br#"{"detail":"Not Found"}"#, "Not Found"),
            (b"Bad Gateway\n", "Bad Gateway"),
            (b"", "the node answered with an empty error"),
        ] {
            assert_eq!(error_message(body), want);
        }
    }
}
