//! The probe loop's I/O shell around [`crate::probe`]'s and
//! [`crate::backend`]'s decisions: each node has a key in the probe queue,
//! due at its next probe. Probing a key asks the node's backend whether it
//! is up (`GET /api/version` of an Ollama, `GET /v1/models` of an
//! OpenAI-compatible server, with the node's Secret as a bearer token), and
//! for an unmanaged node which models it has; for an `api: openai` node it
//! also finds which optional endpoints the server answers itself. It
//! records the result in the node's memory and, when that should change the
//! node's status, queues the node for its reconciler (the only writer of
//! the controller's node status).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use herd_api::{NodeApi, NodeSpec, Timestamp, endpoints};

use std::net::SocketAddr;

use herd_api::node_address::{self, Cidr};

use crate::Context;
use crate::backend::{self, BackendSeen};
use crate::probe::{
    ErrorFacts, ProbeFailure, classify_answer, classify_error, reachable_condition,
};
use crate::runtime::Action;

pub(crate) async fn probe_node(ctx: Arc<Context>, name: String) -> Result<Action, Infallible> {
    let Some(node) = ctx.nodes.get(&name) else {
        // Deleted. If it comes back, its reconciler schedules a new probe.
        return Ok(Action::await_change());
    };
    let spec = node.spec.clone();
    let generation = node.metadata.generation;
    drop(node);
    let (lookup, token) = ctx.secret_for(&spec);
    let (http, ca_error) = ctx.http_for(&spec.ca_cert);
    let problem = backend::problem(&spec, lookup, ca_error.as_deref());
    let before = ctx.memory().get(&name).map(|m| m.backend.clone());
    let Some(before) = before else {
        return Ok(Action::await_change());
    };
    let mut seen = BackendSeen {
        problem: problem.clone(),
        ..before.clone()
    };
    let mut result = Ok(());
    if problem.is_none() {
        let target = Target {
            http: &http,
            spec: &spec,
            token: token.as_deref(),
            allowed: &ctx.config.allow_node_addresses,
        };
        let recheck_endpoints =
            before.endpoints.is_none() || ctx.endpoints_stale(&name, generation);
        result = target.probe(&mut seen, recheck_endpoints).await;
        if result.is_err() {
            // The server may come back another version: look again then.
            ctx.endpoints_checked(&name, None);
        } else if recheck_endpoints && seen.endpoints.is_some() {
            ctx.endpoints_checked(&name, generation);
        }
    }
    if let Err(e) = &result {
        tracing::debug!(node = %name, error = %e, "probe failed");
    }
    let at = Timestamp::now();
    let recorded = {
        let mut memory = ctx.memory();
        memory.get_mut(&name).map(|m| {
            let changed = problem.is_none() && m.probe.record(result, at, ctx.config.probe);
            let backend_changed = m.backend != seen;
            m.backend = seen;
            (
                changed || backend_changed,
                m.probe.verdict(),
                m.probe.failing(),
            )
        })
    };
    let Some((changed, verdict, failing)) = recorded else {
        return Ok(Action::await_change());
    };
    let disagrees = ctx
        .nodes
        .get(&name)
        .is_some_and(|n| reachable_condition(&n.status.conditions, verdict.as_ref()).is_some());
    if changed || disagrees {
        ctx.node_queue.add(&name);
    }
    Ok(Action::requeue(if failing {
        ctx.config.probe_recheck()
    } else {
        ctx.config.probe_interval
    }))
}

/// One node's backend, as a probe reaches it.
struct Target<'a> {
    http: &'a reqwest::Client,
    spec: &'a NodeSpec,
    token: Option<&'a str>,
    allowed: &'a [Cidr],
}

