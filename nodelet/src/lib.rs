//! herd's per-machine agent, the kubelet of herd.
//!
//! `herd nodelet` runs [`run`] with a [`NodeletConfig`] built from [`NodeletArgs`]. It
//! registers the machine as a `Node` with the router, reports its health and load every
//! heartbeat, makes sure an Ollama exists (finding one or installing it), starts and
//! supervises it, and pulls the models the fleet's `ModelAssignment`s place on it.
//! [`agent`] shows how the tasks fit together.
//!
//! Each part is a set of pure decision functions with table tests and a thin I/O shell:
//! [`install`] (find, download, verify, install Ollama), [`default_model`] (the model sized to the machine),
//! [`advertise`] (the address the router uses to reach this Ollama), [`register`]
//! (what the node's spec and labels become), [`status`] (conditions and the status a
//! heartbeat writes), [`pulls`] (which models to pull), [`metrics`] (CPU, memory,
//! GPUs), [`supervisor`] (the Ollama process) and [`drain`] (when, at shutdown, the
//! requests in flight on the node have ended). Every retry loop sleeps by
//! `herd_client::backoff`, the schedule the router's watchers share.

pub mod advertise;
pub mod agent;
pub mod config;
pub mod credentials;
pub mod default_model;
pub mod drain;
pub mod install;
pub mod metrics;
pub mod ollama;
pub mod pulls;
pub mod register;
pub mod status;
pub mod supervisor;

pub use agent::{NodeletError, run, run_with_skip_drain};
pub use config::{DefaultModel, NodeletArgs, NodeletConfig, Timings};

/// The version of this nodelet, as reported to the router and sent as User-Agent.
pub const NODELET_VERSION: &str = env!("CARGO_PKG_VERSION");
