//! Requests to the nodes: what goes into them (same path and end-to-end
//! headers, `Host` rewritten; sent by [`Pool::send`](crate::pool::Pool::send)
//! with a first-byte timeout), and sorting failures into what may be
//! retried elsewhere.

use std::error::Error as StdError;
use std::time::Duration;

use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use bytes::Bytes;

use crate::table::Target;

/// A request body to a node: the bytes already read (most requests, so a
/// retry can send them again) or the client's body streamed through
/// (blob uploads, which may be gigabytes).
pub(crate) enum UpBody {
    Full(Option<Bytes>),
    Stream(axum::body::Body),
}

impl UpBody {
    pub(crate) fn full(b: Bytes) -> UpBody {
        UpBody::Full((!b.is_empty()).then_some(b))
    }

    pub(crate) fn empty() -> UpBody {
        UpBody::Full(None)
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// A request to a node, made of the client's own parts (borrowed, so a
/// retry elsewhere costs no copies): same method, path and query, the
/// client's end-to-end headers ([`forwarded`]), `Host` set to the node's
/// own authority (Ollama on loopback answers 403 to any other host), and
/// a `Content-Length` (or chunked framing) for the body as sent.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    pub(crate) target: &'a Target,
    pub(crate) path_and_query: &'a PathAndQuery,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: UpBody,
}

/// The client's headers that go on to the node: all but the hop-by-hop
/// ones (the fixed list and those its `Connection` header names), `Host`
/// (the node's own is written), `Content-Length` (the body's own is) and
/// `Expect`: a `100-continue` is met on the client's side (herd's server
/// sends `100 Continue` as herd starts reading the body), and herd sends
/// the body to the node without waiting to be asked, as Envoy does.
pub(crate) fn forwarded(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    // The usual request has no `Connection` header, and so nothing named.
    let named = if headers.contains_key(header::CONNECTION) {
        connection_named(headers)
    } else {
        Vec::new()
    };
    headers.iter().filter(move |(name, _)| {
        !(hop_by_hop(name)
            || herd_auth::is_credential_header(name)
            || *name == header::HOST
            || *name == header::CONTENT_LENGTH
            || *name == header::EXPECT
            || named.contains(name))
    })
}

/// The headers a message's `Connection` header names (RFC 9110 §7.6.1:
/// `Connection: keep-alive, X-Foo` makes `X-Foo` hop-by-hop too).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        named.extend(
            value
                .split(',')
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .filter(|n| !hop_by_hop(n)),
        );
    }
    named
}

/// Removes the hop-by-hop headers: the fixed ones (see [`hop_by_hop`]) and
/// those the message's own `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The usual message has none (and so no `Connection` either): one pass.
    if !headers.keys().any(hop_by_hop) {
        return;
    }
    for name in &connection_named(headers) {
        headers.remove(name);
    }
    while let Some(name) = headers.keys().find(|n| hop_by_hop(n)).cloned() {
        headers.remove(&name);
    }
}

/// A node's response headers for the client: the same map (no copy),
/// minus hop-by-hop ones.
pub(crate) fn response_headers(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers
}

/// Why a node gave no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: refused, unroutable, DNS, connect timeout.
    Connect(String),
    /// Connected, but no response head within the first-byte timeout.
    Timeout(Duration),
    /// The connection broke before a response head arrived.
    Broken(String),
    /// The request could not be built (a bug or an odd URL).
    Request(String),
    /// The client's own body broke off while it was passed on (an upload
    /// cut short): no fault of the node's.
    ClientBody(String),
}

impl SendError {
    pub(crate) fn message(&self) -> String {
        match self {
            SendError::Connect(e) => format!("cannot connect: {e}"),
            SendError::Timeout(d) => format!(
                "no response within {} (first-byte timeout)",
                humantime::format_duration(*d)
            ),
            SendError::Broken(e) => format!("connection failed before a response: {e}"),
            SendError::Request(e) => format!("bad request to node: {e}"),
            SendError::ClientBody(e) => format!("the client's request body failed: {e}"),
        }
    }

    /// A short reason for metrics and conditions.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SendError::Connect(_) => "ConnectFailed",
            SendError::Timeout(_) => "FirstByteTimeout",
            SendError::Broken(_) => "ConnectionBroken",
            SendError::Request(_) => "BadRequest",
            SendError::ClientBody(_) => "ClientBodyFailed",
        }
    }
}

/// An error and its sources as one line, without repeats.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The path and query of a request to pass on ("/" if it has none).
pub(crate) fn path_and_query(uri: &axum::http::Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// The value of `X-Herd-Node`.
pub(crate) fn node_header(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or_else(|_| HeaderValue::from_static("invalid-node-name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_end_to_end_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("router.example.com:8080"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-gone"),
        );
        h.insert("x-gone", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        // Credentials are herd's, never a node's.
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::COOKIE, HeaderValue::from_static("herd_session=s"));
        h.insert("x-api-key", HeaderValue::from_static("herd_k"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.append("x-custom", HeaderValue::from_static("1"));
        h.append("x-custom", HeaderValue::from_static("2"));
        let got: Vec<(&str, &str)> = forwarded(&h)
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        assert_eq!(got, [("x-custom", "1"), ("x-custom", "2")]);
    }

    #[test]
    fn response_keeps_end_to_end_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append("x-custom", HeaderValue::from_static("1"));
        h.append("x-custom", HeaderValue::from_static("2"));
        let out = response_headers(h);
        assert_eq!(out.len(), 3);
        assert_eq!(out[header::CONTENT_TYPE], "application/x-ndjson");
        let custom: Vec<_> = out.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["1", "2"]);
    }

    #[test]
    fn headers_named_in_connection_are_hop_by_hop_too() {
        // (Connection values, headers present, headers left after stripping)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["keep-alive"], &["keep-alive", "x-a"], &["x-a"]),
            (&["keep-alive, X-Foo"], &["x-foo", "x-a"], &["x-a"]),
            (
                &["close", "x-foo ,x-bar"],
                &["x-foo", "x-bar", "x-a"],
                &["x-a"],
            ),
            // Case and blanks do not matter; empty or invalid tokens are skipped.
            (&["  X-FOO  , , b@d"], &["x-foo", "x-a"], &["x-a"]),
            // Naming a header that is not there changes nothing.
            (&["x-missing"], &["x-a"], &["x-a"]),
            // No Connection header: only the fixed list goes.
            (&[], &["te", "upgrade", "x-a"], &["x-a"]),
        ];
        for (connection, present, left) in cases {
            let mut h = HeaderMap::new();
            for c in *connection {
                h.append(header::CONNECTION, HeaderValue::from_str(c).expect("value"));
            }
            for name in *present {
                h.append(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_static("v"),
                );
            }
            strip_hop_by_hop(&mut h);
            let mut got: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            got.sort_unstable();
            assert_eq!(
                got, *left,
                "Connection: {connection:?}, present {present:?}"
            );
        }
    }
}
