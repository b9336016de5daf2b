//! The request path of everything routed to one node: read the body, find
//! the model, choose a node, send, retry elsewhere on failures before the
//! first byte, and stream the answer back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use bytes::Bytes;
use herd_translate::{Plan, Reply};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use smallvec::SmallVec;

use crate::affinity;
use crate::balance::{self, Dice};
use crate::body::{Finisher, Framing, InFlight, ProxyBody};
use crate::error::{Dialect, ProxyError};
use crate::history::{AffinityHit, Outcome, Recorder};
use crate::pool::UpstreamBody;
use crate::select::{self, NoRoute};
use crate::state::Shared;
use crate::table::{Backend, ModelEntry, ModelLive, Table};
use crate::translated::{self, How};
use crate::upstream::{self, Outgoing, SendError, UpBody};

/// How "model not found" reads on an endpoint (Ollama words it per handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotFoundWording {
    /// `model 'X' not found` (generate, chat, show, copy, delete, push, /v1).
    Quoted,
    /// `model "X" not found, try pulling it first` (embed, embeddings).
    TryPulling,
}

impl NotFoundWording {
    pub(crate) fn message(self, model: &str) -> String {
        match self {
            NotFoundWording::Quoted => format!("model '{model}' not found"),
            NotFoundWording::TryPulling => {
                format!("model {model:?} not found, try pulling it first")
            }
        }
    }
}

/// Which nodes can answer an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Ollama's model management (push, create): Ollama nodes.
    Ollama,
    /// Every node: itself or through translation (see `translated::how`).
    Any,
}

/// Which endpoint a model-routed request is for, as translation sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Generate,
    Embed,
    Embeddings,
    Show,
    /// `/api/push`, `/api/create`: Ollama's own.
    Manage,
    /// The OpenAI-compatible core every node serves.
    OpenAi,
    Messages,
    Responses,
}

/// What differs between the model-routed endpoints.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint {
    /// Which nodes can answer it.
    pub need: Need,
    pub kind: Kind,
    pub dialect: Dialect,
    /// `stream` when the request does not say: true for native, false for /v1.
    pub stream_default: bool,
    pub not_found: NotFoundWording,
    /// Answers end with token counts worth looking for (not `/api/show`,
    /// whose kilobytes of model details would be scanned for nothing).
    pub counts_tokens: bool,
    /// Turns of one conversation go back to the node holding its prefix
    /// (prompts are long and repeated: chat, generate, completions).
    pub affine: bool,
}

impl Endpoint {
    pub(crate) const NATIVE: Endpoint = Endpoint {
        need: Need::Ollama,
        kind: Kind::Manage,
        dialect: Dialect::Ollama,
        stream_default: true,
        not_found: NotFoundWording::Quoted,
        counts_tokens: true,
        affine: false,
    };
    pub(crate) const CHAT: Endpoint = Endpoint {
        need: Need::Any,
        kind: Kind::Chat,
        affine: true,
        ..Endpoint::NATIVE
    };
    pub(crate) const GENERATE: Endpoint = Endpoint {
        kind: Kind::Generate,
        ..Endpoint::CHAT
    };
    pub(crate) const SHOW: Endpoint = Endpoint {
        kind: Kind::Show,
        stream_default: false,
        counts_tokens: false,
        affine: false,
        ..Endpoint::CHAT
    };
    pub(crate) const EMBED: Endpoint = Endpoint {
        kind: Kind::Embed,
        stream_default: false,
        not_found: NotFoundWording::TryPulling,
        affine: false,
        ..Endpoint::CHAT
    };
    pub(crate) const EMBEDDINGS: Endpoint = Endpoint {
        kind: Kind::Embeddings,
        ..Endpoint::EMBED
    };
    pub(crate) const OPENAI: Endpoint = Endpoint {
        need: Need::Any,
        kind: Kind::OpenAi,
        dialect: Dialect::OpenAi,
        stream_default: false,
        not_found: NotFoundWording::Quoted,
        counts_tokens: true,
        affine: true,
    };
    pub(crate) const OPENAI_EMBED: Endpoint = Endpoint {
        not_found: NotFoundWording::TryPulling,
        affine: false,
        ..Endpoint::OPENAI
    };
    pub(crate) const MESSAGES: Endpoint = Endpoint {
        kind: Kind::Messages,
        ..Endpoint::OPENAI
    };
    pub(crate) const RESPONSES: Endpoint = Endpoint {
        kind: Kind::Responses,
        ..Endpoint::OPENAI
    };
}

