//! herd's per-machine agent, the kubelet of herd.
//!
//! This crate holds the parts of the nodelet that stand on their own: making sure an
//! Ollama binary exists ([`install`]), the retry schedule every loop shares
//! ([`backoff`]), the default model sized to the machine ([`default_model`]) and the
//! choice of the address the router uses to reach this machine's Ollama
//! ([`advertise`]). Each is a set of pure decision functions with table tests and a
//! thin I/O shell around them, so the registration/heartbeat loop that will be built
//! on top only wires them together.

pub mod advertise;
pub mod backoff;
pub mod default_model;
pub mod install;

/// The version of this nodelet, as reported to the router and sent as User-Agent.
pub const NODELET_VERSION: &str = env!("CARGO_PKG_VERSION");
