use std::fmt::Write as _;
use std::time::Duration;

use herd_api::{Status, StatusReason};

/// Everything that can go wrong talking to herd's API.
///
/// Display strings are complete on their own (a transport error names its
/// cause, e.g. "connection refused"), because most of them end up in a log
/// line through `%error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status. When the body was not a
    /// `Status`, one is built from the HTTP code and the body text, so the
    /// code is always there. Boxed to keep `Result`s small.
    #[error("{0}")]
    Api(Box<Status>),
    /// The request did not get an answer: connect, TLS, I/O or timeout.
    #[error("{}", error_chain(.0))]
    Http(reqwest::Error),
    /// A 2xx body or a watch line did not parse as the expected type.
    #[error("cannot decode {what}: {error}")]
    Decode {
        what: String,
        error: serde_json::Error,
    },
    /// A watch stream sent a line longer than the client accepts.
    #[error("watch stream sent a line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// A watch stream sent nothing, not even a bookmark, for this long.
    #[error("watch stream idle for {0:?}")]
    WatchIdle(Duration),
    /// The request could not be built (bad base URL, empty object name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Self::Api(Box::new(s))
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

impl From<crate::ndjson::LineTooLong> for Error {
    fn from(e: crate::ndjson::LineTooLong) -> Self {
        Self::LineTooLong { limit: e.limit }
    }
}

impl Error {
    /// The server's `Status`, when the server answered.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Api(s) => Some(s),
            _ => None,
        }
    }

    /// The HTTP code the server answered with.
    pub fn code(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 for a stale `resourceVersion` (not for a create of an existing name).
    pub fn is_conflict(&self) -> bool {
        self.status()
            .is_some_and(|s| s.code == 409 && s.reason != StatusReason::AlreadyExists)
    }

    /// 409 for a create of a name that exists.
    pub fn is_already_exists(&self) -> bool {
        self.status()
            .is_some_and(|s| s.reason == StatusReason::AlreadyExists)
    }

    /// 410: the requested `resourceVersion` is too old to watch from; relist.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

/// Longest piece of a non-`Status` error body quoted in the message.
const QUOTED_BODY: usize = 512;

/// The `Status` for a non-2xx answer: the body itself when it is one,
/// otherwise one made from the code and the start of the body text.
pub(crate) fn status_from_body(code: u16, body: &[u8]) -> Status {
    if let Ok(mut status) = serde_json::from_slice::<Status>(body) {
        if status.code == 0 {
            status.code = code;
        }
        return status;
    }
    let phrase = reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut message = format!("the server answered {code} {phrase}")
        .trim_end()
        .to_owned();
    if !text.is_empty() {
        let cut = text
            .char_indices()
            .nth(QUOTED_BODY)
            .map_or(text.len(), |(i, _)| i);
        let _ = write!(message, ": {}", &text[..cut]);
        if cut < text.len() {
            message.push('…');
        }
    }
    let mut status = Status::new(reason_for(code), message);
    status.code = code;
    status
}

fn reason_for(code: u16) -> StatusReason {
    match code {
        400 => StatusReason::BadRequest,
        404 => StatusReason::NotFound,
        405 => StatusReason::MethodNotAllowed,
        406 => StatusReason::NotAcceptable,
        409 => StatusReason::Conflict,
        410 => StatusReason::Gone,
        413 => StatusReason::RequestEntityTooLarge,
        415 => StatusReason::UnsupportedMediaType,
        422 => StatusReason::Invalid,
        429 => StatusReason::TooManyRequests,
        500 => StatusReason::InternalError,
        503 => StatusReason::ServiceUnavailable,
        504 => StatusReason::Timeout,
        _ => StatusReason::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_is_taken_as_is() {
        let body = br#"{"kind":"Status","apiVersion":"v1","code":409,"reason":"AlreadyExists","message":"Node \"a\" already exists"}"#;
        let err = Error::from(status_from_body(409, body));
        assert!(err.is_already_exists());
        assert!(!err.is_conflict());
        assert_eq!(
            err.status().map(|s| s.message.as_str()),
            Some("Node \"a\" already exists")
        );
    }

    #[test]
    fn other_bodies_become_a_status_with_the_code() {
        let cases: [(u16, &[u8], StatusReason, &str); 5] = [
            (
                502,
                b"upstream connect error",
                StatusReason::Unknown,
                "the server answered 502 Bad Gateway: upstream connect error",
            ),
            (
                404,
                b"",
                StatusReason::NotFound,
                "the server answered 404 Not Found",
            ),
            (
                409,
                b"{\"error\":\"x\"}",
                StatusReason::Conflict,
                "the server answered 409 Conflict: {\"error\":\"x\"}",
            ),
            (
                410,
                b"  gone \n",
                StatusReason::Gone,
                "the server answered 410 Gone: gone",
            ),
            (
                599,
                b"\xff\xfe",
                StatusReason::Unknown,
                "the server answered 599: \u{fffd}\u{fffd}",
            ),
        ];
        for (code, body, reason, message) in cases {
            let s = status_from_body(code, body);
            assert_eq!(
                (s.code, s.reason, s.message.as_str()),
                (code, reason, message)
            );
            assert_eq!(s.kind, "Status");
        }
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "é".repeat(2000);
        let s = status_from_body(500, body.as_bytes());
        assert!(s.message.ends_with('…'));
        assert!(
            s.message.chars().count() < QUOTED_BODY + 60,
            "{}",
            s.message.len()
        );
    }

    #[test]
    fn helpers_read_the_code() {
        let gone = Error::from(status_from_body(410, b""));
        assert!(gone.is_gone() && !gone.is_not_found());
        let conflict = Error::from(status_from_body(409, b""));
        assert!(conflict.is_conflict());
        assert!(!Error::LineTooLong { limit: 1 }.is_gone());
    }
}