impl Target<'_> {
    /// Probes the backend, updating what was seen of it: the result is
    /// whether it is up; `seen` gets an unmanaged node's models and
    /// version, and (with `endpoints`) an OpenAI node's native endpoints.
    async fn probe(&self, seen: &mut BackendSeen, endpoints: bool) -> Result<(), String> {
        // IP literals skip the resolver, so they are checked here.
        if let Some(ip) = node_address::ip_literal_host(&self.spec.url)
            && node_address::check(ip, self.allowed).is_err()
        {
            return Err(ProbeFailure::AddressNotAllowed.message());
        }
        let unmanaged = !self.spec.managed;
        match self.spec.api {
            NodeApi::Ollama => {
                let body = self.get("/api/version").await?;
                if let Some(f) = classify_answer(200, &body) {
                    return Err(format!("GET /api/version: {}", f.message()));
                }
                if unmanaged {
                    seen.version = backend::version_from(&body);
                    let tags = self.get("/api/tags").await?;
                    seen.models = Some(backend::models_from_tags(&tags).ok_or_else(|| {
                        format!("GET /api/tags: {}", ProbeFailure::NotOllama.message())
                    })?);
                }
            }
            NodeApi::OpenAi => {
                let body = self.get("/v1/models").await?;
                let models = backend::models_from_openai(&body).ok_or_else(|| {
                    format!("GET /v1/models: {}", ProbeFailure::NotOpenAi.message())
                })?;
                seen.models = Some(models);
                if endpoints {
                    seen.endpoints = self.native_endpoints(seen.endpoints.as_deref()).await;
                }
            }
        }
        Ok(())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.spec.base_url());
        let req = self.http.request(method, url);
        match self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET path`: its body when the answer is 2xx. The error says which
    /// kind of failure it was ([`ProbeFailure`]), never the socket's words.
    async fn get(&self, path: &str) -> Result<bytes::Bytes, String> {
        let failed = |f: ProbeFailure| format!("GET {path}: {}", f.message());
        let resp = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| failed(classify_error(facts(&e))))?;
        let code = resp.status().as_u16();
        if !resp.status().is_success() {
            // Only the status: a 2xx body is judged by the caller.
            return Err(failed(
                classify_answer(code, b"").unwrap_or(ProbeFailure::BadStatus(code)),
            ));
        }
        resp.bytes()
            .await
            .map_err(|e| failed(classify_error(facts(&e))))
    }

    /// Which of [`endpoints::OPTIONAL`] the server answers itself: each is
    /// sent an empty JSON object, which a server that has the endpoint
    /// refuses as a bad request and one that has not answers 404. An
    /// endpoint whose answer says neither keeps what was `known`.
    async fn native_endpoints(&self, known: Option<&[String]>) -> Option<Vec<String>> {
        let mut served = Vec::new();
        for path in endpoints::OPTIONAL {
            let answer = self
                .request(reqwest::Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await;
            let verdict = match answer {
                Ok(resp) => backend::endpoint_served(resp.status().as_u16()),
                Err(_) => None,
            };
            let was = known.is_some_and(|k| k.iter().any(|p| p == path));
            match verdict {
                Some(true) => served.push(path.to_owned()),
                Some(false) => {}
                None if was => served.push(path.to_owned()),
                // Nothing known and nothing learned: look again next time.
                None if known.is_none() => return None,
                None => {}
            }
        }
        Some(served)
    }
}

/// The HTTP client for probes: bounded by `timeout`, connecting afresh
/// each time (a probe checks that a new connection works, as the proxy's
/// next request would need; and 1,000 nodes cost no idle sockets), and
/// ignoring `HTTP_PROXY`: the router talks to its nodes directly. It follows
/// no redirect (a node URL must not steer the router to another address),
/// and resolves host names only to addresses `allowed` by the node address
/// policy.
pub(crate) fn http_client(
    timeout: Duration,
    allowed: Vec<Cidr>,
    cas: Vec<reqwest::Certificate>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    for ca in cas {
        builder = builder.add_root_certificate(ca);
    }
    builder
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver { allowed }))
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("herd-controller/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Every resolved address of a node's host was refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("every address of the node's host is refused by the node address policy")]
struct AddressRefused;

/// The system resolver, keeping only the addresses the node address policy
/// allows: a host name cannot lead a probe where an IP literal may not.
struct PolicyResolver {
    allowed: Vec<Cidr>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = addrs
                .filter(|a| node_address::check(a.ip(), &allowed).is_ok())
                .collect();
            if kept.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What classifying `e` needs, read from reqwest's error and its sources.
fn facts(e: &reqwest::Error) -> ErrorFacts {
    let mut f = ErrorFacts {
        timeout: e.is_timeout(),
        connect: e.is_connect(),
        ..ErrorFacts::default()
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<AddressRefused>() {
            f.policy = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            f.io_kind = Some(io.kind());
        }
        source = s.source();
    }
    f
}