/// The fields routing needs, read without building the whole document.
/// Strings are borrowed from the body unless they hold escapes.
#[derive(Deserialize, Default)]
pub(crate) struct Probe<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `/api/create`: the model it starts from.
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub from: Option<Cow<'a, str>>,
    /// `/api/copy`.
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    pub destination: Option<Cow<'a, str>>,
}

/// An optional string that borrows from the input when it can. (serde's
/// own `Option<Cow<str>>` always copies: its `borrow` reaches a `Cow`
/// only when the `Cow` is the field itself.)
fn borrowed_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(Visit)
}

impl<'a> Probe<'a> {
    /// Parses a JSON request body; an empty one is Ollama's "missing
    /// request body".
    pub(crate) fn parse(body: &'a [u8]) -> Result<Probe<'a>, ProxyError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ProxyError::BadRequest("missing request body".to_owned()));
        }
        serde_json::from_slice(body)
            .map_err(|e| ProxyError::BadRequest(format!("invalid request body: {e}")))
    }

    /// `model`, or `name` for older clients; `""` when neither is set.
    pub(crate) fn model(&self) -> &str {
        match (&self.model, &self.name) {
            (Some(m), _) if !m.trim().is_empty() => m.trim(),
            (_, Some(n)) => n.trim(),
            _ => "",
        }
    }
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    // One frame (the usual small JSON body) is kept as it came, uncopied.
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ProxyError::BodyTooLarge { limit }
            } else {
                ProxyError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m = bytes::BytesMut::with_capacity(f.len() + data.len());
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                joined = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
    }
    Ok(match joined {
        Some(m) => m.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Records the model: the fleet's name for it when known (shared, no
/// copy), else as the client wrote it.
pub(crate) fn set_model(rec: &mut Recorder, entry: Option<&ModelEntry>, raw: &str, stream: bool) {
    match entry {
        Some(e) => rec.set_model(e.display.clone(), true, stream),
        None => rec.set_model(Arc::from(raw), false, stream),
    }
}

/// Ends a request with the proxy's own error, recorded.
pub(crate) fn fail(rec: Recorder, err: ProxyError, dialect: Dialect) -> Response<Body> {
    let status = err.status().as_u16();
    let msg = err.to_string();
    let resp = err.to_response(dialect);
    rec.finish(Outcome {
        status,
        error: msg,
        ..Outcome::default()
    });
    resp
}

/// The error for a request no node can take.
pub(crate) fn no_route_error(no: &NoRoute, model: &str, wording: NotFoundWording) -> ProxyError {
    match no {
        NoRoute::ModelNotFound => ProxyError::NotFound(wording.message(model)),
        other => ProxyError::Unavailable(other.message(model)),
    }
}

/// `POST` endpoints that carry the model in their JSON body.
pub(crate) async fn model_routed(
    shared: Arc<Shared>,
    path: &'static str,
    ep: Endpoint,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut rec = Recorder::start(shared.sink.clone(), &parts.method, Cow::Borrowed(path));
    let bytes = match read_body(&parts.headers, body, shared.config.max_request_body).await {
        Ok(b) => b,
        Err(e) => return fail(rec, e, ep.dialect),
    };
    let probe = match Probe::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return fail(rec, e, ep.dialect),
    };
    let (model, stream) = (probe.model(), probe.stream.unwrap_or(ep.stream_default));
    let table = shared.current_table().await;
    if model.is_empty() {
        // Ollama's answer, unless there is no fleet to ask at all.
        let err = match select::fleet_check(&table) {
            Err(no) => ProxyError::Unavailable(no.message("")),
            Ok(()) => ProxyError::BadRequest("model is required".to_owned()),
        };
        return fail(rec, err, ep.dialect);
    }
    let entry = table.model(model);
    set_model(&mut rec, entry, model, stream);
    let affinity = (ep.affine && shared.config.prefix_affinity && entry.is_some()).then(|| {
        let session = parts.headers.get(SESSION_HEADER).map(|v| v.as_bytes());
        affinity::prefix_keys(model, &bytes, session)
    });
    let call = Call {
        parts: &parts,
        body: bytes.clone(),
        model,
        stream,
        ep,
        on_success: None,
        affinity,
    };
    forward(&shared, &table, entry, call, rec).await
}

/// One request to send to some node holding `model`.
pub(crate) struct Call<'a> {
    pub parts: &'a Parts,
    pub body: Bytes,
    pub model: &'a str,
    pub stream: bool,
    pub ep: Endpoint,
    /// Run after a 2xx response ended with `"status":"success"`, given the
    /// node that answered (create: the new model is there now).
    pub on_success: Option<OnNodeSuccess>,
    /// The request's prefix keys, when prefix affinity applies to it.
    pub affinity: Option<affinity::Keys>,
}

