//! herd-client's integration tests: against a scripted mock server for the
//! contract's edge cases, and against the real apiserver.

mod api;
mod mock;
mod reflector;
mod server;
mod watcher;
