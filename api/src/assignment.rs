use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::model_name::ModelName;
use crate::resource::resource_object;
use crate::{FieldError, validate};

resource_object! {
    /// "This model should be on these machines": the nodelets pull it there.
    ModelAssignment {
        spec: ModelAssignmentSpec, status: ModelAssignmentStatus,
        kind: "ModelAssignment", plural: "modelassignments", singular: "modelassignment", short: ["ma"]
    }
}

/// Which model should be on which nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelAssignmentSpec {
    /// An Ollama model name, `[host/][namespace/]model[:tag]`.
    #[serde(default)]
    pub model: String,
    /// How many nodes should hold the model. Omit it to place the model on
    /// every node that matches `nodeSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Only nodes carrying these labels are considered. Omit it to consider
    /// every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
}

/// Selects nodes by their labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    /// Nodes must carry every one of these labels with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl ModelAssignmentSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.model.trim().is_empty() {
            errors.push(FieldError::required("spec.model"));
        } else if let Err(e) = ModelName::parse(&self.model) {
            errors.push(FieldError::invalid("spec.model", e));
        }
        if let Some(r) = self.replicas {
            validate::range("spec.replicas", r.into(), 0, 10_000, &mut errors);
        }
        if let Some(sel) = &self.node_selector {
            validate::labels(
                "spec.nodeSelector.matchLabels",
                &sel.match_labels,
                &mut errors,
            );
        }
        errors
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlacementPhase {
    #[default]
    Pending,
    Pulling,
    Ready,
    Failed,
}

/// Where the controller placed the model, and how far each node got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    pub node: String,
    #[serde(default)]
    pub phase: PlacementPhase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Written by the controller: where the model was placed and how far each node got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelAssignmentStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<PlacementStatus>,
    #[serde(default)]
    pub ready_replicas: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    #[test]
    fn validation_table() {
        let cases = [
            (r#"{"model":"llama3.2:1b","replicas":2}"#, None),
            (
                r#"{"model":"llama3.2:1b","nodeSelector":{"matchLabels":{"gpu":"nvidia"}}}"#,
                None,
            ),
            (r#"{}"#, Some("spec.model")),
            (r#"{"model":"a/b/c/d"}"#, Some("spec.model")),
            (r#"{"model":"x","replicas":20000}"#, Some("spec.replicas")),
            (
                r#"{"model":"x","nodeSelector":{"matchLabels":{"bad key":"v"}}}"#,
                Some("spec.nodeSelector.matchLabels"),
            ),
        ];
        for (spec, want) in cases {
            let ma: ModelAssignment =
                serde_json::from_str(&format!(r#"{{"metadata":{{"name":"m"}},"spec":{spec}}}"#))
                    .expect("parse");
            let errs = ma.validate();
            match want {
                None => assert!(errs.is_empty(), "{spec}: {errs:?}"),
                Some(f) => assert!(errs.iter().any(|e| e.field == f), "{spec}: {errs:?}"),
            }
        }
    }

    #[test]
    fn schema_is_derived() {
        let schema = ModelAssignment::kind_schema();
        let text = schema.to_string();
        assert!(text.contains("nodeSelector"), "{text}");
        assert!(text.contains("replicas"));
    }
}
