//! What each role may do, as pure functions of the caller and the action.
//!
//! | role         | may                                                             |
//! |--------------|-----------------------------------------------------------------|
//! | `admin`      | everything                                                      |
//! | `viewer`     | get, list, watch every resource but `secrets`; `/metrics`       |
//! | `controller` | read nodes, modelassignments, events; write their `/status`;    |
//! |              | create events; everything on leases                             |
//! | `join`       | the join exchange only                                          |
//! | `node`       | get, watch, create, update, patch its own Node and its          |
//! |              | `/status` (fields limited by [`crate::node_may_change`]); read  |
//! |              | modelassignments; create events about its own node              |
//! | `inference`  | the Ollama, OpenAI and Anthropic endpoints                      |
//!
//! Every key may read the discovery documents; requests no rule describes are
//! an admin's only. Key hashes are refused to every role, admin included: they
//! have no route, and this keeps it so if one is ever added by mistake.

use std::fmt;

use herd_api::Role;

use crate::principal::{KeyPrincipal, Principal};

/// Resource plurals the rules name.
pub mod resources {
    pub const NODES: &str = "nodes";
    pub const MODELASSIGNMENTS: &str = "modelassignments";
    pub const EVENTS: &str = "events";
    pub const APIKEYS: &str = "apikeys";
    pub const APIKEYHASHES: &str = "apikeyhashes";
    pub const LEASES: &str = "leases";
    pub const SECRETS: &str = "secrets";
    pub const REQUESTS: &str = "requests";
}
use resources::{APIKEYHASHES, EVENTS, LEASES, MODELASSIGNMENTS, NODES, SECRETS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    Status,
}

/// One call to `/apis/herd/v1/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiRequest<'a> {
    pub verb: Verb,
    /// The resource's plural, as in the path.
    pub resource: &'a str,
    /// The object's name: from the path, or for a create from the body's
    /// `metadata.name`. `None` for list and collection watch.
    pub name: Option<&'a str>,
    pub subresource: Option<Subresource>,
    /// For creating an Event: the node named by `spec.involvedObject` when its
    /// kind is `Node`.
    pub about_node: Option<&'a str>,
}

impl<'a> ApiRequest<'a> {
    pub fn new(verb: Verb, resource: &'a str) -> Self {
        Self {
            verb,
            resource,
            name: None,
            subresource: None,
            about_node: None,
        }
    }

    pub fn named(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }

    pub fn status(mut self) -> Self {
        self.subresource = Some(Subresource::Status);
        self
    }

    pub fn about_node(mut self, node: &'a str) -> Self {
        self.about_node = Some(node);
        self
    }
}

/// Something a caller asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    Api(ApiRequest<'a>),
    /// Any Ollama, OpenAI or Anthropic endpoint of the proxy that uses models.
    Inference,
    /// `/api/pull`: fetching a model onto the fleet. What `ollama run`
    /// does for a missing model, so `--model-management pull` grants it
    /// like inference.
    ModelPull,
    /// Ollama's other endpoints that change which models the fleet holds
    /// (push, create, copy, delete, blobs).
    ModelManagement,
    /// `/apis`, `/apis/herd/v1`, the JSON Schemas: any key may read them.
    Discovery,
    /// `GET /metrics`.
    Metrics,
    /// Trading a join key for a node key bound to one node name.
    JoinExchange,
    /// A request no rule describes: only an admin may make it, so a route
    /// added without a rule is closed rather than open.
    Unclassified,
}

impl<'a> From<ApiRequest<'a>> for Action<'a> {
    fn from(r: ApiRequest<'a>) -> Self {
        Action::Api(r)
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Api(r) => {
                write!(f, "{} {}", r.verb.as_str(), r.resource)?;
                if let Some(name) = r.name {
                    write!(f, "/{name}")?;
                }
                if r.subresource == Some(Subresource::Status) {
                    f.write_str("/status")?;
                }
                if let Some(node) = r.about_node {
                    write!(f, " about node {node}")?;
                }
                Ok(())
            }
            Action::Inference => f.write_str("use the inference endpoints"),
            Action::ModelPull => f.write_str("pull models onto the fleet"),
            Action::ModelManagement => f.write_str("manage the fleet's models"),
            Action::Discovery => f.write_str("read the API's discovery documents"),
            Action::Metrics => f.write_str("read /metrics"),
            Action::JoinExchange => f.write_str("exchange a join key for a node key"),
            Action::Unclassified => f.write_str("use an endpoint no rule describes"),
        }
    }
}

