//! herd's resource model: the types every part of herd reads and writes.
//!
//! Everything herd knows lives as versioned resources (`Node`, `ModelAssignment`,
//! `Event`, `ApiKey`, `Secret`, `Lease`) in the apiserver's store. This crate holds their wire
//! types, the one error shape (`Status`), watch events, label selectors, and
//! validation as pure functions, so the server, the client, the controller
//! and the CLI agree on exactly one definition.

mod apikey;
mod apikeyhash;
mod assignment;
mod event;
mod join;
mod lease;
mod meta;
pub mod model_name;
mod node;
pub mod node_address;
mod request;
mod resource;
mod secret;
pub mod selector;
mod status;
pub mod validate;
mod watch;

pub use apikey::{
    ApiKey, ApiKeySpec, ApiKeyStatus, KEY_ID_LEN, KeySecret, MAX_DESCRIPTION_BYTES, Role, key_id,
    parse_expiry, role_and_node,
};
pub use apikeyhash::{ApiKeyHash, ApiKeyHashSpec, ApiKeyHashStatus};
pub use assignment::{
    ModelAssignment, ModelAssignmentSpec, ModelAssignmentStatus, NodeSelector, PlacementPhase,
    PlacementStatus,
};
pub use event::{Event, EventSpec, EventStatus, EventType, ObjectReference};
pub use join::{JOIN_PATH, JoinRequest, JoinResponse};
pub use lease::{Lease, LeaseSpec, LeaseStatus, MAX_LEASE_SECONDS};
pub use meta::{
    Condition, ConditionStatus, ListMeta, ObjectList, ObjectMeta, Timestamp, find_condition,
    set_condition,
};
pub use model_name::ModelName;
pub use node::{
    GpuInfo, MAX_CA_CERT_BYTES, ModelPull, Node, NodeApi, NodeAuth, NodeCapacity, NodeInfo,
    NodeModel, NodeSpec, NodeStatus, NodeUsage, PullPhase, RoutingStatus, endpoints,
};
pub use request::RequestRecord;
pub use resource::{Resource, ResourceInfo, api_resources};
pub use secret::{MAX_TOKEN_BYTES, Secret, SecretSpec, SecretStatus, SecretToken};
pub use selector::LabelSelector;
pub use status::{Status, StatusCause, StatusDetails, StatusReason};
pub use validate::FieldError;
pub use watch::{Bookmark, BookmarkMeta, WatchEvent};

/// The group/version every herd resource is served under.
pub const API_VERSION: &str = "herd/v1";
/// Group part of [`API_VERSION`].
pub const GROUP: &str = "herd";
/// Version part of [`API_VERSION`].
pub const VERSION: &str = "v1";

/// Well-known condition types, and who writes each. Each writer changes only
/// its own conditions, with a conditional status update retried on 409
/// (`client`'s `update_status_with_retry`), so writers never clobber each other.
pub mod conditions {
    /// Controller: the node can take requests (heartbeat fresh, nodelet ready,
    /// Ollama running, router can reach it). `Unknown` when heartbeats stop.
    /// The proxy routes only to nodes where this is `True`.
    pub const READY: &str = "Ready";
    /// Nodelet: `True` while the nodelet runs; `False` (reason `NodeletStopped`)
    /// when it shuts down gracefully, so the node leaves routing at once.
    pub const NODELET_READY: &str = "NodeletReady";
    /// Nodelet: an Ollama binary exists on the node.
    pub const OLLAMA_INSTALLED: &str = "OllamaInstalled";
    /// Nodelet: the node's Ollama answers HTTP correctly.
    pub const OLLAMA_RUNNING: &str = "OllamaRunning";
    /// Proxy and controller probe: the router can reach `spec.url`.
    pub const REACHABLE: &str = "Reachable";
    /// Controller: a cordoned node has finished its in-flight requests.
    pub const DRAINED: &str = "Drained";
    /// Controller: a ModelAssignment has all the replicas it asked for.
    pub const AVAILABLE: &str = "Available";
}

/// Annotations herd's components write and other components read.
pub mod annotations {
    /// On a Node: comma-separated keys of the labels its nodelet set from
    /// `--label`. A `node` key may change exactly those labels.
    pub const NODELET_LABELS: &str = "nodelet.herd/labels";
}
