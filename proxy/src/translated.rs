//! Requests a node does not serve in the client's API, translated with
//! `herd-translate`: Ollama's native API sent to an OpenAI-compatible
//! server, and Anthropic's `/v1/messages` or OpenAI's `/v1/responses` sent
//! to a node without its own (onto its `/v1/chat/completions`).
//!
//! [`how`] decides, per request and node, whether to pass the request
//! through or translate it (pure, table-tested); the rest is the I/O
//! around `herd_translate`'s plan: the translated request goes to the node
//! through the same pool, retries and accounting as any other, and the
//! node's answer comes back whole ([`whole`]) or as a stream translated
//! chunk by chunk ([`Translating`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use herd_api::NodeApi;
use herd_translate::{Answer, Dialect, Reply, StreamTranslator, Timing};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

use crate::body::ProxyBody;
use crate::forward::Kind;
use crate::table::Backend;

/// Largest whole answer read from a node to translate (embeddings of a
/// long batch are the large ones).
const MAX_WHOLE: usize = 64 << 20;

/// What to do with a request on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// Send it as the client wrote it.
    Pass,
    /// Translate it from the client's API onto chat completions and back.
    Translate(Dialect),
    /// `/api/show` of an OpenAI node's model: answered from its listing.
    Show,
}

/// How `kind` is sent to `node`.
pub(crate) fn how(kind: Kind, node: &Backend) -> How {
    match (node.api, kind) {
        (_, Kind::OpenAi | Kind::Manage) => How::Pass,
        (_, Kind::Messages) if node.native_messages => How::Pass,
        (_, Kind::Messages) => How::Translate(Dialect::AnthropicMessages),
        (_, Kind::Responses) if node.native_responses => How::Pass,
        (_, Kind::Responses) => How::Translate(Dialect::OpenAiResponses),
        (NodeApi::Ollama, _) => How::Pass,
        (NodeApi::OpenAi, Kind::Chat) => How::Translate(Dialect::OllamaChat),
        (NodeApi::OpenAi, Kind::Generate) => How::Translate(Dialect::OllamaGenerate),
        (NodeApi::OpenAi, Kind::Embed) => How::Translate(Dialect::OllamaEmbed),
        (NodeApi::OpenAi, Kind::Embeddings) => How::Translate(Dialect::OllamaEmbeddings),
        (NodeApi::OpenAi, Kind::Show) => How::Show,
    }
}

/// A translated request on its way: what goes to the node, and how its
/// answer comes back.
pub(crate) struct Translation {
    pub path: PathAndQuery,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub reply: Reply,
}

impl Translation {
    pub(crate) fn new(up: herd_translate::Upstream, reply: Reply) -> Box<Translation> {
        Box::new(Translation {
            path: PathAndQuery::from_static(up.path),
            headers: headers(),
            body: Bytes::from(up.body),
            reply,
        })
    }
}

/// The headers a translated request carries: its own body's type and
/// nothing of the client's (whose `Accept-Encoding` could make the node
/// compress an answer herd has to read).
pub(crate) fn headers() -> HeaderMap {
    let mut h = HeaderMap::with_capacity(2);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    h
}

/// A translation's answer as an HTTP response.
pub(crate) fn response(answer: Answer) -> Response<Body> {
    let mut r = Response::new(Body::from(answer.body));
    *r.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    r
}

/// `/api/show` for `model` on an OpenAI node, from what its listing says.
pub(crate) fn show(model: &str) -> Response<Body> {
    let listed = herd_translate::NodeModel {
        id: model.to_owned(),
        created: 0,
        owned_by: String::new(),
        parameters: None,
        size: None,
        context_length: None,
    };
    response(Answer {
        status: 200,
        content_type: "application/json; charset=utf-8",
        body: herd_translate::show_from_model(&listed),
    })
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The client's answer from the node's whole answer (not streamed, or an
/// error status): read, then translated at once.
pub(crate) async fn whole(status: u16, body: ProxyBody, reply: &Reply, sent: Instant) -> Answer {
    let read = http_body_util::Limited::new(body, MAX_WHOLE)
        .collect()
        .await;
    let timing = Timing {
        total_ns: elapsed_ns(sent),
        first_token_ns: None,
    };
    match read {
        Ok(c) => reply.complete(status, &c.to_bytes(), timing),
        Err(_) => herd_translate::client_error(
            reply.dialect(),
            502,
            "the node's answer broke off or was too large to translate",
        ),
    }
}

/// A node's SSE stream translated into the client's stream as it arrives.
pub(crate) struct Translating {
    inner: ProxyBody,
    tr: StreamTranslator,
    sent: Instant,
    first: Option<u64>,
    done: bool,
}

impl Translating {
    pub(crate) fn new(inner: ProxyBody, reply: Reply, sent: Instant) -> Translating {
        Translating {
            inner,
            tr: reply.into_stream(),
            sent,
            first: None,
            done: false,
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            total_ns: elapsed_ns(self.sent),
            first_token_ns: self.first,
        }
    }

    /// The translator's last words (durations, or an error line for a
    /// stream cut short), and the end.
    fn end(&mut self) -> Poll<Option<Result<Frame<Bytes>, crate::body::BoxError>>> {
        self.done = true;
        let last = self.tr.finish(self.timing());
        if last.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(last)))))
        }
    }
}

