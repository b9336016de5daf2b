//! Answers about the whole fleet: `/api/tags`, `/api/ps` and `/v1/models`
//! (unions over the nodes that take requests, asked live so every field is
//! Ollama's own), and `/api/version` (the lowest version among ready nodes).

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use herd_api::{NodeApi, model_name};
use herd_client::ollama::VersionResponse;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::state::Shared;
use crate::table::{Backend, Table};
use crate::upstream::{Outgoing, SendError, UpBody};

/// Largest list accepted from one node.
const MAX_LIST_BODY: usize = 16 << 20;

/// Nodes asked for fleet-wide lists: those that take requests now (with
/// `ollama_only`, of those only the Ollamas: the list is Ollama's own).
fn serving(shared: &Shared, table: &Table, ollama_only: bool) -> Vec<usize> {
    let now = shared.clock.now();
    table
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, b)| b.unroutable().is_none() && !b.live.is_tripped(now))
        .filter(|(_, b)| !ollama_only || b.api == NodeApi::Ollama)
        .map(|(i, _)| i)
        .collect()
}

/// `/api/tags` entries for the models of serving OpenAI-compatible nodes,
/// made from their model lists (their servers have no `/api/tags`).
fn openai_tags(shared: &Shared, table: &Table) -> Vec<Value> {
    let serving = serving(shared, table, false);
    table
        .models
        .iter()
        .filter(|m| {
            m.holders
                .iter()
                .any(|h| serving.contains(&h.node) && table.nodes[h.node].api == NodeApi::OpenAi)
        })
        .map(|m| {
            json!({"name": &*m.raw, "model": &*m.raw, "size": 0, "digest": "",
                   "details": {"format": "", "family": "", "families": null,
                               "parameter_size": "", "quantization_level": ""}})
        })
        .collect()
}

/// `GET path` on one node, as JSON, bounded by the aggregate timeout.
async fn get_json(shared: &Shared, b: &Backend, path: &'static str) -> Result<Value, String> {
    let target = b.target.as_ref().ok_or("no url")?;
    let pq = PathAndQuery::from_static(path);
    let headers = HeaderMap::new();
    let req = Outgoing {
        method: &Method::GET,
        target,
        path_and_query: &pq,
        headers: &headers,
        body: UpBody::empty(),
    };
    let timeout = shared.config.aggregate_timeout;
    let work = async {
        let resp = shared.client.send(req, timeout).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, SendError::Connect(_)) {
                    shared.trip(&b.live);
                    shared
                        .reporter
                        .unreachable(&b.name, e.reason(), e.message());
                }
                return Err(e.message());
            }
        };
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_LIST_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{path} answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path} is not JSON: {e}"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{path}: no answer within {timeout:?}"))?
}

/// The JSON lists of `path` from every serving node, in node order; nodes
/// that fail are left out (and logged).
async fn gather(
    shared: &Arc<Shared>,
    table: &Table,
    path: &'static str,
    field: &str,
    ollama_only: bool,
) -> Vec<Value> {
    let nodes = serving(shared, table, ollama_only);
    let asks = nodes
        .iter()
        .map(|&i| get_json(shared, &table.nodes[i], path));
    let answers = futures_util::future::join_all(asks).await;
    let mut out = Vec::new();
    for (&i, a) in nodes.iter().zip(answers) {
        match a {
            Ok(mut v) => {
                if let Some(Value::Array(items)) = v.get_mut(field).map(Value::take) {
                    out.extend(items);
                }
            }
            Err(e) => {
                tracing::warn!(node = %table.nodes[i].name, error = %e, "left out of a fleet-wide list");
            }
        }
    }
    out
}

/// Keeps the first item for each model name.
fn dedupe(items: Vec<Value>, key: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|m| {
            let name = m.get(key).and_then(Value::as_str).unwrap_or_default();
            seen.insert(model_name::canonical(name))
        })
        .collect()
}

