//! Every way a request can fail, mapped to HTTP in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_api::{FieldError, Status, StatusReason};

use crate::store::{MissingPlaceholder, StoreError};

/// A failed API request. Client mistakes carry a message naming the problem;
/// internal failures are logged in full and answered with a generic message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("conflict on {kind} {name:?}: {message}")]
    Conflict {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("{kind} {name:?} is invalid")]
    Invalid {
        kind: &'static str,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No key, or one that is not accepted: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A key that may not do this: 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("gone: {0}")]
    Gone(String),
    #[error("the server could not find the requested resource {0}")]
    NoRoute(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn to_status(&self) -> Status {
        match self {
            Self::NotFound { kind, name } => Status::not_found(kind, name),
            Self::AlreadyExists { kind, name } => Status::already_exists(kind, name),
            Self::Conflict {
                kind,
                name,
                message,
            } => Status::conflict(kind, name, message),
            Self::Invalid { kind, name, errors } => Status::invalid(kind, name, errors),
            Self::BadRequest(m) => Status::bad_request(m.clone()),
            Self::Unauthorized(m) => Status::unauthorized(m.clone()),
            Self::Forbidden(m) => Status::forbidden(m.clone()),
            Self::UnsupportedMediaType(m) => {
                Status::new(StatusReason::UnsupportedMediaType, m.clone())
            }
            Self::TooLarge { limit } => Status::new(
                StatusReason::RequestEntityTooLarge,
                format!("request body is larger than the limit of {limit} bytes"),
            ),
            Self::Gone(m) => Status::gone(m.clone()),
            Self::NoRoute(path) => Status::new(
                StatusReason::NotFound,
                format!("the server could not find the requested resource {path}"),
            ),
            Self::MethodNotAllowed(m) => Status::new(
                StatusReason::MethodNotAllowed,
                format!("method {m} is not allowed on this resource"),
            ),
            Self::Internal(_) => Status::internal("internal error; see the server log"),
            Self::Unavailable(m) => Status::new(StatusReason::ServiceUnavailable, m.clone()),
        }
    }
}

/// Answers with a `Status` JSON body.
pub fn status_response(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(status).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut resp = status_response(&self.to_status());
        if let Self::Unauthorized(_) = self {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The one place storage outcomes become HTTP answers.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict {
                kind,
                name,
                expected,
                current,
            } => Self::Conflict {
                kind,
                name,
                message: format!(
                    "the object has been modified (resourceVersion {expected} is stale, current is {current}); please apply your changes to the latest version and try again"
                ),
            },
            StoreError::NotFound { kind, name } => Self::NotFound { kind, name },
            StoreError::AlreadyExists { kind, name } => Self::AlreadyExists { kind, name },
            StoreError::Compacted { requested, oldest } => Self::Gone(format!(
                "too old resource version: {requested} (oldest kept is {oldest}); list again and watch from the list's resourceVersion"
            )),
            StoreError::TooNew { requested, current } => Self::Gone(format!(
                "resource version {requested} is newer than the store's current revision {current}; list again"
            )),
            StoreError::Backend(message) => Self::Internal(message),
            StoreError::Unavailable(message) => Self::Unavailable(format!(
                "the store cannot take writes now ({message}); try again shortly"
            )),
            e @ StoreError::SchemaTooNew { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<MissingPlaceholder> for ApiError {
    fn from(e: MissingPlaceholder) -> Self {
        Self::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_http_statuses() {
        let name = || "a".to_owned();
        for (e, code, reason) in [
            (
                StoreError::Conflict {
                    kind: "nodes",
                    name: name(),
                    expected: 4,
                    current: 5,
                },
                409,
                StatusReason::Conflict,
            ),
            (
                StoreError::NotFound {
                    kind: "nodes",
                    name: name(),
                },
                404,
                StatusReason::NotFound,
            ),
            (
                StoreError::AlreadyExists {
                    kind: "nodes",
                    name: name(),
                },
                409,
                StatusReason::AlreadyExists,
            ),
            (
                StoreError::Compacted {
                    requested: 3,
                    oldest: 10,
                },
                410,
                StatusReason::Gone,
            ),
            (
                StoreError::TooNew {
                    requested: 30,
                    current: 10,
                },
                410,
                StatusReason::Gone,
            ),
            (
                StoreError::Backend("disk full".into()),
                500,
                StatusReason::InternalError,
            ),
            (
                StoreError::Unavailable("database connection lost".into()),
                503,
                StatusReason::ServiceUnavailable,
            ),
        ] {
            let status = ApiError::from(e.clone()).to_status();
            assert_eq!((status.code, status.reason), (code, reason), "{e}");
        }
        let status = ApiError::from(StoreError::Backend("disk full".into())).to_status();
        assert!(
            !status.message.contains("disk full"),
            "backend details stay in the log"
        );
    }
}
