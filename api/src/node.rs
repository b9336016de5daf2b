use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{Condition, Timestamp, find_condition};
use crate::resource::resource_object;
use crate::{ConditionStatus, FieldError, conditions, validate};

resource_object! {
    /// A machine serving models: an Ollama looked after by a nodelet, or any
    /// backend (another Ollama, an OpenAI-compatible server) added by hand.
    Node { spec: NodeSpec, status: NodeStatus, kind: "Node", plural: "nodes", singular: "node", short: ["no"] }
}

pub const DEFAULT_MAX_PARALLEL: u32 = 4;
pub const DEFAULT_WEIGHT: u32 = 100;
/// Largest `spec.caCert` accepted: a few certificates' worth of PEM.
pub const MAX_CA_CERT_BYTES: usize = 64 * 1024;

/// What the operator (or the nodelet at registration) wants for a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// The backend's base URL: where the router sends this node's requests,
    /// e.g. `http://192.168.1.20:11434` for an Ollama or
    /// `https://llm.example.com` for an OpenAI-compatible server (its `/v1`
    /// paths hang under it; a trailing `/v1` is allowed). `ollamaUrl` is
    /// accepted as an older name for it.
    #[serde(default, alias = "ollamaUrl", skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Which API the backend speaks: `ollama` (default) or `openai`.
    #[serde(default, skip_serializing_if = "NodeApi::is_ollama")]
    pub api: NodeApi,
    /// A nodelet looks after this node (heartbeats, pulls). `false` for a
    /// backend nobody installs anything on: its health and models come from
    /// the controller's probes, and no model is ever placed on it.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub managed: bool,
    /// Credentials the router and the controller send to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NodeAuth>,
    /// PEM certificates trusted for an `https://` URL, besides the system's
    /// public roots (for a backend with a private CA or a self-signed
    /// certificate).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
    /// Cordon: no new requests; in-flight ones finish.
    #[serde(default)]
    pub unschedulable: bool,
    /// Concurrent requests this node accepts (Ollama's `OLLAMA_NUM_PARALLEL`).
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// Operator bias for mixed hardware: a node of weight 200 takes about
    /// twice the traffic of one of weight 100. 0 takes none.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// The API a node's backend speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeApi {
    /// Ollama's native API (`/api/*`) and its OpenAI-compatible `/v1`.
    #[default]
    Ollama,
    /// An OpenAI-compatible server (vLLM, llama.cpp's `llama-server`, LM
    /// Studio, a hosted endpoint): `/v1/models`, `/v1/chat/completions`,
    /// `/v1/completions`, `/v1/embeddings`.
    #[serde(rename = "openai")]
    OpenAi,
}

impl NodeApi {
    pub fn is_ollama(&self) -> bool {
        *self == NodeApi::Ollama
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeApi::Ollama => "ollama",
            NodeApi::OpenAi => "openai",
        }
    }
}

/// How the router authenticates to a node's backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAuth {
    /// The `Secret` whose token is sent as `Authorization: Bearer <token>`.
    pub secret_ref: String,
}

fn default_max_parallel() -> u32 {
    DEFAULT_MAX_PARALLEL
}
fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}
fn yes() -> bool {
    true
}
// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_true(b: &bool) -> bool {
    *b
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            url: String::new(),
            api: NodeApi::Ollama,
            managed: true,
            auth: None,
            ca_cert: String::new(),
            unschedulable: false,
            max_parallel: DEFAULT_MAX_PARALLEL,
            weight: DEFAULT_WEIGHT,
        }
    }
}

