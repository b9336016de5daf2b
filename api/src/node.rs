use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{Condition, Timestamp, find_condition};
use crate::resource::resource_object;
use crate::{ConditionStatus, FieldError, conditions, validate};

resource_object! {
    /// A machine running Ollama, registered by its nodelet.
    Node { spec: NodeSpec, status: NodeStatus, kind: "Node", plural: "nodes", singular: "node", short: ["no"] }
}

pub const DEFAULT_MAX_PARALLEL: u32 = 4;
pub const DEFAULT_WEIGHT: u32 = 100;

/// What the operator (or the nodelet at registration) wants for a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Where the router sends this node's requests, e.g. `http://192.168.1.20:11434`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ollama_url: String,
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

fn default_max_parallel() -> u32 {
    DEFAULT_MAX_PARALLEL
}
fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

impl Default for NodeSpec {
    fn default() -> Self {
        Self {
            ollama_url: String::new(),
            unschedulable: false,
            max_parallel: DEFAULT_MAX_PARALLEL,
            weight: DEFAULT_WEIGHT,
        }
    }
}

impl NodeSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.ollama_url.is_empty()
            && let Err(e) = validate::http_url(&self.ollama_url)
        {
            errors.push(FieldError::invalid("spec.ollamaUrl", e));
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
            "spec.ollamaUrl",
            "spec.maxParallel",
            "spec.weight",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
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
