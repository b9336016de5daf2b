//! Reading client JSON with errors that name the field.

use serde_json::{Map, Value};

use crate::TranslateError;

pub(crate) type Obj = Map<String, Value>;

/// The body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Obj, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TranslateError::Body("expected a JSON object".into())),
        Err(e) if body.iter().all(u8::is_ascii_whitespace) => {
            Err(TranslateError::Body(format!("empty body ({e})")))
        }
        Err(e) => Err(TranslateError::Body(e.to_string())),
    }
}

pub(crate) fn to_vec(v: &impl serde::Serialize) -> Vec<u8> {
    // Values built here always serialise; an empty object is the fallback
    // that cannot happen.
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Field getters for one object at `path` (empty for the top level).
pub(crate) struct At<'a> {
    pub obj: &'a Obj,
    pub path: &'a str,
}

impl<'a> At<'a> {
    pub(crate) fn new(obj: &'a Obj, path: &'a str) -> At<'a> {
        At { obj, path }
    }

    /// Present and not null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn err(&self, key: &str, problem: &str) -> TranslateError {
        TranslateError::field(join(self.path, key), problem)
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, TranslateError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    pub(crate) fn required_str(&self, key: &str) -> Result<&'a str, TranslateError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.err(key, "is required")),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, TranslateError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(key, "must be true or false")),
        }
    }

    pub(crate) fn number(
        &self,
        key: &str,
    ) -> Result<Option<&'a serde_json::Number>, TranslateError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n)),
            Some(_) => Err(self.err(key, "must be a number")),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, TranslateError> {
        match self.number(key)? {
            None => Ok(None),
            Some(n) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                // Go clients send 1e3-style floats for integers too.
                None => match n.as_f64() {
                    #[allow(clippy::cast_possible_truncation)]
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(self.err(key, "must be an integer")),
                },
            },
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, TranslateError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.err(key, "must be an array")),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Obj>, TranslateError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.err(key, "must be an object")),
        }
    }
}

/// The objects of an array, each with its path (`messages[3]`).
pub(crate) fn objects<'a>(
    items: &'a [Value],
    path: &str,
) -> Result<Vec<(String, &'a Obj)>, TranslateError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("{path}[{i}]");
            match v {
                Value::Object(o) => Ok((at, o)),
                _ => Err(TranslateError::field(at, "must be an object")),
            }
        })
        .collect()
}

/// A JSON string of `v` for OpenAI's `arguments` (already text stays text).
pub(crate) fn arguments_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// OpenAI's `arguments` text as a JSON value for clients that want objects
/// (text that is not JSON stays a string).
pub(crate) fn arguments_value(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn getters_name_the_field() {
        let o = object(br#"{"a": 1, "b": "x", "c": 1.5, "d": 2e3, "n": null}"#).expect("object");
        let at = At::new(&o, "options");
        assert_eq!(at.int("a"), Ok(Some(1)));
        assert_eq!(at.int("d"), Ok(Some(2000)));
        assert_eq!(at.int("n"), Ok(None));
        assert_eq!(
            at.int("c").map_err(|e| e.to_string()),
            Err("options.c: must be an integer".into())
        );
        assert_eq!(
            at.str("a").map_err(|e| e.to_string()),
            Err("options.a: must be a string".into())
        );
        assert_eq!(
            At::new(&o, "").required_str("z").map_err(|e| e.to_string()),
            Err("z: is required".into())
        );
        assert!(object(b"[1]").is_err());
        assert!(object(b"").is_err());
    }

    #[test]
    fn arguments_both_ways() {
        assert_eq!(arguments_text(Some(&json!({"a": 1}))), "{\"a\":1}");
        assert_eq!(arguments_text(Some(&json!("{\"a\":1}"))), "{\"a\":1}");
        assert_eq!(arguments_text(None), "{}");
        assert_eq!(arguments_value("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(arguments_value(""), json!({}));
        assert_eq!(arguments_value("{broken"), json!("{broken"));
    }
}
