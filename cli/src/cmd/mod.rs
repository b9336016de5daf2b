pub mod apply;
pub mod completion;
pub mod controller;
pub mod cordon;
pub mod create;
pub mod delete;
pub mod describe;
pub mod explain;
pub mod get;
pub mod login;
pub mod nodelet;
pub mod server;
pub mod service;
pub mod store;
pub mod tray;
pub mod up;

/// Resolves on SIGINT or SIGTERM: the signals a terminal, systemd and
/// Kubernetes use to ask a process to stop. The handlers are installed when
/// this is called, not when the future is first polled: a SIGTERM that
/// arrives between the two (say, just after "listening on") still stops the
/// process gracefully instead of killing it. Call it inside the runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn wait(signal: std::io::Result<Signal>, name: &str) {
        match signal {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}");
                std::future::pending::<()>().await;
            }
        }
    }
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        tokio::select! {
            () = wait(int, "SIGINT") => tracing::info!("received SIGINT, shutting down"),
            () = wait(term, "SIGTERM") => tracing::info!("received SIGTERM, shutting down"),
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("received Ctrl-C, shutting down"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}
