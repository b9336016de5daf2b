//! [`Reply`]: how to answer the client once the node has answered, whole
//! or streamed.

use crate::error::{client_error, error_body};
use crate::sse::Splitter;
use crate::upstream::{self, Up};
use crate::{Answer, Dialect, JSON, NDJSON, SSE, Timing, anthropic, ollama, responses};

/// What the proxy keeps between sending the translated request and
/// answering the client. See the [crate docs](crate) for the flow.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) dialect: Dialect,
    /// The model name as the client wrote it, which Ollama echoes.
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// `/api/generate` answered by a chat completion or a completion.
    pub(crate) generate: bool,
}

impl Reply {
    pub(crate) fn new(dialect: Dialect, model: &str, stream: bool) -> Reply {
        Reply {
            dialect,
            model: model.to_owned(),
            stream,
            generate: dialect == Dialect::OllamaGenerate,
        }
    }

    /// The client's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the client asked for a stream (the node was asked for one).
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// The content type of a successful answer: NDJSON for Ollama streams,
    /// SSE for Anthropic and Responses streams, JSON otherwise.
    pub fn content_type(&self) -> &'static str {
        match (self.stream, self.dialect) {
            (false, _) => JSON,
            (true, Dialect::AnthropicMessages | Dialect::OpenAiResponses) => SSE,
            (true, _) => NDJSON,
        }
    }

    /// The client's answer from the node's whole answer. A status that is
    /// not 2xx gives the node's error in the client's shape (status kept);
    /// a 2xx body that cannot be read gives a 502.
    pub fn complete(&self, upstream_status: u16, upstream_body: &[u8], timing: Timing) -> Answer {
        if !(200..300).contains(&upstream_status) {
            return error_body(self.dialect, upstream_status, upstream_body);
        }
        let made = match self.dialect {
            Dialect::OllamaChat | Dialect::OllamaGenerate => {
                upstream::whole(upstream_body).map(|w| ollama::reply::whole(self, &w, timing))
            }
            Dialect::OllamaEmbed | Dialect::OllamaEmbeddings => {
                ollama::reply::embeddings(self, upstream_body, timing)
            }
            Dialect::AnthropicMessages => {
                upstream::whole(upstream_body).map(|w| anthropic::whole(self, &w))
            }
            Dialect::OpenAiResponses => {
                upstream::whole(upstream_body).map(|w| responses::whole(self, &w))
            }
        };
        match made {
            Ok(body) => Answer {
                status: 200,
                content_type: JSON,
                body,
            },
            Err(problem) => client_error(self.dialect, 502, &problem),
        }
    }

    /// A translator for the node's SSE stream.
    pub fn into_stream(self) -> StreamTranslator {
        let writer: Box<dyn Writer> = match self.dialect {
            Dialect::AnthropicMessages => Box::new(anthropic::Stream::new(self)),
            Dialect::OpenAiResponses => Box::new(responses::Stream::new(self)),
            _ => Box::new(ollama::reply::Stream::new(self)),
        };
        StreamTranslator {
            sse: Splitter::default(),
            writer,
            finished: false,
        }
    }
}

/// Writes one dialect's stream from the node's events.
pub(crate) trait Writer: Send + std::fmt::Debug {
    fn event(&mut self, up: Up, out: &mut Vec<u8>);
    /// The end of the node's body: the last of the client's stream, or an
    /// error when the node's stream broke off.
    fn finish(&mut self, timing: Timing, out: &mut Vec<u8>);
    /// Whether the node's stream reached its end (`[DONE]`, or a finish
    /// reason) or failed: what follows would be ignored.
    fn ended(&self) -> bool;
}

/// Turns a node's SSE chat-completion stream into the client's stream.
/// Chunks may split events anywhere.
#[derive(Debug)]
pub struct StreamTranslator {
    sse: Splitter,
    writer: Box<dyn Writer>,
    finished: bool,
}

impl StreamTranslator {
    /// Translates the next chunk of the node's body; returns the bytes to
    /// send to the client now (often empty while an event is incomplete).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        for e in self.sse.feed(chunk) {
            for up in upstream::chunk(&e.data) {
                self.writer.event(up, &mut out);
            }
        }
        out
    }

    /// The end of the node's body, normal or not: the client's last bytes.
    /// Call it once; later calls return nothing.
    pub fn finish(&mut self, timing: Timing) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        if let Some(e) = self.sse.finish() {
            for up in upstream::chunk(&e.data) {
                self.writer.event(up, &mut out);
            }
        }
        self.writer.finish(timing, &mut out);
        out
    }

    /// Whether the node's stream has reached its end (or failed): the proxy
    /// may stop reading and call [`finish`](Self::finish).
    pub fn is_done(&self) -> bool {
        self.writer.ended()
    }
}

/// Tool calls of a stream, gathered by their index.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub calls: Vec<upstream::ToolCall>,
    /// The index each call has upstream.
    pub indexes: Vec<usize>,
}

impl Calls {
    /// Adds a piece; returns the call's position and whether it is new.
    pub(crate) fn add(
        &mut self,
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: &str,
    ) -> (usize, bool) {
        let (pos, new) = match self.indexes.iter().position(|i| *i == index) {
            Some(p) => (p, false),
            None => {
                self.indexes.push(index);
                self.calls.push(upstream::ToolCall::default());
                (self.calls.len() - 1, true)
            }
        };
        let c = &mut self.calls[pos];
        if let Some(id) = id.filter(|i| !i.is_empty()) {
            c.id = id;
        }
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            c.name = name;
        }
        c.arguments.push_str(arguments);
        (pos, new)
    }
}

/// Test help: the client bytes for a node stream fed whole, one byte at a
/// time and cut at every point, checked to agree.
#[cfg(test)]
pub(crate) fn run_stream(reply: &Reply, node: &str, timing: Timing) -> String {
    let whole = {
        let mut s = reply.clone().into_stream();
        let mut out = s.feed(node.as_bytes());
        out.extend(s.finish(timing));
        out
    };
    let bytes = node.as_bytes();
    let mut bytewise = reply.clone().into_stream();
    let mut out: Vec<u8> = bytes.chunks(1).flat_map(|b| bytewise.feed(b)).collect();
    out.extend(bytewise.finish(timing));
    assert_eq!(out, whole, "byte by byte");
    for cut in (0..bytes.len()).step_by(7) {
        let mut s = reply.clone().into_stream();
        let mut out = s.feed(&bytes[..cut]);
        out.extend(s.feed(&bytes[cut..]));
        out.extend(s.finish(timing));
        assert_eq!(out, whole, "cut at {cut}");
    }
    String::from_utf8(whole).expect("UTF-8")
}

/// Test help: SSE `data:` events for the given JSON chunks, then `[DONE]`.
#[cfg(test)]
pub(crate) fn sse_of(chunks: &[serde_json::Value]) -> String {
    let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    s.push_str("data: [DONE]\n\n");
    s
}
