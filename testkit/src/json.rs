//! Request decoding that fails the way Ollama (Go's `encoding/json`) fails.
//!
//! Clients and the router surface Ollama's error text to users, so a
//! malformed body should produce the same kind of message: `missing request
//! body`, `unexpected EOF`, `invalid character 'x' looking for beginning of
//! value`, `json: cannot unmarshal string into Go struct field ...`. Like Go's
//! `json.Decoder`, only the first JSON value is read and trailing bytes are
//! ignored; `null` fields count as absent.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::KeepAlive;

/// Decodes `body` into `T`, whose Go name (`api.GenerateRequest`) shapes the
/// type-mismatch message. `empty` is what an empty body yields: `missing
/// request body` on native routes, `EOF` through the OpenAI middleware.
pub(crate) fn decode<T: DeserializeOwned>(
    body: &[u8],
    go_type: &str,
    empty: &str,
) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(empty.to_owned());
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let value = match values.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(syntax_message(body, &e)),
        None => return Err(empty.to_owned()),
    };
    let value = match value {
        Value::Null => Value::Object(serde_json::Map::new()),
        v @ Value::Object(_) => v,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type {go_type}",
                go_kind(&other)
            ));
        }
    };
    let short_type = go_type.rsplit('.').next().unwrap_or(go_type);
    serde_path_to_error::deserialize::<_, T>(&value).map_err(|e| {
        let mut at = &value;
        let mut fields = Vec::new();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => {
                    fields.push(key.clone());
                    at = at.get(key.as_str()).unwrap_or(&Value::Null);
                }
                serde_path_to_error::Segment::Seq { index } => {
                    at = at.get(*index).unwrap_or(&Value::Null);
                }
                _ => {}
            }
        }
        let inner = e.inner().to_string();
        if !inner.starts_with("invalid type") && !inner.starts_with("invalid value") {
            return inner;
        }
        let expected = inner.split(", expected ").nth(1).unwrap_or("");
        format!(
            "json: cannot unmarshal {} into Go struct field {short_type}.{} of type {}",
            go_kind(at),
            fields.join("."),
            go_type_name(expected)
        )
    })
}

fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type_name(serde_expected: &str) -> String {
    let e = serde_expected.trim();
    let t = match e {
        "a string" => "string",
        "a boolean" => "bool",
        "a sequence" => "[]interface {}",
        "a map" => "map[string]interface {}",
        _ if e.starts_with('i') || e.starts_with('u') => "int",
        _ if e.starts_with('f') => "float64",
        _ if e.starts_with("struct") => "struct",
        _ => e,
    };
    t.to_owned()
}

/// Go's scanner messages, from serde_json's syntax error and position.
fn syntax_message(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".to_owned();
    }
    let offset = byte_offset(body, e.line(), e.column());
    let Some(c) = offset.and_then(|o| std::str::from_utf8(&body[o..]).ok()?.chars().next()) else {
        return "unexpected EOF".to_owned();
    };
    let msg = e.to_string();
    let what = msg.split(" at line ").next().unwrap_or("");
    let literal = offset.and_then(|o| literal_context(body, o));
    let context = match what {
        w if w.starts_with("expected ident") && literal.is_some() => {
            literal.as_deref().unwrap_or("")
        }
        "key must be a string" => "looking for beginning of object key string",
        "expected `:`" => "after object key",
        "expected `,` or `}`" => "after object key:value pair",
        "expected `,` or `]`" => "after array element",
        w if w.contains("escape") || w.contains("control character") => "in string escape code",
        w if w.contains("number") => "in numeric literal",
        _ => "looking for beginning of value",
    };
    let quoted = match c {
        '\'' => "'\\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c => format!("'{c}'"),
    };
    format!("invalid character {quoted} {context}")
}

/// `in literal null (expecting 'u')` for a misspelt `null`/`true`/`false`.
fn literal_context(body: &[u8], offset: usize) -> Option<String> {
    let start = body[..offset]
        .iter()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let literal = match body.get(start)? {
        b'n' => "null",
        b't' => "true",
        b'f' => "false",
        _ => return None,
    };
    let expecting = literal.chars().nth(offset - start)?;
    Some(format!("in literal {literal} (expecting '{expecting}')"))
}

/// serde_json reports 1-based line and column (in bytes) of the offending
/// byte.
fn byte_offset(body: &[u8], line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += body[start..].iter().position(|b| *b == b'\n')? + 1;
    }
    let o = start + column.checked_sub(1)?;
    (o < body.len()).then_some(o)
}

