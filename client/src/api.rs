use std::fmt;
use std::marker::PhantomData;

use futures_util::stream::{self, BoxStream, StreamExt};
use herd_api::{ObjectList, Resource, WatchEvent};
use reqwest::{Method, Url, header};
use serde::Serialize;

use crate::client::decode;
use crate::ndjson::LineSplitter;
use crate::{Client, Error};

/// Longest watch line accepted: far above any real object, low enough that
/// a broken peer cannot make the client buffer without bound.
pub const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;
/// How many times [`Api::update_status_with_retry`] tries before giving up
/// on a conflict.
pub const STATUS_UPDATE_ATTEMPTS: u32 = 5;

const MERGE_PATCH: &str = "application/merge-patch+json";

/// Options of `list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// kubectl syntax: `gpu=nvidia,zone!=b`.
    pub label_selector: Option<String>,
}

impl ListParams {
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }
}

/// Options of the writes (`create`, `replace`, `patch` and the status ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostParams {
    /// Validate and answer as if done, but store nothing (`?dryRun=All`).
    pub dry_run: bool,
}

impl PostParams {
    pub fn dry_run() -> Self {
        Self { dry_run: true }
    }
}

/// Options of `watch`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchParams {
    /// Replay every change after this revision, then go live. `None` (or
    /// `"0"`) starts with a synthetic `ADDED` for every current object.
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
    /// Ask the server to end the stream cleanly after this long.
    pub timeout_seconds: Option<u32>,
}

impl WatchParams {
    pub fn from_version(resource_version: impl Into<String>) -> Self {
        Self {
            resource_version: Some(resource_version.into()),
            ..Self::default()
        }
    }
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }
}

/// The events of one watch request, in order. An `ERROR` event from the
/// server arrives as `Err(Error::Api(status))` and ends the stream
/// (`is_gone()` means: relist). Items are only `Added`, `Modified`,
/// `Deleted` and `Bookmark`.
pub type WatchStream<K> = BoxStream<'static, Result<WatchEvent<K>, Error>>;

/// The REST API of one kind `K` (`Node`, `ModelAssignment`).
pub struct Api<K> {
    client: Client,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Resource> fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("kind", &K::KIND)
            .field("server", &self.client.base_url().as_str())
            .finish()
    }
}

impl<K: Resource> Api<K> {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            kind: PhantomData,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn url(&self, name: Option<&str>, sub: Option<&str>) -> Result<Url, Error> {
        self.client.resource_url(K::PLURAL, name, sub)
    }

    fn what(method: &'static str, name: &str) -> impl FnOnce() -> String {
        let name = name.to_owned();
        move || {
            if name.is_empty() {
                format!("{} answer to {method} {}", K::KIND, K::PLURAL)
            } else {
                format!("{} answer to {method} {}/{name}", K::KIND, K::PLURAL)
            }
        }
    }

    pub async fn get(&self, name: &str) -> Result<K, Error> {
        let req = self
            .client
            .request(Method::GET, self.url(Some(name), None)?);
        self.client.send_json(req, Self::what("GET", name)).await
    }

    /// Like `get`, with `None` for a missing object.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, Error> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object (matching the selector), and the revision the list was
    /// read at in `metadata.resourceVersion`: a watch from there misses nothing.
    pub async fn list(&self, lp: &ListParams) -> Result<ObjectList<K>, Error> {
        let mut url = self.url(None, None)?;
        if let Some(sel) = &lp.label_selector {
            url.query_pairs_mut().append_pair("labelSelector", sel);
        }
        let req = self.client.request(Method::GET, url);
        self.client
            .send_json(req, || {
                format!("{}List answer to GET {}", K::KIND, K::PLURAL)
            })
            .await
    }

    /// Creates `obj`; a taken name is a 409 for which `is_already_exists()`.
    pub async fn create(&self, pp: &PostParams, obj: &K) -> Result<K, Error> {
        let req = self
            .write(Method::POST, self.url(None, None)?, pp)
            .json(obj);
        self.client.send_json(req, Self::what("POST", "")).await
    }

