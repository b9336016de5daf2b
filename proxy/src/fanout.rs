//! Requests that go to every ready, schedulable node at once: `/api/pull`
//! (progress merged into one stream in Ollama's format), `/api/delete` and
//! `/api/copy` (one answer for the whole fleet).
//!
//! The merge of the progress lines ([`Merge`]) and the final verdict are pure and
//! table-tested; the rest is the I/O that sends to the nodes and streams the merge back.
//! The lines are `herd_client::ollama::PullLine`, the type the nodelet reads too.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use herd_client::ollama::{ErrorBody, PULL_SUCCESS, PullLine};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Dialect, ProxyError};
use crate::forward::{Probe, fail, read_body};
use crate::history::{Outcome, Recorder};
use crate::pool::UpstreamBody;
use crate::select;
use crate::state::Shared;
use crate::table::Table;
use crate::upstream::{self, Outgoing, SendError, UpBody};

/// Longest error body read from a node.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest progress line accepted from a node.
const MAX_LINE: usize = 1 << 20;

/// The nodes a fan-out goes to: ready, schedulable, with a URL.
fn targets(table: &Table) -> Vec<usize> {
    table
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, b)| b.fanout_target())
        .map(|(i, _)| i)
        .collect()
}

/// The nodes a fan-out would reach but for their API: OpenAI-compatible
/// servers have no pull, copy or delete.
pub(crate) fn skipped(table: &Table) -> Vec<Arc<str>> {
    table
        .nodes
        .iter()
        .filter(|b| b.api != herd_api::NodeApi::Ollama && b.ready && !b.unschedulable)
        .map(|b| b.name.clone())
        .collect()
}

/// The header that names the nodes a fan-out skipped.
pub(crate) const SKIPPED_HEADER: &str = "x-herd-skipped";

/// Says on `resp` which nodes were skipped, and why.
pub(crate) fn note_skipped(resp: &mut Response<Body>, skipped: &[Arc<str>]) {
    if skipped.is_empty() {
        return;
    }
    let names: Vec<&str> = skipped.iter().map(|n| &**n).collect();
    let text = format!(
        "{} (OpenAI-compatible: no model management)",
        names.join(", ")
    );
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut().insert(SKIPPED_HEADER, v);
    }
}

/// The error when no node can take a fan-out, naming the nodes skipped.
fn no_targets(table: &Table) -> ProxyError {
    let skipped = skipped(table);
    let mut msg = "no nodes available: no Ollama node is ready and schedulable".to_owned();
    if !skipped.is_empty() {
        let names: Vec<&str> = skipped.iter().map(|n| &**n).collect();
        msg.push_str(&format!(
            " (skipped {}: OpenAI-compatible servers have no pull, copy or delete)",
            names.join(", ")
        ));
    }
    ProxyError::Unavailable(msg)
}

/// What one node answered to a fan-out.
enum Answer {
    Response(Response<UpstreamBody>),
    Failed(SendError),
}

async fn send_all(
    shared: &Arc<Shared>,
    table: &Table,
    nodes: &[usize],
    parts: &Parts,
    body: &Bytes,
) -> Vec<Answer> {
    let pq = &upstream::path_and_query(&parts.uri);
    let sends = nodes.iter().map(|&i| {
        let b = &table.nodes[i];
        async move {
            let Some(target) = b.target.as_ref() else {
                return Answer::Failed(SendError::Request("no url".into()));
            };
            let req = Outgoing {
                method: &parts.method,
                target,
                path_and_query: pq,
                headers: &parts.headers,
                body: UpBody::full(body.clone()),
            };
            match shared
                .client
                .send(req, shared.config.first_byte_timeout)
                .await
            {
                Ok(r) => Answer::Response(r),
                Err(e) => {
                    shared.send_failed(b, &e);
                    Answer::Failed(e)
                }
            }
        }
    });
    futures_util::future::join_all(sends).await
}