/// Ollama's `api.Duration` decoding of `keep_alive`: a number of seconds, or
/// a Go duration string; negative means forever.
pub(crate) fn keep_alive(v: Option<&Value>) -> Result<Option<KeepAlive>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().unwrap_or(0.0);
            if secs < 0.0 {
                Ok(Some(KeepAlive::Forever))
            } else {
                Ok(Some(KeepAlive::For(
                    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
                )))
            }
        }
        Some(Value::String(s)) => {
            let nanos = parse_go_duration(s)?;
            if nanos < 0 {
                Ok(Some(KeepAlive::Forever))
            } else {
                Ok(Some(KeepAlive::For(Duration::from_nanos(
                    u64::try_from(nanos).unwrap_or(u64::MAX),
                ))))
            }
        }
        Some(Value::Bool(_)) => Err("Unsupported type: 'bool'".to_owned()),
        Some(Value::Array(_)) => Err("Unsupported type: '[]interface {}'".to_owned()),
        Some(Value::Object(_)) => Err("Unsupported type: 'map[string]interface {}'".to_owned()),
    }
}

/// Go's `time.ParseDuration`, with its error messages; nanoseconds.
pub(crate) fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration \"{orig}\"");
    let mut s = orig;
    let neg = match s.chars().next() {
        Some('-') => {
            s = &s[1..];
            true
        }
        Some('+') => {
            s = &s[1..];
            false
        }
        _ => false,
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let num = &s[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{orig}\"")),
        };
        total += value * scale;
    }
    if total > 9.223_372_036_854_775e18 {
        return Err(invalid());
    }
    #[allow(clippy::cast_possible_truncation)]
    let n = total as i128;
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Req {
        model: Option<String>,
        stream: Option<bool>,
        messages: Option<Vec<Msg>>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Msg {
        content: Option<String>,
    }

    fn err(body: &str) -> String {
        decode::<Req>(body.as_bytes(), "api.ChatRequest", "missing request body").expect_err(body)
    }

    #[test]
    fn go_like_messages() {
        assert_eq!(err(""), "missing request body");
        assert_eq!(err("  \n"), "missing request body");
        assert_eq!(err("{\"model\":"), "unexpected EOF");
        assert_eq!(
            err("nope"),
            "invalid character 'o' in literal null (expecting 'u')"
        );
        assert_eq!(
            err("{bad}"),
            "invalid character 'b' looking for beginning of object key string"
        );
        assert_eq!(
            err("[1]"),
            "json: cannot unmarshal array into Go value of type api.ChatRequest"
        );
        assert_eq!(
            err(r#"{"stream":"yes"}"#),
            "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"
        );
        assert_eq!(
            err(r#"{"messages":[{"content":[1]}]}"#),
            "json: cannot unmarshal array into Go struct field ChatRequest.messages.content of type string"
        );
    }

    #[test]
    fn trailing_bytes_and_null_are_fine() {
        let r: Req = decode(
            br#"{"model":"m","stream":null} trailing"#,
            "api.ChatRequest",
            "",
        )
        .expect("ok");
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.stream, None);
    }

    #[test]
    fn keep_alive_env_strings() {
        assert_eq!(
            KeepAlive::parse("5m"),
            Ok(KeepAlive::For(Duration::from_secs(300)))
        );
        assert_eq!(
            KeepAlive::parse("30"),
            Ok(KeepAlive::For(Duration::from_secs(30)))
        );
        assert_eq!(KeepAlive::parse("-1"), Ok(KeepAlive::Forever));
        assert!(KeepAlive::parse("soon").is_err());
    }

    #[test]
    fn keep_alive_like_ollama() {
        let ka = |v: Value| keep_alive(Some(&v));
        assert_eq!(ka(Value::from(0)), Ok(Some(KeepAlive::For(Duration::ZERO))));
        assert_eq!(ka(Value::from(-1)), Ok(Some(KeepAlive::Forever)));
        assert_eq!(
            ka(Value::from(1.5)),
            Ok(Some(KeepAlive::For(Duration::from_millis(1500))))
        );
        assert_eq!(
            ka(Value::from("5m")),
            Ok(Some(KeepAlive::For(Duration::from_secs(300))))
        );
        assert_eq!(
            ka(Value::from("1h30m")),
            Ok(Some(KeepAlive::For(Duration::from_secs(5400))))
        );
        assert_eq!(ka(Value::from("-1m")), Ok(Some(KeepAlive::Forever)));
        assert_eq!(
            ka(Value::from("0")),
            Ok(Some(KeepAlive::For(Duration::ZERO)))
        );
        assert_eq!(
            ka(Value::from("10")),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            ka(Value::from("3x")),
            Err("time: unknown unit \"x\" in duration \"3x\"".into())
        );
        assert_eq!(
            ka(Value::from("abc")),
            Err("time: invalid duration \"abc\"".into())
        );
        assert_eq!(
            ka(Value::from(true)),
            Err("Unsupported type: 'bool'".into())
        );
        assert_eq!(ka(Value::Null), Ok(None));
    }
}
