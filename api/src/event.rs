use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::meta::Timestamp;
use crate::resource::resource_object;

resource_object! {
    /// Something that happened to an object (a node became ready, a model
    /// finished pulling), kept in a bounded log for the dashboard and the CLI.
    Event { spec: EventSpec, status: EventStatus, kind: "Event", plural: "events", singular: "event", short: ["ev"] }
}

/// The object an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EventType {
    #[default]
    Normal,
    Warning,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    pub involved_object: ObjectReference,
    #[serde(default, rename = "type")]
    pub type_: EventType,
    /// Short CamelCase reason, e.g. `NodeNotReady`.
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// Which component reported it (`controller`, `nodelet/gpu-1`, `proxy`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStatus {}

impl EventSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.involved_object.kind.is_empty() {
            errors.push(FieldError::required("spec.involvedObject.kind"));
        }
        if self.involved_object.name.is_empty() {
            errors.push(FieldError::required("spec.involvedObject.name"));
        }
        if self.reason.is_empty() {
            errors.push(FieldError::required("spec.reason"));
        } else if self.reason.len() > 128 || !self.reason.chars().all(|c| c.is_ascii_alphanumeric())
        {
            errors.push(FieldError::invalid(
                "spec.reason",
                "must be at most 128 letters or digits (CamelCase)",
            ));
        }
        if self.message.len() > 4096 {
            errors.push(FieldError::invalid(
                "spec.message",
                "must be at most 4096 bytes",
            ));
        }
        errors
    }
}