/// A refusal (403). Names who asked and what was refused; holds no secret,
/// since neither a principal nor an action carries one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{who} may not {what}")]
pub struct Denied {
    pub who: String,
    pub what: String,
}

impl Denied {
    fn new(who: &Principal, what: &Action<'_>) -> Self {
        Self {
            who: who.to_string(),
            what: what.to_string(),
        }
    }
}

/// Whether `principal` may do `action`, by its role alone. A request without
/// a key may do nothing here; see [`Openness::authorize`] for what an open
/// server lets it do.
pub fn authorize(principal: &Principal, action: &Action<'_>) -> Result<(), Denied> {
    let allowed = match principal {
        Principal::Key(KeyPrincipal { role, node, .. }) => {
            role_allows(*role, node.as_deref(), action)
        }
        Principal::Anonymous => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::new(principal, action))
    }
}

fn role_allows(role: Role, node: Option<&str>, action: &Action<'_>) -> bool {
    if let Action::Api(r) = action
        && r.resource == APIKEYHASHES
    {
        return false;
    }
    if *action == Action::Discovery {
        return true;
    }
    match role {
        Role::Admin => true,
        Role::Viewer => match action {
            Action::Api(r) => r.verb.is_read() && r.resource != SECRETS,
            Action::Metrics => true,
            _ => false,
        },
        Role::Controller => matches!(action, Action::Api(r) if controller_allows(r)),
        Role::Join => matches!(action, Action::JoinExchange),
        // A node key without a node is refused by validation and skipped by
        // the key ring; should one arrive anyway it gets no node's rights.
        Role::Node => match (action, node) {
            (Action::Api(r), Some(bound)) => node_allows(Some(bound), r),
            _ => false,
        },
        // Model operations reach inference keys only through the server's
        // `--model-management` policy (`Openness::authorize`).
        Role::Inference => matches!(action, Action::Inference),
    }
}

fn controller_allows(r: &ApiRequest<'_>) -> bool {
    match (r.resource, r.verb, r.subresource) {
        (LEASES, _, _) => true,
        (NODES | MODELASSIGNMENTS | EVENTS, verb, _) if verb.is_read() => true,
        (NODES | MODELASSIGNMENTS, Verb::Update | Verb::Patch, Some(Subresource::Status)) => true,
        (EVENTS, Verb::Create, None) => true,
        _ => false,
    }
}

/// The node restriction. `bound` is the key's node; `None` stands for any
/// node, which is what `--open-registration` grants a request without a key.
fn node_allows(bound: Option<&str>, r: &ApiRequest<'_>) -> bool {
    let own = |name: Option<&str>| match (bound, name) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(bound), Some(name)) => bound == name,
    };
    match (r.resource, r.verb, r.subresource) {
        (NODES, Verb::Get | Verb::Watch | Verb::Update | Verb::Patch, _) => own(r.name),
        (NODES, Verb::Create, None) => own(r.name),
        (MODELASSIGNMENTS, verb, _) => verb.is_read(),
        (EVENTS, Verb::Create, None) => own(r.about_node),
        _ => false,
    }
}

/// Who may change which models the fleet holds (`--model-management`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelPolicy {
    /// Ollama's behaviour: whoever may use inference may also push, create,
    /// copy and delete models.
    Open,
    /// Whoever may use inference may pull (so `ollama run` through herd
    /// still fetches a missing model); the rest needs an admin key.
    #[default]
    Pull,
    /// Every model operation, pulls included, needs an admin key.
    Admin,
}

impl ModelPolicy {
    /// The action a model operation is judged as under this policy:
    /// inference where the policy grants it as such, itself otherwise (then
    /// only an admin key may do it).
    fn judge<'a>(self, action: &Action<'a>) -> Action<'a> {
        match (self, action) {
            (ModelPolicy::Open, Action::ModelPull | Action::ModelManagement)
            | (ModelPolicy::Pull, Action::ModelPull) => Action::Inference,
            _ => *action,
        }
    }
}

