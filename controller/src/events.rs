//! Events (I/O: the recorder writes them through the API): one stored `Event`
//! per transition the controller makes, for `herd get events` and the
//! dashboard. The apiserver keeps the log bounded.
//!
//! Events are written after the status change they describe has been
//! stored, so an event never announces a transition that did not happen;
//! if the controller dies between the two, that one event is lost (the
//! status is what counts).

use herd_api::{Event, EventSpec, EventType, ObjectReference, Resource, Timestamp};
use herd_client::{Api, Client, PostParams};

/// The `source` of every event the controller records.
pub const SOURCE: &str = "controller";

/// Event reasons.
pub mod reasons {
    /// A node was seen for the first time.
    pub const REGISTERED: &str = "Registered";
    /// A node became Ready.
    pub const READY: &str = "Ready";
    /// A node stopped being Ready (`False` or `Unknown`; the message says
    /// which and why).
    pub const NOT_READY: &str = "NotReady";
    /// A node was deleted.
    pub const REMOVED: &str = "Removed";
    /// A cordoned node finished its in-flight requests.
    pub const DRAINED: &str = "Drained";
    /// A model was placed on a node.
    pub const SCHEDULED: &str = "Scheduled";
    /// A model was taken off a node (the message says why).
    pub const UNSCHEDULED: &str = "Unscheduled";
}

/// An event to record, decided by a pure reconcile function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    /// Kind of the object it is about (`Node`, `ModelAssignment`).
    pub kind: &'static str,
    pub name: String,
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl EventDraft {
    pub fn normal<K: Resource>(name: &str, reason: &'static str, message: String) -> Self {
        Self {
            kind: K::KIND,
            name: name.to_owned(),
            type_: EventType::Normal,
            reason,
            message,
        }
    }

    pub fn warning<K: Resource>(name: &str, reason: &'static str, message: String) -> Self {
        Self {
            type_: EventType::Warning,
            ..Self::normal::<K>(name, reason, message)
        }
    }
}

/// Longest event message stored (the API allows 4 KiB).
const MAX_MESSAGE: usize = 1024;

/// A unique, valid name: `{object}-{reason}-{millis in hex}{4 random hex}`,
/// lowercase, the object part cut so the whole is a DNS-1123 label.
pub fn event_name(object: &str, reason: &str, at: Timestamp, random: u16) -> String {
    let suffix = format!(
        "{}-{:x}{:04x}",
        reason.to_ascii_lowercase(),
        at.as_millisecond().max(0),
        random
    );
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let object: String = object
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(room)
        .collect();
    let object = object.trim_matches('-');
    if object.is_empty() {
        suffix
    } else {
        format!("{object}-{suffix}")
    }
}

/// The stored form of a draft.
pub fn event_object(draft: &EventDraft, now: Timestamp, random: u16) -> Event {
    let mut message = draft.message.clone();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    Event::new(
        &event_name(&draft.name, draft.reason, now, random),
        EventSpec {
            involved_object: ObjectReference {
                kind: draft.kind.to_owned(),
                name: draft.name.clone(),
            },
            type_: draft.type_,
            reason: draft.reason.to_owned(),
            message,
            source: SOURCE.to_owned(),
            event_time: Some(now),
        },
    )
}

/// Writes events through the API. Failures are logged, not returned: the
/// status change the event describes is already stored, and retrying the
/// whole reconcile would not bring the event back.
#[derive(Clone, Debug)]
pub struct Recorder {
    api: Api<Event>,
}

impl Recorder {
    pub fn new(client: &Client) -> Self {
        Self { api: client.api() }
    }

    pub async fn record(&self, draft: &EventDraft) {
        for _ in 0..3 {
            let event = event_object(draft, Timestamp::now(), rand::random());
            match self.api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    tracing::info!(
                        object = %format_args!("{}/{}", draft.kind, draft.name),
                        reason = draft.reason,
                        message = %draft.message,
                        "event"
                    );
                    return;
                }
                // A name collision (same millisecond, same random): new name.
                Err(e) if e.is_already_exists() => continue,
                Err(e) => {
                    tracing::warn!(
                        object = %format_args!("{}/{}", draft.kind, draft.name),
                        reason = draft.reason,
                        error = %e,
                        "could not record event"
                    );
                    return;
                }
            }
        }
    }

    pub async fn record_all(&self, drafts: &[EventDraft]) {
        for d in drafts {
            self.record(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::{Node, validate::dns1123_label};

    fn at() -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_123).expect("valid")
    }

    #[test]
    fn names_are_valid_labels() {
        let long = "n".repeat(63);
        let cases = [
            ("gpu-box-1", "Ready"),
            ("a", "NotReady"),
            (long.as_str(), "Unscheduled"),
            ("x-", "Registered"),
            (&format!("{}-{}", "a".repeat(40), "b".repeat(22)), "Drained"),
        ];
        for (object, reason) in cases {
            for random in [0, 0xffff] {
                let name = event_name(object, reason, at(), random);
                dns1123_label(&name).unwrap_or_else(|e| panic!("{object}/{reason}: {e}"));
                assert!(name.contains(&reason.to_ascii_lowercase()), "{name}");
            }
        }
        assert_eq!(
            event_name("gpu-box-1", "NotReady", at(), 0xab),
            "gpu-box-1-notready-1a3185c507b00ab"
        );
        assert_ne!(
            event_name("a", "Ready", at(), 1),
            event_name("a", "Ready", at(), 2)
        );
    }

    #[test]
    fn event_objects_validate() {
        let draft = EventDraft::warning::<Node>("gpu-box-1", reasons::NOT_READY, "é".repeat(3000));
        let ev = event_object(&draft, at(), 7);
        assert!(ev.validate().is_empty(), "{:?}", ev.validate());
        assert_eq!(ev.spec.involved_object.kind, "Node");
        assert_eq!(ev.spec.source, "controller");
        assert_eq!(ev.spec.type_, EventType::Warning);
        assert!(ev.spec.message.len() <= MAX_MESSAGE + 3);
    }
}