fn json_response(v: &Value, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const GIN_JSON: &str = "application/json; charset=utf-8";

/// Sorts like Ollama's list: most recently modified first.
fn by_modified_desc(items: &mut [Value]) {
    let key = |v: &Value| {
        v.get("modified_at")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    };
    items.sort_by_key(|v| std::cmp::Reverse(key(v)));
}

/// `GET|HEAD /api/tags`: every model some serving node holds, once.
pub(crate) async fn tags(shared: Arc<Shared>) -> Response<Body> {
    let table = shared.current_table().await;
    let mut listed = gather(&shared, &table, "/api/tags", "models", true).await;
    listed.extend(openai_tags(&shared, &table));
    let mut models = dedupe(listed, "name");
    by_modified_desc(&mut models);
    json_response(&json!({ "models": models }), GIN_JSON)
}

/// `GET /api/ps`: every model loaded on some serving node, once.
pub(crate) async fn ps(shared: Arc<Shared>) -> Response<Body> {
    let table = shared.current_table().await;
    let mut listed = gather(&shared, &table, "/api/ps", "models", true).await;
    // What an OpenAI server lists is what it has ready to serve.
    listed.extend(openai_tags(&shared, &table).into_iter().map(|mut m| {
        m["size_vram"] = json!(0);
        m
    }));
    let models = dedupe(listed, "name");
    json_response(&json!({ "models": models }), GIN_JSON)
}

/// `GET /v1/models`: the OpenAI list over serving nodes, once per id.
pub(crate) async fn openai_models(shared: Arc<Shared>) -> Response<Body> {
    let table = shared.current_table().await;
    let data = dedupe(
        gather(&shared, &table, "/v1/models", "data", false).await,
        "id",
    );
    json_response(
        &json!({ "object": "list", "data": data }),
        "application/json",
    )
}

/// A version as comparable numbers: `0.33.0` < `0.33.1-rc0` < `0.33.1`.
/// Unparseable parts count as 0; a leading `v` is ignored.
pub(crate) fn version_key(v: &str) -> (u64, u64, u64, bool, String) {
    let v = v.trim().trim_start_matches('v');
    let (core, pre) = match v.split_once(['-', '+']) {
        Some((c, p)) => (c, p.to_owned()),
        None => (v, String::new()),
    };
    let mut nums = core
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    let a = nums.next().unwrap_or(0);
    let b = nums.next().unwrap_or(0);
    let c = nums.next().unwrap_or(0);
    // A release sorts after its pre-releases.
    (a, b, c, pre.is_empty(), pre)
}

/// The lowest of some versions; strings that do not start with a digit
/// (after an optional `v`) are not versions and are ignored.
pub(crate) fn lowest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions
        .into_iter()
        .filter(|v| {
            v.trim()
                .trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .min_by_key(|v| version_key(v))
}

/// What `/api/version` reports when no node can say.
pub const UNKNOWN_VERSION: &str = "0.0.0";

/// `GET|HEAD /api/version`: the lowest Ollama version among ready nodes
/// (what the whole fleet supports), from their status or, for nodes that
/// did not report one, asked live. With no ready node: the lowest version
/// any registered node last reported, else `0.0.0`; still a 200, since
/// clients call it to check the server is there.
pub(crate) async fn version(shared: Arc<Shared>) -> Response<Body> {
    let table = shared.current_table().await;
    let ready: Vec<&Backend> = table
        .nodes
        .iter()
        .filter(|b| b.ready && b.target.is_some() && b.api == NodeApi::Ollama)
        .map(AsRef::as_ref)
        .collect();
    let mut versions: Vec<String> = ready
        .iter()
        .filter(|b| !b.ollama_version.is_empty())
        .map(|b| b.ollama_version.clone())
        .collect();
    let unknown: Vec<&&Backend> = ready
        .iter()
        .filter(|b| b.ollama_version.is_empty())
        .collect();
    let asks = unknown.iter().map(|b| get_json(&shared, b, "/api/version"));
    for v in futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
    {
        if let Ok(answer) = serde_json::from_value::<VersionResponse>(v) {
            versions.push(answer.version);
        }
    }
    let v = lowest(versions.iter().map(String::as_str))
        .or_else(|| lowest(table.nodes.iter().map(|b| b.ollama_version.as_str())))
        .unwrap_or(UNKNOWN_VERSION)
        .to_owned();
    json_response(&json!({ "version": v }), GIN_JSON)
}

/// `GET|HEAD /`: what Ollama answers, so health checks and clients that
/// probe the base URL see an Ollama.
pub(crate) async fn root() -> Response<Body> {
    let mut r = Response::new(Body::from("Ollama is running"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    *r.status_mut() = StatusCode::OK;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_semver() {
        assert_eq!(lowest(["0.33.0", "0.5.12", "0.33.1"]), Some("0.5.12"));
        assert_eq!(lowest(["0.33.1", "0.33.1-rc2"]), Some("0.33.1-rc2"));
        assert_eq!(lowest(["v0.4.0", "0.10.0"]), Some("v0.4.0"));
        assert_eq!(lowest(["", "  "]), None);
        assert_eq!(lowest(["garbage", "0.1.0"]), Some("0.1.0"));
    }

    #[test]
    fn dedupe_and_sort() {
        let items = vec![
            json!({"name": "llama3:latest", "modified_at": "2026-01-01T00:00:00Z"}),
            json!({"name": "qwen:0.5b", "modified_at": "2026-03-01T00:00:00+02:00"}),
            json!({"name": "llama3", "modified_at": "2026-05-01T00:00:00Z"}),
        ];
        let mut d = dedupe(items, "name");
        assert_eq!(d.len(), 2);
        by_modified_desc(&mut d);
        assert_eq!(d[0]["name"], "qwen:0.5b");
    }
}