/// What a server lets requests without a key do, by its flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Openness {
    /// `--inference-auth open`: the inference endpoints serve anyone.
    pub inference: bool,
    /// `--metrics-auth open`.
    pub metrics: bool,
    /// `--open-registration`: a request without a key may do what a node key
    /// may, for any node name.
    pub registration: bool,
    /// `--model-management`.
    pub models: ModelPolicy,
}

impl Openness {
    /// [`authorize`], with what this server leaves open granted first.
    pub fn authorize(&self, principal: &Principal, action: &Action<'_>) -> Result<(), Denied> {
        let judged = self.models.judge(action);
        let open = match judged {
            Action::Inference => self.inference,
            Action::ModelPull | Action::ModelManagement => false,
            Action::Metrics => self.metrics,
            Action::Api(r) => {
                self.registration && *principal == Principal::Anonymous && node_allows(None, &r)
            }
            Action::Discovery | Action::JoinExchange | Action::Unclassified => false,
        };
        if open {
            Ok(())
        } else {
            // Judged by the policy's action, refused in the caller's words.
            authorize(principal, &judged).map_err(|_| Denied::new(principal, action))
        }
    }
}

#[cfg(test)]
mod tests {
    use herd_api::{ApiKey, Event, ModelAssignment, Node, Resource};

    use super::resources::{APIKEYS, REQUESTS};
    use super::*;

    fn key(role: Role) -> Principal {
        let node = (role == Role::Node).then_some("gpu-1");
        Principal::key(&format!("{role}-key"), role, node)
    }

