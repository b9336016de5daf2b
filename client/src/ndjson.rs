//! Splitting a byte stream into newline-delimited JSON records.
//!
//! Network chunks do not respect record boundaries: one line may arrive in
//! several chunks and one chunk may carry many lines. The splitter buffers
//! only the unfinished tail and refuses to buffer more than `max_line` bytes,
//! so a peer that never sends a newline cannot exhaust memory.

use std::fmt;

use bytes::{Bytes, BytesMut};

/// A line grew past the splitter's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong {
    pub limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.limit)
    }
}

impl std::error::Error for LineTooLong {}

/// Incremental NDJSON line splitter: [`push`](Self::push) chunks in, take
/// complete lines out with [`next_line`](Self::next_line). Blank lines are
/// skipped and a trailing `\r` is dropped.
#[derive(Debug)]
pub struct LineSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no newline, so each byte is
    /// scanned once however the input is chunked.
    scanned: usize,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line, without its line ending; `Ok(None)` when more
    /// input is needed.
    pub fn next_line(&mut self) -> Result<Option<Bytes>, LineTooLong> {
        loop {
            let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Err(LineTooLong {
                        limit: self.max_line,
                    });
                }
                return Ok(None);
            };
            let end = self.scanned + offset;
            let line = self.buf.split_to(end + 1).freeze();
            self.scanned = 0;
            if end > self.max_line {
                return Err(LineTooLong {
                    limit: self.max_line,
                });
            }
            if let Some(line) = non_blank(line.slice(..end)) {
                return Ok(Some(line));
            }
        }
    }

    /// What is left once the input has ended: a last line that had no
    /// newline, if it is not blank.
    pub fn finish(&mut self) -> Result<Option<Bytes>, LineTooLong> {
        if let Some(line) = self.next_line()? {
            return Ok(Some(line));
        }
        self.scanned = 0;
        Ok(non_blank(self.buf.split().freeze()))
    }
}

fn non_blank(line: Bytes) -> Option<Bytes> {
    let line = match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line,
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut LineSplitter) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = s.next_line().expect("within limit") {
            out.push(String::from_utf8(line.to_vec()).expect("utf8"));
        }
        out
    }

    #[test]
    fn many_lines_in_one_chunk() {
        let mut s = LineSplitter::new(1024);
        s.push(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(drain(&mut s), ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        assert_eq!(s.finish(), Ok(None));
    }

    #[test]
    fn one_line_over_many_chunks() {
        let mut s = LineSplitter::new(1024);
        let mut got = Vec::new();
        for chunk in [&b"{\"a\""[..], b":", b"1}", b"\n{\"b\":", b"2}\n"] {
            s.push(chunk);
            got.extend(drain(&mut s));
        }
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let input = b"{\"x\":\"first\"}\r\n\n  \n{\"x\":\"second\"}\n{\"x\":\"third\"}";
        for cut in 0..=input.len() {
            let mut s = LineSplitter::new(1024);
            s.push(&input[..cut]);
            let mut got = drain(&mut s);
            s.push(&input[cut..]);
            got.extend(drain(&mut s));
            if let Some(last) = s.finish().expect("within limit") {
                got.push(String::from_utf8(last.to_vec()).expect("utf8"));
            }
            assert_eq!(
                got,
                [
                    "{\"x\":\"first\"}",
                    "{\"x\":\"second\"}",
                    "{\"x\":\"third\"}"
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn blank_lines_and_crlf_are_skipped() {
        let mut s = LineSplitter::new(1024);
        s.push(b"\n\r\n   \n{}\r\n\t\n");
        assert_eq!(drain(&mut s), ["{}"]);
        s.push(b"  ");
        assert_eq!(s.finish(), Ok(None));
    }

    #[test]
    fn unterminated_line_over_the_limit_is_refused_before_its_end() {
        let mut s = LineSplitter::new(8);
        s.push(b"12345678");
        assert_eq!(s.next_line(), Ok(None));
        s.push(b"9");
        assert_eq!(s.next_line(), Err(LineTooLong { limit: 8 }));
    }

    #[test]
    fn terminated_line_over_the_limit_is_refused() {
        let mut s = LineSplitter::new(4);
        s.push(b"ok\n123456\n");
        assert_eq!(s.next_line().expect("ok").as_deref(), Some(&b"ok"[..]));
        assert_eq!(s.next_line(), Err(LineTooLong { limit: 4 }));
    }

    #[test]
    fn line_of_exactly_the_limit_passes() {
        let mut s = LineSplitter::new(4);
        s.push(b"1234\n1234");
        assert_eq!(s.next_line().expect("ok").as_deref(), Some(&b"1234"[..]));
        assert_eq!(s.finish().expect("ok").as_deref(), Some(&b"1234"[..]));
    }
}
