//! Errors worded for the person at the terminal.

use herd_api::Status;
use herd_client::Error;

/// A readable error for a failed call to the server at `server`.
pub fn client_error(e: &Error, server: &str) -> anyhow::Error {
    anyhow::anyhow!(describe(e, server))
}

pub fn describe(e: &Error, server: &str) -> String {
    match e {
        Error::Api(status) => status_message(status),
        Error::Http(http) if http.is_connect() => format!(
            "cannot reach the herd server at {server}: {e}\n(is `herd server` running there? Point --server or HERD_SERVER at it.)"
        ),
        other => other.to_string(),
    }
}

/// The server's message, with each field problem on a line of its own:
///
/// ```text
/// ModelAssignment "x" is invalid:
///   * spec.model: Required value
///   * spec.replicas: must be at most 10000
/// ```
pub fn status_message(status: &Status) -> String {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    if causes.is_empty() {
        return status.message.clone();
    }
    // The server's message repeats the causes after "is invalid: "; the list
    // below says it better.
    let mut out = match status.message.split_once(" is invalid: ") {
        Some((head, _)) => format!("{head} is invalid:"),
        None => format!("{}:", status.message.trim_end_matches(':')),
    };
    for cause in causes {
        if cause.field.is_empty() {
            out.push_str(&format!("\n  * {}", cause.message));
        } else {
            out.push_str(&format!("\n  * {}: {}", cause.field, cause.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use herd_api::FieldError;

    use super::*;

    #[test]
    fn invalid_status_lists_each_field() {
        let s = Status::invalid(
            "ModelAssignment",
            "x",
            &[
                FieldError::required("spec.model"),
                FieldError::invalid("spec.replicas", "must be at most 10000"),
            ],
        );
        assert_eq!(
            status_message(&s),
            "ModelAssignment \"x\" is invalid:\n  * spec.model: Required value\n  * spec.replicas: must be at most 10000"
        );
    }

    #[test]
    fn plain_status_is_its_message() {
        let s = Status::not_found("Node", "gpu-1");
        assert_eq!(status_message(&s), "Node \"gpu-1\" not found");
    }
}
