//! Which [`Action`] an HTTP request stands for, from its method and path
//! alone, so the host can authorize before routing (and before the proxy's
//! shortcut). A path no rule here knows is [`Action::Unclassified`], which only
//! an admin may use: a route added later without a rule is closed, not open.

use http::Method;

use crate::authorize::{Action, ApiRequest, Verb};

/// What the host does with a request before routing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified<'a> {
    /// `/healthz`, `/readyz`: served to anyone.
    Public,
    /// The dashboard's pages: its session logic decides.
    Dashboard,
    /// Authorize this action before routing.
    Action(Action<'a>),
    /// A create: the object's name (and, for an Event, the node it is about)
    /// is in the body, so the route authorizes once it has read it. The host
    /// still refuses a request whose key is not accepted.
    Deferred(ApiRequest<'a>),
}

/// Where herd's API lives.
const API_PREFIX: &str = "/apis/herd/v1";

/// Classifies a request. `query` is the raw query string (for `watch=`).
pub fn classify<'a>(method: &Method, path: &'a str, query: Option<&str>) -> Classified<'a> {
    match path {
        "/healthz" | "/readyz" => return Classified::Public,
        "/metrics" => return Classified::Action(Action::Metrics),
        "/" => return Classified::Action(Action::Inference),
        "/apis" => return Classified::Action(Action::Discovery),
        _ => {}
    }
    if path == "/dashboard" || path.starts_with("/dashboard/") {
        return Classified::Dashboard;
    }
    if let Some(rest) = path.strip_prefix("/api/") {
        return Classified::Action(ollama_action(rest));
    }
    if path.starts_with("/v1/") {
        return Classified::Action(Action::Inference);
    }
    match path.strip_prefix(API_PREFIX) {
        Some("") => Classified::Action(Action::Discovery),
        Some(rest) => match rest.strip_prefix('/') {
            Some(rest) => api_action(method, rest, query),
            None => Classified::Action(Action::Unclassified),
        },
        None => Classified::Action(Action::Unclassified),
    }
}

/// Ollama's endpoints: changing which models the fleet holds is model
/// management, pulling a model apart from the rest (`--model-management
/// pull` lets inference users pull); everything else is inference. The
/// method does not matter: a wrong one gets the router's 405 either way.
fn ollama_action(rest: &str) -> Action<'static> {
    if rest == "pull" {
        Action::ModelPull
    } else if matches!(rest, "push" | "create" | "copy" | "delete") || rest.starts_with("blobs/") {
        Action::ModelManagement
    } else {
        Action::Inference
    }
}

fn api_action<'a>(method: &Method, rest: &'a str, query: Option<&str>) -> Classified<'a> {
    let segments: Vec<&'a str> = rest.split('/').collect();
    let unclassified = Classified::Action(Action::Unclassified);
    if segments.iter().any(|s| s.is_empty()) {
        return unclassified;
    }
    let read = method == Method::GET || method == Method::HEAD;
    let verb = match (segments.as_slice(), method) {
        (["schemas", _], _) if read => return Classified::Action(Action::Discovery),
        (["join"], _) => return Classified::Action(Action::JoinExchange),
        ([_], _) if read => {
            if watching(query) {
                Verb::Watch
            } else {
                Verb::List
            }
        }
        ([resource], &Method::POST) => {
            return Classified::Deferred(ApiRequest::new(Verb::Create, resource));
        }
        ([_, _] | [_, _, "status"], _) if read => Verb::Get,
        ([_, _] | [_, _, "status"], &Method::PUT) => Verb::Update,
        ([_, _] | [_, _, "status"], &Method::PATCH) => Verb::Patch,
        ([_, _], &Method::DELETE) => Verb::Delete,
        _ => return unclassified,
    };
    let mut request = ApiRequest::new(verb, segments[0]);
    if let Some(name) = segments.get(1) {
        request = request.named(name);
    }
    if segments.len() == 3 {
        request = request.status();
    }
    Classified::Action(Action::Api(request))
}

