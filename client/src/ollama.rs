//! Ollama's wire types that more than one herd crate reads or writes: pure data and the
//! rules for reading it, no I/O.
//!
//! The nodelet reads these from its local Ollama; the proxy reads them from every node
//! and writes the merged pull stream back in the same shape, so a client of the fleet
//! sees what one Ollama would have sent. Answers the proxy passes through untouched
//! (`/api/tags`, `/api/ps` entries) are deliberately not typed here: a struct would drop
//! the fields it does not name.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `status` of the last line of a pull that worked.
pub const PULL_SUCCESS: &str = "success";

/// One line of a `POST /api/pull` stream (Ollama's `ProgressResponse`), or the
/// `{"error": ...}` line that ends a failed one.
///
/// Serialised as Ollama does: `status` always, the others only when set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullLine {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub completed: u64,
    /// Kept as any JSON: Ollama sends a string, proxies in front of it sometimes an
    /// object, and either must end the pull rather than fail to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl PullLine {
    /// A line that only says `status`.
    pub fn with_status(status: impl Into<String>) -> PullLine {
        PullLine {
            status: status.into(),
            ..PullLine::default()
        }
    }

    /// The error this line reports, as text; `None` for a progress line.
    pub fn error_message(&self) -> Option<String> {
        self.error.as_ref().map(error_text)
    }

    /// Whether this is the line that ends a pull that worked.
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.status == PULL_SUCCESS
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The answer of `GET /api/version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
}

/// Ollama's error body, `{"error": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    pub error: Value,
}

impl ErrorBody {
    /// The body's error as text, or `None` when `body` is not an error body.
    pub fn parse_message(body: &[u8]) -> Option<String> {
        serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|e| error_text(&e.error))
    }
}

/// An `error` value as text: the string itself, an object's `message`, or the JSON.
pub fn error_text(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_lines_read_table() {
        // (line, status, digest, total, completed, error, success)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            u64,
            u64,
            Option<&'static str>,
            bool,
        );
        let cases: &[Case] = &[
            (
                r#"{"status":"pulling manifest"}"#,
                "pulling manifest",
                "",
                0,
                0,
                None,
                false,
            ),
            (
                r#"{"status":"pulling ab","digest":"sha256:ab","total":10,"completed":4}"#,
                "pulling ab",
                "sha256:ab",
                10,
                4,
                None,
                false,
            ),
            (r#"{"status":"success"}"#, "success", "", 0, 0, None, true),
            (
                r#"{"error":"no such model"}"#,
                "",
                "",
                0,
                0,
                Some("no such model"),
                false,
            ),
            (
                r#"{"error":{"message":"quota","code":7}}"#,
                "",
                "",
                0,
                0,
                Some("quota"),
                false,
            ),
            (r#"{"error":42}"#, "", "", 0, 0, Some("42"), false),
            (
                r#"{"status":"success","error":null}"#,
                "success",
                "",
                0,
                0,
                None,
                true,
            ),
            (r#"{"status":"x","extra":true}"#, "x", "", 0, 0, None, false),
        ];
        for &(text, status, digest, total, completed, error, success) in cases {
            let line: PullLine = serde_json::from_str(text).expect(text);
            assert_eq!(
                (
                    line.status.as_str(),
                    line.digest.as_str(),
                    line.total,
                    line.completed
                ),
                (status, digest, total, completed),
                "{text}"
            );
            assert_eq!(line.error_message().as_deref(), error, "{text}");
            assert_eq!(line.is_success(), success, "{text}");
        }
    }

    #[test]
    fn pull_lines_write_as_ollama_does() {
        let cases = [
            (PullLine::with_status("success"), r#"{"status":"success"}"#),
            (PullLine::default(), r#"{"status":""}"#),
            (
                PullLine {
                    status: "pulling ab".into(),
                    digest: "sha256:ab".into(),
                    total: 20,
                    completed: 0,
                    error: None,
                },
                r#"{"status":"pulling ab","digest":"sha256:ab","total":20}"#,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(serde_json::to_string(&line).expect("json"), want);
        }
    }

    #[test]
    fn error_bodies_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"error":"boom"}"#, Some("boom")),
            (br#"{"error":{"message":"nested"}}"#, Some("nested")),
            (br#"{"error":{"code":1}}"#, Some(r#"{"code":1}"#)),
            (b"plain text", None),
            (br#"{"other":"x"}"#, None),
            (b"", None),
        ];
        for (body, want) in cases {
            assert_eq!(ErrorBody::parse_message(body).as_deref(), *want);
        }
    }

    #[test]
    fn version_reads_and_ignores_the_rest() {
        let v: VersionResponse =
            serde_json::from_str(r#"{"version":"0.12.3","x":1}"#).expect("version");
        assert_eq!(v.version, "0.12.3");
        assert!(serde_json::from_str::<VersionResponse>(r#"{"version":3}"#).is_err());
    }
}
