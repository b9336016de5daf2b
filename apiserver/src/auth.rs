//! What the routes decide about the caller once they have read the body:
//! the host (herd-server) authenticates every request and authorizes what
//! the method and path alone say; a create names its object only in the
//! body, a nodelet's Node write is allowed only for some fields, and an
//! Event's `source` is the server's view of who wrote it.
//!
//! All of it is off when [`crate::Config::auth`] is `None` (the API served
//! bare, by [`crate::run`], for tests and tools); `herd server` always turns
//! it on, and then a request that reached a route without a [`Principal`]
//! is refused.

use axum::Extension;
use herd_api::{Event, EventSpec, EventType, Node, ObjectReference, Resource, Role};
use herd_auth::{Action, ApiRequest, Openness, Principal};

use crate::error::ApiError;
use crate::routes::AppState;
use crate::store::{Expect, Proposal};

/// The caller a route sees: `None` when the API is served bare.
pub(crate) type Caller = Option<Principal>;

/// The request's [`Principal`], as the host put it in the extensions.
pub(crate) fn caller(
    state: &AppState,
    found: Option<Extension<Principal>>,
) -> Result<Caller, ApiError> {
    match (&state.config.auth, found) {
        (None, _) => Ok(None),
        (Some(_), Some(Extension(p))) => Ok(Some(p)),
        // Only a host that skipped authentication gets here: refuse rather
        // than serve a caller nobody identified.
        (Some(_), None) => Err(ApiError::Unauthorized(
            "this request was not authenticated".into(),
        )),
    }
}

/// Authorizes a create now that the body named the object (and, for an
/// Event, the node it is about).
pub(crate) fn authorize_create<K: Resource>(
    state: &AppState,
    caller: &Caller,
    obj: &K,
) -> Result<(), ApiError> {
    let (Some(openness), Some(principal)) = (&state.config.auth, caller) else {
        return Ok(());
    };
    let name = &obj.meta().name;
    let mut request = ApiRequest::new(herd_auth::Verb::Create, K::PLURAL).named(name);
    let about;
    if K::PLURAL == Event::PLURAL {
        about = involved_node(obj);
        if let Some(node) = about.as_deref() {
            request = request.about_node(node);
        }
    }
    check(openness, principal, &Action::Api(request))
}

fn check(openness: &Openness, principal: &Principal, action: &Action<'_>) -> Result<(), ApiError> {
    openness
        .authorize(principal, action)
        .map_err(|d| ApiError::Forbidden(d.to_string()))
}

/// The node an Event is about, when it is about one.
fn involved_node<K: Resource>(obj: &K) -> Option<String> {
    let value = serde_json::to_value(obj).ok()?;
    let involved = value.pointer("/spec/involvedObject")?;
    (involved.get("kind")?.as_str()? == Node::KIND)
        .then(|| involved.get("name")?.as_str().map(str::to_owned))
        .flatten()
}

/// Whether writes of this caller to Nodes go through the node restriction:
/// a node key, or a request without a key under open registration.
fn restricted(caller: &Caller) -> bool {
    match caller {
        Some(Principal::Key(k)) => k.role == Role::Node,
        Some(Principal::Anonymous) => true,
        None => false,
    }
}

/// The node restriction on a write of the main resource (not `/status`):
/// a nodelet may change only the fields it is the source of.
pub(crate) fn restrict<K: Resource>(
    caller: &Caller,
    old: Option<&K>,
    new: &K,
) -> Result<(), ApiError> {
    if K::PLURAL != Node::PLURAL || !restricted(caller) {
        return Ok(());
    }
    let as_node = |k: &K| -> Result<Node, ApiError> {
        serde_json::to_value(k)
            .and_then(serde_json::from_value)
            .map_err(|e| ApiError::Internal(format!("reading a Node: {e}")))
    };
    let old = old.map(as_node).transpose()?;
    herd_auth::node_may_change(old.as_ref(), &as_node(new)?)
        .map_err(|d| ApiError::Forbidden(d.to_string()))
}

/// Sets an Event's `source` to who the server saw write it, whatever the
/// body said.
pub(crate) fn stamp_source<K: Resource>(caller: &Caller, obj: &mut K) -> Result<(), ApiError> {
    let Some(principal) = caller else {
        return Ok(());
    };
    if K::PLURAL != Event::PLURAL {
        return Ok(());
    }
    let mut value = serde_json::to_value(&*obj).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(spec) = value.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert(
            "source".to_owned(),
            serde_json::Value::String(principal.event_source()),
        );
    }
    *obj = crate::extract::decode_value(value)?;
    Ok(())
}

/// A management write, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Create,
    Update,
    Patch,
    Delete,
}

impl Write {
    fn reason(self) -> &'static str {
        match self {
            Write::Create => "Created",
            Write::Update => "Updated",
            Write::Patch => "Patched",
            Write::Delete => "Deleted",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Write::Create => "created",
            Write::Update => "updated",
            Write::Patch => "patched",
            Write::Delete => "deleted",
        }
    }
}

/// The Event an audited write leaves: who did what to which object. Events
/// themselves are not audited (each would need another), nor are `/status`
/// writes (the nodelets' and the controller's heartbeats).
pub(crate) fn audit_event(caller: &Principal, write: Write, kind: &str, name: &str) -> Event {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = Event::new(
        &format!("audit-{}", &id[..16]),
        EventSpec {
            involved_object: ObjectReference {
                kind: kind.to_owned(),
                name: name.to_owned(),
            },
            type_: EventType::Normal,
            reason: write.reason().to_owned(),
            message: format!("{kind} {name} {} by {}", write.past(), caller),
            source: caller.event_source(),
            event_time: Some(jiff::Timestamp::now()),
        },
    );
    event
        .metadata
        .labels
        .insert(AUDIT_LABEL.to_owned(), "true".to_owned());
    event
}

/// The label on every audit Event, so `herd get events -l herd.dev/audit=true`
/// shows the trail alone.
pub const AUDIT_LABEL: &str = "herd.dev/audit";

/// Records a management write as an Event, when the server enforces keys.
/// A failure to record is logged, not returned: the write itself is done.
pub(crate) async fn audit<K: Resource>(
    state: &AppState,
    caller: &Caller,
    write: Write,
    name: &str,
) {
    let Some(principal) = caller else { return };
    if K::PLURAL == Event::PLURAL {
        return;
    }
    let event = audit_event(principal, write, K::KIND, name);
    if let Err(e) = store_event(state, event).await {
        tracing::warn!(error = %e, kind = K::KIND, name, "could not record the audit event");
    }
}

/// Stores an Event made by the server itself.
pub(crate) async fn store_event(state: &AppState, event: Event) -> Result<(), ApiError> {
    let name = event.metadata.name.clone();
    let server = crate::mutate::ServerFields {
        uid: uuid::Uuid::new_v4().to_string(),
        now: jiff::Timestamp::now(),
    };
    let decided = crate::mutate::create(None, event, 0, server)?;
    let crate::mutate::Decision::Put(obj) = decided else {
        return Ok(());
    };
    let (template, labels) = crate::routes::resources::template(obj)?;
    state
        .store
        .commit(
            Event::PLURAL,
            name,
            Expect::Absent,
            Proposal::Put { template, labels },
        )
        .await?;
    Ok(())
}
