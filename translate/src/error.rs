//! Errors: a client's bad request ([`TranslateError`]) and error bodies in
//! each client's shape, made in one place.

use serde_json::{Value, json};

use crate::upstream::error_message;
use crate::{Answer, Dialect};

/// A request the translation cannot carry: not JSON, or a field with the
/// wrong shape or a value the target API has no way to express. The proxy
/// answers it 400 in the client's shape ([`TranslateError::answer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The body is not a JSON object.
    #[error("invalid request body: {0}")]
    Body(String),
    /// A field is wrong; `field` is its path as the client wrote it
    /// (`messages[2].images[0]`, `options.temperature`).
    #[error("{field}: {problem}")]
    Field {
        /// Where, e.g. `messages[0].role`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl TranslateError {
    pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> TranslateError {
        TranslateError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The 400 answer for this error in the client's error shape.
    pub fn answer(&self, dialect: Dialect) -> Answer {
        client_error(dialect, 400, &self.to_string())
    }
}

/// An error answer with `message`, in the shape `dialect`'s clients read:
/// Ollama `{"error":"…"}`, Anthropic `{"type":"error","error":{"type","message"}}`,
/// OpenAI `{"error":{"message","type","param","code"}}`.
pub fn client_error(dialect: Dialect, status: u16, message: &str) -> Answer {
    let body = match dialect {
        Dialect::OllamaChat
        | Dialect::OllamaGenerate
        | Dialect::OllamaEmbed
        | Dialect::OllamaEmbeddings => json!({ "error": message }),
        Dialect::AnthropicMessages => json!({
            "type": "error",
            "error": { "type": anthropic_type(status), "message": message },
        }),
        Dialect::OpenAiResponses => json!({
            "error": { "message": message, "type": openai_type(status), "param": null, "code": null },
        }),
    };
    Answer::json(status, &body)
}

/// The node's error answer (`status`, `body`) in the client's shape, with
/// the node's status kept. An OpenAI-shaped body goes to an OpenAI client
/// as it is.
pub fn error_body(dialect: Dialect, status: u16, upstream_body: &[u8]) -> Answer {
    if dialect == Dialect::OpenAiResponses
        && let Ok(v) = serde_json::from_slice::<Value>(upstream_body)
        && v.pointer("/error/message").is_some_and(Value::is_string)
    {
        return Answer::json(status, &v);
    }
    client_error(dialect, status, &error_message(upstream_body))
}

fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

fn openai_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(a: &Answer) -> Value {
        serde_json::from_slice(&a.body).expect("JSON")
    }

    #[test]
    fn node_errors_in_every_client_shape() {
        let node = br#"{"error":{"code":404,"message":"The model `m` does not exist.","type":"not_found_error"}}"#;
        let cases = [
            (
                Dialect::OllamaChat,
                json!({"error": "The model `m` does not exist."}),
            ),
            (
                Dialect::OllamaGenerate,
                json!({"error": "The model `m` does not exist."}),
            ),
            (
                Dialect::OllamaEmbed,
                json!({"error": "The model `m` does not exist."}),
            ),
            (
                Dialect::OllamaEmbeddings,
                json!({"error": "The model `m` does not exist."}),
            ),
            (
                Dialect::AnthropicMessages,
                json!({"type": "error", "error": {"type": "not_found_error", "message": "The model `m` does not exist."}}),
            ),
            (
                Dialect::OpenAiResponses,
                serde_json::from_slice(node).expect("JSON"),
            ),
        ];
        for (d, want) in cases {
            let a = error_body(d, 404, node);
            assert_eq!(a.status, 404, "{d:?}");
            assert_eq!(a.content_type, "application/json");
            assert_eq!(parsed(&a), want, "{d:?}");
        }
        let text = error_body(Dialect::OpenAiResponses, 502, b"Bad Gateway");
        assert_eq!(
            parsed(&text),
            json!({"error": {"message": "Bad Gateway", "type": "api_error", "param": null, "code": null}})
        );
        let busy = error_body(Dialect::AnthropicMessages, 503, br#"{"detail":"busy"}"#);
        assert_eq!(parsed(&busy)["error"]["type"], "overloaded_error");
    }

    #[test]
    fn a_bad_request_names_its_field() {
        let e = TranslateError::field("options.temperature", "must be a number");
        assert_eq!(e.to_string(), "options.temperature: must be a number");
        let a = e.answer(Dialect::OllamaChat);
        assert_eq!(a.status, 400);
        assert_eq!(
            parsed(&a),
            json!({"error": "options.temperature: must be a number"})
        );
    }
}
