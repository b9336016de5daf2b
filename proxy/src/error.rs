//! Every error the proxy itself answers, mapped to HTTP in one place and
//! written in the shape the client's API expects: Ollama's
//! `{"error":"..."}` or OpenAI's `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Which API a request came in on, for the shape of its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Ollama,
    OpenAi,
}

/// An error answered by the proxy (not one passed through from a node).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Malformed JSON, a missing model, a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    #[error("request body too large: the limit is {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// No node has the model, in the endpoint's own words.
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No key where one is needed, or a herd key that is not accepted.
    #[error("{0}")]
    Unauthorized(String),
    /// A key that may not use this endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing can take the request now: no nodes, none ready, every node
    /// holding the model down, or all of them busy.
    #[error("{0}")]
    Unavailable(String),
    /// The nodes tried failed in a way that is not "busy".
    #[error("{0}")]
    BadGateway(String),
    /// A node took longer than the first-byte timeout and no retry was
    /// allowed.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or an impossible state; the message is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct NativeBody<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiDetail<'a>,
}

#[derive(Serialize)]
struct OpenAiDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ProxyError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` for this status.
    fn openai_type(&self) -> &'static str {
        match self.status() {
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The response in the given dialect.
    pub fn to_response(&self, dialect: Dialect) -> Response {
        if let ProxyError::Internal(detail) = self {
            tracing::error!(%detail, "internal error in the proxy");
        }
        let message = self.to_string();
        let body = match dialect {
            Dialect::Ollama => serde_json::to_vec(&NativeBody { error: &message }),
            Dialect::OpenAi => serde_json::to_vec(&OpenAiBody {
                error: OpenAiDetail {
                    message: &message,
                    kind: self.openai_type(),
                    param: None,
                    code: None,
                },
            }),
        }
        .unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(match dialect {
                // gin's c.JSON.
                Dialect::Ollama => "application/json; charset=utf-8",
                Dialect::OpenAi => "application/json",
            }),
        );
        resp
    }
}

impl IntoResponse for ProxyError {
    /// Ollama's shape; `/v1` handlers call [`ProxyError::to_response`].
    fn into_response(self) -> Response {
        self.to_response(Dialect::Ollama)
    }
}

/// The one-line error a stream ends with when its node dies mid-way:
/// Ollama's `{"error":"..."}\n` for NDJSON, an SSE event for `/v1`.
pub(crate) fn stream_error_line(sse: bool, message: &str) -> bytes::Bytes {
    let json = if sse {
        serde_json::to_vec(&OpenAiBody {
            error: OpenAiDetail {
                message,
                kind: "api_error",
                param: None,
                code: None,
            },
        })
    } else {
        serde_json::to_vec(&NativeBody { error: message })
    }
    .unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 10);
    if sse {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&json);
        out.extend_from_slice(b"\n\n");
    } else {
        out.extend_from_slice(&json);
        out.push(b'\n');
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, String, String) {
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, ct, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn shapes() {
        let e = ProxyError::NotFound("model 'x' not found".into());
        assert_eq!(
            body(e.to_response(Dialect::Ollama)).await,
            (
                StatusCode::NOT_FOUND,
                "application/json; charset=utf-8".into(),
                r#"{"error":"model 'x' not found"}"#.into()
            )
        );
        assert_eq!(
            body(e.to_response(Dialect::OpenAi)).await.2,
            r#"{"error":{"message":"model 'x' not found","type":"not_found_error","param":null,"code":null}}"#
        );
        let e = ProxyError::BodyTooLarge { limit: 10 };
        let (s, _, b) = body(e.to_response(Dialect::OpenAi)).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(b.contains("invalid_request_error"), "{b}");
        let (s, _, b) = body(ProxyError::Internal("secret".into()).into_response()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!b.contains("secret"));
    }

    #[test]
    fn stream_lines() {
        assert_eq!(
            &stream_error_line(false, "x \"y\"")[..],
            b"{\"error\":\"x \\\"y\\\"\"}\n"
        );
        assert_eq!(
            &stream_error_line(true, "gone")[..],
            &b"data: {\"error\":{\"message\":\"gone\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n"[..]
        );
    }
}
