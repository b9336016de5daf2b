//! Translation between the APIs clients speak and the one an
//! OpenAI-compatible node (llama.cpp's `llama-server`, vLLM, LM Studio, a
//! hosted endpoint) serves: chat completions, completions and embeddings.
//!
//! Pure: bytes in, bytes out, no I/O and no clock. The proxy reads the
//! client's body, asks [`request`] what to send, sends it, and hands the
//! node's answer back to the [`Reply`] it got, whole or as a stream of
//! chunks cut anywhere.
//!
//! ```
//! use herd_translate::{Dialect, Plan, Timing, request};
//!
//! let body = br#"{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
//! let Ok(Plan::Forward(upstream, reply)) = request(Dialect::OllamaChat, body) else { panic!() };
//! assert_eq!(upstream.path, "/v1/chat/completions");
//! assert!(!upstream.stream);
//! // … POST upstream.body to the node's upstream.path, then:
//! let node = br#"{"id":"c","created":1714564800,"choices":[{"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
//! let answer = reply.complete(200, node, Timing { total_ns: 5_000_000, first_token_ns: None });
//! assert_eq!(answer.status, 200);
//! let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
//! assert_eq!(v["message"]["content"], "Hello");
//! assert_eq!(v["eval_count"], 1);
//! ```
//!
//! # The API
//!
//! - [`request`]`(dialect, body)` → [`Plan::Forward`]`(`[`Upstream`]`, `[`Reply`]`)`
//!   (send `upstream.body` to `upstream.path`; `upstream.stream` says
//!   whether the node will stream) or [`Plan::Answer`] (answer the client
//!   without the node: an Ollama load or unload request with nothing to
//!   generate, an `/api/embed` with no input). A client mistake is a
//!   [`TranslateError`] naming the field; [`TranslateError::answer`] is its
//!   400 in the client's shape.
//! - [`Reply::complete`]`(status, body, timing)`: the client's whole answer
//!   from the node's whole answer, or its error in the client's shape when
//!   the node's status is not 2xx (also for a stream that failed before it
//!   began). [`Reply::content_type`] is the content type of a successful
//!   answer.
//! - [`Reply::into_stream`] → [`StreamTranslator`]: [`feed`](StreamTranslator::feed)
//!   each chunk of the node's SSE body and send what it returns;
//!   [`finish`](StreamTranslator::finish) at the end of the body (or when it
//!   broke) and send that too: Ollama's last line, which carries the
//!   durations, is written there, and a stream that ended early ends with an
//!   error in the client's shape.
//! - [`Timing`] is the proxy's own measure of the exchange; durations the
//!   node reports itself (llama.cpp's `timings`) win over it.
//! - [`error_body`] and [`client_error`]: error answers in each client's
//!   shape. [`parse_models`], [`tags_from_models`], [`ps_from_models`],
//!   [`show_from_model`]: Ollama's model listings made from a node's
//!   `/v1/models`.
//!
//! # Choices
//!
//! - `/api/generate` goes to `/v1/chat/completions` (the node applies the
//!   model's chat template, as Ollama does), with `system` as a system
//!   message and `images` on the user message; with `raw: true` or a
//!   `suffix` it goes to `/v1/completions` with the prompt as it is.
//!   `template` and `context` have no equivalent and are dropped.
//! - Options map to chat-completion fields: `temperature`, `top_p`, `seed`,
//!   `stop`, `presence_penalty`, `frequency_penalty` by their names,
//!   `num_predict` to `max_tokens` (negative: no limit). `top_k`, `min_p`,
//!   `typical_p`, `repeat_last_n` and `repeat_penalty` (also sent as vLLM's
//!   `repetition_penalty`) are sent under llama.cpp's and vLLM's names only
//!   when the client set them, since hosted OpenAI refuses them. Options
//!   that configure the runner (`num_ctx`, `num_gpu`, `num_thread`, …) and
//!   `keep_alive` are dropped: an OpenAI node is configured where it runs.
//! - `format: "json"` → `response_format: {"type":"json_object"}`; a schema
//!   → `{"type":"json_schema","json_schema":{"name":"response","schema":…}}`.
//! - `think: true|false` → `chat_template_kwargs.enable_thinking` (Qwen-style
//!   templates on llama.cpp and vLLM); `think: "low"|"medium"|"high"` →
//!   `reasoning_effort`. The node's `reasoning_content` (or `reasoning`) comes
//!   back as Ollama's `thinking`, Anthropic `thinking` blocks, or a Responses
//!   `reasoning` item.
//! - Ollama tool-call arguments are objects, OpenAI's are JSON text: they are
//!   encoded going out and decoded coming back (text that is not JSON stays a
//!   string). Calls without an id get `call_<message>_<call>`; an Ollama
//!   `tool` message without `tool_call_id` answers the earliest unanswered
//!   call of its `tool_name`.
//! - Streams ask the node for `stream_options.include_usage`, so the final
//!   counts are the node's.
//! - `/v1/responses` is stateless: `previous_response_id` is refused and
//!   nothing is stored.

