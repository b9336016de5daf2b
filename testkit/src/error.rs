//! Errors mapped to HTTP in one place, in Ollama's two wire shapes.

use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::body::{self, Body};

/// Ollama's queue-full message (503), two spaces included.
pub const BUSY: &str = "server busy, please try again.  maximum pending requests exceeded";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Serialize)]
struct NativeError<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

#[derive(Serialize)]
struct CodedError<'a> {
    error: CodedErrorBody<'a>,
}

/// llama.cpp's and vLLM's error object: the status repeated as `code`.
#[derive(Serialize)]
struct CodedErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: u16,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorBody<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API Key")
    }

    /// `{"error":{"message","type","code":<status>}}`, as llama.cpp's
    /// `format_error_response` writes it (types as it names them).
    pub(crate) fn openai_coded(&self) -> Response<Body> {
        let kind = match self.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::NOT_IMPLEMENTED => "not_supported_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            _ => "server_error",
        };
        body::json_plain(
            self.status,
            &CodedError {
                error: CodedErrorBody {
                    message: &self.message,
                    kind,
                    code: self.status.as_u16(),
                },
            },
        )
    }

    /// `{"type":"error","error":{"type","message"}}`, the Anthropic
    /// Messages API's error (Ollama's `anthropic` middleware writes the same).
    pub(crate) fn anthropic(&self) -> Response<Body> {
        let kind = match self.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            _ => "api_error",
        };
        body::json_plain(
            self.status,
            &AnthropicError {
                kind: "error",
                error: AnthropicErrorBody {
                    kind,
                    message: &self.message,
                },
            },
        )
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn busy() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY)
    }

    pub(crate) fn model_required() -> ApiError {
        ApiError::bad_request("model is required")
    }

    /// `{"error":"..."}`, as gin's `c.JSON` writes it.
    pub(crate) fn native(&self) -> Response<Body> {
        body::json(
            self.status,
            &NativeError {
                error: &self.message,
            },
        )
    }

    /// `{"error":{"message","type","param":null,"code":null}}` (Ollama's
    /// `openai.NewError`).
    pub(crate) fn openai(&self) -> Response<Body> {
        let kind = match self.status {
            StatusCode::BAD_REQUEST => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "api_error",
        };
        body::json_plain(
            self.status,
            &OpenAiError {
                error: OpenAiErrorBody {
                    message: &self.message,
                    kind,
                    param: None,
                    code: None,
                },
            },
        )
    }
}