/// A client's explicit conversation key: turns that carry the same value go
/// to the same node (within the load bound), whatever their prompts.
pub(crate) const SESSION_HEADER: &str = "x-herd-session";

/// Told the node that answered, after a successful response.
pub(crate) type OnNodeSuccess = Box<dyn FnOnce(&str) + Send>;

/// A failed attempt, for the final message.
struct Failure {
    node: Arc<str>,
    message: String,
    busy: bool,
}

/// Sends `call` to the best candidate, moving to the next one on
/// connection failures, first-byte timeouts and 503s (and on a 404 when the
/// table believed the node had the model), at most `1 + max_retries` tries.
pub(crate) async fn forward(
    shared: &Arc<Shared>,
    table: &Table,
    entry: Option<&ModelEntry>,
    mut call: Call<'_>,
    mut rec: Recorder,
) -> Response<Body> {
    let max_attempts = 1 + shared.config.max_retries as usize;
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    let mut failures: Vec<Failure> = Vec::new();
    let path_and_query = upstream::path_and_query(&call.parts.uri);
    loop {
        let sent = Instant::now();
        let now = shared.clock.at(sent);
        // The candidates end here, before the request is sent: kept
        // across the await, they would enlarge every request's future.
        let (entry, chosen, reference) = {
            let mut cands = match select::candidates(table, entry, call.ep.need, now, &tried) {
                Ok(c) => c,
                Err(no) => {
                    return fail(
                        rec,
                        no_route_error(&no, call.model, call.ep.not_found),
                        call.ep.dialect,
                    );
                }
            };
            if cands.is_empty() {
                break;
            }
            let Some(entry) = entry else { break };
            select::prefer_loaded(table, &mut cands, shared.config.strategy);
            let (chosen, reference) = if cands.len() == 1 {
                // No choice to make (a one-node fleet): skip the cost model.
                (cands[0].clone(), None)
            } else {
                let loads = select::loads(table, entry, &cands, call.stream, now);
                let dice = Dice {
                    r1: rand::random::<u32>() as usize,
                    r2: rand::random::<u32>() as usize,
                    counter: shared.rr.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                };
                let remembered = remembered(shared, &call, table, &cands, &loads);
                rec.routed_by_affinity(remembered.map(|(_, hit)| hit));
                let ci = match remembered {
                    Some((ci, _)) => ci,
                    None => balance::pick(shared.config.strategy, &loads, dice),
                };
                // What the other candidates take, for judging this node's first sample.
                let others: SmallVec<[crate::balance::Load; 8]> = loads
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| *i != ci && l.ttfb_secs.is_some())
                    .map(|(_, l)| *l)
                    .collect();
                let reference = (!others.is_empty()).then(|| balance::default_ttfb(&others));
                (cands[ci].clone(), reference)
            };
            (entry, chosen, reference)
        };
        let backend = &table.nodes[chosen.node];
        backend.live.note_pick(now, shared.next_pick());
        if let Some(keys) = &call.affinity {
            shared.tables.affinity.record(keys, &backend.name);
        }
        tried.push(chosen.node);
        let Some(target) = &backend.target else { break };
        if tried.len() > 1 {
            shared.sink.metrics.retry();
        }

        // A request the node does not serve in the client's API is
        // translated (see `translated`); the Ollama path passes through.
        // What a translation needs is one pointer here: kept across the
        // await, it would otherwise enlarge every request's future.
        let translation: Option<Box<translated::Translation>> =
            match translated::how(call.ep.kind, backend) {
                How::Pass => None,
                How::Show => {
                    return answered(rec, backend, translated::show(call.model));
                }
                How::Translate(dialect) => match herd_translate::request(dialect, &call.body) {
                    Err(e) => {
                        return answered(rec, backend, translated::response(e.answer(dialect)));
                    }
                    Ok(Plan::Answer(a)) => {
                        return answered(rec, backend, translated::response(a));
                    }
                    Ok(Plan::Forward(up, reply)) => Some(translated::Translation::new(up, reply)),
                },
            };
        let in_flight = InFlight::new(backend.live.clone());
        rec.waiting_on(&backend.name, &backend.live);
        let req = match &translation {
            None => Outgoing {
                method: &call.parts.method,
                target,
                path_and_query: &path_and_query,
                headers: &call.parts.headers,
                body: UpBody::full(call.body.clone()),
            },
            Some(t) => Outgoing {
                method: &call.parts.method,
                target,
                path_and_query: &t.path,
                headers: &t.headers,
                body: UpBody::full(t.body.clone()),
            },
        };
        let result = shared
            .client
            .send_at(req, shared.config.first_byte_timeout, sent)
            .await;
        let may_retry = || {
            tried.len() < max_attempts
                && select::candidates(table, Some(entry), call.ep.need, shared.clock.now(), &tried)
                    .is_ok_and(|c| !c.is_empty())
        };
        match result {
            Ok(resp) => {
                let status = resp.status();
                let busy = status == StatusCode::SERVICE_UNAVAILABLE;
                if (busy || status == StatusCode::NOT_FOUND) && may_retry() {
                    let why = if busy { "Busy" } else { "ModelMissing" };
                    shared.sink.metrics.failure(&backend.name, why);
                    if busy {
                        backend
                            .live
                            .errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::debug!(node = %backend.name, %status, "retrying on another node");
                    failures.push(Failure {
                        node: backend.name.clone(),
                        message: format!("answered {status}"),
                        busy,
                    });
                    continue;
                }
                if status.is_success() {
                    let answered = Instant::now();
                    entry.holders[chosen.holder].live.observe(
                        call.stream,
                        answered.saturating_duration_since(sent).as_secs_f64(),
                        shared.clock.at(answered),
                        reference,
                    );
                }
                if backend.reported_unreachable {
                    shared.reporter.reachable(&backend.name, &backend.live);
                }
                let retries = u32::try_from(tried.len() - 1).unwrap_or(u32::MAX);
                let on_success = call.on_success.take().map(|f| {
                    let node = backend.name.clone();
                    Box::new(move || f(&node)) as Box<dyn FnOnce() + Send>
                });
                let served = Served {
                    retries,
                    pair: Some(entry.holders[chosen.holder].live.clone()),
                    on_success,
                    counts_tokens: call.ep.counts_tokens,
                };
                if let Some(t) = translation {
                    // Boxed: its state stays out of every request's future.
                    return Box::pin(respond_translated(
                        shared, resp, backend, rec, in_flight, served, t.reply, sent,
                    ))
                    .await;
                }
                return respond(shared, resp, backend, rec, in_flight, served);
            }
            Err(e) => {
                drop(in_flight);
                let message = e.message();
                tracing::warn!(node = %backend.name, error = %message, "node failed before responding");
                shared.send_failed(backend, &e);
                let timeout = matches!(e, SendError::Timeout(_));
                failures.push(Failure {
                    node: backend.name.clone(),
                    message,
                    busy: false,
                });
                if timeout && !shared.config.retry_on_timeout {
                    let f = failures.pop().map(|f| f.message).unwrap_or_default();
                    return fail(
                        rec,
                        ProxyError::GatewayTimeout(format!("node {}: {f}", backend.name)),
                        call.ep.dialect,
                    );
                }
                if tried.len() >= max_attempts {
                    break;
                }
            }
        }
    }
    fail(rec, exhausted(call.model, &failures), call.ep.dialect)
}