    fn api(verb: Verb, resource: &str) -> ApiRequest<'_> {
        ApiRequest::new(verb, resource)
    }

    #[test]
    fn plurals_match_the_kinds() {
        assert_eq!(NODES, Node::PLURAL);
        assert_eq!(MODELASSIGNMENTS, ModelAssignment::PLURAL);
        assert_eq!(EVENTS, Event::PLURAL);
        assert_eq!(APIKEYS, ApiKey::PLURAL);
        assert_eq!(APIKEYHASHES, herd_api::ApiKeyHash::PLURAL);
        assert_eq!(SECRETS, herd_api::Secret::PLURAL);
    }

    #[test]
    fn authorization_table() {
        use Role::{Admin, Controller, Inference, Join, Node as NodeRole, Viewer};
        use Verb::{Create, Delete, Get, List, Patch, Update, Watch};
        let cases: Vec<(Role, Action<'_>, bool)> = vec![
            // admin: everything but key hashes
            (Admin, api(Delete, NODES).named("gpu-2").into(), true),
            (Admin, api(Create, APIKEYS).named("ci").into(), true),
            (Admin, api(Get, SECRETS).named("s").into(), true),
            (Admin, api(Create, SECRETS).named("s").into(), true),
            (Admin, api(Watch, SECRETS).into(), true),
            (Admin, api(Update, MODELASSIGNMENTS).named("m").into(), true),
            (Admin, api(Patch, NODES).named("gpu-2").into(), true),
            (Admin, Action::Inference, true),
            (Admin, Action::Metrics, true),
            (Admin, Action::JoinExchange, true),
            (Admin, Action::ModelManagement, true),
            (Admin, Action::Discovery, true),
            (Admin, Action::Unclassified, true),
            (Admin, api(List, APIKEYHASHES).into(), false),
            (
                Admin,
                api(Get, APIKEYHASHES).named("abcdefgh1234").into(),
                false,
            ),
            // viewer: reads everything but secrets
            (Viewer, api(List, NODES).into(), true),
            (Viewer, api(Watch, NODES).into(), true),
            (Viewer, api(Get, NODES).named("gpu-2").status().into(), true),
            (Viewer, api(List, APIKEYS).into(), true),
            (Viewer, api(List, EVENTS).into(), true),
            (Viewer, api(List, REQUESTS).into(), true),
            (Viewer, api(Get, LEASES).named("controller").into(), true),
            (Viewer, Action::Metrics, true),
            (Viewer, api(Get, SECRETS).named("s").into(), false),
            (Viewer, api(List, SECRETS).into(), false),
            (Viewer, api(Watch, SECRETS).into(), false),
            (Viewer, api(Create, SECRETS).named("s").into(), false),
            (Viewer, api(Watch, APIKEYHASHES).into(), false),
            (Viewer, api(Patch, NODES).named("gpu-2").into(), false),
            (
                Viewer,
                api(Update, NODES).named("gpu-2").status().into(),
                false,
            ),
            (Viewer, api(Delete, APIKEYS).named("ci").into(), false),
            (Viewer, api(Create, EVENTS).into(), false),
            (Viewer, Action::Inference, false),
            (Viewer, Action::JoinExchange, false),
            (Viewer, Action::ModelManagement, false),
            (Viewer, Action::Discovery, true),
            (Viewer, Action::Unclassified, false),
            // controller: node and assignment status, events, leases
            (Controller, api(List, NODES).into(), true),
            (Controller, api(Watch, MODELASSIGNMENTS).into(), true),
            (Controller, api(Get, EVENTS).named("e").into(), true),
            (
                Controller,
                api(Update, NODES).named("gpu-2").status().into(),
                true,
            ),
            (
                Controller,
                api(Patch, NODES).named("gpu-2").status().into(),
                true,
            ),
            (
                Controller,
                api(Update, MODELASSIGNMENTS).named("m").status().into(),
                true,
            ),
            (Controller, api(Create, EVENTS).named("e").into(), true),
            (
                Controller,
                api(Create, LEASES).named("controller").into(),
                true,
            ),
            (
                Controller,
                api(Update, LEASES).named("controller").into(),
                true,
            ),
            (
                Controller,
                api(Delete, LEASES).named("controller").into(),
                true,
            ),
            (Controller, api(Update, NODES).named("gpu-2").into(), false),
            (Controller, api(Delete, NODES).named("gpu-2").into(), false),
            (Controller, api(Create, NODES).named("gpu-9").into(), false),
            (
                Controller,
                api(Update, MODELASSIGNMENTS).named("m").into(),
                false,
            ),
            (Controller, api(Delete, EVENTS).named("e").into(), false),
            (Controller, api(List, APIKEYS).into(), false),
            (Controller, api(Get, SECRETS).named("s").into(), false),
            (Controller, api(List, SECRETS).into(), false),
            (Controller, api(Watch, SECRETS).into(), false),
            (Controller, api(Patch, SECRETS).named("s").into(), false),
            (Controller, Action::Inference, false),
            (Controller, Action::Metrics, false),
            (Controller, Action::Discovery, true),
            (Controller, Action::Unclassified, false),
            // join: the exchange only
            (Join, Action::JoinExchange, true),
            (Join, api(Create, NODES).named("gpu-1").into(), false),
            (Join, api(Get, NODES).named("gpu-1").into(), false),
            (
                Join,
                api(Update, NODES).named("gpu-1").status().into(),
                false,
            ),
            (Join, api(List, APIKEYS).into(), false),
            (Join, api(List, MODELASSIGNMENTS).into(), false),
            (Join, api(Update, MODELASSIGNMENTS).named("m").into(), false),
            (Join, Action::Inference, false),
            (Join, Action::ModelManagement, false),
            (Join, Action::Unclassified, false),
            // node (bound to gpu-1): its own Node only
            (NodeRole, api(Get, NODES).named("gpu-1").into(), true),
            (NodeRole, api(Watch, NODES).named("gpu-1").into(), true),
            (NodeRole, api(Create, NODES).named("gpu-1").into(), true),
            (NodeRole, api(Update, NODES).named("gpu-1").into(), true),
            (NodeRole, api(Patch, NODES).named("gpu-1").into(), true),
            (
                NodeRole,
                api(Update, NODES).named("gpu-1").status().into(),
                true,
            ),
            (
                NodeRole,
                api(Patch, NODES).named("gpu-1").status().into(),
                true,
            ),
            (NodeRole, api(List, MODELASSIGNMENTS).into(), true),
            (NodeRole, api(Watch, MODELASSIGNMENTS).into(), true),
            (NodeRole, api(Get, MODELASSIGNMENTS).named("m").into(), true),
            (
                NodeRole,
                api(Create, EVENTS).named("e").about_node("gpu-1").into(),
                true,
            ),
            (NodeRole, api(Get, NODES).named("gpu-2").into(), false),
            (NodeRole, api(Create, NODES).named("gpu-2").into(), false),
            (NodeRole, api(Update, NODES).named("gpu-2").into(), false),
            (
                NodeRole,
                api(Update, NODES).named("gpu-2").status().into(),
                false,
            ),
            (NodeRole, api(Delete, NODES).named("gpu-1").into(), false),
            (NodeRole, api(Delete, NODES).named("gpu-2").into(), false),
            (NodeRole, api(List, NODES).into(), false),
            (NodeRole, api(Watch, NODES).into(), false),
            (NodeRole, api(Create, NODES).into(), false),
            (
                NodeRole,
                api(Create, EVENTS).named("e").about_node("gpu-2").into(),
                false,
            ),
            (NodeRole, api(Create, EVENTS).named("e").into(), false),
            (NodeRole, api(List, EVENTS).into(), false),
            (
                NodeRole,
                api(Update, MODELASSIGNMENTS).named("m").into(),
                false,
            ),
            (
                NodeRole,
                api(Update, MODELASSIGNMENTS).named("m").status().into(),
                false,
            ),
            (
                NodeRole,
                api(Create, MODELASSIGNMENTS).named("m").into(),
                false,
            ),
            (NodeRole, api(Get, APIKEYS).named("ci").into(), false),
            (NodeRole, api(List, APIKEYS).into(), false),
            (NodeRole, api(Get, SECRETS).named("s").into(), false),
            (NodeRole, api(Watch, SECRETS).into(), false),
            (NodeRole, api(Create, SECRETS).named("gpu-1").into(), false),
            (NodeRole, Action::Inference, false),
            (NodeRole, Action::JoinExchange, false),
            (NodeRole, Action::ModelManagement, false),
            (NodeRole, Action::Discovery, true),
            (NodeRole, Action::Unclassified, false),
            // inference: only inference
            (Inference, Action::Inference, true),
            (Inference, Action::Metrics, false),
            (Inference, api(List, NODES).into(), false),
            (Inference, api(Get, SECRETS).named("s").into(), false),
            (Inference, api(List, SECRETS).into(), false),
            (
                Inference,
                api(Get, MODELASSIGNMENTS).named("m").into(),
                false,
            ),
            (Inference, Action::JoinExchange, false),
            (Inference, Action::ModelManagement, false),
            (Inference, Action::ModelPull, false),
            (Inference, Action::Unclassified, false),
        ];
        assert!(cases.len() >= 30);
        for (role, action, want) in cases {
            let got = authorize(&key(role), &action);
            assert_eq!(got.is_ok(), want, "{role} {action}: {got:?}");
        }
    }

    #[test]
    fn node_key_without_node_may_do_nothing() {
        use Verb::{Create, Get, List};
        let p = Principal::key("broken", Role::Node, None);
        for action in [
            Action::Api(api(Get, NODES).named("gpu-1")),
            Action::Api(api(List, MODELASSIGNMENTS)),
            Action::Api(api(Create, EVENTS).named("e").about_node("gpu-1")),
        ] {
            assert!(authorize(&p, &action).is_err(), "{action}");
        }
    }

    #[test]
    fn model_operations_by_policy() {
        let inference = key(Role::Inference);
        let admin = key(Role::Admin);
        let viewer = key(Role::Viewer);
        let anon = Principal::Anonymous;
        let open = |models| Openness {
            inference: true,
            models,
            ..Openness::default()
        };
        let closed = |models| Openness {
            models,
            ..Openness::default()
        };
        use Action::{ModelManagement as Manage, ModelPull as Pull};
        use ModelPolicy::{Admin as AdminOnly, Open, Pull as PullOnly};
        let cases: Vec<(Openness, &Principal, Action<'_>, bool)> = vec![
            (open(Open), &anon, Pull, true),
            (open(Open), &anon, Manage, true),
            (closed(Open), &anon, Manage, false),
            (closed(Open), &inference, Manage, true),
            (closed(Open), &viewer, Manage, false),
            (open(PullOnly), &anon, Pull, true),
            (open(PullOnly), &anon, Manage, false),
            (closed(PullOnly), &inference, Pull, true),
            (closed(PullOnly), &inference, Manage, false),
            (closed(PullOnly), &admin, Manage, true),
            (closed(PullOnly), &viewer, Pull, false),
            (open(AdminOnly), &anon, Pull, false),
            (closed(AdminOnly), &inference, Pull, false),
            (closed(AdminOnly), &admin, Pull, true),
            (closed(AdminOnly), &admin, Manage, true),
        ];
        for (policy, who, action, want) in cases {
            let got = policy.authorize(who, &action);
            assert_eq!(got.is_ok(), want, "{policy:?} {who} {action}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains(&action.to_string()), "{e}");
            }
        }
    }

    #[test]
    fn anonymous_by_openness() {
        use Verb::{Create, Get, List, Update};
        let anon = Principal::Anonymous;
        let closed = Openness::default();
        let all_open = Openness {
            inference: true,
            metrics: true,
            registration: true,
            models: ModelPolicy::Open,
        };
        let inference_only = Openness {
            inference: true,
            ..Openness::default()
        };
        let cases: Vec<(Openness, &Principal, Action<'_>, bool)> = vec![
            (closed, &anon, Action::Inference, false),
            (closed, &anon, Action::Metrics, false),
            (closed, &anon, Action::Discovery, false),
            (closed, &anon, Action::ModelManagement, false),
            (
                closed,
                &anon,
                api(Create, NODES).named("gpu-1").into(),
                false,
            ),
            (closed, &anon, api(List, NODES).into(), false),
            (inference_only, &anon, Action::Inference, true),
            (inference_only, &anon, Action::Metrics, false),
            (
                inference_only,
                &anon,
                api(Get, NODES).named("gpu-1").into(),
                false,
            ),
            (all_open, &anon, Action::Inference, true),
            (all_open, &anon, Action::Metrics, true),
            (
                all_open,
                &anon,
                api(Create, NODES).named("any-name").into(),
                true,
            ),
            (
                all_open,
                &anon,
                api(Update, NODES).named("gpu-1").status().into(),
                true,
            ),
            (all_open, &anon, api(List, MODELASSIGNMENTS).into(), true),
            (
                all_open,
                &anon,
                api(Create, EVENTS).named("e").about_node("gpu-1").into(),
                true,
            ),
            (all_open, &anon, api(List, NODES).into(), false),
            (
                all_open,
                &anon,
                api(Verb::Delete, NODES).named("gpu-1").into(),
                false,
            ),
            (all_open, &anon, api(List, APIKEYS).into(), false),
            (all_open, &anon, Action::JoinExchange, false),
            (all_open, &anon, Action::Discovery, false),
            (all_open, &anon, Action::Unclassified, false),
            (all_open, &anon, Action::ModelManagement, true),
            (all_open, &anon, Action::ModelPull, true),
            // The default `--model-management pull`: open inference lets
            // anyone pull, and nothing else.
            (inference_only, &anon, Action::ModelPull, true),
            (inference_only, &anon, Action::ModelManagement, false),
            (closed, &anon, Action::ModelPull, false),
        ];
        for (open, who, action, want) in cases {
            let got = open.authorize(who, &action);
            assert_eq!(got.is_ok(), want, "{open:?} {action}: {got:?}");
        }
        // Open inference is open to every caller; open registration only to
        // requests without a key (a key is judged by its role).
        let viewer = key(Role::Viewer);
        assert!(
            inference_only
                .authorize(&viewer, &Action::Inference)
                .is_ok()
        );
        let inference = key(Role::Inference);
        let create = Action::Api(api(Create, NODES).named("gpu-3"));
        assert!(all_open.authorize(&inference, &create).is_err());
    }

    #[test]
    fn denied_names_who_and_what() {
        let err = authorize(
            &Principal::key("ci", Role::Viewer, None),
            &Action::Api(api(Verb::Delete, NODES).named("gpu-2")),
        )
        .expect_err("viewer cannot delete");
        assert_eq!(
            err.to_string(),
            r#"key "ci" (role viewer) may not delete nodes/gpu-2"#
        );
        let err = authorize(
            &key(Role::Node),
            &Action::Api(api(Verb::Update, NODES).named("gpu-2").status()),
        )
        .expect_err("other node");
        assert_eq!(
            err.to_string(),
            r#"key "node-key" (role node, node gpu-1) may not update nodes/gpu-2/status"#
        );
        let err = authorize(&Principal::Anonymous, &Action::Metrics).expect_err("closed");
        assert_eq!(
            err.to_string(),
            "a request without a key may not read /metrics"
        );
    }
}
