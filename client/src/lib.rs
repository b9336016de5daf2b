//! Typed client for herd's API.
//!
//! - [`Client`] is a connection to one server; [`Api<K>`] is the REST API of
//!   one kind (`Node`, `ModelAssignment`): get, list, create, replace, merge
//!   patch, the `/status` subresource, delete and watch.
//! - [`watcher::watcher`] turns list + watch into an endless stream that
//!   relists on 410 Gone and resumes dropped watches, with backoff.
//! - [`backoff`] is the retry schedule every herd client sleeps by.
//! - [`ndjson`] splits streamed NDJSON into lines; [`ollama`] holds the Ollama wire
//!   types more than one herd crate reads.
//! - [`reflector`] keeps a local cache ([`reflector::Store`]) current from a
//!   watcher, for readers that must not wait on the network.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd_client::Error> {
//! use herd_api::Node;
//! use herd_client::{Client, ListParams};
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let nodes = client.api::<Node>();
//! for node in nodes.list(&ListParams::default().labels("gpu=nvidia")).await?.items {
//!     println!("{}", node.metadata.name);
//! }
//! # Ok(()) }
//! ```

mod api;
pub mod backoff;
mod client;
mod error;
pub mod ndjson;
pub mod ollama;
pub mod reflector;
pub mod watcher;

pub use api::{
    Api, ListParams, MAX_WATCH_LINE, PostParams, STATUS_UPDATE_ATTEMPTS, WatchParams, WatchStream,
};
pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use error::Error;
pub use herd_tls::{ClientTrust, Fingerprint};
pub use reflector::Store;
pub use watcher::watcher;