/// The candidate that served this request's conversation before (its
/// session or longest known prefix), when it may take one more request
/// within the load bound; `None` leaves the pick to the balancer.
fn remembered(
    shared: &Shared,
    call: &Call<'_>,
    table: &Table,
    cands: &[select::Candidate],
    loads: &[crate::balance::Load],
) -> Option<(usize, AffinityHit)> {
    let keys = call.affinity.as_ref()?;
    let found = shared.tables.affinity.lookup(keys);
    let position = found.as_ref().and_then(|found| {
        cands
            .iter()
            .position(|c| table.nodes[c.node].name == found.node)
    });
    let (Some(found), Some(ci)) = (found, position) else {
        shared.sink.metrics.affinity("miss");
        return None;
    };
    let in_flight: SmallVec<[u32; 8]> = loads.iter().map(|l| l.in_flight).collect();
    let within = affinity::bounded(&in_flight, ci, affinity::DEFAULT_FACTOR);
    shared
        .sink
        .metrics
        .affinity(if within { "hit" } else { "overloaded" });
    within.then_some((
        ci,
        AffinityHit {
            prefix_bytes: found.matched_bytes.map(|b| b as u64),
        },
    ))
}

/// The error after every allowed attempt failed: 503 when every node was
/// busy, 502 otherwise; it names each node tried and what happened.
fn exhausted(model: &str, failures: &[Failure]) -> ProxyError {
    let list: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.node, f.message))
        .collect();
    let what = if model.is_empty() {
        String::new()
    } else {
        format!(" for model '{model}'")
    };
    let msg = format!(
        "all {} node{} tried{what} failed: {}",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" },
        list.join("; ")
    );
    if !failures.is_empty() && failures.iter().all(|f| f.busy) {
        ProxyError::Unavailable(msg)
    } else {
        ProxyError::BadGateway(msg)
    }
}