    /// Replaces the spec and metadata of `obj` (named by `obj.metadata.name`;
    /// created if missing). Conditional when `metadata.resourceVersion` is
    /// set: a stale one is a 409 for which `is_conflict()`. The server keeps
    /// its status whatever `obj.status` says.
    pub async fn replace(&self, pp: &PostParams, obj: &K) -> Result<K, Error> {
        let name = &obj.meta().name;
        let req = self
            .write(Method::PUT, self.url(Some(name), None)?, pp)
            .json(obj);
        self.client.send_json(req, Self::what("PUT", name)).await
    }

    /// JSON merge patch (RFC 7386) of the object.
    pub async fn patch(
        &self,
        name: &str,
        pp: &PostParams,
        patch: &serde_json::Value,
    ) -> Result<K, Error> {
        self.merge_patch(name, None, pp, patch).await
    }

    /// Replaces only the status of `obj`; its spec is never changed.
    /// Conditional on `metadata.resourceVersion` when it is set.
    pub async fn replace_status(&self, pp: &PostParams, obj: &K) -> Result<K, Error> {
        let name = &obj.meta().name;
        let req = self
            .write(Method::PUT, self.url(Some(name), Some("status"))?, pp)
            .json(obj);
        self.client
            .send_json(req, Self::what("PUT status of", name))
            .await
    }

    /// JSON merge patch of the status: `{"status": {...}}`.
    pub async fn patch_status(
        &self,
        name: &str,
        pp: &PostParams,
        patch: &serde_json::Value,
    ) -> Result<K, Error> {
        self.merge_patch(name, Some("status"), pp, patch).await
    }

    /// Deletes the object and returns it as it was.
    pub async fn delete(&self, name: &str) -> Result<K, Error> {
        let req = self
            .client
            .request(Method::DELETE, self.url(Some(name), None)?);
        self.client.send_json(req, Self::what("DELETE", name)).await
    }

    async fn merge_patch<P: Serialize>(
        &self,
        name: &str,
        sub: Option<&str>,
        pp: &PostParams,
        patch: &P,
    ) -> Result<K, Error> {
        let req = self
            .write(Method::PATCH, self.url(Some(name), sub)?, pp)
            // Set before `json()`, which then keeps it.
            .header(header::CONTENT_TYPE, MERGE_PATCH)
            .json(patch);
        self.client.send_json(req, Self::what("PATCH", name)).await
    }

    fn write(&self, method: Method, mut url: Url, pp: &PostParams) -> reqwest::RequestBuilder {
        if pp.dry_run {
            url.query_pairs_mut().append_pair("dryRun", "All");
        }
        self.client.request(method, url)
    }

    /// Creates `obj`, or when the name is taken replaces it unconditionally
    /// (any `resourceVersion` in `obj` is dropped). The server's status is
    /// kept either way: this is "make the spec be this", as `herd apply`
    /// and a nodelet's registration want.
    pub async fn apply(&self, obj: &K) -> Result<K, Error> {
        match self.create(&PostParams::default(), obj).await {
            Err(e) if e.code() == Some(409) => {
                let mut obj = obj.clone();
                obj.meta_mut().resource_version = None;
                self.replace(&PostParams::default(), &obj).await
            }
            other => other,
        }
    }

