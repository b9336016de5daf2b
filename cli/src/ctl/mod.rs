//! What the kubectl-like verbs share. The pure parts (reading manifests,
//! computing apply patches, building table rows, rendering tables and
//! descriptions, walking schemas) are kept apart from the I/O in `cmd::*`,
//! so they are tested with fixed objects and a fixed clock.

pub mod args;
pub mod describe;
pub mod errors;
#[cfg(test)]
mod golden;
pub mod human;
pub mod kind;
pub mod manifest;
pub mod objects;
pub mod output;
pub mod patch;
pub mod remote;
pub mod rows;
pub mod schema;
pub mod table;

/// Runs one verb's async work on a small runtime of its own: the verbs are
/// short-lived and talk to one server, so one thread is plenty.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}
