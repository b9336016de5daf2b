//! What the probe makes of a node's backend beyond "it answers" (pure;
//! the requests are sent by `probe_worker`):
//!
//! - whether the router can use the node at all ([`problem`]): a node whose
//!   URL is missing, whose Secret does not exist or whose CA certificate does
//!   not parse is never Ready, and its `Ready` condition says why;
//! - for an unmanaged node (`spec.managed: false`, no nodelet to report
//!   them), its models, from the backend's own list ([`models_from_tags`]
//!   for Ollama's `/api/tags`, [`models_from_openai`] for `/v1/models`) and
//!   an Ollama's version;
//! - for an `api: openai` node, which optional endpoints its server answers
//!   itself ([`endpoint_served`]).

use herd_api::{NodeModel, NodeSpec};
use serde::Deserialize;

/// What the probe found about a node's backend, kept in the controller's
/// memory and written into the node's status by its reconciler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSeen {
    /// Why the router cannot use the node, when it cannot.
    pub problem: Option<String>,
    /// An unmanaged node's models, from its last successful list.
    pub models: Option<Vec<NodeModel>>,
    /// An unmanaged Ollama's version (`/api/version`).
    pub version: Option<String>,
    /// The optional endpoints an `api: openai` node serves natively.
    pub endpoints: Option<Vec<String>>,
}

/// Whether the node's `spec.auth` Secret could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretLookup {
    /// The node names no Secret.
    NotNeeded,
    Found,
    Missing,
    /// The controller's key may not read Secrets.
    Unreadable,
}

/// Why the router cannot use `spec`, or `None` when it can. `ca_error` is
/// what parsing `spec.caCert` said, if it failed.
pub fn problem(spec: &NodeSpec, secret: SecretLookup, ca_error: Option<&str>) -> Option<String> {
    if spec.url.trim().is_empty() {
        return Some("spec.url is empty: there is nowhere to send requests".to_owned());
    }
    let name = spec.auth.as_ref().map_or("", |a| a.secret_ref.as_str());
    match secret {
        SecretLookup::Missing => {
            return Some(format!("spec.auth.secretRef: Secret {name} does not exist"));
        }
        SecretLookup::Unreadable => {
            return Some(format!(
                "spec.auth.secretRef: this controller's key may not read Secret {name} (Secrets are an admin's)"
            ));
        }
        SecretLookup::NotNeeded | SecretLookup::Found => {}
    }
    ca_error.map(|e| format!("spec.caCert: {e}"))
}

/// Ollama's `/api/tags`: `{"models":[{"name","digest","size"}]}`.
pub fn models_from_tags(body: &[u8]) -> Option<Vec<NodeModel>> {
    #[derive(Deserialize)]
    struct Tags {
        #[serde(default)]
        models: Vec<Tag>,
    }
    #[derive(Deserialize)]
    struct Tag {
        #[serde(default)]
        name: String,
        #[serde(default)]
        digest: String,
        #[serde(default)]
        size: u64,
    }
    let tags: Tags = serde_json::from_slice(body).ok()?;
    Some(
        tags.models
            .into_iter()
            .filter(|t| !t.name.is_empty())
            .map(|t| NodeModel {
                name: t.name,
                digest: t.digest,
                size_bytes: t.size,
                loaded: false,
            })
            .collect(),
    )
}

/// OpenAI's `/v1/models`: `{"object":"list","data":[{"id": ...}]}`. A
/// server that serves one model answers requests for it whatever name they
/// use, but routing needs the name it lists.
pub fn models_from_openai(body: &[u8]) -> Option<Vec<NodeModel>> {
    #[derive(Deserialize)]
    struct List {
        data: Vec<Model>,
    }
    #[derive(Deserialize)]
    struct Model {
        id: String,
    }
    let list: List = serde_json::from_slice(body).ok()?;
    Some(
        list.data
            .into_iter()
            .filter(|m| !m.id.is_empty())
            .map(|m| NodeModel {
                name: m.id,
                // What a server lists is what it has ready to serve.
                loaded: true,
                ..NodeModel::default()
            })
            .collect(),
    )
}

