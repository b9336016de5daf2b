//! Finding the credential in a request's headers.
//!
//! Ollama and OpenAI clients send `Authorization: Bearer …`, Anthropic clients
//! `x-api-key: …`; the dashboard will send a session cookie. SDKs pointed at
//! a local Ollama always send *something* (`ollama`, `unused`, `sk-…`), so
//! anything not in herd's format is a placeholder, which an open proxy
//! ignores; a value in herd's format is always checked, so a mistyped or
//! revoked key is refused rather than served as anonymous.

use std::fmt;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName};

use crate::token::{PREFIX, Token, TokenError};

/// The header Anthropic clients put their key in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "herd_session";

/// What a request presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Nothing.
    None,
    /// A value in herd's format.
    Key(Token),
    /// A value that starts like a herd key but is not one.
    Malformed(TokenError),
    /// A value not in herd's format: an SDK's placeholder, or another scheme.
    Placeholder,
    /// The dashboard's session cookie, when no header carried a key.
    Session(SessionId),
}

/// A session cookie's value. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The request's credential. A herd key in `Authorization` wins over one in
/// `x-api-key`, a herd key over the session cookie, and the cookie over a
/// placeholder.
pub fn credential(headers: &HeaderMap) -> Credential {
    let mut found = Credential::None;
    let values = headers
        .get_all(AUTHORIZATION)
        .iter()
        .map(|v| bearer(v.as_bytes()))
        .chain(
            headers
                .get_all(API_KEY_HEADER)
                .iter()
                .map(|v| Some(v.as_bytes())),
        );
    for value in values {
        let candidate = match value {
            Some(value) => classify(value),
            None => Credential::Placeholder,
        };
        match candidate {
            Credential::Key(_) | Credential::Malformed(_) => return candidate,
            _ => found = Credential::Placeholder,
        }
    }
    match session_cookie(headers) {
        Some(session) => Credential::Session(session),
        None => found,
    }
}

/// Whether a request header carries a credential for herd. The proxy leaves
/// these out of what it forwards, so no key or session reaches a node
/// (Ollama reads none of them).
pub fn is_credential_header(name: &HeaderName) -> bool {
    *name == AUTHORIZATION || *name == COOKIE || name.as_str() == API_KEY_HEADER
}

/// The token of `Bearer <token>` (scheme in any case), or `None` for another
/// scheme.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    if value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        Some(&value[scheme.len()..])
    } else {
        None
    }
}

fn classify(value: &[u8]) -> Credential {
    let value = value.trim_ascii();
    if !value.starts_with(PREFIX.as_bytes()) {
        return Credential::Placeholder;
    }
    match Token::parse_bytes(value) {
        Ok(token) => Credential::Key(token),
        Err(e) => Credential::Malformed(e),
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<SessionId> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| SessionId(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const KEY: &str = "herd_abcdefgh1234_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    const KEY2: &str = "herd_zzzzzzzzzzzz_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name: http::HeaderName = name.parse().expect("header name");
            map.append(name, HeaderValue::from_bytes(value).expect("header value"));
        }
        map
    }

    type Headers<'a> = Vec<(&'a str, &'a [u8])>;

    fn key(text: &str) -> Credential {
        Credential::Key(Token::parse(text).expect("valid"))
    }

    #[test]
    fn credential_table() {
        let bearer_key = format!("Bearer {KEY}");
        let lower = format!("bearer {KEY}");
        let spaced = format!("Bearer   {KEY}  ");
        let bearer_key2 = format!("Bearer {KEY2}");
        let cases: Vec<(Headers<'_>, Credential)> = vec![
            (vec![], Credential::None),
            (vec![("authorization", bearer_key.as_bytes())], key(KEY)),
            (vec![("authorization", lower.as_bytes())], key(KEY)),
            (vec![("authorization", spaced.as_bytes())], key(KEY)),
            (vec![("x-api-key", KEY.as_bytes())], key(KEY)),
            (
                vec![("authorization", b"Bearer ollama")],
                Credential::Placeholder,
            ),
            (
                vec![("authorization", b"Bearer unused")],
                Credential::Placeholder,
            ),
            (
                vec![("authorization", b"Bearer sk-proj-abc123")],
                Credential::Placeholder,
            ),
            (vec![("authorization", b"Bearer ")], Credential::Placeholder),
            (
                vec![("authorization", b"Basic dXNlcjpwYXNz")],
                Credential::Placeholder,
            ),
            (vec![("x-api-key", b"sk-ant-abc")], Credential::Placeholder),
            (
                vec![("authorization", b"Bearer herd_abc")],
                Credential::Malformed(TokenError::Malformed("the key id")),
            ),
            (
                vec![("x-api-key", b"herd_\xff\xfe")],
                Credential::Malformed(TokenError::Malformed("the key id")),
            ),
            // A placeholder in one header does not hide a key in the other.
            (
                vec![
                    ("authorization", b"Bearer ollama"),
                    ("x-api-key", KEY.as_bytes()),
                ],
                key(KEY),
            ),
            // Authorization wins.
            (
                vec![
                    ("authorization", bearer_key2.as_bytes()),
                    ("x-api-key", KEY.as_bytes()),
                ],
                key(KEY2),
            ),
            // A malformed herd key is never passed over for a later good one.
            (
                vec![
                    ("authorization", b"Bearer herd_x"),
                    ("x-api-key", KEY.as_bytes()),
                ],
                Credential::Malformed(TokenError::Malformed("the key id")),
            ),
            (
                vec![("cookie", b"theme=dark; herd_session=s3ss10n")],
                Credential::Session(SessionId("s3ss10n".into())),
            ),
            (vec![("cookie", b"herd_session=")], Credential::None),
            (vec![("cookie", b"other_session=x")], Credential::None),
            (
                vec![
                    ("cookie", b"herd_session=s"),
                    ("authorization", bearer_key.as_bytes()),
                ],
                key(KEY),
            ),
            (
                vec![
                    ("cookie", b"herd_session=s"),
                    ("authorization", b"Bearer ollama"),
                ],
                Credential::Session(SessionId("s".into())),
            ),
        ];
        for (pairs, want) in cases {
            let got = credential(&headers(&pairs));
            assert_eq!(got, want, "{pairs:?}");
        }
    }

    #[test]
    fn credential_headers() {
        for (name, is) in [
            ("authorization", true),
            ("x-api-key", true),
            ("cookie", true),
            ("content-type", false),
            ("x-api-key-hint", false),
            ("proxy-authorization", false),
        ] {
            let name: HeaderName = name.parse().expect("header name");
            assert_eq!(is_credential_header(&name), is, "{name}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!(
            "{:?} {:?}",
            credential(&headers(&[("x-api-key", KEY.as_bytes())])),
            credential(&headers(&[("cookie", b"herd_session=s3ss10n")])),
        );
        assert!(!shown.contains(&KEY[18..]), "{shown}");
        assert!(!shown.contains("s3ss10n"), "{shown}");
    }
}
