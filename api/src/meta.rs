use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An instant in UTC, written as RFC 3339 on the wire.
pub type Timestamp = jiff::Timestamp;

/// Metadata every stored object carries. `uid`, `resourceVersion`, `generation`
/// and `creationTimestamp` are set by the server; values sent by clients for
/// them are ignored (except `resourceVersion`, which makes an update conditional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique among objects of the same kind; a DNS-1123 label.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The store revision at which this object last changed. Opaque to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Grows by one each time `spec` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The resource version as a number, when the server set one.
    pub fn revision(&self) -> Option<u64> {
        self.resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
    }
}

/// `True`, `False` or `Unknown`, as in Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn from_bool(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// One observed aspect of an object's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed (not when the condition was last written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Timestamp>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: None,
        }
    }
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Inserts or updates a condition. `lastTransitionTime` moves to `now` only when
/// the status actually changes, so it tells how long the current state has held.
/// Returns true when anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Timestamp) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.or(Some(now));
            } else {
                new.last_transition_time = Some(now);
            }
            let changed = *existing != new;
            *existing = new;
            changed
        }
        None => {
            new.last_transition_time = Some(now);
            conditions.push(new);
            true
        }
    }
}

/// Metadata of a list: the store revision the list was read at, from which a
/// watch can continue without missing an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: String,
}

/// `NodeList`, `ModelAssignmentList`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList<K> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ListMeta,
    pub items: Vec<K>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conds = Vec::new();
        let t1 = ts("2026-01-01T00:00:00Z");
        let t2 = ts("2026-01-01T00:00:05Z");
        let t3 = ts("2026-01-01T00:00:10Z");
        assert!(set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::True, "Up", ""),
            t1
        ));
        assert!(!set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::True, "Up", ""),
            t2
        ));
        assert_eq!(conds[0].last_transition_time, Some(t1));
        assert!(set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::True, "Up", "new msg"),
            t2
        ));
        assert_eq!(conds[0].last_transition_time, Some(t1));
        assert!(set_condition(
            &mut conds,
            Condition::new("Ready", ConditionStatus::Unknown, "HeartbeatMissed", ""),
            t3
        ));
        assert_eq!(conds[0].last_transition_time, Some(t3));
        assert_eq!(conds.len(), 1);
    }
}