/// Ollama's `/api/version`: `{"version":"0.14.2"}`.
pub fn version_from(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Version {
        version: String,
    }
    serde_json::from_slice::<Version>(body)
        .ok()
        .map(|v| v.version)
}

/// Whether a server answers an optional endpoint itself, from its status
/// for a request with an empty JSON body (`{}`): one that serves it rejects
/// the body (400, 422) or fails on it (500); one that does not has no route
/// (404, 405, 501). An auth refusal or a gateway error says nothing either
/// way (`None`: keep what was known).
pub fn endpoint_served(code: u16) -> Option<bool> {
    match code {
        404 | 405 | 501 => Some(false),
        401 | 403 | 407 | 429 | 502..=504 => None,
        200..=299 | 400..=499 | 500 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use herd_api::{NodeApi, NodeAuth};

    use super::*;

    #[test]
    fn problem_table() {
        let spec = |url: &str, secret: Option<&str>| NodeSpec {
            url: url.into(),
            api: NodeApi::OpenAi,
            managed: false,
            auth: secret.map(|s| NodeAuth {
                secret_ref: s.into(),
            }),
            ..NodeSpec::default()
        };
        let cases: Vec<(NodeSpec, SecretLookup, Option<&str>, Option<&str>)> = vec![
            (spec("http://h", None), SecretLookup::NotNeeded, None, None),
            (
                spec("", None),
                SecretLookup::NotNeeded,
                None,
                Some("spec.url is empty"),
            ),
            (
                spec("http://h", Some("k")),
                SecretLookup::Missing,
                None,
                Some("Secret k does not exist"),
            ),
            (
                spec("http://h", Some("k")),
                SecretLookup::Unreadable,
                None,
                Some("may not read Secret k"),
            ),
            (spec("http://h", Some("k")), SecretLookup::Found, None, None),
            (
                spec("https://h", None),
                SecretLookup::NotNeeded,
                Some("no certificate parses"),
                Some("spec.caCert: no certificate parses"),
            ),
        ];
        for (spec, secret, ca, want) in cases {
            let got = problem(&spec, secret, ca);
            match (got.as_deref(), want) {
                (None, None) => {}
                (Some(g), Some(w)) if g.contains(w) => {}
                (g, w) => panic!("{spec:?} {secret:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn model_lists() {
        let tags = br#"{"models":[{"name":"llama3.2:1b","model":"llama3.2:1b","digest":"sha256:ab","size":12},{"name":""}]}"#;
        let m = models_from_tags(tags).expect("tags");
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].name.as_str(), m[0].size_bytes), ("llama3.2:1b", 12));
        assert_eq!(models_from_tags(br#"{"models":[]}"#), Some(vec![]));
        assert_eq!(models_from_tags(b"not json"), None);

        let list = br#"{"object":"list","data":[{"id":"smollm2","object":"model","owned_by":"llamacpp"},{"id":"e5"}]}"#;
        let m = models_from_openai(list).expect("list");
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["smollm2", "e5"]);
        assert!(m.iter().all(|m| m.loaded));
        assert_eq!(models_from_openai(br#"{"models":[]}"#), None);
        assert_eq!(
            version_from(br#"{"version":"0.14.2"}"#).as_deref(),
            Some("0.14.2")
        );
        assert_eq!(version_from(b"{}"), None);
    }

    #[test]
    fn endpoint_served_table() {
        for (code, want) in [
            (200, Some(true)),
            (400, Some(true)),
            (422, Some(true)),
            (500, Some(true)),
            (404, Some(false)),
            (405, Some(false)),
            (501, Some(false)),
            (401, None),
            (403, None),
            (429, None),
            (502, None),
            (503, None),
        ] {
            assert_eq!(endpoint_served(code), want, "{code}");
        }
    }
}