mod anthropic;
mod error;
mod models;
mod ollama;
mod reply;
mod responses;
mod sse;
mod time;
mod upstream;
mod value;

pub use error::{TranslateError, client_error, error_body};
pub use models::{NodeModel, parse_models, ps_from_models, show_from_model, tags_from_models};
pub use reply::{Reply, StreamTranslator};

/// The API a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Ollama `POST /api/chat`.
    OllamaChat,
    /// Ollama `POST /api/generate`.
    OllamaGenerate,
    /// Ollama `POST /api/embed`.
    OllamaEmbed,
    /// Ollama `POST /api/embeddings` (the older single-prompt form).
    OllamaEmbeddings,
    /// Anthropic Messages, `POST /v1/messages`.
    AnthropicMessages,
    /// OpenAI Responses, `POST /v1/responses` (stateless).
    OpenAiResponses,
}

impl Dialect {
    /// The dialect of a client request path, if it is one this crate
    /// translates.
    pub fn of_path(path: &str) -> Option<Dialect> {
        Some(match path {
            "/api/chat" => Dialect::OllamaChat,
            "/api/generate" => Dialect::OllamaGenerate,
            "/api/embed" => Dialect::OllamaEmbed,
            "/api/embeddings" => Dialect::OllamaEmbeddings,
            "/v1/messages" => Dialect::AnthropicMessages,
            "/v1/responses" => Dialect::OpenAiResponses,
            _ => return None,
        })
    }
}

/// The request to send to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`.
    pub path: &'static str,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Whether the node will answer with an SSE stream.
    pub stream: bool,
    /// The model the client asked for (the body carries it too).
    pub model: String,
}

/// An answer for the client: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `application/json`, `application/x-ndjson` or `text/event-stream`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(status: u16, v: &impl serde::Serialize) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body: value::to_vec(v),
        }
    }
}

/// What to do with a client request.
#[derive(Debug)]
pub enum Plan {
    /// Send [`Upstream`] to the node; translate its answer with [`Reply`].
    Forward(Upstream, Reply),
    /// Answer the client at once: nothing for the node to do.
    Answer(Answer),
}

/// The proxy's timing of one exchange with the node, in nanoseconds from
/// sending the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Until the node's answer ended.
    pub total_ns: u64,
    /// Until the first generated text arrived (streams); `None` when the
    /// answer came whole.
    pub first_token_ns: Option<u64>,
}

pub(crate) const JSON: &str = "application/json";
pub(crate) const NDJSON: &str = "application/x-ndjson";
pub(crate) const SSE: &str = "text/event-stream";

/// Translates a client request of `dialect` for an OpenAI-compatible node.
pub fn request(dialect: Dialect, body: &[u8]) -> Result<Plan, TranslateError> {
    let v = value::object(body)?;
    match dialect {
        Dialect::OllamaChat => ollama::chat(&v),
        Dialect::OllamaGenerate => ollama::generate(&v),
        Dialect::OllamaEmbed => ollama::embed(&v),
        Dialect::OllamaEmbeddings => ollama::embeddings(&v),
        Dialect::AnthropicMessages => anthropic::request(&v),
        Dialect::OpenAiResponses => responses::request(&v),
    }
}
