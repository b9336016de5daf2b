use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::FieldError;

/// Machine-readable reason of a failed request, as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StatusReason {
    BadRequest,
    /// No key, or a key that is malformed, unknown, expired or disabled.
    Unauthorized,
    /// A key that may not do this.
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotAcceptable,
    UnsupportedMediaType,
    RequestEntityTooLarge,
    TooManyRequests,
    Timeout,
    InternalError,
    ServiceUnavailable,
    /// A reason this build does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl StatusReason {
    pub fn code(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable => 406,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::Gone => 410,
            Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Invalid => 422,
            Self::TooManyRequests => 429,
            Self::Timeout => 504,
            Self::ServiceUnavailable => 503,
            Self::InternalError | Self::Unknown => 500,
        }
    }
}

/// One field-level problem inside a [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    /// Dotted path of the offending field, e.g. `spec.replicas`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// The one error shape of herd's API: the body of every non-2xx answer, the
/// `object` of a watch `ERROR` event, and the error type of the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default = "status_kind")]
    pub kind: String,
    #[serde(default = "status_api_version")]
    pub api_version: String,
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

fn status_kind() -> String {
    "Status".to_owned()
}
fn status_api_version() -> String {
    "v1".to_owned()
}

impl Status {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            kind: status_kind(),
            api_version: status_api_version(),
            code: reason.code(),
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_object(mut self, kind: &str, name: &str) -> Self {
        let details = self.details.get_or_insert_with(StatusDetails::default);
        details.kind = kind.to_owned();
        details.name = name.to_owned();
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusReason::BadRequest, message)
    }

    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(
            StatusReason::NotFound,
            format!("{kind} \"{name}\" not found"),
        )
        .with_object(kind, name)
    }

    pub fn already_exists(kind: &str, name: &str) -> Self {
        Self::new(
            StatusReason::AlreadyExists,
            format!("{kind} \"{name}\" already exists"),
        )
        .with_object(kind, name)
    }

    pub fn conflict(kind: &str, name: &str, message: impl fmt::Display) -> Self {
        Self::new(
            StatusReason::Conflict,
            format!("Operation cannot be fulfilled on {kind} \"{name}\": {message}"),
        )
        .with_object(kind, name)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Gone, message)
    }

    /// 422 with one cause per field problem; the message lists them all so a
    /// human reading only the message still learns which fields are wrong.
    pub fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let shown = if name.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} \"{name}\"")
        };
        let mut status = Self::new(
            StatusReason::Invalid,
            format!("{shown} is invalid: {}", list.join("; ")),
        )
        .with_object(kind, name);
        if let Some(d) = status.details.as_mut() {
            d.causes = errors.iter().map(FieldError::to_cause).collect();
        }
        status
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Forbidden, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusReason::InternalError, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.reason == StatusReason::NotFound
    }
    pub fn is_conflict(&self) -> bool {
        self.reason == StatusReason::Conflict
    }
    pub fn is_gone(&self) -> bool {
        self.code == 410
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}, {})", self.message, self.reason, self.code)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_every_field() {
        let errs = vec![
            FieldError::invalid("metadata.name", "must be a DNS-1123 label"),
            FieldError::required("spec.model"),
        ];
        let s = Status::invalid("ModelAssignment", "x", &errs);
        assert_eq!(s.code, 422);
        assert!(s.message.contains("metadata.name"), "{}", s.message);
        assert!(s.message.contains("spec.model"), "{}", s.message);
        let causes = &s.details.as_ref().expect("details").causes;
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[1].field, "spec.model");
    }

    #[test]
    fn unknown_reason_round_trips_as_unknown() {
        let s: Status =
            serde_json::from_str(r#"{"code":418,"reason":"Teapot","message":"m"}"#).expect("parse");
        assert_eq!(s.reason, StatusReason::Unknown);
        assert_eq!(s.kind, "Status");
    }
}
