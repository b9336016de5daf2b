//! What the chat-shaped endpoints of both modes share: the fake's decision
//! to call a tool, JSON-mode replies, ids and prompt token counts.
//!
//! The fake calls a tool when the request offers tools and the last turn is
//! the user's (not a tool result): then it calls the first tool with
//! arguments built from the tool's JSON Schema, so a client or a translator
//! sees a tool call, sends the result back, and gets text. This is
//! deterministic, which a model is not.

use serde_json::{Map, Value};

use crate::generation::{count_tokens, token_text};
use crate::util::small_random;

/// A tool call the fake makes: `arguments` is JSON text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered by the request: its name and parameter schema.
pub(crate) struct Offered<'a> {
    pub name: &'a str,
    pub parameters: Option<&'a Value>,
}

/// The tool call to make, if any (see the module doc).
pub(crate) fn tool_call(
    tools: &[Offered<'_>],
    last_turn_is_user: bool,
    id_prefix: &str,
) -> Option<ToolCall> {
    let first = tools.first().filter(|_| last_turn_is_user)?;
    Some(ToolCall {
        id: fresh_id(id_prefix),
        name: first.name.to_owned(),
        arguments: arguments_for(first.parameters).to_string(),
    })
}

/// Arguments that satisfy a schema's `required` properties, one plain value
/// per type.
pub(crate) fn arguments_for(schema: Option<&Value>) -> Value {
    let mut out = Map::new();
    let Some(schema) = schema else {
        return Value::Object(out);
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let kind = props
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let value = match kind {
            "integer" | "number" => Value::from(1),
            "boolean" => Value::Bool(true),
            "array" => Value::Array(Vec::new()),
            "object" => Value::Object(Map::new()),
            _ => Value::from("fake"),
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// `prefix` and 24 hex digits, like the ids OpenAI and Anthropic hand out.
pub(crate) fn fresh_id(prefix: &str) -> String {
    format!(
        "{prefix}{:012x}{:012x}",
        small_random(1 << 48),
        small_random(1 << 48)
    )
}

/// The text of token `i` of `n`; in JSON mode the reply is the object
/// `{"reply": "<the usual text>"}`, spread over the same tokens.
pub(crate) fn token(i: usize, n: usize, json: bool) -> String {
    let t = token_text(i);
    if !json {
        return t.to_owned();
    }
    let quoted = Value::from(t).to_string();
    let inner = &quoted[1..quoted.len() - 1];
    let open = if i == 0 { "{\"reply\":\"" } else { "" };
    let close = if i + 1 == n { "\"}" } else { "" };
    format!("{open}{inner}{close}")
}

/// The whole reply of `n` tokens.
pub(crate) fn whole(n: usize, json: bool) -> String {
    if json && n == 0 {
        return "{}".to_owned();
    }
    (0..n).map(|i| token(i, n, json)).collect()
}

/// Prompt tokens of a request: words in every string under `content`,
/// `text`, `input`, `system` and `instructions` (images and ids skipped).
pub(crate) fn prompt_tokens(v: &Value) -> usize {
    let mut text = String::new();
    collect_text(v, false, &mut text);
    count_tokens(&text)
}

fn collect_text(v: &Value, counted: bool, out: &mut String) {
    match v {
        Value::String(s) if counted => {
            out.push(' ');
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, counted, out)),
        Value::Object(m) => {
            for (k, v) in m {
                let here = matches!(
                    k.as_str(),
                    "content" | "text" | "input" | "system" | "instructions" | "prompt"
                );
                let skip = matches!(k.as_str(), "image_url" | "source" | "images" | "type");
                if !skip {
                    collect_text(v, counted || here, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_call_only_after_a_user_turn() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "x": {"type": "boolean"}}, "required": ["city", "days"]});
        let tools = [Offered {
            name: "get_weather",
            parameters: Some(&schema),
        }];
        let call = tool_call(&tools, true, "call_").expect("a call");
        assert_eq!(call.name, "get_weather");
        assert!(
            call.id.starts_with("call_") && call.id.len() == 29,
            "{}",
            call.id
        );
        let args: Value = serde_json::from_str(&call.arguments).expect("JSON");
        assert_eq!(args, json!({"city": "fake", "days": 1}));
        assert_eq!(tool_call(&tools, false, "call_"), None);
        assert_eq!(tool_call(&[], true, "call_"), None);
    }

    #[test]
    fn json_mode_reply_is_an_object_however_it_is_split() {
        for n in 0..5 {
            let whole = whole(n, true);
            let v: Value =
                serde_json::from_str(&whole).unwrap_or_else(|e| panic!("{n}: {e}: {whole}"));
            if n > 0 {
                assert_eq!(v["reply"], crate::generation::reply_text(n));
            }
        }
        assert_eq!(whole(3, false), crate::generation::reply_text(3));
    }

    #[test]
    fn prompt_tokens_count_text_not_images() {
        let v = json!({"model": "m", "system": "be brief", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA BBBB"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]});
        assert_eq!(prompt_tokens(&v), 5);
    }
}