impl hyper::body::Body for Translating {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let out = this.tr.feed(&data);
                    if out.is_empty() {
                        continue;
                    }
                    if this.first.is_none() {
                        this.first = Some(elapsed_ns(this.sent));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                // The node broke off: the translator ends the client's
                // stream with an error in its shape.
                Poll::Ready(Some(Err(_)) | None) => return this.end(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herd_api::{Node, NodeSpec, Resource};

    use super::*;

    fn backend(api: NodeApi, messages: bool, responses: bool) -> Backend {
        let mut n = Node::new(
            "n",
            NodeSpec {
                url: "http://127.0.0.1:1".into(),
                api,
                managed: api == NodeApi::Ollama,
                ..NodeSpec::default()
            },
        );
        if messages {
            n.status.endpoints = Some(vec![herd_api::endpoints::MESSAGES.into()]);
        }
        let t = crate::table::Table::build(
            &[Arc::new(n)],
            true,
            &crate::table::Lives::default(),
            &crate::table::Overlay::default(),
        );
        let mut b = Arc::try_unwrap(t.nodes.into_iter().next().expect("node"))
            .unwrap_or_else(|_| panic!("one reference"));
        b.native_messages = messages;
        b.native_responses = responses;
        b
    }

    #[test]
    fn how_table() {
        use How::{Pass, Show, Translate};
        let ollama_old = backend(NodeApi::Ollama, false, false);
        let ollama_new = backend(NodeApi::Ollama, true, true);
        let openai = backend(NodeApi::OpenAi, false, false);
        let openai_native = backend(NodeApi::OpenAi, true, true);
        let cases = [
            (&ollama_old, Kind::Chat, Pass),
            (&ollama_old, Kind::Show, Pass),
            (&ollama_old, Kind::OpenAi, Pass),
            (
                &ollama_old,
                Kind::Messages,
                Translate(Dialect::AnthropicMessages),
            ),
            (
                &ollama_old,
                Kind::Responses,
                Translate(Dialect::OpenAiResponses),
            ),
            (&ollama_new, Kind::Messages, Pass),
            (&ollama_new, Kind::Responses, Pass),
            (&openai, Kind::Chat, Translate(Dialect::OllamaChat)),
            (&openai, Kind::Generate, Translate(Dialect::OllamaGenerate)),
            (&openai, Kind::Embed, Translate(Dialect::OllamaEmbed)),
            (
                &openai,
                Kind::Embeddings,
                Translate(Dialect::OllamaEmbeddings),
            ),
            (&openai, Kind::Show, Show),
            (&openai, Kind::OpenAi, Pass),
            (
                &openai,
                Kind::Messages,
                Translate(Dialect::AnthropicMessages),
            ),
            (
                &openai,
                Kind::Responses,
                Translate(Dialect::OpenAiResponses),
            ),
            (&openai_native, Kind::Messages, Pass),
            (&openai_native, Kind::Responses, Pass),
            (&openai_native, Kind::Chat, Translate(Dialect::OllamaChat)),
        ];
        for (b, kind, want) in cases {
            assert_eq!(how(kind, b), want, "{:?} {kind:?}", b.api);
        }
    }

    #[test]
    fn translated_requests_carry_none_of_the_client_s_headers() {
        let h = headers();
        assert_eq!(h.len(), 2);
        assert!(!h.contains_key(header::ACCEPT_ENCODING));
        assert!(!h.contains_key(header::AUTHORIZATION));
    }
}
