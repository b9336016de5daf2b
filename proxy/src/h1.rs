//! HTTP/1.1 between herd and a node, the bytes only: writing a request
//! head, reading a response head, and cutting the body out of what the
//! connection reads (RFC 9112). No I/O here; [`crate::pool`] does that.
//!
//! hyper's client speaks the same protocol, but hands every request to
//! its connection through channels, builds a second request value and
//! buffers each side apart, which made it the largest single cost of a
//! proxied request (measured in docs/benchmarks.md, "Hand-written code and
//! what it buys"). What a node is asked is
//! narrow (a request herd already holds in full, or a streamed upload),
//! so the head is written straight from the client's headers into one
//! reused buffer, and body bytes are handed on as slices of the buffer
//! they were read into. `httparse` does the parsing.

use std::mem::MaybeUninit;

use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

/// A response head larger than this is refused (hyper's default limit is
/// about 400 KB; Ollama's heads are a few hundred bytes).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Response headers read at most.
const MAX_HEADERS: usize = 100;
/// A chunk-size line or one trailer line longer than this is refused.
const MAX_LINE: usize = 4 * 1024;
/// All trailers together.
const MAX_TRAILERS: usize = 16 * 1024;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("the node's response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed response head from the node: {0}")]
    Head(httparse::Error),
    #[error("the node answered {0}, which herd does not pass on")]
    Upgrade(StatusCode),
    #[error("invalid Content-Length from the node: {0:?}")]
    ContentLength(String),
    #[error("malformed chunked body from the node: {0}")]
    Chunked(&'static str),
    #[error("the node closed the connection before the response ended")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLen {
    /// `Content-Length: n` (added unless `headers` has it already).
    Known(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes the request line and headers into `out`: `path` (a prefix and
/// the path and query, joined), `Host`, the `headers` to pass on as they
/// are (without framing headers: the caller filtered them), then the
/// framing for `len`.
pub(crate) fn write_head<'h>(
    out: &mut Vec<u8>,
    method: &Method,
    path: [&str; 2],
    host: &HeaderValue,
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    len: BodyLen,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    for p in path {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match len {
        // GET and HEAD without a body say nothing about one, like every
        // client; anything else states its length, 0 included.
        BodyLen::Known(0) if matches!(*method, Method::GET | Method::HEAD) => {}
        BodyLen::Known(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        BodyLen::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A `Content-Length` value: decimal digits only, at most 19 of them (no
/// sign, no blanks, no overflow).
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    (!digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit)).then(|| {
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
    })
}

/// The decimal digits of `n`, written into the end of `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The line in front of a chunk of `len` bytes of a chunked request body.
pub(crate) fn chunk_line(out: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    let _ = write!(out, "{len:x}\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// How the body is framed.
    pub(crate) body: Decoder,
    /// Whether the connection may carry another request after this one.
    pub(crate) keep_alive: bool,
}

/// Takes a complete response head off the front of `buf`: `Ok(None)` when
/// more bytes are needed. Informational (1xx) responses before it are
/// skipped. Header values share the buffer's memory (no copies).
/// `head_request`: the request was `HEAD`, so there is no body whatever
/// the headers say.
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<Head>, WireError> {
    loop {
        // Offsets of names and values, so that the head can be frozen into
        // `Bytes` (which the values then share) once httparse lets go.
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let base = buf.as_ptr() as usize;
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(WireError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(WireError::Head(e)),
        };
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        let http10 = resp.version == Some(0);
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(WireError::Upgrade(status));
            }
            buf.advance(len);
            continue;
        }
        let count = resp.headers.len();
        // Collected, not a zeroed array of MAX_HEADERS: that cost a 1.6 KB
        // memset per response.
        let spans: SmallVec<[(u32, u32, u32, u32); 16]> = resp
            .headers
            .iter()
            .map(|h| {
                let name = h.name.as_ptr() as usize - base;
                let value = h.value.as_ptr() as usize - base;
                // Within MAX_HEAD plus one read, far below u32::MAX.
                (
                    name as u32,
                    (name + h.name.len()) as u32,
                    value as u32,
                    (value + h.value.len()) as u32,
                )
            })
            .collect();
        let head = buf.split_to(len).freeze();
        // Room for the `X-Herd-Node` the proxy adds (growing the map
        // later reallocates it).
        let mut headers = HeaderMap::with_capacity(count + 1);
        let mut scan = Scan::default();
        for &(n0, n1, v0, v1) in &spans {
            let name = header_name(&head[n0 as usize..n1 as usize])
                .ok_or(WireError::Head(httparse::Error::HeaderName))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
                .map_err(|_| WireError::Head(httparse::Error::HeaderValue))?;
            scan.see(&name, value.as_bytes())?;
            headers.append(name, value);
        }
        let body = scan.body(status, head_request);
        let keep_alive = scan.reusable(body, http10);
        return Ok(Some(Head {
            status,
            headers,
            body,
            keep_alive,
        }));
    }
}

/// A response header's name, `None` if it is not one. The names nearly
/// every Ollama response carries are matched directly:
/// `HeaderName::from_bytes` lowercases into a scratch buffer and then
/// searches every standard name, several times the work.
fn header_name(raw: &[u8]) -> Option<HeaderName> {
    let common = match raw.len() {
        4 => DATE,
        10 => CONNECTION,
        12 => CONTENT_TYPE,
        14 => CONTENT_LENGTH,
        17 => TRANSFER_ENCODING,
        _ => return HeaderName::from_bytes(raw).ok(),
    };
    if same_name(raw, common.as_str().as_bytes()) {
        Some(common)
    } else {
        HeaderName::from_bytes(raw).ok()
    }
}

/// Whether `raw`, a header name as httparse accepted it (a token), is
/// `lower` (lowercase letters and `-`) in any case. Setting bit 0x20
/// lowercases a letter and keeps `-`; no other token character turns into
/// a letter or `-` by it. Without an early exit the loop vectorizes.
fn same_name(raw: &[u8], lower: &[u8]) -> bool {
    raw.len() == lower.len()
        && raw
            .iter()
            .zip(lower)
            .fold(0, |diff, (r, l)| diff | ((r | 0x20) ^ l))
            == 0
}

/// What a response's headers say about its framing and its connection,
/// gathered in the one pass that builds the header map.
#[derive(Default)]
struct Scan {
    /// `Content-Length`: every value (and list item) the same number.
    length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding is `chunked`.
    chunked: bool,
    /// `Connection` tokens (RFC 9112 §9.3).
    close: bool,
    keep_alive: bool,
}

impl Scan {
    fn see(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), WireError> {
        let items = || value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name == CONTENT_LENGTH {
            for item in items() {
                match (decimal(item), self.length) {
                    (Some(n), None) => self.length = Some(n),
                    (Some(n), Some(l)) if n == l => {}
                    _ => {
                        return Err(WireError::ContentLength(
                            String::from_utf8_lossy(value).into_owned(),
                        ));
                    }
                }
            }
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
            if let Some(last) = items().rfind(|t| !t.is_empty()) {
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == CONNECTION {
            for token in items() {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }

    /// Whether the connection may carry another request after this
    /// response (RFC 9112 §9.3): not after a body that ran until the close,
    /// nor one framed both ways (§6.3: a sign of request smuggling).
    fn reusable(&self, body: Decoder, http10: bool) -> bool {
        let ambiguous = self.length.is_some() && self.transfer_encoding;
        if self.close || ambiguous || body == Decoder::UntilClose {
            return false;
        }
        !http10 || self.keep_alive
    }

    /// The body's framing (RFC 9112 §6.3).
    fn body(&self, status: StatusCode, head_request: bool) -> Decoder {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Decoder::Done
        } else if self.transfer_encoding {
            if self.chunked {
                Decoder::Chunked(Chunk::Size)
            } else {
                Decoder::UntilClose
            }
        } else {
            match self.length {
                None => Decoder::UntilClose,
                Some(0) => Decoder::Done,
                Some(n) => Decoder::Length(n),
            }
        }
    }
}

/// Where a response body stands; cuts its bytes out of the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the node closes the connection.
    UntilClose,
    /// The body has ended.
    Done,
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, then an empty line; `n` bytes of them so far.
    Trailers(usize),
}

/// What [`Decoder::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Data(Bytes),
    /// Nothing to hand on until more is read.
    More,
    /// The body has ended.
    End,
}

/// Up to `left` bytes off the front of `buf`, and how many are left after.
fn take(buf: &mut BytesMut, left: u64) -> (Bytes, u64) {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    (buf.split_to(n).freeze(), left - n as u64)
}

impl Decoder {
    /// The next piece of body in `buf`, taken off its front.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        loop {
            match *self {
                Decoder::Done => return Ok(Step::End),
                Decoder::Chunked(c @ (Chunk::Size | Chunk::DataEnd | Chunk::Trailers(_))) => {
                    if !self.frame(c, buf)? {
                        return Ok(Step::More);
                    }
                }
                // Data of some kind is next.
                _ if buf.is_empty() => return Ok(Step::More),
                Decoder::Length(left) => {
                    let (data, left) = take(buf, left);
                    *self = match left {
                        0 => Decoder::Done,
                        _ => Decoder::Length(left),
                    };
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunk::Data(left)) => {
                    let (data, left) = take(buf, left);
                    *self = Decoder::Chunked(match left {
                        0 => Chunk::DataEnd,
                        _ => Chunk::Data(left),
                    });
                    return Ok(Step::Data(data));
                }
                Decoder::UntilClose => return Ok(Step::Data(buf.split().freeze())),
            }
        }
    }

    /// Reads the framing that follows the data just handed on, as far as
    /// `buf` goes, so that a body whose last chunk has arrived is seen as
    /// ended without another read. Malformed framing is left for the next
    /// [`Decoder::step`] to report.
    pub(crate) fn settle(&mut self, buf: &mut BytesMut) {
        while let Decoder::Chunked(c @ (Chunk::DataEnd | Chunk::Size | Chunk::Trailers(_))) = *self
        {
            match self.frame(c, buf) {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// One piece of chunked framing off `buf`; `false` when it is not all
    /// there yet.
    fn frame(&mut self, c: Chunk, buf: &mut BytesMut) -> Result<bool, WireError> {
        match c {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((n, size))) => {
                    buf.advance(n);
                    *self = Decoder::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                    Ok(true)
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_LINE => {
                    Err(WireError::Chunked("chunk-size line too long"))
                }
                Ok(httparse::Status::Partial) => Ok(false),
                Err(_) => Err(WireError::Chunked("invalid chunk size")),
            },
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(WireError::Chunked("no CRLF after chunk data"));
                }
                buf.advance(2);
                *self = Decoder::Chunked(Chunk::Size);
                Ok(true)
            }
            Chunk::Trailers(seen) => {
                let Some(end) = memchr::memchr(b'\n', buf) else {
                    if buf.len() > MAX_LINE {
                        return Err(WireError::Chunked("trailer line too long"));
                    }
                    return Ok(false);
                };
                let line = &buf[..end];
                let empty = line.is_empty() || line == b"\r";
                buf.advance(end + 1);
                *self = if empty {
                    Decoder::Done
                } else if seen + end + 1 > MAX_TRAILERS {
                    return Err(WireError::Chunked("trailers too large"));
                } else {
                    Decoder::Chunked(Chunk::Trailers(seen + end + 1))
                };
                Ok(true)
            }
            Chunk::Data(_) => Ok(true),
        }
    }

    /// The node closed the connection: fine only for a body that runs
    /// until the close (or has ended).
    pub(crate) fn eof(&mut self) -> Result<(), WireError> {
        match self {
            Decoder::UntilClose | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(WireError::Truncated),
        }
    }

    /// The exact number of body bytes left, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: &[u8]) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(req), false)
    }

    #[test]
    fn header_names_match_the_http_crates_reading() {
        let names = [
            "Date",
            "date",
            "DATE",
            "Datf",
            "Connection",
            "Keep-Alive",
            "Content-Type",
            "content-TYPE",
            "Content-Typo",
            "Content-Length",
            "Transfer-Encoding",
            "X-Request-Id",
            // Token characters one bit away from a letter or `-`.
            "Dat^",
            "dat~",
            "Content_Type",
            "Content.Type",
            "Connectio`",
            "x-herd-node",
            "Server",
            "bad name",
            "",
            "Content-Type\0",
        ];
        for raw in names {
            assert_eq!(
                header_name(raw.as_bytes()),
                HeaderName::from_bytes(raw.as_bytes()).ok(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn request_heads() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let host = HeaderValue::from_static("node:11434");
        let cases: &[(Method, [&str; 2], BodyLen, &str)] = &[
            (
                Method::POST,
                ["", "/api/chat?x=1"],
                BodyLen::Known(12),
                "content-length: 12\r\n",
            ),
            (
                Method::POST,
                ["", "/api/chat"],
                BodyLen::Known(0),
                "content-length: 0\r\n",
            ),
            (Method::GET, ["", "/api/tags"], BodyLen::Known(0), ""),
            (Method::HEAD, ["", "/"], BodyLen::Known(0), ""),
            (
                Method::GET,
                ["", "/"],
                BodyLen::Known(3),
                "content-length: 3\r\n",
            ),
            (
                Method::POST,
                ["/ollama", "/api/blobs/x"],
                BodyLen::Chunked,
                "transfer-encoding: chunked\r\n",
            ),
        ];
        for (method, path, len, framing) in cases {
            let mut out = Vec::new();
            write_head(&mut out, method, *path, &host, h.iter(), *len);
            let want = format!(
                "{method} {}{} HTTP/1.1\r\nhost: node:11434\r\ncontent-type: application/json\r\nx-a: 1\r\nx-a: 2\r\n{framing}\r\n",
                path[0], path[1]
            );
            assert_eq!(
                String::from_utf8(out).expect("ascii"),
                want,
                "{method} {len:?}"
            );
        }
    }

    #[test]
    fn numbers_and_chunk_lines() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        chunk_line(&mut out, 255);
        chunk_line(&mut out, 1);
        assert_eq!(out, b"ff\r\n1\r\n");
    }

    #[test]
    fn response_framing() {
        use Decoder::*;
        // (response head, HEAD request, body, keep-alive)
        let cases: &[(&str, bool, Decoder, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                false,
                Done,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                false,
                Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                UntilClose,
                false,
            ),
            // Both: chunked wins, and the connection is not trusted again.
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                Chunked(Chunk::Size),
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                false,
                Length(5),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
                Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
                false,
                Length(5),
                true,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, Done, true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Done,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                true,
                Done,
                true,
            ),
            // Informational responses are skipped.
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n",
                false,
                Length(2),
                true,
            ),
        ];
        for (raw, head_request, body, keep_alive) in cases {
            let h = parse_head(&mut BytesMut::from(raw.as_bytes()), *head_request)
                .expect(raw)
                .expect(raw);
            assert_eq!((h.body, h.keep_alive), (*body, *keep_alive), "{raw:?}");
        }
    }

    #[test]
    fn heads_parse_in_pieces_and_keep_what_follows() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json; charset=utf-8\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n{}rest";
        for cut in 0..raw.len() - 6 {
            assert!(
                head_of(&raw[..cut]).expect("partial").is_none(),
                "cut at {cut}"
            );
        }
        let mut buf = BytesMut::from(&raw[..]);
        let h = parse_head(&mut buf, false)
            .expect("head")
            .expect("complete");
        assert_eq!(h.status, StatusCode::NOT_FOUND);
        assert_eq!(h.headers["content-type"], "application/json; charset=utf-8");
        let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(&buf[..], b"{}rest");
    }

    #[test]
    fn bad_heads_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                "herd does not pass on",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed response head"),
            (
                b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                "malformed response head",
            ),
        ];
        for (raw, want) in cases {
            let err = head_of(raw).expect_err("an error").to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(raw)
            );
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        let err = head_of(huge.as_bytes()).expect_err("too large");
        assert!(matches!(err, WireError::HeadTooLarge), "{err}");
    }

    /// Feeds `wire` to a decoder `step` bytes at a time; the data handed
    /// on, and how it ended.
    fn decode(mut d: Decoder, wire: &[u8], step: usize) -> (Vec<u8>, Result<(), String>, BytesMut) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.step(&mut buf) {
                Ok(Step::Data(b)) => {
                    assert!(!b.is_empty());
                    out.extend_from_slice(&b);
                    d.settle(&mut buf);
                }
                Ok(Step::End) => return (out, Ok(()), buf),
                Ok(Step::More) if fed < wire.len() => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Ok(Step::More) => return (out, d.eof().map_err(|e| e.to_string()), buf),
                Err(e) => return (out, Err(e.to_string()), buf),
            }
        }
    }

    #[test]
    fn bodies() {
        use Decoder::*;
        let chunked = Chunked(Chunk::Size);
        // (decoder, bytes on the wire, body, how it ends, bytes left after it)
        type Case<'a> = (Decoder, &'a [u8], &'a [u8], Result<(), &'a str>, &'a [u8]);
        let cases: &[Case] = &[
            (Length(5), b"hello", b"hello", Ok(()), b""),
            (Length(5), b"helloHTTP", b"hello", Ok(()), b"HTTP"),
            (
                Length(5),
                b"hel",
                b"hel",
                Err("before the response ended"),
                b"",
            ),
            (UntilClose, b"all of it", b"all of it", Ok(()), b""),
            (
                chunked,
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                b"hello world",
                Ok(()),
                b"",
            ),
            (
                chunked,
                b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nnext",
                b"hello",
                Ok(()),
                b"next",
            ),
            (
                chunked,
                b"A\r\n0123456789\r\n0\r\n\r\n",
                b"0123456789",
                Ok(()),
                b"",
            ),
            (
                chunked,
                b"5\r\nhello\r\n",
                b"hello",
                Err("before the response ended"),
                b"",
            ),
            (
                chunked,
                b"5\r\nhelloXX0\r\n\r\n",
                b"hello",
                Err("no CRLF after chunk data"),
                b"",
            ),
            (chunked, b"zz\r\n", b"", Err("invalid chunk size"), b""),
            (Done, b"", b"", Ok(()), b""),
        ];
        for (d, wire, body, ends, rest) in cases {
            for step in [1, 2, 3, 7, wire.len().max(1)] {
                let (got, end, left) = decode(*d, wire, step);
                let what = format!(
                    "{d:?} {:?} in steps of {step}",
                    String::from_utf8_lossy(wire)
                );
                assert_eq!(got, *body, "{what}");
                match (ends, &end) {
                    (Ok(()), Ok(())) => {}
                    (Err(want), Err(e)) => assert!(e.contains(want), "{what}: {e}"),
                    _ => panic!("{what}: {end:?}, expected {ends:?}"),
                }
                if ends.is_ok() && step == wire.len().max(1) {
                    assert_eq!(&left[..], *rest, "{what}");
                }
            }
        }
    }

    #[test]
    fn a_last_chunk_already_read_ends_the_body_with_its_data() {
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\n"[..]);
        let mut d = Decoder::Chunked(Chunk::Size);
        assert_eq!(
            d.step(&mut buf).expect("data"),
            Step::Data(Bytes::from_static(b"abc"))
        );
        d.settle(&mut buf);
        assert_eq!(d, Decoder::Done);
        assert_eq!(d.remaining(), Some(0));
        // Data cut short leaves it waiting, without an error.
        let mut buf = BytesMut::from(&b"3\r\nabc\r"[..]);
        let mut d = Decoder::Chunked(Chunk::Size);
        d.step(&mut buf).expect("data");
        d.settle(&mut buf);
        assert_eq!(d, Decoder::Chunked(Chunk::DataEnd));
    }

    #[test]
    fn body_values_share_the_read_buffer() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"0123456789");
        let ptr = buf.as_ptr();
        let mut d = Decoder::Length(10);
        let Step::Data(b) = d.step(&mut buf).expect("data") else {
            panic!("no data")
        };
        assert_eq!(b.as_ptr(), ptr);
    }
}