/// The `error` of a node's JSON error body, or the body as text.
fn error_text(body: &[u8]) -> String {
    ErrorBody::parse_message(body)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

async fn read_small(body: UpstreamBody) -> Bytes {
    http_body_util::Limited::new(body, MAX_ERROR_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default()
}

/// Joins "node: message" pairs, grouping nodes that said the same thing.
fn grouped(fails: &[(Arc<str>, String)]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut by_msg: HashMap<&str, Vec<&str>> = HashMap::new();
    for (node, msg) in fails {
        if !by_msg.contains_key(msg.as_str()) {
            order.push(msg);
        }
        by_msg.entry(msg).or_default().push(node);
    }
    order
        .iter()
        .map(|m| format!("{}: {m}", by_msg[m].join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn node_list_header(names: &[Arc<str>]) -> HeaderValue {
    let joined = names.iter().map(|n| &**n).collect::<Vec<_>>().join(",");
    upstream::node_header(&joined)
}

/// What a non-streaming fan-out does to the model overlay on success.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simple {
    /// `DELETE /api/delete`: the model is gone from the nodes that said 200.
    Delete,
    /// `POST /api/copy`: the destination exists where the copy worked.
    Copy,
}

/// `DELETE /api/delete` and `POST /api/copy` on every node: 200 when at
/// least one node did it and none failed (a 404 means "did not have it"),
/// the nodes' 404 when none had the model, 502 naming the nodes that failed.
pub(crate) async fn simple(
    shared: Arc<Shared>,
    kind: Simple,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = match kind {
        Simple::Delete => "/api/delete",
        Simple::Copy => "/api/copy",
    };
    let mut rec = Recorder::start(shared.sink.clone(), &parts.method, Cow::Borrowed(path));
    let bytes = match read_body(&parts.headers, body, shared.config.max_request_body).await {
        Ok(b) => b,
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let probe = match Probe::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let (model, overlay_model) = match kind {
        Simple::Delete => (probe.model().to_owned(), probe.model().to_owned()),
        Simple::Copy => (
            probe
                .source
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            probe
                .destination
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    };
    let table = shared.current_table().await;
    crate::forward::set_model(&mut rec, table.model(&model), &model, false);
    if let Err(no) = select::fleet_check(&table) {
        return fail(
            rec,
            ProxyError::Unavailable(no.message(&model)),
            Dialect::Ollama,
        );
    }
    let nodes = targets(&table);
    if nodes.is_empty() {
        return fail(rec, no_targets(&table), Dialect::Ollama);
    }
    let answers = send_all(&shared, &table, &nodes, &parts, &bytes).await;

    let mut done: Vec<Arc<str>> = Vec::new();
    let mut missing: Option<(StatusCode, Bytes)> = None;
    let mut fails: Vec<(Arc<str>, String)> = Vec::new();
    let mut client_errors: Vec<(StatusCode, Bytes)> = Vec::new();
    for (&i, answer) in nodes.iter().zip(answers) {
        let b = &table.nodes[i];
        match answer {
            Answer::Response(r) => {
                let status = r.status();
                let body = read_small(r.into_body()).await;
                b.live
                    .processed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if status.is_success() {
                    done.push(b.name.clone());
                } else if status == StatusCode::NOT_FOUND {
                    missing.get_or_insert((status, body));
                } else {
                    if status.is_client_error() {
                        client_errors.push((status, body.clone()));
                    }
                    fails.push((b.name.clone(), format!("{} ({status})", error_text(&body))));
                }
            }
            Answer::Failed(e) => fails.push((b.name.clone(), e.message())),
        }
    }
    if !overlay_model.is_empty() && !done.is_empty() {
        let present = kind == Simple::Copy;
        shared
            .tables
            .set_model(done.iter().map(|n| &**n), &overlay_model, present);
    }

    let (status, body, error) = if fails.is_empty() && !done.is_empty() {
        (StatusCode::OK, Bytes::new(), String::new())
    } else if fails.is_empty() {
        // Every node said 404: pass Ollama's own words on.
        let (s, b) = missing.unwrap_or((StatusCode::NOT_FOUND, Bytes::new()));
        let e = error_text(&b);
        (s, b, e)
    } else if done.is_empty() && client_errors.len() == fails.len() && missing.is_none() {
        // Every node refused the request itself (a bad name): theirs is the answer.
        let (s, b) = client_errors.swap_remove(0);
        let e = error_text(&b);
        (s, b, e)
    } else {
        let verb = if kind == Simple::Delete {
            "delete"
        } else {
            "copy"
        };
        let mut msg = format!(
            "{verb} of '{model}' failed on {} of {} nodes: {}",
            fails.len(),
            nodes.len(),
            grouped(&fails)
        );
        if !done.is_empty() {
            let names: Vec<&str> = done.iter().map(|n| &**n).collect();
            msg.push_str(&format!(" (done on {})", names.join(", ")));
        }
        let err = ProxyError::BadGateway(msg);
        let e = err.to_string();
        let resp = err.to_response(Dialect::Ollama);
        rec.finish(Outcome {
            status: resp.status().as_u16(),
            error: e,
            ..Outcome::default()
        });
        return resp;
    };
    rec.finish(Outcome {
        status: status.as_u16(),
        error,
        ..Outcome::default()
    });
    let mut resp = Response::new(Body::from(body.clone()));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    if !done.is_empty() {
        resp.headers_mut()
            .insert(crate::NODE_HEADER, node_list_header(&done));
    }
    resp
}

/// What a node's pull stream says next.
#[derive(Debug)]
enum NodeEvent {
    Line(PullLine),
    /// The node's pull ended: `Ok` after its `success`, else why not.
    End(Result<(), String>),
}

/// A node's pull body as events, ending with exactly one `End`.
fn node_events(node: usize, body: UpstreamBody) -> BoxStream<'static, (usize, NodeEvent)> {
    struct St {
        body: UpstreamBody,
        lines: herd_client::ndjson::LineSplitter,
        success: bool,
        over: bool,
    }
    let st = St {
        body,
        lines: herd_client::ndjson::LineSplitter::new(MAX_LINE),
        success: false,
        over: false,
    };
    stream::unfold(st, move |mut st| async move {
        if st.over {
            return None;
        }
        loop {
            let line = match st.lines.next_line() {
                Ok(Some(l)) => Some(l),
                Ok(None) => None,
                Err(e) => {
                    st.over = true;
                    return Some(((node, NodeEvent::End(Err(e.to_string()))), st));
                }
            };
            if let Some(line) = line {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev = match serde_json::from_slice::<PullLine>(&line) {
                    Ok(p) => match p.error_message() {
                        Some(e) => {
                            st.over = true;
                            NodeEvent::End(Err(e))
                        }
                        None => {
                            st.success |= p.is_success();
                            NodeEvent::Line(p)
                        }
                    },
                    Err(e) => {
                        st.over = true;
                        NodeEvent::End(Err(format!("unreadable progress line: {e}")))
                    }
                };
                return Some(((node, ev), st));
            }
            match st.body.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        st.lines.push(d);
                    }
                }
                Some(Err(e)) => {
                    st.over = true;
                    let msg = format!("connection lost during the pull: {}", upstream::chain(&e));
                    return Some(((node, NodeEvent::End(Err(msg))), st));
                }
                None => {
                    if let Ok(Some(last)) = st.lines.finish() {
                        // A last line without its newline: handle it like the others.
                        st.lines.push(&last);
                        st.lines.push(b"\n");
                        continue;
                    }
                    st.over = true;
                    let end = if st.success {
                        Ok(())
                    } else {
                        Err("the node ended its pull stream before \"success\"".to_owned())
                    };
                    return Some(((node, NodeEvent::End(end)), st));
                }
            }
        }
    })
    .boxed()
}

/// Folds the nodes' progress into one stream, as if one machine pulled:
/// each layer's `total` is the layer size times the number of nodes and
/// `completed` the sum over nodes; other statuses appear once, the first
/// time any node reaches them; `success` only when every node succeeded.
struct Merge {
    model: String,
    streams: usize,
    /// Per streaming node: completed bytes per digest.
    per_node: Vec<HashMap<String, u64>>,
    layer_total: HashMap<String, u64>,
    said: HashSet<String>,
    ended: usize,
    ok: Vec<usize>,
    /// Nodes that failed, with why (including those that never streamed).
    failed: Vec<(Arc<str>, String)>,
    names: Vec<Arc<str>>,
    total_nodes: usize,
}

impl Merge {
    fn on(&mut self, node: usize, ev: NodeEvent) -> Option<PullLine> {
        match ev {
            NodeEvent::Line(p) if !p.digest.is_empty() => {
                let total = *self.layer_total.entry(p.digest.clone()).or_insert(p.total);
                self.per_node[node]
                    .insert(p.digest.clone(), p.completed.min(total.max(p.completed)));
                let completed = self
                    .per_node
                    .iter()
                    .map(|m| m.get(&p.digest).copied().unwrap_or(0))
                    .sum();
                Some(PullLine {
                    status: p.status,
                    total: total * self.streams as u64,
                    completed,
                    digest: p.digest,
                    error: None,
                })
            }
            NodeEvent::Line(p) => {
                if p.status == PULL_SUCCESS
                    || p.status.is_empty()
                    || !self.said.insert(p.status.clone())
                {
                    return None;
                }
                Some(PullLine::with_status(p.status))
            }
            NodeEvent::End(r) => {
                self.ended += 1;
                match r {
                    Ok(()) => self.ok.push(node),
                    Err(e) => self.failed.push((self.names[node].clone(), e)),
                }
                None
            }
        }
    }

    fn finished(&self) -> bool {
        self.ended == self.streams
    }

    /// The last line: success, or an error naming the failing nodes.
    fn last(&self) -> Result<(), String> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let failed: HashSet<&str> = self.failed.iter().map(|(n, _)| &**n).collect();
        let all_same = self.failed.iter().all(|(_, m)| *m == self.failed[0].1);
        if failed.len() == self.total_nodes && all_same {
            // Every node failed the same way (an unknown model): say it as Ollama would.
            return Err(format!(
                "{} (on every node: {})",
                self.failed[0].1,
                self.failed
                    .iter()
                    .map(|(n, _)| &**n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Err(format!(
            "pulling '{}' failed on {} of {} nodes: {}",
            self.model,
            failed.len(),
            self.total_nodes,
            grouped(&self.failed)
        ))
    }
}

fn line(v: &impl Serialize) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    error: &'a str,
}

/// Finishes the pull's record when the merged stream ends or is dropped.
struct PullRecord {
    rec: Option<Recorder>,
}

impl PullRecord {
    fn finish(&mut self, error: String) {
        if let Some(rec) = self.rec.take() {
            rec.finish(Outcome {
                status: 200,
                error,
                ..Outcome::default()
            });
        }
    }
}

impl Drop for PullRecord {
    fn drop(&mut self) {
        self.finish("client closed the connection before the pull ended".to_owned());
    }
}

/// `POST /api/pull` on every ready, schedulable node.
pub(crate) async fn pull(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut rec = Recorder::start(
        shared.sink.clone(),
        &parts.method,
        Cow::Borrowed("/api/pull"),
    );
    let bytes = match read_body(&parts.headers, body, shared.config.max_request_body).await {
        Ok(b) => b,
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let (model, stream) = match Probe::parse(&bytes) {
        Ok(p) => (p.model().to_owned(), p.stream != Some(false)),
        Err(e) => return fail(rec, e, Dialect::Ollama),
    };
    let table = shared.current_table().await;
    crate::forward::set_model(&mut rec, table.model(&model), &model, stream);
    if let Err(no) = select::fleet_check(&table) {
        return fail(
            rec,
            ProxyError::Unavailable(no.message(&model)),
            Dialect::Ollama,
        );
    }
    let nodes = targets(&table);
    if nodes.is_empty() {
        return fail(rec, no_targets(&table), Dialect::Ollama);
    }
    // Always stream from the nodes: progress is merged even when the client
    // wants one object at the end.
    let upstream_body = match serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
        Ok(mut m) => {
            m.insert("stream".to_owned(), Value::Bool(true));
            Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
        }
        Err(e) => {
            return fail(
                rec,
                ProxyError::BadRequest(format!("invalid request body: {e}")),
                Dialect::Ollama,
            );
        }
    };
    let answers = send_all(&shared, &table, &nodes, &parts, &upstream_body).await;

    let mut names = Vec::new();
    let mut streams = Vec::new();
    let mut failed: Vec<(Arc<str>, String)> = Vec::new();
    let mut refusals: Vec<(StatusCode, Bytes)> = Vec::new();
    for (&i, answer) in nodes.iter().zip(answers) {
        let b = &table.nodes[i];
        match answer {
            Answer::Response(r) if r.status().is_success() => {
                streams.push(node_events(names.len(), r.into_body()));
                names.push(b.name.clone());
            }
            Answer::Response(r) => {
                let status = r.status();
                let body = read_small(r.into_body()).await;
                if status.is_client_error() {
                    refusals.push((status, body.clone()));
                }
                failed.push((b.name.clone(), format!("{} ({status})", error_text(&body))));
            }
            Answer::Failed(e) => failed.push((b.name.clone(), e.message())),
        }
    }
    if streams.is_empty() {
        if refusals.len() == failed.len() {
            // Every node refused the request itself: pass the first answer on.
            let (status, body) = refusals.swap_remove(0);
            rec.finish(Outcome {
                status: status.as_u16(),
                error: error_text(&body),
                ..Outcome::default()
            });
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            return resp;
        }
        return fail(
            rec,
            ProxyError::BadGateway(format!(
                "pulling '{model}' failed on every node: {}",
                grouped(&failed)
            )),
            Dialect::Ollama,
        );
    }

    let merge = Merge {
        model: model.clone(),
        streams: streams.len(),
        per_node: vec![HashMap::new(); streams.len()],
        layer_total: HashMap::new(),
        said: HashSet::new(),
        ended: 0,
        ok: Vec::new(),
        total_nodes: nodes.len(),
        failed,
        names: names.clone(),
    };
    let header_nodes = node_list_header(&names);
    let overlay = {
        let shared = shared.clone();
        let model = model.clone();
        move |node: &str| {
            shared.tables.set_model([node], &model, true);
        }
    };
    let merged = merged_stream(
        stream::select_all(streams),
        merge,
        PullRecord { rec: Some(rec) },
        overlay,
    );

    if stream {
        let mut resp = Response::new(Body::from_stream(
            merged.map(Ok::<_, std::convert::Infallible>),
        ));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        resp.headers_mut().insert(crate::NODE_HEADER, header_nodes);
        return resp;
    }
    // One object at the end, as Ollama's non-streamed pull: the last status,
    // or a 500 with the error.
    let lines: Vec<Bytes> = merged.collect().await;
    let last = lines.last().cloned().unwrap_or_default();
    let is_error = serde_json::from_slice::<Value>(&last)
        .ok()
        .is_some_and(|v| v.get("error").is_some());
    let mut resp = Response::new(Body::from(last));
    if is_error {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp.headers_mut().insert(crate::NODE_HEADER, header_nodes);
    resp
}

fn merged_stream(
    events: stream::SelectAll<BoxStream<'static, (usize, NodeEvent)>>,
    merge: Merge,
    record: PullRecord,
    on_node_success: impl Fn(&str) + Send + 'static,
) -> BoxStream<'static, Bytes> {
    struct St<F> {
        events: stream::SelectAll<BoxStream<'static, (usize, NodeEvent)>>,
        merge: Merge,
        record: PullRecord,
        done: bool,
        on_ok: F,
    }
    let st = St {
        events,
        merge,
        record,
        done: false,
        on_ok: on_node_success,
    };
    stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let Some((node, ev)) = st.events.next().await else {
                // Every node stream ends with an `End`; this is a safety net.
                st.done = true;
                st.record.finish(String::new());
                return Some((line(&PullLine::with_status(PULL_SUCCESS)), st));
            };
            let ok_now = matches!(ev, NodeEvent::End(Ok(())));
            let out = st.merge.on(node, ev);
            if ok_now {
                (st.on_ok)(&st.merge.names[node]);
            }
            if st.merge.finished() {
                st.done = true;
                let last = match st.merge.last() {
                    Ok(()) => {
                        st.record.finish(String::new());
                        line(&PullLine::with_status(PULL_SUCCESS))
                    }
                    Err(e) => {
                        let l = line(&ErrorLine { error: &e });
                        st.record.finish(e);
                        l
                    }
                };
                // A progress line from the final event goes out before the last line.
                let bytes = match out {
                    Some(p) => {
                        let mut v = line(&p).to_vec();
                        v.extend_from_slice(&last);
                        Bytes::from(v)
                    }
                    None => last,
                };
                return Some((bytes, st));
            }
            if let Some(p) = out {
                return Some((line(&p), st));
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(streams: usize, total_nodes: usize) -> Merge {
        Merge {
            model: "m".into(),
            streams,
            per_node: vec![HashMap::new(); streams],
            layer_total: HashMap::new(),
            said: HashSet::new(),
            ended: 0,
            ok: Vec::new(),
            failed: Vec::new(),
            names: (0..streams).map(|i| Arc::from(format!("n{i}"))).collect(),
            total_nodes,
        }
    }

    fn layer(completed: u64) -> NodeEvent {
        NodeEvent::Line(PullLine {
            status: "pulling abc".into(),
            digest: "sha256:abc".into(),
            total: 100,
            completed,
            error: None,
        })
    }

    fn status(s: &str) -> NodeEvent {
        NodeEvent::Line(PullLine {
            status: s.into(),
            ..PullLine::default()
        })
    }

    #[test]
    fn progress_sums_over_nodes() {
        let mut m = merge(2, 2);
        assert_eq!(
            m.on(0, status("pulling manifest")).map(|p| p.status),
            Some("pulling manifest".into())
        );
        assert_eq!(m.on(1, status("pulling manifest")), None, "said once");
        let p = m.on(0, layer(40)).expect("line");
        assert_eq!((p.total, p.completed), (200, 40));
        let p = m.on(1, layer(100)).expect("line");
        assert_eq!((p.total, p.completed), (200, 140));
        assert_eq!(m.on(1, status("success")), None, "success waits for all");
        assert_eq!(m.on(1, NodeEvent::End(Ok(()))).map(|p| p.status), None);
        assert!(!m.finished());
        m.on(0, layer(100));
        m.on(0, NodeEvent::End(Ok(())));
        assert!(m.finished());
        assert_eq!(m.last(), Ok(()));
    }

    #[test]
    fn failures_name_the_nodes() {
        let mut m = merge(2, 3);
        m.failed
            .push(("n9".into(), "cannot connect: refused".into()));
        m.on(0, NodeEvent::End(Ok(())));
        m.on(
            1,
            NodeEvent::End(Err("pull model manifest: file does not exist".into())),
        );
        let e = m.last().expect_err("failed");
        assert!(e.contains("failed on 2 of 3 nodes"), "{e}");
        assert!(e.contains("n9: cannot connect: refused"), "{e}");
        assert!(
            e.contains("n1: pull model manifest: file does not exist"),
            "{e}"
        );

        let mut all = merge(2, 2);
        all.on(
            0,
            NodeEvent::End(Err("pull model manifest: file does not exist".into())),
        );
        all.on(
            1,
            NodeEvent::End(Err("pull model manifest: file does not exist".into())),
        );
        assert_eq!(
            all.last(),
            Err("pull model manifest: file does not exist (on every node: n0, n1)".into())
        );
    }

    #[test]
    fn grouping() {
        let f = vec![
            (Arc::from("a"), "x".to_owned()),
            (Arc::from("b"), "y".to_owned()),
            (Arc::from("c"), "x".to_owned()),
        ];
        assert_eq!(grouped(&f), "a, c: x; b: y");
    }
}
