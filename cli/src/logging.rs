//! Logs go to stderr through `tracing`; `RUST_LOG` picks what is shown.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written is dropped. By default the
        // subscriber reports the failure with `eprintln!`, which panics when
        // stderr is a closed pipe (a log reader that went away): the task
        // that logged dies with it, and when that task is the one waiting
        // for SIGTERM the server never stops.
        .log_internal_errors(false)
        .try_init();
}
