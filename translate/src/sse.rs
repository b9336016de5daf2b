//! Server-sent events cut out of a byte stream that may split them anywhere.
//!
//! An event ends at a blank line (`\n\n`, `\r\n\r\n` or `\r\r`); its `data:`
//! lines are joined with `\n`; `event:` names it; comments (`:`) and other
//! fields are skipped. Bytes are kept until an event is whole, so a UTF-8
//! character split across chunks is never cut.

/// One event: its name (empty when none) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub name: String,
    pub data: String,
}

#[derive(Default, Debug)]
pub(crate) struct Splitter {
    buf: Vec<u8>,
}

/// Largest event kept while waiting for its end; past it the stream is not
/// SSE and the bytes are dropped (a node answering garbage must not grow
/// the proxy's memory without bound).
const MAX_EVENT: usize = 16 << 20;

impl Splitter {
    /// Adds bytes; returns the events they complete.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some((end, next)) = boundary(&self.buf[start..]) {
            if let Some(e) = parse(&self.buf[start..start + end]) {
                out.push(e);
            }
            start += next;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_EVENT {
            self.buf.clear();
        }
        out
    }

    /// The last event when the stream ends without its blank line.
    pub(crate) fn finish(&mut self) -> Option<Event> {
        let rest = std::mem::take(&mut self.buf);
        parse(&rest)
    }
}

/// Where the first event in `b` ends and where the next begins.
fn boundary(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' if b.get(i + 1) == Some(&b'\n') => return Some((i, i + 2)),
            b'\n' if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') => {
                return Some((i, i + 3));
            }
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                if b.get(i + 2) == Some(&b'\r') && b.get(i + 3) == Some(&b'\n') {
                    return Some((i, i + 4));
                }
                if b.get(i + 2) == Some(&b'\n') {
                    return Some((i, i + 3));
                }
                i += 2;
                continue;
            }
            b'\r' if b.get(i + 1) == Some(&b'\r') => return Some((i, i + 2)),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse(raw: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(raw);
    let mut name = String::new();
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "event" => value.clone_into(&mut name),
            _ => {}
        }
    }
    data.map(|data| Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut s = Splitter::default();
        let mut out: Vec<Event> = chunks.iter().flat_map(|c| s.feed(c)).collect();
        out.extend(s.finish());
        out
    }

    fn ev(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_survive_any_split() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: message_start\ndata: {\"b\":\"é\"}\n\ndata: [DONE]\n\n";
        let want = vec![
            ev("", "{\"a\":1}"),
            ev("message_start", "{\"b\":\"é\"}"),
            ev("", "[DONE]"),
        ];
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(all(&[&bytes[..cut], &bytes[cut..]]), want, "cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&singles), want);
    }

    #[test]
    fn line_endings_multiline_data_and_a_missing_last_blank_line() {
        assert_eq!(
            all(&[b"data: a\r\n\r\ndata:b\r\rdata: c\ndata: d\n\n"]),
            vec![ev("", "a"), ev("", "b"), ev("", "c\nd")]
        );
        assert_eq!(all(&[b"data: tail"]), vec![ev("", "tail")]);
        assert_eq!(all(&[b"id: 3\nretry: 10\n\n"]), vec![]);
    }
}
