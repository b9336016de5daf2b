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

impl ApiError {
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
