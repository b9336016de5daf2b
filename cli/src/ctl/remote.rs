//! Reads outside the typed resource API: a kind's JSON Schema and the
//! proxy's request history. Errors come back as the client's, so they are
//! worded the same way.

use futures_util::stream::{self, BoxStream, StreamExt as _};
use herd_api::{GROUP, RequestRecord, Status, StatusReason, VERSION};
use herd_client::ndjson::LineSplitter;
use herd_client::{Client, DEFAULT_REQUEST_TIMEOUT, Error, MAX_WATCH_LINE};
use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `{server}/apis/herd/v1/{segments…}`, keeping any path prefix of the server URL.
pub fn api_url(client: &Client, segments: &[&str]) -> Result<Url, Error> {
    let mut url = client.base_url().clone();
    let base = client.base_url();
    url.path_segments_mut()
        .map_err(|()| Error::InvalidRequest(format!("server URL {base} cannot be a base")))?
        .pop_if_empty()
        .extend(["apis", GROUP, VERSION])
        .extend(segments);
    Ok(url)
}

async fn get_json<T: DeserializeOwned>(client: &Client, url: Url, what: &str) -> Result<T, Error> {
    let resp = client
        .http()
        .get(url)
        .timeout(DEFAULT_REQUEST_TIMEOUT)
        .send()
        .await?;
    let code = resp.status().as_u16();
    let body = resp.bytes().await?;
    if !(200..300).contains(&code) {
        return Err(Error::from(status_from_body(code, &body)));
    }
    serde_json::from_slice(&body).map_err(|error| Error::Decode {
        what: what.to_owned(),
        error,
    })
}

fn status_from_body(code: u16, body: &[u8]) -> Status {
    if let Ok(status) = serde_json::from_slice::<Status>(body) {
        return status;
    }
    let reason = match code {
        404 => StatusReason::NotFound,
        400 => StatusReason::BadRequest,
        503 => StatusReason::ServiceUnavailable,
        _ => StatusReason::InternalError,
    };
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(300).collect();
    let mut status = Status::new(reason, format!("the server answered {code}: {text}"));
    status.code = code;
    status
}

/// The JSON Schema of a kind, as the server serves it.
pub async fn schema(client: &Client, plural: &str) -> Result<serde_json::Value, Error> {
    let url = api_url(client, &["schemas", plural])?;
    get_json(client, url, &format!("schema of {plural}")).await
}

/// Which requests to read from the proxy's history.
#[derive(Clone, Debug, Default)]
pub struct RequestQuery {
    pub node: Option<String>,
    pub model: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Deserialize)]
struct RequestList {
    #[serde(default)]
    items: Vec<RequestRecord>,
}

fn requests_url(client: &Client, q: &RequestQuery, watch: bool) -> Result<Url, Error> {
    let mut url = api_url(client, &["requests"])?;
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(node) = &q.node {
            pairs.append_pair("node", node);
        }
        if let Some(model) = &q.model {
            pairs.append_pair("model", model);
        }
        if watch {
            pairs.append_pair("watch", "true");
        } else if let Some(limit) = q.limit {
            pairs.append_pair("limit", &limit.to_string());
        }
    }
    Ok(url)
}

/// The proxy's recent requests, newest first.
pub async fn requests(client: &Client, q: &RequestQuery) -> Result<Vec<RequestRecord>, Error> {
    let url = requests_url(client, q, false)?;
    let list: RequestList = get_json(client, url, "RequestList").await?;
    Ok(list.items)
}

/// Requests as the proxy finishes them, from now on.
pub type RequestFeed = BoxStream<'static, Result<RequestRecord, Error>>;

/// Opens the proxy's feed of new requests (`?watch=true`, NDJSON of
/// records). `None` when the server does not offer one (an older proxy
/// answers with a plain list): the caller polls instead.
pub async fn request_feed(client: &Client, q: &RequestQuery) -> Result<Option<RequestFeed>, Error> {
    let url = requests_url(client, q, true)?;
    // No timeout: the feed stays open.
    let resp = client
        .http()
        .get(url)
        .header(reqwest::header::ACCEPT, "application/x-ndjson")
        .send()
        .await?;
    let ndjson = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    if !resp.status().is_success() || !ndjson {
        return Ok(None);
    }
    let state = (
        resp.bytes_stream().boxed(),
        LineSplitter::new(MAX_WATCH_LINE),
    );
    let records = stream::unfold(Some(state), |state| async move {
        let (mut body, mut lines) = state?;
        loop {
            match lines.next_line() {
                Ok(Some(line)) => {
                    let record = serde_json::from_slice::<RequestRecord>(&line).map_err(|error| {
                        Error::Decode {
                            what: "request record".to_owned(),
                            error,
                        }
                    });
                    return Some((record, Some((body, lines))));
                }
                Ok(None) => {}
                Err(e) => return Some((Err(e.into()), None)),
            }
            match body.next().await {
                Some(Ok(chunk)) => lines.push(&chunk),
                Some(Err(e)) => return Some((Err(Error::Http(e)), None)),
                None => return None,
            }
        }
    });
    Ok(Some(records.boxed()))
}
