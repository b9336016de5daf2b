//! herd's resource model: the types every part of herd reads and writes.
//!
//! Everything herd knows lives as versioned resources (`Node`, `ModelAssignment`)
//! in the apiserver's store. This crate holds their wire types, the one error
//! shape (`Status`), watch events, label selectors, and validation as pure
//! functions, so the server, the client, the controller and the CLI agree on
//! exactly one definition.

mod assignment;
mod event;
mod meta;
pub mod model_name;
mod node;
mod request;
mod resource;
pub mod selector;
mod status;
pub mod validate;
mod watch;

pub use assignment::{
    ModelAssignment, ModelAssignmentSpec, ModelAssignmentStatus, NodeSelector, PlacementPhase,
    PlacementStatus,
};
pub use event::{Event, EventSpec, EventStatus, EventType, ObjectReference};
pub use meta::{
    Condition, ConditionStatus, ListMeta, ObjectList, ObjectMeta, Timestamp, find_condition,
    set_condition,
};
pub use model_name::ModelName;
pub use node::{
    GpuInfo, ModelPull, Node, NodeCapacity, NodeInfo, NodeModel, NodeSpec, NodeStatus, NodeUsage,
    PullPhase, RoutingStatus,
};
pub use request::RequestRecord;
pub use resource::{Resource, ResourceInfo, api_resources};
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

/// Well-known condition types.
pub mod conditions {
    /// The node can take requests: nodelet heartbeating and Ollama answering.
    pub const READY: &str = "Ready";
    /// An Ollama binary exists on the node.
    pub const OLLAMA_INSTALLED: &str = "OllamaInstalled";
    /// The node's Ollama answers HTTP.
    pub const OLLAMA_RUNNING: &str = "OllamaRunning";
    /// A cordoned node has finished its in-flight requests.
    pub const DRAINED: &str = "Drained";
    /// A ModelAssignment has all the replicas it asked for.
    pub const AVAILABLE: &str = "Available";
}