/// How a request reached the node that answers it, for its record.
#[derive(Default)]
pub(crate) struct Served {
    /// Attempts on other nodes before this one.
    pub retries: u32,
    /// The (node, model) pair, for its cached metric series.
    pub pair: Option<Arc<ModelLive>>,
    /// Run when the response ends in success.
    pub on_success: Option<Box<dyn FnOnce() + Send>>,
    /// Look for token counts at the end of the body.
    pub counts_tokens: bool,
}

/// Answers a request without sending it to a node (a translation that
/// needs no node, a client mistake the translation found), recorded
/// against the node it was for.
fn answered(rec: Recorder, backend: &Backend, mut resp: Response<Body>) -> Response<Body> {
    rec.finish(Outcome {
        status: resp.status().as_u16(),
        node: Some((backend.name.clone(), backend.live.clone())),
        ..Outcome::default()
    });
    resp.headers_mut()
        .insert(crate::NODE_HEADER_NAME, backend.header.clone());
    resp
}

/// A translated request's answer: the node's body, read through the
/// accounting of [`node_body`], translated back into the client's API,
/// whole or as a stream.
#[allow(clippy::too_many_arguments)]
async fn respond_translated(
    shared: &Shared,
    resp: Response<UpstreamBody>,
    backend: &Backend,
    rec: Recorder,
    in_flight: InFlight,
    served: Served,
    reply: Reply,
    sent: Instant,
) -> Response<Body> {
    let (parts, body) = node_body(shared, resp, backend, rec, in_flight, served);
    let mut out = if reply.stream() && parts.status.is_success() {
        let mut r = Response::new(Body::new(translated::Translating::new(
            body,
            reply.clone(),
            sent,
        )));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(reply.content_type()),
        );
        r
    } else {
        translated::response(translated::whole(parts.status.as_u16(), body, &reply, sent).await)
    };
    out.headers_mut()
        .insert(crate::NODE_HEADER_NAME, backend.header.clone());
    out
}

/// Streams a node's response to the client, recording it when it ends.
pub(crate) fn respond(
    shared: &Shared,
    resp: Response<UpstreamBody>,
    backend: &Backend,
    rec: Recorder,
    in_flight: InFlight,
    served: Served,
) -> Response<Body> {
    let (parts, body) = node_body(shared, resp, backend, rec, in_flight, served);
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = upstream::response_headers(parts.headers);
    out.headers_mut()
        .insert(crate::NODE_HEADER_NAME, backend.header.clone());
    out
}

