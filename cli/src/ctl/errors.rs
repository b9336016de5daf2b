//! Errors worded for the person at the terminal.

use std::sync::OnceLock;

use herd_api::Status;
use herd_client::Error;

/// A readable error for a failed call to the server at `server`.
pub fn client_error(e: &Error, server: &str) -> anyhow::Error {
    anyhow::anyhow!(describe(e, server))
}

/// The key the verbs send (`key ID (from SOURCE)`), set once when the client
/// is made, so that every refusal can say which key was refused.
static KEY_IN_USE: OnceLock<Option<String>> = OnceLock::new();

pub fn set_key_in_use(key: Option<String>) {
    let _ = KEY_IN_USE.set(key);
}

pub fn describe(e: &Error, server: &str) -> String {
    match e {
        Error::Api(status) if matches!(status.code, 401 | 403) => refusal(
            status.code,
            &status.message,
            server,
            KEY_IN_USE.get().and_then(Option::as_deref),
        ),
        Error::Api(status) => status_message(status),
        Error::Http(_) if is_untrusted_certificate(&e.to_string()) => {
            untrusted(server, &e.to_string())
        }
        Error::Http(http) if http.is_connect() => format!(
            "cannot reach the herd server at {server}: {e}\n(is `herd server` running there? Point --server or HERD_SERVER at it.)"
        ),
        other => other.to_string(),
    }
}

/// Whether a transport error's text (its whole source chain) is rustls refusing the
/// server's certificate: no retry mends that, and "cannot reach" would mislead.
pub fn is_untrusted_certificate(error_chain: &str) -> bool {
    error_chain.contains("invalid peer certificate")
}

/// The server's certificate was refused: say how to trust it.
pub fn untrusted(server: &str, error_chain: &str) -> String {
    format!(
        "certificate not trusted; pass --ca-cert FILE (or HERD_CA_CERT) with the CA that signed \
         the certificate of the herd server at {server} (for `herd server --tls-self-signed`, \
         <data-dir>/tls/ca.crt), or use a key that carries the CA's fingerprint: {error_chain}"
    )
}

/// A 401 or 403, saying which key was refused and what to do.
pub fn refusal(code: u16, message: &str, server: &str, key: Option<&str>) -> String {
    match (code, key) {
        (401, None) => format!(
            "the herd server at {server} needs an API key ({message}). Pass --token or \
             HERD_TOKEN, run `herd login --server {server}`, or, on the server's own machine, \
             run as the user whose data directory holds admin.key"
        ),
        (401, Some(key)) => format!(
            "the herd server at {server} refused {key}: {message}. Give a valid key with \
             --token or HERD_TOKEN, or run `herd login` again"
        ),
        (_, None) => format!("the herd server at {server} refused the request: {message}"),
        (_, Some(key)) => format!(
            "{key} may not do this on the herd server at {server}: {message}. Use a key \
             whose role allows it (admin for changes)"
        ),
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
    fn refusals_name_the_key_and_the_way_out() {
        let s = "http://h:1";
        // (code, key, the message contains)
        let cases = [
            (401, None, "needs an API key (missing key). Pass --token"),
            (
                401,
                Some("key abc (from --token)"),
                "refused key abc (from --token): missing key",
            ),
            (
                403,
                Some("key abc (from HERD_TOKEN)"),
                "key abc (from HERD_TOKEN) may not do this",
            ),
            (403, None, "refused the request: missing key"),
        ];
        for (code, key, want) in cases {
            let got = refusal(code, "missing key", s, key);
            assert!(got.contains(want), "{code} {key:?}: {got}");
            assert!(got.contains(s), "{got}");
        }
    }

    #[test]
    fn a_refused_certificate_is_told_apart_from_an_unreachable_server() {
        // (transport error text, refused certificate)
        let cases = [
            (
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                true,
            ),
            (
                "error sending request: client error (Connect): invalid peer certificate: certificate not trusted: fingerprint mismatch: ...",
                true,
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                false,
            ),
            ("operation timed out", false),
        ];
        for (text, want) in cases {
            assert_eq!(is_untrusted_certificate(text), want, "{text}");
        }
        let message = untrusted("https://h:1", cases[0].0);
        assert!(
            message.starts_with("certificate not trusted; pass --ca-cert")
                && message.contains("https://h:1"),
            "{message}"
        );
    }

    #[test]
    fn plain_status_is_its_message() {
        let s = Status::not_found("Node", "gpu-1");
        assert_eq!(status_message(&s), "Node \"gpu-1\" not found");
    }
}