    /// Read-modify-write of the status: gets the object, lets `update` change
    /// its status, and writes it back conditionally on the revision it read.
    /// On a conflict it starts over, up to [`STATUS_UPDATE_ATTEMPTS`] times.
    /// When `update` changes nothing, nothing is written and the object as
    /// read is returned.
    pub async fn update_status_with_retry<F>(&self, name: &str, mut update: F) -> Result<K, Error>
    where
        F: FnMut(&mut K::Status),
    {
        let mut attempt = 1;
        loop {
            let mut obj = self.get(name).await?;
            let before = obj.status().clone();
            update(obj.status_mut());
            if *obj.status() == before {
                return Ok(obj);
            }
            match self.replace_status(&PostParams::default(), &obj).await {
                Err(e) if e.is_conflict() && attempt < STATUS_UPDATE_ATTEMPTS => {
                    tracing::debug!(
                        kind = K::KIND,
                        name,
                        attempt,
                        "status update conflicted; retrying"
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Opens a watch. Errors of the request itself (bad selector, server
    /// down) come back here; what happens later comes through the stream.
    /// See [`WatchStream`]; [`crate::watcher()`] adds relisting and resuming.
    pub async fn watch(&self, wp: &WatchParams) -> Result<WatchStream<K>, Error> {
        let mut url = self.url(None, None)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("watch", "true");
            if let Some(rv) = &wp.resource_version {
                q.append_pair("resourceVersion", rv);
            }
            if let Some(sel) = &wp.label_selector {
                q.append_pair("labelSelector", sel);
            }
            if let Some(t) = wp.timeout_seconds {
                q.append_pair("timeoutSeconds", &t.to_string());
            }
        }
        // No request timeout: a watch is meant to stay open.
        let req = self
            .client
            .with_auth(self.client.http().get(url))
            .header(header::ACCEPT, "application/x-ndjson");
        let resp = self.client.send(req).await?;
        Ok(decode_watch(resp.bytes_stream(), MAX_WATCH_LINE))
    }
}

/// Turns a body of NDJSON watch events into a stream of events. Ends after
/// the first error: after a gap or an undecodable line, later events could
/// not be trusted to follow on.
pub(crate) fn decode_watch<K, B>(body: B, max_line: usize) -> WatchStream<K>
where
    K: Resource,
    B: futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'static,
{
    struct State<B> {
        body: B,
        lines: LineSplitter,
        done: bool,
    }
    let parse = |line: bytes::Bytes| -> Result<WatchEvent<K>, Error> {
        match decode::<WatchEvent<K>>(&line, || format!("{} watch event", K::KIND))? {
            WatchEvent::Error(status) => Err(Error::from(status)),
            event => Ok(event),
        }
    };
    let state = State {
        body: Box::pin(body),
        lines: LineSplitter::new(max_line),
        done: false,
    };
    stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let item = match st.lines.next_line() {
                Ok(Some(line)) => parse(line),
                Ok(None) => match st.body.next().await {
                    Some(Ok(chunk)) => {
                        st.lines.push(&chunk);
                        continue;
                    }
                    Some(Err(e)) => Err(Error::Http(e)),
                    None => match st.lines.finish() {
                        Ok(Some(line)) => parse(line).inspect(|_| st.done = true),
                        Ok(None) => return None,
                        Err(e) => Err(e.into()),
                    },
                },
                Err(e) => Err(e.into()),
            };
            st.done |= item.is_err();
            return Some((item, st));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use herd_api::Node;

    fn body(
        chunks: &[&str],
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'static
    {
        let owned: Vec<_> = chunks
            .iter()
            .map(|c| Ok(bytes::Bytes::from(c.to_string())))
            .collect();
        stream::iter(owned)
    }

    async fn collect(chunks: &[&str], max_line: usize) -> Vec<Result<WatchEvent<Node>, Error>> {
        decode_watch::<Node, _>(body(chunks), max_line)
            .collect()
            .await
    }

    const ADDED: &str =
        r#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}"#;

    #[tokio::test]
    async fn last_line_without_newline_is_read() {
        let got = collect(&[ADDED, "\n", ADDED], 1024).await;
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|e| matches!(e, Ok(WatchEvent::Added(n)) if n.metadata.name == "a"))
        );
    }

    #[tokio::test]
    async fn overlong_line_ends_the_stream() {
        let got = collect(&[ADDED, "\n", &"x".repeat(200), "\n", ADDED, "\n"], 100).await;
        assert_eq!(got.len(), 2);
        assert!(matches!(got[1], Err(Error::LineTooLong { limit: 100 })));
    }

    #[tokio::test]
    async fn undecodable_line_names_the_kind_and_ends_the_stream() {
        let got = collect(
            &[
                "{\"type\":\"ADDED\",\"object\":{\"spec\":{\"weight\":\"heavy\"}}}\n",
                ADDED,
                "\n",
            ],
            1024,
        )
        .await;
        assert_eq!(got.len(), 1);
        match &got[0] {
            Err(Error::Decode { what, .. }) => assert_eq!(what, "Node watch event"),
            other => panic!("want Decode, got {other:?}"),
        }
    }
}