/// The node's response head, and its body wrapped for accounting: the
/// request is recorded, its in-flight count dropped and its tokens counted
/// when the body ends.
fn node_body(
    shared: &Shared,
    resp: Response<UpstreamBody>,
    backend: &Backend,
    rec: Recorder,
    in_flight: InFlight,
    served: Served,
) -> (axum::http::response::Parts, ProxyBody) {
    let Served {
        retries,
        pair,
        on_success,
        counts_tokens,
    } = served;
    let (parts, incoming) = resp.into_parts();
    let framing = Framing::of(&parts.headers);
    let needs_success_line = on_success.is_some();
    let fin = Finisher {
        rec,
        outcome: Outcome {
            status: parts.status.as_u16(),
            node: Some((backend.name.clone(), backend.live.clone())),
            pair,
            retries,
            node_failed: parts.status.is_server_error(),
            ..Outcome::default()
        },
        in_flight: Some(in_flight),
        on_success,
        needs_success_line,
        counts_tokens,
        garbage_trips: crate::body::promises_json(&parts.headers)
            .then_some((shared.clock, shared.config.failure_cooldown)),
    };
    let body = ProxyBody::new(incoming, framing, backend.name.clone(), fin);
    (parts, body)
}

/// `GET /v1/models/{model}`: the model named in the path.
pub(crate) async fn model_in_path(
    shared: Arc<Shared>,
    model: String,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, _) = req.into_parts();
    let mut rec = Recorder::start(
        shared.sink.clone(),
        &parts.method,
        Cow::Owned(parts.uri.path().to_owned()),
    );
    let table = shared.current_table().await;
    let entry = table.model(&model);
    set_model(&mut rec, entry, &model, false);
    let call = Call {
        parts: &parts,
        body: Bytes::new(),
        model: &model,
        stream: false,
        ep: Endpoint::OPENAI,
        on_success: None,
        affinity: None,
    };
    forward(&shared, &table, entry, call, rec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reads_the_routing_fields_borrowing_plain_strings() {
        // (body, model(), stream, model borrowed from the body)
        let cases: &[(&str, &str, Option<bool>, bool)] = &[
            (
                r#"{"model":"llama3","stream":false}"#,
                "llama3",
                Some(false),
                true,
            ),
            // Older clients name the model `name`.
            (r#"{"name":"qwen:7b"}"#, "qwen:7b", None, true),
            // An escape in the string: unescaped into a copy.
            (r#"{"model":"a\u0062c"}"#, "abc", None, false),
            // `null` is no model, as in Ollama.
            (r#"{"model":null,"name":"x"}"#, "x", None, true),
            (r#"{"model":"  padded  "}"#, "padded", None, true),
            // Other fields, of any shape, are skipped.
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"model":"m","options":{"x":1}}"#,
                "m",
                None,
                true,
            ),
            (r#"{}"#, "", None, false),
        ];
        for (body, model, stream, borrowed) in cases {
            let p = Probe::parse(body.as_bytes()).expect(body);
            assert_eq!(p.model(), *model, "{body}");
            assert_eq!(p.stream, *stream, "{body}");
            let field = p.model.as_ref().or(p.name.as_ref());
            assert_eq!(
                field.is_some_and(|c| matches!(c, Cow::Borrowed(_))),
                *borrowed,
                "{body}"
            );
        }
    }

    #[test]
    fn probe_names_what_is_wrong_with_a_body() {
        let cases: &[(&str, &str)] = &[
            ("", "missing request body"),
            ("  \n", "missing request body"),
            (
                r#"{"model":5}"#,
                "invalid request body: invalid type: integer `5`, expected a string",
            ),
            (r#"{"model":"x""#, "invalid request body: EOF while parsing"),
            (
                r#"{"stream":"yes"}"#,
                "invalid request body: invalid type: string",
            ),
        ];
        for (body, want) in cases {
            let Err(e) = Probe::parse(body.as_bytes()) else {
                panic!("{body:?} parsed");
            };
            assert!(e.to_string().starts_with(want), "{body:?}: {e}");
        }
    }
}