/// `watch=true` or `watch=1`, as the apiserver reads it.
fn watching(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::resources::{NODES, REQUESTS};

    fn api(verb: Verb, resource: &str) -> ApiRequest<'_> {
        ApiRequest::new(verb, resource)
    }

    #[test]
    fn classify_table() {
        use Classified::{Dashboard, Deferred, Public};
        let act = Classified::Action;
        let cases: Vec<(Method, &str, Option<&str>, Classified<'_>)> = vec![
            (Method::GET, "/healthz", None, Public),
            (Method::GET, "/readyz", None, Public),
            (Method::GET, "/metrics", None, act(Action::Metrics)),
            (Method::GET, "/dashboard", None, Dashboard),
            (Method::GET, "/dashboard/nodes", None, Dashboard),
            (Method::GET, "/dashboards", None, act(Action::Unclassified)),
            (Method::GET, "/", None, act(Action::Inference)),
            (Method::HEAD, "/", None, act(Action::Inference)),
            (Method::POST, "/api/chat", None, act(Action::Inference)),
            (Method::POST, "/api/generate", None, act(Action::Inference)),
            (Method::GET, "/api/tags", None, act(Action::Inference)),
            (Method::POST, "/api/show", None, act(Action::Inference)),
            (Method::POST, "/api/pull", None, act(Action::ModelPull)),
            (
                Method::POST,
                "/api/create",
                None,
                act(Action::ModelManagement),
            ),
            (
                Method::DELETE,
                "/api/delete",
                None,
                act(Action::ModelManagement),
            ),
            (
                Method::POST,
                "/api/copy",
                None,
                act(Action::ModelManagement),
            ),
            (
                Method::POST,
                "/api/push",
                None,
                act(Action::ModelManagement),
            ),
            (
                Method::HEAD,
                "/api/blobs/sha256:ab",
                None,
                act(Action::ModelManagement),
            ),
            (
                Method::POST,
                "/v1/chat/completions",
                None,
                act(Action::Inference),
            ),
            (Method::POST, "/v1/messages", None, act(Action::Inference)),
            (Method::GET, "/v1/models", None, act(Action::Inference)),
            (Method::GET, "/apis", None, act(Action::Discovery)),
            (Method::GET, "/apis/herd/v1", None, act(Action::Discovery)),
            (
                Method::GET,
                "/apis/herd/v1/schemas/nodes",
                None,
                act(Action::Discovery),
            ),
            (
                Method::POST,
                "/apis/herd/v1/join",
                None,
                act(Action::JoinExchange),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes",
                None,
                act(Action::Api(api(Verb::List, NODES))),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes",
                Some("labelSelector=a%3Db&watch=true"),
                act(Action::Api(api(Verb::Watch, NODES))),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes",
                Some("watch=false"),
                act(Action::Api(api(Verb::List, NODES))),
            ),
            (
                Method::POST,
                "/apis/herd/v1/nodes",
                None,
                Deferred(api(Verb::Create, NODES)),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes/gpu-1",
                None,
                act(Action::Api(api(Verb::Get, NODES).named("gpu-1"))),
            ),
            (
                Method::PUT,
                "/apis/herd/v1/nodes/gpu-1",
                None,
                act(Action::Api(api(Verb::Update, NODES).named("gpu-1"))),
            ),
            (
                Method::PATCH,
                "/apis/herd/v1/nodes/gpu-1/status",
                None,
                act(Action::Api(api(Verb::Patch, NODES).named("gpu-1").status())),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes/gpu-1/status",
                None,
                act(Action::Api(api(Verb::Get, NODES).named("gpu-1").status())),
            ),
            (
                Method::DELETE,
                "/apis/herd/v1/nodes/gpu-1",
                None,
                act(Action::Api(api(Verb::Delete, NODES).named("gpu-1"))),
            ),
            (
                Method::GET,
                "/apis/herd/v1/requests/stats",
                None,
                act(Action::Api(api(Verb::Get, REQUESTS).named("stats"))),
            ),
            // Shapes no route serves are left to admins (the router answers 404/405).
            (
                Method::DELETE,
                "/apis/herd/v1/nodes/gpu-1/status",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::DELETE,
                "/apis/herd/v1/nodes",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::POST,
                "/apis/herd/v1/nodes/gpu-1",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes/gpu-1/logs",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::GET,
                "/apis/herd/v1/nodes/",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::GET,
                "/apis/herd/v1//nodes",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::GET,
                "/apis/herd/v1x/nodes",
                None,
                act(Action::Unclassified),
            ),
            (
                Method::GET,
                "/apis/herd/v2/nodes",
                None,
                act(Action::Unclassified),
            ),
            (Method::GET, "/other", None, act(Action::Unclassified)),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                classify(&method, path, query),
                want,
                "{method} {path} {query:?}"
            );
        }
    }
}