impl NodeSpec {
    /// `url` without a trailing slash and, for an `openai` node, without a
    /// trailing `/v1` (as OpenAI clients' base URLs are written): the prefix
    /// that request paths (`/v1/...`, `/api/...`) are appended to.
    pub fn base_url(&self) -> &str {
        let url = self.url.trim().trim_end_matches('/');
        match self.api {
            NodeApi::OpenAi => url.strip_suffix("/v1").unwrap_or(url),
            NodeApi::Ollama => url,
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.url.is_empty()
            && let Err(e) = validate::http_url(&self.url)
        {
            errors.push(FieldError::invalid("spec.url", e));
        }
        if self.api == NodeApi::OpenAi && self.managed {
            errors.push(FieldError::invalid(
                "spec.managed",
                "a nodelet looks after Ollama only: an api: openai node must set managed: false",
            ));
        }
        if !self.managed && self.url.is_empty() {
            errors.push(FieldError::required("spec.url"));
        }
        if let Some(auth) = &self.auth {
            if auth.secret_ref.is_empty() {
                errors.push(FieldError::required("spec.auth.secretRef"));
            } else if let Err(e) = validate::dns1123_label(&auth.secret_ref) {
                errors.push(FieldError::invalid("spec.auth.secretRef", e));
            }
        }
        if !self.ca_cert.is_empty() {
            if let Err(e) = validate::pem_certificates(&self.ca_cert, MAX_CA_CERT_BYTES) {
                errors.push(FieldError::invalid("spec.caCert", e));
            }
            if !self.url.starts_with("https://") {
                errors.push(FieldError::invalid(
                    "spec.caCert",
                    "only an https:// url uses a CA certificate",
                ));
            }
        }
        validate::range(
            "spec.maxParallel",
            self.max_parallel.into(),
            1,
            1024,
            &mut errors,
        );
        validate::range("spec.weight", self.weight.into(), 0, 10_000, &mut errors);
        errors
    }
}

/// What the nodelet and the controller observe about a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<NodeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<NodeCapacity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<NodeUsage>,
    /// Models present on the node (`/api/tags`), marked when loaded (`/api/ps`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<NodeModel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<ModelPull>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingStatus>,
    /// The optional endpoints ([`endpoints`]) the backend answers itself, as
    /// the controller's probe of an unmanaged node found them; absent until
    /// probed. The router translates requests to the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
}

