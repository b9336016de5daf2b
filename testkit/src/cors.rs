//! Ollama's CORS check (gin-contrib/cors in server/routes.go) with its
//! default origins (`OLLAMA_ORIGINS` unset): a request whose `Origin` is
//! neither this host nor on the list is refused with 403 and an empty body;
//! a preflight from an allowed origin is answered 204; any other request
//! from one is served and names the origin in
//! `Access-Control-Allow-Origin`. A proxy that passes browsers' `Origin`
//! on to the node meets exactly this.

/// What the check decided for a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cors {
    /// No `Origin`, or the page is on this host.
    None,
    Forbidden,
    Preflight(String),
    /// Serve, and name this origin on the answer.
    Allow(String),
}

pub(crate) fn check(method: &hyper::Method, origin: Option<&str>, host: Option<&str>) -> Cors {
    let Some(origin) = origin.filter(|o| !o.is_empty()) else {
        return Cors::None;
    };
    if host.is_some_and(|h| {
        origin.strip_prefix("http://") == Some(h) || origin.strip_prefix("https://") == Some(h)
    }) {
        return Cors::None;
    }
    if !allowed(origin) {
        Cors::Forbidden
    } else if method == hyper::Method::OPTIONS {
        Cors::Preflight(origin.to_owned())
    } else {
        Cors::Allow(origin.to_owned())
    }
}

/// Ollama's default origins: localhost, 127.0.0.1 and 0.0.0.0 (http or
/// https, any port) and the app:, file:, tauri:, vscode-webview: and
/// vscode-file: schemes.
fn allowed(origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for scheme in ["http", "https"] {
            let base = format!("{scheme}://{host}");
            if origin == base || origin.starts_with(&format!("{base}:")) {
                return true;
            }
        }
    }
    [
        "app://",
        "file://",
        "tauri://",
        "vscode-webview://",
        "vscode-file://",
    ]
    .iter()
    .any(|s| origin.starts_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_ollama_without_ollama_origins() {
        let post = hyper::Method::POST;
        let cases: &[(&hyper::Method, Option<&str>, Cors)] = &[
            (&post, None, Cors::None),
            (&post, Some("http://127.0.0.1:11434"), Cors::None),
            (
                &post,
                Some("http://localhost:3000"),
                Cors::Allow("http://localhost:3000".into()),
            ),
            (
                &hyper::Method::OPTIONS,
                Some("app://obsidian.md"),
                Cors::Preflight("app://obsidian.md".into()),
            ),
            (&post, Some("https://chat.example.com"), Cors::Forbidden),
            (&post, Some("http://localhost.evil.com"), Cors::Forbidden),
        ];
        for (method, origin, want) in cases {
            assert_eq!(
                check(method, *origin, Some("127.0.0.1:11434")),
                *want,
                "{origin:?}"
            );
        }
    }
}
