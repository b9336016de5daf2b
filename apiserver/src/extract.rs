//! Reading request bodies and query strings so that every malformed input gets
//! the same `Status` error naming the problem (axum's own rejections answer in
//! plain text).

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, Uri, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Content types a body may be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (POST, PUT)
    Json,
    /// `application/merge-patch+json` (PATCH)
    MergePatch,
}

fn check_content_type(headers: &HeaderMap, kind: BodyKind) -> Result<(), ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ok, want) = match kind {
        BodyKind::Json => (
            essence == "application/json" || essence.is_empty(),
            "application/json",
        ),
        BodyKind::MergePatch => (
            essence == "application/merge-patch+json",
            "application/merge-patch+json (JSON merge patch, RFC 7386)",
        ),
    };
    if ok {
        Ok(())
    } else {
        let shown = if raw.is_empty() { "none" } else { raw };
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {shown:?} is not supported here; send {want}"
        )))
    }
}

/// Reads at most `limit` bytes of body.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    kind: BodyKind,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    check_content_type(headers, kind)?;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports an over-long body through a `LengthLimitError` source.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge { limit };
            }
            source = s.source();
        }
        ApiError::BadRequest(format!("reading the request body: {e}"))
    })
}

fn describe(path: &serde_path_to_error::Path, err: &serde_json::Error) -> String {
    let p = path.to_string();
    if err.is_syntax() || err.is_eof() {
        format!("invalid body: malformed JSON: {err}")
    } else if p.is_empty() || p == "." || p == "?" {
        format!("invalid body: {err}")
    } else {
        format!("invalid value at {p}: {err}")
    }
}

/// Decodes JSON, naming the field path of the first problem.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de)
        .map_err(|e| ApiError::BadRequest(describe(e.path(), e.inner())))?;
    de.end().map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid body: trailing data after the JSON document: {e}"
        ))
    })?;
    Ok(value)
}

/// Decodes an already-parsed value (after a merge patch), naming the field.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| ApiError::BadRequest(describe(e.path(), e.inner())))
}

/// The query string as a map; malformed encoding is a 400.
pub fn query(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    let q = uri.query().unwrap_or("");
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
}

/// The problem with one query parameter's value, if it is one herd reads
/// and the value is malformed. Unknown parameters are ignored, as
/// Kubernetes does; a known one with a bad value is never silently dropped.
pub fn check_query_value(key: &str, value: &str) -> Result<(), String> {
    let number = || {
        value
            .parse::<u64>()
            .map(drop)
            .map_err(|_| format!("{key} {value:?} must be a non-negative whole number"))
    };
    let boolean = || match value {
        "" | "true" | "false" | "1" | "0" => Ok(()),
        _ => Err(format!("{key} {value:?} must be true or false")),
    };
    match key {
        "limit" | "timeoutSeconds" => number(),
        "resourceVersion" if value.is_empty() => Ok(()),
        "resourceVersion" => number(),
        "watch" | "allowWatchBookmarks" => boolean(),
        "dryRun" if value.is_empty() || value == "All" => Ok(()),
        "dryRun" => Err(format!("dryRun {value:?} is not supported; use dryRun=All")),
        "labelSelector" => herd_api::LabelSelector::parse(value)
            .map(drop)
            .map_err(|e| format!("labelSelector: {e}")),
        _ => Ok(()),
    }
}

/// Answers 400, naming the parameter, for any request whose query string
/// is malformed or carries a malformed value of a parameter herd reads, on
/// every route it wraps, before the handler runs.
pub async fn query_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let checked = query(req.uri()).and_then(|pairs| {
        pairs
            .iter()
            .try_for_each(|(k, v)| check_query_value(k, v))
            .map_err(ApiError::BadRequest)
    });
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Parses a `resourceVersion` query value.
pub fn revision(raw: Option<&String>) -> Result<Option<u64>, ApiError> {
    match raw.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion {v:?} is not a valid revision (a non-negative integer)"
            ))
        }),
    }
}

/// `?dryRun=All` (the only value Kubernetes defines).
pub fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(v) => Err(ApiError::BadRequest(format!(
            "dryRun {v:?} is not supported; use dryRun=All"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_table() {
        for (key, value, ok) in [
            ("limit", "10", true),
            ("limit", "abc", false),
            ("limit", "-1", false),
            ("timeoutSeconds", "30", true),
            ("timeoutSeconds", "-1", false),
            ("resourceVersion", "", true),
            ("resourceVersion", "42", true),
            ("resourceVersion", "x", false),
            ("watch", "true", true),
            ("watch", "maybe", false),
            ("allowWatchBookmarks", "1", true),
            ("allowWatchBookmarks", "yes", false),
            ("dryRun", "All", true),
            ("dryRun", "Some", false),
            ("labelSelector", "gpu=nvidia", true),
            ("labelSelector", "gpu in (", false),
            ("somethingElse", "anything", true),
        ] {
            let got = check_query_value(key, value);
            assert_eq!(got.is_ok(), ok, "{key}={value}: {got:?}");
            if let Err(message) = got {
                assert!(message.contains(key), "names {key}: {message}");
            }
        }
    }
}