/// Endpoints a backend may or may not serve natively, by path.
pub mod endpoints {
    /// Anthropic's Messages API.
    pub const MESSAGES: &str = "/v1/messages";
    /// OpenAI's Responses API.
    pub const RESPONSES: &str = "/v1/responses";
    /// Every endpoint the probe looks for.
    pub const OPTIONAL: [&str; 2] = [MESSAGES, RESPONSES];
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    #[serde(default)]
    pub machine_name: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub ollama_version: String,
    #[serde(default)]
    pub nodelet_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapacity {
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    pub name: String,
    #[serde(default)]
    pub memory_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    #[serde(default)]
    pub cpu_percent: f64,
    #[serde(default)]
    pub memory_percent: f64,
    #[serde(default)]
    pub in_flight: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// In memory right now (listed by `/api/ps`).
    #[serde(default)]
    pub loaded: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPhase {
    #[default]
    Pending,
    Pulling,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelPull {
    pub model: String,
    #[serde(default)]
    pub phase: PullPhase,
    #[serde(default)]
    pub completed_bytes: u64,
    #[serde(default)]
    pub total_bytes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The controller's routing decision for a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatus {
    pub weight: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Node {
    /// The backend serves `path` (one of [`endpoints::OPTIONAL`]) as the
    /// probe found it.
    pub fn serves(&self, path: &str) -> bool {
        self.status
            .endpoints
            .as_ref()
            .is_some_and(|e| e.iter().any(|p| p == path))
    }

    /// The `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        find_condition(&self.status.conditions, conditions::READY)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Holds `model` (by Ollama's name equality: `llama3` = `llama3:latest`).
    pub fn model(&self, model: &str) -> Option<&NodeModel> {
        let want = crate::model_name::canonical(model);
        self.status
            .models
            .iter()
            .find(|m| crate::model_name::canonical(&m.name) == want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    #[test]
    fn defaults_fill_spec() {
        let n: Node = serde_json::from_str(
            r#"{"metadata":{"name":"a"},"spec":{"ollamaUrl":"http://127.0.0.1:11434"}}"#,
        )
        .expect("parse");
        assert_eq!(n.spec.max_parallel, 4);
        assert_eq!(n.spec.weight, 100);
        assert_eq!(n.kind, "Node");
        assert_eq!(n.api_version, "herd/v1");
        assert!(n.validate().is_empty(), "{:?}", n.validate());
    }

    #[test]
    fn validation_names_fields() {
        let n: Node = serde_json::from_str(
            r#"{"apiVersion":"herd/v2","kind":"Node","metadata":{"name":"Bad_Name","labels":{"a b":"c"}},
                "spec":{"ollamaUrl":"ftp://x","maxParallel":0,"weight":20000}}"#,
        )
        .expect("parse");
        let fields: Vec<String> = n.validate().into_iter().map(|e| e.field).collect();
        for f in [
            "apiVersion",
            "metadata.name",
            "metadata.labels",
            "spec.url",
            "spec.maxParallel",
            "spec.weight",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn url_takes_its_old_name_and_writes_the_new_one() {
        let old: Node = serde_json::from_str(
            r#"{"metadata":{"name":"a"},"spec":{"ollamaUrl":"http://h:11434"}}"#,
        )
        .expect("the old name parses");
        assert_eq!(old.spec.url, "http://h:11434");
        let written = serde_json::to_value(&old.spec).expect("serialize");
        assert_eq!(written["url"], "http://h:11434");
        assert!(written.get("ollamaUrl").is_none(), "{written}");
        // Defaults are left out, so an Ollama node reads as before.
        assert!(written.get("api").is_none() && written.get("managed").is_none());
        let both = serde_json::from_str::<Node>(
            r#"{"metadata":{"name":"a"},"spec":{"ollamaUrl":"http://a","url":"http://b"}}"#,
        );
        assert!(
            both.is_err(),
            "two names for one field must not both be given"
        );
    }

    #[test]
    fn backend_fields_parse_and_validate() {
        let n: Node = serde_json::from_str(
            r#"{"metadata":{"name":"vllm"},"spec":{"url":"https://llm.example.com/v1","api":"openai",
                "managed":false,"auth":{"secretRef":"vllm-key"}}}"#,
        )
        .expect("parse");
        assert_eq!(n.spec.api, NodeApi::OpenAi);
        assert!(!n.spec.managed);
        assert!(n.validate().is_empty(), "{:?}", n.validate());

        // (spec JSON, field named in the error)
        let cases = [
            (r#"{"url":"http://x","api":"openai"}"#, "spec.managed"),
            (r#"{"managed":false}"#, "spec.url"),
            (
                r#"{"url":"http://x","auth":{"secretRef":""}}"#,
                "spec.auth.secretRef",
            ),
            (
                r#"{"url":"http://x","auth":{"secretRef":"Bad_Name"}}"#,
                "spec.auth.secretRef",
            ),
            (r#"{"url":"https://x","caCert":"not pem"}"#, "spec.caCert"),
            (
                r#"{"url":"https://x","caCert":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}"#,
                "spec.caCert",
            ),
        ];
        for (spec, field) in cases {
            let n: Node =
                serde_json::from_str(&format!(r#"{{"metadata":{{"name":"a"}},"spec":{spec}}}"#))
                    .expect(spec);
            let fields: Vec<String> = n.validate().into_iter().map(|e| e.field).collect();
            assert_eq!(fields, vec![field.to_owned()], "{spec}");
        }
        let plain: Node = serde_json::from_str(
            r#"{"metadata":{"name":"a"},"spec":{"url":"http://x","caCert":"not pem"}}"#,
        )
        .expect("parse");
        assert!(
            plain
                .validate()
                .iter()
                .any(|e| e.message.contains("https://"))
        );
        let bad_api =
            serde_json::from_str::<Node>(r#"{"metadata":{"name":"a"},"spec":{"api":"vllm"}}"#);
        assert!(
            bad_api
                .expect_err("unknown api")
                .to_string()
                .contains("vllm")
        );
    }

    #[test]
    fn base_url_table() {
        for (url, api, want) in [
            ("http://h:11434", NodeApi::Ollama, "http://h:11434"),
            ("http://h:11434/", NodeApi::Ollama, "http://h:11434"),
            ("http://h:8000/v1", NodeApi::OpenAi, "http://h:8000"),
            ("https://h/openai/v1/", NodeApi::OpenAi, "https://h/openai"),
            ("http://h:8000", NodeApi::OpenAi, "http://h:8000"),
            // An Ollama's path is its own business.
            ("http://h/v1", NodeApi::Ollama, "http://h/v1"),
        ] {
            let spec = NodeSpec {
                url: url.into(),
                api,
                ..NodeSpec::default()
            };
            assert_eq!(spec.base_url(), want, "{url} {api:?}");
        }
    }

    #[test]
    fn serves_reads_the_probed_endpoints() {
        let mut n = Node::new("a", NodeSpec::default());
        assert!(!n.serves(endpoints::MESSAGES));
        n.status.endpoints = Some(vec![endpoints::RESPONSES.to_owned()]);
        assert!(n.serves(endpoints::RESPONSES));
        assert!(!n.serves(endpoints::MESSAGES));
    }

    #[test]
    fn unknown_spec_field_is_rejected() {
        let err =
            serde_json::from_str::<Node>(r#"{"metadata":{"name":"a"},"spec":{"olamaUrl":"x"}}"#)
                .expect_err("typo must fail");
        assert!(err.to_string().contains("olamaUrl"), "{err}");
    }

    #[test]
    fn model_lookup_uses_ollama_equality() {
        let mut n = Node::new("a", NodeSpec::default());
        n.status.models.push(NodeModel {
            name: "llama3:latest".into(),
            ..Default::default()
        });
        assert!(n.model("llama3").is_some());
        assert!(n.model("llama3:8b").is_none());
    }
}
